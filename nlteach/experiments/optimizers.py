"""Notebook 06's optimizer comparison: the same small MLP trained with each optimizer on digits and
on tiny Shakespeare (character level), over several seeds.

    python -m nlteach.experiments.optimizers --task digits --preset laptop --out runs/optimizers_digits_laptop

- :class:`OptimizerComparisonConfig` holds every setting; :data:`PRESETS` is the one table of sizes
  (``tiny``/``laptop``/``full``, per task) and :func:`preset_config` reads it.
- At the ``laptop`` and ``full`` presets (``sweep=True``) each optimizer's learning rate is first
  chosen by :func:`sweep_lrs` on tuning data carved from the training split (digits: a seeded 20%
  of the training examples; Shakespeare: the last 10% of the training text), on seed
  :data:`SWEEP_SEED`, which no reported run uses: the grid :func:`lr_grid` (the default rate /3, x1,
  x3), widened by a factor 3 at an edge at most :data:`SWEEP_MAX_WIDEN` times
  (:func:`nlteach.runs.sweep.choose_on_grid`). The reported split (digits test quarter, Shakespeare
  validation split) is never seen by the sweep.
- :func:`run` trains every seed; with ``out`` it keeps a resumable run folder
  (:class:`nlteach.runs.RunDir`: finished seeds are read back, a run with other settings is refused)
  and writes ``out/results.json`` with its provenance.
- :func:`summarize`, :func:`verdict`, :func:`comparison_table` and :func:`draw_comparison` read a
  results dict (a fresh one or a committed one, :func:`load_committed`); the README's block and
  notebook 06 use them.

**Verdict rule.** An optimizer *beats* the baseline (SGD+momentum) on a task when the 95% t
interval of the per-seed difference of final evaluation loss (optimizer minus baseline, the same
seed meaning the same initial weights and batches) lies entirely below 0, and is *worse* when it
lies entirely above 0; otherwise the runs do not separate them.

The notebook's smaller demos are in :mod:`nlteach.course.nb06_optimizers`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from nlteach import recipes
from nlteach.config import get_device, get_preset
from nlteach.data import DataUnavailableError, load_digits_split, load_tinyshakespeare
from nlteach.experiments.reporting import ci_text, run_and_report
from nlteach.nn import SmallMLP
from nlteach.runs import RESULTS_ROOT, stats
from nlteach.runs.cli import (
    add_common_arguments,
    apply_common,
    check_out,
    dataclass_arguments,
    finite_float,
    nonneg_int,
)
from nlteach.runs.io import atomic_save, atomic_write_json, load_checkpoint, read_json
from nlteach.runs.rundir import run_folder
from nlteach.runs.sweep import choose_on_grid
from nlteach.runs.tables import markdown_table, pm_summary, text_table
from nlteach.runs.threads import torch_threads

EXPERIMENT = "optimizers"
TASKS = ("digits", "shakespeare")
COMPARED = ("SGD+momentum", "AdamW", "Muon", "M3", "DeltaMomentum", "DMGD")
BASELINE = "SGD+momentum"
SWEEP_SEED = 100  # the learning-rate sweep's seed; no reported run uses it
SWEEP_FACTORS = (1 / 3, 1.0, 3.0)  # the grid: each optimizer's default rate times these
SWEEP_FACTOR = 3.0  # an edge of the grid grows by this factor ...
SWEEP_MAX_WIDEN = 2  # ... at most this many times
TUNE_FRACTION = {"digits": 0.2, "shakespeare": 0.1}  # the share of the training split held out for tuning

#: The comparison's optimizers as :func:`nlteach.recipes.make_optimizer` recipes: (recipe name,
#: options). Everything not listed is the recipe's or the class's default; AdamW keeps torch's own
#: betas (0.9, 0.999) and no weight decay, not the language-model recipe's.
RECIPES: dict[str, tuple[str, dict[str, Any]]] = {
    "SGD+momentum": ("sgd", {"momentum": 0.9}),
    "AdamW": ("adamw", {"betas": (0.9, 0.999), "weight_decay": 0.0}),
    "Muon": ("Muon", {"fallback_lr": 3e-3}),
    "M3": ("M3", {}),
    "DeltaMomentum": ("DeltaMomentum", {"momentum": 0.9}),
    "DMGD": ("DeepMomentum", {"momentum": 0.9}),
}

#: Each optimizer's learning rate without a sweep (the ``tiny`` preset, and ``sweep=False``), and
#: the centre of its swept grid (:func:`lr_grid`). They came from an early sweep on seed 0 against
#: the reported split; the committed laptop runs choose theirs by :func:`sweep_lrs` instead.
DEFAULT_LRS: dict[str, dict[str, float]] = {
    "digits": {"SGD+momentum": 0.1, "AdamW": 1e-2, "Muon": 0.01, "M3": 3e-4,
               "DeltaMomentum": 0.1, "DMGD": 1.0},
    "shakespeare": {"SGD+momentum": 0.1, "AdamW": 3e-3, "Muon": 0.01, "M3": 1e-3,
                    "DeltaMomentum": 0.1, "DMGD": 1.0},
}


@dataclass(frozen=True)
class OptimizerComparisonConfig:
    """Every setting of one task's comparison (``lrs``: learning rates replacing
    :data:`DEFAULT_LRS`; ``options``: per optimizer, hyperparameters replacing :data:`RECIPES`')."""

    task: str = field(default="digits", metadata={"help": "digits or shakespeare", "choices": TASKS})
    optimizers: tuple[str, ...] = field(default=COMPARED, metadata={"help": "optimizers to compare", "choices": COMPARED})
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = field(default=300, metadata={"help": "training steps"})
    batch_size: int = field(default=64, metadata={"help": "examples per step"})
    hidden: int = field(default=128, metadata={"help": "width of the two hidden layers"})
    context: int = field(default=16, metadata={"help": "characters the Shakespeare MLP reads"})
    embed: int = field(default=8, metadata={"help": "character embedding size (Shakespeare)"})
    n_eval: int = field(default=2000, metadata={"help": "validation windows (Shakespeare)"})
    n_evals: int = field(default=10, metadata={"help": "evaluation points, step 0 and the last included"})
    sweep: bool = field(default=False, metadata={
        "help": "choose each optimizer's learning rate by a validation sweep first (sweep_lrs)"})
    lrs: dict[str, float] = field(default_factory=dict)
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    preset: str | None = None  # the row of PRESETS this config came from (None: built by hand)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be 'digits' or 'shakespeare', got {self.task!r}.")
        for name in (*self.optimizers, *self.lrs, *self.options):
            if name not in COMPARED:
                raise ValueError(f"optimizer name {name!r} is not one of {COMPARED}.")
        if not self.optimizers:
            raise ValueError("optimizers must name at least one optimizer.")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must name at least one seed, each once, got {self.seeds!r}.")
        for name in ("steps", "batch_size", "hidden", "context", "embed", "n_eval", "n_evals"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}.")
        if self.sweep and self.lrs:
            raise ValueError(f"lrs={self.lrs!r} with sweep=True: a swept comparison chooses its own learning "
                             "rates; expected one or the other.")

    def learning_rates(self) -> dict[str, float]:
        """The learning rate of each compared optimizer (:data:`DEFAULT_LRS` with ``lrs`` laid over)."""
        table = {**DEFAULT_LRS[self.task], **self.lrs}
        return {n: table[n] for n in self.optimizers}

    def settings(self, device: torch.device) -> dict[str, Any]:
        """Everything that changes the numbers (the run folder's ``config.json``). With ``sweep`` the
        learning rates are not settings but results: the grids and the sweep's rule stand for them."""
        d = asdict(self)
        d.update(lrs=self.learning_rates(), options={n: dict(self.options.get(n, {})) for n in self.optimizers},
                 device=device.type)
        if self.sweep:
            d["lrs"] = {}
            d["lr_sweep"] = {"grids": lr_grid(self), "seed": SWEEP_SEED, "factor": SWEEP_FACTOR,
                             "max_widen": SWEEP_MAX_WIDEN, "tune_fraction": TUNE_FRACTION[self.task]}
        return d


#: The one table of sizes: preset -> task -> fields of :class:`OptimizerComparisonConfig`.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {"digits": dict(steps=12, hidden=16, seeds=(0, 1, 2), n_evals=4),
             "shakespeare": dict(steps=12, hidden=16, seeds=(0, 1, 2), n_eval=200, n_evals=4)},
    "laptop": {"digits": dict(steps=500, hidden=128, seeds=(0, 1, 2, 3, 4), sweep=True),
               "shakespeare": dict(steps=1000, hidden=128, seeds=(0, 1, 2, 3, 4), n_eval=2000, sweep=True)},
    "full": {"digits": dict(steps=3000, hidden=512, seeds=(0, 1, 2, 3, 4), sweep=True),
             "shakespeare": dict(steps=5000, hidden=512, seeds=(0, 1, 2, 3, 4), n_eval=10000, sweep=True)},
}


def preset_config(task: str, preset: str | None = None, **overrides: Any) -> OptimizerComparisonConfig:
    """The config of ``task`` at ``preset`` (default: ``$NLTEACH_SIZE``), fields in ``overrides`` replaced."""
    if task not in TASKS:
        raise ValueError(f"task must be 'digits' or 'shakespeare', got {task!r}.")
    preset = get_preset(preset)
    return replace(OptimizerComparisonConfig(task=task, preset=preset, **PRESETS[preset][task]), **overrides)


def make_optimizer(name: str, params: list[torch.Tensor], lr: float, **options: Any) -> torch.optim.Optimizer:
    """The optimizer ``name`` of the comparison (:data:`RECIPES`) through
    :func:`nlteach.recipes.make_optimizer`; ``options`` override the recipe's options."""
    if name not in RECIPES:
        raise ValueError(f"optimizer name {name!r} is not one of {COMPARED}.")
    recipe, defaults = RECIPES[name]
    opts = {**defaults, **options}
    if recipe != "adamw" and "weight_decay" in opts:  # recipes.make_optimizer decays AdamW only
        raise ValueError(f"weight_decay is supported for AdamW only in this comparison, got it for {name!r}.")
    return recipes.make_optimizer(recipe, params, lr, **opts)


def _digits_task(device: torch.device, split: str) -> dict[str, Any]:
    d = load_digits_split()
    (Xtr, ytr), (Xte, yte) = d["train"], d["test"]
    eval_name = "test"
    if split == "tune":  # a seeded share of the training examples stands in for the test quarter
        order = np.random.default_rng(0).permutation(len(ytr))
        n_val = int(round(TUNE_FRACTION["digits"] * len(ytr)))
        val, rest = order[:n_val], order[n_val:]
        Xtr, ytr, Xte, yte, eval_name = Xtr[rest], ytr[rest], Xtr[val], ytr[val], "tuning"
    Xtr, ytr = torch.tensor(Xtr, device=device), torch.tensor(ytr, device=device)
    Xte, yte = torch.tensor(Xte, device=device), torch.tensor(yte, device=device)

    def batch(gen: torch.Generator, bs: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(ytr), (bs,), generator=gen).to(device)
        return Xtr[idx], ytr[idx]

    return {"batch": batch, "eval": (Xte, yte), "in_dim": 64, "out_dim": 10, "vocab": None,
            "eval_name": eval_name}


def check_task(cfg: OptimizerComparisonConfig) -> None:
    """``ValueError`` when ``cfg``'s sizes do not fit its data (checked before anything trains)."""
    if cfg.task == "shakespeare":
        n_val = len(load_tinyshakespeare()["val"])  # the shorter split
        if cfg.context >= n_val:
            raise ValueError(f"context={cfg.context} is longer than the data allows: tiny Shakespeare's validation "
                             f"split has {n_val} characters; expected context <= {n_val - 1}.")


def _shakespeare_task(device: torch.device, context: int, n_eval: int, split: str) -> dict[str, Any]:
    text = load_tinyshakespeare()
    chars = sorted(set("".join(text.values())))
    index = {c: i for i, c in enumerate(chars)}

    def encode(s: str) -> torch.Tensor:
        return torch.tensor([index[c] for c in s], dtype=torch.long)

    train, val, eval_name = encode(text["train"]), encode(text["val"]), "val"
    if split == "tune":  # the training text's last tenth stands in for the validation split
        cut = len(train) - int(round(TUNE_FRACTION["shakespeare"] * len(train)))
        train, val, eval_name = train[:cut], train[cut:], "tuning"
    offs = torch.arange(context)

    def windows(data: torch.Tensor, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return data[starts[:, None] + offs].to(device), data[starts + context].to(device)

    def batch(gen: torch.Generator, bs: int) -> tuple[torch.Tensor, torch.Tensor]:
        return windows(train, torch.randint(len(train) - context, (bs,), generator=gen))

    eval_starts = torch.randint(len(val) - context, (n_eval,), generator=torch.Generator().manual_seed(1234))
    return {"batch": batch, "eval": windows(val, eval_starts), "in_dim": context,
            "out_dim": len(chars), "vocab": len(chars), "eval_name": eval_name}


SPLITS = ("report", "tune")


def load_task(cfg: OptimizerComparisonConfig, device: torch.device, split: str = "report") -> dict[str, Any]:
    """The data of ``cfg.task`` on ``device``: a batch sampler, the evaluation set and the sizes.
    ``split="report"``: train on the training split, evaluate on the reported split (digits: the test
    quarter; Shakespeare: the validation split). ``split="tune"``: the sweep's data, both parts carved
    from the training split (:data:`TUNE_FRACTION` held out for evaluation), so the reported split
    never chooses a learning rate."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    check_task(cfg)
    if cfg.task == "digits":
        return _digits_task(device, split)
    return _shakespeare_task(device, cfg.context, cfg.n_eval, split)


def eval_steps(cfg: OptimizerComparisonConfig) -> list[int]:
    """The steps at which the evaluation loss is measured (step 0 and the last included)."""
    return sorted({int(round(x)) for x in np.linspace(0, cfg.steps, cfg.n_evals)})


def train_one(cfg: OptimizerComparisonConfig, name: str, seed: int, data: dict[str, Any],
              device: torch.device, lr: float | None = None) -> dict[str, Any]:
    """Train :class:`SmallMLP` with optimizer ``name`` and ``seed`` (cross-entropy, nats) at learning
    rate ``lr`` (default: ``cfg.learning_rates()[name]``). The initial weights and the batches depend
    only on the seed, so every optimizer of a seed starts from the same weights and sees the same batches.

    Returns ``{"train_loss" (per step), "eval_loss" (at :func:`eval_steps`), "step_time",
    "opt_time"}``: the median wall time of a full training step / of ``optimizer.step()`` alone
    (seconds, the first steps' allocation warm-up left out)."""
    build = lambda: SmallMLP(data["in_dim"], cfg.hidden, data["out_dim"], vocab=data["vocab"], embed=cfg.embed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        init = build()
    model = build()
    model.load_state_dict(init.state_dict())
    model.to(device)
    lr = cfg.learning_rates()[name] if lr is None else lr
    opt = make_optimizer(name, list(model.parameters()), lr, **cfg.options.get(name, {}))
    gen = torch.Generator().manual_seed(10_000 + seed)
    at = eval_steps(cfg)
    Xe, ye = data["eval"]
    loss_fn = nn.functional.cross_entropy
    train_loss: list[float] = []
    eval_loss: list[float] = []
    step_t: list[float] = []
    opt_t: list[float] = []

    def evaluate() -> float:
        with torch.no_grad():
            return float(loss_fn(model(Xe), ye))

    if 0 in at:
        eval_loss.append(evaluate())
    for t in range(1, cfg.steps + 1):
        xb, yb = data["batch"](gen, cfg.batch_size)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        t1 = time.perf_counter()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        step_t.append(t2 - t0)
        opt_t.append(t2 - t1)
        train_loss.append(loss.item())
        if t in at:
            eval_loss.append(evaluate())
    skip = min(5, cfg.steps - 1)  # first steps include allocation warm-up
    return {"train_loss": train_loss, "eval_loss": eval_loss, "step_time": statistics.median(step_t[skip:]),
            "opt_time": statistics.median(opt_t[skip:])}


def run_seed(cfg: OptimizerComparisonConfig, seed: int, data: dict[str, Any], device: torch.device, *,
             checkpoint: Path | None = None, progress: Callable[[str], None] | None = None,
             lrs: dict[str, float] | None = None) -> dict[str, Any]:
    """Every optimizer with one seed: ``{"seed", "runs": {name: train_one(...)}}``, at the learning
    rates ``lrs`` (default: ``cfg.learning_rates()``). With ``checkpoint``, each finished optimizer is
    saved there, and a checkpoint left by an interrupted run is picked up (the optimizers are
    independent of each other)."""
    lrs = cfg.learning_rates() if lrs is None else lrs
    done: dict[str, Any] = {}
    if checkpoint is not None and checkpoint.exists():
        done = load_checkpoint(checkpoint)["runs"]
    for name in cfg.optimizers:
        if name not in done:
            done[name] = train_one(cfg, name, seed, data, device, lr=lrs[name])
            if checkpoint is not None:
                atomic_save({"runs": done}, checkpoint)
        if progress is not None:
            progress(f"seed {seed}, {name}: {data['eval_name']} loss {done[name]['eval_loss'][-1]:.3f}")
    return {"seed": seed, "runs": {name: done[name] for name in cfg.optimizers}}


def lr_grid(cfg: OptimizerComparisonConfig) -> dict[str, list[float]]:
    """The learning rates :func:`sweep_lrs` starts from: each optimizer's default rate
    (:data:`DEFAULT_LRS`) times :data:`SWEEP_FACTORS`."""
    return {n: [DEFAULT_LRS[cfg.task][n] * f for f in SWEEP_FACTORS] for n in cfg.optimizers}


SWEEP_FILE = "lr_sweep.json"


def sweep_lrs(cfg: OptimizerComparisonConfig, device: torch.device, *, folder: Path | None = None,
              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Choose each optimizer's learning rate on tuning data (:func:`load_task` with ``split="tune"``):
    one run per value of :func:`lr_grid` on seed :data:`SWEEP_SEED`, the value of lowest final
    tuning loss kept, the grid grown by :data:`SWEEP_FACTOR` on the side of an edge the best value
    sits on, at most :data:`SWEEP_MAX_WIDEN` times (:func:`nlteach.runs.sweep.choose_on_grid`).

    With ``folder``, every finished value is written to ``folder/lr_sweep.json`` at once and read
    back by a rerun (resumable). Returns ``{"seed", "split", "factor", "max_widen", "per_optimizer":
    {name: {"lrs", "tuning_loss", "chosen", "at_edge"}}}``; ``at_edge`` is True when the chosen value
    is still on an edge after the last widening."""
    path = None if folder is None else Path(folder) / SWEEP_FILE
    done: dict[str, dict[str, float]] = {}
    if path is not None and path.exists():
        done = {n: {float(lr): float(v) for lr, v in pairs} for n, pairs in read_json(path)["runs"].items()}
    data = load_task(cfg, device, split="tune")
    per_optimizer: dict[str, Any] = {}
    for name, grid in lr_grid(cfg).items():
        scores = done.setdefault(name, {})
        values, widened = sorted(grid), 0
        while True:
            for lr in values:
                if lr not in scores:
                    scores[lr] = train_one(cfg, name, SWEEP_SEED, data, device, lr=lr)["eval_loss"][-1]
                    if path is not None:
                        atomic_write_json(path, {"runs": {n: sorted(v.items()) for n, v in done.items()}})
                    if progress is not None:
                        progress(f"lr sweep, {name} lr={lr:.3g}: tuning loss {scores[lr]:.3f}")
            best, extra = choose_on_grid({lr: scores[lr] for lr in values}, factor=SWEEP_FACTOR)
            if extra is None or widened == SWEEP_MAX_WIDEN:
                break
            values, widened = sorted({*values, extra}), widened + 1
        per_optimizer[name] = {"lrs": values, "tuning_loss": [scores[lr] for lr in values], "chosen": best,
                               "at_edge": extra is not None}
    return {"seed": SWEEP_SEED, "split": f"tuning ({data['eval_name']}: {TUNE_FRACTION[cfg.task]:.0%} of the training split)",
            "factor": SWEEP_FACTOR, "max_widen": SWEEP_MAX_WIDEN, "per_optimizer": per_optimizer}


def sweep_table(results: dict[str, Any], digits: int = 3) -> str:
    """Markdown: each optimizer's swept learning rates with their final tuning loss, the chosen one
    in bold (and whether it is still on an edge of the widened grid); empty when nothing was swept."""
    sweep = results.get("lr_sweep")
    if not sweep:
        return ""
    rows = []
    for name, rec in sweep["per_optimizer"].items():
        cells = [f"**{lr:.3g}: {v:.{digits}f}**" if lr == rec["chosen"] else f"{lr:.3g}: {v:.{digits}f}"
                 for lr, v in zip(rec["lrs"], rec["tuning_loss"], strict=True)]
        rows.append([name, ", ".join(cells), f"{rec['chosen']:.3g}", "yes" if rec["at_edge"] else "no"])
    return markdown_table(["optimizer", "learning rate: final tuning loss", "chosen", "still on an edge"], rows)


def run(cfg: OptimizerComparisonConfig, out: str | Path | None = None, *, device: str | torch.device | None = None,
        threads: int | None = 1, overwrite: bool = False, progress: bool = False,
        command: str | None = None) -> dict[str, Any]:
    """Every seed of ``cfg``; returns the results dict (see :func:`results_dict`).

    ``out=None`` writes nothing (notebooks). Otherwise ``out`` is a run folder
    (:class:`nlteach.runs.RunDir`): finished seeds are read back, an interrupted seed continues after
    its last finished optimizer, a run with other settings is refused (``overwrite=True`` starts
    over), and ``out/results.json`` is written with its provenance (``command``: default this
    process's command line). ``threads``: torch CPU threads during the run (restored afterwards;
    ``None`` leaves them alone). The default 1 is deliberate: these small models gain nothing from
    more threads, and on a shared machine multi-threaded small ops are slower and erratic.
    With ``cfg.sweep`` the learning rates are first chosen by :func:`sweep_lrs` (resumable in
    ``out`` too) and every seed trains at the chosen ones.
    """
    dev = get_device(device)
    with torch_threads(threads), run_folder(out, cfg.settings(dev), overwrite=overwrite) as rundir:  # locked
        done = rundir.finished(cfg.seeds) if rundir is not None else {}
        say = (lambda msg: print(f"{cfg.task}: {msg}", flush=True)) if progress else None
        sweep = sweep_lrs(cfg, dev, folder=None if rundir is None else rundir.path, progress=say) if cfg.sweep else None
        lrs = cfg.learning_rates() if sweep is None else {n: r["chosen"] for n, r in sweep["per_optimizer"].items()}
        data = load_task(cfg, dev)
        for seed in cfg.seeds:
            if seed in done:
                continue
            ckpt = rundir.checkpoint_path(seed) if rundir is not None else None
            record = run_seed(cfg, seed, data, dev, checkpoint=ckpt, progress=say, lrs=lrs)
            done[seed] = rundir.save_seed(seed, record, device=dev) if rundir is not None else record
        results = results_dict(cfg, [done[s] for s in cfg.seeds], dev, sweep=sweep)
        if rundir is not None:
            results = rundir.write_results(results, command=command, device=dev)
    return results


def results_dict(cfg: OptimizerComparisonConfig, per_seed: list[dict[str, Any]], device: torch.device, *,
                 sweep: dict[str, Any] | None = None) -> dict[str, Any]:
    """The layout of ``results.json``: ``{"experiment", "task", "preset", "eval_name", "config"
    (the settings; ``config["lrs"]`` the rates every seed trained at, chosen by the sweep when there
    was one), "lr_sweep" (:func:`sweep_lrs`, or None), "eval_steps", "per_seed": [{"seed", "runs":
    {optimizer: {"train_loss", "eval_loss", "step_time", "opt_time"}}, "provenance"?}], "summary",
    "verdict"}``."""
    config = cfg.settings(device)
    if sweep is not None:
        config["lrs"] = {n: r["chosen"] for n, r in sweep["per_optimizer"].items()}
    results = {"experiment": EXPERIMENT, "task": cfg.task, "preset": cfg.preset,
               "eval_name": "test" if cfg.task == "digits" else "val", "config": config, "lr_sweep": sweep,
               "eval_steps": eval_steps(cfg), "per_seed": per_seed}
    results["summary"] = summarize(results)
    results["verdict"] = verdict(results)
    return results


# ---------------------------------------------------------------------------------------------
# Reading results: summaries, verdict, tables, figures


def by_optimizer(results: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """``{optimizer: [{"seed", "train_loss", "eval_loss", "step_time", "opt_time"} per seed]}``."""
    names = results["config"]["optimizers"]
    return {n: [{"seed": p["seed"], **p["runs"][n]} for p in results["per_seed"]] for n in names}


def final_losses(results: dict[str, Any], name: str) -> list[float]:
    """The final evaluation loss of ``name``, one per seed (in the order of ``per_seed``)."""
    return [p["runs"][name]["eval_loss"][-1] for p in results["per_seed"]]


def summarize(results: dict[str, Any], baseline: str = BASELINE) -> list[dict[str, Any]]:
    """One row per optimizer: ``eval`` (final evaluation loss) and ``train`` (mean training loss
    over the last 10% of steps), each :func:`nlteach.runs.stats.summarize` over seeds; where the
    baseline ran, ``step_time_ratio`` / ``opt_time_ratio`` (per-seed ratios of median times measured
    in the same run, summarized) and ``vs_baseline`` (:func:`nlteach.runs.stats.paired` of the final
    losses, optimizer minus baseline; None for the baseline itself)."""
    runs = by_optimizer(results)
    base = runs.get(baseline)
    lrs = results["config"]["lrs"]
    rows = []
    for name, per_seed in runs.items():
        tail = max(1, len(per_seed[0]["train_loss"]) // 10)
        row: dict[str, Any] = {
            "optimizer": name, "lr": lrs[name],
            "eval": stats.summarize([r["eval_loss"][-1] for r in per_seed]),
            "train": stats.summarize([statistics.fmean(r["train_loss"][-tail:]) for r in per_seed])}
        if base is not None:
            row["step_time_ratio"] = stats.summarize([r["step_time"] / b["step_time"] for r, b in zip(per_seed, base)])
            row["opt_time_ratio"] = stats.summarize([r["opt_time"] / b["opt_time"] for r, b in zip(per_seed, base)])
            row["vs_baseline"] = None if name == baseline else stats.paired(
                [r["eval_loss"][-1] for r in per_seed], [b["eval_loss"][-1] for b in base])
        rows.append(row)
    return rows


def verdict(results: dict[str, Any], baseline: str = BASELINE) -> list[dict[str, Any]]:
    """The verdict rule of the module docstring, one entry per optimizer other than ``baseline``:
    ``{"optimizer", "baseline", "diff" (paired statistics, optimizer minus baseline), "outcome"}``
    with outcome ``"better"``, ``"worse"`` or ``"no clear difference"`` (empty when the baseline did
    not run)."""
    out = []
    for row in summarize(results, baseline):
        d = row.get("vs_baseline")
        if d is None:
            continue
        outcome = {-1: "better", 1: "worse", 0: "no clear difference"}[d["sign"]]
        out.append({"optimizer": row["optimizer"], "baseline": baseline, "diff": d, "outcome": outcome})
    return out


def verdict_text(results: dict[str, Any], baseline: str = BASELINE) -> str:
    """The verdict as sentences, numbers taken from ``results``."""
    ev = results["eval_name"]
    n = len(results["per_seed"])
    lines = [f"{results['task']}: final {ev} loss, each optimizer minus {baseline} on the same seed "
             f"(mean [95% interval], {n} seeds):"]
    for v in verdict(results, baseline):
        d = v["diff"]
        what = {"better": f"beats {baseline}", "worse": f"is worse than {baseline}",
                "no clear difference": f"does not separate from {baseline}"}[v["outcome"]]
        dropped = f"; {d['dropped']} seed(s) not finite, left out" if d["dropped"] else ""
        lines.append(f"  {v['optimizer']:<14} {ci_text(d)}: {what}{dropped}")
    return "\n".join(lines)


def summary_table(results: dict[str, Any], *, markdown: bool = True, digits: int = 3) -> str:
    """One task's summary: lr, final eval loss and training loss (mean ± std over seeds), difference
    to the baseline (mean [95% interval]) and step-time ratios; markdown or plain text."""
    ev = results["eval_name"]
    rows = []
    for r in summarize(results):
        d = r.get("vs_baseline")
        rows.append({"optimizer": r["optimizer"], "lr": f"{r['lr']:.3g}",
                     f"{ev} loss": pm_summary(r["eval"], digits),
                     "train loss (last 10%)": pm_summary(r["train"], digits),
                     f"- {BASELINE} [95%]": "" if d is None else ci_text(d, digits),
                     "step time / SGD": f"{r['step_time_ratio']['mean']:.2f}" if "step_time_ratio" in r else "",
                     "opt.step / SGD": f"{r['opt_time_ratio']['mean']:.2f}" if "opt_time_ratio" in r else ""})
    columns = list(rows[0])
    if markdown:
        return markdown_table(columns, [[row[c] for c in columns] for row in rows])
    return text_table(rows, columns)


def comparison_table(results_by_task: dict[str, dict[str, Any]], digits: int = 3) -> str:
    """Markdown, one row per optimizer, per task: final evaluation loss (mean ± std over seeds) and
    the paired difference to the baseline (mean [95% interval]); the README's table."""
    header = ["optimizer"]
    for task, res in results_by_task.items():
        header += [f"{task} {res['eval_name']} loss", f"{task}: - {BASELINE} [95%]"]
    names = list(dict.fromkeys(n for res in results_by_task.values() for n in res["config"]["optimizers"]))
    rows = []
    for name in names:
        row = [name]
        for res in results_by_task.values():
            r = {x["optimizer"]: x for x in summarize(res)}.get(name)
            d = None if r is None else r.get("vs_baseline")
            row += ["" if r is None else pm_summary(r["eval"], digits), "" if d is None else ci_text(d, digits)]
        rows.append(row)
    return markdown_table(header, rows)


def draw_comparison(fig: Figure, results: Sequence[dict[str, Any]]) -> Figure:
    """One panel of eval-loss curves (mean and min..max band over seeds) per task, then a bar
    chart of step time relative to SGD+momentum for each task."""
    axes = fig.subplots(1, len(results) + 1)
    names: list[str] = []
    for ax, res in zip(axes, results):
        xs = res["eval_steps"]
        for i, (name, per_seed) in enumerate(by_optimizer(res).items()):
            curves = np.array([r["eval_loss"] for r in per_seed])
            ax.plot(xs, curves.mean(0), color=f"C{i}", label=name)
            ax.fill_between(xs, curves.min(0), curves.max(0), color=f"C{i}", alpha=0.2)
            if name not in names:
                names.append(name)
        ax.set_xlabel("step")
        ax.set_ylabel(f"{res['eval_name']} loss (nats)")
        ax.set_title(f"{res['task']} ({len(res['per_seed'])} seeds)")
    axes[0].legend(fontsize=7)
    ax = axes[-1]
    width = 0.8 / max(1, len(results))
    for j, res in enumerate(results):
        rows = {r["optimizer"]: r for r in summarize(res)}
        vals = [rows[n]["step_time_ratio"]["mean"] if n in rows and "step_time_ratio" in rows[n] else np.nan
                for n in names]
        ax.bar(np.arange(len(names)) + j * width, vals, width=width, label=res["task"])
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(np.arange(len(names)) + width * (len(results) - 1) / 2)
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel(f"time per step / {BASELINE}")
    ax.set_title("time per training step")
    ax.legend(fontsize=7)
    return fig


def committed_path(task: str, preset: str = "laptop", root: str | Path | None = None) -> Path:
    """``<root>/optimizers_<task>_<preset>/results.json`` (root: the repository's ``results/``)."""
    return Path(RESULTS_ROOT if root is None else root) / f"{EXPERIMENT}_{task}_{preset}" / "results.json"


def load_committed(task: str, preset: str = "laptop", root: str | Path | None = None) -> dict[str, Any]:
    """The committed results of ``task`` at ``preset``. ``FileNotFoundError`` with the command that
    makes them when the file is absent (the package ships the committed ones: ``nlteach.runs.RESULTS_ROOT``)."""
    path = committed_path(task, preset, root)
    if not path.exists():
        raise FileNotFoundError(
            f"no committed results at {path}. They are made with `python -m nlteach.experiments.optimizers "
            f"--task {task} --preset {preset} --threads 1 --out {path.parent}` (in a clone of the repository).")
    return read_json(path)


# ---------------------------------------------------------------------------------------------
# Command line


def _lr_pair(text: str) -> tuple[str, float]:
    name, sep, value = text.rpartition("=")
    if not sep or name not in COMPARED:
        raise argparse.ArgumentTypeError(f"expected NAME=LR with NAME one of {', '.join(COMPARED)}, got {text!r}")
    return name, finite_float(value)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m nlteach.experiments.optimizers",
        description="Notebook 06's optimizer comparison on one task; writes OUT/results.json (resumable).")
    p.add_argument("--task", "--tasks", dest="task", choices=TASKS, required=True, help="the data set")
    add_common_arguments(p, out_default=None, threads=1)
    p.add_argument("--seeds", type=nonneg_int, nargs="+", default=None, help="seeds (default: the preset's)")
    p.add_argument("--lr", type=_lr_pair, nargs="+", default=[], metavar="NAME=LR",
                   help="learning rates replacing the defaults, e.g. --lr AdamW=3e-3")
    sizes = p.add_argument_group("sizes (default: the preset's)")
    dataclass_arguments(sizes, OptimizerComparisonConfig, skip=("task", "seeds", "lrs", "options", "preset", "sweep"),
                        only_given=True)
    p.add_argument("--sweep", action=argparse.BooleanOptionalAction, default=None,
                   help="choose each learning rate by a sweep on tuning data carved from the training split "
                        "first (default: the preset's; laptop and full sweep)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="print each finished run")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m nlteach.experiments.optimizers --task T [--preset P] [--out DIR] ...``: one task's
    comparison at a preset (``--out`` default: ``runs/optimizers_<task>_<preset>``); prints the
    summary and the verdict."""
    p = build_parser()
    args = apply_common(p, p.parse_args(argv))
    given = {k: getattr(args, k) for k in ("optimizers", "steps", "batch_size", "hidden", "context", "embed",
                                            "n_eval", "n_evals") if hasattr(args, k)}
    if "optimizers" in given:
        given["optimizers"] = tuple(given["optimizers"])
    if args.seeds is not None:
        given["seeds"] = tuple(args.seeds)
    if args.lr:
        given["lrs"] = dict(args.lr)
        given.setdefault("sweep", False)  # rates given by hand replace the sweep
    if args.sweep is not None:
        given["sweep"] = args.sweep
    try:
        cfg = preset_config(args.task, args.preset, **given)
        check_task(cfg)
    except (ValueError, DataUnavailableError) as e:  # a setting out of range; data that cannot be had
        p.error(str(e))
    out = Path(args.out or f"runs/{EXPERIMENT}_{args.task}_{args.preset}")
    check_out(p, out)
    return run_and_report(
        lambda: run(cfg, out, device=args.device, threads=args.threads, overwrite=args.overwrite,
                    progress=args.progress), out,
        lambda r: f"{cfg.task}: {cfg.steps} steps, seeds {list(cfg.seeds)}, preset {cfg.preset}",
        lambda r: summary_table(r, markdown=False), verdict_text)


if __name__ == "__main__":
    sys.exit(main())
