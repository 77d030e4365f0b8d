"""Notebook 07's sequential-tasks experiment: does a CMS keep an old task better than a single MLP?

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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from nlteach.cms import CMS, MultiFrequencyOptimizer

ARMS = ("single MLP", "CMS, equal rates", "CMS, slower levels")
ALL_ARMS = (*ARMS, "CMS, nested")
_OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}


@dataclass(frozen=True)
class SequentialTasksConfig:
    dim: int = 8  # input = output dimension (the CMS maps dim -> dim)
    hidden: int = 32  # hidden units per CMS block; the single MLP gets len(periods) * hidden
    periods: tuple[int, ...] = (1, 4, 16, 64)
    n_tasks: int = 3
    steps_per_task: int = 512
    batch_size: int = 32
    lr: float = 3e-3
    optimizer: str = "adam"
    task_shift: float = 3.0  # distance between task centres (in units of the input noise)
    n_eval: int = 512  # evaluation examples per task
    eval_every: int = 16  # steps between evaluations (for the curves)

    def __post_init__(self) -> None:
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(_OPTIMIZERS)}, got {self.optimizer!r}.")
        for name in ("dim", "hidden", "n_tasks", "steps_per_task", "batch_size", "n_eval", "eval_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}.")


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
    tasks and evaluation sets depend only on the seed, so every arm sees the same data.
    """
    g_data = torch.Generator().manual_seed(seed)
    tasks = make_tasks(cfg, g_data)
    evals = [t.sample(cfg.n_eval, g_data) for t in tasks]
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


def run_sequential_tasks(cfg: SequentialTasksConfig, seeds: Sequence[int] = (0, 1, 2),
                         arms: Sequence[str] = ARMS, progress: bool = False) -> dict[str, Any]:
    """Every arm with every seed. Returns ``{"config", "arms": {arm: [run_one results]}}``."""
    if len(seeds) < 1:
        raise ValueError("seeds must name at least one seed.")
    out: dict[str, Any] = {"config": asdict(cfg), "arms": {}}
    for arm in arms:
        out["arms"][arm] = []
        for seed in seeds:
            out["arms"][arm].append(run_one(arm, cfg, int(seed)))
            if progress:
                print(f"  {arm:20s} seed {seed}: done", flush=True)
    return out


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0}


def summarize(results: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """Per arm, mean and std over seeds of:

    - ``A_after_A``: NMSE on the first task right after learning it;
    - ``A_after_last``: NMSE on the first task after the whole sequence;
    - ``forgetting_A``: their difference (how much of task A was lost);
    - ``just_learned``: NMSE on each task right after learning it, averaged over tasks (plasticity);
    - ``final_avg``: NMSE averaged over all tasks after the whole sequence.
    """
    summary = {}
    for arm, runs in results["arms"].items():
        mats = [np.asarray(r["loss_matrix"]) for r in runs]
        summary[arm] = {
            "A_after_A": _mean_std([m[0, 0] for m in mats]),
            "A_after_last": _mean_std([m[-1, 0] for m in mats]),
            "forgetting_A": _mean_std([m[-1, 0] - m[0, 0] for m in mats]),
            "just_learned": _mean_std([float(np.mean(np.diag(m))) for m in mats]),
            "final_avg": _mean_std([float(m[-1].mean()) for m in mats]),
        }
    return summary


SUMMARY_COLUMNS = ("A_after_A", "A_after_last", "forgetting_A", "just_learned", "final_avg")


def format_summary(results: dict[str, Any]) -> str:
    """A text table, ``mean +- std`` over seeds, NMSE (lower is better)."""
    s = summarize(results)
    n = len(next(iter(results["arms"].values())))
    head = f"{'arm':20s}" + "".join(f"{c:>18s}" for c in SUMMARY_COLUMNS)
    lines = [f"NMSE, mean +- std over {n} seeds (lower is better)", head]
    for arm, row in s.items():
        lines.append(f"{arm:20s}" + "".join(f"{row[c]['mean']:>10.3f} +-{row[c]['std']:6.3f}"
                                             for c in SUMMARY_COLUMNS))
    return "\n".join(lines)


def draw_sequential_tasks(fig: Figure, results: dict[str, Any]) -> None:
    """Left: NMSE on task A during the whole sequence (mean over seeds, band = min..max).
    Right: NMSE on each task after the last one (mean, error bar = std)."""
    ax, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    cfg = results["config"]
    arms = list(results["arms"])
    for k, arm in enumerate(arms):
        runs = results["arms"][arm]
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


def quick_config(**overrides: Any) -> SequentialTasksConfig:
    """A default config with some fields replaced (for tests and notebooks)."""
    return replace(SequentialTasksConfig(), **overrides)

