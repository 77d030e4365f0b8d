"""nlteach.course.nb06_optimizers: the demos of notebook 06, at tiny sizes."""

import math

import numpy as np
import pytest
import torch

from nlteach.course import nb06_optimizers as E
from nlteach.course.widgets import render


def test_momentum_weights_and_widget_horizons():
    w = E.momentum_weights(0.9, 200)
    assert math.isclose(w.sum(), 1 - 0.9**200)
    fig = render(E.draw_momentum_memory, {"beta": 0.9})
    assert "50% in last 7, 99% in last 44" in fig.axes[0].get_title()
    fig2 = render(E.draw_momentum_memory, {"beta": 0.5})
    assert fig2.axes[0].get_title() != fig.axes[0].get_title()
    with pytest.raises(ValueError, match="beta"):
        E.momentum_weights(1.0, 3)


def test_momentum_as_memory_is_sgd_momentum():
    g = torch.randn(25, 4, dtype=torch.float64)
    W = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    sgd = torch.optim.SGD([W], lr=0.03, momentum=0.8)
    for gt in g:
        W.grad = gt.clone()
        sgd.step()
    assert torch.allclose(E.momentum_as_memory(g, 0.8, 0.03)[-1], W.detach(), atol=1e-12)


def test_adam_from_argmin_memories_is_torch_adam():
    g = torch.randn(30, 5, dtype=torch.float64)
    W = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    adam = torch.optim.Adam([W], lr=0.1, betas=(0.8, 0.95), eps=1e-8)
    traj = []
    for gt in g:
        W.grad = gt.clone()
        adam.step()
        traj.append(W.detach().clone())
    got = E.adam_from_memories(g, 0.1, 0.8, 0.95, 1e-8)
    assert (got - torch.stack(traj)).abs().max() < 1e-10


def test_orthogonal_tasks_momentum_forgets_and_the_slow_memory_keeps():
    res = E.orthogonal_tasks(steps_a=40, steps_b=80)
    s = {k: np.array(v) for k, v in res["share"].items()}
    sw = res["switch"]
    for name in ("momentum", "delta momentum"):
        assert s[name][sw - 1] > 0.99  # all of the memory is task A before the switch
        assert s[name][sw + 44] < 0.05  # ~44 steps later it is (almost) gone
    assert s["M3 slow (M2)"][-1] > 0.3  # the slow sum still remembers task A
    kept = res["kept"]
    assert kept["momentum"][sw + 44] < 0.02 and kept["delta momentum"][sw + 44] < 0.02  # ~0.9^45
    assert min(kept["M3 slow (M2)"][sw:]) > 0.99
    assert render(E.draw_orthogonal_tasks, {"result": res}).axes


def test_toy_psi_minimum_and_trajectories():
    z0 = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    E.psi(z0).backward()
    assert E.psi(z0).item() == 0 and z0.grad.abs().max() == 0
    runs = E.toy_trajectories(steps=40)
    assert set(runs) == {"momentum", "delta momentum", "DMGD", "Adam", "Muon", "M3"}
    for r in runs.values():
        assert r["path"].shape[1] == 2 and len(r["path"]) == len(r["loss"])
        assert np.isfinite(r["loss"]).all()
        assert r["loss"][-1] < r["loss"][0]
    fig = render(E.draw_toy, {"runs": runs}, figsize=(9, 4))
    assert len(fig.axes[0].lines) >= 6
    rows = E.toy_table([(10.0, 1.0, 2.0, 0.01)], steps=60)
    assert rows[0]["k"] == 10.0 and "momentum" in rows[0] and "delta (beta=0.1)" in rows[0]
    assert E.steps_to_reach(np.array([3.0, 1.0, 1e-4]), 1e-3) == 2
    assert E.steps_to_reach(np.array([3.0, 1.0]), 1e-3) is None


def test_raw_delta_momentum_blows_up_on_the_toy():
    out = E.delta_momentum_blowup(steps=15)
    raw, ours = out["raw Eq. 49"], out["normalized (course)"]
    assert not math.isfinite(raw[-1]) or raw[-1] > 1e10
    assert max(ours) < 100


def test_dgd_stream_gd_diverges_dgd_converges_literal_settles_at_half():
    res = E.dgd_stream(steps=150)
    err = res["error"]
    assert not math.isfinite(err["GD"][-1]) or err["GD"][-1] > 10
    assert err["DGD, u = v"][-1] < 0.05
    assert abs(err["DGD, u = -dL/dy (literal)"][-1] - 0.5) < 0.05
    assert render(E.draw_dgd_stream, {"result": res}).axes
