"""``python -m nlteach.longctx``: long-context and formal-language experiments (see ``--help``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from nlteach.longctx.runner import (
    BUDGETS,
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
    """``"hope"`` -> ("hope", None); ``"hope@16,64"`` -> ("hope", (16, 64)) (the CMS levels'
    in-context periods, in tokens)."""
    name, _, periods = spec.partition("@")
    if name not in MODELS:
        raise argparse.ArgumentTypeError(f"unknown model {name!r}; choose from {', '.join(MODELS)} "
                                         "(CMS models may add @PERIODS, e.g. hope@16,64,256).")
    if not periods:
        return name, None
    if name not in CMS_MODELS:
        raise argparse.ArgumentTypeError(f"{name!r} has no CMS, so {spec!r} cannot set CMS periods "
                                         f"(only {', '.join(CMS_MODELS)} can).")
    try:
        p = tuple(int(x) for x in periods.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"CMS periods in {spec!r} must be comma-separated ints, e.g. hope@16,64,256") from None
    if not p or min(p) < 1:
        raise argparse.ArgumentTypeError(f"CMS periods in {spec!r} must be positive ints.")
    return name, p


SETTINGS_SKIP = ("task", "model", "preset", "budget", "seeds", "task_options", "vocab_size", "cms_periods", "multi_frequency")
"""Settings with an option of their own (``--task``, ``--model NAME@PERIODS``, ``--budget``, ``--cms-multi-frequency``,
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
               "python -m nlteach.longctx --task mk-niah --model hope@16 hope@16,64 hope@16,64,256 --out runs/cms ; "
               "python -m nlteach.longctx --task mqar --model all --budget learned --seeds 0 1 2 3 4 --out runs/mqar_learned ; "
               "python -m nlteach.longctx --task s-niah --model hope --cms-multi-frequency --cms-step-periods 1 4 16 "
               "--out runs/mf")
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--model", nargs="+", default=["transformer"], metavar="MODEL",
                   help=f"one or more of {', '.join(MODELS)}, or 'all'; CMS models take @PERIODS "
                        "(hope@16,64,256: three CMS levels learning in context every 16, 64, 256 tokens; "
                        "default: the model's)")
    p.add_argument("--budget", choices=BUDGETS, default="preset",
                   help="the row of training settings: 'preset' (the preset's; default) or 'learned' (retrieval tasks "
                        "only: LEARNED_BUDGET, in which the Transformer solves the task at its training length, tested "
                        "up to 8x it; docs/decisions.md#longctx-learned-budget); options below override either")
    add_run_arguments(p, LongCtxConfig, skip=SETTINGS_SKIP, what="the run (LongCtxConfig) or of its model (ModelConfig)")
    p.add_argument("--cms-multi-frequency", action="store_true",
                   help="outer multi-frequency training: the optimizer steps CMS level l only every "
                        "--cms-step-periods[l] optimizer steps (default 1, 4, 16, ...) on its accumulated gradients; "
                        "default: every parameter at every step, as notebook 09. Models without a CMS ignore it")
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
    if overrides.get("cms_step_periods") is not None and not args.cms_multi_frequency:
        parser.error("--cms-step-periods needs --cms-multi-frequency (they are the optimizer-step periods of "
                     "multi-frequency training; the in-context periods are set with --model hope@PERIODS).")
    for name, periods in models:
        over = dict(overrides)
        if name in CMS_MODELS:
            over["multi_frequency"] = args.cms_multi_frequency
        else:  # nothing to clock
            over.pop("cms_step_periods", None)
        if periods is not None:
            over["cms_periods"] = periods
        try:
            cfgs.append(preset_config(args.task, name, args.preset, seeds=tuple(args.seeds), budget=args.budget, **over))
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
