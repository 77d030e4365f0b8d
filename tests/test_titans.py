"""Self-modifying Titans: naive == chunked (outputs, final states, momenta, gradients), special
cases that pin down the equations, and the layer."""

import pytest
import torch
import torch.nn.functional as F

from nlteach.titans import (
    BOXES,
    SelfModifyingTitans,
    _ChunkStep,
    dgd_chunk,
    dgd_token,
    mlp_read,
    segment_products,
    self_modifying_titans_chunked,
    self_modifying_titans_naive,
)

IMPLS = {"naive": self_modifying_titans_naive, "chunked": self_modifying_titans_chunked}


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt().clamp_min(1e-30)).item()


def inputs(dtype, B=2, H=2, T=23, d=4, hidden=6, seed=0, momenta=True):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s, scale=1.0: (scale * torch.randn(*s, generator=g, dtype=torch.float64)).to(dtype)  # noqa: E731
    u = r(B, H, T, d, scale=0.5)
    q = F.normalize(r(B, H, T, d), dim=-1)
    init = {b: (r(B, H, d, hidden), r(B, H, hidden, d, scale=0.3)) for b in BOXES}
    mom = {b: (r(B, H, d, hidden, scale=0.1), r(B, H, hidden, d, scale=0.1)) for b in BOXES} if momenta else None
    ro = {"w_eta": r(H, d), "w_alpha": r(H, d), "b_eta": r(H) - 1, "b_alpha": r(H) + 2}
    return u, q, init, ro, mom


def flat_state(state):
    return [x for b in BOXES for x in state[b]]


CASES = [  # (chunk_size, proj_chunk_size, momentum, dgd, self_modify)
    (1, 1, 0.0, True, True),
    (5, 3, 0.0, True, True),
    (4, 8, 0.5, True, True),
    (7, 2, 0.0, False, True),
    (3, 5, 0.3, True, False),
]


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("cs, pcs, beta, dgd, sm", CASES)
def test_naive_equals_chunked_outputs_and_states(dtype, tol, cs, pcs, beta, dgd, sm):
    u, q, init, ro, mom = inputs(dtype)
    kw = dict(chunk_size=cs, proj_chunk_size=pcs, momentum=beta, dgd=dgd, self_modify=sm, momentum_state=mom,
              eta_max=0.5)  # plain GD (dgd=False) on these random weights diverges at larger steps
    o1, (s1, m1), g1 = self_modifying_titans_naive(u, q, init, ro, return_generated=True, **kw)
    o2, (s2, m2), g2 = self_modifying_titans_chunked(u, q, init, ro, return_generated=True, **kw)
    assert o1.shape == o2.shape == u.shape  # T = 23 is no multiple of any chunk size above but 1
    assert rel_rms(o2, o1) < tol
    for a, b in zip(flat_state(s2), flat_state(s1)):
        assert rel_rms(a, b) < tol
    # Without momentum a momentum state is the last token's step -eta' x r^T, a product of two
    # differences (r = M(k) - vhat, x = a_k - a_v): in float32 the naive loop itself is ~1.2e-5 away
    # from the float64 result there, so the float32 bound on these two small matrices is 3e-5.
    for a, b in zip(flat_state(m2), flat_state(m1)):
        assert rel_rms(a, b) < (3e-5 if dtype == torch.float32 else tol)
    for name in ("k", "v", "eta", "alpha"):
        assert rel_rms(g2[name], g1[name]) < tol


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_naive_equals_chunked_gradients(dtype, tol):
    u, q, init, ro, mom = inputs(dtype, T=13)
    leaves = [u, q, *flat_state(init), *ro.values(), *flat_state(mom)]
    for x in leaves:
        x.requires_grad_(True)
    g = torch.Generator().manual_seed(5)
    grads = []
    for fn in IMPLS.values():
        o, (s, m) = fn(u, q, init, ro, chunk_size=3, proj_chunk_size=5, momentum=0.4, momentum_state=mom)
        outs = [o, *flat_state(s), *flat_state(m)]
        ups = [torch.randn(x.shape, generator=g, dtype=torch.float64).to(dtype) for x in outs]
        g = torch.Generator().manual_seed(5)  # the same upstream gradients for both
        grads.append(torch.autograd.grad(outs, leaves, ups))
    for a, b in zip(*grads):
        assert rel_rms(b, a) < tol


def test_dgd_chunk_equals_token_loop_with_reads():
    g = torch.Generator().manual_seed(1)
    C, n_in, n_out = 6, 5, 3
    S0, M0 = torch.randn(n_in, n_out, generator=g, dtype=torch.float64), torch.randn(n_in, n_out, generator=g, dtype=torch.float64)
    X = F.normalize(torch.randn(C, n_in, generator=g, dtype=torch.float64), dim=-1)
    E, Z = torch.randn(C, n_out, generator=g, dtype=torch.float64), torch.randn(C, n_in, generator=g, dtype=torch.float64)
    eta, alpha = torch.rand(C, generator=g, dtype=torch.float64), 0.5 + 0.5 * torch.rand(C, generator=g, dtype=torch.float64)
    for project in (True, False):
        S, M, reads = S0, M0, []
        for t in range(C):
            reads.append(Z[t] @ S)  # exclusive read: the state before token t
            S, M = dgd_token(S, M, X[t], E[t], X[t] if project else None, eta[t], alpha[t], 0.7)
        r2, S2, M2 = dgd_chunk(S0, M0, X, E, project, eta, alpha, 0.7, Z=Z)
        torch.testing.assert_close(r2, torch.stack(reads), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(S2, S, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(M2, M, rtol=1e-12, atol=1e-12)


def test_dgd_token_is_the_written_equation():
    """S_t = (alpha I - eta k k^T) S_{t-1} - eta k delta^T without momentum (transposed Eq. 88)."""
    g = torch.Generator().manual_seed(2)
    S, k, e = torch.randn(4, 3, generator=g), F.normalize(torch.randn(4, generator=g), dim=0), torch.randn(3, generator=g)
    eta, alpha = torch.tensor(0.3), torch.tensor(0.9)
    new, _ = dgd_token(S, torch.zeros_like(S), k, e, k, eta, alpha, 0.0)
    expected = (alpha * torch.eye(4) - eta * torch.outer(k, k)) @ S - eta * torch.outer(k, e)
    torch.testing.assert_close(new, expected)


def test_first_token_reads_the_initial_memory_and_later_tokens_see_writes():
    u, q, init, ro, _ = inputs(torch.float64, T=6, momenta=False)
    o, _ = self_modifying_titans_chunked(u, q, init, ro, chunk_size=4, proj_chunk_size=4)
    torch.testing.assert_close(o[:, :, 0], mlp_read(*init["memory"], q[:, :, :1])[:, :, 0])
    frozen = dict(init)
    assert not torch.allclose(o[:, :, 3], mlp_read(*frozen["memory"], q[:, :, 3:4])[:, :, 0])


def test_eta_zero_and_alpha_one_keep_every_memory_fixed():
    u, q, init, ro, _ = inputs(torch.float64, T=9, momenta=False)
    ro = {**ro, "b_eta": torch.full((2,), -1e4, dtype=torch.float64), "b_alpha": torch.full((2,), 1e4, dtype=torch.float64)}
    o, (s, _) = self_modifying_titans_chunked(u, q, init, ro, chunk_size=2, proj_chunk_size=3)
    torch.testing.assert_close(o, mlp_read(*init["memory"], q))
    for b in BOXES:
        torch.testing.assert_close(s[b][0], init[b][0])


def test_self_modify_false_freezes_the_projection_memories_only():
    u, q, init, ro, _ = inputs(torch.float64, T=9, momenta=False)
    _, (s, _), gen = self_modifying_titans_chunked(u, q, init, ro, chunk_size=3, proj_chunk_size=3,
                                                   self_modify=False, return_generated=True)
    for b in ("k", "v", "eta", "alpha"):
        assert torch.equal(s[b][0], init[b][0])
    assert not torch.allclose(s["memory"][0], init["memory"][0])
    torch.testing.assert_close(gen["v"], mlp_read(*init["v"], u))  # static projections


def test_self_modification_changes_keys_inside_a_sequence():
    u, q, init, ro, _ = inputs(torch.float64, T=12, momenta=False)
    kw = dict(chunk_size=1, proj_chunk_size=1, return_generated=True)
    _, _, on = self_modifying_titans_chunked(u, q, init, ro, **kw)
    _, _, off = self_modifying_titans_chunked(u, q, init, ro, self_modify=False, **kw)
    torch.testing.assert_close(on["k"][:, :, 0], off["k"][:, :, 0])  # same start
    assert (on["k"][:, :, 5:] - off["k"][:, :, 5:]).abs().max() > 1e-3  # then they differ


def test_bad_inputs_name_the_argument():
    u, q, init, ro, _ = inputs(torch.float32, T=5, momenta=False)
    with pytest.raises(ValueError, match="chunk_size"):
        self_modifying_titans_chunked(u, q, init, ro, chunk_size=0)
    with pytest.raises(ValueError, match="q must have the shape"):
        self_modifying_titans_chunked(u, q[:, :, :3], init, ro)
    with pytest.raises(ValueError, match=r"init\['k'\]"):
        self_modifying_titans_naive(u, q, {**init, "k": (init["k"][0][:, :, :3], init["k"][1])}, ro)
    with pytest.raises(ValueError, match="momentum"):
        self_modifying_titans_naive(u, q, init, ro, momentum=1.5)


@pytest.mark.parametrize("impl", ["naive", "chunked"])
def test_layer_is_causal_and_impls_agree(impl):
    torch.manual_seed(0)
    layer = SelfModifyingTitans(16, 2, chunk_size=3, proj_chunk_size=4, impl=impl).double()
    other = SelfModifyingTitans(16, 2, chunk_size=3, proj_chunk_size=4,
                                impl="chunked" if impl == "naive" else "naive").double()
    other.load_state_dict(layer.state_dict())
    x = torch.randn(2, 11, 16, dtype=torch.float64)
    y = layer(x)
    torch.testing.assert_close(y, other(x), rtol=1e-10, atol=1e-12)
    x2 = x.clone()
    x2[:, 6:] = torch.randn(2, 5, 16, dtype=torch.float64)
    torch.testing.assert_close(layer(x2)[:, :6], y[:, :6], rtol=0, atol=0)


def test_second_matrix_step_contracts_the_self_referential_residual():
    """Choice (b): one step on W1 with input a_k - a_v and step eta / (1 + ||a_k - a_v||^2) multiplies the
    residual M(k) - M(v) (target re-made by the updated memory, W2 fixed, alpha = 1) by exactly
    1 - eta ||a_k - a_v||^2 / (1 + ||a_k - a_v||^2), in (1 - eta, 1]: a contraction whatever the weights."""
    from nlteach.deep_memory import sigma

    g = torch.Generator().manual_seed(3)
    d, hidden = 6, 10
    for trial in range(5):
        S2 = 3 * torch.randn(d, hidden, generator=g, dtype=torch.float64)  # large first layer: large a_v
        S1 = torch.randn(hidden, d, generator=g, dtype=torch.float64)
        k, v = (F.normalize(torch.randn(1, d, generator=g, dtype=torch.float64), dim=-1) for _ in range(2))
        eta = torch.tensor(0.3 + 0.7 * trial / 4, dtype=torch.float64)  # up to eta = 1
        r = mlp_read(S2, S1, k) - mlp_read(S2, S1, v)
        ad = sigma(k @ S2) - sigma(v @ S2)
        step = eta / (1 + (ad * ad).sum())
        S1_new, _ = dgd_token(S1, torch.zeros_like(S1), ad[0], r[0], None, step, torch.tensor(1.0, dtype=torch.float64), 0.0)
        r_new = mlp_read(S2, S1_new, k) - mlp_read(S2, S1_new, v)
        factor = 1 - step * (ad * ad).sum()
        torch.testing.assert_close(r_new, factor * r, rtol=1e-12, atol=1e-12)
        assert 1 - eta < factor <= 1


def test_without_dgd_both_matrices_take_plain_steps():
    """hope-no-dgd (dgd=False) removes DGD from both matrices: the first loses the projector
    (S2 <- alpha S2 - eta k^T delta), the second its normalization (S1 <- alpha S1 - (eta / C) ad^T r);
    with DGD the first is multiplied by (alpha I - eta k k^T) and the second steps eta / (C (1 + |ad|^2))."""
    from nlteach.deep_memory import sigma
    from nlteach.titans import _memory_update, grad_terms

    g = torch.Generator().manual_seed(4)
    d, hidden, C = 4, 6, 3
    S2 = torch.randn(d, hidden, generator=g, dtype=torch.float64)
    S1 = 0.3 * torch.randn(hidden, d, generator=g, dtype=torch.float64)
    k = F.normalize(torch.randn(1, d, generator=g, dtype=torch.float64), dim=-1)
    v = torch.randn(1, d, generator=g, dtype=torch.float64)
    eta, alpha = torch.tensor([0.4], dtype=torch.float64), torch.tensor([0.9], dtype=torch.float64)
    zeros = (torch.zeros_like(S2), torch.zeros_like(S1))
    vn = F.normalize(v, dim=-1)
    a, r, delta = grad_terms(S2, S1, k, mlp_read(S2, S1, vn))
    ad = a - sigma(vn @ S2)
    (S2n, S1n), _ = _memory_update((S2, S1), (S2, S1), zeros, k, v, eta, alpha, 0.0, False, chunk=False, C=C)
    torch.testing.assert_close(S2n, 0.9 * S2 - 0.4 * k.T @ delta, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(S1n, 0.9 * S1 - (0.4 / C) * ad.T @ r, rtol=1e-12, atol=1e-12)
    (S2d, S1d), _ = _memory_update((S2, S1), (S2, S1), zeros, k, v, eta, alpha, 0.0, True, chunk=False, C=C)
    torch.testing.assert_close(S2d, 0.9 * S2 - 0.4 * k.T @ (k @ S2) - 0.4 * k.T @ delta, rtol=1e-12, atol=1e-12)
    step = 0.4 / (C * (1 + (ad * ad).sum()))
    torch.testing.assert_close(S1d, 0.9 * S1 - step * ad.T @ r, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("chunk", [1, 16])
def test_hostile_inputs_stay_finite(chunk):
    """Regression test of the laptop-preset NaN: large inputs (so large generated values), large initial
    states, eta_max = 1 and no forgetting. Before choices (b) and (g) every case with ||u|| >= 10 at chunk 1
    reached 1e19 or NaN within 256 tokens; now the outputs stay of the order of the inputs' scale."""
    g = torch.Generator().manual_seed(0)
    B, H, T, d, hidden = 1, 2, 128, 8, 16
    for scale in (10.0, 100.0):
        for b_eta in (0.0, 10.0):
            u = scale * F.normalize(torch.randn(B, H, T, d, generator=g, dtype=torch.float64), dim=-1)
            q = F.normalize(torch.randn(B, H, T, d, generator=g, dtype=torch.float64), dim=-1)
            init = {b: (3 * torch.randn(B, H, d, hidden, generator=g, dtype=torch.float64),
                        torch.randn(B, H, hidden, d, generator=g, dtype=torch.float64) / hidden ** 0.5) for b in BOXES}
            ro = {"w_eta": torch.randn(H, d, generator=g, dtype=torch.float64),
                  "w_alpha": torch.randn(H, d, generator=g, dtype=torch.float64),
                  "b_eta": torch.full((H,), b_eta, dtype=torch.float64), "b_alpha": torch.full((H,), 10.0, dtype=torch.float64)}
            o, (states, _) = self_modifying_titans_chunked(u, q, init, ro, chunk_size=chunk, proj_chunk_size=chunk,
                                                           eta_max=1.0)
            assert torch.isfinite(o).all() and o.norm(dim=-1).max() < 100, (scale, b_eta, o.norm(dim=-1).max())
            for b in BOXES:
                assert all(torch.isfinite(x).all() for x in states[b])


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("dgd", [True, False])
def test_naive_equals_chunked_gradients_without_momentum(dtype, tol, dgd):
    """The default (momentum 0) runs every chunk but the last through the hand-written backward of
    ``_ChunkStep``: its gradients must match the naive loop's (autograd through the equations)."""
    u, q, init, ro, _ = inputs(dtype, T=19)
    leaves = [u, q, *flat_state(init), *ro.values()]
    for x in leaves:
        x.requires_grad_(True)
    grads = []
    for fn in IMPLS.values():
        o, (s, m) = fn(u, q, init, ro, chunk_size=4, proj_chunk_size=3, dgd=dgd, eta_max=0.5)
        outs = [o, *flat_state(s), *flat_state(m)]
        g = torch.Generator().manual_seed(5)  # the same upstream gradients for both
        ups = [torch.randn(x.shape, generator=g, dtype=torch.float64).to(dtype) for x in outs]
        grads.append(torch.autograd.grad(outs, leaves, ups))
    for a, b in zip(*grads):
        assert rel_rms(b, a) < tol


@pytest.mark.parametrize("project", [True, False])
@pytest.mark.parametrize("stacked, with_q", [(False, True), (False, False), (True, False), (True, True)])
def test_chunk_step_backward_passes_gradcheck(project, stacked, with_q):
    """The hand-derived backward of one chunk against finite differences (float64), for the main memory
    (with queries) and for the four stacked projection memories (token inputs broadcast over them)."""
    g = torch.Generator().manual_seed(3)
    B, H, n, d, hidden = 1, 2, 4, 3, 5
    mem = (B, 4, H) if stacked else (B, H)
    tok = (B, 1, H) if stacked else (B, H)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    alpha = 0.7 + 0.3 * torch.rand(*tok, n, generator=g, dtype=torch.float64)
    args = [r(*mem, d, hidden), 0.3 * r(*mem, hidden, d), F.normalize(r(*tok, n, d), dim=-1),
            F.normalize(r(*tok, n, d), dim=-1), F.normalize(r(*tok, n, d), dim=-1) if with_q else None,
            0.5 * torch.rand(*tok, n, generator=g, dtype=torch.float64),
            segment_products(torch.cat([torch.ones_like(alpha[..., :1]), alpha], dim=-1))]
    args = [a.requires_grad_() if a is not None else None for a in args]
    assert torch.autograd.gradcheck(lambda *a: _ChunkStep.apply(*a, n, project), args, eps=1e-6, atol=1e-8)
    # last=True also returns the last token's steps and input (for the momentum state): their gradients too
    assert torch.autograd.gradcheck(lambda *a: _ChunkStep.apply(*a, n, project, None, None, None, True), args,
                                    eps=1e-6, atol=1e-8)
    if with_q and not stacked:  # the main memory's path: A^-1, L, P precomputed outside (autograd there)

        def with_precomputed(S2, S1, k, vn, q, eta, G):
            Gp = G[..., :-1, 1:]
            L = Gp * (k @ k.transpose(-1, -2))
            eye = torch.eye(n, dtype=k.dtype)
            Ainv = torch.linalg.solve_triangular(eye + eta[..., None] * L, eye.expand_as(L), upper=False,
                                                 unitriangular=True)
            pre = (Ainv, L) if project else (None, None)
            return _ChunkStep.apply(S2, S1, k, vn, q, eta, G, n, project, *pre, Gp * (q @ k.transpose(-1, -2)))

        assert torch.autograd.gradcheck(with_precomputed, args, eps=1e-6, atol=1e-8)
