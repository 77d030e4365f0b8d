"""The HOPE-style continual learner: a self-modifying memory that learns inside each input,
followed by the Continuum Memory System trained at several frequencies.

**Model** (:class:`HopeBackbone`, ``method="hope"``)::

    tokens [B, T, dim] -> x + SelfModifyingTitans(RMSNorm(x))  (the in-context memory, notebook 08)
                       -> mean over the real tokens -> LayerNorm -> [B, dim]
                       -> CMS(dim, hidden, periods) -> LayerNorm -> head [n_classes]

The part after the pooling is exactly the backbone of the other learners
(:class:`~nlteach.continual.learners.Backbone`: the same CMS chain, norm and head, the same
initial weights for a given seed), trained like the ``cms`` learner with
:class:`~nlteach.cms.MultiFrequencyOptimizer` (block l steps every ``periods[l]`` steps; the
encoder, the memory layer's parameters, norms and head are in the fastest level). Only the
encoder differs: instead of a bag of n-grams it reads the input as a sequence.

- **Text**: the query's bytes in reading order; position t is the sum of the embeddings of the
  hashed character 1- to 4-grams that end at t
  (:func:`~nlteach.continual.streams.hashed_ngram_sequence`, the same number of buckets as the
  bag learners' table). So the tokens carry the same n-grams as the bag model, plus their order.
- **Digits**: the 8 rows of the 8x8 image are 8 tokens (``Linear(8, dim)`` plus a learned
  position embedding). Permuted digits: rows of the permuted pixel vector.

**What "learns in context" means here.** The self-modifying Titans layer (Eqs. 83-93 of arXiv v1,
:class:`nlteach.titans.SelfModifyingTitans`) starts every input from its meta-learned initial
memories, and while it reads the query it *writes* to its main memory at every token (DGD on
keys and values it generates itself) and also updates the memories that generate those keys,
values, learning rates and retention gates. The read at token t sees the writes of tokens < t of
the same query; the class is predicted from the mean of those reads. For an intent query that is
a context of 10 to 100 bytes: the memory adapts to *this* query (test-time learning inside one
input), and that adaptation is discarded before the next query. Nothing learned in context is
carried across examples or tasks; what is carried across tasks is the outer (slow) learning of the
initial memories, projections, CMS levels and head, by backpropagation, as for every other learner.

**The second arm: a memory that keeps its state across the stream** (``method="hope-persistent"``,
:class:`PersistentHopeLearner`). The paper's continual claim is about a fast memory whose state
persists from example to example and from task to task, so that the stream itself is the context.
That arm carries the state of all five memories from batch to batch and never resets it: every
query of a batch starts from the carried state, and after each optimizer step the carried state
becomes the mean over the batch of the states the queries end in (after their last real byte:
padding writes nothing, :meth:`PersistentHopeEncoder.read_masked`). Evaluation reads every test
query from the state the training stream left (after task t: the state after its last step), and
discards the test queries' own writes. The choices and why:
``docs/decisions.md#continual-hope-persistent``.

**Stability.** The memory's largest in-context learning rate ``eta_max`` defaults to 0.2, the value
:class:`nlteach.models.HopeLM` used while its laptop-preset NaN was open; the fair tuning
(:mod:`nlteach.continual.tune`, ``docs/decisions.md#continual-fair-tuning``) chooses it and the chunk
size on validation data for both arms. A non-finite loss is not skipped or hidden: the learner
raises ``FloatingPointError`` naming the task and step, and the run stops there (a tuning point
that diverges is recorded as diverged).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nlteach.continual.learners import (
    LEARNERS,
    Backbone,
    CMSLearner,
    LearnerConfig,
    available_learners,
    register_learner,
)
from nlteach.continual.streams import Inputs, Stream
from nlteach.nn import RMSNorm
from nlteach.titans import (
    SelfModifyingTitans,
    self_modifying_titans_chunked,
    self_modifying_titans_naive,
)

DIGIT_ROWS = 8  # an 8x8 digit is read as 8 tokens of 8 pixels


class HopeEncoder(nn.Module):
    """Input -> tokens -> residual self-modifying Titans layer -> masked mean -> LayerNorm, ``[B, dim]``.

    ``input_kind``: ``"seq"`` (``(ids [B, T, n], mask [B, T])`` hashed n-grams per position,
    ``input_dim`` buckets) or ``"dense"`` (digits, ``[B, 64]``, read as 8 rows).
    """

    def __init__(self, input_kind: str, input_dim: int, dim: int, *, n_heads: int, chunk_size: int,
                 eta_max: float, impl: str = "chunked") -> None:
        super().__init__()
        if input_kind == "seq":
            self.embed: nn.Module = nn.Embedding(input_dim, dim)
            nn.init.normal_(self.embed.weight, std=0.5)  # 4 n-grams per token: unit-scale tokens
        elif input_kind == "dense":
            if input_dim % DIGIT_ROWS:
                raise ValueError(f"dense inputs are read as {DIGIT_ROWS} rows; input_dim={input_dim} is not "
                                 f"divisible by {DIGIT_ROWS}.")
            self.embed = nn.Linear(input_dim // DIGIT_ROWS, dim)
            self.pos = nn.Parameter(0.1 * torch.randn(DIGIT_ROWS, dim))
        else:
            raise ValueError(f"the hope learner reads 'seq' (text) or 'dense' (digits) inputs, got {input_kind!r}.")
        self.input_kind = input_kind
        self.norm_in = RMSNorm(dim)
        self.memory = SelfModifyingTitans(dim, n_heads, chunk_size=chunk_size, proj_chunk_size=chunk_size,
                                          eta_max=eta_max, impl=impl)
        self.norm_out = nn.LayerNorm(dim)

    def tokens(self, x: Inputs) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens [B, T, dim], mask [B, T])``."""
        if self.input_kind == "seq":
            ids, mask = x  # [B, T, n], [B, T]
            T = max(1, int(mask.sum(1).max()))  # padding is at the end: drop the all-padding tail (exact, causal)
            ids, mask = ids[:, :T], mask[:, :T]
            return self.embed(ids).sum(2), mask  # sum of the n-gram embeddings ending at each byte
        B = x.shape[0]
        rows = x.view(B, DIGIT_ROWS, -1)  # [B, 8, 8]
        return self.embed(rows) + self.pos, torch.ones(B, DIGIT_ROWS, dtype=x.dtype, device=x.device)

    def read(self, h: torch.Tensor, states: dict | None = None) -> tuple[torch.Tensor, dict]:
        """The memory layer on tokens ``h [B, T, dim]`` (already normalized), starting from
        ``states`` (default: the meta-learned initial memories). Returns ``(y [B, T, dim],
        final states)``: ``states[box] = (S2, S1)``, ``box`` in ``nlteach.titans.BOXES``. The same
        computation as ``self.memory(h)``, with the memory state exposed."""
        m = self.memory
        B, T, dim = h.shape
        u, q = m.inputs(h)
        fn = self_modifying_titans_naive if m.impl == "naive" else self_modifying_titans_chunked
        o, (final, _) = fn(u, q, m.initial_states(B) if states is None else states, m.readout(), **m.opts)
        return m.W_out(o.transpose(1, 2).reshape(B, T, dim)), final

    def forward(self, x: Inputs) -> torch.Tensor:
        h, mask = self.tokens(x)
        h = h + self.memory(self.norm_in(h))  # [B, T, dim]: each read sees the writes of earlier tokens
        w = mask / mask.sum(1, keepdim=True).clamp(min=1.0)  # mean over the real tokens (padding is last)
        return self.norm_out((w[..., None] * h).sum(1))  # [B, dim]


class PersistentHopeEncoder(HopeEncoder):
    """:class:`HopeEncoder` whose memory state persists across the inputs of a stream
    (``docs/decisions.md#continual-hope-persistent``).

    ``state`` is the carried state of all five memories (``{box: (S2 [1, H, d, hidden], S1 [1, H,
    hidden, d])}``, detached), or None at the start of the stream, where the meta-learned initial
    memories stand for it. Every input of a batch starts from ``state`` and writes in context as in
    :class:`HopeEncoder`; in training mode the forward also keeps ``pending``: the mean over the
    batch of the state each input ends in (at its last real token). :meth:`commit` makes ``pending``
    the new ``state`` (the learner calls it after each optimizer step), so evaluation reads from the
    state the training stream left, and the evaluated inputs' own writes are discarded.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.state: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
        self.pending: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None

    def start_states(self, B: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The state every one of ``B`` inputs starts from: the carried ``state`` (or, before the first
        step, the meta-learned initial memories), expanded to ``[B, H, ...]``."""
        if self.state is None:
            return self.memory.initial_states(B)
        return {b: (S2.expand(B, -1, -1, -1), S1.expand(B, -1, -1, -1)) for b, (S2, S1) in self.state.items()}

    @staticmethod
    def max_undo(dtype: torch.dtype) -> float:
        """The largest factor ``alpha_pad ** -n_pad`` that :meth:`read_masked` divides out.

        A state entry ``x`` decayed by ``alpha ** n`` stays a normal float, and so keeps its full
        relative precision after the division, while ``|x| alpha ** n >= tiny``. Allowing factors
        up to ``1 / sqrt(tiny)`` (about 1e19 in fp32) keeps every entry down to ``sqrt(tiny)``
        (about 1e-19) exact to rounding; beyond it the inputs are read again in groups of equal
        length, without padding (exact, slower)."""
        return torch.finfo(dtype).tiny ** -0.5

    def read_masked(self, h: torch.Tensor, mask: torch.Tensor, states: dict) -> tuple[torch.Tensor, dict]:
        """The memory layer on normalized tokens ``h [B, T, dim]`` with real-token ``mask [B, T]``
        (padding last), from ``states``. Returns ``(y [B, T, dim], final)``, ``final[box]`` the state
        of each input after its **last real token**.

        Padding writes nothing: its ``u`` and ``q`` are set to 0, so its keys, values and gate inputs
        are 0 (``M(0) = 0`` for every memory, Eq. 89), the gradient terms vanish and each padding
        token only decays every memory by its retention at zero input, ``alpha_pad =
        sigmoid(b_alpha)`` per head (Eq. 85). The state after the last real token is therefore the
        final state divided by ``alpha_pad ** n_pad``, exactly (tested against reading each input alone).
        Where that factor is too large to undo without losing precision (a low learned retention over
        a long padding, :meth:`max_undo`), the inputs are read again in groups of equal length.
        """
        m = self.memory
        B, T, dim = h.shape
        u, q = m.inputs(h)  # [B, H, T, d]
        keep = mask[:, None, :, None].to(u.dtype)
        fn = self_modifying_titans_naive if m.impl == "naive" else self_modifying_titans_chunked
        o, (final, _) = fn(u * keep, q * keep, states, m.readout(), **m.opts)
        lengths = mask.sum(1).long()  # [B]
        n_pad = (T - lengths).to(u.dtype)  # [B]
        scale = torch.exp(-n_pad[:, None] * torch.log(torch.sigmoid(m.b_alpha.detach()))[None, :])  # [B, H]
        if bool((scale <= self.max_undo(u.dtype)).all()):
            s = scale[:, :, None, None]
            final = {b: (S2 * s, S1 * s) for b, (S2, S1) in final.items()}
        else:  # undoing the decay would lose precision: read each length group again without padding
            final = {b: [torch.empty_like(S2), torch.empty_like(S1)] for b, (S2, S1) in final.items()}
            for n in lengths.unique().tolist():
                rows = (lengths == n).nonzero().squeeze(1)
                sub = {b: (S2[rows], S1[rows]) for b, (S2, S1) in states.items()}
                alone = sub if n == 0 else fn(u[rows, :, :n], q[rows, :, :n], sub, m.readout(), **m.opts)[1][0]
                for b, (S2, S1) in alone.items():
                    final[b][0][rows], final[b][1][rows] = S2, S1
            final = {b: (S2, S1) for b, (S2, S1) in final.items()}
        return m.W_out(o.transpose(1, 2).reshape(B, T, dim)), final

    def forward(self, x: Inputs) -> torch.Tensor:
        h, mask = self.tokens(x)
        y, final = self.read_masked(self.norm_in(h), mask, self.start_states(h.shape[0]))
        h = h + y  # [B, T, dim]: each read sees the carried state and the writes of earlier tokens
        if self.training:
            self.pending = {b: (S2.detach().mean(0, keepdim=True), S1.detach().mean(0, keepdim=True))
                            for b, (S2, S1) in final.items()}
        w = mask / mask.sum(1, keepdim=True).clamp(min=1.0)
        return self.norm_out((w[..., None] * h).sum(1))  # [B, dim]

    def commit(self) -> None:
        """The carried state becomes the mean final state of the last training batch (if there was one)."""
        if self.pending is not None:
            self.state, self.pending = self.pending, None


class HopeBackbone(Backbone):
    """:class:`HopeEncoder` (or ``encoder_cls``) followed by the shared CMS chain, LayerNorm and head."""

    def __init__(self, input_kind: str, input_dim: int, n_classes: int, dim: int, hidden: int,
                 periods: tuple[int, ...], *, n_heads: int, chunk_size: int, eta_max: float,
                 encoder_cls: type[HopeEncoder] = HopeEncoder) -> None:
        self._enc = dict(n_heads=n_heads, chunk_size=chunk_size, eta_max=eta_max)
        self._encoder_cls = encoder_cls
        super().__init__(input_kind, input_dim, n_classes, dim, hidden, periods)

    def make_encoder(self, input_kind: str, input_dim: int, dim: int) -> nn.Module:
        return self._encoder_cls(input_kind, input_dim, dim, **self._enc)

    def encode(self, x: Inputs) -> torch.Tensor:
        return self.encoder(x)


@register_learner("hope")
class HopeLearner(CMSLearner):
    """HOPE-style learner: in-context self-modifying memory + multi-frequency CMS (module docstring)."""

    text_features = "sequence"
    encoder_cls: type[HopeEncoder] = HopeEncoder

    def build_model(self, stream: Stream, cfg: LearnerConfig) -> Backbone:
        return HopeBackbone(stream.input_kind, stream.input_dim, stream.n_classes, cfg.dim, cfg.hidden,
                            self.periods(), n_heads=cfg.hope_heads, chunk_size=cfg.hope_chunk_size,
                            eta_max=cfg.hope_eta_max, encoder_cls=self.encoder_cls)

    @torch.no_grad()
    def logits(self, x: Inputs, group: int = 256) -> torch.Tensor:
        """Logits of many inputs; text is read in groups of similar length (same result, less padding)."""
        self.model.eval()
        if self.stream.input_kind != "seq":
            return self.model(x)
        ids, mask = x
        order = mask.sum(1).argsort(stable=True)
        out = torch.empty(len(order), self.stream.n_classes, device=ids.device)
        for a in range(0, len(order), group):
            i = order[a:a + group]
            out[i] = self.model((ids[i], mask[i]))
        return out

    def loss(self, x: Inputs, y: torch.Tensor, t: int) -> torch.Tensor:
        loss = super().loss(x, y, t)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"hope learner: non-finite loss {float(loss.detach())} on task {t} at optimizer step "
                f"{self.opt.step_count + 1}; the self-modifying memory diverged (try a smaller "
                f"hope_eta_max than {self.cfg.hope_eta_max} or a smaller lr than {self.cfg.lr}).")
        return loss


@register_learner("hope-persistent")
class PersistentHopeLearner(HopeLearner):
    """The HOPE-style learner whose in-context memory persists across the stream: the state of its
    five memories is carried from batch to batch and from task to task, never reset
    (:class:`PersistentHopeEncoder`; ``docs/decisions.md#continual-hope-persistent``).

    - *What persists*: the state ``(S2, S1)`` of the main memory and of the k, v, eta and alpha
      memories (Eqs. 83-89). The projections, readouts, convolution, CMS and head are weights,
      trained by backpropagation as for ``hope``.
    - *When it is updated*: once per optimizer step. The batch's inputs all start from the carried
      state and write in context, token by token; the new carried state is the mean over the batch of
      the states they end in (the inputs of one batch are written in parallel, as the tokens of one
      chunk are: :mod:`nlteach.titans`). It is detached: the outer gradient does not flow into earlier
      batches (truncated backpropagation of one step). The stream starts from the meta-learned
      initial memories, which therefore get a gradient on the first step only.
    - *How it is evaluated*: every test input reads from the carried state as it is when the row is
      measured (after task t: the state after task t's last step; the last row: after the whole
      stream); its own writes are discarded, so the accuracy does not depend on the test order.
    """

    encoder_cls = PersistentHopeEncoder

    def train_step(self, x: Inputs, y: torch.Tensor, t: int, generator: torch.Generator) -> float:
        loss = super().train_step(x, y, t, generator)
        self.model.encoder.commit()
        return loss

    def extra_state(self) -> dict[str, Any]:
        return {"memory_state": self.model.encoder.state}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        carried = state["memory_state"]
        dev = self.device
        self.model.encoder.state = None if carried is None else {
            b: (S2.to(dev), S1.to(dev)) for b, (S2, S1) in carried.items()}


@torch.no_grad()
def memory_trace(learner: HopeLearner, x: Inputs) -> list[list[float]]:
    """How far each input moves the main memory while it is read: for every input and every real
    token t, ``||S_t - S_0|| / ||S_0||`` with ``S`` both weight matrices of the main memory (Eq. 89)
    after reading tokens 0..t, and ``S_0`` the meta-learned initial state. One list per input.

    Computed by reading every prefix (the state after a prefix is the state at that token of the
    full read: chunks start at token 0 and the recurrence is token by token).
    """
    enc = learner.model.encoder
    enc.eval()
    h, mask = enc.tokens(x)
    h = enc.norm_in(h)
    S0 = torch.cat([s.flatten(1) for s in enc.memory.initial_states(h.shape[0])["memory"]], 1)  # [B, n]
    out: list[list[float]] = [[] for _ in range(h.shape[0])]
    for t in range(1, h.shape[1] + 1):
        _, st = enc.read(h[:, :t])
        St = torch.cat([s.flatten(1) for s in st["memory"]], 1)
        rel = ((St - S0).norm(dim=1) / S0.norm(dim=1)).tolist()
        for i in range(h.shape[0]):
            if mask[i, t - 1] > 0:
                out[i].append(rel[i])
    return out


def draw_memory_trace(fig: Any, traces: list[list[float]], labels: list[str]) -> Any:
    """Notebook 10: the main memory's distance from its initial state along each input (:func:`memory_trace`)."""
    if len(traces) != len(labels) or not traces:
        raise ValueError(f"need one label per trace and at least one trace, got {len(traces)} traces and "
                         f"{len(labels)} labels.")
    ax = fig.subplots()
    for i, (tr, lab) in enumerate(zip(traces, labels, strict=True)):
        ax.plot(range(1, len(tr) + 1), tr, color=f"C{i}", lw=1.5, label=lab if len(lab) < 48 else lab[:45] + "...")
    ax.set_xlabel("tokens read (bytes of the query)")
    ax.set_ylabel("||S_t - S_0|| / ||S_0||")
    ax.set_title("the HOPE learner's main memory is rewritten while it reads each query", fontsize=9)
    ax.legend(fontsize=7)
    return fig


def parameter_counts(dataset: str, cfg: Any) -> dict[str, dict[str, int]]:
    """``{method: {"total", "encoder"}}`` for every learner on ``dataset`` with the settings of ``cfg``
    (a :class:`~nlteach.continual.runner.ContinualConfig`), built without loading any data."""
    text = dataset in ("clinc150", "banking77")
    n_classes = {"clinc150": 150, "banking77": 77}.get(dataset, 10)
    out = {}
    for name in available_learners():
        cls = LEARNERS[name]
        kind = ("seq" if cls.text_features == "sequence" else "bag") if text else "dense"
        stream = Stream(dataset, "class", n_classes, kind, cfg.n_buckets if text else 64, [], [])
        learner = cls.__new__(cls)  # no data and no optimizer: only the model is built
        learner.stream, learner.cfg = stream, cfg.learner
        model = learner.build_model(stream, cfg.learner)
        out[name] = {"total": sum(p.numel() for p in model.parameters()),
                     "encoder": sum(p.numel() for p in model.encoder.parameters())}
    return out


def encoder_parameters(learner: Any) -> int:
    """Parameters of a learner's input encoder (for the parameter-count table of notebook 10)."""
    return sum(p.numel() for p in learner.model.encoder.parameters())


__all__ = ["HopeBackbone", "HopeEncoder", "HopeLearner", "PersistentHopeEncoder", "PersistentHopeLearner", "draw_memory_trace", "encoder_parameters", "memory_trace",
           "parameter_counts"]
