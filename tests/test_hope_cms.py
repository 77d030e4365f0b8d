"""HOPE's in-context CMS (issue 17): the CMS levels of ``hope`` and ``hope-attention`` learn inside the
sequence (Eq. 71 over tokens), ``hope-static-cms`` keeps them fixed; naive == chunked; the chunk step's
gradients; finite at any input scale."""

import pytest
import torch
import torch.nn.functional as F

from nlteach.cms import cms_chunk_step, cms_in_context_chunked, cms_in_context_naive, cms_level_scan
from nlteach.models import (
    CMSBranch,
    InContextCMSBranch,
    ModelConfig,
    build_model,
    cms_relative_change,
)

V = 37
SMALL = dict(vocab_size=V, dim=16, n_layers=2, n_heads=2, chunk_size=4, proj_chunk_size=3)
IN_CONTEXT = ["hope", "hope-attention", "hope-cms-selfgen"]
STATIC = {"hope": "hope-static-cms", "hope-attention": "hope-attention-static-cms",
          "hope-cms-selfgen": "hope-static-cms"}


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make(name, impl="chunked", seed=0, dtype=torch.float32, **kw):
    torch.manual_seed(seed)
    return build_model(name, ModelConfig(**{**SMALL, **kw}, impl=impl)).to(dtype)


def branches(model):
    return [m for m in model.modules() if isinstance(m, CMSBranch)]


def rel_rms(a, b):
    return ((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt().clamp_min(1e-30)).item()


@pytest.mark.parametrize("name", ["hope", "hope-attention"])
@pytest.mark.parametrize("impl", ["naive", "chunked"])
def test_the_cms_branch_at_t_reads_earlier_tokens_and_never_later_ones(name, impl):
    """In context, the CMS branch's output at token t depends on the tokens before t (through the
    level weights they moved) and not on the tokens after t; the static CMS depends on token t only."""
    model = make(name, impl, dtype=torch.float64, cms_periods=(1, 4, 16))
    branch = model.blocks[0].mlp
    assert isinstance(branch, InContextCMSBranch)
    static = make(STATIC[name], impl, dtype=torch.float64, cms_periods=(1, 4, 16)).blocks[0].mlp
    static.load_state_dict(branch.state_dict(), strict=False)
    g = torch.Generator().manual_seed(0)
    u = torch.randn(2, 40, 16, generator=g, dtype=torch.float64)
    t = 20
    before, after = u.clone(), u.clone()
    before[:, :t] = torch.randn(2, t, 16, generator=g, dtype=torch.float64)
    after[:, t + 1:] = torch.randn(2, 40 - t - 1, 16, generator=g, dtype=torch.float64)
    with torch.no_grad():
        y, y_before, y_after = branch(u), branch(before), branch(after)
        assert not torch.allclose(y_before[:, t], y[:, t], rtol=1e-6, atol=1e-9)  # earlier tokens matter
        assert torch.equal(y_after[:, :t + 1], y[:, :t + 1])  # later tokens do not
        torch.testing.assert_close(static(before)[:, t], static(u)[:, t], rtol=0, atol=0)  # static: only u_t


@pytest.mark.parametrize("name", IN_CONTEXT)
def test_with_the_inner_step_forced_to_zero_the_model_is_the_static_cms_model(name):
    """Same weights, inner step 0: the in-context model gives the static model's logits."""
    model, static = make(name, dtype=torch.float64), make(STATIC[name], dtype=torch.float64, seed=1)
    missing = model.load_state_dict(static.state_dict(), strict=False).missing_keys
    assert missing and all(".mlp.values." in k or ".mlp.gates." in k for k in missing)  # only the inner maps
    idx = torch.randint(0, V, (2, 40), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        moving = model(idx)
        for b in branches(model):
            b.eta_max = 0.0
        torch.testing.assert_close(model(idx), static(idx), rtol=1e-12, atol=1e-12)
        assert not torch.allclose(moving, static(idx), rtol=1e-6, atol=1e-9)  # with steps it differs


@pytest.mark.parametrize("name", IN_CONTEXT)
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_naive_equals_chunked_logits_and_every_parameter_gradient(name, dtype, tol):
    """T = 23 is a multiple of none of the periods (2, 3, 8) nor of the memory chunks (4, 3). Every
    parameter's gradient is compared by its relative RMS error, in float64 each against its own size. In
    float32 a gradient below a tenth of the typical one (a scalar bias of a gate, CMS or self-modifying
    Titans: a sum of many cancelling terms, ~0.1-0.5% of the typical size, whose float32 rounding alone
    is ~1e-5 of itself) is measured against a tenth of the typical size."""
    naive = make(name, "naive", dtype=dtype, cms_periods=(2, 3, 8))
    chunked = make(name, "chunked", seed=1, dtype=dtype, cms_periods=(2, 3, 8))
    chunked.load_state_dict(naive.state_dict())
    idx = torch.randint(0, V, (2, 23), generator=torch.Generator().manual_seed(3))
    outs = []
    for m in (naive, chunked):
        logits = m(idx)
        F.cross_entropy(logits.flatten(0, 1), idx.roll(-1, 1).flatten()).backward()
        outs.append((logits.detach(), {n: p.grad for n, p in m.named_parameters()}))
    (ln, gn), (lc, gc) = outs
    assert rel_rms(lc, ln) < tol
    assert gn.keys() == gc.keys() and all(g is not None for g in gn.values())
    typical = torch.cat([g.flatten() for g in gn.values()]).pow(2).mean().sqrt()
    floor = 0.0 * typical if dtype == torch.float64 else 0.1 * typical
    for n in gn:
        err = (gc[n] - gn[n]).pow(2).mean().sqrt() / torch.maximum(gn[n].pow(2).mean().sqrt(), floor)
        assert err < tol, (n, err.item())


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("self_generated", [False, True])
def test_chunk_step_gradcheck(normalize, self_generated):
    g = torch.Generator().manual_seed(4)
    B, n, D, h = 2, 3, 4, 5
    args = [torch.randn(B, n, D, generator=g, dtype=torch.float64), torch.randn(B, n, D, generator=g, dtype=torch.float64),
            torch.rand(B, n, generator=g, dtype=torch.float64), torch.randn(B, h, D, generator=g, dtype=torch.float64) / 2,
            torch.randn(B, D, h, generator=g, dtype=torch.float64) / 2]
    args = [a.requires_grad_() for a in args]
    fn = lambda *a: cms_chunk_step(*a, 3, normalize=normalize, self_generated=self_generated)  # noqa: E731
    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("C, T", [(1, 4), (3, 7)])
@pytest.mark.parametrize("normalize, self_generated", [(False, False), (True, False), (True, True)])
def test_level_scan_gradcheck(C, T, normalize, self_generated):
    """A whole level (several chunks, each backward step restoring its start weights, and a trailing
    partial chunk when T % C != 0) against finite differences."""
    g = torch.Generator().manual_seed(9)
    B, D, h = 2, 3, 4
    args = [torch.randn(B, T, D, generator=g, dtype=torch.float64), torch.randn(B, T, D, generator=g, dtype=torch.float64),
            torch.rand(B, T, generator=g, dtype=torch.float64), torch.randn(B, h, D, generator=g, dtype=torch.float64) / 2,
            torch.randn(B, D, h, generator=g, dtype=torch.float64) / 2]
    args = [a.requires_grad_() for a in args]
    fn = lambda *a: cms_level_scan(*a, C, normalize=normalize, self_generated=self_generated)  # noqa: E731
    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-8)


def test_normalized_steps_are_what_the_derivation_says():
    """One chunk with normalize=True: the weights move by minus sum_t eta_t / (C (1 + N_t)) times the
    gradient of 1/2 |MLP(u_t) - v_t|^2 (autograd), N_t = |a_t|^2 + |u_t|^2 |W_out diag(silu'(h_t))|_F^2;
    and to first order that step multiplies the token's residual by eigenvalues in (1 - eta / C, 1]."""
    g = torch.Generator().manual_seed(5)
    n, D, h, C = 4, 3, 5, 4
    U, V_ = torch.randn(1, n, D, generator=g, dtype=torch.float64), torch.randn(1, n, D, generator=g, dtype=torch.float64)
    eta = torch.rand(1, n, generator=g, dtype=torch.float64)
    W_in, W_out = torch.randn(1, h, D, generator=g, dtype=torch.float64), torch.randn(1, D, h, generator=g, dtype=torch.float64)
    _, W_in1, W_out1 = cms_chunk_step(U, V_, eta, W_in, W_out, C, normalize=True)
    exp_in, exp_out = W_in.clone(), W_out.clone()
    for t in range(n):
        A, Bo = W_in.clone().requires_grad_(), W_out.clone().requires_grad_()
        u = U[:, t:t + 1]
        o = u + F.silu(u @ A.mT) @ Bo.mT
        gA, gB = torch.autograd.grad(0.5 * ((o - V_[:, t:t + 1]) ** 2).sum(), (A, Bo))
        h_t = (u @ W_in.mT)[0, 0]
        s = torch.sigmoid(h_t) * (1 + h_t * (1 - torch.sigmoid(h_t)))  # silu'
        N = (F.silu(h_t) ** 2).sum() + (u * u).sum() * (W_out[0] * s).pow(2).sum()
        exp_out -= eta[0, t] / (C * (1 + N)) * gB
        exp_in -= eta[0, t] / (C * (1 + N)) * gA
        # the linearized residual map I - c J J^T has its eigenvalues in (1 - eta / C, 1]
        J = torch.autograd.functional.jacobian(
            lambda a, b, u=u: (u + F.silu(u @ a.mT) @ b.mT)[0, 0], (W_in, W_out))
        J = torch.cat([j.flatten(1) for j in J], dim=1)  # [D, params]
        ev = torch.linalg.eigvalsh(torch.eye(D, dtype=torch.float64) - eta[0, t] / (C * (1 + N)) * J @ J.T)
        assert (ev > 1 - eta[0, t] / C).all() and (ev <= 1 + 1e-12).all()
    torch.testing.assert_close(W_in1, exp_in, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(W_out1, exp_out, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("period", [1, 16])
@pytest.mark.parametrize("self_generated", [False, True])
def test_hostile_inputs_stay_finite(period, self_generated):
    """Inputs of norm up to 1000, initial weights 3x their initialization scale, the largest step
    (eta = 1 at every token): with normalized steps the outputs stay finite and of the order of the
    inputs; with plain steps the same stream blows up (so the test has teeth)."""
    g = torch.Generator().manual_seed(6)
    B, T, D, h = 2, 256, 8, 12
    for scale in (10.0, 100.0, 1000.0):
        u = scale * F.normalize(torch.randn(B, T, D, generator=g, dtype=torch.float64), dim=-1)
        W_in = 3 * torch.randn(h, D, generator=g, dtype=torch.float64) / D ** 0.5
        W_out = 3 * torch.randn(D, h, generator=g, dtype=torch.float64) / h ** 0.5
        Vm = 3 * 0.02 * torch.randn(D, D, generator=g, dtype=torch.float64)
        values = lambda lvl, x, Vm=Vm: x + x @ Vm.T  # noqa: E731
        y, ((W_in_T, W_out_T),) = cms_in_context_chunked(u, [(W_in, W_out)], (period,), 1.0, targets=values,
                                                         normalize=True, self_generated=self_generated)
        assert torch.isfinite(y).all() and torch.isfinite(W_in_T).all() and torch.isfinite(W_out_T).all()
        ratio = (y.norm(dim=-1) / scale).max().item()
        assert ratio < 50, (scale, ratio)
    with torch.no_grad():
        y, _ = cms_in_context_chunked(u, [(W_in, W_out)], (period,), 1.0, targets=values,
                                      self_generated=self_generated)
    assert not torch.isfinite(y).all() or (y.norm(dim=-1) / scale).max() > 1e6


@pytest.mark.parametrize("name", ["hope", "hope-cms-selfgen"])
def test_hostile_inputs_through_the_model_branch(name):
    """The model's branch (learned values and gates) with every step at eta_max (gates saturated), inputs of
    norm 1000, W_in 3x and W_out 300x their initialization: the outputs stay finite, within twice what the
    same weights give without in-context steps, and do not grow along the sequence (with learned values
    they shrink: the level fits v_t = u_t + V u_t; a self-generated target keeps them at the static scale)."""
    branch = make(name, dtype=torch.float64, dim=8, n_heads=2, cms_periods=(1, 4)).blocks[0].mlp
    with torch.no_grad():
        for gate in branch.gates:
            gate.bias.fill_(30.0)  # sigmoid = 1: every step at eta_max
        for blk in branch.cms.blocks:
            blk.W_in.mul_(3)
            blk.W_out.mul_(300)  # far beyond the residual-scale initialization
    u = 1000 * F.normalize(torch.randn(2, 512, 8, generator=torch.Generator().manual_seed(7), dtype=torch.float64), dim=-1)
    with torch.no_grad():
        y = (branch(u) + u).norm(dim=-1)
        branch.eta_max = 0.0
        static = (branch(u) + u).norm(dim=-1)
    assert torch.isfinite(y).all()
    assert y.max() <= 2 * static.max() and y[:, -64:].mean() < 2 * y[:, :64].mean(), (y.max(), static.max())
    if name == "hope":
        assert y.max() <= static.max() and y[:, -64:].mean() < 0.5 * y[:, :64].mean()


def test_naive_token_loop_agrees_with_the_chunked_mechanism_on_callables():
    """The mechanism with callable targets and steps (what the models pass), both variants."""
    g = torch.Generator().manual_seed(8)
    x = torch.randn(2, 11, 4, generator=g, dtype=torch.float64)
    w = [(torch.randn(6, 4, generator=g, dtype=torch.float64), 0.5 * torch.randn(4, 6, generator=g, dtype=torch.float64))
         for _ in range(2)]
    Vs = [0.3 * torch.randn(4, 4, generator=g, dtype=torch.float64) for _ in range(2)]
    for variant in ("sequential", "independent"):
        for self_generated in (False, True):
            kw = dict(targets=lambda lvl, u: u + u @ Vs[lvl].T, variant=variant, normalize=True,
                      self_generated=self_generated)
            steps = lambda lvl, u: torch.sigmoid(u.sum(-1))  # noqa: E731
            a, fa = cms_in_context_naive(x, w, (1, 3), steps, **kw)
            b, fb = cms_in_context_chunked(x, w, (1, 3), steps, **kw)
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
            for (p, q), (r, s) in zip(fa, fb):
                torch.testing.assert_close(p, r, rtol=1e-12, atol=1e-12)
                torch.testing.assert_close(q, s, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"targets\[0\]"):
        cms_in_context_naive(x, w, (1, 3), 0.1, targets=lambda lvl, u: u[:, :3])


@pytest.mark.parametrize("name", ["hope", "hope-attention"])
def test_relative_change_of_the_level_weights_over_a_sequence(name):
    """``cms_relative_change``: per layer and level ``||W_T - W_0|| / ||W_0||``; positive for a level
    that completes a chunk inside the sequence, exactly 0 for one whose period exceeds it and for a
    step of 0; the token loop and the chunked form agree; a model without an in-context CMS is refused."""
    idx = torch.randint(0, V, (3, 20), generator=torch.Generator().manual_seed(4))
    naive, chunked = (make(name, impl, dtype=torch.float64, cms_periods=(2, 8, 32)) for impl in ("naive", "chunked"))
    ratios = cms_relative_change(chunked, idx)
    assert ratios.shape == (SMALL["n_layers"], 3)
    assert (ratios[:, :2] > 1e-6).all() and (ratios[:, 2] == 0).all()  # period 32 > 20 tokens: never updated
    torch.testing.assert_close(cms_relative_change(naive, idx), ratios, rtol=1e-9, atol=1e-12)
    for branch in branches(chunked):
        branch.eta_max = 0.0
    assert (cms_relative_change(chunked, idx) == 0).all()
    with pytest.raises(ValueError, match="no in-context CMS"):
        cms_relative_change(make(STATIC[name]), idx)


def test_frozen_levels_stop_only_their_own_updates():
    """``frozen_levels`` (a diagnosis): a frozen level's weights do not move over the sequence, the
    others move as before; all frozen is the inner step 0 (the static model's logits)."""
    idx = torch.randint(0, V, (3, 20), generator=torch.Generator().manual_seed(4))
    model = make("hope", dtype=torch.float64, cms_periods=(2, 8, 32))
    moving = cms_relative_change(model, idx)
    with torch.no_grad():
        logits = model(idx)
    for branch in branches(model):
        branch.frozen_levels = frozenset({1})
    ratios = cms_relative_change(model, idx)
    assert (ratios[:, 1] == 0).all() and (ratios[:, 0] > 1e-6).all()
    # the first layer's first level reads the embeddings only: it moves exactly as before (later layers
    # read what the frozen level changed)
    torch.testing.assert_close(ratios[0, 0], moving[0, 0], rtol=0, atol=0)
    for branch in branches(model):
        branch.frozen_levels = frozenset({0, 1, 2})
    with torch.no_grad():
        frozen = model(idx)
        for branch in branches(model):
            branch.frozen_levels, branch.eta_max = frozenset(), 0.0
        torch.testing.assert_close(frozen, model(idx), rtol=0, atol=0)
    assert not torch.allclose(frozen, logits, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("T", [16, 19, 5])
def test_without_the_final_state_the_unread_updates_are_skipped_and_nothing_else_changes(T):
    """``final_state=False`` (what the model asks for): the same outputs and the same gradients of
    every input as the full scan, and a level scan gradcheck with the tail read-only; the finals are None."""
    g = torch.Generator().manual_seed(3)
    B, D, h, periods = 2, 3, 4, (2, 4, 8)
    x = torch.randn(B, T, D, generator=g, dtype=torch.float64, requires_grad=True)
    ws = [(torch.randn(h, D, generator=g, dtype=torch.float64, requires_grad=True),
           torch.randn(D, h, generator=g, dtype=torch.float64, requires_grad=True)) for _ in periods]
    v = torch.randn(B, T, D, generator=g, dtype=torch.float64, requires_grad=True)
    eta = torch.rand(B, T, generator=g, dtype=torch.float64, requires_grad=True)
    leaves = [x, v, eta, *(w for pair in ws for w in pair)]
    results = []
    for fn, final_state in ((cms_in_context_chunked, True), (cms_in_context_chunked, False),
                            (cms_in_context_naive, False)):
        y, finals = fn(x, ws, periods, eta, targets=v, normalize=True, final_state=final_state)
        assert (finals is None) == (not final_state)
        grads = torch.autograd.grad(y.square().sum(), leaves)
        results.append((y.detach(), grads))
    for y, grads in results[1:]:
        torch.testing.assert_close(y, results[0][0], rtol=1e-10, atol=1e-12)
        for a, b in zip(grads, results[0][1], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    args = [t.detach()[:, :, :] for t in (x, v)] + [eta.detach(), ws[0][0].detach().expand(B, h, D).clone(),
                                                    ws[0][1].detach().expand(B, D, h).clone()]
    args = [a.clone().requires_grad_() for a in args]
    fn = lambda *a: cms_level_scan(*a, 4, normalize=True, final_state=False)[0]  # noqa: E731
    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-8)
