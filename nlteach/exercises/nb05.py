"""Graders for notebook 05 (levels and clocks): the clock rule, and the multi-frequency
accumulate-then-update rule (Eq. 71 across training steps)."""

from __future__ import annotations

import torch

from nlteach.cms import MultiFrequencyOptimizer
from nlteach.course.nb05_levels import clock_due
from nlteach.exercises import GradingFailure, assert_close, check_returned, register, same


@register(
    "05.clock_due",
    name="clock_due",
    notebook="05_levels_and_clocks",
    reference=clock_due,
    hint="picture each level as a clock that ticks every periods[l] steps, with steps counted from "
         "1: which steps are ticks of a clock with period 4? Return one bool per level, in the order"
         " of periods.",
    solution="steps are counted from 1; level l updates at step s exactly when s % periods[l] == 0. "
         "Return one bool per level, in the order of periods.",
    difficulty="easy",
    minutes=5,
)
def check_clock_due(fn) -> None:
    cases = [((1, 4, 16, 64), s) for s in (1, 2, 3, 4, 8, 15, 16, 32, 48, 63, 64, 65, 128)]
    cases += [((3, 1, 5), s) for s in (1, 3, 5, 10, 15, 30)] + [((2,), 1), ((2,), 2), ((7, 7), 14)]
    for periods, s in cases:
        got = fn(periods, s)
        if got is None:
            raise GradingFailure("your function returned None; return a tuple with one bool per level.")
        try:
            got = tuple(bool(g) for g in got)
        except TypeError as e:
            raise GradingFailure(f"return a tuple of bools, one per level; got {got!r}.") from e
        expected = clock_due(periods, s)
        if len(got) != len(expected):
            raise GradingFailure(f"clock_due({periods}, {s}) returned {len(got)} values, expected one per "
                                 f"level ({len(expected)}).")
        if got != expected:
            wrong = [i for i, (a, b) in enumerate(zip(got, expected, strict=True)) if a != b]
            raise GradingFailure(
                f"clock_due({periods}, {s}) returned {got}, expected {expected}: level(s) {wrong} are "
                f"wrong (level l updates when {s} % periods[l] == 0).")


# ------------------------------------------------------------- multi-frequency: accumulate, then update
def multi_frequency_reference(W0: torch.Tensor, grad_fn, periods, lr: float, steps: int) -> torch.Tensor:
    """Plain SGD per level under :class:`nlteach.cms.MultiFrequencyOptimizer` (``reduce="sum"``):
    ``W0 [K, n]`` (level l's parameters are row l), ``grad_fn(s, W) -> [K, n]`` the gradient at step
    ``s`` (counted from 1) at the current parameters. Returns the parameters after every step,
    ``[steps, K, n]``."""
    params = [torch.nn.Parameter(w.detach().clone()) for w in W0]
    opt = MultiFrequencyOptimizer([[p] for p in params], periods, lr=lr)
    out = []
    for s in range(1, steps + 1):
        g = grad_fn(s, torch.stack([p.detach() for p in params]))
        for p, g_l in zip(params, g, strict=True):
            p.grad = g_l.detach().clone()
        opt.step()
        out.append(torch.stack([p.detach().clone() for p in params]))
    return torch.stack(out)


def _variant(W0, grad_fn, periods, lr, steps, mistake: str) -> torch.Tensor:
    W, acc, out = W0.clone(), torch.zeros_like(W0), []
    for s in range(1, steps + 1):
        g = grad_fn(s, W.clone())
        acc = acc + g
        for lvl, p in enumerate(periods):
            due = (s - 1) % p == 0 if mistake == "from_zero" else s % p == 0
            if mistake == "latest" and due:
                W[lvl] = W[lvl] - lr * g[lvl]
            elif mistake == "mean" and due:
                W[lvl] = W[lvl] - lr * acc[lvl] / p
            elif due:
                W[lvl] = W[lvl] - lr * acc[lvl]
            if due and mistake != "no_clear":
                acc[lvl] = 0
        out.append(W.clone())
    return torch.stack(out)


_WHY = {
    "latest": "a due level applied only the latest gradient; it must apply the sum of every gradient "
              "collected since its last update (a slow level sees all the steps it slept through).",
    "no_clear": "you never cleared a level's accumulator after its update, so old gradients are applied "
                "again and again.",
    "mean": "you applied the mean of the collected gradients; Eq. 71 (and reduce='sum') applies their sum.",
    "from_zero": "your levels fire one step early (at s = 1, 1 + C, ...): steps are counted from 1 and a "
                 "level updates when s % C == 0.",
}


def _pull(targets: torch.Tensor):
    """The gradient of 1/2 ||W_l - target_s||^2 for every level: it depends on the current W."""
    return lambda s, W: W - targets[(s - 1) % targets.shape[0]]


@register(
    "05.multi_frequency",
    name="multi_frequency_sgd",
    notebook="05_levels_and_clocks",
    reference=multi_frequency_reference,
    hint="keep one accumulator per level. At every step every level computes its gradient at its "
         "current (possibly old) parameters and adds it to its accumulator; a level whose clock "
         "fires takes one SGD step with everything it accumulated, then starts accumulating afresh.",
    solution="W = W0.clone(); acc = zeros_like(W0); for s in 1..steps: acc += grad_fn(s, W); for each "
             "level l with s % periods[l] == 0: W[l] -= lr * acc[l]; acc[l] = 0; append W.clone(). "
             "Return the stack.",
    difficulty="medium",
    minutes=15,
    derivation=True,
)
def check_multi_frequency(fn) -> None:
    g = torch.Generator().manual_seed(5)
    for periods, n, steps, lr in (((1, 4), 3, 9, 0.3), ((1, 2, 5), 2, 12, 0.2), ((3,), 4, 7, 0.5),
                                  ((2, 1, 7), 1, 15, 0.1)):
        K = len(periods)
        W0 = torch.randn(K, n, generator=g, dtype=torch.float64)
        targets = torch.randn(5, K, n, generator=g, dtype=torch.float64)
        grad_fn = _pull(targets)
        got = check_returned(fn(W0.clone(), grad_fn, periods, lr, steps),
                             "the stacked parameters after every step, [steps, K, n]")
        ref = multi_frequency_reference(W0, grad_fn, periods, lr, steps)
        where = f"(periods={periods}, {steps} steps)"
        if not same(got, ref):
            for mistake, why in _WHY.items():
                if same(got, _variant(W0, grad_fn, periods, lr, steps, mistake)):
                    raise GradingFailure(f"{where} {why}")
        assert_close(got, ref, what=f"the parameters after every step {where}", rtol=1e-8, atol=1e-10)
