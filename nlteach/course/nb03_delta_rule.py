"""Notebook 03 (the delta rule and chunking): one chunk of the (gated) delta rule written out with
small matrices (the UT transform, the WY form, what dropping Gamma breaks), the recall of a first
pair under forgetting, and the speed of the token loop vs the chunked rule.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from nlteach import memory
from nlteach.bench import measure
from nlteach.bench.memory import make_inputs
from nlteach.config import get_device
from nlteach.course.nb01_associative_memory import make_pairs


def ut_transform(K: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """The UT transform of one chunk: ``T = (I + A)^{-1} diag(beta)`` with
    ``A = strictly_lower(diag(beta) K K^T)``. K: [C, d_k], beta: [C] -> T: [C, C] (lower-triangular).

    ``(I + A)`` is unit lower-triangular, so a triangular solve (forward substitution) inverts it.
    """
    C = K.shape[0]
    A = (beta[:, None] * (K @ K.T)).tril(-1)  # [C, C], strictly lower
    eye = torch.eye(C, dtype=K.dtype, device=K.device)
    return torch.linalg.solve_triangular(eye + A, torch.diag(beta), upper=False, unitriangular=True)


def pseudo_values(S: torch.Tensor, K: torch.Tensor, V: torch.Tensor, beta: torch.Tensor,
                  alpha: torch.Tensor | None = None) -> torch.Tensor:
    """Token loop over one chunk returning the values actually written,
    ``u_i = beta_i (v_i - alpha_i S_{i-1}^T k_i)`` (so ``S_i = alpha_i S_{i-1} + k_i u_i^T``): [C, d_v]."""
    us = []
    for i in range(K.shape[0]):
        if alpha is not None:
            S = alpha[i] * S
        u = beta[i] * (V[i] - S.T @ K[i])
        S = S + torch.outer(K[i], u)
        us.append(u)
    return torch.stack(us)


def delta_chunk_wy(S: torch.Tensor, Q: torch.Tensor, K: torch.Tensor, V: torch.Tensor,
                   beta: torch.Tensor, ut=ut_transform) -> tuple[torch.Tensor, torch.Tensor]:
    """One chunk of the (ungated) delta rule with the WY representation, readable:
    ``T = ut(K, beta)``, ``U = T V``, ``W = T K``, ``U_pseudo = U - W S``,
    ``O = Q S + (Q K^T * M) U_pseudo``, ``S_new = S + K^T U_pseudo``. Shapes as [C, d] per chunk."""
    T_ = ut(K, beta)  # [C, C]
    U, W = T_ @ V, T_ @ K  # [C, d_v], [C, d_k]
    U_pseudo = U - W @ S  # the values the token loop would write
    O = Q @ S + (Q @ K.T).tril() @ U_pseudo
    return O, S + K.T @ U_pseudo


def gated_chunk_A(K: torch.Tensor, beta: torch.Tensor, alpha: torch.Tensor, *,
                  with_gamma: bool = True) -> torch.Tensor:
    """``A`` of the gated delta rule for one chunk: ``strictly_lower(diag(beta) (K K^T * Gamma))``
    with ``Gamma_ij = prod_{j < l <= i} alpha_l``; ``with_gamma=False`` drops Gamma (the mistake)."""
    g = torch.cumsum(alpha.log(), 0)
    Gamma = (g[:, None] - g[None, :]).tril().exp().tril() if with_gamma else torch.ones_like(K @ K.T)
    return (beta[:, None] * (K @ K.T) * Gamma).tril(-1)


def gated_chunk_wy(S: torch.Tensor, Q: torch.Tensor, K: torch.Tensor, V: torch.Tensor,
                   beta: torch.Tensor, alpha: torch.Tensor, *,
                   with_gamma: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """One chunk of the gated delta rule (see :func:`nlteach.memory.delta_rule_chunked`, steps 1-4),
    readable; ``with_gamma=False`` drops Gamma from A to show what goes wrong."""
    C = K.shape[0]
    g = torch.cumsum(alpha.log(), 0)  # [C]
    gamma = g.exp()[:, None]  # [C, 1]
    Gamma = (g[:, None] - g[None, :]).tril().exp().tril()  # [C, C]
    A = gated_chunk_A(K, beta, alpha, with_gamma=with_gamma)
    eye = torch.eye(C, dtype=K.dtype)
    T_ = torch.linalg.solve_triangular(eye + A, torch.diag(beta), upper=False, unitriangular=True)
    U_pseudo = T_ @ V - T_ @ (gamma * K) @ S
    O = (gamma * Q) @ S + ((Q @ K.T) * Gamma) @ U_pseudo
    S_new = gamma[-1] * S + (K * (g[-1] - g).exp()[:, None]).T @ U_pseudo
    return O, S_new


def recall_of_first_pair(alphas: Sequence[float], *, d: int, n: int, beta: float = 1.0,
                         seed: int = 0) -> dict[float, np.ndarray]:
    """Write one pair, then ``n`` random pairs; read the first key after every write.
    Returns ``{alpha: cosine(S_t^T k_1, v_1) for t = 1..n+1}`` (the gated delta rule, constant alpha)."""
    keys, values = make_pairs(n + 1, d, d, "random", seed=seed)
    out = {}
    for a in alphas:
        shape = (1, 1, n + 1)
        alpha = torch.full(shape, float(a), dtype=keys.dtype)
        q = keys[:1].expand(n + 1, d)[None, None]  # always query the first key
        o, _ = memory.delta_rule_naive(q, keys[None, None], values[None, None],
                                       torch.full(shape, beta, dtype=keys.dtype), alpha=alpha)
        out[a] = F.cosine_similarity(o[0, 0], values[:1], dim=-1).numpy()
    return out


def speed_sweep(Ts: Sequence[int], chunk_sizes: Sequence[int], *, BH: int, d: int, repeat: int = 3,
                T_for_chunks: int | None = None, seed: int = 0) -> dict:
    """Time the delta rule's token loop and chunked version (forward, float32, CPU or the default
    device) over sequence lengths ``Ts`` (chunk 64), and the chunked version over ``chunk_sizes``.

    Both versions are warmed up first (on the shortest sequence: the first calls pay one-off
    costs, which would make the first speed-up jump between runs); each time is the median of
    ``repeat`` runs (at least 2 for the slow token loop)."""
    dev = get_device()
    res: dict = {"Ts": list(Ts), "naive": [], "chunked": [], "chunk_sizes": list(chunk_sizes),
                 "by_chunk": []}
    with torch.no_grad():
        warm = make_inputs("delta", BH, min(Ts), d, dtype=torch.float32, device=dev, seed=seed)
        memory.delta_rule_naive(**warm)
        memory.delta_rule_chunked(**warm)
        for T in Ts:
            x = make_inputs("delta", BH, T, d, dtype=torch.float32, device=dev, seed=seed)
            res["naive"].append(measure(lambda x=x: memory.delta_rule_naive(**x), device=dev, warmup=0,
                                        repeat=max(2, repeat // 2)))
            res["chunked"].append(measure(lambda x=x: memory.delta_rule_chunked(**x), device=dev,
                                          repeat=repeat))
        x = make_inputs("delta", BH, T_for_chunks or max(Ts), d, dtype=torch.float32, device=dev, seed=seed)
        for C in chunk_sizes:
            res["by_chunk"].append(measure(lambda C=C: memory.delta_rule_chunked(**x, chunk_size=C),
                                           device=dev, repeat=repeat))
    res["T_for_chunks"] = T_for_chunks or max(Ts)
    return res


def draw_speed(fig: Figure, res: dict, *, BH: int, d: int) -> Figure:
    """Left: time vs T for the token loop and the chunked delta rule; right: chunked time vs C."""
    ax, ax2 = fig.subplots(1, 2)
    ax.loglog(res["Ts"], res["naive"], "o-", color="C1", label="naive (token loop)")
    ax.loglog(res["Ts"], res["chunked"], "o-", color="C0", label="chunked, C = 64")
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("forward time (s)")
    ax.set_title(f"delta rule, B*H={BH}, d={d}", fontsize=9)
    ax.legend(fontsize=8)
    ax2.semilogx(res["chunk_sizes"], res["by_chunk"], "o-", color="C0", base=2)
    ax2.set_xlabel("chunk size C")
    ax2.set_ylabel("forward time (s)")
    ax2.set_title(f"chunked delta rule, T = {res['T_for_chunks']}", fontsize=9)
    return fig
