"""Command-line pieces shared by every entry point.

:func:`add_common_arguments` gives each command the same ``--preset`` (default: ``$NLTEACH_SIZE``,
else ``laptop``), ``--device``, ``--out``, ``--threads``, ``--seeds`` and ``--overwrite``, and
:func:`apply_common` checks them before any work starts (a bad value is a usage error: exit status
2, a message naming the option, no traceback);
:func:`dataclass_arguments` turns a config dataclass into options (``field_name`` becomes
``--field-name``; the field's ``metadata["help"]`` is its help), so a config's fields are declared
once, in the dataclass.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import tempfile
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from nlteach.config import PRESETS, get_device, get_preset
from nlteach.data import ENV_DATA_DIR


def _integer(text: str, expected: str) -> int:
    """``text`` as an int: digits, or an integral number in scientific notation (``1e6``, ``2.5e3``);
    a fraction (``2.5e0``, ``2.5``) or anything else is an argparse error saying what was expected."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        v = float(text) if "e" in text.lower() else math.nan
    except ValueError:
        v = math.nan
    if not math.isfinite(v) or v != int(v):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    return int(v)


def positive_int(text: str) -> int:
    """argparse type: an integer > 0 (``1e6`` accepted, ``2.5e0`` refused)."""
    v = _integer(text, "a positive integer")
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def nonneg_int(text: str) -> int:
    """argparse type: an integer >= 0 (``1e3`` accepted, ``2.5e0`` refused)."""
    v = _integer(text, "a non-negative integer")
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return v


def finite_float(text: str) -> float:
    """argparse type: a finite number."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def add_common_arguments(p: argparse.ArgumentParser, *, out_default: str | None = None, out_required: bool = False,
                         seeds: list[int] | None = None, threads: int | None = None, overwrite: bool = True,
                         out_help: str = "output folder (results.json, seeds/, checkpoints)") -> None:
    """``--preset --device --out --threads``, ``--overwrite`` (unless ``overwrite=False``: a command
    that keeps no run to resume) and, when ``seeds`` is given (the default list), ``--seeds``. Call
    :func:`apply_common` on the parsed namespace."""
    p.add_argument("--preset", choices=PRESETS, default=None,
                   help="size preset (default: $NLTEACH_SIZE, else laptop)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: CUDA if available, else CPU)")
    p.add_argument("--out", default=out_default, required=out_required,
                   help=out_help + ("" if out_default is None else f" (default: {out_default})"))
    p.add_argument("--threads", type=positive_int, default=threads,
                   help="torch CPU threads" + (" (default: torch's)" if threads is None else f" (default {threads})"))
    if overwrite:
        p.add_argument("--overwrite", action="store_true", help="delete a previous run in --out and start over")
    if seeds is not None:
        p.add_argument("--seeds", type=nonneg_int, nargs="+", default=list(seeds),
                       help=f"seeds (default: {' '.join(map(str, seeds))})")


def apply_common(p: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """Check the common options before any work starts, each bad value a usage error (exit status 2,
    no traceback): ``args.preset`` is resolved (``$NLTEACH_SIZE`` when not given); ``--device`` must
    name a device this machine has (:func:`nlteach.config.get_device`); ``--out`` must be a folder
    that exists or can be created, and can be written (:func:`check_out`); ``$NLTEACH_DATA_DIR``, when
    set, must not be a file and must exist or be creatable; repeated ``--seeds`` are refused.
    Applies ``--threads`` to torch. Returns ``args``."""
    try:
        args.preset = get_preset(args.preset)
    except ValueError as e:
        p.error(str(e))
    if getattr(args, "device", None) is not None:
        try:
            get_device(args.device)
        except ValueError as e:
            p.error(f"--device {args.device!r}: {e}")
    if getattr(args, "out", None) is not None:
        check_out(p, args.out)
    data_dir = os.environ.get(ENV_DATA_DIR)
    if data_dir:
        problem = folder_problem(data_dir, need_write=False)
        if problem:
            p.error(f"environment variable {ENV_DATA_DIR}={data_dir!r} must be a folder for the data cache: {problem}.")
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    if getattr(args, "seeds", None) is not None and len(set(args.seeds)) != len(args.seeds):
        p.error(f"--seeds has repeated seeds: {args.seeds}")
    return args


def folder_problem(path: str | os.PathLike, *, need_write: bool = True) -> str | None:
    """Why ``path`` cannot serve as an output folder, or None when it can: it must not be a file (nor
    lie under one), and it must exist or be creatable; with ``need_write``, a folder must be created
    in it (or in its nearest existing parent) for real, since permission bits do not tell (root, a
    read-only file system, ``/proc``). Nothing is left behind."""
    path = parent = Path(path).expanduser()
    try:
        if path.exists() and not path.is_dir():
            return f"{path} is a file, not a folder"
        parent = path
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            return f"{parent} is a file, so no folder can be made under it"
        if need_write or parent != path:
            with tempfile.TemporaryDirectory(dir=parent, prefix=".nlteach-write-check-"):
                pass
    except OSError as e:
        return f"cannot write in {parent} ({e.strerror or e})"
    return None


def check_out(p: argparse.ArgumentParser, out: str | os.PathLike, option: str = "--out") -> None:
    """A usage error unless ``out`` can be the run's output folder (:func:`folder_problem`). A command
    whose ``--out`` default is computed later (from the preset) calls it on that default."""
    problem = folder_problem(out)
    if problem:
        p.error(f"{option} {str(out)!r}: {problem}; expected a folder that exists or can be created, "
                "and can be written.")


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """(the type inside ``X | None``, whether None was allowed)."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else str), True
    return tp, False


def dataclass_arguments(p: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, *,
                        skip: Iterable[str] = (), only_given: bool = False) -> list[str]:
    """Add one option per field of the dataclass ``cls`` (not those in ``skip``); returns the dests.

    ``bool`` fields become flags (``--name`` for a False default, ``--no-name`` for True); ``int``,
    ``float``, ``str`` fields (optionally ``| None``) take one value; ``tuple[int, ...]`` fields take
    several; a field whose type is a dataclass (a nested config, e.g. a ``ModelConfig`` inside a
    run config) contributes its own fields as options (names must not clash; rebuild the config
    with :func:`dataclass_from_values`). A field's ``metadata`` may give ``help``, ``choices`` and an
    argparse ``type`` (e.g. :func:`positive_int`). Defaults are the dataclass's; ``only_given=True`` leaves
    options that were not typed out of the namespace (to lay them over saved settings).
    """
    hints = typing.get_type_hints(cls)
    dests: list[str] = []
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        tp, _ = _unwrap_optional(hints[f.name])
        if dataclasses.is_dataclass(tp):  # a nested config: its fields become options of their own
            nested = dataclass_arguments(p, tp, skip=skip, only_given=only_given)
            clash = set(nested) & set(dests)
            if clash:
                raise ValueError(f"{cls.__name__}.{f.name}: options {sorted(clash)} are declared twice.")
            dests += nested
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        kw: dict[str, Any] = {"help": f.metadata.get("help", "")}
        flag = "--" + f.name.replace("_", "-")
        if tp is bool:
            if default:
                kw.update(action="store_false", help=kw["help"] or f"turn off {f.name}")
                flag = "--no-" + f.name.replace("_", "-")
            else:
                kw.update(action="store_true")
        elif typing.get_origin(tp) is tuple:
            inner = typing.get_args(tp)[0]
            kw.update(nargs="+", type=positive_int if inner is int else inner)
        elif tp is int:
            kw.update(type=int)
        elif tp is float:
            kw.update(type=finite_float)
        else:
            kw.update(type=str)
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        if "type" in f.metadata:  # e.g. positive_int: a bad value is a usage error naming the option
            kw["type"] = f.metadata["type"]
        kw["default"] = argparse.SUPPRESS if only_given else default
        if not only_given and default is not None and kw.get("action") is None:
            kw["help"] = (kw["help"] + f" (default: {default})").strip()
        p.add_argument(flag, dest=f.name, **kw)
        dests.append(f.name)
    return dests


def dataclass_from_values(cls: type, values: dict[str, Any]) -> Any:
    """An instance of ``cls`` from flat ``values`` (as :func:`dataclass_arguments` parsed them):
    nested config fields are built from their own names; names not in ``values`` keep their defaults;
    lists become tuples where the field is a tuple."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp, _ = _unwrap_optional(hints[f.name])
        if dataclasses.is_dataclass(tp):
            kwargs[f.name] = dataclass_from_values(tp, values)
        elif f.name in values:
            v = values[f.name]
            kwargs[f.name] = tuple(v) if typing.get_origin(tp) is tuple and isinstance(v, list) else v
    return cls(**kwargs)
