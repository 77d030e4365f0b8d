"""Run learners on task streams: presets, the training loop, resumable results on disk.

``run(cfg, out)`` trains ``cfg.method`` on ``cfg.dataset`` once per seed and writes, in ``out``:

- ``results.json``: ``config`` (every setting), ``per_seed`` (a list of
  ``{"seed": int, "acc_matrix": [[...]]}``, ``acc_matrix[i][j]`` = accuracy on task j after
  learning task i, every entry filled) and ``summary`` (``avg_acc`` = final average accuracy,
  ``bwt``, ``forgetting``, each ``{"mean", "std"}`` over seeds, std with ddof=1);
- ``acc_matrix.png`` (mean accuracy matrix over seeds) and ``avg_acc.png`` (average accuracy vs
  tasks seen, mean and spread);
- ``seeds/seed_<s>.json`` for every finished seed and, while a seed runs, ``seeds/seed_<s>.pt``,
  a checkpoint written atomically after every task.

**Resuming.** Running the same command again skips finished seeds (their ``seed_<s>.json``) and
continues an interrupted seed from its last finished task; the result equals an uninterrupted
run (on CPU bit for bit): initial weights, class order and every batch are functions of
``(seed, task)``, and the checkpoint holds the learner's full state (weights, optimizer
including the multi-frequency accumulators, EWC's Fisher, the replay buffer).
A different configuration in an existing ``out`` is refused.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nlteach.config import by_preset, get_device, get_preset
from nlteach.continual import metrics
from nlteach.continual.learners import LEARNERS, LearnerConfig, available_learners, make_learner
from nlteach.continual.streams import DEFAULT_TASKS, STREAMS, Stream, first_tasks, make_stream, take
from nlteach.runs.io import atomic_save, atomic_write_text, load_checkpoint
from nlteach.runs.rundir import RunDir
from nlteach.runs.threads import torch_threads  # noqa: F401 (re-exported)

CHECKPOINT_VERSION = 1


# Hyper-parameters tuned on the validation split (python -m nlteach.continual.tune, laptop preset,
# seeds 0 1; the raw records are in results/continual_tuning_laptop/tuning.json, merged here by
# tune.merge_records). dataset -> param -> record. Used by the laptop and full presets; the tiny
# preset (CI) keeps LearnerConfig's defaults.
TUNING: dict[str, dict[str, dict[str, Any]]] = {'split-digits': {'ewc_lambda': {'method': 'ewc',
                                 'grid': [1.0,
                                          10.0,
                                          100.0,
                                          1000.0,
                                          10000.0,
                                          100000.0,
                                          1000000.0,
                                          10000000.0,
                                          100000000.0,
                                          1000000000.0,
                                          10000000000.0],
                                 'val_avg_acc': [0.1759,
                                                 0.1722,
                                                 0.1815,
                                                 0.187,
                                                 0.2224,
                                                 0.2988,
                                                 0.3422,
                                                 0.3673,
                                                 0.4268,
                                                 0.438,
                                                 0.3547],
                                 'val_bwt': [-0.9954,
                                             -0.9954,
                                             -0.9954,
                                             -0.9931,
                                             -0.9441,
                                             -0.7491,
                                             -0.5235,
                                             -0.39,
                                             -0.3099,
                                             -0.3656,
                                             -0.3263],
                                 'chosen': 1000000000.0,
                                 'seeds': [0, 1],
                                 'preset': 'laptop',
                                 'split': 'val',
                                 'criterion': 'final average accuracy on the validation split, mean over '
                                              'seeds'},
                  'lwf_temperature': {'method': 'lwf',
                                      'grid': [1.0, 2.0, 4.0],
                                      'val_avg_acc': [0.187, 0.1907, 0.1889],
                                      'val_bwt': [-0.9907, -0.9861, -0.9861],
                                      'chosen': 2.0,
                                      'seeds': [0, 1],
                                      'preset': 'laptop',
                                      'split': 'val',
                                      'criterion': 'final average accuracy on the validation split, mean '
                                                   'over seeds'}},
 'permuted-digits': {'ewc_lambda': {'method': 'ewc',
                                    'grid': [1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0, 1000000.0],
                                    'val_avg_acc': [0.3494, 0.3725, 0.461, 0.6052, 0.49, 0.3807, 0.3271],
                                    'val_bwt': [-0.7681, -0.737, -0.5897, -0.2649, -0.02, -0.0005, 0.0005],
                                    'chosen': 1000.0,
                                    'seeds': [0, 1],
                                    'preset': 'laptop',
                                    'split': 'val',
                                    'criterion': 'final average accuracy on the validation split, mean over '
                                                 'seeds'},
                     'lwf_temperature': {'method': 'lwf',
                                         'grid': [1.0, 2.0, 4.0],
                                         'val_avg_acc': [0.3662, 0.3565, 0.3721],
                                         'val_bwt': [-0.6245, -0.618, -0.6296],
                                         'chosen': 4.0,
                                         'seeds': [0, 1],
                                         'preset': 'laptop',
                                         'split': 'val',
                                         'criterion': 'final average accuracy on the validation split, mean '
                                                      'over seeds'}},
 'banking77': {'ewc_lambda': {'method': 'ewc',
                              'grid': [1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0, 1000000.0],
                              'val_avg_acc': [0.1236, 0.1302, 0.1544, 0.1569, 0.189, 0.1795, 0.1768],
                              'val_bwt': [-0.8399, -0.8352, -0.8083, -0.7298, -0.5414, -0.4617, -0.4381],
                              'chosen': 10000.0,
                              'seeds': [0, 1],
                              'preset': 'laptop',
                              'split': 'val',
                              'criterion': 'final average accuracy on the validation split, mean over seeds'},
               'lwf_temperature': {'method': 'lwf',
                                   'grid': [1.0, 2.0, 4.0],
                                   'val_avg_acc': [0.1488, 0.1562, 0.149],
                                   'val_bwt': [-0.8273, -0.8193, -0.8275],
                                   'chosen': 2.0,
                                   'seeds': [0, 1],
                                   'preset': 'laptop',
                                   'split': 'val',
                                   'criterion': 'final average accuracy on the validation split, mean over '
                                                'seeds'}},
 'clinc150': {'ewc_lambda': {'method': 'ewc',
                             'grid': [1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0, 1000000.0],
                             'val_avg_acc': [0.059, 0.0643, 0.0843, 0.1465, 0.1773, 0.1707, 0.1687],
                             'val_bwt': [-0.8834, -0.8834, -0.8541, -0.6968, -0.4545, -0.3657, -0.3355],
                             'chosen': 10000.0,
                             'seeds': [0, 1],
                             'preset': 'laptop',
                             'split': 'val',
                             'criterion': 'final average accuracy on the validation split, mean over seeds'},
              'lwf_temperature': {'method': 'lwf',
                                  'grid': [1.0, 2.0, 4.0],
                                  'val_avg_acc': [0.0757, 0.0727, 0.064],
                                  'val_bwt': [-0.8627, -0.8618, -0.8761],
                                  'chosen': 1.0,
                                  'seeds': [0, 1],
                                  'preset': 'laptop',
                                  'split': 'val',
                                  'criterion': 'final average accuracy on the validation split, mean over '
                                               'seeds'}}}


@dataclass(frozen=True)
class ContinualConfig:
    dataset: str = "split-digits"
    method: str = "finetune"
    preset: str = "laptop"
    seeds: tuple[int, ...] = (0, 1, 2)
    n_tasks: int = 5
    epochs: int = 3  # passes over each task's training data (joint: the same number of steps)
    batch_size: int = 32
    max_train_per_class: int | None = None  # None: the whole official train split
    max_test_per_class: int | None = None
    n_buckets: int = 8192  # text only: hashed n-gram buckets
    max_len: int = 64  # text read as a sequence (the hope learner): at most this many bytes per query
    split: str = "test"  # evaluate on "test" (results) or "val" (tuning; streams.make_stream)
    learner: LearnerConfig = LearnerConfig()
    tuning: dict | None = None  # where tuned settings came from: grids and validation scores (TUNING)

    def __post_init__(self) -> None:
        if self.dataset not in STREAMS:
            raise ValueError(f"dataset must be one of {STREAMS}, got {self.dataset!r}.")
        if self.method not in available_learners():
            raise ValueError(f"method must be one of {available_learners()}, got {self.method!r}.")
        for name in ("n_tasks", "epochs", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}.")
        if not self.seeds or any(not isinstance(s, int) or s < 0 for s in self.seeds):
            raise ValueError(f"seeds must be non-negative ints, got {self.seeds!r}.")
        if self.split not in ("test", "val"):
            raise ValueError(f"split must be 'test' or 'val', got {self.split!r}.")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["seeds"] = list(self.seeds)
        d["learner"]["periods"] = list(self.learner.periods)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ContinualConfig:
        d = dict(d)
        lc = dict(d.pop("learner"))
        lc["periods"] = tuple(lc["periods"])
        d["seeds"] = tuple(d["seeds"])
        return cls(**d, learner=LearnerConfig(**lc))


def preset_config(dataset: str, method: str = "finetune", preset: str | None = None,
                  seeds: tuple[int, ...] = (0, 1, 2), **overrides: Any) -> ContinualConfig:
    """The settings of ``preset`` (default: the active one) for ``dataset``; ``overrides`` replace
    top-level fields, or :class:`LearnerConfig` fields (``lr=...``, ``periods=...``)."""
    preset = get_preset(preset)
    text = dataset in ("clinc150", "banking77")

    def pick(**kw: Any) -> Any:
        return by_preset(preset=preset, **kw)

    top = {
        "dataset": dataset, "method": method, "preset": preset, "seeds": tuple(seeds),
        "n_tasks": DEFAULT_TASKS[dataset] if dataset in DEFAULT_TASKS else 5,
        "epochs": pick(tiny=4 if text else 8, laptop=2 if text else 5, full=10 if text else 20),
        "batch_size": 32,
        "max_train_per_class": pick(tiny=12 if text else 20, laptop=None, full=None),
        "max_test_per_class": pick(tiny=6 if text else 10, laptop=None, full=None),
        "n_buckets": pick(tiny=2048, laptop=4096, full=32768),
        "max_len": pick(tiny=32, laptop=48, full=128),
        "split": "test",
        "tuning": TUNING.get(dataset),
    }
    lc = {
        "dim": pick(tiny=32, laptop=64, full=256),
        "hidden": pick(tiny=32, laptop=128, full=512),
        "periods": pick(tiny=(1, 2, 4, 8), laptop=(1, 4, 16, 64), full=(1, 4, 16, 64)),
        "fisher_samples": pick(tiny=16, laptop=100, full=1000),
        "replay_size": {"clinc150": 300, "banking77": 154}.get(dataset, 50),
        "hope_chunk_size": pick(tiny=16, laptop=24, full=32),
    }
    tuning = TUNING.get(dataset) if preset != "tiny" else None  # tuned at laptop; tiny (CI) keeps the defaults
    top["tuning"] = tuning
    for param, rec in (tuning or {}).items():  # values chosen on the validation split
        lc[param] = rec["chosen"]
    learner_fields = {f.name for f in fields(LearnerConfig)}
    for k, v in overrides.items():
        if k in learner_fields:
            lc[k] = tuple(v) if k == "periods" else v
        elif k in top:
            top[k] = tuple(v) if k == "seeds" else v
        else:
            raise ValueError(f"unknown setting {k!r}; known: {sorted(top)} and {sorted(learner_fields)}.")
    return ContinualConfig(**top, learner=LearnerConfig(**lc))


def build_stream(cfg: ContinualConfig, seed: int) -> Stream:
    return make_stream(cfg.dataset, seed, n_tasks=cfg.n_tasks, n_buckets=cfg.n_buckets,
                       max_train_per_class=cfg.max_train_per_class, max_test_per_class=cfg.max_test_per_class,
                       split=cfg.split, text_features=LEARNERS[cfg.method].text_features, max_len=cfg.max_len)


def _task_generator(seed: int, t: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, t, 31337]).generate_state(1)[0]))


@torch.no_grad()
def evaluate(learner: Any, stream: Stream, t: int, batch: int = 1024) -> list[float]:
    """Row t of the accuracy matrix: accuracy on every task's test set, argmax over seen classes."""
    mask = stream.seen_mask(t)
    row = []
    for j, task in enumerate(stream.tasks):
        if stream.scenario == "class" and j > t:  # none of its classes can be predicted yet: exactly 0
            row.append(0.0)
            continue
        correct = 0
        n = len(task.y_test)
        for a in range(0, n, batch):
            logits = learner.logits(take(task.x_test, slice(a, a + batch)))
            pred = logits.masked_fill(~mask.to(logits.device), float("-inf")).argmax(-1)
            correct += int((pred == task.y_test[a:a + batch]).sum())
        row.append(correct / n)
    return row


def train_task(learner: Any, stream: Stream, t: int, cfg: ContinualConfig, seed: int) -> float:
    """Learn task t: ``epochs * ceil(n_t / batch_size)`` steps, batches from ``learner.training_data(t)``."""
    g = _task_generator(seed, t)
    learner.begin_task(t)
    x, y = learner.training_data(t)
    N = len(y)
    B = min(cfg.batch_size, N)
    steps = cfg.epochs * math.ceil(len(stream.tasks[t].y_train) / B)
    perm, pos, loss = None, N, float("nan")
    for _ in range(steps):
        if pos + B > N:  # a new pass over the data in a fresh order (the last partial batch is dropped)
            perm, pos = torch.randperm(N, generator=g).to(y.device), 0
        idx = perm[pos:pos + B]
        pos += B
        loss = learner.train_step(take(x, idx), y[idx], t, g)
    learner.end_task(t, g)
    return loss


class _Interrupted(KeyboardInterrupt):
    """Raised by the test hook ``_stop_after_task`` to simulate a Ctrl-C after a task."""


def run_seed(cfg: ContinualConfig, seed: int, *, device: torch.device | str | None = None,
             checkpoint: Path | None = None, bar: Any = None, _stop_after_task: int | None = None
             ) -> list[list[float]]:
    """One seed: returns the accuracy matrix (resuming from ``checkpoint`` if it exists)."""
    device = get_device(device)
    stream = build_stream(cfg, seed).to(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # initial weights: the same for every learner with this seed
        learner = make_learner(cfg.method, stream, cfg.learner)
    learner.to(device)
    rows: list[list[float]] = []
    if checkpoint is not None and checkpoint.exists():
        state = load_checkpoint(checkpoint)
        if state.get("version") != CHECKPOINT_VERSION or state["config"] != cfg.to_dict() | {"seeds": state["config"]["seeds"]}:
            raise ValueError(f"{checkpoint} was written by another version or configuration; delete it to start "
                             "this seed again.")
        learner.load_state_dict(state["learner"])
        rows = state["rows"]
        if bar is not None:
            bar.update(len(rows))
    for t in range(len(rows), stream.n_tasks):
        loss = train_task(learner, stream, t, cfg, seed)
        rows.append(evaluate(learner, stream, t))
        if checkpoint is not None:
            atomic_save({"version": CHECKPOINT_VERSION, "config": cfg.to_dict(), "seed": seed, "rows": rows,
                         "learner": learner.state_dict()}, checkpoint)
        if bar is not None:
            bar.set_postfix(seed=seed, task=t, loss=f"{loss:.3f}", acc=f"{np.mean(rows[-1][:t + 1]):.3f}")
            bar.update(1)
        if _stop_after_task is not None and t == _stop_after_task:
            raise _Interrupted(f"stopped after task {t} (test hook)")
    return rows


def trace_tasks(cfg: ContinualConfig, seed: int, *, n_tasks: int | None = None, eval_every: int = 5,
                device: torch.device | str | None = None, threads: int | None = 1) -> dict[str, Any]:
    """Learn the first ``n_tasks`` tasks of ``cfg``'s stream with ``cfg.method``, measuring the test
    accuracy on every one of them every ``eval_every`` steps (the A -> B -> C story of notebook 10).

    Returns ``{"steps": [...], "acc": [n_evals][n_tasks], "task_ends": [step after each task],
    "classes": [classes of each task], "acc_matrix": R}``. Accuracy uses the same protocol as
    :func:`evaluate` (argmax over the classes seen so far).
    """
    with torch_threads(threads):
        device = get_device(device)
        stream = build_stream(cfg, seed)
        stream = first_tasks(stream, n_tasks or stream.n_tasks).to(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            learner = make_learner(cfg.method, stream, cfg.learner)
        learner.to(device)
        steps, acc, ends, rows = [], [], [], []
        count = 0
        for t in range(stream.n_tasks):
            g = _task_generator(seed, t)
            learner.begin_task(t)
            x, y = learner.training_data(t)
            N = len(y)
            B = min(cfg.batch_size, N)
            perm, pos = None, N
            for _ in range(cfg.epochs * math.ceil(len(stream.tasks[t].y_train) / B)):
                if pos + B > N:
                    perm, pos = torch.randperm(N, generator=g).to(y.device), 0
                idx = perm[pos:pos + B]
                pos += B
                learner.train_step(take(x, idx), y[idx], t, g)
                count += 1
                if count % eval_every == 0:
                    steps.append(count)
                    acc.append(evaluate(learner, stream, t))
            learner.end_task(t, g)
            ends.append(count)
            rows.append(evaluate(learner, stream, t))
        return {"steps": steps, "acc": acc, "task_ends": ends, "acc_matrix": rows,
                "classes": [list(k.classes) for k in stream.tasks]}


def run(cfg: ContinualConfig, out: str | Path | None = None, *, device: torch.device | str | None = None,
        progress: bool = False, figures: bool = True, threads: int | None = 1,
        _stop_after_task: int | None = None) -> dict[str, Any]:
    """Every seed of ``cfg``; returns the results.json dict (and writes it, with figures, to ``out``).

    With ``out=None`` nothing is written (notebooks); otherwise the run is resumable (module docstring).
    ``threads``: CPU threads for torch during the run. The default 1 is deliberate: these models
    are small (batches of 32, widths of 64-512), so extra threads mostly add synchronization; on a
    busy 2-core machine one thread measured about 30x faster per step than two. ``None`` leaves
    torch's setting alone.
    """
    with torch_threads(threads):
        return _run(cfg, out, device=device, progress=progress, figures=figures, _stop_after_task=_stop_after_task)


def _run(cfg: ContinualConfig, out: str | Path | None, *, device: torch.device | str | None, progress: bool,
         figures: bool, _stop_after_task: int | None) -> dict[str, Any]:
    out_dir = Path(out) if out is not None else None
    done: dict[int, list[list[float]]] = {}
    if out_dir is not None:
        done = {s: rec["acc_matrix"] for s, rec in RunDir(out_dir, cfg.to_dict()).finished(cfg.seeds).items()}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        total = len(cfg.seeds) * cfg.n_tasks
        bar = tqdm(total=total, initial=len(done) * cfg.n_tasks, desc=f"{cfg.dataset}/{cfg.method}",
                   dynamic_ncols=True)
    try:
        for s in cfg.seeds:
            if s in done:
                continue
            t0, c0 = time.perf_counter(), time.process_time()
            ckpt = out_dir / "seeds" / f"seed_{s}.pt" if out_dir is not None else None
            done[s] = run_seed(cfg, s, device=device, checkpoint=ckpt, bar=bar, _stop_after_task=_stop_after_task)
            if out_dir is not None:  # times of this call (a resumed seed: only the part after the resume)
                atomic_write_text(out_dir / "seeds" / f"seed_{s}.json",
                                   json.dumps({"seed": s, "acc_matrix": done[s],
                                               "seconds": time.perf_counter() - t0,
                                               "cpu_seconds": time.process_time() - c0}))
                ckpt.unlink(missing_ok=True)
    finally:
        if bar is not None:
            bar.close()
    results = {
        "config": cfg.to_dict(),
        "per_seed": [{"seed": s, "acc_matrix": done[s]} for s in cfg.seeds],
        "summary": metrics.summarize([done[s] for s in cfg.seeds]),
    }
    if out_dir is not None:
        atomic_write_text(out_dir / "results.json", json.dumps(results, indent=1))
        if figures:
            save_figures(results, out_dir)
    return results


def save_figures(results: dict[str, Any], out_dir: Path) -> None:
    from matplotlib.figure import Figure

    from nlteach.continual.plots import draw_acc_matrix, draw_avg_acc

    fig = Figure(figsize=(5.5, 4.5), layout="constrained")
    draw_acc_matrix(fig, results)
    fig.savefig(out_dir / "acc_matrix.png", dpi=110)
    fig = Figure(figsize=(5.5, 3.5), layout="constrained")
    draw_avg_acc(fig, {results["config"]["method"]: results})
    fig.savefig(out_dir / "avg_acc.png", dpi=110)


def run_methods(dataset: str, methods: list[str], *, preset: str | None = None, seeds: tuple[int, ...] = (0, 1, 2),
                out: str | Path | None = None, device: torch.device | str | None = None, progress: bool = False,
                threads: int | None = 1, **overrides: Any) -> dict[str, dict[str, Any]]:
    """:func:`run` for several methods with the preset's settings; ``out/<method>/`` each when ``out`` is given."""
    res = {}
    for m in methods:
        cfg = preset_config(dataset, m, preset, seeds=seeds, **overrides)
        res[m] = run(cfg, None if out is None else Path(out) / m, device=device, progress=progress, threads=threads)
    return res


def format_table(results_by_method: dict[str, dict[str, Any]]) -> str:
    """A plain-text table: final average accuracy, BWT, forgetting and learning accuracy (the mean
    accuracy on each task right after learning it), mean +- std over seeds."""
    lines = [f"{'method':10s} {'avg acc':>15s} {'BWT':>16s} {'forgetting':>15s} {'learning acc':>15s}  seeds"]
    for m, r in results_by_method.items():
        s = r["summary"]
        avg, bwt, fgt = (f"{s[k]['mean']:{'+' if k == 'bwt' else ''}.3f} ± {s[k]['std']:.3f}"
                         for k in ("avg_acc", "bwt", "forgetting"))
        la = metrics.mean_std([metrics.learning_accuracy(p["acc_matrix"]) for p in r["per_seed"]])
        la_s = f"{la['mean']:.3f} ± {la['std']:.3f}"
        seeds = ",".join(str(p["seed"]) for p in r["per_seed"])
        lines.append(f"{m:10s} {avg:>15s} {bwt:>16s} {fgt:>15s} {la_s:>15s}  {seeds}")
    return "\n".join(lines)


RESULTS_ROOT = Path(__file__).resolve().parents[2] / "results"  # the repository's committed results


def load_committed(dataset: str, preset: str = "laptop", root: str | Path | None = None
                   ) -> dict[str, dict[str, Any]] | None:
    """The committed runs ``results/continual_<dataset>_<preset>/<method>/results.json`` as
    ``{method: results}`` (learner order), each with ``"cpu_seconds"`` added: the CPU seconds of
    its seeds (from ``seeds/seed_<s>.json``; None where not recorded). None if the folder is missing
    (e.g. a pip install without the repository)."""
    folder = Path(RESULTS_ROOT if root is None else root) / f"continual_{dataset}_{preset}"
    out = {}
    for m in available_learners():
        f = folder / m / "results.json"
        if f.exists():
            res = load_results(f)
            cpu = []
            for p in res["per_seed"]:
                sf = folder / m / "seeds" / f"seed_{p['seed']}.json"
                cpu.append(json.loads(sf.read_text()).get("cpu_seconds") if sf.exists() else None)
            out[m] = res | {"cpu_seconds": cpu}
    return out or None


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a ``results.json`` (or the folder holding it)."""
    p = Path(path)
    return json.loads((p / "results.json" if p.is_dir() else p).read_text())


def with_seeds(cfg: ContinualConfig, seeds: tuple[int, ...]) -> ContinualConfig:
    return replace(cfg, seeds=tuple(seeds))


def comparison_rows(results_by_dataset: dict[str, dict[str, dict[str, Any]]],
                    params_by_dataset: dict[str, dict[str, dict[str, int]]] | None = None) -> list[dict[str, Any]]:
    """One row per (dataset, method): final average accuracy, BWT, forgetting and learning
    accuracy (each ``{"mean", "std"}`` over seeds), the gaps of the means to ``finetune``, the
    CPU seconds per seed (mean; None if not recorded) and the parameter count (if given)."""
    rows = []
    for d, res in results_by_dataset.items():
        base = res.get("finetune")
        for m, r in res.items():
            s = r["summary"]
            la = metrics.mean_std([metrics.learning_accuracy(p["acc_matrix"]) for p in r["per_seed"]])
            cpu = [c for c in r.get("cpu_seconds") or [] if c is not None]
            row = {"dataset": d, "method": m, "seeds": [p["seed"] for p in r["per_seed"]],
                   "avg_acc": s["avg_acc"], "bwt": s["bwt"], "forgetting": s["forgetting"], "learning_acc": la,
                   "cpu_seconds": float(np.mean(cpu)) if cpu else None,
                   "params": (params_by_dataset or {}).get(d, {}).get(m, {}).get("total")}
            if base is not None:
                row["d_avg_acc"] = s["avg_acc"]["mean"] - base["summary"]["avg_acc"]["mean"]
                row["d_bwt"] = s["bwt"]["mean"] - base["summary"]["bwt"]["mean"]
            rows.append(row)
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """:func:`comparison_rows` as a markdown table (mean ± std over seeds)."""
    def ms(v: dict[str, float], sign: str = "") -> str:
        return f"{v['mean']:{sign}.3f} ± {v['std']:.3f}"

    out = ["| stream | learner | final avg acc | BWT | forgetting | learning acc | Δ avg acc | Δ BWT | params | CPU s / seed |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        gap = (f"{r['d_avg_acc']:+.3f} | {r['d_bwt']:+.3f}") if "d_avg_acc" in r else "| "
        out.append(f"| {r['dataset']} | {r['method']} | {ms(r['avg_acc'])} | {ms(r['bwt'], '+')} | "
                   f"{ms(r['forgetting'])} | {ms(r['learning_acc'])} | {gap} | "
                   f"{'' if r['params'] is None else format(r['params'], ',')} | "
                   f"{'' if r['cpu_seconds'] is None else format(r['cpu_seconds'], '.0f')} |")
    return "\n".join(out)
