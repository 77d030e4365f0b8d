"""Character-level text for language modelling: vocabulary, encoding, and deterministic batches.

The course trains its language models on tiny Shakespeare at the character level.

- **Split**: :func:`nlteach.data.load_tinyshakespeare` (first 90% train, next 5% val, last 5% test,
  contiguous, by character position).
- **Vocabulary**: the set of characters of the *whole* corpus (all three splits), sorted by Unicode
  code point; a character's id is its rank in that order. Taking the whole corpus means val/test
  never contain an unknown character (tiny Shakespeare has 65 of them; ``"\\n"`` is id 0,
  ``" "`` id 1).
- **Training batches**: :class:`RandomWindowSampler` draws, for optimizer step ``s``, a *global*
  batch of random windows from a generator seeded with ``(seed, s)`` only. The batch therefore
  depends on nothing but the seed and the step number: resuming at step ``s`` replays exactly the
  batches an uninterrupted run would have seen, and under DDP rank ``r`` of ``N`` takes rows
  ``r*B/N .. (r+1)*B/N`` of the same global batch, so N processes see exactly the data one
  process would.
- **Evaluation**: :func:`eval_windows` gives fixed, evenly spaced windows of a split (the same for
  every seed and model), so validation losses are comparable across runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from nlteach import data as _data


class CharVocab:
    """A character vocabulary: ``chars[i]`` is the character with id ``i``.

    >>> v = CharVocab.from_text("hello")
    >>> v.chars, v.encode("hole").tolist(), v.decode([3, 1])
    ('ehlo', [1, 3, 2, 0], 'oh')
    """

    def __init__(self, chars: str):
        if not isinstance(chars, str) or not chars:
            raise ValueError(f"chars must be a non-empty str, got {chars!r}.")
        if len(set(chars)) != len(chars):
            raise ValueError("chars must not contain a character twice.")
        self.chars = chars
        self._index = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        """The sorted (by code point) set of characters of ``text``."""
        return cls("".join(sorted(set(text))))

    @property
    def size(self) -> int:
        return len(self.chars)

    def __len__(self) -> int:
        return len(self.chars)

    def __repr__(self) -> str:
        return f"CharVocab(size={self.size}, chars={self.chars!r})"

    def encode(self, text: str) -> torch.Tensor:
        """Ids of the characters of ``text`` as a LongTensor ``[len(text)]``."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        if codes.size == 0:
            return torch.zeros(0, dtype=torch.long)
        table = np.full(max(int(codes.max()), max(map(ord, self.chars))) + 1, -1, dtype=np.int64)
        table[[ord(c) for c in self.chars]] = np.arange(self.size)
        ids = table[codes]
        if (ids < 0).any():
            bad = sorted({chr(c) for c in codes[ids < 0]})
            raise ValueError(
                f"text contains {len(bad)} character(s) not in the vocabulary: {''.join(bad)!r}; "
                f"the vocabulary has {self.size}: {self.chars!r}."
            )
        return torch.from_numpy(ids)

    def decode(self, ids) -> str:
        """Characters of a sequence of ids (list, 1-d tensor or array)."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        out = []
        for i in ids:
            if not 0 <= int(i) < self.size:
                raise ValueError(f"id {int(i)} is out of range for a vocabulary of size {self.size}.")
            out.append(self.chars[int(i)])
        return "".join(out)


@dataclass
class CharCorpus:
    """A character-level corpus: its vocabulary and each split encoded as a LongTensor ``[N]``."""

    name: str
    vocab: CharVocab
    splits: dict[str, torch.Tensor]

    def __getitem__(self, split: str) -> torch.Tensor:
        if split not in self.splits:
            raise KeyError(f"split={split!r} is not one of {sorted(self.splits)}.")
        return self.splits[split]


def _tinyshakespeare() -> dict[str, str]:
    return _data.load_tinyshakespeare()


CORPORA: dict[str, Callable[[], dict[str, str]]] = {"tinyshakespeare": _tinyshakespeare}


def load_char_corpus(name: str = "tinyshakespeare") -> CharCorpus:
    """Load a registered corpus, build its vocabulary from all splits, and encode every split."""
    if name not in CORPORA:
        raise ValueError(f"data={name!r} is not a known corpus; available: {', '.join(sorted(CORPORA))}.")
    texts = CORPORA[name]()
    vocab = CharVocab.from_text("".join(texts.values()))
    return CharCorpus(name, vocab, {k: vocab.encode(v) for k, v in texts.items()})


def get_batch(tokens: torch.Tensor, starts, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``x = tokens[s : s+T]`` and targets ``y = tokens[s+1 : s+T+1]`` for each start ``s``.

    Returns two LongTensors ``[len(starts), seq_len]`` on the device of ``tokens``.
    """
    starts = torch.as_tensor(np.asarray(starts), dtype=torch.long)
    if starts.numel() and (int(starts.min()) < 0 or int(starts.max()) + seq_len + 1 > tokens.numel()):
        raise ValueError(
            f"window starts must lie in [0, {tokens.numel() - seq_len - 1}] for seq_len={seq_len} "
            f"and {tokens.numel()} tokens; got min {int(starts.min())}, max {int(starts.max())}."
        )
    idx = starts[:, None] + torch.arange(seq_len + 1)  # [B, T+1]
    window = tokens[idx.to(tokens.device)]
    return window[:, :-1], window[:, 1:]


def _check_positive_int(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")


class RandomWindowSampler:
    """Random training windows, a pure function of ``(seed, step)``: exact resume and DDP sharding.

    ``batch_size`` is the **global** batch (all ranks together); each of ``world_size`` ranks gets
    ``batch_size // world_size`` consecutive rows of it. Iterate with :meth:`next_starts` (advances
    ``step``) or ask for any step with :meth:`starts_for_step`. ``state_dict`` /
    ``load_state_dict`` save and restore the position.
    """

    def __init__(self, n_tokens: int, seq_len: int, batch_size: int, *, seed: int,
                 rank: int = 0, world_size: int = 1):
        for name, v in (("n_tokens", n_tokens), ("seq_len", seq_len), ("batch_size", batch_size),
                        ("world_size", world_size)):
            _check_positive_int(name, v)
        if n_tokens < seq_len + 2:
            raise ValueError(f"seq_len={seq_len} needs at least {seq_len + 2} tokens, the split has {n_tokens}.")
        if batch_size % world_size:
            raise ValueError(
                f"batch_size={batch_size} (the global batch) must be divisible by the number of "
                f"processes world_size={world_size}."
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} must be in [0, world_size={world_size}).")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}.")
        self.n_tokens, self.seq_len, self.batch_size = n_tokens, seq_len, batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.step = 0  # number of batches handed out so far

    @property
    def local_batch_size(self) -> int:
        return self.batch_size // self.world_size

    def starts_for_step(self, step: int) -> np.ndarray:
        """This rank's window starts for optimizer step ``step`` (0-based), ``[local_batch_size]``."""
        rng = np.random.default_rng([self.seed, step])
        starts = rng.integers(0, self.n_tokens - self.seq_len - 1, size=self.batch_size, endpoint=True)
        b = self.local_batch_size
        return starts[self.rank * b:(self.rank + 1) * b]

    def next_starts(self) -> np.ndarray:
        starts = self.starts_for_step(self.step)
        self.step += 1
        return starts

    def state_dict(self) -> dict:
        return {"seed": self.seed, "step": self.step, "n_tokens": self.n_tokens,
                "seq_len": self.seq_len, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict) -> None:
        for key in ("seed", "n_tokens", "seq_len", "batch_size"):
            if state[key] != getattr(self, key):
                raise ValueError(
                    f"sampler state has {key}={state[key]!r} but this sampler has "
                    f"{key}={getattr(self, key)!r}; resume with the same data settings."
                )
        self.step = int(state["step"])


def eval_windows(n_tokens: int, seq_len: int, max_windows: int) -> np.ndarray:
    """Start positions of at most ``max_windows`` evaluation windows spread evenly over a split.

    Non-overlapping when the split is long enough; deterministic (no seed), so every run
    evaluates on the same characters.
    """
    _check_positive_int("seq_len", seq_len)
    _check_positive_int("max_windows", max_windows)
    last = n_tokens - seq_len - 1
    if last < 0:
        raise ValueError(f"seq_len={seq_len} needs at least {seq_len + 1} tokens, the split has {n_tokens}.")
    n = min(max_windows, last // seq_len + 1)
    return np.unique(np.linspace(0, last, n).round().astype(np.int64))
