"""Figures for long-context results: accuracy against context length.

The functions take results dicts of :func:`nlteach.longctx.run` (the results.json layout), keyed
by a name (model or variant), and fill a ``matplotlib.figure.Figure``, so they are unit-tested
without a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure


def accuracy_table(results: dict[str, Any]) -> tuple[list[int], np.ndarray]:
    """``(lengths, acc[seeds, lengths])`` of one results dict (lengths sorted)."""
    lengths = sorted(int(L) for L in results["per_seed"][0]["accuracy"])
    acc = np.array([[p["accuracy"][str(L)] for L in lengths] for p in results["per_seed"]], dtype=float)
    return lengths, acc


def draw_accuracy(fig: Figure, results_by_name: dict[str, dict[str, Any]], ax: Any = None,
                  title: str | None = None, legend: bool = True) -> Any:
    """Accuracy vs context length, one line per name: mean over seeds, band = min..max over seeds.
    A dotted vertical line marks the longest training length (to its right: length
    generalization), a grey dashed line the chance level."""
    if not results_by_name:
        raise ValueError("results_by_name is empty; pass {name: results}.")
    ax = ax if ax is not None else fig.add_subplot(1, 1, 1)
    train_max, chance = set(), set()
    for i, (name, res) in enumerate(results_by_name.items()):
        lengths, acc = accuracy_table(res)
        mu = acc.mean(0)
        n = acc.shape[0]
        ax.plot(lengths, mu, marker="o", ms=3, color=f"C{i}", label=f"{name} ({n} seed{'s' * (n > 1)})")
        if n > 1:
            ax.fill_between(lengths, acc.min(0), acc.max(0), color=f"C{i}", alpha=0.15)
        s = res.get("summary", {})
        if "train_max_length" in s:
            train_max.add(s["train_max_length"])
        if "chance" in s:
            chance.add(s["chance"])
    for L in train_max:
        ax.axvline(L, color="gray", ls=":", lw=1)
    for c in chance:
        ax.axhline(c, color="gray", ls="--", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("context length (tokens; formal languages: string length)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=7)
    if title is None:
        cfg = next(iter(results_by_name.values()))["config"]
        title = f"{cfg['task']} ({cfg['preset']} preset)"
    ax.set_title(title, fontsize=9)
    return ax


def draw_grid(fig: Figure, results_by_task: dict[str, dict[str, dict[str, Any]]], ncols: int = 3) -> None:
    """One panel per task (``{task: {name: results}}``), e.g. the six formal languages."""
    if not results_by_task:
        raise ValueError("results_by_task is empty.")
    k = len(results_by_task)
    rows = (k + ncols - 1) // ncols
    axes = np.atleast_1d(fig.subplots(rows, min(ncols, k), sharey=True, squeeze=False)).ravel()
    for ax, (task, res) in zip(axes, results_by_task.items(), strict=False):
        draw_accuracy(fig, res, ax=ax, title=task, legend=ax is axes[0])
        ax.set_xlabel("length", fontsize=8)
    for ax in axes[k:]:
        ax.set_visible(False)


def save_accuracy_figure(results_by_name: dict[str, dict[str, Any]], path: str | Path) -> None:
    fig = Figure(figsize=(5.5, 3.6), layout="constrained")
    draw_accuracy(fig, results_by_name)
    fig.savefig(path, dpi=100)
