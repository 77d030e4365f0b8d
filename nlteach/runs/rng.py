"""The random-number states of Python, NumPy and torch, captured and restored for exact resume.

The states are stored as tensors, lists and numbers only, so a checkpoint holding them loads with
``torch.load(weights_only=True)`` (see :mod:`nlteach.runs.io`).
"""

from __future__ import annotations

import random

import numpy as np
import torch


def rng_state(device: torch.device | str = "cpu") -> dict:
    """The current RNG states (plain data: lists, ints, tensors)."""
    device = torch.device(device)
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }


def set_rng_state(state: dict, device: torch.device | str = "cpu") -> None:
    """Restore states captured by :func:`rng_state`."""
    device = torch.device(device)
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
