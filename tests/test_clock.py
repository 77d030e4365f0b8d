import numpy as np
import pytest

from nlteach.clock import LevelClock


def test_clock_rule_matches_the_definition():
    periods = (1, 4, 16, 64)
    clock = LevelClock(periods)
    for s in range(1, 200):
        assert clock.due(s) == tuple(s % p == 0 for p in periods)
    assert clock.due(1) == (True, False, False, False)
    assert clock.due(4) == (True, True, False, False)
    assert clock.due(16) == (True, True, True, False)
    assert clock.due(64) == (True, True, True, True)
    assert clock.due(65) == (True, False, False, False)


def test_clock_with_unordered_and_non_geometric_periods():
    clock = LevelClock((3, 1, 5))
    assert clock.due(15) == (True, True, True)
    assert clock.due(10) == (False, True, True)
    assert clock.order() == (1, 0, 2)
    assert clock.frequencies() == (1 / 3, 1.0, 1 / 5)


def test_timeline_count_pending_and_ticks_agree_with_due():
    clock = LevelClock((1, 4, 16, 64))
    n = 130
    tl = clock.timeline(n)
    assert tl.shape == (4, n) and tl.dtype == bool
    for i, (s, due) in enumerate(clock.ticks(n)):
        assert s == i + 1 and tuple(tl[:, i]) == due == clock.due(s)
    assert tuple(tl.sum(axis=1)) == clock.count(n) == (130, 32, 8, 2)
    assert clock.pending(70) == (0, 2, 6, 6)
    tl2 = clock.timeline(10, start=61)
    assert tuple(tl2[:, 3]) == clock.due(64)
    assert clock.timeline(0).shape == (4, 0)


@pytest.mark.parametrize("bad,err,match", [
    ((1, 0, 4), ValueError, r"periods\[1\].*positive.*got 0"),
    ((1, -4), ValueError, r"periods\[1\]"),
    ((), ValueError, "at least one level"),
    ((1, 2.5), TypeError, r"periods\[1\].*2.5"),
    ((1, True), TypeError, r"periods\[1\]"),
    (4, TypeError, "sequence"),
])
def test_bad_periods_are_clear_errors(bad, err, match):
    with pytest.raises(err, match=match):
        LevelClock(bad)


def test_steps_count_from_one():
    clock = LevelClock((1, 2))
    with pytest.raises(ValueError, match="counted from 1"):
        clock.due(0)
    assert clock.due(np.int64(2)) == (True, True)
