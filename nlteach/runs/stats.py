"""Statistics over seeds: one helper for every table, figure and verdict.

:func:`summarize` gives the mean, the sample standard deviation and a 95% confidence interval for
the mean (Student's t with n - 1 degrees of freedom, from ``scipy.stats``) of the finite values, and
says how many values it dropped (NaN or infinite: a diverged seed) so that no table can hide a
failed seed. :func:`paired` does the same for per-seed differences ``a - b`` (seeds matched by
position), the comparison the course's verdicts use.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from scipy import stats as _scipy_stats

CONFIDENCE = 0.95


def summarize(values: Sequence[float | None], confidence: float = CONFIDENCE) -> dict[str, Any]:
    """``{"mean", "std", "n", "ci95": [lo, hi], "dropped"}`` of the finite values of ``values``.

    ``std`` is the sample standard deviation (NaN for a single value: one seed shows no spread),
    ``ci95`` the t interval of the mean (NaNs when n < 2), ``dropped`` the number of values left out
    (None, NaN or infinite). With no finite value every number is NaN.
    """
    finite = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)]
    n, dropped = len(finite), len(values) - len(finite)
    nan = math.nan
    if n == 0:
        return {"mean": nan, "std": nan, "n": 0, "ci95": [nan, nan], "dropped": dropped}
    mean = statistics.fmean(finite)
    if n == 1:
        return {"mean": mean, "std": nan, "n": 1, "ci95": [nan, nan], "dropped": dropped}
    std = statistics.stdev(finite)
    half = float(_scipy_stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "n": n, "ci95": [mean - half, mean + half], "dropped": dropped}


def paired(a: Sequence[float | None], b: Sequence[float | None], confidence: float = CONFIDENCE) -> dict[str, Any]:
    """:func:`summarize` of the differences ``a[i] - b[i]`` (the same seed i in both), plus
    ``"diffs"`` (None where either value is not finite) and ``"sign"``: ``+1``/``-1`` when the whole
    interval lies above/below 0, else ``0``."""
    if len(a) != len(b):
        raise ValueError(f"paired() needs one value per seed in both lists, got {len(a)} and {len(b)} values.")

    def ok(x: Any) -> bool:
        return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)

    diffs = [float(x) - float(y) if ok(x) and ok(y) else None for x, y in zip(a, b, strict=True)]
    out = summarize(diffs, confidence)
    lo, hi = out["ci95"]
    out["sign"] = 1 if lo > 0 else -1 if hi < 0 else 0
    out["diffs"] = diffs
    return out
