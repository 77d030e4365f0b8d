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

Inputs are checked as in :mod:`nlteach.memory` (an error names the argument, what came and what
was expected): floating-point tensors of one dtype and device (``torch.autocast`` may mix dtypes),
gates that are numbers or floating-point tensors with ``lr`` finite and >= 0 and ``momentum``,
``decay`` in [0, 1] (the first bad position is named). float16/bfloat16 are computed in float32
and cast back. ``T = 0`` returns an empty output and the initial state. The chunked form stays
causal under non-finite ``k``/``v`` (see :func:`titans_chunked`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# the input checks shared with the matrix memories (same layer)
from nlteach.memory import _all_finite, _first_nonfinite_token, range_error

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
# Input checks (shared by both implementations), to the standard of nlteach.memory: every mistake
# is reported with the argument's name, what was received and what was expected.

_GATES = {  # name: (test of a valid value, the range in words, what the gate does)
    "lr": (lambda x: torch.isfinite(x) & (x >= 0), "be finite and >= 0",
           "theta, the step size of the memory's gradient step"),
    "momentum": (lambda x: (x >= 0) & (x <= 1), "lie in [0, 1]",
                 "eta, the fraction of the previous momentum S_{t-1} that is kept"),
    "decay": (lambda x: (x >= 0) & (x <= 1), "lie in [0, 1]",
              "alpha, the fraction of the weights forgotten before each write; 0 = no forgetting"),
}


def _tensor_arg(name: str, x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}.")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}.")
    return x


def _prepare(q, k, v, lr, momentum, decay, params, chunk_size, momentum_state):
    """Check every argument and cast it to the compute dtype.

    ``q=None`` for :func:`titans_surprise` (no reads; ``k`` then names the reference dtype). Gates
    are Python numbers or floating-point tensors broadcasting to ``[B, H, T]``; their values must
    lie in range (NaN and Inf are refused; one read-back from the device). All tensors share one
    dtype and one device, except under ``torch.autocast``, which mixes dtypes by design (the
    autocast policy then picks each product's precision). float16/bfloat16 are computed in
    float32, as in :mod:`nlteach.memory`. Returns ``(q, k, v, theta, eta, alpha, W, S, dtypes)``
    with the gates expanded to ``[B, H, T]``, ``W``/``S`` the initial weights and momentum (zeros
    by default) and ``dtypes = (o dtype, weight dtypes, momentum dtypes)`` for the results.
    """
    ref = "q" if q is not None else "k"
    named = {"q": q} if q is not None else {}
    named.update(k=k, v=v)
    for name, x in named.items():
        _tensor_arg(name, x)
        if x.dim() != 4:
            raise ValueError(f"{name} must be 4-D [B, H, T, D], got shape {tuple(x.shape)}.")
    B, H, T, d_k = k.shape
    if q is not None and q.shape != k.shape:
        raise ValueError(f"q must have the same shape as k [B, H, T, d_k] = {tuple(k.shape)}, "
                         f"got {tuple(q.shape)}.")
    if v.shape[:3] != (B, H, T):
        raise ValueError(f"v must be [B, H, T, d_v] = [{B}, {H}, {T}, d_v] to match k, got {tuple(v.shape)}.")
    d_v = v.shape[-1]
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}.")
    if not isinstance(params, tuple | list) or len(params) not in (1, 2):
        raise ValueError(
            "params must be a tuple (W,) for the linear memory or (W_in, W_out) for the MLP memory, "
            f"got {type(params).__name__} of length {len(params) if hasattr(params, '__len__') else '?'}."
        )
    names = ["W"] if len(params) == 1 else ["W_in", "W_out"]
    for name, p in zip(names, params):
        _tensor_arg(f"params {name}", p)
    if len(params) == 1:
        expected = [(B, H, d_v, d_k)]
    else:
        if d_k != d_v:
            raise ValueError(f"the MLP memory is residual, M(x) = x + W_out sigma(W_in x), so it needs "
                             f"d_k == d_v; got d_k={d_k}, d_v={d_v}.")
        hidden = params[0].shape[-2] if params[0].dim() == 4 else -1
        expected = [(B, H, hidden, d_k), (B, H, d_v, hidden)]
    for name, p, shape in zip(names, params, expected):
        if tuple(p.shape) != shape:
            raise ValueError(f"params {name} must have shape {list(shape)}, got {list(p.shape)}.")
    named.update({f"params {n}": p for n, p in zip(names, params)})
    if momentum_state is not None:
        if not isinstance(momentum_state, tuple | list) or len(momentum_state) != len(params):
            raise ValueError(f"momentum_state must be a tuple shaped like params {[list(p.shape) for p in params]} "
                             f"({len(params)} tensors), got {type(momentum_state).__name__}"
                             + (f" of length {len(momentum_state)}." if hasattr(momentum_state, "__len__") else "."))
        for name, m, p in zip(names, momentum_state, params):
            _tensor_arg(f"momentum_state {name}", m)
            if m.shape != p.shape:
                raise ValueError(
                    "momentum_state must be a tuple shaped like params "
                    f"{[list(p.shape) for p in params]}, got {[list(m.shape) for m in momentum_state]}."
                )
        named.update({f"momentum_state {n}": m for n, m in zip(names, momentum_state)})
    gates = {}
    for name, x in (("lr", lr), ("momentum", momentum), ("decay", decay)):
        if isinstance(x, torch.Tensor):
            _tensor_arg(name, x)
            try:
                ok = torch.broadcast_shapes(x.shape, (B, H, T)) == (B, H, T)
            except RuntimeError:
                ok = False
            if not ok:
                raise ValueError(
                    f"{name} must be a per-token gate of shape [B, H, T] = [{B}, {H}, {T}] (or broadcast "
                    f"to it), got {tuple(x.shape)}."
                )
            named[name] = x
        elif isinstance(x, bool) or not isinstance(x, int | float):
            raise TypeError(f"{name} must be a number or a floating-point tensor of shape [B, H, T], "
                            f"got {type(x).__name__}.")
        gates[name] = x
    device_type = named[ref].device.type
    autocast = torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type)
    for name, x in named.items():
        if x.dtype != named[ref].dtype and not autocast:
            raise TypeError(f"{name} has dtype {x.dtype} but {ref} has {named[ref].dtype}; all tensor inputs "
                            "must share one dtype (gates may also be Python numbers).")
        if x.device != named[ref].device:
            raise ValueError(f"{name} is on device {x.device} but {ref} is on {named[ref].device}; "
                             "move all inputs to one device.")
    dtype = named[ref].dtype
    for x in named.values():
        dtype = torch.promote_types(dtype, x.dtype)  # (only differs under autocast)
    dt = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    # Value ranges (NaN fails every test): numbers on the host, tensors with one read-back.
    expanded, oks = [], {}
    for name, x in gates.items():
        valid, span, meaning = _GATES[name]
        if not isinstance(x, torch.Tensor):
            if not bool(valid(torch.tensor(float(x), dtype=torch.float64))):
                raise ValueError(f"{name} must {span} ({meaning}); got {x!r}.")
            x = torch.tensor(float(x), dtype=dt, device=k.device)
        elif x.numel():
            oks[name] = valid(x)
        expanded.append(x.to(dt).expand(B, H, T))
    if oks and not bool(torch.stack([ok.all() for ok in oks.values()]).all()):
        for name, ok in oks.items():
            if not bool(ok.all()):
                _, span, meaning = _GATES[name]
                bad = ~ok.expand(B, H, T)
                raise range_error(f"{name} must {span} ({meaning}); ", gates[name].expand(B, H, T), bad)
    S = tuple(torch.zeros_like(p) for p in params) if momentum_state is None else tuple(momentum_state)
    dtypes = (named[ref].dtype, tuple(p.dtype for p in params), tuple(m.dtype for m in S))
    q, k, v = (None if x is None else x.to(dt) for x in (q, k, v))
    W, S = tuple(p.to(dt) for p in params), tuple(m.to(dt) for m in S)
    return q, k, v, *expanded, W, S, dtypes


def _cast_results(o, W, S, dtypes):
    o_dtype, W_dtypes, S_dtypes = dtypes
    return (None if o is None else o.to(o_dtype),
            (tuple(w.to(t) for w, t in zip(W, W_dtypes)), tuple(m.to(t) for m, t in zip(S, S_dtypes))))


# ---------------------------------------------------------------------------------------------
# Naive: the token loop, the equations as written.


def titans_naive(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lr, momentum, decay,
                 params: Params, *, chunk_size: int,
                 momentum_state: Params | None = None) -> tuple[torch.Tensor, tuple[Params, Params]]:
    """Titans memory, one token at a time (reference implementation).

    Args:
        q, k: ``[B, H, T, d_k]``; v: ``[B, H, T, d_v]`` (floating point, one dtype and device).
        lr (theta, finite, >= 0), momentum (eta, in [0, 1]), decay (alpha, in [0, 1]): numbers or
            ``[B, H, T]`` tensors (or anything broadcasting to it).
        params: ``(W,)`` with ``W: [B, H, d_v, d_k]`` (linear memory) or ``(W_in, W_out)`` with
            ``W_in: [B, H, hidden, d_k]``, ``W_out: [B, H, d_v, hidden]`` (residual MLP memory).
        chunk_size: gradients are taken at the weights of the start of the token's chunk; chunks
            start at token 0. ``chunk_size=1`` is exact online gradient descent.
        momentum_state: initial momentum ``S_0`` shaped like ``params`` (default zeros).

    Returns:
        ``(o, (params_T, momentum_T))`` with ``o: [B, H, T, d_v]``, ``o_t = M_{W_t}(q_t)``.
        float16/bfloat16 inputs are computed in float32 and the results cast back.
    """
    q, k, v, theta, eta, alpha, W, S, dtypes = _prepare(q, k, v, lr, momentum, decay, params,
                                                        chunk_size, momentum_state)
    o, W, S = _token_loop(q, k, v, theta, eta, alpha, W, S, chunk_size)
    return _cast_results(o, W, S, dtypes)


def _token_loop(q, k, v, theta, eta, alpha, W: Params, S: Params, chunk_size: int):
    """The recurrence token by token on checked inputs; returns ``(o, W_T, S_T)``."""
    outs = []
    for t in range(q.shape[2]):
        if t % chunk_size == 0:
            W_grad_point = W  # the chunk-start weights
        g = memory_grad(W_grad_point, k[:, :, t], v[:, :, t])  # grad of 1/2||M(k_t) - v_t||^2
        th, et, al = (x[:, :, t, None, None] for x in (theta, eta, alpha))
        S = tuple(et * s - th * g_ for s, g_ in zip(S, g))  # S_t = eta_t S_{t-1} - theta_t g_t
        W = tuple((1 - al) * w + s for w, s in zip(W, S))  # W_t = (1 - alpha_t) W_{t-1} + S_t
        outs.append(memory_read(W, q[:, :, t, None])[:, :, 0])  # o_t = M_{W_t}(q_t)
    o = torch.stack(outs, dim=2) if outs else v.new_zeros(v.shape)
    return o, W, S


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


def _run_chunks(q, k, v, theta, eta, alpha, W: Params, S: Params, chunk_size, want_surprise):
    T = k.shape[2]
    outs, surprises = [], []
    for s in range(0, T, chunk_size):  # the only sequential loop: across chunks
        sl = slice(s, min(s + chunk_size, T))
        o, W, S, sur = _chunk_step(W, S, None if q is None else q[:, :, sl], k[:, :, sl], v[:, :, sl],
                                   theta[:, :, sl], eta[:, :, sl], alpha[:, :, sl], want_surprise)
        outs.append(o)
        surprises.append(sur)
    o = None if q is None else (torch.cat(outs, dim=2) if outs else v.new_zeros(v.shape))
    surprise = None
    if want_surprise:
        surprise = torch.cat(surprises, dim=2) if surprises else k.new_zeros(k.shape[:3])
    return o, W, S, surprise


def titans_chunked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lr, momentum, decay,
                   params: Params, *, chunk_size: int = 64,
                   momentum_state: Params | None = None) -> tuple[torch.Tensor, tuple[Params, Params]]:
    """Titans memory in the chunked dual form; same arguments and result as :func:`titans_naive`.

    Cost per chunk of C tokens: O(C^2 (d_k + hidden) + C d_k hidden) with matmuls; memory for
    autograd grows linearly in T (a few C x C and C x hidden tensors per chunk).

    Non-finite inputs (docs/decisions.md#memory-non-finite): a NaN or Inf in ``k`` or ``v`` at
    token t leaves the outputs before t finite, as in the token loop. Inside a chunk the products
    would carry it backwards (a zero coefficient times NaN is NaN), so the final weights and
    momentum are checked (one small reduction and a read-back); only when they are not finite is
    the first non-finite token t of ``k``/``v`` found and the result recomputed: the chunks before
    t's chunk in the dual form, the rest with the token loop. (``q`` only touches its own token's
    output; non-finite gates are refused by the range checks.)
    """
    q, k, v, theta, eta, alpha, W0, S0, dtypes = _prepare(q, k, v, lr, momentum, decay, params,
                                                          chunk_size, momentum_state)
    o, W, S, _ = _run_chunks(q, k, v, theta, eta, alpha, W0, S0, chunk_size, False)
    if not _all_finite(*W, *S):
        t = _first_nonfinite_token(k, v)  # None: finite inputs that overflowed; nothing to repair
        if t is not None:
            c0 = t // chunk_size * chunk_size  # the start of the chunk that holds token t
            head, tail = slice(None, c0), slice(c0, None)
            o0, W, S, _ = _run_chunks(*(x[:, :, head] for x in (q, k, v, theta, eta, alpha)), W0, S0,
                                      chunk_size, False)
            o1, W, S = _token_loop(*(x[:, :, tail] for x in (q, k, v, theta, eta, alpha)), W, S, chunk_size)
            o = torch.cat([o0, o1], dim=2)
    return _cast_results(o, W, S, dtypes)


def titans_surprise(k: torch.Tensor, v: torch.Tensor, lr, momentum, decay, params: Params, *,
                    chunk_size: int = 1, momentum_state: Params | None = None) -> torch.Tensor:
    """Per-token surprise ``||grad loss_t||`` (Frobenius norm over all weights), ``[B, H, T]``.

    It is the norm of the gradient the update of token t uses, i.e. taken *before* token t is
    written, at the chunk-start weights (``chunk_size=1``: at ``W_{t-1}``, Titans' momentary
    surprise). Computed with the chunked dual form, no per-token weights. Arguments are checked
    as in :func:`titans_naive`; half-precision inputs are computed in float32. Causal under
    non-finite inputs as it stands: each token's gradient uses only its own key and value and the
    chunk-start weights.
    """
    _, k, v, theta, eta, alpha, W, S, dtypes = _prepare(None, k, v, lr, momentum, decay, params,
                                                        chunk_size, momentum_state)
    return _run_chunks(None, k, v, theta, eta, alpha, W, S, chunk_size, True)[3].to(dtypes[0])
