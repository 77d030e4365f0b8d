"""Notebook 06 (optimizers are memories): how much momentum remembers, the orthogonal-task
example (Sec. 4.3), the time-varying-curvature toy (Eq. 53), Adam as the optimal memory of an L2
objective, DGD on a stream, and the reference of the exercise 06.momentum_memory.

Everything returns plain data (dicts of lists) and has a ``draw_*(fig, ...)`` companion, so the
notebook only calls and plots; the tests run the same functions at tiny sizes. The optimizer
comparison of the same notebook is :mod:`nlteach.experiments.optimizers`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from nlteach import optim as nlo
from nlteach.course.nb00_welcome import memory_horizon

# ---------------------------------------------------------------------------------------------
# 1. Momentum as a memory: how many past gradients does it remember?


def momentum_weights(beta: float, n: int) -> np.ndarray:
    """Share of gradient ``g_{t-k}`` (k = 0..n-1) in the momentum ``m_t = sum_k beta^k g_{t-k}``,
    normalized by the total ``1 / (1 - beta)``: ``(1 - beta) beta^k``."""
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta!r}.")
    return (1 - beta) * beta ** np.arange(n)


def draw_momentum_memory(fig: Figure, beta: float = 0.9) -> Figure:
    """Widget of notebook 06: the weight of each past gradient in the momentum, and how many of
    the most recent gradients carry 50% and 99% of it."""
    n50, n99 = memory_horizon(beta, 0.5), memory_horizon(beta, 0.99)
    n = max(60, int(1.2 * n99))
    w = momentum_weights(beta, n)
    ax, ax2 = fig.subplots(1, 2)
    colors = ["C0" if k < n50 else ("C1" if k < n99 else "0.75") for k in range(n)]
    ax.bar(np.arange(n), w, color=colors, width=1.0)
    ax.set_xlabel("age k of the gradient (steps ago)")
    ax.set_ylabel("share of g_{t-k} in m_t")
    ax.set_title(f"beta={beta:.3f}: 50% in last {n50}, 99% in last {n99}")
    ax2.plot(np.arange(1, n + 1), np.cumsum(w), color="C0")
    for mass, nk, c in ((0.5, n50, "C0"), (0.99, n99, "C1")):
        ax2.axhline(mass, color=c, ls=":", lw=1)
        ax2.axvline(nk, color=c, ls=":", lw=1)
    ax2.set_xlabel("number of most recent gradients")
    ax2.set_ylabel("cumulative share")
    ax2.set_ylim(0, 1.02)
    ax2.set_title("what the memory holds")
    return fig


def momentum_as_memory(grads: torch.Tensor, beta: float, eta: float) -> torch.Tensor:
    """The two-level system of momentum, run on a given gradient stream (reference of exercise
    06.momentum_memory). grads: [T, n] -> weights [T, n] after each step, from ``W_0 = m_0 = 0``::

        m_t = beta m_{t-1} - eta * dL/dm,  L(m) = <m, g_t>   (inner level: one GD step on its objective)
        W_t = W_{t-1} + m_t                                   (outer level: read the memory)
    """
    m = torch.zeros_like(grads[0])
    W = torch.zeros_like(grads[0])
    out = []
    for g in grads:
        m = beta * m - eta * g  # dL/dm = g
        W = W + m
        out.append(W)
    return torch.stack(out)


# ---------------------------------------------------------------------------------------------
# 2. Orthogonal tasks (Sec. 4.3): the momentum forgets the old gradient subspace.


def orthogonal_tasks(*, dim: int = 20, steps_a: int = 60, steps_b: int = 120, lr: float = 0.05,
                     beta: float = 0.9, seed: int = 0) -> dict[str, Any]:
    """Train one weight vector ``w`` on task A, then on task B, whose inputs (and so gradients)
    live in orthogonal coordinate subspaces (first and second half of ``dim``). Track, for each
    optimizer memory, the share of its norm that lies in task A's subspace.

    Memories tracked: SGD momentum (``beta``), delta momentum (same ``beta``), and M3's fast and
    slow momenta (``M1``, ``M2``; frequency 10). Returns ``{"steps", "switch", "share": {name: [..]},
    "kept": {name: [..]}}``: ``share`` is ``||P_A m|| / ||m||``, ``kept`` is ``||P_A m_t||`` relative
    to its value at the last step of task A.
    """
    g = torch.Generator().manual_seed(seed)
    h = dim // 2
    n = 64
    XA = torch.zeros(n, dim, dtype=torch.float64)
    XA[:, :h] = torch.randn(n, h, generator=g, dtype=torch.float64)
    XB = torch.zeros(n, dim, dtype=torch.float64)
    XB[:, h:] = torch.randn(n, dim - h, generator=g, dtype=torch.float64)
    w_true = torch.randn(dim, generator=g, dtype=torch.float64)
    yA, yB = XA @ w_true, XB @ w_true

    def a_part(m: torch.Tensor) -> tuple[float, float]:
        m = m.reshape(-1)
        return float(m[:h].norm()), float(m.norm())

    makers = {
        "momentum": lambda p: nlo.MomentumMemory(p, lr=lr, momentum=beta),
        "delta momentum": lambda p: nlo.DeltaMomentum(p, lr=lr, momentum=beta, beta=1.0),
        "M3": lambda p: nlo.M3(p, lr=lr * 0.1, frequency=10),
    }
    reads = {
        "momentum": [("momentum", "memory")],
        "delta momentum": [("delta momentum", "momentum")],
        "M3": [("M3 fast (M1)", "M1"), ("M3 slow (M2)", "M2")],
    }
    shares: dict[str, list[float]] = {}
    a_norms: dict[str, list[float]] = {}
    for name, make in makers.items():
        w = torch.zeros(1, dim, dtype=torch.float64, requires_grad=True)
        opt = make([w])
        for t in range(steps_a + steps_b):
            X, y = (XA, yA) if t < steps_a else (XB, yB)
            opt.zero_grad()
            (0.5 * (X @ w[0] - y).pow(2).mean()).backward()
            opt.step()
            for label, key in reads[name]:
                a, total = a_part(opt.state[w][key])
                shares.setdefault(label, []).append(a / (total + 1e-30))
                a_norms.setdefault(label, []).append(a)
    kept = {k: [x / (v[steps_a - 1] + 1e-30) for x in v] for k, v in a_norms.items()}
    return {"steps": list(range(1, steps_a + steps_b + 1)), "switch": steps_a, "share": shares,
            "kept": kept, "beta": beta}


def draw_orthogonal_tasks(fig: Figure, result: dict[str, Any]) -> Figure:
    ax, ax2 = fig.subplots(1, 2)
    sw = result["switch"]
    for name, s in result["share"].items():
        ls = "--" if "slow" in name else "-"
        ax.plot(result["steps"], s, label=name, ls=ls)
        ax2.semilogy(result["steps"][sw - 1:], np.maximum(result["kept"][name][sw - 1:], 1e-12),
                     label=name, ls=ls)
    k = np.arange(len(result["steps"]) - sw + 1)
    ax2.semilogy(np.arange(sw, len(result["steps"]) + 1), result["beta"] ** k, color="k", lw=0.8,
                 ls=":", label=f"beta^k (beta={result['beta']})")
    ax.axvline(sw + 0.5, color="k", lw=1, ls=":")
    ax.text(sw + 1, 0.5, " switch to task B", fontsize=8)
    ax.set_xlabel("step")
    ax.set_ylabel("share of the memory in A's subspace")
    ax.set_ylim(-0.02, 1.05)
    ax.set_title("what the memory is about")
    ax.legend(fontsize=7)
    ax2.set_ylim(1e-6, 3)
    ax2.set_xlabel("step (task B)")
    ax2.set_ylabel("|A-part| / |A-part at the switch|")
    ax2.set_title("how much of task A is kept")
    ax2.legend(fontsize=7)
    return fig


# ---------------------------------------------------------------------------------------------
# 3. Time-varying curvature toy, Eq. 53: psi(r, theta) = r^2 + k (r - theta + a sin(w r))^2.

TOY_START = (-3.5, 2.0)


def psi(z: torch.Tensor, k: float = 10.0, a: float = 1.0, w: float = 2.0) -> torch.Tensor:
    """Eq. 53 (arXiv v1); ``z[..., 0] = r``, ``z[..., 1] = theta``. Minimum 0 at ``r = theta = 0``;
    the valley ``theta = r + a sin(w r)`` bends, so the curvature along the path changes."""
    r, th = z[..., 0], z[..., 1]
    return r**2 + k * (r - th + a * torch.sin(w * r)) ** 2


def toy_optimizers(lr: float = 0.01, beta: float = 0.9) -> dict[str, Callable[[list], torch.optim.Optimizer]]:
    """The optimizers compared on the toy. Momentum and delta momentum share ``lr`` and ``beta``
    (paper convention ``W += m``; DMGD's averaged momentum gets ``lr / (1 - beta)`` to match). The
    others got the best of a few step sizes we tried (Adam 0.3, Muon 0.1, M3 10: M3's step is
    ``NS(M1) / sqrt(V)``, which shrinks like ``1 / |g|``, and the gradients here are large)."""
    return {
        "momentum": lambda p: nlo.PreconditionedMomentum(p, lr=lr, momentum=beta, preconditioner="identity"),
        "delta momentum": lambda p: nlo.DeltaMomentum(p, lr=lr, momentum=beta, beta=0.1),
        "DMGD": lambda p: nlo.DeepMomentum(p, lr=lr / (1 - beta), momentum=beta),
        "Adam": lambda p: torch.optim.Adam(p, lr=0.3),
        "Muon": lambda p: nlo.Muon(p, lr=0.1, momentum=beta),
        "M3": lambda p: nlo.M3(p, lr=10.0, frequency=10),
    }


def run_toy(make: Callable[[list], torch.optim.Optimizer], *, steps: int = 300, k: float = 10.0,
            a: float = 1.0, w: float = 2.0, start: Sequence[float] = TOY_START) -> dict[str, np.ndarray]:
    """Optimize psi from ``start``; the parameter is a ``[1, 2]`` matrix (so Muon and M3 apply).
    Returns ``{"path": [steps + 1, 2], "loss": [steps + 1]}`` (non-finite values stop the run)."""
    z = torch.tensor([list(start)], dtype=torch.float64, requires_grad=True)
    opt = make([z])
    path, loss = [z.detach()[0].clone()], [float(psi(z.detach()[0], k, a, w))]
    for _ in range(steps):
        opt.zero_grad()
        val = psi(z[0], k, a, w)
        val.backward()
        opt.step()
        cur = float(psi(z[0].detach(), k, a, w))
        if not math.isfinite(cur) or z.detach().abs().max() > 1e6:
            break
        path.append(z.detach()[0].clone())
        loss.append(cur)
    return {"path": torch.stack(path).numpy(), "loss": np.array(loss)}


def toy_trajectories(*, steps: int = 300, k: float = 10.0, a: float = 1.0, w: float = 2.0,
                     lr: float = 0.01, beta: float = 0.9) -> dict[str, dict[str, np.ndarray]]:
    return {name: run_toy(make, steps=steps, k=k, a=a, w=w)
            for name, make in toy_optimizers(lr, beta).items()}


def steps_to_reach(loss: np.ndarray, threshold: float = 1e-3) -> int | None:
    """First step at which the loss is below ``threshold`` (None if never)."""
    hit = np.flatnonzero(np.asarray(loss) < threshold)
    return int(hit[0]) if hit.size else None


def toy_table(settings: Sequence[tuple[float, float, float, float]], *, steps: int = 500,
              beta: float = 0.9, betas_delta: Sequence[float] = (0.1, 1.0),
              threshold: float = 1e-3) -> list[dict[str, Any]]:
    """Steps to reach ``psi < threshold`` for momentum vs delta momentum over ``(k, a, w, lr)``
    settings (None = not within ``steps``; diverged runs also give None)."""
    rows = []
    for k, a, w, lr in settings:
        row: dict[str, Any] = {"k": k, "a": a, "w": w, "lr": lr}
        mom = run_toy(lambda p, lr=lr: nlo.PreconditionedMomentum(
            p, lr=lr, momentum=beta, preconditioner="identity"), steps=steps, k=k, a=a, w=w)
        row["momentum"] = steps_to_reach(mom["loss"], threshold)
        for bd in betas_delta:
            res = run_toy(lambda p, lr=lr, bd=bd: nlo.DeltaMomentum(p, lr=lr, momentum=beta, beta=bd),
                          steps=steps, k=k, a=a, w=w)
            row[f"delta (beta={bd:g})"] = steps_to_reach(res["loss"], threshold)
        rows.append(row)
    return rows


def draw_toy(fig: Figure, runs: dict[str, dict[str, np.ndarray]], *, k: float = 10.0,
             a: float = 1.0, w: float = 2.0) -> Figure:
    ax, ax2 = fig.subplots(1, 2, width_ratios=[1.3, 1])
    r = np.linspace(-4.5, 4.0, 220)
    th = np.linspace(-4.0, 5.0, 220)
    R, TH = np.meshgrid(r, th)
    Z = psi(torch.tensor(np.stack([R, TH], -1)), k, a, w).numpy()
    ax.contour(R, TH, np.log10(Z + 1e-3), levels=20, cmap="Greys", linewidths=0.6)
    for i, (name, res) in enumerate(runs.items()):
        p = res["path"]
        ax.plot(p[:, 0], p[:, 1], lw=2.2 if i == 1 else 1.2, color=f"C{i}", label=name,
                zorder=3 if i == 1 else 2)
        ax2.semilogy(np.maximum(res["loss"], 1e-12), color=f"C{i}", label=name)
    ax.plot(*TOY_START, "ko", ms=4)
    ax.plot(0, 0, "k*", ms=8)
    ax.set_xlim(r[0], r[-1])
    ax.set_ylim(th[0], th[-1])
    ax.set_xlabel("r")
    ax.set_ylabel("theta")
    ax.set_title(f"Eq. 53 toy (k={k:g}, a={a:g}, w={w:g})")
    ax2.set_xlabel("step")
    ax2.set_ylabel("psi(r, theta)")
    ax2.set_title("loss")
    ax2.legend(fontsize=7)
    return fig


def delta_momentum_blowup(*, steps: int = 30, lr: float = 0.01, beta: float = 0.9) -> dict[str, list[float]]:
    """Norm of the momentum on the toy for Eq. 49 as printed (``normalize=False``, ``beta=1``) and
    for the course's normalized delta momentum, same lr and momentum."""
    out = {}
    for label, kw in (("raw Eq. 49", dict(normalize=False, beta=1.0)),
                      ("normalized (course)", dict(normalize=True, beta=1.0))):
        z = torch.tensor([list(TOY_START)], dtype=torch.float64, requires_grad=True)
        opt = nlo.DeltaMomentum([z], lr=lr, momentum=beta, **kw)
        norms = []
        for _ in range(steps):
            opt.zero_grad()
            psi(z[0]).backward()
            opt.step()
            norms.append(float(opt.state[z]["momentum"].norm()))
        out[label] = norms
    return out


# ---------------------------------------------------------------------------------------------
# Adam as the optimal memory of an L2 objective (App. B), and DGD on a stream.


def adam_from_memories(grads: torch.Tensor, lr: float, beta1: float = 0.9, beta2: float = 0.999,
                       eps: float = 1e-8) -> torch.Tensor:
    """Adam's trajectory computed from two *argmin* memories instead of Adam's recursions.
    grads: [T, n] (a fixed gradient stream) -> weights [T, n] from ``W_0 = 0``.

    At step t the element-wise memories are the minimizers of exponentially weighted L2
    regressions of the gradient stream and of the squared gradients::

        m*_t = argmin_m sum_i beta1^(t-i) (m - g_i)^2     = sum_i beta1^(t-i) g_i / sum_i beta1^(t-i)
        v*_t = argmin_v sum_i beta2^(t-i) (v - g_i^2)^2   = sum_i beta2^(t-i) g_i^2 / sum_i beta2^(t-i)

    and the weights divide the first memory by the square root of the second (App. B's
    ``P = H^(1/2)``: Adam's update divides by it; in Eq. 47's form, where ``P`` multiplies the
    gradient, ``P = 1 / (sqrt(v*) + eps)``): ``W_t = W_{t-1} - lr m*_t / (sqrt(v*_t) + eps)``. These are
    exactly Adam's bias-corrected moments (tests compare with ``torch.optim.Adam``).
    """
    T = grads.shape[0]
    W = torch.zeros_like(grads[0])
    out = []
    for t in range(1, T + 1):
        ages = torch.arange(t - 1, -1, -1, dtype=grads.dtype)  # t - i for i = 1..t
        w1, w2 = beta1**ages, beta2**ages
        m_star = (w1[:, None] * grads[:t]).sum(0) / w1.sum()  # closed-form argmin
        v_star = (w2[:, None] * grads[:t] ** 2).sum(0) / w2.sum()
        W = W - lr * m_star / (v_star.sqrt() + eps)
        out.append(W)
    return torch.stack(out)


def dgd_stream(*, steps: int = 200, d_in: int = 8, d_out: int = 4, lr: float = 0.5,
               seed: int = 0) -> dict[str, Any]:
    """Learn a linear map ``v = W* x`` online from a stream whose inputs have very different
    norms (log-normal scale), one pair per step, with three writes of the same step size ``lr``:

    - GD on ``1/2 ||W x - v||^2``: ``W -= lr (W x - v) x^T`` (diverges once ``lr ||x||^2 > 2``);
    - DGD with target ``u = v`` (the memory reading, as in HOPE): Eq. 57, the delta rule with the
      exact step ``lr' = lr / (1 + lr ||x||^2)``;
    - DGD with ``u = -dL/dy = v - W x`` (Eq. 57 read literally for a layer): its fixed point is
      ``W x = v / 2``, so it settles at half the target.

    Returns ``{"steps", "error": {name: [||W_t - W*|| / ||W*||]}, "x_norm2": [...]}``.
    """
    g = torch.Generator().manual_seed(seed)
    W_star = torch.randn(d_out, d_in, generator=g, dtype=torch.float64) / d_in**0.5
    scale = torch.exp(torch.randn(steps, generator=g, dtype=torch.float64))
    X = torch.randn(steps, d_in, generator=g, dtype=torch.float64) / d_in**0.5 * scale[:, None]
    V = X @ W_star.T
    Ws = {name: torch.zeros(d_out, d_in, dtype=torch.float64)
          for name in ("GD", "DGD, u = v", "DGD, u = -dL/dy (literal)")}
    err: dict[str, list[float]] = {k: [] for k in Ws}
    for x, v in zip(X, V):
        W = Ws["GD"]
        Ws["GD"] = W - lr * torch.outer(W @ x - v, x)
        Ws["DGD, u = v"] = nlo.dgd_step(Ws["DGD, u = v"], x, v, lr)
        W = Ws["DGD, u = -dL/dy (literal)"]
        Ws["DGD, u = -dL/dy (literal)"] = nlo.dgd_step(W, x, v - W @ x, lr)
        for k, Wk in Ws.items():
            e = float((Wk - W_star).norm() / W_star.norm())
            err[k].append(e if math.isfinite(e) else float("inf"))
    return {"steps": list(range(1, steps + 1)), "error": err, "x_norm2": (X**2).sum(1).tolist(),
            "lr": lr}


def draw_dgd_stream(fig: Figure, result: dict[str, Any]) -> Figure:
    ax, ax2 = fig.subplots(1, 2, width_ratios=[2, 1])
    for name, e in result["error"].items():
        e = np.minimum(np.array(e), 1e6)
        ax.semilogy(result["steps"], e, label=name)
    ax.set_ylim(1e-3, 1e3)
    ax.set_xlabel("step (one (x, v) pair each)")
    ax.set_ylabel("||W - W*|| / ||W*||")
    ax.set_title(f"learning a linear map online, lr = {result['lr']}")
    ax.legend(fontsize=8)
    ax2.hist(np.array(result["x_norm2"]) * result["lr"], bins=30, color="0.6")
    ax2.axvline(2.0, color="C0", ls=":")
    ax2.set_xlabel("lr ||x||^2 (GD is unstable right of 2)")
    ax2.set_title("the stream's input norms")
    return fig
