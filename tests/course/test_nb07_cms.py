"""nlteach.course.nb07_cms: which levels change at each step."""

import torch

from nlteach.cms import CMS, cms_in_context_naive
from nlteach.course.nb07_cms import draw_level_changes, in_context_block, track_level_changes
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


def test_in_context_block_is_one_level_of_eq71():
    g = torch.Generator().manual_seed(0)
    x, v = torch.randn(10, 4, generator=g), torch.randn(10, 4, generator=g)
    W_in, W_out = torch.randn(6, 4, generator=g), torch.randn(4, 6, generator=g)
    y, (A, B) = in_context_block(x, v, W_in, W_out, 3, 0.1)
    y_ref, ((A_ref, B_ref),) = cms_in_context_naive(x[None], [(W_in, W_out)], (3,), 0.1, targets=v[None])
    assert torch.equal(y, y_ref[0]) and torch.equal(A, A_ref[0]) and torch.equal(B, B_ref[0])
