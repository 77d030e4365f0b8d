"""Figures for continual-learning results: accuracy-matrix heatmaps and average-accuracy curves.

Both take the dicts of :func:`nlteach.continual.run` (the results.json layout) and fill a
``matplotlib.figure.Figure``, so they are unit-tested without a display.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from nlteach.continual.metrics import average_accuracy

MATRICES = {"acc_matrix": "class-incremental", "acc_matrix_task": "task-incremental"}


def mean_matrix(results: dict[str, Any], matrix: str = "acc_matrix") -> np.ndarray:
    """The accuracy matrix ``matrix`` (``"acc_matrix"`` or ``"acc_matrix_task"``) averaged over seeds, [T, T]."""
    if matrix not in MATRICES:
        raise ValueError(f"matrix must be one of {list(MATRICES)}, got {matrix!r}.")
    missing = [p.get("seed") for p in results["per_seed"] if p.get(matrix) is None]
    if missing:
        raise ValueError(f"the results hold no {matrix!r} for seeds {missing} (a run made before the "
                         "task-incremental evaluation); nothing to draw.")
    return np.mean([np.asarray(p[matrix], dtype=float) for p in results["per_seed"]], axis=0)


def draw_acc_matrix(fig: Figure, results: dict[str, Any], ax: Any = None, title: str | None = None,
                    colorbar: bool = True, annotate: bool | None = None, matrix: str = "acc_matrix") -> None:
    """Heatmap of the mean accuracy matrix: row i = after learning task i, column j = task j.
    ``matrix="acc_matrix_task"``: the task-incremental one (the task given at test time)."""
    R = mean_matrix(results, matrix)
    T = R.shape[0]
    ax = ax if ax is not None else fig.add_subplot(1, 1, 1)
    im = ax.imshow(R, vmin=0.0, vmax=1.0, cmap="viridis")
    if annotate if annotate is not None else T <= 7:
        for i in range(T):
            for j in range(T):
                ax.text(j, i, f"{R[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if R[i, j] < 0.6 else "black")
    ax.set_xlabel("evaluated on task j")
    ax.set_ylabel("after learning task i")
    ticks = range(T) if T <= 8 else range(0, T, max(1, T // 5))
    ax.set_xticks(list(ticks))
    ax.set_yticks(list(ticks))
    cfg = results["config"]
    n = len(results["per_seed"])
    kind = "" if matrix == "acc_matrix" else f", {MATRICES[matrix]}"
    ax.set_title(title or f"{cfg['dataset']} / {cfg['method']} (mean of {n} seed{'s' * (n > 1)}{kind})", fontsize=9)
    if colorbar:
        fig.colorbar(im, ax=ax, shrink=0.8, label="accuracy")


def draw_both_matrices(fig: Figure, results: dict[str, Any]) -> None:
    """The class-incremental (left) and task-incremental (right) mean accuracy matrices of one run
    side by side (:func:`draw_acc_matrix`): how much of what the left one shows as forgotten is
    still there when the task is given."""
    for ax, matrix in zip(fig.subplots(1, 2), MATRICES, strict=True):
        draw_acc_matrix(fig, results, ax=ax, matrix=matrix, colorbar=False)


def draw_avg_acc(fig: Figure, results_by_method: dict[str, dict[str, Any]], ax: Any = None,
                 title: str | None = None) -> None:
    """Average accuracy over the tasks seen so far vs the number of tasks seen, mean +- std over seeds."""
    if not results_by_method:
        raise ValueError("results_by_method is empty; pass {method: results}.")
    ax = ax if ax is not None else fig.add_subplot(1, 1, 1)
    for name, res in results_by_method.items():
        curves = np.array([average_accuracy(p["acc_matrix"]) for p in res["per_seed"]])  # [seeds, T]
        x = np.arange(1, curves.shape[1] + 1)
        mu = curves.mean(0)
        sd = curves.std(0, ddof=1) if len(curves) > 1 else np.zeros_like(mu)
        (line,) = ax.plot(x, mu, marker="o", ms=3, label=name)
        ax.fill_between(x, mu - sd, mu + sd, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("tasks seen")
    ax.set_ylabel("average accuracy so far")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    dataset = next(iter(results_by_method.values()))["config"]["dataset"]
    ax.set_title(title or dataset, fontsize=9)


def draw_comparison(fig: Figure, results_by_method: dict[str, dict[str, Any]]) -> None:
    """One row: the average-accuracy curves of every method, then each method's heatmap."""
    k = len(results_by_method)
    axes = fig.subplots(1, k + 1, gridspec_kw={"width_ratios": [2.2] + [1] * k})
    draw_avg_acc(fig, results_by_method, ax=axes[0])
    for ax, (name, res) in zip(axes[1:], results_by_method.items(), strict=True):
        draw_acc_matrix(fig, res, ax=ax, title=name, colorbar=False, annotate=False)
        ax.set_xlabel("task j", fontsize=7)
        ax.set_ylabel("after task i", fontsize=7)
        ax.tick_params(labelsize=6)


def draw_trace(fig: Figure, traces: dict[str, dict[str, Any]], task_names: str = "ABCDEFGHIJ") -> None:
    """One panel per learner: test accuracy on each task during training (from ``trace_tasks``);
    dotted lines mark the task boundaries."""
    if not traces:
        raise ValueError("traces is empty; pass {method: trace_tasks(...)}.")
    axes = np.atleast_1d(fig.subplots(1, len(traces), sharey=True))
    for ax, (name, tr) in zip(axes, traces.items(), strict=True):
        acc = np.asarray(tr["acc"])  # [n_evals, n_tasks]
        for j in range(acc.shape[1]):
            start = tr["task_ends"][j - 1] if j > 0 else 0
            keep = np.asarray(tr["steps"]) > start  # a task's curve starts when it is learned
            ax.plot(np.asarray(tr["steps"])[keep], acc[keep, j], label=f"task {task_names[j]}")
        for e in tr["task_ends"][:-1]:
            ax.axvline(e, color="gray", ls=":", lw=1)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("training step")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy")
    axes[0].legend(fontsize=7)
