"""Tune a learner's hyper-parameter on the *validation* split (never on test data).

    python -m nlteach.continual.tune --dataset clinc150 --method ewc --param ewc_lambda \\
        --grid 1 10 100 1000 10000 100000 --seeds 0 1 --preset laptop \\
        --out results/continual_tuning_laptop --update-tuning

Each value of the grid runs the whole stream with the preset's settings and ``split="val"``
(:func:`nlteach.continual.streams.make_stream`: CLINC150's official val split, Banking77's seeded
10% of train, a fixed fifth of the digits' train images; the evaluation examples are left out of
training). The criterion is the final average accuracy on the validation split, mean over the
seeds (ties: the smaller value, i.e. the first in the grid).

With ``--out DIR`` every value runs in its own resumable run folder,
``DIR/<dataset>/<method>/<param>=<value>/`` (rerun the same command to resume; other settings
there are refused, naming them, unless ``--overwrite``), and the record is added to the list in
``DIR/tuning.json``. ``--update-tuning`` merges the record into the package's
``nlteach/continual/tuning.json`` (:data:`nlteach.continual.runner.TUNING_FILE`,
:func:`merge_records`), which the laptop and full presets read and every results.json records
under ``config["tuning"]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from nlteach.config import get_preset
from nlteach.continual import metrics
from nlteach.continual.runner import TUNING_FILE, preset_config, run
from nlteach.continual.streams import STREAMS
from nlteach.runs.cli import add_common_arguments, apply_common, finite_float, folder_problem
from nlteach.runs.commands import check_run_folders, run_guarded
from nlteach.runs.io import atomic_write_json, read_json
from nlteach.runs.provenance import command_line
from nlteach.runs.stats import summarize

CRITERION = "final average accuracy on the validation split, mean over seeds"
RECORDS = "tuning.json"  # in --out: the list of every record made there


def value_folder(out: str | Path, dataset: str, method: str, param: str, value: float) -> Path:
    """The run folder of one grid value under ``out``."""
    return Path(out) / dataset / method / f"{param}={value:g}"


def tune(dataset: str, method: str, param: str, grid: list[float], *, preset: str | None = None,
         seeds: tuple[int, ...] = (0,), out: str | Path | None = None, device: Any = None,
         overwrite: bool = False, progress: bool = False, threads: int | None = 1,
         command: str | None = None) -> dict[str, Any]:
    """Run ``method`` on ``dataset``'s validation split for every value of ``grid``; returns the record
    ``{"dataset", "method", "param", "grid", "val_avg_acc", "val_bwt", "chosen", "seeds", "preset",
    "split", "criterion", "seconds"}``. With ``out``, each value runs in a resumable run folder
    (:func:`value_folder`); ``overwrite`` starts those over. ``device``, ``progress``, ``threads``,
    ``command``: as for :func:`nlteach.continual.runner.run`."""
    if not grid:
        raise ValueError("grid must hold at least one value.")
    preset = get_preset(preset)
    acc, bwt, secs = [], [], []
    for v in grid:
        t0 = time.perf_counter()
        cfg = preset_config(dataset, method, preset, seeds=tuple(seeds), split="val", tuning=None, **{param: v})
        folder = None if out is None else value_folder(out, dataset, method, param, v)
        res = run(cfg, folder, figures=False, device=device, overwrite=overwrite, progress=progress, threads=threads,
                  command=command)
        acc.append(res["summary"]["avg_acc"]["mean"])
        bwt.append(summarize([metrics.backward_transfer(p["acc_matrix"]) for p in res["per_seed"]])["mean"])
        secs.append(time.perf_counter() - t0)
        print(f"{dataset} {method} {param}={v}: val avg acc {acc[-1]:.4f}, val BWT {bwt[-1]:+.4f} "
              f"({secs[-1]:.0f} s)", flush=True)
    best = max(range(len(grid)), key=lambda i: (acc[i], -i))
    return {"dataset": dataset, "method": method, "param": param, "grid": list(grid), "val_avg_acc": acc,
            "val_bwt": bwt, "chosen": grid[best], "seeds": list(seeds), "preset": preset, "split": "val",
            "criterion": CRITERION, "seconds": secs}


def merge_records(records: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """The records of a tuning file as ``{dataset: {param: record}}`` (the shape of
    :data:`nlteach.continual.runner.TUNING`). Records of the same dataset and parameter (a grid
    extended after its best value fell on an edge) are merged: the grid is sorted, and the chosen
    value is the best over the union (ties: the smaller value)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for r in records:
        old = out.setdefault(r["dataset"], {}).get(r["param"])
        pairs = dict(zip(r["grid"], zip(r["val_avg_acc"], r["val_bwt"], strict=True), strict=True))
        if old is not None:
            pairs = dict(zip(old["grid"], zip(old["val_avg_acc"], old["val_bwt"], strict=True), strict=True)) | pairs
        grid = sorted(pairs)
        acc = [round(pairs[g][0], 4) for g in grid]
        best = max(range(len(grid)), key=lambda i: (acc[i], -i))
        out[r["dataset"]][r["param"]] = {
            "method": r["method"], "grid": grid, "val_avg_acc": acc, "val_bwt": [round(pairs[g][1], 4) for g in grid],
            "chosen": grid[best], "seeds": r["seeds"], "preset": r["preset"], "split": "val",
            "criterion": r["criterion"]}
    return out


def as_records(tuning: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The inverse of :func:`merge_records`: one record per (dataset, param)."""
    return [{**rec, "dataset": d, "param": p} for d, params in tuning.items() for p, rec in params.items()]


def update_tuning(record: dict[str, Any], path: str | Path = TUNING_FILE) -> dict[str, dict[str, dict[str, Any]]]:
    """Merge ``record`` into the tuning file ``path`` (default: the package's) and write it atomically;
    returns the merged contents. Data sets and parameters the record does not touch are kept."""
    path = Path(path)
    old = read_json(path) if path.exists() else {}
    merged = merge_records([*as_records(old), record])
    atomic_write_json(path, merged)
    return merged


def add_record(out: str | Path, record: dict[str, Any]) -> list[dict[str, Any]]:
    """Add ``record`` to the list in ``out/tuning.json``, replacing a record of the same search
    (data set, method, parameter, grid, seeds, preset: a resumed run); returns the list."""
    path = Path(out) / RECORDS
    key = ("dataset", "method", "param", "grid", "seeds", "preset")
    old = read_json(path) if path.exists() else []
    records = [r for r in old if any(r.get(k) != record[k] for k in key)] + [record]
    atomic_write_json(path, records)
    return records


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nlteach.continual.tune", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("--dataset", required=True, choices=STREAMS)
    p.add_argument("--method", required=True)
    p.add_argument("--param", required=True, help="a LearnerConfig field, e.g. ewc_lambda or lwf_temperature")
    p.add_argument("--grid", required=True, nargs="+", type=finite_float)
    add_common_arguments(p, seeds=[0], threads=1)
    p.add_argument("--progress", action="store_true", help="a progress bar per run")
    p.add_argument("--update-tuning", nargs="?", const=str(TUNING_FILE), default=None, metavar="FILE",
                   help=f"merge the record into this tuning file (default: the package's, {TUNING_FILE.name})")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = apply_common(p, p.parse_args(argv))
    command = command_line(None if argv is None else ["python", "-m", "nlteach.continual.tune", *argv])
    try:  # every value's settings, before the first one trains
        cfgs = {v: preset_config(args.dataset, args.method, args.preset, seeds=tuple(args.seeds), split="val",
                                 tuning=None, **{args.param: v}) for v in args.grid}
    except ValueError as e:  # an unknown method or parameter, a value out of range
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
            [(value_folder(args.out, args.dataset, args.method, args.param, v), c.settings()) for v, c in cfgs.items()],
            overwrite=args.overwrite)):
        return rc
    rec, rc = run_guarded(lambda: tune(
        args.dataset, args.method, args.param, args.grid, preset=args.preset, seeds=tuple(args.seeds),
        out=args.out, device=args.device, overwrite=args.overwrite, progress=args.progress,
        threads=args.threads, command=command))
    if rc:
        return rc
    print(json.dumps({k: rec[k] for k in ("dataset", "method", "param", "chosen")}))
    if args.out is not None:
        add_record(args.out, rec)
    if args.update_tuning is not None:
        update_tuning(rec, args.update_tuning)
        print(f"merged into {args.update_tuning}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
