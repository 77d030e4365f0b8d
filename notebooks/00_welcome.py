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
# # 00 · Welcome to the Nested Learning course
#
# This course takes apart one paper, Behrouz, Razaviyayn, Zhong and Mirrokni, *Nested Learning:
# The Illusion of Deep Learning Architectures* (arXiv 2512.24695, v1), and rebuilds every
# mechanism in it with small, tested PyTorch code: associative memory, level clocks, optimizers
# as memories, the Continuum Memory System (CMS), self-modifying Titans and the HOPE architecture.
# It ends with real language-model training and forgetting experiments, measured with seeds.
#
# This notebook tells the paper's story in one page, lists what each notebook teaches (the
# syllabus), checks your set-up, shows the three conventions used everywhere (**size presets**,
# **widgets** and **exercises**) and fixes the notation of the whole course.
#
# Opened with `make lab`, you are in `notebooks-work/`, your own git-ignored copy of the course:
# run, edit and save freely (the README says how to refresh it when the course changes).

# %% [markdown]
# ## Objectives
#
# After this notebook you will be able to:
#
# - say what the paper diagnoses, what "nested learning" and the title's "illusion" mean, and which notebook teaches each contribution;
# - run the course at a size preset and use its widgets and graded exercises;
# - read every notebook's equations in the course's one notation.
#
# **Paper:** abstract, Sec. 1, Defs. 1-2. **Prerequisites:** PyTorch; the Transformer block. **Time at the laptop preset:** < 1 min.

# %% [markdown]
# ## The paper in one page
#
# **The diagnosis.** A trained language model remembers in two ways only. What it read in the
# current context lives in attention (its keys and values): precise, but gone once it falls out
# of the window. What it learned in pre-training lives in its weights: lasting, but frozen, so
# nothing the model reads at test time ever becomes part of it. Between "right now" and "long
# ago" there is nothing. The paper compares this with *anterograde amnesia*, a condition in which
# a patient keeps old memories and a few minutes of the present but can no longer form new lasting
# memories. Every deployed model lives in that state: each conversation is a present that never
# reaches its long-term memory.
#
# **The proposal: nested learning.** Look at every part of a model as an associative memory, an
# operator that maps keys to values and is *written* by an optimization step on its own
# objective (Def. 1, notebook 01). Attention is one (it is rewritten with every token), a layer's
# weights are another (written by backpropagation), momentum in the optimizer is a third (it
# compresses the stream of gradients). Each such memory is an optimization problem with its own
# **context flow** (the data it sees) and its own **update frequency** (how often it is written,
# Def. 2, notebook 05). Ordering the problems by frequency gives **levels**: a model is a set of
# nested, or parallel, optimization problems, the fast ones sitting inside the slow ones.
#
# **The "illusion" of the title.** Stacking more layers makes a network *deeper*, but every layer
# in the stack still learns at one and the same frequency, once per optimizer step and never at
# test time. In the paper's view the depth that matters for learning and memory is the number of
# **levels** of nested optimization, and in that sense a deep Transformer is shallow: two levels,
# attention (every token) and weights (frozen after training). The depth of the stack hides the
# flatness of the learning.
#
# **The contributions**, and where the course teaches each one:
#
# 1. **Optimizers are associative memories** ("deep optimizers"): momentum, Adam's moments and
#    gradient descent on a layer are memories of gradients; changing their objective gives delta
#    momentum, deep momentum (DMGD), delta gradient descent (DGD) and the multi-scale M3
#    optimizer. Notebook 06.
# 2. **Self-modifying Titans**: a Titans memory (notebook 04) whose key, value, learning-rate and
#    retention projections are memories too, updated in context, each generating its own targets.
#    Notebook 08.
# 3. **The Continuum Memory System (CMS)**: a chain of MLP blocks, each updated at its own
#    frequency, filling the gap between attention and frozen weights. Notebook 07.
# 4. **HOPE**: self-modifying Titans followed by a CMS, trained as a language model. Notebook 09,
#    with forgetting (10) and long-context (11) experiments, and full-size runs (12).
#
# Notebooks 01-03 give the vocabulary (memories and their write rules), 04 the deep memory that
# 08 builds on, 05 the levels and clocks that 06-09 rely on.
#
# **Two paths through the course.** Every mechanism is written twice: a *naive* token loop that
# reads like the equations, and a *chunked* version that computes a block of tokens with matrix
# products (tested equal). The chunked algorithms are not the paper's: they come from the
# linear-attention and delta-rule line of work, in particular DeltaNet (Yang et al., 2024,
# *Parallelizing Linear Transformers with the Delta Rule over Sequence Length*) and Gated DeltaNet
# (Yang, Kautz and Hatamizadeh, *Gated Delta Networks*), and Titans' own mini-batch training. The
# sections that make things fast (chunked forms, the hand-written backward pass, speed
# measurements) are marked **optional deep dive** in the table below: skip them and you still get
# every idea of the paper (the conceptual path).
#
# ### Syllabus
#
# Times are for a top-to-bottom run at the `laptop` preset on a 2-core CPU; they come from
# `nlteach.course.nb00_welcome.SYLLABUS`, like each notebook's objectives cell.
#
# <!-- syllabus:start -->
# | notebook | you will be able to ... | paper | prerequisites | optional deep dive | laptop time |
# | --- | --- | --- | --- | --- | --- |
# | **00** Welcome | say what the paper diagnoses, what "nested learning" and the title's "illusion" mean, and which notebook teaches each contribution; run the course at a size preset and use its widgets and graded exercises; read every notebook's equations in the course's one notation | abstract, Sec. 1, Defs. 1-2 | PyTorch; the Transformer block | - | < 1 min |
# | **01** Associative memory | define an associative memory as the solution of an optimization problem (Def. 1); derive the Hebbian and the delta-rule write as one gradient step on a dot-product and on an L2 objective, and code both; measure capacity and interference, and explain why the delta rule can overwrite | Def. 1; the dot-product and L2 objectives | 00 | - | < 1 min |
# | **02** Attention is associative memory | show that softmax attention is the non-parametric solution of a regression over the context; derive linear attention as one gradient step per token, and Linear Attention++ as an MLP weight with a faster level; place attention and MLP weights on the frequency axis | Def. 1 applied to attention; Linear Attention++ | 01 | section 5 (chunked linear attention, speed) | < 1 min |
# | **03** The delta rule and chunking | write the delta rule and the gated delta rule as recurrences on a matrix memory; derive the chunked (WY/UT) form with one triangular solve per chunk and test it against the token loop; spot why a chunked gated rule needs the decay in four places | the L2 objective (Def. 1); chunked form: DeltaNet (Yang et al., 2024), Gated DeltaNet | 01, 02 | sections 2-6 (the whole chunked algorithm and its speed); section 1 is the concept | < 1 min |
# | **04** Deep memory (Titans) | run a Titans memory token by token: an MLP trained at test time with momentum and forgetting; explain why an MLP memory stores more pairs than a matrix of the same width, and what surprise, momentum and forgetting do; trade chunk size against staleness of the gradients | Titans (arXiv 2501.00663) Sec. 3; Sec. 8, Eq. 89 | 01, 03 section 1 | sections 5-6 (the chunked dual form and the chunk-size trade-off) | 1 min |
# | **05** Levels and clocks | order the components of a model by update frequency into levels (Def. 2); draw SGD with momentum, a Transformer block and Titans as nested optimization problems; write the level clock and name the five ways knowledge moves between levels | Sec. 3, Def. 2 | 01, 04 | - | < 1 min |
# | **06** Optimizers are memories | read momentum, Adam's moments and a layer trained by gradient descent as associative memories; derive delta momentum and delta gradient descent (DGD, Eq. 57) from their objectives; compare the paper's optimizers on two small tasks, with seeds and spreads | Sec. 4 (Eqs. 47-57, Algorithm 1), App. B | 01, 05 | - | < 1 min |
# | **07** Continuum Memory System | build the sequential, nested and independent CMS variants; train a CMS with a multi-frequency optimizer and write Eq. 71 as a token loop; judge, from a paired interval over seeds, whether a CMS keeps an old task better | Sec. 7, Eqs. 70-74 | 05 | in section 3, the chunked in-context form | < 1 min |
# | **08** Self-modifying Titans | read the self-modifying Titans reference loop line by line against Eqs. 83-88; write one memory's DGD update with weight decay, and explain the stability choice (b); watch generated keys and learning rates drift inside a sequence | Sec. 8, Eqs. 79-93 | 04, 06 section 7 | section 5 (two chunk sizes and the chunked version; its hand-written backward pass is in `nlteach.titans`) | < 1 min |
# | **09** HOPE | assemble a HOPE block: self-modifying Titans followed by an in-context CMS; compare HOPE with a Transformer, Titans and Hope-Attention at equal parameters and tokens; read an ablation with seeds and say what it does and does not show | Sec. 8, Eqs. 94-97; Table 2 and Table 6 | 07, 08 | - | < 1 min |
# | **10** Forgetting experiments | measure forgetting with an accuracy matrix, average accuracy, backward transfer and forgetting; run fine-tuning, EWC, replay, LwF, a CMS learner and a HOPE-style learner on the same streams; compare the result with the paper's continual-learning claim | Sec. 9.1 | 07, 09 | - | 1 min |
# | **11** Long context | measure recall against context length (needle in a haystack, MQAR); study the number and the slowest frequency of CMS levels (after Fig. 7); pose formal languages as recognition, train short and test long (Table 5) | Sec. 9 (Table 1, Table 5, Fig. 7) | 09 | - | < 1 min |
# | **12** Full-size runs | compute what a preset costs in parameters, tokens and FLOPs, and explain why a memory model's cost relative to attention changes with the sequence length and the hardware; explain what data parallelism (torchrun, DDP) computes and keeps exactly equal, what a checkpoint needs for an exact resume, and what bf16 autocast changes on a GPU; launch every experiment at the full preset on one GPU or several, and read the results: learning curves, paired seeds and the verdict rule, provenance | Sec. 9 (the experiments) | 03, 09, 10, 11 | - | < 1 min |
#
# Laptop time: wall-clock minutes to run the notebook top to bottom at the laptop preset on 2 CPU cores, measured by `python -m tools.time_notebooks` (`results/notebook_times_laptop/results.json`), with live training off (`TRAIN_LIVE = False`, the default: slow cells load the committed results; each notebook's flag cell states what turning it on costs).
# <!-- syllabus:end -->

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


# %% [markdown]
# ## 1. Environment check
# Each line says OK or FAIL. A FAIL on a required package means the environment is broken:
# re-run `make lab` (it re-installs) or see the README's set-up section.

# %%
import ipywidgets as widgets
import torch

from nlteach import config
from nlteach.course import nb00_welcome as course
from nlteach.course.widgets import interactive_figure
from nlteach.exercises import grade

all_ok = course.print_environment_report()
print("\nall required packages present:", all_ok)
print(config.describe())

# %% [markdown]
# ## 2. Size presets
# Every experiment in the course has three sizes, chosen by the environment variable
# `NLTEACH_SIZE` before Jupyter starts:
#
# | preset | meant for | typical cost |
# | --- | --- | --- |
# | `tiny` | continuous integration; checks that the code runs | seconds per notebook, numbers meaningless |
# | `laptop` (default) | reading the course on a CPU | minutes per experiment |
# | `full` | one GPU (several with `torchrun`) | the real experiments |
#
# Notebooks never hard-code a size. They ask the library, which picks the value of the active
# preset; a wrong preset name is an error that lists the valid ones.

# %%
n_steps = config.by_preset(tiny=20, laptop=500, full=5_000)
print(f"preset {config.get_preset()!r}: an experiment here would run {n_steps} steps")
try:
    config.get_preset("huge")
except ValueError as err:
    print("a bad preset name gives:", err)

# %% [markdown]
# The device is chosen the same way: CUDA if present, else the CPU (Apple's MPS only on request,
# `config.get_device(allow_mps=True)`). Randomness is always seeded explicitly:
# `config.seed_everything(seed)` seeds Python, NumPy and PyTorch and returns a `torch.Generator`
# that library functions accept.

# %%
device = config.get_device()
gen = config.seed_everything(0)
print("device:", device, "| first random draw with seed 0:", torch.randn(3, generator=gen))

# %% [markdown]
# ## 3. Widgets
# Widgets let you move a parameter and watch a memory change. Where widgets cannot run (on GitHub,
# in a PDF, or in a saved notebook reopened before you trust it) each shows a static figure at its
# default values instead.
#
# The smallest memory in the course is a **running average** of a stream,
# $m_t = \beta\, m_{t-1} + (1-\beta)\, x_t$: one number that remembers the recent past. Move
# $\beta$: a larger $\beta$ remembers longer and reacts more slowly. The right panel shows how much
# each past input weighs in $m_t$. (Notebook 06 shows that momentum in an optimizer is exactly this
# memory, applied to gradients.)

# %%
beta_slider = widgets.FloatSlider(value=0.9, min=0.0, max=0.99, step=0.01, description="beta",
                                  continuous_update=False)
interactive_figure(course.draw_ema, {"beta": beta_slider});

# %% [markdown]
# ## 4. Exercises
# Exercises are functions with a body for you to write. The cell after each one calls a grader
# that compares your function with the library's reference on fixed inputs. Until you attempt an
# exercise it says "Not attempted yet". When your answer is wrong it explains what is wrong and gives
# a hint (the idea, not the answer); the solution comes after three failed attempts, or at once
# with `grade(..., show_solution=True)`. When your function raises an error, the grader shows the
# inputs (their shapes) it was called with. Every verdict ends by saying which version the next
# cells use: yours once it passes, the library's reference until then, so you can always run
# everything top to bottom. Full solutions are in `solutions/` (try first!).
#
# Each exercise states its difficulty, an expected time and a **Predict first** question: answer
# it (on paper, or in your head) before you write code, then check it against what you get.
#
# **Exercise 00.ema.** Write the running average: given a 1-D tensor `x` of length T and `beta`,
# return a tensor of length T whose entry t is $m_t$, starting from $m_0 = 0$.
#
# *Difficulty: easy · about 5 min.* **Predict first:** for `x = [1, 1, 1, 1]` and `beta = 0.5`,
# what are the four averages? Why do they start below 1?

# %% tags=["exercise"]
def ema(x, beta):
    """x: [T], beta: float -> the running averages m_1 .. m_T, [T] (starting from m_0 = 0)."""
    # YOUR CODE HERE
    raise NotImplementedError


# %%
result = grade("00.ema", ema)
ema_fn = result.function  # yours if it passed, the library's reference otherwise
print(ema_fn(torch.tensor([1.0, 1.0, 1.0, 1.0]), 0.5))

# %% [markdown]
# ## 5. Notation
# The course follows the paper's arXiv v1 and cites its equations as "Eq. N (arXiv v1)"; the
# NeurIPS 2025 version renumbers them. One notation holds in every notebook. The paper itself
# reuses letters from section to section (in Titans $\eta$ is a momentum, in Sec. 8 a learning
# rate); the course does not, and where a notebook must keep another paper's letters or a
# library's names, a **"Symbols here"** box at that spot says which letter means what.
#
# | symbol | meaning | shape in code |
# | --- | --- | --- |
# | $B, H, T$ | batch, heads, sequence length (time) | tensors are `[B, H, T, D]` |
# | $x_t$, $u_t$ | input of token $t$; $u_t$ is what a memory or a CMS level reads | `[B, T, D]` |
# | $q_t, k_t$ | query and key of token $t$ (keys usually L2-normalized) | `[B, H, T, d_k]` |
# | $v_t$, $o_t$ | value of token $t$; output read from a memory | `[B, H, T, d_v]` |
# | $Q, K, V, O$ | one chunk's queries, keys, values, outputs stacked as rows (chunked forms) | `[C, d]` |
# | $\mathcal{M}$, $\mathcal{M}_t$ | a memory: a map from keys to values that is written (a matrix or an MLP); after token $t$ | weights `[B, H, ...]` |
# | $S_t$ | a matrix memory after token $t$, read as $o_t = S_t^\top q_t$ (includes token $t$'s own write; notebooks 01-03) | `[B, H, d_k, d_v]` |
# | $W$ | weights of a layer or of an MLP memory ($W_\text{in}$, $W_\text{out}$; $W_1$, $W_2$ in Eq. 89) | |
# | $\theta$ | the parameters of a level (notebook 07's Eq. 71) | |
# | $\mathcal{L}$, $\ell_t$ | the objective of a memory or level; the loss of token $t$ | |
# | $g_t$ | a gradient | |
# | $\eta_t$ | **learning rate** (step size) of a gradient step, at any level | `[B, H, T]` or a number |
# | $\beta_t$ | the delta rule's step size (its learning rate, under DeltaNet's name); see below the table | `[B, H, T]`, in [0, 2] |
# | $\alpha_t$ | **retention**: the fraction of the old memory kept before a write ($\alpha_t = 1$ keeps everything) | `[B, H, T]`, in (0, 1] |
# | $m_t$, $a$ | momentum, and its retention (how much of the old momentum is kept) | |
# | $\beta$, $\beta_1$, $\beta_2$ | coefficients of running averages: the running average of section 3, Adam's two moments (PyTorch's names) | |
# | $C$ | chunk size of a chunked (parallel) implementation | int |
# | $C^{(\ell)}$, period | update period of level $\ell$ (a level updates every $C^{(\ell)}$ steps) | int |
# | $f$ | update frequency = updates per unit of time; higher level = lower frequency | |
# | $\sigma$ | the memories' nonlinearity, SiLU ($z \cdot \mathrm{sigmoid}(z)$); the sigmoid is always written out | |
#
# Boxes: notebook 03 (the letters of the chunked delta rule: $A$, $T$, $W$, $U$, $M$), notebook 04
# (Titans' letters: $\theta_t$ the learning rate, $\eta_t$ the momentum retention, $S_t$ the
# momentum, $\alpha_t$ the amount forgotten), notebook 06 (the optimizers' extra coefficients),
# notebook 08 (the library's names `S2`, `S1`, `M`) and notebook 10 ($T$ tasks, the accuracy
# matrix $R$).
#
# Why $\beta_t$ may go up to 2: with unit-norm keys the delta rule multiplies the memory by
# $I - \beta_t k_t k_t^\top$, which scales the direction $k_t$ by $1 - \beta_t$ and leaves the
# others alone. For $\beta_t \in (0, 2)$ that factor is below 1 in size, so the old content along
# $k_t$ shrinks (a contraction); $\beta_t = 1$ replaces it exactly, and $\beta_t > 1$ overshoots
# but stays stable. The library accepts $[0, 2]$ and rejects anything else.
#
# Two words recur: **naive** is the token-by-token reference that reads like the equation;
# **chunked** is the fast version that processes a block of tokens with matrix products. The
# library tests them equal, and the notebooks show why they are.

# %% [markdown]
# ## Recap
#
# **What you can now do.**
#
# - Say what the paper diagnoses (two memories only, attention and frozen weights: anterograde
#   amnesia), what nested learning is (a model as nested optimization problems, each with its own
#   context flow and update frequency), and what the title's "illusion" is (stacked layers are not
#   levels).
# - Name the four contributions and the notebook that teaches each: optimizers as memories (06),
#   the Continuum Memory System (07), self-modifying Titans (08), HOPE (09-12).
# - Choose a size preset, move a widget, attempt a graded exercise, and read the course's notation.
#
# **What the next notebook adds.** Notebook 01 starts from Def. 1: a memory is the solution of an
# optimization problem over key-value pairs. Two objectives give the two write rules the whole
# course builds on, the Hebbian rule of linear attention and the delta rule.
