"""Step time (forward + backward) of every registered language model, relative to the Transformer.

Every model is sized to the same parameter budget (:func:`nlteach.models.size_to_budget`), fed the
same batch, and timed in this one process with the measurements interleaved (round-robin over the
models, ``--rounds`` times), so machine load affects all of them alike. The result is the ratio
``step time / Transformer step time``; tokens/s is printed for information only.

For stable CPU numbers run with ``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296``.
"""

from __future__ import annotations

import argparse
import os
import statistics

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from nlteach.bench import measure, text_table
from nlteach.config import by_preset
from nlteach.models import (
    IMPLS,
    MODELS,
    ModelConfig,
    available_models,
    build_model,
    count_parameters,
    size_to_budget,
)
from nlteach.runs.cli import positive_int

DESCRIPTION = "step time (forward+backward) of each model relative to the Transformer at equal parameters"
BASELINE = "transformer"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default=None,
                   help=f"comma-separated model names (default: all registered: {','.join(available_models())})")
    p.add_argument("--impls", default="chunked", help="comma-separated implementations to time: naive,chunked")
    p.add_argument("--params", type=positive_int, default=None, help="parameter budget (default: by preset)")
    p.add_argument("--seq-len", type=positive_int, default=None, help="T (default: by preset; 512 at laptop)")
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument("--n-layers", type=positive_int, default=None)
    p.add_argument("--n-heads", type=positive_int, default=None)
    p.add_argument("--vocab-size", type=positive_int, default=65, help="tiny Shakespeare has 65 characters")
    p.add_argument("--rounds", type=positive_int, default=None, help="interleaved timing rounds")
    p.add_argument("--chunk-size", type=positive_int, default=None,
                   help="chunk of the memory models' main memory (default: ModelConfig's)")
    p.add_argument("--proj-chunk-size", type=positive_int, default=None,
                   help="chunk of self-modifying Titans' k/v/eta/alpha memories (default: ModelConfig's)")
    p.add_argument("--memory-hidden", type=positive_int, default=None,
                   help="hidden width of each per-head MLP memory (default: ModelConfig's, the head width); "
                        "the memories' share of the parameters, and so the FLOP ratio, falls with it")


def training_step(model: torch.nn.Module, idx: torch.Tensor, amp: bool):
    """A function that runs one training step of ``model`` on ``idx [B, T+1]`` (forward on the first
    ``T`` tokens, next-token cross-entropy, backward; bf16 autocast on CUDA when ``amp``)."""
    def step() -> None:
        model.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            logits = model(idx[:, :-1])
        F.cross_entropy(logits.float().flatten(0, 1), idx[:, 1:].flatten()).backward()

    return step


def run(args: argparse.Namespace) -> dict:
    preset, device = args.preset, torch.device(args.device)
    names = args.models.split(",") if args.models else available_models()
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise SystemExit(f"--models: {unknown} not registered; available: {', '.join(available_models())}")
    impls = args.impls.split(",")
    if any(i not in IMPLS for i in impls):
        raise SystemExit(f"--impls: {args.impls!r}; each must be one of {IMPLS}")
    budget = int(args.params or by_preset(tiny=5e4, laptop=2e6, full=2.5e7, preset=preset))
    T = args.seq_len or by_preset(tiny=64, laptop=512, full=2048, preset=preset)
    B = args.batch_size or by_preset(tiny=2, laptop=4, full=8, preset=preset)
    n_layers = args.n_layers or by_preset(tiny=2, laptop=4, full=8, preset=preset)
    n_heads = args.n_heads or by_preset(tiny=2, laptop=4, full=8, preset=preset)
    rounds = args.rounds or by_preset(tiny=1, laptop=5, full=5, preset=preset)
    amp = device.type == "cuda"
    overrides = {k: v for k, v in (("chunk_size", getattr(args, "chunk_size", None)),
                                ("proj_chunk_size", getattr(args, "proj_chunk_size", None)),
                                ("memory_hidden", getattr(args, "memory_hidden", None))) if v is not None}
    try:  # every model's size, before anything is built or timed
        base = ModelConfig(vocab_size=args.vocab_size, dim=2 * n_heads, n_layers=n_layers, n_heads=n_heads, **overrides)
        cfgs = {name: size_to_budget(name, budget, base) for name in names}
    except ValueError as e:  # a budget too small, a chunk size that does not fit, ...
        raise SystemExit(f"--params {budget} (or the sizes): {e}") from None
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(0, args.vocab_size, (B, T + 1), generator=gen).to(device)

    rows, steps = [], {}
    for name in names:
        cfg = cfgs[name]
        for impl in (impls if MODELS[name].impl_dependent else impls[:1]):
            torch.manual_seed(0)
            model = build_model(name, cfg.replace(impl=impl)).to(device)
            key = (name, impl if MODELS[name].impl_dependent else "-")
            steps[key] = training_step(model, idx, amp)
            rows.append({"model": name, "impl": key[1], "dim": cfg.dim, "params": count_parameters(model)})
    if (BASELINE, "-") not in steps:
        raise SystemExit(f"the baseline {BASELINE!r} must be among --models to compute ratios")

    for row, fn in zip(rows, steps.values()):
        row["gflop_step"] = step_flops(fn) / 1e9
    base_flops = next(r["gflop_step"] for r in rows if r["model"] == BASELINE)
    for row in rows:
        row["flops_x"] = row["gflop_step"] / base_flops

    times: dict = {k: [] for k in steps}
    for _ in range(rounds):  # interleave: each round times every model once
        for key, fn in steps.items():
            times[key].append(measure(fn, device=device, warmup=1, repeat=3))
    base_t = statistics.median(times[(BASELINE, "-")])
    for row in rows:
        t = statistics.median(times[(row["model"], row["impl"])])
        row["step_ms"] = 1e3 * t
        row["x_transformer"] = t / base_t
        row["tokens_per_s"] = B * T / t
        row["gflop_per_s"] = row["gflop_step"] / t  # the achieved matrix-product rate
    print(f"models at ~{budget:,} parameters, B={B}, T={T}, n_layers={n_layers}, n_heads={n_heads}, "
          f"chunk_size={base.chunk_size}, proj_chunk_size={base.proj_chunk_size}, "
          f"memory_hidden={base.memory_hidden or 'head width'}, "
          f"device={device}, {rounds} interleaved round(s); load average {_load()}")
    if device.type == "cpu" and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        print("note: set MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296 for steadier CPU times")
    print(text_table(rows, ["model", "impl", "dim", "params", "x_transformer", "flops_x", "gflop_step",
                              "gflop_per_s", "tokens_per_s", "step_ms"]))
    print("x_transformer = step time / Transformer step time, measured side by side in this run; "
          "flops_x = matrix-product FLOPs of one step (forward+backward, counted by "
          "torch.utils.flop_counter; on CPU attention over its causal triangle) / the Transformer's, the time ratio the model would have at the "
          "Transformer's FLOP rate; gflop_per_s = gflop_step / step time, the achieved rate; step_ms and tokens/s are for "
          "information only.")
    return {"budget": budget, "batch_size": B, "seq_len": T, "n_layers": n_layers, "n_heads": n_heads,
            "chunk_size": base.chunk_size, "proj_chunk_size": base.proj_chunk_size,
            "memory_hidden": base.memory_hidden,
            "rounds": rounds, "load_average": _load(), "rows": rows}


def attention_flops(q_shape, k_shape, v_shape, is_causal: bool, *, backward: bool = False) -> int:
    """Matrix-product FLOPs of softmax attention ``softmax(q k^T) v`` for ``[B, H, T, d]`` inputs:
    ``q k^T`` and ``P v`` in the forward (2 products), the recomputed scores and the four gradient
    products in the backward (5 products), each ``2 B H T_q T_k d`` FLOPs. With ``is_causal`` only
    the ``T (T + 1) / 2`` scores on or below the diagonal are counted: a causal kernel skips the rest."""
    B, H, Tq, d = q_shape
    Tk, dv = k_shape[-2], v_shape[-1]
    pairs = Tq * (Tq + 1) // 2 if is_causal and Tq == Tk else Tq * Tk
    per_product = 2 * B * H * pairs
    return per_product * ((3 * d + 2 * dv) if backward else (d + dv))


def _cpu_sdpa(q, k, v, dropout_p=0.0, is_causal=False, *args, out_shape=None, **kwargs) -> int:
    return attention_flops(q, k, v, is_causal)


def _cpu_sdpa_backward(grad_out, q, k, v, out, lse, dropout_p=0.0, is_causal=False, *args, out_shape=None,
                       **kwargs) -> int:
    return attention_flops(q, k, v, is_causal, backward=True)


def _baddbmm_inplace(self_shape, a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    """``x.baddbmm_(a, b)``: the FLOPs of the batched product ``a @ b`` (torch counts the in-place
    form as 0; the in-context CMS updates its weights and their gradients with it)."""
    batch, m, k = a_shape
    return 2 * batch * m * k * b_shape[-1]


def step_flops(step) -> float:
    """Matrix-product FLOPs (matmul, bmm, attention, ...) of one call of ``step``, forward and
    backward, as torch's FLOP counter sees them: the products the implementation executes.

    torch (2.13) has no formula for the CPU attention kernel and would count it as 0, so the
    Transformer's attention would be missing from the baseline; :func:`attention_flops` supplies it
    (causal: the lower triangle only). On CUDA torch's own formulas apply (full score matrix). The
    in-place ``baddbmm_`` (which torch also counts as 0) is counted like ``baddbmm``."""
    aten = torch.ops.aten
    cpu_attention = {aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa,
                     aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward,
                     aten.baddbmm_: _baddbmm_inplace}
    with FlopCounterMode(display=False, custom_mapping=cpu_attention) as counter:
        step()
    return float(counter.get_total_flops())


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"
