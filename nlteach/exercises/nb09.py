"""Graders for notebook 09 (HOPE)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nlteach import cms
from nlteach.exercises import GradingFailure, assert_close, check_returned, register
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
    difficulty="medium",
    minutes=15,
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


# ------------------------------------------------------------- the in-context CMS's normalized step
def cms_step_reference(u: torch.Tensor, W_in: torch.Tensor, W_out: torch.Tensor, eta: float, C: int) -> torch.Tensor:
    """The normalized in-context step of one CMS level at one token (``cms.cms_in_context_naive``
    with ``normalize=True``): ``eta / (C (1 + N))`` with ``N = ||a||^2 + ||u||^2 ||W_out D||_F^2``,
    ``h = W_in u``, ``a = silu(h)``, ``D = diag(silu'(h))``. u: [D], W_in: [hidden, D],
    W_out: [D, hidden] -> a 0-dim tensor."""
    h = W_in @ u
    eta_t = torch.as_tensor(eta, dtype=u.dtype).reshape(1)
    return cms._step(eta_t, C, W_out[None], F.silu(h)[None], u[None], cms.silu_grad(h)[None])[0]


def _step_variants(u, W_in, W_out, eta, C) -> dict[str, float]:
    h = W_in @ u
    a, sp = F.silu(h), cms.silu_grad(h)
    a2, u2 = float(a @ a), float(u @ u)
    fro = float(((W_out * sp) ** 2).sum())  # ||W_out D||_F^2
    return {
        "you left out the period C: the level applies the sum of C per-token steps at once, so each "
        "step is divided by C as well.": eta / (1 + a2 + u2 * fro),
        "your bound misses silu's derivative: the first matrix acts on the output through W_out D with "
        "D = diag(silu'(h)), so the norm is ||W_out D||_F, not ||W_out||_F.":
            eta / (C * (1 + a2 + u2 * float((W_out ** 2).sum()))),
        "you used silu(h) where the chain rule gives silu'(h) in D.":
            eta / (C * (1 + a2 + u2 * float(((W_out * a) ** 2).sum()))),
        "your N misses the second matrix's part ||a||^2: a step on W_out alone already moves the output "
        "by ||a||^2 times the error.": eta / (C * (1 + u2 * fro)),
        "your N misses the first matrix's part ||u||^2 ||W_out D||_F^2: a step on W_in moves the output "
        "too, through W_out.": eta / (C * (1 + a2)),
        "the norms in N are squared: the output moves by ||a||^2 e through W_out and by up to "
        "||u||^2 ||W_out D||^2 e through W_in.": eta / (C * (1 + a2 ** 0.5 + u2 ** 0.5 * fro ** 0.5)),
    }


@register(
    "09.cms_step",
    name="cms_normalized_step",
    notebook="09_hope",
    reference=cms_step_reference,
    hint="take one gradient step with error e on both matrices and ask how much the block's output at "
         "the same input changes, to first order: a matrix times e, one part from each matrix. Bound "
         "that matrix's norm: the W_out part gives a squared input norm; the W_in part goes through "
         "silu's derivative and W_out, bounded with a Frobenius norm. N is the sum of the two.",
    solution="h = W_in @ u; a = silu(h); D = silu'(h) (a vector); "
             "N = a @ a + (u @ u) * ((W_out * D) ** 2).sum(); return eta / (C * (1 + N)).",
    difficulty="hard",
    minutes=25,
    derivation=True,
)
def check_cms_step(fn) -> None:
    g = torch.Generator().manual_seed(9)
    for Dm, hidden, scale, eta, C in ((4, 6, 1.0, 0.5, 16), (3, 3, 3.0, 1.0, 1), (5, 2, 0.3, 0.2, 4),
                                      (2, 7, 10.0, 0.9, 64)):
        u = scale * torch.randn(Dm, generator=g, dtype=torch.float64)
        W_in = torch.randn(hidden, Dm, generator=g, dtype=torch.float64) / Dm ** 0.5
        W_out = torch.randn(Dm, hidden, generator=g, dtype=torch.float64) / hidden ** 0.5
        got = check_returned(fn(u.clone(), W_in.clone(), W_out.clone(), eta, C), "the step (one number)")
        try:
            got_f = float(got)
        except (TypeError, ValueError, RuntimeError) as e:
            raise GradingFailure(f"return one number (a float or a 0-dim tensor), got {type(got).__name__}.") from e
        want = float(cms_step_reference(u, W_in, W_out, eta, C))
        where = f"(D={Dm}, hidden={hidden}, ||u||={u.norm():.2f}, C={C})"
        if abs(got_f - want) > 1e-9 * max(1.0, abs(want)):
            for why, val in _step_variants(u, W_in, W_out, eta, C).items():
                if abs(got_f - val) <= 1e-9 * max(1.0, abs(val)):
                    raise GradingFailure(f"{where} {why}")
            raise GradingFailure(f"{where} you returned {got_f:.6g}, expected {want:.6g}.")
    # the point of the step: one token's update never overshoots its own error (factor in [0, 1))
    u = 5 * torch.randn(3, generator=g, dtype=torch.float64)
    W_in = torch.randn(4, 3, generator=g, dtype=torch.float64)
    W_out = torch.randn(3, 4, generator=g, dtype=torch.float64)
    assert_close(torch.tensor(float(fn(u, W_in, W_out, 1.0, 1)), dtype=torch.float64), cms_step_reference(u, W_in, W_out, 1.0, 1),
                 what="the step for a large input (||u|| about 9)", rtol=1e-9, atol=1e-12)
