"""``python -m nlteach.bench titans``: Titans deep memory, chunked dual form vs the naive token loop.

Measured side by side in this one process: forward+backward time of ``titans_naive`` and
``titans_chunked`` (same chunk semantics, same inputs), for the linear and the residual MLP memory;
the printed result is the ratio naive / chunked (tokens/s are printed for information only). Then
the peak memory of one chunked forward+backward at several T, each measured in a fresh subprocess
(the rise of the resident set during the pass, sampled every millisecond, over its level once
the inputs exist and freed heap memory went back to the OS), to show that it grows linearly in T. The naive loop's autograd graph holds every token's weights (about 6 MB per token
at B*H=8, d=64, hidden 256); when that would exceed ``--naive-gb``, the side-by-side comparison
runs at the largest power-of-two T that fits, and the chunked version is also timed at T.

Defaults (``laptop`` and ``full`` presets): B*H = 8 (B=8, H=1), T = 4096, d = 64, chunk 64,
MLP hidden 4d; peak memory at T = 1024, 4096, 16384. ``tiny`` shrinks everything for a smoke run.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import subprocess
import sys
import threading
import time

import torch

from nlteach.bench import measure, peak_memory, text_table
from nlteach.config import by_preset
from nlteach.deep_memory import init_params, titans_chunked, titans_naive
from nlteach.runs.cli import positive_int

DESCRIPTION = "Titans deep memory: chunked dual form vs naive loop (fwd+bwd), peak memory vs T"

CPU_ENV = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "4294967296"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch", type=positive_int, default=None, help="B (default 8; tiny 2)")
    p.add_argument("--heads", type=positive_int, default=1, help="H (default 1)")
    p.add_argument("--seq", type=positive_int, default=None, help="T for the timing (default 4096; tiny 256)")
    p.add_argument("--dim", type=positive_int, default=None, help="d = d_k = d_v (default 64; tiny 16)")
    p.add_argument("--chunk", type=positive_int, default=64, help="chunk size (default 64)")
    p.add_argument("--hidden-mult", type=positive_int, default=4, help="MLP memory hidden = mult * d (default 4)")
    p.add_argument("--memory", choices=["linear", "mlp", "both"], default="both")
    p.add_argument("--peak-seqs", default=None,
                   help="comma-separated T for the peak-memory runs (default 1024,4096,16384; "
                        "tiny 1024,2048,4096; empty string: skip)")
    p.add_argument("--repeat", type=positive_int, default=3, help="timed repeats of the chunked version")
    p.add_argument("--naive-gb", type=float, default=6.0,
                   help="memory budget (GB) for the naive loop's autograd graph, which stores every "
                        "token's weights: when the estimate at T exceeds it, naive and chunked are "
                        "compared at the largest power-of-two T that fits (default 6)")


def make_inputs(B: int, H: int, T: int, d: int, hidden: int | None, *, seed: int = 0,
                dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> dict:
    """Stable random inputs (unit keys/queries, lr in (0, 0.2), eta in (0.5, 1), alpha in (0, 0.05))."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*s: int) -> torch.Tensor:
        return torch.randn(*s, generator=g, dtype=dtype)

    def gate(lo: float, hi: float) -> torch.Tensor:
        return (lo + (hi - lo) * torch.rand(B, H, T, generator=g, dtype=dtype)).to(device).requires_grad_()

    q = torch.nn.functional.normalize(rnd(B, H, T, d), dim=-1).to(device).requires_grad_()
    k = torch.nn.functional.normalize(rnd(B, H, T, d), dim=-1).to(device).requires_grad_()
    v = rnd(B, H, T, d).to(device).requires_grad_()
    params = tuple(p.requires_grad_() for p in init_params(B, H, d, hidden=hidden, scale=0.5,
                                                          generator=g, dtype=dtype, device=device))
    return dict(q=q, k=k, v=v, lr=gate(0.0, 0.2), momentum=gate(0.5, 1.0), decay=gate(0.0, 0.05),
                params=params)


def fwd_bwd(fn, inputs: dict, chunk: int) -> None:
    """One forward and backward pass; the loss touches the outputs and the final weights."""
    o, (W, S) = fn(inputs["q"], inputs["k"], inputs["v"], inputs["lr"], inputs["momentum"],
                   inputs["decay"], inputs["params"], chunk_size=chunk)
    loss = o.square().mean() + sum(w.square().mean() for w in W) + sum(s.square().mean() for s in S)
    loss.backward()
    for x in _leaves(inputs):
        x.grad = None


def _leaves(inputs: dict) -> list[torch.Tensor]:
    return [inputs[n] for n in ("q", "k", "v", "lr", "momentum", "decay")] + list(inputs["params"])


def naive_bytes_estimate(B: int, H: int, T: int, d: int, hidden: int | None) -> int:
    """Rough size of the naive loop's autograd graph: about 8 weight-sized tensors per token
    (measured on CPU fp32: ~6 for the MLP memory, ~8 for the linear one)."""
    n = d * d if hidden is None else 2 * d * hidden
    return 8 * 4 * n * B * H * T


def _current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_child(B: int, H: int, T: int, d: int, hidden: int | None, chunk: int) -> dict:
    """In a fresh process: by how many bytes one chunked fwd+bwd raises the resident set.

    The inputs are made first, freed heap memory is handed back to the OS (``malloc_trim``), then
    a thread samples the resident set every millisecond during the pass; the result is the
    highest sample minus the level before the pass (Linux only, like ``/proc``)."""
    inputs = make_inputs(B, H, T, d, hidden)
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    before = _current_rss()
    peak, done = [before], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _current_rss())
            time.sleep(0.001)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    fwd_bwd(titans_chunked, inputs, chunk)
    done.set()
    th.join()
    peak[0] = max(peak[0], _current_rss())
    return {"rise": peak[0] - before, "before": before}


def _peak_in_subprocess(B, H, T, d, hidden, chunk) -> dict:
    code = (f"import json, torch; torch.set_num_threads({torch.get_num_threads()}); "
            "from nlteach.bench.titans import peak_child as f; "
            f"print(json.dumps(f({B}, {H}, {T}, {d}, {hidden!r}, {chunk})))")
    env = {**os.environ, **CPU_ENV}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> dict:
    B = args.batch or by_preset(tiny=2, laptop=8, full=8, preset=args.preset)
    H = args.heads
    T = args.seq or by_preset(tiny=256, laptop=4096, full=4096, preset=args.preset)
    d = args.dim or by_preset(tiny=16, laptop=64, full=64, preset=args.preset)
    peak_default = by_preset(tiny="1024,2048,4096", laptop="1024,4096,16384", full="1024,4096,16384",
                             preset=args.preset)
    peak_seqs = [int(s) for s in (peak_default if args.peak_seqs is None else args.peak_seqs).split(",") if s]
    memories = ["linear", "mlp"] if args.memory == "both" else [args.memory]
    if args.device.type == "cpu" and any(os.environ.get(k) != v for k, v in CPU_ENV.items()):
        print("note: for steadier CPU timings set " + " ".join(f"{k}={v}" for k, v in CPU_ENV.items()))
    print(f"B={B} H={H} T={T} d={d} chunk={args.chunk} hidden={args.hidden_mult}*d  "
          f"threads={torch.get_num_threads()}  load={os.getloadavg()[0]:.2f}", flush=True)
    rows = []
    for mem in memories:
        hidden = None if mem == "linear" else args.hidden_mult * d
        Tn = T
        while Tn > args.chunk and naive_bytes_estimate(B, H, Tn, d, hidden) > args.naive_gb * 1e9:
            Tn //= 2
        for t in sorted({Tn, T}):
            inputs = make_inputs(B, H, t, d, hidden, device=args.device)
            t_chunk = measure(lambda inputs=inputs: fwd_bwd(titans_chunked, inputs, args.chunk), device=args.device,
                              warmup=1, repeat=args.repeat)
            row = {"memory": mem, "T": t, "chunked_s": t_chunk, "chunked_tok_s": B * H * t / t_chunk}
            if t == Tn:  # the naive loop runs for seconds to minutes: one run after the chunked warm-up
                t_naive = measure(lambda inputs=inputs: fwd_bwd(titans_naive, inputs, args.chunk), device=args.device,
                                  warmup=0, repeat=1)
                row.update(naive_s=t_naive, naive_tok_s=B * H * t / t_naive, speedup=t_naive / t_chunk)
            rows.append(row)
            print(text_table([row], list(row)), flush=True)
            del inputs
    print("\nforward+backward, naive / chunked (same inputs, same chunk semantics, timed side by side)")
    print(text_table(rows, ["memory", "T", "speedup", "naive_tok_s", "chunked_tok_s", "naive_s", "chunked_s"]))
    peaks = []
    if peak_seqs and args.device.type == "cpu":
        for mem in memories:
            hidden = None if mem == "linear" else args.hidden_mult * d
            for t in peak_seqs:
                b = _peak_in_subprocess(B, H, t, d, hidden, args.chunk)
                peaks.append({"memory": mem, "T": t, "peak_MiB": b["rise"] / 2**20,
                              "rss_before_MiB": b["before"] / 2**20})
                print(f"  peak memory {mem} T={t}: {peaks[-1]}", flush=True)
            mine = [p for p in peaks if p["memory"] == mem]
            for prev, p in zip(mine, mine[1:]):  # linear growth = the same cost for every added token
                p["MiB_per_1k_added_tokens"] = 1024 * (p["peak_MiB"] - prev["peak_MiB"]) / (p["T"] - prev["T"])
        print("\nchunked fwd+bwd peak memory (rise of the resident set, each T in a fresh process); "
              "linear in T means a constant cost per added token")
        print(text_table(peaks, ["memory", "T", "peak_MiB", "MiB_per_1k_added_tokens", "rss_before_MiB"]))
    elif peak_seqs:
        for mem in memories:
            hidden = None if mem == "linear" else args.hidden_mult * d
            for t in peak_seqs:
                inputs = make_inputs(B, H, t, d, hidden, device=args.device)
                b = peak_memory(lambda inputs=inputs: fwd_bwd(titans_chunked, inputs, args.chunk), device=args.device)
                peaks.append({"memory": mem, "T": t, "peak_MiB": b / 2**20})
                del inputs
        print("\nchunked fwd+bwd peak allocator memory")
        print(text_table(peaks, ["memory", "T", "peak_MiB"]))
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}")
    return {"config": {"B": B, "H": H, "T": T, "d": d, "chunk": args.chunk,
                       "hidden": args.hidden_mult * d, "load_1min_end": os.getloadavg()[0]},
            "timing": rows, "peak_memory": peaks}
