"""``python -m nlteach.bench memory``: linear attention and (gated) delta rule, chunked vs naive.

For each rule it times the naive token loop and the chunked version side by side in one process,
forward and forward+backward, and prints the speed-up (naive time / chunked time), tokens/s and the
chunked version's achieved FLOP rate as a fraction of a plain matmul measured in the same run.

FLOP counts are those of the chunked algorithm as implemented (matrix products and the triangular
solve; element-wise work is not counted), see :func:`chunked_flops`; forward+backward is counted
as 3x the forward (the usual convention). Absolute times depend on the machine and its load; the
ratios are what to compare. On CPUs set ``MALLOC_MMAP_THRESHOLD_=33554432
MALLOC_TRIM_THRESHOLD_=4294967296`` in the environment: without them glibc returns large
buffers to the kernel after every backward pass and the timings fill with page faults.

``--fla PATH`` also times flash-linear-attention's pure-PyTorch chunked delta rule
(``fla/ops/delta_rule/naive.py``, function ``delta_rule_chunkwise``) from a file you installed
yourself (``auto`` finds it in an installed ``fla`` package without importing the package).
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from nlteach import memory
from nlteach.bench import format_table, matmul_flops_per_s, measure, sync
from nlteach.config import by_preset

DESCRIPTION = "linear attention, delta rule, gated delta rule: chunked vs naive (fwd, fwd+bwd)"
RULES = ("linear", "delta", "gated_delta")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--T", type=int, default=None, help="sequence length (default: by preset)")
    p.add_argument("--BH", type=int, default=None, help="batch x heads (default: by preset)")
    p.add_argument("--d", type=int, default=None, help="d_k = d_v (default: by preset)")
    p.add_argument("--chunk-size", type=int, default=64, help="chunk size C of the chunked versions")
    p.add_argument("--rules", default=",".join(RULES), help=f"comma-separated subset of {RULES}")
    p.add_argument("--repeat", type=int, default=None, help="timed repetitions (median is reported)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16"])
    p.add_argument("--no-naive-backward", action="store_true",
                   help="skip timing the naive loop's backward pass (the slowest measurement)")
    p.add_argument("--health", action="store_true",
                   help="also run the numerical health checks (T=65536 fp32 finite; bf16 vs fp32)")
    p.add_argument("--fla", default=None, metavar="PATH|auto",
                   help="also time fla's delta_rule_chunkwise from this naive.py (or 'auto')")


def chunked_flops(rule: str, T: int, BH: int, d_k: int, d_v: int, C: int) -> float:
    """FLOPs of one forward pass of the chunked algorithm (matmuls and the triangular solve)."""
    Tp = -(-T // C) * C  # padded length
    if rule == "linear":
        per_bh = 2 * Tp * C * (d_k + d_v) + 4 * Tp * d_k * d_v
    else:
        per_bh = (
            4 * Tp * C * d_k  # K K^T and Q K^T
            + Tp * C * (d_k + d_v)  # triangular solve for U and W
            + 2 * Tp * C * (d_k + d_v)  # P U and P W
            + 2 * Tp * d_k * (d_k + d_v)  # K^T U and K^T W
            + 2 * (Tp // C) * d_k * d_k * d_v  # the state recurrence S <- E S + F
            + 2 * Tp * d_k * d_v  # Q' S
        )
    return float(per_bh * BH)


def make_inputs(rule: str, BH: int, T: int, d: int, *, dtype: torch.dtype, device: torch.device,
                seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    shape = (1, BH, T)
    t = {
        "q": torch.randn(*shape, d, generator=g),
        "k": F.normalize(torch.randn(*shape, d, generator=g), dim=-1),
        "v": torch.randn(*shape, d, generator=g),
    }
    if rule != "linear":
        t["beta"] = torch.rand(*shape, generator=g)
    if rule == "gated_delta":
        t["alpha"] = 0.9 + 0.1 * torch.rand(*shape, generator=g)
    return {n: x.to(device=device, dtype=dtype) for n, x in t.items()}


def _fns(rule: str, C: int):
    if rule == "linear":
        return memory.linear_attention_naive, lambda **kw: memory.linear_attention_chunked(**kw, chunk_size=C)
    return memory.delta_rule_naive, lambda **kw: memory.delta_rule_chunked(**kw, chunk_size=C)


def _fwd(fn, inputs):
    def run():
        with torch.no_grad():
            fn(**inputs)
    return run


def _fwd_bwd(fn, inputs):
    leaves = {n: x.detach().clone().requires_grad_() for n, x in inputs.items()}

    def run():
        for x in leaves.values():
            x.grad = None
        o, S = fn(**leaves)
        (o.float().sum() + S.float().sum()).backward()
    return run


def load_fla_chunkwise(path: str):
    """fla's ``delta_rule_chunkwise`` loaded from its single file (the fla package itself imports
    triton, which a CPU machine may not have)."""
    if path == "auto":
        spec = importlib.util.find_spec("fla")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("--fla auto: the `fla` package (flash-linear-attention) is not installed.")
        path = str(Path(next(iter(spec.submodule_search_locations))) / "ops" / "delta_rule" / "naive.py")
    if not Path(path).is_file():
        raise SystemExit(f"--fla: no such file {path!r}")
    spec = importlib.util.spec_from_file_location("_fla_delta_rule_naive", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.delta_rule_chunkwise


def health_checks(device: torch.device, d: int, C: int) -> dict:
    """T = 65536 in fp32 stays finite; bf16 chunked is within 2e-2 relative RMS of fp32."""
    out = {}
    x = make_inputs("gated_delta", 1, 65536, d, dtype=torch.float32, device=device, seed=1)
    with torch.no_grad():
        for rule in RULES:
            kw = {n: x[n] for n in ("q", "k", "v")}
            if rule != "linear":
                kw["beta"] = x["beta"]
            if rule == "gated_delta":
                kw["alpha"] = x["alpha"]
            o, S = _fns(rule, C)[1](**kw)
            out[f"{rule}_T65536_fp32_finite"] = bool(torch.isfinite(o).all() and torch.isfinite(S).all())
        y = make_inputs("gated_delta", 2, 4096, d, dtype=torch.float32, device=device, seed=2)
        for rule in ("delta", "gated_delta"):
            alpha = y["alpha"] if rule == "gated_delta" else None
            o32, S32 = memory.delta_rule_chunked(y["q"], y["k"], y["v"], y["beta"], alpha=alpha,
                                                 chunk_size=C)
            bf = {n: t.bfloat16() for n, t in y.items()}
            o16, _ = memory.delta_rule_chunked(bf["q"], bf["k"], bf["v"], bf["beta"],
                                               alpha=bf["alpha"] if alpha is not None else None,
                                               chunk_size=C)
            err = ((o16.float() - o32).pow(2).mean().sqrt() / o32.pow(2).mean().sqrt()).item()
            out[f"{rule}_bf16_rel_rms_vs_fp32"] = err
    return out


def run(args: argparse.Namespace) -> dict:
    device = args.device
    T = args.T or by_preset(tiny=256, laptop=4096, full=16384, preset=args.preset)
    BH = args.BH or by_preset(tiny=2, laptop=8, full=32, preset=args.preset)
    d = args.d or by_preset(tiny=32, laptop=64, full=128, preset=args.preset)
    repeat = args.repeat or by_preset(tiny=2, laptop=5, full=10, preset=args.preset)
    C = args.chunk_size
    dtype = getattr(torch, args.dtype)
    rules = [r.strip() for r in args.rules.split(",") if r.strip()]
    for r in rules:
        if r not in RULES:
            raise SystemExit(f"--rules: unknown rule {r!r}; expected a subset of {RULES}")

    mm_rate = matmul_flops_per_s(1024, device=device, dtype=dtype)
    print(f"shape: B*H={BH}, T={T}, d_k=d_v={d}, chunk_size={C}, {args.dtype}, device={device}, "
          f"threads={torch.get_num_threads()}")
    print(f"plain matmul (1024^3) on this machine now: {mm_rate / 1e9:.1f} GFLOP/s")
    rows, per_rule = [], {}
    naive_repeat = max(1, repeat // 2)
    for rule in rules:
        naive, chunked = _fns(rule, C)
        x = make_inputs(rule, BH, T, d, dtype=dtype, device=device)
        t0 = time.perf_counter()
        res = {
            "naive_fwd_s": measure(_fwd(naive, x), device=device, repeat=naive_repeat),
            "chunked_fwd_s": measure(_fwd(chunked, x), device=device, repeat=repeat),
            "chunked_fwd_bwd_s": measure(_fwd_bwd(chunked, x), device=device, repeat=repeat),
        }
        if not args.no_naive_backward:
            res["naive_fwd_bwd_s"] = measure(_fwd_bwd(naive, x), device=device, warmup=0,
                                             repeat=naive_repeat)
        # the matmul rate again, right after this rule's timings: the machine's load drifts, so
        # the fraction uses the better of the two measurements (the conservative choice)
        mm_rate = max(mm_rate, matmul_flops_per_s(1024, device=device, dtype=dtype))
        flops = chunked_flops(rule, T, BH, d, d, C)
        res["chunked_fwd_flops"] = flops
        res["speedup_fwd"] = res["naive_fwd_s"] / res["chunked_fwd_s"]
        res["speedup_fwd_bwd"] = (res["naive_fwd_bwd_s"] / res["chunked_fwd_bwd_s"]
                                  if "naive_fwd_bwd_s" in res else None)
        res["chunked_fwd_tokens_per_s"] = BH * T / res["chunked_fwd_s"]
        res["chunked_fwd_bwd_tokens_per_s"] = BH * T / res["chunked_fwd_bwd_s"]
        res["fwd_matmul_fraction"] = flops / res["chunked_fwd_s"] / mm_rate
        res["fwd_bwd_matmul_fraction"] = 3 * flops / res["chunked_fwd_bwd_s"] / mm_rate
        res["wall_s"] = time.perf_counter() - t0
        per_rule[rule] = res
        print(f"  {rule}: chunked is {res['speedup_fwd']:.1f}x faster forward"
              + (f", {res['speedup_fwd_bwd']:.1f}x forward+backward" if res["speedup_fwd_bwd"] else "")
              + f"; forward at {100 * res['fwd_matmul_fraction']:.0f}% of the matmul rate "
              f"({res['wall_s']:.0f} s)", flush=True)
        rows.append({"rule": rule, "fwd speed-up": res["speedup_fwd"],
                     "fwd+bwd speed-up": res["speedup_fwd_bwd"],
                     "fwd tok/s": res["chunked_fwd_tokens_per_s"],
                     "fwd+bwd tok/s": res["chunked_fwd_bwd_tokens_per_s"],
                     "fwd % matmul": 100 * res["fwd_matmul_fraction"],
                     "fwd+bwd % matmul": 100 * res["fwd_bwd_matmul_fraction"]})
    print("\nchunked vs naive (speed-up = naive time / chunked time, measured side by side):")
    print(format_table(rows, list(rows[0]) if rows else ["rule"]))
    print(f"(fractions use the best plain-matmul rate measured in this run: {mm_rate / 1e9:.1f} GFLOP/s)")
    result = {"shape": {"BH": BH, "T": T, "d": d, "chunk_size": C, "dtype": args.dtype},
              "matmul_flops_per_s": mm_rate, "rules": per_rule}

    if args.fla:
        result["fla"] = compare_fla(args.fla, BH, T, d, C, dtype, device, repeat, per_rule.get("delta"))
    if args.health:
        result["health"] = health_checks(device, d, C)
        print("\nnumerical health:", result["health"])
    return result


def compare_fla(path: str, BH: int, T: int, d: int, C: int, dtype: torch.dtype,
                device: torch.device, repeat: int, ours: dict | None) -> dict:
    """Time fla's ``delta_rule_chunkwise`` and ours on the same inputs, interleaved."""
    fla_chunkwise = load_fla_chunkwise(path)
    x = make_inputs("delta", BH, T, d, dtype=dtype, device=device)
    # fla scales q by d^-1/2 inside and needs T % C == 0: feed ours the scaled q to compare outputs.
    Cf = C if T % C == 0 else next(c for c in (64, 32, 16, 8, 4, 2, 1) if T % c == 0)

    def fla_fn(q, k, v, beta):
        return fla_chunkwise(q, k, v, beta, chunk_size=Cf)

    def ours_fn(q, k, v, beta):
        return memory.delta_rule_chunked(q * d**-0.5, k, v, beta, chunk_size=C)

    with torch.no_grad():
        o_f, S_f = fla_fn(**x)
        o_o, S_o = ours_fn(**x)
    diff = ((o_f - o_o).pow(2).mean().sqrt() / o_o.pow(2).mean().sqrt()).item()
    res = {"fla_chunk_size": Cf, "output_rel_rms_vs_ours": diff}
    for _ in range(2):  # interleave to spread load changes evenly
        for name, fn in (("fla", fla_fn), ("ours", ours_fn)):
            tf = measure(_fwd(fn, x), device=device, repeat=repeat)
            tb = measure(_fwd_bwd(fn, x), device=device, repeat=repeat)
            res.setdefault(f"{name}_fwd_s", []).append(tf)
            res.setdefault(f"{name}_fwd_bwd_s", []).append(tb)
    for key in [k for k in res if k.endswith("_s")]:
        res[key] = min(res[key])
    res["ours_vs_fla_fwd"] = res["fla_fwd_s"] / res["ours_fwd_s"]
    res["ours_vs_fla_fwd_bwd"] = res["fla_fwd_bwd_s"] / res["ours_fwd_bwd_s"]
    print(f"\nfla delta_rule_chunkwise (chunk {Cf}) vs ours (chunk {C}), same inputs, interleaved:")
    print(f"  outputs agree to rel. RMS {diff:.2e}")
    print(f"  ours is {res['ours_vs_fla_fwd']:.2f}x as fast forward, "
          f"{res['ours_vs_fla_fwd_bwd']:.2f}x as fast forward+backward "
          f"(>1 = ours faster)")
    sync(device)
    return res
