# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Deep memory (Titans): an MLP trained at test time
#
# In notebooks 01 to 03 the memory was a matrix $S$, and every token wrote into it with one
# gradient step on a regression loss (the delta rule). **Titans** (Behrouz, Zhong and Mirrokni,
# arXiv 2501.00663, Sec. 3.1) keeps the idea and changes three things:
#
# 1. the memory is a **network** $\mathcal{M}_W$ (here a two-layer MLP), so it can store more than
#    a matrix can;
# 2. the gradient step has **momentum**: the "surprise" of a token keeps pushing the weights for a
#    while after the token has passed;
# 3. a **forgetting gate** shrinks the old weights before each write.
#
# For one token with key $k_t$, value $v_t$ and query $q_t$, and per-token gates $\theta_t$
# (learning rate), $\eta_t$ (momentum) and $\alpha_t$ (forgetting), the memory does
#
# $$\ell_t(W) = \tfrac12\,\lVert \mathcal{M}_W(k_t) - v_t \rVert^2,\qquad
#   S_t = \eta_t\,S_{t-1} - \theta_t\,\nabla \ell_t(W_{t-1}),\qquad
#   W_t = (1-\alpha_t)\,W_{t-1} + S_t,\qquad o_t = \mathcal{M}_{W_t}(q_t).$$
#
# In the Nested Learning paper's language (arXiv v1, Sec. 8) this is a two-level system: the
# memory's weights $W$ are the fast level, updated on every token by their own optimizer (GD with
# momentum and weight decay) on their own objective $\ell_t$; the projections that produce
# $q, k, v, \theta, \eta, \alpha$ and the initial weights $W_0$ are the slow level, trained by
# backpropagation across whole sequences. That is why every function in this notebook is
# differentiable with respect to all of those inputs.
#
# **Choices this course makes where the papers leave room** (they are also in the docstrings of
# `nlteach.deep_memory`):
#
# - The loss carries a factor $\tfrac12$ (Titans writes $\lVert\cdot\rVert^2$); it only rescales $\theta$.
# - The MLP memory is residual, $\mathcal{M}(x) = x + W_\text{out}\,\sigma(W_\text{in}\,x)$, the form of
#   Eq. 89 (arXiv v1), with $\sigma$ = **SiLU**. Titans only asks for an MLP with at least two
#   layers; SiLU is smooth, which the fast version needs (it differentiates through $\sigma'$).
# - Gradients are taken at the **weights of the start of the token's chunk** (Titans' mini-batch
#   gradient descent, Sec. 3.2 of Titans). With chunk size 1 this is exact online GD; the token loop
#   and the fast version use the same rule, so they are exactly equal.
# - The read is **inclusive**: $o_t$ uses $W_t$, after token $t$'s own write (as in notebooks 02-03).
# - $\alpha_t$ is the amount forgotten ($\alpha=0$: keep everything) and it multiplies the old
#   weights only, not the momentum.
# - The gates are inputs here; in a model they are computed from the token (notebooks 08-09).

# %% [markdown]
# ## Objectives
#
# After this notebook you will be able to:
#
# - run a Titans memory token by token: an MLP trained at test time with momentum and forgetting;
# - explain why an MLP memory stores more pairs than a matrix of the same width, and what surprise, momentum and forgetting do;
# - trade chunk size against staleness of the gradients.
#
# **Paper:** Titans (arXiv 2501.00663) Sec. 3; Sec. 8, Eq. 89. **Prerequisites:** notebooks 01, 03 section 1. **Time at the laptop preset:** 1 min.
#
# **Optional deep dive** (skip it for the conceptual path): sections 5-6 (the chunked dual form and the chunk-size trade-off).

# %% [markdown]
# > **Symbols here: Titans' letters.** This notebook keeps the letters of the Titans paper, because
# > `titans_naive(q, k, v, lr, momentum, decay, ...)`, its exercises and its widgets use them. The
# > rest of the course writes them differently:
# >
# > | here (Titans) | meaning | elsewhere in the course |
# > | --- | --- | --- |
# > | $\theta_t$ (`lr`) | the memory's learning rate | $\eta_t$ |
# > | $\eta_t$ (`momentum`) | the momentum's retention: how much of the old momentum is kept | $a$ (notebooks 05, 06) |
# > | $S_t$ | the momentum, Titans' "surprise" | $m_t$; $S$ is the matrix memory of notebooks 01-03 |
# > | $\alpha_t$ (`decay`) | the amount **forgotten**: $W_t = (1 - \alpha_t) W_{t-1} + S_t$ | the retention is $1 - \alpha_t$ (notebooks 03, 08) |
# > | $a_t = 1 - \alpha_t$ | the retention, in section 5 | $\alpha_t$ |
# > | $W$ | the memory's weights ($W_\text{in}$, $W_\text{out}$ for the MLP) | the same |
# > | $\Gamma$, $P$, $\Lambda$, $\mu$ | section 5: cumulative products of the gates inside a chunk | |

# %%
# Set-up. On Google Colab this installs the course library; anywhere else it does nothing.
# It installs from $NLTEACH_INSTALL_SOURCE when set (a fork: git+https://github.com/<you>/nlteach,
# or the path of an uploaded nlteach wheel), else from the course's repository. Colab's own torch
# (and Jupyter) stay: torch's installed version is a requirement, so pip never replaces it.
import os
import sys

if "google.colab" in sys.modules:
    import importlib
    import subprocess
    from importlib.metadata import version
    from pathlib import Path

    source = os.environ.get("NLTEACH_INSTALL_SOURCE", "git+https://github.com/nlteach/nlteach")
    if "://" not in source:  # a path: an uploaded wheel
        source = Path(source).resolve(strict=True).as_uri()
    keep_torch = f"torch=={version('torch')}"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"nlteach @ {source}", keep_torch],
                   check=True)
    importlib.invalidate_caches()


# %%
import math

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from nlteach import config
from nlteach import deep_memory as dm
from nlteach.course import nb04_deep_memory as course
from nlteach.course.widgets import interactive_figure
from nlteach.deep_memory import titans_chunked, titans_naive
from nlteach.exercises import grade

print(config.describe())
gen = config.seed_everything(0)

# %%
from nlteach.course.live import live_cell

# Full chunk-size sweep (section 6): about 2 minutes at the laptop preset on one quiet CPU core
# (estimated from its slowest part, chunk 1, measured at 37 s; up to ten minutes on a busy 2-core
# machine). False (the default): a short sweep on sequences a quarter as long, timed once (14 s
# measured). True: the full sweep. At the tiny preset the tiny sweep always runs (seconds).
# $NLTEACH_TRAIN_LIVE=1 (or 0) overrides this flag.
TRAIN_LIVE = False

# %% [markdown]
# ## 1. The update, token by token
# `titans_naive` is a plain loop over tokens that reads like the equations above. The memory's
# weights are per sequence, with leading `[B, H]` dims: the linear memory is `params = (W,)` with
# `W: [B, H, d_v, d_k]` ($\mathcal{M}(x) = Wx$), the MLP memory `params = (W_in, W_out)`.
# It returns the outputs and the final `(weights, momentum)`, which a caller can feed back in to
# continue the stream. With the linear memory, no momentum, no forgetting and chunk size 1 it is
# exactly the delta rule of notebook 03 with $\beta_t = \theta_t$ (the tests check this).

# %%
B, H, T, d = 1, 2, 12, 8
q = F.normalize(torch.randn(B, H, T, d, generator=gen), dim=-1)
k = F.normalize(torch.randn(B, H, T, d, generator=gen), dim=-1)
v = torch.randn(B, H, T, d, generator=gen)
theta = torch.full((B, H, T), 0.3)  # learning rate, per token
eta = torch.full((B, H, T), 0.6)  # momentum
alpha = torch.full((B, H, T), 0.01)  # forgetting
mlp = dm.init_params(B, H, d, hidden=4 * d, scale=0.5, generator=gen)  # (W_in, W_out)

o, (W_T, S_T) = titans_naive(q, k, v, theta, eta, alpha, mlp, chunk_size=1)
print("o:", tuple(o.shape), "| final weights:", [tuple(w.shape) for w in W_T],
      "| final momentum:", [tuple(s.shape) for s in S_T])

# %% [markdown]
# Here is that loop. `titans_naive` checks its inputs and hands them to `_token_loop`, in which
# each line is one of the equations above (`g` the gradient, `S` the momentum, `W` the weights):

# %%
from nlteach.course.source import show_source

show_source(dm._token_loop)

# %% [markdown]
# ## 2. Why a deep memory stores more than a matrix
# A $d \times d$ matrix can hold at most about $d$ arbitrary key-value pairs exactly: with more
# pairs than dimensions the keys are linearly dependent, and a linear map cannot send them to
# unrelated values. An MLP with hidden size $h$ has a limit too, but a larger one that grows with
# $h$: storing $N$ pairs exactly means $Nd$ equations (one per value coordinate) for its $2dh$
# weights, so it holds up to about $2dh / d = 2h$ arbitrary pairs (roughly its number of
# parameters divided by $d$). With $h = 4d$, as below, that is about $8d$ pairs instead of $d$.
#
# The experiment: $N$ random unit keys with random unit values, written into each memory by the
# same online updates (the $N$ pairs reshuffled and streamed several times, same $\theta$, $\eta$,
# no forgetting), then every pair is read back. The dashed line is the best any matrix can do
# (least squares over the $N$ pairs): the linear memory follows it, and the MLP goes below it.
# An error of 1 means "no better than answering zero". The residual MLP starts as the identity,
# whose error on random pairs is about 2.

# %%
cap = course.capacity_experiment(
    n_pairs=config.by_preset(tiny=[4, 8, 16, 32], laptop=[4, 8, 16, 32, 64, 128], full=[4, 8, 16, 32, 64, 128, 256]),
    d=config.by_preset(tiny=8, laptop=16, full=16),
    hidden=config.by_preset(tiny=32, laptop=64, full=64),
    epochs=config.by_preset(tiny=8, laptop=30, full=100),
    seeds=config.by_preset(tiny=2, laptop=3, full=5),
    chunk_size=config.by_preset(tiny=4, laptop=1, full=1),
    seed=0,
)
fig = plt.figure(figsize=(6.5, 3.5), layout="constrained")
course.draw_capacity(fig, cap)
plt.show()
for n, lin, mlp_err in zip(cap["n_pairs"], cap["linear"], cap["mlp"]):
    print(f"N={n:4d}  linear {np.mean(lin):.3f} (seeds {np.round(lin, 3)})   MLP {np.mean(mlp_err):.3f} (seeds {np.round(mlp_err, 3)})")

# %% [markdown]
# What we measured at the `laptop` preset (d = 16, hidden 64, 30 passes, chunk 1,
# theta = 0.05, eta = 0.9, mean over 3 seeds; the spread between seeds was under 0.1):
#
# | N pairs | 4 | 8 | 16 | 32 | 64 | 128 |
# | --- | --- | --- | --- | --- | --- | --- |
# | linear memory | 0.00 | 0.00 | 0.13 | 0.51 | 0.82 | 1.07 |
# | least-squares floor | 0.00 | 0.00 | 0.00 | 0.49 | 0.74 | 0.87 |
# | MLP memory | 0.00 | 0.00 | 0.002 | 0.09 | 0.59 | 0.95 |
#
# Both store a handful of pairs perfectly. At $N = d$ the matrix could in principle store all
# pairs (the floor is 0), but online GD converges slowly on nearly dependent keys; past $N = d$ it
# sits on the floor (a little above it at $N = 128$: the last iterate of a fixed-step online
# method wanders around the least-squares solution). The MLP recalls far more at $N = 2d$ (0.09
# vs 0.51) but it too degrades by $N = 8d$, which is its counting limit $2h$ here; and 30 passes
# of online GD with a fixed step are a slow optimizer for it, so this measures what the memory
# *learns online*, not its ultimate capacity.
# At the `tiny` preset the numbers only show that the code runs.
#
# ## 3. Surprise
# Titans calls the gradient of the loss the **surprise** of a token: a pair that the memory
# already predicts has a small gradient and barely changes it; a pair that contradicts it has a
# large one. `dm.titans_surprise` returns $\lVert\nabla\ell_t\rVert$ per token (taken before the
# token's write, at the same point the update uses), computed with the fast chunked code.
#
# The stream below follows one rule, $v = R k$ with a fixed rotation $R$, except for rare pairs
# (3 %) whose values are random: they break the rule. Halfway, the rule itself changes.

# %%
stream = course.rule_stream(T=400, d=8, p_break=0.03, switch_at=200, seed=1)
g1 = torch.Generator().manual_seed(2)
mlp0 = (torch.randn(1, 1, 32, 8, generator=g1) / math.sqrt(8), torch.zeros(1, 1, 8, 32))
kk, vv = stream["k"][None, None], stream["v"][None, None]
surprise = dm.titans_surprise(kk, vv, 0.3, 0.0, 0.0, mlp0, chunk_size=1)[0, 0]
trace = course.memory_trace(stream["k"], stream["v"], 0.3, 0.0, 0.0, mlp0)  # token loop, for checking
print("titans_surprise (chunked) == memory_trace (token loop):",
      np.allclose(surprise.numpy(), trace["surprise"], rtol=1e-4, atol=1e-6))

broken = stream["broken"].numpy()
print(f"{broken.sum()} rule-breaking pairs; mean surprise on them {surprise[broken].mean():.2f}, "
      f"median on the others {surprise[~broken].median():.2f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), layout="constrained")
t = np.arange(len(broken))
ax = axes[0]
ax.plot(t, surprise, lw=0.8, color="C3", label="surprise ||grad||")
ax.plot(t, trace["error"], lw=0.8, color="C0", alpha=0.7, label="error before the write")
ax.scatter(t[broken], surprise[broken], color="k", s=12, zorder=3, label="rule-breaking pair")
ax.axvline(200, color="gray", ls=":")
ax.set_yscale("log")
ax.set_xlabel("token t")
ax.set_title("whole stream")
ax.legend(fontsize=7)
# average around every rule-breaking pair (after the first 50 tokens, away from the switch)
events = [i for i in np.flatnonzero(broken) if 50 <= i < len(t) - 12 and abs(i - 200) > 15]
lags = np.arange(-5, 12)
for name, color in (("surprise", "C3"), ("error", "C0")):
    series = surprise.numpy() if name == "surprise" else trace["error"]
    ax = axes[1]
    ax.plot(lags, np.mean([series[i + lags] for i in events], axis=0), "o-", ms=3, color=color, label=name)
ax.axvline(0, color="k", lw=0.8)
ax.set_xlabel("tokens after a rule-breaking pair")
ax.set_title(f"average around {len(events)} rule-breaking pairs")
ax.legend(fontsize=7)
plt.show()

# %% [markdown]
# The surprise spikes exactly on the rule-breaking pairs (in this seeded run 1.67 on average on
# them against a median of 0.35 elsewhere) and at the switch, where every pair breaks the old
# rule. The error on the *following* pairs rises a little (here from 0.31 on average over the
# five pairs before an outlier to 0.37 over the ten after): writing the outlier damaged what the
# memory knew about the rule, and the next rule-following pairs repair it.
#
# ## 4. Momentum and forgetting
# With momentum $\eta$, the surprise of token $t$ keeps acting: $S_t$ carries
# $-\eta^n \theta\,\nabla\ell_{t-n}$ from $n$ tokens back, so a surprising token moves the weights
# for about $1/(1-\eta)$ tokens ("past surprise"). The forgetting gate $\alpha$ multiplies the old
# weights by $1-\alpha$ each token: after $n$ tokens an unrefreshed memory has shrunk by
# $(1-\alpha)^n$.
#
# **Exercise 04.momentum_decay.** Write the recurrence on its own. Given the initial weights `W0`
# and momentum `S0` (`[m, n]`), the gradients `grads: [T, m, n]` and the gates `theta, eta, alpha:
# [T]`, return `(W, S)`, each `[T, m, n]`, the weights and momentum after every token.
#
# *Difficulty: easy · about 10 min.* **Predict first:** one gradient at $t = 0$ and none after,
# $\eta = 0.9$, $\alpha = 0$: how far does the weight end up moving, compared with $\eta = 0$?

# %% tags=["exercise"]
def momentum_decay(W0, S0, grads, theta, eta, alpha):
    """W0, S0: [m, n], grads: [T, m, n], theta, eta, alpha: [T] -> (W [T, m, n], S [T, m, n]) after every token."""
    # YOUR CODE HERE
    raise NotImplementedError


# %%
result = grade("04.momentum_decay", momentum_decay)
momentum_decay_fn = result.function
# one surprising gradient at t = 0, nothing after: how long does it keep moving the weight?
g_spike = torch.zeros(30, 1, 1)
g_spike[0] = -1.0
fig, ax = plt.subplots(figsize=(6.5, 2.8), layout="constrained")
for eta_, alpha_ in ((0.0, 0.0), (0.6, 0.0), (0.9, 0.0), (0.9, 0.1)):
    W, S = momentum_decay_fn(torch.zeros(1, 1), torch.zeros(1, 1), g_spike, torch.full((30,), 0.1),
                             torch.full((30,), eta_), torch.full((30,), alpha_))
    ax.plot(W[:, 0, 0], "o-", ms=3, label=f"eta={eta_}, alpha={alpha_}")
ax.set_xlabel("tokens after one surprising token")
ax.set_ylabel("weight W_t")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# Without momentum the weight jumps once and stays (no forgetting). With $\eta = 0.9$ the one
# surprise keeps pushing for about ten tokens and moves the weight ten times further; with
# $\alpha = 0.1$ the weight then leaks back towards zero.
#
# **Widget.** The same MLP memory on the stream of section 3. Top: surprise and the size of the
# momentum; bottom: the error of the memory on held-out keys of the rule currently in force.
# Things to try: raise $\eta$ and watch the momentum carry the surprise of outliers further (and
# larger $\theta\eta$ diverge); raise $\alpha$ and watch the memory forget the rule between writes;
# raise the chunk size and watch updates get staler (and $\theta$ that was fine at chunk 1 diverge).

# %%
controls = {
    "theta": widgets.FloatSlider(value=0.3, min=0.0, max=1.0, step=0.05, description="theta",
                                 continuous_update=False),
    "eta": widgets.FloatSlider(value=0.6, min=0.0, max=0.95, step=0.05, description="eta",
                               continuous_update=False),
    "alpha": widgets.FloatSlider(value=0.0, min=0.0, max=0.1, step=0.005, description="alpha",
                                 readout_format=".3f", continuous_update=False),
    "chunk_size": widgets.Dropdown(options=[1, 2, 4, 8, 16, 32], value=1, description="chunk"),
}
interactive_figure(course.draw_gates, controls, figsize=(9, 5));

# %% [markdown]
# ## 5. The chunked dual form
# *Optional deep dive (making it fast), sections 5-6: the conceptual path can skip to the recap.*
#
# The token loop is sequential: token $t$ needs $W_{t-1}$. Titans (like TTT before it) breaks the
# sequence into chunks of $C$ tokens and takes **every gradient of a chunk at the chunk-start
# weights** $W_0$. Then all the chunk's gradients are known at once, and they are rank-one: for
# the linear memory $\nabla\ell_l = e_l k_l^\top$ with $e_l = W_0 k_l - v_l$.
#
# Unroll the two recurrences inside the chunk (tokens $i = 1..C$, $a = 1-\alpha$):
#
# $$S_i = P_{i0} S_0 - \sum_{l\le i} P_{il}\,\theta_l\,e_l k_l^\top,\qquad P_{il} = \prod_{l<m\le i}\eta_m$$
# $$W_i = \Gamma_{i0} W_0 + \mu_i S_0 - \sum_{l \le i} \Lambda_{il}\,\theta_l\, e_l k_l^\top,\qquad
#   \Gamma_{il} = \prod_{l<m\le i} a_m,\quad \Lambda = \Gamma P,\quad \mu_i = \sum_{j\le i} \Gamma_{ij} P_{j0}.$$
#
# ($\Gamma$ holds the cumulative products of the keep factors, as in the gated delta rule of
# notebook 03; $P$ those of the momentum gates.) A weight matrix is only ever applied to a vector,
# so with $Q$, $K$ and $E$ stacking the chunk's queries $q_i$, keys $k_l$ and errors $e_l$ as rows,
# the outputs of the whole chunk are
#
# $$O = \mathrm{diag}(\Gamma_{\cdot 0})\, Q W_0^\top + \mathrm{diag}(\mu)\, Q S_0^\top
#       - \big((\Lambda \odot \theta^\top) \odot (Q K^\top)\big)\, E,$$
#
# a $C \times C$ "attention" whose scores are query-key products and whose weights are cumulative
# products of the gates. No per-token weight matrix is ever built; only the loop across chunks is
# sequential. The final state of the chunk is row $C$ of the same sums. For the MLP memory the
# same identity is used layer by layer: the gradients of both layers at $W_0$ are matmuls over
# the chunk ($\nabla_{W_\text{out}} = r_l a_l^\top$, $\nabla_{W_\text{in}} = \delta_l k_l^\top$),
# the formula gives the hidden pre-activations $W_{\text{in},i}\,q_i$ of every query, $\sigma$ is
# applied, and the formula runs again for the second layer with those hidden vectors as inputs.
# `nlteach/deep_memory.py` derives it in its comments; `tests/test_deep_memory.py` checks outputs,
# final weights, final momentum and all gradients against the token loop.

# %%
gen64 = torch.Generator().manual_seed(3)
B, H, T, d = 2, 2, 50, 8
args = dict(
    q=F.normalize(torch.randn(B, H, T, d, generator=gen64, dtype=torch.float64), dim=-1),
    k=F.normalize(torch.randn(B, H, T, d, generator=gen64, dtype=torch.float64), dim=-1),
    v=torch.randn(B, H, T, d, generator=gen64, dtype=torch.float64),
    lr=0.4 * torch.rand(B, H, T, generator=gen64, dtype=torch.float64),
    momentum=torch.rand(B, H, T, generator=gen64, dtype=torch.float64),
    decay=0.1 * torch.rand(B, H, T, generator=gen64, dtype=torch.float64),
    params=dm.init_params(B, H, d, hidden=32, scale=0.5, generator=gen64, dtype=torch.float64),
)
for C in (1, 7, 16, 64):  # T = 50 is not a multiple of 7 or 16
    o_n, (W_n, S_n) = titans_naive(**args, chunk_size=C)
    o_c, (W_c, S_c) = titans_chunked(**args, chunk_size=C)
    err = max((a - b).abs().max().item() for a, b in zip((o_c, *W_c, *S_c), (o_n, *W_n, *S_n)))
    print(f"chunk {C:3d}: max |chunked - naive| over outputs and final states = {err:.1e}")

# %% [markdown]
# **Exercise 04.dual_chunk.** Compute the outputs of one chunk of the **linear** memory in the
# dual form, without a loop over tokens: `q, k: [C, d_k]`, `v: [C, d_v]`, `W0, S0: [d_v, d_k]`
# (weights and momentum at the chunk start), gates `theta, eta, alpha: [C]`; return `o: [C, d_v]`.
# Start with the case without momentum and forgetting ($\eta = \alpha = 0$, $S_0 = 0$): then
# $W_i = W_0 - \sum_{l\le i}\theta_l e_l k_l^\top$. The grader checks that case first.
#
# *Difficulty: hard · about 40 min.* **Predict first:** in the dual form, does $o_i$ depend on
# $v_j$ for $j > i$? With $\eta = \alpha = 0$, which matrix replaces the causal mask of linear
# attention?

# %% tags=["exercise"]
def dual_chunk(q, k, v, W0, S0, theta, eta, alpha):
    """One chunk of the linear Titans memory, gradients at W0; returns o [C, d_v]."""
    # YOUR CODE HERE
    raise NotImplementedError


# %%
result = grade("04.dual_chunk", dual_chunk)
dual_chunk_fn = result.function
one = {n: x[0, 0] for n, x in args.items() if n != "params"}
W0 = torch.randn(d, d, generator=gen64, dtype=torch.float64) * 0.3
o_dual = dual_chunk_fn(one["q"][:16], one["k"][:16], one["v"][:16], W0, torch.zeros_like(W0),
                       one["lr"][:16], one["momentum"][:16], one["decay"][:16])
print("dual form of one chunk:", tuple(o_dual.shape))

# %% [markdown]
# ## 6. The chunk size trade-off
# A chunk of $C$ tokens costs $O(C^2(d + h) + C\,d\,h)$ in matmuls and saves $C-1$ sequential
# steps, so bigger chunks run faster, until the $C^2$ terms dominate. But every gradient in the
# chunk is taken at weights up to $C-1$ tokens old, so the memory learns from stale information.
# Below: time per token of a forward+backward pass (measured now, on this machine, so only the
# shape of the curve matters) and the error of the memory at predicting the *next* pair of a rule
# stream (the query at token $t$ is the key of token $t+1$), for several chunk sizes.
#
# **Slow cell (with `TRAIN_LIVE = True`).** The full sweep takes about 2 minutes at the `laptop`
# preset on one quiet CPU core and was most of this notebook's twelve minutes on a loaded 2-core
# CPU; seconds at `tiny`. Without the flag the cell runs a short sweep (sequences a quarter as long,
# each chunk size timed once: the same shape, noisier). A bar shows its progress.

# %%
full_sweep = live_cell(TRAIN_LIVE, minutes=2, action="run the full sweep",
                       instead="a short sweep (sequences of 512 tokens instead of 2048, timed once)")
rows = course.chunk_tradeoff(
    config.by_preset(tiny=[1, 4, 16, 64], laptop=[1, 2, 4, 8, 16, 32, 64, 128], full=[1, 2, 4, 8, 16, 32, 64, 128, 256]),
    B=config.by_preset(tiny=2, laptop=4, full=8),
    T=config.by_preset(tiny=128, laptop=2048 if full_sweep else 512, full=4096 if full_sweep else 512),
    d=config.by_preset(tiny=8, laptop=16, full=32),
    hidden=config.by_preset(tiny=32, laptop=64, full=128),
    thetas=(0.05, 0.3), eta=0.0, seed=0, progress=True,
    repeat=config.by_preset(tiny=1, laptop=3 if full_sweep else 1, full=3 if full_sweep else 1),
)
fig = plt.figure(figsize=(9, 3.2), layout="constrained")
course.draw_chunk_tradeoff(fig, rows)
plt.show()
print(course.format_chunk_tradeoff(rows))

# %% [markdown]
# Read the two panels together: the time per token falls steeply from chunk 1 (one sequential
# step per token) and flattens once the chunk is large enough to keep the matmuls busy, while the
# prediction error creeps up as the gradients get staler. Chunks of 16 to 64 are the usual
# compromise (Titans uses such sizes); the benchmark `python -m nlteach.bench titans` measures the
# chunked code against the token loop at a realistic size.

# %% [markdown]
# ## Recap
#
# **What you can now do.**
#
# - Run Titans' memory, a network trained at test time by gradient descent with momentum and
#   forgetting, and read each line of its loop as one of
#   $S_t = \eta_t S_{t-1} - \theta_t\nabla\ell_t$, $W_t = (1-\alpha_t)W_{t-1} + S_t$ (Titans' letters).
# - Explain why a deep (MLP) memory stores more pairs than a matrix of the same width, and use
#   surprise, the gradient norm, to flag the pairs that contradict what the memory knows.
# - Predict what momentum (surprise that persists) and forgetting (memory traded for adaptivity)
#   do to a stream.
# - *(Deep dive)* Turn the sequential loop into matmuls by freezing the gradient point per chunk
#   (the dual form), and pick a chunk size against the staleness it costs.
#
# **What the next notebook adds.** Notebook 05 steps back and names what notebooks 01-04 did:
# update frequencies, levels and the level clock, a model as nested optimization problems.
# (Notebook 08 will let this memory generate its own keys, values and learning rates.)
