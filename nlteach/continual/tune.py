"""Tune a learner's hyper-parameter on the *validation* split (never on test data).

    python -m nlteach.continual.tune --dataset clinc150 --method ewc --param ewc_lambda \\
        --grid 1 10 100 1000 10000 100000 --seeds 0 1 --preset laptop --out tuning.json

Each value of the grid runs the whole stream with the preset's settings and ``split="val"``
(:func:`nlteach.continual.streams.make_stream`: CLINC150's official val split, Banking77's seeded
10% of train, a fixed fifth of the digits' train images; the evaluation examples are left out of
training). The criterion is the final average accuracy on the validation split, mean over the
seeds (ties: the smaller value, i.e. the first in the grid). The chosen values are copied by hand
into :data:`nlteach.continual.runner.TUNING`, which the presets read and which every results.json
records under ``config["tuning"]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from nlteach.config import PRESETS, get_preset
from nlteach.continual import metrics
from nlteach.continual.runner import preset_config, run
from nlteach.continual.streams import STREAMS


def tune(dataset: str, method: str, param: str, grid: list[float], *, preset: str | None = None,
         seeds: tuple[int, ...] = (0,)) -> dict[str, Any]:
    """Run ``method`` on ``dataset``'s validation split for every value of ``grid``; returns the record
    ``{"param", "grid", "val_avg_acc", "val_bwt", "chosen", "seeds", "preset", "split", "criterion", "seconds"}``."""
    if not grid:
        raise ValueError("grid must hold at least one value.")
    preset = get_preset(preset)
    acc, bwt, secs = [], [], []
    for v in grid:
        t0 = time.perf_counter()
        cfg = preset_config(dataset, method, preset, seeds=tuple(seeds), split="val", tuning=None, **{param: v})
        res = run(cfg, None, figures=False)
        acc.append(res["summary"]["avg_acc"]["mean"])
        bwt.append(metrics.mean_std([metrics.backward_transfer(p["acc_matrix"]) for p in res["per_seed"]])["mean"])
        secs.append(time.perf_counter() - t0)
        print(f"{dataset} {method} {param}={v}: val avg acc {acc[-1]:.4f}, val BWT {bwt[-1]:+.4f} "
              f"({secs[-1]:.0f} s)", flush=True)
    best = max(range(len(grid)), key=lambda i: (acc[i], -i))
    return {"method": method, "param": param, "grid": list(grid), "val_avg_acc": acc, "val_bwt": bwt,
            "chosen": grid[best], "seeds": list(seeds), "preset": preset, "split": "val",
            "criterion": "final average accuracy on the validation split, mean over seeds", "seconds": secs}


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nlteach.continual.tune", description=__doc__.split("\n\n")[1])
    p.add_argument("--dataset", required=True, choices=STREAMS)
    p.add_argument("--method", required=True)
    p.add_argument("--param", required=True, help="a LearnerConfig field, e.g. ewc_lambda or lwf_temperature")
    p.add_argument("--grid", required=True, nargs="+", type=float)
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--preset", choices=PRESETS, default=None)
    p.add_argument("--out", type=Path, default=None, help="append the record to this JSON file (a list)")
    args = p.parse_args(argv)
    rec = tune(args.dataset, args.method, args.param, args.grid, preset=args.preset, seeds=tuple(args.seeds))
    rec["dataset"] = args.dataset
    print(json.dumps({k: rec[k] for k in ("dataset", "method", "param", "chosen")}))
    if args.out is not None:
        old = json.loads(args.out.read_text()) if args.out.exists() else []
        args.out.write_text(json.dumps([*old, rec], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
