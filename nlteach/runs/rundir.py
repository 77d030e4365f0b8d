"""The output folder of a run, and the project's one resume policy.

A run folder holds::

    .lock                  held while a run is going (one run per folder: :mod:`nlteach.runs.lock`)
    config.json            every setting that changes the numbers (written first)
    seeds/seed_<s>.json    one finished seed's record (with the provenance of the code that made it)
    seeds/seed_<s>.pt      the checkpoint of the seed being trained, with its checksum and the
                           previous checkpoint (:mod:`nlteach.runs.io`; all deleted when it finishes)
    results.json           the whole run, with its provenance (written last)

**Resume policy** (every runner, :func:`check_same_settings`): a run started again in a folder that
holds a run continues it only when the settings are the same; finished seeds are read back, the
interrupted one resumes from its checkpoint. Other settings are refused with an error that names
each differing setting (saved value and new value). ``overwrite=True`` (``--overwrite``) deletes the
old run first. The list of seeds may grow: one seed's numbers do not depend on the others.

**One run per folder**: a :class:`RunDir` holds the folder's lock from its creation to
:meth:`RunDir.close` (use it as ``with RunDir(...) as rundir:``; :func:`run_folder` also takes
``out=None``); a second process opening the folder gets :class:`~nlteach.runs.lock.FolderInUse`.
Once the lock is held, temporary files left by writes killed mid-way are deleted.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nlteach.runs.io import (
    atomic_write_json,
    read_json,
    remove_checkpoint,
    remove_stale_temporaries,
)
from nlteach.runs.lock import LOCK_NAME, FolderLock
from nlteach.runs.provenance import provenance

CONFIG = "config.json"
RESULTS = "results.json"
SEEDS = "seeds"


class SettingsMismatch(ValueError):
    """A run folder (or checkpoint) holds a run with other settings than the ones asked for."""


def plain(obj: Any) -> Any:
    """``obj`` as JSON would give it back (tuples become lists, keys strings): what is compared."""
    return json.loads(json.dumps(obj))


def settings_diff(saved: dict[str, Any], now: dict[str, Any], ignore: Iterable[str] = ("seeds",)) -> list[str]:
    """One line ``"name: saved <v>, now <v>"`` per setting that differs (``ignore``d names skipped)."""
    saved, now, skip = plain(saved), plain(now), set(ignore)

    def show(d: dict[str, Any], k: str) -> str:
        return repr(d[k]) if k in d else "(absent)"

    keys = sorted(k for k in set(saved) | set(now)
                  if k not in skip and (k not in saved or k not in now or saved[k] != now[k]))
    return [f"{k}: saved {show(saved, k)}, now {show(now, k)}" for k in keys]


def check_same_settings(saved: dict[str, Any], now: dict[str, Any], where: str | Path,
                        ignore: Iterable[str] = ("seeds",)) -> None:
    """Raise :class:`SettingsMismatch` naming every differing setting, unless ``saved == now``."""
    diff = settings_diff(saved, now, ignore)
    if diff:
        raise SettingsMismatch(f"{where} holds a run with other settings:\n  " + "\n  ".join(diff)
                               + "\nrun again with the same settings to resume it, pass --overwrite "
                               "(overwrite=True) to delete it and start over, or choose another --out.")


class RunDir:
    """The folder ``out`` of a run with ``settings`` (a JSON-able dict of everything that changes the
    numbers; its ``"seeds"`` entry, if any, may grow between resumptions).

    Opening takes the folder's lock (:class:`~nlteach.runs.lock.FolderInUse` if another process
    holds it), checks the resume policy (module docstring) and writes ``config.json``; the lock is
    held until :meth:`close` (or the end of a ``with`` block).
    """

    def __init__(self, out: str | Path, settings: dict[str, Any], *, overwrite: bool = False):
        self.path = Path(out)
        self.settings = plain(settings)
        if overwrite and self.path.exists():
            self._check_ours()  # before the lock: no .lock file is left in a folder that is not a run's
        self._lock = FolderLock(self.path)
        try:
            if overwrite:
                self._clear()
            for folder in (self.path, self.path / SEEDS):
                remove_stale_temporaries(folder)
            cfg = self.path / CONFIG
            if cfg.exists():
                check_same_settings(read_json(cfg), self.settings, self.path)
            elif (self.path / RESULTS).exists():
                raise SettingsMismatch(f"{self.path} holds results but no {CONFIG}: it was not written by "
                                       "this version; pass --overwrite or choose another --out.")
            (self.path / SEEDS).mkdir(parents=True, exist_ok=True)
            atomic_write_json(cfg, self.settings)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the folder's lock (the run in it is over); calling it again does nothing."""
        self._lock.release()

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_ours(self) -> None:
        """Refuse to delete a folder that does not look like a run's (never an arbitrary folder)."""
        entries = {p.name for p in self.path.iterdir()} - {LOCK_NAME}
        if entries and not entries & {CONFIG, RESULTS, SEEDS}:
            raise SettingsMismatch(f"--overwrite: {self.path} does not look like a run folder (no {CONFIG}, "
                                   f"{RESULTS} or {SEEDS}/); delete it yourself if you mean it.")

    def _clear(self) -> None:
        """Delete a previous run: everything in the folder but the lock this run holds."""
        self._check_ours()
        for p in self.path.iterdir():
            if p.name == LOCK_NAME:
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()

    def seed_file(self, seed: int) -> Path:
        return self.path / SEEDS / f"seed_{seed}.json"

    def checkpoint_path(self, seed: int) -> Path:
        return self.path / SEEDS / f"seed_{seed}.pt"

    def finished(self, seeds: Iterable[int]) -> dict[int, dict[str, Any]]:
        """``{seed: record}`` for each of ``seeds`` already finished in this folder."""
        return {s: read_json(self.seed_file(s)) for s in seeds if self.seed_file(s).exists()}

    def save_seed(self, seed: int, record: dict[str, Any], *, device: Any = None) -> dict[str, Any]:
        """Write one finished seed (adding ``provenance``: the code that made these numbers, kept even
        when a later resume only reads the seed back) and delete its checkpoint."""
        record = {**record, "provenance": provenance(device=device)}
        atomic_write_json(self.seed_file(seed), record, indent=None)
        remove_checkpoint(self.checkpoint_path(seed))
        return record

    def write_results(self, results: dict[str, Any], *, command: str | None = None, device: Any = None) -> dict[str, Any]:
        """Write ``results.json`` with a ``provenance`` block added; returns the written dict."""
        results = {**results, "provenance": provenance(command, device)}
        atomic_write_json(self.path / RESULTS, results)
        return results


def run_folder(out: str | Path | None, settings: dict[str, Any], *,
               overwrite: bool = False) -> contextlib.AbstractContextManager[RunDir | None]:
    """``with run_folder(out, settings) as rundir:``: the :class:`RunDir` of ``out``, its lock held
    inside the block; ``rundir`` is None when ``out`` is None (a run that writes nothing)."""
    return RunDir(out, settings, overwrite=overwrite) if out is not None else contextlib.nullcontext()
