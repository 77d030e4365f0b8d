"""The settings of a language-model training run (:mod:`nlteach.train`): :class:`TrainConfig`, which
nests the model's :class:`~nlteach.models.ModelConfig`, the size presets' defaults, and
:func:`resolve_config`, which fills the unset fields from the preset and checks every value.

Kept beside the loop like nanoGPT's ``configurator.py``: ``train.py`` holds the loop and the
evaluation; this file says what a run can be told. Every field carries its command-line help, so
``python -m nlteach.train --help`` is generated from here.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nlteach import models, recipes, text
from nlteach.config import by_preset, get_preset
from nlteach.models import ModelConfig
from nlteach.runs import cli


def preset_defaults(preset: str | None = None) -> dict:
    """Values of the fields left as None, for the size preset (``$NLTEACH_SIZE`` when None)."""
    return by_preset(
        tiny=dict(dim=32, n_layers=2, n_heads=2, seq_len=64, batch_size=16, steps=40, lr=3e-3,
                  warmup=5, eval_every=20, eval_windows=32, log_every=5, sample_chars=100),
        laptop=dict(dim=128, n_layers=4, n_heads=4, seq_len=128, batch_size=32, steps=1500, lr=2e-3,
                    warmup=100, eval_every=250, eval_windows=1000, log_every=25, sample_chars=300),
        full=dict(dim=384, n_layers=6, n_heads=6, seq_len=256, batch_size=64, steps=5000, lr=1e-3,
                  warmup=200, eval_every=500, eval_windows=1000, log_every=50, sample_chars=1000),
        preset=preset,
    )


class ConfigError(ValueError):
    """A training setting is invalid or inconsistent."""


def _opt(default: Any, help: str, **meta: Any) -> Any:
    """A config field and its command-line help (``meta``: argparse ``type`` or ``choices``)."""
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class TrainConfig:
    """Settings of one training run; ``None`` means the size preset's value (:func:`preset_defaults`).

    ``arch`` holds the model's settings (:class:`~nlteach.models.ModelConfig`), which :func:`train`
    also takes by name (``train(model="hope", dim=64, chunk_size=8)``). ``batch_size`` is the global
    batch. ``stop_after=k`` stops (with a checkpoint) after step k, as if interrupted. ``out=None``
    writes to ``runs/<model>_<data>_<preset>_seed<seed>``."""

    model: str = _opt("transformer", f"model: {', '.join(models.available_models())}")
    data: str = _opt("tinyshakespeare", "character-level corpus", choices=tuple(sorted(text.CORPORA)))
    arch: ModelConfig = field(default_factory=ModelConfig)
    params: int | None = _opt(None, "parameter budget: choose dim to match it (e.g. 1e6)", type=cli.positive_int)
    match_mlp: bool = _opt(False, "with --params: after dim, choose mlp_hidden so the count is nearest the budget "
                                  "(models then match within a fraction of a percent)")
    seed: int = _opt(0, "seed of the initial weights, the data order and dropout", type=cli.nonneg_int)
    steps: int | None = _opt(None, "optimizer steps (default: the preset's)", type=cli.positive_int)
    batch_size: int | None = _opt(None, "GLOBAL batch: sequences per step, all ranks (default: the preset's)", type=cli.positive_int)
    seq_len: int | None = _opt(None, "characters per training window (default: the preset's)", type=cli.positive_int)
    lr: float | None = _opt(None, "peak learning rate (default: the preset's)")
    min_lr_ratio: float = _opt(0.1, "final lr / peak lr")
    warmup: int | None = _opt(None, "linear warmup steps (default: the preset's, at most steps / 5)",
                              type=cli.nonneg_int)
    weight_decay: float = _opt(0.1, "AdamW weight decay (matrices only)")
    grad_clip: float = _opt(1.0, "max global gradient norm (<= 0: off)")
    optimizer: str = _opt("adamw", "adamw, sgd, or an optimizer class of nlteach.optim (e.g. Muon)")
    cms_multi_frequency: bool = _opt(False, "OUTER (training-step) frequency: the optimizer steps CMS level l "
                                            "every cms_step_periods[l] training steps (hope, hope-attention and their "
                                            "static-cms ablations; the in-context levels count tokens regardless)")
    cms_step_periods: tuple[int, ...] | None = _opt(None, "with --cms-multi-frequency: optimizer steps between two "
                                                          "steps of CMS level l, one per level (default: 1, 4, 16, ...)")
    eval_every: int | None = _opt(None, "steps between evaluations (default: the preset's)", type=cli.positive_int)
    eval_windows: int | None = _opt(None, "val windows per evaluation (default: the preset's)", type=cli.positive_int)
    log_every: int | None = _opt(None, "steps between metrics lines (default: the preset's)", type=cli.positive_int)
    ckpt_every: int | None = _opt(None, "steps between checkpoints (default: eval_every)", type=cli.positive_int)
    sample_chars: int | None = _opt(None, "characters sampled at the end (default: the preset's)", type=cli.nonneg_int)
    temperature: float = _opt(1.0, "sampling temperature (0: greedy)")
    amp: bool = _opt(True, "no bf16 autocast on CUDA")
    resume: bool = _opt(False, "continue the run in --out from its checkpoint")
    stop_after: int | None = _opt(None, "stop (with a checkpoint) after this step", type=cli.positive_int)
    progress: bool = _opt(True, "no progress bar")
    preset: str | None = None
    device: str | None = None
    out: str | None = None
    overwrite: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def flat(self) -> dict:
        """The settings with ``arch``'s fields at the top level (as the command line names them)."""
        return flatten_settings(self.to_dict())


SETTING_NAMES = {f.name for f in dataclasses.fields(TrainConfig)} - {"arch"} | {f.name for f in dataclasses.fields(ModelConfig)}


def flatten_settings(values: dict) -> dict:
    """``values`` with a nested ``arch`` (dict or ModelConfig) spread out; flat names win."""
    values = dict(values)
    arch = values.pop("arch", None)
    return {**(arch.to_dict() if isinstance(arch, ModelConfig) else arch or {}), **values}


def resolve_config(config: TrainConfig | dict | None = None, **overrides) -> TrainConfig:
    """Fill the ``None`` fields from the size preset, check every value, return a new config.

    ``config`` and ``overrides`` may name ``arch``'s fields directly (``dim=64``) or nest them."""
    if not isinstance(config, TrainConfig | dict | None):
        raise ConfigError(f"config must be a TrainConfig or a dict, got {type(config).__name__}.")
    values = flatten_settings(config.to_dict() if isinstance(config, TrainConfig) else config or {})
    given = {k: v for k, v in {**values, **flatten_settings(overrides)}.items() if v is not None}
    unknown = sorted(set(given) - SETTING_NAMES)
    if unknown:
        raise ConfigError(f"unknown training setting(s) {unknown}; valid: {sorted(SETTING_NAMES)}.")
    try:
        preset = get_preset(given.get("preset"))
        defaults = preset_defaults(preset)
        v = {**defaults, **given, "preset": preset}
        if "warmup" not in given and isinstance(v["steps"], int):
            v["warmup"] = min(defaults["warmup"], v["steps"] // 5)  # short runs: short warmup
        v.setdefault("ckpt_every", v["eval_every"])
        v.setdefault("out", str(Path("runs") / f"{v.get('model', 'transformer')}_{v.get('data', 'tinyshakespeare')}"
                                             f"_{preset}_seed{v.get('seed', 0)}"))
        cfg = cli.dataclass_from_values(TrainConfig, v)
    except ValueError as e:  # an unknown preset, or model sizes that do not hold together
        raise ConfigError(str(e)) from None
    _validate(cfg)
    return cfg


def _validate(c: TrainConfig) -> None:
    def check(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    for name in ("steps", "batch_size", "seq_len", "eval_every", "eval_windows", "log_every", "ckpt_every",
                 "params", "stop_after", "seed", "warmup", "sample_chars"):
        v, low = getattr(c, name), 0 if name in ("seed", "warmup", "sample_chars") else 1
        check((isinstance(v, int) and not isinstance(v, bool) and v >= low) or (v is None and name in ("params", "stop_after")),
              f"{name} must be a {'non-negative' if low == 0 else 'positive'} integer, got {v!r}.")
    check(c.warmup < c.steps or c.steps <= 1, f"warmup={c.warmup} must be smaller than steps={c.steps}.")
    check(isinstance(c.lr, int | float) and math.isfinite(c.lr) and c.lr > 0, f"lr must be a positive number, got {c.lr!r}.")
    check(0.0 <= c.min_lr_ratio <= 1.0, f"min_lr_ratio must be in [0, 1], got {c.min_lr_ratio!r}.")
    check(c.weight_decay >= 0.0, f"weight_decay must be >= 0, got {c.weight_decay!r}.")
    check(math.isfinite(c.grad_clip), f"grad_clip must be a finite number (<= 0: no clipping), got {c.grad_clip!r}.")
    check(c.temperature >= 0.0, f"temperature must be >= 0 (0 = greedy), got {c.temperature!r}.")
    check(c.model in models.available_models(),
          f"model={c.model!r} is not available; available models: {', '.join(models.available_models())}.")
    check(c.data in text.CORPORA, f"data={c.data!r} is not a known corpus; available: {', '.join(sorted(text.CORPORA))}.")
    check(c.arch.vocab_size is None, "vocab_size comes from the data; leave it None.")
    try:
        kind = recipes.resolve_optimizer(c.optimizer)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    check(not c.cms_multi_frequency or kind in recipes.BUILTIN_OPTIMIZERS,
          f"cms_multi_frequency works with {recipes.BUILTIN_OPTIMIZERS}, got optimizer={c.optimizer!r}.")
    if c.cms_step_periods is not None:
        check(c.cms_multi_frequency, f"cms_step_periods={c.cms_step_periods!r} needs cms_multi_frequency=True.")
        try:
            c.cms_step_periods = tuple(recipes.cms_step_periods(len(c.arch.cms_periods), c.cms_step_periods))
        except ValueError as e:
            raise ConfigError(str(e)) from None
