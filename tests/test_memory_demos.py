"""nlteach.memory_demos: the one-pair writes, key generators, experiments and drawing functions."""

import numpy as np
import pytest
import torch

from nlteach import memory_demos as md
from nlteach.course.widgets import render


def test_writes_are_one_gradient_step_of_their_objective():
    g = torch.Generator().manual_seed(0)
    S = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    k, v = torch.randn(4, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)
    (g_dot,) = torch.autograd.grad(md.hebbian_loss(S, k, v), S)
    (g_l2,) = torch.autograd.grad(md.l2_loss(S, k, v), S)
    S = S.detach()
    assert torch.allclose(md.hebbian_write(S, k, v), S - g_dot)
    assert torch.allclose(md.delta_write(S, k, v, 0.3), S - 0.3 * g_l2)


def test_delta_write_with_beta_one_recalls_the_value():
    keys, values = md.make_pairs(5, 6, 4, "correlated", seed=0)
    S = md.write_all(keys, values, "delta")[-1]
    assert torch.allclose(keys[-1] @ S, values[-1])


@pytest.mark.parametrize("kind", md.KEY_KINDS)
def test_make_keys_unit_norm_and_kinds(kind):
    K = md.make_keys(20, 8, kind, generator=torch.Generator().manual_seed(1))
    assert K.shape == (20, 8) and torch.allclose(K.norm(dim=-1), torch.ones(20, dtype=K.dtype))
    gram = K[:8] @ K[:8].T
    if kind == "orthogonal":
        assert torch.allclose(gram, torch.eye(8, dtype=K.dtype), atol=1e-12)
    if kind == "correlated":
        off = gram[~torch.eye(8, dtype=torch.bool)]
        assert off.mean() > 0.3


def test_make_keys_rejects_unknown_kind():
    with pytest.raises(ValueError, match="kind must be one of"):
        md.make_keys(3, 3, "weird", generator=torch.Generator())


def test_orthogonal_keys_are_recalled_perfectly_up_to_d():
    res = md.capacity_experiment(16, [8, 16, 32], seeds=[0, 1], kinds=("orthogonal", "correlated"))
    for rule in md.RULES:
        assert np.allclose(res[(rule, "orthogonal")][:, :2], 0, atol=1e-20)
        assert (res[(rule, "orthogonal")][:, 2] > 0.1).all()
    # interference: the Hebbian memory does much worse than the delta rule on correlated keys
    assert (res[("hebbian", "correlated")][:, 1] > 2 * res[("delta", "correlated")][:, 1]).all()


def test_draw_capacity_and_memory_writes():
    res = md.capacity_experiment(4, [2, 4, 8], seeds=[0])
    fig = render(lambda fig: md.draw_capacity(fig, res, 4), {})
    assert len(fig.axes) == 2
    for n in (0, 1, 16):
        fig = render(md.draw_memory_writes, {"n_written": n, "keys": "random"})
        assert len(fig.axes) >= 3


def test_memory_writes_widget_changes_with_the_slider():
    a = render(md.draw_memory_writes, {"n_written": 2, "keys": "correlated"})
    b = render(md.draw_memory_writes, {"n_written": 9, "keys": "correlated"})
    img_a, img_b = (a.axes[0].images[0].get_array(), b.axes[0].images[0].get_array())
    assert not np.allclose(img_a, img_b)
    assert len(b.axes[2].patches) == 2 * 9 and len(a.axes[2].patches) == 2 * 2


# --- notebook 02


def test_kernel_regression_is_normalized_weighted_average():
    x, y = md.regression_data(15, seed=3)
    xq = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    w = torch.exp(-(xq[:, None] - x[None]) ** 2 / (2 * 0.1**2))
    assert torch.allclose(md.kernel_regression(xq, x, y, 0.1), (w @ y) / w.sum(-1))
    fig = render(md.draw_kernel_regression, {"bandwidth": 0.02})
    assert len(fig.axes) == 2


def test_chunked_linear_attention_loop_matches_naive():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(13, 3, generator=g, dtype=torch.float64) for _ in range(3))
    o_ref, S_ref = md.memory.linear_attention_naive(q[None, None], k[None, None], v[None, None])
    for C in (1, 4, 13, 20):
        o, S = md.chunked_linear_attention_loop(q, k, v, C)
        assert torch.allclose(o, o_ref[0, 0]) and torch.allclose(S, S_ref[0, 0])
    wrong = md.chunked_linear_attention_loop(q, k, v, 4, intra=lambda Q, K, V: (Q @ K.T) @ V)[0]
    assert not torch.allclose(wrong, o_ref[0, 0])


def test_fast_weight_training_runs_and_learns():
    for variant in md.LA_VARIANTS:
        losses = md.train_fast_weights(variant, d=4, T=8, steps=25, seed=0, batch=16)
        assert len(losses) == 25 and np.isfinite(losses).all()
        assert np.mean(losses[-5:]) < np.mean(losses[:5])
    with pytest.raises(ValueError, match="variant must be one of"):
        md.train_fast_weights("rnn", d=4, T=8, steps=1, seed=0)


# --- notebook 03


def _chunk(C=6, d_k=3, d_v=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    K = torch.nn.functional.normalize(torch.randn(C, d_k, generator=g, dtype=torch.float64), dim=-1)
    Q = torch.randn(C, d_k, generator=g, dtype=torch.float64)
    V = torch.randn(C, d_v, generator=g, dtype=torch.float64)
    beta = torch.rand(C, generator=g, dtype=torch.float64)
    alpha = 0.5 + 0.5 * torch.rand(C, generator=g, dtype=torch.float64)
    S = torch.randn(d_k, d_v, generator=g, dtype=torch.float64)
    return S, Q, K, V, beta, alpha


def _naive(S, Q, K, V, beta, alpha=None):
    o, S_T = md.memory.delta_rule_naive(Q[None, None], K[None, None], V[None, None], beta[None, None],
                                        alpha=None if alpha is None else alpha[None, None],
                                        initial_state=S[None, None])
    return o[0, 0], S_T[0, 0]


def test_ut_transform_gives_the_pseudo_values_and_wy_product():
    S, Q, K, V, beta, _ = _chunk()
    T_ = md.ut_transform(K, beta)
    assert torch.allclose(T_, T_.tril())
    assert torch.allclose(T_ @ V - T_ @ K @ S, md.pseudo_values(S, K, V, beta))
    prod = torch.eye(3, dtype=K.dtype)
    for i in range(K.shape[0]):
        prod = (torch.eye(3, dtype=K.dtype) - beta[i] * torch.outer(K[i], K[i])) @ prod
    assert torch.allclose(prod, torch.eye(3, dtype=K.dtype) - K.T @ (T_ @ K))


def test_one_chunk_wy_and_gated_match_the_token_loop():
    S, Q, K, V, beta, alpha = _chunk()
    O, S_new = md.delta_chunk_wy(S, Q, K, V, beta)
    o, S_T = _naive(S, Q, K, V, beta)
    assert torch.allclose(O, o) and torch.allclose(S_new, S_T)
    O, S_new = md.gated_chunk_wy(S, Q, K, V, beta, alpha)
    o, S_T = _naive(S, Q, K, V, beta, alpha)
    assert torch.allclose(O, o) and torch.allclose(S_new, S_T)
    assert torch.allclose(md.pseudo_values(S, K, V, beta, alpha)[0], beta[0] * (V[0] - alpha[0] * S.T @ K[0]))


def test_dropping_gamma_is_wrong_only_when_gated():
    S, Q, K, V, beta, alpha = _chunk()
    o, _ = _naive(S, Q, K, V, beta, alpha)
    O_bad, _ = md.gated_chunk_wy(S, Q, K, V, beta, alpha, with_gamma=False)
    assert (O_bad - o).abs().max() > 1e-3
    ones = torch.ones_like(alpha)
    O_ok, _ = md.gated_chunk_wy(S, Q, K, V, beta, ones, with_gamma=False)
    assert torch.allclose(O_ok, _naive(S, Q, K, V, beta)[0])


def test_recall_of_first_pair_and_speed_plot():
    r = md.recall_of_first_pair([1.0, 0.5], d=8, n=10)
    assert r[1.0][0] > 0.999 and r[0.5][-1] < r[1.0][-1]
    res = md.speed_sweep([16, 32], [8, 16], BH=1, d=4, repeat=1)
    assert len(res["naive"]) == 2 and len(res["by_chunk"]) == 2 and min(res["chunked"]) > 0
    fig = render(lambda fig: md.draw_speed(fig, res, BH=1, d=4), {})
    assert len(fig.axes) == 2
