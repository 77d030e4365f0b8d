"""nlteach.optim: optimizers as associative memories."""

import argparse
import copy
import io
import math

import pytest
import torch
from torch import nn

from nlteach import optim as nlo

ALL = [nlo.MomentumMemory, nlo.PreconditionedMomentum, nlo.DeltaMomentum, nlo.DeepMomentum,
       nlo.Muon, nlo.M3, nlo.DGD]
# a learning rate that makes a step of sensible size on the small problems below
LR = {nlo.MomentumMemory: 0.05, nlo.PreconditionedMomentum: 0.005, nlo.DeltaMomentum: 0.01,
      nlo.DeepMomentum: 0.3, nlo.Muon: 0.02, nlo.M3: 0.03, nlo.DGD: 0.1}


def _model(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).to(dtype)


def _make(cls, model, **kw):
    opt = cls(model.parameters(), lr=kw.pop("lr", LR[cls]), **kw)
    if cls is nlo.DGD:
        opt.watch(model)
    return opt


def _data(n_steps, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n_steps, 16, 5, generator=g, dtype=dtype),
            torch.randn(n_steps, 16, 3, generator=g, dtype=dtype))


def _train(model, opt, X, Y):
    for x, y in zip(X, Y):
        def closure(x=x, y=y):
            opt.zero_grad()
            loss = 0.5 * (model(x) - y).pow(2).sum(-1).mean()
            loss.backward()
            return loss
        opt.step(closure)


# --------------------------------------------------------------------------- MomentumMemory


@pytest.mark.parametrize("kw", [
    dict(momentum=0.9),
    dict(momentum=0.9, dampening=0.1, weight_decay=0.01),
    dict(momentum=0.8, nesterov=True, weight_decay=1e-3),
    dict(momentum=0.0),
], ids=str)
def test_momentum_memory_equals_torch_sgd_over_50_steps(kw):
    a = _model(dtype=torch.float32)
    b = copy.deepcopy(a)
    oa = nlo.MomentumMemory(a.parameters(), lr=0.05, **kw)
    ob = torch.optim.SGD(b.parameters(), lr=0.05, **kw)
    X, Y = _data(50, dtype=torch.float32)
    _train(a, oa, X, Y)
    _train(b, ob, X, Y)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert (pa - pb).abs().max() <= 1e-7  # bit-equal on CPU in practice


# --------------------------------------------------------------------------- Newton-Schulz


@pytest.mark.parametrize("shape", [(64, 32), (32, 64), (10, 300), (300, 10), (48, 48)])
def test_newton_schulz_singular_values_in_band(shape):
    g = torch.Generator().manual_seed(0)
    U, _ = torch.linalg.qr(torch.randn(shape[0], min(shape), generator=g))
    V, _ = torch.linalg.qr(torch.randn(shape[1], min(shape), generator=g))
    # singular values spread over 2.5 decades, the smallest still >= 3e-3 of ||G||_F
    S = torch.logspace(0, -2.5, min(shape))
    S = torch.maximum(S, 3.1e-3 * S.norm())
    G = U @ torch.diag(S) @ V.T
    O = nlo.newton_schulz(G)
    s = torch.linalg.svdvals(O)
    lo, hi = nlo.NS_BAND
    assert s.min() >= lo and s.max() <= hi, (s.min(), s.max())
    # singular vectors are kept: U^T O V is diagonal
    D = U.T @ O @ V
    assert (D - torch.diag(torch.diagonal(D))).abs().max() < 1e-4


def test_newton_schulz_band_is_the_scalar_map():
    x = torch.logspace(math.log10(3e-3), 0, 4000, dtype=torch.float64)
    a, b, c = nlo.NS_COEFFS
    for _ in range(5):
        x = a * x + b * x**3 + c * x**5  # what one iteration does to each singular value
    assert nlo.NS_BAND[0] <= x.min() and x.max() <= nlo.NS_BAND[1]


def test_newton_schulz_step_maps_singular_values_by_the_polynomial():
    G = torch.randn(6, 9, dtype=torch.float64)
    G = G / G.norm()
    a, b, c = nlo.NS_COEFFS
    s = torch.linalg.svdvals(G)
    got = torch.linalg.svdvals(nlo.newton_schulz_step(G))
    want = (a * s + b * s**3 + c * s**5).abs().sort(descending=True).values
    assert torch.allclose(got, want, atol=1e-12)


def test_newton_schulz_edge_cases():
    assert torch.equal(nlo.newton_schulz(torch.zeros(4, 3)), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="2-D"):
        nlo.newton_schulz(torch.randn(5))
    with pytest.raises(ValueError, match="steps"):
        nlo.newton_schulz(torch.randn(3, 3), steps=-1)


# --------------------------------------------------------------------------- M3


def _m3_fast_branch_reference(grads, lr, beta1, beta2, eps, ns_steps=5):
    W = torch.zeros_like(grads[0])
    M1 = torch.zeros_like(W)
    V = torch.zeros_like(W)
    out = []
    for g in grads:
        M1 = M1 + beta1 * g
        V = V + beta2 * g * g
        W = W - lr * nlo.newton_schulz(M1, ns_steps) / (V.sqrt() + eps)
        out.append(W.clone())
    return out


def test_m3_with_alpha_zero_is_its_fast_branch():
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(4, 6, generator=g, dtype=torch.float64) for _ in range(12)]
    ref = _m3_fast_branch_reference(grads, 1e-2, 0.9, 0.999, 0.03)
    for f, beta3 in ((1, 0.9), (3, 0.5), (5, 0.0)):
        W = torch.zeros(4, 6, dtype=torch.float64, requires_grad=True)
        opt = nlo.M3([W], lr=1e-2, alpha=0.0, frequency=f, beta3=beta3)
        for t, gt in enumerate(grads):
            W.grad = gt.clone()
            opt.step()
            assert torch.allclose(W.detach(), ref[t], rtol=1e-12, atol=1e-12)


def test_m3_slow_memory_updates_every_f_steps_with_the_previous_block():
    g = torch.Generator().manual_seed(1)
    grads = [torch.randn(3, 5, generator=g, dtype=torch.float64) for _ in range(9)]
    W = torch.zeros(3, 5, dtype=torch.float64, requires_grad=True)
    opt = nlo.M3([W], lr=1e-2, alpha=1.0, frequency=4, beta3=0.5)
    for t, gt in enumerate(grads, start=1):
        W.grad = gt.clone()
        opt.step()
        M2 = opt.state[W]["M2"]
        if t <= 4:
            assert torch.equal(M2, torch.zeros_like(M2))
        elif t <= 8:
            assert torch.allclose(M2, 0.5 * sum(grads[:4]))
        else:
            assert torch.allclose(M2, 0.5 * sum(grads[:8]))


# --------------------------------------------------------------------------- DGD


def _argmin_lstsq(W_t, X, U, lr):
    """argmin_W 1/(2N) ||X W^T - U||^2 + 1/(2 lr) ||W - W_t||^2, as a stacked least-squares problem."""
    N, d_in = X.shape
    A = torch.cat([X / math.sqrt(N), torch.eye(d_in, dtype=X.dtype) / math.sqrt(lr)])
    B = torch.cat([U / math.sqrt(N), W_t.T / math.sqrt(lr)])
    return torch.linalg.lstsq(A, B, driver="gelsd").solution.T


def test_dgd_closed_form_is_the_argmin_fp64():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(4, 6, generator=g, dtype=torch.float64)
    for lr in (0.01, 0.7, 30.0):
        x = torch.randn(6, generator=g, dtype=torch.float64) * 2
        u = torch.randn(4, generator=g, dtype=torch.float64)
        closed = nlo.dgd_step(W, x, u, lr)
        assert (closed - _argmin_lstsq(W, x[None], u[None], lr)).abs().max() < 1e-10
        # the Sherman-Morrison form of Eq. 57, written out
        lr_p = lr / (1 + lr * x.dot(x))
        eq57 = W @ (torch.eye(6, dtype=torch.float64) - lr_p * torch.outer(x, x)) + lr_p * torch.outer(u, x)
        assert (closed - eq57).abs().max() < 1e-12
        # gradient of the objective vanishes there
        Wv = closed.clone().requires_grad_()
        nlo.dgd_objective(Wv, W, x[None], u[None], lr).backward()
        assert Wv.grad.abs().max() < 1e-10
    X = torch.randn(9, 6, generator=g, dtype=torch.float64)
    U = torch.randn(9, 4, generator=g, dtype=torch.float64)
    assert (nlo.dgd_step_batch(W, X, U, 0.3) - _argmin_lstsq(W, X, U, 0.3)).abs().max() < 1e-10


@pytest.mark.parametrize("target", ["negative_gradient", "descent"])
def test_dgd_optimizer_takes_the_exact_eq57_step_on_a_linear_layer(target):
    torch.manual_seed(0)
    lin = nn.Linear(6, 4).double()
    extra = nn.Parameter(torch.randn(3, dtype=torch.float64))  # not a Linear weight: fallback SGD
    opt = nlo.DGD(list(lin.parameters()) + [extra], lr=0.7, target=target)
    opt.watch(lin)
    x = torch.randn(1, 6, dtype=torch.float64)
    W0 = torch.cat([lin.weight, lin.bias[:, None]], 1).detach().clone()
    e0 = extra.detach().clone()
    y = lin(x)
    loss = 0.5 * (y - 1.0).pow(2).sum() + extra.pow(2).sum()
    loss.backward()
    gy = (y - 1.0).detach()[0]
    opt.step()
    xt = torch.cat([x[0], torch.ones(1, dtype=torch.float64)])
    u = -gy if target == "negative_gradient" else y.detach()[0] - gy
    ref = nlo.dgd_step(W0, xt, u, 0.7)
    got = torch.cat([lin.weight, lin.bias[:, None]], 1)
    assert (got - ref).abs().max() < 1e-12
    if target == "descent":  # the decay cancels: normalized GD, lr' = lr / (1 + lr ||x||^2)
        lr_p = 0.7 / (1 + 0.7 * xt.dot(xt))
        assert (got - (W0 - lr_p * torch.outer(gy, xt))).abs().max() < 1e-12
    assert torch.allclose(extra.detach(), e0 - 0.7 * 2 * e0)


def test_dgd_batch_step_is_the_argmin_of_the_mean_objective():
    torch.manual_seed(1)
    lin = nn.Linear(5, 3, bias=False).double()
    opt = nlo.DGD(lin.parameters(), lr=0.4)
    opt.watch(lin)
    X = torch.randn(2, 4, 5, dtype=torch.float64)  # [B, T, in]: rows flattened
    T = torch.randn(2, 4, 3, dtype=torch.float64)
    W0 = lin.weight.detach().clone()
    (0.5 * (lin(X) - T).pow(2).sum(-1).mean()).backward()
    opt.step()
    Xf, Tf = X.reshape(-1, 5), T.reshape(-1, 3)
    U = -(Xf @ W0.T - Tf)  # per-row negative gradient of the per-row loss
    assert (lin.weight.detach() - _argmin_lstsq(W0, Xf, U, 0.4)).abs().max() < 1e-10


def test_dgd_watch_needs_a_layer_and_unrecorded_weights_fall_back_to_sgd():
    lin = nn.Linear(3, 2)
    opt = nlo.DGD(lin.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="nn.Linear"):
        opt.watch(nn.Sequential(nn.Tanh()))
    w0 = lin.weight.detach().clone()
    lin.weight.grad = torch.ones_like(w0)
    opt.step()  # nothing recorded: plain SGD
    assert torch.allclose(lin.weight.detach(), w0 - 0.1)


# --------------------------------------------------------------------------- DeltaMomentum


def test_delta_momentum_raw_eq49_blows_up_and_the_normalized_one_does_not():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(8, 8, generator=g, dtype=torch.float64) * 3  # large gradients
    norms = {}
    for normalize in (False, True):
        W = torch.randn(4, 8, generator=g, dtype=torch.float64, requires_grad=True)
        opt = nlo.DeltaMomentum([W], lr=1e-3, momentum=0.9, beta=1.0, normalize=normalize)
        for _ in range(30):
            opt.zero_grad()
            (0.5 * (W @ A).pow(2).sum()).backward()
            opt.step()
        norms[normalize] = opt.state[W]["momentum"].norm().item()
    assert not math.isfinite(norms[False]) or norms[False] > 1e6
    assert norms[True] < 10


def test_delta_momentum_decay_is_a_contraction_for_any_gradient_scale():
    g = torch.Generator().manual_seed(0)
    for scale in (1e-3, 1.0, 1e3):
        G = torch.randn(5, 7, generator=g, dtype=torch.float64) * scale
        I = torch.eye(7, dtype=torch.float64)
        # m -> m (a I - c G^T G) is linear in m; its matrix is the right factor
        F = nlo.DeltaMomentum.forget(I, G, 0.9, 2.0, True)
        radius = torch.linalg.eigvalsh(F).abs().max()
        assert radius <= 0.9 + 1e-12


def test_delta_momentum_vector_case_and_beta_zero():
    m = torch.randn(6, dtype=torch.float64)
    g = torch.randn(6, dtype=torch.float64)
    c = 0.5 / (1 + 0.5 * g.dot(g))
    want = 0.9 * m - c * m.dot(g) * g  # m (a I - c g g^T)
    assert torch.allclose(nlo.DeltaMomentum.forget(m, g, 0.9, 0.5, True), want)
    # beta = 0 is plain preconditioned momentum
    a, b = _model(), _model()
    X, Y = _data(10)
    _train(a, nlo.DeltaMomentum(a.parameters(), lr=0.01, beta=0.0), X, Y)
    _train(b, nlo.PreconditionedMomentum(b.parameters(), lr=0.01, preconditioner="identity"), X, Y)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-14)


# --------------------------------------------------------------------------- PreconditionedMomentum


def test_preconditioned_momentum_identity_is_sgd_momentum_in_the_papers_convention():
    a, b = _model(), _model()
    X, Y = _data(20)
    _train(a, nlo.PreconditionedMomentum(a.parameters(), lr=0.01, preconditioner="identity"), X, Y)
    # m = -lr * buf, with buf's first write at full strength (zero initial memory gives the same)
    _train(b, torch.optim.SGD(b.parameters(), lr=0.01, momentum=0.9), X, Y)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-12)


def test_preconditioned_momentum_diagonal_and_callable():
    W = torch.zeros(3, requires_grad=True, dtype=torch.float64)
    opt = nlo.PreconditionedMomentum([W], lr=0.1, momentum=0.5, beta2=0.9, eps=1e-12)
    W.grad = torch.tensor([1.0, -2.0, 4.0], dtype=torch.float64)
    opt.step()  # v_hat = g^2, P g = sign(g): m = -0.1 sign(g)
    assert torch.allclose(W.detach(), torch.tensor([-0.1, 0.1, -0.1], dtype=torch.float64))
    W2 = torch.zeros(3, requires_grad=True)
    opt2 = nlo.PreconditionedMomentum([W2], lr=1.0, preconditioner=lambda g: 2 * g)
    W2.grad = torch.ones(3)
    opt2.step()
    assert torch.allclose(W2.detach(), -2 * torch.ones(3))
    opt3 = nlo.PreconditionedMomentum([W2], lr=1.0, preconditioner=lambda g: g.sum())
    with pytest.raises(ValueError, match="shape"):
        opt3.step()


# --------------------------------------------------------------------------- DeepMomentum


def test_deep_momentum_without_inner_learning_is_averaged_momentum():
    a, b = _model(), _model()
    X, Y = _data(15)
    _train(a, nlo.DeepMomentum(a.parameters(), lr=0.2, momentum=0.8, inner_lr=0.0), X, Y)
    e = {p: torch.zeros_like(p) for p in b.parameters()}
    for x, y in zip(X, Y):
        b.zero_grad()
        (0.5 * (b(x) - y).pow(2).sum(-1).mean()).backward()
        with torch.no_grad():
            for p in b.parameters():
                e[p].mul_(0.8).add_(p.grad, alpha=0.2)
                p.sub_(0.2 * e[p])
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-10)


def test_deep_momentum_inner_gradients_match_autograd():
    g = torch.Generator().manual_seed(0)
    u = torch.randn(40, 2, generator=g, dtype=torch.float64)
    tgt = torch.randn(40, generator=g, dtype=torch.float64)
    theta = [torch.randn(s, generator=g, dtype=torch.float64).requires_grad_() for s in ((2,), (5, 2), (5,), (5,))]
    loss = 0.5 * (nlo.DeepMomentum.mlp(u, *theta) - tgt).pow(2).mean()
    auto = torch.autograd.grad(loss, theta)
    by_hand = nlo.DeepMomentum.inner_grads(u, tgt, *[t.detach() for t in theta])
    for x, y in zip(auto, by_hand):
        assert torch.allclose(x, y, atol=1e-12)


def test_deep_momentum_learns_to_predict_gradients_any_shape():
    # gradients alternate in sign: the running average predicts them badly, the MLP learns to
    for shape in ((), (7,), (3, 2, 4)):
        W = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
        opt = nlo.DeepMomentum([W], lr=1e-3, inner_lr=0.2, hidden=8)
        base = torch.linspace(0.5, 1.5, max(1, W.numel()), dtype=torch.float64).reshape(shape)
        losses = []
        for t in range(300):
            W.grad = base * (-1) ** t
            st = opt.state.get(W)
            if st:
                pred = nlo.DeepMomentum.mlp(st["features"], *(st[k] for k in ("w", "W1", "b1", "w2")))
                s = (st["sq"] * 0.99 + 0.01 * W.grad.pow(2).mean()) / (1 - 0.99 ** (st["step"] + 1))
                losses.append((pred - (W.grad / (s.sqrt() + 1e-12)).reshape(-1)).pow(2).mean().item())
            opt.step()
        assert sum(losses[-20:]) < 0.2 * sum(losses[:20])
        assert "W1" in opt.state_dict()["state"][0]


# --------------------------------------------------------------------------- Muon


def test_muon_matrix_step_is_orthogonalized_and_vectors_use_adamw():
    torch.manual_seed(0)
    W = torch.randn(6, 10, requires_grad=True)
    b = torch.randn(6, requires_grad=True)
    b_ref = b.detach().clone().requires_grad_()
    opt = nlo.Muon([W, b], lr=0.1, nesterov=False, fallback_lr=0.01, fallback_betas=(0.9, 0.95))
    ref = torch.optim.AdamW([b_ref], lr=0.01, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    for _ in range(3):
        W0 = W.detach().clone()
        W.grad = torch.randn(6, 10)
        b.grad = torch.randn(6)
        b_ref.grad = b.grad.clone()
        opt.step()
        ref.step()
        s = torch.linalg.svdvals((W0 - W.detach()) / 0.1)
        assert nlo.NS_BAND[0] <= s.min() and s.max() <= nlo.NS_BAND[1]
        assert torch.allclose(b, b_ref, atol=1e-6)


# --------------------------------------------------------------------------- every optimizer


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_state_dict_round_trip_mid_run_gives_identical_steps(cls):
    X, Y = _data(10)
    a = _model()
    oa = _make(cls, a)
    _train(a, oa, X[:5], Y[:5])
    buf = io.BytesIO()
    torch.save({"model": a.state_dict(), "opt": oa.state_dict()}, buf)
    _train(a, oa, X[5:], Y[5:])
    buf.seek(0)
    saved = torch.load(buf, weights_only=False)
    b = _model(seed=123)
    b.load_state_dict(saved["model"])
    ob = _make(cls, b, lr=0.5)  # a different lr: load_state_dict must restore the saved one
    ob.load_state_dict(saved["opt"])
    _train(b, ob, X[5:], Y[5:])
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_decreases_a_convex_quadratic(cls):
    torch.manual_seed(0)
    lin = nn.Linear(6, 4).double()
    X = torch.randn(64, 6, dtype=torch.float64)
    T = X @ torch.randn(6, 4, dtype=torch.float64) + 0.5

    def loss_fn():
        return 0.5 * (lin(X) - T).pow(2).sum(-1).mean()

    opt = _make(cls, lin)
    first = loss_fn().item()
    for _ in range(100):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
    last = loss_fn().item()
    assert math.isfinite(last) and last < 0.8 * first, (first, last)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_param_groups_and_closure(cls):
    m = _model()
    frozen = list(m[2].parameters())
    before = [p.detach().clone() for p in frozen]
    zero = {"lr": 0.0}
    if cls is nlo.Muon:
        zero["fallback_lr"] = 0.0
    opt = cls([{"params": m[0].parameters()}, {"params": frozen, **zero}], lr=LR[cls])
    if cls is nlo.DGD:
        opt.watch(m)
    x, y = _data(1)
    w0 = m[0].weight.detach().clone()

    def closure():
        opt.zero_grad()
        loss = (m(x[0]) - y[0]).pow(2).mean()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert isinstance(loss, torch.Tensor) and loss.ndim == 0
    assert not torch.equal(m[0].weight, w0)
    for p, p0 in zip(frozen, before):
        assert torch.equal(p, p0)


BAD = [
    (nlo.MomentumMemory, dict(lr=-1.0), "lr"),
    (nlo.MomentumMemory, dict(momentum=1.0), "momentum"),
    (nlo.MomentumMemory, dict(dampening=0.5, nesterov=True), "nesterov"),
    (nlo.MomentumMemory, dict(weight_decay=-0.1), "weight_decay"),
    (nlo.PreconditionedMomentum, dict(lr=-1.0), "lr"),
    (nlo.PreconditionedMomentum, dict(preconditioner="full"), "preconditioner"),
    (nlo.PreconditionedMomentum, dict(beta2=1.0), "beta2"),
    (nlo.DeltaMomentum, dict(lr=float("nan")), "lr"),
    (nlo.DeltaMomentum, dict(momentum=-0.1), "momentum"),
    (nlo.DeltaMomentum, dict(beta=-1.0), "beta"),
    (nlo.DeepMomentum, dict(lr=-1.0), "lr"),
    (nlo.DeepMomentum, dict(hidden=0), "hidden"),
    (nlo.DeepMomentum, dict(retention=1.5), "retention"),
    (nlo.DeepMomentum, dict(inner_lr=-0.1), "inner_lr"),
    (nlo.Muon, dict(lr=-1.0), "lr"),
    (nlo.Muon, dict(momentum=1.2), "momentum"),
    (nlo.Muon, dict(ns_steps=-1), "ns_steps"),
    (nlo.Muon, dict(fallback_betas=(0.9, 1.0)), "fallback_betas"),
    (nlo.M3, dict(lr=-1.0), "lr"),
    (nlo.M3, dict(frequency=0), "frequency"),
    (nlo.M3, dict(beta1=1.0), "beta1"),
    (nlo.M3, dict(alpha=-1.0), "alpha"),
    (nlo.M3, dict(eps=0.0), "eps"),
    (nlo.DGD, dict(lr=-1.0), "lr"),
    (nlo.DGD, dict(target="positive"), "target"),
]


@pytest.mark.parametrize("cls,kw,name", BAD, ids=lambda v: str(v) if not isinstance(v, type) else v.__name__)
def test_rejects_invalid_hyperparameters_with_a_clear_error(cls, kw, name):
    W = nn.Parameter(torch.zeros(2, 2))
    kw = {"lr": 0.1, **kw}
    with pytest.raises(ValueError, match=name) as err:
        cls([W], **kw)
    assert "got" in str(err.value)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_defaults_construct_with_lr_only(cls):
    W = nn.Parameter(torch.zeros(2, 2))
    opt = cls([W], lr=0.01)
    assert opt.param_groups[0]["lr"] == 0.01


# --------------------------------------------------------------------------- benchmark suite


def test_bench_optim_suite_runs_and_reports_ratios(capsys):
    from nlteach.bench import optim as suite

    parser = argparse.ArgumentParser()
    suite.add_arguments(parser)
    args = parser.parse_args(["--repeat", "1", "--rounds", "1", "--only", "M3", "DGD", "DMGD", "Muon"])
    args.preset, args.device, args.out = "tiny", torch.device("cpu"), None
    res = suite.run(args)
    names = [r["optimizer"] for r in res["rows"]]
    assert names[0] == "SGD" and {"M3", "Muon", "DGD", "DMGD"} <= set(names)
    assert res["rows"][0]["step_ratio"] == 1.0
    assert all(r["step_ratio"] > 0 and r["opt_ratio"] > 0 for r in res["rows"])
    assert "relative to SGD" in capsys.readouterr().out
