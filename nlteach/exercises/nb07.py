"""Graders for notebook 07 (the Continuum Memory System): Eq. 71 token by token, and one chunk
of it in matrix products."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nlteach.cms import cms_chunk_step, silu_grad
from nlteach.course.nb07_cms import in_context_block
from nlteach.exercises import GradingFailure, assert_close, check_returned, register, same


def _case(T: int, D: int, hidden: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, D, generator=g, dtype=torch.float64)
    v = torch.randn(T, D, generator=g, dtype=torch.float64)
    W_in = torch.randn(hidden, D, generator=g, dtype=torch.float64) / D ** 0.5
    W_out = torch.randn(D, hidden, generator=g, dtype=torch.float64) / hidden ** 0.5
    return x, v, W_in, W_out


@register(
    "07.eq71",
    name="in_context_block",
    notebook="07_continuum_memory",
    reference=in_context_block,
    hint="every token reads with the weights as they are; the weights change only at the end of each"
         " period, by the sum of the gradients collected since their last change.",
    solution="loop over tokens t = 1..T: read o_t = u_t + W_out silu(W_in u_t) with the current weights, "
         "add the gradient of lr * 1/2 ||o_t - v_t||^2 (at those weights) to an accumulator, and "
         "only when t % period == 0 subtract the accumulated sum from the weights and clear it.",
    difficulty="hard",
    minutes=30,
    derivation=True,
)
def check_eq71(fn) -> None:
    for T, period, lr, seed in [(6, 1, 0.1, 0), (9, 3, 0.2, 1), (10, 4, 0.3, 2), (5, 8, 0.5, 3)]:
        x, v, W_in, W_out = _case(T, 3, 5, seed)
        got = fn(x.clone(), v.clone(), W_in.clone(), W_out.clone(), period, lr)
        if not isinstance(got, tuple | list) or len(got) != 2 or len(got[1]) != 2:
            raise GradingFailure("return (y, (W_in_final, W_out_final)).")
        y, (A, B) = got
        ry, (rA, rB) = in_context_block(x, v, W_in, W_out, period, lr)
        where = f"(T={T}, period={period}, lr={lr})"
        if torch.as_tensor(y).shape == ry.shape and period < T:
            first = torch.as_tensor(y)[:period].to(ry.dtype)
            if not torch.allclose(first, ry[:period], atol=1e-8):
                raise GradingFailure(f"the first chunk's outputs {where} should be a plain forward pass with "
                                     "the initial weights: every token of a chunk reads the weights the chunk "
                                     "started with.")
        assert_close(y, ry, what=f"the outputs y {where}", rtol=1e-6, atol=1e-8)
        assert_close(A, rA, what=f"the final W_in {where}", rtol=1e-6, atol=1e-8)
        assert_close(B, rB, what=f"the final W_out {where}", rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------------ one chunk, in matrix products
def chunk_update_reference(U: torch.Tensor, V: torch.Tensor, W_in: torch.Tensor, W_out: torch.Tensor,
                           lr: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One full chunk of Eq. 71 for one block (``cms.cms_chunk_step`` without the batch dim):
    U, V [C, D], W_in [hidden, D], W_out [D, hidden] -> (O [C, D], W_in_new, W_out_new)."""
    C = U.shape[0]
    eta = torch.full((1, C), float(lr), dtype=U.dtype)
    O, A, B = cms_chunk_step(U[None], V[None], eta, W_in[None], W_out[None], C)
    return O[0], A[0], B[0]


def _chunk_variant(U, V, W_in, W_out, lr, mistake: str):
    H = U @ W_in.T
    A = F.silu(H)
    O = U + A @ W_out.T
    E = lr * ((O - U if mistake == "no_residual" else O) - V)
    dW_out = E.T @ A
    D = F.silu(H) if mistake == "silu_not_prime" else silu_grad(H)
    dW_in = ((E @ W_out) * D).T @ U
    if mistake == "transposed":
        dW_out = dW_out.T
    W_in_new, W_out_new = W_in - dW_in, W_out - dW_out
    if mistake == "read_after":
        O = U + F.silu(U @ W_in_new.T) @ W_out_new.T
    return O, W_in_new, W_out_new


_CHUNK_WHY = {
    "read_after": "your outputs read the weights after the chunk's update; every token of a chunk reads "
                  "the weights the chunk started with (the update is visible from the next chunk on).",
    "silu_not_prime": "the W_in gradient used silu(H) where the chain rule needs its derivative silu'(H) "
                      "(cms.silu_grad).",
    "no_residual": "your error leaves out the block's residual: the output is u + W_out silu(W_in u), and "
                   "the loss compares that whole output with v.",
    "transposed": "your W_out step is transposed: the gradient of a loss of o = ... + W_out a with respect "
                  "to W_out is e a^T (rows: E^T A, shape [D, hidden]).",
}


@register(
    "07.chunk_update",
    name="cms_chunk_update",
    notebook="07_continuum_memory",
    reference=chunk_update_reference,
    hint="all tokens of the chunk read the same (chunk-start) weights, so compute every token's "
         "pre-activation, output and error at once as [C, .] matrices. Each token's gradient is a "
         "sum of outer products; the sum over the chunk of outer products is one matrix product. "
         "For W_in, push the errors back through W_out and through silu's derivative first.",
    solution="H = U @ W_in.T; A = silu(H); O = U + A @ W_out.T; E = lr * (O - V); "
             "W_out_new = W_out - E.T @ A; W_in_new = W_in - ((E @ W_out) * silu'(H)).T @ U "
             "with silu'(h) = s (1 + h (1 - s)), s = sigmoid(h). Return (O, W_in_new, W_out_new).",
    difficulty="hard",
    minutes=25,
    derivation=True,
)
def check_chunk_update(fn) -> None:
    for C, D, hidden, lr, seed in ((4, 3, 5, 0.3, 0), (1, 2, 3, 0.5, 1), (6, 4, 4, 0.2, 2), (5, 3, 7, 1.0, 3)):
        U, V, W_in, W_out = _case(C, D, hidden, seed)
        got = check_returned(fn(U.clone(), V.clone(), W_in.clone(), W_out.clone(), lr),
                             "(O [C, D], W_in_new [hidden, D], W_out_new [D, hidden])")
        if not isinstance(got, tuple | list) or len(got) != 3:
            raise GradingFailure("return three tensors: (O, W_in_new, W_out_new).")
        ref = chunk_update_reference(U, V, W_in, W_out, lr)
        where = f"(C={C}, D={D}, hidden={hidden})"
        if not all(same(a, b) for a, b in zip(got, ref)):
            for mistake, why in _CHUNK_WHY.items():
                if all(same(a, b) for a, b in zip(got, _chunk_variant(U, V, W_in, W_out, lr, mistake))):
                    raise GradingFailure(f"{where} {why}")
        for name, a, b in zip(("the outputs O", "W_in after the chunk", "W_out after the chunk"), got, ref):
            assert_close(a, b, what=f"{name} {where}", rtol=1e-8, atol=1e-10)
