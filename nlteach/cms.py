"""The Continuum Memory System, CMS (Sec. 7 of arXiv v1; notebook 07).

A Transformer has two memories: attention (rewritten every token) and MLP weights (frozen after
training). CMS replaces the MLP by a chain of MLP blocks, each with its own **update period**
(chunk size) C^(l): block l only changes once every C^(l) steps (Eq. 71), so knowledge that a fast
block overwrites can survive in a slower one.

What this module holds:

- :class:`CMS`: the three variants as an ``nn.Module``:
  ``"sequential"`` (Eq. 70/73) ``y = MLP_K(... MLP_1(x))``;
  ``"independent"`` (Eq. 74) every block reads the full ``x``, outputs mixed by a learnable
  softmax-weighted sum (no channel splitting);
  ``"nested"`` (Eq. 72) the same chain, but each faster block's weights are
  ``base + delta``: ``delta`` is the fast level's own parameter, ``base`` (its initial state) is a
  parameter of the next slower level, and ``delta`` is reset to 0 (the block re-initialized from
  the meta-learned ``base``) whenever that slower level updates.
- :class:`MultiFrequencyOptimizer`: multi-frequency *training*; level l steps only when
  ``s % periods[l] == 0``, with the gradients accumulated since its last step.
- :func:`cms_in_context_naive` / :func:`cms_in_context_chunked`: *in-context* (token-time) updates,
  Eq. 71 applied while a sequence is read; a token loop and a chunk-parallel version
  (:func:`cms_chunk_step` per chunk), equal.

Choices (the paper leaves them open; notebook 07 states them too):

- Each block is a residual two-layer MLP without bias or norm, ``MLP(u) = u + W_out silu(W_in u)``
  (the form of the paper's memories, Eq. 89). The residual makes a block with ``W_out = 0`` the
  identity, so stacking blocks or setting a level's learning rate to 0 leaves the rest intact
  (Sec. 7.3). No norm inside the block keeps the in-context gradients closed-form; a model puts
  its norms around the CMS.
- Independent variant: the mixing logits belong to the slowest level (part of the outer model).
- Nested variant (first-order meta-learning): the slower level's gradient for ``base`` is the sum
  of the gradients the fast block received during its period (the gradient through the reset is
  the identity); the fast level's optimizer state (e.g. momentum) is not reset.
- In-context objective: block l regresses its output onto a target given per token,
  ``loss_t = 1/2 ||MLP_l(u_t) - v_t||^2`` (a local objective, like Titans' memory; gradients do
  not flow from later blocks). The caller chooses the targets (one tensor shared by all blocks,
  one per block, or a callable of what the block reads) and the steps. A token reads the weights
  its chunk started with (the update caused by a chunk is visible from the next chunk on): causal,
  and the target never leaks into its own output. Options used by the language models
  (:class:`nlteach.models.InContextCMSBranch`): ``normalize`` (a normalized step
  ``eta / (C (1 + N_t))``, finite at any input scale) and ``self_generated`` (the target is the
  block's own map of the given value, Eq. 86 style); derivation above :func:`cms_in_context_naive`
  and in docs/paper-notes.md#cms-in-context-derivation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from nlteach.clock import LevelClock, check_periods

VARIANTS = ("sequential", "independent", "nested")
REDUCE = ("sum", "mean")


# ---------------------------------------------------------------------------------------------
# One CMS block: MLP(u) = u + W_out silu(W_in u)


def silu_grad(h: torch.Tensor) -> torch.Tensor:
    """d silu(h) / dh = s (1 + h (1 - s)) with s = sigmoid(h) (written out so it stays differentiable)."""
    s = torch.sigmoid(h)
    return s * (1 + h * (1 - s))


def mlp_block(u: torch.Tensor, W_in: torch.Tensor, W_out: torch.Tensor) -> torch.Tensor:
    """``u + W_out silu(W_in u)``. u: [..., n, D]; W_in: [..., hidden, D]; W_out: [..., D, hidden]."""
    return u + torch.nn.functional.silu(u @ W_in.mT) @ W_out.mT


def _check_pos_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return value


class MLPBlock(nn.Module):
    """One CMS block, ``u + W_out silu(W_in u)``; W_in: [hidden, dim], W_out: [dim, hidden]."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.W_in = nn.Parameter(torch.randn(hidden, dim) / math.sqrt(dim))
        self.W_out = nn.Parameter(torch.randn(dim, hidden) / math.sqrt(hidden))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return mlp_block(u, self.W_in, self.W_out)


class CMS(nn.Module):
    """Continuum Memory System: K MLP blocks, block l with update period ``periods[l]``.

    ``forward(x[..., dim])`` keeps the shape. ``level_parameters()`` gives one parameter list per
    level, in the order of ``periods``, for :class:`MultiFrequencyOptimizer` (or use
    :meth:`multi_frequency_optimizer`, which also wires the nested variant's resets).
    """

    def __init__(self, dim: int, hidden: int, periods: Sequence[int] = (1, 4, 16, 64),
                 variant: str = "sequential") -> None:
        super().__init__()
        self.dim = _check_pos_int(dim, "dim")
        self.hidden = _check_pos_int(hidden, "hidden")
        self.periods = check_periods(periods)
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}.")
        self.variant = variant
        self.clock = LevelClock(self.periods)
        K = len(self.periods)
        self.blocks = nn.ModuleList(MLPBlock(dim, hidden) for _ in range(K))
        if variant == "independent":
            self.mix_logits = nn.Parameter(torch.zeros(K))  # Eq. 74: learnable weighted sum
        if variant == "nested":
            if any(a > b for a, b in zip(self.periods, self.periods[1:], strict=False)):
                raise ValueError(f"the nested variant needs periods ordered from fast to slow "
                                 f"(non-decreasing), got {self.periods}.")
            # delta[l] is level l's own fast parameter; blocks[l] holds its meta-learned initial
            # state, which belongs to level l + 1. The slowest block has no delta.
            self.deltas = nn.ModuleList(_Delta(dim, hidden) for _ in range(K - 1))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, hidden={self.hidden}, periods={self.periods}, variant={self.variant!r}"

    def mix_weights(self) -> torch.Tensor:
        """Independent variant: the softmax weights of the blocks' outputs, [K]."""
        if self.variant != "independent":
            raise ValueError(f"mix_weights() exists only for variant='independent', this is {self.variant!r}.")
        return torch.softmax(self.mix_logits, dim=0)

    def block_weights(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The effective ``(W_in, W_out)`` of every block (nested: base + delta)."""
        out = []
        for i, blk in enumerate(self.blocks):
            if self.variant == "nested" and i < len(self.blocks) - 1:
                out.append((blk.W_in + self.deltas[i].W_in, blk.W_out + self.deltas[i].W_out))
            else:
                out.append((blk.W_in, blk.W_out))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.dim:
            raise ValueError(f"x must have last dimension dim={self.dim}, got shape {tuple(x.shape)}.")
        weights = self.block_weights()
        if self.variant == "independent":
            w = self.mix_weights()
            return sum(w[i] * mlp_block(x, *wi) for i, wi in enumerate(weights))  # Eq. 74
        for wi in weights:  # Eq. 70: y = MLP_K(... MLP_1(x))
            x = mlp_block(x, *wi)
        return x

    def level_parameters(self) -> list[list[nn.Parameter]]:
        """One list of parameters per level, in the order of ``periods``."""
        K = len(self.periods)
        levels: list[list[nn.Parameter]] = [[] for _ in range(K)]
        if self.variant == "nested":
            for i in range(K - 1):
                levels[i] += list(self.deltas[i].parameters())  # the fast weights of block i
                levels[i + 1] += list(self.blocks[i].parameters())  # block i's initial state
            levels[K - 1] += list(self.blocks[K - 1].parameters())
            return levels
        for i, blk in enumerate(self.blocks):
            levels[i] += list(blk.parameters())
        if self.variant == "independent":
            slowest = max(range(K), key=lambda i: (self.periods[i], i))
            levels[slowest].append(self.mix_logits)
        return levels

    @torch.no_grad()
    def after_step(self, due: Sequence[bool]) -> None:
        """Called after each optimizer step with the clock's ``due`` tuple.

        Nested variant (Eq. 72): when level l + 1 updates, block l is re-initialized from its
        (just updated) meta-learned state, i.e. its fast delta is reset to 0. Other variants: no-op.
        """
        if len(due) != len(self.periods):
            raise ValueError(f"due has {len(due)} entries, expected one per level ({len(self.periods)}).")
        if self.variant != "nested":
            return
        for i, d in enumerate(self.deltas):
            if due[i + 1]:
                d.W_in.zero_()
                d.W_out.zero_()

    def multi_frequency_optimizer(self, base: type[torch.optim.Optimizer] = torch.optim.SGD,
                                  reduce: str = "sum", **kw: Any) -> MultiFrequencyOptimizer:
        """A :class:`MultiFrequencyOptimizer` over this CMS's levels (with the nested resets wired)."""
        return MultiFrequencyOptimizer(self.level_parameters(), self.periods, base=base, reduce=reduce,
                                       on_step=self.after_step, **kw)

    def in_context(self, x: torch.Tensor, targets: Any, lr: Any, *, impl: str = "chunked",
                   normalize: bool = False, self_generated: bool = False
                   ) -> tuple[torch.Tensor, tuple[tuple[torch.Tensor, torch.Tensor], ...]]:
        """Read ``x: [B, T, dim]`` while updating the blocks in context (Eq. 71), starting from this
        module's weights (their meta-learned initial states). Sequential and independent variants;
        ``targets``, ``lr``, ``normalize``, ``self_generated`` as in :func:`cms_in_context_naive`."""
        if self.variant == "nested":
            raise ValueError("in-context updates are implemented for variant='sequential' and "
                             "'independent', not 'nested'.")
        fn = {"naive": cms_in_context_naive, "chunked": cms_in_context_chunked}.get(impl)
        if fn is None:
            raise ValueError(f"impl must be 'naive' or 'chunked', got {impl!r}.")
        mix = self.mix_weights() if self.variant == "independent" else None
        return fn(x, self.block_weights(), self.periods, lr, targets=targets, variant=self.variant, mix=mix,
                  normalize=normalize, self_generated=self_generated)


class _Delta(nn.Module):
    """The fast part of a nested block's weights; starts at 0 (= the meta-learned initial state)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.W_in = nn.Parameter(torch.zeros(hidden, dim))
        self.W_out = nn.Parameter(torch.zeros(dim, hidden))


# ---------------------------------------------------------------------------------------------
# Multi-frequency training


class MultiFrequencyOptimizer:
    """One base optimizer per level; level l steps only at steps s with ``s % periods[l] == 0``.

    Use it like any optimizer: ``zero_grad()``, ``loss.backward()``, ``step()``. Every ``step()``
    adds each parameter's ``.grad`` to an accumulator kept in this optimizer's state; when a level
    is due, its base optimizer steps on the accumulated gradient, reduced by ``reduce``:
    ``"sum"`` (Eq. 71: the sum of the last C^(l) per-step gradients) or ``"mean"`` (the sum
    divided by the period, so a slow level moves like one step on the average gradient). Then the
    accumulator is cleared. ``.grad`` is left as the backward pass wrote it.

    ``lr`` may be one float or one per level. Other keywords go to ``base``. ``on_step(due)`` is
    called after each step (``CMS.multi_frequency_optimizer`` uses it for the nested resets).
    ``state_dict()`` holds the step count, the accumulators and each base optimizer's state, so a
    fresh instance that loads it mid-period resumes exactly.
    """

    def __init__(self, param_groups_per_level: Sequence[Iterable[Any]], periods: Sequence[int],
                 base: type[torch.optim.Optimizer] = torch.optim.SGD, reduce: str = "sum", *,
                 on_step: Callable[[tuple[bool, ...]], None] | None = None, **kw: Any) -> None:
        self.clock = LevelClock(periods)
        self.periods = self.clock.periods
        if reduce not in REDUCE:
            raise ValueError(f"reduce must be one of {REDUCE}, got {reduce!r}.")
        self.reduce = reduce
        levels = [list(groups) for groups in param_groups_per_level]
        K = len(self.periods)
        if len(levels) != K:
            raise ValueError(f"param_groups_per_level has {len(levels)} levels but periods has {K} "
                             f"({self.periods}); give one parameter list per period.")
        lr = kw.pop("lr", None)
        if isinstance(lr, Sequence) or isinstance(lr, torch.Tensor) and lr.dim() > 0:
            lrs = list(lr)
            if len(lrs) != K:
                raise ValueError(f"lr has {len(lrs)} entries but there are {K} levels; give one lr or one per level.")
        else:
            lrs = [lr] * K
        self.optimizers: list[torch.optim.Optimizer] = []
        seen: set[int] = set()
        for i, groups in enumerate(levels):
            if not groups:
                raise ValueError(f"level {i} (period {self.periods[i]}) has no parameters.")
            kw_i = dict(kw) if lrs[i] is None else {**kw, "lr": lrs[i]}
            opt = base(groups, **kw_i)
            for p in self._level_params(opt):
                if id(p) in seen:
                    raise ValueError(f"a parameter of shape {tuple(p.shape)} appears in level {i} and in "
                                     "an earlier level; each parameter belongs to exactly one level.")
                seen.add(id(p))
            self.optimizers.append(opt)
        self.on_step = on_step
        self._step = 0
        self.last_due: tuple[bool, ...] = (False,) * K
        # accumulated gradients and whether a gradient was seen since the level's last update
        self.accum = [[torch.zeros_like(p) for p in self._level_params(o)] for o in self.optimizers]
        self.seen = [[False] * len(a) for a in self.accum]

    @staticmethod
    def _level_params(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
        return [p for g in opt.param_groups for p in g["params"]]

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """All levels' param groups (level by level)."""
        return [g for o in self.optimizers for g in o.param_groups]

    @property
    def step_count(self) -> int:
        """Number of ``step()`` calls so far (the clock's current step)."""
        return self._step

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._step += 1
        due = self.clock.due(self._step)
        for i, opt in enumerate(self.optimizers):
            params = self._level_params(opt)
            for j, p in enumerate(params):
                if p.grad is not None:
                    self.accum[i][j].add_(p.grad)  # accumulate every step
                    self.seen[i][j] = True
            if not due[i]:
                continue  # Eq. 71: between its steps a level's parameters stay fixed
            saved = [p.grad for p in params]
            for j, p in enumerate(params):
                acc = self.accum[i][j]
                p.grad = (acc if self.reduce == "sum" else acc / self.periods[i]) if self.seen[i][j] else None
            opt.step()
            for j, p in enumerate(params):
                p.grad = saved[j]
                self.accum[i][j].zero_()
                self.seen[i][j] = False
        self.last_due = due
        if self.on_step is not None:
            self.on_step(due)
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self._step,
            "periods": list(self.periods),
            "reduce": self.reduce,
            "levels": [o.state_dict() for o in self.optimizers],
            "accum": [[a.clone() for a in acc] for acc in self.accum],
            "seen": [list(s) for s in self.seen],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if tuple(state["periods"]) != self.periods:
            raise ValueError(f"state_dict has periods {tuple(state['periods'])}, this optimizer {self.periods}.")
        if state["reduce"] != self.reduce:
            raise ValueError(f"state_dict has reduce={state['reduce']!r}, this optimizer {self.reduce!r}.")
        if len(state["levels"]) != len(self.optimizers):
            raise ValueError(f"state_dict has {len(state['levels'])} levels, this optimizer {len(self.optimizers)}.")
        for i, (o, s) in enumerate(zip(self.optimizers, state["levels"], strict=True)):
            o.load_state_dict(s)
            if len(state["accum"][i]) != len(self.accum[i]):
                raise ValueError(f"state_dict level {i} has {len(state['accum'][i])} accumulators, "
                                 f"expected {len(self.accum[i])}.")
            for a, b in zip(self.accum[i], state["accum"][i], strict=True):
                a.copy_(b)
        self.seen = [list(s) for s in state["seen"]]
        self._step = int(state["step"])

    def __repr__(self) -> str:
        base = type(self.optimizers[0]).__name__
        return f"MultiFrequencyOptimizer(periods={self.periods}, base={base}, reduce={self.reduce!r}, step={self._step})"

# ---------------------------------------------------------------------------------------------
# In-context (token-time) updates, Eq. 71
#
# Block l (weights W_in [B, hidden, D], W_out [B, D, hidden]) reads the token stream u_1..u_T.
# Token t (counted from 1) is read with the current weights, o_t = MLP(u_t) (Eq. 70). Its inner
# loss, at those same weights, regresses the output onto a target v_t given per token:
#     loss_t = 1/2 ||o_t - v_t||^2,   h_t = W_in u_t,  a_t = silu(h_t),  r_t = o_t - v_t
#     d loss_t / d W_out = r_t a_t^T,   d loss_t / d W_in = ((W_out^T r_t) * silu'(h_t)) u_t^T
# Token t's update is minus these gradients times its step eta_t. With normalize=True the step is
# normalized (NLMS for the block's parameters theta = (W_in, W_out)): to first order a step
# -c J^T r_t changes the output by -c J J^T r_t, with J = d o_t / d theta and
#     J J^T = ||a_t||^2 I + ||u_t||^2 W_out D_t^2 W_out^T,   D_t = diag(silu'(h_t)),
# whose largest eigenvalue is at most N_t = ||a_t||^2 + ||u_t||^2 ||W_out D_t||_F^2. The step
#     eta_t / (C (1 + N_t))
# multiplies the token's own residual by a matrix with eigenvalues in (1 - eta_t / C, 1]: a
# contraction for eta_t < 2 C at any scale of the inputs and the weights, and the C tokens of a
# chunk, all taken at the same weights, add up to at most one such step
# (docs/paper-notes.md#cms-in-context-derivation).
# self_generated=True: the target is the block's own map of the given value, vhat_t = MLP(v_t)
# (as Eq. 86 of self-modifying Titans), and the gradient of 1/2 ||MLP(u_t) - MLP(v_t)||^2 is
# taken through both arguments (choice (b) of nlteach.titans; with a fixed target the residual of
# a self-made target can grow for every step size):
#     r_t = MLP(u_t) - MLP(v_t),   d/dW_out = r_t (a_t - a^v_t)^T,
#     d/dW_in = ((W_out^T r_t) * silu'(h_t)) u_t^T - ((W_out^T r_t) * silu'(h^v_t)) v_t^T
#     normalized: N_t = ||a_t - a^v_t||^2 + 2 (||u_t||^2 ||W_out D_t||_F^2 + ||v_t||^2 ||W_out D^v_t||_F^2).
# Eq. 71: at steps t with t % C == 0 the weights move by minus the sum of the last C updates;
# otherwise they stay fixed. A trailing partial chunk's updates are never applied.
#
# Targets and steps: tensors given up front, or callables ``f(level, u)`` of the level's own input
# sequence u [B, T, D] (in the sequential variant level l reads level l-1's in-context outputs, so a
# model that makes targets or steps from what the level reads passes callables).

PerLevel = Any  # a tensor, or a callable (level, u [B, T, D]) -> tensor


def _prepare(x: torch.Tensor, weights: Sequence[Sequence[torch.Tensor]], periods: Sequence[int],
             lr: Any, targets: Any, variant: str, mix: torch.Tensor | None):
    if x.dim() != 3:
        raise ValueError(f"x must be [B, T, D], got shape {tuple(x.shape)}.")
    B, T, D = x.shape
    periods = check_periods(periods)
    K = len(periods)
    if variant not in ("sequential", "independent"):
        raise ValueError(f"variant must be 'sequential' or 'independent' for in-context updates, got {variant!r}.")
    if len(weights) != K:
        raise ValueError(f"weights has {len(weights)} blocks but periods has {K} levels ({periods}).")
    ws = []
    for i, pair in enumerate(weights):
        if len(pair) != 2:
            raise ValueError(f"weights[{i}] must be a pair (W_in, W_out), got {len(pair)} tensors.")
        W_in, W_out = pair
        if W_in.dim() == 2:
            W_in = W_in.expand(B, *W_in.shape)
        if W_out.dim() == 2:
            W_out = W_out.expand(B, *W_out.shape)
        hidden = W_in.shape[-2]
        if tuple(W_in.shape) != (B, hidden, D) or tuple(W_out.shape) != (B, D, hidden):
            raise ValueError(f"weights[{i}] must be W_in [B, hidden, D] and W_out [B, D, hidden] (or without B) "
                             f"with B={B}, D={D}; got {tuple(W_in.shape)} and {tuple(W_out.shape)}.")
        ws.append((W_in, W_out))
    if isinstance(targets, torch.Tensor) or callable(targets):
        targets = [targets] * K
    if len(targets) != K:
        raise ValueError(f"targets must be one tensor [B, T, D] (or callable) or one per level ({K}), "
                         f"got {len(targets)}.")
    targets = [v if callable(v) else _check_target(v, i, (B, T, D)) for i, v in enumerate(targets)]
    lrs = list(lr) if isinstance(lr, Sequence) else [lr] * K
    if len(lrs) != K:
        raise ValueError(f"lr must be one value or one per level ({K}), got {len(lrs)}.")
    etas = [eta if callable(eta) else _check_lr(eta, i, x, check_range=True) for i, eta in enumerate(lrs)]
    if variant == "independent":
        mix = torch.full((K,), 1.0 / K, dtype=x.dtype, device=x.device) if mix is None else mix
        if tuple(mix.shape) != (K,):
            raise ValueError(f"mix must be [K] = ({K},), got {tuple(mix.shape)}.")
    return periods, ws, targets, etas, mix


def _check_target(v: torch.Tensor, i: int, shape: tuple[int, int, int]) -> torch.Tensor:
    if not isinstance(v, torch.Tensor) or tuple(v.shape) != shape:
        got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
        raise ValueError(f"targets[{i}] must be [B, T, D] = {shape}, got {got}.")
    return v


def _check_lr(eta: Any, i: int, x: torch.Tensor, *, check_range: bool = False) -> torch.Tensor:
    """Level i's step as ``[B, T]``; ``check_range``: a step given by the caller must be finite and
    >= 0 (a negative step ascends the loss and the weights blow up to NaN). Steps a model generates
    are not checked here (no device sync inside a forward pass)."""
    B, T, _ = x.shape
    eta = torch.as_tensor(eta, dtype=x.dtype, device=x.device)
    if eta.dim() not in (0, 2) or (eta.dim() == 2 and tuple(eta.shape) != (B, T)):
        raise ValueError(f"lr[{i}] must be a number or a per-token tensor [B, T] = {(B, T)}, "
                         f"got shape {tuple(eta.shape)}.")
    if check_range:
        bad = ~torch.isfinite(eta.detach()) | (eta.detach() < 0)
        if bad.any():
            raise ValueError(f"lr[{i}] must be finite and >= 0 (a step size), got "
                             f"{eta.detach()[bad].flatten()[0].item()!r}" + (" (per-token)" if eta.dim() else "") + ".")
    return eta.expand(B, T)


def _level_inputs(lvl: int, u: torch.Tensor, targets: list[PerLevel], etas: list[PerLevel]):
    """Level ``lvl``'s targets [B, T, D] and steps [B, T] (calling the callables with its input ``u``)."""
    v = _check_target(targets[lvl](lvl, u), lvl, tuple(u.shape)) if callable(targets[lvl]) else targets[lvl]
    eta = _check_lr(etas[lvl](lvl, u), lvl, u) if callable(etas[lvl]) else etas[lvl]
    return v, eta


def _combine(x, outs, variant, mix):
    return sum(mix[i] * o for i, o in enumerate(outs)) if variant == "independent" else outs[-1]


def _step(eta: torch.Tensor, C: int, W_out: torch.Tensor, ad: torch.Tensor, u: torch.Tensor,
          su: torch.Tensor, v: torch.Tensor | None = None, sv: torch.Tensor | None = None) -> torch.Tensor:
    """The normalized step ``eta / (C (1 + N))`` of every token (the derivation above). Tokens
    ``[B, n, .]`` or ``[B, .]``: ``ad`` the second matrix's input, ``u`` (and ``v``) the first's,
    ``su`` (and ``sv``) ``silu'`` of their pre-activations; ``W_out [B, D, hidden]``."""
    col = (W_out * W_out).sum(-2)  # [B, hidden]: squared column norms, ||W_out D||_F^2 = sum_j s_j^2 col_j
    if su.dim() == 3:
        col = col[:, None, :]
    n = (u * u).sum(-1) * (su * su * col).sum(-1)
    if v is not None:
        n = 2 * (n + (v * v).sum(-1) * (sv * sv * col).sum(-1))
    return eta / (C * (1 + (ad * ad).sum(-1) + n))


def cms_in_context_naive(x: torch.Tensor, weights: Sequence[Sequence[torch.Tensor]], periods: Sequence[int],
                         lr: float | PerLevel | Sequence[float | PerLevel], *,
                         targets: PerLevel | Sequence[PerLevel], variant: str = "sequential",
                         mix: torch.Tensor | None = None, normalize: bool = False, self_generated: bool = False,
                         final_state: bool = True
                         ) -> tuple[torch.Tensor, tuple[tuple[torch.Tensor, torch.Tensor], ...] | None]:
    """In-context CMS, token by token: Eq. 71 as written.

    x: [B, T, D]; weights: one ``(W_in [B?, hidden, D], W_out [B?, D, hidden])`` per level (the
    initial states; without B they are shared by the batch); periods: C^(l) per level; lr: eta,
    one number, or one per level, each a number, per-token ``[B, T]``, or a callable
    ``(level, u) -> [B, T]`` of the level's input; targets: ``[B, T, D]`` (shared), one per level,
    or a callable ``(level, u) -> [B, T, D]``. Sequential: block l reads block l-1's outputs;
    independent: every block reads x and the outputs are mixed with ``mix`` ([K], default uniform);
    in both, each block's inner loss is on its *own* output (local objective), never on the mixed
    or final one. ``normalize``: the normalized step; ``self_generated``: the target is
    the block's own map of the given value, differentiated through both arguments (the derivation
    above). Returns ``(y [B, T, D], final weights per level, each [B, ...])``; with
    ``final_state=False`` the second item is None (the chunked form then skips the updates no token
    reads). Differentiable.
    """
    periods, ws, targets, etas, mix = _prepare(x, weights, periods, lr, targets, variant, mix)
    T = x.shape[1]
    u = x
    outs, finals = [], []
    for lvl, ((W_in, W_out), C) in enumerate(zip(ws, periods, strict=True)):
        vs, eta = _level_inputs(lvl, u, targets, etas)
        acc_in, acc_out = torch.zeros_like(W_in), torch.zeros_like(W_out)
        o_seq = []
        for t in range(T):
            u_t, v_t = u[:, t], vs[:, t]  # [B, D]
            h = torch.einsum("bhd,bd->bh", W_in, u_t)
            a = torch.nn.functional.silu(h)
            o_t = u_t + torch.einsum("bdh,bh->bd", W_out, a)  # read with the current weights (Eq. 70)
            o_seq.append(o_t)
            s_u = silu_grad(h)
            if self_generated:  # vhat_t = MLP(v_t) at the same weights
                h_v = torch.einsum("bhd,bd->bh", W_in, v_t)
                a_v, s_v = torch.nn.functional.silu(h_v), silu_grad(h_v)
                r, ad = o_t - (v_t + torch.einsum("bdh,bh->bd", W_out, a_v)), a - a_v
            else:
                r, ad = o_t - v_t, a
            step = eta[:, t]
            if normalize:
                step = _step(step, C, W_out, ad, u_t, s_u, *((v_t, s_v) if self_generated else ()))
            e = step[:, None] * r  # eta_t * d loss_t / d o_t
            acc_out = acc_out + e[:, :, None] * ad[:, None, :]  # e_t a_t^T
            back = torch.einsum("bdh,bd->bh", W_out, e)  # W_out^T e_t
            acc_in = acc_in + (back * s_u)[:, :, None] * u_t[:, None, :]
            if self_generated:
                acc_in = acc_in - (back * s_v)[:, :, None] * v_t[:, None, :]
            if (t + 1) % C == 0:  # Eq. 71: update at i = 0 mod C^(l) by the sum of the last C^(l)
                W_in, W_out = W_in - acc_in, W_out - acc_out
                acc_in, acc_out = torch.zeros_like(W_in), torch.zeros_like(W_out)
        o = torch.stack(o_seq, dim=1)  # [B, T, D]
        outs.append(o)
        finals.append((W_in, W_out))
        if variant == "sequential":
            u = o
    return _combine(x, outs, variant, mix), tuple(finals) if final_state else None


def cms_chunk_step(U: torch.Tensor, V: torch.Tensor, eta: torch.Tensor, W_in: torch.Tensor, W_out: torch.Tensor,
                   C: int, *, normalize: bool = False, self_generated: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One full chunk of Eq. 71: ``U, V [B, n, D]`` (inputs, targets), ``eta [B, n]``, chunk-start
    weights ``W_in [B, hidden, D]``, ``W_out [B, D, hidden]``; ``C`` the level's period (it scales
    the normalized steps). Returns the outputs ``O [B, n, D]`` (every token at the chunk-start
    weights) and the weights after the chunk's summed update, ``sum_t e_t a_t^T = E^T A``.
    (:func:`cms_level_scan` with one chunk, ``n = C``; the derivation is above :func:`cms_in_context_naive`.)"""
    if U.dim() != 3 or U.shape[1] != C:
        raise ValueError(f"cms_chunk_step takes one full chunk: U [B, C, D] with C={C}, got {tuple(U.shape)}.")
    return cms_level_scan(U, V, eta, W_in, W_out, C, normalize=normalize, self_generated=self_generated)


def cms_level_scan(U: torch.Tensor, V: torch.Tensor, eta: torch.Tensor, W_in: torch.Tensor, W_out: torch.Tensor,
                   C: int, *, normalize: bool = False, self_generated: bool = False, final_state: bool = True
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One level of the chunked form over a whole sequence: ``U, V [B, T, D]``, ``eta [B, T]``,
    initial weights ``W_in [B, hidden, D]``, ``W_out [B, D, hidden]`` (a batch dim of stride 0 is
    fine); chunks of ``C`` tokens, every full one updating the weights at its end, a trailing
    partial one read only. Returns ``(O [B, T, D], W_in_T, W_out_T)``.

    ``final_state=False``: the caller wants ``O`` only, so the updates no token reads (those of the
    full chunks that end at the last token) are not computed; the returned weights then lack them.

    One operation with a hand-written backward (:class:`_CMSLevelScan`): autograd would record about
    30 small operations and keep two weight matrices per chunk (a level of period 1 runs one chunk
    per token); this keeps each chunk's small factors, updates the weights in place, and in the
    backward walks the chunks in reverse, restoring each chunk's start weights by adding its update
    back (exact up to rounding) and accumulating the weights' gradients in place."""
    return _CMSLevelScan.apply(U, V, eta, W_in, W_out, C, normalize, self_generated, final_state)


def _silu_parts(H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(sigmoid(H), silu(H), silu'(H))``; silu' = s (1 + H (1 - s)) = s + silu(H) (1 - s)."""
    s = torch.sigmoid(H)
    A = H * s
    return s, A, torch.addcmul(s, A, 1 - s)


def _chunk_forward(U, V, eta, W_in, W_out, C: int, normalize: bool, sg: bool):
    """One chunk (rows = its tokens, ``sg`` = self_generated), the weights updated IN PLACE::

        H = U W_in^T, A = silu(H), S = silu'(H), O = U + A W_out^T
        R = O - V, Ad = A            (sg: R = O - (V + A_v W_out^T), Ad = A - A_v, A_v = silu(V W_in^T))
        normalize: eta~ = eta / (C (1 + N)), N = |Ad|^2 + f (|u|^2 n1 (+ |v|^2 n2)), n1 = S^2 col,
                   col = the squared column norms of W_out, f = 1 (sg: 2)
        E = eta~ R, Bk = E W_out, Du = Bk * S (Dv = Bk * S_v)
        W_in -= Du^T U (- Dv^T V),  W_out -= E^T Ad

    Returns ``O`` and what the backward needs."""
    H = U @ W_in.mT  # [B, n, hidden]
    s, A, S = _silu_parts(H)
    O = torch.baddbmm(U, A, W_out.mT)  # every token at the chunk-start weights
    Hv = sv = Av = Sv = Dv = None
    if sg:  # vhat = MLP(V) at the same weights
        Hv = V @ W_in.mT
        sv, Av, Sv = _silu_parts(Hv)
        R, Ad = O - torch.baddbmm(V, Av, W_out.mT), A - Av
    else:
        R, Ad = O - V, A
    col = n1 = n2 = uu = vv = den = None
    if normalize:
        col = (W_out * W_out).sum(-2)  # [B, hidden]
        n1, uu = ((S * S) @ col[..., None])[..., 0], (U * U).sum(-1)
        N = uu * n1
        if sg:
            n2, vv = ((Sv * Sv) @ col[..., None])[..., 0], (V * V).sum(-1)
            N = 2 * (N + vv * n2)
        den = N.add_((Ad * Ad).sum(-1)).add_(1)  # 1 + N
        et = eta / (C * den)
    else:
        et = eta
    E = et[..., None] * R  # [B, n, D]
    Bk = E @ W_out  # rows W_out^T e_t
    Du = Bk * S
    if sg:
        Dv = Bk * Sv
    W_in.baddbmm_(Du.mT, U, alpha=-1)  # W_in - sum_t delta_t u_t^T
    if sg:
        W_in.baddbmm_(Dv.mT, V)
    W_out.baddbmm_(E.mT, Ad, alpha=-1)  # W_out - sum_t e_t ad_t^T
    return O, (H, s, A, S, R, Ad, et, E, Bk, Du, Hv, sv, Av, Sv, Dv, col, n1, n2, uu, vv, den)


def _chunk_undo(saved, U, V, W_in, W_out, sg: bool) -> None:
    """Restore a chunk's start weights in place from the weights after it (adds its update back)."""
    Ad, E, Du, Dv = saved[5], saved[7], saved[9], saved[14]
    W_out.baddbmm_(E.mT, Ad)
    if sg:
        W_in.baddbmm_(Dv.mT, V, alpha=-1)
    W_in.baddbmm_(Du.mT, U)


def _chunk_backward(saved, U, V, W_in, W_out, gO, gW_in, gW_out, C: int, normalize: bool, sg: bool):
    """The backward of :func:`_chunk_forward` at the chunk-start weights ``W_in, W_out``: ``gW_in,
    gW_out`` hold the gradients of the weights after the chunk and are turned IN PLACE into those of
    the weights before it. Returns ``(gU, gV, geta)``."""
    (H, s, A, S, R, Ad, et, E, Bk, Du, Hv, sv, Av, Sv, Dv, col, n1, n2, uu, vv, den) = saved
    # W_out' = W_out - E^T Ad;  W_in' = W_in - Du^T U (+ Dv^T V): read the gradients of W' first
    gE = -(Ad @ gW_out.mT)
    gAd = -(E @ gW_out)
    gDu = -(U @ gW_in.mT)
    gU = -(Du @ gW_in)
    gV = None
    if sg:
        gDv = V @ gW_in.mT
        gV = Dv @ gW_in
    # Du = Bk * S, Dv = Bk * S_v;  Bk = E W_out
    gBk = gDu * S
    gS = gDu * Bk
    if sg:
        gBk += gDv * Sv
        gSv = gDv * Bk
    gE += gBk @ W_out.mT
    gW_out.baddbmm_(E.mT, gBk)
    # E = eta~ R
    gR = et[..., None] * gE
    get = (gE * R).sum(-1)
    if normalize:  # eta~ = eta / (C (1 + N))
        geta = get / (C * den)
        gN = -get * et / den
        gAd += (2 * gN)[..., None] * Ad
        f = 2 if sg else 1
        gU += (2 * f * gN * n1)[..., None] * U
        gn1 = f * gN * uu
        gS += (2 * gn1)[..., None] * S * col[:, None, :]
        gcol = ((S * S).mT @ gn1[..., None])[..., 0]
        if sg:
            gV += (2 * f * gN * n2)[..., None] * V
            gn2 = f * gN * vv
            gSv += (2 * gn2)[..., None] * Sv * col[:, None, :]
            gcol += ((Sv * Sv).mT @ gn2[..., None])[..., 0]
        gW_out.addcmul_(W_out, gcol[:, None, :], value=2)
    else:
        geta = get
    # R = O - V (sg: O - V - A_v W_out^T);  Ad = A (sg: A - A_v);  O = U + A W_out^T
    gOt = gO + gR
    if sg:
        gV -= gR
        gAv = -(gR @ W_out) - gAd
        gW_out.baddbmm_(gR.mT, Av, alpha=-1)
    else:
        gV = -gR
    gA = torch.baddbmm(gAd, gOt, W_out)
    gW_out.baddbmm_(gOt.mT, A)
    gU += gOt
    # A = silu(H), S = silu'(H): silu'' = s (1 - s) (2 + H (1 - 2 s))
    gH = gA * S + gS * (s * (1 - s) * (2 + H * (1 - 2 * s)))
    gU.baddbmm_(gH, W_in)
    gW_in.baddbmm_(gH.mT, U)
    if sg:
        gHv = gAv * Sv + gSv * (sv * (1 - sv) * (2 + Hv * (1 - 2 * sv)))
        gV.baddbmm_(gHv, W_in)
        gW_in.baddbmm_(gHv.mT, V)
    return gU, gV, geta


class _CMSLevelScan(torch.autograd.Function):
    """:func:`cms_level_scan`: :func:`_chunk_forward` chunk by chunk, :func:`_chunk_undo` and
    :func:`_chunk_backward` in reverse (checked by gradcheck and against the token loop)."""

    @staticmethod
    def forward(ctx, U, V, eta, W_in0, W_out0, C: int, normalize: bool, sg: bool, final_state: bool = True):
        W_in, W_out = W_in0.clone(memory_format=torch.contiguous_format), W_out0.clone(memory_format=torch.contiguous_format)
        T = U.shape[1]
        # the full chunks whose updates are applied: all of them, or (final_state=False) those
        # that end before the last token, i.e. whose update some token reads
        n_full = T // C if final_state else (T - 1) // C
        cut = n_full * C
        outs, saved = [], []
        for U_c, V_c, e_c in zip(U[:, :cut].split(C, dim=1), V[:, :cut].split(C, dim=1), eta[:, :cut].split(C, dim=1),
                                 strict=True):  # each full chunk ends at a step = 0 mod C: apply its summed update
            O, sv = _chunk_forward(U_c, V_c, e_c, W_in, W_out, C, normalize, sg)
            saved.append(sv)
            outs.append(O)
        if cut < T:  # the tail (a partial chunk, and with final_state=False the last full one): read only
            outs.append(mlp_block(U[:, cut:], W_in, W_out))
        ctx.C, ctx.normalize, ctx.sg, ctx.n_full, ctx.chunks = C, normalize, sg, n_full, saved
        ctx.save_for_backward(U, V, W_in, W_out)
        return torch.cat(outs, dim=1), W_in, W_out

    @staticmethod
    def backward(ctx, gO, gW_in_T, gW_out_T):
        U, V, W_T_in, W_T_out = ctx.saved_tensors
        C, normalize, sg = ctx.C, ctx.normalize, ctx.sg
        W_in, W_out = W_T_in.clone(), W_T_out.clone()  # walked back to each chunk's start
        gW_in, gW_out = gW_in_T.clone(), gW_out_T.clone()  # accumulated in place
        cut = ctx.n_full * C
        Us, Vs, gOs = U[:, :cut].split(C, dim=1), V[:, :cut].split(C, dim=1), gO[:, :cut].split(C, dim=1)
        gU, gV, geta = [], [], []
        if cut < U.shape[1]:  # the read-only tail, read at the final weights
            U_c, g = U[:, cut:], gO[:, cut:]
            H = U_c @ W_in.mT
            s, A, S = _silu_parts(H)
            gW_out.baddbmm_(g.mT, A)
            gH = (g @ W_out).mul_(S)
            gW_in.baddbmm_(gH.mT, U_c)
            gU.append(torch.baddbmm(g, gH, W_in))
            gV.append(torch.zeros_like(U_c))
            geta.append(U_c.new_zeros(U_c.shape[:2]))
        for j in range(ctx.n_full - 1, -1, -1):
            saved = ctx.chunks[j]
            _chunk_undo(saved, Us[j], Vs[j], W_in, W_out, sg)
            g = _chunk_backward(saved, Us[j], Vs[j], W_in, W_out, gOs[j], gW_in, gW_out, C, normalize, sg)
            gU.append(g[0])
            gV.append(g[1])
            geta.append(g[2])
        cat = lambda xs: torch.cat(xs[::-1], dim=1)  # noqa: E731
        return cat(gU), cat(gV), cat(geta), gW_in, gW_out, None, None, None, None


def cms_in_context_chunked(x: torch.Tensor, weights: Sequence[Sequence[torch.Tensor]], periods: Sequence[int],
                           lr: float | PerLevel | Sequence[float | PerLevel], *,
                           targets: PerLevel | Sequence[PerLevel], variant: str = "sequential",
                           mix: torch.Tensor | None = None, normalize: bool = False, self_generated: bool = False,
                           final_state: bool = True
                           ) -> tuple[torch.Tensor, tuple[tuple[torch.Tensor, torch.Tensor], ...] | None]:
    """In-context CMS, chunk-parallel; same signature and results as :func:`cms_in_context_naive`.

    Inside a chunk of C^(l) tokens the weights do not change (Eq. 71), so every token of the chunk
    is read at the chunk-start weights in one matmul, and the sum of the chunk's per-token updates
    is a matmul too (:func:`cms_chunk_step`). Chunks start at token 1; only full chunks update. Each
    level runs as one :func:`cms_level_scan` (``final_state=False``: without the updates no token
    reads, about a fifth of a level's update work at periods 16, 64, 256 and T = 512).
    """
    periods, ws, targets, etas, mix = _prepare(x, weights, periods, lr, targets, variant, mix)
    u = x
    outs, finals = [], []
    for lvl, ((W_in, W_out), C) in enumerate(zip(ws, periods, strict=True)):
        vs, eta = _level_inputs(lvl, u, targets, etas)
        o, W_in, W_out = cms_level_scan(u, vs, eta, W_in, W_out, C, normalize=normalize,
                                        self_generated=self_generated, final_state=final_state)
        outs.append(o)
        finals.append((W_in, W_out))
        if variant == "sequential":
            u = o
    return _combine(x, outs, variant, mix), tuple(finals) if final_state else None
