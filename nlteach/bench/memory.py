"""``python -m nlteach.bench memory``: linear attention and (gated) delta rule, chunked vs naive.

For each rule it times the naive token loop and the chunked version side by side in one process,
forward and forward+backward, and prints the speed-up (naive time / chunked time), tokens/s and the
chunked version's achieved FLOP rate as a fraction of a plain matmul measured in the same run.

FLOP counts (:func:`chunked_flops`) are the matrix-product FLOPs the chunked algorithm needs:
products with a triangular matrix (the causal masks, the triangular solve) count only their
triangle, although the implementation computes some of them in full; element-wise work is not
counted. Forward+backward is counted as 3x the forward (the usual convention; the hand-written
backward does about twice the forward's products). ``--chunk-size`` takes a list: every chunk
size is timed and each number is reported for the fastest one, printed beside it.

Absolute times depend on the machine and its load; the ratios are what to compare. On CPUs set
``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296`` in the environment:
without them glibc returns large buffers to the kernel after every backward pass and the
timings fill with page faults.

``--fla PATH`` also times flash-linear-attention's pure-PyTorch chunked delta rule
(``fla/ops/delta_rule/naive.py``, function ``delta_rule_chunkwise``) from a file you installed
yourself: PATH is that file, a directory holding ``fla/`` (or ``ops/``), or ``auto`` (finds it in
an installed ``fla`` package without importing the package). That file imports ``einops``.
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
from nlteach.bench import sync, text_table, titans
from nlteach.config import by_preset
from nlteach.runs.cli import positive_int

DESCRIPTION = "linear attention, delta rule, gated delta rule: chunked vs naive (fwd, fwd+bwd)"
RULES = ("linear", "delta", "gated_delta")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--T", type=positive_int, default=None, help="sequence length (default: by preset)")
    p.add_argument("--BH", type=positive_int, default=None, help="batch x heads (default: by preset)")
    p.add_argument("--d", type=positive_int, default=None, help="d_k = d_v (default: by preset)")
    p.add_argument("--chunk-size", default="32,64,128",
                   help="chunk size(s) C of the chunked versions, comma-separated: each is timed "
                        "and every number is reported for the fastest (default: 32,64,128)")
    p.add_argument("--rules", default=",".join(RULES), help=f"comma-separated subset of {RULES}")
    p.add_argument("--repeat", type=positive_int, default=None, help="timed repetitions of each chunked and fla measurement; the fastest is reported "
                        "(the naive loops get half as many; default: by preset)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16"])
    p.add_argument("--no-naive-backward", action="store_true",
                   help="skip timing the naive loop's backward pass (the slowest measurement)")
    p.add_argument("--health", action="store_true",
                   help="also run the numerical health checks (T=65536 fp32 finite; bf16 vs fp32)")
    p.add_argument("--titans", action="store_true",
                   help="also time the Titans pair (linear and MLP memory; see `bench titans` for its options)")
    p.add_argument("--fla", default=None, metavar="PATH|auto",
                   help="also time fla's delta_rule_chunkwise from this naive.py, a directory "
                        "containing fla/, or 'auto'")


def chunked_flops(rule: str, T: int, BH: int, d_k: int, d_v: int, C: int, *,
                  executed: bool = False) -> float:
    """Matrix-product FLOPs of one forward pass of the chunked algorithm.

    By default the FLOPs the algorithm *needs*: a product with a triangular [C, C] matrix counts
    its triangle only (C (C + 1) / 2 entries with the diagonal, C (C - 1) / 2 without), and U, W
    count as one forward substitution (C (C - 1) FLOPs per right-hand side column), although the
    implementation forms T = (I + A)^{-1} and multiplies, which takes more. ``executed=True``
    counts the masked products in full, as the implementation computes them (the solve is still
    counted as a substitution).
    Per token (N = ceil(T / C) chunks for the per-chunk state products):

    linear: Q K^T and P V (masked) + K^T V + Q S;
    delta:  Q K^T (masked) + K K^T (strictly lower) + the solve for [U, W] + K_d^T [U, W]
            + the pseudo-values W S + the read P U_pseudo (masked) + Q S, and per chunk the state
            step E S (d_k x d_k x d_v).
    """
    N = -(-T // C)
    lo, strict = (C, C) if executed else ((C + 1) / 2, (C - 1) / 2)  # entries per row, on average
    if rule == "linear":
        per_token = 2 * lo * (d_k + d_v) + 4 * d_k * d_v
        per_chunk = 0.0
    else:
        per_token = (
            2 * lo * d_k  # Q K^T, masked
            + 2 * strict * d_k  # K K^T, strictly lower
            + (C - 1) * (d_k + d_v)  # unit-lower-triangular solve for U and W
            + 2 * d_k * (d_k + d_v)  # K_d^T U and K_d^T W
            + 2 * d_k * d_v  # U_pseudo = U - W S
            + 2 * lo * d_v  # P U_pseudo (P lower-triangular)
            + 2 * d_k * d_v  # (gamma Q) S
        )
        per_chunk = 2 * d_k * d_k * d_v  # the state recurrence S <- E S + F
    return float(BH * (T * per_token + N * per_chunk))


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
    if Path(path).is_dir():
        found = [Path(path) / sub for sub in ("fla/ops/delta_rule/naive.py", "ops/delta_rule/naive.py")
                 if (Path(path) / sub).is_file()]
        if not found:
            raise SystemExit(f"--fla: no fla/ops/delta_rule/naive.py under the directory {path!r}")
        path = str(found[0])
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
    # one collection of the young generations (the warm-up's garbage; a full collection costs
    # ~0.2 s with torch loaded), then none inside the timed runs: reference counting frees each
    # run's tensors
    gc.collect(1)
    gc.disable()
    try:
        for _ in range(max(1, repeat)):
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            sync(device)
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
    finally:
        gc.enable()
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


def _chunk_sizes(spec: str | int) -> list[int]:
    try:
        sizes = [int(c) for c in str(spec).split(",") if c.strip()]
    except ValueError:
        sizes = []
    if not sizes or any(c < 1 for c in sizes):
        raise SystemExit(f"--chunk-size: expected comma-separated ints >= 1, got {spec!r}")
    return sizes


def run(args: argparse.Namespace) -> dict:
    device = args.device
    T = args.T or by_preset(tiny=256, laptop=4096, full=16384, preset=args.preset)
    BH = args.BH or by_preset(tiny=2, laptop=8, full=32, preset=args.preset)
    d = args.d or by_preset(tiny=32, laptop=64, full=128, preset=args.preset)
    repeat = args.repeat or by_preset(tiny=2, laptop=10, full=10, preset=args.preset)
    sizes = _chunk_sizes(args.chunk_size)
    dtype = getattr(torch, args.dtype)
    rules = [r.strip() for r in args.rules.split(",") if r.strip()]
    for r in rules:
        if r not in RULES:
            raise SystemExit(f"--rules: unknown rule {r!r}; expected a subset of {RULES}")

    mm_wall, mm_cpu = _matmul_rates(device, dtype)
    print(f"shape: B*H={BH}, T={T}, d_k=d_v={d}, chunk sizes {sizes}, {args.dtype}, device={device}, "
          f"threads={torch.get_num_threads()}")
    print(f"plain matmul (1024^3) on this machine now: {mm_wall / 1e9:.1f} GFLOP/s", flush=True)
    rows, per_rule = [], {}
    naive_repeat = max(2, repeat // 2)
    for rule in rules:
        naive = _fns(rule, sizes[0])[0]
        x = make_inputs(rule, BH, T, d, dtype=dtype, device=device)
        t0 = time.perf_counter()
        t = {"naive_fwd": timed(_fwd(naive, x), device=device, repeat=naive_repeat)}
        by_chunk: dict[int, dict] = {}
        for C in sizes:
            chunked = _fns(rule, C)[1]
            by_chunk[C] = {"fwd": timed(_fwd(chunked, x), device=device, repeat=repeat),
                           "fwd_bwd": timed(_fwd_bwd(chunked, x), device=device, repeat=repeat)}
        if not args.no_naive_backward:
            t["naive_fwd_bwd"] = timed(_fwd_bwd(naive, x), device=device, warmup=0, repeat=naive_repeat)
        # the matmul rate again, right after this rule's timings: the load drifts, so the
        # fractions use the best rate seen in this run (the conservative choice)
        w, c = _matmul_rates(device, dtype)
        mm_wall, mm_cpu = max(mm_wall, w), (max(mm_cpu, c) if c else None)
        res: dict = {f"{k}_s": v[0] for k, v in t.items()}
        res.update({f"{k}_cpu_s": v[1] for k, v in t.items()})
        res["by_chunk"] = {}
        for C, tc in by_chunk.items():
            flops = chunked_flops(rule, T, BH, d, d, C)
            res["by_chunk"][C] = {
                **{f"chunked_{m}_s": v[0] for m, v in tc.items()},
                **{f"chunked_{m}_cpu_s": v[1] for m, v in tc.items()},
                "fwd_flops": flops, "fwd_flops_executed": chunked_flops(rule, T, BH, d, d, C, executed=True),
                "fwd_matmul_fraction": flops / tc["fwd"][0] / mm_wall,
                "fwd_bwd_matmul_fraction": 3 * flops / tc["fwd_bwd"][0] / mm_wall,
            }
        for mode in ("fwd", "fwd_bwd"):
            C = min(sizes, key=lambda c: by_chunk[c][mode][0])  # the fastest chunk size, wall time
            wall, cpu = by_chunk[C][mode]
            flops = (1 if mode == "fwd" else 3) * chunked_flops(rule, T, BH, d, d, C)
            res[f"chunk_size_{mode}"] = C
            res[f"chunked_{mode}_s"], res[f"chunked_{mode}_cpu_s"] = wall, cpu
            if f"naive_{mode}" in t:
                res[f"speedup_{mode}"] = t[f"naive_{mode}"][0] / wall
                res[f"speedup_{mode}_cpu"] = _ratio(t[f"naive_{mode}"][1], cpu)
            res[f"chunked_{mode}_tokens_per_s"] = BH * T / wall
            res[f"{mode}_matmul_fraction"] = flops / wall / mm_wall
            res[f"{mode}_matmul_fraction_cpu"] = _ratio(flops / cpu if cpu else None, mm_cpu)
        res["wall_s"] = time.perf_counter() - t0
        per_rule[rule] = res
        print(f"  {rule}: chunked is {res['speedup_fwd']:.1f}x faster forward (C={res['chunk_size_fwd']})"
              + (f", {res['speedup_fwd_bwd']:.1f}x forward+backward (C={res['chunk_size_fwd_bwd']})"
                 if "speedup_fwd_bwd" in res else "")
              + f" (wall time); forward at {100 * res['fwd_matmul_fraction']:.0f}% of the matmul rate "
              f"({res['wall_s']:.0f} s)", flush=True)
        print("    by chunk size (ms, % of matmul rate): " + "; ".join(
            f"C={C}: fwd {1e3 * r['chunked_fwd_s']:.1f} ({100 * r['fwd_matmul_fraction']:.0f}%), "
            f"fwd+bwd {1e3 * r['chunked_fwd_bwd_s']:.1f} ({100 * r['fwd_bwd_matmul_fraction']:.0f}%)"
            for C, r in res["by_chunk"].items()), flush=True)
        pct = (lambda v: None if v is None else 100 * v)
        rows.append({"rule": rule, "C fwd": res["chunk_size_fwd"], "fwd x": res["speedup_fwd"],
                     "fwd x (cpu)": res["speedup_fwd_cpu"], "C f+b": res["chunk_size_fwd_bwd"],
                     "fwd+bwd x": res.get("speedup_fwd_bwd"),
                     "fwd+bwd x (cpu)": res.get("speedup_fwd_bwd_cpu"),
                     "fwd tok/s": res["chunked_fwd_tokens_per_s"],
                     "fwd+bwd tok/s": res["chunked_fwd_bwd_tokens_per_s"],
                     "fwd %mm": pct(res["fwd_matmul_fraction"]),
                     "fwd %mm (cpu)": pct(res["fwd_matmul_fraction_cpu"]),
                     "fwd+bwd %mm": pct(res["fwd_bwd_matmul_fraction"]),
                     "fwd+bwd %mm (cpu)": pct(res["fwd_bwd_matmul_fraction_cpu"])})
    print("\nchunked vs naive, measured side by side. x = naive time / chunked time; C = the fastest "
          "chunk size, used for that mode;\n%mm = chunked FLOP rate (FLOPs the algorithm needs, see "
          "chunked_flops) as % of a plain matmul's;\n(cpu) = the same from process CPU time, which "
          "other processes' load barely changes:")
    print(text_table(rows, list(rows[0]) if rows else ["rule"]))
    print(f"(best plain-matmul rate in this run: {mm_wall / 1e9:.1f} GFLOP/s wall"
          + (f", {mm_cpu / 1e9:.1f} GFLOP per CPU second)" if mm_cpu else ")"))
    result = {"shape": {"BH": BH, "T": T, "d": d, "chunk_sizes": sizes, "dtype": args.dtype},
              "matmul_flops_per_s": mm_wall, "matmul_flops_per_cpu_s": mm_cpu, "rules": per_rule}

    if args.fla:
        result["fla"] = compare_fla(args.fla, BH, T, d, sizes, dtype, device, repeat)
    result["targets"] = _targets(result)
    C_default = 64 if 64 in sizes else sizes[0]  # the library's default chunk size if timed
    if args.titans:
        result["titans"] = _run_titans(args, BH=BH, T=T, d=d, C=C_default)
    if args.health:
        result["health"] = health_checks(device, d, C_default)
        print("\nnumerical health:", result["health"])
    return result


def _targets(result: dict) -> dict:
    """The issue's speed targets, read off this run (wall-time figures)."""
    rules, out = result["rules"], {}
    if "delta" in rules and "speedup_fwd_bwd" in rules["delta"]:
        out["delta_fwd_bwd_speedup >= 20"] = rules["delta"]["speedup_fwd_bwd"]
    for r in ("linear", "delta", "gated_delta"):
        if r in rules:
            out[f"{r}_fwd_matmul_fraction >= 0.25"] = rules[r]["fwd_matmul_fraction"]
    if "fla" in result:
        for mode in ("fwd", "fwd_bwd"):
            out[f"fla_best_time_over_ours_{mode} >= 1"] = result["fla"][f"ours_vs_best_fla_{mode}"]
    if out:
        shape = result["shape"]
        at_target = (shape["BH"], shape["T"], shape["d"], shape["dtype"]) == (8, 4096, 64, "float32")
        print("\ntargets (issue 3), this run" + ("" if at_target else
              " (NB: the targets are stated for B*H=8, T=4096, d=64, float32 on a 2-core CPU; "
              "this run's shape differs)") + ":")
        for name, v in out.items():
            goal = float(name.rsplit(">= ", 1)[1])
            print(f"  {name:42s} {v:8.3f}  {'met' if v >= goal else 'NOT met'}")
    return out


def _run_titans(args: argparse.Namespace, *, BH: int, T: int, d: int, C: int) -> dict:
    """The Titans pair (nlteach.bench.titans) at this run's shape, with that suite's defaults
    otherwise (peak-memory sweep skipped: run `bench titans` for it)."""
    p = argparse.ArgumentParser()
    titans.add_arguments(p)
    targs = p.parse_args(["--batch", str(BH), "--seq", str(T), "--dim", str(d), "--chunk", str(C),
                          "--peak-seqs", ""])
    targs.preset, targs.device, targs.out = args.preset, args.device, None
    print("\nTitans memory (deep_memory.titans_naive vs titans_chunked):", flush=True)
    return titans.run(targs)


def compare_fla(path: str, BH: int, T: int, d: int, sizes: list[int], dtype: torch.dtype,
                device: torch.device, repeat: int) -> dict:
    """Time fla's ``delta_rule_chunkwise`` (chunk 32 and 64) and ours (each of ``sizes``) on the
    same inputs, interleaved, and compare the best of each side per mode."""
    fla_chunkwise = load_fla_chunkwise(path)
    x = make_inputs("delta", BH, T, d, dtype=dtype, device=device)
    # fla scales q by d^-1/2 inside and needs T % chunk == 0: feed ours the scaled q.
    fla_sizes = [c for c in (32, 64) if T % c == 0] or [1]

    def ours_fn(C: int):
        return lambda q, k, v, beta: memory.delta_rule_chunked(q * d**-0.5, k, v, beta, chunk_size=C)

    def fla_fn(c: int):
        return lambda q, k, v, beta: fla_chunkwise(q, k, v, beta, chunk_size=c)

    fns = {**{f"ours_c{c}": ours_fn(c) for c in sizes}, **{f"fla_c{c}": fla_fn(c) for c in fla_sizes}}
    with torch.no_grad():
        o_o, _ = ours_fn(sizes[0])(**x)
        diffs = {n: ((f(**x)[0] - o_o).pow(2).mean().sqrt() / o_o.pow(2).mean().sqrt()).item()
                 for n, f in fns.items() if n != f"ours_c{sizes[0]}"}
    res: dict = {"output_rel_rms_vs_ours": diffs, "times": {}}
    for _ in range(2):  # interleave so that load changes hit every contender alike
        for name, fn in fns.items():
            for mode, make in (("fwd", _fwd), ("fwd_bwd", _fwd_bwd)):
                w, c = timed(make(fn, x), device=device, repeat=repeat)
                res["times"].setdefault(f"{name}_{mode}", []).append((w, c))
    best = {k: (min(w for w, _ in v), min((c for _, c in v if c), default=None))
            for k, v in res["times"].items()}
    res["times"] = best
    print(f"\nfla delta_rule_chunkwise vs ours, same inputs, interleaved; outputs agree to rel. RMS "
          f"{max(diffs.values()):.1e}")
    for mode in ("fwd", "fwd_bwd"):
        fla_best = min(fla_sizes, key=lambda c: best[f"fla_c{c}_{mode}"][0])
        ours_best = min(sizes, key=lambda c: best[f"ours_c{c}_{mode}"][0])
        fw, fc = best[f"fla_c{fla_best}_{mode}"]
        ow, oc = best[f"ours_c{ours_best}_{mode}"]
        res[f"ours_vs_best_fla_{mode}"] = fw / ow
        res[f"ours_vs_best_fla_{mode}_cpu"] = _ratio(fc, oc)
        res[f"best_fla_chunk_{mode}"], res[f"best_ours_chunk_{mode}"] = fla_best, ours_best
        print(f"  {mode:>7}: fla's best (chunk {fla_best}, {1e3 * fw:.1f} ms) takes {fw / ow:.2f}x our "
              f"best's wall time (chunk {ours_best}, {1e3 * ow:.1f} ms)"
              + (f", {fc / oc:.2f}x our CPU time" if fc and oc else "") + " (>1 = ours faster)")
    return res
