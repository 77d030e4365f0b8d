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
# # 02 · Attention is associative memory
#
# Notebook 01 defined a memory as the solution of an optimization problem over key-value pairs
# and met two write rules. This notebook shows that the layers of a Transformer are such memories
# too, and what separates them is *how often they are updated*:
#
# 1. **softmax attention** is the exact (non-parametric) solution of a weighted regression
#    problem over all the pairs seen so far;
# 2. **linear attention** is one gradient step per token on the dot-product objective;
# 3. **Linear Attention++**, linear attention with a learned initial memory, is an MLP layer whose
#    weights gained a second, faster level of updates;
# 4. the **frequency view**: attention is updated at every token, MLP weights never (after
#    training). Nested Learning's architectures fill the levels in between.
#
# The notebook ends by making linear attention fast: the **chunked** form, derived from the
# recurrence and checked against the token loop. You will write its causal intra-chunk term.

# %% [markdown]
# ## Objectives
#
# After this notebook you will be able to:
#
# - show that softmax attention is the non-parametric solution of a regression over the context;
# - derive linear attention as one gradient step per token, and Linear Attention++ as an MLP weight with a faster level;
# - place attention and MLP weights on the frequency axis.
#
# **Paper:** Def. 1 applied to attention; Linear Attention++. **Prerequisites:** notebook 01. **Time at the laptop preset:** < 1 min.
#
# **Optional deep dive** (skip it for the conceptual path): section 5 (chunked linear attention, speed).

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
import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from nlteach import config, memory
from nlteach.bench import measure
from nlteach.course import nb02_attention as course
from nlteach.course.widgets import interactive_figure
from nlteach.exercises import grade

print(config.describe())

# %% [markdown]
# ## 1. Softmax attention is non-parametric regression
#
# Fix one query $q$ and the pairs $(k_i, v_i)$, $i = 1..t$, seen so far. Ask for the single output
# $m$ that is closest to the values, weighting pair $i$ by a similarity $s(k_i, q) > 0$:
#
# $$\mathcal{M}^*(q) = \arg\min_{m} \sum_{i \le t} s(k_i, q)\, \lVert v_i - m \rVert^2
# = \frac{\sum_i s(k_i, q)\, v_i}{\sum_j s(k_j, q)} .$$
#
# (Set the gradient $-2\sum_i s(k_i,q)(v_i - m)$ to zero.) This is the Nadaraya-Watson kernel
# regression estimator. It is *non-parametric*: there is no fixed-size memory, the "memory" is the
# whole list of pairs (the KV cache), and it is re-solved exactly for every query. With
# $s(k, q) = \exp(q^\top k / \sqrt{d})$ it is exactly causal softmax attention. Check it against
# PyTorch's own attention:

# %%
gen = torch.Generator().manual_seed(0)
T, d = 10, 4
q, k, v = (torch.randn(1, 1, T, d, generator=gen, dtype=torch.float64) for _ in range(3))

s = torch.exp(q @ k.transpose(-1, -2) / d**0.5).tril()  # s(k_i, q_t) for i <= t, else 0
nadaraya_watson = (s @ v) / s.sum(-1, keepdim=True)
sdpa = F.scaled_dot_product_attention(q, k, v, is_causal=True)
print("weighted-regression solution == causal softmax attention:", torch.allclose(nadaraya_watson, sdpa))

# %% [markdown]
# A one-dimensional picture: stored pairs are points $(x_i, y_i)$, the query is a position $x$,
# and the similarity is a Gaussian bump $\exp(-(x - x_i)^2 / 2h^2)$ (a softmax over the scores
# $-(x-x_i)^2/2h^2$). Move the bandwidth $h$: small $h$ attends to the single nearest key and
# reproduces the noise; large $h$ averages everything. Softmax attention's temperature plays the
# same role.

# %%
bandwidth_slider = widgets.FloatSlider(value=0.05, min=0.005, max=0.3, step=0.005, readout_format=".3f",
                                       description="bandwidth", continuous_update=False)
interactive_figure(course.draw_kernel_regression, {"bandwidth": bandwidth_slider}, figsize=(9, 3.2));

# %% [markdown]
# ## 2. Linear attention is one gradient step on a dot-product objective
#
# Replace the kernel by a plain dot product, $s(k, q) = q^\top k$ (or $\phi(q)^\top\phi(k)$ with
# a feature map $\phi$), and drop the normalizer. Then
#
# $$o_t = \sum_{i \le t} (q_t^\top k_i)\, v_i = \Big(\sum_{i \le t} k_i v_i^\top\Big)^{\!\top} q_t = S_t^\top q_t,
# \qquad S_t = S_{t-1} + k_t v_t^\top .$$
#
# The list of pairs has been *compressed* into a fixed-size matrix $S_t$, and the update of $S_t$ is
# the Hebbian write of notebook 01: one gradient step of size 1 on $-\langle S^\top k_t, v_t\rangle$.
# Linear attention is therefore a *parametric* memory trained online, one step per token. The
# library's token loop agrees with the attention-style formula (causal mask, no softmax):

# %%
o_loop, S_T = memory.linear_attention_naive(q, k, v)
o_attention_form = (q @ k.transpose(-1, -2)).tril() @ v
print("token loop == tril(Q K^T) V :", torch.allclose(o_loop, o_attention_form))
print("final memory == K^T V       :", torch.allclose(S_T, k.transpose(-1, -2) @ v))

# %% [markdown]
# The library's token loop is those two equations, one line each (the rest is input checking and
# dtype handling). `show_source` puts a library function on screen wherever the course says that
# its code reads like the equations:

# %%
from nlteach.course.source import show_source

show_source(memory.linear_attention_naive)

# %% [markdown]
# ## 3. Linear Attention++: an MLP whose weights gained a faster level
#
# Start the memory from a matrix $W$ instead of zero: $S_0 = W$. Then
#
# $$o_t = \Big(W + \sum_{i \le t} k_i v_i^\top\Big)^{\!\top} q_t = \underbrace{W^\top q_t}_{\text{a linear layer}}
# + \underbrace{\textstyle\sum_{i \le t} (q_t^\top k_i)\, v_i}_{\text{linear attention}} .$$
#
# If $W$ is learned by backpropagation during training and frozen afterwards, the first term is
# an ordinary (MLP-style) weight matrix: it is updated by the *outer* training loop only. The
# second term is updated at every token by the *inner* loop. So the same matrix lives on two
# levels: slow (meta-learned initial state, knowledge shared by all sequences) and fast (in-context
# writes). The paper calls linear attention with a meta-learned initial state **Linear
# Attention++** (`docs/paper-notes.md#linear-attention-pp`). The library's `initial_state` argument
# is exactly $S_0$:

# %%
W = torch.randn(1, 1, d, d, generator=gen, dtype=torch.float64)
o_pp, _ = memory.linear_attention_chunked(q, k, v, initial_state=W, chunk_size=4)
print("LA++ output == W^T q + linear attention:", torch.allclose(o_pp, q @ W + o_loop))

# %% [markdown]
# **Exercise 02.la_pp.** Give every write a strength, as in the experiment below:
# $S_0 = W$, $S_t = S_{t-1} + \eta_t\, k_t v_t^\top$, $o_t = S_t^\top q_t$. Compute the outputs of
# the whole sequence and the final memory **without a loop over tokens**: `q, k: [T, d_k]`,
# `v: [T, d_v]`, `eta: [T]`, `W: [d_k, d_v]`; return `(o [T, d_v], S_T [d_k, d_v])`. Unroll the
# recurrence on paper first; the grader compares with the token loop `memory.linear_attention_naive`.
#
# *Difficulty: medium · about 15 min.* **Predict first:** in the attention-style form, does
# $\eta$ weight the rows (the reading token $t$) or the columns (the writing token $i$) of the
# causal score matrix? What does token 0 read when $\eta_0 = 0$?

# %% tags=["exercise"]
def linear_attention_pp(q, k, v, eta, W):
    """q, k: [T, d_k], v: [T, d_v], eta: [T], W: [d_k, d_v] -> (o [T, d_v], S_T [d_k, d_v]), no token loop."""
    # YOUR CODE HERE
    raise NotImplementedError


# %%
result = grade("02.la_pp", linear_attention_pp)
eta_demo = torch.linspace(0.2, 1.0, q.shape[2], dtype=torch.float64)
o_demo, _ = result.function(q[0, 0], k[0, 0], v[0, 0], eta_demo, W[0, 0])
print(f"{result.whose} LA++ with write strengths: outputs {tuple(o_demo.shape)}")

# %% [markdown]
# **Does the extra level help?** A small experiment. Each sequence is a stream of pairs
# $v_t = (A + B)^\top k_t$ with unit-norm random keys: $A$ is the same for every sequence (slow
# knowledge that training can absorb), $B$ is drawn fresh per sequence (knowledge only the
# context holds). At every step the model must predict the *next* value from the next key,
# $\hat v_{t+1} = S_t^\top k_{t+1}$, before that pair is written. Three models, trained with Adam
# on the normalized squared error:
#
# - **MLP (frozen weights)**: $S_t = S_0$, learned; no in-context writes (frequency 0);
# - **linear attention**: $S_0 = 0$, writes $S_t = S_{t-1} + \eta\, k_t v_t^\top$ with a learned
#   write strength $\eta$ (frequency 1 per token);
# - **linear attention++**: learned $S_0$ *and* the writes.

# %%
fw_d = config.by_preset(tiny=8, laptop=8, full=16)
fw_T = config.by_preset(tiny=24, laptop=32, full=64)
fw_steps = config.by_preset(tiny=15, laptop=300, full=1000)
fw_seeds = list(range(config.by_preset(tiny=2, laptop=3, full=5)))
curves = {variant: np.array([course.train_fast_weights(variant, d=fw_d, T=fw_T, steps=fw_steps,
                                                        seed=s, batch=32) for s in fw_seeds])
          for variant in course.LA_VARIANTS}

fig, ax = plt.subplots(figsize=(7, 3.2), layout="constrained")
for variant, c in curves.items():
    ax.plot(c.mean(0), label=variant)
    ax.fill_between(np.arange(c.shape[1]), c.min(0), c.max(0), alpha=0.2)
ax.set_xlabel("training step")
ax.set_ylabel("next-value error (normalized)")
ax.set_title(f"d={fw_d}, T={fw_T}, {len(fw_seeds)} seeds (band: min-max)")
ax.legend(fontsize=8)
plt.show()
tail = max(1, fw_steps // 10)
for variant, c in curves.items():
    final = c[:, -tail:].mean(1)
    print(f"{variant:>22}: final error {final.mean():.3f} +- {final.std():.3f} (mean of last {tail} steps, "
          f"{len(fw_seeds)} seeds)")

# %% [markdown]
# In our runs at the laptop preset ($d = 8$, $T = 32$, 300 steps, seeds 0-2) the final errors were
# 0.50 +- 0.01 for the frozen MLP, 0.43 +- 0.00 for linear attention and 0.30 +- 0.01 for linear
# attention++: the learned $S_0$ absorbs the shared map $A$, and the in-context writes add part of
# the sequence-specific $B$.
# The frozen MLP cannot know $B$ at all; plain linear attention must relearn $A$ from scratch in
# every sequence with a noisy Hebbian sum. (At the tiny preset the runs are too short for the
# curves to settle, so read the numbers above with that in mind.)
#
# ## 4. The frequency view
#
# Count how often each component's parameters change, in updates per token (`docs/paper-notes.md#unit-of-time`
# defines the unit of time as one update on one data point):
#
# | component | memory | written | update frequency |
# | --- | --- | --- | --- |
# | MLP / projection weights | $W$ | by the outer training loop, then frozen | 0 at test time |
# | softmax attention | the KV cache, re-solved for every query | every token | "infinite": the exact minimizer, recomputed per query |
# | linear attention | $S_t$ | every token, one gradient step | 1 per token |
# | Linear Attention++ | $S_0$ (slow) + $S_t$ (fast) | both | 0 and 1 |
#
# A Transformer has only the two extremes. The rest of the course fills in the levels between
# them: memories updated every token, every $C$ tokens, every $C^2$ tokens (the Continuum Memory
# System, notebook 07), each one a small optimization problem of its own.
#
# ## 5. Chunked linear attention
#
# *Optional deep dive (making it fast): the conceptual path goes on with notebook 03, section 1.*
#
# The token loop is the clearest way to read linear attention and the slowest way to compute it:
# $T$ small steps, each with a $d_k \times d_v$ outer product. The recurrence has more structure.
# Cut time into chunks of $C$ tokens, and let $S$ be the memory before a chunk with rows
# $Q, K, V$ ($C \times d$). Inside the chunk,
# $S_i = S + \sum_{j \le i} k_j v_j^\top$, so
#
# $$o_i = S_i^\top q_i = \underbrace{S^\top q_i}_{\text{the past}} + \underbrace{\sum_{j \le i} (q_i^\top k_j)\, v_j}_{\text{the chunk itself}}
# \quad\Longrightarrow\quad
# O = Q S + (Q K^\top \odot M)\, V, \qquad S \leftarrow S + K^\top V,$$
#
# with $M$ the lower-triangular matrix of ones (diagonal included: the read is inclusive). Every
# line is a matrix product over $C$ tokens at once: $O(T C d)$ work for the intra-chunk term,
# $O(T d^2)$ for the state, and only $T / C$ sequential steps. (And since $S$ before chunk $n$ is
# just $S_0 + \sum_{m<n} K_m^\top V_m$, a cumulative sum, the library computes all chunks without
# any loop.)
#
# **Exercise 02.intra_chunk.** Given one chunk's `Qc` `[C, d_k]`, `Kc` `[C, d_k]`, `Vc` `[C, d_v]`,
# return the intra-chunk causal term $(Q K^\top \odot M) V$, shape `[C, d_v]`.
#
# *Difficulty: easy · about 10 min.* **Predict first:** for a chunk of one token, what is the
# term? Which entries of the `[C, C]` score matrix must be zero?

# %% tags=["exercise"]
def intra_chunk(Qc, Kc, Vc):
    """Qc, Kc: [C, d_k], Vc: [C, d_v] -> [C, d_v]: row i is sum over j <= i of (q_i . k_j) v_j."""
    # YOUR CODE HERE
    raise NotImplementedError


# %%
result = grade("02.intra_chunk", intra_chunk)
intra = result.function  # yours if it passed, the library's otherwise

# %% [markdown]
# Plug your term into a readable chunked linear attention (a loop over chunks, in
# `course.chunked_linear_attention_loop`) and compare it with the token loop, with a
# sequence length that is not a multiple of the chunk size:

# %%
T2, C2 = 23, 8
q2, k2, v2 = (torch.randn(T2, 3, generator=gen, dtype=torch.float64) for _ in range(3))
o_chunks, S_chunks = course.chunked_linear_attention_loop(q2, k2, v2, C2, intra=intra)
o_tokens, S_tokens = memory.linear_attention_naive(q2[None, None], k2[None, None], v2[None, None])
print(f"chunked ({result.whose} intra term) == token loop:", torch.allclose(o_chunks, o_tokens[0, 0]),
      "| final memories equal:", torch.allclose(S_chunks, S_tokens[0, 0]))

# %% [markdown]
# The library's `linear_attention_chunked` does the same for `[B, H, T, D]` tensors, any chunk
# size, with an initial state; here is the largest relative error against the token loop over a
# few chunk sizes, in float32:


# %%
def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


B, H, T3, dk, dv = 2, 2, 200, 16, 8
q3, k3 = (F.normalize(torch.randn(B, H, T3, dk, generator=gen), dim=-1) for _ in range(2))
v3 = torch.randn(B, H, T3, dv, generator=gen)
S0 = torch.randn(B, H, dk, dv, generator=gen)
o_ref, S_ref = memory.linear_attention_naive(q3, k3, v3, initial_state=S0)
for C in (1, 7, 16, 64, 128):
    o_c, S_c = memory.linear_attention_chunked(q3, k3, v3, initial_state=S0, chunk_size=C)
    print(f"chunk_size={C:>3}: output rel. error {rel_err(o_c, o_ref):.1e}, final state {rel_err(S_c, S_ref):.1e}")

# %% [markdown]
# And the point of it, measured on your machine (the ratio of two timings taken side by side;
# absolute times depend on the machine and its load; `python -m nlteach.bench memory` measures
# more carefully):

# %%
T4 = config.by_preset(tiny=256, laptop=4096, full=16384)
q4, k4 = (F.normalize(torch.randn(1, 4, T4, 64, generator=gen), dim=-1) for _ in range(2))
v4 = torch.randn(1, 4, T4, 64, generator=gen)
with torch.no_grad():
    t_naive = measure(lambda: memory.linear_attention_naive(q4, k4, v4), warmup=0, repeat=2)
    t_chunk = measure(lambda: memory.linear_attention_chunked(q4, k4, v4), repeat=3)
print(f"T={T4}, B*H=4, d=64: chunked is {t_naive / t_chunk:.0f}x faster than the token loop")

# %% [markdown]
# **Choices made here.** The read is inclusive ($o_t$ sees token $t$'s own write), as in most
# linear-attention code; an exclusive read would use the strictly lower mask. Linear attention is
# shown without normalizer and without a feature map (identity $\phi$); both are easy to add and
# change nothing in the chunking. Next, notebook 03 does the same for the delta rule, where the
# chunk is no longer a plain sum and needs a triangular solve.

# %% [markdown]
# ## Recap
#
# **What you can now do.**
#
# - Read softmax attention as the exact, non-parametric solution of a weighted regression over the
#   context, and linear attention as one gradient step per token on the dot-product objective.
# - Explain Linear Attention++: a learned initial memory $S_0$ makes linear attention an MLP weight
#   with a second, faster level.
# - Place attention (written at every token) and MLP weights (never written after training) on the
#   frequency axis, the two levels of a Transformer.
# - *(Deep dive)* Compute linear attention chunk by chunk with matrix products, equal to the token
#   loop.
#
# **What the next notebook adds.** Notebook 03 writes the delta rule and its gated version as
# recurrences and (optional deep dive) makes them fast: each write now *multiplies* the memory, so
# the chunk needs the WY/UT representation and one triangular solve.
