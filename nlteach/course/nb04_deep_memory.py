"""Notebook 04 (deep memory, Titans): the exercise references (one sequence, no batch dims), the
capacity experiment (linear vs MLP memory), the rule-breaking stream behind the gates widget, the
chunk-size trade-off, and their ``draw_*(fig, ...)`` figures.

The memory itself (``titans_naive``, ``titans_chunked``, ``titans_surprise``) lives in
:mod:`nlteach.deep_memory`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from nlteach.bench import measure

# The chunk coefficients and the dual-form read of titans_chunked: the exercise's reference is the
# same arithmetic on one chunk of one sequence.
from nlteach.deep_memory import (
    Params,
    _apply,
    _chunk_coefficients,
    memory_grad,
    memory_read,
    titans_chunked,
)

# ---------------------------------------------------------------------------------------------
# References for the exercises (one sequence, no batch dims).


def momentum_decay_recurrence(W0: torch.Tensor, S0: torch.Tensor, grads: torch.Tensor,
                              theta: torch.Tensor, eta: torch.Tensor,
                              alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply ``S_t = eta_t S_{t-1} - theta_t g_t``, ``W_t = (1 - alpha_t) W_{t-1} + S_t``.

    ``W0, S0: [m, n]``, ``grads: [T, m, n]``, gates ``[T]``; returns ``(W, S)``, each ``[T, m, n]``
    holding the weights and momentum after every token.
    """
    W, S, Ws, Ss = W0, S0, [], []
    for t in range(grads.shape[0]):
        S = eta[t] * S - theta[t] * grads[t]
        W = (1 - alpha[t]) * W + S
        Ws.append(W)
        Ss.append(S)
    return torch.stack(Ws), torch.stack(Ss)


def dual_form_chunk_linear(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, W0: torch.Tensor,
                           S0: torch.Tensor, theta: torch.Tensor, eta: torch.Tensor,
                           alpha: torch.Tensor) -> torch.Tensor:
    """Outputs of one chunk of the linear memory in the dual form (gradients at ``W0``).

    ``q, k: [C, d_k]``, ``v: [C, d_v]``, ``W0, S0: [d_v, d_k]``, gates ``[C]`` -> ``o: [C, d_v]``.
    """
    decay0, mu, coef, *_ = _chunk_coefficients(theta, eta, alpha)
    u = k @ W0.T - v  # e_l = W_0 k_l - v_l
    return _apply(W0, S0, decay0, mu, coef, q, k, u)



# ---------------------------------------------------------------------------------------------
# Experiments and figures (each figure is a plain ``draw_*(fig, ...)``).


def unit_pairs(n: int, d: int, *, seeds: int, generator: torch.Generator,
               dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """``seeds`` independent sets of ``n`` random unit keys and unit values: ``[seeds, 1, n, d]`` each."""
    k = F.normalize(torch.randn(seeds, 1, n, d, generator=generator, dtype=dtype), dim=-1)
    v = F.normalize(torch.randn(seeds, 1, n, d, generator=generator, dtype=dtype), dim=-1)
    return k, v


def capacity_experiment(n_pairs: Sequence[int], d: int, hidden: int, *, epochs: int, seeds: int = 3,
                        lr: float = 0.05, momentum: float = 0.9, chunk_size: int = 1,
                        seed: int = 0) -> dict:
    """Write N random unit key-value pairs into a linear and an MLP memory, then ask for all of them.

    Both memories see the same stream (the N pairs, reshuffled each pass, ``epochs`` passes) with
    the same gates (``lr``, ``momentum``, no decay); the linear memory starts at zero, the residual
    MLP at ``W_out = 0`` (the identity map). Returns per N the mean squared recall error
    ``||M(k_i) - v_i||^2`` over the N pairs for every seed (1.0 = no better than answering 0),
    and the least-squares floor of a linear memory (the best any d x d matrix can do).
    """
    g = torch.Generator().manual_seed(seed)
    out: dict = {"n_pairs": list(n_pairs), "linear": [], "mlp": [], "linear_floor": [],
                 "d": d, "hidden": hidden, "epochs": epochs}
    for n in n_pairs:
        k, v = unit_pairs(n, d, seeds=seeds, generator=g)
        order = torch.cat([torch.randperm(n, generator=g) for _ in range(epochs)])
        ks, vs = k[:, :, order], v[:, :, order]
        W_in = torch.randn(seeds, 1, hidden, d, generator=g) / math.sqrt(d)
        memories = {"linear": (torch.zeros(seeds, 1, d, d),),
                    "mlp": (W_in, torch.zeros(seeds, 1, d, hidden))}
        for name, params in memories.items():
            with torch.no_grad():
                _, (W, _) = titans_chunked(ks, ks, vs, lr, momentum, 0.0, params, chunk_size=chunk_size)
                err = (memory_read(W, k) - v).pow(2).sum(-1).mean(dim=(1, 2))
            out[name].append(err.tolist())
        # least squares: W* = argmin sum ||W k_i - v_i||^2, via lstsq on K W^T = V
        sol = torch.linalg.lstsq(k[:, 0].double(), v[:, 0].double()).solution
        floor = (k[:, 0].double() @ sol - v[:, 0].double()).pow(2).sum(-1).mean(-1)
        out["linear_floor"].append(floor.tolist())
    return out


def draw_capacity(fig: Figure, result: dict) -> Figure:
    """Recall error vs number of stored pairs: linear vs MLP memory (mean and spread over seeds)."""
    ax = fig.add_subplot(1, 1, 1)
    n = np.array(result["n_pairs"])
    styles = {"linear": ("C0", "o", "linear memory (d x d)"),
              "mlp": ("C3", "s", f"MLP memory (hidden {result['hidden']})"),
              "linear_floor": ("C0", "", "best possible matrix (least squares)")}
    for name, (color, marker, label) in styles.items():
        e = np.array(result[name])
        ls = "--" if name == "linear_floor" else "-"
        ax.plot(n, e.mean(1), ls, color=color, marker=marker or None, label=label)
        if name != "linear_floor":
            ax.fill_between(n, e.min(1), e.max(1), color=color, alpha=0.2)
    ax.axvline(result["d"], color="gray", lw=0.8, ls=":")
    ax.text(result["d"], ax.get_ylim()[1] * 0.95, f" N = d = {result['d']}", color="gray", va="top")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("number of stored pairs N")
    ax.set_ylabel("recall error  mean ||M(k) - v||^2")
    ax.set_title(f"capacity after {result['epochs']} passes over the same stream")
    ax.legend(fontsize=8)
    return fig


def rule_stream(T: int, d: int, *, p_break: float = 0.03, switch_at: int | None = None,
                seed: int = 0, dtype: torch.dtype = torch.float32) -> dict:
    """A stream of unit keys whose values follow one rule ``v = R k`` (R a random rotation), with
    rare pairs (probability ``p_break``) whose value is random: they break the rule. From token
    ``switch_at`` on a second rotation R2 takes over. Returns ``k, v: [T, d]``, ``broken: [T]``
    (bool), ``rules: [T]`` (0 or 1) and the rotations ``R: [2, d, d]``."""
    g = torch.Generator().manual_seed(seed)
    R = torch.linalg.qr(torch.randn(2, d, d, generator=g, dtype=torch.float64)).Q.to(dtype)
    k = F.normalize(torch.randn(T, d, generator=g, dtype=dtype), dim=-1)
    rules = torch.zeros(T, dtype=torch.long)
    if switch_at is not None:
        rules[switch_at:] = 1
    v = torch.einsum("tij,tj->ti", R[rules], k)
    broken = torch.rand(T, generator=g) < p_break
    broken[: min(10, T)] = False  # let the memory see the rule first
    v[broken] = F.normalize(torch.randn(int(broken.sum()), d, generator=g, dtype=dtype), dim=-1)
    return {"k": k, "v": v, "broken": broken, "rules": rules, "R": R}


@torch.no_grad()
def memory_trace(k: torch.Tensor, v: torch.Tensor, lr: float, momentum: float, decay: float,
                 params: Params, *, chunk_size: int = 1, probe: tuple[torch.Tensor, torch.Tensor] | None = None,
                 probe_rules: torch.Tensor | None = None) -> dict:
    """Token-by-token diagnostics of one sequence (``k, v: [T, d]``, ``params`` with ``[1, 1]`` lead dims).

    Per token t: ``error`` = ``||M_{W_{t-1}}(k_t) - v_t||`` (how wrong the memory was before the
    write), ``surprise`` = the norm of the gradient used (at the chunk-start weights),
    ``momentum`` = ``||S_t||`` and, if ``probe = (keys [P, d], values [R, P, d])`` is given,
    ``probe_error`` = mean ``||M_{W_t}(key) - value||^2`` over probe pairs of the rule in force at t
    (``probe_rules[t]`` picks which set of values). Same recurrence as :func:`titans_naive`.
    """
    W = tuple(params)
    S = tuple(torch.zeros_like(p) for p in W)
    T = k.shape[0]
    names = ("error", "surprise", "momentum", "probe_error")
    rec = {n: torch.zeros(T) for n in names}
    for t in range(T):
        if t % chunk_size == 0:
            W_grad_point = W
        kt, vt = k[t].view(1, 1, -1), v[t].view(1, 1, -1)
        rec["error"][t] = (memory_read(W, kt[:, :, None])[0, 0, 0] - v[t]).norm()
        g = memory_grad(W_grad_point, kt, vt)
        rec["surprise"][t] = torch.sqrt(sum(x.pow(2).sum() for x in g))
        S = tuple(momentum * s - lr * g_ for s, g_ in zip(S, g))
        W = tuple((1 - decay) * w + s for w, s in zip(W, S))
        rec["momentum"][t] = torch.sqrt(sum(s.pow(2).sum() for s in S))
        if probe is not None:
            pk, pv = probe
            r = 0 if probe_rules is None else int(probe_rules[t])
            rec["probe_error"][t] = (memory_read(W, pk[None, None])[0, 0] - pv[r]).pow(2).sum(-1).mean()
    return {n: x.numpy() for n, x in rec.items()}


def gate_demo(theta: float, eta: float, alpha: float, chunk_size: int, *, T: int = 400, d: int = 8,
              hidden: int = 32, seed: int = 0) -> dict:
    """The stream behind notebook 04's widget: rule R1, rare rule-breaking pairs, R2 from T/2;
    an MLP memory starting at the identity. Returns the stream and :func:`memory_trace`."""
    s = rule_stream(T, d, switch_at=T // 2, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    params = (torch.randn(1, 1, hidden, d, generator=g) / math.sqrt(d), torch.zeros(1, 1, d, hidden))
    pk = F.normalize(torch.randn(64, d, generator=g), dim=-1)
    pv = torch.einsum("rij,pj->rpi", s["R"], pk)
    trace = memory_trace(s["k"], s["v"], theta, eta, alpha, params, chunk_size=chunk_size,
                         probe=(pk, pv), probe_rules=s["rules"])
    return {**s, **trace}


def draw_gates(fig: Figure, theta: float = 0.3, eta: float = 0.6, alpha: float = 0.0,
               chunk_size: int = 1) -> Figure:
    """Widget of notebook 04: surprise, momentum and how well the memory knows the current rule."""
    r = gate_demo(theta, eta, alpha, int(chunk_size))
    t = np.arange(len(r["error"]))
    brk = r["broken"].numpy()
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    ax1.plot(t, r["surprise"], color="C3", lw=0.9, label="surprise ||grad||")
    ax1.plot(t, r["momentum"], color="C1", lw=0.9, label="momentum ||S_t||")
    ax1.scatter(t[brk], r["surprise"][brk], color="k", s=12, zorder=3, label="rule-breaking pair")
    ax1.set_yscale("log")
    ax1.legend(fontsize=7, ncol=3, loc="upper right")
    ax1.set_title(f"theta={theta:.2f}  eta={eta:.2f}  alpha={alpha:.3f}  chunk={int(chunk_size)}", fontsize=9)
    ax2.plot(t, r["probe_error"], color="C0", lw=1.0, label="error on the current rule (held-out keys)")
    ax2.axvline(len(t) // 2, color="gray", ls=":", lw=1)
    ax2.text(len(t) // 2, 0.98, " rule switches", transform=ax2.get_xaxis_transform(), va="top",
             color="gray", fontsize=8)
    for x in t[brk]:
        ax2.axvline(x, color="k", alpha=0.15, lw=0.8)
    ax2.set_yscale("log")
    ax2.set_xlabel("token t")
    ax2.legend(fontsize=7, loc="upper right")
    finite = np.isfinite(r["probe_error"]).all()
    if not finite:
        ax2.text(0.5, 0.5, "diverged: lower theta or eta", transform=ax2.transAxes, ha="center", color="C3")
    return fig


def chunk_tradeoff(chunk_sizes: Sequence[int], *, B: int, T: int, d: int, hidden: int,
                   thetas: Sequence[float] = (0.05, 0.3), eta: float = 0.0, alpha: float = 0.0,
                   repeat: int = 3, seed: int = 0, progress: bool = False) -> list[dict]:
    """For each chunk size: forward+backward time per token of :func:`titans_chunked` (measured
    now, on this machine, at ``thetas[0]``) and, for every learning rate in ``thetas``, the online
    prediction error on rule streams (the read at token t asks for the *next* key,
    ``q_t = k_{t+1}``, so the error says how well the memory predicts a pair it has not seen yet;
    NaN when the memory diverged, i.e. the error exceeded 4, twice that of the untrained memory). Bigger chunks: fewer sequential steps, staler gradient points.
    ``progress``: a progress bar over the chunk sizes (the notebook's slowest cell at ``laptop``)."""
    streams = [rule_stream(T + 1, d, switch_at=(T + 1) // 2, seed=seed + b) for b in range(B)]
    k = torch.stack([s["k"] for s in streams])[:, None]  # [B, 1, T+1, d]
    v = torch.stack([s["v"] for s in streams])[:, None]
    q, k, v, v_next = k[:, :, 1:], k[:, :, :-1], v[:, :, :-1], v[:, :, 1:]
    g = torch.Generator().manual_seed(seed)
    W_in = (torch.randn(B, 1, hidden, d, generator=g) / math.sqrt(d)).requires_grad_()
    W_out = torch.zeros(B, 1, d, hidden, requires_grad=True)
    rows = []
    for c in tqdm(chunk_sizes, desc="chunk sizes", disable=not progress):
        def step(c=c):
            o, _ = titans_chunked(q, k, v, thetas[0], eta, alpha, (W_in, W_out), chunk_size=c)
            o.square().mean().backward()

        row = {"chunk_size": c, "us_per_token": 1e6 * measure(step, warmup=1, repeat=repeat) / (B * T),
               "error_mean": {}, "error_per_seq": {}}
        for theta in thetas:
            with torch.no_grad():
                o, _ = titans_chunked(q, k, v, theta, eta, alpha, (W_in, W_out), chunk_size=c)
                err = (o - v_next).pow(2).sum(-1).mean(-1)[:, 0]  # [B]
            # diverged: NaN/Inf, or worse than twice the error of the untrained memory (about 2)
            err = torch.where(torch.isfinite(err) & (err < 4.0), err, torch.full_like(err, float("nan")))
            row["error_mean"][theta] = err.mean().item()
            row["error_per_seq"][theta] = err.tolist()
        rows.append(row)
    return rows


def format_chunk_tradeoff(rows: list[dict]) -> str:
    """:func:`chunk_tradeoff`'s rows as text, one line per chunk size; a learning rate at which
    the memory diverged reads "diverged" (not ``nan``), with a note saying what that means."""
    lines, diverged = [], False
    for r in rows:
        errs = []
        for theta, e in r["error_mean"].items():
            diverged |= not math.isfinite(e)
            errs.append(f"theta={theta}: " + (f"{e:.3f}" if math.isfinite(e) else "diverged"))
        lines.append(f"chunk {r['chunk_size']:4d}: {r['us_per_token']:9.1f} us/token   next-pair error "
                     + "   ".join(errs))
    if diverged:
        lines.append("diverged: the memory's error blew up (NaN/Inf, or above twice the untrained "
                     "memory's) at that learning rate; a smaller theta or chunk size keeps it stable.")
    return "\n".join(lines)


def draw_chunk_tradeoff(fig: Figure, rows: list[dict]) -> Figure:
    """Two panels against the chunk size: time per token and online prediction error."""
    c = [r["chunk_size"] for r in rows]
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(c, [r["us_per_token"] for r in rows], "o-", color="C2")
    ax1.set_ylabel("fwd+bwd time per token (us)")
    ax1.set_title("speed: fewer sequential steps")
    cs = np.array(c)
    for i, theta in enumerate(rows[0]["error_per_seq"]):
        err = np.array([r["error_per_seq"][theta] for r in rows], dtype=float)
        ok = np.isfinite(err).all(1)
        color = f"C{3 + i}"
        ax2.plot(cs[ok], err[ok].mean(1), "o-", color=color, label=f"theta = {theta}")
        ax2.fill_between(cs[ok], err[ok].min(1), err[ok].max(1), color=color, alpha=0.2)
        if (~ok).any():
            ax2.scatter(cs[~ok], np.full((~ok).sum(), np.nanmax(err[ok]) if ok.any() else 1.0),
                        marker="x", color=color, s=40, label=f"theta = {theta}: diverged")
    ax2.set_ylabel("online prediction error")
    ax2.set_title("quality: staler gradient points")
    ax2.legend(fontsize=7)
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("chunk size C")
    ax1.set_yscale("log")
    return fig
