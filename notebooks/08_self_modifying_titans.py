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
# # 08 · Self-modifying Titans: memories that write their own keys, values and learning rates
#
# In notebook 04 the Titans memory learned at test time, but the maps that *make* its keys, values
# and learning rates were ordinary weights, frozen after training. Section 8 of the paper
# (Eqs. 83-93, arXiv v1) removes that last frozen level: every projection becomes a memory that is
# updated while the sequence is read, and every memory produces its own training targets.
#
# What we build, one piece at a time:
#
# 1. the memory: a residual two-layer MLP (Eq. 89);
# 2. generation: k, v, eta, alpha made by memories (Eqs. 83-85), and self-generated values (Eq. 86);
# 3. the update: Delta Gradient Descent with weight decay (Eq. 88), which you implement;
# 4. the whole layer as one token loop, the library's reference, read line by line against the
#    equations;
# 5. chunking with **two chunk sizes** (Eqs. 90-93) and the check that the fast (chunked) version
#    equals the token loop (an optional deep dive);
# 6. a look inside one sequence: the generated keys, values and learning rates move as the
#    memories learn, and move differently when the input changes.
#
# Library: `nlteach.titans` (tested in `tests/test_titans.py`); this notebook's streams and figures are
# in `nlteach.course.nb08_self_modifying`.

# %% [markdown]
# ## Objectives
#
# After this notebook you will be able to:
#
# - read the self-modifying Titans reference loop line by line against Eqs. 83-88;
# - write one memory's DGD update with weight decay, and explain the stability choice (b);
# - watch generated keys and learning rates drift inside a sequence.
#
# **Paper:** Sec. 8, Eqs. 79-93. **Prerequisites:** notebooks 04, 06 section 7. **Time at the laptop preset:** < 1 min.
#
# **Optional deep dive** (skip it for the conceptual path): section 5 (two chunk sizes and the chunked version; its hand-written backward pass is in `nlteach.titans`).

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
import time

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from nlteach import config, titans
from nlteach.course import nb08_self_modifying as course
from nlteach.course.widgets import interactive_figure
from nlteach.exercises import grade

config.seed_everything(0)
torch.set_num_threads(min(2, torch.get_num_threads()))
print(config.describe())

# %% [markdown]
# > **Symbols here.** The letters follow the course's notation table (notebook 00): $\mathcal{M}_\square$
# > is the memory of box $\square \in \{k, v, \eta, \alpha, \text{memory}\}$, $u_t$ the input the
# > memories read, $q_t$ the query, $\eta_t$ a **learning rate** and $\alpha_t$ a **retention**
# > (the fraction kept; notebook 04's Titans letters differ, see its box), $\hat v_{\square,t}$ a
# > self-generated target. Two names in `nlteach.titans` reuse letters: `S2, S1` are the two weight
# > matrices of one memory, stored transposed ($S_2 = W_2^\top$, $S_1 = W_1^\top$), not the matrix
# > memory $S$ of notebooks 01-03; `M` (`mom`) is the optional momentum and `beta` its coefficient,
# > not the delta rule's step $\beta_t$.

# %% [markdown]
# ## 1. The memory: a residual two-layer MLP (Eq. 89)
#
# Every memory in this notebook (for keys, values, the learning rate $\eta$, the retention $\alpha$
# and the main memory) has the same form, with $\sigma$ = SiLU:
#
# $$\mathcal{M}(x) = x + W_1\, \sigma(W_2\, x) \qquad \text{(Eq. 89)}.$$
#
# We store the matrices transposed and write vectors as rows, so the code reads
# `x + sigma(x S2) S1` with `S2 = W2^T: [d, hidden]` and `S1 = W1^T: [hidden, d]`. The residual
# makes $W_1 = 0$ the identity map: a memory that has learned nothing passes its input through.

# %%
d, hidden = 4, 6
g = torch.Generator().manual_seed(0)
S2 = torch.randn(d, hidden, generator=g, dtype=torch.float64)
S1 = torch.zeros(hidden, d, dtype=torch.float64)
x = torch.randn(3, d, generator=g, dtype=torch.float64)
print("S1 = 0 gives the identity:", torch.allclose(titans.mlp_read(S2, S1, x), x))

# %% [markdown]
# ## 2. Memories that generate their own inputs and targets (Eqs. 83-86)
#
# At token $t$, with the memories' states *before* the token ($\mathcal{M}_{\square} = \mathcal{M}_{\square, t-1}$),
# the memories generate the keys and values (Eqs. 83-84),
#
# $$k_t = \frac{\mathcal{M}_k(u_t)}{\lVert \mathcal{M}_k(u_t) \rVert}, \qquad v_t = \mathcal{M}_v(u_t),$$
#
# the learning rate and the retention (Eq. 85; the readouts $w, b$ turn the memory's vector into
# one number per head: our choice (d) below),
#
# $$\eta_t = \eta_\text{max}\, \mathrm{sigmoid}\big(w_\eta^\top \mathcal{M}_\eta(u_t) + b_\eta\big), \qquad
#   \alpha_t = \mathrm{sigmoid}\big(w_\alpha^\top \mathcal{M}_\alpha(u_t) + b_\alpha\big),$$
#
# and every memory $\square \in \{k, v, \eta, \alpha, \text{memory}\}$ makes its **own target**
# (Eq. 86) and learns the regression $\mathcal{M}_\square(k_t) \to \hat v_{\square, t}$:
#
# $$\hat v_{\square, t} = \mathcal{M}_\square(v_t).$$
#
# So the k memory is trained to send keys to *its own* image of the values, and the same for the
# others: nothing outside the layer tells a memory what to store. `u_t` is the layer's input after
# a linear map and a short causal convolution (window 4); the query `q_t` is a fixed projection,
# convolved and L2-normalized.

# %%
H, d, hidden = 1, 4, 6
init, readout = course.random_memories(H, d, hidden, seed=0)
u = course.regime_stream(5, d, seed=0)  # [1, 1, T=5, d]
k, v, eta, alpha = titans.generate(init, u, readout, eta_max=0.5)
print("keys have unit norm:", k.norm(dim=-1)[0, 0])
print("eta_t:", eta[0, 0])
print("alpha_t:", alpha[0, 0])
vhat_k = titans.mlp_read(*init["k"], F.normalize(v, dim=-1))  # the k memory's own targets (choice (g))
print("vhat_k differs from v:", (vhat_k - v).norm().item() > 0)

# %% [markdown]
# ## 3. The update: Delta Gradient Descent with weight decay (Eq. 88)
#
# Each memory moves by
#
# $$\mathcal{M}_t = \mathcal{M}_{t-1}\,(\alpha_t I - \eta_t\, k_t k_t^\top) - \eta_t\, \nabla \mathcal{L}(\mathcal{M}_{t-1}; k_t, \hat v_t),
#   \qquad \mathcal{L}(\mathcal{M}; k, \hat v) = \tfrac12 \lVert \mathcal{M}(k) - \hat v \rVert^2 .$$
#
# $\alpha_t I$ is weight decay (forgetting). $-\eta_t k_t k_t^\top$ is the DGD part (notebook 06): before
# writing the new association, the memory erases what it stored along the direction `k_t`, like
# the delta rule. For a two-layer memory the paper does not say which matrix the factor multiplies.
# It only type-checks on the right of the first matrix `W2` (the one `k` enters, `d` columns), so
# that is our choice. The second matrix $W_1$ gets $\alpha_t$ and a gradient step on the memory's
# own loss $\tfrac12 \lVert \mathcal{M}(k) - \mathcal{M}(v) \rVert^2$ taken through *both*
# arguments, with input $a_k - a_v$ ($a_x = \sigma(W_2 x)$) and a normalized step
# $\eta / (C (1 + \lVert a_k - a_v \rVert^2))$ ($C$ = chunk size).
# Why not the plain gradient with the target held fixed? Because the target $\hat v = \mathcal{M}(v)$
# is made by the memory itself: after a plain step (size $\eta'$) the same token's residual is
# multiplied by
#
# $$\alpha - \eta' \big(\lVert a_k \rVert^2 - a_v^\top a_k\big).$$
#
# Once $a_v^\top a_k > \lVert a_k \rVert^2$ this factor is larger than $\alpha$, and larger than 1
# as soon as $\eta' (a_v^\top a_k - \lVert a_k \rVert^2) > 1 - \alpha$: for *every* step size when
# the memory does not forget ($\alpha = 1$), and for all but small steps when $\alpha$ is close
# to 1. That is what made our HOPE language models go to NaN at the laptop preset (the memories'
# states grew geometrically along the sequence). With $a_k - a_v$ the factor is
#
# $$\alpha - \eta\, \frac{\lVert a_k - a_v \rVert^2}{1 + \lVert a_k - a_v \rVert^2} \in (\alpha - \eta,\ \alpha],$$
#
# a contraction for any $\eta < 1 + \alpha$.
# The memories also read the unit vector $v / \lVert v \rVert$ (choice (g) below).
#
# In our transposed storage, the first layer's update for one token is
# `S2_new = (alpha I - eta k k^T) S2 - eta k delta^T`, where `k delta^T` is the gradient of the loss
# with respect to `S2` (`delta = sigma'(k S2) * (r S1^T)`, `r = M(k) - vhat`).

# %% [markdown]
# **Exercise 08.dgd_update.** Write that update for one token as a function of `S [d, hidden]`,
# `k [d]` (unit norm), `delta [hidden]`, `eta` and `alpha`; return `S_new [d, hidden]`.
#
# *Difficulty: easy · about 10 min.* **Predict first:** with `eta = 1`, `alpha = 1` and
# `delta = 0`, what is `k^T S_new`? Do you need to build the `d x d` matrix?

# %% tags=["exercise"]
def dgd_update(S, k, delta, eta, alpha):
    """S: [d, hidden], k: [d] (unit norm), delta: [hidden], eta, alpha: floats -> S_new [d, hidden]."""
    # YOUR CODE HERE
    raise NotImplementedError


# %%
result = grade("08.dgd_update", dgd_update)
dgd_update_fn = result.function

# %% [markdown]
# What the projector does: with `eta = 1`, `alpha = 1` and no gradient, `k^T S_new = 0`: the
# memory's first layer no longer responds to the direction `k` at all. With a smaller eta it
# responds less. That erasure is what lets a memory overwrite an old association instead of adding
# to it.

# %%
k1 = F.normalize(torch.randn(d, generator=g, dtype=torch.float64), dim=0)
S = torch.randn(d, hidden, generator=g, dtype=torch.float64)
for eta_ in (0.0, 0.5, 1.0):
    S_new = dgd_update_fn(S, k1, torch.zeros(hidden, dtype=torch.float64), eta_, 1.0)
    print(f"eta={eta_:.1f}: ||k^T S_new|| / ||k^T S|| = {(k1 @ S_new).norm() / (k1 @ S).norm():.3f}")

# %% [markdown]
# **Exercise 08.titans_token.** Now a whole token of the layer, for one head with both chunk sizes
# 1 (so every "chunk-start state" is simply the state before the token). Inputs: `states`, a dict
# from each box in `("k", "v", "eta", "alpha", "memory")` to its `(S2 [d, hidden], S1 [hidden, d])`;
# the token's `u [d]` and query `q [d]`; `readout` with `w_eta, w_alpha [d]` and numbers `b_eta,
# b_alpha`; `eta_max`. Return `(o [d], new_states)` with the same dict layout. Everything comes from
# sections 1-3: generate $k_t, v_t, \eta_t, \alpha_t$ (Eqs. 83-85), read $o_t$ (Eq. 88), and update
# all five memories, each on its own target made from $v_t / \lVert v_t \rVert$ (Eq. 86, choice (g)):
# the first matrix by DGD (your `dgd_update`), the second by the normalized step through both
# arguments. The gradient pieces for the residual MLP are yours to derive. The grader compares with
# `titans.self_modifying_titans_naive`, one token at a time and six tokens in a row; the library's
# `titans.mlp_read` and `titans.grad_terms` are there to read afterwards.
#
# *Difficulty: hard · about 45 min.* **Predict first:** does $o_t$ depend on $v_t$? If every
# memory starts with `S1 = 0`, what are $k_t$, $v_t$ and the targets, and which matrices move?

# %% tags=["exercise"]
def titans_token_step(states, u, q, readout, eta_max):
    """states: box -> (S2 [d, hidden], S1 [hidden, d]); u, q: [d]; readout: w_eta, w_alpha [d], b_eta, b_alpha
    -> (o [d], new_states), one token of self-modifying Titans with chunk sizes 1."""
    # YOUR CODE HERE
    raise NotImplementedError


# %%
result = grade("08.titans_token", titans_token_step)
one_head = {b: (S2_[0, 0], S1_[0, 0]) for b, (S2_, S1_) in course.random_memories(1, d, hidden, seed=2)[0].items()}
ro_head = {"w_eta": torch.ones(d, dtype=torch.float64) / d, "b_eta": -1.0,
           "w_alpha": torch.ones(d, dtype=torch.float64) / d, "b_alpha": 3.0}
u_seq = torch.randn(5, d, generator=g, dtype=torch.float64)
for t in range(5):
    o_t, one_head = result.function(one_head, u_seq[t], F.normalize(u_seq[t], dim=0), ro_head, 0.5)
print(f"after 5 tokens of {result.whose} step, the k memory's S1 has norm {one_head['k'][1].norm():.3f}")

# %% [markdown]
# ## 4. The whole layer, token by token: the reference loop (Eqs. 83-88)
#
# Sections 1-3 took the layer apart; here it is in one piece. `titans.self_modifying_titans_naive`
# is the reference that every faster version is tested against, and its loop over tokens does, for
# each token $t$:
#
# 1. **Chunk starts** (`snap`). At the first token of a chunk, keep a copy of the memories' states;
#    every quantity the chunk generates and every gradient it takes come from that copy (choice (f);
#    with both chunk sizes 1, `snap` is simply the state before the token).
# 2. **Generate** (`generate`, Eqs. 83-85): the keys, values, learning rates and retentions of
#    section 2,
#    $$k_t = \mathrm{normalize}\big(\mathcal{M}_k(u_t)\big), \quad v_t = \mathcal{M}_v(u_t), \quad
#      \eta_t = \eta_\text{max}\, \mathrm{sigmoid}(\cdot), \quad \alpha_t = \mathrm{sigmoid}(\cdot).$$
# 3. **Read** (`mlp_read(*state["memory"], q_t)`), before the token's own write (choice (e)):
#    $$o_t = \mathcal{M}_{\text{memory}, t-1}(q_t).$$
# 4. **Update every memory** (`_memory_update`, once per box): the box makes its own target
#    (Eq. 86, from the unit value, choice (g)) and takes the DGD step with weight decay of
#    section 3 (the update in the block Eqs. 86-88),
#    $$\hat v_{\square, t} = \mathcal{M}_\square\big(v_t / \lVert v_t \rVert\big), \qquad
#      \mathcal{M}_{\square, t} = \mathcal{M}_{\square, t-1}\,(\alpha_t I - \eta_t\, k_t k_t^\top)
#      - \eta_t\, \nabla \mathcal{L}(\mathcal{M}_{\square, t-1}; k_t, \hat v_{\square, t}).$$
#
# Read the loop with those four steps beside it (the docstring is left out):

# %%
from nlteach.course.source import show_source

show_source(titans.self_modifying_titans_naive, docstring=False)

# %% [markdown]
# Step 2 is `generate`: four memory reads and two readouts. Step 4 is `_memory_update`: the
# target (Eq. 86), the gradient's pieces $a$, $r$, $\delta$ of section 3 (`grad_terms`), then one
# `dgd_token` per matrix, the first with the projector $\alpha_t I - \eta_t k_t k_t^\top$ (`p = k`),
# the second with input $a_k - a_v$ and the normalized step (choice (b)). With `beta = 0` (no
# momentum, the default) `dgd_token` is exactly the update you wrote in section 3.

# %%
show_source(titans.generate)
show_source(titans._memory_update)
show_source(titans.dgd_token)

# %% [markdown]
# The loop really is these lines: one token by hand, with the pieces above and your `dgd_update`
# from section 3, gives the loop's output and the k memory's new first matrix.

# %%
init1, readout1 = course.random_memories(1, 4, 6, seed=2)
u1 = course.regime_stream(1, 4, seed=2)  # one token, [1, 1, 1, d]
q1 = F.normalize(course.regime_stream(1, 4, seed=3), dim=-1)
o_loop, (states_loop, _) = titans.self_modifying_titans_naive(u1, q1, init1, readout1, chunk_size=1,
                                                              proj_chunk_size=1, eta_max=0.5)
k1_, v1_, eta1, alpha1 = titans.generate(init1, u1, readout1, eta_max=0.5)  # step 2
o_hand = titans.mlp_read(*init1["memory"], q1)  # step 3
vhat = titans.mlp_read(*init1["k"], F.normalize(v1_, dim=-1))  # step 4, box k: its own target
_, _, delta1 = titans.grad_terms(*init1["k"], k1_, vhat)
S2_hand = dgd_update_fn(init1["k"][0][0, 0], k1_[0, 0, 0], delta1[0, 0, 0], eta1[0, 0, 0], alpha1[0, 0, 0])
print("o_t by hand == the loop's:", torch.allclose(o_hand, o_loop))
print("k memory's first matrix by hand == the loop's:", torch.allclose(S2_hand, states_loop["k"][0][0, 0]))

# %% [markdown]
# ## 5. Two chunk sizes, and the fast version (Eqs. 90-93)
#
# *Optional deep dive: the conceptual path can skip to section 6.*
#
# Token by token, every memory depends on the one before it: slow on any hardware. The paper cuts
# the sequence into chunks. Inside a chunk, every *generated* quantity ($k$, $v$, $\eta$, $\alpha$
# and the targets $\hat v$) and every gradient is computed at the state of the chunk's start; the
# updates still follow the recurrence token by token. Then:
#
# - the $k$, $v$, $\eta$, $\alpha$ memories (chunk `proj_chunk_size`) do not depend on the main
#   memory, so they run first, all four at once, and produce $k, v, \eta, \alpha$ for the whole
#   sequence;
# - the main memory (chunk `chunk_size`) then runs with them and is read by $q_t$,
#   $o_t = \mathcal{M}_{\text{memory}, t-1}(q_t)$.
#
# Inside a chunk, each weight matrix $W$ of a memory follows the recurrence
#
# $$W_t = W_{t-1}\,(\alpha_t I - \eta_t\, k_t k_t^\top) - \eta_t\, G_t ,$$
#
# with every gradient $G_t$ taken at the chunk's start. It unrolls
# into products of decays (a $C \times C$ matrix) and one unit lower-triangular solve, like the chunked
# delta rule of notebook 03 (the derivation is beside `titans.dgd_chunk`). The token loop
# (`self_modifying_titans_naive`) freezes its generation and gradient points at the same chunk
# starts, so the two must agree to rounding. Let us check, with T not a multiple of either chunk.

# %%
B, H, T, d, hidden = 2, 2, 37, 8, 16
g = torch.Generator().manual_seed(1)
u = 0.5 * torch.randn(B, H, T, d, generator=g, dtype=torch.float64)
q = F.normalize(torch.randn(B, H, T, d, generator=g, dtype=torch.float64), dim=-1)
init, readout = course.random_memories(H, d, hidden, seed=1)
init = {b: tuple(x.expand(B, -1, -1, -1) for x in m) for b, m in init.items()}
opts = dict(chunk_size=8, proj_chunk_size=4, eta_max=0.5)

t0 = time.perf_counter()
o_naive, (state_naive, _) = titans.self_modifying_titans_naive(u, q, init, readout, **opts)
t_naive = time.perf_counter() - t0
t0 = time.perf_counter()
o_chunk, (state_chunk, _) = titans.self_modifying_titans_chunked(u, q, init, readout, **opts)
t_chunk = time.perf_counter() - t0
err = ((o_naive - o_chunk).norm() / o_naive.norm()).item()
err_state = max(((state_naive[b][0] - state_chunk[b][0]).norm() / state_naive[b][0].norm()).item()
                for b in titans.BOXES)
print(f"relative difference, outputs: {err:.1e}; final states: {err_state:.1e} (float64)")
print(f"chunked was {t_naive / t_chunk:.1f}x faster than the token loop here (one run, timings are noisy)")

# %% [markdown]
# ## 6. Inside one sequence: generated keys, values and learning rates change
#
# Now the point of self-modification. We feed a stream whose "topic" changes halfway (inputs are
# noisy copies of a few prototypes of regime A, then of regime B) into the layer with random
# initial memories, twice: once self-modifying and once with the k, v, eta, alpha memories frozen
# at their initial states (static projections: what a Titans layer has). Both runs start equal.
# The drift `1 - cos(k_t, static k_t)` says how far the self-modified keys have moved from the keys
# the static projection would make for the same input.
#
# The sliders set the two chunk sizes and the largest learning rate. With
# `proj_chunk_size = 1` the projections change after every token; with a large one they change only
# at chunk boundaries (the drift is then computed from a state that is held for a whole chunk).

# %%
interactive_figure(
    course.draw_self_modification,
    {
        "proj_chunk_size": widgets.IntSlider(value=1, min=1, max=32, description="k/v/eta/alpha chunk",
                                             continuous_update=False),
        "chunk_size": widgets.IntSlider(value=8, min=1, max=32, description="memory chunk",
                                        continuous_update=False),
        "eta_max": widgets.FloatSlider(value=0.5, min=0.05, max=1.0, step=0.05, description="eta_max",
                                       continuous_update=False),
    },
    figsize=(9, 5.5),
)

# %% [markdown]
# **Reading the figure.** The generated gates and keys start exactly equal to the static ones and
# drift away as the memories learn from the stream: the layer's own "projections" are part of its
# in-context state. How much, and whether the drift grows after the switch, depends on the seed,
# the learning rate and the chunk sizes: this is an untrained layer with random initial memories,
# so it shows the *mechanism*, not a trained behaviour. In a trained HOPE model (notebook 09) the
# initial states and readouts are meta-learned by the outer optimizer.
#
# A larger `proj_chunk_size` makes the projections change less often and the computation more
# parallel; the paper keeps it separate from the main memory's chunk for exactly that trade-off.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), sharey=True, layout="constrained")
for ax, pcs in zip(axes, (1, 16)):
    r = course.self_modification_trace(pcs, 8)
    ax.plot(r["key_drift"], color="C2", lw=1, label="key drift")
    ax.plot(r["eta"] - r["eta_static"], color="C3", lw=1, label="eta - static eta")
    ax.axvline(r["switch_at"], color="gray", ls=":")
    ax.set_title(f"k/v/eta/alpha chunk = {pcs}")
    ax.set_xlabel("token t")
axes[0].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 7. Choices we made where the paper is open
#
# The paper leaves these points open (`docs/paper-notes.md#smt-ambiguities`); `nlteach.titans` states them too.
#
# - **(a) q is not adaptive.** The paper calls q "the only non-adaptive projection" but later lists
#   it among the adaptive memories. We use $q_t = \mathrm{normalize}(\mathrm{conv}(x_t W_q))$; the paper's own
#   ablation reports that an adaptive q does not help.
# - **(b) Which matrix gets $(\alpha_t I - \eta_t k_t k_t^\top)$.** The first one, $W_2$, the only one
#   whose input width is $d$. The second gets weight decay $\alpha_t$ and a normalized step on the
#   self-generated loss through both of its arguments, input $a_k - a_v$, step
#   $\eta_t / (C (1 + \lVert a_k - a_v \rVert^2))$:
#   with the paper's plain gradient (target held fixed) the residual grows once the target moves
#   with the weights faster than the output does and the step is large enough, whatever the step
#   size when $\alpha = 1$ (section 3), and the $C$ frozen-gradient steps of
#   a chunk must not add up to more than one step.
# - **(c) Momentum.** The HOPE equations have none, but the paper's ablation removes "momentum";
#   we offer Titans-style momentum as an option (`momentum=beta`, off by default), with $G_t$ the
#   gradient of section 3:
#   $$m_t = \beta\, m_{t-1} - \eta_t\, G_t, \qquad
#     \mathcal{M}_t = \mathcal{M}_{t-1}\,(\alpha_t I - \eta_t\, k_t k_t^\top) + m_t .$$
# - **(d) Scalars from vector memories.** The $\eta$ and $\alpha$ memories output a $d$-vector like the
#   others; a learned readout and a sigmoid give one number per head.
# - **(e) The main memory's target is self-generated too**, $\hat v_t = \mathcal{M}_\text{memory}(v_t)$,
#   as Eq. 86 lists it among the boxes; the read is exclusive, $o_t = \mathcal{M}_{\text{memory}, t-1}(q_t)$
#   (Eq. 88).
# - **(f) Chunking.** Generation and gradients at the chunk-start state, updates token by token;
#   chunks start at token 0; both chunk sizes 1 is the fully online model.
# - **(g) Unit values as memory inputs.** The memories make their targets from $v_t / \lVert v_t \rVert$,
#   $\hat v = \mathcal{M}(v / \lVert v \rVert)$. In self-modifying Titans $v$ is only ever an *input*
#   of the memories, like $k$ and $q$, which the paper L2-normalizes; unnormalized, its norm grew during training
#   and (with (b) alone) a layer fed large inputs still diverged. With (b) and (g) the layer stays
#   finite for inputs of norm 100, `eta_max = 1` and no forgetting (`tests/test_titans.py`).
#
# Next, notebook 09 puts this layer in front of the Continuum Memory System (HOPE) and trains it
# against Transformer and Titans baselines.

# %% [markdown]
# ## Recap
#
# **What you can now do.**
#
# - Read the self-modifying Titans reference loop against Eqs. 83-88: memories that generate the
#   keys, values, learning rates and retentions, and their own targets $\hat v_{\square,t}$.
# - Write one memory's update, Delta Gradient Descent with weight decay, and explain the course's
#   stability choices (b) and (g).
# - *(Deep dive)* Check that the chunked version with two chunk sizes equals the token loop.
# - Watch generated keys and learning rates drift from their static values inside one sequence.
#
# **What the next notebook adds.** Notebook 09 puts this layer in front of the Continuum Memory
# System of notebook 07: HOPE, trained as a character-level language model against a Transformer,
# Titans and Hope-Attention at equal parameters and tokens.
