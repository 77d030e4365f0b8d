"""Optimizer recipes: every runner builds its optimizer and learning-rate schedule here.

- :func:`make_optimizer` by name: ``"adamw"`` (betas 0.9/0.95, weight decay on matrices only: biases,
  norms' gains and other vectors are not decayed), ``"sgd"`` (momentum 0.9), or any optimizer class
  of :mod:`nlteach.optim` by its class name in any case (``"Muon"``, ``"m3"``, ``"DeltaMomentum"``,
  ...), built as ``Cls(params, lr=lr, **options)``. ``options`` override any default.
- :func:`make_model_optimizer`: the same for a model, and with ``cms_multi_frequency=True`` the
  multi-frequency training of the Continuum Memory System (Eq. 71 of arXiv v1, here counted in
  optimizer steps: the outer frequency) through :class:`nlteach.cms.MultiFrequencyOptimizer`: CMS
  level l steps every ``step_periods[l]`` optimizer steps (default 4**l, :func:`cms_step_periods`);
  every parameter outside the CMS joins the period-1 level.

  **Reduce rule (one for the whole project): the mean.** A level of period C steps on the *mean*
  of the gradients accumulated over its C steps. Eq. 71 writes the update as a sum of per-step
  terms ``eta_t * grad_t``; the mean is that sum with ``eta = lr / C``, so one learning rate means
  the same step size at every period and a rate tuned at period 1 transfers. With Adam(W) the two
  differ only through epsilon (Adam is invariant to the gradient's scale); with SGD they differ by
  the factor C. (Before this module, the long-context runner summed; see docs/decisions.md#cms-reduce.)
- :class:`WarmupCosine`: linear warmup then a cosine to ``min_ratio``; :func:`make_scheduler` wraps
  it for a plain optimizer (``LambdaLR``) or one schedule per level of a multi-frequency optimizer
  (:class:`LevelSchedules`: every level follows the same global schedule).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from nlteach import optim as nl_optim
from nlteach.cms import MultiFrequencyOptimizer
from nlteach.models import cms_level_parameters

BUILTIN_OPTIMIZERS: tuple[str, ...] = ("adamw", "sgd")
ADAMW_BETAS = (0.9, 0.95)
SGD_MOMENTUM = 0.9
REDUCE = "mean"  # the multi-frequency reduce rule (module docstring)


def library_optimizers() -> dict[str, type[torch.optim.Optimizer]]:
    """``{class name: class}`` of the optimizers defined in :mod:`nlteach.optim`."""
    return {name: obj for name, obj in vars(nl_optim).items()
            if isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer) and obj.__module__ == nl_optim.__name__}


def optimizer_names() -> list[str]:
    """Every name :func:`make_optimizer` accepts."""
    return [*BUILTIN_OPTIMIZERS, *sorted(library_optimizers())]


def resolve_optimizer(name: str) -> str | type[torch.optim.Optimizer]:
    """``"adamw"``, ``"sgd"``, or the :mod:`nlteach.optim` class called ``name`` (any case);
    ``ValueError`` listing the valid names otherwise."""
    if isinstance(name, str) and name.lower() in BUILTIN_OPTIMIZERS:
        return name.lower()
    for attr, cls in library_optimizers().items():
        if isinstance(name, str) and attr.lower() == name.lower():
            return cls
    raise ValueError(f"optimizer={name!r} is not available; choose one of {', '.join(optimizer_names())}.")


def adamw_groups(params: Iterable[nn.Parameter], weight_decay: float) -> list[dict[str, Any]]:
    """Two parameter groups: matrices (and higher) decayed by ``weight_decay``, the rest not decayed
    (empty groups left out)."""
    params = list(params)
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def make_optimizer(name: str, params: Iterable[nn.Parameter], lr: float, *, weight_decay: float = 0.0,
                   **options: Any) -> torch.optim.Optimizer:
    """The optimizer called ``name`` (module docstring) over ``params``; ``options`` override the
    recipe's defaults (e.g. ``betas=(0.9, 0.999)``)."""
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}.")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}.")
    kind = resolve_optimizer(name)
    params = [p for p in params if p.requires_grad]
    if kind == "adamw":
        return torch.optim.AdamW(adamw_groups(params, weight_decay), **{"lr": lr, "betas": ADAMW_BETAS, **options})
    if kind == "sgd":
        return torch.optim.SGD(params, **{"lr": lr, "momentum": SGD_MOMENTUM, **options})
    return kind(params, **{"lr": lr, **options})


def cms_step_periods(n_levels: int, periods: Sequence[int] | None = None) -> list[int]:
    """The optimizer-step periods of ``n_levels`` CMS levels for multi-frequency training:
    ``periods`` when given (one per level), else 1, 4, 16, ... (4**l). These count optimizer steps;
    the in-context periods of the models (``ModelConfig.cms_periods``) count tokens."""
    if periods is None:
        return [4 ** level for level in range(n_levels)]
    periods = list(periods)
    if len(periods) != n_levels or any(isinstance(p, bool) or not isinstance(p, int) or p < 1 for p in periods):
        raise ValueError(f"cms_step_periods must be {n_levels} positive ints (one per CMS level), got {periods!r}.")
    return periods


def make_model_optimizer(name: str, model: nn.Module, lr: float, *, weight_decay: float = 0.0,
                         cms_multi_frequency: bool = False, step_periods: Sequence[int] | None = None
                         ) -> torch.optim.Optimizer | MultiFrequencyOptimizer:
    """:func:`make_optimizer` over ``model``'s parameters; ``cms_multi_frequency=True`` (a model
    with a CMS, ``adamw`` or ``sgd`` only) gives a :class:`MultiFrequencyOptimizer` whose levels are
    the model's CMS levels, level l stepping every ``step_periods[l]`` optimizer steps (default
    1, 4, 16, ...: :func:`cms_step_periods`), each running the named recipe on the mean of its
    accumulated gradients (module docstring)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not cms_multi_frequency:
        return make_optimizer(name, params, lr, weight_decay=weight_decay)
    kind = resolve_optimizer(name)
    if kind not in BUILTIN_OPTIMIZERS:
        raise ValueError(f"cms_multi_frequency works with {BUILTIN_OPTIMIZERS}, got optimizer={name!r}.")
    levels = cms_level_parameters(model)  # ValueError when the model has no CMS
    periods = cms_step_periods(len(levels), step_periods)
    in_cms = {id(p) for level in levels for p in level}
    rest = [p for p in params if id(p) not in in_cms]
    if periods[0] == 1:
        levels[0] = rest + levels[0]
    else:
        levels, periods = [rest, *levels], [1, *periods]
    if kind == "adamw":
        groups = [adamw_groups(level, weight_decay) for level in levels]
        return MultiFrequencyOptimizer(groups, periods, base=torch.optim.AdamW, reduce=REDUCE, lr=lr,
                                       betas=ADAMW_BETAS)
    return MultiFrequencyOptimizer(levels, periods, base=torch.optim.SGD, reduce=REDUCE, lr=lr,
                                   momentum=SGD_MOMENTUM)


class WarmupCosine:
    """LR multiplier at scheduler step e (= optimizer steps done): ``(e+1)/warmup`` during warmup,
    then a cosine from 1 down to ``min_ratio`` at the last step."""

    def __init__(self, steps: int, warmup: int, min_ratio: float):
        self.steps, self.warmup, self.min_ratio = steps, warmup, min_ratio

    def __call__(self, e: int) -> float:
        if e < self.warmup:
            return (e + 1) / self.warmup
        span = max(1, self.steps - 1 - self.warmup)
        progress = min(1.0, (e - self.warmup) / span)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class LevelSchedules:
    """The LR schedule of a :class:`MultiFrequencyOptimizer`: one ``LambdaLR`` per level, all
    stepped every optimizer step (every level follows the same global warmup and cosine)."""

    def __init__(self, optimizer: MultiFrequencyOptimizer, lr_lambda: Callable[[int], float]):
        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(o, lr_lambda) for o in optimizer.optimizers]

    def step(self) -> None:
        with warnings.catch_warnings():  # a slow level has not stepped yet: that is the point, not a bug
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
            for s in self.schedulers:
                s.step()

    def state_dict(self) -> dict:
        return {"levels": [s.state_dict() for s in self.schedulers]}

    def load_state_dict(self, state: dict) -> None:
        for s, st in zip(self.schedulers, state["levels"], strict=True):
            s.load_state_dict(st)


def make_scheduler(optimizer: Any, lr_lambda: Callable[[int], float]) -> Any:
    """``LambdaLR(optimizer, lr_lambda)``, or :class:`LevelSchedules` for a multi-frequency optimizer."""
    if isinstance(optimizer, MultiFrequencyOptimizer):
        return LevelSchedules(optimizer, lr_lambda)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)


def set_lr(optimizer: Any, lr: float) -> None:
    """Set every parameter group's learning rate (for loops that compute the schedule themselves)."""
    for g in optimizer.param_groups:
        g["lr"] = lr
