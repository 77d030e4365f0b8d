"""Tune every learner's own knobs on the *validation* split, with the same budget for each (never on test data).

    python -m nlteach.continual.tune --dataset clinc150 --method cms --seeds 0 1 --preset laptop \\
        --out results/continual_tuning_laptop --update-tuning

**The budget** (``docs/decisions.md#continual-fair-tuning``): every learner gets :data:`GRID_POINTS`
(6) settings of its own knobs, :data:`TUNING_PLAN`: a product grid of one or two axes. The
learning rate is a knob of every learner except the HOPE-style ones, whose six points go to their
in-context memory's largest learning rate ``hope_eta_max`` and chunk size ``hope_chunk_size``.
Replay's buffer size is a stated memory budget (2 examples per class for text), not tuned.

**The rule.** Each point runs the whole stream with the preset's settings and ``split="val"``
(:func:`nlteach.continual.streams.make_stream`: CLINC150's official val split, Banking77's seeded
10% of train, a fixed fifth of the digits' train images; the evaluation examples are left out of
training). The criterion is the final average accuracy on the validation split, mean over the
seeds (ties: the first point in the grid's order); a point whose run diverges
(``FloatingPointError``) scores nothing and is recorded as diverged. When the chosen value of an
axis of two or more values sits on an edge of that axis, the axis grows by one value on that side
(:func:`widen`: the next step of its geometric progression) and the new points run; at most
:data:`MAX_WIDENINGS` times per axis (``--widen``). The record says which axes still end on an
edge (``on_edge``).

With ``--out DIR`` every point runs in its own resumable run folder
``DIR/<dataset>/<method>/<param>=<value>,.../`` (rerun the same command to resume; other settings
there are refused, naming them, unless ``--overwrite``), and the record, with its provenance
(commit, uncommitted paths, command), is added to ``DIR/tuning.json`` (:func:`add_record`; the
file's own provenance block names one commit only when every record was made at it). The
package's file is the merge of the committed records: ``--merge results/continual_tuning_laptop/tuning.json
--fresh`` rewrites it from them. ``--update-tuning`` merges the record into the package's
``nlteach/continual/tuning.json`` (:data:`nlteach.continual.runner.TUNING_FILE`,
:func:`merge_records`), which the laptop and full presets read: a method's chosen point applies
to that method only, and its results.json records the method's record under ``config["tuning"]``.
Records written before this budget (one parameter, ``"param"`` and ``"grid"``: EWC's lambda and
LwF's temperature) are read as one-axis records of their method.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

from filelock import FileLock

from nlteach.config import get_preset
from nlteach.continual import metrics
from nlteach.continual.learners import LearnerConfig, available_learners
from nlteach.continual.runner import TUNING_FILE, normalize_record, preset_config, run
from nlteach.continual.streams import STREAMS
from nlteach.runs.cli import add_common_arguments, apply_common, folder_problem, nonneg_int
from nlteach.runs.commands import check_run_folders, run_guarded
from nlteach.runs.io import atomic_write_json, read_json
from nlteach.runs.provenance import command_line, provenance
from nlteach.runs.stats import summarize

CRITERION = "final average accuracy on the validation split, mean over seeds"
RECORDS = "tuning.json"  # in --out: the list of every record made there
GRID_POINTS = 6
"""Settings of its own knobs every learner gets (before any widening)."""
MAX_WIDENINGS = 2
"""How many times an axis may grow when its chosen value sits on an edge."""
LR = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2]
TUNING_PLAN: dict[str, dict[str, list[Any]]] = {
    "finetune": {"lr": LR},
    "replay": {"lr": LR},  # the buffer size is a stated budget, not a knob
    "joint": {"lr": LR},
    "ewc": {"ewc_lambda": [1e2, 1e4, 1e6], "lr": [1e-3, 3e-3]},
    "lwf": {"lwf_temperature": [1.0, 2.0, 4.0], "lr": [1e-3, 3e-3]},
    "cms": {"periods": [(1, 2, 4, 8), (1, 4, 16, 64), (1, 8, 64, 512)], "lr": [1e-3, 3e-3]},
    "hope": {"hope_eta_max": [0.05, 0.2, 1.0], "hope_chunk_size": [8, 24]},
    "hope-persistent": {"hope_eta_max": [0.05, 0.2, 1.0], "hope_chunk_size": [8, 24]},
}
"""Each learner's axes (:class:`~nlteach.continual.learners.LearnerConfig` fields), a product grid of
:data:`GRID_POINTS` points (``tests/test_continual.py`` checks the count and that every learner has one)."""
INT_KNOBS = ("hope_chunk_size", "periods")
LOCK_WAIT = 120.0  # seconds a process waits for another one writing the same tuning file
LOCK_NAME = ".lock"  # beside the tuning file; ignored by git (.gitignore), so the tree stays clean


def grid_points(axes: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The product grid of ``axes`` as a list of points ``{param: value}``, the first axis slowest."""
    points: list[dict[str, Any]] = [{}]
    for param, values in axes.items():
        points = [p | {param: v} for p in points for v in values]
    return points


def _key(v: Any) -> Any:
    return tuple(v) if isinstance(v, list | tuple) else v


def widen(param: str, values: list[Any], chosen: Any) -> list[Any] | None:
    """``values`` grown by one value beyond ``chosen`` when it sits on an edge (``values`` sorted
    ascending, at least two of them): the next step of the geometric progression set by the two
    values at that edge (element by element for tuples such as ``periods``; rounded for integer
    knobs). None when ``chosen`` is inside, or the axis has fewer than two values, or the step
    would not change the value."""
    vals = [_key(v) for v in values]
    if len(vals) < 2 or _key(chosen) not in (vals[0], vals[-1]):
        return None
    a, b = (vals[0], vals[1]) if _key(chosen) == vals[0] else (vals[-1], vals[-2])

    def step(x: float, y: float) -> float:
        z = x * x / y
        return max(1, round(z)) if param in INT_KNOBS else float(f"{z:.6g}")

    new = tuple(step(x, y) for x, y in zip(a, b, strict=True)) if isinstance(a, tuple) else step(a, b)
    if new == a:
        return None
    return [new, *vals] if _key(chosen) == vals[0] else [*vals, new]


def value_folder(out: str | Path, dataset: str, method: str, point: dict[str, Any]) -> Path:
    """The run folder of one grid point under ``out``."""
    name = ",".join(f"{k}={'-'.join(map(str, v)) if isinstance(v, list | tuple) else format(v, 'g')}"
                    for k, v in point.items())
    return Path(out) / dataset / method / name


def _check_axes(method: str, axes: dict[str, list[Any]]) -> None:
    known = {f for f in LearnerConfig.__dataclass_fields__}
    if method not in available_learners():
        raise ValueError(f"method must be one of {available_learners()}, got {method!r}.")
    if not axes:
        raise ValueError("axes must name at least one knob.")
    for param, values in axes.items():
        if param not in known:
            raise ValueError(f"unknown setting {param!r} in axes: a knob is a LearnerConfig field, one of {sorted(known)}.")
        if not values:
            raise ValueError(f"axes[{param!r}] must hold at least one value.")


def _configs(dataset: str, method: str, points: list[dict[str, Any]], preset: str, seeds: tuple[int, ...]):
    return [preset_config(dataset, method, preset, seeds=tuple(seeds), split="val", tuning=None, **p) for p in points]


def tune(dataset: str, method: str, axes: dict[str, list[Any]] | None = None, *, preset: str | None = None,
         seeds: tuple[int, ...] = (0,), out: str | Path | None = None, device: Any = None, overwrite: bool = False,
         progress: bool = False, threads: int | None = 1, command: str | None = None,
         max_widenings: int = MAX_WIDENINGS) -> dict[str, Any]:
    """Run ``method`` on ``dataset``'s validation split for every point of the product grid ``axes``
    (default: ``TUNING_PLAN[method]``), widening an axis whose chosen value sits on its edge (module
    docstring); returns the record ``{"dataset", "method", "axes", "points", "val_avg_acc", "val_bwt",
    "val_learning_acc", "chosen", "chosen_val_avg_acc", "on_edge", "widenings", "budget", "seeds",
    "preset", "split", "criterion", "seconds"}``; a diverged point has None scores. With ``out``,
    each point runs in a resumable run folder (:func:`value_folder`); ``overwrite`` starts those over.
    ``device``, ``progress``, ``threads``, ``command``: as for :func:`nlteach.continual.runner.run`."""
    axes = {k: [_key(v) for v in vs] for k, vs in (TUNING_PLAN.get(method, {}) if axes is None else axes).items()}
    _check_axes(method, axes)
    if not isinstance(max_widenings, int) or max_widenings < 0:
        raise ValueError(f"max_widenings must be a non-negative int, got {max_widenings!r}.")
    preset = get_preset(preset)
    scores: dict[str, tuple[Any, Any, Any, float]] = {}  # json(point) -> (acc, bwt, learning acc, seconds)
    widened = dict.fromkeys(axes, 0)
    while True:
        points = grid_points(axes)
        for p, cfg in zip(points, _configs(dataset, method, points, preset, seeds), strict=True):
            k = json.dumps(p)
            if k in scores:
                continue
            t0 = time.perf_counter()
            folder = None if out is None else value_folder(out, dataset, method, p)
            try:
                res = run(cfg, folder, figures=False, device=device, overwrite=overwrite, progress=progress,
                          threads=threads, command=command)
                mats = [q["acc_matrix"] for q in res["per_seed"]]
                acc = res["summary"]["avg_acc"]["mean"]
                bwt = summarize([metrics.backward_transfer(m) for m in mats])["mean"]
                la = summarize([metrics.learning_accuracy(m) for m in mats])["mean"]
            except FloatingPointError as e:  # a diverged run scores nothing; the others go on
                acc = bwt = la = None
                print(f"{dataset} {method} {p}: diverged ({e})", flush=True)
            scores[k] = (acc, bwt, la, time.perf_counter() - t0)
            if acc is not None:
                print(f"{dataset} {method} {p}: val avg acc {acc:.4f}, val BWT {bwt:+.4f} ({scores[k][3]:.0f} s)",
                      flush=True)
        best = _best(points, [scores[json.dumps(p)][0] for p in points])
        grown = False
        for param, values in list(axes.items()):
            if best is None or widened[param] >= max_widenings:
                continue
            new = widen(param, values, best[param])
            if new is not None:
                axes[param], widened[param], grown = new, widened[param] + 1, True
        if not grown:
            break
    points = grid_points(axes)
    acc = [scores[json.dumps(p)][0] for p in points]
    best = _best(points, acc)
    on_edge = [] if best is None else [k for k, vs in axes.items()
                                       if len(vs) > 1 and _key(best[k]) in (vs[0], vs[-1])]
    return {"dataset": dataset, "method": method, "axes": {k: list(v) for k, v in axes.items()},
            "points": points, "val_avg_acc": acc, "val_bwt": [scores[json.dumps(p)][1] for p in points],
            "val_learning_acc": [scores[json.dumps(p)][2] for p in points], "chosen": best,
            "chosen_val_avg_acc": None if best is None else acc[points.index(best)], "on_edge": on_edge,
            "widenings": widened, "budget": GRID_POINTS, "seeds": list(seeds), "preset": preset, "split": "val",
            "criterion": CRITERION, "seconds": [scores[json.dumps(p)][3] for p in points]}


def _best(points: list[dict[str, Any]], acc: list[Any]) -> dict[str, Any] | None:
    """The point of highest score (ties: the first); None when every point diverged."""
    ok = [i for i, a in enumerate(acc) if a is not None and math.isfinite(a)]
    return None if not ok else points[max(ok, key=lambda i: (acc[i], -i))]


def merge_records(records: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """The records of a tuning file as ``{dataset: {method: record}}`` (the shape of
    :data:`nlteach.continual.runner.TUNING`). Records in the one-parameter layout of the first tuning
    runs are read as one-axis records (:func:`nlteach.continual.runner.normalize_record`). Records of
    the same data set and method (a grid extended, or resumed) are merged: the union of their points,
    each axis sorted, the chosen point the best over the union (ties: the first), scores rounded to 4
    digits."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for raw in records:
        r = normalize_record(raw)
        old = out.setdefault(r["dataset"], {}).get(r["method"])
        if old is not None and set(old["axes"]) != set(r["axes"]):  # another search (other knobs): it replaces
            old = None
        table = {json.dumps(p): (a, b, la) for p, a, b, la in
                 zip(r["points"], r["val_avg_acc"], r["val_bwt"], r.get("val_learning_acc") or [None] * len(r["points"]),
                     strict=True)}
        axes = {k: list(v) for k, v in r["axes"].items()}
        if old is not None:
            table = {json.dumps(p): (a, b, la) for p, a, b, la in
                     zip(old["points"], old["val_avg_acc"], old["val_bwt"], old["val_learning_acc"], strict=True)} | table
            axes = {k: sorted({_key(v) for v in axes.get(k, []) + old["axes"].get(k, [])}) for k in axes | old["axes"]}
        axes = {k: sorted({_key(v) for v in vs}) for k, vs in axes.items()}
        points = [p for p in grid_points({k: [list(v) if isinstance(v, tuple) else v for v in vs]
                                          for k, vs in axes.items()}) if json.dumps(p) in table]
        axes = {k: [v for v in vs if any(_key(p[k]) == v for p in points)] for k, vs in axes.items()}  # values run
        rnd = lambda x: None if x is None else round(x, 4)  # noqa: E731
        acc = [rnd(table[json.dumps(p)][0]) for p in points]
        best = _best(points, acc)
        out[r["dataset"]][r["method"]] = {
            "method": r["method"], "axes": {k: [list(v) if isinstance(v, tuple) else v for v in vs]
                                            for k, vs in axes.items()},
            "points": points, "val_avg_acc": acc, "val_bwt": [rnd(table[json.dumps(p)][1]) for p in points],
            "val_learning_acc": [rnd(table[json.dumps(p)][2]) for p in points], "chosen": best,
            "on_edge": [] if best is None else [k for k, vs in axes.items()
                                                if len(vs) > 1 and _key(best[k]) in (vs[0], vs[-1])],
            "budget": r.get("budget"), "seeds": r["seeds"], "preset": r["preset"], "split": "val",
            "criterion": r["criterion"]}
    return out


def as_records(tuning: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The inverse of :func:`merge_records`: one record per (dataset, method); a tuning file in the
    one-parameter layout gives one record per (dataset, parameter)."""
    return [{**rec, "dataset": d, **({"method": k} if "axes" in rec else {"param": k})}
            for d, recs in tuning.items() for k, rec in recs.items()]


def update_tuning(record: dict[str, Any], path: str | Path = TUNING_FILE) -> dict[str, dict[str, dict[str, Any]]]:
    """Merge ``record`` into the tuning file ``path`` (default: the package's) and write it atomically;
    returns the merged contents. Data sets and methods the record does not touch are kept."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path.parent / LOCK_NAME, timeout=LOCK_WAIT):  # tuning processes may finish at the same time
        old = read_json(path) if path.exists() else {}
        merged = merge_records([*as_records(old), record])
        atomic_write_json(path, merged)
    return merged


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of a tuning file written by :func:`add_record` (``{"records": [...], "provenance"}``),
    or of the first tuning runs (a plain list)."""
    d = read_json(path)
    if isinstance(d, list):
        return d
    if not isinstance(d, dict) or not isinstance(d.get("records"), list):
        raise ValueError(f"{path}: expected a list of tuning records or {{'records': [...]}}, got {type(d).__name__}.")
    return d["records"]


def file_provenance(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The provenance block of a tuning file, from its records' own (each record's ``provenance``): the
    commit when every record names the same one (else None: the file mixes commits, or holds records
    without provenance), the union of their uncommitted paths (None if one is not recorded), and every
    distinct command, one per line."""
    blocks = [r.get("provenance") if isinstance(r.get("provenance"), dict) else {} for r in records]
    commits = {b.get("git_commit") for b in blocks}
    dirty = [b.get("git_dirty") for b in blocks]
    return {"git_commit": commits.pop() if len(commits) == 1 else None,
            "git_dirty": None if any(x is None for x in dirty) else sorted({p for x in dirty for p in x}),
            "command": "\n".join(dict.fromkeys(b["command"] for b in blocks if b.get("command"))) or None}


def add_record(out: str | Path, record: dict[str, Any]) -> list[dict[str, Any]]:
    """Add ``record`` to ``out/tuning.json`` (``{"records": [...], "provenance": ...}``, the block from
    :func:`file_provenance`), replacing a record of the same search (data set, method, seeds, preset: a
    resumed or widened run); returns the records."""
    path = Path(out) / RECORDS
    key = ("dataset", "method", "seeds", "preset")
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path.parent / LOCK_NAME, timeout=LOCK_WAIT):  # two tuning processes may share one --out
        old = read_records(path) if path.exists() else []
        records = [r for r in old if "param" in r or any(r.get(k) != record[k] for k in key)] + [record]
        atomic_write_json(path, {"records": records, "provenance": file_provenance(records)})
    return records


def _value(text: str) -> Any:
    """A grid value typed on the command line: a number, or integers joined by '-' (periods: 1-4-16-64)."""
    try:
        v = float(text)
    except ValueError:
        try:
            return tuple(int(x) for x in text.split("-"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number or integers joined by '-', got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nlteach.continual.tune", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 3)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=STREAMS, help="the stream (required unless --merge)")
    p.add_argument("--method", choices=available_learners(), help="the learner (required unless --merge)")
    p.add_argument("--merge", default=None, metavar="RECORDS",
                   help="run nothing: merge every record of this tuning file (an --out's tuning.json) into the "
                        "--update-tuning file (default: the package's); after all tuning runs, so that they ran "
                        "from a clean tree")
    p.add_argument("--fresh", action="store_true",
                   help="with --merge: the target becomes the merge of RECORDS alone (what it held before is "
                        "dropped), as the package's file is the merge of the committed records")
    p.add_argument("--param", default=None,
                   help="tune this one LearnerConfig field over --grid instead of the method's plan (TUNING_PLAN)")
    p.add_argument("--grid", nargs="+", type=_value, default=None, help="the values of --param")
    p.add_argument("--widen", type=nonneg_int, default=MAX_WIDENINGS,
                   help=f"widenings per axis when the chosen value is on an edge (default {MAX_WIDENINGS})")
    add_common_arguments(p, seeds=[0, 1], threads=1)
    p.add_argument("--progress", action="store_true", help="a progress bar per run")
    p.add_argument("--update-tuning", nargs="?", const=str(TUNING_FILE), default=None, metavar="FILE",
                   help=f"merge the record into this tuning file (default: the package's, {TUNING_FILE.name})")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = apply_common(p, p.parse_args(argv))
    command = command_line(None if argv is None else ["python", "-m", "nlteach.continual.tune", *argv])
    if args.merge is not None:
        try:
            records = read_records(args.merge)
        except (OSError, ValueError) as e:  # missing, not JSON, not a tuning file
            p.error(f"--merge {args.merge!r}: {e}")
        target = args.update_tuning or str(TUNING_FILE)
        if args.fresh:
            with FileLock(Path(target).parent / LOCK_NAME, timeout=LOCK_WAIT):
                atomic_write_json(target, merge_records(records))
        else:
            for rec in records:
                update_tuning(rec, target)
        print(f"merged {len(records)} records of {args.merge} into {target}{' (replacing it)' * args.fresh}")
        return 0
    if args.fresh:
        p.error("--fresh goes with --merge")
    if args.dataset is None or args.method is None:
        p.error("--dataset and --method are required (unless --merge)")
    if (args.param is None) != (args.grid is None):
        p.error("--param and --grid go together (or neither: the method's plan)")
    axes = TUNING_PLAN[args.method] if args.param is None else {args.param: args.grid}
    try:  # every first point's settings, before the first one trains
        _check_axes(args.method, axes)
        points = grid_points(axes)
        cfgs = _configs(args.dataset, args.method, points, args.preset, tuple(args.seeds))
    except ValueError as e:  # an unknown parameter, a value out of range
        p.error(str(e))
    if args.update_tuning is not None:  # the file is written after the whole run: check it now
        path = Path(args.update_tuning)
        problem = f"{path} is a folder" if path.is_dir() else folder_problem(path.parent)
        try:
            if not problem and path.exists():
                read_json(path)
        except ValueError as e:  # not valid JSON
            problem = str(e).rstrip(".")
        if problem:
            p.error(f"--update-tuning {args.update_tuning!r}: {problem}; expected a tuning file (JSON) to merge into.")
    if args.out is not None and (rc := check_run_folders(
            [(value_folder(args.out, args.dataset, args.method, q), c.settings()) for q, c in zip(points, cfgs)],
            overwrite=args.overwrite)):
        return rc
    rec, rc = run_guarded(lambda: tune(
        args.dataset, args.method, axes, preset=args.preset, seeds=tuple(args.seeds), out=args.out,
        device=args.device, overwrite=args.overwrite, progress=args.progress, threads=args.threads,
        command=command, max_widenings=args.widen))
    if rc:
        return rc
    rec["provenance"] = provenance(command)
    print(json.dumps({k: rec[k] for k in ("dataset", "method", "chosen", "on_edge")}))
    if args.out is not None:
        add_record(args.out, rec)
    if args.update_tuning is not None:
        update_tuning(rec, args.update_tuning)
        print(f"merged into {args.update_tuning}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
