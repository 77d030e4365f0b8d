"""Graders for notebook 08 (self-modifying Titans): the DGD update of one matrix, and one full
token of the layer (generation, read, and the update of all five memories)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nlteach.deep_memory import sigma, sigma_prime
from nlteach.exercises import GradingFailure, assert_close, check_returned, register, same
from nlteach.titans import BOXES, dgd_token, self_modifying_titans_naive


def dgd_update_reference(S: torch.Tensor, k: torch.Tensor, delta: torch.Tensor, eta: float,
                         alpha: float) -> torch.Tensor:
    """``(alpha I - eta k k^T) S - eta k delta^T`` for ``S [d, hidden]``, ``k [d]``, ``delta [hidden]``."""
    t = torch.as_tensor
    return dgd_token(S, torch.zeros_like(S), k, delta, k, t(eta, dtype=S.dtype), t(alpha, dtype=S.dtype), 0.0)[0]


@register(
    "08.dgd_update",
    name="dgd_update",
    notebook="08_self_modifying_titans",
    reference=dgd_update_reference,
    hint="DGD is one gradient step on the regression loss at the key k, plus the decay alpha. The "
         "gradient has a part that depends on what S already returns for k (k k^T S: the delta-rule "
         "term) and a part from the error signal delta.",
    solution="S_new = alpha * S - eta * outer(k, k @ S) - eta * outer(k, delta); never build the d x d "
         "matrix if you do not need it, but it is fine to: (alpha * I - eta * outer(k, k)) @ S.",
    difficulty="easy",
    minutes=10,
)
def check_dgd_update(fn) -> None:
    g = torch.Generator().manual_seed(0)
    S = torch.randn(5, 7, generator=g, dtype=torch.float64)
    k = F.normalize(torch.randn(5, generator=g, dtype=torch.float64), dim=0)
    delta = torch.randn(7, generator=g, dtype=torch.float64)
    got = fn(S.clone(), k.clone(), delta.clone(), 0.0, 1.0)
    if got is None:
        raise GradingFailure("your function returned None; return the updated matrix S_new [d, hidden].")
    assert_close(got, S, what="with eta = 0 and alpha = 1 nothing may change")
    got = fn(S.clone(), k.clone(), torch.zeros(7, dtype=torch.float64), 1.0, 1.0)
    if not torch.allclose(k @ got, torch.zeros(7, dtype=torch.float64), atol=1e-10):
        raise GradingFailure("with eta = 1, alpha = 1 and delta = 0 the projector (I - k k^T) must remove "
                             "the k direction from S entirely (k^T S_new = 0); it does not.")
    for eta, alpha in ((0.3, 0.9), (0.7, 0.5)):
        assert_close(fn(S.clone(), k.clone(), delta.clone(), eta, alpha),
                     dgd_update_reference(S, k, delta, eta, alpha), what=f"eta={eta}, alpha={alpha}")


# ------------------------------------------------------------------------ one full token of the layer
def titans_token_reference(states: dict, u: torch.Tensor, q: torch.Tensor, readout: dict,
                           eta_max: float) -> tuple[torch.Tensor, dict]:
    """One token of ``titans.self_modifying_titans_naive`` for one head with both chunk sizes 1:
    ``states``: box -> ``(S2 [d, hidden], S1 [hidden, d])``; ``u, q [d]``; ``readout``: ``w_eta,
    w_alpha [d]``, ``b_eta, b_alpha`` (numbers). Returns ``(o [d], new states)``."""
    lift = {b: (S2[None, None], S1[None, None]) for b, (S2, S1) in states.items()}
    ro = {k: torch.as_tensor(v, dtype=u.dtype).reshape(1, -1) if k.startswith("w") else
          torch.as_tensor(v, dtype=u.dtype).reshape(1) for k, v in readout.items()}
    o, (new, _) = self_modifying_titans_naive(u[None, None, None], q[None, None, None], lift, ro,
                                              chunk_size=1, proj_chunk_size=1, eta_max=eta_max)
    return o[0, 0, 0], {b: (S2[0, 0], S1[0, 0]) for b, (S2, S1) in new.items()}


def _read(S2, S1, x):
    return x + sigma(x @ S2) @ S1


def _token_variant(states, u, q, readout, eta_max, mistake: str):
    """The token step written out (Eqs. 83-88 with the course's choices), with one typical mistake."""
    k = _read(*states["k"], u)
    if mistake != "keys_unnormalized":
        k = k / k.norm()
    v = _read(*states["v"], u)
    eta = eta_max * torch.sigmoid(_read(*states["eta"], u) @ readout["w_eta"] + readout["b_eta"])
    alpha = torch.sigmoid(_read(*states["alpha"], u) @ readout["w_alpha"] + readout["b_alpha"])
    o = _read(*states["memory"], q)
    vn = v if mistake == "values_unnormalized" else v / v.norm()
    new = {}
    for box, (S2, S1) in states.items():
        if mistake == "only_memory" and box != "memory":
            new[box] = (S2, S1)
            continue
        z = k @ S2
        a = sigma(z)
        r = k + a @ S1 - _read(S2, S1, vn)  # M(k) - vhat, vhat = M(vn) made by the memory itself
        delta = sigma_prime(z) * (S1 @ r)
        ad = a if mistake == "fixed_target" else a - sigma(vn @ S2)
        eta2 = eta if mistake == "plain_second" else eta / (1 + ad @ ad)
        S2_new = alpha * S2 - eta * torch.outer(k, delta)
        if mistake != "no_projector":
            S2_new = S2_new - eta * torch.outer(k, k @ S2)
        new[box] = (S2_new, alpha * S1 - eta2 * torch.outer(ad, r))
    if mistake == "read_after":
        o = _read(*new["memory"], q)
    return o, new


_TOKEN_WHY = {
    "read_after": "your output reads the main memory after this token's update; o_t = M_memory,t-1(q_t) "
                  "reads it before (Eq. 88: the read is exclusive).",
    "only_memory": "only the main memory changed: in self-modifying Titans the k, v, eta and alpha memories "
                   "take the same kind of update (that is the self-modification).",
    "no_projector": "the first matrices miss DGD's projector: S2 is multiplied by (alpha I - eta k k^T), not "
                    "only by alpha (see 08.dgd_update).",
    "plain_second": "the second matrices took the plain step eta; their step is normalized, "
                    "eta / (C (1 + ||a_k - a_v||^2)) with C = 1 here.",
    "fixed_target": "the second matrices treat the target as fixed (input a_k); the target M(v) is made by "
                    "the memory itself, so the step goes through both arguments: input a_k - a_v.",
    "values_unnormalized": "the memories made their targets from v itself; they read the unit vector "
                           "v / ||v|| (choice (g)).",
    "keys_unnormalized": "the keys are not normalized: k_t = normalize(M_k(u_t)) (Eq. 83).",
}


def _token_case(d: int, hidden: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    states = {b: (0.7 * torch.randn(d, hidden, generator=g, dtype=torch.float64),
                  0.5 * torch.randn(hidden, d, generator=g, dtype=torch.float64) / hidden ** 0.5) for b in BOXES}
    readout = {"w_eta": torch.randn(d, generator=g, dtype=torch.float64) / d ** 0.5, "b_eta": -0.5,
               "w_alpha": torch.randn(d, generator=g, dtype=torch.float64) / d ** 0.5, "b_alpha": 2.0}
    u = torch.randn(6, d, generator=g, dtype=torch.float64)
    q = F.normalize(torch.randn(6, d, generator=g, dtype=torch.float64), dim=-1)
    return states, readout, u, q


def _unpack(got, what: str):
    check_returned(got, "the pair (o [d], new_states)")
    if not isinstance(got, tuple | list) or len(got) != 2 or not isinstance(got[1], dict):
        raise GradingFailure(f"{what}: return a pair (o, new_states) with new_states a dict box -> (S2, S1).")
    o, new = got
    missing = [b for b in BOXES if b not in new]
    if missing:
        raise GradingFailure(f"{what}: new_states lacks the memories {missing}; return all five boxes {BOXES}.")
    return o, new


def _matches(o, new, o_ref, new_ref) -> bool:
    return same(o, o_ref) and all(same(new[b][0], new_ref[b][0]) and same(new[b][1], new_ref[b][1]) for b in BOXES)


@register(
    "08.titans_token",
    name="titans_token_step",
    notebook="08_self_modifying_titans",
    reference=titans_token_reference,
    hint="three phases, all from the states before the token: generate k, v, eta, alpha (Eqs. 83-85); "
         "read the output from the main memory; then update each of the five memories on its own "
         "regression M(k) -> M(v / ||v||): the first matrix by DGD (projector and gradient), the "
         "second by the normalized step through both arguments. Derive both gradients of "
         "1/2 ||M(k) - M(v)||^2 for the residual MLP M(x) = x + silu(x S2) S1.",
    solution="k = normalize(M_k(u)); v = M_v(u); eta = eta_max*sigmoid(w_eta . M_eta(u) + b_eta); "
             "alpha = sigmoid(w_alpha . M_alpha(u) + b_alpha); o = M_memory(q). For each box (S2, S1): "
             "vn = v/||v||; a = silu(k S2); r = M(k) - M(vn); delta = silu'(k S2) * (S1 r); "
             "ad = a - silu(vn S2); S2 = alpha S2 - eta k (k^T S2) - eta k delta^T; "
             "S1 = alpha S1 - eta/(1 + ||ad||^2) ad r^T.",
    difficulty="hard",
    minutes=45,
    derivation=True,
)
def check_titans_token(fn) -> None:
    for d, hidden, seed, eta_max in ((4, 6, 0, 0.5), (3, 3, 1, 1.0), (5, 2, 2, 0.8)):
        states, readout, u, q = _token_case(d, hidden, seed)
        where = f"(d={d}, hidden={hidden}, one token)"
        o, new = _unpack(fn({b: (S2.clone(), S1.clone()) for b, (S2, S1) in states.items()}, u[0].clone(),
                            q[0].clone(), dict(readout), eta_max), where)
        o_ref, new_ref = titans_token_reference(states, u[0], q[0], readout, eta_max)
        if not _matches(o, new, o_ref, new_ref):
            for mistake, why in _TOKEN_WHY.items():
                if _matches(o, new, *_token_variant(states, u[0], q[0], readout, eta_max, mistake)):
                    raise GradingFailure(f"{where} {why}")
        assert_close(o, o_ref, what=f"the output o {where}", rtol=1e-8, atol=1e-10)
        for b in BOXES:
            for i, name in ((0, "S2"), (1, "S1")):
                assert_close(new[b][i], new_ref[b][i], what=f"the {b!r} memory's new {name} {where}",
                             rtol=1e-8, atol=1e-10)
    # six tokens in a row: your step, looped, is the token loop of the library
    states, readout, u, q = _token_case(4, 5, 3)
    lift = {b: (S2[None, None], S1[None, None]) for b, (S2, S1) in states.items()}
    ro = {k: torch.as_tensor(v, dtype=torch.float64).reshape(1, -1) if k.startswith("w") else
          torch.as_tensor(v, dtype=torch.float64).reshape(1) for k, v in readout.items()}
    o_ref, (fin, _) = self_modifying_titans_naive(u[None, None], q[None, None], lift, ro, chunk_size=1,
                                                  proj_chunk_size=1, eta_max=0.5)
    cur, outs = states, []
    for t in range(u.shape[0]):
        o, cur = _unpack(fn(cur, u[t], q[t], dict(readout), 0.5), f"token {t} of 6")
        outs.append(torch.as_tensor(o))
    assert_close(torch.stack(outs), o_ref[0, 0], what="the outputs of 6 tokens in a row", rtol=1e-7, atol=1e-9)
    assert_close(cur["memory"][0], fin["memory"][0][0, 0], what="the main memory's S2 after 6 tokens",
                 rtol=1e-7, atol=1e-9)
