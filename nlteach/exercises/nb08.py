"""Graders for notebook 08 (self-modifying Titans)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nlteach.exercises import GradingFailure, assert_close, register
from nlteach.titans import dgd_token


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
