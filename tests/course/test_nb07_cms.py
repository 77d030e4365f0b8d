"""nlteach.course.nb07_cms: which levels change at each step."""

import torch

from nlteach.cms import CMS
from nlteach.course.nb07_cms import draw_level_changes, track_level_changes
from nlteach.course.widgets import render


def test_track_level_changes_sees_only_due_levels_move():
    torch.manual_seed(0)
    cms = CMS(4, 8, periods=(1, 2, 4))
    opt = cms.multi_frequency_optimizer(lr=0.05)
    ch = track_level_changes(cms, opt, 8, torch.Generator().manual_seed(0))
    moved = ch > 0
    expected = [[s % p == 0 for p in (1, 2, 4)] for s in range(1, 9)]
    assert moved.tolist() == expected
    fig = render(draw_level_changes, {"changes": ch, "periods": (1, 2, 4)})
    assert len(fig.axes[0].images) == 1
