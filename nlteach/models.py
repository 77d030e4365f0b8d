"""Language models built from one config: ``build_model(name, ModelConfig(...))``.

Every model maps token ids ``idx: LongTensor[B, T]`` to next-token logits ``[B, T, V]`` and shares
one skeleton, :class:`LanguageModel`:

    token embedding -> n_layers residual blocks -> RMSNorm -> linear head (tied to the embedding)

A model is a subclass that says what one block is (:meth:`LanguageModel.make_block`); it is
registered under a name with :func:`register_model`. ``build_model`` knows only the names that
are registered, so the list grows as the course adds models (``available_models()``).

Choices made here (and why):

- **Transformer baseline = "Transformer++"** (the baseline of the Nested Learning paper): pre-norm
  with RMSNorm, rotary position embeddings (RoPE) on q and k, causal softmax attention through
  ``torch.nn.functional.scaled_dot_product_attention``, a SwiGLU MLP, no biases.
- **Tied embeddings by default** (``tie_embeddings=True``): the output head reuses the token
  embedding matrix, so the parameter count is the embedding once. ``tie_embeddings=False`` gives
  a separate head.
- **Initialization**: every weight matrix N(0, 0.02); projections that write into the residual
  stream are scaled by ``1/sqrt(2 n_layers)`` (GPT-2), so the residual stream's variance does not
  grow with depth at initialization.
- **Parameter counts** count every parameter once (tied weights once), embeddings included;
  :func:`count_parameters` can leave the embedding out. :func:`size_to_budget` picks ``dim`` so a
  model lands as close as possible to a parameter budget, for comparisons at equal parameters.
- ``impl="naive" | "chunked"`` selects the memory implementation of memory-based models; both give
  the same logits for the same weights. The Transformer has no memory, so it ignores ``impl``
  (``impl_dependent = False``), and benchmarks time it once.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from nlteach.cms import CMS, cms_in_context_chunked, cms_in_context_naive
from nlteach.deep_memory import titans_chunked, titans_naive
from nlteach.nn import (
    CausalConv,
    RMSNorm,
    SwiGLU,
    apply_rope,
    init_linear,
    residual_std,
    rope_cos_sin,
)
from nlteach.text import CharVocab
from nlteach.titans import SelfModifyingTitans

IMPLS: tuple[str, ...] = ("naive", "chunked")
SIZE_FIELDS: tuple[str, ...] = ("vocab_size", "dim", "n_layers", "n_heads")


@dataclass
class ModelConfig:
    """Size and options of a language model (all models read the same dataclass).

    vocab_size: number of token ids. dim: width of the residual stream. n_layers: number of
    blocks. n_heads: attention/memory heads (``dim`` must be divisible by it; the head width
    ``dim // n_heads`` must be even for RoPE). impl: ``"naive"`` or ``"chunked"`` memory
    implementation. mlp_hidden: SwiGLU hidden width (None: ``8/3 dim`` rounded up to a multiple
    of 8, which gives the same parameters as a 4x GELU MLP). tie_embeddings: share the embedding
    and output matrices. dropout: on attention weights and residual branches (0 = off).
    rope_base: RoPE frequency base. norm_eps: RMSNorm epsilon. The size fields ``vocab_size``,
    ``dim``, ``n_layers``, ``n_heads`` may be left None inside a run config (the runner fills them
    from its size preset and its data); a model is built only from a config where all are set.

    Memory models (Titans, HOPE): chunk_size: chunk of the main memory (Titans' memory, the
    self-modifying Titans' main memory); proj_chunk_size: chunk shared by the self-modifying k, v,
    eta and alpha memories. Defaults 16 and 32: on a CPU the chunk sizes change a HOPE step by at
    most ~25% (measured, B=16, T=128, ~200k parameters, step time over the Transformer's: chunks
    (16, 16) 13.3x, (32, 32) 11.8x, (32, 64) 9.9x, (64, 64) 11.8x), while a larger chunk makes the
    in-context learning coarser (every gradient of a chunk is taken at its start; with a
    projection chunk of 64 the k, v, eta, alpha memories do not change at all in the first 64
    tokens). The main memory, which the output reads, keeps the finer chunk; the projections take
    twice that, as Eqs. 90-93 allow (two chunk sizes); memory_hidden: hidden width of each per-head MLP memory (None:
    ``head_dim``, the width of the memory's input; docs/decisions.md#hope-cost); momentum: beta of
    the optional momentum of self-modifying Titans (0 = off); cms_periods: the CMS levels (one
    residual MLP block per level) and their periods in tokens: in ``hope`` and ``hope-attention``
    level l's weights change every ``cms_periods[l]`` tokens of the sequence it reads (default
    16, 64, 256: every level slower than the per-token memory, 4x apart;
    docs/decisions.md#hope-cost). The optional outer multi-frequency training counts optimizer
    steps with its own periods (``cms_step_periods`` of :mod:`nlteach.train_config`).
    """

    # metadata["help"]: the help of the command-line option a runner generates from the field
    vocab_size: int | None = field(default=None, metadata={"help": "number of token ids (a run takes it from its data)"})
    dim: int | None = field(default=None, metadata={"help": "model width (default: the preset's)"})
    n_layers: int | None = field(default=None, metadata={"help": "number of blocks (default: the preset's)"})
    n_heads: int | None = field(default=None, metadata={
        "help": "attention/memory heads; dim must be divisible by it, with an even head width (default: the preset's)"})
    impl: str = field(default="chunked", metadata={"help": "memory implementation (same logits)", "choices": IMPLS})
    mlp_hidden: int | None = field(default=None, metadata={
        "help": "SwiGLU hidden width (default: 8/3 dim rounded up to a multiple of 8)"})
    tie_embeddings: bool = field(default=True, metadata={
        "help": "a separate output head instead of the one tied to the token embedding"})
    dropout: float = field(default=0.0, metadata={"help": "dropout on attention weights and residual branches"})
    rope_base: float = field(default=10000.0, metadata={"help": "RoPE frequency base"})
    norm_eps: float = field(default=1e-5, metadata={"help": "RMSNorm epsilon"})
    chunk_size: int = field(default=16, metadata={"help": "memory models: chunk of the main memory"})
    proj_chunk_size: int = field(default=32, metadata={
        "help": "hope: chunk of the self-modifying k, v, eta, alpha memories"})
    memory_hidden: int | None = field(default=None, metadata={
        "help": "memory models: hidden width of each per-head MLP memory (default: the head width)"})
    momentum: float = field(default=0.0, metadata={"help": "hope: momentum beta of self-modifying Titans (0 = off)"})
    attention_conv: bool = field(default=False, metadata={
        "help": "attention layers (transformer, hope-attention): a causal depthwise convolution (window 4) on "
                "q, k, v, like the one every memory layer has"})
    attention_window: int | None = field(default=None, metadata={
        "help": "attention layers: each token attends to the last attention_window tokens, itself included "
                "(default: every earlier token)"})
    cms_periods: tuple[int, ...] = field(default=(16, 64, 256), metadata={
        "help": "CMS levels (one residual MLP block each) and their periods in tokens: level l learns in "
                "context every cms_periods[l] tokens (hope, hope-attention)"})

    def __post_init__(self) -> None:
        for name in SIZE_FIELDS:
            if getattr(self, name) is not None:
                _check_positive_int(name, getattr(self, name))
        if self.mlp_hidden is not None:
            _check_positive_int("mlp_hidden", self.mlp_hidden)
        if self.dim is not None and self.n_heads is not None and self.dim % self.n_heads:
            raise ValueError(
                f"dim={self.dim} must be divisible by n_heads={self.n_heads} "
                f"(each head gets dim // n_heads features); {_valid_dims(self.dim, self.n_heads)}."
            )
        if self.dim is not None and self.n_heads is not None and (self.dim // self.n_heads) % 2:
            raise ValueError(
                f"the head width dim // n_heads = {self.dim // self.n_heads} must be even (rotary "
                f"embeddings rotate pairs of features); got dim={self.dim}, n_heads={self.n_heads}; "
                f"{_valid_dims(self.dim, self.n_heads)}."
            )
        if self.impl not in IMPLS:
            raise ValueError(f"impl={self.impl!r} is not one of {IMPLS}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}.")
        if not isinstance(self.tie_embeddings, bool):
            raise ValueError(f"tie_embeddings must be a bool, got {self.tie_embeddings!r}.")
        if not self.rope_base > 1.0:
            raise ValueError(f"rope_base must be > 1, got {self.rope_base!r}.")
        if not self.norm_eps > 0.0:
            raise ValueError(f"norm_eps must be > 0, got {self.norm_eps!r}.")
        for name in ("chunk_size", "proj_chunk_size"):
            _check_positive_int(name, getattr(self, name))
        if self.memory_hidden is not None:
            _check_positive_int("memory_hidden", self.memory_hidden)
        if self.attention_window is not None:
            _check_positive_int("attention_window", self.attention_window)
        if not isinstance(self.attention_conv, bool):
            raise ValueError(f"attention_conv must be a bool, got {self.attention_conv!r}.")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}.")
        periods = tuple(self.cms_periods)
        if not periods or any(not isinstance(p, int) or isinstance(p, bool) or p < 1 for p in periods):
            raise ValueError(f"cms_periods must be a non-empty sequence of positive ints, got {self.cms_periods!r}.")
        self.cms_periods = periods

    def missing(self) -> list[str]:
        """The size fields still None (a runner fills them from its preset and its data)."""
        return [name for name in SIZE_FIELDS if getattr(self, name) is None]

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def mem_hidden(self) -> int:
        """Hidden width of each per-head MLP memory (``memory_hidden`` or ``head_dim``)."""
        return self.memory_hidden or self.head_dim

    @property
    def hidden(self) -> int:
        """The MLP's hidden width (``mlp_hidden`` or the 8/3 default)."""
        if self.mlp_hidden is not None:
            return self.mlp_hidden
        return 8 * math.ceil(8 * self.dim / 3 / 8)

    def replace(self, **changes) -> ModelConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check_positive_int(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")


def _valid_dims(dim: int, n_heads: int) -> str:
    """The valid widths nearest ``dim`` for ``n_heads`` heads: multiples of ``2 * n_heads`` (a head
    width that divides dim and is even), as the end of an error message."""
    step = 2 * n_heads
    below, above = dim // step * step, (dim // step + 1) * step
    return (f"dim must be a multiple of 2 * n_heads = {step}, e.g. dim={below} or dim={above}" if below
            else f"dim must be a multiple of 2 * n_heads = {step}, e.g. dim={above}")


# ---------------------------------------------------------------------------------------------
# Building blocks (reused by the memory-based models). RMSNorm, SwiGLU, RoPE, CausalConv and the
# init helpers are shared with the other modules and live in nlteach.nn.


def _residual_std(config: ModelConfig) -> float:
    """Init std of a projection that writes into the residual stream (:func:`nlteach.nn.residual_std`)."""
    return residual_std(config.n_layers)


def _swiglu(config: ModelConfig) -> SwiGLU:
    """The SwiGLU MLP of a block: width ``config.hidden``, output at the residual scale."""
    return SwiGLU(config.dim, config.hidden, out_std=_residual_std(config))


class CausalSelfAttention(nn.Module):
    """Multi-head causal softmax attention with RoPE: ``x[B, T, dim] -> [B, T, dim]``.

    ``config.attention_conv``: q, k, v pass through a causal depthwise convolution (window 4) first,
    as in the memory layers (so a comparison can give every model the same short convolution).
    ``config.attention_window = W``: token t attends to tokens t - W + 1 .. t only (sliding window)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_heads, self.head_dim, self.rope_base = config.n_heads, config.head_dim, config.rope_base
        self.dropout, self.window = config.dropout, config.attention_window
        self.qkv = nn.Linear(config.dim, 3 * config.dim, bias=False)
        self.out = nn.Linear(config.dim, config.dim, bias=False)
        init_linear(self.qkv)
        init_linear(self.out, _residual_std(config))
        self.conv = CausalConv(3 * config.dim) if config.attention_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        qkv = self.qkv(x) if self.conv is None else self.conv(self.qkv(x))  # [B, T, 3C]
        q, k, v = qkv.view(B, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # [B, H, T, D] each
        cos, sin = rope_cos_sin(T, self.head_dim, self.rope_base, x.device)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        dropout_p = self.dropout if self.training else 0.0
        if self.window is None or self.window >= T:
            # softmax(q k^T / sqrt(D) + causal mask) v: position t sees positions <= t only
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout_p)
        else:
            y = sliding_window_attention(q, k, v, self.window, dropout_p)
        return self.out(y.transpose(1, 2).reshape(B, T, C))


def sliding_window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int,
                             dropout_p: float = 0.0) -> torch.Tensor:
    """Causal attention in which position t sees positions t - window < s <= t: ``q, k, v [B, H, T, D]``.

    Equal to softmax attention with the mask ``0 <= t - s < window``; computed block by block
    (queries ``[b, b + window)`` against keys ``[b - window + 1, b + window)``), so the cost grows
    with ``T * window`` instead of ``T^2``."""
    T, W = q.shape[2], window
    idx = torch.arange(T, device=q.device)
    out = []
    for b in range(0, T, W):
        e, ks = min(b + W, T), max(0, b - W + 1)
        lag = idx[b:e, None] - idx[None, ks:e]  # [queries, keys]: t - s
        mask = (lag >= 0) & (lag < W)
        out.append(F.scaled_dot_product_attention(q[:, :, b:e], k[:, :, ks:e], v[:, :, ks:e], attn_mask=mask,
                                                  dropout_p=dropout_p))
    return torch.cat(out, dim=2)  # [B, H, T, D]


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + Attn(norm(x))``, then ``x + MLP(norm(x))``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.norm1 = RMSNorm(config.dim, config.norm_eps)
        self.attn = CausalSelfAttention(config)
        self.norm2 = RMSNorm(config.dim, config.norm_eps)
        self.mlp = _swiglu(config)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.drop(self.mlp(self.norm2(x)))


# ---------------------------------------------------------------------------------------------
# The shared skeleton and the registry.


class LanguageModel(nn.Module):
    """Embedding -> ``n_layers`` blocks from :meth:`make_block` -> RMSNorm -> head.

    Subclasses set ``make_block`` (one residual block ``[B, T, dim] -> [B, T, dim]``, which
    initializes its own weights) and ``impl_dependent`` (False when ``config.impl`` changes nothing).
    """

    impl_dependent: bool = True

    def __init__(self, config: ModelConfig):
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}.")
        if config.missing():
            raise ValueError(f"ModelConfig has no value for {', '.join(config.missing())}: set "
                             "them (runners fill them from the size preset and the data).")
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.dim)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(self.make_block(config, i) for i in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.head = nn.Linear(config.dim, config.vocab_size, bias=False)
        nn.init.normal_(self.embed.weight, mean=0.0, std=0.02)
        if config.tie_embeddings:
            self.head.weight = self.embed.weight  # one matrix: embedding rows = output rows
        else:
            init_linear(self.head)

    def make_block(self, config: ModelConfig, layer: int) -> nn.Module:
        raise TypeError(f"{type(self).__name__} must define make_block(config, layer).")

    @property
    def uses_every_parameter(self) -> bool:
        """False when some parameters may get no gradient from a sequence: an in-context CMS level
        whose first update comes at or after the last token changes nothing that is read, so its value
        map and step gate get no gradient. ``DistributedDataParallel`` then needs
        ``find_unused_parameters=True`` (:mod:`nlteach.train` sets it from this)."""
        return not any(isinstance(m, InContextCMSBranch) for m in self.modules())

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """``idx: LongTensor[B, T]`` -> logits ``[B, T, vocab_size]``; logits at t depend on idx[:, :t+1] only."""
        if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.dtype not in (torch.int64, torch.int32):
            got = f"{idx.dtype} tensor of shape {tuple(idx.shape)}" if isinstance(idx, torch.Tensor) else type(idx).__name__
            raise ValueError(f"idx must be an integer (long) tensor [B, T], got {got}.")
        if idx.device.type == "cpu" and idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.config.vocab_size):
            raise ValueError(
                f"idx holds ids in [{int(idx.min())}, {int(idx.max())}], but vocab_size is "
                f"{self.config.vocab_size} (valid ids: 0..{self.config.vocab_size - 1})."
            )
        x = self.drop(self.embed(idx))  # [B, T, dim]
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))  # [B, T, V]


MODELS: dict[str, type[LanguageModel]] = {}


def register_model(name: str) -> Callable[[type[LanguageModel]], type[LanguageModel]]:
    """Class decorator: make ``build_model(name, config)`` build this class."""

    def add(cls: type[LanguageModel]) -> type[LanguageModel]:
        if name in MODELS and MODELS[name] is not cls:
            raise ValueError(f"a model named {name!r} is already registered ({MODELS[name].__name__}).")
        MODELS[name] = cls
        return cls

    return add


def available_models() -> list[str]:
    """Names ``build_model`` accepts, sorted."""
    return sorted(MODELS)


def build_model(name: str, config: ModelConfig) -> LanguageModel:
    """Build the registered model ``name`` (see :func:`available_models`) from ``config``."""
    if name not in MODELS:
        raise ValueError(f"model {name!r} is not available; available models: {', '.join(available_models())}.")
    return MODELS[name](config)


@register_model("transformer")
class TransformerLM(LanguageModel):
    """Transformer++ baseline: blocks of RoPE causal softmax attention and a SwiGLU MLP, pre-norm."""

    impl_dependent = False  # no memory: naive and chunked are the same model

    def make_block(self, config: ModelConfig, layer: int) -> nn.Module:
        return TransformerBlock(config)


# ---------------------------------------------------------------------------------------------
# Memory models: Titans, HOPE (self-modifying Titans + CMS), Hope-Attention (attention + CMS).


class _ConvSlot(nn.Module):
    """Holds a :class:`~nlteach.nn.CausalConv` as ``.conv``, so :class:`TitansMemoryLayer`'s
    checkpoint key stays ``conv.conv.weight`` (the layer had its own wrapper before it moved to
    :mod:`nlteach.nn`, whose ``CausalConv`` is itself the ``Conv1d``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = CausalConv(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)  # [B, T, C] -> [B, T, C]


class TitansMemoryLayer(nn.Module):
    """Titans memory as a sequence layer (notebook 04's :mod:`nlteach.deep_memory` inside a model).

    ``x -> q, k, v`` (linear, causal conv of window 4, heads; q and k L2-normalized), per-token gates
    from linear maps of ``x``: learning rate ``theta = sigmoid(.) / (C (1 + silu(1)^2 hidden))``,
    momentum ``eta = 0.9 sigmoid(.)``,
    forgetting ``alpha = sigmoid(.)``; a residual two-layer MLP memory per head whose initial weights
    are parameters (meta-learned; the first layer's rows are used L2-normalized, see ``forward``);
    ``o_t = M_t(q_t)`` (inclusive read); heads merged; output map.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.fn = titans_naive if config.impl == "naive" else titans_chunked
        self.chunk_size = config.chunk_size
        H, d, h = config.n_heads, config.head_dim, config.mem_hidden
        self.H, self.d = H, d
        self.qkv = nn.Linear(config.dim, 3 * config.dim, bias=False)
        self.conv = _ConvSlot(3 * config.dim)
        self.gates = nn.Linear(config.dim, 3 * H, bias=True)  # theta, eta, alpha per head
        self.W_in = nn.Parameter(torch.randn(H, h, d) / math.sqrt(d))  # small pre-activations for unit keys
        self.W_out = nn.Parameter(0.02 * torch.randn(H, d, h))  # starts near the identity map
        self.out = nn.Linear(config.dim, config.dim, bias=False)
        init_linear(self.qkv)
        init_linear(self.out, _residual_std(config))
        nn.init.normal_(self.gates.weight, std=0.02)
        # At the start theta's and eta's sigmoids are ~0.5 and alpha = sigmoid(-4) ~ 0.02; after
        # forward's scaling theta ~ 0.5 / (C (1 + silu(1)^2 hidden)), ~1.7e-3 for C = 16 and
        # hidden 32, and eta ~ 0.45.
        with torch.no_grad():
            self.gates.bias.view(3, H).copy_(torch.tensor([0.0, 0.0, -4.0])[:, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        qkv = self.conv(self.qkv(x)).view(B, T, 3, self.H, self.d).permute(2, 0, 3, 1, 4)  # [B, H, T, d] each
        q, k, v = F.normalize(qkv[0], dim=-1), F.normalize(qkv[1], dim=-1), qkv[2]
        theta, eta, alpha = torch.sigmoid(self.gates(x)).view(B, T, 3, self.H).permute(2, 0, 3, 1)  # [B, H, T]
        # Stability. Inside a chunk every gradient is taken at the same weights, so C correlated tokens
        # add up to C steps in one direction, and the second layer's curvature is ||a||^2 for its input
        # a = silu(W_in k). Unit rows of W_in and unit keys give |z| <= 1, so ||a||^2 <= silu(1)^2 hidden;
        # theta <= 1 / (C (1 + that bound)) keeps a chunk's total step below one full GD step, and
        # momentum <= 0.9 bounds its echo across chunks. Without these, training went to NaN at the
        # laptop preset (seed 0, around step 245).
        W_in = F.normalize(self.W_in, dim=-1)  # [H, hidden, d], unit rows
        bound = F.silu(torch.ones((), dtype=x.dtype, device=x.device)) ** 2 * W_in.shape[-2]
        theta, eta = theta / (self.chunk_size * (1 + bound)), 0.9 * eta
        params = (W_in.expand(B, -1, -1, -1), self.W_out.expand(B, -1, -1, -1))
        o, _ = self.fn(q, k, v, theta, eta, alpha, params, chunk_size=self.chunk_size)
        return self.out(o.transpose(1, 2).reshape(B, T, C))


class CMSBranch(nn.Module):
    """The CMS of :mod:`nlteach.cms` as a residual branch with fixed weights at test time:
    ``CMS(u) - u`` for ``u = norm(x)`` (``hope-static-cms``, ``hope-attention-static-cms``).

    The CMS is a chain of residual MLP blocks ``u + W_out silu(W_in u)``, one per level of
    ``config.cms_periods``; its increment is what the block adds to the residual stream. Each
    block's hidden width is ``3 hidden / (2 K)`` so the K blocks hold about the parameters of the
    SwiGLU MLP they replace. ``W_out`` starts at the residual scale (the CMS starts near identity).
    The weights change only in the outer loop (the optimizer; with ``cms_multi_frequency`` each
    level every ``cms_periods[l]`` optimizer steps), so the output at token t depends on token t only.
    """

    in_context = False

    def __init__(self, config: ModelConfig):
        super().__init__()
        K = len(config.cms_periods)
        self.cms = CMS(config.dim, max(1, round(3 * config.hidden / (2 * K))), config.cms_periods, "sequential")
        with torch.no_grad():
            for blk in self.cms.blocks:
                blk.W_out.normal_(0, _residual_std(config))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.cms(u) - u  # Eq. 70: y = MLP_K(... MLP_1(u)), minus the input the block already has

    def level_parameters(self) -> list[list[nn.Parameter]]:
        return self.cms.level_parameters()


CMS_TARGETS: tuple[str, ...] = ("values", "self")
CMS_ETA_MAX = 1.0  # the in-context CMS's largest per-token step (its normalized steps contract for < 2)


class InContextCMSBranch(CMSBranch):
    """The CMS learning in context (Eqs. 70-71 over tokens): ``y - u`` where ``y`` is the chain of
    :class:`CMSBranch` read while each level's weights change inside the sequence.

    Level l (period ``C = cms_periods[l]`` tokens) reads its input ``u_t`` (level 1: ``norm(x)``;
    then the previous level's outputs) with the weights its chunk of C tokens started with; at the
    chunk's end its weights move by the chunk's summed per-token updates (Eq. 71). The inner
    objective (docs/decisions.md#cms-inner-objective), per level and token, is an associative
    memory from what the level reads to a learned value::

        v_t = u_t + V_l u_t                      (V_l: a learned D x D value map)
        loss_t = 1/2 ||MLP_l(u_t) - v_t||^2      (target="values", the default)
        loss_t = 1/2 ||MLP_l(u_t) - MLP_l(v_t)||^2   (target="self": a self-generated target,
                                                   differentiated through both arguments)
        eta_t = eta_max sigmoid(w_l . u_t + b_l)  (a learned per-token step, eta_max = 1)

    and each matrix steps by ``eta_t / (C (1 + ||its input||^2))`` (normalized steps, finite at any
    input scale). The outer optimizer trains the initial weights, ``V_l``, ``w_l``, ``b_l``
    through the whole sequence. ``config.impl`` selects the token loop (``"naive"``, Eq. 71 as
    written) or the chunk-parallel form; both give the same logits and gradients.
    """

    in_context = True

    def __init__(self, config: ModelConfig, target: str = "values"):
        super().__init__(config)
        if target not in CMS_TARGETS:
            raise ValueError(f"target must be one of {CMS_TARGETS}, got {target!r}.")
        self.target = target
        self.eta_max = CMS_ETA_MAX  # a test sets it to 0: then the branch is CMSBranch with these weights
        # levels whose in-context updates are switched off (eta_t = 0), for diagnosis only: which
        # levels' updates change what a trained model does (tools/cms_levels.py); empty in training
        self.frozen_levels: frozenset[int] = frozenset()
        self.fn = cms_in_context_naive if config.impl == "naive" else cms_in_context_chunked
        K, D = len(config.cms_periods), config.dim
        self.values = nn.ModuleList(nn.Linear(D, D, bias=False) for _ in range(K))
        self.gates = nn.ModuleList(nn.Linear(D, 1) for _ in range(K))
        for value, gate in zip(self.values, self.gates, strict=True):
            init_linear(value)  # v_t = u_t + V u_t starts near u_t: gentle first updates
            init_linear(gate)
            nn.init.constant_(gate.bias, -2.0)  # eta ~ 0.12 eta_max at the start

    def value(self, level: int, u: torch.Tensor) -> torch.Tensor:
        """Level ``level``'s values ``v_t = u_t + V_l u_t`` for its input ``u [B, T, D]``."""
        return u + self.values[level](u)

    def step(self, level: int, u: torch.Tensor) -> torch.Tensor:
        """Level ``level``'s per-token steps ``eta_max sigmoid(w_l . u_t + b_l)``, ``[B, T]`` (zeros for a
        level in :attr:`frozen_levels`)."""
        eta = self.eta_max * torch.sigmoid(self.gates[level](u)[..., 0])
        return torch.zeros_like(eta) if level in self.frozen_levels else eta

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        y, _ = self.fn(u, self.cms.block_weights(), self.cms.periods, self.step, targets=self.value,
                       normalize=True, self_generated=self.target == "self", final_state=False)
        return y - u

    def relative_change(self, u: torch.Tensor) -> torch.Tensor:
        """How far each level's weights move in context over the sequence ``u [B, T, D]`` (the
        branch's input, ``norm(x)``): ``||W_T - W_0|| / ||W_0||`` with both matrices of the level
        together (Frobenius norms), averaged over the batch; ``[K]``. A level whose period exceeds
        ``T`` completes no chunk and gives 0."""
        start = self.cms.block_weights()
        _, finals = self.fn(u, start, self.cms.periods, self.step, targets=self.value, normalize=True,
                            self_generated=self.target == "self")
        ratios = []
        for (W_in0, W_out0), (W_in, W_out) in zip(start, finals, strict=True):
            moved = ((W_in - W_in0).square().sum((-2, -1)) + (W_out - W_out0).square().sum((-2, -1))).sqrt()  # [B]
            ratios.append(moved.mean() / (W_in0.square().sum() + W_out0.square().sum()).sqrt())
        return torch.stack(ratios)

    def level_parameters(self) -> list[list[nn.Parameter]]:
        """Each level's initial weights with its value map and step gate."""
        levels = self.cms.level_parameters()
        for i, level in enumerate(levels):
            level += [*self.values[i].parameters(), *self.gates[i].parameters()]
        return levels


class MixerBlock(nn.Module):
    """Pre-norm block with any sequence mixer and any MLP branch: ``x + mix(norm x)``, ``x + mlp(norm x)``."""

    def __init__(self, config: ModelConfig, mixer: nn.Module, mlp: nn.Module):
        super().__init__()
        self.norm1 = RMSNorm(config.dim, config.norm_eps)
        self.mixer = mixer
        self.norm2 = RMSNorm(config.dim, config.norm_eps)
        self.mlp = mlp
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.mixer(self.norm1(x)))
        return x + self.drop(self.mlp(self.norm2(x)))


def self_modifying_layer(config: ModelConfig, *, dgd: bool = True, self_modify: bool = True) -> nn.Module:
    return SelfModifyingTitans(config.dim, config.n_heads, hidden=config.mem_hidden,
                               chunk_size=config.chunk_size, proj_chunk_size=config.proj_chunk_size,
                               momentum=config.momentum, dgd=dgd, self_modify=self_modify,
                               impl=config.impl, out_std=_residual_std(config),
                               eta_max=1.0)  # no cap needed since choices (b), (g) of nlteach.titans


@register_model("titans")
class TitansLM(LanguageModel):
    """Titans baseline: blocks of the Titans memory layer (MLP memory, momentum, forgetting) and a SwiGLU MLP."""

    def make_block(self, config: ModelConfig, layer: int) -> nn.Module:
        return MixerBlock(config, TitansMemoryLayer(config), _swiglu(config))


@register_model("hope")
class HopeLM(LanguageModel):
    """HOPE (Eqs. 94-97): blocks of self-modifying Titans followed by the Continuum Memory System,
    whose levels learn in context (:class:`InContextCMSBranch`; level l every ``cms_periods[l]`` tokens).

    Class attributes select the ablations of notebook 09 (each registered under its own name):
    ``use_cms`` (False: a SwiGLU MLP instead of the CMS), ``cms_in_context`` (False: the CMS with
    fixed weights at test time, :class:`CMSBranch`), ``cms_target`` (``"values"`` or ``"self"``,
    :class:`InContextCMSBranch`), ``self_modify`` (False: the k, v, eta, alpha memories stay at
    their meta-learned initial states), ``dgd`` (False: plain gradient steps with weight decay on
    both matrices of every memory instead of DGD, see :class:`~nlteach.titans.SelfModifyingTitans`).
    """

    use_cms, self_modify, dgd = True, True, True
    cms_in_context, cms_target = True, "values"

    def make_block(self, config: ModelConfig, layer: int) -> nn.Module:
        mixer = self_modifying_layer(config, dgd=self.dgd, self_modify=self.self_modify)
        return MixerBlock(config, mixer, _cms_branch(config, self) if self.use_cms else _swiglu(config))


def _cms_branch(config: ModelConfig, model: LanguageModel) -> CMSBranch:
    """The CMS branch ``model``'s class attributes ask for (in context or static, and the target)."""
    if model.cms_in_context:
        return InContextCMSBranch(config, model.cms_target)
    return CMSBranch(config)


@register_model("hope-static-cms")
class HopeStaticCMS(HopeLM):
    """Ablation: HOPE whose CMS weights are fixed at test time (the HOPE of the course before the
    in-context CMS: the CMS learns only in the outer loop)."""

    cms_in_context = False


@register_model("hope-cms-selfgen")
class HopeCMSSelfGenerated(HopeLM):
    """Ablation: HOPE whose in-context CMS levels make their own targets, ``MLP_l(v_t)`` (Eq. 86 style)."""

    cms_target = "self"


@register_model("hope-no-cms")
class HopeNoCMS(HopeLM):
    """Ablation: HOPE with a SwiGLU MLP in place of the CMS."""

    use_cms = False


@register_model("hope-no-selfmod")
class HopeNoSelfModification(HopeLM):
    """Ablation: HOPE whose k, v, eta, alpha memories are not updated in context."""

    self_modify = False


@register_model("hope-no-dgd")
class HopeNoDGD(HopeLM):
    """Ablation: HOPE without DGD: every memory's two matrices take plain gradient steps with weight
    decay (no ``-eta k k^T`` projector on the first, no normalized step on the second)."""

    dgd = False


@register_model("hope-attention")
class HopeAttentionLM(LanguageModel):
    """Hope-Attention: causal softmax attention (RoPE) followed by the CMS, learning in context
    (:class:`InContextCMSBranch`)."""

    cms_in_context, cms_target = True, "values"

    def make_block(self, config: ModelConfig, layer: int) -> nn.Module:
        return MixerBlock(config, CausalSelfAttention(config), _cms_branch(config, self))


@register_model("hope-attention-static-cms")
class HopeAttentionStaticCMS(HopeAttentionLM):
    """Ablation: Hope-Attention whose CMS weights are fixed at test time."""

    cms_in_context = False
    impl_dependent = False  # no in-context memory: naive and chunked are the same model


@torch.no_grad()
def cms_relative_change(model: LanguageModel, idx: torch.Tensor) -> torch.Tensor:
    """``||W_T - W_0|| / ||W_0||`` of every in-context CMS level over the sequences ``idx [B, T]``,
    ``[n_layers, K]`` (:meth:`InContextCMSBranch.relative_change`, each block's branch at the input
    it reads in this forward pass). Raises ``ValueError`` for a model without an in-context CMS."""
    seen: list[tuple[InContextCMSBranch, torch.Tensor]] = []
    branches = [m for m in model.modules() if isinstance(m, InContextCMSBranch)]
    if not branches:
        raise ValueError(f"model {type(model).__name__} has no in-context CMS (expected hope, hope-attention, ...).")
    hooks = [b.register_forward_pre_hook(lambda mod, args: seen.append((mod, args[0]))) for b in branches]
    try:
        model(idx)
    finally:
        for h in hooks:
            h.remove()
    return torch.stack([branch.relative_change(u) for branch, u in seen])


def cms_level_parameters(model: LanguageModel) -> list[list[nn.Parameter]]:
    """One parameter list per CMS level, gathered over all blocks (for a multi-frequency optimizer)."""
    branches = [m for m in model.modules() if isinstance(m, CMSBranch)]
    if not branches:
        raise ValueError(f"{type(model).__name__} has no CMS.")
    levels = [list(ps) for ps in branches[0].level_parameters()]
    for b in branches[1:]:
        for acc, ps in zip(levels, b.level_parameters(), strict=True):
            acc.extend(ps)
    return levels


# ---------------------------------------------------------------------------------------------
# Counting and sizing.


@torch.no_grad()
def sample(model: nn.Module, vocab: CharVocab, prompt: str = "\n", length: int = 200, *,
           temperature: float = 1.0, top_k: int | None = None, context: int | None = None,
           seed: int = 0) -> str:
    """Generate ``length`` characters after ``prompt`` (returned without it): each step feeds the last
    ``context`` characters (all when None) and draws from ``softmax(logits / temperature)`` over the
    ``top_k`` most likely (greedy at temperature 0) with a generator seeded by ``seed``."""
    if not prompt or not isinstance(length, int) or length < 0 or temperature < 0:
        raise ValueError(f"sample needs a non-empty prompt (e.g. '\\n'), length >= 0 and temperature >= 0; got "
                         f"prompt={prompt!r}, length={length!r}, temperature={temperature!r}.")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    gen, ids = torch.Generator().manual_seed(seed), vocab.encode(prompt).tolist()
    n_prompt = len(ids)
    try:
        for _ in range(length):
            window = ids[-context:] if context else ids
            logits = model(torch.tensor([window], device=device))[0, -1].float().cpu()  # [V]
            if temperature == 0:
                ids.append(int(logits.argmax()))
                continue
            logits = logits / temperature
            if top_k is not None and top_k < logits.numel():
                logits = logits.masked_fill(logits < torch.topk(logits, top_k).values[-1], float("-inf"))
            ids.append(int(torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)))
    finally:
        model.train(was_training)
    return vocab.decode(ids[n_prompt:])



def count_parameters(model: nn.Module, *, non_embedding: bool = False) -> int:
    """Number of parameters, each counted once (a tied matrix once).

    ``non_embedding=True`` leaves out the token embedding (and the head when it is untied).
    """
    seen: dict[int, int] = {id(p): p.numel() for p in model.parameters()}
    total = sum(seen.values())
    if non_embedding and isinstance(model, LanguageModel):
        total -= model.embed.weight.numel()
        if model.head.weight is not model.embed.weight:
            total -= model.head.weight.numel()
    return total


def param_count(name: str, config: ModelConfig, *, non_embedding: bool = False) -> int:
    """Parameters of ``build_model(name, config)``, counted without allocating (meta device)."""
    with torch.device("meta"):
        model = build_model(name, config)
    return count_parameters(model, non_embedding=non_embedding)


def size_to_budget(name: str, budget: int, base: ModelConfig, *, dim_multiple: int | None = None,
                   non_embedding: bool = False, match_mlp: bool = False) -> ModelConfig:
    """``base`` with ``dim`` chosen so ``name`` has as close to ``budget`` parameters as possible.

    ``dim`` runs over multiples of ``dim_multiple`` (default ``2 * n_heads``: heads of even width);
    all other fields of ``base`` are kept (leave ``mlp_hidden=None`` so the MLP grows with ``dim``).
    Width steps of ``2 * n_heads`` leave gaps of several percent between models; ``match_mlp=True``
    closes them: ``dim`` is then the widest whose count stays within budget, and ``mlp_hidden`` (the
    MLP's, or the CMS's, hidden width) is chosen so the count is nearest the budget (a fraction of a
    percent at ~10^5 parameters). Assumes the count grows with ``dim`` and ``mlp_hidden`` (true of
    every model here). Raises ``ValueError`` when even the smallest ``dim`` is over budget.
    """
    if not isinstance(budget, int) or isinstance(budget, bool) or budget <= 0:
        raise ValueError(f"budget must be a positive int (number of parameters), got {budget!r}.")
    m = dim_multiple if dim_multiple is not None else 2 * base.n_heads
    _check_positive_int("dim_multiple", m)

    def count(k: int) -> int:
        return param_count(name, base.replace(dim=k * m), non_embedding=non_embedding)

    smallest = count(1)
    if smallest > budget:
        raise ValueError(
            f"budget={budget:,} parameters is too small for {name!r} with n_layers={base.n_layers}, "
            f"n_heads={base.n_heads}: the smallest width dim={m} already has {smallest:,}."
        )
    lo, hi = _bracket(count, budget)
    if not match_mlp:
        k = lo if budget - count(lo) <= count(hi) - budget else hi
        return base.replace(dim=k * m)
    config = base.replace(dim=lo * m)

    def count_mlp(h: int) -> int:
        return param_count(name, config.replace(mlp_hidden=h), non_embedding=non_embedding)

    if count_mlp(1) > budget:  # the MLP's smallest width is already over budget: keep the width alone
        return config
    lo, hi = _bracket(count_mlp, budget)
    return config.replace(mlp_hidden=lo if budget - count_mlp(lo) <= count_mlp(hi) - budget else hi)


def _bracket(count: Callable[[int], int], budget: int) -> tuple[int, int]:
    """``(lo, lo + 1)`` with ``count(lo) <= budget < count(lo + 1)`` for a non-decreasing ``count``
    with ``count(1) <= budget`` (an exponential search for an upper end, then bisection)."""
    hi = 2
    while count(hi) <= budget:
        hi *= 2
    lo = hi // 2  # count(lo) <= budget < count(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) <= budget else (lo, mid)
    return lo, hi
