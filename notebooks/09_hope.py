# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 09 · HOPE: self-modifying Titans + the Continuum Memory System, as a language model
#
# HOPE (Sec. 8, Eqs. 94-97 of arXiv v1) is two ideas of this course stacked in one block:
#
# $$o_t = \mathcal{M}_{\text{memory}}(q_t) \quad \text{(self-modifying Titans, notebook 08)}, \qquad
#   y_t = \mathrm{MLP}^{(f_K)}\big(\cdots \mathrm{MLP}^{(f_1)}(o_t)\big) \quad \text{(the CMS, notebook 07)}.$$
#
# In this notebook we assemble the block, put it in a character-level language model and train it
# on tiny Shakespeare against three baselines **at equal parameters and equal training tokens**:
#
# | name | sequence mixer | MLP part |
# | --- | --- | --- |
# | `transformer` | causal softmax attention (RoPE) | SwiGLU MLP (Transformer++) |
# | `titans` | Titans memory layer (notebook 04: MLP memory, momentum, forgetting) | SwiGLU MLP |
# | `hope` | self-modifying Titans | CMS, learning in context |
# | `hope-attention` | causal softmax attention | CMS, learning in context |
#
# and an ablation of HOPE: without the CMS, without self-modification, without DGD, and with a CMS
# whose weights stay fixed while it reads (`hope-static-cms`: section 5 measures what the
# in-context levels change). The training
# runs here are *live* at the size preset you chose (`tiny`: a smoke test whose numbers mean
# nothing; `laptop`: about ten minutes per seed on one CPU thread; `full`: one GPU). Beside them we
# load and plot **our committed laptop-preset results** (3 seeds, `results/lm_tinyshakespeare_laptop/`),
# so the conclusions below do not depend on what your machine can run now.
#
# Library: `nlteach.models` (the models), `nlteach.train` (the training loop),
# `nlteach.experiments.lm_comparison` (this comparison, its settings and its command line, tested in
# `tests/test_lm_comparison.py`), `nlteach.titans`, `nlteach.cms`.

# %% [markdown]
# ## Objectives
#
# After this notebook you will be able to:
#
# - assemble a HOPE block: self-modifying Titans followed by an in-context CMS;
# - compare HOPE with a Transformer, Titans and Hope-Attention at equal parameters and tokens;
# - read an ablation with seeds and say what it does and does not show.
#
# **Paper:** Sec. 8, Eqs. 94-97; Table 2 and Table 6. **Prerequisites:** notebooks 07, 08. **Time at the laptop preset:** not yet measured.

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
import json
import tempfile

import matplotlib.pyplot as plt
import torch

from nlteach import config, models
from nlteach.runs import RESULTS_ROOT
from nlteach.runs.tables import text_table
from nlteach.experiments import lm_comparison
from nlteach.exercises import grade

config.seed_everything(0)
# one thread at the tiny preset (CI boxes are small and shared; threads then fight each other)
torch.set_num_threads(config.by_preset(tiny=1, laptop=torch.get_num_threads(), full=torch.get_num_threads()))
print(config.describe())

# %%
from nlteach.course.live import live_cell

# Live training: sections 3 and 6 retrain the comparison at your preset, about 15 + 6 minutes at the
# laptop preset on a 2-core CPU (section 3 measured, section 6 estimated from the committed runs'
# times). False (the default): they load our committed results instead, which sections 4-6 read
# anyway. True: they retrain. At the tiny preset they always run (seconds).
# $NLTEACH_TRAIN_LIVE=1 (or 0) overrides this flag.
TRAIN_LIVE = False

# %% [markdown]
# ## 1. The HOPE block
#
# Each block is pre-norm and residual, like a Transformer block, with the two parts swapped in:
#
# $$x \leftarrow x + \mathrm{SMT}\big(\mathrm{norm}_1(x)\big), \qquad u = \mathrm{norm}_2(x), \qquad
#   y = \mathrm{MLP}_K\big(\cdots \mathrm{MLP}_1(u)\big), \qquad x \leftarrow x + (y - u),$$
#
# with SMT the self-modifying Titans layer of notebook 08; in code:
#
#     x = x + SelfModifyingTitans(norm1(x))      # Eqs. 83-93: the sequence mixer
#     u = norm2(x)
#     y = MLP_K( ... MLP_1(u))                    # Eq. 70: the CMS levels, a chain, fastest first
#     x = x + (y - u)                             # only the CMS's increment enters the stream
#
# Each CMS level is a residual MLP, $\mathrm{MLP}_\ell(y) = y + W_\text{out}\, \sigma(W_\text{in}\, y)$, so the chain's output already
# contains `u`; the block adds what the chain *changed*. `ModelConfig` holds everything: width,
# depth, heads, the two chunk sizes of self-modifying Titans, the CMS levels and
# `impl="naive" | "chunked"`.
#
# **The CMS learns while it reads.** Written as above, the CMS weights would be fixed once training
# ends, like a Transformer's MLP. In `hope` (and `hope-attention`) each level $\ell$ is instead a
# memory that keeps learning inside the sequence, Eq. 71 over tokens: all tokens of a chunk of
# $C^{(\ell)}$ tokens are read with the weights the chunk started with, and at the chunk's end the
# weights take the sum of the chunk's per-token gradient steps. Level $\ell$ reads $u_t$ (level 1:
# `norm2(x)`, then the previous level's output) and descends
#
# $$\mathcal{L}_t = \tfrac12 \lVert \mathrm{MLP}_\ell(u_t) - v_t \rVert^2, \qquad v_t = u_t + V_\ell u_t,
# \qquad \eta_t = \mathrm{sigmoid}(w_\ell \cdot u_t + b_\ell),$$
#
# a learned value map $V_\ell$ (the level learns, in context, to map what it reads to a learned
# view of it) and a learned per-token step, divided by $C^{(\ell)} (1 + N_t)$ with $N_t$ a bound of
# the block's Jacobian, so a step stays finite at any input scale. The outer optimizer trains the
# initial weights, $V_\ell$, $w_\ell$ and $b_\ell$ through the whole sequence. The paper leaves this
# inner objective open; `docs/decisions.md#cms-inner-objective` has the options and the derivation,
# and `hope-cms-selfgen` is the ablation with self-generated targets $\mathrm{MLP}_\ell(v_t)$.
# The periods count tokens: `cms_periods=(16, 64, 256)` by default, every level slower than the
# self-modifying memory (which changes at every token) and 4x apart; a level whose period is longer
# than the sequence never updates inside it. `hope-static-cms` is the same block with the
# in-context step switched off: its CMS is exactly the chain of the exercise below.

# %% [markdown]
# **Exercise 09.hope_block.** Write the block's forward pass. You get the mixer and the two norms as
# callables and the CMS weights as a list of `(W_in [hidden, dim], W_out [dim, hidden])` pairs,
# level 1 first.
#
# *Difficulty: medium · about 15 min.* **Predict first:** with a mixer that outputs 0 and all CMS
# weights 0, what does the block return? Does the order of the levels matter?

# %% tags=["exercise"]
def hope_block(x, mixer, norm1, norm2, cms_weights):
    """x: [B, T, dim]; mixer, norm1, norm2: callables; cms_weights: [(W_in, W_out), ...] -> [B, T, dim]."""
    # YOUR CODE HERE
    raise NotImplementedError


# %%
result = grade("09.hope_block", hope_block)
hope_block = result.function  # your version if it passed, the reference otherwise

small = models.ModelConfig(vocab_size=65, dim=32, n_layers=2, n_heads=2, chunk_size=8, proj_chunk_size=8,
                           cms_periods=(1, 4, 16))
hope = models.build_model("hope", small)
block = hope.blocks[0]
static = models.build_model("hope-static-cms", small).blocks[0]  # the block above: a CMS with fixed weights
x = torch.randn(2, 20, 32, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    mine = hope_block(x, static.mixer, static.norm1, static.norm2,
                      [(b.W_in, b.W_out) for b in static.mlp.cms.blocks])
    print("hope_block == the library's hope-static-cms block:", torch.allclose(mine, static(x), atol=1e-6))
for part, module in (("self-modifying Titans", block.mixer), ("CMS", block.mlp)):
    print(f"{part}: {models.count_parameters(module):,} parameters per block")

# %% [markdown]
# **Exercise 09.cms_step.** Why divide the in-context step by $C^{(\ell)}(1 + N_t)$? Take one level
# $\mathrm{MLP}(u) = u + W_{out}\,\mathrm{silu}(W_{in} u)$ at one token, with error $e = o - v$, and
# one gradient step of size $\eta$ on $\tfrac12\lVert o - v\rVert^2$ on **both** matrices. To first
# order, the output at the same input $u$ then moves by $-\eta\, J e$ for a $D \times D$ matrix $J$:
# derive $J$ (one term from each matrix; $h = W_{in} u$, $a = \mathrm{silu}(h)$,
# $D_t = \operatorname{diag}(\mathrm{silu}'(h))$). Then bound its norm, $\lVert J\rVert \le N_t$, with
# $\lVert x\rVert^2$ for the rank-one part and a **Frobenius** norm for the rest, and return
# the step $\eta / (C (1 + N_t))$ (the library's choice; with it, to first order, a summed chunk of
# $C$ steps never overshoots). Inputs: `u [D]`, `W_in [hidden, D]`, `W_out [D, hidden]`, `eta`,
# `C`; return one number. The grader compares with the step `nlteach.cms` takes (`normalize=True`).
#
# *Difficulty: hard · about 25 min.* **Predict first:** what is $N_t$ when $W_{out} = 0$? How does
# the step scale when the input $u$ grows 10 times (with silu roughly linear)?

# %% tags=["exercise"]
def cms_normalized_step(u, W_in, W_out, eta, C):
    """u: [D], W_in: [hidden, D], W_out: [D, hidden], eta: float, C: the level's period -> the normalized step (a number)."""
    # YOUR CODE HERE
    raise NotImplementedError


# %%
result = grade("09.cms_step", cms_normalized_step)
lvl = block.mlp.cms.blocks[0]
u_demo = torch.randn(32, generator=torch.Generator().manual_seed(1))
for scale in (1.0, 10.0, 100.0):
    step = float(result.function(scale * u_demo, lvl.W_in.detach(), lvl.W_out.detach(), 1.0, 16))
    print(f"input norm {scale * u_demo.norm():7.1f}: {result.whose} normalized step = {step:.2e}")

# %% [markdown]
# The naive (token loop) and chunked implementations are the same model: the same weights load into
# both and give the same logits.

# %%
naive = models.build_model("hope", small.replace(impl="naive"))
naive.load_state_dict(hope.state_dict())
idx = torch.randint(0, 65, (2, 20), generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    diff = (naive(idx) - hope(idx)).abs().max().item()
print(f"max |naive - chunked| logit difference: {diff:.1e}")

# %% [markdown]
# **Two clocks.** `cms_periods` counts *tokens*: how often a level's weights change while the
# model reads (above). Separately, training can step the levels' *initial* weights at their own
# frequencies: `python -m nlteach.train --cms-multi-frequency` (`train(..., cms_multi_frequency=True)`)
# uses the `MultiFrequencyOptimizer` of notebook 07, level l taking one AdamW step every
# `cms_step_periods[l]` optimizer steps (default 1, 4, 16) on the mean of the gradients accumulated
# since its last step, everything outside the CMS every step. It is off by default here and in
# notebook 11 (the same HOPE in both); the ablation below shows such a run
# (`hope+multi-frequency CMS`) when the committed results include one.
#
# ## 2. Equal parameters
#
# `size_to_budget` picks each model's width so its parameter count (embeddings included, tied)
# comes as close as possible to one budget. The counts cannot be exactly equal (widths move in
# steps of 2 x heads), so the table shows what each model really has. The settings come from
# `lm_comparison.sizes()`, the experiment's one table (`lm_comparison.SIZES`), which the committed
# results were made with.

# %%
sizes = lm_comparison.sizes()
names = list(lm_comparison.MAIN_MODELS)
base = models.ModelConfig(vocab_size=65, dim=2 * sizes["n_heads"], n_layers=sizes["n_layers"], n_heads=sizes["n_heads"])
rows = []
for name in names:
    cfg = models.size_to_budget(name, sizes["params"], base)
    rows.append({"model": name, "dim": cfg.dim, "params": models.param_count(name, cfg)})
print(text_table(rows, ["model", "dim", "params"]))
tokens = sizes["steps"] * sizes["batch_size"] * sizes["seq_len"]
print(f"every run: {sizes['steps']} steps x {sizes['batch_size']} x {sizes['seq_len']} = {tokens:,} training tokens")

# %% [markdown]
# ## 3. Training at equal parameters and tokens (live, with `TRAIN_LIVE = True`)
#
# Same data order per seed (the sampler is a function of the seed and the step), same optimizer
# (AdamW, warmup then cosine), same steps. The seed changes both the initial weights and the data
# order. `lm_comparison.run_comparison` trains every model and seed with `nlteach.train` into a run
# folder (a second call with the same folder skips what is finished; interrupted, the cell stops
# after the current step and running it again resumes). The folder is temporary: the last cell of
# this notebook deletes it (so does stopping the kernel).
#
# **Slow cell: about 15 minutes at the laptop preset** (4 models x 3 seeds, measured on a 2-core
# CPU; seconds at tiny). It trains only with `TRAIN_LIVE = True` (top of the notebook); otherwise it
# prints one line and section 4 shows our committed runs. While it trains it prints one line per
# finished run (model, seed, validation loss, seconds).

# %%
seeds = config.by_preset(tiny=[0, 1], laptop=[0, 1, 2], full=[0])
scratch = tempfile.TemporaryDirectory(prefix="nb09_")  # removed when the kernel stops (or scratch.cleanup())
workdir = scratch.name
if live_cell(TRAIN_LIVE, minutes=15, results="lm_tinyshakespeare_laptop"):
    print(f"{len(names)} models x {len(seeds)} seeds; one line as each run finishes", flush=True)
    live = lm_comparison.run_comparison(workdir, seeds=seeds, ablation_seeds=[], multi_frequency_seeds=[],
                                        sample_chars=config.by_preset(tiny=60, laptop=300, full=500))
    if live.get("interrupted"):
        print("interrupted: the runs finished so far are below; run this cell again to resume")
    runs = lm_comparison.by_label(live)
    summary = lm_comparison.summarize_comparison(runs)
    print(lm_comparison.summary_table(summary))
    fig = plt.figure(figsize=(8, 4), layout="constrained")
    lm_comparison.draw_comparison(fig, runs, "val_loss")
    fig.axes[0].set_title(f"live run, {config.get_preset()} preset: validation loss (band: min..max over seeds)")
    plt.show()
else:  # section 4 draws these; kept here for the samples cell
    committed_file = RESULTS_ROOT / "lm_tinyshakespeare_laptop" / "results.json"
    runs = ({k: v for k, v in lm_comparison.load_comparison(committed_file).items() if k in names}
            if committed_file.exists() else {})

# %% [markdown]
# ## 4. Our laptop-preset results (committed)
#
# **Read this first.** These runs were made before HOPE's CMS learned in context (issue 17): the
# models called `hope` and `hope-attention` in them are what the library now calls
# `hope-static-cms` and `hope-attention-static-cms` (CMS weights fixed at test time). The live run
# of section 3 uses today's `hope`, whose CMS levels update inside the sequence.
#
# Made with the command that is now
#
#     python -m nlteach.experiments.lm_comparison --preset laptop --threads 1 \
#         --seeds 0 1 2 --ablation-seeds 0 1 2 --multi-frequency-seeds 0 1 2 --small-memory-seeds 0 1 2 \
#         --out results/lm_tinyshakespeare_laptop
#
# (then `python -m nlteach.models`, with the same settings) on a shared 2-core CPU, one thread per
# run; the exact command and settings are in the JSON file.
# Loss is in nats per character (bits per character = nats / ln 2). The band is the min..max
# over seeds.

# %%
path = RESULTS_ROOT / "lm_tinyshakespeare_laptop" / "results.json"  # shipped with the library
committed = lm_comparison.load_comparison(path) if path.exists() else {}
if not committed:
    print(f"{path} is not here: reinstall the course (its package holds the committed results), "
          "or run the command above.")
else:
    meta = json.loads(path.read_text())
    print("command:", meta["command"])
    print("settings:", {k: meta["config"][k] for k in ("params", "steps", "batch_size", "seq_len", "lr", "tokens_per_run")})
    main = {k: v for k, v in committed.items() if k in names}
    laptop_summary = lm_comparison.summarize_comparison(main)
    print(lm_comparison.summary_table(laptop_summary))
    fig = plt.figure(figsize=(8, 4), layout="constrained")
    lm_comparison.draw_comparison(fig, main, "val_loss")
    fig.axes[0].set_title("committed laptop results: validation loss, mean over seeds (band: min..max)")
    plt.show()
    fig = plt.figure(figsize=(8, 4), layout="constrained")
    lm_comparison.draw_comparison(fig, main, "train_loss")
    fig.axes[0].set_title("committed laptop results: training loss (band: min..max over seeds)")
    plt.show()
    print("Main comparison (committed laptop results)\n" + lm_comparison.comparison_verdict(laptop_summary))

# %% [markdown]
# **Simple baselines.** A neural model should beat counting. Character n-gram models
# (interpolated Kneser-Ney, `nlteach.experiments.ngram`, `docs/decisions.md#ngram-baselines`),
# counted on the same training characters one run sees (the windows of seed 0) and on the whole
# training split, scored on the same validation and test windows as the models above (a few
# seconds to count):

# %%
from nlteach.experiments import ngram

ngram_rows = ngram.summarize_rows(ngram.baseline_rows("laptop", seeds=[0]))  # the committed runs' preset
print(text_table(ngram_rows, ["model", "train_chars", "val_mean", "test_mean"]))
if committed:
    best = min(laptop_summary, key=lambda r: r["val_mean"])
    tri = next(r for r in ngram_rows if r["model"] == "trigram (run windows)")
    print(f"best committed model {best['model']}: {best['val_mean']:.3f} nats/char on validation; the trigram "
          f"counted on the same {tri['train_chars']:,} characters: {tri['val_mean']:.3f}")

# %% [markdown]
# Samples from the first seed of each model (temperature 1, prompt = a newline), from the committed
# runs when they are here, else from the live runs:

# %%
for name in names:
    rec = (committed.get(name) or runs[name])[0]
    print(f"--- {name} ---\n{rec['sample']}\n")

# %% [markdown]
# ## 5. What the in-context levels change: `hope` vs `hope-static-cms` (committed)
#
# The two models differ only in the CMS: `hope`'s levels learn inside the sequence, those of
# `hope-static-cms` do not. At the same parameter budget `hope` is narrower (its value maps and
# step gates cost parameters) and, at this size, ends up with fewer parameters (printed below):
# a confound this comparison does not remove (issue 18 matches parameters within 3%). Both are trained as in section 4 (laptop preset, seeds paired: the
# same seed gives both the same data order), made with
#
#     python -m nlteach.experiments.lm_comparison --preset laptop --threads 1 --models hope hope-static-cms \
#         --seeds 0 1 2 3 4 --ablation-seeds --multi-frequency-seeds --out results/lm_hope_cms_laptop
#
# **Verdict rule** (one, fixed before the runs): `hope` is better (worse) when the 95% t interval of
# the seed-paired difference of validation loss lies below (above) 0; otherwise the seeds cannot
# tell the two apart. The second table says how far each level's weights move over one validation
# sequence of the trained `hope`, $\lVert W_T - W_0 \rVert / \lVert W_0 \rVert$ (both matrices of the
# level, averaged over the layers and 16 windows; `models.cms_relative_change`).

# %%
ic_path = RESULTS_ROOT / "lm_hope_cms_laptop" / "results.json"
if not ic_path.exists():
    print(f"{ic_path} is not here: reinstall the course, or run the command above.")
else:
    ic = json.loads(ic_path.read_text())
    print("command:", ic["command"])
    ic_runs = lm_comparison.by_label(ic)
    print(lm_comparison.summary_table(lm_comparison.summarize_comparison(ic_runs)))
    print(lm_comparison.paired_verdict(ic["per_seed"], "hope", "hope-static-cms"))
    n_ic, n_static = (ic["summary"][k]["n_params"] for k in ("hope", "hope-static-cms"))
    print(f"parameters: hope {n_ic:,}, hope-static-cms {n_static:,} ({n_ic / n_static - 1:+.0%}: the budget is "
          "matched through the width alone, which moves in steps of 2 x heads; not a matched pair)")
    T_ic, periods = ic["config"]["seq_len"], ic["config"]["cms_periods"]
    change = lm_comparison.change_by_level(ic["per_seed"], "hope")
    print(f"\nin-context change of the trained hope's CMS levels over a {T_ic}-character sequence:")
    print(text_table([{"level": i + 1, "period (tokens)": p, "updates in the sequence": T_ic // p,
                       "||W_T - W_0|| / ||W_0||": f"{c['mean']:.2e}", "seeds": c["n"]}
                      for i, (p, c) in enumerate(zip(periods, change))],
                     ["level", "period (tokens)", "updates in the sequence", "||W_T - W_0|| / ||W_0||", "seeds"]))
    fig = plt.figure(figsize=(8, 4), layout="constrained")
    lm_comparison.draw_comparison(fig, ic_runs, "val_loss")
    fig.axes[0].set_title("committed laptop results: in-context vs static CMS, validation loss")
    plt.show()

# %% [markdown]
# How to read it: the verdict line above is computed from the file. At this scale (the window
# length and steps printed above) the fastest level updates a few times per sequence and the
# slowest not at all, and the relative change of the weights says how much of each level one
# sequence rewrites. A null or negative result here says what the in-context levels do in short training on
# short windows, not what they do on long contexts, where the paper places their benefit
# (notebook 11).

# %% [markdown]
# ## 6. Ablation: which part of HOPE matters here?
#
# Three variants, each registered as a model so it trains through the same loop, plus HOPE with
# the CMS levels trained at their own frequencies:
#
# - `hope-no-cms`: a SwiGLU MLP (same parameters) in place of the CMS;
# - `hope-no-selfmod`: the k, v, eta, alpha memories stay at their meta-learned initial states
#   (static, nonlinear projections: a Titans-like layer with DGD);
# - `hope-no-dgd`: plain gradient steps with weight decay, no `-eta k k^T` projector;
# - `hope+multi-frequency CMS`: `hope` trained with `cms_multi_frequency=True`;
# - `hope+half-width memories`: `hope` whose five memories have a hidden width of half a head
#   (`memory_hidden`; the default is two heads). Not an ablation of the paper: it asks what the
#   cheaper model (section 7, Cost) gives up, at the same parameter budget (the width grows).
#
# (The paper's ablation also removes momentum; our HOPE has momentum off by default, choice (c) of
# notebook 08, so there is nothing to remove.) The committed ablation has the same three seeds as
# the main comparison, so each variant can be compared with HOPE seed by seed.
# At the `laptop` and `full` presets the cell below also trains the ablation live; at `tiny` it
# does not (a 64-character window barely lets the projection memories change, chunk 32).

# %%
ablations = list(lm_comparison.ABLATIONS)
# slow at laptop (about 6 minutes, TRAIN_LIVE only); same folder: the main models are done, only the ablations train
if config.get_preset() != "tiny" and live_cell(TRAIN_LIVE, minutes=6, results="lm_tinyshakespeare_laptop"):
    live = lm_comparison.run_comparison(workdir, seeds=seeds, ablation_seeds=seeds[:1], multi_frequency_seeds=[])
    ab_live = {k: v for k, v in lm_comparison.by_label(live).items() if k in ("hope", *ablations)}
    print(lm_comparison.summary_table(lm_comparison.summarize_comparison(ab_live)))
variants = ["hope", *ablations, lm_comparison.MULTI_FREQUENCY, lm_comparison.SMALL_MEMORY]
ab = {k: committed[k] for k in variants if k in committed}
if len(ab) < 2:
    print("the committed results hold no ablation runs yet; run the command of section 4.")
else:
    ab_summary = lm_comparison.summarize_comparison(ab)
    print(lm_comparison.summary_table(ab_summary))
    fig = plt.figure(figsize=(8, 4), layout="constrained")
    lm_comparison.draw_comparison(fig, ab, "val_loss")
    fig.axes[0].set_title("committed laptop results: HOPE ablation, validation loss")
    plt.show()
    print("Ablation (committed laptop results)\n" + lm_comparison.comparison_verdict(ab_summary, reference="hope"))

# %% [markdown]
# ## 7. Verdict at this scale
#
# The verdict lines printed above are computed from the runs, not written in advance: a gap counts
# only if it is larger than twice the seeds' standard deviation. What our committed laptop runs
# show (the paragraph below was written after reading them; rerun the command to check it):
#
# - **Main comparison (3 seeds, ~110-130k parameters, 150 steps x 8 x 128 = 153,600 training
#   characters):** validation loss Titans 2.424 +- 0.006 nats/char, Hope-Attention 2.448 +- 0.015,
#   HOPE 2.491 +- 0.012, Transformer 2.605 +- 0.008. **Titans wins at this scale**, but its lead
#   over Hope-Attention (0.024) is within the seeds' spread; HOPE is clearly behind both (0.067
#   behind Titans) and clearly ahead of the Transformer (0.114).
# - **Why, as far as these runs can tell.** These are short runs: they measure how fast a model
#   starts to learn characters. Titans and HOPE read their input through a causal convolution of
#   window 4, which gives them local character n-grams from the first step; the Transformer has
#   to learn those through attention. Hope-Attention differs from the Transformer *only* in its
#   MLP part (the CMS chain of three residual MLPs instead of one SwiGLU MLP, same parameters) and
#   is 0.16 ahead, so at this budget the deeper chain helps a lot. HOPE has the convolution and the
#   CMS too, yet it is behind Titans: its self-modifying mixer does worse here than the Titans
#   memory layer (HOPE also has ~15% fewer parameters than Titans at this budget: widths move in
#   steps of 8).
# - **Ablation (seeds 0, 1, 2, like HOPE's 2.491 +- 0.012):** without self-modification
#   2.491 +- 0.012 and without DGD 2.491 +- 0.012, each within 2e-4 of HOPE *on every seed*: no
#   measurable effect. We read this as: in runs this short the in-context updates stay small (the
#   memories' second layers start near zero and the generated eta starts near 0.12), so the mixer
#   acts almost like a static nonlinear projection; it shows that self-modification did nothing
#   *here*, not that it cannot matter in longer training or on longer contexts. Without the CMS
#   (SwiGLU instead) 2.486 +- 0.010: 0.005 better on average, within the spread (better on seeds
#   0 and 2, worse on seed 1), so the CMS inside HOPE did not help here, although it did help
#   attention. Training the CMS levels at their own frequencies (`hope+multi-frequency CMS`)
#   gave 2.507 +- 0.004: worse than training them every step on all three seeds (by 0.007,
#   0.017 and 0.025). A likely reason: in 150 steps the slow levels (periods 4 and 16) take only
#   37 and 9 optimizer steps, on averaged gradients.
# - **Smaller memories, wider model (seeds 0, 1, 2):** `hope+half-width memories` (hidden width 5
#   per memory instead of 20; at the same budget the width grows from 40 to 48) reaches
#   2.436 +- 0.011, better than HOPE on every seed (by 0.075, 0.060 and 0.030) and level with
#   Titans (2.424 +- 0.006) within the spread. It also has 6% more parameters than HOPE (widths
#   move in steps of 8), which cannot explain a gap this size on its own. At this scale, parameters
#   spent on the memories' hidden width pay less than the same parameters spent on width, which
#   fits the ablation above: the in-context machinery is not what carries the loss here.
# - **Cost.** These runs (memories twice the head width, static CMS) cost far more per step than the
#   Transformer; today's defaults and their measured cost are in the table at the end of this
#   notebook.
#
# **How to read this.** These are ~120k-parameter models trained on ~150k characters in a few
# minutes; the paper's claims are about models of 760M-1.3B parameters trained on 30-100B tokens
# (its Table 2), and we do not reproduce those numbers. Small-scale reproductions by others
# report mixed results, with CMS giving little at small scale. At the `tiny` preset the live runs
# above are a few steps long and say nothing about the models.
#
# **Cost.** A HOPE step costs much more than a Transformer step at equal parameters: every token
# reads, differentiates and updates five small MLP memories per head and, in context, three CMS
# levels, and the work comes as many small batched products that a CPU runs far below its peak.
# `python -m nlteach.bench models` measures the ratio side by side; our committed runs (made with
# the command in each file, on a quiet 2-core CPU; `docs/decisions.md#hope-cost` says what each
# default costs):

# %%
from nlteach import results as committed_results  # the README's generated tables

print("\n".join(committed_results.speed_lines()) or "no bench file is committed (results/bench_models_*)")

# %% [markdown]
# Things to try: more steps, longer context (`seq_len`: the recurrent models' memory matters more
# on long sequences), the two chunk sizes (`chunk_size`, `proj_chunk_size` in `ModelConfig`),
# momentum (`momentum=0.9`), and the multi-frequency CMS. From the command line:
#
#     python -m nlteach.train --model hope --preset laptop --cms-multi-frequency --out runs/hope_mf
#     python -m nlteach.bench models --impls naive,chunked

# %%
scratch.cleanup()  # the live runs' temporary folder (section 3); it would also go when the kernel stops

# %% [markdown]
# ## Recap
#
# **What you can now do.**
#
# - Assemble a HOPE block: self-modifying Titans as the sequence mixer, a CMS that learns in
#   context (Eq. 71 over tokens, a normalized step) in place of the MLP.
# - Set up a fair comparison (equal parameters, equal tokens, same data order per seed) and read
#   the committed results and ablations with their spreads.
# - Say what the comparison at this scale does and does not show about the paper's claims.
#
# **What the next notebook adds.** Notebook 10 asks the paper's continual-learning question on real
# data: does a multi-frequency memory forget less when classes arrive one task after another?
