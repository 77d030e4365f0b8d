"""Graders for notebook 09 (HOPE)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nlteach.exercises import GradingFailure, assert_close, register
from nlteach.models import ModelConfig, build_model


def hope_block_reference(x: torch.Tensor, mixer, norm1, norm2, cms_weights) -> torch.Tensor:
    """One HOPE block (Eqs. 94-97 as a pre-norm residual block), ``x [B, T, dim] -> [B, T, dim]``:
    ``x = x + mixer(norm1(x))``; ``u = norm2(x)``; the CMS chain (Eq. 70) ``y = u``, then for each
    level ``y = y + W_out silu(W_in y)`` with ``(W_in [hidden, dim], W_out [dim, hidden])`` in
    ``cms_weights``; the block returns ``x + (y - u)``."""
    x = x + mixer(norm1(x))
    u = norm2(x)
    y = u
    for W_in, W_out in cms_weights:  # level 1 first (the fastest), as in nlteach.cms.CMS
        y = y + F.silu(y @ W_in.T) @ W_out.T
    return x + (y - u)


def _block(seed: int = 0):
    torch.manual_seed(seed)
    # the block of the exercise reads the CMS with fixed weights: hope-static-cms (hope's CMS learns in context)
    model = build_model("hope-static-cms", ModelConfig(vocab_size=11, dim=16, n_layers=1, n_heads=2, chunk_size=4,
                                            proj_chunk_size=4, cms_periods=(1, 4, 16))).double()
    block = model.blocks[0]
    with torch.no_grad():  # larger CMS weights than at initialization, so every term is visible
        for p in block.mlp.parameters():
            p.normal_(0, 0.3)
        block.norm2.weight.uniform_(0.5, 1.5)
    return block


@register(
    "09.hope_block",
    name="hope_block",
    notebook="09_hope",
    reference=hope_block_reference,
    hint="a pre-norm block with two residual steps: first the sequence mixer, then the CMS levels, "
         "run one after the other on the normalized stream; only the CMS's increment (its output "
         "minus its input) is added back to the residual stream.",
    solution="Two residual steps: x = x + mixer(norm1(x)); then u = norm2(x), run u through the CMS levels "
         "in order (y = y + silu(y @ W_in.T) @ W_out.T), and add only the increment y - u to x.",
)
def check_hope_block(fn) -> None:
    block = _block()
    weights = [(b.W_in.detach(), b.W_out.detach()) for b in block.mlp.cms.blocks]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 9, 16, generator=g, dtype=torch.float64)
    zero_mixer = lambda h: torch.zeros_like(h)  # noqa: E731
    zeros = [(torch.zeros_like(a), torch.zeros_like(b)) for a, b in weights]
    with torch.no_grad():
        got = fn(x.clone(), zero_mixer, block.norm1, block.norm2, zeros)
        if got is None:
            raise GradingFailure("your function returned None; return the block's output [B, T, dim].")
        if torch.is_tensor(got) and got.shape == x.shape and torch.allclose(got, x + block.norm2(x), atol=1e-9):
            raise GradingFailure("with a mixer that outputs 0 and all CMS weights 0 the block must return x "
                                 "unchanged, but you returned x + norm2(x): add the CMS's increment "
                                 "CMS(u) - u, not CMS(u) (the block already carries u through the residual).")
        assert_close(got, x, what="the output with a zero mixer and zero CMS weights (must be x itself)")
        expected = block(x)
        got = fn(x.clone(), block.mixer, block.norm1, block.norm2, weights)
        if torch.is_tensor(got) and got.shape == x.shape:
            swapped = hope_block_reference(x, block.mixer, block.norm1, block.norm2, weights[::-1])
            if torch.allclose(got, swapped, atol=1e-9) and not torch.allclose(swapped, expected, atol=1e-9):
                raise GradingFailure("the CMS levels are applied in the wrong order: level 1 (the first pair "
                                     "in cms_weights) reads u first, the last level reads the chain's output.")
        assert_close(got, expected, what="the HOPE block's output (compared with nlteach's hope-static-cms block)",
                     rtol=1e-9, atol=1e-10)
