"""Optimizers are associative memories (Sec. 4 of arXiv v1): momentum, preconditioned and delta
momentum, deep momentum (DMGD), Muon, M3 and delta gradient descent (DGD).

Every class here is a ``torch.optim.Optimizer`` with param groups, closures and ``state_dict``,
and constructs as ``Cls(params, lr=...)`` with defaults for everything else. The common picture:
an optimizer is a *two-level* system. The fast level is a memory (the momentum ``m``, a second
moment ``v``, a small MLP, ...) that is written with every gradient by one gradient step on its
own objective; the slow level is the weights, which move by reading that memory.

============================  ==========================================  =====================
class                          memory and its objective                    paper
============================  ==========================================  =====================
:class:`MomentumMemory`        vector ``m``, dot-product objective          Sec. 4.1, = torch SGD
:class:`PreconditionedMomentum` same, gradients preconditioned by ``P``     Eq. 47
:class:`DeltaMomentum`         matrix ``m``, L2 (delta) objective           Eq. 49
:class:`DeepMomentum`          an MLP ``m(.)``, L2 regression objective     Eq. 50 (DMGD)
:class:`Muon`                  momentum read through Newton-Schulz          Eq. 52
:class:`M3`                    fast + slow momentum, second moment          Algorithm 1
:class:`DGD`                   the weights, L2 objective, exact step        Eqs. 56-57
============================  ==========================================  =====================

Sign conventions. :class:`MomentumMemory` and :class:`Muon` keep PyTorch's convention (the memory
stores ``+sum of gradients`` and the weights move by ``-lr * m``) so that ``MomentumMemory`` is
bit-equal to ``torch.optim.SGD``. :class:`PreconditionedMomentum`, :class:`DeltaMomentum` follow
the paper's convention ``W_{t+1} = W_t + m_{t+1}``, ``m_{t+1} = a m_t - lr P g_t`` (the learning
rate lives inside the memory). With a constant lr the two differ only by the factor ``-lr``.

The choices the paper leaves open are listed in docs/paper-notes.md#ambiguities and documented in
each class and in notebook 06.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

__all__ = [
    "MomentumMemory",
    "PreconditionedMomentum",
    "DeltaMomentum",
    "DeepMomentum",
    "Muon",
    "M3",
    "DGD",
    "newton_schulz",
    "newton_schulz_step",
    "NS_COEFFS",
    "NS_BAND",
    "dgd_step",
    "dgd_step_batch",
    "dgd_objective",
]

Params = Iterable[torch.Tensor] | Iterable[dict[str, Any]]
Closure = Callable[[], torch.Tensor] | None


# ---------------------------------------------------------------------------------------------
# Validation helpers: a clear error naming the argument, the value received and what was expected.


def _check(ok: bool, name: str, value: Any, expected: str) -> None:
    if not ok:
        raise ValueError(f"{name} must be {expected}, got {value!r}.")


def _check_lr(lr: Any, name: str = "lr") -> None:
    _check(isinstance(lr, int | float) and not isinstance(lr, bool) and math.isfinite(lr) and lr >= 0,
           name, lr, "a finite number >= 0")


def _check_unit(x: Any, name: str, *, closed_top: bool = False) -> None:
    top = "]" if closed_top else ")"
    ok = isinstance(x, int | float) and not isinstance(x, bool) and 0.0 <= x and (
        x <= 1.0 if closed_top else x < 1.0)
    _check(ok, name, x, f"in [0, 1{top}")


def _check_nonneg(x: Any, name: str) -> None:
    _check(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x >= 0,
           name, x, "a finite number >= 0")


def _check_pos(x: Any, name: str) -> None:
    _check(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0,
           name, x, "a finite number > 0")


def _check_int(x: Any, name: str, lo: int) -> None:
    _check(isinstance(x, int) and not isinstance(x, bool) and x >= lo, name, x, f"an int >= {lo}")


def _run_closure(closure: Closure) -> torch.Tensor | None:
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def _dense_grad(p: torch.Tensor, who: str) -> torch.Tensor:
    if p.grad.is_sparse:
        raise RuntimeError(f"{who} does not support sparse gradients (parameter of shape {tuple(p.shape)}).")
    return p.grad


def _as_matrix(t: torch.Tensor) -> torch.Tensor:
    """View a parameter-shaped tensor as a matrix ``[rows, cols]``: a vector is one row, a tensor of
    rank >= 3 (e.g. a convolution kernel) keeps its first dim as rows."""
    if t.dim() == 0:
        return t.reshape(1, 1)
    if t.dim() == 1:
        return t.reshape(1, -1)
    return t.reshape(t.shape[0], -1)


class _FloatOptimizer(Optimizer):
    """An :class:`~torch.optim.Optimizer` that refuses parameters it cannot update: an integer or
    bool tensor has no gradient, so torch's optimizers skip it silently (a run that learns nothing)."""

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        for i, p in enumerate(self.param_groups[-1]["params"]):
            if not (p.is_floating_point() or p.is_complex()):
                raise TypeError(
                    f"{type(self).__name__}: params[{i}] of param group {len(self.param_groups) - 1} has dtype "
                    f"{p.dtype} (shape {tuple(p.shape)}); expected a floating-point tensor (an integer tensor has "
                    "no gradient, so it would never be updated). Convert it, e.g. p.float().")


# ---------------------------------------------------------------------------------------------
# Preconditioners for Eq. 47 / Eq. 49.

PRECONDITIONERS = ("identity", "diagonal")


def _check_preconditioner(p: Any) -> None:
    _check(p in PRECONDITIONERS or callable(p), "preconditioner", p,
           f"one of {PRECONDITIONERS} or a callable grad -> tensor of the same shape")


def _precondition(group: dict, state: dict, g: torch.Tensor) -> torch.Tensor:
    """``P_t g_t``. ``identity``: ``g``; ``diagonal``: ``g / (sqrt(v_hat) + eps)`` with ``v`` an EMA of
    ``g^2`` (rate ``beta2``, bias-corrected: a memory of squared gradients, App. B); a callable ``P``:
    ``P(g)`` (it must return a tensor shaped like ``g``)."""
    pre = group["preconditioner"]
    if pre == "identity":
        return g
    if pre == "diagonal":
        v = state.setdefault("second_moment", torch.zeros_like(g))
        v.mul_(group["beta2"]).addcmul_(g, g, value=1 - group["beta2"])
        v_hat = v / (1 - group["beta2"] ** state["step"])
        return g / (v_hat.sqrt() + group["eps"])
    out = pre(g)
    if not isinstance(out, torch.Tensor) or out.shape != g.shape:
        raise ValueError(f"preconditioner callable must return a tensor of shape {tuple(g.shape)}, "
                         f"got {type(out).__name__} {getattr(out, 'shape', '')}.")
    return out


# ---------------------------------------------------------------------------------------------
# Momentum as a memory of gradients.


class MomentumMemory(_FloatOptimizer):
    """SGD with momentum, written as a two-level associative memory (Sec. 4.1, arXiv v1).

    Inner level: the momentum ``m`` is a memory that compresses the gradient stream. Each step
    writes the new gradient by one gradient step on the dot-product objective
    ``L(m; g_t) = -<m, g_t>`` (gradient ``-g_t``), taken from the decayed state ``momentum * m``
    with step size ``1 - dampening``::

        m_{t+1} = momentum * m_t - (1 - dampening) * dL/dm = momentum * m_t + (1 - dampening) g_t

    Outer level: the weights read the memory, ``W_{t+1} = W_t - lr * m_{t+1}`` (with ``nesterov``
    they read ``g_t + momentum * m_{t+1}``). The first write stores ``g_1`` at full strength, as
    ``torch.optim.SGD`` does, so the two are bit-equal for the same hyperparameters
    (``weight_decay`` adds ``weight_decay * W`` to the gradient first, like SGD).
    """

    def __init__(self, params: Params, lr: float = 1e-2, momentum: float = 0.9,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False):
        _check_lr(lr)
        _check_unit(momentum, "momentum")
        _check_unit(dampening, "dampening")
        _check_nonneg(weight_decay, "weight_decay")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(f"nesterov=True needs momentum > 0 and dampening = 0, got "
                             f"momentum={momentum!r}, dampening={dampening!r}.")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    @torch.no_grad()
    def step(self, closure: Closure = None) -> torch.Tensor | None:
        loss = _run_closure(closure)
        for group in self.param_groups:
            beta, lr = group["momentum"], group["lr"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = _dense_grad(p, "MomentumMemory")
                if group["weight_decay"] != 0:
                    g = g.add(p, alpha=group["weight_decay"])
                if beta == 0:
                    read = g  # a memory that keeps nothing: plain SGD
                else:
                    state = self.state[p]
                    if "memory" not in state:
                        state["memory"] = torch.clone(g).detach()  # first write, full strength
                    else:
                        inner_grad = -g  # d/dm of L(m; g) = -<m, g>
                        state["memory"].mul_(beta).sub_(inner_grad, alpha=1 - group["dampening"])
                    m = state["memory"]
                    read = g.add(m, alpha=beta) if group["nesterov"] else m
                p.add_(read, alpha=-lr)  # outer level: W <- W - lr * read(m)
        return loss


class PreconditionedMomentum(_FloatOptimizer):
    """Preconditioned momentum, Eq. 47 (arXiv v1): ``m_{t+1} = a m_t - lr P_t g_t``, ``W_{t+1} = W_t + m_{t+1}``.

    ``momentum`` is ``a``. ``preconditioner`` is ``"identity"`` (plain momentum in the paper's
    convention), ``"diagonal"`` (``P g = g / (sqrt(v_hat) + eps)``, ``v`` an EMA of ``g^2`` with rate
    ``beta2``) or a callable ``P(g) -> tensor`` of ``g``'s shape (module-level functions pickle with
    ``torch.save``; lambdas work in memory only). ``weight_decay`` is decoupled: ``W <- (1 - lr wd) W``.
    """

    def __init__(self, params: Params, lr: float = 1e-2, momentum: float = 0.9,
                 preconditioner: str | Callable[[torch.Tensor], torch.Tensor] = "diagonal",
                 beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0):
        _check_lr(lr)
        _check_unit(momentum, "momentum")
        _check_preconditioner(preconditioner)
        _check_unit(beta2, "beta2")
        _check_pos(eps, "eps")
        _check_nonneg(weight_decay, "weight_decay")
        super().__init__(params, dict(lr=lr, momentum=momentum, preconditioner=preconditioner,
                                      beta2=beta2, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Closure = None) -> torch.Tensor | None:
        loss = _run_closure(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = _dense_grad(p, "PreconditionedMomentum")
                state = self.state[p]
                state["step"] = state.get("step", 0) + 1
                m = state.setdefault("momentum", torch.zeros_like(p))
                m.mul_(group["momentum"]).sub_(_precondition(group, state, g), alpha=group["lr"])  # Eq. 47
                if group["weight_decay"] != 0:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(m)
        return loss


class DeltaMomentum(_FloatOptimizer):
    """Delta momentum, Eq. 49 (arXiv v1): the momentum memory is written with an L2 (delta-rule)
    objective instead of a dot product, which gives it a gradient-dependent decay::

        m_{t+1} = m_t (a I - c_t g_t^T g_t) - lr P_t g_t,      W_{t+1} = W_t + m_{t+1}

    with ``m``, ``g`` viewed as matrices ``[rows, cols]`` (a vector is one row, so ``g^T g`` is the
    outer product ``g g^T``). The decay removes from the memory what it stored along the directions
    the current gradient occupies: the optimizer can forget, and it forgets more when the gradient
    is large.

    Normalization (AMBIGUOUS in the paper, our choice). Eq. 49 as printed has ``c_t = 1``: the
    factor has eigenvalues ``a - sigma_i(g)^2``, below -1 as soon as ``||g||^2 > 1 + a``, and the
    momentum then grows geometrically (``normalize=False`` gives ``c_t = beta``, i.e. the printed
    rule for ``beta = 1``; tests and notebook 06 show it blowing up). We take the coefficient of
    the exact (Sherman-Morrison) solution of the same objective, as DGD does (Eq. 57)::

        c_t = beta / (1 + beta ||g_t||_F^2)

    Only the coefficient: for a rank-1 ``g`` the exact proximal step from ``a m_t`` is
    ``(a m_t - beta lr P_t g_t)(I - c_t g_t^T g_t)``, which erases with ``a c_t`` and projects the
    write too; this rule differs from it by a few percent at ``||g||_F ~ 1`` (notebook 06).
    Then ``c_t sigma_i^2 < 1``, the factor's eigenvalues lie in ``(a - 1, a]`` inside (-1, 1), and
    the memory is a contraction for any gradient scale. For small gradients
    (``beta ||g||^2 << 1``) it equals the printed rule with ``c = beta``; for large ones it
    forgets (almost) everything the memory holds along the gradient. ``beta = 0`` is
    :class:`PreconditionedMomentum`.
    """

    def __init__(self, params: Params, lr: float = 1e-2, momentum: float = 0.9, beta: float = 1.0,
                 normalize: bool = True,
                 preconditioner: str | Callable[[torch.Tensor], torch.Tensor] = "identity",
                 beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0):
        _check_lr(lr)
        _check_unit(momentum, "momentum")
        _check_nonneg(beta, "beta")
        _check(isinstance(normalize, bool), "normalize", normalize, "True or False")
        _check_preconditioner(preconditioner)
        _check_unit(beta2, "beta2")
        _check_pos(eps, "eps")
        _check_nonneg(weight_decay, "weight_decay")
        super().__init__(params, dict(lr=lr, momentum=momentum, beta=beta, normalize=normalize,
                                      preconditioner=preconditioner, beta2=beta2, eps=eps,
                                      weight_decay=weight_decay))

    @staticmethod
    def forget(m: torch.Tensor, g: torch.Tensor, a: float, beta: float, normalize: bool) -> torch.Tensor:
        """``m (a I - c g^T g)`` for parameter-shaped ``m``, ``g``: the decay of Eq. 49, with
        ``c = beta / (1 + beta ||g||_F^2)`` (``normalize=True``) or ``c = beta`` (raw)."""
        M, G = _as_matrix(m), _as_matrix(g)  # [r, c]
        c_forget = beta / (1 + beta * G.pow(2).sum()) if normalize else beta
        r, c = G.shape
        if c <= r:
            proj = M @ (G.T @ G)  # [r, c] @ [c, c]
        else:
            proj = (M @ G.T) @ G  # [r, r] @ [r, c]
        return (a * M - c_forget * proj).view_as(m)

    @torch.no_grad()
    def step(self, closure: Closure = None) -> torch.Tensor | None:
        loss = _run_closure(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = _dense_grad(p, "DeltaMomentum")
                state = self.state[p]
                state["step"] = state.get("step", 0) + 1
                m = state.setdefault("momentum", torch.zeros_like(p))
                m_new = self.forget(m, g, group["momentum"], group["beta"], group["normalize"])
                m_new.sub_(_precondition(group, state, g), alpha=group["lr"])  # Eq. 49
                m.copy_(m_new)
                if group["weight_decay"] != 0:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(m)
        return loss


# ---------------------------------------------------------------------------------------------
# Deep momentum: the momentum is an MLP trained online (Eq. 50).


class DeepMomentum(_FloatOptimizer):
    """Deep Momentum Gradient Descent, DMGD (Eq. 50, arXiv v1): the momentum is a small MLP ``m(.)``
    with its own inner objective, trained by one gradient step per outer step::

        theta_{t+1} = theta_0 + a (theta_t - theta_0) - inner_lr * grad L_inner(theta_t)   (inner level)
        W_{t+1}     = W_t - lr * s_t * m_{theta_{t+1}}(u_t)                                (outer level)

    Features (works for any parameter shape): one feature vector per parameter element,
    ``u_t = (g_t, e_t) / s_t`` where ``e_t = momentum * e_{t-1} + (1 - momentum) g_t`` is the plain
    running average of gradients and ``s_t`` the RMS gradient scale of the tensor (an EMA of
    ``mean(g^2)`` with rate ``beta2``, bias-corrected), so the MLP sees O(1) inputs.
    The MLP ``m(u) = u . w + w2 . silu(W1 u + b1)`` is shared by all elements of one parameter
    tensor; its weights live in the optimizer state (``state_dict`` saves them).

    Inner objective (AMBIGUOUS in the paper, "needs careful design"; our choice): L2 regression of
    the *next* gradient, ``L_inner = 1/2 mean_i (m(u_{t-1,i}) - g_{t,i} / s_t)^2``: the memory learns
    to predict the gradient that arrives from what it saw one step before (the running average is
    the best such predictor for a noisy constant gradient; the MLP can learn better ones, e.g.
    damp oscillating coordinates). ``retention`` is the paper's ``a`` (applied to the deviation of
    the MLP from its initialization). The initialization ``w = (0, 1)``, ``w2 = 0`` makes DMGD start
    as exactly momentum SGD with an averaged momentum (``W -= lr * e_t``); with ``inner_lr = 0`` it
    stays that.
    """

    def __init__(self, params: Params, lr: float = 1e-2, momentum: float = 0.9, hidden: int = 8,
                 inner_lr: float = 0.01, retention: float = 1.0, beta2: float = 0.99,
                 eps: float = 1e-12, weight_decay: float = 0.0, seed: int = 0):
        _check_lr(lr)
        _check_unit(momentum, "momentum")
        _check_int(hidden, "hidden", 1)
        _check_lr(inner_lr, "inner_lr")
        _check_unit(retention, "retention", closed_top=True)
        _check_unit(beta2, "beta2")
        _check_pos(eps, "eps")
        _check_nonneg(weight_decay, "weight_decay")
        _check_int(seed, "seed", 0)
        super().__init__(params, dict(lr=lr, momentum=momentum, hidden=hidden, inner_lr=inner_lr,
                                      retention=retention, beta2=beta2, eps=eps,
                                      weight_decay=weight_decay, seed=seed))

    @staticmethod
    def mlp(u: torch.Tensor, w: torch.Tensor, W1: torch.Tensor, b1: torch.Tensor,
            w2: torch.Tensor) -> torch.Tensor:
        """``m(u) = u . w + w2 . silu(W1 u + b1)``; u: [N, 2] -> [N]."""
        return u @ w + torch.nn.functional.silu(u @ W1.T + b1) @ w2

    @staticmethod
    def inner_grads(u: torch.Tensor, target: torch.Tensor, w: torch.Tensor, W1: torch.Tensor,
                    b1: torch.Tensor, w2: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Gradients of ``1/2 mean_i (m(u_i) - target_i)^2`` w.r.t. ``(w, W1, b1, w2)``, by hand
        (backprop through the two layers; tests check them against autograd)."""
        z = u @ W1.T + b1  # [N, H]
        sig = torch.sigmoid(z)
        h = z * sig  # silu
        r = (u @ w + h @ w2 - target) / u.shape[0]  # [N], dL/dpred
        dz = r[:, None] * w2[None, :] * (sig * (1 + z * (1 - sig)))  # silu'(z) = s (1 + z (1 - s))
        return u.T @ r, dz.T @ u, dz.sum(0), h.T @ r

    def _init_state(self, p: torch.Tensor, group: dict, index: int) -> dict:
        gen = torch.Generator().manual_seed(group["seed"] * 1_000_003 + index)
        h = group["hidden"]
        kw = dict(dtype=p.dtype, device=p.device)
        W1 = (torch.randn(h, 2, generator=gen, dtype=torch.float64) / math.sqrt(2)).to(**kw)
        mlp0 = dict(w=torch.tensor([0.0, 1.0], **kw), W1=W1, b1=torch.zeros(h, **kw),
                    w2=torch.zeros(h, **kw))
        state = {"step": 0, "ema": torch.zeros_like(p), "sq": torch.zeros((), **kw),
                 "features": torch.zeros(p.numel(), 2, **kw)}
        for k, v in mlp0.items():
            state[k] = v.clone()
            state[k + "0"] = v.clone()
        return state

    @torch.no_grad()
    def step(self, closure: Closure = None) -> torch.Tensor | None:
        loss = _run_closure(closure)
        index = 0
        for group in self.param_groups:
            for p in group["params"]:
                index += 1
                if p.grad is None:
                    continue
                g = _dense_grad(p, "DeepMomentum")
                state = self.state[p]
                if not state:
                    state.update(self._init_state(p, group, index))
                state["step"] += 1
                b2 = group["beta2"]
                state["sq"].mul_(b2).add_(g.pow(2).mean(), alpha=1 - b2)
                s = (state["sq"] / (1 - b2 ** state["step"])).sqrt() + group["eps"]  # RMS scale
                target = (g / s).reshape(-1)  # [N]
                names = ("w", "W1", "b1", "w2")
                if state["step"] > 1 and group["inner_lr"] > 0:
                    # inner level: one GD step on L_inner = 1/2 mean (m(u_{t-1}) - g_t / s_t)^2
                    grads = self.inner_grads(state["features"], target, *(state[k] for k in names))
                    a = group["retention"]
                    for k, gk in zip(names, grads):
                        t0 = state[k + "0"]
                        state[k].sub_(t0).mul_(a).add_(t0).sub_(gk, alpha=group["inner_lr"])
                state["ema"].mul_(group["momentum"]).add_(g, alpha=1 - group["momentum"])
                u = torch.stack([g.reshape(-1), state["ema"].reshape(-1)], dim=1) / s  # [N, 2]
                state["features"].copy_(u)
                update = self.mlp(u, *(state[k] for k in names)).view_as(p)  # m_{t+1}(u_t)
                if group["weight_decay"] != 0:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                p.sub_(update * s, alpha=group["lr"])
        return loss


# ---------------------------------------------------------------------------------------------
# Newton-Schulz orthogonalization and Muon (Eq. 52).

#: Quintic Newton-Schulz coefficients ``(a, b, c)``: ``X <- a X + b (X X^T) X + c (X X^T)^2 X`` maps
#: each singular value ``s`` to ``a s + b s^3 + c s^5``. They trade exact convergence for speed:
#: small singular values grow fast (slope 3.4445 at 0), and the iteration settles in a band
#: around 1 instead of at 1.
NS_COEFFS: tuple[float, float, float] = (3.4445, -4.7750, 2.0315)

#: Documented band: after ``newton_schulz(G, steps=5)``, every singular value of the output lies in
#: ``NS_BAND`` for any ``G`` whose singular values satisfy ``sigma_i / ||G||_F >= 3e-3``. (The scalar
#: map ``s -> a s + b s^3 + c s^5`` applied 5 times sends [3e-3, 1] into [0.68, 1.21]; the band adds
#: fp32 slack. Tests check it on random and ill-conditioned matrices.) Smaller singular values are
#: amplified by at most ``3.4445**5 ~ 485`` and may stay below the band: they are not "noise-free".
NS_BAND: tuple[float, float] = (0.6, 1.25)


def newton_schulz_step(X: torch.Tensor, a: float = NS_COEFFS[0], b: float = NS_COEFFS[1],
                       c: float = NS_COEFFS[2]) -> torch.Tensor:
    """One quintic Newton-Schulz iteration ``a X + (b A + c A^2) X`` with ``A = X X^T``; X: [r, c]."""
    A = X @ X.T  # [r, r]
    return a * X + (b * A + c * A @ A) @ X


def newton_schulz(G: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """Approximately orthogonalize a matrix: ``G = U S V^T -> ~U V^T`` (Muon's ``sigma`` in Eq. 52).

    ``G`` is first scaled by its Frobenius norm (so every singular value is <= 1), then ``steps``
    quintic iterations (:data:`NS_COEFFS`) push the singular values into :data:`NS_BAND`; the
    singular vectors are unchanged. A wide ``[r, c]`` with ``r <= c`` is iterated as is, a tall one
    transposed (so ``A = X X^T`` is the smaller Gram matrix). The zero matrix maps to zero.
    """
    if not isinstance(G, torch.Tensor) or G.dim() != 2:
        raise ValueError(f"G must be a 2-D tensor (a matrix), got shape "
                         f"{tuple(G.shape) if isinstance(G, torch.Tensor) else type(G).__name__}.")
    _check_int(steps, "steps", 0)
    tall = G.shape[0] > G.shape[1]
    X = G.T if tall else G
    X = X / (X.norm() + eps)
    for _ in range(steps):
        X = newton_schulz_step(X)
    return X.T if tall else X


class Muon(_FloatOptimizer):
    """Muon: momentum read through a nonlinear output, Eq. 52 (arXiv v1) with ``sigma`` = Newton-Schulz.

    For each matrix parameter ``W: [r, c]`` (tensors of rank >= 3 are viewed as ``[shape[0], -1]``)::

        m_{t+1} = momentum * m_t + g_t                       (the linear momentum memory)
        W_{t+1} = (1 - lr wd) W_t - lr * sqrt(max(1, r / c)) * NS(read)

    with ``read = g_t + momentum * m_{t+1}`` (``nesterov=True``, default) or ``m_{t+1}``.

    Fallback for parameters of rank < 2 (biases, gains) and for any param group with
    ``orthogonalize=False``: an AdamW step (betas ``fallback_betas``, lr ``fallback_lr``, same
    ``weight_decay``), the usual companion of Muon. Put embeddings and output heads in such a group
    if you prefer them not orthogonalized.
    """

    def __init__(self, params: Params, lr: float = 0.02, momentum: float = 0.95,
                 nesterov: bool = True, ns_steps: int = 5, weight_decay: float = 0.0,
                 fallback_lr: float = 3e-3, fallback_betas: tuple[float, float] = (0.9, 0.95),
                 eps: float = 1e-8, orthogonalize: bool = True):
        _check_lr(lr)
        _check_unit(momentum, "momentum")
        _check_int(ns_steps, "ns_steps", 0)
        _check_nonneg(weight_decay, "weight_decay")
        _check_lr(fallback_lr, "fallback_lr")
        _check(isinstance(fallback_betas, tuple | list) and len(fallback_betas) == 2
               and all(isinstance(b, int | float) and 0 <= b < 1 for b in fallback_betas),
               "fallback_betas", fallback_betas, "a pair of numbers in [0, 1)")
        _check_pos(eps, "eps")
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov,
                                      ns_steps=ns_steps, weight_decay=weight_decay,
                                      fallback_lr=fallback_lr, fallback_betas=tuple(fallback_betas),
                                      eps=eps, orthogonalize=orthogonalize))

    @torch.no_grad()
    def step(self, closure: Closure = None) -> torch.Tensor | None:
        loss = _run_closure(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = _dense_grad(p, "Muon")
                state = self.state[p]
                if p.dim() >= 2 and group["orthogonalize"]:
                    m = state.setdefault("momentum", torch.zeros_like(p))
                    m.mul_(group["momentum"]).add_(g)
                    read = g.add(m, alpha=group["momentum"]) if group["nesterov"] else m
                    G = _as_matrix(read)
                    O = newton_schulz(G, group["ns_steps"])  # Eq. 52: sigma = NS
                    scale = max(1.0, G.shape[0] / G.shape[1]) ** 0.5
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                    p.add_(O.view_as(p), alpha=-group["lr"] * scale)
                else:
                    _adamw_step(p, g, state, group["fallback_lr"], group["fallback_betas"],
                                group["eps"], group["weight_decay"])
        return loss


def _adamw_step(p: torch.Tensor, g: torch.Tensor, state: dict, lr: float,
                betas: tuple[float, float], eps: float, weight_decay: float) -> None:
    state["step"] = state.get("step", 0) + 1
    m = state.setdefault("exp_avg", torch.zeros_like(p))
    v = state.setdefault("exp_avg_sq", torch.zeros_like(p))
    m.mul_(betas[0]).add_(g, alpha=1 - betas[0])
    v.mul_(betas[1]).addcmul_(g, g, value=1 - betas[1])
    m_hat = m / (1 - betas[0] ** state["step"])
    v_hat = v / (1 - betas[1] ** state["step"])
    p.mul_(1 - lr * weight_decay)
    p.addcdiv_(m_hat, v_hat.sqrt() + eps, value=-lr)


# ---------------------------------------------------------------------------------------------
# M3: multi-scale momentum Muon (Algorithm 1).


class M3(_FloatOptimizer):
    """Multi-scale Momentum Muon, M3: Algorithm 1 of arXiv v1, as written (Eq. 75 has typos).

    Per parameter, with a step counter ``t = 1, 2, ...`` and frequency ``f``::

        at t = k f + 1 (k >= 1):  M2 <- M2 + beta3 * (sum of the f gradients of steps (k-1)f+1 .. kf)
                                  O2 <- NS(M2)                             (slow momentum, every f steps)
        M1 <- M1 + beta1 g_t                                               (fast momentum)
        V  <- V  + beta2 g_t^2                                             (second moment)
        O1 <- NS(M1)
        W  <- W - lr (O1 + alpha O2) / (sqrt(V) + eps)

    The momenta and ``V`` are plain sums, as in Algorithm 1 (no decay; ``beta`` only scales the
    write). Before the first slow write (steps 1..f) ``M2 = O2 = 0``. ``alpha = 0`` leaves the fast
    branch alone. Algorithm 1 sums ``g_i`` for ``i = (k-1)f .. kf`` (f + 1 terms, overlapping the
    previous block by one): we read it as the f gradients of the previous block.
    Parameters of rank < 2 (no matrix to orthogonalize) use ``O = M`` (NS replaced by identity);
    rank >= 3 are viewed as ``[shape[0], -1]``.

    ``eps`` (left open by Algorithm 1) matters far more than in Adam: the numerator ``NS(M1)`` is
    scale-free (singular values ~1) while ``sqrt(V)`` has the units of a gradient, so an element
    whose gradient stays ~0 (a dead input pixel, an unused embedding row) moves by
    ``lr * |O| / eps`` every step. With Adam's ``eps = 1e-8`` our digits and tiny Shakespeare runs
    diverged within a few steps; the default ``eps = 0.03`` came out of a small sweep there (see
    notebook 06). Also note that with plain sums the fast momentum never forgets: on a quadratic
    it oscillates like heavy-ball without friction, damped only by the growing ``sqrt(V)``.
    """

    def __init__(self, params: Params, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 beta3: float = 0.9, alpha: float = 0.5, frequency: int = 10, ns_steps: int = 5,
                 eps: float = 0.03, weight_decay: float = 0.0):
        _check_lr(lr)
        _check_unit(beta1, "beta1")
        _check_unit(beta2, "beta2")
        _check_unit(beta3, "beta3")
        _check_nonneg(alpha, "alpha")
        _check_int(frequency, "frequency", 1)
        _check_int(ns_steps, "ns_steps", 0)
        _check_pos(eps, "eps")
        _check_nonneg(weight_decay, "weight_decay")
        super().__init__(params, dict(lr=lr, beta1=beta1, beta2=beta2, beta3=beta3, alpha=alpha,
                                      frequency=frequency, ns_steps=ns_steps, eps=eps,
                                      weight_decay=weight_decay))

    @staticmethod
    def _orth(M: torch.Tensor, steps: int) -> torch.Tensor:
        if M.dim() < 2:
            return M.clone()
        return newton_schulz(_as_matrix(M), steps).view_as(M)

    @torch.no_grad()
    def step(self, closure: Closure = None) -> torch.Tensor | None:
        loss = _run_closure(closure)
        for group in self.param_groups:
            f = group["frequency"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = _dense_grad(p, "M3")
                state = self.state[p]
                if not state:
                    state.update(step=0, M1=torch.zeros_like(p), M2=torch.zeros_like(p),
                                 V=torch.zeros_like(p), O2=torch.zeros_like(p),
                                 block_sum=torch.zeros_like(p))
                state["step"] += 1
                t = state["step"]
                if t > 1 and (t - 1) % f == 0:  # slow memory: once every f steps
                    state["M2"].add_(state["block_sum"], alpha=group["beta3"])
                    state["block_sum"].zero_()
                    state["O2"].copy_(self._orth(state["M2"], group["ns_steps"]))
                state["block_sum"].add_(g)
                state["M1"].add_(g, alpha=group["beta1"])  # fast momentum
                state["V"].addcmul_(g, g, value=group["beta2"])  # second moment
                O1 = self._orth(state["M1"], group["ns_steps"])
                direction = O1.add(state["O2"], alpha=group["alpha"])
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.addcdiv_(direction, state["V"].sqrt() + group["eps"], value=-group["lr"])
        return loss


# ---------------------------------------------------------------------------------------------
# Delta gradient descent (Eqs. 56-57).


def dgd_step(W: torch.Tensor, x: torch.Tensor, u: torch.Tensor, lr: float) -> torch.Tensor:
    """The exact solution of Eq. 56 for one input, Eq. 57 (arXiv v1)::

        W_{t+1} = argmin_W 1/2 ||W x - u||^2 + 1/(2 lr) ||W - W_t||^2
                = W_t (I - lr' x x^T) + lr' u x^T,      lr' = lr / (1 + lr ||x||^2)

    (Sherman-Morrison: ``(I + lr x x^T)^-1 = I - lr' x x^T``.) W: [out, in], x: [in], u: [out].
    Computed as ``W_t - lr' (W_t x - u) x^T`` (the same thing, without forming an ``in x in`` matrix).
    """
    if W.dim() != 2 or x.shape != (W.shape[1],) or u.shape != (W.shape[0],):
        raise ValueError(f"dgd_step expects W [out, in], x [in], u [out]; got W {tuple(W.shape)}, "
                         f"x {tuple(x.shape)}, u {tuple(u.shape)}.")
    lr_prime = lr / (1 + lr * x.dot(x))  # Eq. 57's eta'
    return W - lr_prime * torch.outer(W @ x - u, x)


def dgd_step_batch(W: torch.Tensor, X: torch.Tensor, U: torch.Tensor, lr: float) -> torch.Tensor:
    """Exact argmin of the batch objective :func:`dgd_objective` (mean over the N rows)::

        W_{t+1} = (W_t + (lr/N) U^T X) (I + (lr/N) X^T X)^-1       X: [N, in], U: [N, out]

    For N = 1 this is :func:`dgd_step`. Solved with a Cholesky factorization of the SPD
    ``in x in`` matrix (use it for ``in`` up to a few thousand).
    """
    N = X.shape[0]
    c = lr / N
    A = torch.eye(X.shape[1], dtype=X.dtype, device=X.device) + c * X.T @ X  # [in, in], SPD
    rhs = W + c * U.T @ X  # [out, in]
    L = torch.linalg.cholesky(A)
    return torch.cholesky_solve(rhs.T, L).T  # W_{t+1} A = rhs  <=>  A W_{t+1}^T = rhs^T


def dgd_objective(W: torch.Tensor, W_t: torch.Tensor, X: torch.Tensor, U: torch.Tensor,
                  lr: float) -> torch.Tensor:
    """``1/(2N) sum_n ||W x_n - u_n||^2 + 1/(2 lr) ||W - W_t||^2`` (Eq. 56, averaged over a batch)."""
    return 0.5 * (X @ W.T - U).pow(2).sum() / X.shape[0] + 0.5 / lr * (W - W_t).pow(2).sum()


DGD_TARGETS = ("negative_gradient", "descent")


class DGD(_FloatOptimizer):
    """Delta Gradient Descent, Eqs. 56-57 (arXiv v1): each ``nn.Linear`` weight moves by the exact
    solution of an L2 (delta-rule) objective instead of the dot-product objective of plain GD.

    For a linear layer ``y = W x`` the paper replaces GD's ``argmin_W <W x, dL/dy> + ||W - W_t||^2/(2 lr)``
    with ``argmin_W 1/2 ||W x - u||^2 + ||W - W_t||^2/(2 lr)``, solved exactly by :func:`dgd_step`:
    ``W_{t+1} = W_t (I - lr' x x^T) + lr' u x^T``, ``lr' = lr / (1 + lr ||x||^2)``. The factor
    ``(I - lr' x x^T)`` is a state-dependent decay: the layer forgets what it mapped ``x`` to.

    The target ``u`` (AMBIGUOUS in the paper, which writes ``-lr' dL/dy x^T`` in Eq. 57):

    - ``target="negative_gradient"`` (default, Eq. 57 as printed): ``u = -dL/dy``, so
      ``W_{t+1} = W_t (I - lr' x x^T) - lr' (dL/dy) x^T``. This equals an exact proximal step on
      the linearized loss plus ``1/2 ||y||^2``: it also shrinks the layer's outputs.
    - ``target="descent"``: ``u = y - dL/dy`` (where one GD step in output space would move y).
      For one sample the decay and the re-written old value cancel, leaving normalized GD
      ``W_t - lr' (dL/dy) x^T``; for a batch it is SGD preconditioned by ``(I + lr Sigma_x)^-1``.

    Batches: the N rows ``x_n`` the layer saw (batch and time flattened) are one step on the mean
    objective with ``u_n`` built from the per-row gradient ``N dL/dy_n`` (right for a loss that is
    a mean over those rows; for N = 1 it is Eq. 57 exactly), see :func:`dgd_step_batch`. Rows from
    several forward passes before one ``step()`` are pooled into one step with the same scaling, so
    gradient accumulation over micro-batches over-weights the gradient term. A bias in
    the optimizer is folded in as the weight of a constant input 1 (``x -> [x; 1]``).

    Inputs: call :meth:`watch` (model) once; it registers forward hooks on every ``nn.Linear`` whose
    weight this optimizer holds, recording inputs and output gradients of the next backward pass.
    Fallback (documented): every other parameter, and a watched weight for which no input was
    recorded since the last step, takes a plain SGD step ``p -= lr * grad`` (GD's exact step).
    """

    def __init__(self, params: Params, lr: float = 1e-2, target: str = "negative_gradient"):
        _check_lr(lr)
        _check(target in DGD_TARGETS, "target", target, f"one of {DGD_TARGETS}")
        super().__init__(params, dict(lr=lr, target=target))
        self._layers: dict[torch.Tensor, nn.Linear] = {}
        self._records: dict[nn.Linear, list[list[torch.Tensor]]] = {}
        self._handles: list[Any] = []

    def watch(self, model: nn.Module) -> list[Any]:
        """Register forward hooks on the model's ``nn.Linear`` layers whose weights are in this
        optimizer; return the hook handles (``handle.remove()`` to stop)."""
        mine = {p for group in self.param_groups for p in group["params"]}
        handles = []
        for mod in model.modules():
            if isinstance(mod, nn.Linear) and mod.weight in mine:
                self._layers[mod.weight] = mod
                handles.append(mod.register_forward_hook(self._record))
        if not handles:
            raise ValueError("DGD.watch found no nn.Linear layer of this model whose weight is in "
                             "this optimizer; pass the model whose parameters you gave DGD.")
        self._handles.extend(handles)
        return handles

    def _record(self, mod: nn.Linear, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if not (torch.is_grad_enabled() and out.requires_grad):
            return
        x = inputs[0].detach().reshape(-1, mod.in_features)  # [N, in]
        rec = [x, out.detach().reshape(-1, mod.out_features)]  # + dL/dy once backward runs
        self._records.setdefault(mod, []).append(rec)
        out.register_hook(lambda gy, rec=rec: rec.append(gy.detach().reshape(-1, rec[1].shape[1])))

    @torch.no_grad()
    def step(self, closure: Closure = None) -> torch.Tensor | None:
        loss = _run_closure(closure)
        done: set[torch.Tensor] = set()
        for group in self.param_groups:
            lr = group["lr"]
            mine = set(group["params"])
            for p in group["params"]:
                mod = self._layers.get(p)
                recs = [r for r in self._records.get(mod, []) if len(r) == 3] if mod else []
                if not recs:
                    continue
                X = torch.cat([r[0] for r in recs])  # [N, in]
                Y = torch.cat([r[1] for r in recs])  # [N, out]
                GY = torch.cat([r[2] for r in recs]) * X.shape[0]  # per-row dL/dy (mean loss)
                U = -GY if group["target"] == "negative_gradient" else Y - GY
                W = p
                bias = mod.bias if mod.bias is not None and mod.bias in mine else None
                if bias is not None:  # [W | b] with input [x; 1]
                    W = torch.cat([p, bias[:, None]], dim=1)
                    X = torch.cat([X, X.new_ones(X.shape[0], 1)], dim=1)
                elif mod.bias is not None:
                    U = U - mod.bias.detach()  # the fixed bias is part of y; target for W x
                W_new = dgd_step_batch(W.to(X.dtype), X, U.to(X.dtype), lr).to(p.dtype)
                p.copy_(W_new[:, : p.shape[1]])
                done.add(p)
                if bias is not None:
                    bias.copy_(W_new[:, -1])
                    done.add(bias)
        for group in self.param_groups:  # fallback: plain SGD
            for p in group["params"]:
                if p in done or p.grad is None:
                    continue
                p.add_(_dense_grad(p, "DGD"), alpha=-group["lr"])
        self._records.clear()
        return loss
