"""Shared plumbing of the resumable multi-seed experiment runners
(:mod:`nlteach.continual.runner`, :mod:`nlteach.longctx.runner`).

Both write an output folder of the same layout: ``config.json`` (every setting), ``seeds/seed_<s>.json``
for every finished seed, ``seeds/seed_<s>.pt`` while a seed trains, and ``results.json``. A run
started again in the same folder with the same settings skips the finished seeds and resumes the
interrupted one; other settings are refused (the list of seeds may grow: one seed's numbers do
not depend on it).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from nlteach.train import _atomic_write_text


def comparable(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings that change the numbers (the list of seeds does not change one seed's run)."""
    return {k: v for k, v in settings.items() if k != "seeds"}


def open_run_dir(out_dir: Path, settings: dict[str, Any], seeds: Iterable[int]) -> dict[int, dict[str, Any]]:
    """Prepare ``out_dir`` for a run with ``settings`` and return the records of its finished seeds.

    Creates ``out_dir/seeds``; refuses (``ValueError`` naming the differing settings) a folder that
    holds a run with other settings; writes ``config.json`` atomically; returns
    ``{seed: the contents of seeds/seed_<seed>.json}`` for each of ``seeds`` already finished.
    """
    (out_dir / "seeds").mkdir(parents=True, exist_ok=True)
    cfg_file = out_dir / "config.json"
    if cfg_file.exists():
        saved = json.loads(cfg_file.read_text())
        if comparable(saved) != comparable(settings):
            diff = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k) and k != "seeds")
            raise ValueError(f"{out_dir} holds a run with other settings (differs in {diff}); "
                             "use another --out or delete that folder.")
    _atomic_write_text(cfg_file, json.dumps(settings, indent=1))
    done = {}
    for s in seeds:
        f = out_dir / "seeds" / f"seed_{s}.json"
        if f.exists():
            done[s] = json.loads(f.read_text())
    return done


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Use ``n`` CPU threads inside the block (``None``: leave torch's setting), then restore."""
    before = torch.get_num_threads()
    if n is not None:
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"threads must be a positive int or None, got {n!r}.")
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
