"""``python -m nlteach.bench SUITE [options]``: run one benchmark suite and print measured ratios."""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
from pathlib import Path

import torch

import nlteach.bench as bench_pkg
from nlteach.config import get_device, get_preset


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
    for name, mod in sorted(suites().items()):
        p = sub.add_parser(name, help=getattr(mod, "DESCRIPTION", ""))
        p.add_argument("--preset", choices=["tiny", "laptop", "full"], default=None,
                       help="size preset (default: $NLTEACH_SIZE or laptop)")
        p.add_argument("--device", default=None, help="cpu or cuda (default: CUDA if available)")
        p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
        p.add_argument("--out", type=Path, default=None, help="write results JSON to DIR/bench_SUITE.json")
        mod.add_arguments(p)
    args = parser.parse_args(argv)
    if args.suite is None:
        parser.print_help()
        return 2
    args.preset = get_preset(args.preset)
    args.device = get_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = suites()[args.suite].run(args)
    result = {"suite": args.suite, "preset": args.preset, "device": str(args.device),
              "threads": torch.get_num_threads(), "torch": torch.__version__, **result}
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"bench_{args.suite}.json"
        path.write_text(json.dumps(result, indent=2))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
