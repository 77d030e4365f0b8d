"""Files that survive interrupts: atomic writes, verified checkpoints, JSON and JSON lines.

Every write goes to a temporary file beside the target (``.<name>.<random>.tmp``), is flushed to
disk, then renamed over the target (``os.replace`` is atomic on POSIX and Windows): a crash or
Ctrl-C leaves the previous file or none, never a partial one. A kill during the write can leave
the temporary file behind; :func:`remove_stale_temporaries` deletes such leftovers (the run
folders call it once they hold their lock, :mod:`nlteach.runs.lock`).

**Checkpoints** (:func:`atomic_save`, :func:`load_checkpoint`):

- read with ``torch.load(weights_only=True)``: a file holds tensors and plain Python data only, so
  loading one cannot run code (a crafted pickle is refused with :class:`CorruptFileError`);
- each ``<name>.pt`` gets a sidecar ``<name>.pt.sha256`` (the SHA-256 of the file, in the format of
  ``sha256sum``, so ``sha256sum -c checkpoint.pt.sha256`` checks it too), written after the
  checkpoint; loading verifies it, and a mismatch is a :class:`CorruptFileError` naming the file;
- the previous checkpoint is kept as ``<name>.prev.pt`` (with its sidecar) when a new one is
  written, but only if it verifies: a damaged checkpoint never replaces a good previous one. When
  the newest checkpoint is damaged (checksum, truncation, not loadable) and the previous one
  verifies, :func:`load_checkpoint` returns the previous one with a :class:`CheckpointWarning`
  (the run redoes the work since); when both are damaged, the error names both files. A checkpoint
  without a sidecar (written before checksums existed, or by a kill between the two writes) loads
  with a :class:`CheckpointWarning` that it could not be verified.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import pickle
import re
import secrets
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch


class CorruptFileError(ValueError):
    """A results or checkpoint file exists but cannot be read (truncated, corrupted, not ours)."""


class CheckpointWarning(UserWarning):
    """A checkpoint was loaded with a caveat: the previous one was used, or none could be verified."""


CHECKSUM_SUFFIX = ".sha256"
_STALE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # the names of tempfile.mkstemp(prefix=".<name>.", suffix=".tmp")


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


def json_safe(x: Any) -> Any:
    """``x`` (nested dicts and lists) with every non-finite float replaced by ``None``: strict JSON
    has no NaN or infinity (a summary of one seed has no spread)."""
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [json_safe(v) for v in x]
    return None if isinstance(x, float) and not math.isfinite(x) else x


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 1) -> Path:
    """Write ``obj`` as JSON (with a final newline) to ``path`` atomically; returns the path."""
    return atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files (``.<name>.<random>.tmp``) that writes killed mid-way left in
    ``folder`` (not its subfolders); returns what was deleted. Call it only while no other process
    writes there (holding the folder's lock): a live writer's temporary file looks the same."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if _STALE.match(p.name) and p.is_file() and not p.is_symlink()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


# -- checkpoints ---------------------------------------------------------------------------------


def checksum_path(path: str | os.PathLike) -> Path:
    """The sidecar holding the SHA-256 of the checkpoint ``path`` (``<name>.pt.sha256``)."""
    path = Path(path)
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def previous_path(path: str | os.PathLike) -> Path:
    """Where the previous checkpoint of ``path`` is kept (``checkpoint.pt`` -> ``checkpoint.prev.pt``)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def _copy_into_place(src: Path, dst: Path) -> None:
    """Make ``dst`` a copy of ``src`` atomically (a hard link where the file system has them); ``src`` stays."""
    tmp = dst.with_name(f".{dst.name}.{secrets.token_hex(4)}.tmp")
    try:
        try:
            os.link(src, tmp)
        except OSError:  # no hard links here (FAT, some network file systems): copy
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _recorded_checksum(path: Path) -> str | None:
    """The SHA-256 recorded beside ``path`` (None: no sidecar). A malformed sidecar is an error."""
    side = checksum_path(path)
    try:
        text = side.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise CorruptFileError(f"the checksum file {side} cannot be read ({e}).") from None
    digest = text.split()[0].lower() if text.split() else ""
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise CorruptFileError(f"the checksum file {side} does not hold a SHA-256; it is corrupted.")
    return digest


def _signature(path: Path) -> tuple:
    """What changes when ``path`` or its sidecar is replaced (inode, size, modification time)."""
    def stat(p: Path) -> tuple | None:
        try:
            st = p.stat()
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns
    return stat(path), stat(checksum_path(path))


def _verified_bytes(path: Path) -> tuple[bytes, bool]:
    """The bytes of the checkpoint ``path`` and whether a checksum verified them; a mismatch raises."""
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}.")
    for _ in range(5):  # a reader without the folder's lock (load_model during a run) may meet a write
        before = _signature(path)
        data = path.read_bytes()
        expected = _recorded_checksum(path)
        if _signature(path) == before:
            break
    if expected is not None:
        got = hashlib.sha256(data).hexdigest()
        if got != expected:
            raise CorruptFileError(f"the checkpoint {path} fails its checksum (SHA-256 {got[:16]}..., recorded "
                                   f"{expected[:16]}... in {checksum_path(path).name}): it was damaged or changed "
                                   "after it was written.")
    return data, expected is not None


def _verifies(path: Path) -> bool:
    """Whether ``path`` has a sidecar and matches it (what may become the previous checkpoint)."""
    try:
        return _verified_bytes(path)[1]
    except (OSError, CorruptFileError):
        return False


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically, with its SHA-256 in ``<name>.sha256`` beside it;
    a current checkpoint that verifies is kept as :func:`previous_path` first. Returns the path.

    Order (so that a kill at any point leaves a loadable state): the new file is written to a
    temporary file; the current one (if it verifies) is copied to ``<stem>.prev.pt``, then its
    sidecar; the current sidecar is removed; the new file is renamed into place; its sidecar is
    written."""
    path = Path(path)
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and _verifies(path):
        prev = previous_path(path)
        checksum_path(prev).unlink(missing_ok=True)
        _copy_into_place(path, prev)
        _copy_into_place(checksum_path(path), checksum_path(prev))
    checksum_path(path).unlink(missing_ok=True)
    _atomic_write(path, lambda f: f.write(data))
    atomic_write_text(checksum_path(path), f"{digest}  {path.name}\n")
    return path


def _load_one(path: Path) -> dict:
    data, verified = _verified_bytes(path)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        raise CorruptFileError(f"the checkpoint {path} cannot be read ({type(e).__name__}: {e}); it is "
                               "truncated, corrupted or was not written by nlteach.") from None
    if not verified:
        warnings.warn(f"the checkpoint {path} has no checksum file ({checksum_path(path).name}): it was written "
                      "before checksums existed, or the write was cut short; it could not be verified.",
                      CheckpointWarning, stacklevel=3)
    return state


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by :func:`atomic_save`, verified against its checksum, with
    ``weights_only=True`` (tensors and plain data only). A missing file raises
    ``FileNotFoundError``; a damaged or unreadable one :class:`CorruptFileError` naming it, unless
    the previous checkpoint (:func:`previous_path`) verifies: that one is returned, with a
    :class:`CheckpointWarning` naming both."""
    path = Path(path)
    prev = previous_path(path)
    try:
        return _load_one(path)
    except CorruptFileError as newest:
        if not prev.exists():
            raise CorruptFileError(f"{newest} Delete it (and {checksum_path(path).name}) to start that run "
                                   "again.") from None
        try:
            state = _load_one(prev)
        except (CorruptFileError, FileNotFoundError) as e:
            raise CorruptFileError(f"{newest} The previous checkpoint cannot be used either: {e} Delete both "
                                   "to start that run again.") from None
        warnings.warn(f"{newest} Using the previous checkpoint {prev} instead: the work done after it is "
                      "done again.", CheckpointWarning, stacklevel=2)
        return state


def remove_checkpoint(path: str | os.PathLike) -> None:
    """Delete the checkpoint ``path``, its previous one and their checksum files (those that exist)."""
    path = Path(path)
    for p in (path, checksum_path(path), previous_path(path), checksum_path(previous_path(path))):
        p.unlink(missing_ok=True)


# -- JSON ----------------------------------------------------------------------------------------


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


def read_jsonl(path: str | os.PathLike) -> tuple[list[Any], bool]:
    """The records of the JSON-lines file ``path`` (blank lines skipped) and whether a partial last
    line was dropped: a file appended to line by line and killed mid-write ends in a partial line,
    which is not an error. A bad line before the last one is a :class:`CorruptFileError` naming the
    file and the line."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist.")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise CorruptFileError(f"{path} is not UTF-8 text ({e}); it is corrupted.") from None
    numbered = [(i, ln) for i, ln in enumerate(lines, 1) if ln.strip()]
    records, dropped = [], False
    for j, (i, ln) in enumerate(numbered):
        try:
            records.append(json.loads(ln))
        except json.JSONDecodeError as e:
            if j < len(numbered) - 1:
                raise CorruptFileError(f"{path}, line {i}, is not valid JSON ({e}); the file is corrupted.") from None
            dropped = True  # the last line, cut short by a kill mid-write
    return records, dropped
