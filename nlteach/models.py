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
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

IMPLS: tuple[str, ...] = ("naive", "chunked")


@dataclass
class ModelConfig:
    """Size and options of a language model (all models read the same dataclass).

    vocab_size: number of token ids. dim: width of the residual stream. n_layers: number of
    blocks. n_heads: attention/memory heads (``dim`` must be divisible by it; the head width
    ``dim // n_heads`` must be even for RoPE). impl: ``"naive"`` or ``"chunked"`` memory
    implementation. mlp_hidden: SwiGLU hidden width (None: ``8/3 dim`` rounded up to a multiple
    of 8, which gives the same parameters as a 4x GELU MLP). tie_embeddings: share the embedding
    and output matrices. dropout: on attention weights and residual branches (0 = off).
    rope_base: RoPE frequency base. norm_eps: RMSNorm epsilon.
    """

    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    impl: str = "chunked"
    mlp_hidden: int | None = None
    tie_embeddings: bool = True
    dropout: float = 0.0
    rope_base: float = 10000.0
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("vocab_size", "dim", "n_layers", "n_heads"):
            _check_positive_int(name, getattr(self, name))
        if self.mlp_hidden is not None:
            _check_positive_int("mlp_hidden", self.mlp_hidden)
        if self.dim % self.n_heads:
            raise ValueError(
                f"dim={self.dim} must be divisible by n_heads={self.n_heads} "
                f"(each head gets dim // n_heads features); e.g. dim={self.n_heads * max(1, self.dim // self.n_heads)}."
            )
        if (self.dim // self.n_heads) % 2:
            raise ValueError(
                f"the head width dim // n_heads = {self.dim // self.n_heads} must be even (rotary "
                f"embeddings rotate pairs of features); got dim={self.dim}, n_heads={self.n_heads}."
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

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

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


# ---------------------------------------------------------------------------------------------
# Building blocks (reused by the memory-based models).


class RMSNorm(nn.Module):
    """``x / sqrt(mean(x^2) + eps) * weight`` over the last dimension (computed in float32)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight.float()).to(x.dtype)


def rope_cos_sin(seq_len: int, head_dim: int, base: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotation angles ``t * base^(-2i/head_dim)``: cos and sin, each ``[T, head_dim / 2]`` (float32)."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    angles = torch.arange(seq_len, device=device, dtype=torch.float32)[:, None] * inv_freq  # [T, D/2]
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate feature pairs ``(x_i, x_{i + D/2})`` of ``x: [B, H, T, D]`` by the angles of position t."""
    x1, x2 = x.float().chunk(2, dim=-1)  # [B, H, T, D/2] each
    out = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.to(x.dtype)


def init_linear(layer: nn.Linear, std: float = 0.02) -> None:
    nn.init.normal_(layer.weight, mean=0.0, std=std)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def residual_std(config: ModelConfig) -> float:
    """Init std of a projection that writes into the residual stream: ``0.02 / sqrt(2 n_layers)``."""
    return 0.02 / math.sqrt(2 * config.n_layers)


class CausalSelfAttention(nn.Module):
    """Multi-head causal softmax attention with RoPE: ``x[B, T, dim] -> [B, T, dim]``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_heads, self.head_dim, self.rope_base = config.n_heads, config.head_dim, config.rope_base
        self.dropout = config.dropout
        self.qkv = nn.Linear(config.dim, 3 * config.dim, bias=False)
        self.out = nn.Linear(config.dim, config.dim, bias=False)
        init_linear(self.qkv)
        init_linear(self.out, residual_std(config))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # [B, H, T, D] each
        cos, sin = rope_cos_sin(T, self.head_dim, self.rope_base, x.device)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        # softmax(q k^T / sqrt(D) + causal mask) v: position t sees positions <= t only
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(B, T, C))


class SwiGLU(nn.Module):
    """``W_down (silu(W_gate x) * W_up x)``: ``[..., dim] -> [..., dim]``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.gate_up = nn.Linear(config.dim, 2 * config.hidden, bias=False)
        self.down = nn.Linear(config.hidden, config.dim, bias=False)
        init_linear(self.gate_up)
        init_linear(self.down, residual_std(config))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + Attn(norm(x))``, then ``x + MLP(norm(x))``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.norm1 = RMSNorm(config.dim, config.norm_eps)
        self.attn = CausalSelfAttention(config)
        self.norm2 = RMSNorm(config.dim, config.norm_eps)
        self.mlp = SwiGLU(config)
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
# Counting and sizing.


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
                   non_embedding: bool = False) -> ModelConfig:
    """``base`` with ``dim`` chosen so ``name`` has as close to ``budget`` parameters as possible.

    ``dim`` runs over multiples of ``dim_multiple`` (default ``2 * n_heads``: heads of even width);
    all other fields of ``base`` are kept (leave ``mlp_hidden=None`` so the MLP grows with ``dim``).
    Assumes the count grows with ``dim`` (true of every model here). Raises ``ValueError`` when even
    the smallest ``dim`` is over budget.
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
    hi = 2
    while count(hi) <= budget:  # exponential search for an upper bracket, then bisect
        hi *= 2
    lo = hi // 2  # count(lo) <= budget < count(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) <= budget else (lo, mid)
    k = lo if budget - count(lo) <= count(hi) - budget else hi
    return base.replace(dim=k * m)
