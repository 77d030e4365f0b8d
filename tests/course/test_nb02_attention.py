"""nlteach.course.nb02_attention: kernel regression, the readable chunked linear attention and the
fast-weight experiment."""

import numpy as np
import pytest
import torch

from nlteach import memory
from nlteach.course import nb02_attention as md
from nlteach.course.widgets import render


def test_kernel_regression_is_normalized_weighted_average():
    x, y = md.regression_data(15, seed=3)
    xq = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    w = torch.exp(-(xq[:, None] - x[None]) ** 2 / (2 * 0.1**2))
    assert torch.allclose(md.kernel_regression(xq, x, y, 0.1), (w @ y) / w.sum(-1))
    fig = render(md.draw_kernel_regression, {"bandwidth": 0.02})
    assert len(fig.axes) == 2


def test_chunked_linear_attention_loop_matches_naive():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(13, 3, generator=g, dtype=torch.float64) for _ in range(3))
    o_ref, S_ref = memory.linear_attention_naive(q[None, None], k[None, None], v[None, None])
    for C in (1, 4, 13, 20):
        o, S = md.chunked_linear_attention_loop(q, k, v, C)
        assert torch.allclose(o, o_ref[0, 0]) and torch.allclose(S, S_ref[0, 0])
    wrong = md.chunked_linear_attention_loop(q, k, v, 4, intra=lambda Q, K, V: (Q @ K.T) @ V)[0]
    assert not torch.allclose(wrong, o_ref[0, 0])


def test_fast_weight_training_runs_and_learns():
    for variant in md.LA_VARIANTS:
        losses = md.train_fast_weights(variant, d=4, T=8, steps=25, seed=0, batch=16)
        assert len(losses) == 25 and np.isfinite(losses).all()
        assert np.mean(losses[-5:]) < np.mean(losses[:5])
    with pytest.raises(ValueError, match="variant must be one of"):
        md.train_fast_weights("rnn", d=4, T=8, steps=1, seed=0)
