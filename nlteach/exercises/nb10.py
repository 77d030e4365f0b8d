"""Graders for notebook 10 (forgetting experiments): backward transfer, and the empirical Fisher
that EWC weights its penalty with."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from nlteach.continual.metrics import backward_transfer
from nlteach.exercises import GradingFailure, assert_close, check_returned, diagnose, register, same

_CASES = [
    # 3 tasks, task 0 forgotten badly, task 1 a little
    [[0.95, 0.00, 0.00], [0.40, 0.90, 0.00], [0.10, 0.70, 0.92]],
    # 2 tasks, an improvement on the old task (positive BWT)
    [[0.60, 0.10], [0.75, 0.80]],
    # 4 tasks, mixed; the upper triangle is not zero (domain-incremental guesses)
    [[0.9, 0.2, 0.1, 0.15], [0.7, 0.85, 0.12, 0.1], [0.5, 0.8, 0.9, 0.11], [0.45, 0.6, 0.7, 0.95]],
]


def _wrong_answers(R: np.ndarray) -> dict[str, float]:
    T = R.shape[0]
    d = np.diag(R)
    return {
        "you divided by T instead of T - 1 (the last task has no backward transfer)":
            float((R[-1, : T - 1] - d[: T - 1]).sum() / T),
        "you included the last task in the mean (its term is always 0)": float(np.mean(R[-1] - d)),
        "the sign is reversed: BWT = final accuracy minus accuracy right after learning":
            float(np.mean(d[: T - 1] - R[-1, : T - 1])),
        "you compared with the best accuracy a task ever had (that is forgetting, not BWT)":
            float(np.mean(R[-1, : T - 1] - R[:, : T - 1].max(0))),
    }


@register(
    "10.bwt",
    name="backward_transfer",
    notebook="10_forgetting",
    reference=backward_transfer,
    hint="backward transfer compares how well each earlier task is done at the end with how well it "
         "was done just after it was learned; average that change over every task but the last.",
    solution="BWT = 1/(T-1) * sum over j = 0..T-2 of (R[T-1][j] - R[j][j]): the last row minus the "
         "diagonal, for every task but the last.",
    difficulty="easy",
    minutes=10,
)
def check_bwt(fn) -> None:
    for k, R in enumerate(_CASES):
        R = np.asarray(R)
        got = fn(R.copy())
        if got is None:
            raise GradingFailure("your function returned None; return one number.")
        try:
            got = float(got)
        except (TypeError, ValueError) as e:
            raise GradingFailure(f"return a single number (a float), got {type(got).__name__}.") from e
        want = backward_transfer(R)
        if abs(got - want) > 1e-9:
            for why, val in _wrong_answers(R).items():
                if abs(got - val) < 1e-9:
                    raise GradingFailure(f"on matrix #{k} ({R.shape[0]} tasks) you returned {got:.4f}: {why}.")
            raise GradingFailure(f"on matrix #{k} ({R.shape[0]} tasks) you returned {got:.4f}, "
                                 f"expected {want:.4f}.")
    rng = np.random.default_rng(0)
    for T in (2, 5, 9):
        R = rng.uniform(size=(T, T))
        got, want = float(fn(R.copy())), backward_transfer(R)
        if abs(got - want) > 1e-9:
            raise GradingFailure(f"on a random {T} x {T} matrix you returned {got:.6f}, expected {want:.6f}.")


# ----------------------------------------------------------------------- EWC's empirical Fisher
def empirical_fisher_reference(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The diagonal empirical Fisher of a linear softmax classifier (logits ``X W^T``), computed the
    way ``nlteach.continual.learners.EWC.end_task`` does for the whole network: per example, the
    gradient of ``log p(y_i | x_i)`` by autograd, squared, averaged over the examples.
    W: [C, n], X: [N, n], y: [N] (class indices) -> [C, n]."""
    weight = W.detach().clone().requires_grad_(True)
    fisher = torch.zeros_like(weight)
    for i in range(X.shape[0]):
        logp = F.log_softmax(X[i:i + 1] @ weight.T, dim=-1)
        (g,) = torch.autograd.grad(logp[0, y[i]], weight)
        fisher += g ** 2 / X.shape[0]
    return fisher


def _fisher_wrong(W, X, y) -> dict[str, torch.Tensor]:
    P = torch.softmax(X @ W.T, dim=-1)
    onehot = F.one_hot(y, W.shape[0]).to(W.dtype)
    G = (onehot - P)[:, :, None] * X[:, None, :]  # per-example gradients [N, C, n]
    pred = F.one_hot(P.argmax(-1), W.shape[0]).to(W.dtype)
    return {
        "you squared the mean gradient; the Fisher is the mean of the squared per-example gradients "
        "(the mean gradient is close to 0 at a minimum, the Fisher is not).": G.mean(0) ** 2,
        "you summed over the examples; the Fisher is the mean.": (G ** 2).sum(0),
        "your gradient misses the softmax's part: d log p(y|x) / dW = (e_y - p) x^T, the -p x^T term "
        "comes from the normalizer.": ((onehot[:, :, None] * X[:, None, :]) ** 2).mean(0),
        "you used the predicted class; the empirical Fisher takes the gradient at the true label y_i.":
            (((pred - P)[:, :, None] * X[:, None, :]) ** 2).mean(0),
    }


@register(
    "10.ewc_fisher",
    name="empirical_fisher",
    notebook="10_forgetting",
    reference=empirical_fisher_reference,
    hint="differentiate log p(y | x) = z_y - log sum_c exp(z_c) with z = W x by hand: one term from the "
         "true class's logit, one from the normalizer. The result for one example is an outer product; "
         "square it entry by entry and average over the examples (no autograd needed).",
    solution="P = softmax(X @ W.T); G = (one_hot(y) - P)[:, :, None] * X[:, None, :] (per-example "
             "gradients [N, C, n]); return (G ** 2).mean(0).",
    difficulty="medium",
    minutes=20,
    derivation=True,
)
def check_ewc_fisher(fn) -> None:
    g = torch.Generator().manual_seed(10)
    for N, C, n in ((6, 3, 4), (1, 2, 5), (9, 5, 2)):
        W = torch.randn(C, n, generator=g, dtype=torch.float64)
        X = torch.randn(N, n, generator=g, dtype=torch.float64)
        y = torch.randint(0, C, (N,), generator=g)
        got = check_returned(fn(W.clone(), X.clone(), y.clone()), "the diagonal Fisher, shaped like W [C, n]")
        ref = empirical_fisher_reference(W, X, y)
        where = f"(N={N} examples, {C} classes, {n} features)"
        if not same(got, ref):
            diagnose(got, _fisher_wrong(W, X, y), where=where)
        assert_close(got, ref, what=f"the Fisher {where}", rtol=1e-8, atol=1e-12)
