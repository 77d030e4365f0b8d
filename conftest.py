"""Root pytest set-up, shared by tests/ and the notebooks nbval executes: tiny preset, the shared
data mirror, the learner's working copy left out, and a per-notebook timing summary (each
notebook's budget at tiny is 90 s)."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from pathlib import Path

import pytest

from tools.lab import WORK, default_data_mirror

ROOT = Path(__file__).resolve().parent
os.environ.setdefault("NLTEACH_SIZE", "tiny")
os.environ.setdefault("MPLBACKEND", "agg")
_mirror = default_data_mirror(ROOT)  # the same default as `make lab`
if "NLTEACH_DATA_MIRROR" not in os.environ and _mirror is not None:
    os.environ["NLTEACH_DATA_MIRROR"] = str(_mirror)
# The learner's working copy (`make lab`, git-ignored) is theirs: never collected, even by `pytest .`.
collect_ignore = [WORK.name]

_notebook_seconds: dict[str, float] = defaultdict(float)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    t0 = time.perf_counter()
    yield
    if item.path.suffix == ".ipynb":
        _notebook_seconds[item.path.name] += time.perf_counter() - t0


def pytest_terminal_summary(terminalreporter):
    if _notebook_seconds:
        terminalreporter.section("notebook execution time at the tiny preset (budget: 90 s each)")
        for name, sec in sorted(_notebook_seconds.items()):
            flag = "" if sec < 90 else "   <-- over budget"
            terminalreporter.write_line(f"{sec:7.1f} s  {name}{flag}")
