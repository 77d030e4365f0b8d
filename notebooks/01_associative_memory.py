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
# # 01 · Associative memory
#
# Nested Learning starts from one definition. An **associative memory** is an operator
# $\mathcal{M}$ that maps keys to values, and *memorizing* is solving an optimization problem
# (Def. 1, arXiv v1):
#
# $$\mathcal{M}^* = \arg\min_{\mathcal{M}} \; \mathcal{L}\big(\mathcal{M}(\mathcal{K});\, \mathcal{V}\big).$$
#
# The objective $\mathcal{L}$ says what a good memory is; the algorithm that (approximately)
# minimizes it says how the memory is *written*. In this notebook the memory is a matrix
# $S \in \mathbb{R}^{d_k \times d_v}$, read as $\mathcal{M}(k) = S^\top k$, and the algorithm is
# the simplest one there is: **one gradient step per incoming pair** $(k_t, v_t)$. Two choices of
# objective give two famous write rules:
#
# - the dot-product objective gives the **Hebbian** write, the memory of linear attention;
# - the L2 regression objective gives the **delta rule**.
#
# You will derive both, implement both (graded), watch them fill a memory pair by pair, and
# measure where each one breaks: capacity and interference.

# %% [markdown]
# ## Objectives
#
# After this notebook you will be able to:
#
# - define an associative memory as the solution of an optimization problem (Def. 1);
# - derive the Hebbian and the delta-rule write as one gradient step on a dot-product and on an L2 objective, and code both;
# - measure capacity and interference, and explain why the delta rule can overwrite.
#
# **Paper:** Def. 1; the dot-product and L2 objectives. **Prerequisites:** notebook 00. **Time at the laptop preset:** < 1 min.

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
import torch

from nlteach import config, memory
from nlteach.course import nb01_associative_memory as course
from nlteach.course.widgets import interactive_figure
from nlteach.exercises import grade

print(config.describe())

# %% [markdown]
# ## 1. Two objectives, one gradient step each
#
# Take the current memory $S$ and one new pair $(k, v)$ with $k \in \mathbb{R}^{d_k}$,
# $v \in \mathbb{R}^{d_v}$. The memory's answer for $k$ is $S^\top k$.
#
# **Dot-product (Hebbian) objective.** Reward an answer that points along $v$:
# $\mathcal{L}_{\text{dot}}(S) = -\langle S^\top k, v\rangle = -k^\top S v$. Its gradient is
# $\nabla_S \mathcal{L}_{\text{dot}} = -k v^\top$, so one gradient step of size 1 gives
#
# $$S_{\text{new}} = S + k v^\top .$$
#
# Nothing in the step looks at what $S$ already holds: it only ever *adds*.
#
# **L2 regression objective.** Ask the answer to *be* $v$:
# $\mathcal{L}_2(S) = \tfrac12 \lVert S^\top k - v\rVert^2$. Its gradient is
# $\nabla_S \mathcal{L}_2 = k\,(S^\top k - v)^\top$, so one step of size $\beta$ gives
#
# $$S_{\text{new}} = S - \beta\, k\,(S^\top k - v)^\top = (I - \beta k k^\top)\, S + \beta\, k v^\top .$$
#
# This is the **delta rule**: it first reads what the memory currently says for $k$, then writes
# only the *error*. With a unit-norm key and $\beta = 1$ the new memory returns $v$ exactly for $k$
# (check: $S_{\text{new}}^\top k = S^\top k - (S^\top k - v)\, k^\top k = v$).
#
# Both gradients are easy to get wrong by a transpose, so let autograd confirm them on random
# numbers (with $d_k \ne d_v$, which catches transposes):

# %%
gen = torch.Generator().manual_seed(0)
d_k, d_v = 5, 3
S = torch.randn(d_k, d_v, generator=gen, dtype=torch.float64, requires_grad=True)
k = torch.nn.functional.normalize(torch.randn(d_k, generator=gen, dtype=torch.float64), dim=0)
v = torch.randn(d_v, generator=gen, dtype=torch.float64)

(g_dot,) = torch.autograd.grad(course.hebbian_loss(S, k, v), S)
(g_l2,) = torch.autograd.grad(course.l2_loss(S, k, v), S)
print("dot-product gradient == -k v^T       :", torch.allclose(g_dot, -torch.outer(k, v)))
print("L2 gradient          == k (S^T k - v)^T:", torch.allclose(g_l2, torch.outer(k, S.detach().T @ k - v)))

# %% [markdown]
# ## 2. Exercises: write one pair
#
# **Exercise 01.hebbian_write.** Given a memory `S` of shape `[d_k, d_v]`, a key `k` `[d_k]` and a
# value `v` `[d_v]`, return the memory after one gradient step of size 1 on the dot-product
# objective $-\langle S^\top k, v\rangle$. Return a new tensor (do not modify `S` in place).
#
# *Difficulty: easy · about 5 min.* **Predict first:** does the gradient depend on `S`? After one
# write into an empty memory, what does it return for the key `k` (unit norm), and for a key
# orthogonal to `k`?

# %% tags=["exercise"]
def hebbian_write(S, k, v):
    """S: [d_k, d_v], k: [d_k], v: [d_v] -> the memory after one Hebbian write, [d_k, d_v]."""
    # YOUR CODE HERE
    raise NotImplementedError


# %%
hebbian = grade("01.hebbian_write", hebbian_write).function

# %% [markdown]
# **Exercise 01.delta_write.** Same inputs plus the step size `beta`; return the memory after one
# gradient step of size `beta` on the L2 objective $\tfrac12\lVert S^\top k - v\rVert^2$.
#
# *Difficulty: easy · about 10 min.* **Predict first:** with a unit-norm key and `beta = 1`, what
# does the new memory return for `k`? And for a key orthogonal to `k`: does the write change it?

# %% tags=["exercise"]
def delta_write(S, k, v, beta):
    """S: [d_k, d_v], k: [d_k], v: [d_v], beta: float -> the memory after one delta write, [d_k, d_v]."""
    # YOUR CODE HERE
    raise NotImplementedError


# %%
delta = grade("01.delta_write", delta_write).function

# %% [markdown]
# ## 3. From one write to a sequence
#
# A sequence model sees pairs $(k_t, v_t)$ one token at a time and writes each as it comes:
# $S_t = S_{t-1} + k_t v_t^\top$ is **linear attention**, and
# $S_t = (I - \beta_t k_t k_t^\top) S_{t-1} + \beta_t k_t v_t^\top$ is the **delta rule** (DeltaNet).
# The library's reference versions, `memory.linear_attention_naive` and `memory.delta_rule_naive`,
# are exactly your writes in a loop, over tensors shaped `[B, H, T, D]` (batch, heads, time,
# feature). They also *read* after each write, $o_t = S_t^\top q_t$, including token $t$'s own
# write. Check that your functions, applied in a loop, land on the same final memory:

# %%
T = 12
keys, values = course.make_pairs(T, d_k, d_v, "random", seed=1)
beta = 0.7
S_h = torch.zeros(d_k, d_v, dtype=torch.float64)
S_d = torch.zeros(d_k, d_v, dtype=torch.float64)
for k_t, v_t in zip(keys, values):
    S_h = hebbian(S_h, k_t, v_t)
    S_d = delta(S_d, k_t, v_t, beta)

as_bhtd = lambda x: x[None, None]  # [T, D] -> [1, 1, T, D]
_, S_lin = memory.linear_attention_naive(as_bhtd(keys), as_bhtd(keys), as_bhtd(values))
_, S_del = memory.delta_rule_naive(as_bhtd(keys), as_bhtd(keys), as_bhtd(values),
                                   torch.full((1, 1, T), beta, dtype=torch.float64))
print("Hebbian loop == linear_attention_naive:", torch.allclose(S_h, S_lin[0, 0]))
print("delta loop   == delta_rule_naive      :", torch.allclose(S_d, S_del[0, 0]))

# %% [markdown]
# **Exercise 01.gated_delta.** A memory that never forgets fills up. The **gated delta rule**
# (notebook 03) first lets the memory decay, $S \to \alpha_t S$ with $\alpha_t \in (0, 1]$, then
# writes the pair by one gradient step of size $\beta_t$ on $\tfrac12\lVert S^\top k_t - v_t\rVert^2$
# taken at the decayed memory; then token $t$ reads $o_t = S_t^\top q_t$. Write it over a whole
# sequence: `q, k: [T, d_k]`, `v: [T, d_v]`, `beta, alpha: [T]`, the initial memory `S0: [d_k, d_v]`;
# return `(o [T, d_v], S_T [d_k, d_v])`. Derive the write from the objective yourself; the grader
# compares with `memory.delta_rule_naive` (which you can read afterwards).
#
# *Difficulty: medium · about 15 min.* **Predict first:** is the newest pair shrunk by $\alpha_t$?
# With $\beta_t = \alpha_t = 1$ and $q_t = k_t$ (unit norm), what is $o_t$?

# %% tags=["exercise"]
def gated_delta_rule(q, k, v, beta, alpha, S0):
    """q, k: [T, d_k], v: [T, d_v], beta, alpha: [T], S0: [d_k, d_v] -> (o [T, d_v], S_T [d_k, d_v])."""
    # YOUR CODE HERE
    raise NotImplementedError


# %%
result = grade("01.gated_delta", gated_delta_rule)
o_g, S_g = result.function(keys, keys, values, torch.full((T,), beta, dtype=torch.float64),
                           torch.full((T,), 0.9, dtype=torch.float64), torch.zeros(d_k, d_v, dtype=torch.float64))
print(f"with alpha = 0.9 the memory after {T} pairs has norm {S_g.norm():.3f} (no decay: {S_d.norm():.3f})")

# %% [markdown]
# ## 4. Watch a memory fill up
#
# Move the slider to write pairs one at a time into an 8 x 8 memory (keys and values are unit
# vectors, $\beta = 1$). Left: the two memory matrices. Right: for every pair written so far,
# how badly the memory recalls it, $\lVert S^\top k_i - v_i\rVert^2 / \lVert v_i \rVert^2$
# (0 = perfect; 1 = as bad as an empty memory, which answers 0).
#
# Things to try: with **correlated** keys (every key shares a common direction), the Hebbian
# memory's errors grow with every write, because each new $k v^\top$ also leaks into the answer for
# every earlier key. The delta rule always recalls the *latest* pair exactly and degrades older
# ones gradually. With **orthogonal** keys both rules are perfect up to 8 pairs, then both must
# start forgetting, since an 8 x 8 matrix cannot hold more than 8 independent associations.

# %%
n_slider = widgets.IntSlider(value=4, min=0, max=16, step=1, description="pairs written",
                             continuous_update=False, style={"description_width": "initial"})
keys_dropdown = widgets.Dropdown(options=list(course.KEY_KINDS), value="correlated",
                                 description="keys")
interactive_figure(course.draw_memory_writes, {"n_written": n_slider, "keys": keys_dropdown},
                   figsize=(10, 3.4));

# %% [markdown]
# ## 5. Capacity and interference
#
# Now the same measurement at scale: write $N$ random pairs into a $d \times d$ memory, then read
# every stored key back and average the retrieval error over all $N$ pairs. We sweep $N$ from a
# few pairs to $3d$ and repeat over several seeds (the band is one standard deviation across seeds).
# Keys are **orthogonal** (each block of $d$ keys is an orthonormal basis) or **correlated**
# (pairwise cosine about 0.6). The size comes from the preset.

# %%
d = config.by_preset(tiny=16, laptop=32, full=64)
seeds = list(range(config.by_preset(tiny=2, laptop=5, full=10)))
Ns = list(range(2, 3 * d + 1, max(1, d // 8)))
capacity = course.capacity_experiment(d, Ns, seeds, kinds=("orthogonal", "random", "correlated"))

fig = plt.figure(figsize=(11, 3.4), layout="constrained")
course.draw_capacity(fig, capacity, d)
fig.axes[0].set_ylim(0, 3)
plt.show()


def error_at(rule, kind, n):
    e = capacity[(rule, kind)][:, Ns.index(n)]
    return f"{e.mean():.3f} +- {e.std():.3f}"


n_probe = max(n for n in Ns if n <= d)
for kind in ("orthogonal", "random", "correlated"):
    print(f"{kind:>10} keys, N = {n_probe} (d = {d}): hebbian {error_at('hebbian', kind, n_probe)}, "
          f"delta {error_at('delta', kind, n_probe)}   ({len(seeds)} seeds)")

# %% [markdown]
# What the runs show (the numbers printed above are this run's; the shapes below held at every
# preset we tried):
#
# - **Orthogonal keys, $N \le d$:** both rules recall perfectly (error 0). Orthogonal keys do not
#   interfere, and for them the delta rule's correction term $S^\top k$ is zero, so the two
#   writes coincide.
# - **Beyond $N = d$** no $d \times d$ matrix can store all pairs; the error must grow. The
#   Hebbian memory only adds, so old content piles up and the error keeps growing (it passes 1,
#   worse than an empty memory; at $N = 3d$ about 2 with orthogonal and 3 with random keys in
#   our runs with $d = 32$, 3 seeds). The
#   delta rule overwrites what it replaces and grows much more slowly (about 1.3 at $N = 3d$):
#   it keeps the recent pairs and forgets the old ones.
# - **Correlated keys** are where the objectives differ most. Every Hebbian write leaks into the
#   shared direction, and the recall error grows far beyond 1 already for $N < d$ (about 6 at
#   $N = d/2$ for $d = 32$; note the clipped y-axis). The delta rule reads before it writes, so it
#   removes the shared component it would otherwise duplicate; its error stays below about 1.5.
# - **Random keys** sit in between: nearly orthogonal in high dimension, but the small overlaps
#   add up.
#
# This is the paper's point in miniature: the *objective* of a memory decides what it does with
# interference. Linear attention optimizes a dot-product objective, so it can only accumulate;
# the delta rule optimizes a regression objective, so it can correct and forget. Notebook 02 shows
# that attention itself is one of these memories, and notebook 03 makes the delta rule fast.
#
# **Choices made here** (the paper leaves them open): the Hebbian step size is 1 (any other
# constant only rescales $S$); the delta rule uses $\beta = 1$ and unit-norm keys, for which
# $I - \beta k k^\top$ is a projection; the library accepts any $\beta \in [0, 2]$, the range in
# which $I - \beta k k^\top$ never amplifies the memory along $k$.

# %% [markdown]
# ## Recap
#
# **What you can now do.**
#
# - Write an associative memory as an argmin over key-value pairs (Def. 1), with the objective
#   saying what the memory should do and the optimizer saying how it is written.
# - Derive the Hebbian write ($S_t = S_{t-1} + k_t v_t^\top$) and the delta rule
#   ($S_t = S_{t-1} - \beta_t k_t (S_{t-1}^\top k_t - v_t)^\top$) as one gradient step on a
#   dot-product and on an L2 objective, and code both.
# - Predict how recall degrades with the number of pairs and with correlated keys, and why the
#   delta rule degrades more gracefully.
#
# **What the next notebook adds.** Notebook 02 shows that attention itself is such a memory:
# softmax attention solves a regression over the whole context, linear attention is the Hebbian
# memory, and counting how often each memory is written gives the paper's *frequency* view.
