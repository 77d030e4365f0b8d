"""Graders for notebook 07 (the Continuum Memory System)."""

from __future__ import annotations

import torch

from nlteach.course.nb07_cms import in_context_block
from nlteach.exercises import GradingFailure, assert_close, register


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
