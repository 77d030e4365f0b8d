"""The course's exercises as a whole (issue 20): at least two graded exercises per notebook 01-12,
at least one derivation in each, no answer in a stub, a difficulty, a time and a "predict first"
prompt beside every stub, and for every exercise at least one typical wrong answer that gets its
own diagnosis (not only "differs from the reference")."""

import ast
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from nlteach import exercises
from nlteach import optim as nlo
from solutions import nb03 as sol03
from solutions import nb06 as sol06
from solutions import nb07 as sol07
from solutions import nb08 as sol08
from solutions import nb09 as sol09
from solutions import nb10 as sol10
from solutions import nb11 as sol11

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
ALL = exercises.all_exercises()
COURSE = [f"{n:02d}" for n in range(1, 13)]

# What a stub's docstring must not contain: each solution's key expression(s), compared without
# whitespace (so "S + k v^T" also catches "S+k v^T").
KEY_EXPRESSIONS: dict[str, list[str]] = {
    "00.ema": ["beta * m + (1 - beta)", "beta * m_{t-1} + (1 - beta)", "(1 - beta) * x_t"],
    "01.hebbian_write": ["S + k v^T", "outer(k, v)"],
    "01.delta_write": ["beta k k^T", "k (S^T k - v)^T", "S.T @ k - v"],
    "01.gated_delta": ["alpha_t S", "alpha[t] * S", "v[t] - S.T @ k[t]"],
    "02.la_pp": ["q @ W +", "W^T q", "tril", "eta[:, None] * v"],
    "02.intra_chunk": ["tril", "Qc @ Kc.T"],
    "03.ut_transform": ["diag(beta) K K^T", "solve_triangular", "(I + A)^{-1}"],
    "03.delta_chunks": ["U - W S", "T V", "K^T (U", "range(0, T, C)"],
    "05.clock_due": ["s % p", "% periods", "== 0"],
    "05.multi_frequency": ["acc", "lr * ", "% periods[l]", "s % C == 0", "sum"],
    "06.momentum_memory": ["beta m_{t-1} - eta g_t", "beta * m - eta * g", "W_{t-1} + m_t"],
    "06.newton_schulz_step": ["a X + b (X X^T) X", "X @ X.T", "(X X^T)^2"],
    "06.dmgd_inner": ["s * (1 + z * (1 - s))", "h.T @ r", "dz.T @ u", "p0 + retention"],
    "06.dgd_batch": ["(I + c X^T X)", "X.T @ X", "U.T @ X", "U^T X", "lr / N"],
    "07.eq71": ["W_in - acc", "(t + 1) % period", "acc_in"],
    "07.chunk_update": ["E.T @ A", "E^T A", "silu'(H)", "(E @ W_out)"],
    "08.dgd_update": ["(alpha I - eta k k^T) S", "outer(k, delta)", "eta k delta^T"],
    "08.titans_token": ["normalize(M_k", "ad = a - ", "a_k - a_v", "1 + ||ad||^2", "k delta^T"],
    "09.hope_block": ["x + (y - u)", "mixer(norm1(x))", "y - u"],
    "09.cms_step": ["||a||^2 + ||u||^2", "(1 + N)", "W_out * D", "a @ a", "C * (1 +"],
    "10.bwt": ["R[T-1][j] - R[j][j]", "R[-1]", "np.diag", "1/(T-1)"],
    "10.ewc_fisher": ["(e_y - p) x^T", "one_hot(y) - P", "** 2).mean", "softmax(X @ W.T)"],
    "11.shuffle2": ["counter", "depth", "divmod"],
    "11.mqar_memory": ["inputs[i - 1]", "S.T @ k", "i % 2", "argmax"],
    "12.attention_flops": ["T * (T + 1)", "T (T + 1)", "T(T+1)/2", "2 * B * H"],
    "12.ddp_gradient": ["/ sum(rows)", "n / total", "rows[r] / sum", "sum(grads) / len"],
    "04.momentum_decay": ["eta_t S_{t-1} - theta_t g_t", "(1 - alpha_t) W_{t-1}", "eta[t] * S"],
    "04.dual_chunk": ["K W0^T - V", "W0.T", "tril(Q K^T)", "q @ k.T"],
}

# For every exercise, typical wrong answers and words their verdict must contain (a diagnosis, not
# only "differs from the reference").
t = torch.as_tensor


def _gated(order: str):
    def fn(q, k, v, beta, alpha, S0):
        S, outs = S0, []
        for i in range(k.shape[0]):
            if order == "read_first":
                outs.append(S.T @ q[i])
            S = alpha[i] * S
            S = S + beta[i] * torch.outer(k[i], v[i] - S.T @ k[i])
            if order != "read_first":
                outs.append(S.T @ q[i])
        return torch.stack(outs), S
    return fn


def _chunks(carry: bool = True, drop_last: bool = False):
    def fn(q, k, v, beta, S0, C):
        S, outs = S0, []
        stop = (k.shape[0] // C) * C if drop_last else k.shape[0]
        for s in range(0, stop, C):
            Q, K, V, b = q[s:s + C], k[s:s + C], v[s:s + C], beta[s:s + C]
            S_in = S if carry else S0
            T_ = sol03.ut_transform(K, b)
            P = T_ @ V - (T_ @ K) @ S_in
            outs.append(Q @ S_in + (Q @ K.T).tril() @ P)
            S = S_in + K.T @ P
        return torch.cat(outs), S
    return fn


def _momentum_no_decay(W0, S0, grads, theta, eta, alpha):
    W, S, Ws, Ss = W0, S0, [], []
    for i in range(grads.shape[0]):
        S = eta[i] * S - theta[i] * grads[i]
        W = W + S  # forgets the forgetting gate
        Ws.append(W)
        Ss.append(S)
    return torch.stack(Ws), torch.stack(Ss)


def _online_gd(q, k, v, W0, S0, theta, eta, alpha):
    W, outs = W0, []
    for i in range(q.shape[0]):  # each gradient at the latest weights (token-by-token online GD)
        W = W - theta[i] * torch.outer(W @ k[i] - v[i], k[i])
        outs.append(W @ q[i])
    return torch.stack(outs)


def _multi_latest(W0, grad_fn, periods, lr, steps):
    W, out = W0.clone(), []
    for s in range(1, steps + 1):
        g = grad_fn(s, W.clone())
        for lvl, p in enumerate(periods):
            if s % p == 0:  # applies only the latest gradient
                W[lvl] = W[lvl] - lr * g[lvl]
        out.append(W.clone())
    return torch.stack(out)


def _eq71_first_token_reads_new(x, targets, W_in, W_out, period, lr):
    return sol07.in_context_block(x, targets, W_in, W_out, 1, lr)  # updates after every token


def _chunk_read_after(U, V, W_in, W_out, lr):
    _, A, B = sol07.cms_chunk_update(U, V, W_in, W_out, lr)
    return U + torch.nn.functional.silu(U @ A.T) @ B.T, A, B


def _titans_read_after(states, u, q, readout, eta_max):
    _, new = sol08.titans_token_step(states, u, q, readout, eta_max)
    S2, S1 = new["memory"]
    return q + torch.nn.functional.silu(q @ S2) @ S1, new  # reads the updated memory


def _hope_no_increment(x, mixer, norm1, norm2, cms_weights):
    x = x + mixer(norm1(x))
    y = norm2(x)
    for W_in, W_out in cms_weights:
        y = y + torch.nn.functional.silu(y @ W_in.T) @ W_out.T
    return x + y  # adds the CMS's output, not its increment


def _mqar_peek(inputs, n_keys, n_values):
    out = torch.full_like(inputs, -100)
    T = inputs.shape[0]
    out[T // 2::2] = inputs[T // 2 + 1::2]  # copies the next token: the answer itself
    return out


def _mqar_late(inputs, n_keys, n_values):
    return torch.roll(sol11.mqar_recall(inputs, n_keys, n_values), 1)


def _dmgd_sum(params, params0, u, target, inner_lr, retention):
    # the solution's step with the loss summed instead of averaged (N times the gradients)
    new = sol06.dmgd_inner_step(params, params0, u, target, inner_lr * u.shape[0], retention)
    return new


MISTAKES: dict[str, list[tuple]] = {
    "00.ema": [(lambda x, beta: x[:-1], ["shape"])],
    "01.hebbian_write": [(lambda S, k, v: S + torch.outer(v, k), ["It was called with: S = tensor of shape [3, 2]"])],
    "01.delta_write": [(lambda S, k, v, beta: S.add_(beta * torch.outer(k, v - S.T @ k)), ["in place"])],
    "01.gated_delta": [(_gated("read_first"), ["before its own write"])],
    "02.la_pp": [(lambda q, k, v, eta, W: ((q @ k.T).tril() @ (eta[:, None] * v), W + k.T @ (eta[:, None] * v)),
                  ["lack the slow term"]),
                 (lambda q, k, v, eta, W: (q @ W + eta[:, None] * ((q @ k.T).tril() @ v), W + k.T @ (eta[:, None] * v)),
                  ["token that wrote the pair"])],
    "03.ut_transform": [(lambda K, beta: torch.linalg.inv(torch.eye(K.shape[0], dtype=K.dtype)
                                                          + (beta[:, None] * (K @ K.T)).tril(-1)), ["diag(beta)"])],
    "03.delta_chunks": [(_chunks(carry=False), ["S0"]), (_chunks(drop_last=True), ["last"])],
    "05.clock_due": [(lambda periods, s: tuple((s - 1) % p == 0 for p in periods), ["level(s)"])],
    "05.multi_frequency": [(_multi_latest, ["sum of every gradient"])],
    "06.momentum_memory": [(lambda grads, beta, eta: torch.zeros(grads.shape[1]), ["all T weight vectors"])],
    "06.newton_schulz_step": [(lambda X, a, b, c: a * X + b * (X @ X.T) @ X, ["singular values"])],
    "06.dmgd_inner": [(_dmgd_sum, ["mean"])],
    "06.dgd_batch": [(lambda W, X, U, lr: nlo.dgd_step_batch(W, X, U, lr * X.shape[0]), ["mean"]),
                     (lambda W, X, U, lr: W - lr / X.shape[0] * (X @ W.T - U).T @ X, ["plain gradient step"])],
    "07.eq71": [(_eq71_first_token_reads_new, ["first chunk"])],
    "07.chunk_update": [(_chunk_read_after, ["chunk started with"])],
    "08.dgd_update": [(lambda S, k, delta, eta, alpha: alpha * S - eta * torch.outer(k, delta), ["projector"])],
    "08.titans_token": [(_titans_read_after, ["before"])],
    "09.hope_block": [(_hope_no_increment, ["increment"])],
    "09.cms_step": [(lambda u, W_in, W_out, eta, C: C * sol09.cms_normalized_step(u, W_in, W_out, eta, C),
                     ["period C"])],
    "10.bwt": [(lambda R: float(np.mean(np.asarray(R)[-1] - np.diag(np.asarray(R)))), ["last task"])],
    "10.ewc_fisher": [(lambda W, X, y: sol10.empirical_fisher(W, X, y) * X.shape[0], ["mean"])],
    "11.shuffle2": [(lambda s: sum(1 if c % 2 == 0 else -1 for c in s) == 0, ["each type needs its own counter"])],
    "11.mqar_memory": [(_mqar_peek, ["read the future"]), (_mqar_late, ["one position late"])],
    "12.attention_flops": [(lambda B, H, T, d: 2 * B * H * T * T * 2 * d, ["whole T x T"]),
                           (lambda B, H, T, d: 2 * B * H * (T * (T + 1) // 2) * d, ["half the answer", "P v"])],
    "12.ddp_gradient": [(lambda grads, rows: sum(grads), ["summed"]),
                        (lambda grads, rows: sum(grads) / len(grads), ["without weights"])],
    "04.momentum_decay": [(_momentum_no_decay, ["forgetting gate"])],
    "04.dual_chunk": [(_online_gd, ["at W0"])],
    "02.intra_chunk": [(lambda Qc, Kc, Vc: (Qc @ Kc.T) @ Vc, ["causal mask"]),
                       (lambda Qc, Kc, Vc: (Qc @ Kc.T).tril(-1) @ Vc, ["diagonal"])],
}


@pytest.fixture(autouse=True)
def _fresh_attempts():
    exercises.reset_attempts()
    yield
    exercises.reset_attempts()


def _cells(ex):
    return json.loads((NOTEBOOKS / f"{ex.notebook}.ipynb").read_text())["cells"]


def _stub_index(ex, cells) -> int:
    for i, c in enumerate(cells):
        src = "".join(c["source"])
        if c["cell_type"] == "code" and "exercise" in c.get("metadata", {}).get("tags", []) \
                and re.search(rf"^def {ex.name}\(", src, re.M):
            return i
    raise AssertionError(f"no cell tagged 'exercise' in {ex.notebook}.ipynb defines `{ex.name}`")


def _docstring(src: str, name: str) -> str:
    for node in ast.parse(src).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return ast.get_docstring(node) or ""
    return ""


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize("nb", COURSE)
def test_at_least_two_graded_exercises_and_one_derivation_per_notebook(nb):
    mine = [ex for ex in ALL if ex.id.startswith(nb + ".")]
    assert len(mine) >= 2, f"notebook {nb} has {len(mine)} graded exercise(s): {[e.id for e in mine]}"
    assert any(ex.derivation for ex in mine), f"notebook {nb} has no exercise that is a derivation"
    for ex in mine:  # every registered exercise has its stub and grading cell in the notebook
        cells = _cells(ex)
        i = _stub_index(ex, cells)
        assert f'grade("{ex.id}"' in "".join(cells[i + 1]["source"]), f"{ex.id}: no grade cell after the stub"


def test_every_exercise_has_its_key_expressions_listed():
    assert set(KEY_EXPRESSIONS) == {ex.id for ex in ALL}
    assert set(MISTAKES) == {ex.id for ex in ALL}


@pytest.mark.parametrize("ex", ALL, ids=lambda e: e.id)
def test_no_stub_docstring_gives_the_answer(ex):
    cells = _cells(ex)
    doc = _squash(_docstring("".join(cells[_stub_index(ex, cells)]["source"]), ex.name))
    assert doc, f"{ex.id}: the stub has no docstring saying what to return"
    for key in KEY_EXPRESSIONS[ex.id]:
        assert _squash(key) not in doc, f"{ex.id}: the stub's docstring contains the answer {key!r}"


def test_the_docstring_check_catches_a_formula():
    """The check above is not vacuous: the old transcription stubs would fail it."""
    old = 'def delta_write(S, k, v, beta):\n    """... -> (I - beta k k^T) S + beta k v^T."""\n'
    doc = _squash(_docstring(old, "delta_write"))
    assert any(_squash(k) in doc for k in KEY_EXPRESSIONS["01.delta_write"])


@pytest.mark.parametrize("ex", ALL, ids=lambda e: e.id)
def test_difficulty_time_and_predict_first_beside_the_stub(ex):
    cells = _cells(ex)
    i = _stub_index(ex, cells)
    above = "".join(cells[i - 1]["source"])
    assert cells[i - 1]["cell_type"] == "markdown" and f"Exercise {ex.id}" in above, \
        f"{ex.id}: the markdown cell above the stub should introduce **Exercise {ex.id}.**"
    m = re.search(r"Difficulty: (easy|medium|hard) · about (\d+) min", above)
    assert m, f"{ex.id}: no 'Difficulty: ... · about N min' line above the stub"
    assert (m.group(1), int(m.group(2))) == (ex.difficulty, ex.minutes), \
        f"{ex.id}: the notebook says {m.groups()}, the grader {ex.difficulty, ex.minutes}"
    assert "Predict first:" in above, f"{ex.id}: no 'Predict first:' prompt above the stub"


@pytest.mark.parametrize("ex", ALL, ids=lambda e: e.id)
def test_untouched_stub_is_not_attempted(ex):
    cells = _cells(ex)
    ns = {"torch": torch, "np": np, "math": math}
    exec("".join(cells[_stub_index(ex, cells)]["source"]), ns)
    res = exercises.grade(ex.id, ns[ex.name], quiet=True)
    assert not res.attempted and "Not attempted yet" in res.message


@pytest.mark.parametrize("ex", ALL, ids=lambda e: e.id)
def test_a_typical_mistake_gets_its_diagnosis(ex):
    for wrong, words in MISTAKES[ex.id]:
        res = exercises.grade(ex.id, wrong, quiet=True)
        assert res.attempted and not res.passed, f"{ex.id}: a wrong answer passed"
        assert "differs from the reference" not in res.message.splitlines()[0], res.message
        for w in words:
            assert w in res.message, f"{ex.id}: expected {w!r} in the verdict:\n{res.message}"


def test_the_deep_momentum_reference_is_the_optimizer_s_inner_step():
    """06.dmgd_inner's reference (inner_grads + retention) is what DeepMomentum.step does."""
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(5, 3, dtype=torch.float64))
    opt = nlo.DeepMomentum([p], lr=0.01, inner_lr=0.3, retention=0.8, hidden=4)
    names = ("w", "W1", "b1", "w2")
    for step in range(3):
        p.grad = torch.randn(5, 3, dtype=torch.float64)
        st = opt.state[p]
        if step >= 1:  # predict what the next step does to the MLP from the state it starts with
            before = tuple(st[k].clone() for k in names)
            init = tuple(st[k + "0"].clone() for k in names)
            feats = st["features"].clone()
            b2 = 0.99
            sq = st["sq"] * b2 + (1 - b2) * p.grad.pow(2).mean()
            s = (sq / (1 - b2 ** (st["step"] + 1))).sqrt() + 1e-12
            want = exercises.get("06.dmgd_inner").reference(before, init, feats, (p.grad / s).reshape(-1), 0.3, 0.8)
        opt.step()
        if step >= 1:
            for k, w in zip(names, want, strict=True):
                assert torch.allclose(opt.state[p][k], w, atol=1e-12), k
