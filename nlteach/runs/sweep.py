"""The one rule every hyperparameter sweep of the course uses to choose a value on a grid.

A sweep trains one run per value of a grid (on validation data, with a seed no reported run uses)
and keeps the value of lowest loss. When that value sits on an edge of the grid, the best value
may lie beyond it, so the grid grows on that side by one more value (``factor`` times the largest,
or the smallest divided by ``factor``) and the choice is made again, a bounded number of times.
A run that diverged (NaN or inf) loses to every finite one; when every value diverged, the next
value to try is below the smallest.

Used by the language-model comparison (:mod:`nlteach.experiments.lm_comparison`, factor 2) and the
optimizer comparison (:mod:`nlteach.experiments.optimizers`, factor 3).
"""

from __future__ import annotations

import math
from collections.abc import Mapping


def choose_on_grid(scores: Mapping[float, float], *, factor: float = 2.0) -> tuple[float, float | None]:
    """``(best, extra)``: the grid value of lowest score (a NaN or inf score loses) and the value to
    add when ``best`` sits on an edge of the grid (``factor`` times the largest value, or the
    smallest divided by ``factor``; ``None`` when ``best`` is inside the grid). ``scores`` maps each
    value of the grid to its loss; every value must be positive (a learning rate, a penalty weight)."""
    if not scores:
        raise ValueError("scores must hold at least one value, got an empty mapping.")
    if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 1):
        raise ValueError(f"factor must be a finite number > 1, got {factor!r}.")
    bad = [v for v in scores if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0)]
    if bad:
        raise ValueError(f"scores: every grid value must be a positive finite number, got {bad!r}.")
    finite = {v: s for v, s in scores.items() if math.isfinite(s)}
    if not finite:  # every value diverged: try a smaller one
        lowest = min(scores)
        return lowest, lowest / factor
    best = min(finite, key=finite.__getitem__)
    if best == max(scores):
        return best, best * factor
    if best == min(scores):
        return best, best / factor
    return best, None
