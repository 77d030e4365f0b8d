"""Graders for notebook 02 (attention is associative memory): Linear Attention++ without a loop,
and the intra-chunk causal term."""

from __future__ import annotations

import torch

from nlteach.course.nb02_attention import chunked_linear_attention_loop, intra_chunk_term
from nlteach.exercises import GradingFailure, assert_close, check_returned, diagnose, register, same
from nlteach.memory import linear_attention_naive


def linear_attention_pp_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, eta: torch.Tensor,
                                  W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear Attention++ with write strengths: ``S_0 = W``, ``S_t = S_{t-1} + eta_t k_t v_t^T``,
    ``o_t = S_t^T q_t`` (``memory.linear_attention_naive`` on the values ``eta_t v_t``).
    q, k: [T, d_k], v: [T, d_v], eta: [T], W: [d_k, d_v] -> (o [T, d_v], S_T [d_k, d_v])."""
    o, S = linear_attention_naive(q[None, None], k[None, None], (eta[:, None] * v)[None, None],
                                  initial_state=W[None, None])
    return o[0, 0], S[0, 0]


def _la_pp_case(T: int, d_k: int, d_v: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(T, d_k, generator=g, dtype=torch.float64)
    k = torch.randn(T, d_k, generator=g, dtype=torch.float64)
    v = torch.randn(T, d_v, generator=g, dtype=torch.float64)
    eta = 0.1 + torch.rand(T, generator=g, dtype=torch.float64)
    W = torch.randn(d_k, d_v, generator=g, dtype=torch.float64)
    return q, k, v, eta, W


@register(
    "02.la_pp",
    name="linear_attention_pp",
    notebook="02_attention_is_memory",
    reference=linear_attention_pp_reference,
    hint="unroll the recurrence: S_t is W plus a weighted sum of the writes k_i v_i^T for i <= t. "
         "Read it with q_t and you get a slow term (W read by q_t) and a fast term, a causal "
         "weighted sum of the values; write both for all t at once as matrix products, with the "
         "write strength attached to the token that writes (i), not the one that reads (t).",
    solution="O = q @ W + ((q @ k.T) * torch.ones(T, T).tril()) @ (eta[:, None] * v) and "
             "S_T = W + k.T @ (eta[:, None] * v).",
    difficulty="medium",
    minutes=15,
    derivation=True,
)
def check_la_pp(fn) -> None:
    for T, d_k, d_v, seed in ((5, 4, 4, 1), (1, 3, 2, 0), (9, 3, 5, 2)):
        q, k, v, eta, W = _la_pp_case(T, d_k, d_v, seed)
        got = check_returned(fn(q.clone(), k.clone(), v.clone(), eta.clone(), W.clone()),
                             "the pair (o [T, d_v], S_T [d_k, d_v])")
        if not isinstance(got, tuple | list) or len(got) != 2:
            raise GradingFailure(f"return a pair (o, S_T), got {type(got).__name__}.")
        o, S = got
        o_ref, S_ref = linear_attention_pp_reference(q, k, v, eta, W)
        where = f"(T={T}, d_k={d_k}, d_v={d_v})"
        if not same(o, o_ref):
            causal = (q @ k.T).tril()
            wrong = {
                "your outputs lack the slow term: with S_0 = W every read also returns W^T q_t (q @ W).":
                    causal @ (eta[:, None] * v),
                "you weighted each output by its own token's write strength eta_t; the strength belongs "
                "to the token that wrote the pair, eta_i, inside the sum.": q @ W + eta[:, None] * (causal @ v),
                "you left out the write strengths eta_i.": q @ W + causal @ v,
                "you excluded the diagonal: token t reads the memory after its own write (i <= t).":
                    q @ W + (q @ k.T).tril(-1) @ (eta[:, None] * v),
                "every token sees every write: apply the causal mask (i <= t).":
                    q @ W + (q @ k.T) @ (eta[:, None] * v),
            }
            if d_k == d_v:
                wrong["the slow term reads W transposed: o_t = S_t^T q_t, so the slow part is W^T q_t "
                      "(rows: q @ W)."] = q @ W.T + causal @ (eta[:, None] * v)
            diagnose(o, wrong, where=where)
        assert_close(o, o_ref, what=f"the outputs o {where}", rtol=1e-8, atol=1e-10)
        if not same(S, S_ref):
            diagnose(S, {"your final memory lacks its initial state W.": k.T @ (eta[:, None] * v),
                         "your final memory ignores the write strengths eta.": W + k.T @ v}, where=where)
        assert_close(S, S_ref, what=f"the final memory S_T {where}", rtol=1e-8, atol=1e-10)


@register(
    "02.intra_chunk",
    name="intra_chunk",
    notebook="02_attention_is_memory",
    reference=intra_chunk_term,
    hint="inside the chunk, token i reads the value of every token j <= i (itself included), "
         "weighted by q_i . k_j. Compute all those weights at once as a [C, C] matrix, keep only the"
         " causal part, then combine the values with them.",
    solution="scores = Qc @ Kc.T is [C, C] with entry (i, j) = q_i . k_j; token i may only see j <= i "
         "(its own write included), so zero the entries above the diagonal (torch.tril) before "
         "multiplying by Vc.",
    difficulty="easy",
    minutes=10,
)
def check_intra_chunk(fn) -> None:
    g = torch.Generator().manual_seed(0)
    for C, d_k, d_v in ((4, 3, 5), (1, 3, 2), (7, 2, 3)):
        Qc = torch.randn(C, d_k, generator=g, dtype=torch.float64)
        Kc = torch.randn(C, d_k, generator=g, dtype=torch.float64)
        Vc = torch.randn(C, d_v, generator=g, dtype=torch.float64)
        got = fn(Qc, Kc, Vc)
        if got is None:
            raise GradingFailure("your function returned None; return the [C, d_v] tensor.")
        exp = intra_chunk_term(Qc, Kc, Vc)
        got_t = torch.as_tensor(got)
        if got_t.shape == exp.shape and C > 1:
            if torch.allclose(got_t, (Qc @ Kc.T) @ Vc):
                raise GradingFailure("you used every key of the chunk: token i must not see keys "
                                     "j > i (apply the causal mask).")
            if torch.allclose(got_t, (Qc @ Kc.T).tril(-1) @ Vc):
                raise GradingFailure("you excluded the diagonal: the read is inclusive, token i "
                                     "sees its own write (j <= i).")
        assert_close(got, exp, what=f"intra_chunk for a chunk of C={C} tokens (d_k={d_k}, d_v={d_v})")
    # used inside a chunked linear attention, it must reproduce the token loop
    q, k, v = (torch.randn(10, 3, generator=g, dtype=torch.float64) for _ in range(3))
    o, _ = chunked_linear_attention_loop(q, k, v, 4, intra=fn)
    assert_close(o, (q @ k.T).tril() @ v, what="chunked linear attention built on your intra_chunk")
