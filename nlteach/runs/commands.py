"""The command line of a resumable multi-seed runner (``python -m nlteach.continual``,
``python -m nlteach.longctx``, ``python -m nlteach.continual.tune``).

:func:`add_run_arguments` gives such a command the common options (:mod:`nlteach.runs.cli`), a
``--no-progress`` flag and one option per setting of its config dataclass, which overrides the
preset's value only when typed out (:func:`typed_settings`). :func:`check_run_folders` refuses, as
a usage error before anything trains, run folders that hold other settings. :func:`run_guarded`
runs the command's work and turns the ways a run stops early into exit codes: a resume refused
because the folder holds other settings, or data that cannot be had (the error, which names them,
is printed; exit code 2) and Ctrl-C (how to resume is printed; exit code 130).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from nlteach.data import DataUnavailableError
from nlteach.runs.cli import add_common_arguments, dataclass_arguments
from nlteach.runs.io import CorruptFileError, read_json
from nlteach.runs.lock import FolderInUse
from nlteach.runs.rundir import CONFIG, SettingsMismatch, check_same_settings

T = TypeVar("T")


def add_run_arguments(p: argparse.ArgumentParser, config: type, *, skip: Iterable[str], what: str,
                      seeds: list[int] | None = None, out_required: bool = True) -> None:
    """The common options (``--out`` required unless ``out_required=False``, ``--seeds`` defaulting
    to ``seeds`` (0 1 2), ``--threads`` defaulting to 1), ``--no-progress``, and a group of options
    generated from the dataclass ``config`` (``skip``: fields that have an option of their own or
    none); ``what`` names what they configure, for the group's help."""
    add_common_arguments(p, out_required=out_required, seeds=[0, 1, 2] if seeds is None else seeds, threads=1)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = p.add_argument_group("settings", f"override the preset's value of any setting of {what}; default: the preset's")
    p.set_defaults(setting_names=dataclass_arguments(g, config, skip=skip, only_given=True))


def typed_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings options typed out on the command line (name -> value)."""
    return {k: v for k, v in vars(args).items() if k in args.setting_names}


def check_run_folders(folders: Iterable[tuple[str | Path, dict[str, Any]]], *, overwrite: bool) -> int:
    """Exit code 2 (the error, naming each differing setting, printed to stderr) when one of the run
    folders ``(path, settings)`` a command will fill holds a run with other settings (the resume
    policy of :class:`~nlteach.runs.rundir.RunDir`), or an unreadable ``config.json``: checked for all
    of them before the first one trains, as :func:`run_guarded` would report it later; else 0.
    Nothing to check with ``overwrite``."""
    if overwrite:
        return 0
    for path, settings in folders:
        config = Path(path) / CONFIG
        if config.is_file():
            try:
                check_same_settings(read_json(config), settings, path)
            except (SettingsMismatch, CorruptFileError) as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
    return 0


def run_guarded(action: Callable[[], T]) -> tuple[T | None, int]:
    """``(action(), 0)``; ``(None, 2)`` when a resume was refused (:class:`SettingsMismatch`), another
    process holds the run folder (:class:`~nlteach.runs.lock.FolderInUse`), a checkpoint or results
    file is damaged (:class:`~nlteach.runs.io.CorruptFileError`) or the data cannot be had
    (:class:`~nlteach.data.DataUnavailableError`: offline, or an unwritable cache; the error is
    printed to stderr); ``(None, 130)`` after Ctrl-C (how to resume is printed)."""
    try:
        return action(), 0
    except (SettingsMismatch, FolderInUse, CorruptFileError, DataUnavailableError) as e:
        print(f"error: {e}", file=sys.stderr)
        return None, 2
    except KeyboardInterrupt:
        print("\ninterrupted: rerun the same command to resume (finished seeds and checkpoints are kept).",
              file=sys.stderr)
        return None, 130
