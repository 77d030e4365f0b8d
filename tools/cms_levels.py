"""Which in-context CMS levels change what a trained model does on notebook 09's domain stream.

    python -m tools.cms_levels --run results/lm_reference_longer/hope

Loads the trained model of a run folder (its final checkpoint) and reads the domain streams of
:mod:`nlteach.experiments.stream` (attention limited to ``--window`` characters, as the committed
stream records are) once as trained, then with the in-context updates of the slowest level
switched off, then of the two slowest, and so on down to every level
(:func:`nlteach.experiments.stream.cms_level_records`: the level's step ``eta_t`` is 0, so its
weights stay the trained initial ones). Prints the mean loss per segment and bin of positions since
the segment's start. With ``--out FILE`` it also writes them as JSON with their provenance (commit,
clean tree, command) and the run's own (``docs/decisions.md#domain-stream`` reads
``results/lm_reference_longer/hope/cms_levels.json``, and notebook 09 prints it).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from nlteach.experiments import stream
from nlteach.runs.io import atomic_write_json, read_json
from nlteach.runs.provenance import provenance
from nlteach.train import load_model


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
    p.add_argument("--out", type=Path, default=None, help="also write the records here as JSON")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, vocab, _ = load_model(args.run, device="cpu")
    model.eval()
    records = stream.cms_level_records(model, vocab, window=args.window, segment_chars=args.segment_chars,
                            n_streams=args.streams)
    periods = stream.cms_branches(model)[0].cms.periods
    print(table(records, periods))
    if args.out is not None:
        trained = args.run / "results.json"
        atomic_write_json(args.out, {
            "run": str(args.run), "periods": list(periods), "window": args.window,
            "segment_chars": args.segment_chars, "n_streams": args.streams, "records": records,
            "run_provenance": read_json(trained).get("provenance") if trained.exists() else None,
            "provenance": provenance(device="cpu")})
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
