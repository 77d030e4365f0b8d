"""Graders for notebook 10 (forgetting experiments)."""

from __future__ import annotations

import numpy as np

from nlteach.continual.metrics import backward_transfer
from nlteach.exercises import GradingFailure, register

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
