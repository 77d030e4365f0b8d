"""Cells shared by the experiments' tables and verdicts (the rest is in :mod:`nlteach.runs.tables`)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nlteach.runs.commands import run_guarded


def ci_text(d: dict[str, Any], digits: int = 3) -> str:
    """A :func:`nlteach.runs.stats.paired` (or ``summarize``) dict as ``"+m [+lo, +hi]"`` (the mean
    and its 95% interval); ``"+m (one seed: no interval)"`` for a single seed, ``"n/a"`` for none."""
    lo, hi = d["ci95"]
    if math.isnan(d["mean"]):
        return "n/a"
    if math.isnan(lo):
        return f"{d['mean']:+.{digits}f} (one seed: no interval)"
    return f"{d['mean']:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def run_and_report(run: Callable[[], dict[str, Any]], out: Path, headline: Callable[[dict[str, Any]], str],
                   table: Callable[[dict[str, Any]], str], verdict: Callable[[dict[str, Any]], str]) -> int:
    """The end of an experiment's command line: ``run()`` under the resume policy (a refused resume
    exits with 2, Ctrl-C with 130: :func:`nlteach.runs.commands.run_guarded`), then the headline (with
    the seconds taken and torch's threads), the summary table and the verdict; returns the exit code."""
    t0 = time.perf_counter()
    results, code = run_guarded(run)
    if results is None:
        return code
    print(f"{headline(results)} ({time.perf_counter() - t0:.0f} s, torch threads {results['provenance']['threads']})")
    print(table(results))
    print(verdict(results))
    print(f"wrote {out / 'results.json'}")
    return 0
