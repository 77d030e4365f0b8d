"""Benchmarks: ``python -m nlteach.bench SUITE`` (suites: see ``python -m nlteach.bench --help``).

Each suite is a module ``nlteach/bench/<suite>.py`` defining

- ``DESCRIPTION: str``;
- ``add_arguments(parser: argparse.ArgumentParser) -> None``;
- ``run(args: argparse.Namespace) -> dict``: measures, prints a table of **ratios measured in
  this one run** (chunked vs naive, model vs Transformer, ...), and returns a JSON-able dict.

A suite refuses bad options before it measures anything by raising ``SystemExit(message)``, which
``python -m nlteach.bench`` reports as a usage error (exit status 2).

Absolute times depend on the machine and its load; the course only reports ratios of things timed
side by side in one process. Tests never time anything.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable

import torch

from nlteach.runs.tables import text_table  # noqa: F401 (the bench suites' tables)


def sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def measure(fn: Callable[[], object], *, device: torch.device | str = "cpu", warmup: int = 1,
            repeat: int = 5, min_time: float = 0.0) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeat`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    while len(times) < repeat or sum(times) < min_time:
        gc.collect()
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
        if len(times) >= 10 * max(repeat, 1):
            break
    return statistics.median(times)


def matmul_flops_per_s(n: int = 1024, *, device: torch.device | str = "cpu",
                       dtype: torch.dtype = torch.float32) -> float:
    """This machine's plain-matmul rate (FLOP/s) for an n x n x n product, measured now."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    t = measure(lambda: a @ b, device=device, warmup=2, repeat=7)
    return 2 * n**3 / t


def peak_memory(fn: Callable[[], object], *, device: torch.device | str = "cpu") -> int | None:
    """Peak extra allocator memory of ``fn()`` in bytes on CUDA; ``None`` on CPU.

    On CPU there is no reliable in-process peak (profiler events nest and double-count); measure
    the rise of the resident set in a fresh subprocess instead, as ``nlteach.bench.titans`` does.
    """
    dev = torch.device(device)
    if dev.type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats(dev)
    base = torch.cuda.memory_allocated(dev)
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated(dev) - base
