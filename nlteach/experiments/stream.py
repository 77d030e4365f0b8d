"""The in-context continual-learning stream of notebook 09: documents from distinct domains in
sequence, an earlier domain coming back, read by a trained character model in one pass.

The paper's motivating claim (Sections 1 and 7): a model whose only fast memory is attention keeps
nothing of what scrolled out of its window, while memory levels that learn in context (Titans'
memory, self-modifying Titans, HOPE's in-context CMS) can keep it. This module measures it at our
scale on models trained on tiny Shakespeare only:

- **The stream** (:func:`build_stream`): segments of :data:`SEGMENT_CHARS` characters, by default
  :data:`DOMAINS_IN_ORDER` = Shakespeare, CLINC150 queries, Banking77 queries, CLINC150 again,
  Shakespeare again. A Shakespeare segment is a passage of the test split starting at a line;
  a query segment is test-split queries of the data set, one per line, drawn without
  replacement (so the second visit reads other queries of the same domain), cut to the segment's
  length. Characters outside the model's vocabulary (digits other than 3, ``"``, ``%``, ``€``
  ...; under 0.6% of the query text) are dropped. Everything is drawn from ``seed``.
- **Reading it** (:func:`stream_nll`): one forward pass over the whole stream, the loss of every
  character given all before it. Attention layers see only the last ``window`` characters
  (sliding-window attention; the window is the training length, so positions stay inside what the
  model was trained on); memory layers carry their state through the whole stream.
- **Measures** (:func:`segment_losses`): the mean loss in bins of positions since the segment's
  start (:data:`BINS`), per segment: **adaptation** is how fast the loss falls inside a segment;
  **retention** (:func:`retention`) is the loss on the second visit of a domain minus the loss
  on the first, bin by bin (negative: the model reads the domain better the second time);
  :func:`adaptation` puts a number on the first: how far the loss falls from the first characters
  after switching to a new domain to the next ones (:data:`ADAPTATION_BIN`).

The comparison's arms record these numbers for each trained seed (``stream`` in a per-seed
record of :mod:`nlteach.experiments.lm_comparison`); :func:`paired_retention` and
:func:`paired_adaptation` compare two arms seed by seed. The choices and their reasons: docs/decisions.md#domain-stream.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nlteach.data import load_banking77, load_clinc150, load_tinyshakespeare
from nlteach.models import CausalSelfAttention, InContextCMSBranch
from nlteach.runs import stats
from nlteach.text import CharVocab

DOMAINS: tuple[str, ...] = ("shakespeare", "clinc150", "banking77")
DOMAINS_IN_ORDER: tuple[str, ...] = ("shakespeare", "clinc150", "banking77", "clinc150", "shakespeare")
SEGMENT_CHARS = 1536
BIN_EDGES: tuple[int, ...] = (0, 16, 64, 256, 768)  # bins of positions since the segment's start


def bins_for(segment_chars: int) -> tuple[int, ...]:
    """The bin edges of a segment of ``segment_chars``: :data:`BIN_EDGES` below it, then its end."""
    return (*[b for b in BIN_EDGES if b < segment_chars], segment_chars)


BINS = bins_for(SEGMENT_CHARS)
N_STREAMS = 4  # streams per trained model (seeds 0..3), the same for every model
ADAPTATION_BIN = 1  # adaptation: the loss in characters 16-64 after a switch against the first 16


@dataclass
class Stream:
    """A stream's ids ``tokens [N]`` and its segments ``(domain, start, end)`` (``end`` exclusive)."""

    tokens: torch.Tensor
    segments: list[tuple[str, int, int]]
    seed: int


def _domain_texts() -> dict[str, list[str]]:
    """Each domain's source: Shakespeare's test split as lines, the query sets' test queries."""
    return {"shakespeare": load_tinyshakespeare()["test"].splitlines(keepends=True),
            "clinc150": list(load_clinc150()["test"][0]), "banking77": list(load_banking77()["test"][0])}


def build_stream(vocab: CharVocab, *, domains: Sequence[str] = DOMAINS_IN_ORDER, segment_chars: int = SEGMENT_CHARS,
                 seed: int = 0, sources: dict[str, list[str]] | None = None) -> Stream:
    """The stream of ``domains`` in order, ``segment_chars`` characters each (module docstring).
    ``sources``: each domain's lines (default: the data sets' test splits)."""
    unknown = [d for d in domains if d not in DOMAINS]
    if unknown or not domains:
        raise ValueError(f"domains={list(domains)!r}: expected a non-empty sequence of {', '.join(DOMAINS)}.")
    if not isinstance(segment_chars, int) or segment_chars < 2:
        raise ValueError(f"segment_chars must be an int >= 2, got {segment_chars!r}.")
    sources = sources if sources is not None else _domain_texts()
    known = set(vocab.chars)
    rng = np.random.default_rng(seed)
    used: dict[str, set[int]] = {d: set() for d in DOMAINS}
    pieces, segments, start = [], [], 0
    for domain in domains:
        lines = sources[domain]
        if domain == "shakespeare":  # a contiguous passage from a line start, away from earlier passages
            text = ""
            for _ in range(100):
                first = int(rng.integers(0, len(lines)))
                if not any(abs(first - u) < 2 * segment_chars // 20 for u in used[domain]):
                    break
            used[domain].add(first)
            i = first
            while len(text) < segment_chars:
                text += "".join(c for c in lines[i % len(lines)] if c in known)
                i += 1
        else:  # queries not used before in this stream, one per line
            order = [int(j) for j in rng.permutation(len(lines)) if int(j) not in used[domain]]
            text = ""
            for j in order:
                query = "".join(c for c in lines[j] if c in known).strip()
                if query:
                    text += query + "\n"
                    used[domain].add(j)
                if len(text) >= segment_chars:
                    break
            if len(text) < segment_chars:
                raise ValueError(f"{domain} has too few unused queries for a segment of {segment_chars} characters.")
        pieces.append(text[:segment_chars])
        segments.append((domain, start, start + segment_chars))
        start += segment_chars
    return Stream(vocab.encode("".join(pieces)), segments, seed)


def attention_layers(model: nn.Module) -> list[nn.Module]:
    """The attention layers of ``model`` (:class:`nlteach.models.CausalSelfAttention`)."""
    return [m for m in model.modules() if isinstance(m, CausalSelfAttention)]


def set_attention_window(model: nn.Module, window: int | None) -> None:
    """Every attention layer of ``model`` sees at most the last ``window`` tokens (None: all)."""
    for m in attention_layers(model):
        m.window = window


@torch.no_grad()
def stream_nll(model: nn.Module, tokens: torch.Tensor, *, window: int | None) -> torch.Tensor:
    """Per-character loss over a stream read in one pass: ``[N - 1]``, entry ``i`` the loss of
    ``tokens[i + 1]`` given ``tokens[: i + 1]``; attention limited to ``window`` tokens (restored after)."""
    if tokens.dim() != 1 or tokens.numel() < 2:
        raise ValueError(f"tokens must be a 1-d id tensor of at least 2 ids, got shape {tuple(tokens.shape)}.")
    windows = {m: m.window for m in attention_layers(model)}
    was_training = model.training
    model.eval()
    set_attention_window(model, window)
    try:
        device = next(model.parameters()).device
        x = tokens.to(device)[None]  # [1, N]
        logits = model(x[:, :-1])  # [1, N-1, V]
        return F.cross_entropy(logits[0].float(), x[0, 1:], reduction="none").cpu()
    finally:
        for m, w in windows.items():
            m.window = w
        model.train(was_training)


def segment_losses(nll: torch.Tensor, segments: Sequence[tuple[str, int, int]],
                   bins: Sequence[int] = BINS) -> list[list[float]]:
    """Mean loss per segment and bin of positions since the segment's start: ``[segment][bin]``.
    Position ``p`` of a segment starting at ``s`` is the character ``s + p``, predicted by entry
    ``s + p - 1`` of ``nll`` (the stream's first character has no prediction)."""
    out = []
    for _, start, end in segments:
        row = []
        for lo, hi in zip(bins[:-1], bins[1:]):
            a, b = max(start + lo, 1), min(start + hi, end)
            row.append(float(nll[a - 1:b - 1].mean()) if b > a else float("nan"))
        out.append(row)
    return out


def evaluate_streams(model: nn.Module, vocab: CharVocab, *, window: int | None, n_streams: int = N_STREAMS,
                     domains: Sequence[str] = DOMAINS_IN_ORDER, segment_chars: int = SEGMENT_CHARS,
                     bins: Sequence[int] | None = None) -> dict[str, Any]:
    """:func:`segment_losses` of ``model`` averaged over streams of seeds ``0 .. n_streams - 1``:
    ``{"domains", "segment_chars", "bins", "window", "n_streams", "loss": [segment][bin]}``
    (``bins``: default :func:`bins_for` the segment length)."""
    bins = bins_for(segment_chars) if bins is None else tuple(bins)
    sources = _domain_texts()
    per_stream = []
    for seed in range(n_streams):
        stream = build_stream(vocab, domains=domains, segment_chars=segment_chars, seed=seed, sources=sources)
        per_stream.append(segment_losses(stream_nll(model, stream.tokens, window=window), stream.segments, bins))
    loss = np.nanmean(np.array(per_stream), axis=0)  # [segment, bin]
    return {"domains": list(domains), "segment_chars": segment_chars, "bins": list(bins), "window": window,
            "n_streams": n_streams, "loss": loss.tolist()}


def cms_branches(model: nn.Module) -> list[InContextCMSBranch]:
    """The model's in-context CMS branches (one per block); a clear error for a model without one."""
    found = [m for m in model.modules() if isinstance(m, InContextCMSBranch)]
    if not found:
        raise ValueError(f"{type(model).__name__} has no in-context CMS: no level to switch off.")
    return found


def frozen_sets(n_levels: int) -> list[frozenset[int]]:
    """None, the slowest level, the two slowest, ..., all ``n_levels`` (levels are numbered fastest first)."""
    return [frozenset(range(n_levels - k, n_levels)) for k in range(n_levels + 1)]


def cms_level_records(model: nn.Module, vocab: CharVocab, *, window: int | None, segment_chars: int = SEGMENT_CHARS,
                      n_streams: int = N_STREAMS) -> list[dict[str, Any]]:
    """Which in-context CMS levels change what a trained model does on the stream:
    ``[{"frozen": [levels], "record": evaluate_streams(...)}]`` for each of :func:`frozen_sets`, the
    levels in a set switched off (:attr:`nlteach.models.InContextCMSBranch.frozen_levels`: step 0, so
    their weights stay the trained initial ones). Every branch's ``frozen_levels`` is restored after."""
    branches = cms_branches(model)
    before = [b.frozen_levels for b in branches]
    out = []
    try:
        for frozen in frozen_sets(len(branches[0].cms.periods)):
            for b in branches:
                b.frozen_levels = frozen
            with torch.no_grad():
                rec = evaluate_streams(model, vocab, window=window, segment_chars=segment_chars, n_streams=n_streams)
            out.append({"frozen": sorted(frozen), "record": rec})
    finally:
        for b, f in zip(branches, before, strict=True):
            b.frozen_levels = f
    return out


def levels_table_rows(levels: dict[str, Any]) -> list[dict[str, Any]]:
    """A written :func:`cms_level_records` file (``tools.cms_levels --out``) as table rows: per set
    of levels switched off (named by their periods), each segment's loss in its last bin of
    positions (the segment's settled loss)."""
    periods = levels["periods"]
    rows = []
    for r in levels["records"]:
        rec = r["record"]
        row: dict[str, Any] = {"switched off (periods)": ", ".join(str(periods[i]) for i in r["frozen"]) or "none"}
        for k, (d, loss) in enumerate(zip(rec["domains"], rec["loss"], strict=True)):
            row[f"{k + 1}. {d}"] = f"{loss[-1]:.3f}"
        rows.append(row)
    return rows


def visits(domains: Sequence[str]) -> dict[str, list[int]]:
    """Segment indices of each domain, in order (a domain read twice has two)."""
    out: dict[str, list[int]] = {}
    for i, d in enumerate(domains):
        out.setdefault(d, []).append(i)
    return out


def retention(record: dict[str, Any], domain: str) -> list[float]:
    """Per bin: loss on the second visit of ``domain`` minus loss on the first (one model's
    :func:`evaluate_streams` record; negative: the second visit is read better)."""
    seen = visits(record["domains"]).get(domain, [])
    if len(seen) < 2:
        raise ValueError(f"domain {domain!r} is visited {len(seen)} time(s) in {record['domains']}; retention needs two.")
    first, second = (np.array(record["loss"][i]) for i in seen[:2])
    return (second - first).tolist()


def adaptation(record: dict[str, Any], domain: str, bin_index: int = ADAPTATION_BIN) -> float:
    """How fast a model takes to a domain the stream has just switched to: on the domain's first
    visit (not the stream's first segment), the loss in bin ``bin_index`` of positions since the
    switch minus the loss in bin 0 (one model's :func:`evaluate_streams` record). Below 0: the loss
    fell as the model read the new domain; the further below, the faster it adapted. A difference
    inside one segment and one model, over the segment's first characters, so neither how well the
    model reads every domain nor a drift that builds up over thousands of characters weighs much in
    it; a model that the switch surprises more has more room to fall (bin 0 is in the record too)."""
    seen = visits(record["domains"]).get(domain, [])
    if not seen or seen[0] == 0:
        raise ValueError(f"domain {domain!r} must be switched to inside the stream {record['domains']} "
                         "(a first visit after the first segment) to measure adaptation.")
    row = record["loss"][seen[0]]
    if not 1 <= bin_index < len(row):
        raise ValueError(f"bin_index must be in [1, {len(row) - 1}] (a bin after the first of {len(row)}), "
                         f"got {bin_index}.")
    return float(row[bin_index] - row[0])


def _paired_by_seed(per_seed: Sequence[dict[str, Any]], a: str, b: str,
                    value: Callable[[dict[str, Any]], float]) -> dict[str, Any]:
    """``value(stream record)`` of arm ``a`` minus arm ``b``, seed by seed over the seeds both
    recorded a stream for (:func:`nlteach.runs.stats.paired`, plus ``"seeds"``)."""
    def by_seed(label: str) -> dict[int, float]:
        return {r["seed"]: value(r["stream"]) for r in per_seed if r["label"] == label and "stream" in r}

    va, vb = by_seed(a), by_seed(b)
    seeds = sorted(set(va) & set(vb))
    if not seeds:
        raise ValueError(f"arms {a!r} and {b!r} share no seed with a stream record.")
    return {**stats.paired([va[s] for s in seeds], [vb[s] for s in seeds]), "seeds": seeds}


def paired_retention(per_seed: Sequence[dict[str, Any]], a: str, b: str, domain: str,
                     bin_index: int = 0) -> dict[str, Any]:
    """Retention of arm ``a`` minus arm ``b`` in one bin, seed by seed (:func:`_paired_by_seed`):
    negative when ``a`` gains more from having read the domain before."""
    return _paired_by_seed(per_seed, a, b, lambda rec: retention(rec, domain)[bin_index])


def paired_adaptation(per_seed: Sequence[dict[str, Any]], a: str, b: str, domain: str,
                      bin_index: int = ADAPTATION_BIN) -> dict[str, Any]:
    """:func:`adaptation` of arm ``a`` minus arm ``b``, seed by seed (:func:`_paired_by_seed`):
    negative when ``a``'s loss falls further, i.e. ``a`` adapts to the new domain faster."""
    return _paired_by_seed(per_seed, a, b, lambda rec: adaptation(rec, domain, bin_index))


def draw_stream(fig, per_seed: Sequence[dict[str, Any]], labels: Sequence[str]):
    """Loss against position in the stream (bin means, averaged over seeds), one line per arm;
    the segments' domains marked."""
    ax = fig.add_subplot(1, 1, 1)
    for i, label in enumerate(labels):
        recs = [r["stream"] for r in per_seed if r["label"] == label and "stream" in r]
        if not recs:
            continue
        first = recs[0]
        loss = np.mean([np.array(r["loss"]) for r in recs], axis=0)  # [segment, bin]
        bins, n = first["bins"], first["segment_chars"]
        xs, ys = [], []
        for s in range(len(first["domains"])):
            for j in range(len(bins) - 1):
                xs.append(s * n + (bins[j] + bins[j + 1]) / 2)
                ys.append(loss[s, j])
        ax.plot(xs, ys, marker="o", ms=3, color=f"C{i}", label=f"{label} ({len(recs)} seeds)")
    if per_seed:
        rec = next((r["stream"] for r in per_seed if "stream" in r), None)
        if rec is not None:
            n = rec["segment_chars"]
            for s, d in enumerate(rec["domains"]):
                ax.axvline(s * n, color="0.7", lw=0.8)
                ax.text(s * n + n / 2, 1.0, d, transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=8)
    ax.set_xlabel("position in the stream (characters)")
    ax.set_ylabel("loss (nats per character)")
    ax.legend(fontsize=8)
    return fig
