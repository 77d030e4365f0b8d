"""nlteach.course.nb01_associative_memory: the one-pair writes, key generators, the capacity
experiment and the drawing functions."""

import numpy as np
import pytest
import torch

from nlteach.course import nb01_associative_memory as md
from nlteach.course.widgets import render


def test_writes_are_one_gradient_step_of_their_objective():
    g = torch.Generator().manual_seed(0)
    S = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    k, v = torch.randn(4, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)
    (g_dot,) = torch.autograd.grad(md.hebbian_loss(S, k, v), S)
    (g_l2,) = torch.autograd.grad(md.l2_loss(S, k, v), S)
    S = S.detach()
    assert torch.allclose(md.hebbian_write(S, k, v), S - g_dot)
    assert torch.allclose(md.delta_write(S, k, v, 0.3), S - 0.3 * g_l2)


def test_delta_write_with_beta_one_recalls_the_value():
    keys, values = md.make_pairs(5, 6, 4, "correlated", seed=0)
    S = md.write_all(keys, values, "delta")[-1]
    assert torch.allclose(keys[-1] @ S, values[-1])


@pytest.mark.parametrize("kind", md.KEY_KINDS)
def test_make_keys_unit_norm_and_kinds(kind):
    K = md.make_keys(20, 8, kind, generator=torch.Generator().manual_seed(1))
    assert K.shape == (20, 8) and torch.allclose(K.norm(dim=-1), torch.ones(20, dtype=K.dtype))
    gram = K[:8] @ K[:8].T
    if kind == "orthogonal":
        assert torch.allclose(gram, torch.eye(8, dtype=K.dtype), atol=1e-12)
    if kind == "correlated":
        off = gram[~torch.eye(8, dtype=torch.bool)]
        assert off.mean() > 0.3


def test_make_keys_rejects_unknown_kind():
    with pytest.raises(ValueError, match="kind must be one of"):
        md.make_keys(3, 3, "weird", generator=torch.Generator())


def test_orthogonal_keys_are_recalled_perfectly_up_to_d():
    res = md.capacity_experiment(16, [8, 16, 32], seeds=[0, 1], kinds=("orthogonal", "correlated"))
    for rule in md.RULES:
        assert np.allclose(res[(rule, "orthogonal")][:, :2], 0, atol=1e-20)
        assert (res[(rule, "orthogonal")][:, 2] > 0.1).all()
    # interference: the Hebbian memory does much worse than the delta rule on correlated keys
    assert (res[("hebbian", "correlated")][:, 1] > 2 * res[("delta", "correlated")][:, 1]).all()


def test_draw_capacity_and_memory_writes():
    res = md.capacity_experiment(4, [2, 4, 8], seeds=[0])
    fig = render(lambda fig: md.draw_capacity(fig, res, 4), {})
    assert len(fig.axes) == 2
    for n in (0, 1, 16):
        fig = render(md.draw_memory_writes, {"n_written": n, "keys": "random"})
        assert len(fig.axes) >= 3


def test_memory_writes_widget_changes_with_the_slider():
    a = render(md.draw_memory_writes, {"n_written": 2, "keys": "correlated"})
    b = render(md.draw_memory_writes, {"n_written": 9, "keys": "correlated"})
    img_a, img_b = (a.axes[0].images[0].get_array(), b.axes[0].images[0].get_array())
    assert not np.allclose(img_a, img_b)
    assert len(b.axes[2].patches) == 2 * 9 and len(a.axes[2].patches) == 2 * 2
    # the axes stay put as the slider moves: same error axis and colour scale, no bar clipped
    assert a.axes[2].get_ylim() == b.axes[2].get_ylim()
    assert a.axes[0].images[0].get_clim() == b.axes[0].images[0].get_clim()
    for fig in (a, b):
        assert max(p.get_height() for p in fig.axes[2].patches) < fig.axes[2].get_ylim()[1]
