"""Torch's CPU thread count: set for the length of a block, and checked when a run resumes.

On the CPU, torch splits reductions (sums inside matrix products, norms, losses) across its
threads, so the same run computed with another number of threads rounds differently: its numbers
are as valid but not bit-equal. Checkpoints therefore record the thread count, and a resume with
another count gets a :class:`ThreadCountWarning` (:func:`check_resume_threads`): the run goes on,
since the thread count is not a setting of the experiment, but its numbers no longer match an
uninterrupted run's bit for bit. The command lines resume with the recorded count unless
``--threads`` says otherwise.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch


class ThreadCountWarning(UserWarning):
    """A run resumes with another number of torch CPU threads than it was started with."""


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Use ``n`` CPU threads inside the block (``None``: leave torch's setting), then restore it."""
    before = torch.get_num_threads()
    if n is not None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"threads must be a positive int or None, got {n!r}.")
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def check_resume_threads(saved: int | None, where: str | Path) -> None:
    """Warn (:class:`ThreadCountWarning`) when the checkpoint ``where`` was written with ``saved``
    CPU threads and torch now uses another number (``saved=None``: not recorded, nothing to say)."""
    now = torch.get_num_threads()
    if saved is not None and saved != now:
        warnings.warn(f"{where} was written by a run with {saved} torch CPU thread(s) and this one uses {now}: the "
                      "run goes on, but its numbers will not be bit-equal to an uninterrupted run's (torch splits "
                      f"sums across threads). Resume with --threads {saved} (torch.set_num_threads({saved})) for "
                      "an exact resume.", ThreadCountWarning, stacklevel=3)
