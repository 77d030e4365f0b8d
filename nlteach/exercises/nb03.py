"""Graders for notebook 03 (the delta rule and chunking): the UT transform of one chunk, and a
whole sequence computed chunk by chunk with it."""

from __future__ import annotations

import torch

from nlteach.course.nb03_delta_rule import delta_chunk_wy, ut_transform
from nlteach.exercises import GradingFailure, assert_close, check_returned, register, same
from nlteach.memory import delta_rule_naive


def _chunk(C: int, d: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    K = torch.nn.functional.normalize(torch.randn(C, d, generator=g, dtype=torch.float64), dim=-1)
    beta = 0.1 + 0.9 * torch.rand(C, generator=g, dtype=torch.float64)
    return K, beta


@register(
    "03.ut_transform",
    name="ut_transform",
    notebook="03_delta_rule_chunking",
    reference=ut_transform,
    hint="unroll the delta rule inside the chunk: token i's correction depends on the earlier tokens"
         " j < i through beta_i k_i . k_j. Collect these in a strictly lower-triangular [C, C] "
         "matrix; T is the inverse of (identity + that matrix) applied to diag(beta), and a "
         "triangular system needs no loop.",
    solution="A = torch.tril(beta[:, None] * (K @ K.T), diagonal=-1); then solve (I + A) T = diag(beta) "
         "with torch.linalg.solve_triangular(I + A, torch.diag(beta), upper=False).",
    difficulty="medium",
    minutes=15,
    derivation=True,
)
def check_ut_transform(fn) -> None:
    for C, d, seed in ((4, 3, 1), (1, 3, 0), (6, 4, 2), (9, 5, 3)):
        K, beta = _chunk(C, d, seed)
        got = fn(K.clone(), beta.clone())
        if got is None:
            raise GradingFailure("your function returned None; return the [C, C] matrix T.")
        exp = ut_transform(K, beta)
        got_t = torch.as_tensor(got)
        if got_t.shape == exp.shape and C > 1:
            eye = torch.eye(C, dtype=K.dtype)
            A = (beta[:, None] * (K @ K.T)).tril(-1)
            if torch.allclose(got_t, torch.linalg.inv(eye + A)):
                raise GradingFailure("you returned (I + A)^{-1}; the UT transform also multiplies "
                                     "by diag(beta) on the right.")
            if torch.allclose(got_t, torch.linalg.inv(eye - A) @ torch.diag(beta)):
                raise GradingFailure("you inverted (I - A); the sign is +: u_i + beta_i sum_{j<i} "
                                     "(k_i . k_j) u_j = beta_i v_i.")
            if not torch.allclose(got_t.triu(1), torch.zeros_like(got_t)):
                raise GradingFailure("T should be lower-triangular (token i depends only on tokens "
                                     "j <= i); check the mask of A.")
        assert_close(got, exp, what=f"ut_transform for a chunk of C={C} keys of dimension {d}")
    # inside a chunk of the delta rule it must reproduce the token loop
    K, beta = _chunk(7, 3, 4)
    g = torch.Generator().manual_seed(5)
    Q, V = torch.randn(7, 3, generator=g, dtype=torch.float64), torch.randn(7, 2, generator=g, dtype=torch.float64)
    S = torch.randn(3, 2, generator=g, dtype=torch.float64)
    O, S_new = delta_chunk_wy(S, Q, K, V, beta, ut=fn)
    O_ref, S_ref = delta_chunk_wy(S, Q, K, V, beta)
    assert_close(O, O_ref, what="the chunk's outputs computed with your T")
    assert_close(S_new, S_ref, what="the memory after the chunk computed with your T")


# ----------------------------------------------------------------------- the chunk loop (UT form)
def delta_by_chunks_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                              S0: torch.Tensor, C: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The delta rule over one sequence (``memory.delta_rule_naive``; the result does not depend on
    ``C``). q, k: [T, d_k], v: [T, d_v], beta: [T], S0: [d_k, d_v] -> (o [T, d_v], S_T)."""
    o, S = delta_rule_naive(q[None, None], k[None, None], v[None, None], beta[None, None],
                            initial_state=S0[None, None])
    return o[0, 0], S[0, 0]


def _chunk_variant(q, k, v, beta, S0, C, mistake: str):
    """The chunk loop with one typical mistake."""
    S, outs = S0, []
    for s in range(0, k.shape[0], C):
        Q, K, V, b = q[s:s + C], k[s:s + C], v[s:s + C], beta[s:s + C]
        S_in = S0 if mistake == "no_carry" else S
        T_ = ut_transform(K, b)
        U, W = T_ @ V, T_ @ K
        P = U if mistake == "no_state_correction" else U - W @ S_in
        intra = (Q @ K.T).tril(-1) if mistake == "strict" else (Q @ K.T).tril()
        outs.append(Q @ S_in + intra @ P)
        S = S_in + K.T @ (U if mistake == "state_with_U" else P)
    return torch.cat(outs), S


_CHUNK_WHY = {
    "no_carry": "every chunk started from S0: pass the memory after a chunk on to the next one.",
    "no_state_correction": "you used U = T V as the written values; the values each token really writes "
                           "depend on the memory at the chunk start: U - W S.",
    "strict": "you excluded the diagonal of Q K^T: token i reads the memory after its own write.",
    "state_with_U": "your memory update used U instead of the pseudo-values U - W S: the memory after "
                    "a chunk is S plus the writes the tokens really made.",
}


def _seq_case(T: int, d_k: int, d_v: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(T, d_k, generator=g, dtype=torch.float64)
    k = torch.nn.functional.normalize(torch.randn(T, d_k, generator=g, dtype=torch.float64), dim=-1)
    v = torch.randn(T, d_v, generator=g, dtype=torch.float64)
    beta = 0.1 + 0.9 * torch.rand(T, generator=g, dtype=torch.float64)
    S0 = torch.randn(d_k, d_v, generator=g, dtype=torch.float64)
    return q, k, v, beta, S0


@register(
    "03.delta_chunks",
    name="delta_rule_by_chunks",
    notebook="03_delta_rule_chunking",
    reference=delta_by_chunks_reference,
    hint="loop over the chunks (the last one may be shorter than C). For each: its UT transform, the "
         "pseudo-values from U, W and the memory at the chunk start, then the chunk's outputs and "
         "the memory after it, which the next chunk starts from. No loop over tokens inside a chunk.",
    solution="S = S0; for s in range(0, T, C): slice Q, K, V, b = q[s:s+C], ...; T_ = ut_transform(K, b); "
             "P = T_ @ V - (T_ @ K) @ S; outputs.append(Q @ S + (Q @ K.T).tril() @ P); S = S + K.T @ P. "
             "Return (torch.cat(outputs), S).",
    difficulty="medium",
    minutes=20,
    derivation=True,
)
def check_delta_chunks(fn) -> None:
    for T, C, d_k, d_v, seed in ((8, 4, 3, 2, 0), (10, 4, 4, 3, 1), (7, 3, 3, 5, 2), (5, 8, 2, 2, 3),
                                 (6, 1, 3, 2, 4)):
        args = _seq_case(T, d_k, d_v, seed)
        got = check_returned(fn(*[a.clone() for a in args], C), "the pair (o [T, d_v], S_T [d_k, d_v])")
        if not isinstance(got, tuple | list) or len(got) != 2:
            raise GradingFailure(f"return a pair (o, S_T), got {type(got).__name__}.")
        o, S = got
        o_ref, S_ref = delta_by_chunks_reference(*args, C)
        where = f"(T={T}, C={C})"
        o_t = torch.as_tensor(o)
        if o_t.dim() == 2 and o_t.shape[0] == (T // C) * C and T % C:
            raise GradingFailure(f"{where} you returned {o_t.shape[0]} outputs for {T} tokens: the last "
                                 f"chunk has only {T % C} tokens, and it must be computed too.")
        if not (same(o, o_ref) and same(S, S_ref)):
            for mistake, why in _CHUNK_WHY.items():
                o_w, S_w = _chunk_variant(*args, C, mistake)
                if same(o, o_w) and same(S, S_w):
                    raise GradingFailure(f"{where} {why}")
        assert_close(o, o_ref, what=f"the outputs {where}", rtol=1e-8, atol=1e-10)
        assert_close(S, S_ref, what=f"the final memory {where}", rtol=1e-8, atol=1e-10)
