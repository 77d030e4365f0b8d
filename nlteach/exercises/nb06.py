"""Graders for notebook 06 (optimizers are memories)."""

from __future__ import annotations

import torch

from nlteach.course.nb06_optimizers import momentum_as_memory
from nlteach.exercises import GradingFailure, assert_close, register
from nlteach.optim import NS_COEFFS, newton_schulz_step


@register(
    "06.momentum_memory",
    name="momentum_as_memory",
    notebook="06_optimizers_are_memories",
    reference=momentum_as_memory,
    hint="momentum is a memory m trained by one gradient step per gradient g on the loss <m, g>, "
         "keeping a fraction beta of itself; after each step the weights W move by m. Both start at "
         "zero; return every W.",
    solution="keep two tensors, m and W, both starting at zero; for each g: m = beta * m - eta * g "
         "(one gradient step on L(m) = <m, g>, whose gradient is g), then W = W + m; stack the W's.",
)
def check_momentum_memory(fn) -> None:
    g = torch.Generator().manual_seed(6)
    grads = torch.randn(12, 3, generator=g, dtype=torch.float64)
    for beta, eta in ((0.0, 0.1), (0.9, 0.05), (0.5, 1.0)):
        got = fn(grads.clone(), beta, eta)
        if got is None:
            raise GradingFailure("your function returned None; return the stacked weights W_1 .. W_T.")
        got_t = torch.as_tensor(got)
        if got_t.shape == (12,):
            raise GradingFailure("you returned one vector; return all T weight vectors, shape [T, n].")
        assert_close(got, momentum_as_memory(grads, beta, eta),
                     what=f"momentum_as_memory(grads, beta={beta}, eta={eta})")
    # the same trajectory as torch.optim.SGD with momentum (memory m = -lr * SGD's buffer)
    W = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    sgd = torch.optim.SGD([W], lr=0.05, momentum=0.9)
    traj = []
    for gt in grads:
        W.grad = gt.clone()
        sgd.step()
        traj.append(W.detach().clone())
    assert_close(fn(grads.clone(), 0.9, 0.05), torch.stack(traj),
                 what="your weights compared with torch.optim.SGD(lr=0.05, momentum=0.9)")


@register(
    "06.newton_schulz_step",
    name="newton_schulz_step",
    notebook="06_optimizers_are_memories",
    reference=newton_schulz_step,
    hint="one Newton-Schulz step applies the odd polynomial a s + b s^3 + c s^5 to every singular "
         "value s of X. Write it with X and its Gram matrix X X^T (no SVD needed); it must work for "
         "a rectangular X.",
    solution="with A = X @ X.T, return a * X + (b * A + c * A @ A) @ X; it works for any [r, c] X.",
)
def check_newton_schulz_step(fn) -> None:
    g = torch.Generator().manual_seed(0)
    a, b, c = NS_COEFFS
    for shape in ((4, 7), (7, 4), (5, 5)):
        X = torch.randn(*shape, generator=g, dtype=torch.float64)
        X = X / X.norm()
        got = fn(X.clone(), a, b, c)
        if got is None:
            raise GradingFailure("your function returned None; return the new matrix.")
        got_t = torch.as_tensor(got, dtype=torch.float64)
        if got_t.shape != X.shape:
            raise GradingFailure(f"for X of shape {tuple(shape)} you returned shape {tuple(got_t.shape)}; "
                                 "the iteration keeps the shape of X.")
        s = torch.linalg.svdvals(X)
        want_s = (a * s + b * s**3 + c * s**5).abs().sort(descending=True).values
        got_s = torch.linalg.svdvals(got_t)
        if not torch.allclose(got_s, want_s, atol=1e-8):
            raise GradingFailure(
                f"for X of shape {tuple(shape)} the singular values of your result are "
                f"{[round(v, 4) for v in got_s.tolist()]}, expected each s to map to "
                f"a s + b s^3 + c s^5 = {[round(v, 4) for v in want_s.tolist()]}.")
        assert_close(got_t, newton_schulz_step(X, a, b, c), what=f"newton_schulz_step on a {shape} matrix")
    X = torch.randn(3, 6, generator=g, dtype=torch.float64) * 0.1
    assert_close(fn(X.clone(), 1.5, -0.5, 0.0), newton_schulz_step(X, 1.5, -0.5, 0.0),
                 what="newton_schulz_step with the cubic coefficients (a, b, c) = (1.5, -0.5, 0)")
