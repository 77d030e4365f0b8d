"""Graders for notebook 11 (long context and formal languages)."""

from __future__ import annotations

import numpy as np

from nlteach.exercises import GradingFailure, register
from nlteach.longctx.tasks import is_member


def is_shuffle2(s: list[int]) -> bool:
    """Reference: membership in Shuffle-2 (0 = '(', 1 = ')', 2 = '[', 3 = ']')."""
    return is_member("shuffle2", s)


_SHOW = "()[]"

# (string, member?, what a wrong answer on it usually means)
_CASES = [
    ([0, 1], True, "'()' is balanced."),
    ([0, 2, 1, 3], True, "'([)]' is in Shuffle-2: each bracket type is balanced on its own, and the two "
                         "types may interleave freely. A stack (Dyck-2 rules) wrongly rejects it."),
    ([2, 0, 3, 1], True, "'[(])' interleaves the two types; it is in Shuffle-2."),
    ([0, 3], False, "'(]' mixes the types: with one shared counter it looks balanced, but each type "
                    "needs its own counter."),
    ([1, 0], False, "')(' closes before opening: a counter must never go below zero."),
    ([3, 2, 0, 1], False, "'][()' closes '[' before it is opened."),
    ([0, 0, 1], False, "'(()' leaves one '(' open: both counters must end at zero."),
    ([], True, "the empty string is balanced."),
]


@register(
    "11.shuffle2",
    name="is_shuffle2",
    notebook="11_long_context",
    reference=is_shuffle2,
    hint="a shuffle of two bracket languages is valid when each bracket type on its own is balanced "
         "and never closes more than it has opened; the two types need not nest with each other.",
    solution="keep one counter per bracket type; an opening bracket adds 1 to its type's counter, a closing one "
         "subtracts 1; reject as soon as a counter goes below 0; accept if both are 0 at the end.",
)
def check_shuffle2(fn) -> None:
    for s, member, why in _CASES:
        got = fn(list(s))
        if got is None:
            raise GradingFailure("your function returned None; return True or False.")
        if bool(got) != member:
            shown = "".join(_SHOW[c] for c in s) or "(empty)"
            raise GradingFailure(f"is_shuffle2({s}) = {bool(got)} for '{shown}', expected {member}: {why}")
    rng = np.random.default_rng(11)
    for n in (2, 4, 6, 8, 12, 20):
        for _ in range(40):
            s = [int(c) for c in rng.integers(0, 4, size=n)]
            if bool(fn(list(s))) != is_shuffle2(s):
                shown = "".join(_SHOW[c] for c in s)
                raise GradingFailure(f"on the random string {s} ('{shown}') you returned {bool(fn(list(s)))}, "
                                     f"expected {is_shuffle2(s)}.")
