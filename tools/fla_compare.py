"""``python -m tools.fla_compare --out DIR``: flash-linear-attention's Triton chunk kernels
(``fla.ops.delta_rule.chunk_delta_rule``, ``fla.ops.gated_delta_rule.chunk_gated_delta_rule``) beside
``nlteach.memory.delta_rule_chunked`` on the same inputs, on CUDA: outputs and input gradients
against ours in fp32, and forward / forward+backward times in bf16, measured side by side.

Optional stage of ``make gpu-check`` (tools/gpu_check.py): when ``fla`` does not import it says so
and exits with status 4 (skipped). Nothing is installed. Conventions mapped here: fla takes
``[B, T, H, d]`` (ours ``[B, H, T, d]``), scales q by ``scale`` (we pass 1.0: ours does not scale)
and gates with ``g = log alpha``; both decay the state before the delta write.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from nlteach import memory
from nlteach.bench import measure
from nlteach.runs.io import atomic_write_json
from nlteach.runs.provenance import provenance
from tools.gpu_check import SKIPPED

TOLERANCE = 5e-2  # rel. RMS of a bf16 kernel's output against fp32 (ours in bf16 is ~1e-2 away)
KERNELS = {"delta": ("fla.ops.delta_rule", "chunk_delta_rule"),
           "gated_delta": ("fla.ops.gated_delta_rule", "chunk_gated_delta_rule")}


def rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float(), b.float()
    return ((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt().clamp_min(1e-30)).item()


def call_fla(fn, q, k, v, beta, alpha):
    """fla's kernel on our layout: [B, H, T, d] in, ``(o [B, H, T, d_v], S [B, H, d_k, d_v])`` out."""
    params = inspect.signature(fn).parameters
    kw = {"q": q.transpose(1, 2), "k": k.transpose(1, 2), "v": v.transpose(1, 2),
          "beta": beta.transpose(1, 2), "scale": 1.0, "output_final_state": True}
    if alpha is not None:
        kw["g"] = alpha.log().transpose(1, 2)
    if "head_first" in params:  # older versions take it (some default to [B, H, T, d])
        kw["head_first"] = False
    o, S = fn(**kw)
    return o.transpose(1, 2), S


def call_ours(q, k, v, beta, alpha):
    return memory.delta_rule_chunked(q, k, v, beta, alpha=alpha)


def inputs(B: int, H: int, T: int, d: int, gated: bool, seed: int = 0, device: str = "cuda") -> dict:
    g = torch.Generator().manual_seed(seed)
    x = {"q": torch.randn(B, H, T, d, generator=g),
         "k": F.normalize(torch.randn(B, H, T, d, generator=g), dim=-1),
         "v": torch.randn(B, H, T, d, generator=g),
         "beta": torch.rand(B, H, T, generator=g),
         "alpha": (0.9 + 0.1 * torch.rand(B, H, T, generator=g)) if gated else None}
    return {n: None if t is None else t.to(device) for n, t in x.items()}


def outputs_and_grads(fn, x: dict, dtype: torch.dtype) -> tuple[torch.Tensor, dict]:
    leaves = {n: t.to(dtype).detach().requires_grad_() for n, t in x.items() if t is not None}
    o, _ = fn(**{n: leaves.get(n) for n in x})
    up = torch.randn(o.shape, generator=torch.Generator().manual_seed(1)).to(o.device)
    o.float().mul(up).sum().backward()
    return o.detach().float(), {n: t.grad.float() for n, t in leaves.items()}


def compare(rule: str, fla_fn, *, B: int, H: int, T: int, d: int, device: str = "cuda", repeat: int = 10) -> dict:
    """Outputs and gradients of ``fla_fn`` and ours (fp32 and bf16) against ours in fp32, and both
    timed in bf16 (``device``: "cuda"; the tests pass "cpu" and a stand-in kernel)."""
    x = inputs(B, H, T, d, gated=rule == "gated_delta", device=device)
    ref_o, ref_g = outputs_and_grads(call_ours, x, torch.float32)
    res: dict = {}
    for name, fn in (("fla", lambda **a: call_fla(fla_fn, **a)), ("ours", call_ours)):
        for dtype in (torch.float32, torch.bfloat16):
            tag = f"{name}_{str(dtype).removeprefix('torch.')}"
            try:
                o, grads = outputs_and_grads(fn, x, dtype)
            except Exception as e:  # fla kernels may refuse a dtype: recorded, not fatal
                res[tag] = {"error": f"{type(e).__name__}: {e}"}
                continue
            res[tag] = {"out_rel_rms": rel_rms(o, ref_o), **{f"grad_{n}_rel_rms": rel_rms(g, ref_g[n])
                                                            for n, g in grads.items()}}
    times = {}
    xb = {n: None if t is None else t.bfloat16() for n, t in x.items()}
    for name, fn in (("fla", lambda **a: call_fla(fla_fn, **a)), ("ours", call_ours)):
        def fwd(fn=fn):
            with torch.no_grad():
                fn(**xb)

        leaves = {n: t.detach().requires_grad_() for n, t in xb.items() if t is not None}

        def fwd_bwd(fn=fn, leaves=leaves):
            o, _ = fn(**{n: leaves.get(n) for n in xb})
            o.float().sum().backward()

        for mode, f in (("fwd", fwd), ("fwd_bwd", fwd_bwd)):
            times[f"{name}_{mode}_s"] = measure(f, device=device, warmup=2, repeat=repeat)
    res["times_bf16"] = times
    for mode in ("fwd", "fwd_bwd"):
        res[f"ours_over_fla_{mode}"] = times[f"ours_{mode}_s"] / times[f"fla_{mode}_s"]
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.fla_compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None, help="write OUT/fla_compare.json")
    p.add_argument("--shape", default="4,8,4096,64", help="B,H,T,d (default 4,8,4096,64)")
    args = p.parse_args(argv)
    try:  # fla is optional: never installed by the course
        fla = importlib.import_module("fla")
        kernels = {rule: getattr(importlib.import_module(mod), fn) for rule, (mod, fn) in KERNELS.items()}
    except Exception as e:  # ImportError, or a broken install (triton missing, an old fla)
        print(f"fla_compare: skipped: flash-linear-attention does not import here ({type(e).__name__}: {e})")
        return SKIPPED
    if not torch.cuda.is_available():
        print("fla_compare: skipped: fla's Triton kernels need a CUDA device")
        return SKIPPED
    B, H, T, d = (int(s) for s in args.shape.split(","))
    result: dict = {"fla_version": getattr(fla, "__version__", None), "shape": {"B": B, "H": H, "T": T, "d": d},
                    "tolerance": TOLERANCE, "rules": {}}
    for rule, fn in kernels.items():
        r = result["rules"][rule] = compare(rule, fn, B=B, H=H, T=T, d=d)
        print(f"{rule}: fla bf16 output vs ours fp32 rel. RMS {r.get('fla_bfloat16', {}).get('out_rel_rms')}; "
              f"ours/fla time fwd {r['ours_over_fla_fwd']:.2f}x, fwd+bwd {r['ours_over_fla_fwd_bwd']:.2f}x "
              f"(>1: fla faster)", flush=True)
    for mode in ("fwd", "fwd_bwd"):
        result[f"ours_over_fla_{mode}"] = {rule: r[f"ours_over_fla_{mode}"] for rule, r in result["rules"].items()}
    result["max_rel_rms_fla_bf16"] = max((r.get("fla_bfloat16", {}).get("out_rel_rms", float("inf"))
                                          for r in result["rules"].values()), default=None)
    result["provenance"] = provenance(device=torch.cuda.get_device_name(0))
    if args.out:
        path = atomic_write_json(Path(args.out) / "fla_compare.json", result, indent=2)
        print(f"wrote {path}")
    ok = result["max_rel_rms_fla_bf16"] is not None and result["max_rel_rms_fla_bf16"] < TOLERANCE
    if not ok:
        print(f"fla_compare: fla's bf16 outputs differ from ours (fp32) by more than {TOLERANCE}: a convention "
              "mismatch or a kernel problem", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
