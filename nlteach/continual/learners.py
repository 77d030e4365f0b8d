"""Continual learners that share one backbone: a CMS chain between an input encoder and one head.

**Backbone** (:class:`Backbone`, the same size for every learner): an input encoder
(``nn.EmbeddingBag`` over hashed n-gram buckets for text, ``nn.Linear`` for digits) into
``dim`` features, a sequential :class:`~nlteach.cms.CMS` of ``len(periods)`` residual MLP blocks
(``hidden`` units each), a LayerNorm and **one linear head over all classes of the stream**.

**Protocol: class-incremental, single head, explicit masking.**

- Training on task t: the logits of classes of *future* tasks (not seen yet) are masked to
  ``-inf``, so they get no gradient; the logits of *old* classes are not masked (the network
  must keep old classes apart from new ones through the head it shares; this is what makes
  class-incremental learning hard).
- Evaluation after task t: the prediction is the argmax over the classes seen so far (tasks
  0..t). Entries of the accuracy matrix for tasks not learned yet are therefore 0 by
  construction in class-incremental streams. Domain-incremental streams (permuted digits) use
  all classes always, so nothing is masked there.

**Learners** (``LEARNERS``; all Adam, same learning rate, same steps per task):

- ``finetune``: plain sequential training, the forgetting baseline.
- ``ewc``: online EWC (Kirkpatrick et al. 2017; online form of Schwarz et al. 2018): after each
  task the diagonal empirical Fisher (squared per-example gradients of the loss at the true label,
  under the training mask) is added to a running sum ``F``; training then adds
  ``ewc_lambda / 2 * sum_i F_i (theta_i - theta*_i)^2`` with ``theta*`` the weights after the last task.
- ``replay``: experience replay with a small reservoir buffer (``replay_size`` examples over the
  whole stream); every step trains on the current batch concatenated with a batch from the
  buffer. A reference point: the paper's claim is about learning *without* replay.
- ``lwf``: Learning without Forgetting (Li & Hoiem 2016): a frozen copy of the model from the
  end of the previous task; the loss adds ``lwf_alpha * T^2 * KL(old || new)`` on the old
  classes' logits at temperature ``T`` on the current task's inputs. No stored data.
- ``cms``: the same backbone trained with multi-frequency levels
  (:class:`~nlteach.cms.MultiFrequencyOptimizer`, Eq. 71 of arXiv v1, Adam per level,
  ``reduce="mean"``): CMS block l steps every ``periods[l]`` steps on the mean of the gradients
  of its period. The encoder, LayerNorm and head belong to the fastest level (period
  ``periods[0]``). Every other learner trains the same network with all periods equal to 1.
- ``hope``: HOPE-style (:mod:`nlteach.continual.hope`): the encoder reads the input as a
  sequence through a self-modifying Titans layer that learns in context (within each input),
  followed by the same CMS, norm and head, trained with multi-frequency levels like ``cms``.
- ``hope-persistent``: the same model whose in-context memory is never reset: its state is
  carried across the inputs, batches and tasks of the stream (:mod:`nlteach.continual.hope`).
- ``joint``: the upper bound: at task t it trains on the union of tasks 0..t's training data
  (cumulative joint training, the same number of steps as the others, batches drawn from the
  union); after the last task it has trained on every task at once.

A learner is a :class:`Learner` subclass registered with :func:`register_learner`; the runner
only calls ``begin_task``, ``training_data``, ``train_step``, ``end_task``, ``logits`` and the
state-dict methods, so a learner with another model (``build_model``) or input features
(``text_features``), like the HOPE-style learner, is registered without changing the runner.

Every learner's own knobs are tuned on validation splits with the same budget
(:mod:`nlteach.continual.tune`, ``runner.TUNING``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nlteach.cms import CMS, MultiFrequencyOptimizer
from nlteach.continual.streams import Inputs, Stream, concat, n_rows, take, to_device


@dataclass(frozen=True)
class LearnerConfig:
    """Hyper-parameters shared by the learners (each uses the ones it needs)."""

    dim: int = 64
    hidden: int = 128
    periods: tuple[int, ...] = (1, 4, 16, 64)  # the cms learner's clock; the others use all 1s
    lr: float = 1e-3
    ewc_lambda: float = 1000.0
    fisher_samples: int = 128
    replay_size: int = 200
    lwf_alpha: float = 1.0
    lwf_temperature: float = 2.0
    hope_heads: int = 4  # the HOPE learner's memory layer (nlteach.continual.hope)
    hope_chunk_size: int = 24  # chunk of its main memory and of its k, v, eta, alpha memories
    hope_eta_max: float = 0.2  # largest in-context learning rate (the default; tuned per data set: continual.tune)


class Backbone(nn.Module):
    """encoder -> CMS(dim, hidden, periods) -> LayerNorm -> head [n_classes].

    The CMS, norm and head are created first, so for a given seed they start from the same
    weights whatever the encoder (the HOPE learner's encoder differs, :mod:`nlteach.continual.hope`).
    """

    def __init__(self, input_kind: str, input_dim: int, n_classes: int, dim: int, hidden: int,
                 periods: tuple[int, ...]) -> None:
        super().__init__()
        self.body = CMS(dim, hidden, periods=periods)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)
        self.input_kind = input_kind
        self.encoder = self.make_encoder(input_kind, input_dim, dim)

    def make_encoder(self, input_kind: str, input_dim: int, dim: int) -> nn.Module:
        if input_kind == "bag":
            return nn.EmbeddingBag(input_dim, dim, mode="sum")
        if input_kind == "dense":
            return nn.Linear(input_dim, dim)
        raise ValueError(f"input_kind must be 'bag' or 'dense', got {input_kind!r}.")

    def encode(self, x: Inputs) -> torch.Tensor:
        """``[B, dim]`` features of the inputs."""
        if self.input_kind == "bag":
            ids, w = x  # [B, L], [B, L]
            return self.encoder(ids, per_sample_weights=w)  # [B, dim]: weighted sum of n-gram embeddings
        return self.encoder(x)  # [B, dim]

    def forward(self, x: Inputs) -> torch.Tensor:
        return self.head(self.norm(self.body(self.encode(x))))  # [B, n_classes]

    def level_parameters(self) -> list[list[nn.Parameter]]:
        """One parameter list per CMS level; encoder, norm and head join the first (fastest) level."""
        levels = self.body.level_parameters()
        io = [*self.encoder.parameters(), *self.norm.parameters(), *self.head.parameters()]
        return [io + levels[0], *levels[1:]]


def masked_logits(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Logits with the classes outside ``mask`` ([n_classes] bool) set to -inf."""
    return logits.masked_fill(~mask, float("-inf"))


LEARNERS: dict[str, type[Learner]] = {}


def register_learner(name: str) -> Callable[[type[Learner]], type[Learner]]:
    def deco(cls: type[Learner]) -> type[Learner]:
        if name in LEARNERS:
            raise ValueError(f"learner {name!r} is registered twice.")
        cls.name = name
        LEARNERS[name] = cls
        return cls

    return deco


class Learner:
    """Sequential fine-tuning; subclasses change the loss, the data or the optimizer.

    The runner's loop, per task t: ``begin_task(t)``; ``x, y = training_data(t)``; some
    ``train_step(xb, yb, t, generator)``; ``end_task(t, generator)``; then ``logits(x)`` on every
    task's test set. ``state_dict()`` / ``load_state_dict()`` at task boundaries make runs resumable.
    """

    name = "base"
    text_features = "bag"  # how the stream featurizes text for this learner (streams.make_stream)

    def __init__(self, stream: Stream, cfg: LearnerConfig) -> None:
        self.stream, self.cfg = stream, cfg
        self.model = self.build_model(stream, cfg)
        self.opt = self.make_optimizer()

    # -- construction
    def build_model(self, stream: Stream, cfg: LearnerConfig) -> Backbone:
        return Backbone(stream.input_kind, stream.input_dim, stream.n_classes, cfg.dim, cfg.hidden, self.periods())

    def periods(self) -> tuple[int, ...]:
        return (1,) * len(self.cfg.periods)

    def make_optimizer(self) -> Any:
        return torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr)

    def to(self, device: torch.device | str) -> Learner:
        self.model.to(device)
        self.opt = self.make_optimizer()  # called before training starts: fresh state on the device
        return self

    # -- the loop
    def begin_task(self, t: int) -> None:
        pass

    def training_data(self, t: int) -> tuple[Inputs, torch.Tensor]:
        task = self.stream.tasks[t]
        return task.x_train, task.y_train

    def loss(self, x: Inputs, y: torch.Tensor, t: int) -> torch.Tensor:
        mask = self.stream.seen_mask(t).to(y.device)
        return F.cross_entropy(masked_logits(self.model(x), mask), y)

    def train_step(self, x: Inputs, y: torch.Tensor, t: int, generator: torch.Generator) -> float:
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss(x, y, t)
        loss.backward()
        self.opt.step()
        return float(loss.detach())

    def end_task(self, t: int, generator: torch.Generator) -> None:
        pass

    @torch.no_grad()
    def logits(self, x: Inputs) -> torch.Tensor:
        self.model.eval()
        return self.model(x)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- state (at task boundaries; a checkpoint read on the CPU is moved to the model's device)
    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "extra": self.extra_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.load_extra_state(state["extra"])

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass


@register_learner("finetune")
class FineTune(Learner):
    """Plain sequential training (the base class as is)."""


@register_learner("ewc")
class EWC(Learner):
    def __init__(self, stream: Stream, cfg: LearnerConfig) -> None:
        super().__init__(stream, cfg)
        self.fisher: list[torch.Tensor] | None = None  # running sum over tasks, like the parameters
        self.anchor: list[torch.Tensor] | None = None  # theta* after the last task

    def loss(self, x: Inputs, y: torch.Tensor, t: int) -> torch.Tensor:
        loss = super().loss(x, y, t)
        if self.fisher is not None:
            pen = sum((f * (p - a) ** 2).sum()
                      for f, p, a in zip(self.fisher, self.model.parameters(), self.anchor, strict=True))
            loss = loss + 0.5 * self.cfg.ewc_lambda * pen
        return loss

    def end_task(self, t: int, generator: torch.Generator) -> None:
        x, y = self.training_data(t)
        n = min(self.cfg.fisher_samples, n_rows(x))
        idx = torch.randperm(n_rows(x), generator=generator)[:n].to(y.device)
        mask = self.stream.seen_mask(t).to(y.device)
        params = list(self.model.parameters())
        fisher = [torch.zeros_like(p) for p in params]
        self.model.eval()
        for i in idx:  # empirical Fisher: squared per-example gradient at the true label
            xi = take(x, i.view(1))
            logp = F.log_softmax(masked_logits(self.model(xi), mask), dim=-1)
            grads = torch.autograd.grad(logp[0, y[i]], params, allow_unused=True)
            for f, g in zip(fisher, grads, strict=True):
                if g is not None:
                    f.add_(g.detach() ** 2, alpha=1.0 / n)
        self.fisher = fisher if self.fisher is None else [a + b for a, b in zip(self.fisher, fisher, strict=True)]
        self.anchor = [p.detach().clone() for p in params]

    def extra_state(self) -> dict[str, Any]:
        return {"fisher": self.fisher, "anchor": self.anchor}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        dev = self.device
        self.fisher = None if state["fisher"] is None else [f.to(dev) for f in state["fisher"]]
        self.anchor = None if state["anchor"] is None else [a.to(dev) for a in state["anchor"]]


@register_learner("replay")
class Replay(Learner):
    """Experience replay with a reservoir buffer of ``replay_size`` examples (over all tasks).

    The buffer is updated at the end of each task (every example of the task offered once), so
    while learning task t it holds a uniform sample of tasks 0..t-1.
    """

    def __init__(self, stream: Stream, cfg: LearnerConfig) -> None:
        super().__init__(stream, cfg)
        self.buf_x: Inputs | None = None
        self.buf_y: torch.Tensor | None = None
        self.n_seen = 0

    def train_step(self, x: Inputs, y: torch.Tensor, t: int, generator: torch.Generator) -> float:
        if self.buf_y is not None:  # the buffer holds examples of tasks 0..t-1 only
            k = min(n_rows(x), len(self.buf_y))
            j = torch.randperm(len(self.buf_y), generator=generator)[:k].to(y.device)
            x, y = concat([x, take(self.buf_x, j)]), torch.cat([y, self.buf_y[j]])
        return super().train_step(x, y, t, generator)

    def end_task(self, t: int, generator: torch.Generator) -> None:
        """Offer every training example of task t once (in random order) to the reservoir."""
        x, y = self.stream.tasks[t].x_train, self.stream.tasks[t].y_train
        order = torch.randperm(len(y), generator=generator).to(y.device)
        self._reservoir_add(take(x, order), y[order], generator)

    def _reservoir_add(self, x: Inputs, y: torch.Tensor, generator: torch.Generator) -> None:
        """Reservoir sampling: after n examples, each is in the buffer with probability size / n."""
        size = self.cfg.replay_size
        for i in range(len(y)):
            self.n_seen += 1
            xi, yi = take(x, slice(i, i + 1)), y[i:i + 1]
            if self.buf_y is None:
                self.buf_x, self.buf_y = xi, yi.clone()
            elif len(self.buf_y) < size:
                self.buf_x, self.buf_y = concat([self.buf_x, xi]), torch.cat([self.buf_y, yi])
            else:
                r = int(torch.randint(self.n_seen, (1,), generator=generator))
                if r < size:
                    if isinstance(self.buf_x, tuple):
                        self.buf_x[0][r], self.buf_x[1][r] = xi[0][0], xi[1][0]
                    else:
                        self.buf_x[r] = xi[0]
                    self.buf_y[r] = yi[0]

    def extra_state(self) -> dict[str, Any]:
        return {"buf_x": self.buf_x, "buf_y": self.buf_y, "n_seen": self.n_seen}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        dev = self.device
        self.buf_x = None if state["buf_x"] is None else to_device(state["buf_x"], dev)
        self.buf_y = None if state["buf_y"] is None else state["buf_y"].to(dev)
        self.n_seen = int(state["n_seen"])


@register_learner("lwf")
class LwF(Learner):
    def __init__(self, stream: Stream, cfg: LearnerConfig) -> None:
        super().__init__(stream, cfg)
        self.old: nn.Module | None = None

    def begin_task(self, t: int) -> None:
        # the model as it is now, i.e. after task t - 1 (also right after a resume)
        self.old = copy.deepcopy(self.model).eval() if t > 0 else None
        if self.old is not None:
            for p in self.old.parameters():
                p.requires_grad_(False)

    def loss(self, x: Inputs, y: torch.Tensor, t: int) -> torch.Tensor:
        mask = self.stream.seen_mask(t).to(y.device)
        logits = self.model(x)
        loss = F.cross_entropy(masked_logits(logits, mask), y)
        if self.old is not None:
            old_cls = self.stream.seen_mask(t - 1).to(y.device)
            T = self.cfg.lwf_temperature
            with torch.no_grad():
                target = F.softmax(self.old(x)[:, old_cls] / T, dim=-1)
            logq = F.log_softmax(logits[:, old_cls] / T, dim=-1)
            loss = loss + self.cfg.lwf_alpha * T * T * F.kl_div(logq, target, reduction="batchmean")
        return loss


@register_learner("cms")
class CMSLearner(Learner):
    """The backbone trained with multi-frequency levels (periods ``cfg.periods``)."""

    def periods(self) -> tuple[int, ...]:
        return tuple(self.cfg.periods)

    def make_optimizer(self) -> MultiFrequencyOptimizer:
        return MultiFrequencyOptimizer(self.model.level_parameters(), self.periods(), base=torch.optim.Adam,
                                       reduce="mean", lr=self.cfg.lr)


@register_learner("joint")
class Joint(Learner):
    """Cumulative joint training: at task t, batches come from the union of tasks 0..t."""

    def training_data(self, t: int) -> tuple[Inputs, torch.Tensor]:
        tasks = self.stream.tasks[: t + 1]
        return concat([k.x_train for k in tasks]), torch.cat([k.y_train for k in tasks])


def available_learners() -> list[str]:
    """Registered learner names, in the order of the results tables (the upper bound, joint, last)."""
    return sorted(LEARNERS, key=lambda name: name == "joint")  # stable: registration order otherwise


def make_learner(name: str, stream: Stream, cfg: LearnerConfig) -> Learner:
    if name not in LEARNERS:
        raise ValueError(f"method must be one of {available_learners()}, got {name!r}.")
    return LEARNERS[name](stream, cfg)
