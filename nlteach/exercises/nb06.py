"""Graders for notebook 06 (optimizers are memories)."""

from __future__ import annotations

import torch

from nlteach.course.nb06_optimizers import momentum_as_memory
from nlteach.exercises import GradingFailure, assert_close, check_returned, diagnose, register, same
from nlteach.optim import (
    NS_COEFFS,
    DeepMomentum,
    dgd_objective,
    dgd_step,
    dgd_step_batch,
    newton_schulz_step,
)


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


# ------------------------------------------------------------------ one inner step of deep momentum
def dmgd_inner_step_reference(params: tuple, params0: tuple, u: torch.Tensor, target: torch.Tensor,
                              inner_lr: float, retention: float) -> tuple:
    """The inner level of ``optim.DeepMomentum`` (Eq. 50): one gradient step on
    ``1/2 mean_i (m(u_i) - target_i)^2`` for ``m(u) = u . w + w2 . silu(W1 u + b1)``, from the
    retained state ``theta_0 + a (theta - theta_0)``. params, params0: (w [2], W1 [H, 2], b1 [H],
    w2 [H]); u: [N, 2]; target: [N]. Returns the new (w, W1, b1, w2)."""
    grads = DeepMomentum.inner_grads(u, target, *params)
    return tuple(p0 + retention * (p - p0) - inner_lr * g for p, p0, g in zip(params, params0, grads, strict=True))


def _dmgd_wrong(params, params0, u, target, inner_lr, a) -> dict[str, tuple]:
    w, W1, b1, w2 = params
    z = u @ W1.T + b1
    s = torch.sigmoid(z)
    h = z * s
    r = u @ w + h @ w2 - target
    def step(grads, keep=True):
        return tuple((p0 + a * (p - p0) if keep else p) - inner_lr * g
                     for p, p0, g in zip(params, params0, grads, strict=True))
    def grads_of(r_, dsilu):
        dz = r_[:, None] * w2[None, :] * dsilu
        return u.T @ r_, dz.T @ u, dz.sum(0), h.T @ r_
    N = u.shape[0]
    good = grads_of(r / N, s * (1 + z * (1 - s)))
    return {
        "you summed the squared errors; the inner loss is their mean over the N elements (divide by N).":
            step(grads_of(r, s * (1 + z * (1 - s)))),
        "silu's derivative is not sigmoid(z): silu'(z) = s (1 + z (1 - s)) with s = sigmoid(z).":
            step(grads_of(r / N, s)),
        "you stepped from the current weights without the retention: the step starts from "
        "theta_0 + a (theta - theta_0).": step(good, keep=False),
        "your W1 gradient leaves out w2: the error reaches the hidden layer through the output weights w2.":
            step((good[0], (r[:, None] / N * (s * (1 + z * (1 - s)))).T @ u,
                  (r[:, None] / N * (s * (1 + z * (1 - s)))).sum(0), good[3])),
    }


@register(
    "06.dmgd_inner",
    name="dmgd_inner_step",
    notebook="06_optimizers_are_memories",
    reference=dmgd_inner_step_reference,
    hint="backpropagate by hand through m(u) = u . w + w2 . silu(W1 u + b1): the residual of every element "
         "(divided by N for the mean) multiplies each parameter's local derivative, and the hidden layer "
         "gets it through w2 and silu's derivative. Then step from the retained weights, not the current ones.",
    solution="z = u @ W1.T + b1; s = sigmoid(z); h = z * s; r = (u @ w + h @ w2 - target) / N; "
             "dz = r[:, None] * w2 * s * (1 + z * (1 - s)); grads = (u.T @ r, dz.T @ u, dz.sum(0), h.T @ r); "
             "each new p = p0 + retention * (p - p0) - inner_lr * grad.",
    difficulty="hard",
    minutes=30,
    derivation=True,
)
def check_dmgd_inner(fn) -> None:
    g = torch.Generator().manual_seed(50)
    for N, H, lr, a in ((7, 4, 0.1, 0.9), (1, 3, 0.5, 1.0), (12, 2, 0.05, 0.5)):
        params = (torch.randn(2, generator=g, dtype=torch.float64), torch.randn(H, 2, generator=g, dtype=torch.float64),
                  torch.randn(H, generator=g, dtype=torch.float64), torch.randn(H, generator=g, dtype=torch.float64))
        params0 = tuple(p + 0.3 * torch.randn(p.shape, generator=g, dtype=torch.float64) for p in params)
        u = torch.randn(N, 2, generator=g, dtype=torch.float64)
        target = torch.randn(N, generator=g, dtype=torch.float64)
        got = check_returned(fn(tuple(p.clone() for p in params), tuple(p.clone() for p in params0), u.clone(),
                                target.clone(), lr, a), "the new (w, W1, b1, w2)")
        if not isinstance(got, tuple | list) or len(got) != 4:
            raise GradingFailure("return the four new parameters (w, W1, b1, w2) as a tuple.")
        ref = dmgd_inner_step_reference(params, params0, u, target, lr, a)
        where = f"(N={N}, hidden={H}, retention={a})"
        if not all(same(x, y) for x, y in zip(got, ref)):
            for why, wrong in _dmgd_wrong(params, params0, u, target, lr, a).items():
                if all(same(x, y) for x, y in zip(got, wrong)):
                    raise GradingFailure(f"{where} {why}")
        for name, x, y in zip(("w", "W1", "b1", "w2"), got, ref):
            assert_close(x, y, what=f"the new {name} {where}", rtol=1e-8, atol=1e-10)
