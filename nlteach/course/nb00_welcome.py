"""Notebook 00: environment check, the course map, and the warm-up exercise (a running average).

The running (exponential moving) average ``m_t = beta m_{t-1} + (1 - beta) x_t`` is the smallest
memory in the course: one number that compresses a whole stream. Notebook 06 shows that momentum
is exactly this memory applied to gradients.
"""

from __future__ import annotations

import importlib
import platform
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure

from nlteach.config import get_device, get_preset

# (import name, what the course needs it for)
REQUIRED = [
    ("torch", "tensors, autograd, every mechanism"),
    ("numpy", "arrays"),
    ("matplotlib", "figures"),
    ("seaborn", "heatmaps and plot styles"),
    ("ipywidgets", "interactive figures"),
    ("tqdm", "progress bars"),
    ("sklearn", "the bundled digits data set"),
]
OPTIONAL = [("jupytext", "notebook pairing"), ("jupyterlab", "the course UI")]

COURSE_MAP = [
    ("00", "Welcome", "set up, presets, widgets and exercises, notation"),
    ("01", "Associative memory", "memory is an optimization problem; Hebbian vs delta writes; capacity"),
    ("02", "Attention is associative memory", "softmax and linear attention as memories; chunked linear attention"),
    ("03", "The delta rule and chunking", "delta and gated delta rules; the WY/UT chunked algorithm"),
    ("04", "Deep memory (Titans)", "an MLP trained at test time: surprise, momentum, forgetting"),
    ("05", "Levels and clocks", "update frequency, level ordering, nested optimization"),
    ("06", "Optimizers are memories", "momentum, delta momentum, DMGD, Muon, M3, DGD"),
    ("07", "Continuum Memory System", "MLPs at several frequencies; multi-frequency training"),
    ("08", "Self-modifying Titans", "memories that generate their own keys, values and learning rates"),
    ("09", "HOPE", "the full block, trained as a language model against baselines"),
    ("10", "Forgetting experiments", "class-incremental CLINC150, Banking77, split digits"),
    ("11", "Long context", "associative recall, needles, formal languages"),
    ("12", "Full-size runs", "one GPU, several GPUs, collecting results"),
]


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def environment_report() -> list[Check]:
    """One :class:`Check` per dependency (version or the import error) plus the device and preset."""
    checks = []
    for name, why in REQUIRED + OPTIONAL:
        try:
            mod = importlib.import_module(name)
            checks.append(Check(name, True, f"{getattr(mod, '__version__', '?')}  ({why})"))
        except Exception as e:  # report any import failure, do not raise
            optional = (name, why) in OPTIONAL
            checks.append(Check(name, optional, f"{'optional, ' if optional else ''}missing: {e}"))
    dev = get_device()
    detail = dev.type
    if dev.type == "cuda":
        detail += f" ({torch.cuda.get_device_name(dev)})"
    checks.append(Check("device", True, detail))
    try:
        checks.append(Check("preset", True, get_preset()))
    except ValueError as e:
        checks.append(Check("preset", False, str(e)))
    checks.append(Check("python", True, platform.python_version()))
    return checks


def print_environment_report() -> bool:
    """Print OK/FAIL per line; return True when every required item is OK."""
    checks = environment_report()
    for c in checks:
        print(f"{'OK  ' if c.ok else 'FAIL'} {c.name:<11} {c.detail}")
    return all(c.ok for c in checks)


def ema(x: torch.Tensor, beta: float) -> torch.Tensor:
    """Running average of a stream: ``m_0 = 0``, ``m_t = beta m_{t-1} + (1 - beta) x_t``.

    x: [T] -> returns [T] with ``m_1 .. m_T``.
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta!r}.")
    m = torch.zeros((), dtype=x.dtype)
    out = []
    for x_t in x:
        m = beta * m + (1 - beta) * x_t
        out.append(m)
    return torch.stack(out) if out else x.new_zeros(0)


def noisy_signal(T: int = 200, *, seed: int = 0) -> torch.Tensor:
    """A slow sine with a step in the middle plus noise: [T], float64."""
    g = np.random.default_rng(seed)
    t = np.arange(T)
    clean = np.sin(2 * np.pi * t / T) + (t >= T // 2) * 1.0
    return torch.tensor(clean + 0.4 * g.standard_normal(T))


def memory_horizon(beta: float, mass: float = 0.5) -> int:
    """How many of the most recent inputs carry ``mass`` of the average's weight: the smallest n
    with ``1 - beta**n >= mass``."""
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta!r}.")
    if not 0.0 < mass < 1.0:
        raise ValueError(f"mass must be in (0, 1), got {mass!r}.")
    if beta == 0.0:
        return 1
    return int(np.ceil(np.log(1 - mass) / np.log(beta)))


def draw_ema(fig: Figure, beta: float = 0.9, *, seed: int = 0) -> Figure:
    """Widget callback of notebook 00: a noisy stream and its running average for one ``beta``."""
    x = noisy_signal(seed=seed)
    m = ema(x, beta)
    ax, ax2 = fig.subplots(1, 2, width_ratios=[2, 1])
    ax.plot(x.numpy(), color="0.7", lw=1, label="input x_t")
    ax.plot(m.numpy(), color="C0", lw=2, label=f"memory m_t (beta={beta:.2f})")
    ax.set_xlabel("step t")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("a one-number memory of a stream")
    n = 40
    weights = (1 - beta) * beta ** np.arange(n)
    ax2.bar(np.arange(n), weights, color="C0")
    ax2.set_xlabel("age of the input (steps ago)")
    ax2.set_ylabel("weight in m_t")
    ax2.set_title(f"half the weight: last {memory_horizon(beta)}")
    return fig


def format_course_map(rows: Sequence[tuple[str, str, str]] = COURSE_MAP) -> str:
    return "\n".join(f"{nb}  {title:<32} {promise}" for nb, title, promise in rows)
