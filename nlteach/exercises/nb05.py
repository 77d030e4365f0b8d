"""Graders for notebook 05 (levels and clocks)."""

from __future__ import annotations

from nlteach.course.nb05_levels import clock_due
from nlteach.exercises import GradingFailure, register


@register(
    "05.clock_due",
    name="clock_due",
    notebook="05_levels_and_clocks",
    reference=clock_due,
    hint="picture each level as a clock that ticks every periods[l] steps, with steps counted from "
         "1: which steps are ticks of a clock with period 4? Return one bool per level, in the order"
         " of periods.",
    solution="steps are counted from 1; level l updates at step s exactly when s % periods[l] == 0. "
         "Return one bool per level, in the order of periods.",
)
def check_clock_due(fn) -> None:
    cases = [((1, 4, 16, 64), s) for s in (1, 2, 3, 4, 8, 15, 16, 32, 48, 63, 64, 65, 128)]
    cases += [((3, 1, 5), s) for s in (1, 3, 5, 10, 15, 30)] + [((2,), 1), ((2,), 2), ((7, 7), 14)]
    for periods, s in cases:
        got = fn(periods, s)
        if got is None:
            raise GradingFailure("your function returned None; return a tuple with one bool per level.")
        try:
            got = tuple(bool(g) for g in got)
        except TypeError as e:
            raise GradingFailure(f"return a tuple of bools, one per level; got {got!r}.") from e
        expected = clock_due(periods, s)
        if len(got) != len(expected):
            raise GradingFailure(f"clock_due({periods}, {s}) returned {len(got)} values, expected one per "
                                 f"level ({len(expected)}).")
        if got != expected:
            wrong = [i for i, (a, b) in enumerate(zip(got, expected, strict=True)) if a != b]
            raise GradingFailure(
                f"clock_due({periods}, {s}) returned {got}, expected {expected}: level(s) {wrong} are "
                f"wrong (level l updates when {s} % periods[l] == 0).")
