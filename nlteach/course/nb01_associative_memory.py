"""Notebook 01 (associative memory): one write, two objectives; keys, pairs and the capacity
experiment; the figure functions behind the notebook's widget and plots.

The small one-pair writes are the references of the notebook's exercises; the batched mechanisms
live in :mod:`nlteach.memory`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

KEY_KINDS = ("orthogonal", "random", "correlated")
RULES = ("hebbian", "delta")


def hebbian_loss(S: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The dot-product (Hebbian) objective ``-<S^T k, v>``: small when the memory's answer for
    ``k`` points along ``v``. S: [d_k, d_v], k: [d_k], v: [d_v]."""
    return -(S.T @ k) @ v


def l2_loss(S: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The L2 regression objective ``1/2 ||S^T k - v||^2``: small when the memory returns ``v``."""
    return 0.5 * (S.T @ k - v).pow(2).sum()


def hebbian_write(S: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """One gradient step of size 1 on :func:`hebbian_loss`: the gradient is ``-k v^T``, so
    ``S_new = S + k v^T`` (linear attention's write). S: [d_k, d_v], k: [d_k], v: [d_v]."""
    return S + torch.outer(k, v)


def delta_write(S: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: float) -> torch.Tensor:
    """One gradient step of size ``beta`` on :func:`l2_loss`: the gradient is
    ``k (S^T k - v)^T``, so ``S_new = S - beta k (S^T k - v)^T = (I - beta k k^T) S + beta k v^T``
    (the delta rule's write). S: [d_k, d_v], k: [d_k], v: [d_v]."""
    return S - beta * torch.outer(k, S.T @ k - v)


def make_keys(n: int, d: int, kind: str, *, generator: torch.Generator, rho: float = 0.6,
              dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``n`` unit-norm keys of dimension ``d``: [n, d].

    - ``orthogonal``: each block of ``d`` consecutive keys is an orthonormal basis (a fresh random
      one per block), so keys are exactly orthogonal as long as ``n <= d``;
    - ``random``: independent Gaussian directions (nearly orthogonal when d is large);
    - ``correlated``: every key shares one common direction, ``k_i ~ sqrt(rho) c + sqrt(1-rho) z_i``,
      so two keys have cosine similarity about ``rho``.
    """
    if kind not in KEY_KINDS:
        raise ValueError(f"kind must be one of {KEY_KINDS}, got {kind!r}.")
    if kind == "orthogonal":
        blocks = []
        for _ in range(-(-n // d)):
            Qm, _ = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=dtype))
            blocks.append(Qm.T)
        keys = torch.cat(blocks)[:n] if blocks else torch.zeros(0, d, dtype=dtype)
    elif kind == "random":
        keys = torch.randn(n, d, generator=generator, dtype=dtype)
    else:
        c = F.normalize(torch.randn(d, generator=generator, dtype=dtype), dim=0)
        z = F.normalize(torch.randn(n, d, generator=generator, dtype=dtype), dim=-1)
        keys = math.sqrt(rho) * c + math.sqrt(1 - rho) * z
    return F.normalize(keys, dim=-1)


def make_pairs(n: int, d_k: int, d_v: int, kind: str, *, seed: int,
               dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys [n, d_k] of the given kind and unit-norm random values [n, d_v]."""
    g = torch.Generator().manual_seed(seed)
    keys = make_keys(n, d_k, kind, generator=g, dtype=dtype)
    values = F.normalize(torch.randn(n, d_v, generator=g, dtype=dtype), dim=-1)
    return keys, values


def write_all(keys: torch.Tensor, values: torch.Tensor, rule: str, *, beta: float = 1.0,
              S0: torch.Tensor | None = None) -> torch.Tensor:
    """Write the pairs in order and return every state: [n + 1, d_k, d_v] (``S_0`` first)."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}.")
    S = keys.new_zeros(keys.shape[-1], values.shape[-1]) if S0 is None else S0
    states = [S]
    for k, v in zip(keys, values):
        S = hebbian_write(S, k, v) if rule == "hebbian" else delta_write(S, k, v, beta)
        states.append(S)
    return torch.stack(states)


def retrieval_errors(S: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Relative squared error of reading each key back: ``||S^T k_i - v_i||^2 / ||v_i||^2`` -> [n]."""
    return (keys @ S - values).pow(2).sum(-1) / values.pow(2).sum(-1)


def capacity_experiment(d: int, Ns: Sequence[int], seeds: Sequence[int], *,
                        kinds: Sequence[str] = ("orthogonal", "correlated"),
                        rules: Sequence[str] = RULES, beta: float = 1.0) -> dict:
    """Write N random pairs into a d x d memory and measure the mean retrieval error over all N.

    Returns ``{(rule, kind): array [len(seeds), len(Ns)]}`` plus ``"Ns"``. One write sequence of
    ``max(Ns)`` pairs per seed; the error after N writes is measured on the first N pairs.
    """
    n_max = max(Ns)
    out: dict = {"Ns": np.asarray(Ns)}
    for kind in kinds:
        for rule in rules:
            errs = np.zeros((len(seeds), len(Ns)))
            for i, seed in enumerate(seeds):
                keys, values = make_pairs(n_max, d, d, kind, seed=seed)
                states = write_all(keys, values, rule, beta=beta)
                for j, n in enumerate(Ns):
                    errs[i, j] = retrieval_errors(states[n], keys[:n], values[:n]).mean().item()
            out[(rule, kind)] = errs
    return out


def draw_capacity(fig: Figure, results: dict, d: int) -> Figure:
    """Mean retrieval error vs number of stored pairs, one panel per key kind (mean +- std over seeds)."""
    kinds = sorted({kind for key in results if isinstance(key, tuple) for kind in [key[1]]},
                   key=KEY_KINDS.index)
    axes = fig.subplots(1, len(kinds), sharey=True, squeeze=False)[0]
    Ns = results["Ns"]
    for ax, kind in zip(axes, kinds):
        for rule, color in zip(RULES, ("C1", "C0")):
            if (rule, kind) not in results:
                continue
            e = results[(rule, kind)]
            m, s = e.mean(0), e.std(0)
            ax.plot(Ns / d, m, color=color, marker="o", ms=3, label=rule)
            ax.fill_between(Ns / d, np.maximum(m - s, 0), m + s, color=color, alpha=0.2)
        ax.axvline(1.0, color="0.5", ls=":", lw=1)
        ax.set_title(f"{kind} keys")
        ax.set_xlabel("pairs stored N / dimension d")
    axes[0].set_ylabel("mean retrieval error\n||S^T k - v||^2 / ||v||^2")
    axes[0].legend(fontsize=8)
    return fig


def draw_memory_writes(fig: Figure, n_written: int = 4, keys: str = "correlated", *, d: int = 8,
                       n_max: int = 16, beta: float = 1.0, seed: int = 0) -> Figure:
    """Widget of notebook 01: after ``n_written`` writes, the memory matrix of each rule and the
    retrieval error of every pair written so far. The colour scale and the error axis are fixed
    over every ``n_written`` from 0 to ``n_max`` (for these keys), so moving the slider changes the
    data, never the axes."""
    n_written = int(min(max(n_written, 0), n_max))
    K, V = make_pairs(n_max, d, d, keys, seed=seed)
    ax_h, ax_d, ax_e = fig.subplots(1, 3, width_ratios=[1, 1, 1.5])
    errs, top = {}, 1.5
    for ax, rule in ((ax_h, "hebbian"), (ax_d, "delta")):
        states = write_all(K, V, rule, beta=beta)  # [n_max + 1, d, d]: every slider position
        S = states[n_written]
        errs[rule] = retrieval_errors(S, K[:n_written], V[:n_written]).numpy()
        top = max([top] + [float(retrieval_errors(states[n], K[:n], V[:n]).max()) for n in range(1, n_max + 1)])
        lim = max(1.0, float(states.abs().max()))
        ax.imshow(S.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(f"{rule} memory S\n(after {n_written} writes)", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    idx = np.arange(1, n_written + 1)
    if n_written:
        ax_e.bar(idx - 0.2, errs["hebbian"], width=0.4, color="C1", label="hebbian")
        ax_e.bar(idx + 0.2, errs["delta"], width=0.4, color="C0", label="delta")
        ax_e.legend(fontsize=8, loc="upper left")
    ax_e.set_xlim(0.3, n_max + 0.7)
    ax_e.set_ylim(0, 1.3 * top)  # headroom: the legend never covers a bar
    ax_e.set_xlabel("pair i (in the order written)")
    ax_e.set_ylabel("retrieval error of pair i")
    ax_e.set_title(f"{keys} keys, d = {d}", fontsize=9)
    return fig
