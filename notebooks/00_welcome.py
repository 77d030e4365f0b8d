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
# This notebook checks your set-up and shows the three conventions used everywhere:
# **size presets**, **widgets** and **exercises**.
#
# Opened with `make lab`, you are in `notebooks-work/`, your own git-ignored copy of the course:
# run, edit and save freely (the README says how to refresh it when the course changes).

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
# ## 5. The course map

# %%
print(course.format_course_map())

# %% [markdown]
# ## 6. Notation
# The course follows the paper's arXiv v1 and cites its equations as "Eq. N (arXiv v1)"; the
# NeurIPS 2025 version renumbers them.
#
# | symbol | meaning | shape in code |
# | --- | --- | --- |
# | $B, H, T$ | batch, heads, sequence length (time) | tensors are `[B, H, T, D]` |
# | $q_t, k_t$ | query and key of token t | `[B, H, T, d_k]` |
# | $v_t$ | value of token t | `[B, H, T, d_v]` |
# | $S_t$ | matrix memory after token t; read as $o_t = S_t^\top q_t$ (includes token t's own write) | `[B, H, d_k, d_v]` |
# | $\mathcal{M}(\cdot)$ | a parametric memory (a matrix or an MLP) mapping keys to values | weights `[B, H, ...]` |
# | $\beta_t$ | write strength (step size) of the delta rule; see below the table | `[B, H, T]`, in [0, 2] |
# | $\alpha_t$ | decay / forget gate (delta rule: keep factor; Titans: forget amount) | `[B, H, T]` |
# | $\theta_t, \eta_t$ | Titans' inner learning rate and momentum | `[B, H, T]` |
# | $C$ | chunk size of a chunked (parallel) implementation | int |
# | $C^{(\ell)}$, period | update period of level $\ell$ (a level updates every $C^{(\ell)}$ steps) | int |
# | $f$ | update frequency = updates per unit of time; higher level = lower frequency | |
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
