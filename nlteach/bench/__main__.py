"""``python -m nlteach.bench SUITE [options]``: run one benchmark suite and print measured ratios."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path

import nlteach.bench as bench_pkg
from nlteach.config import get_device
from nlteach.runs import cli
from nlteach.runs.io import atomic_write_json
from nlteach.runs.provenance import provenance


def suites() -> dict[str, object]:
    found = {}
    for mod in pkgutil.iter_modules(bench_pkg.__path__):
        if mod.name.startswith("_"):
            continue
        m = importlib.import_module(f"nlteach.bench.{mod.name}")
        if hasattr(m, "run") and hasattr(m, "add_arguments"):
            found[mod.name] = m
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nlteach.bench", description=__doc__)
    sub = parser.add_subparsers(dest="suite", metavar="SUITE")
    p_by_suite = {}
    for name, mod in sorted(suites().items()):
        p = p_by_suite[name] = sub.add_parser(name, help=getattr(mod, "DESCRIPTION", ""))
        cli.add_common_arguments(p, overwrite=False, out_help="write the results to OUT/bench_SUITE.json")
        mod.add_arguments(p)
    args = parser.parse_args(argv)
    if args.suite is None:
        parser.print_help()
        return 2
    cli.apply_common(p_by_suite[args.suite], args)
    args.device = get_device(args.device)
    try:
        result = suites()[args.suite].run(args)
    except SystemExit as e:  # a suite refusing its options says why in a message: a usage error (exit 2)
        if not isinstance(e.code, str):
            raise
        p_by_suite[args.suite].error(e.code)
    result = {"suite": args.suite, "preset": args.preset, **result,
              "provenance": provenance(device=args.device)}
    if args.out:
        path = atomic_write_json(Path(args.out) / f"bench_{args.suite}.json", result, indent=2)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
