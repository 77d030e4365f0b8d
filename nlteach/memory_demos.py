"""Experiments, figures and widgets for notebooks 01-03 (associative memory, attention, chunking).

The mechanisms themselves live in :mod:`nlteach.memory`; this module holds the small one-pair
writes the learner implements in notebook 01, the capacity experiment, and the drawing functions
behind the notebooks' widgets and plots (each a plain ``draw(fig, ...)``, unit-tested).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from nlteach import memory

KEY_KINDS = ("orthogonal", "random", "correlated")
RULES = ("hebbian", "delta")

# ---------------------------------------------------------------------------------------------
# Notebook 01: one write, two objectives.


def hebbian_loss(S: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The dot-product (Hebbian) objective ``-<S^T k, v>``: small when the memory's answer for
    ``k`` points along ``v``. S: [d_k, d_v], k: [d_k], v: [d_v]."""
    return -(S.T @ k) @ v


def l2_loss(S: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The L2 regression objective ``1/2 ||S^T k - v||^2``: small when the memory returns ``v``."""
    return 0.5 * (S.T @ k - v).pow(2).sum()


def hebbian_write(S: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """One gradient step of size 1 on :func:`hebbian_loss`: the gradient is ``-k v^T``, so
    ``S_new = S + k v^T`` (linear attention's write). S: [d_k, d_v], k: [d_k], v: [d_v]."""
    return S + torch.outer(k, v)


def delta_write(S: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: float) -> torch.Tensor:
    """One gradient step of size ``beta`` on :func:`l2_loss`: the gradient is
    ``k (S^T k - v)^T``, so ``S_new = S - beta k (S^T k - v)^T = (I - beta k k^T) S + beta k v^T``
    (the delta rule's write). S: [d_k, d_v], k: [d_k], v: [d_v]."""
    return S - beta * torch.outer(k, S.T @ k - v)


def make_keys(n: int, d: int, kind: str, *, generator: torch.Generator, rho: float = 0.6,
              dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``n`` unit-norm keys of dimension ``d``: [n, d].

    - ``orthogonal``: each block of ``d`` consecutive keys is an orthonormal basis (a fresh random
      one per block), so keys are exactly orthogonal as long as ``n <= d``;
    - ``random``: independent Gaussian directions (nearly orthogonal when d is large);
    - ``correlated``: every key shares one common direction, ``k_i ~ sqrt(rho) c + sqrt(1-rho) z_i``,
      so two keys have cosine similarity about ``rho``.
    """
    if kind not in KEY_KINDS:
        raise ValueError(f"kind must be one of {KEY_KINDS}, got {kind!r}.")
    if kind == "orthogonal":
        blocks = []
        for _ in range(-(-n // d)):
            Qm, _ = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=dtype))
            blocks.append(Qm.T)
        keys = torch.cat(blocks)[:n] if blocks else torch.zeros(0, d, dtype=dtype)
    elif kind == "random":
        keys = torch.randn(n, d, generator=generator, dtype=dtype)
    else:
        c = F.normalize(torch.randn(d, generator=generator, dtype=dtype), dim=0)
        z = F.normalize(torch.randn(n, d, generator=generator, dtype=dtype), dim=-1)
        keys = math.sqrt(rho) * c + math.sqrt(1 - rho) * z
    return F.normalize(keys, dim=-1)


def make_pairs(n: int, d_k: int, d_v: int, kind: str, *, seed: int,
               dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys [n, d_k] of the given kind and unit-norm random values [n, d_v]."""
    g = torch.Generator().manual_seed(seed)
    keys = make_keys(n, d_k, kind, generator=g, dtype=dtype)
    values = F.normalize(torch.randn(n, d_v, generator=g, dtype=dtype), dim=-1)
    return keys, values


def write_all(keys: torch.Tensor, values: torch.Tensor, rule: str, *, beta: float = 1.0,
              S0: torch.Tensor | None = None) -> torch.Tensor:
    """Write the pairs in order and return every state: [n + 1, d_k, d_v] (``S_0`` first)."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}.")
    S = keys.new_zeros(keys.shape[-1], values.shape[-1]) if S0 is None else S0
    states = [S]
    for k, v in zip(keys, values):
        S = hebbian_write(S, k, v) if rule == "hebbian" else delta_write(S, k, v, beta)
        states.append(S)
    return torch.stack(states)


def retrieval_errors(S: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Relative squared error of reading each key back: ``||S^T k_i - v_i||^2 / ||v_i||^2`` -> [n]."""
    return (keys @ S - values).pow(2).sum(-1) / values.pow(2).sum(-1)


def capacity_experiment(d: int, Ns: Sequence[int], seeds: Sequence[int], *,
                        kinds: Sequence[str] = ("orthogonal", "correlated"),
                        rules: Sequence[str] = RULES, beta: float = 1.0) -> dict:
    """Write N random pairs into a d x d memory and measure the mean retrieval error over all N.

    Returns ``{(rule, kind): array [len(seeds), len(Ns)]}`` plus ``"Ns"``. One write sequence of
    ``max(Ns)`` pairs per seed; the error after N writes is measured on the first N pairs.
    """
    n_max = max(Ns)
    out: dict = {"Ns": np.asarray(Ns)}
    for kind in kinds:
        for rule in rules:
            errs = np.zeros((len(seeds), len(Ns)))
            for i, seed in enumerate(seeds):
                keys, values = make_pairs(n_max, d, d, kind, seed=seed)
                states = write_all(keys, values, rule, beta=beta)
                for j, n in enumerate(Ns):
                    errs[i, j] = retrieval_errors(states[n], keys[:n], values[:n]).mean().item()
            out[(rule, kind)] = errs
    return out


def draw_capacity(fig: Figure, results: dict, d: int) -> Figure:
    """Mean retrieval error vs number of stored pairs, one panel per key kind (mean +- std over seeds)."""
    kinds = sorted({kind for key in results if isinstance(key, tuple) for kind in [key[1]]},
                   key=KEY_KINDS.index)
    axes = fig.subplots(1, len(kinds), sharey=True, squeeze=False)[0]
    Ns = results["Ns"]
    for ax, kind in zip(axes, kinds):
        for rule, color in zip(RULES, ("C1", "C0")):
            if (rule, kind) not in results:
                continue
            e = results[(rule, kind)]
            m, s = e.mean(0), e.std(0)
            ax.plot(Ns / d, m, color=color, marker="o", ms=3, label=rule)
            ax.fill_between(Ns / d, np.maximum(m - s, 0), m + s, color=color, alpha=0.2)
        ax.axvline(1.0, color="0.5", ls=":", lw=1)
        ax.set_title(f"{kind} keys")
        ax.set_xlabel("pairs stored N / dimension d")
    axes[0].set_ylabel("mean retrieval error\n||S^T k - v||^2 / ||v||^2")
    axes[0].legend(fontsize=8)
    return fig


def draw_memory_writes(fig: Figure, n_written: int = 4, keys: str = "correlated", *, d: int = 8,
                       n_max: int = 16, beta: float = 1.0, seed: int = 0) -> Figure:
    """Widget of notebook 01: after ``n_written`` writes, the memory matrix of each rule and the
    retrieval error of every pair written so far."""
    n_written = int(min(max(n_written, 0), n_max))
    K, V = make_pairs(n_max, d, d, keys, seed=seed)
    ax_h, ax_d, ax_e = fig.subplots(1, 3, width_ratios=[1, 1, 1.5])
    errs = {}
    for ax, rule in ((ax_h, "hebbian"), (ax_d, "delta")):
        S = write_all(K[:n_written], V[:n_written], rule, beta=beta)[-1]
        errs[rule] = retrieval_errors(S, K[:n_written], V[:n_written]).numpy()
        lim = max(1.0, float(S.abs().max()))
        ax.imshow(S.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(f"{rule} memory S\n(after {n_written} writes)", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    idx = np.arange(1, n_written + 1)
    if n_written:
        ax_e.bar(idx - 0.2, errs["hebbian"], width=0.4, color="C1", label="hebbian")
        ax_e.bar(idx + 0.2, errs["delta"], width=0.4, color="C0", label="delta")
        ax_e.legend(fontsize=8, loc="upper left")
    ax_e.set_xlim(0.3, n_max + 0.7)
    ax_e.set_ylim(0, max([1.5] + [float(e.max()) for e in errs.values() if len(e)]))
    ax_e.set_xlabel("pair i (in the order written)")
    ax_e.set_ylabel("retrieval error of pair i")
    ax_e.set_title(f"{keys} keys, d = {d}", fontsize=9)
    return fig


# ---------------------------------------------------------------------------------------------
# Notebook 02: attention is associative memory.


def kernel_regression(x_query: torch.Tensor, x_keys: torch.Tensor, y_values: torch.Tensor,
                      bandwidth: float) -> torch.Tensor:
    """Nadaraya-Watson regression with a Gaussian kernel, written as softmax attention.

    The weights ``exp(-(x - x_i)^2 / (2 h^2)) / sum_j exp(-(x - x_j)^2 / (2 h^2))`` are a softmax
    over the scores ``-(x - x_i)^2 / (2 h^2)``. x_query: [m], x_keys: [n], y_values: [n] -> [m].
    """
    scores = -(x_query[:, None] - x_keys[None, :]).pow(2) / (2 * bandwidth**2)  # [m, n]
    return torch.softmax(scores, dim=-1) @ y_values


def regression_data(n: int = 40, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy samples of a smooth 1-D function on [0, 1]: x [n], y [n] (float64)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, generator=g, dtype=torch.float64)
    y = torch.sin(6 * x) + 0.5 * x + 0.25 * torch.randn(n, generator=g, dtype=torch.float64)
    return x, y


def draw_kernel_regression(fig: Figure, bandwidth: float = 0.05, *, n: int = 40, seed: int = 0) -> Figure:
    """Widget of notebook 02: softmax attention over (x_i, y_i) pairs as a regression curve, and
    the attention weights of one query."""
    x, y = regression_data(n, seed=seed)
    xs = torch.linspace(0, 1, 300, dtype=torch.float64)
    ax, ax2 = fig.subplots(1, 2, width_ratios=[2, 1])
    ax.scatter(x.numpy(), y.numpy(), s=12, color="0.4", label="stored pairs (k_i, v_i)")
    ax.plot(xs.numpy(), kernel_regression(xs, x, y, bandwidth).numpy(), color="C0", lw=2,
            label="attention read-out M*(q)")
    ax.plot(xs.numpy(), (torch.sin(6 * xs) + 0.5 * xs).numpy(), color="C2", ls="--", lw=1,
            label="true function")
    ax.set_xlabel("query q (a scalar here)")
    ax.set_title(f"softmax attention = kernel regression (bandwidth {bandwidth:.3f})", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    q0 = torch.tensor([0.5], dtype=torch.float64)
    w = torch.softmax(-(q0[:, None] - x[None, :]).pow(2) / (2 * bandwidth**2), dim=-1)[0]
    order = torch.argsort(x)
    ax2.bar(x[order].numpy(), w[order].numpy(), width=0.015, color="C0")
    ax2.set_xlabel("key x_i")
    ax2.set_title("attention weights of q = 0.5", fontsize=9)
    return fig


def intra_chunk_term(Qc: torch.Tensor, Kc: torch.Tensor, Vc: torch.Tensor) -> torch.Tensor:
    """The causal part of chunked linear attention for one chunk: ``(Q K^T * M) V`` with M the
    lower-triangular ones (diagonal included). Qc, Kc: [C, d_k], Vc: [C, d_v] -> [C, d_v]."""
    scores = Qc @ Kc.T  # [C, C], (q_i . k_j)
    return scores.tril() @ Vc  # keep j <= i


def chunked_linear_attention_loop(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk_size: int,
                                  intra=intra_chunk_term) -> tuple[torch.Tensor, torch.Tensor]:
    """A readable chunked linear attention for one head, looping over chunks (notebook 02).

    q, k: [T, d_k], v: [T, d_v]. Per chunk: ``O = Q S + intra(Q, K, V)``, then ``S <- S + K^T V``.
    (:func:`nlteach.memory.linear_attention_chunked` is the same without the loop.)
    """
    S = q.new_zeros(k.shape[-1], v.shape[-1])
    outs = []
    for s in range(0, q.shape[0], chunk_size):
        Qc, Kc, Vc = q[s:s + chunk_size], k[s:s + chunk_size], v[s:s + chunk_size]
        outs.append(Qc @ S + intra(Qc, Kc, Vc))  # inter-chunk (the past) + intra-chunk (causal)
        S = S + Kc.T @ Vc  # the chunk's writes, all at once
    return torch.cat(outs), S


def fast_weight_task(batch: int, T: int, d: int, *, A: torch.Tensor, novelty: float,
                     generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences of pairs ``v_t = (A + B)^T k_t``: ``A`` [d, d] is shared by every sequence (slow
    knowledge), ``B`` is drawn fresh per sequence with scale ``novelty`` (knowledge only the context
    has). Returns keys [batch, 1, T, d] (unit norm) and values [batch, 1, T, d]."""
    k = F.normalize(torch.randn(batch, 1, T, d, generator=generator), dim=-1)
    Bm = novelty * torch.randn(batch, 1, d, d, generator=generator) / math.sqrt(d)
    v = k @ (A + Bm)  # row form of (A + B)^T k
    return k, v


LA_VARIANTS = ("MLP (frozen weights)", "linear attention", "linear attention++")


def train_fast_weights(variant: str, *, d: int, T: int, steps: int, seed: int, batch: int = 64,
                       novelty: float = 1.0, lr: float = 0.02) -> list[float]:
    """Train one of :data:`LA_VARIANTS` on :func:`fast_weight_task`; return the loss per step.

    The model predicts ``v_{t+1}`` from ``q_t = k_{t+1}`` after writing pairs ``1..t``:
    ``o_t = S_t^T k_{t+1}`` with ``S_t = S_0 + eta sum_{i <= t} k_i v_i^T`` (linear attention with
    values scaled by a learned write strength ``eta``).

    - MLP: ``S_t = S_0`` (learned by backprop, no writes): a linear layer, update frequency 0;
    - linear attention: ``S_0 = 0``, only in-context writes (every token);
    - linear attention++: both: a learned ``S_0`` (slow level) plus in-context writes (fast level).
    """
    if variant not in LA_VARIANTS:
        raise ValueError(f"variant must be one of {LA_VARIANTS}, got {variant!r}.")
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(d, d, generator=g) / math.sqrt(d)  # the shared map, fixed for this seed
    S0 = torch.zeros(d, d, requires_grad=variant != "linear attention")
    log_eta = torch.tensor(math.log(1.0 / d), requires_grad=variant != LA_VARIANTS[0])
    opt = torch.optim.Adam([p for p in (S0, log_eta) if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        k, v = fast_weight_task(batch, T + 1, d, A=A, novelty=novelty, generator=g)
        eta = log_eta.exp() if variant != LA_VARIANTS[0] else log_eta.new_zeros(())
        o, _ = memory.linear_attention_chunked(k[:, :, 1:], k[:, :, :-1], eta * v[:, :, :-1],
                                               initial_state=S0.expand(batch, 1, d, d), chunk_size=16)
        loss = (o - v[:, :, 1:]).pow(2).sum(-1).mean() / v.pow(2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


# ---------------------------------------------------------------------------------------------
# Notebook 03: the delta rule and chunking (one chunk, small matrices, written out).


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
    device) over sequence lengths ``Ts`` (chunk 64), and the chunked version over ``chunk_sizes``."""
    from nlteach.bench import measure
    from nlteach.bench.memory import make_inputs
    from nlteach.config import get_device

    dev = get_device()
    res: dict = {"Ts": list(Ts), "naive": [], "chunked": [], "chunk_sizes": list(chunk_sizes),
                 "by_chunk": []}
    with torch.no_grad():
        for T in Ts:
            x = make_inputs("delta", BH, T, d, dtype=torch.float32, device=dev, seed=seed)
            res["naive"].append(measure(lambda x=x: memory.delta_rule_naive(**x), device=dev, warmup=0,
                                        repeat=max(1, repeat // 2)))
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
