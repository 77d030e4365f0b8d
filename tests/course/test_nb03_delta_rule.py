"""nlteach.course.nb03_delta_rule: one chunk of the (gated) delta rule written out, the recall of
a first pair and the speed sweep."""

import torch

from nlteach import memory
from nlteach.course import nb03_delta_rule as md
from nlteach.course.widgets import render


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
    o, S_T = memory.delta_rule_naive(Q[None, None], K[None, None], V[None, None], beta[None, None],
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
