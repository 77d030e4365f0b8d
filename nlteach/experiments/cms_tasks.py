"""Notebook 07's sequential-tasks experiment: does a CMS keep an old task better than a single MLP?

    python -m nlteach.experiments.cms_tasks --preset laptop --out runs/cms_tasks_laptop

Three regression tasks are learned one after the other (no replay). Task k draws inputs around its
own centre ``mu_k`` (so a model could in principle fit all three at once) and labels them with its
own random teacher ``y = tanh(x A_k) B_k`` (normalized to unit variance). After each task we
measure the normalized mean squared error (NMSE: MSE divided by the target variance; 1 is about
as bad as predicting the mean) on every task, giving a matrix ``L[i][j]`` = NMSE on task j after
learning task i.

The arms (same optimizer, same base learning rate, same number of hidden units in total):

- ``"single MLP"``: one residual MLP block with ``K * hidden`` hidden units, updated every step;
- ``"CMS, equal rates"``: a sequential CMS of K blocks with ``hidden`` units, every level updated
  every step (periods all 1): the CMS architecture without the multi-frequency clock;
- ``"CMS, slower levels"``: the same CMS with ``periods`` (1, 4, 16, 64 by default) trained by
  :class:`~nlteach.cms.MultiFrequencyOptimizer` with ``reduce="mean"``: a slow level takes one
  step on the average gradient of its period, so it moves ``period`` times less often.
- ``"CMS, nested"`` (optional): the nested variant with the same periods.

:class:`SequentialTasksConfig` holds every setting, :data:`PRESETS` is the one table of sizes and
:func:`run` runs every seed (resumably in a run folder, :class:`nlteach.runs.RunDir`, when given
``out``) and returns the ``results.json`` dict; :func:`summarize`, :func:`verdict`,
:func:`summary_table` and :func:`draw_sequential_tasks` read it, fresh or committed
(:func:`load_committed`).

**Verdict rule.** Arm X forgets task A *less* (or *more*) than arm Y when the 95% t interval of the
per-seed difference X - Y of the forgetting of task A (same seed: same tasks, data and evaluation
sets) lies entirely below (above) 0; otherwise the runs do not separate them. The same rule
compares plasticity (NMSE on each task right after learning it).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from nlteach.cms import CMS, MultiFrequencyOptimizer
from nlteach.config import get_preset
from nlteach.experiments.reporting import ci_text, run_and_report
from nlteach.runs import RESULTS_ROOT, stats
from nlteach.runs.cli import (
    add_common_arguments,
    apply_common,
    check_out,
    dataclass_arguments,
    nonneg_int,
)
from nlteach.runs.io import atomic_save, load_checkpoint, read_json
from nlteach.runs.rundir import run_folder
from nlteach.runs.tables import markdown_table, pm_summary, text_table
from nlteach.runs.threads import torch_threads

EXPERIMENT = "cms_tasks"
ARMS = ("single MLP", "CMS, equal rates", "CMS, slower levels")
ALL_ARMS = (*ARMS, "CMS, nested")
_OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}


@dataclass(frozen=True)
class SequentialTasksConfig:
    dim: int = field(default=8, metadata={"help": "input = output dimension (the CMS maps dim -> dim)"})
    hidden: int = field(default=32, metadata={
        "help": "hidden units per CMS block; the single MLP gets len(periods) * hidden"})
    periods: tuple[int, ...] = field(default=(1, 4, 16, 64), metadata={"help": "update periods of the CMS levels"})
    n_tasks: int = field(default=3, metadata={"help": "tasks learned one after the other"})
    steps_per_task: int = field(default=512, metadata={"help": "training steps on each task"})
    batch_size: int = 32
    lr: float = 3e-3
    optimizer: str = field(default="adam", metadata={"choices": tuple(_OPTIMIZERS)})
    task_shift: float = field(default=3.0, metadata={
        "help": "distance between task centres (in units of the input noise)"})
    n_eval: int = field(default=512, metadata={"help": "evaluation examples per task"})
    eval_every: int = field(default=16, metadata={"help": "steps between evaluations (for the curves)"})
    arms: tuple[str, ...] = field(default=ARMS, metadata={"help": "arms to run", "choices": ALL_ARMS})
    seeds: tuple[int, ...] = (0, 1, 2)
    preset: str | None = None  # the row of PRESETS this config came from (None: built by hand)

    def __post_init__(self) -> None:
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(_OPTIMIZERS)}, got {self.optimizer!r}.")
        for name in ("dim", "hidden", "n_tasks", "steps_per_task", "batch_size", "n_eval", "eval_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}.")
        for arm in self.arms:
            if arm not in ALL_ARMS:
                raise ValueError(f"arm must be one of {ALL_ARMS}, got {arm!r}.")
        if not self.arms:
            raise ValueError("arms must name at least one arm.")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must name at least one seed, each once, got {self.seeds!r}.")

    def settings(self) -> dict[str, Any]:
        """Everything that changes the numbers (the run folder's ``config.json``)."""
        return asdict(self)


#: The one table of sizes: preset -> fields of :class:`SequentialTasksConfig` (every arm).
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(steps_per_task=48, eval_every=12, n_eval=128, seeds=(0, 1, 2), arms=ALL_ARMS),
    "laptop": dict(steps_per_task=1000, eval_every=25, n_eval=512, seeds=(0, 1, 2, 3, 4), arms=ALL_ARMS),
    "full": dict(steps_per_task=4000, eval_every=100, n_eval=2048, seeds=tuple(range(10)), arms=ALL_ARMS),
}


def preset_config(preset: str | None = None, **overrides: Any) -> SequentialTasksConfig:
    """The config at ``preset`` (default: ``$NLTEACH_SIZE``), fields in ``overrides`` replaced."""
    preset = get_preset(preset)
    return replace(SequentialTasksConfig(preset=preset, **PRESETS[preset]), **overrides)


@dataclass
class Task:
    mean: torch.Tensor  # [D]
    A: torch.Tensor  # [D, 2D]
    B: torch.Tensor  # [2D, D]

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.mean + torch.randn(n, self.mean.shape[0], generator=generator)
        return x, torch.tanh(x @ self.A) @ self.B


def make_tasks(cfg: SequentialTasksConfig, generator: torch.Generator) -> list[Task]:
    """``cfg.n_tasks`` teachers with distinct input centres, targets scaled to unit variance."""
    D = cfg.dim
    tasks = []
    for _ in range(cfg.n_tasks):
        direction = torch.randn(D, generator=generator)
        mean = cfg.task_shift * direction / direction.norm()
        A = 2.0 * torch.randn(D, 2 * D, generator=generator) / math.sqrt(D)
        B = torch.randn(2 * D, D, generator=generator)
        task = Task(mean, A, B)
        _, y = task.sample(4096, generator)
        task.B = B / y.std()  # unit target variance
        tasks.append(task)
    return tasks


def build_arm(arm: str, cfg: SequentialTasksConfig) -> tuple[CMS, MultiFrequencyOptimizer]:
    """The model and optimizer of one arm (draws the initial weights from torch's global RNG)."""
    K = len(cfg.periods)
    base = _OPTIMIZERS[cfg.optimizer]
    if arm == "single MLP":
        model = CMS(cfg.dim, K * cfg.hidden, periods=(1,))
    elif arm == "CMS, equal rates":
        model = CMS(cfg.dim, cfg.hidden, periods=(1,) * K)
    elif arm == "CMS, slower levels":
        model = CMS(cfg.dim, cfg.hidden, periods=cfg.periods)
    elif arm == "CMS, nested":
        model = CMS(cfg.dim, cfg.hidden, periods=cfg.periods, variant="nested")
    else:
        raise ValueError(f"arm must be one of {ALL_ARMS}, got {arm!r}.")
    return model, model.multi_frequency_optimizer(base=base, reduce="mean", lr=cfg.lr)


@torch.no_grad()
def _nmse(model: CMS, data: list[tuple[torch.Tensor, torch.Tensor]]) -> list[float]:
    return [float(((model(x) - y) ** 2).mean() / y.var()) for x, y in data]


def run_one(arm: str, cfg: SequentialTasksConfig, seed: int) -> dict[str, Any]:
    """Train one arm on the task sequence with one seed.

    Returns ``{"seed", "loss_matrix": L[i][j], "curve": [n_evals][n_tasks], "eval_steps"}``. The
    tasks and evaluation sets depend only on the seed, so every arm sees the same data. The initial
    weights are drawn from torch's global RNG seeded with ``10_000 + seed``; the caller's RNG state
    is restored afterwards.
    """
    g_data = torch.Generator().manual_seed(seed)
    tasks = make_tasks(cfg, g_data)
    evals = [t.sample(cfg.n_eval, g_data) for t in tasks]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(10_000 + seed)  # initial weights
        model, opt = build_arm(arm, cfg)
    g_train = torch.Generator().manual_seed(20_000 + seed)
    matrix, curve, eval_steps = [], [], []
    step = 0
    for task in tasks:
        for _ in range(cfg.steps_per_task):
            x, y = task.sample(cfg.batch_size, g_train)
            opt.zero_grad()
            ((model(x) - y) ** 2).mean().backward()
            opt.step()
            step += 1
            if step % cfg.eval_every == 0:
                curve.append(_nmse(model, evals))
                eval_steps.append(step)
        matrix.append(_nmse(model, evals))
    return {"seed": seed, "loss_matrix": matrix, "curve": curve, "eval_steps": eval_steps}


def run_seed(cfg: SequentialTasksConfig, seed: int, *, checkpoint: Path | None = None,
             progress: bool = False) -> dict[str, Any]:
    """Every arm with one seed: ``{"seed", "arms": {arm: {"loss_matrix", "curve", "eval_steps"}}}``.
    With ``checkpoint``, each finished arm is saved there and picked up by a rerun."""
    done: dict[str, Any] = {}
    if checkpoint is not None and checkpoint.exists():
        done = load_checkpoint(checkpoint)["arms"]
    for arm in cfg.arms:
        if arm not in done:
            rec = run_one(arm, cfg, seed)
            done[arm] = {k: rec[k] for k in ("loss_matrix", "curve", "eval_steps")}
            if checkpoint is not None:
                atomic_save({"arms": done}, checkpoint)
        if progress:
            print(f"  {arm:20s} seed {seed}: done", flush=True)
    return {"seed": seed, "arms": {arm: done[arm] for arm in cfg.arms}}


def run(cfg: SequentialTasksConfig, out: str | Path | None = None, *, threads: int | None = 1,
        overwrite: bool = False, progress: bool = False, command: str | None = None) -> dict[str, Any]:
    """Every seed of ``cfg`` (on the CPU: the models have a few thousand parameters); returns the
    results dict (:func:`results_dict`).

    ``out=None`` writes nothing (notebooks). Otherwise ``out`` is a run folder
    (:class:`nlteach.runs.RunDir`): finished seeds are read back, an interrupted seed continues after
    its last finished arm, a run with other settings is refused (``overwrite=True`` starts over),
    and ``out/results.json`` is written with its provenance. ``threads``: torch CPU threads during
    the run (restored afterwards; ``None`` leaves them alone).
    """
    with torch_threads(threads), run_folder(out, cfg.settings(), overwrite=overwrite) as rundir:  # locked
        done = rundir.finished(cfg.seeds) if rundir is not None else {}
        for seed in cfg.seeds:
            if seed in done:
                continue
            ckpt = rundir.checkpoint_path(seed) if rundir is not None else None
            record = run_seed(cfg, seed, checkpoint=ckpt, progress=progress)
            done[seed] = rundir.save_seed(seed, record, device="cpu") if rundir is not None else record
        results = results_dict(cfg, [done[s] for s in cfg.seeds])
        if rundir is not None:
            results = rundir.write_results(results, command=command, device="cpu")
    return results


def results_dict(cfg: SequentialTasksConfig, per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """The layout of ``results.json``: ``{"experiment", "preset", "config" (the settings),
    "per_seed": [{"seed", "arms": {arm: {"loss_matrix", "curve", "eval_steps"}}, "provenance"?}],
    "summary", "verdict"}``."""
    results = {"experiment": EXPERIMENT, "preset": cfg.preset, "config": cfg.settings(), "per_seed": per_seed}
    results["summary"] = summarize(results)
    results["verdict"] = verdict(results)
    return results


# ---------------------------------------------------------------------------------------------
# Reading results: summaries, verdict, tables, figures

SUMMARY_COLUMNS = ("A_after_A", "A_after_last", "forgetting_A", "just_learned", "final_avg")
COLUMN_TITLES = {"A_after_A": "task A after A", "A_after_last": "task A after the last",
                 "forgetting_A": "forgetting of A", "just_learned": "just learned", "final_avg": "final average"}
#: The pairs the verdict compares (arm, reference): every CMS arm against the single MLP (does a
#: CMS keep task A better?), and the clocked arms against the plain chain (does the clock add to it?).
COMPARISONS = (("CMS, equal rates", "single MLP"), ("CMS, slower levels", "single MLP"),
               ("CMS, nested", "single MLP"), ("CMS, slower levels", "CMS, equal rates"),
               ("CMS, nested", "CMS, equal rates"))
VERDICT_METRICS = ("forgetting_A", "just_learned")


def by_arm(results: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """``{arm: [{"seed", "loss_matrix", "curve", "eval_steps"} per seed]}``."""
    return {arm: [{"seed": p["seed"], **p["arms"][arm]} for p in results["per_seed"]]
            for arm in results["config"]["arms"]}


def metric_values(runs: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Per seed, from the loss matrices ``L[i][j]``:

    - ``A_after_A``: NMSE on the first task right after learning it;
    - ``A_after_last``: NMSE on the first task after the whole sequence;
    - ``forgetting_A``: their difference (how much of task A was lost);
    - ``just_learned``: NMSE on each task right after learning it, averaged over tasks (plasticity);
    - ``final_avg``: NMSE averaged over all tasks after the whole sequence.
    """
    mats = [np.asarray(r["loss_matrix"]) for r in runs]
    return {"A_after_A": [float(m[0, 0]) for m in mats],
            "A_after_last": [float(m[-1, 0]) for m in mats],
            "forgetting_A": [float(m[-1, 0] - m[0, 0]) for m in mats],
            "just_learned": [float(np.mean(np.diag(m))) for m in mats],
            "final_avg": [float(m[-1].mean()) for m in mats]}


def summarize(results: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{arm: {metric: nlteach.runs.stats.summarize(per-seed values)}}`` for the metrics of
    :func:`metric_values` (NMSE, lower is better)."""
    return {arm: {k: stats.summarize(v) for k, v in metric_values(runs).items()}
            for arm, runs in by_arm(results).items()}


def verdict(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The verdict rule of the module docstring for each pair of :data:`COMPARISONS` whose arms
    ran and each metric of :data:`VERDICT_METRICS`: ``{"arm", "reference", "metric", "diff"
    (paired statistics, arm minus reference), "outcome": "lower" | "higher" | "no clear difference"}``."""
    runs = by_arm(results)
    values = {arm: metric_values(r) for arm, r in runs.items()}
    out = []
    for arm, ref in COMPARISONS:
        if arm not in runs or ref not in runs:
            continue
        for metric in VERDICT_METRICS:
            d = stats.paired(values[arm][metric], values[ref][metric])
            outcome = {-1: "lower", 1: "higher", 0: "no clear difference"}[d["sign"]]
            out.append({"arm": arm, "reference": ref, "metric": metric, "diff": d, "outcome": outcome})
    return out


_SAYS = {("forgetting_A", "lower"): "forgets task A less than", ("forgetting_A", "higher"): "forgets task A more than",
         ("just_learned", "lower"): "learns each new task better than",
         ("just_learned", "higher"): "learns each new task worse than"}


def verdict_lines(results: dict[str, Any], metrics: Sequence[str] = VERDICT_METRICS) -> list[str]:
    """One sentence per verdict entry on ``metrics``, numbers taken from ``results``."""
    lines = []
    for v in verdict(results):
        if v["metric"] not in metrics:
            continue
        d = v["diff"]
        if v["outcome"] == "no clear difference":
            says = "no clear difference"
        else:
            says = f"{v['arm']} {_SAYS[(v['metric'], v['outcome'])]} {v['reference']}"
        dropped = f"; {d['dropped']} seed(s) not finite, left out" if d["dropped"] else ""
        lines.append(f"{v['arm']} vs {v['reference']}, {COLUMN_TITLES[v['metric']]}: {ci_text(d)}: {says}{dropped}")
    return lines


def verdict_text(results: dict[str, Any]) -> str:
    """The verdict as sentences, numbers taken from ``results``."""
    n = len(results["per_seed"])
    lines = [f"Paired differences over {n} seeds (arm minus reference, mean [95% interval], NMSE):"]
    lines += [f"  {line}" for line in verdict_lines(results)]
    s = summarize(results)
    above = [arm for arm, row in s.items() if row["A_after_last"]["mean"] > 1]
    lines.append("After the last task, the mean NMSE on task A is above 1 (worse than predicting the mean) for: "
                 + ("; ".join(above) if above else "no arm") + ".")
    return "\n".join(lines)


def summary_table(results: dict[str, Any], *, markdown: bool = True, digits: int = 3) -> str:
    """NMSE per arm, mean ± std over seeds (lower is better); markdown or plain text."""
    columns = ["arm", *(COLUMN_TITLES[c] for c in SUMMARY_COLUMNS)]
    rows = [{"arm": arm, **{COLUMN_TITLES[c]: pm_summary(row[c], digits) for c in SUMMARY_COLUMNS}}
            for arm, row in summarize(results).items()]
    if markdown:
        return markdown_table(columns, [[r[c] for c in columns] for r in rows])
    return text_table(rows, columns)


def draw_sequential_tasks(fig: Figure, results: dict[str, Any]) -> None:
    """Left: NMSE on task A during the whole sequence (mean over seeds, band = min..max).
    Right: NMSE on each task after the last one (mean, error bar = std)."""
    ax, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    cfg = results["config"]
    runs_by_arm = by_arm(results)
    arms = list(runs_by_arm)
    for k, arm in enumerate(arms):
        runs = runs_by_arm[arm]
        steps = runs[0]["eval_steps"]
        a = np.asarray([[row[0] for row in r["curve"]] for r in runs])  # [seeds, evals]
        ax.plot(steps, a.mean(0), label=arm, color=f"C{k}")
        ax.fill_between(steps, a.min(0), a.max(0), color=f"C{k}", alpha=0.2)
        final = np.asarray([r["loss_matrix"][-1] for r in runs])  # [seeds, tasks]
        n_tasks = final.shape[1]
        xs = np.arange(n_tasks) + (k - (len(arms) - 1) / 2) * 0.8 / len(arms)
        ax2.bar(xs, final.mean(0), width=0.8 / len(arms), yerr=final.std(0, ddof=1) if len(runs) > 1 else None,
                color=f"C{k}", label=arm)
    for i in range(1, cfg["n_tasks"]):
        ax.axvline(i * cfg["steps_per_task"], color="gray", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.set_xlabel("training step (tasks change at the dashed lines)")
    ax.set_ylabel("NMSE on task A")
    ax.set_title("how much of task A survives")
    ax.legend(fontsize=8)
    ax2.set_xticks(range(cfg["n_tasks"]), [chr(ord("A") + i) for i in range(cfg["n_tasks"])])
    ax2.set_xlabel("task")
    ax2.set_ylabel("NMSE after the last task")
    ax2.set_title("final error per task")


def committed_path(preset: str = "laptop", root: str | Path | None = None) -> Path:
    """``<root>/cms_tasks_<preset>/results.json`` (root: the repository's ``results/``)."""
    return Path(RESULTS_ROOT if root is None else root) / f"{EXPERIMENT}_{preset}" / "results.json"


def load_committed(preset: str = "laptop", root: str | Path | None = None) -> dict[str, Any]:
    """The committed results at ``preset``. ``FileNotFoundError`` with the command that makes them
    when the file is absent (the package ships the committed ones: ``nlteach.runs.RESULTS_ROOT``)."""
    path = committed_path(preset, root)
    if not path.exists():
        raise FileNotFoundError(
            f"no committed results at {path}. They are made with `python -m nlteach.experiments.cms_tasks "
            f"--preset {preset} --threads 1 --out {path.parent}` (in a clone of the repository).")
    return read_json(path)


# ---------------------------------------------------------------------------------------------
# Command line

_SIZE_FIELDS = ("dim", "hidden", "periods", "n_tasks", "steps_per_task", "batch_size", "lr", "optimizer",
                "task_shift", "n_eval", "eval_every", "arms")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m nlteach.experiments.cms_tasks",
        description="Notebook 07's sequential-tasks experiment (does a CMS keep an old task?); writes "
                    "OUT/results.json (resumable). Runs on the CPU.")
    add_common_arguments(p, out_default=None, threads=1)
    p.add_argument("--seeds", type=nonneg_int, nargs="+", default=None, help="seeds (default: the preset's)")
    sizes = p.add_argument_group("settings (default: the preset's)")
    dataclass_arguments(sizes, SequentialTasksConfig, skip=("seeds", "preset"), only_given=True)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="print each finished run")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m nlteach.experiments.cms_tasks [--preset P] [--out DIR] ...``: the experiment at a
    preset (``--out`` default: ``runs/cms_tasks_<preset>``); prints the summary and the verdict."""
    p = build_parser()
    args = p.parse_args(argv)
    if args.device not in (None, "cpu"):  # before apply_common, which would only say whether the device exists
        p.error(f"--device {args.device!r}: this experiment runs on the CPU (its models have a few thousand "
                "parameters); expected cpu.")
    args = apply_common(p, args)
    given = {k: getattr(args, k) for k in _SIZE_FIELDS if hasattr(args, k)}
    for k in ("periods", "arms"):
        if k in given:
            given[k] = tuple(given[k])
    if args.seeds is not None:
        given["seeds"] = tuple(args.seeds)
    try:
        cfg = preset_config(args.preset, **given)
    except ValueError as e:
        p.error(str(e))
    out = Path(args.out or f"runs/{EXPERIMENT}_{args.preset}")
    check_out(p, out)
    return run_and_report(
        lambda: run(cfg, out, threads=args.threads, overwrite=args.overwrite, progress=args.progress), out,
        lambda r: (f"preset {cfg.preset}: {cfg.steps_per_task} steps per task, seeds {list(cfg.seeds)}\n"
                   f"NMSE, mean ± std over {len(cfg.seeds)} seeds (lower is better)"),
        lambda r: summary_table(r, markdown=False), verdict_text)


if __name__ == "__main__":
    sys.exit(main())
