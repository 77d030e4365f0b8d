"""Bad inputs that used to give a silent wrong result now raise an error naming the argument, what
came and what was expected (issue 22, item 5)."""

from __future__ import annotations

import argparse
import re

import pytest
import torch

from nlteach.clock import LevelClock
from nlteach.cms import cms_in_context_chunked, cms_in_context_naive
from nlteach.models import ModelConfig
from nlteach.optim import (
    DGD,
    M3,
    DeepMomentum,
    DeltaMomentum,
    MomentumMemory,
    Muon,
    PreconditionedMomentum,
)
from nlteach.runs.cli import nonneg_int, positive_int


@pytest.mark.parametrize("n", [-5, 2.5, 2.0, True, "3"])
def test_level_clock_refuses_a_bad_number_of_steps(n):
    clock = LevelClock((1, 4, 16))
    with pytest.raises(ValueError, match=r"n_steps must be an int >= 0.*got"):
        clock.count(n)
    with pytest.raises(ValueError, match=r"n_steps must be an int >= 0.*got"):
        clock.timeline(n)


def test_level_clock_counts_still_work():
    clock = LevelClock((1, 4))
    assert clock.count(0) == (0, 0) and clock.count(8) == (8, 2)
    assert clock.timeline(3).shape == (2, 3) and clock.timeline(0).shape == (2, 0)


@pytest.mark.parametrize("fn", [cms_in_context_naive, cms_in_context_chunked])
@pytest.mark.parametrize("lr", [-1.0, float("nan"), float("inf"), [0.1, -0.5]])
def test_cms_in_context_refuses_a_bad_lr(fn, lr):
    x = torch.randn(1, 8, 4)
    weights = [(0.1 * torch.randn(6, 4), 0.1 * torch.randn(4, 6)) for _ in range(2)]
    with pytest.raises(ValueError, match=r"lr\[\d\] must be finite and >= 0.*got"):
        fn(x, weights, (1, 2), lr, targets=x)


@pytest.mark.parametrize("fn", [cms_in_context_naive, cms_in_context_chunked])
def test_cms_in_context_refuses_a_negative_per_token_lr(fn):
    x = torch.randn(1, 8, 4)
    lr = torch.full((1, 8), 0.1)
    lr[0, 5] = -0.1
    with pytest.raises(ValueError, match=r"lr\[0\] must be finite and >= 0.*-0\.1.*per-token"):
        fn(x, [(0.1 * torch.randn(6, 4), 0.1 * torch.randn(4, 6))], (2,), lr, targets=x)
    y, _ = fn(x, [(0.1 * torch.randn(6, 4), 0.1 * torch.randn(4, 6))], (2,), lr.abs(), targets=x)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("cls", [MomentumMemory, PreconditionedMomentum, DeltaMomentum, DeepMomentum, Muon, M3, DGD])
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_optimizers_refuse_integer_parameters(cls, dtype):
    with pytest.raises(TypeError, match=rf"{cls.__name__}: params\[1\] .*dtype {dtype}.*floating-point"):
        cls([torch.zeros(3, 3, requires_grad=True), torch.zeros(3, 3, dtype=dtype)])


def test_optimizers_refuse_integer_parameters_in_a_later_group():
    opt = DeltaMomentum([torch.zeros(3, requires_grad=True)])
    with pytest.raises(TypeError, match=r"param group 1 has dtype torch.int64"):
        opt.add_param_group({"params": [torch.zeros(3, dtype=torch.int64)]})


@pytest.mark.parametrize("dim, n_heads", [(15, 2), (14, 2), (30, 4), (12, 4), (6, 4), (5, 2), (50, 6)])
def test_model_config_suggests_a_valid_dim(dim, n_heads):
    with pytest.raises(ValueError) as info:
        ModelConfig(dim=dim, n_heads=n_heads)
    suggested = [int(s) for s in re.findall(r"dim=(\d+)(?: or|\.$)", str(info.value))]
    assert suggested, str(info.value)
    for d in suggested:  # each suggestion is itself valid
        ModelConfig(dim=d, n_heads=n_heads)


@pytest.mark.parametrize("text, value", [("1e6", 1_000_000), ("2.5e3", 2500), ("1E2", 100), ("7", 7)])
def test_integer_options_accept_integral_values(text, value):
    assert positive_int(text) == value and nonneg_int(text) == value


@pytest.mark.parametrize("text", ["2.5e0", "2.5", "1.5e-1", "inf", "nan", "1e400", "abc", "-1", "0"])
def test_positive_int_refuses_fractions_and_non_numbers(text):
    with pytest.raises(argparse.ArgumentTypeError, match=rf"expected a positive integer, got '{text}'"):
        positive_int(text)


def test_nonneg_int_refuses_fractions():
    assert nonneg_int("0") == 0
    with pytest.raises(argparse.ArgumentTypeError, match="expected a non-negative integer, got '2.5e0'"):
        nonneg_int("2.5e0")
