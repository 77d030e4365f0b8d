"""Continual-learning metrics computed from an accuracy matrix.

``R[i][j]`` is the accuracy on task j's test set after learning tasks 0..i (T x T, every entry
filled; entries above the diagonal are tasks not learned yet). With T tasks:

- average accuracy after task i: ``A_i = mean_{j <= i} R[i][j]``; the headline number is A_{T-1},
  the mean of the last row;
- backward transfer (Lopez-Paz & Ranzato, 2017): ``BWT = 1/(T-1) sum_{j < T-1} (R[T-1][j] - R[j][j])``:
  how much learning the later tasks changed each earlier task, measured from the moment it was
  learned (negative = forgetting);
- learning accuracy (Riemer et al., 2019): ``LA = mean_j R[j][j]``, the accuracy on each task
  right after learning it: how well the learner still learns new tasks (plasticity), the
  price some methods pay for forgetting less;
- forgetting (Chaudhry et al., 2018): ``F = 1/(T-1) sum_{j < T-1} (max_{j <= l < T-1} R[l][j] - R[T-1][j])``:
  the drop from the best accuracy a task ever had (after it was learned) to its final accuracy.
  The max starts at l = j: rows before task j was learned are not counted (in class-incremental
  streams they are 0 by construction; in domain-incremental ones they are chance-level guesses).

**Two evaluations of the same model** (:mod:`nlteach.continual.runner`): ``acc_matrix`` is the
class-incremental one (argmax over every class seen so far: the model must also tell the tasks
apart), ``acc_matrix_task`` the task-incremental one (argmax over the evaluated task's own classes:
the task is given, so the shared head's bias towards the newest classes cannot hurt). Every metric
above applies to either; :func:`summarize` reports both, the task-incremental ones prefixed
``task_`` (``docs/decisions.md#continual-task-il``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nlteach.runs.stats import summarize as summarize_values


def as_matrix(R: Any, *, name: str = "R") -> np.ndarray:
    """``R`` as a float64 [T, T] array; raises ValueError if it is not square, finite and in [0, 1]."""
    a = np.asarray(R, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 1:
        raise ValueError(f"{name} must be a square T x T accuracy matrix, got shape {a.shape}.")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or Inf; every entry must be filled.")
    if a.min() < 0.0 or a.max() > 1.0:
        raise ValueError(f"{name} holds accuracies in [0, 1], got values in [{a.min():.3g}, {a.max():.3g}].")
    return a


def _need_two(a: np.ndarray, what: str) -> None:
    if a.shape[0] < 2:
        raise ValueError(f"{what} needs at least 2 tasks, got a {a.shape[0]} x {a.shape[0]} matrix.")


def average_accuracy(R: Any) -> np.ndarray:
    """``[T]``: entry i is the mean accuracy over the tasks learned so far, ``mean_{j<=i} R[i][j]``."""
    a = as_matrix(R)
    return np.array([a[i, : i + 1].mean() for i in range(a.shape[0])])


def backward_transfer(R: Any) -> float:
    """``1/(T-1) sum_{j<T-1} (R[T-1][j] - R[j][j])``; negative means the old tasks were forgotten."""
    a = as_matrix(R)
    _need_two(a, "backward transfer")
    T = a.shape[0]
    return float(np.mean(a[T - 1, : T - 1] - np.diag(a)[: T - 1]))


def learning_accuracy(R: Any) -> float:
    """``mean_j R[j][j]``: accuracy on each task right after learning it (plasticity)."""
    return float(np.mean(np.diag(as_matrix(R))))


def forgetting(R: Any) -> float:
    """``1/(T-1) sum_{j<T-1} (max_{j<=l<T-1} R[l][j] - R[T-1][j])``; positive means forgotten.

    Always ``>= -BWT`` (the best accuracy of a task is at least its accuracy right after learning it).
    """
    a = as_matrix(R)
    _need_two(a, "forgetting")
    T = a.shape[0]
    drops = [a[j : T - 1, j].max() - a[T - 1, j] for j in range(T - 1)]
    return float(np.mean(drops))


MEASURES = ("avg_acc", "bwt", "forgetting", "learning_acc")
"""The measures of a ``summary``, in table order: final average accuracy, BWT, forgetting, learning accuracy."""


def measures(R: Any) -> dict[str, float]:
    """Every measure of :data:`MEASURES` for one accuracy matrix."""
    return {"avg_acc": float(average_accuracy(R)[-1]), "bwt": backward_transfer(R), "forgetting": forgetting(R),
            "learning_acc": learning_accuracy(R)}


def summarize(matrices: Sequence[Any], task_matrices: Sequence[Any] | None = None) -> dict[str, dict[str, Any]]:
    """The ``summary`` of results.json: final average accuracy, BWT, forgetting and learning accuracy
    (:data:`MEASURES`), each :func:`nlteach.runs.stats.summarize` over seeds (mean, std, n, ci95,
    dropped). With ``task_matrices`` (the task-incremental matrices of the same seeds) also the same
    measures of those, under ``task_avg_acc``, ``task_bwt``, ..."""
    if len(matrices) == 0:
        raise ValueError("summarize needs at least one accuracy matrix (one per seed).")
    if task_matrices is not None and len(task_matrices) != len(matrices):
        raise ValueError(f"task_matrices must hold one matrix per seed like matrices ({len(matrices)}), "
                         f"got {len(task_matrices)}.")
    out = {}
    for prefix, mats in (("", matrices), ("task_", task_matrices)):
        if mats is None:
            continue
        per = [measures(R) for R in mats]
        out |= {prefix + k: summarize_values([p[k] for p in per]) for k in MEASURES}
    return out
