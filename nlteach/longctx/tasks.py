"""Synthetic long-context tasks, generated on the fly from seeds, each with an independent checker.

Every task turns into next-token prediction for the language models of :mod:`nlteach.models`:
a :class:`Batch` holds ``inputs: LongTensor[B, T]`` and ``targets: LongTensor[B, T]``, where
``targets[b, t]`` is the token the model must predict from ``inputs[b, :t + 1]`` at an *answer
position* and :data:`IGNORE` (-100, ignored by ``F.cross_entropy``) everywhere else. Only answers
are scored and trained on.

Each task also has a **checker**, ``task.check(inputs, predictions) -> BoolTensor[B]``, that
decides whether the predicted answers are right by reading the rules off ``inputs`` alone (it never
looks at ``targets``): it finds the answer positions itself, recomputes what the answer must be
(the value stored under the queried key; whether the string belongs to the language) and compares.
Tests use it to prove that every generated instance is solvable (the true answers pass) and that
wrong answers fail.

Tasks (``TASKS``; ``make_task(name, **options)``):

- ``mqar``: multi-query associative recall, after Zoology (Arora et al. 2023). A sequence of
  length T holds ``N = T/4`` key-value pairs ``k_1 v_1 ... k_N v_N`` (distinct keys, keys and values
  from disjoint vocabularies), then every key once more in a random order, each followed by its
  value: ``q_1 a_1 ... q_N a_N``. The answer at ``q_j`` is the value stored with that key. Longer
  contexts hold more pairs, so the task measures recall *capacity*. Scored per query.
- ``s-niah``, ``mk-niah``: needle in a haystack in the style of RULER (Hsieh et al. 2024), with
  synthetic tokens instead of English: the haystack is i.i.d. uniform *filler* tokens from their own
  vocabulary (RULER uses repeated sentences or essays; random tokens are harder to compress and
  carry no language); a needle is ``NEEDLE key d_1 ... d_m`` (a key token and an m-digit value, like
  RULER's 7-digit numbers) placed at a uniformly random depth; the sequence ends with
  ``QUERY key d_1 ... d_m`` and the answer is the m digits. ``s-niah`` has one needle;
  ``mk-niah`` has several needles with distinct keys (distractors) and queries one of them.
  Longer contexts add filler, so the task measures recall across *distance*. Scored per example
  (all m digits right: exact match, like RULER).
- Formal languages of the paper's Table 5 (arXiv v1), as **recognition** tasks: the input is a
  string ``s_1 ... s_n``, then ``QUERY``; the answer is ``ACCEPT`` or ``REJECT``. Half the examples
  are members, half non-members of the same lengths (one symbol changed, two symbols swapped, or
  for a^n b^n (c^n) the block sizes changed), except for ``aa``, where length is the whole story. Right-padded with ``PAD`` (causal models never see the padding before answering).
  ``parity`` (bit strings with an even number of 1s), ``aa`` ((aa)*), ``abab`` ((abab)*), ``anbn``
  (a^n b^n), ``anbncn`` (a^n b^n c^n), ``shuffle2`` (Shuffle-2: two bracket types, each balanced
  on its own, interleaved freely). The "context length" of a formal-language batch is the upper
  end of its string-length bin (lengths ``(L/2, L]``), so *train short, test long* means training
  on short bins and testing on longer ones. (Bhattamishra et al. 2020 use the same languages with a
  next-character-set framing; we use recognition because it fits a language model's head and has
  an unambiguous accuracy.)

Teacher forcing: the answer tokens of NIAH are in ``inputs`` (shifted by one), so the argmax of
one forward pass scores all digits; an example counts as right only if every digit is right, which
is exactly greedy decoding's exact match (greedy decoding can only go wrong where this does).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

IGNORE = -100  # target of positions that are not answers (F.cross_entropy's ignore_index)


@dataclass(frozen=True)
class Batch:
    """``inputs``, ``targets``: LongTensor[B, T]; ``targets`` is IGNORE except at answer positions."""

    inputs: torch.Tensor
    targets: torch.Tensor

    @property
    def answer_mask(self) -> torch.Tensor:
        return self.targets != IGNORE

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.inputs.to(device), self.targets.to(device))


def make_rng(*keys: int) -> np.random.Generator:
    """A NumPy generator that is a pure function of the integer ``keys`` (e.g. seed, step, stream)."""
    for k in keys:
        if not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 0:
            raise ValueError(f"rng keys must be non-negative ints, got {keys!r}.")
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in keys]))


def _check_rng(rng: np.random.Generator | int) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, int | np.integer) and not isinstance(rng, bool) and rng >= 0:
        return make_rng(int(rng))
    raise TypeError(f"rng must be a numpy Generator or a non-negative int seed, got {rng!r}.")


def _check_pos_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}.")
    return int(value)


class Task(abc.ABC):
    """A synthetic task: ``sample(batch_size, length, rng) -> Batch`` and ``check(inputs, predictions)``.

    ``unit`` says how accuracy is counted: ``"answer"`` (every answer position on its own, MQAR's
    per-query recall) or ``"example"`` (an example is right only if all its answers are).
    """

    name: str = ""
    unit: str = "example"
    vocab_size: int = 0

    @abc.abstractmethod
    def sample(self, batch_size: int, length: int, rng: np.random.Generator | int) -> Batch:
        """A batch of ``batch_size`` examples of ``length`` tokens, generated from ``rng``."""

    @abc.abstractmethod
    def answer_positions(self, inputs: torch.Tensor) -> torch.Tensor:
        """BoolTensor[B, T]: where answers are due, found from ``inputs`` alone."""

    @abc.abstractmethod
    def expected(self, inputs: torch.Tensor) -> torch.Tensor:
        """LongTensor[B, T]: the correct answer at each answer position (IGNORE elsewhere), derived
        from the rules and ``inputs`` alone (the checker's own solution, independent of the generator)."""

    def valid_lengths(self) -> str:
        return "any length >= 1"

    @property
    @abc.abstractmethod
    def chance(self) -> float:
        """The accuracy of guessing uniformly among the answers the task's definition allows, in the
        task's own ``unit`` (the level every table and figure of notebook 11 shows beside a model's)."""

    def check(self, inputs: torch.Tensor, predictions: torch.Tensor) -> torch.Tensor:
        """BoolTensor[B]: True where every answer in ``predictions[b]`` (token ids at the answer
        positions; other positions are not read) is right."""
        ok = self.check_answers(inputs, predictions)
        pos = self.answer_positions(inputs)
        return (ok | ~pos).all(dim=1)

    def check_answers(self, inputs: torch.Tensor, predictions: torch.Tensor) -> torch.Tensor:
        """BoolTensor[B, T]: True at answer positions whose prediction is right (False elsewhere)."""
        _check_pair(inputs, predictions)
        exp = self.expected(inputs)
        return (exp != IGNORE) & (predictions == exp)

    def _check_sample_args(self, batch_size: int, length: int) -> None:
        _check_pos_int(batch_size, "batch_size")
        _check_pos_int(length, "length")


def _check_pair(inputs: torch.Tensor, predictions: torch.Tensor) -> None:
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 2:
        raise ValueError(f"inputs must be a LongTensor [B, T], got {getattr(inputs, 'shape', type(inputs))}.")
    if not isinstance(predictions, torch.Tensor) or predictions.shape != inputs.shape:
        raise ValueError(f"predictions must be a LongTensor shaped like inputs {tuple(inputs.shape)}, got "
                         f"{tuple(predictions.shape) if isinstance(predictions, torch.Tensor) else type(predictions)}.")


# ---------------------------------------------------------------------------------------------
# Multi-query associative recall


class MQAR(Task):
    """Multi-query associative recall. Vocabulary: ``PAD=0``, keys ``1..n_keys``, values after them.

    Length T (a multiple of 4, at most ``4 n_keys``): ``N = T/4`` pairs, then the N keys again in a
    random order, each followed by its value. Answer positions: the second occurrence of each key.
    """

    name, unit = "mqar", "answer"
    PAD = 0

    def __init__(self, n_keys: int = 64, n_values: int = 64):
        self.n_keys = _check_pos_int(n_keys, "n_keys")
        self.n_values = _check_pos_int(n_values, "n_values")
        self.key0, self.value0 = 1, 1 + self.n_keys
        self.vocab_size = 1 + self.n_keys + self.n_values

    def valid_lengths(self) -> str:
        return f"a multiple of 4 between 4 and {4 * self.n_keys} (4 n_keys)"

    @property
    def chance(self) -> float:
        """Per query: one of the ``n_values`` values, guessed uniformly."""
        return 1.0 / self.n_values

    def sample(self, batch_size: int, length: int, rng: np.random.Generator | int) -> Batch:
        self._check_sample_args(batch_size, length)
        if length % 4 or length > 4 * self.n_keys:
            raise ValueError(f"length={length} is not valid for mqar: expected {self.valid_lengths()}.")
        rng = _check_rng(rng)
        N = length // 4
        inputs = np.empty((batch_size, length), dtype=np.int64)
        targets = np.full((batch_size, length), IGNORE, dtype=np.int64)
        for b in range(batch_size):
            keys = self.key0 + rng.choice(self.n_keys, size=N, replace=False)  # distinct keys
            values = self.value0 + rng.integers(0, self.n_values, size=N)  # values may repeat
            inputs[b, 0:2 * N:2], inputs[b, 1:2 * N:2] = keys, values
            order = rng.permutation(N)
            inputs[b, 2 * N::2], inputs[b, 2 * N + 1::2] = keys[order], values[order]
            targets[b, 2 * N::2] = values[order]  # predicted at the query key, from the context
        return Batch(torch.from_numpy(inputs), torch.from_numpy(targets))

    def answer_positions(self, inputs: torch.Tensor) -> torch.Tensor:
        B, T = inputs.shape
        pos = torch.zeros(B, T, dtype=torch.bool)
        pos[:, T // 2::2] = True
        return pos

    def expected(self, inputs: torch.Tensor) -> torch.Tensor:
        B, T = inputs.shape
        exp = torch.full((B, T), IGNORE, dtype=torch.long)
        x = inputs.tolist()
        for b in range(B):
            store = {}
            for i in range(0, T // 2, 2):  # the context: key, value, key, value, ...
                store.setdefault(x[b][i], x[b][i + 1])
            for i in range(T // 2, T, 2):
                exp[b, i] = store.get(x[b][i], IGNORE - 1)  # an unknown key has no right answer
        return exp


# ---------------------------------------------------------------------------------------------
# Needle in a haystack (RULER style, synthetic tokens)


class NIAH(Task):
    """Needles ``NEEDLE key d_1..d_m`` in filler; the sequence ends with ``QUERY key d_1..d_m``.

    Vocabulary: ``PAD=0, NEEDLE=1, QUERY=2``, then ``n_keys`` keys, 10 digits, ``n_filler`` filler.
    ``n_needles=1`` is S-NIAH; more needles (distinct keys, one queried) is MK-NIAH.
    ``n_queries`` > 1 ends the sequence with that many queries of distinct needles, one after the
    other, every digit of each scored (RULER's tasks ask one; more answers per example are a denser
    training signal, ``LongCtxConfig.train_queries``). An example counts as right when all are.
    """

    unit = "example"
    PAD, NEEDLE, QUERY = 0, 1, 2

    def __init__(self, n_needles: int = 1, value_len: int = 2, n_keys: int = 16, n_filler: int = 32,
                 name: str | None = None, n_queries: int = 1):
        self.n_needles = _check_pos_int(n_needles, "n_needles")
        self.n_queries = _check_pos_int(n_queries, "n_queries")
        if self.n_queries > self.n_needles:
            raise ValueError(f"n_queries={n_queries} asks distinct needles: expected at most n_needles={n_needles}.")
        self.value_len = _check_pos_int(value_len, "value_len")
        self.n_keys = _check_pos_int(n_keys, "n_keys")
        self.n_filler = _check_pos_int(n_filler, "n_filler")
        if self.n_needles > self.n_keys:
            raise ValueError(f"n_needles={n_needles} needs at least as many keys, got n_keys={n_keys}.")
        self.key0 = 3
        self.digit0 = self.key0 + self.n_keys
        self.filler0 = self.digit0 + 10
        self.vocab_size = self.filler0 + self.n_filler
        self.name = name or ("s-niah" if self.n_needles == 1 else "mk-niah")

    @property
    def min_length(self) -> int:
        return (self.n_needles + self.n_queries) * (2 + self.value_len)

    def valid_lengths(self) -> str:
        return f"any length >= {self.min_length} (the needles and the queries must fit)"

    @property
    def chance(self) -> float:
        """Per example (exact match): all ``value_len`` digits of every query guessed uniformly,
        ``10^-(m q)``."""
        return 0.1 ** (self.value_len * self.n_queries)

    @property
    def distractor_chance(self) -> float:
        """Per example: for each query the value of one of the ``n_needles`` needles, picked uniformly
        (a model that found the needles but not which one is asked; equal to 1 for S-NIAH)."""
        return (1.0 / self.n_needles) ** self.n_queries

    def sample(self, batch_size: int, length: int, rng: np.random.Generator | int) -> Batch:
        self._check_sample_args(batch_size, length)
        if length < self.min_length:
            raise ValueError(f"length={length} is too short for {self.name}: expected {self.valid_lengths()}.")
        rng = _check_rng(rng)
        m, w = self.value_len, 2 + self.value_len  # digits, width of a needle and of a query
        hay = length - self.n_queries * w  # the haystack (filler + needles) before the queries
        inputs = self.filler0 + rng.integers(0, self.n_filler, size=(batch_size, length))
        targets = np.full((batch_size, length), IGNORE, dtype=np.int64)
        for b in range(batch_size):
            keys = self.key0 + rng.choice(self.n_keys, size=self.n_needles, replace=False)
            values = self.digit0 + rng.integers(0, 10, size=(self.n_needles, m))
            # needle starts: n non-overlapping slots of width w in `hay` tokens, uniformly at random
            # (choose the n gaps' positions among hay - n (w - 1) places, then spread them out)
            slots = np.sort(rng.choice(hay - self.n_needles * (w - 1), size=self.n_needles, replace=False))
            starts = slots + np.arange(self.n_needles) * (w - 1)
            for j, s in enumerate(starts):
                inputs[b, s], inputs[b, s + 1], inputs[b, s + 2:s + w] = self.NEEDLE, keys[j], values[j]
            asked = ([rng.integers(self.n_needles)] if self.n_queries == 1 else  # the needles asked for
                     rng.choice(self.n_needles, size=self.n_queries, replace=False))
            for j, q in enumerate(asked):
                s = hay + j * w
                inputs[b, s], inputs[b, s + 1], inputs[b, s + 2:s + w] = self.QUERY, keys[q], values[q]
                targets[b, s + 1:s + w - 1] = values[q]  # digit i is predicted one position earlier
        return Batch(torch.from_numpy(inputs), torch.from_numpy(targets))

    def _query_starts(self, inputs: torch.Tensor) -> list[int]:
        w = 2 + self.value_len
        return [inputs.shape[1] - (self.n_queries - j) * w for j in range(self.n_queries)]

    def answer_positions(self, inputs: torch.Tensor) -> torch.Tensor:
        B, T = inputs.shape
        pos = torch.zeros(B, T, dtype=torch.bool)
        for s in self._query_starts(inputs):
            pos[:, s + 1:s + 1 + self.value_len] = True
        return pos

    def expected(self, inputs: torch.Tensor) -> torch.Tensor:
        B, T = inputs.shape
        m, starts = self.value_len, self._query_starts(inputs)
        exp = torch.full((B, T), IGNORE, dtype=torch.long)
        x = inputs.tolist()
        for b in range(B):
            for q0 in starts:  # each query is answered from the needles before the first query
                if x[b][q0] != self.QUERY:
                    exp[b, q0 + 1:q0 + 1 + m] = IGNORE - 1  # malformed: nothing is right
                    continue
                key = x[b][q0 + 1]
                found = [i for i in range(starts[0] - m - 1) if x[b][i] == self.NEEDLE and x[b][i + 1] == key]
                value = x[b][found[0] + 2:found[0] + 2 + m] if len(found) == 1 else [IGNORE - 1] * m
                exp[b, q0 + 1:q0 + 1 + m] = torch.tensor(value)
        return exp


# ---------------------------------------------------------------------------------------------
# Formal languages (the paper's Table 5), as recognition


def is_member(language: str, s: Sequence[int]) -> bool:
    """Whether the symbol string ``s`` (symbol indices from 0) belongs to ``language``.

    Symbols: parity 0/1; aa: 0 = a; abab, anbn, anbncn: 0 = a, 1 = b, 2 = c; shuffle2: 0 = '(',
    1 = ')', 2 = '[', 3 = ']'. The empty string is never used by the generators.
    """
    s = list(s)
    n = len(s)
    if language == "parity":
        return set(s) <= {0, 1} and sum(s) % 2 == 0
    if language == "aa":
        return all(c == 0 for c in s) and n % 2 == 0
    if language == "abab":
        return n % 4 == 0 and all(c == i % 2 for i, c in enumerate(s))
    if language == "anbn":
        k = n // 2
        return n % 2 == 0 and s == [0] * k + [1] * k
    if language == "anbncn":
        k = n // 3
        return n % 3 == 0 and s == [0] * k + [1] * k + [2] * k
    if language == "shuffle2":
        depth = [0, 0]
        for c in s:
            if c not in (0, 1, 2, 3):
                return False
            t, close = divmod(c, 2)
            depth[t] += -1 if close else 1
            if depth[t] < 0:
                return False
        return depth == [0, 0]
    raise ValueError(f"unknown language {language!r}; known: {LANGUAGES}.")


LANGUAGES = ("parity", "aa", "abab", "anbn", "anbncn", "shuffle2")
N_SYMBOLS = {"parity": 2, "aa": 1, "abab": 2, "anbn": 2, "anbncn": 3, "shuffle2": 4}
_LENGTH_MULTIPLE = {"parity": 1, "aa": 1, "abab": 4, "anbn": 2, "anbncn": 3, "shuffle2": 2}


def length_bin(length: int) -> tuple[int, int]:
    """String lengths of the bin called ``length``: ``(length / 2, length]`` (bins 16, 32, 64 are
    the disjoint ranges 9-16, 17-32, 33-64)."""
    return length // 2 + 1, length


def _positive(lang: str, n: int, rng: np.random.Generator) -> list[int]:
    if lang == "parity":
        s = list(rng.integers(0, 2, size=n))
        if sum(s) % 2:
            s[rng.integers(n)] ^= 1  # one flip fixes the parity
        return [int(c) for c in s]
    if lang == "aa":
        return [0] * n
    if lang == "abab":
        return [i % 2 for i in range(n)]
    if lang == "anbn":
        return [0] * (n // 2) + [1] * (n // 2)
    if lang == "anbncn":
        return [0] * (n // 3) + [1] * (n // 3) + [2] * (n // 3)
    # shuffle2: a random walk that keeps both depths >= 0 and can always close in time
    s, depth = [], [0, 0]
    for t in range(n):
        left = n - t
        moves = [2 * k + 1 for k in (0, 1) if depth[k] > 0]  # closing a type that is open
        if sum(depth) + 1 <= left - 1:
            moves += [0, 2]  # opening, if everything can still be closed afterwards
        c = int(rng.choice(moves))
        depth[c // 2] += -1 if c % 2 else 1
        s.append(c)
    return s


def _negative(lang: str, n: int, rng: np.random.Generator) -> list[int]:
    """A near-miss non-member of length n (rejection-sampled until it is not a member)."""
    k = N_SYMBOLS[lang]
    for _ in range(100):
        if lang == "aa":
            s = [0] * n  # n is odd here: the only non-members over {a} of this length
        elif lang == "parity":
            s = _positive(lang, n, rng)
            s[rng.integers(n)] ^= 1
        elif lang in ("anbn", "anbncn") and rng.random() < 0.5:
            # the right symbols in the right order, wrong counts: move d symbols between blocks
            r = 2 if lang == "anbn" else 3
            counts = [n // r] * r
            i, j = rng.choice(r, size=2, replace=False)
            d = int(rng.integers(1, counts[i] + 1))
            counts[i], counts[j] = counts[i] - d, counts[j] + d
            s = [c for c in range(r) for _ in range(counts[c])]
        elif lang == "shuffle2" or rng.random() < 0.5:
            s = _positive(lang, n, rng)
            i = int(rng.integers(n))
            s[i] = int((s[i] + rng.integers(1, k)) % k) if k > 1 else s[i]  # change one symbol
        else:
            s = _positive(lang, n, rng)
            i, j = rng.choice(n, size=2, replace=False)
            s[i], s[j] = s[j], s[i]  # swap two symbols (order broken, counts kept)
        if not is_member(lang, s):
            return s
    raise RuntimeError(f"could not draw a non-member of {lang} with length {n}")  # pragma: no cover


class FormalLanguage(Task):
    """Recognition of one of :data:`LANGUAGES`. Vocabulary: ``PAD=0, QUERY=1, ACCEPT=2, REJECT=3``,
    symbols from 4. ``sample(B, L)`` draws string lengths from :func:`length_bin` (L) (only those
    that a member can have, except for ``aa``'s odd negatives), half members, half non-members,
    and pads every example to ``L + 2`` tokens: ``s_1..s_n QUERY ANSWER PAD...``."""

    unit = "example"
    PAD, QUERY, ACCEPT, REJECT = 0, 1, 2, 3
    SYMBOL0 = 4

    def __init__(self, language: str):
        if language not in LANGUAGES:
            raise ValueError(f"language must be one of {LANGUAGES}, got {language!r}.")
        self.language = self.name = language
        self.vocab_size = self.SYMBOL0 + N_SYMBOLS[language]

    def lengths(self, length: int, label: bool) -> list[int]:
        """The string lengths an example of bin ``length`` with this label may have: every length
        for parity; even (members) or odd (non-members) for aa; otherwise the lengths a member can
        have, for members and non-members alike, so that the length gives nothing away."""
        lo, hi = length_bin(length)
        if self.language == "aa":
            return [n for n in range(lo, hi + 1) if (n % 2 == 0) == label]
        m = _LENGTH_MULTIPLE[self.language]
        return [n for n in range(max(lo, m), hi + 1) if n % m == 0]

    def valid_lengths(self) -> str:
        return "a length bin (L/2, L] that holds a member's length (L >= 6 for every language)"

    @property
    def chance(self) -> float:
        """Per example: ``ACCEPT`` or ``REJECT``, each the answer of half the examples (labels are drawn
        with probability 1/2), so any fixed or uniform guess scores 1/2."""
        return 0.5

    def sample(self, batch_size: int, length: int, rng: np.random.Generator | int) -> Batch:
        self._check_sample_args(batch_size, length)
        if not self.lengths(length, True) or not self.lengths(length, False):
            raise ValueError(f"length={length} is too short for {self.name}: expected {self.valid_lengths()}.")
        rng = _check_rng(rng)
        T = length + 2
        inputs = np.full((batch_size, T), self.PAD, dtype=np.int64)
        targets = np.full((batch_size, T), IGNORE, dtype=np.int64)
        for b in range(batch_size):
            label = bool(rng.random() < 0.5)
            n = int(rng.choice(self.lengths(length, label)))
            s = _positive(self.language, n, rng) if label else _negative(self.language, n, rng)
            inputs[b, :n] = self.SYMBOL0 + np.asarray(s)
            inputs[b, n] = self.QUERY
            inputs[b, n + 1] = self.ACCEPT if label else self.REJECT
            targets[b, n] = inputs[b, n + 1]
        return Batch(torch.from_numpy(inputs), torch.from_numpy(targets))

    def answer_positions(self, inputs: torch.Tensor) -> torch.Tensor:
        pos = torch.zeros(inputs.shape, dtype=torch.bool)
        is_q = inputs == self.QUERY
        first = torch.where(is_q.any(1), is_q.int().argmax(1), torch.full((inputs.shape[0],), -1))
        for b, i in enumerate(first.tolist()):
            if i >= 0:
                pos[b, i] = True
        return pos

    def expected(self, inputs: torch.Tensor) -> torch.Tensor:
        exp = torch.full(inputs.shape, IGNORE, dtype=torch.long)
        pos = self.answer_positions(inputs)
        for b, i in pos.nonzero().tolist():
            s = [c - self.SYMBOL0 for c in inputs[b, :i].tolist()]
            exp[b, i] = self.ACCEPT if is_member(self.language, s) else self.REJECT
        return exp


# ---------------------------------------------------------------------------------------------
# Registry and metrics

TASKS = ("mqar", "s-niah", "mk-niah", *LANGUAGES)
RECALL_TASKS = ("mqar", "s-niah", "mk-niah")


def make_task(name: str, **options) -> Task:
    """The task called ``name`` (one of :data:`TASKS`); ``options`` go to its constructor
    (mqar: n_keys, n_values; s-niah/mk-niah: n_needles, value_len, n_keys, n_filler)."""
    if name == "mqar":
        return MQAR(**options)
    if name == "s-niah":
        return NIAH(**{"n_needles": 1, **options}, name="s-niah")
    if name == "mk-niah":
        return NIAH(**{"n_needles": 4, **options}, name="mk-niah")
    if name in LANGUAGES:
        if options:
            raise ValueError(f"task {name!r} takes no options, got {sorted(options)}.")
        return FormalLanguage(name)
    raise ValueError(f"unknown task {name!r}; known: {', '.join(TASKS)}.")


def accuracy_counts(predictions: torch.Tensor, targets: torch.Tensor, unit: str) -> tuple[int, int]:
    """``(right, total)`` of ``predictions`` ([B, T] token ids) against ``targets`` ([B, T], IGNORE
    where there is no answer): per answer position (``unit="answer"``) or per example, an example
    being right only if all its answers are (``unit="example"``; examples without answers are skipped)."""
    if predictions.shape != targets.shape:
        raise ValueError(f"predictions {tuple(predictions.shape)} and targets {tuple(targets.shape)} differ in shape.")
    if unit not in ("answer", "example"):
        raise ValueError(f"unit must be 'answer' or 'example', got {unit!r}.")
    mask = targets != IGNORE
    hit = (predictions == targets) & mask
    if unit == "answer":
        return int(hit.sum()), int(mask.sum())
    has = mask.any(1)
    right = (hit | ~mask).all(1) & has
    return int(right.sum()), int(has.sum())


def accuracy_by_answer(predictions: torch.Tensor, targets: torch.Tensor) -> list[float]:
    """The accuracy of each example's k-th answer, k = 1, 2, ... (answers in position order), for
    batches whose examples all have the same number of answers (the needle tasks: the value's
    digits). It separates *finding* the value (the first digit: which needle was read) from
    *copying* it (the later digits); see docs/decisions.md#longctx-learned-budget."""
    if predictions.shape != targets.shape:
        raise ValueError(f"predictions {tuple(predictions.shape)} and targets {tuple(targets.shape)} differ in shape.")
    mask = targets != IGNORE  # [B, T]
    counts = mask.sum(1).unique()
    if counts.numel() != 1 or int(counts[0]) == 0:
        raise ValueError(f"every example needs the same, non-zero number of answers, got {counts.tolist()}.")
    k = int(counts[0])
    hit = (predictions == targets)[mask].view(-1, k)  # [B, k]: row-major keeps each example's answers in order
    return hit.float().mean(0).tolist()


def accuracy(predictions: torch.Tensor, targets: torch.Tensor, unit: str = "example") -> float:
    """Fraction right (see :func:`accuracy_counts`); ``nan`` when there is no answer at all."""
    right, total = accuracy_counts(predictions, targets, unit)
    return right / total if total else math.nan


# ---------------------------------------------------------------------------------------------
# Reading an example


def token_names(task: Task) -> dict[int, str]:
    """A short readable name for every token id of ``task`` (for printing examples)."""
    names = {0: "_"}
    if isinstance(task, MQAR):
        names.update({task.key0 + i: f"k{i}" for i in range(task.n_keys)})
        names.update({task.value0 + i: f"v{i}" for i in range(task.n_values)})
    elif isinstance(task, NIAH):
        names.update({task.NEEDLE: "NEEDLE", task.QUERY: "QUERY"})
        names.update({task.key0 + i: f"K{i}" for i in range(task.n_keys)})
        names.update({task.digit0 + i: str(i) for i in range(10)})
        names.update({task.filler0 + i: "·" for i in range(task.n_filler)})
    elif isinstance(task, FormalLanguage):
        names.update({task.QUERY: "?", task.ACCEPT: "yes", task.REJECT: "no"})
        symbols = {"parity": "01", "aa": "a", "shuffle2": "()[]"}.get(task.language, "abc")
        names.update({task.SYMBOL0 + i: ch for i, ch in enumerate(symbols)})
    return names


def render_example(task: Task, batch: Batch, i: int = 0, *, max_tokens: int = 120) -> str:
    """Example ``i`` of ``batch`` as text; answer positions show ``[token -> answer]``. Long
    examples keep their first and last ``max_tokens // 2`` tokens."""
    names = token_names(task)
    x, y = batch.inputs[i].tolist(), batch.targets[i].tolist()
    parts = [names.get(t, str(t)) + (f"[->{names.get(a, str(a))}]" if a != IGNORE else "") for t, a in zip(x, y, strict=True)]
    if len(parts) > max_tokens:
        h = max_tokens // 2
        parts = [*parts[:h], f"... ({len(parts) - 2 * h} tokens) ...", *parts[-h:]]
    sep = "" if isinstance(task, FormalLanguage) else " "
    return sep.join(p if sep or len(p) == 1 else f" {p} " for p in parts).strip()
