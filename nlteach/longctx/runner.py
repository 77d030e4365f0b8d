"""Train and evaluate the language models of :mod:`nlteach.models` on the tasks of
:mod:`nlteach.longctx.tasks`: presets, a small training loop, resumable runs, ``results.json``.

``run(cfg, out)`` trains ``cfg.model`` on ``cfg.task`` once per seed, then measures accuracy at
every evaluation context length, and writes, in ``out`` (a :class:`nlteach.runs.rundir.RunDir`):

- ``results.json``: ``config`` (every setting; the model's in ``config["arch"]``), ``per_seed`` (a
  list of ``{"seed": int, "accuracy": {"<context length>": float in [0, 1]}}``), ``details`` (per
  seed: parameters, seconds, the training-loss curve, the provenance of the code that trained it),
  ``summary`` (per length: :func:`nlteach.runs.stats.summarize` of the accuracy over seeds, plus
  min and max; the longest training length; chance accuracy) and ``provenance`` (commit, dirty
  files, command, device of the run that wrote the file);
- ``accuracy.png``: accuracy against context length (mean over seeds and every seed as a point);
- ``config.json``, ``seeds/seed_<s>.json`` for every finished seed and, while a seed trains,
  ``seeds/seed_<s>.pt`` (written atomically every ``ckpt_every`` steps).

**Training.** Step s (from 1) trains on ``batch_size`` fresh examples of length
``train_lengths[(s - 1) % len(train_lengths)]`` drawn with ``make_rng(seed, 0, s)``: the data are a
pure function of ``(seed, step)``, the initial weights of ``seed``, and nothing else draws random
numbers, so a run interrupted after any checkpoint and started again gives the same numbers as an
uninterrupted one (on CPU bit for bit). The loss is cross-entropy on the answer positions only.
AdamW from :mod:`nlteach.recipes` (betas 0.9/0.95, weight decay on matrices only), linear warmup
then cosine (:class:`nlteach.recipes.WarmupCosine`), gradient clipping at 1.

**CMS levels.** The models with a CMS (``hope``, ``hope-attention``) are notebook 09's: their CMS
levels learn in context, level l every ``arch.cms_periods[l]`` *tokens* of the sequence it reads
(:class:`nlteach.models.InContextCMSBranch`; laptop and full presets: the model's default periods,
16, 64, 256 tokens; tiny: 2, 4, so that its short sequences see in-context updates). By default
the outer optimizer steps every parameter at every step, as notebook 09 does. The outer
multi-frequency training is an option (``multi_frequency=True``, ``--cms-multi-frequency``): the
optimizer then steps level l only every ``cms_step_periods[l]`` *optimizer steps* (default 1, 4,
16, ...: :func:`nlteach.recipes.cms_step_periods`), on the mean of the gradients accumulated since
its last step (Eq. 71 with the project's one reduce rule, :func:`nlteach.recipes.make_model_optimizer`;
every other parameter steps every step). The two clocks are separate settings: ``cms_periods``
counts tokens, ``cms_step_periods`` optimizer steps (docs/decisions.md#longctx-cms-steps).

**Results made before the in-context CMS.** Files in the flat layout (no ``arch``: every committed
``results/longctx_*``) were made when the CMS was fixed at test time (today's ``hope-static-cms``
and ``hope-attention-static-cms``), trained multi-frequency with optimizer-step periods equal to
their recorded ``cms_periods`` (the gradients summed, not averaged: with AdamW the two differ only
through epsilon) and memories of twice the head width. :func:`static_cms_results` recognizes them
and :func:`run_label` names their runs for what they measured (``hope-static-cms_steps1-4-16``).

**Budgets.** ``preset_config(..., budget="preset")`` takes the preset's training settings;
``budget="learned"`` (``--budget learned``, retrieval tasks only) those of :data:`LEARNED_BUDGET`,
chosen by pilot runs so that the Transformer *solves* each retrieval task at its training length
(accuracy >= :data:`LEARNED_ACCURACY`), and tested up to 8x that length
(docs/decisions.md#longctx-learned-budget). An optional length curriculum (``curriculum`` steps,
:func:`train_length`) trains the shortest lengths first; for the needle tasks, a needle-count
curriculum (``curriculum_needles``, :func:`train_task`) trains fewer needles first.

**Evaluation.** At each length of ``eval_lengths``, ``eval_examples`` examples drawn with
``make_rng(seed, 1, length)`` (a stream the training never draws from), greedy answers (argmax),
accuracy per the task's unit (MQAR: per query; others: per example, exact match).
Lengths longer than every training length measure length generalization.

**Resuming** follows the project's one policy (:mod:`nlteach.runs.rundir`): the same settings
resume (finished seeds are read back, an interrupted seed continues from its checkpoint); other
settings are refused with an error naming them; ``overwrite=True`` (``--overwrite``) starts over.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from nlteach.config import by_preset, get_device, get_preset
from nlteach.longctx.plots import save_accuracy_figure
from nlteach.longctx.tasks import (
    IGNORE,
    LANGUAGES,
    TASKS,
    Task,
    accuracy_counts,
    make_rng,
    make_task,
)
from nlteach.memory import NonFiniteError
from nlteach.models import ModelConfig, build_model, count_parameters, size_to_budget
from nlteach.recipes import WarmupCosine, cms_step_periods, make_model_optimizer, set_lr
from nlteach.runs.rundir import plain, run_folder
from nlteach.runs.seeds import flat_settings, load_seed_checkpoint, run_seeds, save_seed_checkpoint
from nlteach.runs.stats import paired as paired_values
from nlteach.runs.stats import summarize as summarize_values
from nlteach.runs.tables import pm, pm_summary, text_table
from nlteach.runs.threads import torch_threads

CHECKPOINT_VERSION = 2  # 2: settings with the model's config nested under "arch"
BUDGETS = ("preset", "learned")
LEARNED_ACCURACY = 0.9
"""A model *solves* a task at a length when its accuracy there is at least this (issue 19 item 4's
criterion for the retrieval tasks at their training length; docs/decisions.md#longctx-learned-budget)."""
MODELS = ("transformer", "titans", "hope", "hope-attention")
CMS_MODELS = ("hope", "hope-attention")
ARCH_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ModelConfig))
LEGACY_ARCH_KEYS = ("dim", "n_layers", "n_heads", "chunk_size", "proj_chunk_size", "cms_periods")
"""Model settings that results.json files written before ``arch`` existed keep at the top level."""


def default_arch() -> ModelConfig:
    """The model settings of :class:`LongCtxConfig` when none are given (``vocab_size`` comes from
    the task; the CMS periods are the model's default, in tokens)."""
    return ModelConfig(dim=64, n_layers=2, n_heads=2, chunk_size=16, proj_chunk_size=16)


@dataclass(frozen=True)
class LongCtxConfig:
    """Every setting of a run (see the module docstring). ``arch``: the model's
    :class:`~nlteach.models.ModelConfig` (its ``vocab_size`` stays None: the task sets it).
    ``params``: a parameter budget; when set, ``arch.dim`` stays None and is chosen by
    :func:`nlteach.models.size_to_budget` (equal parameters across models); with ``match_mlp`` also
    ``arch.mlp_hidden`` (width steps alone leave models up to ~10% apart; with it, <1%).
    ``budget``: the name of the row of training settings the config was made from
    (:func:`preset_config`: ``"preset"``, or ``"learned"``, :data:`LEARNED_BUDGET`), recorded so that
    readers can say which; ``curriculum``: steps of the length curriculum (:func:`train_length`).
    ``multi_frequency``: the outer multi-frequency training of the CMS levels (off by default, as in
    notebook 09; ignored for models without a CMS); ``cms_step_periods``: its optimizer-step
    periods, one per CMS level (left None with ``multi_frequency``: 1, 4, 16, ..., recorded as
    such; must stay None without it)."""

    task: str = "mqar"
    model: str = "transformer"
    preset: str = "laptop"
    budget: str = field(default="preset", metadata={
        "help": "which row of training settings: 'preset' (the preset's) or 'learned' (LEARNED_BUDGET: long "
                "enough that the Transformer solves each retrieval task at its training length)"})
    seeds: tuple[int, ...] = (0, 1, 2)
    arch: ModelConfig = field(default_factory=default_arch)
    params: int | None = None
    match_mlp: bool = field(default=False, metadata={
        "help": "with a parameter budget: after the width, choose the MLP's (or CMS's) hidden width so that every "
                "model's count is nearest the budget (within a fraction of a percent; the laptop and full presets "
                "set it)"})
    multi_frequency: bool = False
    cms_step_periods: tuple[int, ...] | None = field(default=None, metadata={
        "help": "with --cms-multi-frequency: optimizer steps between two steps of each CMS level, one per level "
                "(default 1 4 16 ...); the levels' in-context periods (--model hope@PERIODS) count tokens"})
    steps: int = 300
    batch_size: int = 32
    lr: float = 3e-3
    warmup: int = 30
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    train_lengths: tuple[int, ...] = (32, 64)
    eval_lengths: tuple[int, ...] = (32, 64, 128)
    eval_examples: int = 256
    eval_batch: int = 64
    log_every: int = 10
    ckpt_every: int = 50
    curriculum: int = field(default=0, metadata={
        "help": "length curriculum: the first CURRICULUM steps take the training lengths shortest first, an "
                "equal share of steps each; later steps cycle through them (0: no curriculum)"})
    curriculum_needles: tuple[int, ...] | None = field(default=None, metadata={
        "help": "needle tasks: a needle-count curriculum; the first CURRICULUM steps use these numbers of needles, "
                "an equal share of steps each, in the order given; later steps the task's own"})
    train_queries: int | None = field(default=None, metadata={
        "help": "needle tasks: queries per training example (distinct needles asked in turn, each scored; at most "
                "the needles of the step); evaluation keeps the task's own (None: the task's own in training too)"})
    task_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}.")
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}.")
        if not self.seeds or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in self.seeds):
            raise ValueError(f"seeds must be non-negative ints, got {self.seeds!r}.")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds!r}.")
        if not isinstance(self.arch, ModelConfig):
            raise ValueError(f"arch must be a ModelConfig, got {type(self.arch).__name__}.")
        if self.arch.vocab_size is not None:
            raise ValueError(f"arch.vocab_size is set by the task; leave it None (got {self.arch.vocab_size}).")
        for name in ("n_layers", "n_heads"):
            if getattr(self.arch, name) is None:
                raise ValueError(f"arch.{name} must be set (a positive int).")
        if (self.params is None) == (self.arch.dim is None):
            raise ValueError("set exactly one of params (a parameter budget that sizes arch.dim) and arch.dim, "
                             f"got params={self.params!r}, arch.dim={self.arch.dim!r}.")
        if not isinstance(self.match_mlp, bool):
            raise ValueError(f"match_mlp must be a bool, got {self.match_mlp!r}.")
        if self.match_mlp and (self.params is None or self.arch.mlp_hidden is not None):
            raise ValueError("match_mlp chooses arch.mlp_hidden for the parameter budget: it needs params set and "
                             f"arch.mlp_hidden None, got params={self.params!r}, arch.mlp_hidden={self.arch.mlp_hidden!r}.")
        for name in ("steps", "batch_size", "eval_examples", "eval_batch", "log_every", "ckpt_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}.")
        if self.budget not in BUDGETS:
            raise ValueError(f"budget must be one of {BUDGETS}, got {self.budget!r}.")
        if not isinstance(self.curriculum, int) or isinstance(self.curriculum, bool) \
                or not 0 <= self.curriculum <= self.steps:
            raise ValueError(f"curriculum must be an int in [0, steps={self.steps}] (steps of the length "
                             f"curriculum), got {self.curriculum!r}.")
        if self.params is not None and (not isinstance(self.params, int) or self.params < 1):
            raise ValueError(f"params must be a positive int or None, got {self.params!r}.")
        if not isinstance(self.warmup, int) or not 0 <= self.warmup < max(2, self.steps):
            raise ValueError(f"warmup must be an int in [0, steps={self.steps}), got {self.warmup!r}.")
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}.")
        for name in ("train_lengths", "eval_lengths"):
            v = getattr(self, name)
            if not v or any(not isinstance(x, int) or isinstance(x, bool) or x < 1 for x in v):
                raise ValueError(f"{name} must be a non-empty tuple of positive ints, got {v!r}.")
        if self.cms_step_periods is not None and not self.multi_frequency:
            raise ValueError(f"cms_step_periods={self.cms_step_periods!r} needs multi_frequency=True "
                             "(the outer optimizer-step clock of the CMS levels).")
        if self.multi_frequency and self.model in CMS_MODELS:  # record the periods the optimizer uses
            periods = cms_step_periods(len(self.arch.cms_periods), self.cms_step_periods)
            object.__setattr__(self, "cms_step_periods", tuple(periods))
        if self.curriculum_needles is not None:
            if self.task not in ("s-niah", "mk-niah"):
                raise ValueError(f"curriculum_needles is for the needle tasks (s-niah, mk-niah), got task={self.task!r}.")
            if not self.curriculum:
                raise ValueError(f"curriculum_needles={self.curriculum_needles!r} needs curriculum > 0 (its steps).")
        if self.train_queries is not None:
            if self.task not in ("s-niah", "mk-niah"):
                raise ValueError(f"train_queries is for the needle tasks (s-niah, mk-niah), got task={self.task!r}.")
            if not isinstance(self.train_queries, int) or isinstance(self.train_queries, bool) or self.train_queries < 1:
                raise ValueError(f"train_queries must be a positive int or None, got {self.train_queries!r}.")
        needles = (*(self.curriculum_needles or ()), *((self.make_task().n_needles,) if self.train_queries else ()))
        for k in dict.fromkeys(needles):  # every training task other than the task itself fits the lengths
            try:
                self.training_task(k).sample(1, min(self.train_lengths), 0)
            except (TypeError, ValueError) as e:
                what = ", ".join(f"{n}={getattr(self, n)!r}" for n in ("curriculum_needles", "train_queries")
                                 if getattr(self, n) is not None)
                raise ValueError(f"{what}: {k} needles: {e}") from None
        task = self.make_task()
        for L in sorted(set(self.train_lengths) | set(self.eval_lengths)):
            try:
                task.sample(1, L, 0)
            except ValueError as e:
                raise ValueError(f"length {L} in train_lengths/eval_lengths: {e}") from None

    def make_task(self) -> Task:
        return make_task(self.task, **self.task_options)

    def training_task(self, n_needles: int) -> Task:
        """The needle task of a training step with ``n_needles`` needles, asking ``train_queries`` of
        them (at most all) when that is set (:func:`train_task`)."""
        options = {**self.task_options, "n_needles": n_needles}
        if self.train_queries is not None:  # several queries per training example (at most one per needle)
            options["n_queries"] = min(self.train_queries, n_needles)
        return make_task(self.task, **options)

    @property
    def cms_periods(self) -> tuple[int, ...]:
        return tuple(self.arch.cms_periods)

    @property
    def variant(self) -> str:
        """The model's name, plus for a model with a CMS its levels' in-context periods in tokens
        (``hope_cms16-64-256``) and, with multi-frequency training, the optimizer-step periods
        (``hope_cms16-64-256_steps1-4-16``)."""
        if self.model not in CMS_MODELS:
            return self.model
        name = f"{self.model}_cms{_dashed(self.cms_periods)}"
        return f"{name}_steps{_dashed(self.cms_step_periods)}" if self.multi_frequency else name

    def to_dict(self) -> dict[str, Any]:
        """Every setting as JSON gives it back (tuples as lists, ``arch`` as a dict)."""
        return plain(asdict(self))

    def settings(self) -> dict[str, Any]:
        """The settings a run folder and a checkpoint compare: :meth:`to_dict` with dotted names
        (``arch.dim``) and without the seeds; ``train_queries`` only when set (run folders written
        before it existed still resume)."""
        return {k: v for k, v in flat_settings(self.to_dict()).items()
                if k != "seeds" and not (k == "train_queries" and v is None)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LongCtxConfig:
        """The inverse of :meth:`to_dict`; also reads the flat layout of files written before
        ``arch`` existed (model settings at the top level, ``dim`` kept even when ``params`` sized it,
        ``cms_periods`` also the optimizer-step periods of their multi-frequency training). What it
        gives for such a file is today's model with those settings, not the model that ran (see
        :func:`static_cms_results`)."""
        d = dict(d)
        if "arch" in d:
            arch = dict(d.pop("arch"))
        else:  # the flat layout
            arch = {k: d.pop(k) for k in LEGACY_ARCH_KEYS if k in d}
            if d.get("params") is not None:
                arch["dim"] = None
            d.setdefault("multi_frequency", True)  # the runner's default then
            if d["multi_frequency"] and d.get("model") in CMS_MODELS and d.get("cms_step_periods") is None:
                d["cms_step_periods"] = arch.get("cms_periods")  # one clock then: the periods were optimizer steps
        for k in ("seeds", "train_lengths", "eval_lengths", "cms_step_periods", "curriculum_needles"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        return cls(**d, arch=replace(default_arch(), **arch))


def _dashed(periods: Any) -> str:
    return "-".join(map(str, periods))


def static_cms_results(config: dict[str, Any]) -> bool:
    """True when a results file's ``config`` (one run's) is a CMS model's run made before the
    in-context CMS (issue 17): the flat layout (model settings at the top level, no ``arch``), in
    which every committed ``results/longctx_*`` file is written. Such a run's ``hope`` /
    ``hope-attention`` had the CMS that stays fixed at test time (today's ``hope-static-cms`` /
    ``hope-attention-static-cms``). Runs with ``arch`` are read as what their config says (a file
    written with ``arch`` before issue 17, in a local run folder, is not told apart)."""
    return config.get("model") in CMS_MODELS and "arch" not in config


def run_label(name: str, results: dict[str, Any]) -> str:
    """The name to show for the run ``name`` (its variant or folder name) of a results dict: the
    name itself, except for the runs of :func:`static_cms_results`, named for what they measured:
    ``hope-static-cms_steps1-4-16`` (static CMS trained multi-frequency, level l stepping every
    ``cms_periods[l]`` optimizer steps) or, trained at a single frequency,
    ``hope-static-cms_levels3``."""
    cfg = results.get("config") or {}
    if not static_cms_results(cfg):
        return name
    periods = tuple(cfg.get("cms_periods", ()))
    model = f"{cfg['model']}-static-cms"
    if cfg.get("multi_frequency", True):  # the runner's default then
        return f"{model}_steps{_dashed(periods)}"
    return f"{model}_levels{len(periods)}"


def _task_sizes(preset: str, task: str) -> dict[str, Any]:
    """Per task and preset: training and evaluation lengths (train short, test up to 4-8x longer),
    steps and task options."""
    if task in LANGUAGES:
        return by_preset(preset=preset,
                         tiny=dict(train_lengths=(12,), eval_lengths=(12, 24)),
                         laptop=dict(train_lengths=(8, 16), eval_lengths=(16, 32, 64), steps=300),
                         full=dict(train_lengths=(16, 32, 48, 64), eval_lengths=(32, 64, 128, 256, 512)))
    if task == "mqar":
        return by_preset(preset=preset,
                         tiny=dict(train_lengths=(16,), eval_lengths=(16, 32), task_options={"n_keys": 32, "n_values": 16}),
                         laptop=dict(train_lengths=(16, 32), eval_lengths=(16, 32, 64, 128),
                                     task_options={"n_keys": 32, "n_values": 16}),
                         full=dict(train_lengths=(64, 128, 256), eval_lengths=(64, 128, 256, 512, 1024),
                                   task_options={"n_keys": 256, "n_values": 256}))
    return by_preset(preset=preset,  # needle in a haystack
                     tiny=dict(train_lengths=(24,), eval_lengths=(24, 48)),
                     laptop=dict(train_lengths=(32,), eval_lengths=(32, 64, 128, 256)),
                     full=dict(train_lengths=(256, 512, 1024), eval_lengths=(256, 512, 1024, 2048, 4096)))



LEARNED_BUDGET: dict[str, dict[str, Any]] = {
    # one needle: the preset's row already solves it (no key to match: copy what follows NEEDLE)
    "s-niah": dict(steps=600, warmup=30, train_lengths=(32,), eval_lengths=(32, 64, 128, 256)),
    # key matching among 4 needles: a needle-count curriculum (1, 2, 3 needles over the first 3000 steps, then
    # 4) with a length curriculum under it (20, 26, 32 tokens; later steps cycle through them), and a
    # deeper, narrower model at the same 60k parameters (3 layers of 2 heads): with 2 layers no pilot
    # matched the queried key (docs/decisions.md#longctx-learned-budget, pilots p14-p34; this row is p32,
    # 3 of 5 seeds solved: not yet verified)
    "mk-niah": dict(steps=6000, warmup=100, train_lengths=(20, 26, 32), curriculum=3000,
                    curriculum_needles=(1, 2, 3),
                    n_layers=3, eval_lengths=(32, 64, 128, 256), task_options={"n_keys": 4}),
    # 8 pairs at the training length (64 keys, so that 256 tokens, 64 pairs, 8x, can be tested); a
    # length curriculum (2, then 4, then 8 pairs) starts the key matching where a guess is often right
    "mqar": dict(steps=4000, warmup=100, train_lengths=(8, 16, 32), curriculum=1500,
                 eval_lengths=(32, 64, 128, 256), task_options={"n_keys": 64, "n_values": 16}),
}
"""The ``learned`` budget of each retrieval task at the laptop preset's parameter budget (60k
parameters, 2 heads, 2 layers; MK-NIAH 3 layers): settings that replace the preset's so that the
Transformer solves the task at its training length (accuracy >= :data:`LEARNED_ACCURACY`;
:data:`LEARNED_VERIFIED` names the rows a pilot run verified), and tested up to 8x that length.
Reasons and pilot numbers: docs/decisions.md#longctx-learned-budget."""


LEARNED_VERIFIED = ("s-niah", "mqar")
"""The tasks whose :data:`LEARNED_BUDGET` row runs showed the Transformer solving at its training
length (docs/decisions.md#longctx-learned-budget); the others' rows are the best found so far. A pilot
is one seed; the committed runs show every seed. MK-NIAH's row solved some pilot seeds but only one
of five in its five-seed test (p27): it is being revised."""
LEARNED_SEEDS = (0, 1, 2, 3, 4)  # five seeds: the paired verdicts of notebook 11 rest on them


def learned_folder(task: str) -> str:
    """The results folder (under ``results/``) of ``task``'s runs at the learned budget."""
    return f"longctx_{task}_learned"


def learned_command(task: str, seeds: tuple[int, ...] = LEARNED_SEEDS, out_root: str = "results") -> str:
    """The command that trains every model on ``task`` at the learned budget (laptop preset) into
    ``out_root/`` :func:`learned_folder` (commit results only from a clean tree)."""
    if task not in LEARNED_BUDGET:
        raise ValueError(f"task must be one of the retrieval tasks {tuple(LEARNED_BUDGET)}, got {task!r}.")
    return (f"python -m nlteach.longctx --task {task} --model all --preset laptop --budget learned "
            f"--seeds {' '.join(map(str, seeds))} --out {out_root}/{learned_folder(task)}")


def learned_sizes(preset: str, task: str) -> dict[str, Any]:
    """The settings of the ``learned`` budget for ``task`` at ``preset``: :data:`LEARNED_BUDGET` at
    the laptop preset; at tiny, the tiny preset's sizes tested up to 8x the training length (a smoke
    test of the same shape). Not defined at full (its preset already trains 5000 steps) nor for the
    formal languages."""
    if task not in LEARNED_BUDGET:
        raise ValueError(f"budget='learned' is defined for the retrieval tasks {tuple(LEARNED_BUDGET)}, got task={task!r}.")
    preset = get_preset(preset)
    if preset == "full":
        raise ValueError("budget='learned' is measured at the laptop preset (tiny: its smoke test); at preset='full' "
                         "use budget='preset' (5000 steps already).")
    if preset == "laptop":
        return dict(LEARNED_BUDGET[task])
    train = _task_sizes("tiny", task)["train_lengths"]
    return dict(train_lengths=train, eval_lengths=tuple(max(train) * 2 ** i for i in range(4)))


def preset_config(task: str, model: str = "transformer", preset: str | None = None,
                  seeds: tuple[int, ...] = (0, 1, 2), budget: str = "preset", **overrides: Any) -> LongCtxConfig:
    """The settings of ``preset`` (default: the active one) for ``task`` and ``model``; keyword
    ``overrides`` replace any field of :class:`LongCtxConfig` or of its ``arch``
    (:class:`~nlteach.models.ModelConfig`: ``steps=..., cms_periods=..., n_layers=...``). Giving
    ``params`` sizes ``dim`` to it; giving ``dim`` drops the parameter budget.

    ``budget="learned"`` replaces the preset's training settings by the task's row of
    :data:`LEARNED_BUDGET` (:func:`learned_sizes`) before the ``overrides``.

    Sizes (laptop): 60k parameters (2 layers, 2 heads, the same budget for every model, matched to
    within 1% by ``match_mlp``), 600 steps of 32 examples (formal languages: 300), training on
    32-token haystacks, 16-32-token MQAR sequences, strings of up to 16 symbols. Chosen so that
    notebook 11's laptop results fit in roughly 40 CPU-minutes on one thread; measured on one thread of a busy 2-core CPU, an S-NIAH seed
    took 0.5-2 minutes for the Transformer, about 3 for Titans and about 4 for HOPE (the slowest per
    step). They are small; the verdicts of notebook 11 are about this scale.
    """
    preset = get_preset(preset)
    values: dict[str, Any] = dict(task=task, model=model, preset=preset, seeds=tuple(seeds))
    values.update(by_preset(
        preset=preset,
        tiny=dict(params=None, dim=16, n_layers=1, n_heads=2, steps=6, batch_size=8, lr=3e-3, warmup=1,
                  eval_examples=16, eval_batch=16, log_every=2, ckpt_every=3, chunk_size=8, proj_chunk_size=8,
                  cms_periods=(2, 4)),  # tokens: in-context updates within the tiny sequences (12-48 tokens)
        laptop=dict(params=60_000, match_mlp=True, dim=None, n_layers=2, n_heads=2, steps=600, batch_size=32,
                    lr=3e-3, warmup=30, eval_examples=256, eval_batch=64, log_every=20, ckpt_every=100, chunk_size=16,
                    proj_chunk_size=16),
        full=dict(params=5_000_000, match_mlp=True, dim=None, n_layers=4, n_heads=4, steps=5000, batch_size=64,
                  lr=1e-3, warmup=250, eval_examples=1000, eval_batch=32, log_every=50, ckpt_every=250, chunk_size=64,
                  proj_chunk_size=16),
    ))
    values.update(_task_sizes(preset, task))
    if budget not in BUDGETS:
        raise ValueError(f"budget must be one of {BUDGETS}, got {budget!r}.")
    if budget == "learned":
        values.update(learned_sizes(preset, task), budget=budget)
    top = {f.name for f in dataclasses.fields(LongCtxConfig)} - {"arch"}
    arch_fields = set(ARCH_FIELDS) - {"vocab_size"}
    for k, v in overrides.items():
        if k not in top | arch_fields:
            raise ValueError(f"unknown setting {k!r}; known: {sorted(top)} and the model's {sorted(arch_fields)}.")
        tuples = ("seeds", "cms_periods", "cms_step_periods", "train_lengths", "eval_lengths", "curriculum_needles")
        values[k] = tuple(v) if k in tuples and v is not None else v
    if "params" in overrides and "dim" not in overrides:
        values["dim"] = None if overrides["params"] is not None else default_arch().dim
    elif "dim" in overrides and "params" not in overrides:
        values["params"] = None
    if "match_mlp" not in overrides and (values["params"] is None or values.get("mlp_hidden") is not None):
        values["match_mlp"] = False  # a width or an MLP width given by hand: nothing left to match
    arch = ModelConfig(**{k: values.pop(k) for k in list(values) if k in arch_fields})
    return LongCtxConfig(**values, arch=arch)


# ---------------------------------------------------------------------------------------------
# Model, optimizer, one training step


def model_config(cfg: LongCtxConfig) -> ModelConfig:
    """The :class:`ModelConfig` of ``cfg``: ``arch`` with the task's vocabulary and, when ``params``
    is set, ``dim`` sized to it."""
    base = cfg.arch.replace(vocab_size=cfg.make_task().vocab_size)
    return size_to_budget(cfg.model, cfg.params, base, match_mlp=cfg.match_mlp) if cfg.params else base


def build(cfg: LongCtxConfig, seed: int) -> torch.nn.Module:
    """The model with the initial weights of ``seed`` (the global RNG is left as it was)."""
    mcfg = model_config(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(cfg.model, mcfg)


def build_optimizer(cfg: LongCtxConfig, model: torch.nn.Module) -> Any:
    """AdamW (:func:`nlteach.recipes.make_model_optimizer`); for a CMS model with
    ``multi_frequency``, one AdamW per CMS level, level l stepping every ``cms_step_periods[l]``
    optimizer steps (a clock of its own: the levels' in-context periods count tokens)."""
    multi = cfg.multi_frequency and cfg.model in CMS_MODELS
    return make_model_optimizer("adamw", model, cfg.lr, weight_decay=cfg.weight_decay, cms_multi_frequency=multi,
                                step_periods=cfg.cms_step_periods if multi else None)


def train_length(cfg: LongCtxConfig, step: int) -> int:
    """The length of training step ``step`` (from 1). With a length curriculum (``cfg.curriculum`` = C
    > 0), steps 1..C take the training lengths in increasing order, an equal share of the C steps each
    (the shortest first); every other step cycles through ``cfg.train_lengths`` in their order."""
    if step <= cfg.curriculum:
        ordered = sorted(cfg.train_lengths)
        return ordered[(step - 1) * len(ordered) // cfg.curriculum]
    return cfg.train_lengths[(step - 1) % len(cfg.train_lengths)]


def train_task(cfg: LongCtxConfig, task: Task, step: int) -> Task:
    """The task of training step ``step`` (from 1): ``task``, except during a needle-count curriculum
    (``cfg.curriculum_needles``, steps 1..``cfg.curriculum``), where step s uses
    ``curriculum_needles[(s - 1) K // C]`` needles (K numbers, C curriculum steps; the vocabulary
    does not change), and with ``cfg.train_queries`` ``min(train_queries, needles)`` queries per
    example at every step (the evaluation keeps ``task``'s own)."""
    in_curriculum = cfg.curriculum_needles is not None and step <= cfg.curriculum
    if not in_curriculum and cfg.train_queries is None:
        return task
    return cfg.training_task(cfg.curriculum_needles[(step - 1) * len(cfg.curriculum_needles) // cfg.curriculum]
                             if in_curriculum else task.n_needles)


def train_batch(cfg: LongCtxConfig, task: Task, seed: int, step: int):
    """The batch of training step ``step`` (from 1) of ``seed`` (length: :func:`train_length`; task:
    :func:`train_task`)."""
    return train_task(cfg, task, step).sample(cfg.batch_size, train_length(cfg, step), make_rng(seed, 0, step))


def answer_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the answer positions (targets != IGNORE)."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE)


@torch.no_grad()
def evaluate(model: torch.nn.Module, task: Task, lengths: tuple[int, ...], n_examples: int, seed: int, *,
             batch: int = 64, device: torch.device | str = "cpu") -> dict[str, float]:
    """``{str(length): accuracy}``: greedy answers on ``n_examples`` examples per length, drawn
    with ``make_rng(seed, 1, length)`` (:func:`evaluate_counting_overflow`'s first half)."""
    return evaluate_counting_overflow(model, task, lengths, n_examples, seed, batch=batch, device=device)[0]


@torch.no_grad()
def evaluate_counting_overflow(model: torch.nn.Module, task: Task, lengths: tuple[int, ...], n_examples: int,
                               seed: int, *, batch: int = 64,
                               device: torch.device | str = "cpu") -> tuple[dict[str, float], dict[str, float]]:
    """``({str(length): accuracy}, {str(length): overflow})``. A model may overflow at a length it
    never trained on (a recurrent memory's state growing along the sequence): an example whose
    logits are not finite, or every example of a batch whose forward pass stopped at a non-finite
    gate (:class:`nlteach.memory.NonFiniteError`), counts as answered wrong, and ``overflow`` is the
    fraction of such examples (lengths without any are left out)."""
    was = model.training
    model.eval()
    acc, overflow = {}, {}
    try:
        for L in lengths:
            rng = make_rng(seed, 1, L)
            right = total = bad = 0
            for a in range(0, n_examples, batch):
                b = task.sample(min(batch, n_examples - a), L, rng).to(device)
                try:
                    logits = model(b.inputs)  # [B, T, V]
                    broken = ~torch.isfinite(logits).flatten(1).all(1)  # [B]: an example that overflowed
                except NonFiniteError:
                    logits, broken = None, torch.ones(b.inputs.shape[0], dtype=torch.bool, device=b.inputs.device)
                targets = b.targets.cpu()
                pred = torch.full_like(targets, -1) if logits is None else logits.argmax(-1).cpu()
                pred[broken.cpu()] = -1  # -1 matches no target: wrong
                r, t = accuracy_counts(pred, targets, task.unit)
                right, total, bad = right + r, total + t, bad + int(broken.sum())
            acc[str(L)] = right / total
            if bad:
                overflow[str(L)] = bad / n_examples
    finally:
        model.train(was)
    return acc, overflow


def chance_accuracy(task: Task) -> float:
    """Accuracy of uniform guessing among the answers ``task`` allows (:attr:`Task.chance`)."""
    return task.chance


# ---------------------------------------------------------------------------------------------
# One seed, resumable


class _Interrupted(KeyboardInterrupt):
    """Raised by the test hook ``_stop_after_step`` to simulate a Ctrl-C after a checkpoint."""


def run_seed(cfg: LongCtxConfig, seed: int, *, device: torch.device | str | None = None,
             checkpoint: Path | None = None, bar: Any = None, return_model: bool = False,
             _stop_after_step: int | None = None) -> Any:
    """Train and evaluate one seed; returns ``{"seed", "accuracy", "n_params", "seconds",
    "eval_seconds", "loss_curve", "nonfinite_step"}`` (with ``return_model``: that record and the
    trained model, for a closer look such as ``tools.longctx_pilot``). Resumes from ``checkpoint``
    when it exists (same settings required)."""
    device = get_device(device)
    task = cfg.make_task()
    model = build(cfg, seed).to(device)
    opt = build_optimizer(cfg, model)
    sched = WarmupCosine(cfg.steps, cfg.warmup, 0.1)
    step, curve, seconds, loss_sum, loss_n, nonfinite = 0, [], 0.0, 0.0, 0, None
    state = load_seed_checkpoint(checkpoint, cfg.settings(), version=CHECKPOINT_VERSION)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, curve, seconds = state["step"], state["curve"], state["seconds"]
        loss_sum, loss_n, nonfinite = state["loss_sum"], state["loss_n"], state["nonfinite"]
        if bar is not None:
            bar.update(step)
    model.train()
    while step < cfg.steps:
        t0 = time.perf_counter()
        b = train_batch(cfg, task, seed, step + 1).to(device)
        set_lr(opt, cfg.lr * sched(step))
        loss = answer_loss(model(b.inputs), b.targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        value = loss.item()
        loss_sum, loss_n = loss_sum + value, loss_n + 1
        if nonfinite is None and not math.isfinite(value):
            nonfinite = step  # the first step whose loss was NaN or infinite (reported, not hidden)
        seconds += time.perf_counter() - t0
        if step % cfg.log_every == 0 or step == cfg.steps:
            curve.append([step, loss_sum / loss_n])
            loss_sum, loss_n = 0.0, 0
            if bar is not None:
                bar.set_postfix(seed=seed, loss=f"{curve[-1][1]:.3f}")
        if bar is not None:
            bar.update(1)
        if checkpoint is not None and step % cfg.ckpt_every == 0 and step < cfg.steps:
            save_seed_checkpoint(checkpoint, cfg.settings(), {
                "seed": seed, "step": step, "model": model.state_dict(), "optimizer": opt.state_dict(),
                "curve": curve, "seconds": seconds, "loss_sum": loss_sum, "loss_n": loss_n, "nonfinite": nonfinite,
            }, version=CHECKPOINT_VERSION)
            if _stop_after_step is not None and step >= _stop_after_step:
                raise _Interrupted(f"stopped after step {step} (test hook)")
    t0 = time.perf_counter()
    acc, overflow = evaluate_counting_overflow(model, task, cfg.eval_lengths, cfg.eval_examples, seed,
                                               batch=cfg.eval_batch, device=device)
    record = {"seed": seed, "accuracy": acc, "n_params": count_parameters(model), "seconds": seconds,
              "eval_seconds": time.perf_counter() - t0, "loss_curve": curve, "nonfinite_step": nonfinite,
              "eval_overflow": overflow}
    return (record, model) if return_model else record


def summarize(cfg: LongCtxConfig, per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Per length: :func:`nlteach.runs.stats.summarize` of the accuracy over seeds (mean, std, n,
    ci95, dropped) with its min and max; plus the facts figures need."""
    task = cfg.make_task()

    def stats(xs: list[float]) -> dict[str, Any]:
        return {**summarize_values(xs), "min": min(xs), "max": max(xs)}

    return {
        "accuracy": {str(L): stats([p["accuracy"][str(L)] for p in per_seed]) for L in cfg.eval_lengths},
        "train_max_length": max(cfg.train_lengths),
        "chance": chance_accuracy(task),
        "unit": task.unit,
        "n_seeds": len(per_seed),
    }


DETAILS = ("seed", "n_params", "seconds", "eval_seconds", "nonfinite_step", "eval_overflow", "loss_curve",
           "cpu_seconds", "provenance")
"""The keys of a seed's record that ``results.json`` repeats under ``details`` (None where a record
does not hold one: a run without a folder has no provenance)."""


def run(cfg: LongCtxConfig, out: str | Path | None = None, *, device: torch.device | str | None = None,
        progress: bool = False, figures: bool = True, threads: int | None = 1, command: str | None = None,
        overwrite: bool = False, _stop_after_step: int | None = None) -> dict[str, Any]:
    """Every seed of ``cfg``; returns the results.json dict (written, with a figure, to ``out``).

    ``out=None`` writes nothing (notebooks). Otherwise ``out`` is a run folder with the project's
    resume policy (module docstring); ``overwrite=True`` deletes a previous run there first.
    ``command``: recorded in the provenance (default: this process's command line). ``threads``:
    torch CPU threads during the run (1 by default: these models are small, and one thread is
    faster than two on a shared 2-core machine).
    """
    with torch_threads(threads), run_folder(out, cfg.settings(), overwrite=overwrite) as rundir:  # locked
        device = get_device(device)

        def train_seed(seed: int, checkpoint: Path | None, bar: Any) -> dict[str, Any]:
            return run_seed(cfg, seed, device=device, checkpoint=checkpoint, bar=bar,
                            _stop_after_step=_stop_after_step)

        done = run_seeds(cfg.seeds, train_seed, rundir=rundir, units=cfg.steps, desc=f"{cfg.task}/{cfg.variant}",
                         progress=progress, device=device)
        per_seed = [{"seed": s, "accuracy": done[s]["accuracy"]} for s in cfg.seeds]
        results = {
            "config": cfg.to_dict(),
            "variant": cfg.variant,
            "per_seed": per_seed,
            "details": [{k: done[s].get(k) for k in DETAILS} for s in cfg.seeds],
            "summary": summarize(cfg, per_seed),
        }
        if rundir is None:
            return results
        results = rundir.write_results(results, command=command, device=device)
        if figures:
            save_accuracy_figure({cfg.variant: results}, rundir.path / "accuracy.png")
    return results


def combine(results_by_variant: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One results dict for several runs of the same task: ``config`` (the shared settings and each
    variant's), ``per_seed`` (every run's ``{"seed", "accuracy"}`` entries, tagged with ``"model"``:
    the variant name) and ``summary`` (each variant's summary)."""
    if not results_by_variant:
        raise ValueError("results_by_variant is empty.")
    tasks = {r["config"]["task"] for r in results_by_variant.values()}
    if len(tasks) != 1:
        raise ValueError(f"combine() takes runs of one task, got {sorted(tasks)}.")
    first = next(iter(results_by_variant.values()))["config"]
    return {
        "config": {"task": first["task"], "preset": first["preset"], "seeds": first["seeds"],
                   "variants": {v: r["config"] for v, r in results_by_variant.items()}},
        "per_seed": [{"model": v, **p} for v, r in results_by_variant.items() for p in r["per_seed"]],
        "summary": {v: r["summary"] for v, r in results_by_variant.items()},
        "details": {v: r["details"] for v, r in results_by_variant.items()},
    }


def split_combined(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The inverse of :func:`combine`: ``{variant: results dict}`` (each with the combined file's
    ``provenance``, None if it has none). A single run's dict comes back as ``{its variant: it}``."""
    if "variants" not in results.get("config", {}):
        name = results.get("variant") or results["config"].get("model", "run")
        return {name: results}
    out = {}
    for v, cfg in results["config"]["variants"].items():
        out[v] = {"config": cfg, "variant": v,
                  "per_seed": [{"seed": p["seed"], "accuracy": p["accuracy"]}
                               for p in results["per_seed"] if p["model"] == v],
                  "summary": results["summary"][v], "details": results.get("details", {}).get(v, []),
                  "provenance": results.get("provenance")}
    return out

def run_variants(cfgs: list[LongCtxConfig], out: str | Path | None = None, *, overwrite: bool = False,
                 command: str | None = None, figures: bool = True, **kw: Any) -> dict[str, Any]:
    """:func:`run` for several configurations of one task (models, or CMS variants); each writes to
    ``out/<variant>/``; the combined dict (:func:`combine`) goes to ``out/results.json`` with a
    comparison figure ``out/accuracy.png``. ``out`` is itself a run folder whose settings are the
    task and the list of variants (another list is refused; ``overwrite=True`` deletes it all first),
    and each variant's folder checks that variant's settings.
    ``kw`` goes to :func:`run`. Returns the combined dict."""
    names = [c.variant for c in cfgs]
    if len(set(names)) != len(names):
        raise ValueError(f"two configurations have the same variant name: {names}.")
    # each variant's folder checks its own settings; this folder, which variants it combines (locked)
    with run_folder(out, {"task": sorted({c.task for c in cfgs}), "variants": names}, overwrite=overwrite) as rundir:
        res = {c.variant: run(c, None if rundir is None else rundir.path / c.variant, command=command,
                              figures=figures, **kw) for c in cfgs}
        combined = combine(res)
        if rundir is None:
            return combined
        combined = rundir.write_results(combined, command=command, device=get_device(kw.get("device")))
        if figures:
            save_accuracy_figure(res, rundir.path / "accuracy.png")
    return combined


def with_seeds(cfg: LongCtxConfig, seeds: tuple[int, ...]) -> LongCtxConfig:
    return replace(cfg, seeds=tuple(seeds))


SEEDS_DISAGREE = 0.2
"""Accuracy range over seeds (max - min) from which a table cell lists every seed beside the mean:
a spread that large at these sizes means that some seeds learned the task and some did not."""


def seeds_cell(values: list[float], digits: int = 2) -> str:
    """``"mean ± std"`` of per-seed ``values``, followed by every seed's value (in seed order) when they
    disagree by :data:`SEEDS_DISAGREE` or more, so a bimodal result cannot hide in its mean."""
    cell = pm_summary(summarize_values(values), digits)
    finite = [v for v in values if isinstance(v, int | float) and math.isfinite(v)]
    if len(finite) > 1 and max(finite) - min(finite) >= SEEDS_DISAGREE:
        cell += " (seeds: " + ", ".join(f"{v:.{digits}f}" for v in values) + ")"
    return cell


def format_table(results_by_variant: dict[str, dict[str, Any]]) -> str:
    """A plain-text table: one row per variant, its chance accuracy (:func:`task_chance`) and the
    accuracy at each length (:func:`seeds_cell`: mean +- std over seeds, every seed where they
    disagree; lengths beyond the longest training length marked with *)."""
    lengths = sorted({L for r in results_by_variant.values() for L in r["summary"]["accuracy"]}, key=int)
    train_max = max(r["summary"]["train_max_length"] for r in results_by_variant.values())
    head = {L: f"{L}{'*' if int(L) > train_max else ''}" for L in lengths}
    rows = []
    for v, r in results_by_variant.items():
        acc = r["summary"]["accuracy"]
        rows.append({"variant": v, "chance": f"{task_chance(r['config']):.3g}",
                     **{head[L]: seeds_cell(list(_seed_values(r, int(L)).values()), 3) if L in acc else "-"
                        for L in lengths},
                     "seeds": ",".join(str(p["seed"]) for p in r["per_seed"])})
    return (text_table(rows, ["variant", "chance", *head.values(), "seeds"])
            + f"\n(* = longer than every training length; the longest trained is {train_max}; chance: from the task's "
              f"definition; every seed is listed where seeds differ by {SEEDS_DISAGREE:g} or more)")


def task_chance(config: dict[str, Any]) -> float:
    """Chance accuracy of a results file's run, computed from its task's definition (``config``'s
    ``task`` and ``task_options``; :attr:`nlteach.longctx.tasks.Task.chance`)."""
    return make_task(config["task"], **(config.get("task_options") or {})).chance


def _seed_values(r: dict[str, Any], length: int) -> dict[int, float]:
    return {p["seed"]: p["accuracy"][str(length)] for p in r["per_seed"] if str(length) in p["accuracy"]}


def verdict(results_by_variant: dict[str, dict[str, Any]]) -> str:
    """Plain-language reading of several runs of one task, computed from their numbers with the
    course's one rule (the 95% t interval of a seed-paired difference, :func:`nlteach.runs.stats.paired`).

    At the longest training length and at the longest tested length: which variant has the best
    mean accuracy, and for each other variant the difference to it paired by seed: "behind" when the
    whole interval lies below 0, else "no clear difference". Then, per variant, the accuracy at the
    longest training length and at the longest tested one, how many seeds solve the task at the
    training length (accuracy >= :data:`LEARNED_ACCURACY`), and whether the longest length is above
    chance (:func:`task_chance`; the 95% interval of the mean above it) or not.
    """
    if not results_by_variant:
        raise ValueError("results_by_variant is empty.")
    any_r = next(iter(results_by_variant.values()))
    lengths = sorted({int(L) for r in results_by_variant.values() for L in r["summary"]["accuracy"]})
    train_max = max(r["summary"]["train_max_length"] for r in results_by_variant.values())
    at_train = max((L for L in lengths if L <= train_max), default=lengths[0])
    lines = []
    for L, label in ((at_train, "at the longest training length"), (lengths[-1], "at the longest tested length")):
        if label.endswith("tested length") and L == at_train:
            continue
        accs = {v: r["summary"]["accuracy"][str(L)] for v, r in results_by_variant.items()
                if str(L) in r["summary"]["accuracy"]}
        best = max(accs, key=lambda v: accs[v]["mean"])
        b = accs[best]
        lines.append(f"{label} ({L}): best {best} {pm(b['mean'], b['std'], 3)}")
        ref = _seed_values(results_by_variant[best], L)
        for v, a in sorted(accs.items(), key=lambda kv: -kv[1]["mean"]):
            if v == best:
                continue
            own = _seed_values(results_by_variant[v], L)
            seeds = sorted(set(own) & set(ref))
            d = paired_values([own[s] for s in seeds], [ref[s] for s in seeds])
            if d["n"] < 2:
                judged = f"{d['n']} paired seed(s): cannot tell"
            else:
                lo, hi = d["ci95"]
                judged = (f"95% interval [{lo:+.3f}, {hi:+.3f}] over {d['n']} paired seeds: "
                          + ("behind" if d["sign"] < 0 else "no clear difference"))
            lines.append(f"  {v}: {pm(a['mean'], a['std'], 3)} ({d['mean']:+.3f} paired, {judged})")
    chance = task_chance(any_r["config"])
    if lengths[-1] > at_train:
        lines.append(f"length generalization ({at_train} -> {lengths[-1]}; chance {chance:.3g}):")
        for v, r in results_by_variant.items():
            # from the per-seed values: files written before stats.summarize lack n and ci95 in their summary
            solved = list(_seed_values(r, at_train).values())
            a, z = summarize_values(solved), summarize_values(list(_seed_values(r, lengths[-1]).values()))
            if z["n"] < 2:
                tag = "one seed"
            elif z["ci95"][0] <= chance:
                tag = "not above chance"
            else:
                tag = "above chance"
            learned = "" if a["n"] < 2 or a["ci95"][0] > chance else " (not learned even at the training length)"
            lines.append(f"  {v}: {a['mean']:.3f} -> {z['mean']:.3f} ({tag}; solved at the training length on "
                         f"{sum(x >= LEARNED_ACCURACY for x in solved)}/{len(solved)} seeds){learned}")
    return "\n".join(lines)
