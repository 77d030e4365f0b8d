"""nlteach.experiments.cms_tasks: notebook 07's sequential-tasks experiment, at tiny sizes."""

import pytest

from nlteach.course.widgets import render
from nlteach.experiments.cms_tasks import (
    ALL_ARMS,
    build_arm,
    draw_sequential_tasks,
    format_summary,
    quick_config,
    run_one,
    run_sequential_tasks,
    summarize,
)


def test_sequential_tasks_experiment_is_deterministic_and_well_formed():
    cfg = quick_config(dim=4, hidden=8, periods=(1, 4), n_tasks=2, steps_per_task=16, n_eval=64, eval_every=8)
    a, b = run_one("CMS, slower levels", cfg, seed=3), run_one("CMS, slower levels", cfg, seed=3)
    assert a == b
    assert len(a["loss_matrix"]) == 2 and all(len(r) == 2 for r in a["loss_matrix"])
    assert a["eval_steps"] == [8, 16, 24, 32] and len(a["curve"]) == 4
    assert a["curve"][1] == a["loss_matrix"][0] and a["curve"][3] == a["loss_matrix"][1]
    res = run_sequential_tasks(cfg, seeds=(0, 1), arms=ALL_ARMS)
    s = summarize(res)
    for arm in ALL_ARMS:
        runs = res["arms"][arm]
        forg = [r["loss_matrix"][-1][0] - r["loss_matrix"][0][0] for r in runs]
        assert abs(s[arm]["forgetting_A"]["mean"] - sum(forg) / 2) < 1e-12
        assert s[arm]["forgetting_A"]["std"] == pytest.approx(abs(forg[0] - forg[1]) / 2 ** 0.5)
    assert "single MLP" in format_summary(res) and "+-" in format_summary(res)
    fig = render(draw_sequential_tasks, {"results": res})
    assert [ln.get_label() for ln in fig.axes[0].lines[:len(ALL_ARMS)]] == list(ALL_ARMS)


def test_experiment_arms_have_equal_hidden_units_and_the_right_clocks():
    cfg = quick_config(dim=4, hidden=8)
    mlp, _ = build_arm("single MLP", cfg)
    eq, opt_eq = build_arm("CMS, equal rates", cfg)
    slow, opt_slow = build_arm("CMS, slower levels", cfg)
    assert sum(p.numel() for p in mlp.parameters()) == sum(p.numel() for p in eq.parameters())
    assert opt_eq.periods == (1, 1, 1, 1) and opt_slow.periods == cfg.periods
    with pytest.raises(ValueError, match="arm must be one of"):
        build_arm("transformer", cfg)
    with pytest.raises(ValueError, match="optimizer"):
        quick_config(optimizer="lbfgs")
