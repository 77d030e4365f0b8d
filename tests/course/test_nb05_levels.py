"""nlteach.course.nb05_levels: the timeline widget and the nested-systems diagrams of notebook 05."""

import pytest

from nlteach.course.nb05_levels import NESTED_SYSTEMS, clock_due, draw_nested_system, draw_timeline
from nlteach.course.widgets import render


def test_clock_due_is_the_clock_rule():
    assert clock_due((1, 4, 16, 64), 16) == (True, True, True, False)


def test_draw_timeline_marks_updates_and_the_current_step():
    fig = render(draw_timeline, {"step": 16})
    ax = fig.axes[0]
    counts = [len(c.get_offsets()) for c in ax.collections]
    assert counts == [64, 16, 4, 1]
    assert "levels updating = 0, 1, 2" in ax.get_title()
    bars = [b.get_width() for b in fig.axes[1].patches]
    assert bars == [0, 0, 0, 16]
    fig2 = render(draw_timeline, {"step": 5, "ratio": 2, "n_levels": 3, "n_steps": 16})
    assert [len(c.get_offsets()) for c in fig2.axes[0].collections] == [16, 8, 4]
    assert "levels updating = 0" in fig2.axes[0].get_title()


@pytest.mark.parametrize("system", sorted(NESTED_SYSTEMS))
def test_draw_nested_system_has_one_box_per_level(system):
    fig = render(draw_nested_system, {"system": system}, figsize=(8, 4))
    assert len(fig.axes[0].patches) == len(NESTED_SYSTEMS[system])
    with pytest.raises(ValueError, match="system"):
        render(draw_nested_system, {"system": "lstm"})
