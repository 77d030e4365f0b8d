"""Titans deep memory: naive == chunked (outputs, final states, gradients), chunk 1 == online GD
computed independently with autograd, the delta-rule special case, surprise. (Notebook 04's
experiments and exercise references: tests/course/test_nb04_deep_memory.py.)"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nlteach import deep_memory as dm
from nlteach import memory
from nlteach.deep_memory import titans_chunked, titans_naive
from nlteach.memory import NonFiniteError
from nlteach.models import ModelConfig, build_model


def rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt().clamp_min(1e-300)).item()


def make_case(B, H, T, d, hidden, dtype, seed, *, random_momentum=True):
    g = torch.Generator().manual_seed(seed)

    def rnd(*s):
        return torch.randn(*s, generator=g, dtype=torch.float64)

    def uni(lo, hi):
        return lo + (hi - lo) * torch.rand(B, H, T, generator=g, dtype=torch.float64)

    case = {
        "q": F.normalize(rnd(B, H, T, d), dim=-1),
        "k": F.normalize(rnd(B, H, T, d), dim=-1),
        "v": rnd(B, H, T, d),
        "lr": uni(0.05, 0.5),
        "momentum": uni(0.0, 0.95),
        "decay": uni(0.0, 0.3),
        "params": dm.init_params(B, H, d, hidden=hidden, scale=0.7, generator=g, dtype=torch.float64),
    }
    case["momentum_state"] = tuple(0.1 * rnd(*p.shape) for p in case["params"]) if random_momentum else None
    return _cast(case, dtype)


def _cast(case, dtype):
    out = {}
    for n, x in case.items():
        if x is None:
            out[n] = None
        elif isinstance(x, tuple):
            out[n] = tuple(t.to(dtype).requires_grad_() for t in x)
        else:
            out[n] = x.to(dtype).requires_grad_()
    return out


def leaves(case):
    xs = [case[n] for n in ("q", "k", "v", "lr", "momentum", "decay")] + list(case["params"])
    if case["momentum_state"] is not None:
        xs += list(case["momentum_state"])
    return xs


LEAF_NAMES = ["q", "k", "v", "lr (theta)", "momentum (eta)", "decay (alpha)", "params", "params", "S0", "S0"]


def run_with_grads(fn, case, chunk, seed=123):
    o, (W, S) = fn(case["q"], case["k"], case["v"], case["lr"], case["momentum"], case["decay"],
                   case["params"], chunk_size=chunk, momentum_state=case["momentum_state"])
    outs = [o, *W, *S]
    g = torch.Generator().manual_seed(seed)
    ups = [torch.randn(x.shape, generator=g, dtype=torch.float64).to(x.dtype) for x in outs]
    grads = torch.autograd.grad(outs, leaves(case), ups)
    return [x.detach() for x in outs], grads


@pytest.mark.parametrize("hidden", [None, 12], ids=["linear", "mlp"])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)], ids=["fp32", "fp64"])
@pytest.mark.parametrize("B,H,T,d,chunk", [(2, 2, 37, 8, 8), (1, 3, 29, 6, 5), (2, 1, 20, 4, 20),
                                           (1, 2, 23, 5, 64), (2, 1, 9, 4, 1)])
def test_chunked_equals_naive(hidden, dtype, tol, B, H, T, d, chunk):
    case = make_case(B, H, T, d, hidden, dtype, seed=T * 7 + chunk)
    out_n, grad_n = run_with_grads(titans_naive, case, chunk)
    out_c, grad_c = run_with_grads(titans_chunked, case, chunk)
    names = ["o"] + [f"final weight {i}" for i in range(len(case["params"]))] + \
            [f"final momentum {i}" for i in range(len(case["params"]))]
    for name, a, b in zip(names, out_c, out_n):
        assert a.shape == b.shape
        assert rel_rms(a, b) < tol, f"{name}: rel RMS {rel_rms(a, b):.2e}"
    n_p = len(case["params"])
    gnames = ["q", "k", "v", "lr", "momentum", "decay"] + [f"W0[{i}]" for i in range(n_p)] + \
             [f"S0[{i}]" for i in range(n_p)]
    for name, a, b in zip(gnames, grad_c, grad_n):
        assert b.abs().max() > 0, f"gradient w.r.t. {name} is zero: the test would be vacuous"
        assert rel_rms(a, b) < tol, f"grad {name}: rel RMS {rel_rms(a, b):.2e}"


def test_chunked_handles_zero_momentum_and_full_decay_without_nans():
    case = make_case(1, 2, 19, 5, 10, torch.float64, seed=3)
    with torch.no_grad():
        case["momentum"][..., ::3] = 0.0
        case["decay"][..., 1::4] = 1.0
    out_n, grad_n = run_with_grads(titans_naive, case, 6)
    out_c, grad_c = run_with_grads(titans_chunked, case, 6)
    for a, b in zip(out_c + list(grad_c), out_n + list(grad_n)):
        assert torch.isfinite(a).all() and rel_rms(a, b) < 1e-10


# --- chunk size 1 is true online gradient descent, computed independently with autograd ----------


def online_gd_reference(case, chunk=1):
    """Per sequence, with torch.autograd on the memory written as a plain function, gradients
    taken at the chunk-start weights (chunk=1: the previous token's weights)."""
    q, k, v = (case[n].detach() for n in ("q", "k", "v"))
    th, et, al = (case[n].detach() for n in ("lr", "momentum", "decay"))
    P0 = [p.detach() for p in case["params"]]
    S0 = [s.detach() for s in case["momentum_state"]]
    B, H, T, _ = q.shape

    def M(ws, x):
        if len(ws) == 1:
            return ws[0] @ x
        return x + ws[1] @ (torch.sigmoid(ws[0] @ x) * (ws[0] @ x))

    o = torch.zeros(B, H, T, v.shape[-1], dtype=q.dtype)
    surprise = torch.zeros(B, H, T, dtype=q.dtype)
    finals = []
    for b in range(B):
        for h in range(H):
            W = [p[b, h].clone() for p in P0]
            S = [s[b, h].clone() for s in S0]
            for t in range(T):
                if t % chunk == 0:
                    at = [w.clone().requires_grad_() for w in W]
                loss = 0.5 * (M(at, k[b, h, t]) - v[b, h, t]).pow(2).sum()
                g = torch.autograd.grad(loss, at)
                surprise[b, h, t] = torch.sqrt(sum(x.pow(2).sum() for x in g))
                S = [et[b, h, t] * s - th[b, h, t] * gi for s, gi in zip(S, g)]
                W = [(1 - al[b, h, t]) * w + s for w, s in zip(W, S)]
                o[b, h, t] = M(W, q[b, h, t])
            finals.append((W, S))
    return o, finals, surprise


@pytest.mark.parametrize("hidden", [None, 7], ids=["linear", "mlp"])
@pytest.mark.parametrize("chunk", [1, 4])
def test_matches_independent_online_gd(hidden, chunk):
    case = make_case(2, 2, 13, 5, hidden, torch.float64, seed=11)
    o_ref, finals, sur_ref = online_gd_reference(case, chunk)
    args = [case[n] for n in ("q", "k", "v", "lr", "momentum", "decay", "params")]
    for fn in (titans_naive, titans_chunked):
        o, (W, S) = fn(*args, chunk_size=chunk, momentum_state=case["momentum_state"])
        assert rel_rms(o, o_ref) < 1e-10
        for b in range(2):
            for h in range(2):
                Wr, Sr = finals[b * 2 + h]
                for i in range(len(W)):
                    assert rel_rms(W[i][b, h], Wr[i]) < 1e-10
                    assert rel_rms(S[i][b, h], Sr[i]) < 1e-10
    sur = dm.titans_surprise(*args[1:], chunk_size=chunk, momentum_state=case["momentum_state"])
    assert sur.shape == (2, 2, 13) and rel_rms(sur, sur_ref) < 1e-10


def test_chunk_size_changes_the_result_when_it_should():
    # the stale gradient point is a real difference: chunk 1 and chunk 8 disagree (so the
    # equivalence tests above compare like with like, not a degenerate case)
    case = make_case(1, 1, 16, 4, None, torch.float64, seed=5)
    args = [case[n] for n in ("q", "k", "v", "lr", "momentum", "decay", "params")]
    o1 = titans_chunked(*args, chunk_size=1)[0]
    o8 = titans_chunked(*args, chunk_size=8)[0]
    assert rel_rms(o8, o1) > 1e-3


# --- special case: the delta rule ---------------------------------------------------------------


def test_linear_memory_without_momentum_and_decay_is_the_delta_rule():
    g = torch.Generator().manual_seed(0)
    B, H, T, d_k, d_v = 2, 2, 17, 6, 5
    q = F.normalize(torch.randn(B, H, T, d_k, generator=g, dtype=torch.float64), dim=-1)
    k = F.normalize(torch.randn(B, H, T, d_k, generator=g, dtype=torch.float64), dim=-1)
    v = torch.randn(B, H, T, d_v, generator=g, dtype=torch.float64)
    beta = torch.rand(B, H, T, generator=g, dtype=torch.float64)
    W0 = 0.3 * torch.randn(B, H, d_v, d_k, generator=g, dtype=torch.float64)
    zeros = torch.zeros(B, H, T, dtype=torch.float64)
    o_delta, S_delta = memory.delta_rule_naive(q, k, v, beta, initial_state=W0.transpose(-1, -2).clone())
    for fn in (titans_naive, titans_chunked):
        o, ((W,), (S,)) = fn(q, k, v, beta, zeros, zeros, (W0,), chunk_size=1)
        assert rel_rms(o, o_delta) < 1e-12
        assert rel_rms(W.transpose(-1, -2), S_delta) < 1e-12  # titans W [d_v, d_k] = delta S^T


# --- bad input ---------------------------------------------------------------------------------


def test_bad_inputs_say_what_is_wrong():
    case = make_case(1, 1, 6, 4, 8, torch.float64, seed=0, random_momentum=False)
    q, k, v = case["q"], case["k"], case["v"]
    p = case["params"]
    with pytest.raises(ValueError, match="lr must be a per-token gate"):
        titans_chunked(q, k, v, torch.ones(1, 1, 5), 0.9, 0.0, p)
    with pytest.raises(ValueError, match="W_in must have shape"):
        titans_naive(q, k, v, 0.1, 0.9, 0.0, (p[0][..., :3], p[1]), chunk_size=2)
    with pytest.raises(ValueError, match="chunk_size must be an int >= 1"):
        titans_chunked(q, k, v, 0.1, 0.9, 0.0, p, chunk_size=0)
    with pytest.raises(ValueError, match="d_k == d_v"):
        titans_chunked(q, k, v[..., :3], 0.1, 0.9, 0.0, p)
    with pytest.raises(ValueError, match="momentum_state must be a tuple shaped like params"):
        titans_chunked(q, k, v, 0.1, 0.9, 0.0, p, momentum_state=(p[0],))
    with pytest.raises(ValueError, match=r"q must be 4-D \[B, H, T, D\], got shape \(1, 6, 4\)"):
        titans_chunked(q[0], k, v, 0.1, 0.9, 0.0, p)


def test_scalar_gates_broadcast():
    case = make_case(1, 2, 10, 4, None, torch.float64, seed=1, random_momentum=False)
    q, k, v, p = case["q"], case["k"], case["v"], case["params"]
    a = titans_chunked(q, k, v, 0.1, 0.8, 0.05, p, chunk_size=4)[0]
    full = torch.ones(1, 2, 10, dtype=torch.float64)
    b = titans_naive(q, k, v, 0.1 * full, 0.8 * full, 0.05 * full, p, chunk_size=4)[0]
    assert rel_rms(a, b) < 1e-12


# --- input checks to the standard of nlteach.memory ----------------------------------------------


def _simple(hidden=8, dtype=torch.float32, T=6):
    case = make_case(1, 2, T, 4, hidden, torch.float64, seed=0, random_momentum=False)
    q, k, v = (case[n].detach().to(dtype) for n in ("q", "k", "v"))
    p = tuple(x.detach().to(dtype) for x in case["params"])
    return q, k, v, p


@pytest.mark.parametrize("fn", [titans_naive, titans_chunked])
def test_integer_inputs_are_refused(fn):
    q, k, v, p = _simple()
    gate = torch.full((1, 2, 6), 0.1)
    with pytest.raises(TypeError, match=r"^k must be a floating-point tensor, got dtype torch.int64"):
        fn(q, k.long(), v, 0.1, 0.9, 0.0, p, chunk_size=2)
    # an integer gate would be truncated (lr 0.1 -> 0): refused, not cast
    with pytest.raises(TypeError, match=r"^lr must be a floating-point tensor, got dtype torch.int64"):
        fn(q, k, v, (10 * gate).long(), 0.9, 0.0, p, chunk_size=2)
    with pytest.raises(TypeError, match=r"^params W_out must be a floating-point tensor"):
        fn(q, k, v, gate, 0.9, 0.0, (p[0], p[1].int()), chunk_size=2)
    with pytest.raises(TypeError, match=r"^momentum_state W_in must be a floating-point tensor"):
        fn(q, k, v, gate, 0.9, 0.0, p, chunk_size=2, momentum_state=(p[0].long(), p[1]))
    with pytest.raises(TypeError, match=r"^decay must be a number or a floating-point tensor.*got str"):
        fn(q, k, v, gate, 0.9, "0", p, chunk_size=2)
    with pytest.raises(TypeError, match=r"^momentum must be a number.*got bool"):
        fn(q, k, v, gate, True, 0.0, p, chunk_size=2)
    # Python integers are numbers: decay=0 is decay=0.0
    a = fn(q, k, v, gate, 1, 0, p, chunk_size=2)[0]
    b = fn(q, k, v, gate, 1.0, 0.0, p, chunk_size=2)[0]
    assert torch.equal(a, b)


@pytest.mark.parametrize("fn", [titans_naive, titans_chunked])
@pytest.mark.parametrize("gate,value,expected", [
    ("lr", float("nan"), r"lr must be finite and >= 0"), ("lr", float("inf"), r"lr must be finite and >= 0"),
    ("lr", -0.1, r"lr must be finite and >= 0"), ("momentum", 1.5, r"momentum must lie in \[0, 1\]"),
    ("momentum", float("nan"), r"momentum must lie in \[0, 1\]"), ("decay", -0.5, r"decay must lie in \[0, 1\]"),
    ("decay", float("inf"), r"decay must lie in \[0, 1\]")])
def test_gate_values_are_range_checked(fn, gate, value, expected):
    q, k, v, p = _simple()
    gates = {"lr": 0.1, "momentum": 0.9, "decay": 0.0}
    with pytest.raises(ValueError, match=rf"^{expected} .*got {value}\.$"):  # a Python number
        fn(q, k, v, **{**gates, gate: value}, params=p, chunk_size=2)
    x = torch.full((1, 2, 6), 0.5)  # a tensor: the first bad position is named
    x[0, 1, 4] = value
    with pytest.raises(ValueError, match=rf"^{expected} .*got {value:.4g} at \(batch 0, head 1, token 4\)") as e:
        fn(q, k, v, **{**gates, gate: x}, params=p, chunk_size=2)
    # a NaN or infinite gate (an overflow upstream) is the subclass a caller may catch alone
    assert isinstance(e.value, NonFiniteError) == (not math.isfinite(value))


def test_surprise_checks_its_inputs_too():
    q, k, v, p = _simple()
    with pytest.raises(ValueError, match=r"lr must be finite"):
        dm.titans_surprise(k, v, float("nan"), 0.0, 0.0, p)
    with pytest.raises(TypeError, match=r"v has dtype torch.float64 but k has torch.float32"):
        dm.titans_surprise(k, v.double(), 0.1, 0.0, 0.0, p)


@pytest.mark.parametrize("fn", [titans_naive, titans_chunked])
def test_mixed_dtypes_and_devices_are_refused(fn):
    q, k, v, p = _simple()
    with pytest.raises(TypeError, match=r"^v has dtype torch.float64 but q has torch.float32"):
        fn(q, k, v.double(), 0.1, 0.9, 0.0, p, chunk_size=2)
    with pytest.raises(TypeError, match=r"^params W_in has dtype torch.float64 but q has torch.float32"):
        fn(q, k, v, 0.1, 0.9, 0.0, (p[0].double(), p[1]), chunk_size=2)
    with pytest.raises(TypeError, match=r"^lr has dtype torch.float64 but q has torch.float32"):
        fn(q, k, v, torch.full((6,), 0.1, dtype=torch.float64), 0.9, 0.0, p, chunk_size=2)
    with pytest.raises(ValueError, match=r"^k is on device meta but q is on cpu"):
        fn(q, k.to("meta"), v, 0.1, 0.9, 0.0, p, chunk_size=2)
    with pytest.raises(ValueError, match=r"^params W_out is on device meta but q is on cpu"):
        fn(q, k, v, 0.1, 0.9, 0.0, (p[0], p[1].to("meta")), chunk_size=2)


def test_autocast_may_mix_dtypes():
    # torch.autocast hands over mixed dtypes by design (the Titans layer of nlteach.models under
    # bf16 autocast on CUDA): accepted, the output in q's dtype
    q, k, v, p = _simple()
    ref = titans_chunked(q, k, v, 0.1, 0.9, 0.0, p, chunk_size=2)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        o, (W, S) = titans_chunked(q, k, v.bfloat16(), torch.full((1, 2, 6), 0.1, dtype=torch.bfloat16),
                                   0.9, 0.0, p, chunk_size=2)
    assert o.dtype == torch.float32 and W[0].dtype == torch.float32
    assert rel_rms(o, ref) < 3e-2


def test_titans_layer_trains_under_autocast():
    # the Titans layer of nlteach.models hands bfloat16 activations and float32 initial weights
    cfg = ModelConfig(vocab_size=20, dim=32, n_layers=1, n_heads=2, memory_hidden=16)
    model = build_model("titans", cfg)
    x = torch.randint(0, 20, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
    assert torch.isfinite(logits.float()).all()
    logits.float().sum().backward()


@pytest.mark.parametrize("hidden", [None, 12], ids=["linear", "mlp"])
@pytest.mark.parametrize("fn", [titans_naive, titans_chunked])
def test_empty_sequence_returns_the_initial_state(hidden, fn):
    case = make_case(2, 1, 0, 4, hidden, torch.float32, seed=0)
    o, (W, S) = fn(case["q"], case["k"], case["v"], case["lr"], case["momentum"], case["decay"],
                   case["params"], chunk_size=3, momentum_state=case["momentum_state"])
    assert o.shape == (2, 1, 0, 4)
    for a, b in zip((*W, *S), (*case["params"], *case["momentum_state"])):
        assert torch.equal(a, b)
    sur = dm.titans_surprise(case["k"], case["v"], 0.1, 0.5, 0.0, case["params"], chunk_size=3)
    assert sur.shape == (2, 1, 0)


@pytest.mark.parametrize("hidden", [None, 32], ids=["linear", "mlp"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("fn", [titans_naive, titans_chunked])
def test_half_precision_is_computed_in_float32(hidden, dtype, fn):
    g = torch.Generator().manual_seed(0)
    B, H, T, d = 2, 2, 64, 16
    q = F.normalize(torch.randn(B, H, T, d, generator=g), dim=-1)
    k = F.normalize(torch.randn(B, H, T, d, generator=g), dim=-1)
    v = torch.randn(B, H, T, d, generator=g)
    gate = torch.rand(B, H, T, generator=g)
    lr, eta, alpha = 0.2 * gate, 0.5 + 0.4 * gate, 0.05 * gate
    p = dm.init_params(B, H, d, hidden=hidden, scale=0.5, generator=g)
    o32, (W32, S32) = fn(q, k, v, lr, eta, alpha, p, chunk_size=8)
    low = [x.to(dtype) for x in (q, k, v, lr, eta, alpha)]
    o, (W, S) = fn(*low, tuple(x.to(dtype) for x in p), chunk_size=8)
    assert o.dtype == dtype and all(x.dtype == dtype for x in (*W, *S))
    # exactly the float32 computation on the rounded inputs, cast back
    o_up, (W_up, S_up) = fn(*(x.float() for x in low), tuple(x.to(dtype).float() for x in p), chunk_size=8)
    assert torch.equal(o, o_up.to(dtype))
    assert all(torch.equal(a, b.to(dtype)) for a, b in zip((*W, *S), (*W_up, *S_up)))
    # float32 arithmetic on the rounded inputs: the error is the inputs' and the output's rounding
    # (computed in bfloat16 itself it was about 10% relative RMS)
    assert rel_rms(o.float(), o32) < 5e-3
    for a, b in zip((*W, *S), (*W32, *S32)):
        assert rel_rms(a.float(), b) < 1e-2


# --- non-finite values stay causal (docs/decisions.md#memory-non-finite) -------------------------


@pytest.mark.parametrize("hidden", [None, 6], ids=["linear", "mlp"])
@pytest.mark.parametrize("name", ["q", "k", "v"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("t,chunk", [(5, 8), (8, 8), (16, 8), (0, 8), (19, 4), (5, 64)],
                         ids=["inside", "chunk-start", "third-chunk", "first-token", "last-token", "one-chunk"])
def test_nonfinite_input_does_not_reach_earlier_outputs(hidden, name, bad, t, chunk):
    case = make_case(2, 2, 20, 4, hidden, torch.float64, seed=4)
    x = {n: (tuple(p.detach() for p in c) if isinstance(c, tuple) else c.detach())
         for n, c in case.items()}
    x[name] = x[name].clone()
    x[name][1, 0, t, 1] = bad  # batch 1, head 0, token t
    args = [x[n] for n in ("q", "k", "v", "lr", "momentum", "decay", "params")]
    o_n, (W_n, S_n) = titans_naive(*args, chunk_size=chunk, momentum_state=x["momentum_state"])
    o_c, (W_c, S_c) = titans_chunked(*args, chunk_size=chunk, momentum_state=x["momentum_state"])
    assert torch.isfinite(o_c[:, :, :t]).all(), "a non-finite value travelled backwards in time"
    assert torch.equal(torch.isfinite(o_c), torch.isfinite(o_n))
    for a, b in zip((*W_c, *S_c), (*W_n, *S_n)):
        assert torch.equal(torch.isfinite(a), torch.isfinite(b))
    fin = torch.isfinite(o_n)
    assert rel_rms(o_c[fin], o_n[fin]) < 1e-10
    if name != "q":  # the surprise of token s uses k_s, v_s and the chunk-start weights only
        sur = dm.titans_surprise(*args[1:], chunk_size=chunk, momentum_state=x["momentum_state"])
        assert torch.isfinite(sur[:, :, :t]).all()
