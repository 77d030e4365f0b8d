"""Deep memory (Titans): an associative memory trained by gradient descent at test time.

The memory is a small network ``M`` whose weights are updated on every token by one gradient step
on the regression loss of that token (Titans, Behrouz, Zhong and Mirrokni, arXiv 2501.00663,
Sec. 3.1; Nested Learning arXiv v1 Sec. 8 reads it as the fastest level of a nested system)::

    loss_t  = 1/2 ||M_W(k_t) - v_t||^2                       (the 1/2 only rescales theta)
    g_t     = grad_W loss_t, taken at the chunk-start weights (chunk_size 1: exact online GD)
    S_t     = eta_t S_{t-1} - theta_t g_t                     momentum: "surprise that persists"
    W_t     = (1 - alpha_t) W_{t-1} + S_t                     forgetting (weight decay) gate
    o_t     = M_{W_t}(q_t)                                    inclusive read (token t's own write)

Two memories, both with per-sequence weights carrying leading ``[B, H]`` dims:

- linear, ``params = (W,)`` with ``W: [B, H, d_v, d_k]``: ``M(x) = W x``;
- residual two-layer MLP, ``params = (W_in, W_out)`` with ``W_in: [B, H, hidden, d_k]`` and
  ``W_out: [B, H, d_v, hidden]``: ``M(x) = x + W_out sigma(W_in x)`` (the residual form of
  Eq. 89, arXiv v1; it needs ``d_k == d_v``). **sigma is SiLU**, ``z * sigmoid(z)``: smooth (the
  chunked form differentiates through sigma'), non-saturating, and the usual choice in this family.

``titans_naive`` is the token loop that reads like the equations. ``titans_chunked`` is the dual
form: inside a chunk every gradient is taken at the same weights W_0, so all gradients are rank-one
outer products computed with matmuls, the momentum and decay recurrences become C x C matrices of
cumulative products, and the read-out never materializes a per-token weight matrix; only the loop
across chunks is sequential. Both are differentiable w.r.t. q, k, v, theta, eta, alpha, the initial
weights and the initial momentum. The module also holds the per-token **surprise** readout; notebook
04's experiments, figures and exercise references are in :mod:`nlteach.course.nb04_deep_memory`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

Params = tuple[torch.Tensor, ...]

__all__ = [
    "titans_naive",
    "titans_chunked",
    "titans_surprise",
    "memory_read",
    "init_params",
]


# ---------------------------------------------------------------------------------------------
# The memory, its loss and its gradient (written out, so naive and chunked share no autograd).


def sigma(z: torch.Tensor) -> torch.Tensor:
    """The MLP memory's activation: SiLU, ``z * sigmoid(z)``."""
    return F.silu(z)


def sigma_prime(z: torch.Tensor) -> torch.Tensor:
    """d sigma / dz = s (1 + z (1 - s)) with s = sigmoid(z)."""
    s = torch.sigmoid(z)
    return s * (1 + z * (1 - s))


def memory_read(params: Params, x: torch.Tensor) -> torch.Tensor:
    """Apply the memory to a batch of vectors: ``x [B, H, N, d_k] -> [B, H, N, d_v]``."""
    if len(params) == 1:
        (W,) = params
        return x @ W.transpose(-1, -2)  # M(x) = W x
    W_in, W_out = params
    return x + sigma(x @ W_in.transpose(-1, -2)) @ W_out.transpose(-1, -2)  # x + W_out sigma(W_in x)


def memory_grad(params: Params, k: torch.Tensor, v: torch.Tensor) -> Params:
    """Gradient of 1/2 ||M(k) - v||^2 w.r.t. each weight, one token per sequence.

    ``k: [B, H, d_k]``, ``v: [B, H, d_v]``; returns tensors shaped like ``params``.
    Linear: ``e = W k - v``, ``dW = e k^T``. MLP: ``z = W_in k``, ``a = sigma(z)``,
    ``r = k + W_out a - v``, ``dW_out = r a^T``, ``dW_in = (sigma'(z) * W_out^T r) k^T``.
    """
    if len(params) == 1:
        (W,) = params
        e = torch.einsum("bhvk,bhk->bhv", W, k) - v
        return (e[..., :, None] * k[..., None, :],)
    W_in, W_out = params
    z = torch.einsum("bhnk,bhk->bhn", W_in, k)
    a = sigma(z)
    r = k + torch.einsum("bhvn,bhn->bhv", W_out, a) - v
    delta = sigma_prime(z) * torch.einsum("bhvn,bhv->bhn", W_out, r)
    return (delta[..., :, None] * k[..., None, :], r[..., :, None] * a[..., None, :])


def init_params(B: int, H: int, d: int, *, hidden: int | None = None, scale: float = 1.0,
                generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
                device: torch.device | str = "cpu") -> Params:
    """Random initial weights: ``(W,)`` when ``hidden`` is None, else ``(W_in, W_out)``.

    Entries are N(0, scale^2 / fan_in); ``W_out`` of the MLP starts at zero scaled by ``scale``
    like the others, so ``scale=0`` gives the identity map (residual) or the zero map (linear).
    """
    def rnd(*shape: int) -> torch.Tensor:
        x = torch.randn(*shape, generator=generator, dtype=dtype)
        return (x * (scale / math.sqrt(shape[-1]))).to(device)

    if hidden is None:
        return (rnd(B, H, d, d),)
    return (rnd(B, H, hidden, d), rnd(B, H, d, hidden))


# ---------------------------------------------------------------------------------------------
# Input checks (shared by both implementations).


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lr, momentum, decay, params,
           chunk_size: int, momentum_state) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Params]:
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} must be a tensor [B, H, T, D], got {got}.")
    B, H, T, d_k = k.shape
    if q.shape != k.shape:
        raise ValueError(f"q must have the shape of k {tuple(k.shape)}, got {tuple(q.shape)}.")
    if v.shape[:3] != (B, H, T):
        raise ValueError(f"v must be [B, H, T, d_v] = [{B}, {H}, {T}, d_v], got {tuple(v.shape)}.")
    d_v = v.shape[-1]
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}.")
    gates = []
    for name, x in (("lr", lr), ("momentum", momentum), ("decay", decay)):
        x = torch.as_tensor(x, dtype=k.dtype, device=k.device)
        try:
            x = x.expand(B, H, T)
        except RuntimeError:
            raise ValueError(
                f"{name} must be a per-token gate of shape [B, H, T] = [{B}, {H}, {T}] (or broadcast "
                f"to it), got {tuple(x.shape)}."
            ) from None
        gates.append(x)
    if not isinstance(params, tuple | list) or len(params) not in (1, 2):
        raise ValueError(
            "params must be a tuple (W,) for the linear memory or (W_in, W_out) for the MLP memory, "
            f"got {type(params).__name__} of length {len(params) if hasattr(params, '__len__') else '?'}."
        )
    if len(params) == 1:
        expected = [(B, H, d_v, d_k)]
    else:
        if d_k != d_v:
            raise ValueError(f"the MLP memory is residual, M(x) = x + W_out sigma(W_in x), so it needs "
                             f"d_k == d_v; got d_k={d_k}, d_v={d_v}.")
        hidden = params[0].shape[-2] if params[0].dim() == 4 else -1
        expected = [(B, H, hidden, d_k), (B, H, d_v, hidden)]
    names = ["W"] if len(params) == 1 else ["W_in", "W_out"]
    for name, p, shape in zip(names, params, expected):
        if tuple(p.shape) != shape:
            raise ValueError(f"params {name} must have shape {list(shape)}, got {list(p.shape)}.")
        if p.dtype != k.dtype:
            raise ValueError(f"params {name} has dtype {p.dtype} but the inputs are {k.dtype}.")
    if momentum_state is not None:
        if len(momentum_state) != len(params) or any(
            m.shape != p.shape for m, p in zip(momentum_state, params)
        ):
            raise ValueError(
                "momentum_state must be a tuple shaped like params "
                f"{[list(p.shape) for p in params]}, got {[list(m.shape) for m in momentum_state]}."
            )
    return gates[0], gates[1], gates[2], tuple(params)


# ---------------------------------------------------------------------------------------------
# Naive: the token loop, the equations as written.


def titans_naive(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lr, momentum, decay,
                 params: Params, *, chunk_size: int,
                 momentum_state: Params | None = None) -> tuple[torch.Tensor, tuple[Params, Params]]:
    """Titans memory, one token at a time (reference implementation).

    Args:
        q, k: ``[B, H, T, d_k]``; v: ``[B, H, T, d_v]``.
        lr (theta), momentum (eta), decay (alpha): ``[B, H, T]`` (or anything broadcasting to it).
        params: ``(W,)`` with ``W: [B, H, d_v, d_k]`` (linear memory) or ``(W_in, W_out)`` with
            ``W_in: [B, H, hidden, d_k]``, ``W_out: [B, H, d_v, hidden]`` (residual MLP memory).
        chunk_size: gradients are taken at the weights of the start of the token's chunk; chunks
            start at token 0. ``chunk_size=1`` is exact online gradient descent.
        momentum_state: initial momentum ``S_0`` shaped like ``params`` (default zeros).

    Returns:
        ``(o, (params_T, momentum_T))`` with ``o: [B, H, T, d_v]``, ``o_t = M_{W_t}(q_t)``.
    """
    theta, eta, alpha = _check(q, k, v, lr, momentum, decay, params, chunk_size, momentum_state)[:3]
    W = tuple(params)
    S = tuple(torch.zeros_like(p) for p in W) if momentum_state is None else tuple(momentum_state)
    T = q.shape[2]
    outs = []
    for t in range(T):
        if t % chunk_size == 0:
            W_grad_point = W  # the chunk-start weights
        g = memory_grad(W_grad_point, k[:, :, t], v[:, :, t])  # grad of 1/2||M(k_t) - v_t||^2
        th, et, al = (x[:, :, t, None, None] for x in (theta, eta, alpha))
        S = tuple(et * s - th * g_ for s, g_ in zip(S, g))  # S_t = eta_t S_{t-1} - theta_t g_t
        W = tuple((1 - al) * w + s for w, s in zip(W, S))  # W_t = (1 - alpha_t) W_{t-1} + S_t
        outs.append(memory_read(W, q[:, :, t, None])[:, :, 0])  # o_t = M_{W_t}(q_t)
    return torch.stack(outs, dim=2), (W, S)


# ---------------------------------------------------------------------------------------------
# Chunked: the dual form.
#
# Inside one chunk (local tokens i = 1..C, weights W_0 and momentum S_0 at the chunk start) every
# gradient is taken at W_0, so g_i is a known rank-one matrix u_i x_i^T (linear: u = W_0 k - v,
# x = k; MLP: one such pair per layer). Unroll the two linear recurrences:
#
#   S_i = eta_i S_{i-1} - theta_i g_i
#       = P[i,0] S_0 - sum_{l<=i} P[i,l] theta_l g_l,           P[i,l] = prod_{l<m<=i} eta_m
#   W_i = a_i W_{i-1} + S_i            (a = 1 - alpha)
#       = A[i,0] W_0 + sum_{j<=i} A[i,j] S_j,                    A[i,j] = prod_{j<m<=i} a_m
#       = A[i,0] W_0 + mu_i S_0 - sum_{l<=i} Q[i,l] theta_l g_l
#
# with mu_i = sum_{j<=i} A[i,j] P[j,0] and Q[i,l] = sum_{l<=j<=i} A[i,j] P[j,l], i.e. Q = A P
# (both lower triangular). A weight matrix is only ever applied to vectors, so
#
#   W_i x = A[i,0] (W_0 x) + mu_i (S_0 x) - sum_{l<=i} Q[i,l] theta_l u_l (x_l . x),
#
# which for all i at once is two matmuls with W_0, S_0 plus ((Q * theta) o (X_read X^T)) U: a C x C
# "attention" whose scores are the key-query products and whose weights are the cumulative
# momentum/decay products. For the MLP memory, apply it to the first layer to get the hidden
# pre-activations of every query, apply sigma, and apply it again to the second layer with those
# hidden vectors as inputs. The chunk's final weights and momentum are row C of the same sums.
# P is computed without divisions (so eta = 0 or alpha = 1 are fine): with X[m, l] = eta_m for
# m > l and 1 otherwise, cumprod over m gives P[i, l] = prod_{l<m<=i} eta_m.


def _segment_products(x: torch.Tensor) -> torch.Tensor:
    """``x [..., C] -> [..., C, C]`` with ``out[i, l] = prod_{l < m <= i} x_m`` for i >= l, else 0."""
    C = x.shape[-1]
    idx = torch.arange(C, device=x.device)
    later = idx[:, None] > idx[None, :]  # m > l
    X = torch.where(later, x[..., :, None], torch.ones((), dtype=x.dtype, device=x.device))
    return torch.cumprod(X, dim=-2).tril()


def _chunk_coefficients(theta: torch.Tensor, eta: torch.Tensor, alpha: torch.Tensor):
    """Coefficients of one chunk (``[..., C]`` gates) as in the derivation above.

    Returns ``decay0 [..., C]`` (A[i,0]), ``mu [..., C]``, ``coef [..., C, C]`` (Q[i,l] theta_l),
    and the end-of-chunk rows for the state: ``w_last [..., C]`` (Q[C,l] theta_l),
    ``s_last [..., C]`` (P[C,l] theta_l) and ``eta0_last [...]`` (P[C,0]).
    """
    P = _segment_products(eta)  # [..., C, C]
    A = _segment_products(1 - alpha)
    p0 = torch.cumprod(eta, dim=-1)  # P[j, 0]
    decay0 = torch.cumprod(1 - alpha, dim=-1)  # A[i, 0]
    mu = (A @ p0[..., None])[..., 0]
    coef = (A @ P) * theta[..., None, :]
    return decay0, mu, coef, coef[..., -1, :], P[..., -1, :] * theta, p0[..., -1]


def _apply(W0, S0, decay0, mu, coef, x_read, x_keys, u):
    """``W_i x_i`` for every query row i of the chunk: ``[..., C, out]`` (see the derivation)."""
    base = decay0[..., None] * (x_read @ W0.transpose(-1, -2)) + mu[..., None] * (x_read @ S0.transpose(-1, -2))
    return base - (coef * (x_read @ x_keys.transpose(-1, -2))) @ u


def _end_of_chunk(W0, S0, decay0_last, mu_last, eta0_last, w_last, s_last, x_keys, u):
    """Weights and momentum after the chunk: ``W_C``, ``S_C`` (rank-C updates)."""
    W = decay0_last[..., None, None] * W0 + mu_last[..., None, None] * S0 \
        - u.transpose(-1, -2) @ (w_last[..., :, None] * x_keys)
    S = eta0_last[..., None, None] * S0 - u.transpose(-1, -2) @ (s_last[..., :, None] * x_keys)
    return W, S


def _chunk_step(params: Params, S0: Params, q, k, v, theta, eta, alpha, want_surprise: bool):
    """One chunk in the dual form. Gates ``[B, H, C]``, vectors ``[B, H, C, D]``."""
    decay0, mu, coef, w_last, s_last, eta0_last = _chunk_coefficients(theta, eta, alpha)
    ends = (decay0[..., -1], mu[..., -1], eta0_last, w_last, s_last)
    if len(params) == 1:
        (W0,), (S0w,) = params, S0
        u = k @ W0.transpose(-1, -2) - v  # [B, H, C, d_v]: e_l = W_0 k_l - v_l, g_l = e_l k_l^T
        o = _apply(W0, S0w, decay0, mu, coef, q, k, u) if q is not None else None
        W, S = _end_of_chunk(W0, S0w, *ends, k, u)
        surprise = u.norm(dim=-1) * k.norm(dim=-1) if want_surprise else None  # ||e k^T||_F
        return o, (W,), (S,), surprise
    (W_in, W_out), (S_in, S_out) = params, S0
    z = k @ W_in.transpose(-1, -2)  # [B, H, C, hidden], all at the chunk-start weights
    a = sigma(z)
    r = k + a @ W_out.transpose(-1, -2) - v  # [B, H, C, d_v]: g_out,l = r_l a_l^T
    delta = sigma_prime(z) * (r @ W_out)  # [B, H, C, hidden]: g_in,l = delta_l k_l^T
    o = None
    if q is not None:
        h = sigma(_apply(W_in, S_in, decay0, mu, coef, q, k, delta))  # sigma(W_in,i q_i)
        o = q + _apply(W_out, S_out, decay0, mu, coef, h, a, r)  # q_i + W_out,i h_i
    W_in_T, S_in_T = _end_of_chunk(W_in, S_in, *ends, k, delta)
    W_out_T, S_out_T = _end_of_chunk(W_out, S_out, *ends, a, r)
    surprise = None
    if want_surprise:  # ||(g_in, g_out)||_F = sqrt(|delta|^2 |k|^2 + |r|^2 |a|^2)
        surprise = ((delta.norm(dim=-1) * k.norm(dim=-1)) ** 2 + (r.norm(dim=-1) * a.norm(dim=-1)) ** 2).sqrt()
    return o, (W_in_T, W_out_T), (S_in_T, S_out_T), surprise


def _run_chunks(q, k, v, theta, eta, alpha, params, chunk_size, momentum_state, want_surprise):
    W = tuple(params)
    S = tuple(torch.zeros_like(p) for p in W) if momentum_state is None else tuple(momentum_state)
    T = k.shape[2]
    outs, surprises = [], []
    for s in range(0, T, chunk_size):  # the only sequential loop: across chunks
        sl = slice(s, min(s + chunk_size, T))
        o, W, S, sur = _chunk_step(W, S, None if q is None else q[:, :, sl], k[:, :, sl], v[:, :, sl],
                                   theta[:, :, sl], eta[:, :, sl], alpha[:, :, sl], want_surprise)
        outs.append(o)
        surprises.append(sur)
    o = torch.cat(outs, dim=2) if q is not None else None
    return o, (W, S), (torch.cat(surprises, dim=2) if want_surprise else None)


def titans_chunked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lr, momentum, decay,
                   params: Params, *, chunk_size: int = 64,
                   momentum_state: Params | None = None) -> tuple[torch.Tensor, tuple[Params, Params]]:
    """Titans memory in the chunked dual form; same arguments and result as :func:`titans_naive`.

    Cost per chunk of C tokens: O(C^2 (d_k + hidden) + C d_k hidden) with matmuls; memory for
    autograd grows linearly in T (a few C x C and C x hidden tensors per chunk).
    """
    theta, eta, alpha, params = _check(q, k, v, lr, momentum, decay, params, chunk_size, momentum_state)
    o, state, _ = _run_chunks(q, k, v, theta, eta, alpha, params, chunk_size, momentum_state, False)
    return o, state


def titans_surprise(k: torch.Tensor, v: torch.Tensor, lr, momentum, decay, params: Params, *,
                    chunk_size: int = 1, momentum_state: Params | None = None) -> torch.Tensor:
    """Per-token surprise ``||grad loss_t||`` (Frobenius norm over all weights), ``[B, H, T]``.

    It is the norm of the gradient the update of token t uses, i.e. taken *before* token t is
    written, at the chunk-start weights (``chunk_size=1``: at ``W_{t-1}``, Titans' momentary
    surprise). Computed with the chunked dual form, no per-token weights.
    """
    theta, eta, alpha, params = _check(k, k, v, lr, momentum, decay, params, chunk_size, momentum_state)
    return _run_chunks(None, k, v, theta, eta, alpha, params, chunk_size, momentum_state, True)[2]

