"""nlteach.memory: naive == chunked (outputs, final states, gradients), the equations as written,
gradcheck, numerical health, and the error messages."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nlteach import memory
from nlteach.memory import (
    NonFiniteError,
    delta_rule_chunked,
    delta_rule_naive,
    linear_attention_chunked,
    linear_attention_naive,
)


def rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return ((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt().clamp_min(1e-300)).item()


def make_inputs(B, H, T, d_k, d_v, *, dtype=torch.float64, seed=0, gated=False, state=True):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, T, d_k, generator=g, dtype=dtype)
    k = F.normalize(torch.randn(B, H, T, d_k, generator=g, dtype=dtype), dim=-1)
    v = torch.randn(B, H, T, d_v, generator=g, dtype=dtype)
    beta = torch.rand(B, H, T, generator=g, dtype=dtype)
    alpha = 0.5 + 0.5 * torch.rand(B, H, T, generator=g, dtype=dtype) if gated else None
    S0 = torch.randn(B, H, d_k, d_v, generator=g, dtype=dtype) if state else None
    return q, k, v, beta, alpha, S0


def run_with_grads(fn, tensors: dict, seed: int):
    """Run fn(**tensors), backprop random upstream gradients into output and final state."""
    leaves = {n: (t.clone().requires_grad_() if t is not None else None) for n, t in tensors.items()}
    o, S = fn(**leaves)
    g = torch.Generator().manual_seed(seed + 1000)
    go = torch.randn(o.shape, generator=g, dtype=o.dtype)
    gS = torch.randn(S.shape, generator=g, dtype=S.dtype)
    (o * go).sum().add((S * gS).sum()).backward()
    grads = {n: t.grad for n, t in leaves.items() if t is not None}
    return o.detach(), S.detach(), grads


def assert_equivalent(naive, chunked, tensors, chunk_size, tol, seed=0):
    o1, S1, g1 = run_with_grads(naive, tensors, seed)
    o2, S2, g2 = run_with_grads(lambda **kw: chunked(**kw, chunk_size=chunk_size), tensors, seed)
    assert rel_rms(o2, o1) < tol, f"outputs differ: {rel_rms(o2, o1):.3g}"
    assert rel_rms(S2, S1) < tol, f"final states differ: {rel_rms(S2, S1):.3g}"
    assert g1.keys() == g2.keys()
    for name in g1:
        assert g2[name] is not None, f"no gradient for {name}"
        assert rel_rms(g2[name], g1[name]) < tol, f"grad of {name} differs: {rel_rms(g2[name], g1[name]):.3g}"


shapes = st.fixed_dictionaries({
    "B": st.integers(1, 2),
    "H": st.integers(1, 2),
    "T": st.integers(1, 300),
    "d_k": st.integers(1, 9),
    "d_v": st.integers(1, 9),
    "chunk_size": st.integers(1, 128),
    "state": st.booleans(),
    "seed": st.integers(0, 10_000),
})
SWEEP = settings(max_examples=12, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow])


def _tensors(s, *, dtype, gated, rule):
    q, k, v, beta, alpha, S0 = make_inputs(s["B"], s["H"], s["T"], s["d_k"], s["d_v"], dtype=dtype,
                                           seed=s["seed"], gated=gated, state=s["state"])
    t = {"q": q, "k": k, "v": v, "initial_state": S0}
    if rule == "delta":
        t["beta"] = beta
        t["alpha"] = alpha
    return t


# ---------------------------------------------------------------------------------------------
# naive == chunked


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@given(s=shapes)
@SWEEP
def test_linear_attention_chunked_equals_naive(dtype, tol, s):
    t = _tensors(s, dtype=dtype, gated=False, rule="linear")
    assert_equivalent(linear_attention_naive, linear_attention_chunked, t, s["chunk_size"], tol, s["seed"])


@pytest.mark.parametrize("gated", [False, True], ids=["delta", "gated_delta"])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@given(s=shapes)
@SWEEP
def test_delta_rule_chunked_equals_naive(dtype, tol, gated, s):
    t = _tensors(s, dtype=dtype, gated=gated, rule="delta")
    assert_equivalent(delta_rule_naive, delta_rule_chunked, t, s["chunk_size"], tol, s["seed"])


@pytest.mark.parametrize("chunk_size", [1, 3, 16, 64, 100])
def test_gated_delta_rule_fixed_cases(chunk_size):
    """Not left to chance: T not a multiple of C, d_k != d_v, strong decay, random state."""
    q, k, v, beta, alpha, S0 = make_inputs(2, 2, 77, 6, 4, gated=True, seed=chunk_size)
    alpha = 0.05 + 0.95 * alpha.pow(8)  # some tokens forget almost everything
    t = {"q": q, "k": k, "v": v, "beta": beta, "alpha": alpha, "initial_state": S0}
    assert_equivalent(delta_rule_naive, delta_rule_chunked, t, chunk_size, 1e-10)


@pytest.mark.parametrize("chunk_size", [1, 2, 5])
def test_linear_attention_many_chunks(chunk_size):
    """More than 64 chunks: the prefix sums over the chunks run in several blocks."""
    q, k, v, _, _, S0 = make_inputs(1, 2, 157, 5, 3, seed=chunk_size)
    t = {"q": q, "k": k, "v": v, "initial_state": S0}
    assert_equivalent(linear_attention_naive, linear_attention_chunked, t, chunk_size, 1e-10)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("N,block", [(1, 4), (4, 4), (11, 4), (11, 64)])
def test_chunk_prefix_sums(N, block, reverse):
    g = torch.Generator().manual_seed(N)
    X = torch.randn(3, N, 5, generator=g, dtype=torch.float64)
    S0 = torch.randn(3, 5, generator=g, dtype=torch.float64)
    out = memory._chunk_prefix_sums(X, S0, reverse=reverse, block=block)
    Xr = X.flip(1) if reverse else X
    expected = S0.unsqueeze(1) + Xr.cumsum(1) - Xr  # exclusive: everything strictly before
    expected = expected.flip(1) if reverse else expected
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_default_chunk_size_is_64():
    import inspect

    for fn in (linear_attention_chunked, delta_rule_chunked):
        assert inspect.signature(fn).parameters["chunk_size"].default == 64


# ---------------------------------------------------------------------------------------------
# The naive versions are the equations as written


def test_linear_attention_is_causal_unnormalised_attention():
    q, k, v, *_ = make_inputs(1, 2, 11, 3, 5)
    o, S = linear_attention_naive(q, k, v)
    scores = (q @ k.transpose(-1, -2)).tril()  # o_t = sum_{j <= t} (q_t . k_j) v_j (inclusive)
    assert torch.allclose(o, scores @ v, atol=1e-12)
    assert torch.allclose(S, k.transpose(-1, -2) @ v, atol=1e-12)


def test_delta_rule_naive_is_the_contract_equation():
    """S_t = (I - beta_t k_t k_t^T)(alpha_t S_{t-1}) + beta_t k_t v_t^T, o_t = S_t^T q_t, one
    (b, h) at a time with explicit identity matrices."""
    q, k, v, beta, alpha, S0 = make_inputs(2, 1, 9, 4, 3, gated=True)
    o, S_T = delta_rule_naive(q, k, v, beta, alpha=alpha, initial_state=S0)
    for b in range(2):
        S = S0[b, 0]
        I = torch.eye(4, dtype=S.dtype)
        for t in range(9):
            kt, vt = k[b, 0, t, :, None], v[b, 0, t, :, None]
            S = (I - beta[b, 0, t] * kt @ kt.T) @ (alpha[b, 0, t] * S) + beta[b, 0, t] * kt @ vt.T
            assert torch.allclose(o[b, 0, t], S.T @ q[b, 0, t], atol=1e-12)
        assert torch.allclose(S_T[b, 0], S, atol=1e-12)


def test_delta_rule_with_beta_one_stores_the_last_value_exactly():
    """With a unit key and beta = 1, reading the key right after writing returns v exactly."""
    q, k, v, beta, _, S0 = make_inputs(1, 1, 5, 4, 2)
    o, _ = delta_rule_naive(k, k, v, torch.ones_like(beta), initial_state=S0)
    assert torch.allclose(o, v, atol=1e-12)


@pytest.mark.parametrize("fn", [delta_rule_naive, delta_rule_chunked])
def test_gated_rule_with_alpha_one_equals_plain_rule(fn):
    q, k, v, beta, _, S0 = make_inputs(2, 2, 45, 5, 3, seed=3)
    kw = {} if fn is delta_rule_naive else {"chunk_size": 8}
    o1, S1 = fn(q, k, v, beta, initial_state=S0, **kw)
    o2, S2 = fn(q, k, v, beta, alpha=torch.ones_like(beta), initial_state=S0, **kw)
    assert rel_rms(o2, o1) < 1e-13 and rel_rms(S2, S1) < 1e-13


def test_delta_rule_beta_zero_keeps_the_initial_state():
    q, k, v, beta, alpha, S0 = make_inputs(1, 2, 20, 4, 4, gated=True)
    o, S = delta_rule_chunked(q, k, v, torch.zeros_like(beta), initial_state=S0, chunk_size=7)
    assert torch.allclose(S, S0) and torch.allclose(o, q @ S0)
    o, S = delta_rule_chunked(q, k, v, torch.zeros_like(beta), alpha=alpha, initial_state=S0, chunk_size=7)
    assert torch.allclose(S, alpha.prod(-1)[..., None, None] * S0)


def test_sequence_can_be_split_with_the_final_state():
    """Processing [0, t) then [t, T) from the returned state equals processing [0, T) at once."""
    q, k, v, beta, alpha, S0 = make_inputs(1, 2, 50, 4, 3, gated=True)
    o, S = delta_rule_chunked(q, k, v, beta, alpha=alpha, initial_state=S0, chunk_size=16)
    cut = 21
    oa, Sa = delta_rule_chunked(q[:, :, :cut], k[:, :, :cut], v[:, :, :cut], beta[..., :cut],
                                alpha=alpha[..., :cut], initial_state=S0, chunk_size=16)
    ob, Sb = delta_rule_chunked(q[:, :, cut:], k[:, :, cut:], v[:, :, cut:], beta[..., cut:],
                                alpha=alpha[..., cut:], initial_state=Sa, chunk_size=16)
    assert rel_rms(torch.cat([oa, ob], 2), o) < 1e-12 and rel_rms(Sb, S) < 1e-12


def test_empty_sequence_returns_the_initial_state():
    q, k, v, beta, _, S0 = make_inputs(1, 1, 0, 3, 2)
    for fn, args in [(linear_attention_naive, ()), (linear_attention_chunked, ()),
                     (delta_rule_naive, (beta,)), (delta_rule_chunked, (beta,))]:
        o, S = fn(q, k, v, *args, initial_state=S0)
        assert o.shape == (1, 1, 0, 2) and torch.equal(S, S0)


# ---------------------------------------------------------------------------------------------
# gradcheck (fp64, small)


def test_gradcheck_chunked():
    q, k, v, beta, alpha, S0 = make_inputs(1, 1, 7, 3, 2, gated=True)
    args = [x.clone().requires_grad_() for x in (q, k, v, beta, alpha, S0)]

    def gated(q, k, v, beta, alpha, S0):
        return delta_rule_chunked(q, k, v, beta, alpha=alpha, initial_state=S0, chunk_size=3)

    def plain(q, k, v, beta, S0):
        return delta_rule_chunked(q, k, v, beta, initial_state=S0, chunk_size=4)

    def linear(q, k, v, S0):
        return linear_attention_chunked(q, k, v, initial_state=S0, chunk_size=3)

    assert torch.autograd.gradcheck(gated, args)
    assert torch.autograd.gradcheck(plain, [args[i] for i in (0, 1, 2, 3, 5)])
    assert torch.autograd.gradcheck(linear, [args[i] for i in (0, 1, 2, 5)])


def test_gradcheck_naive():
    q, k, v, beta, alpha, S0 = make_inputs(1, 1, 4, 2, 2, gated=True)
    args = [x.clone().requires_grad_() for x in (q, k, v, beta, alpha, S0)]
    assert torch.autograd.gradcheck(
        lambda q, k, v, b, a, s: delta_rule_naive(q, k, v, b, alpha=a, initial_state=s), args)


# ---------------------------------------------------------------------------------------------
# Numerical health


def test_long_sequence_fp32_stays_finite():
    q, k, v, beta, alpha, S0 = make_inputs(1, 1, 65536, 16, 16, dtype=torch.float32, gated=True)
    for a in (None, alpha):
        o, S = delta_rule_chunked(q, k, v, beta, alpha=a, initial_state=S0)
        assert torch.isfinite(o).all() and torch.isfinite(S).all()
    o, S = linear_attention_chunked(q, k, v, initial_state=S0)
    assert torch.isfinite(o).all() and torch.isfinite(S).all()


@pytest.mark.parametrize("gated", [False, True])
def test_bf16_chunked_is_close_to_fp32(gated):
    q, k, v, beta, alpha, S0 = make_inputs(1, 2, 1024, 16, 16, dtype=torch.float32, gated=gated)
    o32, S32 = delta_rule_naive(q, k, v, beta, alpha=alpha, initial_state=S0)
    bf = [None if x is None else x.bfloat16() for x in (q, k, v, beta, alpha, S0)]
    o16, S16 = delta_rule_chunked(bf[0], bf[1], bf[2], bf[3], alpha=bf[4], initial_state=bf[5])
    assert o16.dtype == torch.bfloat16 and S16.dtype == torch.bfloat16
    assert rel_rms(o16, o32) < 2e-2 and rel_rms(S16, S32) < 2e-2


def test_output_dtype_follows_input():
    for dtype in (torch.float32, torch.float64, torch.float16):
        q, k, v, beta, *_ = make_inputs(1, 1, 10, 2, 3, dtype=dtype, state=False)
        for o, S in (linear_attention_chunked(q, k, v), delta_rule_chunked(q, k, v, beta)):
            assert o.dtype == dtype and S.dtype == dtype


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    q, k, v, beta, alpha, S0 = make_inputs(2, 2, 130, 16, 8, dtype=torch.float32, gated=True)
    o, S = delta_rule_chunked(q, k, v, beta, alpha=alpha, initial_state=S0)
    oc, Sc = delta_rule_chunked(*(x.cuda() for x in (q, k, v, beta)), alpha=alpha.cuda(),
                                initial_state=S0.cuda())
    assert rel_rms(oc.cpu(), o) < 1e-5 and rel_rms(Sc.cpu(), S) < 1e-5
    ol, Sl = linear_attention_chunked(q.cuda(), k.cuda(), v.cuda(), initial_state=S0.cuda())
    assert rel_rms(ol.cpu(), linear_attention_naive(q, k, v, initial_state=S0)[0]) < 1e-5


# ---------------------------------------------------------------------------------------------
# Errors name the argument, what was received and what was expected


def _base():
    q, k, v, beta, alpha, S0 = make_inputs(2, 3, 10, 4, 5, dtype=torch.float32, gated=True)
    return q, k, v, beta, alpha, S0


@pytest.mark.parametrize("fn", [delta_rule_naive, delta_rule_chunked])
def test_errors_delta_rule(fn):
    q, k, v, beta, alpha, S0 = _base()
    with pytest.raises(ValueError, match=r"q must be 4-D .*\(10, 4\)"):
        fn(q[0, 0], k, v, beta)
    with pytest.raises(ValueError, match=r"q must have the same shape as k"):
        fn(q[..., :3], k, v, beta)
    with pytest.raises(ValueError, match=r"v must be \[B, H, T, d_v\]"):
        fn(q, k, v[:, :, :9], beta)
    with pytest.raises(ValueError, match=r"beta must be \[B, H, T\] = \(2, 3, 10\).*\(2, 3, 10, 1\)"):
        fn(q, k, v, beta[..., None])
    with pytest.raises(ValueError, match=r"alpha must be \[B, H, T\]"):
        fn(q, k, v, beta, alpha=alpha[:, :1])
    with pytest.raises(ValueError, match=r"initial_state must be \[B, H, d_k, d_v\] = \(2, 3, 4, 5\)"):
        fn(q, k, v, beta, initial_state=S0.transpose(-1, -2))
    with pytest.raises(TypeError, match=r"v has dtype torch.float64 but q has torch.float32"):
        fn(q, k, v.double(), beta)
    with pytest.raises(TypeError, match=r"k must be a floating-point tensor"):
        fn(q, k.long(), v, beta)
    with pytest.raises(TypeError, match=r"beta must be a torch.Tensor, got float"):
        fn(q, k, v, 0.5)
    with pytest.raises(ValueError, match=r"k is on device meta but q is on cpu"):
        fn(q, k.to("meta"), v, beta)
    with pytest.raises(ValueError, match=r"beta must lie in \[0, 2\].*-0.5"):
        fn(q, k, v, beta - 0.5 - beta.max())
    with pytest.raises(ValueError, match=r"alpha must lie in \(0, 1\]"):
        fn(q, k, v, beta, alpha=torch.zeros_like(alpha))
    with pytest.raises(ValueError, match=r"alpha must lie in \(0, 1\].*1.5"):
        fn(q, k, v, beta, alpha=alpha + 1.5 - alpha.max())


# ---------------------------------------------------------------------------------------------
# Non-finite values stay causal (docs/decisions.md#memory-non-finite): a NaN or Inf at token t
# leaves every output before t finite, in the chunked forms as in the token loops.

RULES = {
    "linear": (linear_attention_naive, linear_attention_chunked),
    "delta": (delta_rule_naive, delta_rule_chunked),
    "gated_delta": (delta_rule_naive, delta_rule_chunked),
}


def _rule_inputs(rule, dtype, T=20):
    q, k, v, beta, alpha, S0 = make_inputs(2, 2, T, 4, 3, dtype=dtype, seed=3, gated=rule == "gated_delta")
    x = {"q": q, "k": k, "v": v, "initial_state": S0}
    if rule != "linear":
        x["beta"] = beta
        x["alpha"] = alpha
    return x


@pytest.mark.parametrize("rule", list(RULES))
@pytest.mark.parametrize("name", ["q", "k", "v"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("t,chunk_size", [(5, 8), (8, 8), (16, 8), (0, 8), (19, 4), (5, 64)],
                         ids=["inside", "chunk-start", "third-chunk", "first-token", "last-token", "one-chunk"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
def test_nonfinite_input_does_not_reach_earlier_outputs(rule, name, bad, t, chunk_size, dtype):
    x = _rule_inputs(rule, dtype)
    x[name][1, 0, t, 1] = bad  # batch 1, head 0, token t
    naive, chunked = RULES[rule]
    o_n, S_n = naive(**x)
    o_c, S_c = chunked(**x, chunk_size=chunk_size)
    assert torch.isfinite(o_c[:, :, :t]).all(), "a non-finite value travelled backwards in time"
    # the same finite / non-finite pattern as the token loop everywhere, and the same values
    assert torch.equal(torch.isfinite(o_c), torch.isfinite(o_n))
    assert torch.equal(torch.isfinite(S_c), torch.isfinite(S_n))
    fin = torch.isfinite(o_n)
    assert rel_rms(o_c[fin], o_n[fin]) < (1e-10 if dtype == torch.float64 else 1e-5)


@pytest.mark.parametrize("rule", ["delta", "gated_delta"])
@pytest.mark.parametrize("gate", ["beta", "alpha"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=["nan", "inf"])
@pytest.mark.parametrize("fn", [delta_rule_naive, delta_rule_chunked])
def test_nonfinite_gates_are_refused_with_their_position(rule, gate, bad, fn):
    x = _rule_inputs(rule, torch.float32)
    if x["alpha"] is None and gate == "alpha":
        x["alpha"] = torch.ones_like(x["beta"])
    x[gate][1, 0, 7] = bad
    with pytest.raises(NonFiniteError, match=rf"{gate} must lie in .*got {bad} at \(batch 1, head 0, token 7\)"):
        fn(**x)
    x[gate][1, 0, 7] = 2.5  # finite but outside the range: a plain ValueError
    with pytest.raises(ValueError, match=rf"{gate} must lie in .*got 2.5 at \(batch 1, head 0, token 7\)") as e:
        fn(**x)
    assert not isinstance(e.value, NonFiniteError)


def test_nonfinite_state_from_finite_inputs_is_returned_as_is():
    # an overflow (finite inputs, non-finite state) has no bad token to recompute from: the result
    # comes back unchanged, like the token loop's
    q, k, v, *_ = make_inputs(1, 1, 12, 3, 2, dtype=torch.float32, state=False)
    k, v = k * 1e30, v * 1e30  # k v^T overflows float32
    o_n, S_n = linear_attention_naive(q, k, v)
    o_c, S_c = linear_attention_chunked(q, k, v, chunk_size=4)
    assert not torch.isfinite(S_c).all() and not torch.isfinite(S_n).all()
    assert o_c.shape == o_n.shape


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "64"])
def test_errors_chunk_size(bad):
    q, k, v, beta, *_ = _base()
    with pytest.raises(ValueError, match=r"chunk_size must be an int >= 1"):
        delta_rule_chunked(q, k, v, beta, chunk_size=bad)
    with pytest.raises(ValueError, match=r"chunk_size must be an int >= 1"):
        linear_attention_chunked(q, k, v, chunk_size=bad)


def test_errors_linear_attention():
    q, k, v, *_ = _base()
    with pytest.raises(ValueError, match="q must have the same shape as k"):
        linear_attention_naive(q[:, :, :5], k, v)
    with pytest.raises(ValueError, match=r"initial_state must be"):
        linear_attention_chunked(q, k, v, initial_state=torch.zeros(2, 3, 4))


# ---------------------------------------------------------------------------------------------
# The benchmark suite runs end to end (nothing is timed against a threshold here)


def test_bench_memory_suite_runs_and_reports_ratios(tmp_path):
    import argparse

    from nlteach.bench import memory as bench_memory

    p = argparse.ArgumentParser()
    bench_memory.add_arguments(p)
    args = p.parse_args(["--T", "20", "--BH", "1", "--d", "4", "--chunk-size", "8,16", "--repeat", "1"])
    args.preset, args.device, args.out = "tiny", torch.device("cpu"), tmp_path
    res = bench_memory.run(args)
    assert set(res["rules"]) == {"linear", "delta", "gated_delta"}
    for r in res["rules"].values():
        assert r["speedup_fwd"] > 0 and r["speedup_fwd_bwd"] > 0 and 0 < r["fwd_matmul_fraction"]
        assert set(r["by_chunk"]) == {8, 16} and r["chunk_size_fwd"] in (8, 16)
    assert "delta_fwd_bwd_speedup >= 20" in res["targets"]
    with pytest.raises(SystemExit, match="no such file"):
        bench_memory.load_fla_chunkwise(str(tmp_path / "missing.py"))
    with pytest.raises(SystemExit, match="no fla/ops/delta_rule/naive.py under"):
        bench_memory.load_fla_chunkwise(str(tmp_path))
    with pytest.raises(SystemExit, match="--chunk-size"):
        bench_memory._chunk_sizes("0,8")


def test_bench_memory_flop_count():
    """Needed FLOPs count triangular products by their triangle; executed ones count them in full."""
    from nlteach.bench.memory import chunked_flops

    T, C, d = 64, 64, 4
    # linear: Q K^T and P V over C (C + 1) / 2 entries per chunk, K^T V and Q S in full
    assert chunked_flops("linear", T, 1, d, d, C) == T * (C + 1) * 2 * d + 4 * T * d * d
    assert chunked_flops("linear", T, 1, d, d, C, executed=True) == 2 * T * C * 2 * d + 4 * T * d * d
    # delta: one chunk of one token needs no triangle: q . k, K^T [U, W], W S, P U_pseudo, Q S
    # and the state step E S
    assert chunked_flops("delta", 1, 1, d, d, 1) == 2 * d + 2 * d * 2 * d + 2 * d * d + 2 * d + 2 * d * d + 2 * d**3
    assert chunked_flops("delta", T, 3, d, d, C) == 3 * chunked_flops("delta", T, 1, d, d, C)
    assert chunked_flops("delta", T, 1, d, d, C) < chunked_flops("delta", T, 1, d, d, C, executed=True)
