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
# # 05 · Levels and clocks
#
# Notebooks 01-04 built memories that learn while they read: linear attention, the delta rule,
# Titans. Each one is an optimization problem solved one step per token, sitting inside a model
# that is itself trained by another optimization problem. This notebook gives that picture its
# vocabulary (Sec. 3 of the paper, arXiv v1):
#
# 1. **update frequency** and the **ordering** of components (Def. 2);
# 2. a model drawn as a set of **nested optimization problems** (SGD + momentum, a Transformer
#    block, Titans);
# 3. the **level clock**: which level updates at which step (periods 1, 4, 16, 64), as a widget,
#    and an exercise to write its rule;
# 4. the **five ways knowledge moves between levels**, each with a one-cell example.
#
# Notebook 07 uses the clock to build the Continuum Memory System.

# %% [markdown]
# ## Objectives
#
# After this notebook you will be able to:
#
# - order the components of a model by update frequency into levels (Def. 2);
# - draw SGD with momentum, a Transformer block and Titans as nested optimization problems;
# - write the level clock and name the five ways knowledge moves between levels.
#
# **Paper:** Sec. 3, Def. 2. **Prerequisites:** notebooks 01, 04. **Time at the laptop preset:** < 1 min.

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
# %matplotlib inline
import ipywidgets as widgets
import torch
from IPython.display import display

from nlteach import config
from nlteach.clock import LevelClock
from nlteach.course.nb05_levels import draw_nested_system, draw_timeline
from nlteach.course.widgets import interactive_figure, render
from nlteach.exercises import grade

print(config.describe())
gen = config.seed_everything(0)

# %% [markdown]
# ## 1. Update frequency and level ordering (Def. 2)
#
# The paper measures time in **updates on one data point**: one token at test time, one example
# (or one batch) in training. The **frequency** $f_A$ of a component $A$ is how many times it
# updates per unit of time. Components are then ordered:
#
# - $A$ is **faster** than $B$ if $f_A > f_B$, or if $f_A = f_B$ but computing $B$'s state at
#   time $t$ needs $A$'s state at time $t$ first;
# - components with the same frequency (and no such dependency) form a **level**; a higher
#   level is slower.
#
# Training a linear model with SGD and momentum has two components that both change every step:
# the momentum $m$ and the weights $W$. The update
# $m_{t+1} = a\, m_t - \eta g_t,\ W_{t+1} = W_t + m_{t+1}$ needs the new momentum before the
# new weights, so by Def. 2 the momentum is the faster level even though both tick once per step.
# The cell counts the updates and records the order in which they happen.

# %%
W = torch.zeros(3, requires_grad=True)
opt = torch.optim.SGD([W], lr=0.1, momentum=0.9)
w_true = torch.tensor([1.0, -2.0, 0.5])
n_updates = {"momentum m": 0, "weights W": 0}
uses_new_momentum = []
n_steps = 5
for step in range(1, n_steps + 1):
    x = torch.randn(8, 3, generator=gen)
    loss = ((x @ W - x @ w_true) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    m_before = opt.state[W].get("momentum_buffer")
    m_before = None if m_before is None else m_before.clone()
    W_before = W.detach().clone()
    opt.step()
    m_after = opt.state[W]["momentum_buffer"]
    n_updates["momentum m"] += int(m_before is None or not torch.equal(m_after, m_before))
    n_updates["weights W"] += int(not torch.equal(W.detach(), W_before))
    # did W move by -lr times the momentum of *this* step (so m had to be computed first)?
    uses_new_momentum.append(torch.allclose(W.detach() - W_before, -0.1 * m_after))
for name, n in n_updates.items():
    print(f"{name:11s}: {n} updates in {n_steps} steps -> frequency {n / n_steps:.0f} per step")
print("each weight update used the momentum computed in the same step:", all(uses_new_momentum))

# %% [markdown]
# A Transformer at test time is the extreme case: the attention "memory" (its key-value cache)
# is rewritten with every token, frequency $\infty$ in the paper's words, while the MLP and
# projection weights never change after training, frequency 0. Nothing lives in between. The
# Continuum Memory System (notebook 07) fills that gap with blocks that update every
# $C^{(\ell)}$ tokens.

# %% [markdown]
# ## 2. A model is a set of nested optimization problems
#
# Each level has **its own objective**, **its own context flow** (the data it compresses) and
# **its own gradient flow**; each is solved by one (proximal) gradient step at a time. The
# drawings put the slowest level outside and the faster ones inside. They are plain library
# functions (`nlteach.course.nb05_levels.draw_nested_system`), so you can print `NESTED_SYSTEMS`
# (same module) to read the same content as text.

# %%
for system in ("sgd_momentum", "transformer", "titans"):
    display(render(draw_nested_system, {"system": system}, figsize=(9, 2.6 if system != "titans" else 3.2)))

# %% [markdown]
# Read the SGD-with-momentum drawing as the paper's Sec. 4 does: the momentum is an associative
# memory whose context flow is the stream of gradients and whose objective is a dot-product
# loss, $\langle m, g_t\rangle$ (one gradient step on it with retention $a$ gives
# $m_{t+1} = a\, m_t - \eta g_t$); the weights are the outer
# memory, fed by the data. Titans adds a level *inside the forward pass*: the memory MLP is
# trained at test time on the keys and values of the sequence, with its own momentum (the
# "surprise") one level faster still.

# %% [markdown]
# ## 3. The level clock
#
# In the Continuum Memory System, level $\ell$ has a chunk size (period) $C^{(\ell)}$ and changes
# only once every $C^{(\ell)}$ steps (Eq. 71). "Level clock" is this course's name for that
# schedule; the paper has the chunk sizes but no name for the whole. The rule used everywhere in
# the library:
#
# > steps are counted from 1, and level $\ell$ updates at step $s$ when $s \bmod C^{(\ell)} = 0$.
#
# So with periods (1, 4, 16, 64), step 1 updates only level 0, step 16 updates levels 0, 1, 2
# and step 64 all four. `LevelClock` implements it, with helpers to count and draw.

# %%
clock = LevelClock((1, 4, 16, 64))
for s in (1, 4, 16, 63, 64):
    print(f"step {s:2d}: due = {clock.due(s)}   gradients waiting after the step = {clock.pending(s)}")
print("updates in 256 steps:", clock.count(256), "| frequencies:", clock.frequencies())

# %% [markdown]
# The widget draws the timeline: one row per level, a square at every step where it updates.
# Move `step` to see which levels fire; the bar chart shows how many gradients each level has
# accumulated so far (a slow level collects them and applies them at once, Eq. 71). `ratio`
# changes the periods to $1, r, r^2, r^3$.

# %%
step_slider = widgets.IntSlider(value=16, min=1, max=64, description="step", continuous_update=False)
ratio_slider = widgets.IntSlider(value=4, min=1, max=4, description="ratio", continuous_update=False)
interactive_figure(draw_timeline, {"step": step_slider, "ratio": ratio_slider}, figsize=(9, 2.8));

# %% [markdown]
# **Exercise 05.clock_due.** Write the clock rule: given a sequence of periods and a step `s`
# (counted from 1), return a tuple with one bool per level saying whether it updates at `s`.
#
# *Difficulty: easy · about 5 min.* **Predict first:** with periods (1, 4, 16, 64), how many
# levels update at step 48? At step 0, if steps were counted from 0?

# %% tags=["exercise"]
def clock_due(periods, s):
    """periods: e.g. (1, 4, 16, 64); s >= 1 -> tuple of bools, one per level."""
    # YOUR CODE HERE
    raise NotImplementedError


# %%
result = grade("05.clock_due", clock_due)
clock_due_fn = result.function
print([clock_due_fn((1, 4, 16, 64), s) for s in (3, 4, 16)])

# %% [markdown]
# **Exercise 05.multi_frequency.** The clock says *when* a level moves; Eq. 71 says *by how much*:
# a level of period $C$ collects one gradient per step, each taken at its parameters as they are
# (unchanged since its last update), and when its clock fires it takes one step with the **sum**
# of what it collected. Write this for plain SGD: `W0: [K, n]` holds level $l$'s parameters in row
# $l$; `grad_fn(s, W)` returns the gradients `[K, n]` of step `s` (counted from 1) at the current
# parameters `W`; return the parameters after every step, `[steps, K, n]`. The grader compares with
# the library's `MultiFrequencyOptimizer` (notebook 07) around `torch.optim.SGD`.
#
# *Difficulty: medium · about 15 min.* **Predict first:** with periods (1, 4), a constant
# gradient $g$ and learning rate $\eta$, where is level 1 after 3 steps, and after 4? If the
# gradient depends on the parameters, is a period-4 level after 4 steps where 4 plain SGD steps
# of size $\eta$ would have taken it?

# %% tags=["exercise"]
def multi_frequency_sgd(W0, grad_fn, periods, lr, steps):
    """W0: [K, n]; grad_fn(s, W) -> [K, n]; periods: K ints; lr: float -> parameters after every step, [steps, K, n]."""
    # YOUR CODE HERE
    raise NotImplementedError


# %%
result = grade("05.multi_frequency", multi_frequency_sgd)
target = torch.ones(2, 1)
path = result.function(torch.zeros(2, 1), lambda s, W: W - target, (1, 4), 0.3, 8)  # pull both levels to 1
print(f"{result.whose} rule, periods (1, 4), pulled towards 1: level 0 {path[:, 0, 0].numpy().round(3)}")
print(f"{' ' * len(result.whose)}                                level 1 {path[:, 1, 0].numpy().round(3)}")

# %% [markdown]
# ## 4. How knowledge moves between levels
#
# Levels are not isolated: something learned at one frequency has to reach the others. The paper
# (Sec. 3) lists the channels. Each cell below shows one of them with a fast level (a linear
# memory $S$ written once per token) and a slow level (parameters trained across sequences).

# %% [markdown]
# **(1) Conditioning on another level's parameters.** The fast level's objective is built with the
# slow level's parameters: here the keys it stores are $k_t = W_k x_t$, with $W_k$ slow. Change
# $W_k$ and the same sequence writes a different memory.

# %%
d = 4
xs = torch.randn(6, d, generator=gen)
vs = torch.randn(6, d, generator=gen)
W_k_a, W_k_b = torch.randn(d, d, generator=gen), torch.randn(d, d, generator=gen)
S_a = sum(torch.outer(W_k_a @ x, v) for x, v in zip(xs, vs))  # fast memory: S += k v^T
S_b = sum(torch.outer(W_k_b @ x, v) for x, v in zip(xs, vs))
print(f"same sequence, two slow W_k: the fast memories differ by {torch.linalg.norm(S_a - S_b):.2f} "
      f"(norms {torch.linalg.norm(S_a):.2f}, {torch.linalg.norm(S_b):.2f})")

# %% [markdown]
# **(2) Attention over another level's outputs (non-parametric).** No parameter is shared: one
# level reads the *outputs* of another through softmax attention. Here a query attends over the
# outputs $o_t = S_t^\top q_t$ the fast memory produced along the sequence; the result is a convex
# combination of them.

# %%
q = torch.randn(d, generator=gen)
S, outs = torch.zeros(d, d), []
for x, v in zip(xs, vs):
    S = S + torch.outer(x, v)
    outs.append(S.T @ x)
outs = torch.stack(outs)  # [T, d]: the fast level's outputs
weights = torch.softmax(outs @ q / d ** 0.5, dim=0)
read = weights @ outs
print("attention weights over the fast level's outputs:", weights.numpy().round(3), "sum =", float(weights.sum()))

# %% [markdown]
# **(3) Backpropagation through both levels.** The fast level takes a gradient step on its own
# loss; the slow level's loss is measured *after* that step, so its gradient flows back through
# the fast update. Below, the slow parameter $W_k$ only enters through the inner delta-rule step,
# and still gets a gradient.

# %%
W_k = torch.randn(d, d, generator=gen, requires_grad=True)
S0 = torch.zeros(d, d)
k = W_k @ xs[0]
S1 = S0 - 0.5 * torch.outer(k, S0.T @ k - vs[0])  # fast level: one GD step on 1/2 ||S^T k - v||^2
outer_loss = ((S1.T @ xs[1] - vs[1]) ** 2).sum()  # slow level's loss, after the inner step
outer_loss.backward()
print(f"gradient reaching the slow W_k through the fast update: norm {W_k.grad.norm():.3f}")

# %% [markdown]
# **(4) Initialization (meta-learning).** The slow level learns the *initial state* of the fast
# one, MAML-style: the fast level restarts from it on every new sequence and adapts with a few
# steps. Here the slow level runs first-order MAML over tasks $v = M x$ whose maps $M$ share a
# common part; the learned initial state makes the fast level's loss after 2 steps smaller than
# starting from zero.

# %%
M_common = torch.randn(d, d, generator=gen)


def task_batch(g):
    M = M_common + 0.3 * torch.randn(d, d, generator=g)
    x = torch.randn(16, d, generator=g)
    return x, x @ M.T


def adapt(S0, x, v, steps=2, lr=0.05):
    S = S0.clone()
    for _ in range(steps):
        S = S - lr * x.T @ (x @ S - v) / len(x)  # fast level: GD on 1/2 ||x S - v||^2
    return S


S_init = torch.zeros(d, d)
for _ in range(config.by_preset(tiny=100, laptop=300, full=300)):  # slow level: first-order MAML
    x, v = task_batch(gen)
    S = adapt(S_init, x, v)
    S_init = S_init - 0.2 * x.T @ (x @ S - v) / len(x)  # outer step with the post-adaptation gradient
x, v = task_batch(gen)
for name, S0 in (("zero init", torch.zeros(d, d)), ("meta-learned init", S_init)):
    print(f"{name:18s}: loss after 2 fast steps = {((x @ adapt(S0, x, v) - v) ** 2).mean():.3f}")

# %% [markdown]
# **(5) Generation: one level produces another's weights or context.** A hypernetwork at the slow
# level generates the fast level's parameters (here its per-token learning rate
# $\eta_t = \mathrm{sigmoid}(w^\top x_t)$). The paper puts optimizers here too: the architecture,
# through backpropagation, *generates* the gradients that the optimizer's memory (momentum)
# stores. Self-modifying Titans (notebook 08) generate their own keys, values and learning rates.

# %%
w_gen = torch.zeros(d, requires_grad=True)  # slow level: the generator
S = torch.zeros(d, d)
for x, v in zip(xs, vs):
    eta = torch.sigmoid(w_gen @ x)  # generated by the slow level, per token
    S = S - eta * torch.outer(x, S.T @ x - v)  # fast level: delta rule with the generated rate
loss = ((S.T @ xs[0] - vs[0]) ** 2).sum()
loss.backward()
print(f"rates generated for the sequence start at sigmoid(0) = 0.5; gradient on the generator: {w_gen.grad.numpy().round(3)}")

# %% [markdown]
# ## Recap
#
# **What you can now do.**
#
# - Count time in updates on one data point, give each component its frequency (updates per unit
#   of time), and group equal frequencies into levels ordered by dependency (Def. 2).
# - Draw a model as a stack of optimization problems, each with its own objective, context flow and
#   gradient flow: SGD with momentum already has two levels, a Transformer has frequencies $\infty$
#   and 0 only, Titans adds a test-time level.
# - Write the level clock (steps from 1; level $\ell$ updates when $s \bmod C^{(\ell)} = 0$).
# - Name the ways knowledge moves between levels: conditioning, attention over outputs,
#   backpropagation through both, meta-learned initial states, generated weights or context.
#
# **What the next notebook adds.** Notebook 06 applies the level view to the optimizer itself:
# momentum, Adam and gradient descent on a layer are associative memories, and changing their
# objectives gives delta momentum, DMGD, M3 and DGD.
