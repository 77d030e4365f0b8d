"""Level clocks: which level of a nested system updates at which step (notebook 05).

Nested Learning (Sec. 3, arXiv v1) orders the components of a model by **update frequency**
(Def. 2): the number of updates a component makes per unit of time, one unit being one update on
one data point. Components with the same frequency form a **level**; a higher level is slower.
"Level clock" is this course's name for the schedule that says which level updates when; in the
Continuum Memory System (Sec. 7) level l has a chunk size C^(l) and changes once every C^(l) steps.

The rule (the library contract): steps are counted from 1, and level l updates at step s when
``s % periods[l] == 0``. With periods (1, 4, 16, 64), step 16 updates levels 0, 1 and 2, and
step 64 updates all four.

Notebook 05's drawings (the timeline widget, the nested-optimization diagrams) are in
:mod:`nlteach.course.nb05_levels`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np


def check_periods(periods: Sequence[int], name: str = "periods") -> tuple[int, ...]:
    """Validate a sequence of level periods: a non-empty sequence of positive ints."""
    if isinstance(periods, int | str | bytes) or not isinstance(periods, Sequence | np.ndarray):
        raise TypeError(f"{name} must be a sequence of positive ints (e.g. (1, 4, 16, 64)), "
                        f"got {periods!r}.")
    out = []
    for i, p in enumerate(periods):
        if isinstance(p, bool) or not isinstance(p, int | np.integer):
            raise TypeError(f"{name}[{i}] must be a positive int, got {p!r} ({type(p).__name__}).")
        if p < 1:
            raise ValueError(f"{name}[{i}] must be a positive int (a level updates every "
                             f"{name}[{i}] steps), got {int(p)}.")
        out.append(int(p))
    if not out:
        raise ValueError(f"{name} must name at least one level, got an empty sequence.")
    return tuple(out)


def _check_step(s: int) -> int:
    if isinstance(s, bool) or not isinstance(s, int | np.integer) or s < 1:
        raise ValueError(f"step s must be an int >= 1 (steps are counted from 1), got {s!r}.")
    return int(s)


def _check_n_steps(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"n_steps must be an int >= 0 (a number of steps), got {n!r}.")
    return int(n)


@dataclass(frozen=True)
class LevelClock:
    """The update schedule of a nested system: level l updates at step s when s % periods[l] == 0.

    >>> clock = LevelClock((1, 4, 16, 64))
    >>> clock.due(16)
    (True, True, True, False)
    >>> clock.count(64)
    (64, 16, 4, 1)
    """

    periods: tuple[int, ...]

    def __init__(self, periods: Sequence[int]) -> None:
        object.__setattr__(self, "periods", check_periods(periods))

    def __len__(self) -> int:
        return len(self.periods)

    @property
    def n_levels(self) -> int:
        return len(self.periods)

    def due(self, s: int) -> tuple[bool, ...]:
        """Which levels update at step ``s`` (counted from 1)."""
        s = _check_step(s)
        return tuple(s % p == 0 for p in self.periods)

    def pending(self, s: int) -> tuple[int, ...]:
        """How many steps each level has accumulated after step ``s`` without updating yet.

        0 right after an update; a level of period p cycles 1, 2, ..., p - 1, 0.
        """
        s = _check_step(s)
        return tuple(s % p for p in self.periods)

    def ticks(self, n_steps: int, start: int = 1) -> Iterator[tuple[int, tuple[bool, ...]]]:
        """Iterate ``(s, due(s))`` for ``s = start, ..., start + n_steps - 1``."""
        for s in range(_check_step(start), start + n_steps):
            yield s, self.due(s)

    def timeline(self, n_steps: int, start: int = 1) -> np.ndarray:
        """Boolean array ``[n_levels, n_steps]``: entry [l, i] says level l updates at step start + i."""
        n_steps = _check_n_steps(n_steps)
        s = np.arange(_check_step(start), start + n_steps)
        return np.stack([s % p == 0 for p in self.periods]) if n_steps else np.zeros((len(self), 0), bool)

    def count(self, n_steps: int) -> tuple[int, ...]:
        """Number of updates each level makes during steps 1..n_steps."""
        n_steps = _check_n_steps(n_steps)
        return tuple(n_steps // p for p in self.periods)

    def frequencies(self) -> tuple[float, ...]:
        """Updates per step of each level (Def. 2's frequency, one step = one data point)."""
        return tuple(1.0 / p for p in self.periods)

    def order(self) -> tuple[int, ...]:
        """Level indices from the fastest (highest frequency) to the slowest; ties keep their order."""
        return tuple(sorted(range(len(self)), key=lambda i: self.periods[i]))

