"""Notebook 02 (attention is associative memory): softmax attention as kernel regression, the
readable chunked linear attention, and the fast-weight experiment (MLP vs linear attention vs both).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from nlteach import memory


def kernel_regression(x_query: torch.Tensor, x_keys: torch.Tensor, y_values: torch.Tensor,
                      bandwidth: float) -> torch.Tensor:
    """Nadaraya-Watson regression with a Gaussian kernel, written as softmax attention.

    The weights ``exp(-(x - x_i)^2 / (2 h^2)) / sum_j exp(-(x - x_j)^2 / (2 h^2))`` are a softmax
    over the scores ``-(x - x_i)^2 / (2 h^2)``. x_query: [m], x_keys: [n], y_values: [n] -> [m].
    """
    scores = -(x_query[:, None] - x_keys[None, :]).pow(2) / (2 * bandwidth**2)  # [m, n]
    return torch.softmax(scores, dim=-1) @ y_values


def regression_data(n: int = 40, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy samples of a smooth 1-D function on [0, 1]: x [n], y [n] (float64)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, generator=g, dtype=torch.float64)
    y = torch.sin(6 * x) + 0.5 * x + 0.25 * torch.randn(n, generator=g, dtype=torch.float64)
    return x, y


def draw_kernel_regression(fig: Figure, bandwidth: float = 0.05, *, n: int = 40, seed: int = 0) -> Figure:
    """Widget of notebook 02: softmax attention over (x_i, y_i) pairs as a regression curve, and
    the attention weights of one query."""
    x, y = regression_data(n, seed=seed)
    xs = torch.linspace(0, 1, 300, dtype=torch.float64)
    ax, ax2 = fig.subplots(1, 2, width_ratios=[2, 1])
    ax.scatter(x.numpy(), y.numpy(), s=12, color="0.4", label="stored pairs (k_i, v_i)")
    ax.plot(xs.numpy(), kernel_regression(xs, x, y, bandwidth).numpy(), color="C0", lw=2,
            label="attention read-out M*(q)")
    ax.plot(xs.numpy(), (torch.sin(6 * xs) + 0.5 * xs).numpy(), color="C2", ls="--", lw=1,
            label="true function")
    ax.set_xlabel("query q (a scalar here)")
    ax.set_title(f"softmax attention = kernel regression (bandwidth {bandwidth:.3f})", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    q0 = torch.tensor([0.5], dtype=torch.float64)
    w = torch.softmax(-(q0[:, None] - x[None, :]).pow(2) / (2 * bandwidth**2), dim=-1)[0]
    order = torch.argsort(x)
    ax2.bar(x[order].numpy(), w[order].numpy(), width=0.015, color="C0")
    ax2.set_xlabel("key x_i")
    ax2.set_title("attention weights of q = 0.5", fontsize=9)
    return fig


def intra_chunk_term(Qc: torch.Tensor, Kc: torch.Tensor, Vc: torch.Tensor) -> torch.Tensor:
    """The causal part of chunked linear attention for one chunk: ``(Q K^T * M) V`` with M the
    lower-triangular ones (diagonal included). Qc, Kc: [C, d_k], Vc: [C, d_v] -> [C, d_v]."""
    scores = Qc @ Kc.T  # [C, C], (q_i . k_j)
    return scores.tril() @ Vc  # keep j <= i


def chunked_linear_attention_loop(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk_size: int,
                                  intra=intra_chunk_term) -> tuple[torch.Tensor, torch.Tensor]:
    """A readable chunked linear attention for one head, looping over chunks (notebook 02).

    q, k: [T, d_k], v: [T, d_v]. Per chunk: ``O = Q S + intra(Q, K, V)``, then ``S <- S + K^T V``.
    (:func:`nlteach.memory.linear_attention_chunked` is the same without the loop.)
    """
    S = q.new_zeros(k.shape[-1], v.shape[-1])
    outs = []
    for s in range(0, q.shape[0], chunk_size):
        Qc, Kc, Vc = q[s:s + chunk_size], k[s:s + chunk_size], v[s:s + chunk_size]
        outs.append(Qc @ S + intra(Qc, Kc, Vc))  # inter-chunk (the past) + intra-chunk (causal)
        S = S + Kc.T @ Vc  # the chunk's writes, all at once
    return torch.cat(outs), S


def fast_weight_task(batch: int, T: int, d: int, *, A: torch.Tensor, novelty: float,
                     generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences of pairs ``v_t = (A + B)^T k_t``: ``A`` [d, d] is shared by every sequence (slow
    knowledge), ``B`` is drawn fresh per sequence with scale ``novelty`` (knowledge only the context
    has). Returns keys [batch, 1, T, d] (unit norm) and values [batch, 1, T, d]."""
    k = F.normalize(torch.randn(batch, 1, T, d, generator=generator), dim=-1)
    Bm = novelty * torch.randn(batch, 1, d, d, generator=generator) / math.sqrt(d)
    v = k @ (A + Bm)  # row form of (A + B)^T k
    return k, v


LA_VARIANTS = ("MLP (frozen weights)", "linear attention", "linear attention++")


def train_fast_weights(variant: str, *, d: int, T: int, steps: int, seed: int, batch: int = 64,
                       novelty: float = 1.0, lr: float = 0.02) -> list[float]:
    """Train one of :data:`LA_VARIANTS` on :func:`fast_weight_task`; return the loss per step.

    The model predicts ``v_{t+1}`` from ``q_t = k_{t+1}`` after writing pairs ``1..t``:
    ``o_t = S_t^T k_{t+1}`` with ``S_t = S_0 + eta sum_{i <= t} k_i v_i^T`` (linear attention with
    values scaled by a learned write strength ``eta``).

    - MLP: ``S_t = S_0`` (learned by backprop, no writes): a linear layer, update frequency 0;
    - linear attention: ``S_0 = 0``, only in-context writes (every token);
    - linear attention++: both: a learned ``S_0`` (slow level) plus in-context writes (fast level).
    """
    if variant not in LA_VARIANTS:
        raise ValueError(f"variant must be one of {LA_VARIANTS}, got {variant!r}.")
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(d, d, generator=g) / math.sqrt(d)  # the shared map, fixed for this seed
    S0 = torch.zeros(d, d, requires_grad=variant != "linear attention")
    log_eta = torch.tensor(math.log(1.0 / d), requires_grad=variant != LA_VARIANTS[0])
    opt = torch.optim.Adam([p for p in (S0, log_eta) if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        k, v = fast_weight_task(batch, T + 1, d, A=A, novelty=novelty, generator=g)
        eta = log_eta.exp() if variant != LA_VARIANTS[0] else log_eta.new_zeros(())
        o, _ = memory.linear_attention_chunked(k[:, :, 1:], k[:, :, :-1], eta * v[:, :, :-1],
                                               initial_state=S0.expand(batch, 1, d, d), chunk_size=16)
        loss = (o - v[:, :, 1:]).pow(2).sum(-1).mean() / v.pow(2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses
