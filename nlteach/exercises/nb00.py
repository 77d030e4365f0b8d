"""Graders for notebook 00 (welcome)."""

from __future__ import annotations

import torch

from nlteach.course.nb00_welcome import ema
from nlteach.exercises import GradingFailure, assert_close, register


@register(
    "00.ema",
    name="ema",
    notebook="00_welcome",
    reference=ema,
    hint="an exponential moving average keeps one running value m, starting at 0: each new x_t pulls"
         " m a fraction (1 - beta) of the way towards x_t. Return the running value after every "
         "step, one per entry of x.",
    solution="start from m = 0 and apply m = beta * m + (1 - beta) * x_t for every x_t, keeping each m.",
    difficulty="easy",
    minutes=5,
)
def check_ema(fn) -> None:
    x = torch.tensor([1.0, 2.0, 0.0, -1.0, 4.0], dtype=torch.float64)
    for beta in (0.0, 0.5, 0.9):
        got = fn(x.clone(), beta)
        if got is None:
            raise GradingFailure("your function returned None; return the tensor of running averages.")
        assert_close(got, ema(x, beta), what=f"ema(x, beta={beta})")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(37, generator=g, dtype=torch.float64)
    assert_close(fn(x.clone(), 0.7), ema(x, 0.7), what="ema on a random stream of length 37")
