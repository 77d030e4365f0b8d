import copy

import pytest
import torch
from torch import nn

from nlteach.cms import (
    CMS,
    VARIANTS,
    MultiFrequencyOptimizer,
    cms_in_context_chunked,
    cms_in_context_naive,
    mlp_block,
)


def _rel_rms(a, b):
    return ((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt().clamp_min(1e-30)).item()


# ---------------------------------------------------------------------------------------------
# The module


@pytest.mark.parametrize("variant", VARIANTS)
def test_cms_keeps_the_shape_and_levels_cover_every_parameter_once(variant):
    torch.manual_seed(0)
    cms = CMS(6, 10, periods=(1, 4, 16, 64), variant=variant)
    for shape in [(6,), (3, 6), (2, 5, 6)]:
        assert cms(torch.randn(shape)).shape == shape
    levels = cms.level_parameters()
    assert len(levels) == 4 and all(levels)
    ids = [id(p) for lvl in levels for p in lvl]
    assert sorted(ids) == sorted(id(p) for p in cms.parameters())


def test_independent_variant_reads_the_full_input_and_mixes_outputs():
    torch.manual_seed(0)
    cms = CMS(4, 8, periods=(1, 2, 3), variant="independent")
    with torch.no_grad():
        cms.mix_logits.copy_(torch.tensor([0.3, -1.0, 2.0]))
    x = torch.randn(5, 4)
    w = torch.softmax(cms.mix_logits, 0)
    expected = sum(w[i] * mlp_block(x, b.W_in, b.W_out) for i, b in enumerate(cms.blocks))
    torch.testing.assert_close(cms(x), expected)
    assert any(p is cms.mix_logits for p in cms.level_parameters()[2])  # the slowest level owns the mixing


def test_sequential_variant_is_a_chain():
    torch.manual_seed(0)
    cms = CMS(4, 8, periods=(1, 2), variant="sequential")
    x = torch.randn(5, 4)
    b0, b1 = cms.blocks
    torch.testing.assert_close(cms(x), mlp_block(mlp_block(x, b0.W_in, b0.W_out), b1.W_in, b1.W_out))


@pytest.mark.parametrize("kwargs,match", [
    ({"variant": "parallel"}, "variant must be one of"),
    ({"periods": (1, 0, 4)}, r"periods\[1\]"),
    ({"periods": (4, 1), "variant": "nested"}, "non-decreasing"),
    ({"periods": ()}, "at least one level"),
])
def test_bad_cms_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        CMS(4, 8, **kwargs)
    with pytest.raises(ValueError, match="dim"):
        CMS(0, 8)
    with pytest.raises(ValueError, match="last dimension"):
        CMS(4, 8)(torch.randn(3, 5))


# ---------------------------------------------------------------------------------------------
# Multi-frequency training


def _train_steps(model, opt, n, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randn(8, model.dim, generator=g, dtype=dtype)
        y = torch.randn(8, model.dim, generator=g, dtype=dtype)
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        opt.step()


@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_levels_frozen_between_updates_and_move_by_the_accumulated_gradient(reduce):
    torch.manual_seed(0)
    periods = (1, 3, 4)
    lrs = (0.05, 0.02, 0.01)
    cms = CMS(4, 6, periods=periods)
    opt = MultiFrequencyOptimizer(cms.level_parameters(), periods, reduce=reduce, lr=lrs)
    levels = cms.level_parameters()
    acc = [[torch.zeros_like(p) for p in lvl] for lvl in levels]
    g = torch.Generator().manual_seed(1)
    for s in range(1, 14):
        before = [[p.detach().clone() for p in lvl] for lvl in levels]
        x, y = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
        opt.zero_grad()
        ((cms(x) - y) ** 2).mean().backward()
        grads = [[p.grad.clone() for p in lvl] for lvl in levels]
        opt.step()
        for i, lvl in enumerate(levels):
            for j, p in enumerate(lvl):
                acc[i][j].add_(grads[i][j])
                assert torch.equal(p.grad, grads[i][j])  # .grad is left as backward wrote it
                if s % periods[i]:
                    assert torch.equal(p.detach(), before[i][j]), f"level {i} moved at step {s}"
                else:
                    step = acc[i][j] if reduce == "sum" else acc[i][j] / periods[i]
                    expected = before[i][j].add(step, alpha=-lrs[i])
                    assert torch.equal(p.detach(), expected), f"level {i} at step {s}"
                    assert not torch.equal(p.detach(), before[i][j])
                    acc[i][j].zero_()
    assert opt.step_count == 13 and opt.last_due == (True, False, False)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("base,kw", [(torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}),
                                     (torch.optim.Adam, {"lr": 1e-2})])
def test_one_level_of_period_one_equals_a_plain_mlp(variant, base, kw):
    torch.manual_seed(0)
    cms = CMS(5, 7, periods=(1,), variant=variant)

    class PlainMLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.up = nn.Linear(5, 7, bias=False)
            self.down = nn.Linear(7, 5, bias=False)

        def forward(self, x):
            return x + self.down(torch.nn.functional.silu(self.up(x)))

    mlp = PlainMLP()
    with torch.no_grad():
        mlp.up.weight.copy_(cms.blocks[0].W_in)
        mlp.down.weight.copy_(cms.blocks[0].W_out)
    opt_cms = cms.multi_frequency_optimizer(base=base, **kw)
    opt_mlp = base(mlp.parameters(), **kw)
    g = torch.Generator().manual_seed(3)
    for _ in range(12):
        x, y = torch.randn(16, 5, generator=g), torch.randn(16, 5, generator=g)
        for model, opt in ((cms, opt_cms), (mlp, opt_mlp)):
            opt.zero_grad()
            ((model(x) - y) ** 2).mean().backward()
            opt.step()
    assert torch.equal(cms.blocks[0].W_in.detach(), mlp.up.weight.detach())
    assert torch.equal(cms.blocks[0].W_out.detach(), mlp.down.weight.detach())


@pytest.mark.parametrize("variant", VARIANTS)
def test_state_dict_round_trip_mid_period_resumes_exactly(variant):
    torch.manual_seed(0)
    periods = (1, 2, 4, 8)
    ref = CMS(4, 6, periods=periods, variant=variant)
    start = copy.deepcopy(ref.state_dict())
    opt = ref.multi_frequency_optimizer(base=torch.optim.Adam, lr=(1e-2, 5e-3, 2e-3, 1e-3))
    _train_steps(ref, opt, 11)  # uninterrupted run

    a = CMS(4, 6, periods=periods, variant=variant)
    a.load_state_dict(start)
    opt_a = a.multi_frequency_optimizer(base=torch.optim.Adam, lr=(1e-2, 5e-3, 2e-3, 1e-3))
    g = torch.Generator().manual_seed(0)
    for s in range(11):
        if s == 5:  # step 5 done: levels with periods 2, 4, 8 hold accumulated gradients
            assert any(acc.abs().sum() > 0 for acc in opt_a.state_dict()["accum"][3])
            model_sd, opt_sd = copy.deepcopy(a.state_dict()), copy.deepcopy(opt_a.state_dict())
            a = CMS(4, 6, periods=periods, variant=variant)
            a.load_state_dict(model_sd)
            opt_a = a.multi_frequency_optimizer(base=torch.optim.Adam, lr=(1e-2, 5e-3, 2e-3, 1e-3))
            opt_a.load_state_dict(opt_sd)
        x = torch.randn(8, 4, generator=g)
        y = torch.randn(8, 4, generator=g)
        opt_a.zero_grad()
        ((a(x) - y) ** 2).mean().backward()
        opt_a.step()
    for (n, p), (_, q) in zip(ref.named_parameters(), a.named_parameters(), strict=True):
        assert torch.equal(p, q), n


def test_nested_variant_resets_fast_blocks_on_the_slower_schedule():
    torch.manual_seed(0)
    cms = CMS(4, 6, periods=(1, 4), variant="nested")
    opt = cms.multi_frequency_optimizer(lr=0.1)
    base0 = cms.blocks[0].W_in.detach().clone()
    g = torch.Generator().manual_seed(0)
    for s in range(1, 9):
        x, y = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
        opt.zero_grad()
        ((cms(x) - y) ** 2).mean().backward()
        opt.step()
        delta = cms.deltas[0].W_in.detach()
        if s % 4:
            assert delta.abs().sum() > 0  # the fast block learned since its last re-initialization
            assert torch.equal(cms.blocks[0].W_in.detach(), base0)  # its initial state waits
        else:
            assert torch.equal(delta, torch.zeros_like(delta))  # re-initialized ...
            assert not torch.equal(cms.blocks[0].W_in.detach(), base0)  # ... from the updated state
            base0 = cms.blocks[0].W_in.detach().clone()


def test_multi_frequency_optimizer_errors():
    ps = [[nn.Parameter(torch.zeros(2))], [nn.Parameter(torch.zeros(2))]]
    with pytest.raises(ValueError, match="2 levels but periods has 3"):
        MultiFrequencyOptimizer(ps, (1, 2, 4), lr=0.1)
    with pytest.raises(ValueError, match=r"periods\[1\]"):
        MultiFrequencyOptimizer(ps, (1, 0), lr=0.1)
    with pytest.raises(ValueError, match="reduce"):
        MultiFrequencyOptimizer(ps, (1, 2), reduce="max", lr=0.1)
    with pytest.raises(ValueError, match="lr has 3 entries"):
        MultiFrequencyOptimizer(ps, (1, 2), lr=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="level 1 .* no parameters"):
        MultiFrequencyOptimizer([ps[0], []], (1, 2), lr=0.1)
    with pytest.raises(ValueError, match="exactly one level"):
        MultiFrequencyOptimizer([ps[0], ps[0]], (1, 2), lr=0.1)
    opt = MultiFrequencyOptimizer(ps, (1, 2), lr=0.1)
    other = MultiFrequencyOptimizer(ps, (1, 4), lr=0.1)
    with pytest.raises(ValueError, match="periods"):
        other.load_state_dict(opt.state_dict())


# ---------------------------------------------------------------------------------------------
# In-context updates (Eq. 71): naive == chunked


def _problem(B, T, D, hidden, periods, dtype, seed, per_token_lr=False, per_level_targets=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, D, generator=g, dtype=dtype)
    K = len(periods)
    weights = [(torch.randn(B, hidden, D, generator=g, dtype=dtype) / D ** 0.5,
                torch.randn(B, D, hidden, generator=g, dtype=dtype) / hidden ** 0.5) for _ in range(K)]
    if per_level_targets:
        targets = [torch.randn(B, T, D, generator=g, dtype=dtype) for _ in range(K)]
    else:
        targets = torch.randn(B, T, D, generator=g, dtype=dtype)
    if per_token_lr:
        lr = [0.1 * torch.rand(B, T, generator=g, dtype=dtype) for _ in range(K)]
    else:
        lr = [0.1 / (i + 1) for i in range(K)]
    return x, weights, targets, lr


@pytest.mark.parametrize("variant", ["sequential", "independent"])
@pytest.mark.parametrize("periods,T", [((1,), 7), ((3,), 10), ((1, 4, 5), 23), ((2, 8), 16), ((16,), 5)])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_in_context_naive_equals_chunked(variant, periods, T, dtype, tol):
    x, weights, targets, lr = _problem(2, T, 4, 6, periods, dtype, seed=T + len(periods),
                                       per_token_lr=len(periods) > 1, per_level_targets=T % 2 == 1)
    leaves = [x] + [w for pair in weights for w in pair] + ([targets] if torch.is_tensor(targets) else targets)
    leaves = [t.clone().requires_grad_() for t in leaves]
    x_, rest = leaves[0], leaves[1:]
    w_ = [(rest[2 * i], rest[2 * i + 1]) for i in range(len(periods))]
    t_ = rest[2 * len(periods):]
    t_ = t_[0] if len(t_) == 1 else t_
    g = torch.Generator().manual_seed(99)
    results = []
    for fn in (cms_in_context_naive, cms_in_context_chunked):
        y, finals = fn(x_, w_, periods, lr, targets=t_, variant=variant)
        flat = [y] + [w for pair in finals for w in pair]
        g.manual_seed(99)
        ups = [torch.randn(f.shape, generator=g, dtype=dtype) for f in flat]
        grads = torch.autograd.grad(sum((f * u).sum() for f, u in zip(flat, ups, strict=True)), leaves, allow_unused=True)
        grads = [torch.zeros_like(t) if gr is None else gr for t, gr in zip(leaves, grads, strict=True)]
        results.append((flat, grads))
    (flat_n, grads_n), (flat_c, grads_c) = results
    for a, b in zip(flat_n, flat_c, strict=True):
        assert _rel_rms(b, a) < tol
    for a, b in zip(grads_n, grads_c, strict=True):
        assert (a == 0).all() and (b == 0).all() or _rel_rms(b, a) < tol


def test_in_context_token_reads_chunk_start_weights_and_updates_only_full_chunks():
    x, weights, targets, _ = _problem(1, 7, 3, 5, (3,), torch.float64, seed=0)
    y, ((W_in, W_out),) = cms_in_context_naive(x, weights, (3,), 0.5, targets=targets)
    W_in0, W_out0 = weights[0]
    # tokens 1..3 read the initial weights, so they equal a plain forward pass
    torch.testing.assert_close(y[:, :3], mlp_block(x[:, :3], W_in0, W_out0))
    # the update after token 3 is one GD step on the sum of the chunk's losses (via autograd)
    A, Bm = W_in0.clone().requires_grad_(), W_out0.clone().requires_grad_()
    loss = 0.5 * ((mlp_block(x[:, :3], A, Bm) - targets[:, :3]) ** 2).sum()
    gA, gB = torch.autograd.grad(loss, (A, Bm))
    W_in1, W_out1 = W_in0 - 0.5 * gA, W_out0 - 0.5 * gB
    torch.testing.assert_close(y[:, 3:6], mlp_block(x[:, 3:6], W_in1, W_out1))
    # token 7 is a partial chunk: read, never applied
    A, Bm = W_in1.clone().requires_grad_(), W_out1.clone().requires_grad_()
    loss = 0.5 * ((mlp_block(x[:, 3:6], A, Bm) - targets[:, 3:6]) ** 2).sum()
    gA, gB = torch.autograd.grad(loss, (A, Bm))
    torch.testing.assert_close(W_in, W_in1 - 0.5 * gA)
    torch.testing.assert_close(W_out, W_out1 - 0.5 * gB)


def test_in_context_with_zero_lr_is_the_plain_forward_pass():
    torch.manual_seed(0)
    for variant in ("sequential", "independent"):
        cms = CMS(4, 8, periods=(1, 2, 4), variant=variant)
        x = torch.randn(2, 9, 4)
        for impl in ("naive", "chunked"):
            y, finals = cms.in_context(x, targets=torch.randn(2, 9, 4), lr=0.0, impl=impl)
            torch.testing.assert_close(y, cms(x))
            assert finals[0][0].shape == (2, 8, 4)
    with pytest.raises(ValueError, match="nested"):
        CMS(4, 8, variant="nested").in_context(x, targets=x, lr=0.1)


def test_in_context_learning_reduces_the_loss_on_a_fixed_map():
    g = torch.Generator().manual_seed(0)
    D = 4
    M = torch.randn(D, D, generator=g) / D ** 0.5
    x = torch.randn(1, 256, D, generator=g)
    v = x @ M.T
    w = [(torch.randn(16, D, generator=g) / 2, torch.zeros(D, 16))]
    y, _ = cms_in_context_chunked(x, w, (4,), 0.05, targets=v)
    err = ((y - v) ** 2).sum(-1)[0]
    assert err[-64:].mean() < 0.5 * err[:16].mean()


def test_in_context_errors():
    x = torch.randn(2, 5, 3)
    w = [(torch.randn(4, 3), torch.randn(3, 4))]
    with pytest.raises(ValueError, match=r"x must be \[B, T, D\]"):
        cms_in_context_naive(x[0], w, (1,), 0.1, targets=x[0])
    with pytest.raises(ValueError, match="weights has 1 blocks but periods has 2"):
        cms_in_context_chunked(x, w, (1, 2), 0.1, targets=x)
    with pytest.raises(ValueError, match=r"targets\[0\]"):
        cms_in_context_naive(x, w, (1,), 0.1, targets=x[:, :3])
    with pytest.raises(ValueError, match=r"lr\[0\]"):
        cms_in_context_naive(x, w, (1,), torch.ones(2, 4), targets=x)
    with pytest.raises(ValueError, match=r"weights\[0\]"):
        cms_in_context_naive(x, [(torch.randn(4, 2), torch.randn(3, 4))], (1,), 0.1, targets=x)
    with pytest.raises(ValueError, match="variant"):
        cms_in_context_naive(x, w, (1,), 0.1, targets=x, variant="nested")
    with pytest.raises(ValueError, match=r"periods\[0\]"):
        cms_in_context_naive(x, w, (0,), 0.1, targets=x)
