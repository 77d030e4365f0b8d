"""Cells shared by the experiments' tables and verdicts (the rest is in :mod:`nlteach.runs.tables`)."""

from __future__ import annotations

import math
from typing import Any


def ci_text(d: dict[str, Any], digits: int = 3) -> str:
    """A :func:`nlteach.runs.stats.paired` (or ``summarize``) dict as ``"+m [+lo, +hi]"`` (the mean
    and its 95% interval); ``"+m (one seed: no interval)"`` for a single seed, ``"n/a"`` for none."""
    lo, hi = d["ci95"]
    if math.isnan(d["mean"]):
        return "n/a"
    if math.isnan(lo):
        return f"{d['mean']:+.{digits}f} (one seed: no interval)"
    return f"{d['mean']:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"
