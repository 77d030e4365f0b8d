"""``python -m nlteach.longctx``: long-context and formal-language experiments (see ``--help``)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from nlteach.config import PRESETS, get_preset
from nlteach.longctx.runner import (
    CMS_MODELS,
    MODELS,
    format_table,
    preset_config,
    run,
    run_variants,
)
from nlteach.longctx.tasks import TASKS


def parse_model(spec: str) -> tuple[str, tuple[int, ...] | None]:
    """``"hope"`` -> ("hope", None); ``"hope@1,4,16"`` -> ("hope", (1, 4, 16)) (CMS periods)."""
    name, _, periods = spec.partition("@")
    if name not in MODELS:
        raise argparse.ArgumentTypeError(f"unknown model {name!r}; choose from {', '.join(MODELS)} "
                                         "(CMS models may add @PERIODS, e.g. hope@1,4,16).")
    if not periods:
        return name, None
    if name not in CMS_MODELS:
        raise argparse.ArgumentTypeError(f"{name!r} has no CMS, so {spec!r} cannot set CMS periods "
                                         f"(only {', '.join(CMS_MODELS)} can).")
    try:
        p = tuple(int(x) for x in periods.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"CMS periods in {spec!r} must be comma-separated ints, e.g. hope@1,4,16") from None
    if not p or min(p) < 1:
        raise argparse.ArgumentTypeError(f"CMS periods in {spec!r} must be positive ints.")
    return name, p


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m nlteach.longctx",
        description="Train language models on a synthetic long-context or formal-language task and measure "
                    "accuracy against context length (train short, test long). Writes results.json "
                    "(config, per-seed accuracy per context length, summary) and accuracy.png in --out. "
                    "Rerun the same command to resume: finished seeds are kept, an interrupted seed "
                    "continues from its last checkpoint. Several --model values: each run goes to "
                    "OUT/<variant>/, and OUT/results.json combines them.",
        epilog="Examples: python -m nlteach.longctx --task mqar --model all --preset laptop --out runs/mqar ; "
               "python -m nlteach.longctx --task mk-niah --model hope@1 hope@1,4 hope@1,4,16 --out runs/cms")
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--model", nargs="+", default=["transformer"], metavar="MODEL",
                   help=f"one or more of {', '.join(MODELS)}, or 'all'; CMS models take @PERIODS "
                        "(hope@1,4,16: three CMS levels updating every 1, 4, 16 steps)")
    p.add_argument("--preset", choices=PRESETS, default=None, help="size preset (default: $NLTEACH_SIZE or laptop)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA if available, else CPU)")
    p.add_argument("--out", required=True, type=Path, help="output folder (results.json, figures, checkpoints)")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the preset's)")
    p.add_argument("--same-frequency", action="store_true",
                   help="train every CMS level at every step (default: level l every periods[l] steps, Eq. 71)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    specs = list(MODELS) if "all" in args.model else list(dict.fromkeys(args.model))
    try:
        models = [parse_model(s) for s in specs]
    except argparse.ArgumentTypeError as e:
        parser.error(str(e))
    if any(s < 0 for s in args.seeds):
        parser.error(f"--seeds must be non-negative, got {args.seeds}")
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    preset = get_preset(args.preset)
    command = "python -m nlteach.longctx " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    cfgs = []
    for name, periods in models:
        over = {"multi_frequency": not args.same_frequency}
        if periods is not None:
            over["cms_periods"] = periods
        if args.steps is not None:
            over["steps"] = args.steps
        try:
            cfgs.append(preset_config(args.task, name, preset, seeds=tuple(args.seeds), **over))
        except ValueError as e:
            parser.error(str(e))
    kw = dict(device=args.device, progress=not args.no_progress, threads=args.threads, command=command)
    try:
        if len(cfgs) == 1:
            res = {cfgs[0].variant: run(cfgs[0], args.out, **kw)}
        else:
            combined = run_variants(cfgs, args.out, **kw)
            from nlteach.longctx.runner import split_combined

            res = split_combined(combined)
    except KeyboardInterrupt:
        print("\ninterrupted: rerun the same command to resume (finished seeds and checkpoints are kept).",
              file=sys.stderr)
        return 130
    print(f"\n{args.task}, preset {preset}, seeds {args.seeds}; results in {args.out / 'results.json'}")
    print(format_table(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
