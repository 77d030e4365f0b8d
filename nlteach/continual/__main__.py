"""``python -m nlteach.continual``: forgetting experiments from the command line (see ``--help``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from matplotlib.figure import Figure

from nlteach.continual.learners import available_learners
from nlteach.continual.plots import draw_comparison
from nlteach.continual.runner import ContinualConfig, format_table, preset_config, run
from nlteach.continual.streams import STREAMS
from nlteach.runs.cli import apply_common
from nlteach.runs.commands import add_run_arguments, check_run_folders, run_guarded, typed_settings
from nlteach.runs.io import read_json
from nlteach.runs.provenance import command_line

SETTINGS_SKIP = ("dataset", "method", "preset", "seeds", "tuning")
"""Settings with an option of their own (``--dataset``, ``--method``, the common options) or none
(the tuning record follows from the data set and the preset)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m nlteach.continual",
        description="Continual learning on a task stream: trains each method once per seed, writes "
                    "results.json (config, per-seed accuracy matrices, summary, provenance) and figures. "
                    "Rerun the same command to resume: finished seeds are kept, an interrupted seed "
                    "continues from its last finished task; other settings in the same --out are refused "
                    "(the error names them) unless --overwrite.",
        epilog="Learners: finetune, ewc, replay, lwf, cms, hope (in-context self-modifying memory reset per "
               "input + CMS), hope-persistent (the same memory carried across the stream), joint. Each learner's "
               "own knobs come from validation-split tuning with the same budget (python -m "
               "nlteach.continual.tune); results.json records the method's record under config.tuning.")
    p.add_argument("--dataset", required=True, choices=STREAMS)
    p.add_argument("--method", nargs="+", default=["finetune"], choices=[*available_learners(), "all"],
                   help="one or more learners, or 'all'. With several, each writes to OUT/<method>/, and OUT/comparison.png "
                        "draws them with every other learner already in OUT (same stream and preset).")
    add_run_arguments(p, ContinualConfig, skip=SETTINGS_SKIP,
                      what="the run (ContinualConfig) or of its learners (LearnerConfig)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = apply_common(parser, parser.parse_args(argv))
    methods = available_learners() if "all" in args.method else list(dict.fromkeys(args.method))
    overrides = typed_settings(args)
    out = Path(args.out)
    command = command_line(None if argv is None else ["python", "-m", "nlteach.continual", *argv])
    try:
        cfgs = {m: preset_config(args.dataset, m, args.preset, seeds=tuple(args.seeds), **overrides) for m in methods}
    except ValueError as e:  # a setting out of range
        parser.error(str(e))
    rc = check_run_folders([(out if len(methods) == 1 else out / m, cfg.settings()) for m, cfg in cfgs.items()],
                           overwrite=args.overwrite)
    if rc:
        return rc
    results, rc = run_guarded(lambda: {
        m: run(cfg, out if len(methods) == 1 else out / m, device=args.device, progress=not args.no_progress,
               threads=args.threads, command=command, overwrite=args.overwrite) for m, cfg in cfgs.items()})
    if rc:
        return rc
    print(f"\n{args.dataset}, preset {args.preset}, seeds {args.seeds}; results in {out}")
    print(format_table(results))
    if len(methods) > 1:
        shown = figure_results(out, results)
        fig = Figure(figsize=(3 + 1.6 * len(shown), 3.2), layout="constrained")
        draw_comparison(fig, shown)
        fig.savefig(out / "comparison.png", dpi=110)
    return 0


def figure_results(out: Path, results: dict[str, dict]) -> dict[str, dict]:
    """What ``OUT/comparison.png`` draws: the learners just run, and every other learner whose finished
    run is in ``OUT/<learner>/results.json`` for the same stream and preset (a stream's learners may be
    run by several commands), in the order of :func:`available_learners`."""
    first = next(iter(results.values()))["config"]
    found = dict(results)
    for m in available_learners():
        path = out / m / "results.json"
        if m in found or not path.is_file():
            continue
        try:
            r = read_json(path)
        except ValueError:  # unreadable: not drawn (its own command reports it)
            continue
        cfg = r.get("config", {}) if isinstance(r, dict) else {}
        if cfg.get("dataset") == first.get("dataset") and cfg.get("preset") == first.get("preset"):
            found[m] = r
    order = [*available_learners(), *results]
    return {m: found[m] for m in sorted(found, key=order.index)}


if __name__ == "__main__":
    raise SystemExit(main())
