"""A pilot run of the long-context runner: one model, one seed, a budget row plus overrides. These
are the runs the learned budgets were chosen with (docs/decisions.md#longctx-learned-budget).

    python -m tools.longctx_pilot --task mk-niah --seed 1 --set steps=6000 n_layers=3

Prints the settings, the training loss every ``--every`` steps, the accuracy at every evaluation
length, for the needle tasks the accuracy of each answer position at the training length (the
first digit: whether the queried needle was found; the later ones: whether its value was copied),
and the process's CPU seconds. Nothing is written: a pilot informs a choice; the committed runs
(``python -m nlteach.longctx ... --budget learned``) are the evidence.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch

from nlteach.longctx import runner
from nlteach.longctx.tasks import NIAH, RECALL_TASKS, accuracy_by_answer, make_rng


def parse_setting(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as JSON where it parses (``3``, ``[1, 2]``, ``{"n_keys": 4}``,
    ``null``), else as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set takes KEY=VALUE, got {text!r}.")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def answer_positions(model: torch.nn.Module, cfg: runner.LongCtxConfig, seed: int, n: int) -> list[float] | None:
    """Accuracy of each answer position on ``n`` fresh examples at the longest training length
    (needle tasks only; None for the others)."""
    task = cfg.make_task()
    if not isinstance(task, NIAH):
        return None
    L = max(cfg.train_lengths)
    b = task.sample(n, L, make_rng(seed, 2, L))
    model.eval()
    with torch.no_grad():
        pred = model(b.inputs).argmax(-1)
    return accuracy_by_answer(pred, b.targets)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.longctx_pilot", description=__doc__.split("\n\n")[0])
    p.add_argument("--task", choices=RECALL_TASKS, required=True)
    p.add_argument("--model", choices=runner.MODELS, default="transformer")
    p.add_argument("--preset", default="laptop", help="size preset (default: laptop)")
    p.add_argument("--budget", choices=runner.BUDGETS, default="learned", help="the row of training settings")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="settings", nargs="*", type=parse_setting, default=[], metavar="KEY=VALUE",
                   help="overrides of LongCtxConfig or ModelConfig fields (steps=6000 n_layers=3 ...)")
    p.add_argument("--every", type=int, default=200, help="print the training loss every EVERY steps")
    p.add_argument("--examples", type=int, default=512, help="examples for the accuracy by answer position")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = runner.preset_config(args.task, args.model, args.preset, seeds=(args.seed,), budget=args.budget,
                                   **dict(args.settings))
    except ValueError as e:
        parser.error(str(e))
    torch.set_num_threads(args.threads)
    print("settings:", json.dumps(cfg.settings()), flush=True)
    t0 = time.process_time()
    record, model = runner.run_seed(cfg, args.seed, return_model=True)
    curve = [(s, round(v, 3)) for s, v in record["loss_curve"] if s % args.every == 0 or s == cfg.steps]
    print("loss:", " ".join(f"{s}:{v}" for s, v in curve))
    print("accuracy by length:", {L: round(a, 3) for L, a in record["accuracy"].items()})
    positions = answer_positions(model, cfg, args.seed, args.examples)
    if positions is not None:
        print(f"accuracy by answer position at {max(cfg.train_lengths)} tokens:", [round(a, 3) for a in positions])
    print(f"{record['n_params']:,} parameters; {time.process_time() - t0:.0f} CPU seconds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
