"""Graders for notebook 04 (deep memory, Titans)."""

from __future__ import annotations

import torch

from nlteach.course.nb04_deep_memory import dual_form_chunk_linear, momentum_decay_recurrence
from nlteach.deep_memory import titans_naive
from nlteach.exercises import GradingFailure, assert_close, register


def _recurrence_inputs(seed: int, T: int = 7):
    g = torch.Generator().manual_seed(seed)
    W0 = torch.randn(3, 4, generator=g, dtype=torch.float64)
    S0 = torch.randn(3, 4, generator=g, dtype=torch.float64)
    grads = torch.randn(T, 3, 4, generator=g, dtype=torch.float64)
    theta = 0.1 + 0.4 * torch.rand(T, generator=g, dtype=torch.float64)
    eta = torch.rand(T, generator=g, dtype=torch.float64)
    alpha = 0.3 * torch.rand(T, generator=g, dtype=torch.float64)
    return W0, S0, grads, theta, eta, alpha


def _pair(out, what: str):
    if not isinstance(out, tuple | list) or len(out) != 2:
        raise GradingFailure(f"{what} should return a pair (W, S) of stacked tensors, got {type(out).__name__}.")
    return out


@register(
    "04.momentum_decay",
    name="momentum_decay",
    notebook="04_deep_memory",
    reference=momentum_decay_recurrence,
    hint="two recurrences, token by token: the momentum S keeps a fraction eta_t of itself and takes"
         " the scaled negative gradient; the weights W keep a fraction (1 - alpha_t) of themselves "
         "and then move by S. Return the whole trajectory of both, one entry per token.",
    solution="for each t: S = eta[t] * S - theta[t] * grads[t], then W = (1 - alpha[t]) * W + S; "
         "append copies of W and S after each token and stack them.",
    difficulty="easy",
    minutes=10,
)
def check_momentum_decay(fn) -> None:
    # plain gradient descent first: eta = alpha = 0 makes W_t = W_{t-1} - theta_t g_t
    W0, S0, grads, theta, _, _ = _recurrence_inputs(0)
    zero = torch.zeros_like(theta)
    W, S = _pair(fn(W0.clone(), S0.clone(), grads.clone(), theta, zero, zero), "momentum_decay")
    W_ref, S_ref = momentum_decay_recurrence(W0, S0, grads, theta, zero, zero)
    assert_close(S, S_ref, what="S with momentum 0 (it should be -theta_t g_t)", rtol=1e-9, atol=1e-12)
    assert_close(W, W_ref, what="W with momentum 0 and no decay (plain gradient descent)", rtol=1e-9, atol=1e-12)
    for seed in (1, 2):
        W0, S0, grads, theta, eta, alpha = _recurrence_inputs(seed)
        W, S = _pair(fn(W0.clone(), S0.clone(), grads.clone(), theta, eta, alpha), "momentum_decay")
        W_ref, S_ref = momentum_decay_recurrence(W0, S0, grads, theta, eta, alpha)
        assert_close(S, S_ref, what="the momentum S_t = eta_t S_{t-1} - theta_t g_t", rtol=1e-9, atol=1e-12)
        W_wrong, _ = momentum_decay_recurrence(W0, S0, grads, theta, eta, torch.zeros_like(alpha))
        if torch.is_tensor(W) and W.shape == W_ref.shape and torch.allclose(W.double(), W_wrong):
            raise GradingFailure("your momentum is right but the weights ignore the forgetting gate: "
                                 "W_t = (1 - alpha_t) W_{t-1} + S_t.")
        assert_close(W, W_ref, what="the weights W_t = (1 - alpha_t) W_{t-1} + S_t", rtol=1e-9, atol=1e-12)


def _chunk_inputs(seed: int, C: int = 6, d_k: int = 4, d_v: int = 3, gates: bool = True):
    g = torch.Generator().manual_seed(seed)
    q = torch.nn.functional.normalize(torch.randn(C, d_k, generator=g, dtype=torch.float64), dim=-1)
    k = torch.nn.functional.normalize(torch.randn(C, d_k, generator=g, dtype=torch.float64), dim=-1)
    v = torch.randn(C, d_v, generator=g, dtype=torch.float64)
    W0 = torch.randn(d_v, d_k, generator=g, dtype=torch.float64)
    S0 = 0.3 * torch.randn(d_v, d_k, generator=g, dtype=torch.float64) if gates else torch.zeros(d_v, d_k, dtype=torch.float64)
    theta = 0.1 + 0.4 * torch.rand(C, generator=g, dtype=torch.float64)
    eta = torch.rand(C, generator=g, dtype=torch.float64) if gates else torch.zeros(C, dtype=torch.float64)
    alpha = 0.3 * torch.rand(C, generator=g, dtype=torch.float64) if gates else torch.zeros(C, dtype=torch.float64)
    return q, k, v, W0, S0, theta, eta, alpha


def _loop(q, k, v, W0, S0, theta, eta, alpha, chunk: int):
    lead = (1, 1)
    o, _ = titans_naive(q.expand(*lead, *q.shape), k.expand(*lead, *k.shape), v.expand(*lead, *v.shape),
                        theta.expand(*lead, -1), eta.expand(*lead, -1), alpha.expand(*lead, -1),
                        (W0.expand(*lead, *W0.shape),), chunk_size=chunk,
                        momentum_state=(S0.expand(*lead, *S0.shape),))
    return o[0, 0]


@register(
    "04.dual_chunk",
    name="dual_chunk",
    notebook="04_deep_memory",
    reference=dual_form_chunk_linear,
    hint="in the dual form every gradient of the chunk is taken at the chunk-start weights W0, so "
         "all the errors are known before the chunk starts. Each output is W0's read plus a causal "
         "(lower-triangular) mix of those errors, weighted by the learning rates (and, with momentum"
         " and decay, by the products of the gates between the two tokens).",
    solution="take every error at W0: E = K W0^T - V. Without momentum and decay, "
         "O = Q W0^T - (theta[None, :] * tril(Q K^T)) E. With them, replace theta * tril(...) by "
         "the C x C matrix of cumulative products (A P) * theta[None, :] and add the decayed W0 term "
         "and the S0 term, as derived above.",
    difficulty="hard",
    minutes=40,
    derivation=True,
)
def check_dual_chunk(fn) -> None:
    # stage 1: no momentum, no decay, no initial momentum (the TTT dual form)
    args = _chunk_inputs(0, gates=False)
    got = fn(*[a.clone() for a in args])
    ref = dual_form_chunk_linear(*args)
    if torch.is_tensor(got) and got.shape == ref.shape and torch.allclose(got.double(), _loop(*args, chunk=1)):
        raise GradingFailure("your output equals token-by-token online GD (each gradient at the latest "
                             "weights); in the dual form every gradient of the chunk is taken at W0.")
    assert_close(got, ref, what="o with momentum 0 and decay 0",
                 rtol=1e-8, atol=1e-10)
    for seed in (1, 2):
        args = _chunk_inputs(seed)
        got = fn(*[a.clone() for a in args])
        assert_close(got, _loop(*args, chunk=args[0].shape[0]),
                     what="o with momentum, decay and an initial momentum S0", rtol=1e-8, atol=1e-10)
