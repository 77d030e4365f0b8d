"""Run learners on task streams: presets, the training loop, resumable results on disk.

``run(cfg, out)`` trains ``cfg.method`` on ``cfg.dataset`` once per seed and writes, in ``out`` (a
:class:`nlteach.runs.rundir.RunDir`):

- ``results.json``: ``config`` (every setting), ``per_seed`` (a list of
  ``{"seed": int, "acc_matrix": [[...]], "acc_matrix_task": [[...]]}``, ``acc_matrix[i][j]`` =
  accuracy on task j after learning task i, every entry filled; ``acc_matrix_task`` the same with
  the task given at test time, :func:`evaluate_rows`), ``summary`` (``avg_acc`` = final average
  accuracy, ``bwt``, ``forgetting``, ``learning_acc`` and the same four of the task-incremental
  matrices, ``task_avg_acc`` ..., each :func:`nlteach.runs.stats.summarize` over seeds: mean, std
  (ddof=1; NaN for one seed), n, ci95, dropped) and ``provenance`` (commit, dirty files, command,
  device of the run that wrote the file). Files written before the task-incremental evaluation
  lack ``acc_matrix_task`` and the ``task_`` measures: :func:`measure_summary` reads both kinds;
- ``acc_matrix.png`` (mean accuracy matrix over seeds) and ``avg_acc.png`` (average accuracy vs
  tasks seen, mean and spread);
- ``config.json``, ``seeds/seed_<s>.json`` for every finished seed (with its CPU seconds and
  provenance) and, while a seed runs, ``seeds/seed_<s>.pt``, a checkpoint written atomically after
  every task.

**Resuming.** Running the same command again skips finished seeds and continues an interrupted
seed from its last finished task; the result equals an uninterrupted run (on CPU bit for bit):
initial weights, class order and every batch are functions of ``(seed, task)``, and the checkpoint
holds the learner's full state (weights, optimizer including the multi-frequency accumulators,
EWC's Fisher, the replay buffer). Other settings in an existing ``out`` are refused with an error
naming each one (the project's one policy, :mod:`nlteach.runs.rundir`); ``overwrite=True``
(``--overwrite``) starts over.

**Tuning.** Every learner's own knobs are chosen on validation splits with the same budget
(:mod:`nlteach.continual.tune`); the records live in ``tuning.json`` beside this module
(:data:`TUNING_FILE`, read into :data:`TUNING`), which the laptop and full presets read: a
method's chosen point applies to that method only, and its results.json records the method's
record under ``config["tuning"]`` (None: not tuned yet, the defaults).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from nlteach.config import by_preset, get_device, get_preset
from nlteach.continual import metrics
from nlteach.continual.learners import LEARNERS, LearnerConfig, available_learners, make_learner
from nlteach.continual.plots import draw_acc_matrix, draw_avg_acc
from nlteach.continual.streams import DEFAULT_TASKS, STREAMS, Stream, first_tasks, make_stream, take
from nlteach.runs import RESULTS_ROOT
from nlteach.runs.io import read_json
from nlteach.runs.rundir import run_folder
from nlteach.runs.seeds import (
    flat_settings,
    load_results,
    load_seed_checkpoint,
    run_seeds,
    save_seed_checkpoint,
)
from nlteach.runs.stats import summarize as summarize_values
from nlteach.runs.tables import markdown_table, pm_summary, text_table
from nlteach.runs.threads import torch_threads

CHECKPOINT_VERSION = 3  # 2: the run's settings stored flat, under "settings"; 3: task-incremental rows

TUNING_FILE: Path = Path(__file__).with_name("tuning.json")
"""Hyper-parameters tuned on the validation split (``python -m nlteach.continual.tune``, laptop
preset, seeds 0 1; the raw records are in ``results/continual_tuning_laptop/tuning.json``, merged
by :func:`nlteach.continual.tune.merge_records`): ``{dataset: {method: record}}``. Shipped with the
package."""

TUNING: dict[str, dict[str, dict[str, Any]]] = read_json(TUNING_FILE)
"""The contents of :data:`TUNING_FILE`. Used by the laptop and full presets; the tiny preset (CI)
keeps :class:`LearnerConfig`'s defaults."""


def normalize_record(raw: dict[str, Any], *, dataset: str | None = None, param: str | None = None) -> dict[str, Any]:
    """A tuning record in the layout of :mod:`nlteach.continual.tune` (``axes``, ``points``, scores
    per point, ``chosen`` a point ``{param: value}``). A record of the first tuning runs (one
    parameter: ``param``, ``grid``, ``chosen`` a value) becomes the one-axis record of the same
    numbers; ``dataset`` and ``param`` fill in what a record stored inside a tuning file leaves to its keys."""
    if not isinstance(raw, dict):
        raise ValueError(f"a tuning record must be a dict, got {type(raw).__name__}.")
    rec = dict(raw)
    if dataset is not None:
        rec.setdefault("dataset", dataset)
    if "axes" in rec:
        rec.setdefault("val_learning_acc", [None] * len(rec["points"]))
        return rec
    param = rec.pop("param", param)
    missing = [k for k in ("method", "grid", "val_avg_acc", "val_bwt") if k not in rec] + (
        ["param"] if param is None else [])
    if missing:
        raise ValueError(f"a tuning record lacks {missing}; it has {sorted(raw)}.")
    grid = rec.pop("grid")
    return {**rec, "axes": {param: list(grid)}, "points": [{param: g} for g in grid],
            "val_learning_acc": [None] * len(grid), "chosen": {param: rec["chosen"]} if "chosen" in rec else None,
            "budget": rec.get("budget")}


def method_tuning(tuning: dict[str, dict[str, dict[str, Any]]], dataset: str, method: str) -> dict[str, Any] | None:
    """``method``'s tuning record on ``dataset`` in a tuning file's contents (either layout,
    :func:`normalize_record`), or None when that method was not tuned there. A file of the first
    layout may hold several one-parameter records of one method: they are combined (the union of
    their axes is not a grid that ran, so only one such record per method is accepted)."""
    recs = tuning.get(dataset) or {}
    if method in recs and "axes" in recs[method]:
        return normalize_record(recs[method], dataset=dataset)
    legacy = [normalize_record(r, dataset=dataset, param=k) for k, r in recs.items()
              if "axes" not in r and r.get("method") == method]
    if len(legacy) > 1:
        raise ValueError(f"the tuning of {dataset}/{method} holds {len(legacy)} one-parameter records; expected one.")
    return legacy[0] if legacy else None


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
    tuning: dict | None = None  # this method's tuning record: grid and validation scores (TUNING); None: defaults

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

    def settings(self) -> dict[str, Any]:
        """The settings a run folder and a checkpoint compare: :meth:`to_dict` with dotted names
        (``learner.lr``) and without the seeds."""
        return {k: v for k, v in flat_settings(self.to_dict()).items() if k != "seeds"}

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
    }
    lc = {
        "dim": pick(tiny=32, laptop=64, full=256),
        "hidden": pick(tiny=32, laptop=128, full=512),
        "periods": pick(tiny=(1, 2, 4, 8), laptop=(1, 4, 16, 64), full=(1, 4, 16, 64)),
        "fisher_samples": pick(tiny=16, laptop=100, full=1000),
        "replay_size": {"clinc150": 300, "banking77": 154}.get(dataset, 50),
        "hope_chunk_size": pick(tiny=16, laptop=24, full=32),
    }
    if "tuning" in overrides:  # a record given (or None: the tuning runs themselves)
        tuning = overrides.pop("tuning")
    else:  # tuned at laptop; tiny (CI) keeps the defaults
        tuning = method_tuning(TUNING, dataset, method) if preset != "tiny" else None
    top["tuning"] = tuning
    for param, v in ((tuning or {}).get("chosen") or {}).items():  # the point chosen on the validation split
        lc[param] = tuple(v) if param == "periods" else v
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
def evaluate_rows(learner: Any, stream: Stream, t: int, batch: int = 1024) -> tuple[list[float], list[float]]:
    """Rows t of both accuracy matrices after learning tasks 0..t, from one pass over the test sets:
    ``(class_row, task_row)``. Class-incremental (the results' ``acc_matrix``): the argmax over
    every class seen so far. Task-incremental (``acc_matrix_task``): the argmax over the evaluated
    task's own classes, i.e. the task label is given at test time and the shared head's bias
    towards the newest classes cannot hurt (``docs/decisions.md#continual-task-il``). In
    class-incremental streams the entries of tasks not learned yet (j > t) are 0 in both: none of
    their classes was ever trained (class row: they cannot be predicted; task row: 0 by convention,
    not evaluated). In domain-incremental streams every task has every class, so the two rows are equal."""
    mask = stream.seen_mask(t)
    row, task_row = [], []
    for j, task in enumerate(stream.tasks):
        if stream.scenario == "class" and j > t:
            row.append(0.0)
            task_row.append(0.0)
            continue
        own = torch.zeros_like(mask)
        own[list(task.classes)] = True
        correct = correct_task = 0
        n = len(task.y_test)
        for a in range(0, n, batch):
            logits = learner.logits(take(task.x_test, slice(a, a + batch)))
            y = task.y_test[a:a + batch]
            correct += int((logits.masked_fill(~mask.to(logits.device), float("-inf")).argmax(-1) == y).sum())
            correct_task += int((logits.masked_fill(~own.to(logits.device), float("-inf")).argmax(-1) == y).sum())
        row.append(correct / n)
        task_row.append(correct_task / n)
    return row, task_row


def evaluate(learner: Any, stream: Stream, t: int, batch: int = 1024) -> list[float]:
    """Row t of the (class-incremental) accuracy matrix: accuracy on every task's test set, argmax
    over seen classes (:func:`evaluate_rows`)."""
    return evaluate_rows(learner, stream, t, batch)[0]


def train_task(learner: Any, stream: Stream, t: int, cfg: ContinualConfig, seed: int,
               on_step: Any = None) -> float:
    """Learn task t: ``epochs * ceil(n_t / batch_size)`` steps, batches from ``learner.training_data(t)``;
    ``on_step()`` (if given) is called after each step. Returns the last step's loss."""
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
        if on_step is not None:
            on_step()
    learner.end_task(t, g)
    return loss


class _Interrupted(KeyboardInterrupt):
    """Raised by the test hook ``_stop_after_task`` to simulate a Ctrl-C after a task."""


def _learner(cfg: ContinualConfig, stream: Stream, seed: int, device: torch.device) -> Any:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # initial weights: the same for every learner with this seed
        learner = make_learner(cfg.method, stream, cfg.learner)
    return learner.to(device)


def run_seed(cfg: ContinualConfig, seed: int, *, device: torch.device | str | None = None,
             checkpoint: Path | None = None, bar: Any = None, _stop_after_task: int | None = None
             ) -> dict[str, list[list[float]]]:
    """One seed: returns ``{"acc_matrix": R, "acc_matrix_task": R_task}``, the class- and
    task-incremental accuracy matrices (:func:`evaluate_rows`), resuming from ``checkpoint`` if it exists."""
    device = get_device(device)
    stream = build_stream(cfg, seed).to(device)
    learner = _learner(cfg, stream, seed, device)
    rows: list[list[float]] = []
    task_rows: list[list[float]] = []
    state = load_seed_checkpoint(checkpoint, cfg.settings(), version=CHECKPOINT_VERSION)
    if state is not None:
        learner.load_state_dict(state["learner"])
        rows, task_rows = state["rows"], state["task_rows"]
        if bar is not None:
            bar.update(len(rows))
    for t in range(len(rows), stream.n_tasks):
        loss = train_task(learner, stream, t, cfg, seed)
        row, task_row = evaluate_rows(learner, stream, t)
        rows.append(row)
        task_rows.append(task_row)
        if checkpoint is not None:
            save_seed_checkpoint(checkpoint, cfg.settings(), {"seed": seed, "rows": rows, "task_rows": task_rows,
                                                              "learner": learner.state_dict()},
                                 version=CHECKPOINT_VERSION)
        if bar is not None:
            bar.set_postfix(seed=seed, task=t, loss=f"{loss:.3f}", acc=f"{np.mean(rows[-1][:t + 1]):.3f}")
            bar.update(1)
        if _stop_after_task is not None and t == _stop_after_task:
            raise _Interrupted(f"stopped after task {t} (test hook)")
    return {"acc_matrix": rows, "acc_matrix_task": task_rows}


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
        learner = _learner(cfg, stream, seed, device)
        steps, acc, ends, rows = [], [], [], []
        count = 0
        for t in range(stream.n_tasks):

            def measure(t: int = t) -> None:
                nonlocal count
                count += 1
                if count % eval_every == 0:
                    steps.append(count)
                    acc.append(evaluate(learner, stream, t))

            train_task(learner, stream, t, cfg, seed, on_step=measure)
            ends.append(count)
            rows.append(evaluate(learner, stream, t))
        return {"steps": steps, "acc": acc, "task_ends": ends, "acc_matrix": rows,
                "classes": [list(k.classes) for k in stream.tasks]}


def run(cfg: ContinualConfig, out: str | Path | None = None, *, device: torch.device | str | None = None,
        progress: bool = False, figures: bool = True, threads: int | None = 1, command: str | None = None,
        overwrite: bool = False, _stop_after_task: int | None = None) -> dict[str, Any]:
    """Every seed of ``cfg``; returns the results.json dict (and writes it, with figures, to ``out``).

    With ``out=None`` nothing is written (notebooks); otherwise ``out`` is a resumable run folder
    (module docstring) and ``overwrite=True`` deletes a previous run there first. ``command``:
    recorded in the provenance (default: this process's command line). ``threads``: CPU threads
    for torch during the run. The default 1 is deliberate: these models are small (batches of 32,
    widths of 64-512), so extra threads mostly add synchronization; on a busy 2-core machine one
    thread measured about 30x faster per step than two. ``None`` leaves torch's setting alone.
    """
    with torch_threads(threads), run_folder(out, cfg.settings(), overwrite=overwrite) as rundir:  # locked
        device = get_device(device)

        def train_seed(seed: int, checkpoint: Path | None, bar: Any) -> dict[str, Any]:
            return {"seed": seed, **run_seed(cfg, seed, device=device, checkpoint=checkpoint, bar=bar,
                                             _stop_after_task=_stop_after_task)}

        done = run_seeds(cfg.seeds, train_seed, rundir=rundir, units=cfg.n_tasks,
                         desc=f"{cfg.dataset}/{cfg.method}", progress=progress, device=device)
        results = {
            "config": cfg.to_dict(),
            "per_seed": [{"seed": s, "acc_matrix": done[s]["acc_matrix"], "acc_matrix_task": done[s]["acc_matrix_task"]}
                         for s in cfg.seeds],
            "summary": metrics.summarize([done[s]["acc_matrix"] for s in cfg.seeds],
                                         [done[s]["acc_matrix_task"] for s in cfg.seeds]),
        }
        if rundir is None:
            return results
        results = rundir.write_results(results, command=command, device=device)
        if figures:
            save_figures(results, rundir.path)
    return results


def save_figures(results: dict[str, Any], out_dir: Path) -> None:
    fig = Figure(figsize=(5.5, 4.5), layout="constrained")
    draw_acc_matrix(fig, results)
    fig.savefig(out_dir / "acc_matrix.png", dpi=110)
    fig = Figure(figsize=(5.5, 3.5), layout="constrained")
    draw_avg_acc(fig, {results["config"]["method"]: results})
    fig.savefig(out_dir / "avg_acc.png", dpi=110)


def run_methods(dataset: str, methods: list[str], *, preset: str | None = None, seeds: tuple[int, ...] = (0, 1, 2),
                out: str | Path | None = None, device: torch.device | str | None = None, progress: bool = False,
                threads: int | None = 1, command: str | None = None, overwrite: bool = False,
                **overrides: Any) -> dict[str, dict[str, Any]]:
    """:func:`run` for several methods with the preset's settings (``overrides``: see
    :func:`preset_config`); ``out/<method>/`` each when ``out`` is given."""
    res = {}
    for m in methods:
        cfg = preset_config(dataset, m, preset, seeds=seeds, **overrides)
        res[m] = run(cfg, None if out is None else Path(out) / m, device=device, progress=progress, threads=threads,
                     command=command, overwrite=overwrite)
    return res


def measure_summary(results: dict[str, Any], key: str) -> dict[str, Any] | None:
    """``results``' summary of measure ``key`` (:data:`nlteach.continual.metrics.MEASURES`, or one of
    them prefixed ``task_``): from its ``summary`` when recorded, else recomputed from the per-seed
    matrices when they hold it (learning accuracy from files written before it was summarized), else
    None (a task-incremental measure of a file written before it was evaluated: not measured)."""
    if key in results.get("summary", {}):
        return results["summary"][key]
    task = key.startswith("task_")
    name, field = (key.removeprefix("task_"), "acc_matrix_task") if task else (key, "acc_matrix")
    if name not in metrics.MEASURES:
        raise ValueError(f"key must be one of {metrics.MEASURES}, optionally prefixed 'task_', got {key!r}.")
    mats = [p.get(field) for p in results.get("per_seed", [])]
    if not mats or any(m is None for m in mats):
        return None
    return summarize_values([metrics.measures(m)[name] for m in mats])


NOT_MEASURED = "not measured yet"


def _pm(summary: dict[str, Any] | None, digits: int = 3) -> str:
    return NOT_MEASURED if summary is None else pm_summary(summary, digits)


SUMMARY_COLUMNS = {"avg_acc": "avg acc", "bwt": "BWT", "forgetting": "forgetting", "learning_acc": "learning acc",
                   "task_avg_acc": "task-IL avg acc", "task_bwt": "task-IL BWT"}
"""The columns of :func:`format_table` and :func:`comparison_table`: the class-incremental measures,
then the task-incremental ones (``docs/decisions.md#continual-task-il``)."""


def format_table(results_by_method: dict[str, dict[str, Any]]) -> str:
    """A plain-text table: final average accuracy, BWT, forgetting, learning accuracy (the mean
    accuracy on each task right after learning it) and the task-incremental final average accuracy
    and BWT, mean +- std over seeds ("not measured yet" where a file has no task-incremental matrices)."""
    rows = [{"method": m, **{name: _pm(measure_summary(r, k)) for k, name in SUMMARY_COLUMNS.items()},
             "seeds": ",".join(str(p["seed"]) for p in r["per_seed"])} for m, r in results_by_method.items()]
    return text_table(rows, ["method", *SUMMARY_COLUMNS.values(), "seeds"])


def load_committed(dataset: str, preset: str = "laptop", root: str | Path | None = None
                   ) -> dict[str, dict[str, Any]] | None:
    """The committed runs ``results/continual_<dataset>_<preset>/<method>/results.json`` as
    ``{method: results}`` (learner order), each with ``"cpu_seconds"`` added: the CPU seconds of
    its seeds (from ``seeds/seed_<s>.json``; None where not recorded). None if the folder is missing
    (the package ships the committed results: ``nlteach.runs.RESULTS_ROOT``)."""
    folder = Path(RESULTS_ROOT if root is None else root) / f"continual_{dataset}_{preset}"
    out = {}
    for m in available_learners():
        f = folder / m / "results.json"
        if f.exists():
            res = load_results(f)
            cpu = []
            for p in res["per_seed"]:
                sf = folder / m / "seeds" / f"seed_{p['seed']}.json"
                cpu.append(read_json(sf).get("cpu_seconds") if sf.exists() else None)
            out[m] = res | {"cpu_seconds": cpu}
    return out or None


def with_seeds(cfg: ContinualConfig, seeds: tuple[int, ...]) -> ContinualConfig:
    return replace(cfg, seeds=tuple(seeds))


def comparison_rows(results_by_dataset: dict[str, dict[str, dict[str, Any]]],
                    params_by_dataset: dict[str, dict[str, dict[str, int]]] | None = None) -> list[dict[str, Any]]:
    """One row per (dataset, method): every measure of :data:`SUMMARY_COLUMNS` (each a
    :func:`nlteach.runs.stats.summarize` dict over seeds, or None when not measured:
    :func:`measure_summary`), the gaps of the means to ``finetune`` (``d_avg_acc``, ``d_bwt``), the
    CPU seconds per seed (mean; None if not recorded) and the parameter count (if given)."""
    rows = []
    for d, res in results_by_dataset.items():
        base = res.get("finetune")
        for m, r in res.items():
            cpu = [c for c in r.get("cpu_seconds") or [] if c is not None]
            row = {"dataset": d, "method": m, "seeds": [p["seed"] for p in r["per_seed"]],
                   **{k: measure_summary(r, k) for k in SUMMARY_COLUMNS},
                   "cpu_seconds": float(np.mean(cpu)) if cpu else None,
                   "params": (params_by_dataset or {}).get(d, {}).get(m, {}).get("total")}
            if base is not None:
                row["d_avg_acc"] = row["avg_acc"]["mean"] - measure_summary(base, "avg_acc")["mean"]
                row["d_bwt"] = row["bwt"]["mean"] - measure_summary(base, "bwt")["mean"]
            rows.append(row)
    return rows


def comparison_table(rows: list[dict[str, Any]]) -> str:
    """:func:`comparison_rows` as a markdown table (mean ± std over seeds)."""
    header = ["stream", "learner", *SUMMARY_COLUMNS.values(), "Δ avg acc", "Δ BWT", "params", "CPU s / seed"]
    body = [[r["dataset"], r["method"], *(_pm(r[k]) for k in SUMMARY_COLUMNS),
             *((f"{r['d_avg_acc']:+.3f}", f"{r['d_bwt']:+.3f}") if "d_avg_acc" in r else ("", "")),
             "" if r["params"] is None else format(r["params"], ","),
             "" if r["cpu_seconds"] is None else format(r["cpu_seconds"], ".0f")] for r in rows]
    return markdown_table(header, body)
