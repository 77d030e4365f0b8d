"""Matrix associative memories: linear attention, the delta rule and the gated delta rule.

Notebooks 01-03. Every rule comes twice, with the same signature and the same result:

- ``*_naive``: a loop over tokens that reads like the equation (the reference);
- ``*_chunked``: the same recurrence cut into chunks of ``chunk_size`` tokens, computed with
  matrix products (fast on CPUs and GPUs). Comments derive it from the recurrence.

Conventions (the library contract, docs/design.md#contract-conventions):

- tensors are ``[B, H, T, D]``: ``q, k: [B, H, T, d_k]``, ``v: [B, H, T, d_v]``, per-token
  scalars ``beta, alpha: [B, H, T]``; the state is ``S: [B, H, d_k, d_v]``;
- the read is *inclusive*: ``o_t = S_t^T q_t`` sees token t's own write;
- every function returns ``(o, final_state)`` with ``o: [B, H, T, d_v]``;
- ``initial_state=None`` means ``S_0 = 0``.

The rules (docs/paper-notes.md#associative-memory; the paper derives each as one gradient step on an objective):

- linear attention (Hebbian, dot-product objective ``-<S^T k, v>``): ``S_t = S_{t-1} + k_t v_t^T``;
- delta rule (L2 objective ``1/2 ||S^T k - v||^2``, step size ``beta``):
  ``S_t = (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T``;
- gated delta rule: the same with ``S_{t-1}`` first multiplied by the keep factor ``alpha_t``.

Precision: float16/bfloat16 inputs are computed in float32 (state, products and the triangular
solve) and the output is cast back; float32 and float64 are computed in their own precision.

Non-finite values (docs/decisions.md#memory-non-finite): the chunked forms stay causal like the
token loops. A NaN or Inf in ``k`` or ``v`` at token t leaves every output before t finite
(``q`` only ever touches its own token's output; a non-finite ``beta`` or ``alpha`` is refused by
the range checks, with its first position). Inside a chunk the products would otherwise carry it
backwards (masks are multiplications and a zero coefficient times NaN is NaN), so the chunked
functions check that the final state is finite (one small reduction and a read-back); only when it
is not, they find the first non-finite token t of ``k``/``v`` and recompute: the chunks before
t's chunk with the chunked form, the rest with the token loop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "linear_attention_naive",
    "linear_attention_chunked",
    "delta_rule_naive",
    "delta_rule_chunked",
]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


# ---------------------------------------------------------------------------------------------
# Input checks: every mistake is reported with the argument's name, what was received and what
# was expected.


def _shape(x: torch.Tensor) -> str:
    return str(tuple(x.shape))


def _check(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor | None = None,
    alpha: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    chunk_size: int | None = None,
    *,
    check_values: bool = True,
) -> None:
    named = {"q": q, "k": k, "v": v}
    if beta is not None:
        named["beta"] = beta
    if alpha is not None:
        named["alpha"] = alpha
    if initial_state is not None:
        named["initial_state"] = initial_state
    for name, x in named.items():
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}.")
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}.")
    for name in ("q", "k", "v"):
        if named[name].dim() != 4:
            raise ValueError(
                f"{name} must be 4-D [B, H, T, D], got shape {_shape(named[name])}."
            )
    B, H, T, d_k = k.shape
    d_v = v.shape[-1]
    if q.shape != k.shape:
        raise ValueError(
            f"q must have the same shape as k [B, H, T, d_k] = {_shape(k)}, got {_shape(q)}."
        )
    if v.shape[:3] != k.shape[:3]:
        raise ValueError(
            f"v must be [B, H, T, d_v] = [{B}, {H}, {T}, d_v] to match k, got {_shape(v)}."
        )
    for name in ("beta", "alpha"):
        if name in named and named[name].shape != (B, H, T):
            raise ValueError(
                f"{name} must be [B, H, T] = {(B, H, T)} (one scalar per token), "
                f"got {_shape(named[name])}."
            )
    if initial_state is not None and initial_state.shape != (B, H, d_k, d_v):
        raise ValueError(
            f"initial_state must be [B, H, d_k, d_v] = {(B, H, d_k, d_v)}, "
            f"got {_shape(initial_state)}."
        )
    for name, x in named.items():
        if x.dtype != q.dtype:
            raise TypeError(
                f"{name} has dtype {x.dtype} but q has {q.dtype}; all inputs must share one dtype."
            )
        if x.device != q.device:
            raise ValueError(
                f"{name} is on device {x.device} but q is on {q.device}; move all inputs to one device."
            )
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}.")
    if not check_values:
        return
    # Value ranges (NaN fails every comparison, so it is refused too). (This reads a flag back
    # from the device: one synchronisation per call.)
    if beta is not None and beta.numel() and not bool(((beta >= 0) & (beta <= 2)).all()):
        raise range_error(
            "beta must lie in [0, 2] (the step size of the delta rule; with unit-norm keys "
            "I - beta k k^T only shrinks the memory for beta in [0, 2]); ",
            beta, ~((beta >= 0) & (beta <= 2)))
    if alpha is not None and alpha.numel() and not bool(((alpha > 0) & (alpha <= 1)).all()):
        raise range_error(
            "alpha must lie in (0, 1] (the fraction of the memory kept before each write; "
            "use alpha=None for the ungated rule); ", alpha, ~((alpha > 0) & (alpha <= 1)))


class NonFiniteError(ValueError):
    """A per-token gate that must be a finite number holds a NaN or an infinity (inside a model: an
    activation that overflowed upstream). A ``ValueError`` like every refused input; a caller that
    can go on without the result (an evaluation at a length the model never trained on) catches
    this one alone."""


def range_error(message: str, x: torch.Tensor, bad: torch.Tensor) -> ValueError:
    """The error for a gate ``x [B, H, T]`` with entries ``bad`` outside its range: ``message`` and
    the first such entry (:func:`_first_outside`); a :class:`NonFiniteError` when any of them is NaN
    or infinite, else a ``ValueError``."""
    cls = NonFiniteError if not bool(torch.isfinite(x[bad]).all()) else ValueError
    return cls(message + _first_outside(x, bad))


def _first_position(bad: torch.Tensor) -> tuple[int, int, int]:
    """The first ``(batch, head, token)`` in token order where ``bad`` (bool, ``[B, H, T, ...]``
    with at least one True) is True in any trailing entry."""
    bad = bad.flatten(3).any(-1) if bad.dim() > 3 else bad  # [B, H, T]
    t = int(bad.any(1).any(0).nonzero()[0, 0])
    b, h = (int(i) for i in bad[:, :, t].nonzero()[0])
    return b, h, t


def _first_outside(x: torch.Tensor, bad: torch.Tensor) -> str:
    """``"got <value> at (batch b, head h, token t), the first one outside (values in [lo, hi])"``
    for a per-token gate ``x [B, H, T]`` and its mask of bad entries."""
    b, h, t = _first_position(bad)
    finite = x[torch.isfinite(x)]
    span = (f" (finite values in [{finite.min().item():.4g}, {finite.max().item():.4g}])"
            if finite.numel() else "")
    return f"got {x[b, h, t].item():.4g} at (batch {b}, head {h}, token {t}), the first value outside{span}."


def _first_nonfinite_token(*xs: torch.Tensor) -> int | None:
    """The first token (dim 2) at which any of ``xs`` (``[B, H, T, ...]``) holds a NaN or Inf."""
    first = None
    for x in xs:
        bad = ~torch.isfinite(x)
        bad = bad.flatten(3).any(-1) if bad.dim() > 3 else bad  # [B, H, T]
        tokens = bad.any(1).any(0).nonzero()
        if tokens.numel():
            t = int(tokens[0, 0])
            first = t if first is None else min(first, t)
    return first


def _all_finite(*xs: torch.Tensor) -> bool:
    """Whether no tensor in ``xs`` holds a NaN or Inf, from the sum of their entries (one read-back;
    a sum is about five times cheaper than ``isfinite().all()`` on CPUs). Finite entries whose sum
    overflows give a false alarm, which the callers treat like any non-finite state: they look
    for a non-finite input, find none and keep the result."""
    with torch.no_grad():
        return bool(torch.isfinite(sum(x.sum() for x in xs)))


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in _LOW_PRECISION else dtype


def _zero_state(k: torch.Tensor, v: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    B, H, _, d_k = k.shape
    return torch.zeros(B, H, d_k, v.shape[-1], dtype=dtype, device=k.device)


def _pad_time(x: torch.Tensor, T_pad: int, value: float = 0.0) -> torch.Tensor:
    """Pad the time axis (dim 2) of ``[B, H, T, ...]`` at the end to length ``T_pad``."""
    extra = T_pad - x.shape[2]
    if extra == 0:
        return x
    pad = [0, 0] * (x.dim() - 3) + [0, extra]
    return F.pad(x, pad, value=value)


def _lower_mask(C: int, like: torch.Tensor, *, strict: bool = False) -> torch.Tensor:
    """[C, C] float mask M with M_ij = 1 for j <= i (``strict=True``: j < i) and 0 above, in the
    dtype and on the device of ``like``. Masks are applied as ``x.mul_(M)``: on CPUs that is about
    ten times faster than ``masked_fill_`` with a broadcast boolean mask on [Z, C, C] tensors (and
    ``tril_`` on batched tensors starts the thread pool even for tiny inputs)."""
    i = torch.arange(C, device=like.device)
    keep = i.unsqueeze(1) > i.unsqueeze(0) if strict else i.unsqueeze(1) >= i.unsqueeze(0)
    return keep.to(like.dtype)


def _chunk_prefix_sums(X: torch.Tensor, S0: torch.Tensor, *, reverse: bool = False,
                       block: int = 64) -> torch.Tensor:
    """Exclusive prefix sums over the chunk axis: ``out[:, n] = S0 + sum_{m < n} X[:, m]``
    (``reverse=True``: ``S0 + sum_{m > n} X[:, m]``, a suffix sum). X: [BH, N, D]; S0: [BH, D].

    Each block of up to ``block`` chunks is one matrix product with a strictly triangular matrix
    of ones (plus S0 and the running total of the earlier blocks), not a Python loop of N
    additions: on CPUs the loop costs tens of microseconds per chunk, the product a few.
    Returns [BH, N, D], contiguous.
    """
    BH, N, D = X.shape
    carry = S0.reshape(BH, 1, D)
    order = range(N, 0, -block) if reverse else range(0, N, block)
    parts = []
    for edge in order:
        lo, hi = (max(0, edge - block), edge) if reverse else (edge, min(N, edge + block))
        m = hi - lo
        ones = torch.ones(m, m, dtype=X.dtype, device=X.device)
        ones = ones.triu_(1) if reverse else ones.tril_(-1)  # [m, m], strictly upper / lower
        part = torch.baddbmm(carry.expand(BH, m, D), ones.expand(BH, m, m), X[:, lo:hi])  # [BH, m, D]
        parts.append(part)
        end = 0 if reverse else m - 1  # the block's last chunk in the direction of the sum
        carry = part[:, end:end + 1] + X[:, lo + end:lo + end + 1]
    if len(parts) == 1:
        return parts[0]
    return torch.cat(parts[::-1] if reverse else parts, dim=1)


# ---------------------------------------------------------------------------------------------
# Linear attention: S_t = S_{t-1} + k_t v_t^T, o_t = S_t^T q_t.


def linear_attention_naive(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear attention token by token: ``S_t = S_{t-1} + k_t v_t^T``, ``o_t = S_t^T q_t``.

    This is one gradient step (step size 1) on the Hebbian objective ``-<S^T k_t, v_t>``
    (docs/paper-notes.md#hebbian). q, k: [B, H, T, d_k]; v: [B, H, T, d_v];
    initial_state: [B, H, d_k, d_v] or None (zeros). Returns ``(o [B, H, T, d_v], S_T [B, H, d_k, d_v])``.
    """
    _check(q, k, v, initial_state=initial_state)
    out_dtype, dt = q.dtype, _compute_dtype(q.dtype)
    q, k, v = q.to(dt), k.to(dt), v.to(dt)
    S = _zero_state(k, v, dt) if initial_state is None else initial_state.to(dt)  # [B, H, d_k, d_v]
    outs = []
    # (unbind splits the time axis once; indexing k[:, :, t] in the loop would make the backward
    # pass allocate a full-size gradient for every token.)
    for q_t, k_t, v_t in zip(q.unbind(2), k.unbind(2), v.unbind(2)):  # each [B, H, d]
        S = S + k_t.unsqueeze(-1) * v_t.unsqueeze(-2)  # S_t = S_{t-1} + k_t v_t^T
        outs.append(torch.einsum("bhk,bhkv->bhv", q_t, S))  # o_t = S_t^T q_t
    o = torch.stack(outs, dim=2) if outs else v.new_zeros(v.shape)
    return o.to(out_dtype), S.to(out_dtype)


def linear_attention_chunked(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    initial_state: torch.Tensor | None = None,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear attention in chunks of ``chunk_size`` tokens (same result as the naive loop).

    Derivation. Cut time into chunks of C tokens and let S be the state before a chunk. Unrolling
    ``S_t = S_{t-1} + k_t v_t^T`` inside the chunk gives, for the chunk's i-th token,
    ``S_i = S + sum_{j <= i} k_j v_j^T``, so with the chunk's rows stacked as Q, K, V [C, d]:

        o_i = S_i^T q_i = S^T q_i + sum_{j <= i} (q_i . k_j) v_j
        O   = Q S + (Q K^T * M) V          M = lower-triangular ones, diagonal included
        S  <- S + K^T V                    the state after the chunk

    The state before chunk n is ``S_0 + sum_{m < n} K_m^T V_m``: an exclusive prefix sum over the
    chunks, itself computed as a product with a triangular matrix of ones (one per 64 chunks), so
    every step is a batched product over all chunks at once. T need not be a multiple of C (the
    last chunk is zero-padded; zero keys and values write nothing). The backward pass is written by
    hand in the same form (see ``_LinearAttentionChunks``; first-order gradients only, no double
    backward).

    Non-finite inputs: a NaN or Inf in ``k`` or ``v`` at token t leaves the outputs before t
    finite, as in the token loop (see the module docstring: when the final state is not finite,
    the chunks from t's chunk on are recomputed with the token loop).
    """
    _check(q, k, v, initial_state=initial_state, chunk_size=chunk_size)
    out_dtype, dt = q.dtype, _compute_dtype(q.dtype)
    T = k.shape[2]
    S0 = _zero_state(k, v, dt) if initial_state is None else initial_state.to(dt)
    if T == 0:
        return v.new_zeros(v.shape), S0.to(out_dtype)
    q, k, v = q.to(dt), k.to(dt), v.to(dt)
    o, S = _linear_attention_chunks(q, k, v, S0, chunk_size)
    if not _all_finite(S):  # a NaN/Inf in k or v (or an overflow): keep the outputs causal
        t = _first_nonfinite_token(k, v)
        if t is not None:
            c0 = t // chunk_size * chunk_size  # the start of the chunk that holds token t
            o0, S_c0 = _linear_attention_chunks(q[:, :, :c0], k[:, :, :c0], v[:, :, :c0], S0, chunk_size)
            o1, S = linear_attention_naive(q[:, :, c0:], k[:, :, c0:], v[:, :, c0:], initial_state=S_c0)
            o = torch.cat([o0, o1], dim=2)
    return o.to(out_dtype), S.to(out_dtype)


def _linear_attention_chunks(q, k, v, S0, C: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:class:`_LinearAttentionChunks` on inputs of any length T (padded to a multiple of C)."""
    T = k.shape[2]
    if T == 0:
        return v.new_zeros(v.shape), S0
    T_pad = -(-T // C) * C  # zero keys and values in the padding write nothing
    q, k, v = (_pad_time(x, T_pad) for x in (q, k, v))
    o, S = _LinearAttentionChunks.apply(q, k, v, S0, C)
    return o[:, :, :T], S


class _LinearAttentionChunks(torch.autograd.Function):
    """The chunked form of :func:`linear_attention_chunked` on padded inputs, with its backward.

    Per chunk (rows i = 1..C, S_n the state before it): O = P V + Q S_n with P = Q K^T * M, and
    S_{n+1} = S_n + K^T V. Differentiating, chunk by chunk from the last:

        dS_n = dS_{n+1} + Q^T dO                   (a suffix sum over the chunks)
        dP   = (dO V^T) * M                         (M = lower-triangular ones, diagonal included)
        dQ   = dP K + dO S_n^T
        dK   = dP^T Q + V dS_{n+1}^T
        dV   = P^T dO + K dS_{n+1}

    Differentiable once (no double backward).
    """

    @staticmethod
    def forward(ctx, q, k, v, S0, C):
        B, H, Tp, d_k = k.shape
        d_v = v.shape[-1]
        BH, N = B * H, Tp // C
        Z = BH * N  # all chunks of all heads as one batch dimension
        Q, K = q.reshape(Z, C, d_k), k.reshape(Z, C, d_k)  # [Z, C, d_k]
        V = v.reshape(Z, C, d_v)  # [Z, C, d_v]
        P = torch.bmm(Q, K.mT).mul_(_lower_mask(C, Q))  # [Z, C, C], Q K^T * M
        KV = torch.bmm(K.mT, V).unflatten(0, (BH, N))  # [BH, N, d_k, d_v], each chunk's write K^T V
        # S_n = S_0 + sum_{m < n} K_m^T V_m, an exclusive prefix sum over the chunks, computed
        # for all chunks at once as products with a triangular matrix of ones.
        S_n = _chunk_prefix_sums(KV.view(BH, N, d_k * d_v), S0.reshape(BH, d_k * d_v))  # [BH, N, d_k d_v]
        S = (S_n[:, -1] + KV[:, -1].reshape(BH, d_k * d_v)).view(BH, d_k, d_v)  # the state after the last chunk
        S_n = S_n.view(Z, d_k, d_v)  # [Z, d_k, d_v], S_n per chunk
        O = torch.bmm(P, V).baddbmm_(Q, S_n)  # [Z, C, d_v], (Q K^T * M) V + Q S_n (in place: no copy)
        ctx.save_for_backward(Q, K, V, P, S_n)
        return O.view(B, H, Tp, d_v), S.view(B, H, d_k, d_v)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dO, dS_T):
        Q, K, V, P, S_n = ctx.saved_tensors
        Z, C, d_k = K.shape
        d_v = V.shape[-1]
        B, H, Tp, _ = dO.shape
        BH, N = B * H, Z // (B * H)
        dO = dO.contiguous().view(Z, C, d_v)  # (contiguous: see _DeltaRuleChunks.backward)
        QdO = torch.bmm(Q.mT, dO).unflatten(0, (BH, N))  # [BH, N, d_k, d_v], Q^T dO
        # dS_{n+1} = dS_T + sum_{m > n} Q_m^T dO_m, a suffix sum over the chunks (as in the forward).
        D = _chunk_prefix_sums(QdO.view(BH, N, d_k * d_v), dS_T.reshape(BH, d_k * d_v), reverse=True)
        dS0 = (D[:, 0] + QdO[:, 0].reshape(BH, d_k * d_v)).view(B, H, d_k, d_v)  # dS_0
        D = D.view(Z, d_k, d_v)  # [Z, d_k, d_v], dS_{n+1} per chunk
        dP = torch.bmm(dO, V.mT).mul_(_lower_mask(C, dO))  # [Z, C, C]
        dQ = torch.bmm(dP, K).baddbmm_(dO, S_n.mT)  # [Z, C, d_k]
        dK = torch.bmm(dP.mT, Q).baddbmm_(V, D.mT)  # [Z, C, d_k]
        dV = torch.bmm(P.mT, dO).baddbmm_(K, D)  # [Z, C, d_v]
        shape = (B, H, Tp)
        return dQ.view(*shape, d_k), dK.view(*shape, d_k), dV.view(*shape, d_v), dS0, None


# ---------------------------------------------------------------------------------------------
# Delta rule and gated delta rule:
#   S_t = (I - beta_t k_t k_t^T)(alpha_t S_{t-1}) + beta_t k_t v_t^T,   o_t = S_t^T q_t.


def delta_rule_naive(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    *,
    alpha: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (gated) delta rule token by token.

    ``S_t = (I - beta_t k_t k_t^T)(alpha_t S_{t-1}) + beta_t k_t v_t^T`` and ``o_t = S_t^T q_t``.
    Written as a correction, ``S_t = alpha_t S_{t-1} + beta_t k_t (v_t - alpha_t S_{t-1}^T k_t)^T``:
    one gradient step with step size ``beta_t`` on ``1/2 ||S^T k_t - v_t||^2`` taken from the
    decayed memory (docs/paper-notes.md#delta-rule). ``alpha=None`` is the plain delta rule (alpha = 1).

    q, k: [B, H, T, d_k]; v: [B, H, T, d_v]; beta: [B, H, T] in [0, 2]; alpha: [B, H, T] in (0, 1]
    or None; initial_state: [B, H, d_k, d_v] or None. Keys are used as given: L2-normalise them
    (the usual choice) so that ``I - beta k k^T`` is a contraction for beta in [0, 2].
    Returns ``(o [B, H, T, d_v], S_T [B, H, d_k, d_v])``.
    """
    _check(q, k, v, beta, alpha, initial_state)
    out_dtype, dt = q.dtype, _compute_dtype(q.dtype)
    q, k, v, beta = q.to(dt), k.to(dt), v.to(dt), beta.to(dt)
    alpha = None if alpha is None else alpha.to(dt)
    S = _zero_state(k, v, dt) if initial_state is None else initial_state.to(dt)  # [B, H, d_k, d_v]
    outs = []
    alphas = [None] * k.shape[2] if alpha is None else alpha.unbind(2)
    for q_t, k_t, v_t, b_t, a_t in zip(q.unbind(2), k.unbind(2), v.unbind(2), beta.unbind(2), alphas):
        # q_t, k_t: [B, H, d_k], v_t: [B, H, d_v], b_t, a_t: [B, H]
        b_t = b_t.unsqueeze(-1)  # [B, H, 1]
        if a_t is not None:
            S = a_t[..., None, None] * S  # alpha_t S_{t-1}
        v_old = torch.einsum("bhkv,bhk->bhv", S, k_t)  # what the memory returns for k_t now
        S = S + k_t.unsqueeze(-1) * (b_t * (v_t - v_old)).unsqueeze(-2)  # the delta write
        outs.append(torch.einsum("bhk,bhkv->bhv", q_t, S))  # o_t = S_t^T q_t
    o = torch.stack(outs, dim=2) if outs else v.new_zeros(v.shape)
    return o.to(out_dtype), S.to(out_dtype)


def delta_rule_chunked(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    *,
    alpha: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (gated) delta rule in chunks: the WY/UT representation (same result as the naive loop).

    Derivation, for one chunk of C tokens i = 1..C starting from the state S (before the chunk).

    1. Write each step as a decay plus a rank-one write of a *pseudo-value* u_i:
           S_i = alpha_i S_{i-1} + k_i u_i^T,   u_i = beta_i (v_i - alpha_i S_{i-1}^T k_i).
    2. Unroll it. With the cumulative log-decay g_i = sum_{j <= i} log alpha_j (g = 0 ungated),
       gamma_i = exp(g_i) and Gamma_ij = exp(g_i - g_j) (the decay from token j to token i):
           S_i = gamma_i S + sum_{j <= i} Gamma_ij k_j u_j^T.
       Since alpha_i S_{i-1} = gamma_i S + sum_{j < i} Gamma_ij k_j u_j^T, step 1 becomes
           u_i + beta_i sum_{j < i} Gamma_ij (k_i . k_j) u_j = beta_i v_i - beta_i gamma_i S^T k_i.
    3. Stack the rows: with A = strictly_lower(diag(beta) (K K^T * Gamma)) this is
           (I + A) U_pseudo = diag(beta) V - diag(beta * gamma) K S.
       (I + A) is unit lower-triangular, so one triangular solve gives the UT transform
       T = (I + A)^{-1} diag(beta) and
           U_pseudo = U - W S,   U = T V,   W = T (gamma * K)          (the WY representation).
       Note the Gamma inside A: dropping it (as one printed formula does) is only right when
       alpha = 1. U and W do not depend on S, so they are computed for all chunks at once.
    4. Read and write with matrix products:
           O = (gamma * Q) S + (Q K^T * Gamma * M) U_pseudo      M = lower-triangular, diagonal included
           S <- gamma_C S + (K * Gamma_C)^T U_pseudo             Gamma_Cj = exp(g_C - g_j)
    5. Only the state update of step 4 has to run chunk after chunk. Substituting
       U_pseudo = U - W S in it and grouping by S:
           S <- E S + F                E = gamma_C I - (K * Gamma_C)^T W,   F = (K * Gamma_C)^T U
       E and F are computed for all chunks at once; the only loop is S <- E S + F over the chunks
       (one [d_k, d_k] x [d_k, d_v] product each). With every chunk's S known, the pseudo-values
       U_pseudo = U - W S and the read O of step 4 are again products for all chunks at once.
    T need not be a multiple of C: the last chunk is padded with k = v = q = 0, beta = 0 and
    alpha = 1, which leave the state unchanged. Cost O(T C d + T d^2 + (T / C) d^3).

    Gradients: the backward pass is derived by hand from steps 1-5 (see ``_DeltaRuleChunks``):
    one reverse loop over the chunks and batched products, about twice the forward's work. It
    supports first-order gradients with respect to every input (double backward is not supported).

    Non-finite inputs: a NaN or Inf in ``k`` or ``v`` at token t leaves the outputs before t
    finite, as in the token loop (see the module docstring: when the final state is not finite,
    the chunks from t's chunk on are recomputed with the token loop); ``beta`` and ``alpha`` must
    be finite (range checks).

    Arguments and result as :func:`delta_rule_naive`, plus ``chunk_size`` (C, any int >= 1).
    """
    _check(q, k, v, beta, alpha, initial_state, chunk_size)
    out_dtype, dt = q.dtype, _compute_dtype(q.dtype)
    T = k.shape[2]
    S0 = _zero_state(k, v, dt) if initial_state is None else initial_state.to(dt)  # [B, H, d_k, d_v]
    if T == 0:
        return v.new_zeros(v.shape), S0.to(out_dtype)
    q, k, v, beta = q.to(dt), k.to(dt), v.to(dt), beta.to(dt)
    alpha = None if alpha is None else alpha.to(dt)
    o, S = _delta_rule_chunks(q, k, v, beta, alpha, S0, chunk_size)
    if not _all_finite(S):  # a NaN/Inf in k or v (or an overflow): keep the outputs causal
        t = _first_nonfinite_token(k, v)
        if t is not None:
            c0 = t // chunk_size * chunk_size  # the start of the chunk that holds token t
            head, tail = slice(None, c0), slice(c0, None)
            o0, S_c0 = _delta_rule_chunks(q[:, :, head], k[:, :, head], v[:, :, head], beta[:, :, head],
                                          None if alpha is None else alpha[:, :, head], S0, chunk_size)
            o1, S = delta_rule_naive(q[:, :, tail], k[:, :, tail], v[:, :, tail], beta[:, :, tail],
                                     alpha=None if alpha is None else alpha[:, :, tail], initial_state=S_c0)
            o = torch.cat([o0, o1], dim=2)
    return o.to(out_dtype), S.to(out_dtype)


def _delta_rule_chunks(q, k, v, beta, alpha, S0, C: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:class:`_DeltaRuleChunks` on inputs of any length T (the last chunk padded as described in
    :func:`delta_rule_chunked`)."""
    T = k.shape[2]
    if T == 0:
        return v.new_zeros(v.shape), S0
    T_pad = -(-T // C) * C
    q, k, v = (_pad_time(x, T_pad) for x in (q, k, v))
    beta = _pad_time(beta, T_pad, 0.0)
    log_alpha = None if alpha is None else _pad_time(alpha.log(), T_pad, 0.0)  # log 1 = 0
    o, S = _DeltaRuleChunks.apply(q, k, v, beta, log_alpha, S0, C)
    return o[:, :, :T], S


class _DeltaRuleChunks(torch.autograd.Function):
    """Steps 1-5 of :func:`delta_rule_chunked` on padded inputs, with a hand-written backward.

    Autograd could differentiate the forward as written, but it would record every small product
    of the chunk loop and the triangular solve's generic backward; the backward below is derived
    from the same five steps, costs about twice the forward and keeps the same shape of work (one
    loop over the chunks, everything else batched over all chunks). It is differentiable once:
    double backward (gradients of gradients) is not supported.

    Notation: one chunk, rows i = 1..C; ``X = [U, W]`` (the solve's result), ``L = I + A``,
    ``P`` the masked read matrix, ``S_n`` / ``S_{n+1}`` the states before / after the chunk and
    ``dZ`` the gradient of the loss with respect to Z. The backward runs the forward in reverse:

    a. The read ``O = P (U - W S_n) + (gamma Q) S_n`` is ``O = O_intra + Q' S_n`` with
       O_intra = P U and Q' = gamma Q - P W. With ``S_{n+1} = E S_n + F`` this gives, chunk by
       chunk from the last,
           dS_n = E^T dS_{n+1} + Q'^T dO,   Q'^T dO = (gamma Q)^T dO - W^T (P^T dO)
       (the only sequential part), and then, for all chunks at once (with U_pseudo = U - W S_n,
       the pseudo-values, saved by the forward):
           dQ' = dO S_n^T,   dE = dS_{n+1} S_n^T,   dF = dS_{n+1}.
    b. ``O_intra = P U``, ``Q' = gamma Q - P W``, ``F = Kd^T U``, ``E = gamma_C I - Kd^T W``
       (Kd = K * Gamma_C) give
           dU  = P^T dO + Kd dS_{n+1}
           dW  = -P^T dQ' - Kd dE = -dU S_n^T
           dP  = dO U^T - dQ' W^T = dO U_pseudo^T
           dKd = U dF^T - W dE^T = U_pseudo dS_{n+1}^T
           d(gamma Q) = dQ',   dgamma_C = trace(dE) = sum(dS_{n+1} * S_n).
    c. ``X = L^{-1} R`` with R = [diag(beta) V, diag(beta) (gamma * K)]: differentiating
       L X = R gives dR = L^{-T} dX (a product with the saved UT transform T = L^{-1}) and
       dL = -dR X^T, of which only the strictly lower part (A) is a function of the inputs.
       With dR = [dR_V, dR_W] and dR_W = T^T dW = -dR_V S_n^T this is
           dL = -(dR_V U^T + dR_W W^T) = -dR_V (U - W S_n)^T = -dR_V U_pseudo^T.
    d. The element-wise and outer-product definitions: A_ij = beta_i (k_i . k_j) Gamma_ij for
       j < i, P_ij = (q_i . k_j) Gamma_ij for j <= i, R, gamma, Gamma, Gamma_C, all functions of
       q, k, v, beta and g (the cumulative log-gate), whose gradient is finally summed back onto
       log alpha: g_i = sum_{j <= i} log alpha_j, so d(log alpha_j) = sum_{i >= j} dg_i.
    """

    @staticmethod
    def forward(ctx, q, k, v, beta, log_alpha, S0, C):
        # q, k: [B, H, Tp, d_k]; v: [B, H, Tp, d_v]; beta, log_alpha: [B, H, Tp] (Tp = N C);
        # log_alpha is None for the plain delta rule; S0: [B, H, d_k, d_v].
        B, H, Tp, d_k = k.shape
        d_v = v.shape[-1]
        N, BH = Tp // C, B * H
        Z = BH * N  # all chunks of all heads form one batch dimension for the batched products
        Q, K = q.reshape(Z, C, d_k), k.reshape(Z, C, d_k)  # [Z, C, d_k]
        V = v.reshape(Z, C, d_v)  # [Z, C, d_v]
        b = beta.reshape(Z, C, 1)  # [Z, C, 1]
        gated = log_alpha is not None
        lower = _lower_mask(C, Q)  # [C, C], 1 for j <= i

        QK = torch.bmm(Q, K.mT)  # [Z, C, C], (q_i . k_j)
        KK = torch.bmm(K, K.mT)  # [Z, C, C], (k_i . k_j)
        if gated:
            g = log_alpha.reshape(Z, C).cumsum(-1)  # [Z, C], g_i (step 2)
            # Gamma_ij = exp(g_i - g_j) for j <= i and 0 above the diagonal. There g_i - g_j <= 0
            # (g does not increase: log alpha <= 0); above it the difference is >= 0 and could
            # overflow exp, so it is clamped to 0 first (exp -> 1) and then masked to 0. (Setting
            # it to -inf instead measured 5x slower on CPUs: masked_fill_ and exp(-inf) are slow.)
            Gam = (g.unsqueeze(-1) - g.unsqueeze(-2)).clamp_max_(0.0).exp_().mul_(lower)  # [Z, C, C]
            gamma = g.exp().unsqueeze(-1)  # [Z, C, 1], gamma_i
            g_C = g[:, -1:]  # [Z, 1]
            Gam_C = (g_C - g).exp_().unsqueeze(-1)  # [Z, C, 1], Gamma_Cj
            gamma_C = g_C.exp()  # [Z, 1]
            P = QK.mul_(Gam)  # Q K^T * Gamma * M (Gamma is 0 above the diagonal)
            KK = KK.mul_(Gam)  # (k_i . k_j) Gamma_ij: from here on KK includes the decay
            # A^T, built transposed (the solver reads it as the column-major matrix A; only its
            # strictly lower part is read): A_ij = beta_i (k_i . k_j) Gamma_ij   (step 3)
            A_t = KK.mT * b.mT  # [Z, C, C]
            Kd = K * Gam_C  # [Z, C, d_k], rows k_j Gamma_Cj
        else:
            gamma = gamma_C = Gam = Gam_C = None  # g = 0: gamma = Gamma = 1
            P = QK.mul_(lower)  # Q K^T * M
            A_t = KK * b.mT  # [Z, C, C]; K K^T is symmetric, so this is A^T
            Kd = K

        # Step 3: the UT transform T = (I + A)^{-1} from one unit-triangular solve against the
        # identity, then U = T diag(beta) V and W = T diag(beta) (gamma K) as batched products.
        # (Solving for U and W directly needs fewer FLOPs, but on CPUs LAPACK solves a batch one
        # small matrix after another; the products run in parallel, and the backward reuses T.)
        # The solve is posed transposed, Y (I + A)^T = I (left=False), because LAPACK works on
        # column-major matrices: A_t is then read in place and T = Y^T comes back row-major. With
        # unitriangular=True the solver reads only the strict triangle of A_t and takes ones on
        # the diagonal, so no mask or identity matrix has to be added to A.
        eye_C = torch.eye(C, dtype=Q.dtype, device=Q.device).expand(Z, C, C)
        T_ut = torch.linalg.solve_triangular(A_t, eye_C, upper=True, left=False, unitriangular=True).mT
        T_b = T_ut * b.mT  # [Z, C, C], T diag(beta)
        U = torch.bmm(T_b, V)  # [Z, C, d_v]
        W = torch.bmm(T_b, K if gamma is None else gamma * K)  # [Z, C, d_k]

        # Step 5, for all chunks at once: F = K_d^T U and E = gamma_C I - K_d^T W.
        E = torch.bmm(Kd.mT, W).neg_()  # [Z, d_k, d_k]
        E.diagonal(dim1=-2, dim2=-1).add_(1.0 if gamma_C is None else gamma_C)
        F_ = torch.bmm(Kd.mT, U).unflatten(0, (BH, N))  # [BH, N, d_k, d_v]

        # The only sequential part: S_{n+1} = E_n S_n + F_n, one [d_k, d_k] x [d_k, d_v] product
        # per chunk. The states are kept chunk-major, states[n] = S_n for all heads: each slot is
        # contiguous, so it is first filled with F_{n-1} and then updated in place by one baddbmm_
        # (no copy per chunk); one reordering copy afterwards puts them in chunk order per head.
        E4 = E.unflatten(0, (BH, N))  # [BH, N, d_k, d_k]
        states = torch.empty(N + 1, BH, d_k, d_v, dtype=Q.dtype, device=Q.device)
        states[0] = S0.reshape(BH, d_k, d_v)
        states[1:] = F_.transpose(0, 1)
        for n in range(N):
            states[n + 1].baddbmm_(E4[:, n], states[n])  # S_{n+1} = F_n + E_n S_n, [BH, d_k, d_v]
        S = states[N]  # [BH, d_k, d_v], the state after the last chunk
        S_n = states[:N].transpose(0, 1).reshape(Z, d_k, d_v)  # [Z, d_k, d_v], S_n per chunk

        # Step 4 for all chunks at once: the pseudo-values U_pseudo = U - W S_n (written over U,
        # which is no longer needed), then O = P U_pseudo + (gamma Q) S_n.
        U_pseudo = U.baddbmm_(W, S_n, alpha=-1.0)  # [Z, C, d_v]
        O = torch.bmm(P, U_pseudo).baddbmm_(Q if gamma is None else gamma * Q, S_n)  # [Z, C, d_v]

        ctx.C, ctx.gated = C, gated
        ctx.save_for_backward(Q, K, V, b, KK, T_ut, U_pseudo, W, P, E, S_n, Kd,
                              *((Gam, gamma, Gam_C, gamma_C) if gated else ()))
        return O.view(B, H, Tp, d_v), S.view(B, H, d_k, d_v)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dO, dS_T):
        Q, K, V, b, KK, T_ut, U_pseudo, W, P, E, S_n, Kd, *gate = ctx.saved_tensors
        C, gated = ctx.C, ctx.gated
        Z, _, d_k = K.shape
        d_v = V.shape[-1]
        B, H, Tp, _ = dO.shape
        BH, N = B * H, Z // (B * H)
        # (contiguous: a loss like o.sum() hands over a broadcast gradient with zero strides,
        # which the batched matrix products would otherwise treat one matrix at a time)
        dO = dO.contiguous().view(Z, C, d_v)  # [Z, C, d_v]

        # a. The reverse loop dS_n = E_n^T dS_{n+1} + Q'_n^T dO_n over the chunks, last first,
        #    with Q'^T dO = (gamma Q)^T dO - W^T (P^T dO).
        PdO = torch.bmm(P.mT, dO)  # [Z, C, d_v], P^T dO
        gQ = Q if not gated else gate[1] * Q  # gamma Q
        G = torch.bmm(gQ.mT, dO).baddbmm_(W.mT, PdO, alpha=-1.0).unflatten(0, (BH, N))  # Q'^T dO
        #    Chunk-major as in the forward: dS[n] = dS_n (contiguous), dS[N] = dS_T.
        E4 = E.unflatten(0, (BH, N))
        dS = torch.empty(N + 1, BH, d_k, d_v, dtype=K.dtype, device=K.device)
        dS[N] = dS_T.reshape(BH, d_k, d_v)
        dS[:N] = G.transpose(0, 1)
        for n in range(N - 1, -1, -1):
            dS[n].baddbmm_(E4[:, n].mT, dS[n + 1])  # dS_n = Q'_n^T dO_n + E_n^T dS_{n+1}
        dS0 = dS[0].view(B, H, d_k, d_v)
        D = dS[1:].transpose(0, 1).reshape(Z, d_k, d_v)  # [Z, d_k, d_v], dS_{n+1} per chunk

        # b. Through the batched products of step 5.
        dQ_state = torch.bmm(dO, S_n.mT)  # [Z, C, d_k], dQ' = dO S_n^T
        dU = PdO.baddbmm_(Kd, D)  # [Z, C, d_v], P^T dO + Kd dS_{n+1} (in place over P^T dO)
        dP = torch.bmm(dO, U_pseudo.mT).mul_(_lower_mask(C, dO))  # [Z, C, C]
        dKd = torch.bmm(U_pseudo, D.mT)  # [Z, C, d_k]

        # c. Through the solve, X = T R with T = L^{-1}: dR = T^T dX, and dL = -T^T dX R^T T^T
        #    = -dR X^T, of which the strictly lower part is dA. Since dW = -dU S_n^T, the second
        #    block is dR_W = T^T dW = -dR_V S_n^T, and dR X^T = dR_V (U - W S_n)^T = dR_V U_pseudo^T.
        dR_V = torch.bmm(T_ut.mT, dU)  # [Z, C, d_v]
        dR_W = torch.bmm(dR_V, S_n.mT).neg_()  # [Z, C, d_k]
        dA = torch.bmm(dR_V, U_pseudo.mT)  # [Z, C, C], -dA before masking
        dA = dA.mul_(_lower_mask(C, dA, strict=True).neg_())  # -(-dA), strictly lower

        # d. Back to the inputs. R = [diag(beta) V, diag(beta) (gamma K)]:
        dV = b * dR_V
        if gated:
            Gam, gamma, Gam_C, gamma_C = gate  # (and KK holds (k_i . k_j) Gamma_ij)
            dR_W_K = (dR_W * K).sum(-1)  # [Z, C]
            d_b = (dR_V * V).sum(-1) + gamma.squeeze(-1) * dR_W_K + (dA * KK).sum(-1)
            dA_b = dA * b  # [Z, C, C], dA_ij beta_i
            dKK = dA_b * Gam  # A_ij = beta_i (k_i . k_j) Gamma_ij
            dQK = dP * Gam  # P_ij = (q_i . k_j) Gamma_ij
            dK_rows = (b * gamma) * dR_W + Gam_C * dKd  # from R and from Kd = K * Gamma_C
            dQ = gamma * dQ_state  # from Q' = gamma Q - P W
        else:
            d_b = (dR_V * V).sum(-1) + (dR_W * K).sum(-1) + (dA * KK).sum(-1)
            dKK = dA * b
            dQK = dP
            dK_rows = b * dR_W + dKd
            dQ = dQ_state
        dQ = dQ.baddbmm_(dQK, K)  # + dQK K, from Q K^T
        dK = dK_rows.baddbmm_(dQK.mT, Q).baddbmm_(dKK + dKK.mT, K)  # + dQK^T Q + (dKK + dKK^T) K

        dlog_alpha = None
        if gated:
            # Gradients of gamma_i = e^{g_i}, Gamma_ij = e^{g_i - g_j}, Gamma_Cj = e^{g_C - g_j},
            # gamma_C = e^{g_C}, collected on g and then on log alpha (a reverse cumulative sum).
            dgamma = (dQ_state * Q).sum(-1) + b.squeeze(-1) * dR_W_K  # [Z, C]
            dg = dgamma * gamma.squeeze(-1)
            # dGamma_ij Gamma_ij = (dP_ij (q_i . k_j) + dA_ij beta_i (k_i . k_j)) Gamma_ij
            HG = torch.addcmul(dP * P, dA_b, KK)  # = dP_ij P_ij + dA_ij A_ij
            dg += HG.sum(-1) - HG.sum(-2)
            HC = (dKd * K).sum(-1) * Gam_C.squeeze(-1)  # dGamma_Cj Gamma_Cj, [Z, C]
            dg -= HC
            dg[:, -1] += HC.sum(-1) + (D * S_n).sum((-1, -2)) * gamma_C.squeeze(-1)
            dlog_alpha = dg.flip(-1).cumsum(-1).flip(-1).reshape(B, H, Tp)

        shape = (B, H, Tp)
        return (dQ.view(*shape, d_k), dK.view(*shape, d_k), dV.reshape(*shape, d_v),
                d_b.reshape(shape), dlog_alpha, dS0, None)

