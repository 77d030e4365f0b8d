"""Notebook 07 (Continuum Memory System): which levels' parameters change at each step and its heat
map, and the reference of the exercise 07.eq71. The sequential-tasks experiment of the same
notebook is :mod:`nlteach.experiments.cms_tasks`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from nlteach.cms import CMS, MultiFrequencyOptimizer, cms_in_context_naive


def track_level_changes(model: CMS, opt: MultiFrequencyOptimizer, n_steps: int,
                        generator: torch.Generator, batch_size: int = 16) -> np.ndarray:
    """Train ``model`` on random regression batches for ``n_steps`` and record, per step and level,
    the norm of the change of that level's parameters: an array ``[n_steps, n_levels]``."""
    levels = model.level_parameters()
    target = torch.randn(model.dim, model.dim, generator=generator) / math.sqrt(model.dim)
    changes = np.zeros((n_steps, len(levels)))
    for s in range(n_steps):
        before = [[p.detach().clone() for p in lvl] for lvl in levels]
        x = torch.randn(batch_size, model.dim, generator=generator)
        opt.zero_grad()
        ((model(x) - x @ target) ** 2).mean().backward()
        opt.step()
        for i, lvl in enumerate(levels):
            changes[s, i] = math.sqrt(sum(float((p.detach() - b).pow(2).sum()) for p, b in zip(lvl, before[i], strict=True)))
    return changes


def draw_level_changes(fig: Figure, changes: np.ndarray, periods: Sequence[int]) -> None:
    """Heat map of :func:`track_level_changes`: dark = the level's parameters moved at that step."""
    ax = fig.add_subplot()
    moved = changes > 0
    ax.imshow(moved.T, aspect="auto", cmap="Greys", interpolation="nearest",
              extent=(0.5, changes.shape[0] + 0.5, len(periods) - 0.5, -0.5))
    ax.set_yticks(range(len(periods)), [f"level {i} (C={p})" for i, p in enumerate(periods)])
    ax.set_xlabel("step")
    ax.set_title("which levels' parameters changed (black) at each step")


def in_context_block(x: torch.Tensor, targets: torch.Tensor, W_in: torch.Tensor, W_out: torch.Tensor,
                     period: int, lr: float) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """One block, one sequence: x, targets [T, D]; W_in [hidden, D]; W_out [D, hidden].

    Eq. 71 for a single level (the reference of exercise 07.eq71): returns ``(y [T, D],
    (W_in_T, W_out_T))``, the outputs and the weights after the last full chunk.
    """
    y, ((A, B),) = cms_in_context_naive(x[None], [(W_in, W_out)], (period,), lr, targets=targets[None])
    return y[0], (A[0], B[0])
