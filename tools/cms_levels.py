"""Which in-context CMS levels change what a trained model does on notebook 09's domain stream.

    python -m tools.cms_levels --run results/lm_reference_longer/hope

Loads the trained model of a run folder (its final checkpoint) and reads the domain streams of
:mod:`nlteach.experiments.stream` (attention limited to ``--window`` characters, as the committed
stream records are) once as trained, then with the in-context updates of the slowest level
switched off, then of the two slowest, and so on down to every level
(:attr:`nlteach.models.InContextCMSBranch.frozen_levels`: the level's step ``eta_t`` is 0, so its
weights stay the trained initial ones). Prints the mean loss per segment and bin of positions since
the segment's start. Nothing is written: a diagnosis, recorded with its command where it informed a
decision (``docs/decisions.md#domain-stream``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from nlteach.experiments import stream
from nlteach.models import InContextCMSBranch
from nlteach.train import load_model


def cms_branches(model: torch.nn.Module) -> list[InContextCMSBranch]:
    """The model's in-context CMS branches (one per block); a clear error for a model without one."""
    found = [m for m in model.modules() if isinstance(m, InContextCMSBranch)]
    if not found:
        raise ValueError(f"{type(model).__name__} has no in-context CMS: nothing to switch off.")
    return found


def frozen_sets(n_levels: int) -> list[frozenset[int]]:
    """None, the slowest level, the two slowest, ..., all ``n_levels`` (levels are numbered fastest first)."""
    return [frozenset(range(n_levels - k, n_levels)) for k in range(n_levels + 1)]


def level_records(model: torch.nn.Module, vocab: Any, *, window: int | None, segment_chars: int = stream.SEGMENT_CHARS,
                  n_streams: int = stream.N_STREAMS) -> list[dict[str, Any]]:
    """``[{"frozen": [levels], "record": stream.evaluate_streams(...)}]`` for each of :func:`frozen_sets`;
    every branch's ``frozen_levels`` is restored afterwards."""
    branches = cms_branches(model)
    periods = branches[0].cms.periods
    before = [b.frozen_levels for b in branches]
    out = []
    try:
        for frozen in frozen_sets(len(periods)):
            for b in branches:
                b.frozen_levels = frozen
            with torch.no_grad():
                rec = stream.evaluate_streams(model, vocab, window=window, segment_chars=segment_chars,
                                              n_streams=n_streams)
            out.append({"frozen": sorted(frozen), "record": rec})
    finally:
        for b, f in zip(branches, before, strict=True):
            b.frozen_levels = f
    return out


def table(records: list[dict[str, Any]], periods: tuple[int, ...]) -> str:
    """The records as text: one block per frozen set, one row per segment, one column per bin."""
    lines = []
    bins = records[0]["record"]["bins"]
    head = " ".join(f"{a}-{b}".rjust(9) for a, b in zip(bins[:-1], bins[1:], strict=True))
    for r in records:
        off = ", ".join(str(periods[i]) for i in r["frozen"]) or "none"
        lines += [f"levels switched off (periods): {off}", f"  {'segment':12s} {head}"]
        lines += [f"  {d:12s} " + " ".join(f"{x:9.3f}" for x in row)
                  for d, row in zip(r["record"]["domains"], r["record"]["loss"], strict=True)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.cms_levels", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True, help="a run folder holding a trained model's checkpoint")
    p.add_argument("--window", type=int, default=256, help="attention window in characters (the training length)")
    p.add_argument("--segment-chars", type=int, default=stream.SEGMENT_CHARS)
    p.add_argument("--streams", type=int, default=stream.N_STREAMS)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, vocab, _ = load_model(args.run, device="cpu")
    model.eval()
    records = level_records(model, vocab, window=args.window, segment_chars=args.segment_chars,
                            n_streams=args.streams)
    print(table(records, cms_branches(model)[0].cms.periods))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
