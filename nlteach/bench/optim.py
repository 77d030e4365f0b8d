"""Time per step of every optimizer of :mod:`nlteach.optim` (and torch's SGD and AdamW), relative to
SGD with momentum on the same model, measured side by side in one run.

The model is notebook 06's character MLP (embedding of a 16-character context, two hidden GELU
layers, a linear head) at the preset's width, on random tokens (the data does not matter for
timing). Two ratios per optimizer: a full training step (forward, backward, ``step()``) and
``optimizer.step()`` alone. The optimizers are timed round-robin, ``--rounds`` times (each round
starts at a different optimizer), and the median of the rounds is kept, so that a change in
machine load hits every optimizer alike.
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import torch

from nlteach import optim as nlo
from nlteach.bench import measure, text_table
from nlteach.config import by_preset
from nlteach.nn import SmallMLP
from nlteach.runs.cli import positive_int

DESCRIPTION = "time per step of each optimizer (nlteach.optim, AdamW) relative to SGD+momentum"

OPTIMIZERS = {
    "SGD": lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9),
    "MomentumMemory": lambda ps: nlo.MomentumMemory(ps, lr=0.01),
    "AdamW": lambda ps: torch.optim.AdamW(ps, lr=1e-3),
    "PreconditionedMomentum": lambda ps: nlo.PreconditionedMomentum(ps, lr=1e-3),
    "DeltaMomentum": lambda ps: nlo.DeltaMomentum(ps, lr=1e-3),
    "DMGD": lambda ps: nlo.DeepMomentum(ps, lr=1e-3),
    "Muon": lambda ps: nlo.Muon(ps, lr=1e-3),
    "M3": lambda ps: nlo.M3(ps, lr=1e-5),
    "DGD": lambda ps: nlo.DGD(ps, lr=1e-3),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hidden", type=positive_int, default=None, help="hidden width (default: by preset)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="batch size (default: by preset)")
    p.add_argument("--rounds", type=positive_int, default=3, help="round-robin rounds (median kept)")
    p.add_argument("--repeat", type=positive_int, default=5, help="timed repeats per measurement")
    p.add_argument("--only", nargs="*", default=None, help=f"subset of {list(OPTIMIZERS)}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    hidden = args.hidden or by_preset(tiny=32, laptop=128, full=512, preset=args.preset)
    batch = args.batch_size or by_preset(tiny=16, laptop=64, full=256, preset=args.preset)
    context, vocab, embed = 16, 65, 8
    names = ["SGD"] + [n for n in (args.only or OPTIMIZERS) if n != "SGD"]
    for n in names:
        if n not in OPTIMIZERS:
            raise SystemExit(f"--only: unknown optimizer {n!r}; choose from {list(OPTIMIZERS)}")
    dev = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(vocab, (batch, context), generator=gen).to(dev)
    y = torch.randint(vocab, (batch,), generator=gen).to(dev)
    setups = {}
    for n in names:
        torch.manual_seed(0)
        model = SmallMLP(context, hidden, vocab, vocab=vocab, embed=embed).to(dev)
        opt = OPTIMIZERS[n](list(model.parameters()))
        if isinstance(opt, nlo.DGD):
            opt.watch(model)

        def train_step(model=model, opt=opt) -> None:
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

        def grads(model=model, opt=opt) -> None:
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()

        train_step()  # create the optimizer state
        setups[n] = (train_step, grads, opt)
    step_t: dict[str, list[float]] = {n: [] for n in names}
    opt_t: dict[str, list[float]] = {n: [] for n in names}
    for r in range(max(1, args.rounds)):
        for n in names[r % len(names):] + names[: r % len(names)]:  # rotate: no fixed first slot
            train_step, grads, opt = setups[n]
            step_t[n].append(measure(train_step, device=dev, warmup=1, repeat=args.repeat))
            if isinstance(opt, nlo.DGD):  # DGD's step needs the inputs recorded by this pass
                t_all = measure(train_step, device=dev, warmup=0, repeat=args.repeat)
                t_grad = measure(grads, device=dev, warmup=0, repeat=args.repeat)
                opt._records.clear()
                opt_t[n].append(max(t_all - t_grad, 1e-9))
            else:
                grads()
                opt_t[n].append(measure(opt.step, device=dev, warmup=1, repeat=args.repeat))
    base_step = statistics.median(step_t["SGD"])
    base_opt = statistics.median(opt_t["SGD"])
    rows = []
    for n in names:
        s, o = statistics.median(step_t[n]), statistics.median(opt_t[n])
        rows.append({"optimizer": n, "step_ratio": s / base_step, "opt_ratio": o / base_opt,
                     "step_ms": 1e3 * s, "opt_ms": 1e3 * o})
    n_params = sum(p.numel() for p in SmallMLP(context, hidden, vocab, vocab=vocab, embed=embed).parameters())
    print(f"character MLP: hidden={hidden}, batch={batch}, {n_params:,} parameters, device={dev}, "
          f"threads={torch.get_num_threads()}")
    print("time relative to SGD (momentum 0.9), measured side by side in this run "
          "(ms columns are for information only):")
    print(text_table(rows, ["optimizer", "step_ratio", "opt_ratio", "step_ms", "opt_ms"]))
    return {"hidden": hidden, "batch_size": batch, "params": n_params, "rows": rows}
