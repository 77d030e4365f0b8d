"""Size presets, device selection and seeding: the one place notebooks and scripts read them.

Presets (environment variable ``NLTEACH_SIZE``):

- ``tiny``   : CI; every notebook runs in seconds on 2 CPU cores. Numbers are not meaningful.
- ``laptop`` : the default; minutes on a CPU, enough to see the effects the course discusses.
- ``full``   : one GPU; the real experiments.

Notebooks never hard-code sizes: they call :func:`by_preset` with one value per preset, e.g.
``n_steps = by_preset(tiny=20, laptop=500, full=5000)``.
"""

from __future__ import annotations

import os
import random
from typing import TypeVar

import numpy as np
import torch

PRESETS: tuple[str, ...] = ("tiny", "laptop", "full")
DEFAULT_PRESET = "laptop"
ENV_SIZE = "NLTEACH_SIZE"

T = TypeVar("T")


def get_preset(name: str | None = None) -> str:
    """Return the active size preset.

    ``name`` overrides the environment; otherwise ``$NLTEACH_SIZE`` is read, and ``laptop`` is the
    default. An unknown name raises ``ValueError`` listing the valid ones.
    """
    source = "argument `name`"
    if name is None:
        name = os.environ.get(ENV_SIZE, "").strip() or DEFAULT_PRESET
        source = f"environment variable {ENV_SIZE}"
    key = name.strip().lower()
    if key not in PRESETS:
        raise ValueError(
            f"{source} is {name!r}, which is not a size preset; expected one of "
            f"{', '.join(PRESETS)} (e.g. `export {ENV_SIZE}=tiny`)."
        )
    return key


def by_preset(*, tiny: T, laptop: T, full: T, preset: str | None = None) -> T:
    """Pick the value for the active preset (or ``preset`` when given).

    >>> by_preset(tiny=10, laptop=100, full=1000, preset="tiny")
    10
    """
    return {"tiny": tiny, "laptop": laptop, "full": full}[get_preset(preset)]


def get_device(device: str | torch.device | None = None, *, allow_mps: bool = False) -> torch.device:
    """Choose the device: an explicit ``device`` if given, else CUDA if available, else CPU.

    Apple's MPS backend is used only when ``allow_mps=True`` (or ``device="mps"``): several
    operations the course relies on are slower or missing there, so it is opt-in.
    """
    if device is not None:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError):  # torch's error lists every device type it was built with
            raise ValueError(f"device={device!r} is not a device name; expected cpu, cuda, cuda:N or mps.") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={str(device)!r} was requested but CUDA is not available here.")
        if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device={str(device)!r} was requested but this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s) (cuda:0 to cuda:{torch.cuda.device_count() - 1}).")
        if dev.type == "mps" and not _mps_available():
            raise ValueError(f"device={str(device)!r} was requested but MPS is not available here.")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if allow_mps and _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) and return a fresh CPU ``torch.Generator``.

    Prefer passing the returned generator (or the seed) explicitly to the code that draws
    random numbers; seeding the global state is for the parts that cannot take one.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}.")
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def describe() -> str:
    """One line describing the active preset and device, printed at the top of notebooks."""
    dev = get_device()
    return f"preset={get_preset()}  device={dev.type}  torch={torch.__version__}  threads={torch.get_num_threads()}"
