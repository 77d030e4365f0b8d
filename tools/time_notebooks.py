"""Measure how long each course notebook takes top to bottom at a size preset (issue 20 item 5).

    python -m tools.time_notebooks --preset laptop --out results/notebook_times_laptop \\
        [--notebooks 00 01 ...] [--note "two background training runs on the same 2 cores"]

Each committed notebook (``notebooks/NN_*.ipynb``, or ``--notebooks-dir``) is copied, outputs
dropped, into a temporary folder and executed there cell by cell on a fresh kernel (nbclient, the
engine nbval uses), so ``notebooks/`` is never modified. The kernel gets ``NLTEACH_SIZE=<preset>``,
``MPLBACKEND=agg``, ``$NLTEACH_DATA_MIRROR`` passed through, ``$NLTEACH_TRAIN_LIVE`` removed (the
time measured is the learner's default path: live training off beyond ``tiny``) and this checkout
first on ``PYTHONPATH`` (the code timed is the code of the recorded commit).

For each notebook ``results.json`` records the wall seconds (kernel start to last cell), the status
(``ok``, ``error`` with the failing cell's index and exception name, or ``timeout`` with the cell
that was running), the number of cells, the slowest code cells, the kernel's torch threads, the
1-minute load average before and after, the ``--note`` and the commit. The file also holds the
machine (CPU count, torch threads) and the provenance of the last invocation
(:func:`nlteach.runs.provenance.provenance`). It is written atomically after EACH notebook: a rerun
skips the notebooks already measured ``ok`` at the same preset (``--overwrite`` measures them
again), so an interrupted measurement resumes.

The syllabus reads the file (:func:`nlteach.course.nb00_welcome.measured_times`); after committing
it, run ``python -m tools.syllabus`` to put the times in notebook 00, the objectives cells and the
README. Exit status: 0 when every notebook measured is ``ok``, 1 otherwise, 2 for a refused run.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nbformat
import torch
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from nlteach.config import PRESETS
from nlteach.runs.io import atomic_write_json, read_json
from nlteach.runs.provenance import command_line, git_commit, git_dirty, provenance

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
PATTERN = "[0-9][0-9]_*.ipynb"
DEFAULT_TIMEOUT_MINUTES = 15.0
KIND = "notebook_times"
LOAD_WARNING = 0.5  # warn when the 1-minute load average exceeds this fraction of the CPUs
SLOWEST = 5  # how many of the slowest code cells each record keeps


def notebook_paths(folder: Path = NOTEBOOKS, selected: list[str] | None = None) -> list[Path]:
    """The notebooks ``NN_*.ipynb`` of ``folder`` in order; ``selected`` (``["00", "09"]``) keeps
    those numbers only, and an unknown number is a ``ValueError`` naming the ones there are."""
    paths = sorted(Path(folder).glob(PATTERN))
    if not selected:
        return paths
    by_nb = {p.name[:2]: p for p in paths}
    unknown = [s for s in selected if s not in by_nb]
    if unknown:
        raise ValueError(f"no notebook {', '.join(unknown)} in {folder}; it has {', '.join(by_nb) or 'none'}.")
    return [by_nb[s] for s in sorted(set(selected))]


def kernel_environment(preset: str, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The kernel's environment: ``environ`` (default: this process's) with the preset, the agg
    backend, no ``NLTEACH_TRAIN_LIVE`` and this checkout first on ``PYTHONPATH``."""
    env = dict(os.environ if environ is None else environ)
    env["NLTEACH_SIZE"] = preset
    env["MPLBACKEND"] = "agg"
    env.pop("NLTEACH_TRAIN_LIVE", None)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != ROOT]
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *paths])
    return env


def load_average() -> float | None:
    """The 1-minute load average (None where the platform has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


THREADS_CODE = "import torch\nprint(torch.get_num_threads())"


def _kernel_threads(client: NotebookClient) -> int | None:
    """torch's thread count inside the notebook's kernel (None if it cannot be read)."""
    cell = nbformat.v4.new_code_cell(THREADS_CODE)
    client.nb.cells.append(cell)  # nbclient stores the executed cell back at its index
    try:
        client.execute_cell(cell, len(client.nb.cells) - 1)
        text = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
        return int(text.split()[-1])
    except Exception:  # the kernel died or printed something else: not worth failing the measurement
        return None
    finally:
        client.nb.cells.pop()


def time_notebook(path: Path, *, preset: str, timeout: float, env: dict[str, str] | None = None,
                  kernel_name: str = "python3") -> dict[str, Any]:
    """Execute a copy of ``path`` top to bottom on a fresh kernel; the record described in the
    module docstring (without the note and the commit, which :func:`measure` adds)."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    record: dict[str, Any] = {"notebook": path.name, "preset": preset, "status": "ok", "failed_cell": None,
                              "exception": None, "cells": len(nb.cells), "code_cells": len(code),
                              "timeout_seconds": timeout, "load_before": load_average()}
    cell_seconds: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="nlteach-time-") as tmp:
        shutil.copy2(path, Path(tmp) / path.name)  # what the kernel's working folder holds: the notebook
        client = NotebookClient(nb, timeout=max(1, math.ceil(timeout)), kernel_name=kernel_name,
                                resources={"metadata": {"path": tmp}})
        t0 = time.perf_counter()
        deadline = t0 + timeout
        try:
            with client.setup_kernel(env=kernel_environment(preset, env), cwd=tmp):
                record["kernel_start_seconds"] = round(time.perf_counter() - t0, 2)
                for i in code:
                    remaining = deadline - time.perf_counter()
                    if remaining <= 0:
                        record.update(status="timeout", failed_cell=i, exception="CellTimeoutError")
                        break
                    client.timeout = max(1, math.ceil(remaining))
                    c0 = time.perf_counter()
                    try:
                        client.execute_cell(nb.cells[i], i)
                    except CellTimeoutError:
                        record.update(status="timeout", failed_cell=i, exception="CellTimeoutError")
                        break
                    except CellExecutionError as e:
                        record.update(status="error", failed_cell=i, exception=e.ename)
                        break
                    finally:
                        cell_seconds[i] = round(time.perf_counter() - c0, 2)
                record["seconds"] = round(time.perf_counter() - t0, 2)
                if record["status"] == "ok":
                    record["torch_threads"] = _kernel_threads(client)
        except DeadKernelError:
            record.update(status="error", failed_cell=max(cell_seconds, default=None), exception="DeadKernelError")
        except RuntimeError as e:  # the kernel did not start
            record.update(status="error", exception=f"kernel did not start: {type(e).__name__}: {e}")
    record.setdefault("seconds", round(time.perf_counter() - t0, 2))
    record.setdefault("torch_threads", None)
    record["slowest_cells"] = sorted(([i, s] for i, s in cell_seconds.items()), key=lambda x: -x[1])[:SLOWEST]
    record["load_after"] = load_average()
    return record


def describe(name: str, r: dict[str, Any]) -> str:
    """One line for a record: ``09_hope  ok  4.2 min  (57 cells; load 1.9 -> 2.1)``."""
    status = r["status"] if r["status"] == "ok" else f"{r['status']} at cell {r['failed_cell']} ({r['exception']})"
    return (f"{name:<28} {status}  {r['seconds'] / 60:.1f} min  ({r['cells']} cells; load "
            f"{r['load_before']} -> {r['load_after']}; torch threads {r['torch_threads']})")


def measure(out: Path, *, preset: str, notebooks_dir: Path = NOTEBOOKS, selected: list[str] | None = None,
            timeout: float = DEFAULT_TIMEOUT_MINUTES * 60, note: str = "", overwrite: bool = False,
            command: str | None = None, kernel_name: str = "python3") -> dict[str, Any]:
    """Measure the notebooks (resuming ``out/results.json``); returns the results written there."""
    out = Path(out)
    file = out / "results.json"
    paths = notebook_paths(notebooks_dir, selected)
    results: dict[str, Any] = read_json(file) if file.exists() else {}
    if results and (results.get("kind") != KIND or results.get("preset") != preset):
        if not overwrite:
            raise ValueError(f"{file} holds {results.get('kind')!r} at preset {results.get('preset')!r}, not "
                             f"notebook times at {preset!r}: pass --overwrite to start it again, or another --out.")
        results = {}
    command = command if command is not None else command_line()
    results.update(kind=KIND, preset=preset, note=note, notebooks_dir=_shown(notebooks_dir),
                   machine={"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "platform": platform.platform(), "processor": platform.processor() or None},
                   provenance=provenance(command=command, device="cpu"))
    done = results.setdefault("notebooks", {})
    commit = results["provenance"]["git_commit"]
    for path in paths:
        name = path.stem
        old = done.get(name)
        if old and old.get("status") == "ok" and old.get("preset") == preset and not overwrite:
            print(f"{name:<28} skipped: measured ok at commit {str(old.get('git_commit'))[:8]} "
                  f"({old['seconds'] / 60:.1f} min; --overwrite measures it again)", flush=True)
            continue
        load = load_average()
        if load is not None and load > LOAD_WARNING * (os.cpu_count() or 1) and not note:
            print(f"warning: the 1-minute load average is {load} on {os.cpu_count()} CPUs; say why with --note",
                  flush=True)
        record = time_notebook(path, preset=preset, timeout=timeout, kernel_name=kernel_name)
        record.update(note=note, git_commit=commit, git_dirty=results["provenance"]["git_dirty"],
                      finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        done[name] = record
        results["notebooks"] = dict(sorted(done.items()))
        atomic_write_json(file, results)
        print(describe(name, record), flush=True)
    if not file.exists():  # nothing measured (every notebook skipped cannot happen without a file)
        atomic_write_json(file, results)
    return results


def _shown(folder: Path) -> str:
    folder = Path(folder).resolve()
    return folder.relative_to(ROOT).as_posix() if ROOT in folder.parents or folder == ROOT else str(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=PRESETS, default="laptop", help="size preset (default: laptop)")
    parser.add_argument("--out", type=Path, required=True, help="the folder of results.json")
    parser.add_argument("--notebooks", nargs="+", metavar="NN", help="only these notebooks (default: all)")
    parser.add_argument("--notebooks-dir", type=Path, default=NOTEBOOKS, help="where the notebooks are")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_MINUTES,
                        help=f"minutes per notebook (default {DEFAULT_TIMEOUT_MINUTES:g})")
    parser.add_argument("--note", default="", help="what else the machine was doing (shown in the syllabus)")
    parser.add_argument("--overwrite", action="store_true", help="measure again the notebooks already measured")
    args = parser.parse_args(argv)
    dirty = git_dirty()
    if dirty:
        print(f"warning: uncommitted changes ({', '.join(dirty[:5])}{' ...' if len(dirty) > 5 else ''}): the "
              "results file will not count as clean; commit first", flush=True)
    try:
        results = measure(args.out, preset=args.preset, notebooks_dir=args.notebooks_dir, selected=args.notebooks,
                          timeout=args.timeout * 60, note=args.note, overwrite=args.overwrite,
                          command=command_line(None if argv is None else ["python", "-m", "tools.time_notebooks",
                                                                          *argv]))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out / 'results.json'} (commit {str(git_commit())[:8]})")
    wanted = {p.stem for p in notebook_paths(args.notebooks_dir, args.notebooks)}
    return 0 if all(r["status"] == "ok" for n, r in results["notebooks"].items() if n in wanted) else 1


if __name__ == "__main__":
    sys.exit(main())
