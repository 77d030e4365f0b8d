"""Character n-gram baselines for notebook 09's language-model comparison.

A neural language model earns its place only if it beats counting. This module counts character
n-grams and scores them exactly the way :func:`nlteach.train.evaluate` scores a neural model:

- **Events.** A row of ``L`` characters (one training or evaluation window, or a whole split)
  gives ``L - 1`` predictions: character ``t`` (``t = 1 .. L-1``) given the row's characters
  ``0 .. t-1``. Nothing crosses a row's start, so the first ``n - 1`` predictions of a row have
  a shorter context and use the lower orders only. :func:`fit` counts exactly these events, the
  ones a neural run is trained on; :meth:`NGramModel.nll` averages over exactly these events.
- **Smoothing: interpolated Kneser-Ney** (Chen and Goodman's interpolated form, one discount per
  order). With context ``h`` of ``k - 1`` characters and ``h'`` its last ``k - 2``::

      P_k(c | h) = (max(N_k(h c) - D_k, 0) + D_k * types_k(h) * P_{k-1}(c | h')) / N_k(h)
      P_k(c | h) = P_{k-1}(c | h')       when h was never seen (N_k(h) = 0)
      P_0(c)     = 1 / vocab_size

  ``N_n`` are the raw counts of the highest order; a lower order ``k < n`` counts *continuation*
  types: ``N_k(h c)`` is the number of different characters seen before ``h c`` (a row's start
  counts as one more), so a character that follows many contexts gets a large lower-order
  probability. ``N_k(h) = sum_c N_k(h c)`` and ``types_k(h)`` is the number of characters ``c``
  with ``N_k(h c) > 0``. Every ``P_k(. | h)`` sums to 1 over the vocabulary. The discount of
  order ``k`` is Ney's estimate ``D_k = n1 / (n1 + 2 n2)`` from the order's own counts (``n1``,
  ``n2``: the number of n-grams counted once, twice), clipped to ``[0.1, 0.9]`` so that every
  character keeps a positive probability; ``discount=`` fixes one value for every order instead
  (``discount=0`` with ``n=1`` is the plain relative-frequency unigram). No validation data is
  used to fit anything (docs/decisions.md#ngram-baselines).
- **Counting.** A ``k``-gram is one integer, its characters as digits in base ``vocab_size + 1``
  (the extra digit marks "before the row's start"); ``numpy.unique`` counts them and
  ``numpy.searchsorted`` looks them up. Tiny Shakespeare's ~1M training characters take well
  under a second per order.

:func:`baseline_rows` gives notebook 09's rows: unigram, bigram, trigram and 5-gram, each counted
(a) on the training windows one neural run of the comparison sees (the windows of
:class:`nlteach.text.RandomWindowSampler` for the run's seed, all ``steps`` of them) and (b) on the
whole training split, and evaluated on the comparison's validation and test windows
(:func:`nlteach.text.eval_windows` with the preset's ``seq_len`` and ``eval_windows``);
:func:`summarize_rows` averages the run rows over seeds. From the command line (seconds;
``--out`` writes ``OUT/results.json`` with the rows, their summary and the provenance)::

    python -m nlteach.experiments.ngram --preset laptop --seeds 0 1 2 [--out results/ngram_laptop]
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nlteach.config import PRESETS, get_preset
from nlteach.experiments.lm_comparison import BUDGETS, DATA, budget_name, sizes
from nlteach.runs import cli, stats
from nlteach.runs.io import atomic_write_json, json_safe
from nlteach.runs.provenance import command_line, provenance
from nlteach.runs.tables import text_table
from nlteach.text import CharCorpus, RandomWindowSampler, eval_windows, load_char_corpus

ORDERS: tuple[int, ...] = (1, 2, 3, 5)  # notebook 09's rows: unigram, bigram, trigram, 5-gram
ORDER_NAMES = {1: "unigram", 2: "bigram", 3: "trigram"}
MIN_DISCOUNT, MAX_DISCOUNT = 0.1, 0.9  # the clip of Ney's discount estimate


def order_name(n: int) -> str:
    """``"unigram"``, ``"bigram"``, ``"trigram"``, then ``"4-gram"``, ``"5-gram"``, ..."""
    return ORDER_NAMES.get(n, f"{n}-gram")


@dataclass
class _Table:
    """The counts of one order ``k``: sorted n-gram keys with their counts, and per context
    (``key // base``) the total count and the number of different next characters."""

    keys: np.ndarray  # [G] int64, sorted: k-grams (context digits, then the next character)
    counts: np.ndarray  # [G] float64: raw counts (highest order) or continuation counts
    contexts: np.ndarray  # [H] int64, sorted: the (k-1)-character contexts seen
    totals: np.ndarray  # [H] float64: N_k(h) = sum over c of counts
    types: np.ndarray  # [H] float64: number of c with a count
    discount: float


def _lookup(sorted_keys: np.ndarray, values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """``values`` at the position of each query in ``sorted_keys``; 0 where a query is absent."""
    if sorted_keys.size == 0:
        return np.zeros(queries.shape)
    pos = np.clip(np.searchsorted(sorted_keys, queries), 0, sorted_keys.size - 1)
    return np.where(sorted_keys[pos] == queries, values[pos], 0.0)


def _rows(tokens: torch.Tensor | np.ndarray, vocab_size: int, name: str = "tokens") -> np.ndarray:
    """``tokens`` as an int64 array of rows ``[R, L]``: a 1-d sequence is one row."""
    if isinstance(tokens, torch.Tensor):
        if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
            raise ValueError(f"{name} must hold integer token ids, got dtype {tokens.dtype}.")
        tokens = tokens.detach().cpu().numpy()
    rows = np.asarray(tokens)
    if rows.ndim == 1:
        rows = rows[None, :]
    if rows.ndim != 2:
        raise ValueError(f"{name} must be a sequence [N] or windows [W, L], got shape {tuple(rows.shape)}.")
    if not np.issubdtype(rows.dtype, np.integer):
        raise ValueError(f"{name} must hold integer token ids, got dtype {rows.dtype}.")
    if rows.shape[1] < 2:
        raise ValueError(f"{name} rows need at least 2 tokens (one prediction), got rows of {rows.shape[1]}.")
    if rows.size and (rows.min() < 0 or rows.max() >= vocab_size):
        raise ValueError(f"{name} holds ids in [{rows.min()}, {rows.max()}], expected ids in [0, {vocab_size}).")
    return rows.astype(np.int64)


def _event_keys(rows: np.ndarray, n: int, base: int) -> tuple[np.ndarray, np.ndarray]:
    """Every prediction of ``rows [R, L]`` as an ``n``-gram key and its position.

    Returns ``keys [R*(L-1)]``: the ``n - 1`` previous characters and the predicted one as digits
    in ``base`` (oldest first; ``base - 1`` marks a position before the row's start), and
    ``t [R*(L-1)]``: the predicted character's position in its row (1 .. L-1), so the key's last
    ``k`` digits are a real ``k``-gram exactly when ``t >= k - 1``.
    """
    start = base - 1
    padded = np.concatenate([np.full((rows.shape[0], n - 1), start, dtype=np.int64), rows], axis=1)
    length = rows.shape[1]
    keys = np.zeros((rows.shape[0], length - 1), dtype=np.int64)  # [R, L-1]
    for j in range(n):  # digit j of the key is the character at t - (n - 1) + j
        keys = keys * base + padded[:, 1 + j:length + j]
    t = np.broadcast_to(np.arange(1, length, dtype=np.int32), keys.shape)  # int32: half the memory
    return keys.reshape(-1), t.reshape(-1)


def _discount(counts: np.ndarray, fixed: float | None) -> float:
    if fixed is not None:
        return float(fixed)
    n1, n2 = float(np.sum(counts == 1)), float(np.sum(counts == 2))
    estimate = n1 / (n1 + 2 * n2) if n1 + n2 > 0 else MIN_DISCOUNT
    return float(np.clip(estimate, MIN_DISCOUNT, MAX_DISCOUNT))


def _table(keys: np.ndarray, counts: np.ndarray, base: int, fixed_discount: float | None) -> _Table:
    """Context totals and types of the sorted, unique ``keys`` with their ``counts``."""
    contexts, first = np.unique(keys // base, return_index=True)  # keys are sorted: contexts are runs
    totals = np.add.reduceat(counts, first) if keys.size else np.zeros(0)
    types = np.diff(np.append(first, keys.size)).astype(np.float64)
    return _Table(keys, counts, contexts, totals, types, _discount(counts, fixed_discount))


class NGramModel:
    """An interpolated Kneser-Ney character ``n``-gram model (module docstring); build it with
    :func:`fit`. ``tables[k - 1]`` holds the counts of order ``k``."""

    def __init__(self, n: int, vocab_size: int, tables: list[_Table], n_events: int):
        self.n, self.vocab_size, self.tables, self.n_events = n, vocab_size, tables, n_events
        self.base = vocab_size + 1

    def __repr__(self) -> str:
        discounts = ", ".join(f"{t.discount:.3f}" for t in self.tables)
        return (f"NGramModel(n={self.n}, vocab_size={self.vocab_size}, events={self.n_events}, "
                f"discounts=[{discounts}])")

    @property
    def discounts(self) -> list[float]:
        """The discount ``D_k`` of each order ``k = 1 .. n``."""
        return [t.discount for t in self.tables]

    def _probs(self, keys: np.ndarray, t: np.ndarray) -> np.ndarray:
        """``P(next | context)`` of each event (keys and positions as :func:`_event_keys` gives)."""
        p = np.full(keys.shape, 1.0 / self.vocab_size)  # P_0
        for k, table in enumerate(self.tables, start=1):
            gram = keys % self.base**k  # [E] the last k digits: context (k-1 characters), next character
            total = _lookup(table.contexts, table.totals, gram // self.base)
            types = _lookup(table.contexts, table.types, gram // self.base)
            count = _lookup(table.keys, table.counts, gram)
            known = (total > 0) & (t >= k - 1)  # a context reaching before the row's start is never used
            interpolated = (np.maximum(count - table.discount, 0) + table.discount * types * p) / np.where(
                known, total, 1.0)
            p = np.where(known, interpolated, p)
        return p

    def log_probs(self, tokens: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Log-probability (nats) of each prediction of ``tokens``: a sequence ``[N]`` gives
        ``[N - 1]`` (characters 1..N-1), windows ``[W, L]`` give ``[W, L - 1]``; each row is on its
        own (its first characters have shorter contexts)."""
        rows = _rows(tokens, self.vocab_size)
        keys, t = _event_keys(rows, self.n, self.base)
        logp = torch.from_numpy(np.log(self._probs(keys, t))).reshape(rows.shape[0], -1)
        return logp[0] if tokens.ndim == 1 else logp

    def nll(self, tokens: torch.Tensor | np.ndarray) -> float:
        """Mean next-character cross-entropy in nats over the predictions of ``tokens`` (a
        sequence ``[N]`` or windows ``[W, L]``, see :meth:`log_probs`): what
        :func:`nlteach.train.evaluate` reports for a neural model on the same windows."""
        return float(-self.log_probs(tokens).double().mean())

    def probs(self, context: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """The distribution ``[vocab_size]`` of the character that follows ``context`` (its last
        ``n - 1`` ids are used; a shorter context is a row's start). Sums to 1."""
        ctx = [int(c) for c in (context.tolist() if isinstance(context, torch.Tensor) else context)]
        if any(not 0 <= c < self.vocab_size for c in ctx):
            raise ValueError(f"context ids must lie in [0, {self.vocab_size}), got {ctx}.")
        ctx = ctx[max(0, len(ctx) - (self.n - 1)):] if self.n > 1 else []
        # one row per candidate c: a placeholder, the context, c; the placeholder is never read,
        # because t = len(ctx) leaves out every order whose context would reach it
        rows = np.array([[0, *ctx, c] for c in range(self.vocab_size)], dtype=np.int64)  # [V, len(ctx)+2]
        keys, _ = _event_keys(rows, self.n, self.base)
        last = keys.reshape(self.vocab_size, -1)[:, -1]  # [V] the prediction of c
        return torch.from_numpy(self._probs(last, np.full(self.vocab_size, len(ctx))))


def fit(tokens: torch.Tensor | np.ndarray, n: int, vocab_size: int, *, discount: float | None = None) -> NGramModel:
    """Count an interpolated Kneser-Ney ``n``-gram model on ``tokens``: one sequence ``[N]`` or
    windows ``[W, L]`` (each row on its own, as a neural model trains on it: the events are the
    predictions of characters 1..L-1). ``discount``: ``None`` for Ney's estimate per order
    (module docstring) or one value in ``[0, 1]`` for every order."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}.")
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive int, got {vocab_size!r}.")
    if (vocab_size + 1) ** n >= 2**62:
        raise ValueError(f"n={n} with vocab_size={vocab_size} does not fit an n-gram into one int64 key; "
                         f"use n <= {int(62 * math.log(2) / math.log(vocab_size + 1))}.")
    if discount is not None and not 0 <= discount <= 1:
        raise ValueError(f"discount must be None (Ney's estimate) or lie in [0, 1], got {discount!r}.")
    base = vocab_size + 1
    keys, t = _event_keys(_rows(tokens, vocab_size), n, base)
    tables: list[_Table] = []
    top, counts = np.unique(keys[t >= n - 1], return_counts=True)  # order n: raw counts
    tables.append(_table(top, counts.astype(np.float64), base, discount))
    for k in range(n - 1, 0, -1):  # order k: how many different left neighbours each k-gram has
        extended = np.unique(keys[t >= k - 1] % base ** (k + 1))  # (k+1)-grams, a row's start as a digit
        grams, counts = np.unique(extended % base**k, return_counts=True)
        tables.insert(0, _table(grams, counts.astype(np.float64), base, discount))
    return NGramModel(n, vocab_size, tables, int(keys.size))


def windows(tokens: torch.Tensor, starts: np.ndarray, seq_len: int) -> torch.Tensor:
    """The windows ``tokens[s : s + seq_len + 1]`` for each start ``s``: ``[len(starts), seq_len + 1]``
    (the inputs and, shifted by one, the targets of :func:`nlteach.text.get_batch`)."""
    idx = torch.as_tensor(np.asarray(starts), dtype=torch.long)[:, None] + torch.arange(seq_len + 1)
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= tokens.numel()):
        raise ValueError(f"window starts must lie in [0, {tokens.numel() - seq_len - 1}] for seq_len={seq_len} "
                         f"and {tokens.numel()} tokens; got min {int(idx.min())}, max {int(idx[:, 0].max())}.")
    return tokens[idx]


def run_windows(n_tokens_or_split: int | torch.Tensor, *, steps: int, batch_size: int, seq_len: int,
                seed: int) -> np.ndarray:
    """The starts ``[steps * batch_size]`` of every training window a neural run with these settings
    sees, in order (:class:`nlteach.text.RandomWindowSampler`, step by step)."""
    n_tokens = n_tokens_or_split if isinstance(n_tokens_or_split, int) else n_tokens_or_split.numel()
    sampler = RandomWindowSampler(n_tokens, seq_len, batch_size, seed=seed)
    return np.concatenate([sampler.starts_for_step(s) for s in range(steps)])


def baseline_rows(preset: str | None = None, *, seeds: Sequence[int] = (0,), orders: Sequence[int] = ORDERS,
                  corpus: CharCorpus | None = None, settings: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Notebook 09's n-gram rows at the comparison's ``preset`` (:func:`lm_comparison.sizes`), or at
    ``settings`` (a dict with ``steps``, ``batch_size``, ``seq_len`` and ``eval_windows``, e.g. a
    preset row not yet in :data:`lm_comparison.SIZES`); ``corpus``: default tiny Shakespeare.

    For each order in ``orders``: one row counted on the whole training split (``"counted_on":
    "train split"``) and, per seed in ``seeds``, one row counted on the windows the neural run of
    that seed trains on (``"counted_on": "run windows"``, :func:`run_windows`: the same
    ``steps * batch_size * seq_len`` predictions). Every row is evaluated on the comparison's
    validation and test windows. Keys: ``model`` (e.g. ``"trigram (run windows)"``), ``order``,
    ``counted_on``, ``seed`` (``None`` for the whole split), ``train_chars`` (predictions counted),
    ``discounts``, ``val_loss``, ``val_bpc``, ``test_loss``, ``test_bpc``.
    """
    z = sizes(preset) if settings is None else settings
    missing = [k for k in ("steps", "batch_size", "seq_len", "eval_windows") if k not in z]
    if missing:
        raise ValueError(f"settings lacks {', '.join(missing)}; expected the keys of lm_comparison.sizes(), "
                         f"got {sorted(z)}.")
    steps, batch_size, seq_len, n_eval = (int(z[k]) for k in ("steps", "batch_size", "seq_len", "eval_windows"))
    corpus = corpus if corpus is not None else load_char_corpus(DATA)
    train, v = corpus["train"], corpus.vocab.size
    evals = {split: windows(corpus[split], eval_windows(corpus[split].numel(), seq_len, n_eval), seq_len)
             for split in ("val", "test")}
    sources: list[tuple[str, int | None, torch.Tensor]] = [("train split", None, train)]
    sources += [("run windows", s, windows(train, run_windows(train, steps=steps, batch_size=batch_size,
                                                                seq_len=seq_len, seed=s), seq_len)) for s in seeds]
    rows = []
    for counted_on, seed, data in sources:
        for n in orders:
            model = fit(data, n, v)
            val, test = model.nll(evals["val"]), model.nll(evals["test"])
            rows.append({"model": f"{order_name(n)} ({counted_on})", "order": n, "counted_on": counted_on,
                         "seed": seed, "train_chars": model.n_events, "discounts": model.discounts,
                         "val_loss": val, "val_bpc": val / math.log(2), "test_loss": test,
                         "test_bpc": test / math.log(2)})
    return rows


def summarize_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per ``model`` of :func:`baseline_rows`, in order of appearance, its losses summarized
    over the seeds (:func:`nlteach.runs.stats.summarize`, JSON-safe: ``None`` where it gives NaN, as
    the std of a whole-split row, which is one value):
    ``model``, ``order``, ``counted_on``, ``seeds``, ``train_chars``, ``val_mean``, ``val_std``,
    ``test_mean``, ``test_std``, ``val`` and ``test`` (the full summaries)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["model"], []).append(r)
    out = []
    for model, rs in groups.items():
        val, test = stats.summarize([r["val_loss"] for r in rs]), stats.summarize([r["test_loss"] for r in rs])
        summary = {"model": model, "order": rs[0]["order"], "counted_on": rs[0]["counted_on"],
                   "seeds": [r["seed"] for r in rs if r["seed"] is not None], "train_chars": rs[0]["train_chars"],
                   "val_mean": val["mean"], "val_std": val["std"], "test_mean": test["mean"],
                   "test_std": test["std"], "val": val, "test": test}
        out.append(json_safe(summary))
    return out


NAME = "ngram"
SMOOTHING = "interpolated Kneser-Ney, Ney's discount per order clipped to [0.1, 0.9]"
TABLE_COLUMNS = ("model", "seeds", "train_chars", "val_mean", "val_std", "test_mean", "test_std")


def results(preset: str | None = None, *, seeds: Sequence[int] = (0,), command: str | None = None) -> dict[str, Any]:
    """:func:`baseline_rows` (``rows``) and :func:`summarize_rows` (``summary``) with what produced
    them: the budget's settings (``preset``: a row of ``lm_comparison.SIZES``, e.g. ``"reference"``),
    the smoothing, the seeds and the provenance (the ``results.json`` the command line writes)."""
    preset = budget_name(preset)
    rows = baseline_rows(preset, seeds=seeds)
    return {"experiment": NAME, "preset": preset, "data": DATA, "settings": sizes(preset), "seeds": list(seeds),
            "smoothing": SMOOTHING, "rows": rows, "summary": summarize_rows(rows),
            "provenance": provenance(command, device="cpu")}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m nlteach.experiments.{NAME}",
        description="Character n-gram baselines of notebook 09's comparison (unigram to 5-gram, counted on one "
                    "run's training windows and on the whole training split), scored on its validation and "
                    "test windows.")
    p.add_argument("--preset", choices=PRESETS, default=None, help="size preset (default: $NLTEACH_SIZE, else laptop)")
    p.add_argument("--budget", choices=BUDGETS, default=None,
                   help="the comparison's budget, a row of lm_comparison.SIZES (default: the preset's)")
    p.add_argument("--seeds", type=cli.nonneg_int, nargs="+", default=[0, 1, 2],
                   help="seeds of the neural runs whose training windows are counted (default: 0 1 2)")
    p.add_argument("--out", default=None, help="folder for results.json (default: print only)")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if len(set(args.seeds)) != len(args.seeds):
        p.error(f"--seeds: each seed once, got {args.seeds}.")
    if args.out is not None:
        cli.check_out(p, args.out)
    command = command_line(None if argv is None else ["python", "-m", f"nlteach.experiments.{NAME}", *argv])
    res = results(args.budget or get_preset(args.preset), seeds=args.seeds, command=command)
    print(text_table([{**r, "seeds": " ".join(map(str, r["seeds"]))} for r in res["summary"]], TABLE_COLUMNS))
    if args.out is not None:
        path = atomic_write_json(Path(args.out) / "results.json", res)
        print(f"[{NAME}] results in {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
