"""Graders for notebook 06 (optimizers are memories)."""

from __future__ import annotations

import torch

from nlteach.course.nb06_optimizers import momentum_as_memory
from nlteach.exercises import GradingFailure, assert_close, check_returned, diagnose, register, same
from nlteach.optim import NS_COEFFS, dgd_objective, dgd_step, dgd_step_batch, newton_schulz_step


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
    difficulty="easy",
    minutes=10,
    derivation=True,
)
def check_momentum_memory(fn) -> None:
    g = torch.Generator().manual_seed(6)
    grads = torch.randn(12, 3, generator=g, dtype=torch.float64)
    for beta, eta in ((0.0, 0.1), (0.9, 0.05), (0.5, 1.0)):
        got = fn(grads.clone(), beta, eta)
        if got is None:
            raise GradingFailure("your function returned None; return the stacked weights W_1 .. W_T.")
        got_t = torch.as_tensor(got)
        if got_t.dim() == 1:
            raise GradingFailure("you returned one vector; return all T weight vectors, shape [T, n].")
        ref = momentum_as_memory(grads, beta, eta)
        if not same(got_t, ref):
            late = torch.cat([torch.zeros_like(ref[:1]), ref[:-1]])  # the weights one step behind
            diagnose(got_t, {"your weights lag one step behind: at each step write the memory first, then "
                             "let the weights read the memory just written (W_t = W_{t-1} + m_t).": late},
                     where=f"(beta={beta}, eta={eta})")
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
    difficulty="easy",
    minutes=10,
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


# ------------------------------------------------------------------ DGD on a batch, from its argmin
def _stationarity(W: torch.Tensor, W_t: torch.Tensor, X: torch.Tensor, U: torch.Tensor, lr: float) -> float:
    """The norm of the gradient of the batch objective at ``W`` (0 at the argmin)."""
    W = W.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(dgd_objective(W, W_t, X, U, lr), W)
    return grad.norm().item()


def _sequential(W, X, U, lr):
    for x, u in zip(X, U, strict=True):
        W = dgd_step(W, x, u, lr)
    return W


@register(
    "06.dgd_batch",
    name="dgd_batch_step",
    notebook="06_optimizers_are_memories",
    reference=dgd_step_batch,
    hint="set the gradient of the mean objective 1/(2N) sum_n ||W x_n - u_n||^2 + 1/(2 lr) ||W - W_t||^2 "
         "to zero, as above for one input: you get W times a symmetric positive definite in x in matrix "
         "equal to a right-hand side. Solve that linear system (no Sherman-Morrison needed, and no "
         "loop over the rows).",
    solution="with c = lr / N: W_new = (W_t + c U^T X) (I + c X^T X)^{-1}, e.g. "
             "torch.linalg.solve(I + c * X.T @ X, (W_t + c * U.T @ X).T).T.",
    difficulty="hard",
    minutes=25,
    derivation=True,
)
def check_dgd_batch(fn) -> None:
    g = torch.Generator().manual_seed(6)
    for N, n_out, n_in, lr in ((1, 3, 5, 0.8), (4, 3, 5, 0.5), (7, 4, 4, 2.0), (3, 2, 6, 0.1)):
        W = torch.randn(n_out, n_in, generator=g, dtype=torch.float64)
        X = 2 * torch.randn(N, n_in, generator=g, dtype=torch.float64)
        U = torch.randn(N, n_out, generator=g, dtype=torch.float64)
        got = check_returned(fn(W.clone(), X.clone(), U.clone(), lr), "the new weights W_new [out, in]")
        ref = dgd_step_batch(W, X, U, lr)
        where = f"(N={N} rows, W {n_out} x {n_in}, lr={lr})"
        if not same(got, ref):
            c = lr / N
            A = torch.eye(n_in, dtype=W.dtype) + c * X.T @ X
            wrong = {
                "you minimized the sum over the rows, not their mean: the batch objective averages the "
                "N squared errors (1/(2N) sum_n), so every X^T X and U^T X term carries lr / N.":
                    dgd_step_batch(W, X, U, lr * N),
                "you applied the one-input step (Eq. 57) to the rows one after the other; that minimizes "
                "a different objective at each row. The batch step is one exact argmin over all rows.":
                    _sequential(W, X, U, lr),
                "that is one plain gradient step on the objective, not its minimizer.":
                    W - c * (X @ W.T - U).T @ X,
            }
            if N > 1:
                wrong["you applied the one-input step to the rows one after the other, each with lr / N; "
                      "the batch step is one exact argmin over all rows."] = _sequential(W, X, U, c)
            if n_in == n_out:
                wrong["you multiplied by the inverse on the wrong side: the optimality condition is "
                      "W_new (I + c X^T X) = W_t + c U^T X, so the inverse goes on the right."] = \
                    torch.linalg.solve(A, W + c * U.T @ X)
            diagnose(got, wrong, where=where)
            got_t = torch.as_tensor(got, dtype=torch.float64)
            if got_t.shape == ref.shape and torch.isfinite(got_t).all():
                gnorm = _stationarity(got_t, W, X, U, lr)
                if gnorm > 1e-6:
                    raise GradingFailure(f"{where} your W_new is not the minimizer of the batch objective: "
                                         f"the objective's gradient at it has norm {gnorm:.3g} (0 at the "
                                         "argmin). Check the optimality condition term by term.")
        assert_close(got, ref, what=f"W_new {where}", rtol=1e-8, atol=1e-10)
