"""Self-modifying Titans (Sec. 8 of arXiv v1, Eqs. 83-93; notebook 08).

In Titans (notebook 04) only the memory learns in context; the projections that make its keys,
values and learning rates are fixed after training. Self-modifying Titans makes *every* projection
a memory that is itself updated while the sequence is read, and lets each memory produce its own
training targets. Per head (vectors of width d; ``box`` is one of k, v, eta, alpha, memory)::

    k_t     = normalize(M_k,t-1(u_t))                   keys       (Eq. 83)
    v_t     = M_v,t-1(u_t)                              values     (Eq. 84)
    eta_t   = eta_max * sigmoid(w_eta . M_eta,t-1(u_t) + b_eta)      learning rate (Eq. 85)
    alpha_t = sigmoid(w_alpha . M_alpha,t-1(u_t) + b_alpha)          retention     (Eq. 85)
    vhat_box,t = M_box,t-1(v_t / ||v_t||)               each memory generates its own values (Eq. 86, (g))
    M_box,t = M_box,t-1 (alpha_t I - eta_t k_t k_t^T) - eta_t grad L(M_box,t-1; k_t, vhat_box,t)
                                                        DGD with weight decay, L = 1/2 ||M(k) - vhat||^2
                                                        (how each of the two matrices takes it: (b))
    o_t     = M_memory,t-1(q_t)                         the output (Eq. 88)

Every memory is a residual two-layer MLP (Eq. 89), written here in row form with the weights
stored transposed, ``M(x) = x + sigma(x S2) S1`` (``S2 = W2^T: [d, hidden]``,
``S1 = W1^T: [hidden, d]``, sigma = SiLU). Their initial states are parameters trained by the
outer optimizer (meta-learned initial states). ``u_t`` and ``q_t`` are made by the layer
(:class:`SelfModifyingTitans`): a linear projection of the residual stream, a causal depthwise
convolution of window 4, and for q an L2 normalization.

Choices where the paper is open (docs/paper-notes.md#smt-ambiguities; notebook 08 states them
too), one line each; the question, the options and the evidence are in docs/decisions.md:

(a) q is non-adaptive: ``q_t = normalize(conv(x_t W_q))``.               docs/decisions.md#titans-a
(b) (alpha I - eta k k^T) multiplies ``W2``; ``W1`` steps via both args. docs/decisions.md#titans-b
    ``dgd=False`` drops DGD from both: no projector, and W1's plain step.  docs/decisions.md#hope-no-dgd
(c) Momentum is an option (``momentum=beta``), off by default.           docs/decisions.md#titans-c
(d) eta, alpha per head: a learned readout and a sigmoid.                docs/decisions.md#titans-d
(e) The main memory's target is ``M_memory(v_t)``; exclusive read.       docs/decisions.md#titans-e
(f) Generation and gradients at the chunk start; updates per token.      docs/decisions.md#titans-f
(g) The memories make their targets from ``v_t / ||v_t||``.              docs/decisions.md#titans-g

Two implementations with the same signature and the same results:
:func:`self_modifying_titans_naive` (a token loop, the equations above) and
:func:`self_modifying_titans_chunked` (inside a chunk: matmuls and one triangular solve; the
derivation is beside :func:`dgd_chunk`). Both return ``(o, (states_T, momenta_T))`` where states and
momenta are dicts ``box -> (S2, S1)`` with leading ``[B, H]`` dims. Without momentum (the default)
the chunked version runs every chunk as one ``_ChunkStep``, the same equations with a
hand-derived backward (docs/decisions.md#titans-chunkstep; checked against finite differences and
the naive loop in the tests).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from nlteach.deep_memory import sigma, sigma_prime
from nlteach.nn import CausalConv

BOXES: tuple[str, ...] = ("k", "v", "eta", "alpha", "memory")
PROJ_BOXES: tuple[str, ...] = BOXES[:4]
Memory = tuple[torch.Tensor, torch.Tensor]  # (S2 [..., d, hidden], S1 [..., hidden, d])

__all__ = [
    "BOXES",
    "mlp_read",
    "generate",
    "dgd_token",
    "dgd_chunk",
    "self_modifying_titans_naive",
    "self_modifying_titans_chunked",
    "SelfModifyingTitans",
]


# ---------------------------------------------------------------------------------------------
# One memory: read, gradient, generation.


# sigma (SiLU) and sigma_prime are imported from nlteach.deep_memory: the same memory MLP as notebook 04.


def mlp_read(S2: torch.Tensor, S1: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Eq. 89 in row form: ``M(x) = x + sigma(x S2) S1``; ``x [..., N, d] -> [..., N, d]``."""
    return x + sigma(x @ S2) @ S1


def grad_terms(S2: torch.Tensor, S1: torch.Tensor, k: torch.Tensor, vhat: torch.Tensor):
    """Pieces of the gradient of ``1/2 ||M(k) - vhat||^2`` at ``(S2, S1)``, rows ``[..., N, .]``.

    With ``z = k S2``, ``a = sigma(z)``, ``r = M(k) - vhat``, ``delta = sigma'(z) * (r S1^T)``:
    ``grad_S2 = k^T delta`` and ``grad_S1 = a^T r`` (one rank-one term per row). Returns (a, r, delta).
    """
    z = k @ S2  # [..., N, hidden]
    a = sigma(z)
    r = k + a @ S1 - vhat  # [..., N, d]
    delta = sigma_prime(z) * (r @ S1.transpose(-1, -2))  # [..., N, hidden]
    return a, r, delta


def generate(states: Mapping[str, Memory], u: torch.Tensor, readout: Mapping[str, torch.Tensor],
             eta_max: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """k, v, eta, alpha of tokens ``u [B, H, N, d]`` from the (chunk-start) states, Eqs. 83-85.

    ``readout``: ``w_eta, w_alpha [H, d]`` and ``b_eta, b_alpha [H]``. Returns ``k, v [B, H, N, d]``
    and ``eta, alpha [B, H, N]``.
    """
    k = F.normalize(mlp_read(*states["k"], u), dim=-1)  # Eq. 83, L2-normalized keys
    v = mlp_read(*states["v"], u)  # Eq. 84
    e = (mlp_read(*states["eta"], u) * readout["w_eta"][:, None, :]).sum(-1) + readout["b_eta"][:, None]
    a = (mlp_read(*states["alpha"], u) * readout["w_alpha"][:, None, :]).sum(-1) + readout["b_alpha"][:, None]
    return k, v, eta_max * torch.sigmoid(e), torch.sigmoid(a)  # Eq. 85


# ---------------------------------------------------------------------------------------------
# The update of one weight matrix, token by token (naive) and for a whole chunk (chunked).
#
# Both layers of a memory follow the same recurrence on a transposed weight S [n_in, n_out]:
#     M_t = beta M_{t-1} - eta_t x_t e_t^T                  (momentum; beta = 0: M_t = the step)
#     S_t = (alpha_t I - eta_t p_t p_t^T) S_{t-1} + M_t     (DGD projector, only when p is given)
# where x_t e_t^T is the gradient taken at the chunk-start weights (first layer: x = k,
# e = delta, p = k; second layer: x = a, e = r, no p, eta' instead of eta).


def dgd_token(S: torch.Tensor, M: torch.Tensor, x: torch.Tensor, e: torch.Tensor, p: torch.Tensor | None,
              eta: torch.Tensor, alpha: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One token of the recurrence above. ``S, M [..., n_in, n_out]``, ``x, p [..., n_in]``,
    ``e [..., n_out]``, ``eta, alpha [...]``. Returns the new ``(S, M)``."""
    eta_, alpha_ = eta[..., None, None], alpha[..., None, None]
    M = beta * M - eta_ * x[..., :, None] * e[..., None, :]  # momentum on the gradient step
    S_new = alpha_ * S  # weight decay
    if p is not None:  # S (alpha I - eta p p^T) in column form: subtract eta p (p^T S)
        S_new = S_new - eta_ * p[..., :, None] * (p[..., None, :] @ S)
    return S_new + M, M


def segment_products(x: torch.Tensor) -> torch.Tensor:
    """``x [..., n] -> [..., n, n]`` with ``out[i, l] = prod_{l < m <= i} x_m`` (i >= l), else 0.

    Division free (so it is exact when some x_m is 0): cumulative product down the columns of a
    matrix holding x_m below the diagonal and 1 elsewhere.
    """
    n = x.shape[-1]
    idx = torch.arange(n, device=x.device)
    X = torch.where(idx[:, None] > idx[None, :], x[..., :, None], torch.ones((), dtype=x.dtype, device=x.device))
    return torch.cumprod(X, dim=-2).tril()


# Chunked form. Number the chunk's tokens t = 1..C, state 0 = the chunk start. Let
#   G[t, l] = prod_{l < m <= t} alpha_m        (decay from state l to state t)
#   Bm[t, l] = beta^(t - l)                    (momentum decay)
# 1. Without the projector, S_t = D_t with D_t = alpha_t D_{t-1} + M_t. Unrolling both recurrences,
#      D_t = G[t,0] S_0 + mu_t M_0 - sum_{j<=t} c[t,j] eta_j x_j e_j^T,
#      c = G Bm (both lower triangular),   mu_t = sum_{1<=l<=t} G[t,l] beta^l.
#    Any read z D_{t-1} is then two matmuls with S_0, M_0 plus a C x C "attention"
#    ((c_prev * eta) o (Z X^T)) E, with c_prev[t, j] = c[t-1, j] (strictly lower).
# 2. The projector adds rank-one terms: S_t = D_t + sum_{l<=t} G[t,l] p_l y_l^T with
#      y_t = -eta_t p_t^T S_{t-1} = -eta_t (p_t D_{t-1} + sum_{l<t} G[t-1,l] (p_t . p_l) y_l)
#    (check: multiply S_{t-1} by (alpha_t I - eta_t p_t p_t^T) and add M_t). For all t at once
#    this is a unit lower-triangular system (I + diag(eta) L) Y = -diag(eta) (P D_prev),
#    L[t,l] = G[t-1,l] (p_t . p_l): one triangular solve (like the UT transform of the delta rule).
# 3. Reads (exclusive): z_t S_{t-1} = z_t D_{t-1} + sum_{l<t} G[t-1,l] (z_t . p_l) y_l; the chunk's
#    final state is row t = C of the same sums; M_C = beta^C M_0 - sum_j beta^(C-j) eta_j x_j e_j^T.


def dgd_chunk(S0: torch.Tensor, M0: torch.Tensor, X: torch.Tensor, E: torch.Tensor, project: bool,
              eta: torch.Tensor, alpha: torch.Tensor, beta: float, Z: torch.Tensor | None = None, *,
              XS0: torch.Tensor | None = None, ZS0: torch.Tensor | None = None, G: torch.Tensor | None = None,
              need_momentum: bool = True) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
    """C tokens of :func:`dgd_token` at once (``p = x`` when ``project``), see the derivation above.

    ``S0, M0 [..., n_in, n_out]``, ``X [..., C, n_in]``, ``E [..., C, n_out]``, ``eta, alpha [..., C]``,
    queries ``Z [..., C, n_in]`` (optional). Returns ``(reads z_t S_{t-1} [..., C, n_out] or None,
    S_C, M_C)``. Optional shortcuts (the caller often has them already): ``XS0 = X @ S0``,
    ``ZS0 = Z @ S0``, ``G = segment_products([1, alpha])``; ``need_momentum=False`` skips ``M_C``
    (returns None) when ``beta = 0``, where the next chunk does not read it.
    """
    C = X.shape[-2]
    if G is None:
        G = segment_products(torch.cat([torch.ones_like(alpha[..., :1]), alpha], dim=-1))  # [..., C+1, C+1]
    g0 = G[..., :, 0]  # decay of the chunk-start state
    W = -eta[..., None] * E  # [..., C, n_out]: the gradient steps -eta_j e_j (rows of x_j e_j^T)
    Xt = X.transpose(-1, -2)
    with_momentum = float(beta) != 0.0
    if with_momentum:
        Bm = segment_products(torch.full((C + 1,), float(beta), dtype=X.dtype, device=X.device))
        c = G @ Bm  # c[t, j] = sum_{j<=l<=t} G[t,l] beta^(l-j)
        mu = (G[..., :, 1:] @ Bm[1:, :1])[..., 0]  # [..., C+1]
    else:  # beta = 0: Bm = I, so c = G and mu = 0 (the momentum state is only the last step)
        c = G
    c_prev, G_prev = c[..., :-1, 1:], G[..., :-1, 1:]  # [..., C, C]: row t uses state t-1

    def read_D(ZS0_: torch.Tensor, ZX: torch.Tensor, Zr: torch.Tensor) -> torch.Tensor:  # z_t D_{t-1}, every t
        out = g0[..., :-1, None] * ZS0_ + (c_prev * ZX) @ W
        return out + mu[..., :-1, None] * (Zr @ M0) if with_momentum else out

    Y = None
    if project:
        XX = X @ Xt
        L = G_prev * XX  # strictly lower: G[t-1, l] (p_t . p_l), l < t
        A = torch.eye(C, dtype=X.dtype, device=X.device) + eta[..., :, None] * L
        rhs = -eta[..., None] * read_D(X @ S0 if XS0 is None else XS0, XX, X)
        Y = torch.linalg.solve_triangular(A, rhs, upper=False, unitriangular=True)
    # Without momentum c = G, so the gradient steps and the projector's rows share one coefficient
    # matrix: fold them into one right-hand side (one matmul per read, one for the final state).
    fold = Y is not None and not with_momentum
    WY = W + Y if fold else W
    reads = None
    if Z is not None:
        ZX = Z @ Xt
        if fold:
            reads = g0[..., :-1, None] * (Z @ S0 if ZS0 is None else ZS0) + (G_prev * ZX) @ WY
        else:
            reads = read_D(Z @ S0 if ZS0 is None else ZS0, ZX, Z)
            if Y is not None:
                reads = reads + (G_prev * ZX) @ Y
    R = c[..., -1, 1:, None] * WY
    if Y is not None and not fold:
        R = R + G[..., -1, 1:, None] * Y
    if with_momentum:
        R0 = g0[..., -1, None, None] * S0 + mu[..., -1, None, None] * M0
    else:
        R0 = g0[..., -1, None, None] * S0
    S = R0 + Xt @ R  # S_C = decayed start state + sum_j x_j (coefficient_j * rhs_j)
    if with_momentum:
        M = (float(beta) ** C) * M0 + Xt @ (Bm[-1, 1:, None] * W)
    elif need_momentum:  # M_C = -eta_C x_C e_C^T
        M = X[..., -1, :, None] * W[..., -1, None, :]
    else:
        M = None
    return reads, S, M


# ---------------------------------------------------------------------------------------------
# Input checks (shared).


def _check(u, q, init, readout, chunk_size, proj_chunk_size, momentum_state, momentum):
    for name, x in (("u", u), ("q", q)):
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} must be a tensor [B, H, T, d], got {got}.")
    if q.shape != u.shape:
        raise ValueError(f"q must have the shape of u {tuple(u.shape)}, got {tuple(q.shape)}.")
    B, H, T, d = u.shape
    for name, c in (("chunk_size", chunk_size), ("proj_chunk_size", proj_chunk_size)):
        if not isinstance(c, int) or isinstance(c, bool) or c < 1:
            raise ValueError(f"{name} must be a positive int, got {c!r}.")
    if not 0.0 <= float(momentum) < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}.")
    if set(init) != set(BOXES):
        raise ValueError(f"init must have one (S2, S1) per memory {BOXES}, got keys {sorted(init)}.")
    for box in BOXES:
        S2, S1 = init[box]
        hidden = S2.shape[-1]
        if tuple(S2.shape) != (B, H, d, hidden) or tuple(S1.shape) != (B, H, hidden, d):
            raise ValueError(f"init[{box!r}] must be S2 [B, H, d, hidden] = [{B}, {H}, {d}, hidden] and "
                             f"S1 [B, H, hidden, d]; got {list(S2.shape)} and {list(S1.shape)}.")
    for name, shape in (("w_eta", (H, d)), ("w_alpha", (H, d)), ("b_eta", (H,)), ("b_alpha", (H,))):
        if name not in readout or tuple(readout[name].shape) != shape:
            got = list(readout[name].shape) if name in readout else "missing"
            raise ValueError(f"readout[{name!r}] must have shape {list(shape)}, got {got}.")
    if momentum_state is not None:
        for box in BOXES:
            if tuple(m.shape for m in momentum_state[box]) != tuple(s.shape for s in init[box]):
                raise ValueError(f"momentum_state[{box!r}] must be shaped like init[{box!r}].")
    M = momentum_state if momentum_state is not None else {
        b: tuple(torch.zeros_like(s) for s in init[b]) for b in BOXES}
    return dict(init), dict(M)


def _memory_update(snap: Memory, state: Memory, mom: Memory, k, v, eta, alpha, beta, dgd, chunk: bool,
                   C: int):
    """Update one memory (naive path, one token): self-generated target ``vhat = M_snap(v)`` (Eq. 86),
    gradients at ``snap``; tokens as rows ``[..., 1, d]``."""
    v = F.normalize(v, dim=-1)  # choice (g): memories read the unit vector v / ||v||
    vhat = mlp_read(*snap, v)  # Eq. 86: the memory generates its own target
    a, r, delta = grad_terms(*snap, k, vhat)
    ad = a - sigma(v @ snap[0])  # choice (b): the second matrix's input is a_k - a_v
    eta2 = _second_step(eta, ad, C, dgd)  # choice (b): normalized step for the second matrix (DGD)
    if chunk:
        _, S2, M2 = dgd_chunk(state[0], mom[0], k, delta, dgd, eta, alpha, beta)
        _, S1, M1 = dgd_chunk(state[1], mom[1], ad, r, False, eta2, alpha, beta)
    else:
        k, ad, r, delta = k[..., 0, :], ad[..., 0, :], r[..., 0, :], delta[..., 0, :]
        S2, M2 = dgd_token(state[0], mom[0], k, delta, k if dgd else None, eta[..., 0], alpha[..., 0], beta)
        S1, M1 = dgd_token(state[1], mom[1], ad, r, None, eta2[..., 0], alpha[..., 0], beta)
    return (S2, S1), (M2, M1)


def _second_step(eta: torch.Tensor, ad: torch.Tensor, C: int, dgd: bool) -> torch.Tensor:
    """The second matrix's step (choice (b)): with DGD the normalized ``eta / (C (1 + |ad|^2))``,
    without it the plain ``eta / C`` (``ad [..., n, hidden]``, ``eta [..., n]``)."""
    if not dgd:
        return eta / C
    return eta / (C * (1 + (ad * ad).sum(-1)))


# ---------------------------------------------------------------------------------------------
# Naive: the token loop.


def self_modifying_titans_naive(u: torch.Tensor, q: torch.Tensor, init: Mapping[str, Memory],
                                readout: Mapping[str, torch.Tensor], *, chunk_size: int = 16,
                                proj_chunk_size: int = 16, momentum: float = 0.0, eta_max: float = 1.0,
                                dgd: bool = True, self_modify: bool = True,
                                momentum_state: Mapping[str, Memory] | None = None,
                                return_generated: bool = False):
    """Self-modifying Titans, one token at a time (the reference).

    Args:
        u: memory inputs ``[B, H, T, d]``; q: queries ``[B, H, T, d]`` (normalized by the caller).
        init: initial state per memory (``BOXES``), ``(S2 [B, H, d, hidden], S1 [B, H, hidden, d])``.
        readout: ``w_eta, w_alpha [H, d]``, ``b_eta, b_alpha [H]`` (choice (d) of the module doc).
        chunk_size: the main memory's chunk; proj_chunk_size: the k, v, eta, alpha memories' chunk.
        momentum: beta of the optional momentum (0 = none). eta_max: largest learning rate.
        dgd: False removes DGD from both matrices: the first's projector (alpha I - eta k k^T)
            becomes plain weight decay alpha I, the second's normalized step eta / (C (1 + |ad|^2))
            the plain eta / C (choice (b)); docs/decisions.md#hope-no-dgd.
        self_modify: False freezes the k, v, eta, alpha memories at their initial states.
        momentum_state: initial momenta, shaped like ``init`` (default zeros).
        return_generated: also return ``{"k", "v", "eta", "alpha"}`` for every token.

    Returns:
        ``(o [B, H, T, d], (states_T, momenta_T))`` (and the generated dict when asked).
    """
    state, mom = _check(u, q, init, readout, chunk_size, proj_chunk_size, momentum_state, momentum)
    T = u.shape[2]
    boxes = BOXES if self_modify else ("memory",)
    outs, gen = [], {n: [] for n in ("k", "v", "eta", "alpha")}
    snap: dict[str, Memory] = {}
    for t in range(T):
        if t % proj_chunk_size == 0:  # the k, v, eta, alpha memories' chunk starts: freeze them
            snap.update({b: state[b] for b in PROJ_BOXES})
        if t % chunk_size == 0:  # the main memory's chunk starts
            snap["memory"] = state["memory"]
        u_t, q_t = u[:, :, t:t + 1], q[:, :, t:t + 1]  # [B, H, 1, d]
        k, v, eta, alpha = generate(snap, u_t, readout, eta_max)  # Eqs. 83-85 at the chunk-start state
        for name, x in zip(("k", "v", "eta", "alpha"), (k, v, eta, alpha)):
            gen[name].append(x)
        outs.append(mlp_read(*state["memory"], q_t))  # Eq. 88: o_t = M_memory,t-1(q_t)
        for b in boxes:
            C = chunk_size if b == "memory" else proj_chunk_size
            state[b], mom[b] = _memory_update(snap[b], state[b], mom[b], k, v, eta, alpha,
                                              momentum, dgd, chunk=False, C=C)
    o = torch.cat(outs, dim=2)
    if return_generated:
        return o, (state, mom), {n: torch.cat(x, dim=2) for n, x in gen.items()}
    return o, (state, mom)


# ---------------------------------------------------------------------------------------------
# Chunked: generation and gradients per chunk with matmuls, the updates by dgd_chunk.


def self_modifying_titans_chunked(u: torch.Tensor, q: torch.Tensor, init: Mapping[str, Memory],
                                  readout: Mapping[str, torch.Tensor], *, chunk_size: int = 16,
                                  proj_chunk_size: int = 16, momentum: float = 0.0, eta_max: float = 1.0,
                                  dgd: bool = True, self_modify: bool = True,
                                  momentum_state: Mapping[str, Memory] | None = None,
                                  return_generated: bool = False):
    """Self-modifying Titans in chunks; same arguments and results as :func:`self_modifying_titans_naive`.

    Stage 1: the k, v, eta, alpha memories do not depend on the main memory, so they run first,
    chunk by chunk (``proj_chunk_size``), all four stacked in one batch dimension; each chunk's
    k, v, eta, alpha come from the chunk-start states in one matmul each. Stage 2: the main memory
    runs over chunks of ``chunk_size`` with those keys, values and gates, reading q; without
    momentum, what does not depend on its state (unit values, decays, the projector's triangular
    system, query-key products) is computed for all chunks before the loop. Chunks are cut with one
    ``split`` (its backward is one concatenation; a slice per chunk would write a zero tensor of the
    whole sequence in the backward, per chunk).
    """
    state, mom = _check(u, q, init, readout, chunk_size, proj_chunk_size, momentum_state, momentum)
    with_momentum = float(momentum) != 0.0
    stack = lambda d, i: torch.stack([d[b][i] for b in PROJ_BOXES], dim=1)  # noqa: E731  [B, 4, H, ...]
    S2, S1, M2, M1 = stack(state, 0), stack(state, 1), stack(mom, 0), stack(mom, 1)
    ks, vs, etas, alphas = [], [], [], []
    # Chunks are taken with one split (not one slice per chunk): the backward of a split is one
    # concatenation, while each slice's backward would write a zero tensor of the whole sequence.
    u_chunks = u.split(proj_chunk_size, dim=2)  # [B, H, C, d] each
    for i_c, uc in enumerate(u_chunks):  # stage 1: the k, v, eta, alpha memories, stacked in dim 1
        gen = mlp_read(S2, S1, uc[:, None])  # [B, 4, H, C, d]: the four memories read u at the chunk start
        k, v, eta, alpha = _gates(gen, readout, eta_max)  # Eqs. 83-85
        ks.append(k), vs.append(v), etas.append(eta), alphas.append(alpha)
        if self_modify:
            last = i_c == len(u_chunks) - 1
            (S2, S1), (M2, M1) = _chunk_update(S2, S1, M2, M1, k[:, None], v[:, None], eta[:, None],
                                               alpha[:, None], momentum, dgd, proj_chunk_size,
                                               need_momentum=with_momentum or last)
    for i, b in enumerate(PROJ_BOXES):
        state[b], mom[b] = (S2[:, i], S1[:, i]), (M2[:, i], M1[:, i])
    k, v, eta, alpha = (torch.cat(x, dim=2) for x in (ks, vs, etas, alphas))

    (W2, W1), (N2, N1) = state["memory"], mom["memory"]
    outs = []
    chunks = [x.split(chunk_size, dim=2) for x in (k, v, eta, alpha, q)]
    n_chunks = len(chunks[0])
    # Without momentum every chunk but the last runs as one _ChunkStep. What does not depend on the
    # main memory's state is computed here for all those (full) chunks at once: the unit values, the
    # decays G, the projector's L and A^-1, and the query-key products P.
    n_fast = u.shape[2] // chunk_size if not with_momentum else 0  # the full chunks
    if n_fast:
        C = chunk_size
        kf, vf, ef, af, qf = (x[:, :, :n_fast * C].unflatten(2, (n_fast, C)) for x in (k, v, eta, alpha, q))
        Gf = segment_products(torch.cat([torch.ones_like(af[..., :1]), af], dim=-1))  # [B, H, n_fast, C+1, C+1]
        Gp = Gf[..., :-1, 1:]
        Lf = Gp * (kf @ kf.transpose(-1, -2)) if dgd else None
        Ainvf = _unit_lower_inverse(ef[..., None] * Lf) if dgd else None
        pre = zip(F.normalize(vf, dim=-1).unbind(2), Gf.unbind(2), (Gp * (qf @ kf.transpose(-1, -2))).unbind(2),
                  *((Ainvf.unbind(2), Lf.unbind(2)) if dgd else ()))
        for i_c, (vn, Gc, Pc, *proj) in enumerate(pre):
            kc, ec, qc = chunks[0][i_c], chunks[2][i_c], chunks[4][i_c]
            last = i_c == n_chunks - 1
            W2, W1, h, *tail = _ChunkStep.apply(W2, W1, kc, vn, qc, ec, Gc, C, dgd, *(proj or (None, None)), Pc,
                                                last)
            if last:  # beta = 0: the momentum is the last token's step (see _chunk_update)
                N2, N1 = kc[..., -1, :, None] * tail[0][..., None, :], tail[2][..., :, None] * tail[1][..., None, :]
            outs.append(qc + h)  # Eq. 88 with Eq. 89: q + sigma(q S2_{t-1}) S1_{t-1}
    for i_c in range(n_fast, n_chunks):  # stage 2: the main memory (the last chunk, or all with momentum)
        kc, vc, ec, ac, qc = (x[i_c] for x in chunks)
        last = i_c == n_chunks - 1
        (W2, W1), (N2, N1), h = _chunk_update(W2, W1, N2, N1, kc, vc, ec, ac, momentum, dgd, chunk_size, q=qc,
                                              need_momentum=with_momentum or last)
        outs.append(qc + h)  # Eq. 88 with Eq. 89: q + sigma(q S2_{t-1}) S1_{t-1}
    state["memory"], mom["memory"] = (W2, W1), (N2, N1)
    o = torch.cat(outs, dim=2)
    if return_generated:
        return o, (state, mom), {"k": k, "v": v, "eta": eta, "alpha": alpha}
    return o, (state, mom)


def _gates(gen: torch.Tensor, readout: Mapping[str, torch.Tensor], eta_max: float):
    """k, v, eta, alpha from the four memories' reads ``gen [B, 4, H, N, d]`` (Eqs. 83-85)."""
    gk, gv, ge, ga = gen.unbind(1)  # one backward (a stack) instead of four selects
    k = F.normalize(gk, dim=-1)  # Eq. 83, L2-normalized keys
    e = (ge * readout["w_eta"][:, None, :]).sum(-1) + readout["b_eta"][:, None]
    a = (ga * readout["w_alpha"][:, None, :]).sum(-1) + readout["b_alpha"][:, None]
    return k, gv, eta_max * torch.sigmoid(e), torch.sigmoid(a)


def _chunk_update(S2, S1, M2, M1, k, v, eta, alpha, beta, dgd, C, *, q=None, need_momentum=True):
    """One chunk of one (or several stacked) memories: self-generated targets, gradients at the
    chunk start, both matrices' updates by :func:`dgd_chunk`; with queries ``q`` also the reads
    ``sigma(q S2_{t-1}) S1_{t-1}``. Tokens are rows ``[..., N, d]``; returns new states, momenta
    (and the reads when ``q`` is given).

    One matmul with ``S2`` serves the keys, the values and the queries: ``[k; v; q] S2`` holds
    ``z`` of the gradient, the pre-activation of ``vhat = M(v)`` (Eq. 86) and the start-state part
    of the reads; likewise one matmul with ``S1`` gives ``M(k)`` and ``M(v)``.
    """
    n = k.shape[-2]
    v = F.normalize(v, dim=-1)  # choice (g): the memories read the unit vector v / ||v||
    if float(beta) == 0.0:  # the default: one op with a hand-written backward
        G = segment_products(torch.cat([torch.ones_like(alpha[..., :1]), alpha], dim=-1))
        out = _ChunkStep.apply(S2, S1, k, v, q, eta, G, C, dgd, None, None, None, need_momentum)
        if need_momentum:  # beta = 0: the momentum is the last token's step, M_C = -eta_C x_C e_C^T
            W_last, Wp_last, ad_last = out[-3:]
            M2, M1 = k[..., -1, :, None] * W_last[..., None, :], ad_last[..., :, None] * Wp_last[..., None, :]
        return ((out[0], out[1]), (M2, M1), out[2]) if q is not None else ((out[0], out[1]), (M2, M1))
    x = torch.cat([k.expand_as(v), v] + ([q] if q is not None else []), dim=-2)  # [..., 2n or 3n, d]
    z = x @ S2  # [..., 2n or 3n, hidden]
    # split, not slices: the backward of one split is one concatenation (slices: a zero tensor each)
    zkv, zq0 = z.split(2 * n, dim=-2) if q is not None else (z, None)
    xkv = x.split(2 * n, dim=-2)[0] if q is not None else x
    a = sigma(zkv)
    m = xkv + a @ S1  # M(k) and vhat = M(v)
    zk, _ = zkv.split(n, dim=-2)
    ak, av = a.split(n, dim=-2)
    mk, mv = m.split(n, dim=-2)
    r = mk - mv  # [..., n, d]: M(k) - vhat
    delta = sigma_prime(zk) * (r @ S1.transpose(-1, -2))  # [..., n, hidden]
    ad = ak - av  # choice (b): the second matrix's input is a_k - a_v (self-referential gradient)
    eta2 = _second_step(eta, ad, C, dgd)  # choice (b): normalized step for the second matrix (DGD)
    G = segment_products(torch.cat([torch.ones_like(alpha[..., :1]), alpha], dim=-1))  # shared decays
    # k, eta, alpha (and so G and the projector's triangular system) may have a size-1 memory dim
    # that broadcasts over stacked memories: one system per chunk serves all four projection memories
    zq, S2n, M2n = dgd_chunk(S2, M2, k, delta, dgd, eta, alpha, beta, Z=q, XS0=zk,
                             ZS0=zq0, G=G, need_momentum=need_momentum)
    h, S1n, M1n = dgd_chunk(S1, M1, ad, r, False, eta2, alpha, beta,
                            Z=sigma(zq) if q is not None else None, G=G, need_momentum=need_momentum)
    if not need_momentum:
        M2n, M1n = M2, M1  # not read by the next chunk (beta = 0); kept only for the shapes
    return ((S2n, S1n), (M2n, M1n), h) if q is not None else ((S2n, S1n), (M2n, M1n))


def _sum_to(x: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum a broadcast gradient ``x`` back to ``shape`` (the size-1 dims of a stacked input)."""
    if x.shape == shape:
        return x
    lead = x.dim() - len(shape)
    dims = tuple(range(lead)) + tuple(i + lead for i, n in enumerate(shape) if n == 1 and x.shape[i + lead] != 1)
    return x.sum(dims, keepdim=True).reshape(shape) if dims else x


class _ChunkStep(torch.autograd.Function):
    """One chunk of :func:`_chunk_update` without momentum (beta = 0) and without the momentum
    state, with a hand-derived backward. Same equations and results as the autograd path; it exists
    because autograd records ~150 small operations per chunk here, and their bookkeeping (and the
    gradient sums it adds) cost more than the arithmetic on a CPU.

    Inputs: states ``S2 [..., d, h]``, ``S1 [..., h, d]``; keys ``k``, unit values ``vn`` and
    queries ``q`` (or None) ``[..., n, d]``; ``eta [..., n]``; decays ``G [..., n+1, n+1]``
    (:func:`segment_products` of ``[1, alpha]``); ``C`` (the chunk size of eta'); ``project``
    (the DGD projector). Token inputs may have a size-1 dim where the states stack memories.
    Forward, with ``g0 = G[:-1, 0]``, ``gC = G[-1, 0]``, ``Gp = G[:-1, 1:]``, ``gl = G[-1, 1:]``
    (the derivation is beside :func:`dgd_chunk`; beta = 0 there means c = G)::

        z = [k; vn; q] S2,  a = sigma(z),  r = (k + a_k S1) - (vn + a_v S1)
        W  = -eta * (sigma'(z_k) * (r S1^T)),  ad = a_k - a_v,  W' = -eta' * r,
        eta' = eta / (C (1 + |ad|^2))   (without project, i.e. without DGD: eta' = eta / C)
        Y  = A^-1 (-eta * (g0 * z_k + L W)),  L = Gp * (k k^T),  A = I + eta * L   (only with project)
        S2_C = gC S2 + k^T (gl * (W + Y)),   S1_C = gC S1 + ad^T (gl * W')
        zq = g0 * z_q + (Gp * (q k^T)) (W + Y),   h = g0 * (sigma(zq) S1) + (Gp * (sigma(zq) ad^T)) W'

    Returns ``(S2_C, S1_C)`` and, with queries, ``h``; with ``last`` also the last token's rows
    ``W_C, W'_C, ad_C`` (the caller makes the momentum states from them). Optional ``Ainv, L, P``
    are those matrices precomputed by the caller (they do not depend on the state; the caller's
    autograd then takes their gradients back). The backward runs these lines in reverse.
    """

    @staticmethod
    def forward(ctx, S2, S1, k, vn, q, eta, G, C: int, project: bool, Ainv=None, L=None, P=None,
                last: bool = False):
        n = k.shape[-2]
        ctx.pre = L is not None or P is not None  # A^-1, L (with project), P (with q) given by the caller
        tr = lambda t: t.transpose(-1, -2)  # noqa: E731
        x = torch.cat([k, vn] if q is None else [k, vn, q], dim=-2)  # [..., 2n or 3n, d]
        z = x @ S2  # one matmul for the keys, the values (Eq. 86) and the queries
        zkv = z[..., :2 * n, :]
        s = torch.sigmoid(zkv)
        a = zkv * s  # sigma = SiLU
        sp = _silu_prime(zkv, s)  # sigma', kept for the backward
        m = a @ S1
        m += x[..., :2 * n, :]  # M(k) and vhat = M(v)
        r = m[..., :n, :] - m[..., n:, :]  # M(k) - vhat
        ak, av = a[..., :n, :], a[..., n:, :]
        gr = r @ tr(S1)
        delta = sp[..., :n, :] * gr
        ad = ak - av  # choice (b)
        # choice (b): eta' = eta / (C (1 + |ad|^2)); without DGD (not project) the plain eta / C
        nad = (ad * ad).sum(-1).add_(1.0) if project else torch.ones_like(eta)
        eta2 = eta / (C * nad)
        eta_ = eta[..., None]
        g0p, gC, Gp, gl = G[..., :-1, 0, None], G[..., -1, 0, None, None], G[..., :-1, 1:], G[..., -1, 1:, None]
        W = delta * -eta_  # the gradient steps of the first matrix
        Rd = Y = XX = None
        if project and not ctx.pre:
            XX = k @ tr(k)
            L = Gp * XX
            Ainv = _unit_lower_inverse(eta_ * L)
        if project:
            Rd = L @ W
            Rd += g0p * z[..., :n, :]  # z_t D_{t-1} of the keys
            Y = Ainv @ (Rd * -eta_)
            WY = W + Y
        else:
            WY = W
        Wp = r * -eta2[..., None]  # the second matrix's steps
        U, Up = gl * WY, gl * Wp
        S2n = tr(k) @ U
        S2n += gC * S2
        S1n = tr(ad) @ Up
        S1n += gC * S1
        ctx.C, ctx.project, ctx.n, ctx.last = C, project, n, last
        # with last: the last token's steps (W_C, W'_C) and input ad_C, from which the caller makes
        # the momentum states (beta = 0: M_C = -eta_C x_C e_C^T, the last step)
        tail = (W[..., -1, :].clone(), Wp[..., -1, :].clone(), ad[..., -1, :].clone()) if last else ()
        ctx.shapes = (k.shape, None if q is None else q.shape, eta.shape, G.shape)
        saved = [S2, S1, x, z, s, sp, r, gr, delta, ad, nad, eta2, eta, G, W, WY, Wp, U, Up]
        saved += [Ainv, L, Rd, Y, XX] if project else [None] * 5
        if q is None:
            ctx.save_for_backward(*saved, *([None] * 7))
            return (S2n, S1n, *tail)
        QK = None
        if not ctx.pre:
            QK = q @ tr(k)
            P = Gp * QK
        zq = P @ WY
        zq += g0p * z[..., 2 * n:, :]  # reads of the first matrix at S2_{t-1}
        sq_sig = torch.sigmoid(zq)
        sq = zq * sq_sig
        QA = sq @ tr(ad)
        Pp = Gp * QA
        R1 = sq @ S1
        h = Pp @ Wp
        h += g0p * R1  # sigma(q S2_{t-1}) S1_{t-1}
        ctx.save_for_backward(*saved, QK, P, zq, sq, sq_sig, Pp, R1)
        return (S2n, S1n, h, *tail)

    @staticmethod
    def backward(ctx, gS2n, gS1n, *rest):
        gh = rest[0] if ctx.shapes[1] is not None else None
        gWl, gWpl, gadl = rest[-3:] if ctx.last else (None, None, None)
        (S2, S1, x, z, s, sp, r, gr, delta, ad, nad, eta2, eta, G, W, WY, Wp, U, Up,
         Ainv, L, Rd, Y, XX, QK, P, zq, sq, sq_sig, Pp, R1) = ctx.saved_tensors
        C, n = ctx.C, ctx.n
        kshape, qshape, eshape, gshape = ctx.shapes
        tr = lambda t: t.transpose(-1, -2)  # noqa: E731
        k, xq = x[..., :n, :], x[..., 2 * n:, :]
        g0p, gC, Gp, gl = G[..., :-1, 0, None], G[..., -1, 0, None, None], G[..., :-1, 1:], G[..., -1, 1:, None]
        eta_ = eta[..., None]
        gS2n = torch.zeros_like(S2) if gS2n is None else gS2n
        gS1n = torch.zeros_like(S1) if gS1n is None else gS1n
        # S1_C = gC S1 + ad^T (gl * W'),  S2_C = gC S2 + k^T (gl * (W + Y))
        dS1 = gC * gS1n
        dS2 = gC * gS2n
        dgC = (S1 * gS1n).sum((-2, -1)) + (S2 * gS2n).sum((-2, -1))
        dad = Up @ tr(gS1n)
        if gadl is not None:
            dad[..., -1, :] += gadl
        dUp = ad @ gS1n
        dWp = gl * dUp
        dgl = (Wp * dUp).sum(-1)
        dU = k @ gS2n
        dk = U @ tr(gS2n)  # the keys' gradient beyond dz S2^T (broadcast over stacked memories)
        dWY = gl * dU
        dgl = dgl + (WY * dU).sum(-1)
        dg0p = 0.0
        dGp = 0.0
        dq = dzq0 = None
        if qshape is not None and gh is not None:
            # h = g0 * (sq S1) + (Gp * (sq ad^T)) W',  sq = sigma(zq)
            dg0p = (R1 * gh).sum(-1, keepdim=True)
            dR1 = g0p * gh
            dsq = dR1 @ tr(S1)
            dS1 += tr(sq) @ dR1
            dPp = gh @ tr(Wp)
            dWp += tr(Pp) @ gh
            dGp = dPp * (sq @ tr(ad))
            dQA = dPp * Gp
            dsq += dQA @ ad
            dad += tr(dQA) @ sq
            dzq = _silu_prime(zq, sq_sig).mul_(dsq)
            # zq = g0 * z_q + (Gp * (q k^T)) (W + Y)
            dg0p = dg0p + (z[..., 2 * n:, :] * dzq).sum(-1, keepdim=True)
            dzq0 = g0p * dzq
            dP = dzq @ tr(WY)
            dWY += tr(P) @ dzq
            if not ctx.pre:
                dGp = dGp + dP * QK
                dQK = dP * Gp
                dq = dQK @ k
                dk += tr(dQK) @ xq
        # W' = -eta' r,  eta' = eta / (C (1 + |ad|^2))
        if gWpl is not None:
            dWp[..., -1, :] += gWpl
        deta2 = -(r * dWp).sum(-1)
        dr = dWp * -eta2[..., None]
        deta = deta2 / (C * nad)
        if ctx.project:  # the normalization's gradient (only DGD normalizes)
            dad.addcmul_(ad, (-2 * deta2 * eta2 / nad)[..., None])
        dW = dWY
        dzk = _silu_second(z[..., :n, :], s[..., :n, :]).mul_(gr)  # times ddelta below
        if ctx.project:
            # Y = A^-1 rhs,  rhs = -eta (g0 z_k + L W),  A = I + eta L,  L = Gp * (k k^T)
            drhs = tr(Ainv) @ dWY
            dRd = drhs * -eta_
            deta = deta - (Rd * drhs).sum(-1)
            if ctx.pre:  # the caller's autograd takes A^-1 (and so A = I + eta L) back to eta, k and G
                dAinv = dWY @ tr(Rd * -eta_)
                dL = dRd @ tr(W)
            else:
                dA = -(drhs @ tr(Y)).tril_(-1)  # the solve reads only the strictly lower part of A
                deta = deta + (L * dA).sum(-1)
                dL = eta_ * dA
                dL += dRd @ tr(W)
            dg0p = dg0p + (z[..., :n, :] * dRd).sum(-1, keepdim=True)
            dW = tr(L) @ dRd
            dW += dWY
            dL = _sum_to(dL, torch.broadcast_shapes(L.shape, Gp.shape))  # over stacked memories: small
            if not ctx.pre:
                dGp = (dGp if isinstance(dGp, float) else _sum_to(dGp, dL.shape)) + dL * XX
                dXX = dL * Gp
                dk_proj = (dXX + tr(dXX)) @ k
            dzk_proj = g0p * dRd
        # W = -eta delta,  delta = sigma'(z_k) (r S1^T)
        if gWl is not None:
            dW = dW.clone() if dW is dWY else dW  # dWY is still read below (drhs was made before)
            dW[..., -1, :] += gWl
        deta = deta - (delta * dW).sum(-1)
        ddelta = dW * -eta_
        dgr = ddelta * sp[..., :n, :]
        dr += dgr @ S1
        dS1 += tr(dgr) @ r
        dzk.mul_(ddelta)
        if ctx.project:
            dzk += dzk_proj
        # r = M(k) - M(v), M(x) = x + a S1, ad = a_k - a_v;  a = sigma(z). Both M(k) and M(v) enter
        # through r and ad only, with opposite signs: the gradient of a_v is minus that of a_k.
        dk += dr
        dak = dr @ tr(S1)
        dak += dad
        dS1 += tr(ad) @ dr  # a_k^T dr - a_v^T dr
        dzk += sp[..., :n, :] * dak
        dzv = sp[..., n:, :] * dak
        dzv.neg_()
        dz = torch.cat([dzk, dzv] if dzq0 is None else [dzk, dzv, dzq0], dim=-2)
        dS2 += tr(x) @ dz
        dx = dz @ tr(S2)
        dx[..., :n, :] += dk
        dx[..., n:2 * n, :] -= dr
        if dq is not None:
            dx[..., 2 * n:, :] += dq
        dx = _sum_to(dx, (*kshape[:-2], *dx.shape[-2:]))
        if ctx.project and not ctx.pre:
            dx[..., :n, :] += dk_proj
        grads_pre = (None, None, None)
        if ctx.pre:
            grads_pre = (dAinv if ctx.project else None, dL if ctx.project else None,
                         dP if qshape is not None and gh is not None else None)
        dG = torch.zeros(gshape, dtype=G.dtype, device=G.device)  # each piece summed over stacked memories
        lead = gshape[:-2]
        if not isinstance(dg0p, float):
            dG[..., :-1, 0] = _sum_to(dg0p[..., 0], (*lead, n))
        dG[..., -1, 0] = _sum_to(dgC, lead)
        if not isinstance(dGp, float):
            dG[..., :-1, 1:] = _sum_to(dGp, (*lead, n, n))
        dG[..., -1, 1:] = _sum_to(dgl, (*lead, n))
        return (dS2, dS1, dx[..., :n, :], dx[..., n:2 * n, :], None if qshape is None else dx[..., 2 * n:, :],
                _sum_to(deta, eshape), dG, None, None, *grads_pre, None)


def _unit_lower_inverse(L: torch.Tensor) -> torch.Tensor:
    """``(I + L)^-1`` for strictly lower triangular ``L [..., n, n]`` (one triangular solve)."""
    eye = torch.eye(L.shape[-1], dtype=L.dtype, device=L.device)
    return torch.linalg.solve_triangular(eye + L, eye.expand_as(L), upper=False, unitriangular=True)


def _silu_prime(z: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """sigma'(z) = s (1 + z (1 - s)), s = sigmoid(z)."""
    return (1 - s).mul_(z).add_(1).mul_(s)


def _silu_second(z: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """sigma''(z) = s (1 - s) (2 + z (1 - 2 s)), s = sigmoid(z)."""
    return (1 - 2 * s).mul_(z).add_(2).mul_(s * (1 - s))


# ---------------------------------------------------------------------------------------------
# The layer.


class SelfModifyingTitans(nn.Module):
    """Self-modifying Titans as a sequence layer ``x [B, T, dim] -> [B, T, dim]``.

    ``x -> (u, q) = x W_in`` -> causal depthwise convolution (window 4) -> heads; q is
    L2-normalized (keys are normalized after their memory generates them) -> the memories ->
    ``o`` -> heads merged -> ``W_out``. Parameters: ``W_in``, the convolution, the readouts of eta
    and alpha, ``W_out``, and the initial states of the five memories (``init_S2 [5, H, d, hidden]``,
    ``init_S1 [5, H, hidden, d]``, in the order of ``BOXES``), which the outer optimizer trains.
    """

    def __init__(self, dim: int, n_heads: int, *, hidden: int | None = None, chunk_size: int = 16,
                 proj_chunk_size: int = 16, momentum: float = 0.0, eta_max: float = 1.0, dgd: bool = True,
                 self_modify: bool = True, impl: str = "chunked", conv_size: int = 4,
                 out_std: float = 0.02) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim={dim} must be divisible by n_heads={n_heads}.")
        if impl not in ("naive", "chunked"):
            raise ValueError(f"impl must be 'naive' or 'chunked', got {impl!r}.")
        self.dim, self.n_heads, self.d = dim, n_heads, dim // n_heads
        self.hidden = hidden or 2 * self.d
        self.impl = impl
        self.opts = dict(chunk_size=chunk_size, proj_chunk_size=proj_chunk_size, momentum=momentum,
                         eta_max=eta_max, dgd=dgd, self_modify=self_modify)
        H, d, h = n_heads, self.d, self.hidden
        self.W_in = nn.Linear(dim, 2 * dim, bias=False)  # u and q
        # causal depthwise convolution; its near-identity init is drawn below, after the other weights
        self.conv = CausalConv(2 * dim, conv_size, defer_init=True)
        self.W_out = nn.Linear(dim, dim, bias=False)
        self.init_S2 = nn.Parameter(torch.randn(len(BOXES), H, d, h))  # z = x S2 ~ unit scale for unit x
        self.init_S1 = nn.Parameter(0.02 * torch.randn(len(BOXES), H, h, d))  # memories start near identity
        self.w_eta = nn.Parameter(torch.randn(H, d) / math.sqrt(d))
        self.w_alpha = nn.Parameter(torch.randn(H, d) / math.sqrt(d))
        self.b_eta = nn.Parameter(torch.full((H,), -2.0))  # eta ~ 0.12 eta_max at the start
        self.b_alpha = nn.Parameter(torch.full((H,), 4.0))  # alpha ~ 0.98: slow forgetting
        nn.init.normal_(self.W_in.weight, std=0.02)
        nn.init.normal_(self.W_out.weight, std=out_std)
        self.conv.reset_near_identity()  # a short causal filter that starts as the identity (plus noise)

    def readout(self) -> dict[str, torch.Tensor]:
        return {"w_eta": self.w_eta, "b_eta": self.b_eta, "w_alpha": self.w_alpha, "b_alpha": self.b_alpha}

    def initial_states(self, B: int) -> dict[str, Memory]:
        """The meta-learned initial states, expanded to ``[B, H, ...]`` per memory."""
        return {b: (self.init_S2[i].expand(B, -1, -1, -1), self.init_S1[i].expand(B, -1, -1, -1))
                for i, b in enumerate(BOXES)}

    def inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [B, T, dim] -> (u, q)``, each ``[B, H, T, d]`` (q L2-normalized)."""
        B, T, _ = x.shape
        z = self.conv(self.W_in(x)).transpose(1, 2)  # [B, 2 dim, T]: channels first, to split u and q
        u, q = z.view(B, 2, self.n_heads, self.d, T).permute(1, 0, 2, 4, 3)  # [B, H, T, d] each
        return u, F.normalize(q, dim=-1)

    def forward(self, x: torch.Tensor, *, return_generated: bool = False):
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"x must be [B, T, dim={self.dim}], got {tuple(x.shape)}.")
        B, T, _ = x.shape
        u, q = self.inputs(x)
        fn = self_modifying_titans_naive if self.impl == "naive" else self_modifying_titans_chunked
        res = fn(u, q, self.initial_states(B), self.readout(), return_generated=return_generated, **self.opts)
        y = self.W_out(res[0].transpose(1, 2).reshape(B, T, self.dim))
        return (y, res[2]) if return_generated else y

