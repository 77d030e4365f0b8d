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
import gc
import importlib.util
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from nlteach import memory
from nlteach.bench import format_table, sync
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
    p.add_argument("--titans", action="store_true",
                   help="also time the Titans pair (linear and MLP memory; see `bench titans` for its options)")
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


def timed(fn, *, device: torch.device, warmup: int = 1, repeat: int = 3) -> tuple[float, float | None]:
    """Best-of-``repeat`` wall time and process CPU time of ``fn()`` (CPU time only on CPU devices).

    On a shared machine other processes' bursts slow single runs by large factors; the fastest
    run is the least disturbed one, so the suite compares minima (for every contender alike). The
    CPU time (summed over this process's threads) is reported too: others' load changes it less."""
    for _ in range(warmup):
        fn()
    sync(device)
    walls, cpus = [], []
    for _ in range(max(1, repeat)):
        gc.collect()
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        sync(device)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    cpu = min(cpus) if torch.device(device).type == "cpu" else None
    return min(walls), cpu


def _matmul_rates(device: torch.device, dtype: torch.dtype, n: int = 1024) -> tuple[float, float | None]:
    """Plain-matmul FLOP rate per wall second and per CPU second, measured now."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    wall, cpu = timed(lambda: a @ b, device=device, warmup=2, repeat=7)
    return 2 * n**3 / wall, (2 * n**3 / cpu if cpu else None)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


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

    mm_wall, mm_cpu = _matmul_rates(device, dtype)
    print(f"shape: B*H={BH}, T={T}, d_k=d_v={d}, chunk_size={C}, {args.dtype}, device={device}, "
          f"threads={torch.get_num_threads()}")
    print(f"plain matmul (1024^3) on this machine now: {mm_wall / 1e9:.1f} GFLOP/s", flush=True)
    rows, per_rule = [], {}
    naive_repeat = max(2, repeat // 2)
    for rule in rules:
        naive, chunked = _fns(rule, C)
        x = make_inputs(rule, BH, T, d, dtype=dtype, device=device)
        t0 = time.perf_counter()
        t = {
            "naive_fwd": timed(_fwd(naive, x), device=device, repeat=naive_repeat),
            "chunked_fwd": timed(_fwd(chunked, x), device=device, repeat=repeat),
            "chunked_fwd_bwd": timed(_fwd_bwd(chunked, x), device=device, repeat=repeat),
        }
        if not args.no_naive_backward:
            t["naive_fwd_bwd"] = timed(_fwd_bwd(naive, x), device=device, warmup=0, repeat=naive_repeat)
        # the matmul rate again, right after this rule's timings: the load drifts, so the
        # fractions use the best rate seen in this run (the conservative choice)
        w, c = _matmul_rates(device, dtype)
        mm_wall, mm_cpu = max(mm_wall, w), (max(mm_cpu, c) if c else None)
        flops = chunked_flops(rule, T, BH, d, d, C)
        res = {f"{k}_s": v[0] for k, v in t.items()}
        res.update({f"{k}_cpu_s": v[1] for k, v in t.items()})
        res["chunked_fwd_flops"] = flops
        for mode in ("fwd", "fwd_bwd"):
            if f"naive_{mode}" in t:
                res[f"speedup_{mode}"] = t[f"naive_{mode}"][0] / t[f"chunked_{mode}"][0]
                res[f"speedup_{mode}_cpu"] = _ratio(t[f"naive_{mode}"][1], t[f"chunked_{mode}"][1])
            mult = 1 if mode == "fwd" else 3
            res[f"chunked_{mode}_tokens_per_s"] = BH * T / t[f"chunked_{mode}"][0]
            res[f"{mode}_matmul_fraction"] = mult * flops / t[f"chunked_{mode}"][0] / mm_wall
            res[f"{mode}_matmul_fraction_cpu"] = _ratio(mult * flops / (t[f"chunked_{mode}"][1] or 0) if
                                                        t[f"chunked_{mode}"][1] else None, mm_cpu)
        res["wall_s"] = time.perf_counter() - t0
        per_rule[rule] = res
        print(f"  {rule}: chunked is {res['speedup_fwd']:.1f}x faster forward"
              + (f", {res['speedup_fwd_bwd']:.1f}x forward+backward" if "speedup_fwd_bwd" in res else "")
              + f" (wall time); forward at {100 * res['fwd_matmul_fraction']:.0f}% of the matmul rate "
              f"({res['wall_s']:.0f} s)", flush=True)
        pct = (lambda v: None if v is None else 100 * v)
        rows.append({"rule": rule, "fwd x": res["speedup_fwd"], "fwd x (cpu)": res["speedup_fwd_cpu"],
                     "fwd+bwd x": res.get("speedup_fwd_bwd"),
                     "fwd+bwd x (cpu)": res.get("speedup_fwd_bwd_cpu"),
                     "fwd tok/s": res["chunked_fwd_tokens_per_s"],
                     "fwd+bwd tok/s": res["chunked_fwd_bwd_tokens_per_s"],
                     "fwd %mm": pct(res["fwd_matmul_fraction"]),
                     "fwd %mm (cpu)": pct(res["fwd_matmul_fraction_cpu"]),
                     "fwd+bwd %mm": pct(res["fwd_bwd_matmul_fraction"]),
                     "fwd+bwd %mm (cpu)": pct(res["fwd_bwd_matmul_fraction_cpu"])})
    print("\nchunked vs naive, measured side by side. x = naive time / chunked time; %mm = chunked "
          "FLOP rate as % of a plain matmul's;\n(cpu) = the same from process CPU time, which "
          "other processes' load barely changes:")
    print(format_table(rows, list(rows[0]) if rows else ["rule"]))
    print(f"(best plain-matmul rate in this run: {mm_wall / 1e9:.1f} GFLOP/s wall"
          + (f", {mm_cpu / 1e9:.1f} GFLOP per CPU second)" if mm_cpu else ")"))
    result = {"shape": {"BH": BH, "T": T, "d": d, "chunk_size": C, "dtype": args.dtype},
              "matmul_flops_per_s": mm_wall, "matmul_flops_per_cpu_s": mm_cpu, "rules": per_rule}

    if args.fla:
        result["fla"] = compare_fla(args.fla, BH, T, d, C, dtype, device, repeat)
    if args.titans:
        result["titans"] = _run_titans(args, BH=BH, T=T, d=d, C=C)
    if args.health:
        result["health"] = health_checks(device, d, C)
        print("\nnumerical health:", result["health"])
    return result


def _run_titans(args: argparse.Namespace, *, BH: int, T: int, d: int, C: int) -> dict:
    """The Titans pair (nlteach.bench.titans) at this run's shape, with that suite's defaults
    otherwise (peak-memory sweep skipped: run `bench titans` for it)."""
    from nlteach.bench import titans

    p = argparse.ArgumentParser()
    titans.add_arguments(p)
    targs = p.parse_args(["--batch", str(BH), "--seq", str(T), "--dim", str(d), "--chunk", str(C),
                          "--peak-seqs", ""])
    targs.preset, targs.device, targs.out = args.preset, args.device, None
    print("\nTitans memory (deep_memory.titans_naive vs titans_chunked):", flush=True)
    return titans.run(targs)


def compare_fla(path: str, BH: int, T: int, d: int, C: int, dtype: torch.dtype,
                device: torch.device, repeat: int) -> dict:
    """Time fla's ``delta_rule_chunkwise`` (chunk 32 and 64) and ours on the same inputs, interleaved."""
    fla_chunkwise = load_fla_chunkwise(path)
    x = make_inputs("delta", BH, T, d, dtype=dtype, device=device)
    # fla scales q by d^-1/2 inside and needs T % chunk == 0: feed ours the scaled q.
    fla_sizes = [c for c in (32, 64) if T % c == 0] or [1]

    def ours_fn(q, k, v, beta):
        return memory.delta_rule_chunked(q * d**-0.5, k, v, beta, chunk_size=C)

    def fla_fn(c: int):
        return lambda q, k, v, beta: fla_chunkwise(q, k, v, beta, chunk_size=c)

    fns = {"ours": ours_fn, **{f"fla_c{c}": fla_fn(c) for c in fla_sizes}}
    with torch.no_grad():
        o_o, _ = ours_fn(**x)
        diffs = {n: ((f(**x)[0] - o_o).pow(2).mean().sqrt() / o_o.pow(2).mean().sqrt()).item()
                 for n, f in fns.items() if n != "ours"}
    res: dict = {"output_rel_rms_vs_ours": diffs, "times": {}}
    for _ in range(2):  # interleave so that load changes hit every contender alike
        for name, fn in fns.items():
            for mode, make in (("fwd", _fwd), ("fwd_bwd", _fwd_bwd)):
                w, c = timed(make(fn, x), device=device, repeat=repeat)
                res["times"].setdefault(f"{name}_{mode}", []).append((w, c))
    best = {k: (min(w for w, _ in v), min((c for _, c in v if c), default=None))
            for k, v in res["times"].items()}
    res["times"] = best
    print(f"\nfla delta_rule_chunkwise vs ours (chunk {C}), same inputs, interleaved; "
          f"outputs agree to rel. RMS {max(diffs.values()):.1e}")
    for mode in ("fwd", "fwd_bwd"):
        fla_best = min(fla_sizes, key=lambda c: best[f"fla_c{c}_{mode}"][0])
        fw, fc = best[f"fla_c{fla_best}_{mode}"]
        ow, oc = best[f"ours_{mode}"]
        res[f"ours_vs_best_fla_{mode}"] = fw / ow
        res[f"ours_vs_best_fla_{mode}_cpu"] = _ratio(fc, oc)
        res[f"best_fla_chunk_{mode}"] = fla_best
        print(f"  {mode:>7}: fla's best (chunk {fla_best}) takes {fw / ow:.2f}x our wall time"
              + (f", {fc / oc:.2f}x our CPU time" if fc and oc else "") + " (>1 = ours faster)")
    return res
