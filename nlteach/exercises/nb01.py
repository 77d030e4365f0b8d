"""Graders for notebook 01 (associative memory): one Hebbian write, one delta write, and the
gated delta rule over a sequence."""

from __future__ import annotations

import torch

from nlteach.course.nb01_associative_memory import delta_write, hebbian_write
from nlteach.exercises import GradingFailure, assert_close, check_returned, register, same
from nlteach.memory import delta_rule_naive


def _cases(seed: int = 0):
    """Fixed memories, keys and values with d_k != d_v, so a transposed answer fails."""
    g = torch.Generator().manual_seed(seed)
    for d_k, d_v in ((3, 2), (5, 4), (4, 6)):
        S = torch.randn(d_k, d_v, generator=g, dtype=torch.float64)
        k = torch.nn.functional.normalize(torch.randn(d_k, generator=g, dtype=torch.float64), dim=0)
        v = torch.randn(d_v, generator=g, dtype=torch.float64)
        yield S, k, v


def _call(fn, S, *args, what):
    S_in = S.clone()
    got = fn(S_in, *args)
    if got is None:
        raise GradingFailure(f"{what} returned None; return the new memory matrix S_new.")
    if not torch.equal(S_in, S):
        raise GradingFailure(f"{what} changed S in place; build and return a new tensor instead "
                             "(e.g. `S + ...`, not `S += ...`).")
    return got


@register(
    "01.hebbian_write",
    name="hebbian_write",
    notebook="01_associative_memory",
    reference=hebbian_write,
    hint="the Hebbian write is one gradient step (size 1) on the loss -<S^T k, v>. Work out its "
         "gradient with respect to S: a matrix of S's shape [d_k, d_v] built from k and v alone.",
    solution="the gradient of -<S^T k, v> with respect to S is -k v^T (an outer product, shape "
         "[d_k, d_v]); one step of size 1 adds k v^T: torch.outer(k, v).",
    difficulty="easy",
    minutes=5,
    derivation=True,
)
def check_hebbian_write(fn) -> None:
    for S, k, v in _cases():
        got = _call(fn, S, k, v, what=f"hebbian_write(S {tuple(S.shape)}, k, v)")
        assert_close(got, hebbian_write(S, k, v), what=f"hebbian_write for S of shape {tuple(S.shape)}")
    S = torch.zeros(3, 2, dtype=torch.float64)
    k = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    v = torch.tensor([2.0, -1.0], dtype=torch.float64)
    assert_close(fn(S, k, v), hebbian_write(S, k, v), what="writing v=[2, -1] at the key e_1 into an empty memory")


@register(
    "01.delta_write",
    name="delta_write",
    notebook="01_associative_memory",
    reference=delta_write,
    hint="the delta write is one gradient step of size beta on 1/2 ||S^T k - v||^2. Its gradient "
         "involves the memory's current error for this key: what S recalls for k, minus v.",
    solution="the gradient of 1/2 ||S^T k - v||^2 with respect to S is k (S^T k - v)^T; "
         "S_new = S - beta * torch.outer(k, S.T @ k - v).",
    difficulty="easy",
    minutes=10,
    derivation=True,
)
def check_delta_write(fn) -> None:
    for beta in (1.0, 0.3):
        for S, k, v in _cases(1):
            got = _call(fn, S, k, v, beta, what=f"delta_write(S {tuple(S.shape)}, k, v, beta={beta})")
            assert_close(got, delta_write(S, k, v, beta),
                         what=f"delta_write for S of shape {tuple(S.shape)}, beta={beta}")
    S, k, v = next(_cases(2))
    got = fn(S.clone(), k, v, 1.0)
    err = (got.T @ k - v).abs().max().item()
    if err > 1e-8:
        raise GradingFailure(f"with a unit-norm key and beta=1 the memory should return v exactly "
                             f"right after the write, but S_new^T k - v has entries up to {err:.3g}.")


# --------------------------------------------------------------------------- the gated delta rule
def gated_delta_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                          alpha: torch.Tensor, S0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``memory.delta_rule_naive`` for one sequence: q, k [T, d_k], v [T, d_v], beta, alpha [T],
    S0 [d_k, d_v] -> (o [T, d_v], S_T [d_k, d_v])."""
    o, S = delta_rule_naive(q[None, None], k[None, None], v[None, None], beta[None, None],
                            alpha=alpha[None, None], initial_state=S0[None, None])
    return o[0, 0], S[0, 0]


def _gated_variants(q, k, v, beta, alpha, S0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """What the typical mistakes return, as (outputs, final memory)."""
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for name in ("read_first", "decay_after", "error_undecayed", "no_decay"):
        S, os_ = S0, []
        for t in range(k.shape[0]):
            if name == "read_first":
                os_.append(S.T @ q[t])
            a = 1.0 if name == "no_decay" else alpha[t]
            if name == "decay_after":
                S = a * (S + beta[t] * torch.outer(k[t], v[t] - S.T @ k[t]))
            elif name == "error_undecayed":
                S = a * S + beta[t] * torch.outer(k[t], v[t] - S.T @ k[t])  # error at S_{t-1}
            else:
                S = a * S
                S = S + beta[t] * torch.outer(k[t], v[t] - S.T @ k[t])
            if name != "read_first":
                os_.append(S.T @ q[t])
        out[name] = (torch.stack(os_), S)
    return out


_GATED_WHY = {
    "read_first": "you read each token's output before its own write; o_t = S_t^T q_t reads the memory "
                  "*after* token t has been written (the read is inclusive, as in linear attention).",
    "decay_after": "you applied the decay alpha_t after the write; the memory decays first, then takes "
                   "the gradient step from the decayed memory alpha_t S_{t-1}, so the new pair is not shrunk.",
    "error_undecayed": "your error uses what the undecayed memory S_{t-1} returns for k_t; the gradient "
                       "step is taken at the decayed memory alpha_t S_{t-1}, so the error is "
                       "(alpha_t S_{t-1})^T k_t - v_t.",
    "no_decay": "the memory never decays: multiply it by alpha_t before each write.",
}


def _gated_case(T: int, d_k: int, d_v: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(T, d_k, generator=g, dtype=torch.float64)
    k = torch.nn.functional.normalize(torch.randn(T, d_k, generator=g, dtype=torch.float64), dim=-1)
    v = torch.randn(T, d_v, generator=g, dtype=torch.float64)
    beta = 0.2 + 0.8 * torch.rand(T, generator=g, dtype=torch.float64)
    alpha = 0.5 + 0.5 * torch.rand(T, generator=g, dtype=torch.float64)
    S0 = torch.randn(d_k, d_v, generator=g, dtype=torch.float64)
    return q, k, v, beta, alpha, S0


@register(
    "01.gated_delta",
    name="gated_delta_rule",
    notebook="01_associative_memory",
    reference=gated_delta_reference,
    hint="at each token the memory first forgets a little (it is scaled by alpha_t), then takes one "
         "gradient step of size beta_t on the L2 objective of the new pair, the step taken at the "
         "memory as it is after forgetting; then the token reads the memory with its query.",
    solution="S = S0; for each t: S = alpha[t] * S; S = S + beta[t] * torch.outer(k[t], v[t] - S.T @ k[t]); "
             "o_t = S.T @ q[t]. Return (torch.stack(outputs), S).",
    difficulty="medium",
    minutes=15,
    derivation=True,
)
def check_gated_delta(fn) -> None:
    for T, d_k, d_v, seed in ((1, 3, 2, 0), (6, 4, 3, 1), (11, 5, 2, 2)):
        args = _gated_case(T, d_k, d_v, seed)
        got = check_returned(fn(*[a.clone() for a in args]), "the pair (o [T, d_v], S_T [d_k, d_v])")
        if not isinstance(got, tuple | list) or len(got) != 2:
            raise GradingFailure(f"return a pair (o, S_T), got {type(got).__name__}.")
        o, S = got
        o_ref, S_ref = gated_delta_reference(*args)
        where = f"(T={T}, d_k={d_k}, d_v={d_v})"
        if not (same(o, o_ref) and same(S, S_ref)):
            for name, (o_w, S_w) in _gated_variants(*args).items():
                if same(o, o_w) and (name == "read_first" or same(S, S_w)):
                    raise GradingFailure(f"{where} {_GATED_WHY[name]}")
        assert_close(S, S_ref, what=f"the final memory S_T {where}", rtol=1e-8, atol=1e-10)
        assert_close(o, o_ref, what=f"the outputs o {where}", rtol=1e-8, atol=1e-10)
    # alpha = 1 and beta = 1 with a unit key: the memory returns the newest value exactly
    q, k, v, beta, alpha, S0 = _gated_case(4, 3, 2, 9)
    o, _ = fn(k.clone(), k.clone(), v.clone(), torch.ones(4, dtype=torch.float64),
              torch.ones(4, dtype=torch.float64), S0.clone())
    assert_close(o, v, what="the outputs with q_t = k_t, beta = alpha = 1 (each read must return v_t)",
                 rtol=1e-8, atol=1e-10)
