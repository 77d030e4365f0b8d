"""What produced a result, recorded beside it.

Every ``results.json`` the project writes carries a ``provenance`` block (:func:`provenance`):
the git commit of the checkout, the files with uncommitted changes when the numbers were made
(``[]`` = a clean tree), the command line, the versions of Python and torch, the device, the CPU
threads and the host. A :class:`Clock` adds the wall and CPU seconds the run took.
"""

from __future__ import annotations

import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

_REPO = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=20, cwd=_REPO,
                              check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def git_commit() -> str | None:
    """The commit of the checkout that holds this library (None outside a git checkout)."""
    out = _git("rev-parse", "HEAD")
    return out.strip() or None if out is not None else None


def git_dirty() -> list[str] | None:
    """Files of the checkout with uncommitted changes, untracked files included, except under
    ``results/`` (where runs write their own output). ``[]``: a clean tree; None: not a checkout."""
    out = _git("status", "--porcelain", "--untracked-files=all", "--", ".", ":(exclude)results")
    if out is None:
        return None
    return sorted(line[3:] for line in out.splitlines() if line.strip())


def command_line(argv: list[str] | None = None) -> str:
    """The command that started this process as a shell line (``python -m pkg.mod --opt ...`` for a
    module run with ``-m``), or ``argv`` joined when it is given."""
    if argv is not None:
        return shlex.join(argv)
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:
        return shlex.join(["python", "-m", spec.name.removesuffix(".__main__"), *sys.argv[1:]])
    return shlex.join(sys.argv)


def provenance(command: str | None = None, device: torch.device | str | None = None) -> dict[str, Any]:
    """The provenance block of a results file. ``command``: the command line (default: this
    process's); ``device``: where the numbers were computed."""
    return {
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "command": command if command is not None else command_line(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": None if device is None else str(device),
        "threads": torch.get_num_threads(),
        "host": platform.node(),
    }


class Clock:
    """Wall and CPU seconds since creation (or since the values it was resumed from)."""

    def __init__(self, wall: float = 0.0, cpu: float = 0.0):
        self._wall0, self._cpu0 = time.perf_counter() - wall, time.process_time() - cpu

    @property
    def wall(self) -> float:
        return time.perf_counter() - self._wall0

    @property
    def cpu(self) -> float:
        return time.process_time() - self._cpu0

    def as_dict(self) -> dict[str, float]:
        return {"wall_seconds": round(self.wall, 3), "cpu_seconds": round(self.cpu, 3)}
