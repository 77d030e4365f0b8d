"""nlteach.recipes: optimizers by name, AdamW's matrix-only decay, multi-frequency CMS levels and
their reduce rule, the warmup-cosine schedule and the per-level schedules."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from nlteach import optim as nl_optim
from nlteach import recipes
from nlteach.cms import MultiFrequencyOptimizer
from nlteach.models import ModelConfig, build_model, cms_level_parameters


def tiny(name: str = "hope", **kw) -> nn.Module:
    torch.manual_seed(0)
    return build_model(name, ModelConfig(vocab_size=11, dim=8, n_layers=2, n_heads=2, **kw))


def test_names_resolve_in_any_case():
    names = recipes.optimizer_names()
    assert names[:2] == ["adamw", "sgd"] and names[2:] == sorted(names[2:]) and "Muon" in names
    assert recipes.resolve_optimizer("AdamW") == "adamw" and recipes.resolve_optimizer("SGD") == "sgd"
    assert recipes.resolve_optimizer("muon") is nl_optim.Muon and recipes.resolve_optimizer("m3") is nl_optim.M3
    assert all(issubclass(c, torch.optim.Optimizer) for c in recipes.library_optimizers().values())
    with pytest.raises(ValueError, match="optimizer='lion' is not available; choose one of adamw, sgd, "):
        recipes.resolve_optimizer("lion")
    opt = recipes.make_optimizer("deltamomentum", nn.Linear(3, 2).parameters(), 0.1)
    assert isinstance(opt, nl_optim.DeltaMomentum) and opt.param_groups[0]["lr"] == 0.1


def test_adamw_decays_matrices_only_and_sgd_has_momentum():
    model = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 2, bias=False))
    opt = recipes.make_optimizer("adamw", model.parameters(), 1e-3, weight_decay=0.1)
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == recipes.ADAMW_BETAS == (0.9, 0.95)
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and all(p.dim() >= 2 for p in decayed["params"]) and len(decayed["params"]) == 2
    assert plain["weight_decay"] == 0.0 and all(p.dim() < 2 for p in plain["params"]) and len(plain["params"]) == 3
    only_matrices = recipes.make_optimizer("adamw", nn.Linear(3, 2, bias=False).parameters(), 1e-3, weight_decay=0.1)
    assert len(only_matrices.param_groups) == 1  # empty groups are left out
    assert recipes.make_optimizer("adamw", model.parameters(), 1e-3, betas=(0.9, 0.999)).defaults["betas"] == (0.9, 0.999)
    sgd = recipes.make_optimizer("sgd", model.parameters(), 0.1)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9
    frozen = nn.Linear(2, 2)
    frozen.bias.requires_grad_(False)
    assert len(recipes.make_optimizer("sgd", frozen.parameters(), 0.1).param_groups[0]["params"]) == 1
    for bad in (dict(lr=0.0), dict(lr=math.nan), dict(lr=0.1, weight_decay=-1.0)):
        with pytest.raises(ValueError):
            recipes.make_optimizer("adamw", model.parameters(), **bad)


def test_multi_frequency_levels_are_the_cms_levels_and_the_rest_steps_every_step():
    model = tiny()
    opt = recipes.make_model_optimizer("adamw", model, 1e-3, weight_decay=0.1, cms_multi_frequency=True)
    assert isinstance(opt, MultiFrequencyOptimizer) and opt.periods == (1, 4, 16) and opt.reduce == recipes.REDUCE == "mean"
    levels = [[p for g in o.param_groups for p in g["params"]] for o in opt.optimizers]
    ids = [id(p) for lv in levels for p in lv]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())  # every parameter, each once
    cms = cms_level_parameters(model)
    for lv, want in zip(levels[1:], cms[1:], strict=True):
        assert sorted(id(p) for p in lv) == sorted(id(p) for p in want)  # (AdamW groups: matrices, then vectors)
    assert {id(p) for p in cms[0]} < {id(p) for p in levels[0]}  # period 1: the fastest CMS level and the rest
    assert all(g["weight_decay"] == (0.1 if g["params"][0].dim() >= 2 else 0.0) for g in opt.param_groups)
    # the optimizer-step periods are their own knob, not the in-context (token) periods of the model
    two = tiny(cms_periods=(2, 8))
    assert recipes.make_model_optimizer("sgd", two, 0.1, cms_multi_frequency=True).periods == (1, 4)
    slow = recipes.make_model_optimizer("sgd", two, 0.1, cms_multi_frequency=True, step_periods=(2, 8))
    assert slow.periods == (1, 2, 8)  # no period-1 CMS level: the rest gets a level of its own
    with pytest.raises(ValueError, match=r"cms_step_periods must be 2 positive ints .* got \[1, 4, 16\]"):
        recipes.make_model_optimizer("sgd", two, 0.1, cms_multi_frequency=True, step_periods=(1, 4, 16))
    with pytest.raises(ValueError, match="no CMS"):
        recipes.make_model_optimizer("adamw", tiny("titans"), 1e-3, cms_multi_frequency=True)
    with pytest.raises(ValueError, match="cms_multi_frequency works with"):
        recipes.make_model_optimizer("muon", model, 1e-3, cms_multi_frequency=True)
    assert isinstance(recipes.make_model_optimizer("sgd", model, 0.1), torch.optim.SGD)


def test_a_slow_level_steps_on_the_mean_of_its_gradients():
    """Period 4, SGD: no change for 3 steps, then one step of lr x the MEAN gradient (not the sum)."""
    model = tiny()
    opt = recipes.make_model_optimizer("sgd", model, 0.1, cms_multi_frequency=True)
    p = cms_level_parameters(model)[1][0]  # a weight of the period-4 level
    start = p.detach().clone()
    for step in range(1, 5):
        for q in model.parameters():
            q.grad = torch.full_like(q, float(step))  # gradients 1, 2, 3, 4: mean 2.5, sum 10
        opt.step()
        if step < 4:
            assert torch.equal(p, start)
    torch.testing.assert_close(p.detach(), start - 0.1 * 2.5)  # SGD's first step: momentum buffer = gradient


def test_warmup_cosine_values():
    f = recipes.WarmupCosine(steps=100, warmup=10, min_ratio=0.1)
    assert [f(e) for e in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert f(10) == pytest.approx(1.0) and f(99) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)
    assert f(10 + 89 / 2) == pytest.approx(0.1 + 0.9 * 0.5)  # half way down the cosine
    assert all(f(e) >= f(e + 1) for e in range(10, 99))
    assert recipes.WarmupCosine(steps=5, warmup=0, min_ratio=0.0)(0) == 1.0


def test_level_schedules_follow_one_schedule_and_round_trip_their_state():
    def make():
        opt = recipes.make_model_optimizer("adamw", tiny(), 1e-2, cms_multi_frequency=True)
        return opt, recipes.make_scheduler(opt, recipes.WarmupCosine(20, 4, 0.1))

    opt, sched = make()
    assert isinstance(sched, recipes.LevelSchedules) and len(sched.schedulers) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a slow level that has not stepped yet is not worth a warning
        for _ in range(6):
            opt.step()
            sched.step()
    lrs = [g["lr"] for g in opt.param_groups]
    assert lrs == pytest.approx([1e-2 * recipes.WarmupCosine(20, 4, 0.1)(6)] * len(lrs))
    opt2, sched2 = make()
    sched2.load_state_dict(sched.state_dict())
    opt2.load_state_dict(opt.state_dict())
    assert [g["lr"] for g in opt2.param_groups] == lrs
    sched.step()
    sched2.step()
    assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]
    plain = recipes.make_optimizer("sgd", nn.Linear(2, 2).parameters(), 0.1)
    assert isinstance(recipes.make_scheduler(plain, lambda e: 1.0), torch.optim.lr_scheduler.LambdaLR)
    recipes.set_lr(opt, 0.5)
    assert all(g["lr"] == 0.5 for g in opt.param_groups)
