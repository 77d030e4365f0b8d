"""Notebook 09's comparison: character-level language models on tiny Shakespeare at equal
parameters and tokens, several seeds.

    python -m nlteach.experiments.lm_comparison --preset tiny              # -> runs/lm_comparison_tiny
    python -m nlteach.experiments.lm_comparison --preset laptop --seeds 0 1 2 --ablation-seeds 0 1 2 \\
        --multi-frequency-seeds 0 1 2 --small-memory-seeds 0 1 2 --out results/lm_tinyshakespeare_laptop

**Arms.** The main models (:data:`MAIN_MODELS`) over ``seeds``; HOPE's ablations
(:data:`ABLATIONS`) over ``ablation_seeds``; ``hope+multi-frequency CMS`` (HOPE trained with
``cms_multi_frequency=True``) over ``multi_frequency_seeds``; at a budget whose learning rates are
swept, each ablation of ``own_lr_ablations`` also over ``ablation_seeds`` at its own swept rate
(:func:`own_lr_label`); ``hope+half-width memories``
(:data:`SMALL_MEMORY`: HOPE whose memories have a hidden width of half a head,
:func:`half_width_memory_hidden`) over ``small_memory_seeds``. Every arm is one
:func:`nlteach.train.train` run per seed with the preset's row of :data:`SIZES`, the one table of
this experiment's settings (``nlteach.results`` builds its launch jobs from it too): the parameter
budget ``params`` (each model's width is chosen by ``size_to_budget``), and equal steps, batch and
sequence length, hence equal tokens.

**Run folder** (``out``; committing results is an explicit ``--out results/<name>``), through
:class:`nlteach.runs.rundir.RunDir` and its one resume policy::

    config.json                    the settings every arm shares (all that changes the numbers)
    results.json                   per_seed records, summary, provenance (rewritten after each seed)
    arms/<arm>/config.json         the arm's own settings (its model, multi-frequency, memory width)
    arms/<arm>/seeds/seed_<s>.json a finished seed (skipped when the call is repeated)
    arms/<arm>/seeds/seed_<s>/     the nlteach.train run of the seed in progress (resumed exactly)

Calling again with the same settings continues where it stopped (the seed lists may grow); other
settings are refused with an error naming each one; ``overwrite=True`` starts over. A ``per_seed``
record holds ``label`` (= ``model``: the arm), ``architecture``, ``seed``, ``val_loss``, ``val_bpc``,
``test_loss``, ``test_bpc``, ``n_params``, ``time_s``, ``sample``, ``curve`` (the metrics lines),
for a model with an in-context CMS ``cms_relative_change`` (:func:`cms_change`), and the arm's extra
settings; :func:`load_comparison` reads the file back for the drawing functions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import shutil
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nlteach.config import PRESETS as PRESETS_OF_TRAIN
from nlteach.config import get_device, get_preset
from nlteach.experiments import stream
from nlteach.models import (
    MODELS,
    InContextCMSBranch,
    ModelConfig,
    cms_relative_change,
    size_to_budget,
)
from nlteach.runs import cli, console, stats
from nlteach.runs.commands import run_guarded
from nlteach.runs.io import json_safe, read_json
from nlteach.runs.provenance import command_line
from nlteach.runs.rundir import RunDir
from nlteach.runs.sweep import choose_on_grid
from nlteach.runs.tables import text_table
from nlteach.text import get_batch, load_char_corpus
from nlteach.train import CHECKPOINT, METRICS, RUNTIME_FIELDS, load_model, train
from nlteach.train_config import resolve_config

NAME = "lm_comparison"
DATA = "tinyshakespeare"
MAIN_MODELS: tuple[str, ...] = ("transformer", "titans", "hope", "hope-attention")
ABLATIONS: tuple[str, ...] = ("hope-no-cms", "hope-no-selfmod", "hope-no-dgd")
MULTI_FREQUENCY = "hope+multi-frequency CMS"  # HOPE with cms_multi_frequency=True
SMALL_MEMORY = "hope+half-width memories"  # HOPE with memory_hidden = head_dim / 2 (cheaper, see bench models)

REFERENCE_PARAMS = 200_000
SIZES: dict[str, dict[str, int | float | bool]] = {
    # laptop: one HOPE run takes a few minutes on one CPU thread (a HOPE step costs several
    # Transformer steps, see ``python -m nlteach.bench models``)
    "tiny": dict(params=20_000, n_layers=2, n_heads=2, steps=12, batch_size=2, seq_len=64, lr=3e-3,
                 eval_every=4, eval_windows=8, log_every=2),
    "laptop": dict(params=120_000, n_layers=4, n_heads=4, steps=150, batch_size=8, seq_len=128, lr=2e-3,
                   eval_every=50, eval_windows=64, log_every=10),
    "full": dict(params=5_000_000, n_layers=6, n_heads=6, steps=3000, batch_size=32, seq_len=256, lr=1e-3,
                 eval_every=250, eval_windows=500, log_every=50),
    # reference: the budget at which the models learn well past counting (issue 18): 2.46M training
    # characters per run (2.4 passes over the split); a Transformer run takes ~5 minutes on one CPU
    # thread, a HOPE run several times that; the whole comparison is hours of background runs on a
    # 2-core CPU, one run per core. Every model has the short causal convolution (the
    # attention models on q, k, v), parameters match within a fraction of a percent (match_mlp), and
    # each model's learning rate comes from LR_GRIDS' sweep on the validation split
    # (docs/decisions.md#reference-budget).
    "reference": dict(params=REFERENCE_PARAMS, n_layers=4, n_heads=4, steps=600, batch_size=16, seq_len=256,
                      lr=4e-3, eval_every=100, eval_windows=200, log_every=20, match_mlp=True, attention_conv=True),
}
BUDGETS: tuple[str, ...] = tuple(SIZES)
TRAIN_PRESET = {"reference": "laptop"}  # the nlteach.train preset (defaults, label) of a budget not a preset
# Budgets whose learning rate is swept per model (the ``lr`` of SIZES is then only the grid's middle).
# One seed (SWEEP_SEED, not one of the reported seeds) per value, chosen on validation loss; when
# the best value sits on an edge of the grid, the grid is widened by a factor of 2 on that side
# (at most MAX_WIDEN times).
LR_GRIDS: dict[str, tuple[float, ...]] = {"tiny": (), "laptop": (), "full": (), "reference": (2e-3, 4e-3, 8e-3)}
SWEEP_SEED = 100
MAX_WIDEN = 2
REFERENCE_MODELS: tuple[str, ...] = (*("transformer", "titans", "hope", "hope-attention"), "hope-static-cms")
REFERENCE_ABLATIONS: tuple[str, ...] = ("hope-no-selfmod", "hope-no-dgd")
# Ablations that also get their own learning-rate sweep (like a main model) and an arm at the rate it
# chose, :func:`own_lr_label`, beside the arm at HOPE's rate: without DGD's normalized step the
# second memory matrix's update is stable only for small enough steps, and at HOPE's rate
# hope-no-dgd diverges (docs/decisions.md#hope-no-dgd-lr).
REFERENCE_OWN_LR_ABLATIONS: tuple[str, ...] = ("hope-no-dgd",)


def own_lr_label(ablation: str) -> str:
    """The label of the arm of ``ablation`` trained at its own swept learning rate."""
    return f"{ablation}, own lr"


def diverged(record: dict[str, Any]) -> bool:
    """Whether a per-seed record is of a run that stopped at a non-finite gradient (``nlteach.train``:
    ``diverged_at_step`` set, no losses)."""
    return record.get("diverged_at_step") is not None


def converged(per_seed: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of ``per_seed`` whose runs did not diverge (the ones that have losses)."""
    return [r for r in per_seed if not diverged(r)]


def budget_name(budget: str | None = None) -> str:
    """``budget`` when it names a row of :data:`SIZES` that is not a size preset (``"reference"``),
    else the size preset (:func:`nlteach.config.get_preset`: ``$NLTEACH_SIZE`` when None)."""
    if budget is not None and budget.strip().lower() in SIZES:
        return budget.strip().lower()
    try:
        return get_preset(budget)
    except ValueError:
        raise ValueError(f"budget={budget!r} is not one of {', '.join(BUDGETS)}.") from None


def train_preset(budget: str | None = None) -> str:
    """The :mod:`nlteach.train` preset the runs of ``budget`` use (a budget that is no preset: laptop)."""
    name = budget_name(budget)
    return TRAIN_PRESET.get(name, name)


def sizes(preset: str | None = None) -> dict[str, int | float | bool]:
    """The training settings of the comparison at budget ``preset`` (a row of :data:`SIZES`; default
    ``$NLTEACH_SIZE``)."""
    return dict(SIZES[budget_name(preset)])


def train_arguments(preset: str | None = None) -> list[str]:
    """:func:`sizes` as ``python -m nlteach.train`` options (to launch one arm and seed as its own job)."""
    def option(k: str, v: Any) -> list[str]:
        flag = f"--{k.replace('_', '-')}"
        return ([flag] if v else []) if isinstance(v, bool) else [flag, str(v)]
    return [a for k, v in sizes(preset).items() for a in option(k, v)]


def lr_grid(budget: str | None = None) -> tuple[float, ...]:
    """The learning rates swept per model at ``budget`` (empty: every model trains at ``sizes()["lr"]``)."""
    return LR_GRIDS[budget_name(budget)]


def half_width_memory_hidden(params: int, n_layers: int, n_heads: int) -> int:
    """``memory_hidden`` of the ``SMALL_MEMORY`` arm: half the head width of HOPE sized to ``params``
    with its default memories (hidden width two heads), so a quarter of the default width."""
    hope = size_to_budget("hope", params, ModelConfig(vocab_size=65, dim=2 * n_heads, n_layers=n_layers,
                                                      n_heads=n_heads))
    return max(1, hope.head_dim // 2)


def settings(preset: str | None = None) -> dict[str, Any]:
    """Every training setting the arms share (what :func:`nlteach.train.resolve_config` makes of
    :func:`sizes`), without the per-run ones (model, seed, output folder, ...; the learning rate
    too when it is swept per model)."""
    flat = resolve_config(model="transformer", data=DATA, preset=train_preset(preset), **sizes(preset)).flat()
    per_run = (*RUNTIME_FIELDS, "preset", "model", "seed", *(("lr",) if lr_grid(preset) else ()))
    flat = {k: v for k, v in flat.items() if k not in per_run}
    if budget_name(preset) not in PRESETS_OF_TRAIN:
        flat["budget"] = budget_name(preset)
    return flat


def plan(*, preset: str | None = None, seeds: Sequence[int] = (0, 1, 2), models: Sequence[str] = MAIN_MODELS,
         ablation_seeds: Sequence[int] = (0,), multi_frequency_seeds: Sequence[int] = (0,),
         small_memory_seeds: Sequence[int] = (), ablations: Sequence[str] = ABLATIONS,
         own_lr_ablations: Sequence[str] = (),
         lrs: dict[str, float] | None = None) -> list[tuple[str, str, int, dict[str, Any]]]:
    """The runs of a comparison, in order: ``(label, model, seed, extra training settings)``. The main
    models seed by seed (a call cut short holds whole seeds), then the other arms. ``lrs``: each
    swept model's learning rate (the sweep's choice, :func:`sweep_plan`); the HOPE variants take
    HOPE's; without it every run trains at the budget's ``lr``. Each of ``own_lr_ablations`` adds an
    arm :func:`own_lr_label` over ``ablation_seeds`` at its own rate ``lrs[ablation]`` (left out
    while its sweep is unfinished, or when there is no sweep)."""
    def lr(model: str) -> dict[str, float]:
        return {} if lrs is None else {"lr": lrs[model if model in lrs else "hope"]}

    runs = [(m, m, s, lr(m)) for s in seeds for m in models]
    runs += [(m, m, s, lr("hope")) for m in ablations for s in ablation_seeds]  # HOPE's rate, even when swept
    runs += [(own_lr_label(m), m, s, {"lr": lrs[m]}) for m in own_lr_ablations if lrs and m in lrs
             for s in ablation_seeds]
    runs += [(MULTI_FREQUENCY, "hope", s, {"cms_multi_frequency": True, **lr("hope")}) for s in multi_frequency_seeds]
    if small_memory_seeds:
        z = sizes(preset)
        hidden = half_width_memory_hidden(int(z["params"]), int(z["n_layers"]), int(z["n_heads"]))
        runs += [(SMALL_MEMORY, "hope", s, {"memory_hidden": hidden, **lr("hope")}) for s in small_memory_seeds]
    return runs


def sweep_label(model: str, lr: float) -> str:
    return f"lr sweep: {model} lr={lr:g}"


def sweep_plan(models: Sequence[str], grid: Sequence[float]) -> list[tuple[str, str, int, dict[str, Any]]]:
    """The learning-rate sweep's runs ``(label, model, SWEEP_SEED, {"lr": lr})``: every value of
    ``grid`` for each model, the cheaper value first for each."""
    return [(sweep_label(m, lr), m, SWEEP_SEED, {"lr": lr}) for m in models for lr in sorted(grid)]


def choose_lr(val_by_lr: dict[float, float]) -> tuple[float, float | None]:
    """The learning rate of lowest validation loss (a diverged run, NaN or inf, loses), and the value
    to add when it sits on an edge of the grid (twice the largest, half the smallest; else None):
    :func:`nlteach.runs.sweep.choose_on_grid` with factor 2."""
    return choose_on_grid(val_by_lr, factor=2.0)


def run_comparison(out: str | Path, *, preset: str | None = None, seeds: Sequence[int] = (0, 1, 2),
                   models: Sequence[str] = MAIN_MODELS, ablation_seeds: Sequence[int] = (0,),
                   multi_frequency_seeds: Sequence[int] = (0,), small_memory_seeds: Sequence[int] = (),
                   ablations: Sequence[str] = ABLATIONS, own_lr_ablations: Sequence[str] = (),
                   sample_chars: int = 300, overwrite: bool = False,
                   device: str | None = None, command: str | None = None, report_only: bool = False) -> dict[str, Any]:
    """Train every run of :func:`plan` not yet finished in ``out`` and write ``out/results.json``
    after each one (module docstring). ``preset`` is the budget (a row of :data:`SIZES`); a budget
    with a learning-rate grid (:data:`LR_GRIDS`) first sweeps it for each main model on seed
    :data:`SWEEP_SEED` (:func:`sweep_plan`, widened at an edge by :func:`choose_lr`), then for each
    of ``own_lr_ablations``, and trains the arms at the chosen rates (a run that diverged counts as
    the worst value of the sweep). The first of ``seeds`` samples ``sample_chars`` characters.
    ``report_only=True`` trains nothing: it writes ``results.json`` from the runs already finished
    in ``out`` (e.g. seeds gathered from several processes), a sweep still missing values marked
    ``"complete": False`` and the arms that need its choice left out.
    Returns the results dict; when Ctrl-C stopped a run (inside its training loop), the seeds
    finished so far with ``"interrupted": True`` (rerun to resume; a Ctrl-C elsewhere raises
    ``KeyboardInterrupt``). The folders are locked for the call (:mod:`nlteach.runs.lock`). Raises
    :class:`nlteach.runs.rundir.SettingsMismatch` when ``out`` holds a comparison with other settings."""
    budget = budget_name(preset)
    common = settings(budget)
    grid = lr_grid(budget)
    with contextlib.ExitStack() as held:  # every folder's lock, released however the call ends
        top = held.enter_context(RunDir(out, common, overwrite=overwrite))
        sweep: dict[str, dict[str, Any]] = {}  # filled model by model; the runner writes it as it grows
        runner = _Runner(top, held, budget, common, device, command=command, sweep=sweep, report_only=report_only,
                         sample_chars=sample_chars, first_seed=seeds[0] if seeds else None)
        lrs = None
        if grid:
            for model in [*models, *own_lr_ablations]:
                values, widen = sorted(grid), 0
                while True:
                    todo = sweep_plan([model], values)
                    if not runner.run_all(todo):
                        return runner.write(interrupted=True)
                    val = {extra["lr"]: runner.records[(label, seed)]["val_loss"] for label, _, seed, extra in todo
                           if (label, seed) in runner.records}  # None: the run diverged
                    stopped = {extra["lr"]: runner.records[(label, seed)]["diverged_at_step"]
                               for label, _, seed, extra in todo
                               if (label, seed) in runner.records and diverged(runner.records[(label, seed)])}
                    if not val:
                        break
                    complete = len(val) == len(todo)
                    best, extra_lr = choose_lr({v: math.nan if x is None else x for v, x in val.items()})
                    sweep[model] = {"seed": SWEEP_SEED, "lrs": sorted(val), "val_loss": [val[v] for v in sorted(val)],
                                    "chosen": best, "at_edge": extra_lr is not None, "complete": complete,
                                    "n_params": runner.records[(sweep_label(model, best), SWEEP_SEED)]["n_params"],
                                    **({"diverged_at_step": {f"{v:g}": n for v, n in sorted(stopped.items())}}
                                       if stopped else {})}
                    if not complete or extra_lr is None or widen == MAX_WIDEN:
                        break
                    values, widen = sorted({*values, extra_lr}), widen + 1
            lrs = {m: s["chosen"] for m, s in sweep.items() if s["complete"]}
            if report_only:  # only the arms whose learning rate is decided
                models = [m for m in models if m in lrs]
                own_lr_ablations = [a for a in own_lr_ablations if a in lrs]
                ablations = [a for a in ablations if "hope" in lrs]
                if "hope" not in lrs:
                    multi_frequency_seeds = small_memory_seeds = ()
            if any(a not in lrs for a in ablations) and "hope" not in lrs:
                raise ValueError(f"the ablations {list(ablations)} take HOPE's swept learning rate: include 'hope' "
                                 f"in models (got {list(models)}).")
        todo = plan(preset=budget, seeds=seeds, models=models, ablation_seeds=ablation_seeds,
                    multi_frequency_seeds=multi_frequency_seeds, small_memory_seeds=small_memory_seeds,
                    ablations=ablations, own_lr_ablations=own_lr_ablations, lrs=lrs)
        runner.order = todo
        done = runner.run_all(todo, main=True)
        return runner.write(interrupted=not done)


def _folder(label: str) -> str:
    """The folder name of an arm (``arms/<name>``)."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", label)


class _Runner:
    """Trains the runs of one comparison folder (one :class:`RunDir` per arm) and writes its results."""

    def __init__(self, top: RunDir, held: contextlib.ExitStack, budget: str, common: dict[str, Any],
                 device: str | None, *, command: str | None, sweep: dict[str, Any], sample_chars: int,
                 first_seed: int | None, report_only: bool = False):
        self.top, self.held, self.budget, self.common, self.device = top, held, budget, common, device
        self.report_only = report_only
        self.command, self.sweep, self.sample_chars, self.first_seed = command, sweep, sample_chars, first_seed
        self.arms: dict[str, RunDir] = {}
        self.records: dict[tuple[str, int], dict[str, Any]] = {}  # (label, seed) -> finished record
        self.order: list = []  # the main plan, once the sweep has chosen the learning rates

    def arm(self, label: str, model: str, extra: dict[str, Any]) -> RunDir:
        if label not in self.arms:
            folder = self.top.path / "arms" / _folder(label)
            self.arms[label] = self.held.enter_context(RunDir(folder, {**self.common, "model": model, **extra}))
        return self.arms[label]

    def run_all(self, todo: list[tuple[str, str, int, dict[str, Any]]], *, main: bool = False) -> bool:
        """Train each run of ``todo`` not finished yet; False when Ctrl-C stopped one."""
        for label, model, seed, extra in todo:
            if self.report_only and not (self.top.path / "arms" / _folder(label)).exists():
                continue  # nothing finished there, and a report creates no folder
            arm = self.arm(label, model, extra)
            if (label, seed) not in self.records:
                self.records.update({(label, s): r for s, r in arm.finished([seed]).items()})
            if (label, seed) in self.records or self.report_only:
                continue
            if not self.train_one(arm, label, model, seed, extra, sample=main and seed == self.first_seed):
                return False
            if main:
                self.write()
        return True

    def train_one(self, arm: RunDir, label: str, model: str, seed: int, extra: dict[str, Any], *, sample: bool) -> bool:
        run_dir = arm.path / "seeds" / f"seed_{seed}"
        z = {**sizes(self.budget), **extra}
        res = train(model=model, seed=seed, preset=train_preset(self.budget), data=DATA, out=str(run_dir),
                    device=self.device, resume=(run_dir / CHECKPOINT).exists(), overwrite=True,
                    progress=console.in_notebook(),  # a progress bar in a notebook; one line per run elsewhere
                    sample_chars=self.sample_chars if sample else 0, **z)
        if res.get("interrupted"):
            console.log(f"[{NAME}] {label} seed {seed} stopped at step {res['step']}; run the same command to resume.")
            return False
        curve = [{k: r[k] for k in ("step", "tokens", "train_loss", "val_loss")}
                 for r in map(json.loads, (run_dir / METRICS).read_text(encoding="utf-8").splitlines())]
        keys = ("val_loss", "val_bpc", "n_params", "time_s") if label.startswith("lr sweep") else (
            "val_loss", "val_bpc", "test_loss", "test_bpc", "n_params", "time_s", "sample")
        record = {"label": label, "model": label, "architecture": model, "seed": seed,
                  **{k: res[k] for k in keys}, **extra, "curve": curve}
        stopped = res.get("diverged_at_step")
        if stopped is not None:  # no losses, nothing to read the stream with: the step says what happened
            record["diverged_at_step"] = stopped
        else:
            change = cms_change(run_dir, int(z["seq_len"])) if has_in_context_cms(model) else None
            if change is not None:
                record["cms_relative_change"] = change
            if self.budget in STREAM_BUDGETS and not label.startswith("lr sweep"):
                record["stream"] = stream_record(run_dir, int(z["seq_len"]))
        self.records[(label, seed)] = arm.save_seed(seed, record, device=res["device"])
        shutil.rmtree(run_dir)
        result = (f"diverged at step {stopped}" if stopped is not None else f"val {res['val_loss']:.4f} nats/char")
        print(f"[{NAME}] {label} seed {seed}: {result}, {res['time_s']:.0f} s", flush=True)
        return True

    def write(self, *, interrupted: bool = False) -> dict[str, Any]:
        """results.json from the main runs finished so far and the sweep (``interrupted`` marks a stop)."""
        records = {k: r for k, r in self.records.items() if not k[0].startswith("lr sweep")}
        res = _write(self.top, self.budget, self.order, records, self.command, get_device(self.device), self.sweep)
        return {**res, "interrupted": True} if interrupted else res


STREAM_BUDGETS: tuple[str, ...] = ("reference",)  # budgets whose trained arms also read the domain stream
STREAM_SEGMENT_CHARS = stream.SEGMENT_CHARS


def stream_record(run_dir: Path, seq_len: int) -> dict[str, Any]:
    """The trained model in ``run_dir`` reading :mod:`nlteach.experiments.stream`'s domain streams,
    its attention limited to the training length ``seq_len`` (:func:`stream.evaluate_streams`)."""
    model, vocab, _ = load_model(run_dir, device="cpu")
    return stream.evaluate_streams(model, vocab, window=seq_len, segment_chars=STREAM_SEGMENT_CHARS)


CHANGE_WINDOWS = 16  # validation windows on which a trained model's in-context CMS levels are measured


def has_in_context_cms(model: str) -> bool:
    """Whether the registered model ``model`` has CMS levels that learn in context."""
    cls = MODELS[model]
    return bool(getattr(cls, "cms_in_context", False) and getattr(cls, "use_cms", True))


def cms_change(run_dir: Path, seq_len: int) -> list[list[float]] | None:
    """For a trained model with an in-context CMS (its final checkpoint in ``run_dir``): how far each
    level's weights move over a sequence, ``||W_T - W_0|| / ||W_0||`` per layer and level
    (:func:`nlteach.models.cms_relative_change`) on :data:`CHANGE_WINDOWS` validation windows of
    ``seq_len`` characters (fixed starts, seed 0); ``None`` for any other model."""
    model, _, _ = load_model(run_dir, device="cpu")
    if not any(isinstance(m, InContextCMSBranch) for m in model.modules()):
        return None
    val = load_char_corpus(DATA)["val"]
    starts = np.random.default_rng(0).integers(0, val.numel() - seq_len - 1, CHANGE_WINDOWS)
    x, _ = get_batch(val, starts, seq_len)
    return cms_relative_change(model, x).tolist()


def change_by_level(per_seed: Sequence[dict[str, Any]], label: str) -> list[dict[str, Any]]:
    """Per CMS level of arm ``label``: the relative weight change over a sequence, averaged over
    the layers, summarized over seeds (:func:`nlteach.runs.stats.summarize`)."""
    recs = [r for r in per_seed if r["label"] == label and "cms_relative_change" in r]
    if not recs:
        raise ValueError(f"no seed of {label!r} records cms_relative_change (arms with an in-context CMS do).")
    levels = len(recs[0]["cms_relative_change"][0])
    return [stats.summarize([float(np.mean([layer[lv] for layer in r["cms_relative_change"]])) for r in recs])
            for lv in range(levels)]


def _write(top: RunDir, preset: str, todo: list, records: dict, command: str | None, device: Any,
           sweep: dict[str, Any] | None = None) -> dict[str, Any]:
    """results.json: this call's runs in plan order, then any other seed finished in the folder earlier
    (sweep runs apart: ``lr_sweep`` holds each model's grid, losses and choice)."""
    z = sizes(preset)
    per_seed = [records[(label, seed)] for label, _, seed, _ in todo if (label, seed) in records]
    earlier = (read_json(f) for f in sorted(top.path.glob("arms/*/seeds/seed_*.json")))
    per_seed += [r for r in earlier if (r["label"], r["seed"]) not in records and not r["label"].startswith("lr sweep")]
    results = {
        "experiment": "character-level LM on tiny Shakespeare at equal parameters and tokens (notebook 09)",
        "command": command or command_line(), "preset": preset,
        # the command that trains every run of this file (a --report-only call only gathers them)
        "reproduce": (command or command_line()).replace(" --report-only", ""),
        "config": {**top.settings, "tokens_per_run": z["steps"] * z["batch_size"] * z["seq_len"]},
        "note": "our measurement on CPU; not the paper's numbers",
        "per_seed": per_seed, "summary": _summary(per_seed),
    }
    if sweep:
        results["lr_sweep"] = sweep
    return top.write_results(results, command=command, device=device)


def _summary(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Per arm: seeds, parameters, and :func:`nlteach.runs.stats.summarize` of each number over the
    seeds that did not diverge (JSON-safe); ``diverged``: ``{seed: step}`` of those that did."""
    by_label: dict[str, list[dict[str, Any]]] = {}
    for r in per_seed:
        by_label.setdefault(r["label"], []).append(r)
    return {label: {"seeds": [r["seed"] for r in converged(recs)], "n_params": recs[0]["n_params"],
                    **{k: json_safe(stats.summarize([r[k] for r in converged(recs)]))
                       for k in ("val_loss", "val_bpc", "test_loss", "test_bpc", "time_s")},
                    **({"diverged": {str(r["seed"]): r["diverged_at_step"] for r in recs if diverged(r)}}
                       if any(map(diverged, recs)) else {})}
            for label, recs in by_label.items()}


# ---------------------------------------------------------------------------------------------
# Reading and drawing a comparison (notebook 09).


def by_label(results: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """``{label: [per-seed record]}`` of a results dict, each record with ``log`` = its curve; seeds
    that diverged are left out (:func:`converged`; the summary's ``diverged`` names them)."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for r in converged(results.get("per_seed", [])):
        runs.setdefault(r["label"], []).append({**r, "log": r["curve"]})
    return runs


def load_comparison(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """:func:`by_label` of a ``results.json`` written by :func:`run_comparison` (or a folder holding one)."""
    path = Path(path)
    return by_label(read_json(path / "results.json" if path.is_dir() else path))


def summarize_comparison(runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per arm, best first: parameters, seeds, final val/test loss (mean and standard
    deviation over seeds: NaN for one seed), mean training seconds per run."""
    rows = []
    for name, recs in runs.items():
        val = stats.summarize([r["val_loss"] for r in recs])
        test = stats.summarize([r["test_loss"] for r in recs])
        rows.append({"model": name, "params": recs[0]["n_params"], "seeds": len(recs),
                     "val_mean": val["mean"], "val_std": val["std"], "test_mean": test["mean"],
                     "test_std": test["std"], "s_per_run": statistics.mean(r["time_s"] for r in recs)})
    return sorted(rows, key=lambda r: r["val_mean"])


def draw_comparison(fig, runs: dict[str, list[dict[str, Any]]], key: str = "val_loss"):
    """Loss (``val_loss`` or ``train_loss``) against tokens: mean over seeds, band = min..max."""
    ax = fig.add_subplot(1, 1, 1)
    for i, (name, recs) in enumerate(runs.items()):
        points = [[(r["tokens"], r[key]) for r in rec["log"] if r[key] is not None] for rec in recs]
        n = min(len(p) for p in points)
        if n == 0:
            continue
        x = np.array([t for t, _ in points[0][:n]])
        y = np.array([[v for _, v in p[:n]] for p in points])
        ax.plot(x, y.mean(0), marker="o", ms=3, color=f"C{i}", label=f"{name} ({len(recs)} seeds)")
        if len(recs) > 1:
            ax.fill_between(x, y.min(0), y.max(0), color=f"C{i}", alpha=0.2)
    ax.set_xlabel("training tokens")
    ax.set_ylabel(f"{key.replace('_', ' ')} (nats per character)")
    ax.legend(fontsize=8)
    return fig


SUMMARY_COLUMNS = ("model", "params", "seeds", "val_mean", "val_std", "test_mean", "test_std", "s_per_run")


def summary_table(rows: list[dict[str, Any]], columns: Sequence[str] = SUMMARY_COLUMNS, *,
                  digits: int = 4) -> str:
    """:func:`summarize_comparison` rows as a text table, losses and their standard deviations
    with ``digits`` decimals (the arms differ by a few thousandths of a nat), a single seed's
    missing spread as "-", seconds as whole numbers."""
    def cell(key: str, value: Any) -> Any:
        if key.endswith(("_mean", "_std")):
            return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"
        if key == "s_per_run":
            return f"{value:.0f}"
        return value

    return text_table([{k: cell(k, r.get(k)) for k in columns} for r in rows], list(columns))


def comparison_verdict(rows: list[dict[str, Any]], reference: str | None = None) -> str:
    """Plain-language reading of :func:`summarize_comparison` rows (best first): which arm has the
    lowest mean validation loss, and whether each gap is larger than the seeds' spread (gap > 2 x
    the larger standard deviation) or within noise. With ``reference`` (an ablation: ``"hope"``)
    every other arm is compared with that arm instead of the best one."""
    best = rows[0]
    lines = [f"lowest mean validation loss: {best['model']} ({best['val_mean']:.4f} nats/char, "
             f"{best['seeds']} seed(s))"]
    if reference is not None:
        base = next((r for r in rows if r["model"] == reference), None)
        if base is None:
            raise ValueError(f"reference={reference!r} is not one of the arms {[r['model'] for r in rows]}")
        lines.append(f"each arm against {reference} ({base['val_mean']:.4f} nats/char):")
    else:
        base = best
    for r in rows:
        if r is base:
            continue
        gap = r["val_mean"] - base["val_mean"]
        if base["seeds"] < 2 or r["seeds"] < 2:
            judged = "one seed: cannot tell signal from noise"
        else:
            noise = 2 * max(r["val_std"], base["val_std"])
            judged = ("larger than the seed spread" if abs(gap) > noise
                      else "within the seed spread (no clear winner)")
        gap = 0.0 if abs(gap) < 5e-5 else gap  # equal at the printed precision
        where = "level with" if gap == 0 else "behind" if gap > 0 else "ahead of"
        where = f"{where} {reference}" if reference else where.removesuffix(" with").removesuffix(" of")
        lines.append(f"  {r['model']}: {gap:+.4f} {where} ({judged})")
    return "\n".join(lines)


def paired_difference(per_seed: Sequence[dict[str, Any]], a: str, b: str, key: str = "val_loss") -> dict[str, Any]:
    """``key`` of arm ``a`` minus arm ``b``, seed by seed over the seeds both have and neither
    diverged on (:func:`nlteach.runs.stats.paired`, plus ``"seeds"``)."""
    va = {r["seed"]: r[key] for r in converged(per_seed) if r["label"] == a}
    vb = {r["seed"]: r[key] for r in converged(per_seed) if r["label"] == b}
    seeds = sorted(set(va) & set(vb))
    if not seeds:
        raise ValueError(f"arms {a!r} and {b!r} share no seed; seeds: {sorted(va)} and {sorted(vb)}.")
    return {**stats.paired([va[s] for s in seeds], [vb[s] for s in seeds]), "seeds": seeds}


def paired_verdict(per_seed: Sequence[dict[str, Any]], a: str, b: str, key: str = "val_loss") -> str:
    """One line, by one rule: ``a`` is better (worse) than ``b`` when the 95% t interval of the
    seed-paired difference ``a - b`` of ``key`` (a loss: lower is better) lies below (above) 0;
    otherwise the seeds cannot tell them apart."""
    d = paired_difference(per_seed, a, b, key)
    lo, hi = d["ci95"]
    diffs = ", ".join("nan" if x is None else f"{x:+.4f}" for x in d["diffs"])
    if d["n"] < 2:
        return f"{a} - {b}, {key}: {diffs} nats/char on {d['n']} paired seed(s): no interval, cannot tell"
    head = (f"{a} - {b}, {key}: mean {d['mean']:+.4f} nats/char, 95% interval [{lo:+.4f}, {hi:+.4f}] "
            f"over {d['n']} paired seeds (per seed: {diffs})")
    judged = {-1: f"{a} is better", 1: f"{a} is worse", 0: "no difference the seeds can detect"}[d["sign"]]
    return f"{head}: {judged}"


# ---------------------------------------------------------------------------------------------
# Command line.


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m nlteach.experiments.{NAME}",
        description="Notebook 09's comparison of language models at equal parameters and tokens; writes "
                    "OUT/results.json. Run the same command again to resume. Committing results is an explicit "
                    "--out results/<name>.")
    cli.add_common_arguments(p, seeds=[0, 1, 2])
    p.add_argument("--budget", choices=BUDGETS, default=None,
                   help="the comparison's size, a row of lm_comparison.SIZES (default: the preset's row); "
                        f"'reference' is the hours-long budget whose learning rates are swept ({REFERENCE_PARAMS:,} "
                        "parameters)")
    p.add_argument("--models", nargs="+", default=None,
                   help=f"the main arms (default: {' '.join(MAIN_MODELS)}; at the reference budget "
                        f"{' '.join(REFERENCE_MODELS)})")
    p.add_argument("--ablations", nargs="*", default=None,
                   help=f"HOPE's ablations (default: {' '.join(ABLATIONS)}; at the reference budget "
                        f"{' '.join(REFERENCE_ABLATIONS)})")
    p.add_argument("--own-lr-ablations", nargs="*", default=None,
                   help="ablations that also get their own learning-rate sweep and an arm at its choice "
                        f"(reference budget only; default there: {' '.join(REFERENCE_OWN_LR_ABLATIONS)})")
    p.add_argument("--ablation-seeds", type=cli.nonneg_int, nargs="*", default=[0],
                   help="seeds of the ablations (default: 0)")
    p.add_argument("--multi-frequency-seeds", type=cli.nonneg_int, nargs="*", default=[0],
                   help=f"seeds of {MULTI_FREQUENCY!r} (default: 0)")
    p.add_argument("--small-memory-seeds", type=cli.nonneg_int, nargs="*", default=[],
                   help=f"seeds of {SMALL_MEMORY!r} (memory hidden width half a head; default: none)")
    p.add_argument("--sample-chars", type=cli.nonneg_int, default=300, help="characters sampled by the first seed")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: write OUT/results.json from the runs already finished in OUT")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = cli.apply_common(p, p.parse_args(argv))
    budget = args.budget or args.preset
    reference = bool(lr_grid(budget))
    models = args.models or list(REFERENCE_MODELS if reference else MAIN_MODELS)
    ablations = args.ablations if args.ablations is not None else list(REFERENCE_ABLATIONS if reference else ABLATIONS)
    own_lr = args.own_lr_ablations if args.own_lr_ablations is not None else list(
        REFERENCE_OWN_LR_ABLATIONS if reference else ())
    if own_lr and not reference:
        p.error(f"--own-lr-ablations {' '.join(own_lr)}: only a budget whose learning rates are swept has them "
                f"(--budget reference); got budget {budget_name(budget)!r}.")
    unknown = [a for a in own_lr if a not in MODELS]
    if unknown:
        p.error(f"--own-lr-ablations: {unknown} are not models; expected some of {', '.join(MODELS)}.")
    out = args.out or f"runs/{NAME}_{budget}"
    cli.check_out(p, out)
    try:  # every run's settings, before the first one trains
        for _, model, seed, extra in plan(preset=budget, seeds=args.seeds, models=models, ablations=ablations,
                                          ablation_seeds=args.ablation_seeds,
                                          multi_frequency_seeds=args.multi_frequency_seeds,
                                          small_memory_seeds=args.small_memory_seeds):
            resolve_config(model=model, seed=seed, preset=train_preset(budget), data=DATA,
                           **{**sizes(budget), **extra})
        if reference and ablations and "hope" not in models:
            p.error(f"--ablations {' '.join(ablations)} train at HOPE's swept learning rate: --models must include hope.")
    except ValueError as e:  # e.g. an unknown model
        unknown = [m for m in models if m not in MODELS]
        p.error(f"{'--models' if unknown else '--ablations'}: {e}" if "model=" in str(e) else str(e))
    command = command_line(None if argv is None else ["python", "-m", f"nlteach.experiments.{NAME}", *argv])
    res, code = run_guarded(lambda: run_comparison(
        out, preset=budget, seeds=args.seeds, models=models, ablations=ablations, own_lr_ablations=own_lr,
        ablation_seeds=args.ablation_seeds,
        multi_frequency_seeds=args.multi_frequency_seeds, small_memory_seeds=args.small_memory_seeds,
        sample_chars=args.sample_chars, overwrite=args.overwrite, device=args.device, command=command,
        report_only=args.report_only))
    if code or res.get("interrupted"):  # a refused resume (the error names the settings: 2) or Ctrl-C (130)
        return code or 130
    print(f"[{NAME}] results in {Path(out) / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
