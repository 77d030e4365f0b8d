"""Every seed of a run, resuming: the loop the multi-seed runners share.

A runner (:mod:`nlteach.continual`, :mod:`nlteach.longctx`) hands :func:`run_seeds` a function that
trains one seed; :func:`run_seeds` reads back the seeds its :class:`~nlteach.runs.rundir.RunDir`
has finished, trains the others one after the other under one progress bar, and saves each
finished seed's record with the time it took and the provenance of the code that made it.

A seed being trained keeps its state in ``seeds/seed_<s>.pt``
(:func:`save_seed_checkpoint`, :func:`load_seed_checkpoint`). A checkpoint records the run's
settings and is read back under the folder's resume policy: one written with other settings, or in
another format, is refused with an error that names what differs. It also records torch's CPU
thread count: a resume with another count is warned about (:mod:`nlteach.runs.threads`), and it is
verified against its checksum, the previous checkpoint kept (:mod:`nlteach.runs.io`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from nlteach.runs.io import atomic_save, load_checkpoint, read_json
from nlteach.runs.provenance import Clock
from nlteach.runs.rundir import RESULTS, RunDir, SettingsMismatch, check_same_settings, plain
from nlteach.runs.threads import check_resume_threads

TrainSeed = Callable[[int, Path | None, Any], dict[str, Any]]
"""``train_seed(seed, checkpoint, bar) -> record``: see :func:`run_seeds`."""


def flat_settings(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``settings`` with nested dicts flattened to dotted names (``{"arch": {"dim": 16}}`` ->
    ``{"arch.dim": 16}``), so that a refused resume names the one nested setting that differs
    (:func:`~nlteach.runs.rundir.settings_diff` compares top-level entries)."""
    out: dict[str, Any] = {}
    for k, v in settings.items():
        if isinstance(v, dict) and v:
            out.update(flat_settings(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def save_seed_checkpoint(path: str | os.PathLike, settings: dict[str, Any], state: dict[str, Any], *,
                         version: int) -> None:
    """Write the state of a seed being trained (tensors and plain data), with the run's ``settings``,
    the runner's checkpoint format ``version`` and torch's CPU thread count, atomically."""
    atomic_save({"version": version, "settings": plain(settings), "threads": torch.get_num_threads(), **state}, path)


def load_seed_checkpoint(path: str | os.PathLike | None, settings: dict[str, Any], *,
                         version: int) -> dict[str, Any] | None:
    """The state saved by :func:`save_seed_checkpoint` at ``path``; None when ``path`` is None or
    there is no file. Another format ``version`` or other ``settings`` raise
    :class:`~nlteach.runs.rundir.SettingsMismatch` (naming each differing setting); another torch
    thread count is warned about (:func:`~nlteach.runs.threads.check_resume_threads`)."""
    if path is None or not Path(path).exists():
        return None
    state = load_checkpoint(path)
    if state.get("version") != version:
        raise SettingsMismatch(f"{path} was written in another checkpoint format (version "
                               f"{state.get('version')!r}, this runner writes {version}); delete it to start "
                               "that seed again, or pass --overwrite (overwrite=True) to start the run over.")
    check_same_settings(state.get("settings", {}), settings, path)
    check_resume_threads(state.get("threads"), path)
    return state


def run_seeds(seeds: Sequence[int], train_seed: TrainSeed, *, rundir: RunDir | None = None, units: int = 1,
              desc: str = "", progress: bool = False, device: Any = None) -> dict[int, dict[str, Any]]:
    """``{seed: record}`` for every seed of ``seeds``, in that order.

    ``train_seed(seed, checkpoint, bar)`` trains one seed and returns its record (a JSON-able dict).
    ``checkpoint`` is where it saves its state as it goes and resumes from when the file exists
    (None without ``rundir``); ``bar`` is the progress bar (None unless ``progress``), which it
    advances by one per unit of work, ``units`` per seed (steps, tasks), including the units a
    resume skips.

    With a ``rundir``, the seeds it has finished are read back, not trained again, and each new
    record is saved there (:meth:`~nlteach.runs.rundir.RunDir.save_seed`: provenance added, the
    checkpoint deleted). Every new record gets ``wall_seconds`` and ``cpu_seconds``: the time of
    this call (for a resumed seed, only the part after the resume). ``device``: recorded in the
    provenance.
    """
    done = rundir.finished(seeds) if rundir is not None else {}
    bar = (tqdm(total=len(seeds) * units, initial=len(done) * units, desc=desc, dynamic_ncols=True)
           if progress else None)
    try:
        for s in seeds:
            if s in done:
                continue
            clock = Clock()
            checkpoint = rundir.checkpoint_path(s) if rundir is not None else None
            record = {**train_seed(s, checkpoint, bar), **clock.as_dict()}
            done[s] = rundir.save_seed(s, record, device=device) if rundir is not None else record
    finally:
        if bar is not None:
            bar.close()
    return {s: done[s] for s in seeds}


def load_results(path: str | os.PathLike) -> dict[str, Any]:
    """Read a run's ``results.json`` (``path`` is the file or the run folder holding it)."""
    p = Path(path)
    return read_json(p / RESULTS if p.is_dir() else p)
