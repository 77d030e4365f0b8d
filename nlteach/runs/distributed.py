"""Processes and signals: the DDP set-up under ``torchrun`` and a graceful stop on Ctrl-C.

- :func:`init_distributed` reads ``torchrun``'s environment (``WORLD_SIZE``, ``RANK``,
  ``LOCAL_RANK``) and starts the process group (gloo on CPU, nccl on CUDA); one process without
  ``torchrun`` gets a :class:`Dist` of size 1 and nothing is started.
- :func:`any_rank` and :func:`gather` are the two collective steps a training loop needs: "does any
  rank want to stop?" and "every rank's small state, on every rank" (no-ops for one process).
- :class:`StopFlag` turns SIGINT/SIGTERM into a request to stop after the current step, so the loop
  can write a checkpoint first; in one process a second Ctrl-C stops at once.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass
from typing import Any

import torch

from nlteach.runs import console


@dataclass
class Dist:
    """This process's place among the ``world_size`` processes of a run."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    owns_group: bool = False  # this call started the process group (and must destroy it)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def close(self, synchronize: bool = True) -> None:
        """End the process group this process started. ``synchronize``: wait at a barrier first, so
        that no rank tears its connections down while a peer is still using them (without it, gloo
        sometimes aborted a rank that exited a moment before another: "terminate called without an
        active exception"). Pass False when leaving on an error, where a peer may never arrive."""
        if not self.owns_group:
            return
        if synchronize:
            try:
                torch.distributed.barrier()
            except RuntimeError:  # a peer already gone: nothing left to wait for
                pass
        torch.distributed.destroy_process_group()


def init_distributed(device: torch.device) -> tuple[Dist, torch.device]:
    """(this process's :class:`Dist`, its device: ``cuda:LOCAL_RANK`` on CUDA under torchrun)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), device
    dist = Dist(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world)
    if device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        dist.owns_group = True
    return dist, device


def any_rank(flag: bool, dist: Dist, device: torch.device) -> bool:
    """True on every rank if ``flag`` is true on any rank."""
    if dist.world_size == 1:
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item())


def gather(obj: Any, dist: Dist) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` for one process)."""
    if dist.world_size == 1:
        return [obj]
    out: list[Any] = [None] * dist.world_size
    torch.distributed.all_gather_object(out, obj)
    return out


class StopFlag:
    """``with StopFlag(...) as stop:`` SIGINT/SIGTERM set ``stop.requested`` instead of raising
    (main thread only; the previous handlers come back on exit). ``name`` prefixes the message."""

    def __init__(self, distributed: bool = False, verbose: bool = True, name: str = "nlteach"):
        self.requested, self.distributed, self.verbose, self.name = False, distributed, verbose, name
        self._previous: dict = {}

    def _handler(self, signum, frame):
        if self.requested and not self.distributed and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        if self.verbose and not self.requested:
            again = "" if self.distributed else " (Ctrl-C again to stop at once)"
            console.log(f"\n[{self.name}] {signal.Signals(signum).name} received: finishing this step, "
                        f"writing a checkpoint, then stopping{again}.")
        self.requested = True

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> bool:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False
