"""``python -m nlteach.longctx``: long-context and formal-language experiments (see ``--help``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from nlteach.longctx.runner import (
    CMS_MODELS,
    MODELS,
    LongCtxConfig,
    format_table,
    preset_config,
    run,
    run_variants,
    split_combined,
)
from nlteach.longctx.tasks import TASKS
from nlteach.runs.cli import apply_common
from nlteach.runs.commands import add_run_arguments, check_run_folders, run_guarded, typed_settings
from nlteach.runs.provenance import command_line


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


SETTINGS_SKIP = ("task", "model", "preset", "seeds", "task_options", "vocab_size", "cms_periods", "multi_frequency")
"""Settings with an option of their own (``--task``, ``--model NAME@PERIODS``, ``--same-frequency``,
the common options) or none (the vocabulary and task options follow from the task)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m nlteach.longctx",
        description="Train language models on a synthetic long-context or formal-language task and measure "
                    "accuracy against context length (train short, test long). Writes results.json "
                    "(config, per-seed accuracy per context length, summary, provenance) and accuracy.png in "
                    "--out. Rerun the same command to resume: finished seeds are kept, an interrupted seed "
                    "continues from its last checkpoint; other settings in the same --out are refused (the "
                    "error names them) unless --overwrite. Several --model values: each run goes to "
                    "OUT/<variant>/, and OUT/results.json combines them.",
        epilog="Examples: python -m nlteach.longctx --task mqar --model all --preset laptop --out runs/mqar ; "
               "python -m nlteach.longctx --task mk-niah --model hope@1 hope@1,4 hope@1,4,16 --out runs/cms")
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--model", nargs="+", default=["transformer"], metavar="MODEL",
                   help=f"one or more of {', '.join(MODELS)}, or 'all'; CMS models take @PERIODS "
                        "(hope@1,4,16: three CMS levels updating every 1, 4, 16 steps)")
    add_run_arguments(p, LongCtxConfig, skip=SETTINGS_SKIP, what="the run (LongCtxConfig) or of its model (ModelConfig)")
    p.add_argument("--same-frequency", action="store_true",
                   help="train every CMS level at every step (default: level l every periods[l] steps, Eq. 71)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = apply_common(parser, parser.parse_args(argv))
    specs = list(MODELS) if "all" in args.model else list(dict.fromkeys(args.model))
    try:
        models = [parse_model(s) for s in specs]
    except argparse.ArgumentTypeError as e:
        parser.error(str(e))
    overrides = typed_settings(args)
    cfgs = []
    for name, periods in models:
        over = {**overrides, "multi_frequency": not args.same_frequency}
        if periods is not None:
            over["cms_periods"] = periods
        try:
            cfgs.append(preset_config(args.task, name, args.preset, seeds=tuple(args.seeds), **over))
        except ValueError as e:
            parser.error(str(e))
    out = Path(args.out)
    rc = check_run_folders([(out if len(cfgs) == 1 else out / c.variant, c.settings()) for c in cfgs],
                           overwrite=args.overwrite)
    if rc:
        return rc
    command = command_line(None if argv is None else ["python", "-m", "nlteach.longctx", *argv])
    kw = dict(device=args.device, progress=not args.no_progress, threads=args.threads, command=command,
              overwrite=args.overwrite)
    if len(cfgs) == 1:
        res, rc = run_guarded(lambda: {cfgs[0].variant: run(cfgs[0], out, **kw)})
    else:
        res, rc = run_guarded(lambda: split_combined(run_variants(cfgs, out, **kw)))
    if rc:
        return rc
    print(f"\n{args.task}, preset {args.preset}, seeds {args.seeds}; results in {out / 'results.json'}")
    print(format_table(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
