"""One run per folder: an exclusive lock on a run folder, held for the whole run.

Two processes writing one folder would interleave their checkpoints and results. Every run folder
(``python -m nlteach.train --out``, every :class:`~nlteach.runs.rundir.RunDir`) is therefore
locked while its run is going: :class:`FolderLock` takes an operating-system lock on the file
``<folder>/.lock`` (through the ``filelock`` package: ``flock`` on POSIX, ``LockFileEx`` on
Windows), and a second process that opens the folder fails at once with :class:`FolderInUse`,
which names the folder. The operating system drops the lock when its process ends, however it
ends (even killed), so a leftover ``.lock`` file never blocks a later run; the file itself stays.

Within one process the lock is shared: opening a folder that this process already holds (a
notebook cell re-run after an interrupt, a resumed call while the interrupted one's objects are
still alive) just counts one more holder, and the lock goes when the last holder releases it.
"""

from __future__ import annotations

import os
import threading
import weakref
from pathlib import Path

from filelock import FileLock, Timeout

LOCK_NAME = ".lock"


class FolderInUse(RuntimeError):
    """Another process holds the lock of a run folder (it is running there)."""


_registry: dict[str, list] = {}  # resolved folder -> [FileLock, number of holders in this process]
_registry_guard = threading.Lock()


def _release(key: str) -> None:
    with _registry_guard:
        entry = _registry.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del _registry[key]
            entry[0].release(force=True)


class FolderLock:
    """Hold the lock of ``folder`` (created if needed) until :meth:`release`, the end of a
    ``with`` block, or this object's garbage collection. Raises :class:`FolderInUse` at once when
    another process holds it."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / LOCK_NAME
        key = str(self.folder.resolve())
        with _registry_guard:
            entry = _registry.get(key)
            if entry is None:
                lock = FileLock(self.path, timeout=0, thread_local=False)
                try:
                    lock.acquire()
                except Timeout:
                    raise FolderInUse(
                        f"{self.folder} is in use: another process holds its lock ({self.path}), so a run is "
                        "going on there. Two runs writing one folder would mix their files: wait for that run "
                        "to end (or stop it), or choose another --out.") from None
                entry = _registry[key] = [lock, 0]
            entry[1] += 1
        self._release = weakref.finalize(self, _release, key)

    def release(self) -> None:
        """Give the lock back (once; later calls do nothing)."""
        self._release()

    @property
    def held(self) -> bool:
        return self._release.alive

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
