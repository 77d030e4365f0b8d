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
# 4. chunking with **two chunk sizes** (Eqs. 90-93) and the check that the fast (chunked) version
#    equals the token loop;
# 5. a look inside one sequence: the generated keys, values and learning rates move as the
#    memories learn, and move differently when the input changes.
#
# Library: `nlteach.titans` (tested in `tests/test_titans.py`); this notebook's streams and figures are
# in `nlteach.course.nb08_self_modifying`.

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
# ## 1. The memory: a residual two-layer MLP (Eq. 89)
#
# Every memory in this notebook (for keys, values, the learning rate eta, the retention alpha and
# the main memory) has the same form, `M(x) = x + W1 sigma(W2 x)` with sigma = SiLU. We store the
# matrices transposed and write vectors as rows, so the code reads `x + sigma(x S2) S1` with
# `S2 = W2^T: [d, hidden]` and `S1 = W1^T: [hidden, d]`. The residual makes `S1 = 0` the identity
# map: a memory that has learned nothing passes its input through.

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
# At token t, with the memories' states *before* the token (index t-1):
#
# - keys `k_t = normalize(M_k(u_t))`, values `v_t = M_v(u_t)` (Eqs. 83-84);
# - learning rate `eta_t = eta_max sigmoid(w_eta . M_eta(u_t) + b_eta)` and retention
#   `alpha_t = sigmoid(w_alpha . M_alpha(u_t) + b_alpha)` (Eq. 85; the readouts `w, b` turn the
#   memory's vector into one number per head: our choice (d) below);
# - every memory box in {k, v, eta, alpha, memory} makes its **own target**,
#   `vhat_box,t = M_box(v_t)` (Eq. 86), and learns the regression `M_box(k_t) -> vhat_box,t`.
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
#     M_t = M_{t-1} (alpha_t I - eta_t k_t k_t^T) - eta_t grad L(M_{t-1}; k_t, vhat_t),
#     L = 1/2 ||M(k_t) - vhat_t||^2.
#
# `alpha_t I` is weight decay (forgetting). `- eta_t k_t k_t^T` is the DGD part (notebook 06): before
# writing the new association, the memory erases what it stored along the direction `k_t`, like
# the delta rule. For a two-layer memory the paper does not say which matrix the factor multiplies.
# It only type-checks on the right of the first matrix `W2` (the one `k` enters, `d` columns), so
# that is our choice. The second matrix `W1` gets `alpha_t` and a gradient step on the memory's
# own loss `1/2 ||M(k) - M(v)||^2` taken through *both* arguments, with input `a_k - a_v`
# (`a_x = sigma(W2 x)`) and a normalized step `eta / (C (1 + ||a_k - a_v||^2))` (C = chunk size).
# Why not the plain gradient with the target held fixed? Because the target `vhat = M(v)` is made
# by the memory itself: after a plain step the same token's residual is multiplied by
# `alpha - eta' (||a_k||^2 - a_v . a_k)`. Once `a_v . a_k > ||a_k||^2` this factor is larger than
# `alpha`, and larger than 1 as soon as `eta' (a_v . a_k - ||a_k||^2) > 1 - alpha`: for *every*
# step size when the memory does not forget (`alpha = 1`), and for all but small steps when
# `alpha` is close to 1. That is what made our HOPE language models go to NaN at the laptop
# preset (the memories' states grew geometrically along the sequence). With `a_k - a_v` the
# factor is `alpha - eta ||a_k - a_v||^2 / (1 + ||a_k - a_v||^2)`, which lies in
# `(alpha - eta, alpha]`: a contraction for any `eta < 1 + alpha`.
# The memories also read the unit vector `v / ||v||` (choice (g) below).
#
# In our transposed storage, the first layer's update for one token is
# `S2_new = (alpha I - eta k k^T) S2 - eta k delta^T`, where `k delta^T` is the gradient of the loss
# with respect to `S2` (`delta = sigma'(k S2) * (r S1^T)`, `r = M(k) - vhat`).
#
# **Exercise.** Write that update for one token: `S [d, hidden]`, `k [d]` (unit norm), `delta [hidden]`.

# %% tags=["exercise"]
def dgd_update(S, k, delta, eta, alpha):
    """(alpha I - eta k k^T) S - eta k delta^T for S [d, hidden], k [d], delta [hidden]."""
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
# ## 4. Two chunk sizes, and the fast version (Eqs. 90-93)
#
# Token by token, every memory depends on the one before it: slow on any hardware. The paper cuts
# the sequence into chunks. Inside a chunk, every *generated* quantity (k, v, eta, alpha and the
# targets vhat) and every gradient is computed at the state of the chunk's start; the updates
# still follow the recurrence token by token. Then:
#
# - the k, v, eta, alpha memories (chunk `proj_chunk_size`) do not depend on the main memory, so
#   they run first, all four at once, and produce k, v, eta, alpha for the whole sequence;
# - the main memory (chunk `chunk_size`) then runs with them and is read by `q_t`
#   (`o_t = M_memory,t-1(q_t)`, Eq. 88).
#
# Inside a chunk, the recurrence `S_t = (alpha_t I - eta_t k_t k_t^T) S_{t-1} + (step_t)` unrolls
# into products of decays (a C x C matrix) and one unit lower-triangular solve, like the chunked
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
# ## 5. Inside one sequence: generated keys, values and learning rates change
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
# ## 6. Choices we made where the paper is open
#
# The paper leaves these points open (`docs/paper-notes.md#smt-ambiguities`); `nlteach.titans` states them too.
#
# - **(a) q is not adaptive.** The paper calls q "the only non-adaptive projection" but later lists
#   it among the adaptive memories. We use `q_t = normalize(conv(x_t W_q))`; the paper's own
#   ablation reports that an adaptive q does not help.
# - **(b) Which matrix gets `(alpha I - eta k k^T)`.** The first one, `W2`, the only one whose input
#   width is d. The second gets weight decay `alpha` and a normalized step on the self-generated
#   loss through both of its arguments, input `a_k - a_v`, step `eta / (C (1 + ||a_k - a_v||^2))`:
#   with the paper's plain gradient (target held fixed) the residual grows once the target moves
#   with the weights faster than the output does and the step is large enough, whatever the step
#   size when `alpha = 1` (section 3), and the C frozen-gradient steps of
#   a chunk must not add up to more than one step.
# - **(c) Momentum.** The HOPE equations have none, but the paper's ablation removes "momentum";
#   we offer Titans-style momentum as an option (`momentum=beta`, off by default):
#   `S_t = beta S_{t-1} - eta_t grad_t`, `M_t = M_{t-1}(alpha_t I - eta_t k_t k_t^T) + S_t`.
# - **(d) Scalars from vector memories.** eta and alpha memories output a d-vector like the
#   others; a learned readout and a sigmoid give one number per head.
# - **(e) The main memory's target is self-generated too**, `vhat = M_memory(v_t)`, as Eq. 86 lists
#   it among the boxes; the read is exclusive, `o_t = M_memory,t-1(q_t)` (Eq. 88).
# - **(f) Chunking.** Generation and gradients at the chunk-start state, updates token by token;
#   chunks start at token 0; both chunk sizes 1 is the fully online model.
# - **(g) Unit values as memory inputs.** The memories make their targets from `v_t / ||v_t||`
#   (`vhat = M(v / ||v||)`). In self-modifying Titans `v` is only ever an *input* of the memories,
#   like `k` and `q`, which the paper L2-normalizes; unnormalized, its norm grew during training
#   and (with (b) alone) a layer fed large inputs still diverged. With (b) and (g) the layer stays
#   finite for inputs of norm 100, `eta_max = 1` and no forgetting (`tests/test_titans.py`).
#
# Next, notebook 09 puts this layer in front of the Continuum Memory System (HOPE) and trains it
# against Transformer and Titans baselines.
