"""Shared neural-network layers, written once: the language models (:mod:`nlteach.models`),
self-modifying Titans (:mod:`nlteach.titans`) and the continual learners (:mod:`nlteach.continual`)
all build from these.

- :class:`RMSNorm`: ``x / sqrt(mean(x^2) + eps) * weight`` over the last dimension, ``[..., D]``
  (Zhang & Sennrich 2019, "Root Mean Square Layer Normalization").
- :class:`SwiGLU`: the gated MLP ``W_down (silu(W_gate x) * W_up x)``, ``[..., dim] -> [..., dim]``
  (Shazeer 2020, "GLU Variants Improve Transformer").
- :func:`rope_cos_sin` and :func:`apply_rope`: rotary position embeddings, which rotate pairs of
  query/key features by an angle proportional to the position, so ``q_s . k_t`` depends on the
  positions only through ``s - t`` (Su et al. 2021, "RoFormer").
- :class:`CausalConv`: a depthwise convolution over time that sees only the current and earlier
  tokens, ``[B, T, C] -> [B, T, C]``, starting near the identity (the short convolution of the
  Titans / HOPE layers; Behrouz et al. 2024, "Titans").
- :func:`init_linear` (N(0, std) weights, zero bias) and :func:`residual_std` (the GPT-2 scaling
  ``0.02 / sqrt(2 n_layers)`` for projections that write into the residual stream, so its variance
  does not grow with depth at initialization; Radford et al. 2019).

This module imports only torch (it sits below the models): the helpers take plain numbers, not a
``ModelConfig``. The weights each layer draws, and the order in
which it draws them, are part of its contract: the same seed gives the same model.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["RMSNorm", "SwiGLU", "CausalConv", "rope_cos_sin", "apply_rope", "init_linear", "residual_std"]


def _check_positive_int(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")


# ---------------------------------------------------------------------------------------------
# Initialization.


def init_linear(layer: nn.Linear, std: float = 0.02) -> None:
    """Weights N(0, std^2), bias (if any) zero."""
    nn.init.normal_(layer.weight, mean=0.0, std=std)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def residual_std(n_layers: int, std: float = 0.02) -> float:
    """Init std of a projection that writes into the residual stream: ``std / sqrt(2 n_layers)``.

    Each of the ``n_layers`` blocks adds two branches (mixer and MLP) to the residual stream; with
    this scale the variance they add at initialization stays that of one ``std`` layer (GPT-2).
    """
    _check_positive_int("n_layers", n_layers)
    return std / math.sqrt(2 * n_layers)


# ---------------------------------------------------------------------------------------------
# Normalization and MLP.


class RMSNorm(nn.Module):
    """``x / sqrt(mean(x^2) + eps) * weight`` over the last dimension (computed in float32).

    ``x [..., dim] -> [..., dim]`` in the dtype of ``x``; ``weight [dim]`` starts at 1. Unlike
    LayerNorm it does not subtract the mean and has no bias (Zhang & Sennrich 2019).
    """

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        _check_positive_int("dim", dim)
        if not eps > 0.0:
            raise ValueError(f"eps must be > 0, got {eps!r}.")
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1:] != self.weight.shape:
            raise ValueError(f"RMSNorm({self.weight.shape[0]}) needs x [..., {self.weight.shape[0]}], got {tuple(x.shape)}.")
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)  # [..., dim], unit root mean square
        return (y * self.weight.float()).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class SwiGLU(nn.Module):
    """``W_down (silu(W_gate x) * W_up x)``: ``[..., dim] -> [..., dim]`` (Shazeer 2020), no biases.

    ``W_gate`` and ``W_up`` are one matrix ``gate_up [2 hidden, dim]`` (gate rows first). Weights
    start N(0, 0.02^2); ``down`` starts at ``out_std`` (pass :func:`residual_std` when the output
    is added to a residual stream).
    """

    def __init__(self, dim: int, hidden: int, *, out_std: float = 0.02):
        super().__init__()
        _check_positive_int("dim", dim)
        _check_positive_int("hidden", hidden)
        self.gate_up = nn.Linear(dim, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)
        init_linear(self.gate_up)
        init_linear(self.down, out_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)  # [..., hidden] each
        return self.down(F.silu(gate) * up)  # [..., dim]


# ---------------------------------------------------------------------------------------------
# Rotary position embeddings (Su et al. 2021).


def rope_cos_sin(seq_len: int, head_dim: int, base: float, device: torch.device | str | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotation angles ``t * base^(-2i/head_dim)``: cos and sin, each ``[T, head_dim / 2]`` (float32).

    Pair ``i`` turns with frequency ``base^(-2i/head_dim)``: the first pairs fast (local position),
    the last slowly (far position). ``head_dim`` must be even.
    """
    if not isinstance(seq_len, int) or isinstance(seq_len, bool) or seq_len < 0:
        raise ValueError(f"seq_len must be a non-negative int, got {seq_len!r}.")
    _check_positive_int("head_dim", head_dim)
    if head_dim % 2:
        raise ValueError(f"head_dim must be even (RoPE rotates pairs of features), got {head_dim}.")
    inv_freq = base ** (-torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)  # [D/2]
    angles = torch.arange(seq_len, device=device, dtype=torch.float32)[:, None] * inv_freq  # [T, D/2]
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate feature pairs ``(x_i, x_{i + D/2})`` of ``x: [..., T, D]`` (e.g. ``[B, H, T, D]``) by
    the angles of position t; ``cos, sin: [T, D/2]`` from :func:`rope_cos_sin`. Norm-preserving."""
    if x.shape[-1] != 2 * cos.shape[-1] or x.shape[-2] != cos.shape[-2]:
        raise ValueError(f"x [..., T, D] needs cos and sin [T, D/2]; got x {tuple(x.shape)}, cos {tuple(cos.shape)}.")
    x1, x2 = x.float().chunk(2, dim=-1)  # [..., T, D/2] each
    out = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)  # [..., T, D]
    return out.to(x.dtype)


# ---------------------------------------------------------------------------------------------
# Short causal convolution.


class CausalConv(nn.Conv1d):
    """Depthwise causal convolution over time, ``x [B, T, C] -> [B, T, C]``, starting near the identity.

    Output t is ``sum_j weight[c, 0, j] x[t - size + 1 + j, c]`` per channel c: the current token and
    the ``size - 1`` before it (zeros before the start). An ``nn.Conv1d`` with ``groups=C``, padding
    ``size - 1`` on both sides and the right-hand outputs dropped, so its state_dict holds one
    ``weight [C, 1, size]``. Init: N(0, 0.02^2) plus 1 on the current token's tap, so it starts as
    (almost) the identity map.

    ``defer_init=True`` leaves ``nn.Conv1d``'s default init in place; the owner then calls
    :meth:`reset_near_identity` itself. :class:`nlteach.titans.SelfModifyingTitans` does so after
    drawing its other weights, which keeps the weights a given seed gives the same as before this
    layer was shared.
    """

    def __init__(self, channels: int, size: int = 4, *, defer_init: bool = False):
        _check_positive_int("channels", channels)
        _check_positive_int("size", size)
        super().__init__(channels, channels, size, groups=channels, padding=size - 1, bias=False)
        if not defer_init:
            self.reset_near_identity()

    @torch.no_grad()
    def reset_near_identity(self, std: float = 0.02) -> None:
        """Weights N(0, std^2) plus 1 on the current token's tap."""
        self.weight.normal_(0, std)
        self.weight[:, 0, -1] += 1.0  # the current token passes through

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.in_channels:
            raise ValueError(f"CausalConv({self.in_channels}) needs x [B, T, {self.in_channels}], got {tuple(x.shape)}.")
        T = x.shape[1]
        return super().forward(x.transpose(1, 2))[..., :T].transpose(1, 2)  # left padding only: causal


class SmallMLP(nn.Module):
    """A small classifier (notebook 06's optimizer comparison and ``bench optim``): an input encoder,
    two hidden GELU layers of width ``hidden``, a linear head. For digits the input is the 64 pixels; for text it is the
    concatenated embeddings of the last ``context`` characters (a Bengio-style character MLP)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, *, vocab: int | None = None,
                 embed: int = 8):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed) if vocab is not None else None
        d = in_dim * embed if vocab is not None else in_dim
        self.body = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, hidden),
                                  nn.GELU(), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.embed is not None:
            x = self.embed(x).flatten(1)  # [B, context] -> [B, context * embed]
        return self.body(x)
