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
# # 09 · HOPE: self-modifying Titans + the Continuum Memory System, as a language model
#
# HOPE (Sec. 8, Eqs. 94-97 of arXiv v1) is two ideas of this course stacked in one block:
#
#     o_t = M_memory(q_t)                          self-modifying Titans (notebook 08)
#     y_t = MLP^(f_K)( ... MLP^(f_1)(o_t))         the Continuum Memory System (notebook 07)
#
# In this notebook we assemble the block, put it in a character-level language model and train it
# on tiny Shakespeare against three baselines **at equal parameters and equal training tokens**:
#
# | name | sequence mixer | MLP part |
# | --- | --- | --- |
# | `transformer` | causal softmax attention (RoPE) | SwiGLU MLP (Transformer++) |
# | `titans` | Titans memory layer (notebook 04: MLP memory, momentum, forgetting) | SwiGLU MLP |
# | `hope` | self-modifying Titans | CMS |
# | `hope-attention` | causal softmax attention | CMS |
#
# and an ablation of HOPE: without the CMS, without self-modification, without DGD. Every run is
# repeated over seeds and the curves show the spread. The sizes come from the preset (`tiny`: a
# smoke test whose numbers mean nothing; `laptop`: a small real run on a CPU, about half an hour
# for the whole notebook; `full`: one GPU).
#
# Library: `nlteach.models` (the models and the comparison helpers, tested in
# `tests/test_models.py`), `nlteach.train` (the training loop), `nlteach.titans`, `nlteach.cms`.

# %%
# Set-up. On Google Colab this installs the course library; anywhere else it does nothing.
import sys

if "google.colab" in sys.modules:
    import subprocess

    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "nlteach[course] @ git+https://github.com/nlteach/nlteach"],
        check=True,
    )


# %%
import tempfile

import matplotlib.pyplot as plt
import torch

from nlteach import config, models
from nlteach.bench import format_table

config.seed_everything(0)
# one thread at the tiny preset (CI boxes are small and shared; threads then fight each other)
torch.set_num_threads(config.by_preset(tiny=1, laptop=torch.get_num_threads(), full=torch.get_num_threads()))
print(config.describe())

# %% [markdown]
# ## 1. The HOPE block
#
# Each block is pre-norm and residual, like a Transformer block, with the two parts swapped in:
#
#     x = x + SelfModifyingTitans(norm(x))      # Eqs. 83-93: the sequence mixer
#     x = x + (CMS(norm(x)) - norm(x))          # Eqs. 94-97: the CMS's increment
#
# The CMS is a chain of residual MLP blocks (`u + W_out silu(W_in u)`), one per level, so the
# residual branch is what the chain *adds* to its input. `ModelConfig` holds everything: width,
# depth, heads, the two chunk sizes of self-modifying Titans, the CMS levels and
# `impl="naive" | "chunked"`.

# %%
small = models.ModelConfig(vocab_size=65, dim=32, n_layers=2, n_heads=2, chunk_size=8, proj_chunk_size=8,
                           cms_periods=(1, 4, 16))
hope = models.build_model("hope", small)
print(hope.blocks[0])
for part, module in (("self-modifying Titans", hope.blocks[0].mixer), ("CMS", hope.blocks[0].mlp)):
    print(f"{part}: {models.count_parameters(module):,} parameters per block")

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
# **A note on the CMS levels in this notebook.** `cms_periods` says how often each level should
# update. `python -m nlteach.train` uses one optimizer that updates every parameter at every step,
# so here the CMS levels are trained at the same frequency: the CMS is a chain of MLPs. Training the
# levels at their own frequencies needs the `MultiFrequencyOptimizer` of notebook 07
# (`models.cms_level_parameters(model)` gives its parameter groups); we did not wire it into the
# training loop, so the CMS's multi-frequency claim is *not* tested by this comparison.
#
# ## 2. Equal parameters
#
# `size_to_budget` picks each model's width so its parameter count (embeddings included, tied)
# comes as close as possible to one budget. The counts cannot be exactly equal (widths move in
# steps of 2 x heads), so the table shows what each model really has.

# %%
sizes = config.by_preset(
    tiny=dict(params=20_000, n_layers=2, n_heads=2, steps=12, batch_size=4, seq_len=32, lr=3e-3,
              eval_every=4, eval_windows=8, log_every=2),
    laptop=dict(params=200_000, n_layers=4, n_heads=4, steps=300, batch_size=16, seq_len=128, lr=2e-3,
                eval_every=50, eval_windows=200, log_every=10),
    full=dict(params=5_000_000, n_layers=6, n_heads=6, steps=3000, batch_size=32, seq_len=256, lr=1e-3,
              eval_every=250, eval_windows=500, log_every=50),
)
seeds = config.by_preset(tiny=[0, 1, 2], laptop=[0, 1, 2], full=[0])
names = ["transformer", "titans", "hope", "hope-attention"]
base = models.ModelConfig(vocab_size=65, dim=2 * sizes["n_heads"], n_layers=sizes["n_layers"], n_heads=sizes["n_heads"])
rows = []
for name in names:
    cfg = models.size_to_budget(name, sizes["params"], base)
    rows.append({"model": name, "dim": cfg.dim, "params": models.param_count(name, cfg)})
print(format_table(rows, ["model", "dim", "params"]))
tokens = sizes["steps"] * sizes["batch_size"] * sizes["seq_len"]
print(f"every run: {sizes['steps']} steps x {sizes['batch_size']} x {sizes['seq_len']} = {tokens:,} training tokens")

# %% [markdown]
# ## 3. Training at equal parameters and tokens, over seeds
#
# Same data order per seed (the sampler is a function of the seed and the step), same optimizer
# (AdamW, warmup then cosine), same steps. The seed changes both the initial weights and the data
# order. This is the slow cell.
#
# **Known problem (open).** At the `laptop` preset, HOPE's training currently diverges: with seed 0
# the loss becomes NaN near step 200 (near step 150 before we capped the learning rate its memories
# may generate). The in-context memories' updates compound inside a chunk; we have not yet found
# the cause. A NaN loss in the table below is that problem, not a plotting error.

# %%
workdir = tempfile.mkdtemp(prefix="nb09_")
runs = models.compare_models(names, seeds, out_dir=workdir, sample_chars=config.by_preset(tiny=60, laptop=300, full=500),
                             preset=config.get_preset(), **sizes)
summary = models.summarize_comparison(runs)
print(format_table(summary, ["model", "params", "seeds", "val_mean", "val_std", "test_mean", "test_std", "s_per_run"]))

# %%
fig = plt.figure(figsize=(8, 4))
models.draw_comparison(fig, runs, "val_loss")
fig.axes[0].set_title(f"validation loss, mean over seeds (band: min..max), ~{sizes['params']:,} parameters")
plt.show()

# %% [markdown]
# Samples from the first seed of each model (temperature 1, prompt = a newline):

# %%
for name in names:
    print(f"--- {name} ---\n{runs[name][0]['sample']}\n")

# %% [markdown]
# ## 4. Ablation: which part of HOPE matters here?
#
# Three variants, each registered as a model so it trains through the same loop:
#
# - `hope-no-cms`: a SwiGLU MLP (same parameters) in place of the CMS;
# - `hope-no-selfmod`: the k, v, eta, alpha memories stay at their meta-learned initial states
#   (static, nonlinear projections: a Titans-like layer with DGD);
# - `hope-no-dgd`: plain gradient steps with weight decay, no `-eta k k^T` projector.
#
# (The paper's ablation also removes momentum; our HOPE has momentum off by default, choice (c) of
# notebook 08, so there is nothing to remove.)

# %%
ablations = ["hope-no-cms", "hope-no-selfmod", "hope-no-dgd"]
ab_runs = {"hope": runs["hope"], **models.compare_models(ablations, seeds, out_dir=workdir,
                                                         preset=config.get_preset(), **sizes)}
ab_summary = models.summarize_comparison(ab_runs)
print(format_table(ab_summary, ["model", "params", "seeds", "val_mean", "val_std", "test_mean", "test_std"]))
fig = plt.figure(figsize=(8, 4))
models.draw_comparison(fig, ab_runs, "val_loss")
fig.axes[0].set_title("HOPE ablation: validation loss (band: min..max over seeds)")
plt.show()

# %% [markdown]
# ## 5. Verdict at this scale
#
# The lines below are computed from the runs above, not written in advance. A gap counts only if
# it is larger than twice the seeds' standard deviation.

# %%
print("Main comparison\n" + models.comparison_verdict(summary))
print("\nAblation\n" + models.comparison_verdict(ab_summary))
print(f"\npreset: {config.get_preset()}, seeds: {seeds}, tokens per run: {tokens:,}")

# %% [markdown]
# **How to read this.** At the `tiny` preset each run is a few steps: every model is still near
# the loss of guessing characters by frequency, and the ranking says nothing. At `laptop` the runs
# are long enough to separate the models, but they are still a few hundred thousand parameters
# trained for minutes; the paper's claims are about models of 760M-1.3B parameters trained on
# 30-100B tokens (its Table 2), and we do not reproduce those numbers. Small-scale reproductions by
# others report mixed results, with CMS giving little at small scale. Whatever the table above
# says is what we measured, with the seeds shown; where the verdict says "within the seed spread",
# this scale cannot tell the models apart.
#
# Things to try: more steps (`steps`), longer context (`seq_len`: the recurrent models' memory
# matters more on long sequences), the two chunk sizes (`chunk_size`, `proj_chunk_size` in
# `ModelConfig`), and momentum (`momentum=0.9`). From the command line:
#
#     python -m nlteach.train --model hope --preset laptop --out runs/hope
#     python -m nlteach.bench models --impls naive,chunked
