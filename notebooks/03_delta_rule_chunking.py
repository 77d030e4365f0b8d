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
# # 03 · The delta rule and chunking
#
# Notebook 01 showed that the delta rule is the better memory: it reads before it writes, so it
# corrects instead of piling up. Notebook 02 made linear attention fast by processing chunks of
# tokens with matrix products. This notebook does the same for the delta rule, where it is
# harder: each step *multiplies* the memory by $(I - \beta_t k_t k_t^\top)$, so a chunk is a
# product of matrices, not a sum. The way out is the **WY / UT representation**: one triangular
# solve per chunk turns the chunk's writes back into a sum. We derive it step by step on small
# matrices you can read, add the forgetting gate (the **gated delta rule**), check the library
# against the token loop, and time both on your machine.

# %% [markdown]
# ## Objectives
#
# After this notebook you will be able to:
#
# - write the delta rule and the gated delta rule as recurrences on a matrix memory;
# - derive the chunked (WY/UT) form with one triangular solve per chunk and test it against the token loop;
# - spot why a chunked gated rule needs the decay in four places.
#
# **Paper:** the L2 objective (Def. 1); chunked form: DeltaNet (Yang et al., 2024), Gated DeltaNet. **Prerequisites:** notebooks 01, 02. **Time at the laptop preset:** < 1 min.
#
# **Optional deep dive** (skip it for the conceptual path): sections 2-6 (the whole chunked algorithm and its speed); section 1 is the concept.

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
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from nlteach import config, memory
from nlteach.course import nb03_delta_rule as course
from nlteach.exercises import grade

torch.set_printoptions(precision=3, sci_mode=False)
print(config.describe())

# %% [markdown]
# ## 1. The delta rule and the gated delta rule
#
# $$S_t = (I - \beta_t k_t k_t^\top)(\alpha_t S_{t-1}) + \beta_t k_t v_t^\top, \qquad o_t = S_t^\top q_t .$$
#
# $\beta_t \in [0, 2]$ is the write strength (the step size of one gradient step on
# $\tfrac12\lVert S^\top k_t - v_t\rVert^2$) and $\alpha_t \in (0, 1]$ is the **gate**: the
# fraction of the memory kept before the write. $\alpha_t = 1$ is the plain delta rule
# (DeltaNet), $\alpha_t < 1$ the gated delta rule (Gated DeltaNet). The gate is a second kind of
# forgetting: the delta rule forgets *along the key it writes*, the gate forgets *everything a
# little*.
#
# The library's reference loop, the one every fast version below is tested against, is this
# equation written as a correction (read the memory at $k_t$, write the error along $k_t$):

# %%
from nlteach.course.source import show_source

show_source(memory.delta_rule_naive)

# %% [markdown]
# Watch both: write one pair, then many random ones, and after every write read the first key
# back (cosine similarity between the answer and the first value; 1 = perfect recall):

# %%
recall_d = config.by_preset(tiny=16, laptop=32, full=64)
recall = course.recall_of_first_pair([1.0, 0.98, 0.9, 0.7], d=recall_d, n=4 * recall_d, seed=0)
fig, ax = plt.subplots(figsize=(7, 3), layout="constrained")
for a, c in recall.items():
    ax.plot(c, label=f"alpha = {a}")
ax.axvline(recall_d, color="0.5", ls=":", lw=1)
ax.set_xlabel("pairs written after the first one")
ax.set_ylabel("recall of the first pair (cosine)")
ax.set_title(f"delta rule, beta = 1, d = {recall_d}, random keys (seed 0)", fontsize=9)
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# With $\alpha = 1$ the first pair fades slowly as new keys overlap with it; past $d$ writes
# (dotted line) the memory is full and it fades faster. A gate below 1 makes the memory forget on
# a clock of about $1/(1-\alpha)$ tokens regardless of the keys: useful when the past stops
# mattering, harmful when it does not.
#
# ## 2. Why a chunk is harder than for linear attention
#
# *Optional deep dive (making it fast), sections 2-6: the conceptual path goes on with notebook 04.
# The chunked algorithm comes from the DeltaNet line of work (Yang et al., 2024; Gated DeltaNet),
# not from the Nested Learning paper.*
#
# Cut time into chunks of $C$ tokens. For linear attention the state after a chunk was
# $S + K^\top V$: a sum. For the delta rule it is
# $S_C = (I - \beta_C k_C k_C^\top) \cdots (I - \beta_1 k_1 k_1^\top) S + \dots$, a product of $C$
# matrices of size $d_k \times d_k$. Computing that product token by token is the naive loop
# again. The trick is to look at the values that get written instead of the matrices.
#
# Write each step as a rank-one write of a **pseudo-value** $u_i$:
#
# $$S_i = S_{i-1} + k_i u_i^\top, \qquad u_i = \beta_i\,(v_i - S_{i-1}^\top k_i).$$
#
# Unrolling inside the chunk, $S_i = S + \sum_{j \le i} k_j u_j^\top$: the chunk's state *is*
# a sum again, only of $u$'s instead of $v$'s. If we can get all $u_i$ at once, the chunk is as
# easy as linear attention. Here is a chunk of $C = 4$ tokens with $d_k = 3$, $d_v = 2$ (the
# pseudo-values come from a token loop, to have something to check against):

# %%
gen = torch.Generator().manual_seed(0)
C, d_k, d_v = 4, 3, 2
K = F.normalize(torch.randn(C, d_k, generator=gen, dtype=torch.float64), dim=-1)
V = torch.randn(C, d_v, generator=gen, dtype=torch.float64)
Q = torch.randn(C, d_k, generator=gen, dtype=torch.float64)
beta = torch.tensor([0.9, 0.5, 0.7, 0.3], dtype=torch.float64)
S = torch.randn(d_k, d_v, generator=gen, dtype=torch.float64)  # the memory before the chunk

U_pseudo_loop = course.pseudo_values(S, K, V, beta)
print("pseudo-values u_i from the token loop:\n", U_pseudo_loop)

# %% [markdown]
# > **Symbols here.** Inside a chunk the capital letters stack the chunk's $C$ rows: $Q$, $K$, $V$
# > the queries, keys and values, $O$ the outputs, and $S$ is the matrix memory at the chunk's
# > start. The chunked algorithm keeps the letters of the DeltaNet papers, four of which mean
# > something else elsewhere in the course: $A$ is the strictly lower-triangular matrix of key
# > overlaps; $T$ is the **UT transform** (a $C \times C$ matrix, not the sequence length); $W = TK$
# > and $U = TV$ are the WY pair ($W$ is not a weight matrix); $M$ is the causal mask (not a memory).

# %% [markdown]
# ## 3. The UT transform, step by step
#
# Substitute the unrolled state into $u_i$:
# $u_i = \beta_i v_i - \beta_i S^\top k_i - \beta_i \sum_{j < i} (k_i^\top k_j)\, u_j$. Move the
# sum to the left and stack the rows ($U_{\text{pseudo}}$ is $C \times d_v$):
#
# $$(I + A)\, U_{\text{pseudo}} = \operatorname{diag}(\beta)\, V - \operatorname{diag}(\beta)\, K S,
# \qquad A = \operatorname{strictly\_lower}\big(\operatorname{diag}(\beta) K K^\top\big).$$
#
# $A$ is strictly lower-triangular (token $i$ depends only on earlier tokens of the chunk), so
# $I + A$ is unit lower-triangular and easy to invert by forward substitution. Define the **UT
# transform** $T = (I + A)^{-1}\operatorname{diag}(\beta)$; then
#
# $$U_{\text{pseudo}} = \underbrace{T V}_{U} - \underbrace{T K}_{W}\, S .$$
#
# $U$ and $W$ do **not** depend on the state $S$: they can be computed for every chunk in
# parallel, before anything sequential happens. This is the WY representation (the product of
# the $C$ matrices $I - \beta_i k_i k_i^\top$ equals $I - K^\top W$).

# %%
A = (beta[:, None] * (K @ K.T)).tril(-1)
print("A = strictly_lower(diag(beta) K K^T):\n", A)

# %% [markdown]
# **Exercise 03.ut_transform.** Given one chunk's keys `K` `[C, d_k]` and `beta` `[C]`, return
# $T = (I + A)^{-1}\operatorname{diag}(\beta)$ as a `[C, C]` tensor. Use a triangular solve
# (`torch.linalg.solve_triangular`) or write the forward substitution yourself: row $i$ of $T$
# only needs rows $j < i$. Do not call a general inverse.
#
# *Difficulty: medium · about 15 min.* **Predict first:** what is $T$ when all keys of the chunk
# are orthogonal? Is the top-left entry of $T$ always $\beta_0$?

# %% tags=["exercise"]
def ut_transform(K, beta):
    """K: [C, d_k], beta: [C] -> the chunk's UT transform T, [C, C], lower-triangular."""
    # YOUR CODE HERE
    raise NotImplementedError


# %%
ut = grade("03.ut_transform", ut_transform).function

# %% [markdown]
# Now follow the derivation with numbers: $T$, then $U = TV$ and $W = TK$, then the
# pseudo-values $U - WS$, which must equal the token loop's.

# %%
T_ut = ut(K, beta)
U, W = T_ut @ V, T_ut @ K
print("T = (I + A)^-1 diag(beta):\n", T_ut)
print("U = T V:\n", U)
print("W = T K:\n", W)
print("U - W S == pseudo-values of the token loop:", torch.allclose(U - W @ S, U_pseudo_loop))

# %% [markdown]
# With the pseudo-values the chunk is linear attention again (notebook 02), with $U_{\text{pseudo}}$
# in place of $V$:
#
# $$O = Q S + (Q K^\top \odot M)\, U_{\text{pseudo}}, \qquad S \leftarrow S + K^\top U_{\text{pseudo}} .$$

# %%
O_wy = Q @ S + (Q @ K.T).tril() @ (U - W @ S)
S_wy = S + K.T @ (U - W @ S)
o_ref, S_ref = memory.delta_rule_naive(Q[None, None], K[None, None], V[None, None], beta[None, None],
                                       initial_state=S[None, None])
print("chunk outputs == token loop:", torch.allclose(O_wy, o_ref[0, 0]))
print("memory after the chunk == token loop:", torch.allclose(S_wy, S_ref[0, 0]))
print("product of (I - beta k k^T) == I - K^T W:", torch.allclose(
    torch.linalg.multi_dot([torch.eye(d_k, dtype=K.dtype) - beta[i] * torch.outer(K[i], K[i])
                            for i in reversed(range(C))]),
    torch.eye(d_k, dtype=K.dtype) - K.T @ W))

# %% [markdown]
# **Exercise 03.delta_chunks.** Put it together: the delta rule over a whole sequence, chunk by
# chunk, with the UT transform and no loop over the tokens of a chunk. `q, k: [T, d_k]` (keys
# unit-norm), `v: [T, d_v]`, `beta: [T]`, the initial memory `S0: [d_k, d_v]` and the chunk size
# `C` (`T` need not be a multiple of `C`); return `(o [T, d_v], S_T [d_k, d_v])`. Use your `ut`
# from above (or `ut_transform`'s reference, `course.ut_transform`). The grader compares with the
# token loop `memory.delta_rule_naive` for several `T` and `C`, including `C = 1` and `C > T`.
#
# *Difficulty: medium · about 20 min.* **Predict first:** which of $T$, $U$, $W$ change when the
# memory at the chunk start changes? What should `C = 1` reduce to?

# %% tags=["exercise"]
def delta_rule_by_chunks(q, k, v, beta, S0, C):
    """q, k: [T, d_k], v: [T, d_v], beta: [T], S0: [d_k, d_v], chunk size C -> (o [T, d_v], S_T [d_k, d_v])."""
    # YOUR CODE HERE
    raise NotImplementedError


# %%
result = grade("03.delta_chunks", delta_rule_by_chunks)
o_3, S_3 = result.function(Q, K, V, beta, S, 3)  # the chunk above, cut into chunks of 3 tokens
print(f"{result.whose} chunk loop == token loop:", torch.allclose(o_3, o_ref[0, 0]) and torch.allclose(S_3, S_ref[0, 0]))

# %% [markdown]
# **Cost.** Per chunk: $K K^\top$ and $Q K^\top$ ($C^2 d$), the triangular solve ($C^2 d$), $U$,
# $W$ and the products with them ($C^2 d + C d^2$), and one $d_k \times d_k$ by $d_k \times d_v$
# product to pass the state on. In total $O(T C d + T d^2)$ work and only $T / C$ sequential steps,
# all of them matrix products. The library goes one step further: grouping everything by $S$,
# the state recurrence becomes $S \leftarrow E S + F$ with $E = I - K^\top W$ and $F = K^\top U$,
# both computed for all chunks at once, so the only loop runs over chunks and does one small
# matrix product each (see the derivation in the docstring of `memory.delta_rule_chunked`).
#
# ## 4. The gated delta rule: keep the decay inside the chunk
#
# With the gate, each step first multiplies the memory by $\alpha_i$. Let
# $g_i = \sum_{j \le i} \log\alpha_j$ be the cumulative log-decay inside the chunk,
# $\gamma_i = e^{g_i}$ and $\Gamma_{ij} = e^{g_i - g_j}$ the decay between tokens $j$ and $i$.
# The same derivation gives $S_i = \gamma_i S + \sum_{j \le i} \Gamma_{ij}\, k_j u_j^\top$ and
#
# $$A = \operatorname{strictly\_lower}\big(\operatorname{diag}(\beta)\,(K K^\top \odot \Gamma)\big),\quad
# W = T(\gamma \odot K),\quad
# O = (\gamma \odot Q) S + (Q K^\top \odot \Gamma \odot M)\, U_{\text{pseudo}},\quad
# S \leftarrow \gamma_C S + (K \odot \Gamma_{C,:})^\top U_{\text{pseudo}} .$$
#
# $\Gamma$ appears in *four* places, and a published formula for the chunked gated delta rule
# leaves it out of $A$ (`docs/paper-notes.md#gated-delta-erratum`). The omission is invisible when $\alpha = 1$, which
# is why it is easy to miss. Here is one chunk written the readable way, each line one of the
# formulas above (`gated_chunk_A` builds $A$, with or without $\Gamma$):

# %%
show_source(course.gated_chunk_A)
show_source(course.gated_chunk_wy)

# %% [markdown]
# Check both versions against the token loop:

# %%
alpha = torch.tensor([0.9, 0.6, 0.8, 0.5], dtype=torch.float64)
o_ref, S_ref = memory.delta_rule_naive(Q[None, None], K[None, None], V[None, None], beta[None, None],
                                       alpha=alpha[None, None], initial_state=S[None, None])
for with_gamma in (True, False):
    O_g, S_g = course.gated_chunk_wy(S, Q, K, V, beta, alpha, with_gamma=with_gamma)
    print(f"Gamma in A: {with_gamma!s:5}  max error of outputs {(O_g - o_ref[0, 0]).abs().max():.1e}, "
          f"of the memory {(S_g - S_ref[0, 0]).abs().max():.1e}")
ones = torch.ones_like(alpha)
O_1, _ = course.gated_chunk_wy(S, Q, K, V, beta, ones, with_gamma=False)
print("without Gamma but alpha = 1: matches the plain delta rule:", torch.allclose(O_1, O_wy))

# %% [markdown]
# ## 5. The library against the token loop
#
# `memory.delta_rule_chunked` implements all of the above for `[B, H, T, D]` tensors, any chunk
# size, any $T$ (the last chunk is padded with tokens that change nothing: $k = 0$, $\beta = 0$,
# $\alpha = 1$), an initial state, and gradients. The backward pass is not left to autograd (which
# would record every small product of the chunk loop): it is derived by hand from the same five
# steps, run in reverse, and its derivation is in the docstring of `memory._DeltaRuleChunks`.
# The state recurrence $S_{n+1} = E_n S_n + F_n$ becomes the reverse loop
# $dS_n = E_n^\top dS_{n+1} + Q_n'^\top dO_n$, and the gradient through the triangular solve is a
# product with the transposed UT transform, $(I + A)^{-\top}$. The tests check outputs, final states and
# gradients over hundreds of random shapes; here is one check you can rerun with other sizes:

# %%
def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


B, H, T, dk, dv = 2, 2, 150, 16, 8
q, k = (F.normalize(torch.randn(B, H, T, dk, generator=gen), dim=-1) for _ in range(2))
v = torch.randn(B, H, T, dv, generator=gen)
b_ = torch.rand(B, H, T, generator=gen)
a_ = 0.8 + 0.2 * torch.rand(B, H, T, generator=gen)
S0 = torch.randn(B, H, dk, dv, generator=gen)
leaves = [x.clone().requires_grad_() for x in (q, k, v, b_, a_, S0)]
upstream = torch.randn(B, H, T, dv, generator=gen)


def outputs_and_grads(fn, **kw):
    for x in leaves:
        x.grad = None
    o, S_T = fn(*leaves[:4], alpha=leaves[4], initial_state=leaves[5], **kw)
    ((o * upstream).sum() + S_T.sum()).backward()
    return o.detach(), S_T.detach(), [x.grad.clone() for x in leaves]


o_n, S_n, g_n = outputs_and_grads(memory.delta_rule_naive)
for C in (1, 16, 64):
    o_c, S_c, g_c = outputs_and_grads(memory.delta_rule_chunked, chunk_size=C)
    worst_grad = max(rel_err(gc, gn) for gc, gn in zip(g_c, g_n))
    print(f"chunk_size={C:>3}: outputs {rel_err(o_c, o_n):.1e}, final state {rel_err(S_c, S_n):.1e}, "
          f"worst input gradient {worst_grad:.1e}   (float32, gated, T={T})")

# %% [markdown]
# ## 6. Speed on your machine
#
# The token loop's time grows linearly in $T$ with a large constant (thousands of tiny
# operations); the chunked version also grows linearly but does its work in matrix products.
# Left: forward time against $T$ at chunk size 64. Right: the chunked version against the chunk
# size: small chunks mean many sequential steps, large ones mean more $C^2$ work per token; the
# best value depends on the hardware (64 is the library's default).

# %%
speed_BH = config.by_preset(tiny=2, laptop=8, full=16)
speed_d = config.by_preset(tiny=32, laptop=64, full=64)
speed_Ts = config.by_preset(tiny=[64, 256], laptop=[256, 1024, 4096], full=[1024, 4096, 16384])
speed = course.speed_sweep(speed_Ts, [16, 32, 64, 128], BH=speed_BH, d=speed_d,
                           repeat=config.by_preset(tiny=2, laptop=3, full=5))
fig = plt.figure(figsize=(10, 3.2), layout="constrained")
course.draw_speed(fig, speed, BH=speed_BH, d=speed_d)
plt.show()
for T_, tn, tc in zip(speed["Ts"], speed["naive"], speed["chunked"]):
    print(f"T={T_:>6}: chunked is {tn / tc:5.1f}x faster than the token loop (forward)")

# %% [markdown]
# For careful numbers (forward and backward, tokens per second, the fraction of this machine's
# plain-matmul FLOP rate reached, JSON output) run the benchmark suite:
# `python -m nlteach.bench memory` (add `--device cuda` on a GPU, `--T 4096 --BH 8 --d 64` for
# other shapes; it times chunk sizes 32, 64 and 128 and reports each number for the fastest).
#
# **Choices made here.** The read is inclusive ($o_t = S_t^\top q_t$ after token $t$'s write).
# Keys are L2-normalized in every example: with unit keys $I - \beta k k^\top$ only shrinks the
# memory for $\beta \in [0, 2]$, and $I + A$ stays well conditioned; with large un-normalized keys
# the entries of $A$ grow with $\lVert k\rVert^2$ and the triangular solve loses precision. The library checks $\beta \in [0, 2]$ and
# $\alpha \in (0, 1]$ and computes bfloat16/float16 inputs in float32 (with a float32 state).
# The triangular system is solved with `torch.linalg.solve_triangular` for all chunks in one call.

# %% [markdown]
# ## Recap
#
# **What you can now do.**
#
# - Write the delta rule and the gated delta rule as recurrences on a matrix memory and say what the
#   retention $\alpha_t$ and the step $\beta_t$ do.
# - *(Deep dive)* Explain why a chunk of delta-rule writes is a product of matrices, turn it back
#   into a sum with the UT transform (one unit lower-triangular solve), and keep the decay in the
#   four places the gated version needs it.
# - Test a fast implementation against a readable reference, and time both.
#
# **What the next notebook adds.** Notebook 04 replaces the matrix by a small network trained at
# test time (Titans): an MLP memory, momentum that makes surprise persist, and a forgetting gate.
