"""Checks on the notebook pairs (used by the tests and by ``make sync``'s users).

A notebook is a pair ``notebooks/NN_topic.ipynb`` + ``notebooks/NN_topic.py`` (jupytext percent).
The committed ``.ipynb`` carries no outputs; both sides hold the same cells; the first code cell is
the Colab set-up cell from :mod:`tools.colab`; exercise stubs sit in cells tagged ``exercise``.
"""

from __future__ import annotations

import json
from pathlib import Path

from tools.colab import SETUP_CELL


def _cells_from_ipynb(path: Path) -> list[tuple[str, str]]:
    nb = json.loads(path.read_text())
    return [(c["cell_type"], "".join(c["source"]).strip()) for c in nb["cells"]]


def _cells_from_py(path: Path) -> list[tuple[str, str]]:
    import jupytext

    nb = jupytext.read(path)
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def pair_problems(ipynb: Path) -> list[str]:
    """Everything wrong with one pair, as readable sentences (empty list = fine)."""
    problems = []
    py = ipynb.with_suffix(".py")
    if not py.exists():
        return [f"{ipynb.name} has no jupytext pair {py.name} (run `make sync`)."]
    nb = json.loads(ipynb.read_text())
    for i, c in enumerate(nb["cells"]):
        if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count") is not None):
            problems.append(f"{ipynb.name}: cell {i} has outputs or an execution count; "
                            "commit notebooks without outputs (jupyter nbconvert --clear-output).")
            break
    a, b = _cells_from_ipynb(ipynb), _cells_from_py(py)
    if a != b:
        n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        problems.append(f"{ipynb.name} and {py.name} differ (first at cell {n}; {len(a)} vs {len(b)} "
                        "cells): run `make sync`.")
    code = [src for kind, src in a if kind == "code"]
    if not code or code[0] != SETUP_CELL.strip():
        problems.append(f"{ipynb.name}: the first code cell is not the Colab set-up cell "
                        "(run `python -m tools.colab` then `make sync`).")
    return problems


def exercise_cells(ipynb: Path) -> list[str]:
    """Sources of the cells tagged ``exercise`` (the stubs learners fill in)."""
    nb = json.loads(ipynb.read_text())
    return ["".join(c["source"]) for c in nb["cells"]
            if c["cell_type"] == "code" and "exercise" in c.get("metadata", {}).get("tags", [])]
