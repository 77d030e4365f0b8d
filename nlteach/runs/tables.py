"""Tables: markdown (README, notebooks) and aligned plain text (terminals), and ``mean ± std`` cells."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def pm(mean: float, std: float | None = None, digits: int = 2) -> str:
    """``"m ± s"``; ``"m"`` when there is no spread (std None or NaN: one seed); ``"n/a"`` for NaN."""
    if mean is None or math.isnan(mean):
        return "n/a"
    if std is None or math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def pm_summary(s: dict[str, Any], digits: int = 2) -> str:
    """A :func:`nlteach.runs.stats.summarize` dict as ``"m ± s"``, noting dropped (non-finite) seeds."""
    cell = pm(s["mean"], s["std"], digits)
    return cell + (f" ({s['dropped']} diverged)" if s.get("dropped") else "")


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return "" if v is None else str(v)


def text_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """An aligned plain-text table of ``rows`` (dicts), one column per name in ``columns``; floats
    with 3 significant digits, None as an empty cell."""
    widths = [max([len(c), *(len(_cell(r.get(c))) for r in rows)]) for c in columns]  # no rows: the header
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(_cell(r.get(c)).ljust(w) for c, w in zip(columns, widths, strict=True)) for r in rows]
    return "\n".join(lines)
