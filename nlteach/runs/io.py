"""Files that survive interrupts: atomic writes, checkpoints, JSON.

Every write goes to a temporary file beside the target, is flushed to disk, then renamed over the
target (``os.replace`` is atomic on POSIX and Windows): a crash or Ctrl-C leaves the previous file
or none, never a partial one. Checkpoints are read with ``torch.load(weights_only=True)``: a file
can hold tensors and plain Python data only, so loading one cannot run code.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch


class CorruptFileError(ValueError):
    """A results or checkpoint file exists but cannot be read (truncated, corrupted, not ours)."""


def _atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    return _atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 1) -> Path:
    """Write ``obj`` as JSON (with a final newline) to ``path`` atomically; returns the path."""
    return atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically; returns the path."""
    return _atomic_write(path, lambda f: torch.save(obj, f))


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by :func:`atomic_save` (``weights_only=True``: tensors and plain
    data only). A missing file raises ``FileNotFoundError``; an unreadable one
    :class:`CorruptFileError`; both name the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        raise CorruptFileError(f"the checkpoint {path} cannot be read ({type(e).__name__}: {e}); it is "
                               "truncated, corrupted or was not written by nlteach. Delete it to start "
                               "that run again.") from None


def read_json(path: str | os.PathLike) -> Any:
    """Parse the JSON file ``path``; errors name the file (``FileNotFoundError``,
    :class:`CorruptFileError` for a truncated or invalid file)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptFileError(f"{path} is not valid JSON ({e}); it is truncated or corrupted.") from None
