"""``python -m nlteach.continual``: forgetting experiments from the command line (see ``--help``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nlteach.config import PRESETS, get_preset
from nlteach.continual.learners import available_learners
from nlteach.continual.runner import format_table, preset_config, run
from nlteach.continual.streams import STREAMS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m nlteach.continual",
        description="Continual learning on a task stream: trains each method once per seed, writes "
                    "results.json (config, per-seed accuracy matrices, summary) and figures. Rerun the "
                    "same command to resume: finished seeds are kept, an interrupted seed continues from "
                    "its last finished task.",
        epilog="Learners: finetune, ewc, replay, lwf, cms, hope (in-context self-modifying memory + CMS), joint. "
               "EWC's lambda and LwF's temperature come from validation-split tuning (python -m "
               "nlteach.continual.tune); results.json records it under config.tuning.")
    p.add_argument("--dataset", required=True, choices=STREAMS)
    p.add_argument("--method", nargs="+", default=["finetune"], choices=[*available_learners(), "all"],
                   help="one or more learners, or 'all'. With several, each writes to OUT/<method>/.")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--preset", choices=PRESETS, default=None, help="size preset (default: $NLTEACH_SIZE or laptop)")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: CUDA if available, else CPU)")
    p.add_argument("--out", required=True, type=Path, help="output folder (results.json, figures, checkpoints)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    methods = available_learners() if "all" in args.method else list(dict.fromkeys(args.method))
    preset = get_preset(args.preset)
    if any(s < 0 for s in args.seeds):
        print(f"--seeds must be non-negative, got {args.seeds}", file=sys.stderr)
        return 2
    results = {}
    try:
        for m in methods:
            cfg = preset_config(args.dataset, m, preset, seeds=tuple(args.seeds))
            out = args.out if len(methods) == 1 else args.out / m
            results[m] = run(cfg, out, device=args.device, progress=not args.no_progress)
            print(f"wrote {out / 'results.json'}", flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted: rerun the same command to resume (finished tasks and seeds are kept).",
              file=sys.stderr)
        return 130
    print(f"\n{args.dataset}, preset {preset}, seeds {args.seeds}")
    print(format_table(results))
    if len(methods) > 1:
        from matplotlib.figure import Figure

        from nlteach.continual.plots import draw_comparison

        fig = Figure(figsize=(3 + 1.6 * len(methods), 3.2), layout="constrained")
        draw_comparison(fig, results)
        fig.savefig(args.out / "comparison.png", dpi=110)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
