"""Notebook 06's optimizer comparison: the same small MLP trained with each optimizer on digits and
on tiny Shakespeare (character level), with seeds and spreads. ``python -m
nlteach.experiments.optimizers`` runs it at a preset.

Everything returns plain data (dicts of lists) and has a ``draw_*(fig, ...)`` companion, so the
notebook only calls and plots; the tests run the same functions at tiny sizes. The notebook's
smaller demos are in :mod:`nlteach.course.nb06_optimizers`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from nlteach import optim as nlo
from nlteach.runs.threads import torch_threads

# ---------------------------------------------------------------------------------------------
# The comparison: the same small MLP on digits and on tiny Shakespeare (characters).

COMPARED = ("SGD+momentum", "AdamW", "Muon", "M3", "DeltaMomentum", "DMGD")

#: Learning rates used in the comparison, picked by a small sweep on seed 0 at the laptop preset
#: (see notebook 06 and the project report); every other hyperparameter is the class default.
#: Grid (300 digits / 400 Shakespeare steps, hidden 128): SGD 0.03/0.1/0.3, AdamW 1e-3/3e-3/1e-2,
#: Muon 0.01/0.02/0.05, M3 3e-4/1e-3/3e-3 x eps 1e-8..1, DeltaMomentum 0.03/0.1/0.3, DMGD 0.3/1/3.
DEFAULT_LRS: dict[str, dict[str, float]] = {
    "digits": {"SGD+momentum": 0.1, "AdamW": 1e-2, "Muon": 0.01, "M3": 3e-4,
               "DeltaMomentum": 0.1, "DMGD": 1.0},
    "shakespeare": {"SGD+momentum": 0.1, "AdamW": 3e-3, "Muon": 0.01, "M3": 1e-3,
                    "DeltaMomentum": 0.1, "DMGD": 1.0},
}


def comparison_sizes(task: str, preset: str | None = None) -> dict[str, Any]:
    """Keyword arguments of :func:`compare_optimizers` for the active size preset."""
    from nlteach.config import by_preset

    if task == "digits":
        return by_preset(
            tiny=dict(steps=12, hidden=16, seeds=(0, 1, 2), n_evals=4),
            laptop=dict(steps=500, hidden=128, seeds=(0, 1, 2)),
            full=dict(steps=3000, hidden=512, seeds=(0, 1, 2, 3, 4)), preset=preset)
    if task == "shakespeare":
        return by_preset(
            tiny=dict(steps=12, hidden=16, seeds=(0, 1, 2), n_eval=200, n_evals=4),
            laptop=dict(steps=1000, hidden=128, seeds=(0, 1, 2), n_eval=2000),
            full=dict(steps=5000, hidden=512, seeds=(0, 1, 2, 3, 4), n_eval=10000), preset=preset)
    raise ValueError(f"task must be 'digits' or 'shakespeare', got {task!r}.")


def make_optimizer(name: str, params: list[torch.Tensor], lr: float, **options: Any) -> torch.optim.Optimizer:
    """The optimizers of the comparison by name (see :data:`COMPARED`); ``options`` override the
    other hyperparameters."""
    if name == "SGD+momentum":
        return torch.optim.SGD(params, **{"lr": lr, "momentum": 0.9, **options})
    if name == "AdamW":
        return torch.optim.AdamW(params, **{"lr": lr, "weight_decay": 0.0, **options})
    if name == "Muon":
        return nlo.Muon(params, **{"lr": lr, "fallback_lr": 3e-3, **options})
    if name == "M3":
        return nlo.M3(params, **{"lr": lr, **options})
    if name == "DeltaMomentum":
        return nlo.DeltaMomentum(params, **{"lr": lr, "momentum": 0.9, **options})
    if name == "DMGD":
        return nlo.DeepMomentum(params, **{"lr": lr, "momentum": 0.9, **options})
    raise ValueError(f"optimizer name {name!r} is not one of {COMPARED}.")


class SmallMLP(nn.Module):
    """The network of the comparison: an input encoder, two hidden GELU layers of width
    ``hidden``, a linear head. For digits the input is the 64 pixels; for text it is the
    concatenated embeddings of the last ``context`` characters (a Bengio-style character MLP)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, *, vocab: int | None = None,
                 embed: int = 8):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed) if vocab is not None else None
        d = in_dim * embed if vocab is not None else in_dim
        self.body = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, hidden),
                                  nn.GELU(), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.embed is not None:
            x = self.embed(x).flatten(1)  # [B, context] -> [B, context * embed]
        return self.body(x)


def _digits_task(device: torch.device) -> dict[str, Any]:
    from nlteach.data import load_digits_split

    d = load_digits_split()
    tr, te = d["train"], d["test"]
    Xtr, ytr = torch.tensor(tr[0], device=device), torch.tensor(tr[1], device=device)
    Xte, yte = torch.tensor(te[0], device=device), torch.tensor(te[1], device=device)

    def batch(gen: torch.Generator, bs: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(ytr), (bs,), generator=gen).to(device)
        return Xtr[idx], ytr[idx]

    return {"batch": batch, "eval": (Xte, yte), "in_dim": 64, "out_dim": 10, "vocab": None,
            "eval_name": "test"}


def _shakespeare_task(device: torch.device, context: int, n_eval: int) -> dict[str, Any]:
    from nlteach.data import load_tinyshakespeare

    text = load_tinyshakespeare()
    chars = sorted(set("".join(text.values())))
    index = {c: i for i, c in enumerate(chars)}

    def encode(s: str) -> torch.Tensor:
        return torch.tensor([index[c] for c in s], dtype=torch.long)

    train, val = encode(text["train"]), encode(text["val"])
    offs = torch.arange(context)

    def windows(data: torch.Tensor, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return data[starts[:, None] + offs].to(device), data[starts + context].to(device)

    def batch(gen: torch.Generator, bs: int) -> tuple[torch.Tensor, torch.Tensor]:
        return windows(train, torch.randint(len(train) - context, (bs,), generator=gen))

    eval_starts = torch.randint(len(val) - context, (n_eval,), generator=torch.Generator().manual_seed(1234))
    return {"batch": batch, "eval": windows(val, eval_starts), "in_dim": context,
            "out_dim": len(chars), "vocab": len(chars), "eval_name": "val"}


def compare_optimizers(task: str, *, optimizers: Sequence[str] = COMPARED,
                       seeds: Sequence[int] = (0, 1, 2), steps: int = 300, batch_size: int = 64,
                       hidden: int = 128, context: int = 16, embed: int = 8, n_eval: int = 2000,
                       n_evals: int = 10, lrs: dict[str, float] | None = None,
                       options: dict[str, dict[str, Any]] | None = None,
                       device: str | torch.device | None = None, threads: int | None = 1,
                       progress: bool = False) -> dict[str, Any]:
    """Train the same :class:`SmallMLP` with each optimizer and seed on ``task`` (``"digits"`` or
    ``"shakespeare"``; cross-entropy, nats). For a given seed every optimizer starts from the same
    weights and sees the same batches. Runs are interleaved (seed-major) so machine load affects
    all optimizers alike.

    Returns ``{"task", "config", "eval_steps", "runs": {name: [per seed {"seed", "train_loss",
    "eval_loss", "step_time", "opt_time"}]}}``: ``train_loss`` per step, ``eval_loss`` at
    ``eval_steps`` (``n_evals`` points incl. step 0 and the last), ``step_time`` / ``opt_time`` the
    median wall time of a full training step / of ``optimizer.step()`` alone (seconds).

    ``threads``: torch CPU threads during the runs (restored afterwards; ``None`` leaves them
    alone). The default 1 is deliberate: these small models gain nothing from more threads, and on
    a shared or loaded machine multi-threaded small ops are slower and their timings erratic.
    """
    with torch_threads(threads):
        return _compare(task, optimizers, seeds, steps, batch_size, hidden, context, embed, n_eval,
                        n_evals, lrs, options, device, progress)


def _compare(task, optimizers, seeds, steps, batch_size, hidden, context, embed, n_eval, n_evals,
             lrs, options, device, progress) -> dict[str, Any]:
    from nlteach.config import get_device

    if task not in ("digits", "shakespeare"):
        raise ValueError(f"task must be 'digits' or 'shakespeare', got {task!r}.")
    for name in optimizers:
        if name not in COMPARED:
            raise ValueError(f"optimizer name {name!r} is not one of {COMPARED}.")
    if steps < 1 or not seeds:
        raise ValueError(f"need steps >= 1 and at least one seed, got steps={steps}, seeds={seeds}.")
    dev = get_device(device)
    data = _digits_task(dev) if task == "digits" else _shakespeare_task(dev, context, n_eval)
    lr_table = {**DEFAULT_LRS[task], **(lrs or {})}
    eval_steps = sorted({int(round(x)) for x in np.linspace(0, steps, n_evals)})
    Xe, ye = data["eval"]
    loss_fn = nn.functional.cross_entropy
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in optimizers}
    total = len(seeds) * len(optimizers)
    done = 0
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            init = SmallMLP(data["in_dim"], hidden, data["out_dim"], vocab=data["vocab"], embed=embed)
        for name in optimizers:
            model = SmallMLP(data["in_dim"], hidden, data["out_dim"], vocab=data["vocab"], embed=embed)
            model.load_state_dict(init.state_dict())
            model.to(dev)
            opt = make_optimizer(name, list(model.parameters()), lr_table[name],
                                 **(options or {}).get(name, {}))
            gen = torch.Generator().manual_seed(10_000 + seed)
            train_loss, eval_loss, step_t, opt_t = [], [], [], []

            def evaluate(model: nn.Module = model) -> float:
                with torch.no_grad():
                    return float(loss_fn(model(Xe), ye))

            if 0 in eval_steps:
                eval_loss.append(evaluate())
            for t in range(1, steps + 1):
                xb, yb = data["batch"](gen, batch_size)
                t0 = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(xb), yb)
                loss.backward()
                t1 = time.perf_counter()
                opt.step()
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                t2 = time.perf_counter()
                step_t.append(t2 - t0)
                opt_t.append(t2 - t1)
                train_loss.append(loss.item())
                if t in eval_steps:
                    eval_loss.append(evaluate())
            skip = min(5, steps - 1)  # first steps include allocation warm-up
            runs[name].append({"seed": seed, "train_loss": train_loss, "eval_loss": eval_loss,
                               "step_time": statistics.median(step_t[skip:]),
                               "opt_time": statistics.median(opt_t[skip:])})
            done += 1
            if progress:
                print(f"\r{task}: {done}/{total} runs (last: {name}, seed {seed}, "
                      f"{data['eval_name']} loss {eval_loss[-1]:.3f})", end="", flush=True)
    if progress:
        print()
    config = dict(task=task, optimizers=list(optimizers), seeds=list(seeds), steps=steps,
                  batch_size=batch_size, hidden=hidden, context=context, embed=embed,
                  n_eval=n_eval, lrs={n: lr_table[n] for n in optimizers},
                  options={n: dict((options or {}).get(n, {})) for n in optimizers}, device=str(dev),
                  eval_name=data["eval_name"], threads=torch.get_num_threads())
    return {"task": task, "config": config, "eval_steps": eval_steps, "runs": runs}


def _mean_std(xs: Sequence[float]) -> tuple[float, float]:
    xs = [float(x) for x in xs]
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def summarize(result: dict[str, Any], baseline: str = "SGD+momentum") -> list[dict[str, Any]]:
    """One row per optimizer: final eval loss and mean train loss over the last 10% of steps
    (mean and std over seeds), and median step / optimizer-step time relative to ``baseline``
    (ratios of times measured in the same run; a ratio is averaged over seeds)."""
    runs = result["runs"]
    base = runs.get(baseline)
    rows = []
    for name, per_seed in runs.items():
        tail = max(1, len(per_seed[0]["train_loss"]) // 10)
        ev_m, ev_s = _mean_std([r["eval_loss"][-1] for r in per_seed])
        tr_m, tr_s = _mean_std([statistics.fmean(r["train_loss"][-tail:]) for r in per_seed])
        row = {"optimizer": name, "eval_mean": ev_m, "eval_std": ev_s, "train_mean": tr_m,
               "train_std": tr_s, "seeds": len(per_seed)}
        if base is not None:
            row["step_time_ratio"] = statistics.fmean(
                r["step_time"] / b["step_time"] for r, b in zip(per_seed, base))
            row["opt_time_ratio"] = statistics.fmean(
                r["opt_time"] / b["opt_time"] for r, b in zip(per_seed, base))
        rows.append(row)
    return rows


def format_summary(result: dict[str, Any]) -> str:
    ev = result["config"]["eval_name"]
    lines = [f"{result['task']}: {result['config']['steps']} steps, seeds {result['config']['seeds']}",
             f"{'optimizer':<15}{'lr':>8}  {ev + ' loss':>17}  {'train loss (last 10%)':>22}"
             f"  {'step time / SGD':>15}  {'opt.step / SGD':>14}"]
    for row in summarize(result):
        lr = result["config"]["lrs"][row["optimizer"]]
        lines.append(f"{row['optimizer']:<15}{lr:>8.3g}  {row['eval_mean']:>9.4f} +- {row['eval_std']:.4f}"
                     f"  {row['train_mean']:>14.4f} +- {row['train_std']:.4f}"
                     f"  {row.get('step_time_ratio', float('nan')):>15.2f}"
                     f"  {row.get('opt_time_ratio', float('nan')):>14.2f}")
    return "\n".join(lines)


def draw_comparison(fig: Figure, results: Sequence[dict[str, Any]]) -> Figure:
    """One panel of eval-loss curves (mean and min..max band over seeds) per task, then a bar
    chart of step time relative to SGD+momentum for each task."""
    axes = fig.subplots(1, len(results) + 1)
    names: list[str] = []
    for ax, res in zip(axes, results):
        xs = res["eval_steps"]
        for i, (name, per_seed) in enumerate(res["runs"].items()):
            curves = np.array([r["eval_loss"] for r in per_seed])
            mean = curves.mean(0)
            ax.plot(xs, mean, color=f"C{i}", label=name)
            ax.fill_between(xs, curves.min(0), curves.max(0), color=f"C{i}", alpha=0.2)
            if name not in names:
                names.append(name)
        ax.set_xlabel("step")
        ax.set_ylabel(f"{res['config']['eval_name']} loss (nats)")
        ax.set_title(f"{res['task']} ({len(res['config']['seeds'])} seeds)")
    axes[0].legend(fontsize=7)
    ax = axes[-1]
    width = 0.8 / max(1, len(results))
    for j, res in enumerate(results):
        rows = {r["optimizer"]: r for r in summarize(res)}
        vals = [rows[n].get("step_time_ratio", np.nan) if n in rows else np.nan for n in names]
        ax.bar(np.arange(len(names)) + j * width, vals, width=width, label=res["task"])
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(np.arange(len(names)) + width * (len(results) - 1) / 2)
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("time per step / SGD+momentum")
    ax.set_title("time per training step")
    ax.legend(fontsize=7)
    return fig


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m nlteach.experiments.optimizers [--preset P] [--out DIR]``: run notebook 06's comparison
    at a preset and print the summaries (``DIR/optim_comparison.json`` holds every curve)."""
    import argparse
    import json
    from pathlib import Path

    from nlteach.config import get_preset

    ap = argparse.ArgumentParser(prog="python -m nlteach.experiments.optimizers", description=main.__doc__)
    ap.add_argument("--preset", choices=["tiny", "laptop", "full"], default=None)
    ap.add_argument("--device", default=None)
    ap.add_argument("--tasks", nargs="*", default=["digits", "shakespeare"])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    preset = get_preset(args.preset)
    results = []
    for task in args.tasks:
        t0 = time.perf_counter()
        res = compare_optimizers(task, device=args.device, progress=True,
                                 **comparison_sizes(task, preset))
        res["config"]["preset"] = preset
        res["config"]["wall_seconds"] = time.perf_counter() - t0
        results.append(res)
        print(format_summary(res))
        print(f"({res['config']['wall_seconds']:.0f} s, torch threads={torch.get_num_threads()})")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "optim_comparison.json").write_text(json.dumps(results))
        print(f"wrote {args.out / 'optim_comparison.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
