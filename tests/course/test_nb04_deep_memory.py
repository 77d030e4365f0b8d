"""nlteach.course.nb04_deep_memory: the exercise references, the rule stream and its token-loop
trace, the capacity experiment, the chunk-size trade-off and the drawings of notebook 04."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from nlteach import deep_memory as dm
from nlteach.course import nb04_deep_memory as course
from nlteach.course.widgets import render
from nlteach.deep_memory import titans_naive


def rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt().clamp_min(1e-300)).item()


# --- exercise references --------------------------------------------------------------------------


def test_momentum_decay_recurrence_reference():
    g = torch.Generator().manual_seed(2)
    T = 6
    W0, S0 = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    grads = torch.randn(T, 3, 4, generator=g)
    th, et, al = torch.rand(T, generator=g), torch.rand(T, generator=g), torch.rand(T, generator=g)
    W, S = course.momentum_decay_recurrence(W0, S0, grads, th, et, al)
    # by hand, step 2
    S1 = et[0] * S0 - th[0] * grads[0]
    W1 = (1 - al[0]) * W0 + S1
    S2 = et[1] * S1 - th[1] * grads[1]
    assert torch.allclose(S[1], S2) and torch.allclose(W[1], (1 - al[1]) * W1 + S2)


def test_dual_form_chunk_linear_matches_naive():
    g = torch.Generator().manual_seed(4)
    C, d = 9, 5

    def rnd(*s):
        return torch.randn(*s, generator=g, dtype=torch.float64)

    def uni(lo, hi):
        return lo + (hi - lo) * torch.rand(C, generator=g, dtype=torch.float64)

    q, k, v = F.normalize(rnd(C, d), dim=-1), F.normalize(rnd(C, d), dim=-1), rnd(C, d)
    theta, eta, alpha = uni(0.05, 0.5), uni(0.0, 0.95), uni(0.0, 0.3)
    W0, S0 = 0.7 * rnd(d, d) / math.sqrt(d), 0.1 * rnd(d, d)
    lead = (None, None)
    o_ref = titans_naive(q[lead], k[lead], v[lead], theta[lead], eta[lead], alpha[lead], (W0[lead],),
                         chunk_size=C, momentum_state=(S0[lead],))[0][0, 0]
    o = course.dual_form_chunk_linear(q, k, v, W0, S0, theta, eta, alpha)
    assert rel_rms(o, o_ref) < 1e-12


# --- experiments and figures ----------------------------------------------------------------------


def test_memory_trace_surprise_matches_chunked_surprise():
    s = course.rule_stream(40, 6, p_break=0.1, switch_at=20, seed=0, dtype=torch.float64)
    assert s["broken"].any() and not s["broken"][:10].any()
    ok = ~s["broken"]
    assert torch.allclose(s["v"][:20][ok[:20]], (s["k"][:20] @ s["R"][0].T)[ok[:20]])
    g = torch.Generator().manual_seed(0)
    params = (torch.randn(1, 1, 12, 6, generator=g, dtype=torch.float64) / 6**0.5,
              torch.zeros(1, 1, 6, 12, dtype=torch.float64))
    for chunk in (1, 4):
        tr = course.memory_trace(s["k"], s["v"], 0.2, 0.5, 0.01, params, chunk_size=chunk)
        sur = dm.titans_surprise(s["k"][None, None], s["v"][None, None], 0.2, 0.5, 0.01, params, chunk_size=chunk)
        assert torch.isfinite(sur).all() and sur.max() < 10
        assert torch.allclose(torch.as_tensor(tr["surprise"], dtype=torch.float64), sur[0, 0].float().double(), rtol=1e-5)
    # the first write: error before it is ||M_0(k_0) - v_0|| with the initial weights
    e0 = (dm.memory_read(params, s["k"][None, None, :1])[0, 0, 0] - s["v"][0]).norm()
    assert abs(tr["error"][0] - e0.item()) < 1e-5


def test_surprise_is_larger_on_rule_breaking_pairs():
    r = course.gate_demo(0.3, 0.0, 0.0, 1, T=200)
    brk = r["broken"].numpy()
    assert brk.sum() >= 2
    assert r["surprise"][brk].mean() > 2 * float(torch.as_tensor(r["surprise"][~brk]).median())


def test_capacity_experiment_linear_memory_hits_the_least_squares_floor():
    res = course.capacity_experiment([4, 24], d=8, hidden=16, epochs=12, seeds=2, lr=0.3, momentum=0.5, chunk_size=2)
    lin = torch.tensor(res["linear"]).mean(1)
    floor = torch.tensor(res["linear_floor"]).mean(1)
    assert lin[0] < 0.05  # N < d: stored
    assert floor[1] > 0.3 and lin[1] >= floor[1] - 1e-6  # N > d: no matrix can do better


def test_draw_functions_render():
    fig = render(course.draw_gates, {"theta": 0.3, "eta": 0.5, "alpha": 0.01, "chunk_size": 4})
    assert len(fig.axes) == 2 and len(fig.axes[1].lines) >= 1
    a = fig.axes[1].lines[0].get_ydata()
    b = render(course.draw_gates, {"theta": 0.3, "eta": 0.5, "alpha": 0.05, "chunk_size": 4}).axes[1].lines[0].get_ydata()
    assert not (a == b).all()
    cap = {"n_pairs": [4, 8], "linear": [[0.1, 0.2], [0.5, 0.6]], "mlp": [[0.0, 0.1], [0.2, 0.3]],
           "linear_floor": [[0.0, 0.0], [0.4, 0.5]], "d": 4, "hidden": 16, "epochs": 3}
    assert len(render(course.draw_capacity, {"result": cap}).axes) == 1
    rows = [{"chunk_size": c, "us_per_token": 10.0 / c, "error_mean": {0.1: 0.5, 0.3: e},
             "error_per_seq": {0.1: [0.5, 0.5], 0.3: [e, e]}} for c, e in ((1, 0.4), (4, float("nan")))]
    fig = render(course.draw_chunk_tradeoff, {"rows": rows})
    assert len(fig.axes) == 2


def test_chunk_tradeoff_marks_divergence(monkeypatch):
    monkeypatch.setattr(course, "measure", lambda fn, **kw: (fn(), 1e-3)[1])  # no timing in tests
    rows = course.chunk_tradeoff([1, 64], B=1, T=64, d=4, hidden=8, thetas=(0.05, 3.0), repeat=1)
    assert [r["chunk_size"] for r in rows] == [1, 64]
    assert 0 < rows[0]["error_mean"][0.05] < 4
    assert math.isnan(rows[1]["error_mean"][3.0])
    text = course.format_chunk_tradeoff(rows)
    assert "nan" not in text and "theta=3.0: diverged" in text and "blew up" in text.splitlines()[-1]
    stable = [{"chunk_size": 4, "us_per_token": 1.0, "error_mean": {0.05: 0.5}}]
    assert course.format_chunk_tradeoff(stable).splitlines() == [
        "chunk    4:       1.0 us/token   next-pair error theta=0.05: 0.500"]
