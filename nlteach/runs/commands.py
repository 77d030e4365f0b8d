"""The command line of a resumable multi-seed runner (``python -m nlteach.continual``,
``python -m nlteach.longctx``, ``python -m nlteach.continual.tune``).

:func:`add_run_arguments` gives such a command the common options (:mod:`nlteach.runs.cli`), a
``--no-progress`` flag and one option per setting of its config dataclass, which overrides the
preset's value only when typed out (:func:`typed_settings`). :func:`run_guarded` runs the command's
work and turns the two ways a run stops early into exit codes: a resume refused because the
folder holds other settings (the error, which names them, is printed; exit code 2) and Ctrl-C
(how to resume is printed; exit code 130).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from nlteach.runs.cli import add_common_arguments, dataclass_arguments
from nlteach.runs.rundir import SettingsMismatch

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


def run_guarded(action: Callable[[], T]) -> tuple[T | None, int]:
    """``(action(), 0)``; ``(None, 2)`` when a resume was refused (:class:`SettingsMismatch`: the
    error is printed to stderr); ``(None, 130)`` after Ctrl-C (how to resume is printed)."""
    try:
        return action(), 0
    except SettingsMismatch as e:
        print(f"error: {e}", file=sys.stderr)
        return None, 2
    except KeyboardInterrupt:
        print("\ninterrupted: rerun the same command to resume (finished seeds and checkpoints are kept).",
              file=sys.stderr)
        return None, 130
