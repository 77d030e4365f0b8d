"""Language-model training: ``python -m nlteach.train`` and ``train(config)`` for notebooks.

    python -m nlteach.train --model transformer --data tinyshakespeare --preset tiny --out runs/t
    python -m nlteach.train --out runs/t --resume    # continue after Ctrl-C or a crash (same settings)
    torchrun --nproc_per_node 2 -m nlteach.train --preset tiny   # DDP (gloo on CPU, nccl on CUDA)

What a run does (``train(TrainConfig(...))``; the command line is a thin wrapper):

- **Data**: character-level tiny Shakespeare, the split of :func:`nlteach.data.load_tinyshakespeare`
  and the vocabulary of :mod:`nlteach.text` (sorted characters of the whole corpus). Step ``s``
  trains on the global batch ``RandomWindowSampler(seed).starts_for_step(s)``: ``batch_size``
  random windows of ``seq_len + 1`` characters, a pure function of ``(seed, s)``.
- **Optimization**: AdamW (betas 0.9/0.95, weight decay on matrices only), SGD (momentum 0.9), or
  any optimizer class of :mod:`nlteach.optim` by name (``Cls(params, lr=lr)``); linear warmup then
  cosine decay to ``min_lr_ratio * lr``; gradient clipping by global norm; bf16 autocast on CUDA
  only (CPU runs in float32, so they are reproducible bit for bit).
- **Evaluation**: mean cross-entropy (nats per character) on fixed windows of the val split every
  ``eval_every`` steps and at the end; test loss once at the end.
- **Files in ``out``** (rank 0 only): ``metrics.jsonl`` (one JSON object per ``log_every`` steps:
  ``step``, ``train_loss`` (mean since the previous line), ``val_loss`` (or null), ``lr``,
  ``tokens`` (seen so far, all ranks), ``time`` (seconds of training so far), ``grad_norm``);
  ``checkpoint.pt`` (written to a temporary file, then renamed: never a partial file under the real
  name); ``results.json`` at the end.
- **Exact resume**: the checkpoint holds model, optimizer, scheduler, step, the sampler position,
  and, for every rank, the running train-loss sum of the unfinished log interval and the RNG
  states of Python, NumPy and torch (CPU and CUDA). On CPU, a run interrupted at any step and resumed with
  ``resume=True`` writes the same ``metrics.jsonl`` as an uninterrupted run, bit for bit (every
  field except ``time``), and ends with bit-identical weights. (On CUDA, kernels may be
  non-deterministic, so expect agreement to rounding only.)
- **Interrupts**: the first Ctrl-C (SIGINT) or SIGTERM finishes the current step, writes a
  checkpoint and returns (``"interrupted": True``; the command exits with 130). In a single
  process a second Ctrl-C stops at once.
- **DDP**: under ``torchrun`` every rank takes ``batch_size / world_size`` rows of the same global
  batch and gradients are averaged, so N processes compute what one process computes with the
  same ``batch_size``, up to the order of floating-point sums.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import math
import os
import random
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nlteach.config import PRESETS, by_preset, get_device, get_preset
from nlteach.models import (
    IMPLS,
    LanguageModel,
    ModelConfig,
    available_models,
    build_model,
    count_parameters,
    size_to_budget,
)
from nlteach.text import (
    CORPORA,
    CharVocab,
    RandomWindowSampler,
    eval_windows,
    get_batch,
    load_char_corpus,
)

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
RESULTS = "results.json"
CHECKPOINT_VERSION = 2  # bumped whenever the checkpoint layout changes
BUILTIN_OPTIMIZERS = ("adamw", "sgd")


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


# Fields that may differ between a run and its resumption (they do not change the numbers).
RUNTIME_FIELDS = ("preset", "device", "out", "resume", "overwrite", "stop_after", "progress",
                  "ckpt_every", "sample_chars")


class ConfigError(ValueError):
    """A training setting is invalid or inconsistent (bad value, or a resume that does not match)."""


@dataclass
class TrainConfig:
    """Settings of one training run; ``None`` means "the size preset's value" (see :func:`preset_defaults`).

    Sizes: ``dim``, ``n_layers``, ``n_heads`` (or ``params``: a parameter budget; ``dim`` is then
    chosen by :func:`nlteach.models.size_to_budget`). ``batch_size`` is the **global** batch
    (sequences per optimizer step over all DDP ranks). ``warmup`` steps of linear warmup, then a
    cosine to ``min_lr_ratio * lr`` at ``steps``. ``grad_clip <= 0`` disables clipping.
    ``eval_windows``: number of val windows per evaluation. ``ckpt_every`` defaults to
    ``eval_every``. ``stop_after=k`` stops (with a checkpoint) after step k, as if interrupted.
    ``out=None`` writes to ``runs/<model>_<data>_<preset>_seed<seed>``.
    ``cms_multi_frequency=True`` (models with a CMS only) trains each CMS level at its own period
    with :class:`nlteach.cms.MultiFrequencyOptimizer` (see :func:`make_optimizer`).
    Memory models (Titans, HOPE): ``chunk_size``, ``proj_chunk_size``, ``memory_hidden`` and
    ``momentum`` are the :class:`nlteach.models.ModelConfig` fields of those names (None: its default).
    """

    model: str = "transformer"
    data: str = "tinyshakespeare"
    preset: str | None = None
    device: str | None = None
    out: str | None = None
    seed: int = 0
    steps: int | None = None
    batch_size: int | None = None
    seq_len: int | None = None
    lr: float | None = None
    min_lr_ratio: float = 0.1
    warmup: int | None = None
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    optimizer: str = "adamw"
    cms_multi_frequency: bool = False
    dim: int | None = None
    n_layers: int | None = None
    n_heads: int | None = None
    params: int | None = None
    impl: str = "chunked"
    tie_embeddings: bool = True
    dropout: float = 0.0
    chunk_size: int | None = None
    proj_chunk_size: int | None = None
    memory_hidden: int | None = None
    momentum: float | None = None
    eval_every: int | None = None
    eval_windows: int | None = None
    log_every: int | None = None
    ckpt_every: int | None = None
    sample_chars: int | None = None
    temperature: float = 1.0
    amp: bool = True
    resume: bool = False
    overwrite: bool = False
    stop_after: int | None = None
    progress: bool = True

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


MEMORY_OPTIONS: tuple[str, ...] = ("chunk_size", "proj_chunk_size", "memory_hidden", "momentum")


def memory_options(cfg: TrainConfig) -> dict:
    """The memory models' :class:`ModelConfig` fields that ``cfg`` sets (the others keep their defaults)."""
    return {k: getattr(cfg, k) for k in MEMORY_OPTIONS if getattr(cfg, k) is not None}


def resolve_config(config: TrainConfig | dict | None = None, **overrides) -> TrainConfig:
    """Fill the ``None`` fields from the size preset, check every value, return a new config."""
    if config is None:
        config = TrainConfig()
    elif isinstance(config, dict):
        config = _from_dict(config)
    elif not isinstance(config, TrainConfig):
        raise ConfigError(f"config must be a TrainConfig or a dict, got {type(config).__name__}.")
    if overrides:
        config = _from_dict({**config.to_dict(), **overrides})
    try:
        preset = get_preset(config.preset)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    values = config.to_dict()
    values["preset"] = preset
    defaults = preset_defaults(preset)
    for key, default in defaults.items():
        if values[key] is None and key != "warmup":
            values[key] = default
    if values["warmup"] is None and isinstance(values["steps"], int):
        values["warmup"] = min(defaults["warmup"], values["steps"] // 5)  # short runs: short warmup
    if values["ckpt_every"] is None:
        values["ckpt_every"] = values["eval_every"]
    if values["out"] is None:
        values["out"] = str(Path("runs") / f"{values['model']}_{values['data']}_{preset}_seed{values['seed']}")
    cfg = TrainConfig(**values)
    _validate(cfg)
    return cfg


def _from_dict(d: dict) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"unknown training setting(s) {unknown}; valid: {sorted(names)}.")
    return TrainConfig(**d)


def _validate(c: TrainConfig) -> None:
    def positive_int(name: str, allow_none: bool = False) -> None:
        v = getattr(c, name)
        if v is None and allow_none:
            return
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ConfigError(f"{name} must be a positive integer, got {v!r}.")

    for name in ("steps", "batch_size", "seq_len", "n_layers", "n_heads", "dim", "eval_every",
                 "eval_windows", "log_every", "ckpt_every"):
        positive_int(name)
    positive_int("params", allow_none=True)
    positive_int("stop_after", allow_none=True)
    if not isinstance(c.seed, int) or isinstance(c.seed, bool) or c.seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {c.seed!r}.")
    for name in ("warmup", "sample_chars"):
        v = getattr(c, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ConfigError(f"{name} must be a non-negative integer, got {v!r}.")
    if c.warmup >= c.steps and c.steps > 1:
        raise ConfigError(f"warmup={c.warmup} must be smaller than steps={c.steps}.")
    if not (isinstance(c.lr, (int, float)) and math.isfinite(c.lr) and c.lr > 0):
        raise ConfigError(f"lr must be a positive number, got {c.lr!r}.")
    if not 0.0 <= c.min_lr_ratio <= 1.0:
        raise ConfigError(f"min_lr_ratio must be in [0, 1], got {c.min_lr_ratio!r}.")
    if not c.weight_decay >= 0.0:
        raise ConfigError(f"weight_decay must be >= 0, got {c.weight_decay!r}.")
    if not math.isfinite(c.grad_clip):
        raise ConfigError(f"grad_clip must be a finite number (<= 0 disables clipping), got {c.grad_clip!r}.")
    if not c.temperature >= 0.0:
        raise ConfigError(f"temperature must be >= 0 (0 = greedy), got {c.temperature!r}.")
    if c.model not in available_models():
        raise ConfigError(f"model={c.model!r} is not available; available models: {', '.join(available_models())}.")
    if c.data not in CORPORA:
        raise ConfigError(f"data={c.data!r} is not a known corpus; available: {', '.join(sorted(CORPORA))}.")
    if c.impl not in IMPLS:
        raise ConfigError(f"impl={c.impl!r} is not one of {IMPLS}.")
    try:
        ModelConfig(vocab_size=1, dim=c.dim, n_layers=c.n_layers, n_heads=c.n_heads, impl=c.impl,
                    tie_embeddings=c.tie_embeddings, dropout=c.dropout, **memory_options(c))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    resolve_optimizer(c.optimizer)
    if c.cms_multi_frequency and c.optimizer not in BUILTIN_OPTIMIZERS:
        raise ConfigError(f"cms_multi_frequency works with the built-in optimizers {BUILTIN_OPTIMIZERS}, "
                          f"got optimizer={c.optimizer!r}.")


# ---------------------------------------------------------------------------------------------
# Optimizer and schedule.


def resolve_optimizer(name: str):
    """``"adamw"``, ``"sgd"``, or the class of :mod:`nlteach.optim` called ``name`` (any case)."""
    if name in BUILTIN_OPTIMIZERS:
        return name
    try:
        optim_mod = importlib.import_module("nlteach.optim")
    except ModuleNotFoundError as e:
        if e.name != "nlteach.optim":
            raise
        optim_mod = None
    found = {}
    if optim_mod is not None:
        for attr in dir(optim_mod):
            obj = getattr(optim_mod, attr)
            if isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer) and obj.__module__ == optim_mod.__name__:
                found[attr] = obj
    for attr, cls in found.items():
        if attr == name or attr.lower() == str(name).lower():
            return cls
    raise ConfigError(
        f"optimizer={name!r} is not available; choose one of {', '.join(BUILTIN_OPTIMIZERS + tuple(sorted(found)))}"
        + ("" if found else " (nlteach.optim defines no optimizer classes yet)") + "."
    )


def _adamw_groups(params: list[nn.Parameter], weight_decay: float) -> list[dict]:
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def make_optimizer(name: str, model: nn.Module, lr: float, weight_decay: float, *,
                   cms_multi_frequency: bool = False):
    """AdamW with weight decay on matrices only, SGD with momentum 0.9, or ``nlteach.optim.<name>``.

    ``cms_multi_frequency=True``: a :class:`nlteach.cms.MultiFrequencyOptimizer` (Eq. 71) whose
    levels are the model's CMS levels (``config.cms_periods``, gathered over all blocks by
    :func:`nlteach.models.cms_level_parameters`); every other parameter joins the period-1 level
    (or a period-1 level of its own when the fastest CMS period is > 1). Each level runs its own
    AdamW/SGD on the gradients accumulated over its period, reduced by their mean, so a level with
    period C takes one step every C steps on the average gradient of those steps.
    """
    cls = resolve_optimizer(name)
    params = [p for p in model.parameters() if p.requires_grad]
    if cms_multi_frequency:
        from nlteach.cms import MultiFrequencyOptimizer  # noqa: PLC0415
        from nlteach.models import cms_level_parameters  # noqa: PLC0415

        if cls not in BUILTIN_OPTIMIZERS:
            raise ConfigError(f"cms_multi_frequency works with {BUILTIN_OPTIMIZERS}, got optimizer={name!r}.")
        try:
            levels = cms_level_parameters(model)
        except ValueError as e:
            raise ConfigError(f"cms_multi_frequency needs a model with a CMS: {e}") from None
        periods = list(model.config.cms_periods)
        in_cms = {id(p) for level in levels for p in level}
        rest = [p for p in params if id(p) not in in_cms]
        if periods[0] == 1:
            levels[0] = rest + levels[0]
        else:
            levels, periods = [rest, *levels], [1, *periods]
        if cls == "adamw":
            groups = [_adamw_groups(level, weight_decay) for level in levels]
            groups = [[g for g in gs if g["params"]] for gs in groups]
            return MultiFrequencyOptimizer(groups, periods, base=torch.optim.AdamW, reduce="mean", lr=lr,
                                           betas=(0.9, 0.95))
        return MultiFrequencyOptimizer(levels, periods, base=torch.optim.SGD, reduce="mean", lr=lr, momentum=0.9)
    if cls == "adamw":
        return torch.optim.AdamW(_adamw_groups(params, weight_decay), lr=lr, betas=(0.9, 0.95))
    if cls == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    return cls(params, lr=lr)


class LevelSchedules:
    """The LR schedule of a :class:`nlteach.cms.MultiFrequencyOptimizer`: one ``LambdaLR`` per level,
    all stepped every optimizer step (so every level follows the same global warmup and cosine)."""

    def __init__(self, optimizer, lr_lambda):
        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(o, lr_lambda) for o in optimizer.optimizers]

    def step(self) -> None:
        import warnings  # noqa: PLC0415

        with warnings.catch_warnings():  # a slow level has not stepped yet: that is the point, not a bug
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
            for s in self.schedulers:
                s.step()

    def state_dict(self) -> dict:
        return {"levels": [s.state_dict() for s in self.schedulers]}

    def load_state_dict(self, state: dict) -> None:
        for s, st in zip(self.schedulers, state["levels"], strict=True):
            s.load_state_dict(st)


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


# ---------------------------------------------------------------------------------------------
# Files: atomic writes, checkpoints, RNG states.


def atomic_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then ``os.replace``.

    A crash or interrupt while writing leaves the previous file (or none) under ``path``, never a
    partial one; the temporary file is removed on failure.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def rng_state(device: torch.device) -> dict:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }


def set_rng_state(state: dict, device: torch.device) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by :func:`train` (trusted file: it holds pickled RNG states)."""
    return torch.load(path, map_location="cpu", weights_only=False)


def load_model(out: str | os.PathLike, *, device: str | torch.device | None = None) -> tuple[LanguageModel, CharVocab, dict]:
    """The trained model (eval mode), its vocabulary and its run config from ``out/checkpoint.pt``."""
    path = Path(out) / CHECKPOINT
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; train first (python -m nlteach.train --out {out}).")
    ckpt = load_checkpoint(path)
    model = build_model(ckpt["config"]["model"], ModelConfig(**ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    model.to(get_device(device)).eval()
    return model, CharVocab(ckpt["vocab"]), ckpt["config"]


# ---------------------------------------------------------------------------------------------
# Sampling and evaluation.


@torch.no_grad()
def sample(model: nn.Module, vocab: CharVocab, prompt: str = "\n", length: int = 200, *,
           temperature: float = 1.0, top_k: int | None = None, context: int | None = None,
           seed: int = 0) -> str:
    """Generate ``length`` characters after ``prompt`` (returned without the prompt).

    Each step feeds the last ``context`` characters (all when None) and draws the next one from
    ``softmax(logits / temperature)`` restricted to the ``top_k`` most likely (greedy when
    ``temperature == 0``), with a generator seeded by ``seed``: the same call gives the same text.
    """
    if not prompt:
        raise ValueError("prompt must be a non-empty string (e.g. '\\n').")
    if not isinstance(length, int) or length < 0:
        raise ValueError(f"length must be a non-negative int, got {length!r}.")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature!r}.")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    ids = vocab.encode(prompt).tolist()
    n_prompt = len(ids)
    try:
        for _ in range(length):
            window = ids[-context:] if context else ids
            logits = model(torch.tensor([window], device=device))[0, -1].float().cpu()  # [V]
            if temperature == 0:
                ids.append(int(logits.argmax()))
                continue
            logits = logits / temperature
            if top_k is not None and top_k < logits.numel():
                kth = torch.topk(logits, top_k).values[-1]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            ids.append(int(torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)))
    finally:
        model.train(was_training)
    return vocab.decode(ids[n_prompt:])


@torch.no_grad()
def evaluate(model: nn.Module, tokens: torch.Tensor, starts: np.ndarray, seq_len: int, batch_size: int,
             device: torch.device, autocast, *, rank: int = 0, world_size: int = 1) -> float:
    """Mean next-character cross-entropy (nats) over the windows ``starts`` (split across ranks)."""
    was_training = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=device)  # [sum of losses, number of tokens]
    mine = starts[rank::world_size]
    for i in range(0, len(mine), batch_size):
        x, y = get_batch(tokens, mine[i:i + batch_size], seq_len)
        x, y = x.to(device), y.to(device)
        with autocast():
            logits = model(x)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum")
        total[0] += loss.double()
        total[1] += y.numel()
    if world_size > 1:
        torch.distributed.all_reduce(total)
    model.train(was_training)
    return float(total[0] / total[1])


# ---------------------------------------------------------------------------------------------
# Distributed set-up and interrupts.


@dataclass
class _Dist:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: torch.device) -> tuple[_Dist, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist(), device
    dist = _Dist(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world)
    if device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        dist.owns_group = True
    return dist, device


class _StopFlag:
    """Turns SIGINT/SIGTERM into a request to stop after the current step (main thread only)."""

    def __init__(self, distributed: bool, verbose: bool = True):
        self.requested = False
        self.distributed, self.verbose = distributed, verbose
        self._previous: dict = {}

    def _handler(self, signum, frame):
        if self.requested and not self.distributed and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        if self.verbose and not self.requested:
            again = "" if self.distributed else " (Ctrl-C again to stop at once)"
            print(f"\n[nlteach.train] {signal.Signals(signum).name} received: finishing this step, "
                  f"writing a checkpoint, then stopping{again}.", file=sys.stderr)
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


# ---------------------------------------------------------------------------------------------
# The training loop.


def train(config: TrainConfig | dict | None = None, *, on_log=None, **overrides) -> dict:
    """Train one language model; returns the results dict (also written to ``out/results.json``).

    ``config`` is a :class:`TrainConfig` or a dict of its fields; keyword ``overrides`` replace
    fields (``train(model="transformer", preset="tiny", steps=50)``). ``on_log(record)`` is called
    on rank 0 with every ``metrics.jsonl`` record (live plots in notebooks). When the run stops
    early (signal or ``stop_after``) the dict has ``"interrupted": True`` and the checkpoint step.
    """
    cfg = resolve_config(config, **overrides)
    device = get_device(cfg.device)
    dist, device = _init_distributed(device)
    try:
        return _train(cfg, device, dist, on_log)
    finally:
        if dist.owns_group:
            torch.distributed.destroy_process_group()


def _train(cfg: TrainConfig, device: torch.device, dist: _Dist, on_log) -> dict:
    out = Path(cfg.out)
    ckpt_path, metrics_path = out / CHECKPOINT, out / METRICS
    ckpt = None
    if cfg.resume:
        if not ckpt_path.exists():
            raise ConfigError(f"resume=True but there is no checkpoint at {ckpt_path}; start without --resume.")
        ckpt = load_checkpoint(ckpt_path)
        if ckpt.get("version") != CHECKPOINT_VERSION:
            raise ConfigError(f"{ckpt_path} has checkpoint format {ckpt.get('version')!r}; this version of "
                              f"nlteach reads format {CHECKPOINT_VERSION} only, so it cannot resume that run.")
        _check_resume_config(ckpt["config"], cfg)
    elif (ckpt_path.exists() or metrics_path.exists()) and not cfg.overwrite:
        raise ConfigError(f"{out} already holds a run ({CHECKPOINT} or {METRICS}); pass --resume to continue "
                          "it, --overwrite to start again, or choose another --out.")

    corpus = load_char_corpus(cfg.data)
    vocab = corpus.vocab
    if ckpt is not None and ckpt["vocab"] != vocab.chars:
        raise ConfigError("the checkpoint's vocabulary differs from the data's; was the corpus changed?")
    train_tokens, val_tokens, test_tokens = corpus["train"], corpus["val"], corpus["test"]

    base = ModelConfig(vocab_size=vocab.size, dim=cfg.dim, n_layers=cfg.n_layers, n_heads=cfg.n_heads,
                       impl=cfg.impl, tie_embeddings=cfg.tie_embeddings, dropout=cfg.dropout,
                       **memory_options(cfg))
    model_cfg = size_to_budget(cfg.model, cfg.params, base) if cfg.params else base

    torch.manual_seed(cfg.seed)  # the model's initial weights depend on the seed only (all ranks alike)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    raw_model = build_model(cfg.model, model_cfg).to(device)
    if dist.rank > 0:  # dropout masks differ across ranks; rank 0 matches a single process
        torch.manual_seed(cfg.seed + 7919 * dist.rank)
    model: nn.Module = raw_model
    if dist.world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            raw_model, device_ids=[device.index] if device.type == "cuda" else None)

    optimizer = make_optimizer(cfg.optimizer, raw_model, cfg.lr, cfg.weight_decay,
                               cms_multi_frequency=cfg.cms_multi_frequency)
    schedule = WarmupCosine(cfg.steps, cfg.warmup, cfg.min_lr_ratio)
    scheduler = (LevelSchedules(optimizer, schedule) if cfg.cms_multi_frequency
                 else torch.optim.lr_scheduler.LambdaLR(optimizer, schedule))
    sampler = RandomWindowSampler(train_tokens.numel(), cfg.seq_len, cfg.batch_size, seed=cfg.seed,
                                  rank=dist.rank, world_size=dist.world_size)
    use_amp = cfg.amp and device.type == "cuda"

    def autocast():
        if use_amp:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    val_starts = eval_windows(val_tokens.numel(), cfg.seq_len, cfg.eval_windows)
    test_starts = eval_windows(test_tokens.numel(), cfg.seq_len, cfg.eval_windows)
    eval_batch = max(1, cfg.batch_size // dist.world_size)

    def run_eval(tokens, starts):
        return evaluate(raw_model, tokens, starts, cfg.seq_len, eval_batch, device, autocast,
                        rank=dist.rank, world_size=dist.world_size)

    # running state of the unfinished log interval (checkpointed, so resume is exact)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    loss_count, elapsed, best_val, last_val, last_train = 0, 0.0, None, None, None
    step = 0
    if ckpt is not None:
        raw_model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        sampler.load_state_dict(ckpt["sampler"])
        step = int(ckpt["step"])
        log = ckpt["log"]
        loss_count, elapsed = log["count"], log["elapsed"]
        best_val, last_val, last_train = log["best_val"], log["last_val"], log["last_train"]
        per_rank = ckpt["per_rank"]  # [{"rng": ..., "loss_sum": ...}] for each rank that wrote it
        if ckpt["world_size"] == dist.world_size:
            set_rng_state(per_rank[dist.rank]["rng"], device)
            loss_sum = per_rank[dist.rank]["loss_sum"].to(device)
        else:  # the unfinished interval's mean loss is kept; its split over ranks is not
            loss_sum = (sum(r["loss_sum"] for r in per_rank) / len(per_rank)).to(device)
        if ckpt["world_size"] != dist.world_size and dist.main:
            print(f"[nlteach.train] the checkpoint was written by {ckpt['world_size']} process(es), this run "
                  f"has {dist.world_size}: data and weights resume exactly, RNG states (dropout) do not.",
                  file=sys.stderr)
        if dist.main:
            _truncate_metrics(metrics_path, step)
    elif dist.main:
        out.mkdir(parents=True, exist_ok=True)
        for name in (METRICS, RESULTS, CHECKPOINT):
            with contextlib.suppress(FileNotFoundError):
                (out / name).unlink()

    n_params = count_parameters(raw_model)
    tokens_per_step = cfg.batch_size * cfg.seq_len

    def save_checkpoint() -> None:
        mine = {"rng": rng_state(device), "loss_sum": loss_sum.cpu()}  # differ across ranks
        per_rank = [mine]
        if dist.world_size > 1:
            per_rank = [None] * dist.world_size
            torch.distributed.all_gather_object(per_rank, mine)
        if not dist.main:
            return
        atomic_save({
            "version": CHECKPOINT_VERSION, "config": cfg.to_dict(), "model_config": model_cfg.to_dict(), "vocab": vocab.chars,
            "step": step, "model": raw_model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "sampler": sampler.state_dict(), "per_rank": per_rank,
            "world_size": dist.world_size,
            "log": {"count": loss_count, "elapsed": elapsed,
                    "best_val": best_val, "last_val": last_val, "last_train": last_train},
        }, ckpt_path)

    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        print(f"[nlteach.train] {cfg.model}: {n_params:,} parameters (dim={model_cfg.dim}, "
              f"n_layers={model_cfg.n_layers}, n_heads={model_cfg.n_heads}), {cfg.data} vocab {vocab.size}, "
              f"device {device}, {dist.world_size} process(es), preset {cfg.preset}, out {out}"
              + (f", resuming at step {step}" if ckpt is not None else ""), file=sys.stderr)

    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.steps, initial=step, desc=cfg.model, dynamic_ncols=True,
               disable=not (cfg.progress and dist.main))
    metrics_file = open(metrics_path, "a", encoding="utf-8") if dist.main else None  # noqa: SIM115
    stop = _StopFlag(distributed=dist.world_size > 1, verbose=dist.main)
    interrupted: str | None = None  # why the loop stopped early: "signal" or "stop_after"
    model.train()
    try:
        with stop:
            while step < cfg.steps:
                if cfg.stop_after is not None and step >= cfg.stop_after:
                    interrupted = "stop_after"
                    break
                if _agree(stop.requested, dist, device):
                    interrupted = "signal"
                    break
                t0 = time.perf_counter()
                x, y = get_batch(train_tokens, sampler.next_starts(), cfg.seq_len)
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                lr = optimizer.param_groups[0]["lr"]
                with autocast():
                    logits = model(x)  # [B_local, T, V]
                loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                # global gradient norm, clipped to grad_clip (an infinite max norm only measures it)
                max_norm = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
                grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), max_norm)
                optimizer.step()
                scheduler.step()
                step += 1
                loss_sum += loss.detach().double()
                loss_count += 1
                elapsed += time.perf_counter() - t0
                bar.update(1)

                is_eval = step % cfg.eval_every == 0 or step == cfg.steps
                if is_eval or step % cfg.log_every == 0:
                    if dist.world_size > 1:
                        torch.distributed.all_reduce(loss_sum)
                        loss_sum /= dist.world_size
                    last_train = float(loss_sum) / loss_count
                    loss_sum.zero_()
                    loss_count = 0
                    val = None
                    if is_eval:
                        val = run_eval(val_tokens, val_starts)
                        last_val = val
                        best_val = val if best_val is None else min(best_val, val)
                    record = {"step": step, "train_loss": last_train, "val_loss": val, "lr": lr,
                              "tokens": step * tokens_per_step, "time": round(elapsed, 3),
                              "grad_norm": float(grad_norm)}
                    if dist.main:
                        metrics_file.write(json.dumps(record) + "\n")
                        metrics_file.flush()
                        bar.set_postfix(loss=f"{last_train:.3f}", val="-" if last_val is None else f"{last_val:.3f}")
                        if on_log is not None:
                            on_log(record)
                if step % cfg.ckpt_every == 0 and step < cfg.steps:
                    save_checkpoint()
    finally:
        bar.close()
        if metrics_file is not None:
            metrics_file.close()

    save_checkpoint()
    if interrupted:
        if dist.main:
            launcher = (f"torchrun --nproc_per_node {dist.world_size} -m nlteach.train" if dist.world_size > 1
                        else "python -m nlteach.train")
            print(f"[nlteach.train] stopped at step {step}; checkpoint written to {ckpt_path}. Continue with: "
                  f"{launcher} --out {out} --resume", file=sys.stderr)
        return {"interrupted": True, "stopped_by": interrupted, "step": step, "checkpoint": str(ckpt_path),
                "out": str(out)}

    test_loss = run_eval(test_tokens, test_starts)
    text = ""
    if dist.main and cfg.sample_chars:
        text = sample(raw_model, vocab, "\n", cfg.sample_chars, temperature=cfg.temperature,
                      context=cfg.seq_len, seed=cfg.seed)
    results = {
        "config": cfg.to_dict(), "model_config": model_cfg.to_dict(), "n_params": n_params,
        "n_params_non_embedding": count_parameters(raw_model, non_embedding=True),
        "vocab_size": vocab.size, "device": str(device), "world_size": dist.world_size,
        "torch": torch.__version__, "steps": step, "tokens": step * tokens_per_step,
        "train_loss": last_train, "val_loss": last_val, "best_val_loss": best_val,
        "test_loss": test_loss, "val_bpc": last_val / math.log(2), "test_bpc": test_loss / math.log(2),
        "time_s": elapsed, "tokens_per_s": step * tokens_per_step / elapsed if elapsed > 0 else None,
        "sample": text, "interrupted": False,
    }
    if dist.main:
        _atomic_write_text(out / RESULTS, json.dumps(results, indent=2) + "\n")
        print(f"[nlteach.train] done: val loss {last_val:.4f}, test loss {test_loss:.4f} nats/char "
              f"({results['test_bpc']:.3f} bits/char); results in {out / RESULTS}\n--- sample ---\n{text}",
              file=sys.stderr)
    return results


def _agree(flag: bool, dist: _Dist, device: torch.device) -> bool:
    """True on every rank if any rank asks to stop (a no-op for one process)."""
    if dist.world_size == 1:
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item())


def _check_resume_config(saved: dict, cfg: TrainConfig) -> None:
    now = cfg.to_dict()
    diff = [f"{k}: checkpoint {saved.get(k)!r}, now {now[k]!r}" for k in now
            if k not in RUNTIME_FIELDS and saved.get(k) != now[k]]
    if diff:
        raise ConfigError("cannot resume exactly: these settings differ from the checkpoint's:\n  "
                          + "\n  ".join(diff) + "\nrun with the same settings (or start a new --out).")


def _truncate_metrics(path: Path, step: int) -> None:
    """Keep only the records up to the checkpoint's step (later ones are recomputed)."""
    if not path.exists():
        return
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    kept = [ln for ln in lines if json.loads(ln)["step"] <= step]
    _atomic_write_text(path, "".join(ln + "\n" for ln in kept))


# ---------------------------------------------------------------------------------------------
# Command line.


def _positive_int(text: str) -> int:
    try:
        v = int(float(text)) if "e" in text.lower() else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def build_parser(*, only_given: bool = False) -> argparse.ArgumentParser:
    """The command-line parser; ``only_given=True`` gives one whose namespace holds only the
    options actually typed (used to lay them over a checkpoint's settings on --resume)."""
    p = argparse.ArgumentParser(
        prog="python -m nlteach.train",
        description="Train a character-level language model (see the module docstring of nlteach.train). "
                    "Unset sizes come from the size preset. With --resume, unset options come from the "
                    "checkpoint in --out, so `--out DIR --resume` is enough.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = TrainConfig()

    def add(*names, **kw):
        if only_given:
            kw["default"] = argparse.SUPPRESS
        p.add_argument(*names, **kw)

    add("--model", default=d.model, choices=available_models(), help="registered model name")
    add("--data", default=d.data, choices=sorted(CORPORA), help="character-level corpus")
    add("--preset", choices=PRESETS, default=None, help="size preset (default: $NLTEACH_SIZE or laptop)")
    add("--device", default=None, help="cpu, cuda, cuda:1, ... (default: CUDA if available)")
    add("--out", default=None, help="run folder (default: runs/<model>_<data>_<preset>_seed<seed>)")
    add("--seed", type=_nonneg_int, default=d.seed)
    add("--steps", type=_positive_int, default=None, help="optimizer steps")
    add("--batch-size", type=_positive_int, default=None, help="GLOBAL batch (sequences per step, all ranks)")
    add("--seq-len", type=_positive_int, default=None, help="characters per training window")
    add("--lr", type=_positive_float, default=None, help="peak learning rate")
    add("--min-lr-ratio", type=float, default=d.min_lr_ratio, help="final lr / peak lr")
    add("--warmup", type=_nonneg_int, default=None, help="linear warmup steps")
    add("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay (matrices only)")
    add("--grad-clip", type=float, default=d.grad_clip, help="max global grad norm (<= 0: off)")
    add("--optimizer", default=d.optimizer,
                   help="adamw, sgd, or the name of an optimizer class in nlteach.optim (e.g. Muon)")
    add("--cms-multi-frequency", action="store_true",
        help="train each CMS level at its own period (MultiFrequencyOptimizer; hope, hope-attention)")
    add("--dim", type=_positive_int, default=None, help="model width")
    add("--n-layers", type=_positive_int, default=None)
    add("--n-heads", type=_positive_int, default=None)
    add("--params", type=_positive_int, default=None,
                   help="parameter budget: choose dim to match it (e.g. 1e6)")
    add("--impl", choices=IMPLS, default=d.impl, help="memory implementation")
    add("--untied", dest="tie_embeddings", action="store_false", help="separate output head")
    add("--dropout", type=float, default=d.dropout)
    add("--chunk-size", type=_positive_int, default=None, help="memory models: chunk of the main memory")
    add("--proj-chunk-size", type=_positive_int, default=None,
        help="hope: chunk of the self-modifying k, v, eta, alpha memories")
    add("--memory-hidden", type=_positive_int, default=None,
        help="memory models: hidden width of each per-head MLP memory (default: 2 x head width)")
    add("--momentum", type=float, default=None, help="hope: momentum beta of self-modifying Titans (0 = off)")
    add("--eval-every", type=_positive_int, default=None)
    add("--eval-windows", type=_positive_int, default=None, help="val windows per evaluation")
    add("--log-every", type=_positive_int, default=None)
    add("--ckpt-every", type=_positive_int, default=None, help="default: --eval-every")
    add("--sample-chars", type=_nonneg_int, default=None, help="characters sampled at the end")
    add("--temperature", type=float, default=d.temperature)
    add("--no-amp", dest="amp", action="store_false", help="no bf16 autocast on CUDA")
    add("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    add("--overwrite", action="store_true", help="start again even if --out holds a run")
    add("--stop-after", type=_positive_int, default=None, help="stop (with a checkpoint) after this step")
    add("--no-progress", dest="progress", action="store_false", help="no progress bar")
    add("--threads", type=_positive_int, default=None, help="torch CPU threads (default: torch's)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    threads = args.pop("threads")
    if threads:
        torch.set_num_threads(threads)
    try:
        if args["resume"]:
            args = _resume_settings(args, vars(build_parser(only_given=True).parse_args(argv)))
        cfg = resolve_config(TrainConfig(**args))
        result = train(cfg)
    except ConfigError as e:
        parser.error(str(e))
    return 130 if result.get("stopped_by") == "signal" else 0


def _resume_settings(parsed: dict, given: dict) -> dict:
    """Settings for --resume: the checkpoint's, then runtime options, then what was typed."""
    if parsed["out"] is None:
        raise ConfigError("--resume needs --out DIR, the folder of the run to continue.")
    path = Path(parsed["out"]) / CHECKPOINT
    if not path.exists():
        raise ConfigError(f"--resume: there is no checkpoint at {path}; start without --resume.")
    saved = load_checkpoint(path)["config"]
    runtime = {k: parsed[k] for k in RUNTIME_FIELDS if k in parsed and k != "preset"}
    given.pop("threads", None)
    return {**saved, **runtime, **given, "resume": True}


if __name__ == "__main__":
    sys.exit(main())
