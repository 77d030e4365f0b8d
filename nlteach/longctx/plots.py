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
    """Accuracy vs context length, one colour per name: a line through the mean over seeds and one
    point per seed (so that seeds that disagree, a bimodal result, stay visible; the points of the
    names are shifted sideways a little so that they do not hide each other). A dotted vertical line
    marks the longest training length (to its right: length generalization), a grey dashed line the
    chance level (:attr:`nlteach.longctx.tasks.Task.chance`, as recorded in the results)."""
    if not results_by_name:
        raise ValueError("results_by_name is empty; pass {name: results}.")
    ax = ax if ax is not None else fig.add_subplot(1, 1, 1)
    train_max, chance = set(), set()
    k = len(results_by_name)
    for i, (name, res) in enumerate(results_by_name.items()):
        lengths, acc = accuracy_table(res)
        mu = np.nanmean(acc, 0) if np.isfinite(acc).any() else acc.mean(0)
        n = acc.shape[0]
        ax.plot(lengths, mu, marker="o", ms=3, color=f"C{i}", label=f"{name} ({n} seed{'s' * (n > 1)})")
        if n > 1:
            shift = 2.0 ** (0.06 * (i - (k - 1) / 2))  # a sideways offset on the log-2 axis, per name
            xs = np.repeat(np.asarray(lengths, dtype=float)[None, :] * shift, n, 0)
            ax.scatter(xs.ravel(), acc.ravel(), s=9, color=f"C{i}", alpha=0.55, linewidths=0, zorder=3)
        s = res.get("summary", {})
        if "train_max_length" in s:
            train_max.add(s["train_max_length"])
        if "chance" in s:
            chance.add(s["chance"])
    for L in train_max:
        ax.axvline(L, color="gray", ls=":", lw=1)
    for c in sorted(chance):
        ax.axhline(c, color="gray", ls="--", lw=0.8)
        ax.annotate(f"chance {c:.2g}", (0.01, c), xycoords=("axes fraction", "data"), xytext=(0, 2),
                    textcoords="offset points", fontsize=6, color="gray")
    ticks = sorted({L for res in results_by_name.values() for L in accuracy_table(res)[0]})
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.minorticks_off()
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


def draw_grid(fig: Figure, results_by_task: dict[str, dict[str, dict[str, Any]]], ncols: int = 3,
              legend_everywhere: bool = False) -> None:
    """One panel per task (``{task: {name: results}}``), e.g. the six formal languages. The legend is
    in the first panel only (the same runs everywhere) unless ``legend_everywhere``."""
    if not results_by_task:
        raise ValueError("results_by_task is empty.")
    k = len(results_by_task)
    rows = (k + ncols - 1) // ncols
    axes = np.atleast_1d(fig.subplots(rows, min(ncols, k), sharey=True, squeeze=False)).ravel()
    for ax, (task, res) in zip(axes, results_by_task.items(), strict=False):
        draw_accuracy(fig, res, ax=ax, title=task, legend=legend_everywhere or ax is axes[0])
        ax.set_xlabel("length", fontsize=8)
    for ax in axes[k:]:
        ax.set_visible(False)


def save_accuracy_figure(results_by_name: dict[str, dict[str, Any]], path: str | Path) -> None:
    fig = Figure(figsize=(5.5, 3.6), layout="constrained")
    draw_accuracy(fig, results_by_name)
    fig.savefig(path, dpi=100)


def config_periods(config: dict[str, Any]) -> tuple[int, ...]:
    """The CMS periods of a results file's ``config``: ``arch.cms_periods``, or the top-level key of
    files written before the model's settings were nested under ``arch``; ``()`` when there is none."""
    return tuple((config.get("arch") or config).get("cms_periods", ()))


def _periods(res: dict[str, Any]) -> tuple[int, ...]:
    return config_periods(res["config"])


def draw_cms_study(fig: Figure, results_by_name: dict[str, dict[str, Any]],
                   levels: tuple[int, ...] = (1, 4, 16, 64), lowest_prefix: tuple[int, ...] = (1, 4),
                   multi_frequency: bool | None = None) -> None:
    """Two panels, after the paper's Fig. 7 (our runs, not its numbers): accuracy against the
    number of CMS levels (variants whose periods are ``levels[:k]``), and against the lowest
    frequency (the longest period) of the variants whose periods start with ``lowest_prefix`` and
    have one more level. One line per evaluation length; error bars: std over seeds (none for one
    seed); points: the seeds themselves. The periods are the recorded ``cms_periods``: tokens for the in-context CMS, optimizer
    steps for the runs made before it (the defaults ``levels``, ``lowest_prefix`` are those of the
    committed study). Only runs with one outer training schedule are used: ``multi_frequency``
    (None: that of the first run; files that do not record it were multi-frequency)."""
    def multi_of(r: dict[str, Any]) -> bool:
        return bool(r["config"].get("multi_frequency", True))

    if multi_frequency is None and results_by_name:
        multi_frequency = multi_of(next(iter(results_by_name.values())))
    multi = {n: r for n, r in results_by_name.items() if multi_of(r) == multi_frequency}
    series_a = sorted(((len(_periods(r)), r) for r in multi.values()
                       if _periods(r) == tuple(levels[:len(_periods(r))])), key=lambda t: t[0])
    k = len(lowest_prefix) + 1
    series_b = sorted(((_periods(r)[-1], r) for r in multi.values()
                       if len(_periods(r)) == k and _periods(r)[:-1] == tuple(lowest_prefix)), key=lambda t: t[0])
    if not series_a and not series_b:
        raise ValueError("no runs match the CMS-level or lowest-frequency series; check the variants' cms_periods.")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, series, xlabel, log in ((axes[0], series_a, "number of CMS levels (periods " + ", ".join(map(str, levels)) + ")", False),
                                    (axes[1], series_b, f"longest period (levels {lowest_prefix} + one)", True)):
        if not series:
            ax.set_visible(False)
            continue
        lengths = sorted(int(L) for L in series[0][1]["summary"]["accuracy"])
        for j, L in enumerate(lengths):
            xs = [x for x, _ in series]
            acc = [r["summary"]["accuracy"][str(L)] for _, r in series]
            train_max = series[0][1]["summary"].get("train_max_length", L)
            spread = np.nan_to_num([a["std"] for a in acc])  # one seed: no spread (std NaN)
            ax.errorbar(xs, [a["mean"] for a in acc], yerr=spread, marker="o", ms=3, capsize=2,
                        color=f"C{j}", label=f"length {L}{'*' if L > train_max else ''}")
            off = j - (len(lengths) - 1) / 2  # each length's seeds a little to the side, so a failed one shows
            for x, (_, r) in zip(xs, series, strict=True):
                seeds = [p["accuracy"][str(L)] for p in r["per_seed"]]
                px = x * 2.0 ** (0.05 * off) if log else x + 0.05 * off
                ax.scatter([px] * len(seeds), seeds, s=14, marker="x", color=f"C{j}", alpha=0.8, linewidths=1,
                           zorder=3)
        if log:
            ax.set_xscale("log", base=2)
        ax.set_xticks([x for x, _ in series])
        ax.set_xticklabels([str(x) for x, _ in series])
        ax.set_xlabel(xlabel, fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (line: mean over seeds; x: each seed)")
    axes[0].set_ylim(-0.02, 1.02)
    (axes[0] if series_a else axes[1]).legend(fontsize=7)
