"""Notebook 05 (levels and clocks): the timeline widget, the "model as a set of nested
optimization problems" diagrams (SGD with momentum, a Transformer block, Titans), and the reference
of the exercise 05.clock_due. The clock itself is :class:`nlteach.clock.LevelClock`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from nlteach.clock import LevelClock

LEVEL_COLORS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3")


def draw_timeline(fig: Figure, step: int = 16, ratio: int = 4, n_levels: int = 4,
                  n_steps: int = 64) -> None:
    """The level-clock widget: periods ``ratio**l`` (1, 4, 16, 64 by default) over ``n_steps`` steps.

    Left: one row per level, a filled square at every step where it updates, the current ``step``
    marked. Right: how many gradients each level has accumulated at ``step`` (0 = it just updated).
    """
    periods = tuple(int(ratio) ** i for i in range(int(n_levels)))
    clock = LevelClock(periods)
    step = max(1, min(int(step), n_steps))
    tl = clock.timeline(n_steps)
    ax, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [4, 1]})
    for lvl in range(len(clock)):
        xs = np.nonzero(tl[lvl])[0] + 1
        ax.scatter(xs, np.full(len(xs), lvl), marker="s", s=22,
                   color=LEVEL_COLORS[lvl % len(LEVEL_COLORS)], label=f"period {periods[lvl]}")
    ax.axvline(step, color="k", lw=1, ls="--")
    ax.set_yticks(range(len(clock)), [f"level {i}\nC={p}" for i, p in enumerate(periods)])
    ax.set_ylim(len(clock) - 0.5, -0.5)
    ax.set_xlim(0.5, n_steps + 0.5)
    ax.set_xlabel("step s (counted from 1)")
    due = clock.due(step)
    updating = [str(i) for i, d in enumerate(due) if d]
    ax.set_title(f"step {step}: levels updating = {', '.join(updating) or 'none'}")
    pend = clock.pending(step)
    ax2.barh(range(len(clock)), pend, color=[LEVEL_COLORS[i % len(LEVEL_COLORS)] for i in range(len(clock))])
    ax2.set_ylim(len(clock) - 0.5, -0.5)
    ax2.set_yticks([])
    ax2.set_xlim(0, max(periods))
    ax2.set_title("gradients waiting")


# A model as a set of nested optimization problems: for each system, its levels from the slowest
# (outermost) to the fastest (innermost): (what is optimized, its objective, its context flow,
# how often it updates).
NESTED_SYSTEMS: dict[str, list[tuple[str, str, str, str]]] = {
    "sgd_momentum": [
        ("weights W", "task loss L(W; x)", "training examples x_t", "1 update / step"),
        ("momentum m", "<m, g> + decay: compress the gradients", "gradients g_t = dL/dW",
         "1 update / step, computed before W (so faster)"),
    ],
    "transformer": [
        ("projections Wq, Wk, Wv and MLP weights", "next-token loss (pre-training)",
         "the training corpus", "frozen after training (frequency 0 at test time)"),
        ("attention (its KV cache)", "non-parametric regression over the context (Nadaraya-Watson)",
         "the tokens of the sequence", "rewritten every token (frequency infinite)"),
    ],
    "titans": [
        ("projections, gates, initial memory M0", "next-token loss (pre-training)",
         "the training corpus", "frozen after training"),
        ("memory MLP M (test-time weights)", "1/2 ||M(k_t) - v_t||^2 (surprise)",
         "keys/values of the sequence", "1 update / token (gradients at the chunk-start weights)"),
        ("surprise momentum S", "compress the memory's gradients", "gradients of the memory loss",
         "1 update / token, computed before M (so faster)"),
    ],
}


def draw_nested_system(fig: Figure, system: str = "sgd_momentum") -> None:
    """Draw a model as nested optimization problems: one box per level, the slowest outermost."""
    if system not in NESTED_SYSTEMS:
        raise ValueError(f"system must be one of {sorted(NESTED_SYSTEMS)}, got {system!r}.")
    levels = NESTED_SYSTEMS[system]
    ax = fig.add_subplot()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    n = len(levels)
    step = 0.8 / n  # vertical room for each level's three lines of text
    for i, (what, objective, context, freq) in enumerate(levels):
        left, top, bottom = i * 0.035, 1 - i * step, i * 0.03
        color = LEVEL_COLORS[i % len(LEVEL_COLORS)]
        ax.add_patch(FancyBboxPatch((left, bottom), 1 - 2 * left, top - bottom, boxstyle="round,pad=0.005",
                                    fc=color, alpha=0.15, ec=color, lw=1.5))
        role = "slowest" if i == 0 else ("fastest" if i == n - 1 else "faster")
        ax.text(left + 0.012, top - 0.03, f"level {n - 1 - i} ({role}): {what}", fontsize=9,
                weight="bold", va="top")
        ax.text(left + 0.012, top - 0.03 - step * 0.3, f"objective: {objective}", fontsize=8, va="top")
        ax.text(left + 0.012, top - 0.03 - step * 0.55, f"context: {context};  {freq}", fontsize=8, va="top")
    ax.set_title({"sgd_momentum": "Training with SGD + momentum: a 2-level system",
                  "transformer": "A Transformer block: two frequencies, infinity and 0",
                  "titans": "Titans: a memory trained at test time inside a trained model"}[system],
                 fontsize=10)


def clock_due(periods: Sequence[int], s: int) -> tuple[bool, ...]:
    """The clock rule as a function (the reference of exercise 05.clock_due)."""
    return LevelClock(periods).due(s)
