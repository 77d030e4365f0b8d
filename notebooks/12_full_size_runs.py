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
# # 12 · Full-size runs: from a laptop to one GPU and to several
#
# Every experiment of this course has run here at the `tiny` or `laptop` size, on a CPU. This
# notebook is about running the same experiments bigger: what the **`full`** preset costs, why the
# cost of a memory model relative to attention is not one fixed number, how data parallelism
# (`torchrun`, DDP) splits one training step over several GPUs and still computes the same update,
# what a checkpoint holds so that a run resumes exactly, what bf16 changes on a GPU, and how to
# read the results that come back.
#
# **No GPU number appears here.** No GPU has been lent to this project, so nothing in this notebook
# (or anywhere in the course) has been measured on a GPU, and no GPU time is estimated. Counts
# (parameters, tokens, FLOPs) are computed by code when you run the notebook; speeds are read from
# the committed CPU benchmark files, which record their machine; results are read from the committed
# `results/*/results.json` files.
#
# Library: `nlteach.course.nb12_scaling` (costs, FLOP counts, the data-parallel and resume checks;
# tested in `tests/course/test_nb12_scaling.py`) and `nlteach.results` (jobs, launch scripts,
# tables, figures; `tests/test_results.py`).

# %% [markdown]
# ## Objectives
#
# After this notebook you will be able to:
#
# - compute what a preset costs in parameters, tokens and FLOPs, and explain why a memory model's cost relative to attention changes with the sequence length and the hardware;
# - explain what data parallelism (torchrun, DDP) computes and keeps exactly equal, what a checkpoint needs for an exact resume, and what bf16 autocast changes on a GPU;
# - launch every experiment at the full preset on one GPU or several, and read the results: learning curves, paired seeds and the verdict rule, provenance.
#
# **Paper:** Sec. 9 (the experiments). **Prerequisites:** notebooks 03, 09, 10, 11. **Time at the laptop preset:** < 1 min.

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
from IPython.display import Markdown, display

from nlteach import config, results
from nlteach.course import nb12_scaling as scaling
from nlteach.exercises import grade
from nlteach.experiments import lm_comparison
from nlteach.models import ModelConfig, build_model
from nlteach.runs import RESULTS_ROOT
from nlteach.runs.io import read_json
from nlteach.runs.tables import text_table

torch.set_num_threads(1)
print(config.describe())
preset = config.get_preset()

# %% [markdown]
# ## 1. One experiment, three sizes
#
# Every experiment reads its sizes from one table with a row per preset (`tiny` for CI, `laptop`
# for a CPU, `full` for one GPU), so the same code runs at every size. Take notebook 09's
# language-model comparison (`nlteach.experiments.lm_comparison.SIZES`): each model is sized to the
# preset's parameter budget, and all of them train for the same steps on the same global batch of
# windows, so they see the same **tokens** (steps x batch x sequence length).

# %%
rows = scaling.preset_rows()
laptop_tokens = next(r["tokens_per_run"] for r in rows if r["preset"] == "laptop")
print(text_table([{**r, "tokens / laptop's": f"{r['tokens_per_run'] / laptop_tokens:.3g}x"} for r in rows],
                 ["preset", "params", "n_layers", "n_heads", "steps", "batch_size", "seq_len", "tokens_per_step",
                  "tokens_per_run", "tokens / laptop's"]))

# %% [markdown]
# ## 2. What the full preset costs
#
# Three numbers describe a training run's cost: its **parameters** $N$, the **tokens** $D$ it
# reads, and the **floating-point operations** (FLOPs) it performs. Almost all of a model's FLOPs are
# matrix products. A weight matrix of $N_W$ entries does one multiply-add (2 FLOPs) per entry and
# token in the forward pass, and twice that in the backward pass (the gradient with respect to its
# input and the gradient with respect to itself), hence the usual rule
#
# $$C_\text{train} \approx 6\,N\,D,$$
#
# with $N$ the parameters outside the embedding (a lookup costs no product; the output layer, tied
# to the embedding here, is a product, but a small one with a vocabulary of 65 characters). Attention adds products
# that no parameter counts: the scores $q k^\top$ and the weighted sum $P v$, whose size grows with
# the sequence length $T$. `scaling.estimate_step_flops` adds them to $6N$ per token, using the
# benchmark's own formula (`nlteach.bench.models.attention_flops`).
#
# The table is computed now: each model sized to the full preset's budget by
# `nlteach.models.size_to_budget` (the width `dim` is chosen to match it), its parameters counted by
# `nlteach.models.param_count`, one training step's FLOPs estimated. (Sizing takes a few seconds per
# model.)

# %%
full = scaling.cost_rows("full")
print(text_table([{**r, "est_gflop_step": f"{r['est_gflop_step']:.1f}", "est_pflop_run": f"{r['est_pflop_run']:.3f}"}
                  for r in full],
                 ["model", "dim", "params", "non_embedding", "tokens_per_run", "est_gflop_step", "est_pflop_run"]))

# %% [markdown]
# Read it as *work*, not time: how long a petaFLOP takes depends on the rate the hardware reaches on
# these particular products (section 3), which nobody has measured here on a GPU.
#
# The estimate has a blind spot that matters for this course. The memory models (Titans, HOPE) also
# run **gradient steps inside the forward pass**: the in-context updates of their memories and of
# HOPE's CMS are extra matrix products that reuse a few weights for many operations, so the $6N$ rule
# undercounts them. Section 3 counts them.
#
# **Exercise 12.attention_flops.** Write `causal_attention_flops(B, H, T, d)`: the FLOPs of the
# matrix products in the **forward** pass of causal softmax attention, with queries, keys and
# values of shape `[B, H, T, d]` (batch, heads, time, head width). Count a multiply-add as 2 FLOPs
# and only the scores a causal kernel computes.
#
# *Difficulty: easy · about 15 min.* **Predict first:** when the sequence is twice as long, by what
# factor do attention's FLOPs grow, for the whole sequence and per token? And the $6N$ term's?

# %% tags=["exercise"]
def causal_attention_flops(B, H, T, d):
    """B, H, T, d: ints (batch, heads, sequence length, head width) -> the forward pass's FLOPs
    (an int) of the two matrix products of causal softmax attention."""
    # YOUR CODE HERE
    raise NotImplementedError


# %%
result = grade("12.attention_flops", causal_attention_flops)
z = lm_comparison.sizes("full")
for r in full:
    if r["attention_layers"]:
        att = r["attention_layers"] * result.function(z["batch_size"], r["n_heads"], z["seq_len"], r["dim"] // r["n_heads"])
        forward = 2 * r["non_embedding"] * z["batch_size"] * z["seq_len"] + att  # 2N per token, and attention
        print(f"{r['model']}: attention {att / 1e9:.2f} GFLOP of its {forward / 1e9:.1f} GFLOP forward pass at the full "
              f"preset, {att / forward:.1%} ({result.whose} count)")

# %% [markdown]
# ## 3. Why the cost ratio changes with sequence length and with hardware
#
# The benchmark finds a HOPE training step several times as long as a Transformer step on a CPU
# (the table further down). That ratio is not a property of the models alone: it is (FLOP ratio) x
# (rate ratio), and both factors move.
#
# **FLOPs per token against $T$.** Below, one layer of each model at the same width (64, two heads),
# one training step on one sequence, its FLOPs counted by the benchmark's counter
# (`torch.utils.flop_counter`, as `python -m nlteach.bench models` counts them: the products the
# implementation really executes), divided by $T$. Attention compares every token with all the
# tokens before it, so its FLOPs per token grow linearly with $T$. A chunked memory does a fixed
# amount of work per chunk of tokens (notebooks 03-04), whatever $T$ is. Seconds to count.

# %%
lens = (16, 64, 256)
curves = scaling.flops_per_token(scaling.MODELS, lens, dim=64, n_heads=2, n_layers=1)
fig = plt.figure(figsize=(7, 3.8), layout="constrained")
scaling.draw_flops_per_token(fig, lens, curves)
fig.suptitle("one layer, width 64: counted training FLOPs per token", fontsize=9)
plt.show()
print(text_table([{"T": T, **{m: f"{curves[m][i] / curves['transformer'][i]:.2f}" for m in curves}}
                  for i, T in enumerate(lens)], ["T", *curves]))
print("(each model's FLOPs per token / the Transformer's, same width)")
print(f"HOPE's in-context CMS periods (ModelConfig's default): {ModelConfig(vocab_size=65).cms_periods} tokens")
growth = {m: curves[m][-1] / curves[m][-2] for m in curves}
print(f"FLOPs per token from T={lens[-2]} to T={lens[-1]}: " + ", ".join(f"{m} x{g:.2f}" for m, g in growth.items()))
estimated = scaling.estimated_flops_per_token(scaling.MODELS, lens, dim=64, n_heads=2, n_layers=1)
print("\ncounted / estimated (6N per token + attention), the blind spot of section 2:")
print(text_table([{"T": T, **{m: f"{curves[m][i] / estimated[m][i]:.2f}" for m in curves}} for i, T in enumerate(lens)],
                 ["T", *curves]))

# %% [markdown]
# Titans, whose memory works chunk by chunk at one chunk size, shows the rule plainly: its FLOPs per
# token hardly change with $T$ while the Transformer's grow, so its ratio to the Transformer falls as
# sequences get longer. HOPE's count rises at short lengths too: its in-context CMS levels change
# their weights once per chunk of their period (printed above), so a sequence not much longer than
# a level's period gives that level few updates to pay for, and the level's work is paid in full
# only once sequences are several periods long. The full preset's windows are short (section 1),
# and attention is a small share of a Transformer's work there (section 2); long contexts
# (notebook 11) are where a linear cost pays.
#
# The last table shows section 2's blind spot: for the Transformer the estimate is close (what it
# misses is mostly the output layer, sizeable at this small width); for the memory models the count
# is well above it, by the products of their in-context updates.
#
# **FLOPs are not time.** The benchmark (`python -m nlteach.bench models`) times one training step of
# each model at equal parameters side by side and also counts its FLOPs, so the two factors can be
# read apart. By definition of the achieved rate (FLOPs / seconds), for each model
#
# $$\frac{t_\text{model}}{t_\text{Transformer}} = \frac{F_\text{model}}{F_\text{Transformer}} \times
# \frac{r_\text{Transformer}}{r_\text{model}}.$$
#
# Read from the committed benchmark files (CPU, the threads named in each row; the identity is
# checked in the last two columns):

# %%
rates = scaling.rate_rows()
if rates:
    print(text_table([{"bench run": r["run"], "threads": r["threads"], "T": r["T"], "model": r["model"],
                       "impl": r["impl"], "FLOPs / Transformer's": f"{r['flops_x']:.2f}",
                       "GFLOP/s": f"{r['gflop_per_s']:.1f}", "Transformer GFLOP/s": f"{r['transformer_gflop_per_s']:.1f}",
                       "time / Transformer's": f"{r['time_x']:.2f}", "FLOPs x rate ratio": f"{r['flops_x_times_rate_ratio']:.2f}"}
                      for r in rates],
                     ["bench run", "threads", "T", "model", "impl", "FLOPs / Transformer's", "GFLOP/s",
                      "Transformer GFLOP/s", "time / Transformer's", "FLOPs x rate ratio"]))
else:
    print("no benchmark file is committed (results/bench_models_*/bench_models.json)")

# %% [markdown]
# On these CPUs the memory models lose twice: they do more FLOPs, and they do them at a lower rate.
# A chunked memory's work is many **small** products (a chunk of a few tokens against a head's
# width, per head and per chunk) plus element-wise work between them; a CPU reaches its best rate only on
# large products, where each number loaded from memory is reused many times. The token loop
# (`impl` naive, one token at a time) is the extreme case. A GPU is far faster on large products,
# and small ones leave most of it idle unless many are fused into one kernel (as
# flash-linear-attention's Triton kernels do; `tools/fla_compare.py` compares them with ours on
# CUDA). Whether the ratio grows or shrinks on a GPU has not been measured: `make gpu-check` runs
# `bench models --device cuda` and would tell.

# %% [markdown]
# ## 4. One GPU: the jobs, and bf16
#
# Each experiment is a command-line program with `--preset`, `--device` (CUDA when present),
# `--out` and resumable output. `results.experiment_jobs` lists every experiment of notebooks 06,
# 07, 09, 10 and 11 at a preset as independent **jobs**, each with its own output folder:

# %%
jobs = results.experiment_jobs("full", seeds=(0, 1, 2), runs_dir="runs")
by_notebook = {}
for j in jobs:
    by_notebook.setdefault((j["notebook"], j["module"], j["ddp"]), []).append(j)
print(text_table([{"notebook": nb, "program": mod, "jobs": len(js), "torchrun (DDP)": ddp}
                  for (nb, mod, ddp), js in by_notebook.items()], ["notebook", "program", "jobs", "torchrun (DDP)"]))

# %% [markdown]
# Before the first long job, run `make gpu-check` once (`tools/gpu_check.py`): the CUDA-marked
# tests, the benchmarks and a short run of each main model, because nothing in the library has
# run on CUDA before it. Then run the jobs one after the other: save the script and run it with
# `bash full_1gpu.sh`; an interrupted script can simply be run again (section 6). Its first lines:

# %%
one_gpu = results.launch_script(jobs, gpus=1)
print("\n".join(one_gpu.splitlines()[:6]) + f"\n... ({len(one_gpu.splitlines())} lines)")

# %% [markdown]
# **Mixed precision.** On CUDA, `nlteach.train` and the benchmark run the forward pass under
# `torch.autocast(dtype=torch.bfloat16)`: the matrix products read bf16 inputs (GPUs have fast
# units for them) and accumulate in float32, while the weights, the optimizer's state and the loss
# (`logits.float()`) stay float32, and the memory mechanisms compute bf16 inputs in float32
# (docs/design.md#contract-conventions). bf16 keeps float32's exponent range (no loss scaling
# needed, unlike float16) but only 8 significant bits (float32: 24). On the CPU every run is float32 and
# reproducible bit for bit; `--no-amp` turns autocast off on CUDA. What bf16 does to one product,
# computed here on the CPU:

# %%
err = scaling.bf16_matmul_error(256)
print(f"256 x 256 product, relative error against float64: float32 inputs {err['float32']:.1e}, "
      f"bf16 inputs {err['bf16']:.1e} (unit roundoff: float32 {err['float32_eps']:.1e}, bf16 {err['bf16_eps']:.1e})")

# %% [markdown]
# Errors of this size are harmless for training, but they make a CUDA run differ from a CPU run,
# and two CUDA runs (or a CUDA run and its resumption) agree only to within such rounding, not bit
# for bit. Compare GPU runs with each other over seeds, never bit for bit with CPU runs.
#
# ## 5. Several GPUs: data parallelism
#
# `torchrun --nproc_per_node G -m nlteach.train ...` starts `G` processes (**ranks**), one per GPU,
# each with a full copy of the model (`torch.nn.parallel.DistributedDataParallel`,
# `nlteach/runs/distributed.py`). At every step:
#
# 1. the sampler draws the same **global batch** of windows as one process would, and rank $r$
#    takes its own `batch_size / G` consecutive rows (`--batch-size` is always the global batch);
# 2. each rank computes the gradient of the mean loss over its rows;
# 3. an **all-reduce** sums the ranks' gradients and divides by $G$, so every rank holds the same
#    averaged gradient (DDP overlaps this with the backward pass);
# 4. every rank takes the same optimizer step, so the copies stay identical.
#
# The **effective batch** is the global batch: the same steps, tokens and learning-rate schedule as
# on one GPU, with `G` times fewer rows per GPU. What stays exactly equal: the windows of every step
# (the sampler), the initial weights (the seed) and the averaged gradient, up to the order of float
# additions; dropout masks differ per rank (rank 0's match one process). The library's test
# `tests/test_train.py::test_ddp_two_processes_match_one_process` runs 2 processes under `torchrun`
# (gloo on CPU), interrupts and resumes them, and finds the same losses as one process within the
# test's tolerance (1e-5 nats).
#
# **Exercise 12.ddp_gradient.** Each rank $r$ has the gradient `grads[r]` of the *mean* loss over its
# `rows[r]` rows. Write `all_reduce_mean(grads, rows)`: the gradient of the mean loss over all the
# rows of the global batch. Shards may differ in size here (DDP itself keeps them equal).
#
# *Difficulty: easy · about 15 min.* **Predict first:** with equal shards, what does your formula
# reduce to? If you *summed* the gradients of 4 ranks instead, how would an SGD step change, and how
# would an Adam step change (think of Adam's division by the root of the squared gradients, and of
# gradient clipping)?

# %% tags=["exercise"]
def all_reduce_mean(grads, rows):
    """grads: list of tensors (each rank's gradient of its mean loss, all the same shape);
    rows: list of ints (each rank's rows) -> the global batch's gradient, a tensor of that shape."""
    # YOUR CODE HERE
    raise NotImplementedError


# %%
result = grade("12.ddp_gradient", all_reduce_mean)
torch.manual_seed(0)
small = build_model("transformer", ModelConfig(vocab_size=scaling.VOCAB_SIZE, dim=32, n_layers=2, n_heads=2))
windows = torch.randint(0, scaling.VOCAB_SIZE, (8, 65), generator=torch.Generator().manual_seed(0))
for G in (1, 2, 4, 8):
    check = scaling.data_parallel_check(small, windows[:, :-1], windows[:, 1:], G, combine=result.function)
    print(f"{G} rank(s) x {8 // G} rows: largest difference from one process {check['max_abs_diff']:.1e} "
          f"(largest gradient entry {check['max_abs_grad']:.2f}; {result.whose} all_reduce_mean)")

# %% [markdown]
# Only `nlteach.train` (notebook 09's language models) runs one job on several GPUs. The other
# programs are single-process: started under `torchrun` they would run the same job `G` times. For
# them several GPUs help by running **different jobs at the same time**, one per GPU. With `G` GPUs
# the launch script runs the language-model jobs one after the other, each on all GPUs through
# `torchrun --standalone --nproc_per_node G`, then the single-process jobs `G` at a time
# (`CUDA_VISIBLE_DEVICES=i`, GPU `i` taking jobs `i, i + G, ...`, each GPU's log in `gpu<i>.log`):

# %%
four_gpus = results.launch_script(jobs, gpus=4)
lines = four_gpus.splitlines()
print("\n".join(lines[:5] + ["..."] + [ln[:150] + (" ..." if len(ln) > 150 else "") for ln in lines[-6:]]))

# %% [markdown]
# Data parallelism is the only kind the library uses: the full preset's models (a few million
# parameters) fit one GPU many times over, so nothing needs to split a model across GPUs.
#
# ## 6. Checkpoints and exact resume
#
# Long runs get interrupted (a shared machine, a preemptible cloud GPU, a time limit). Every program
# checkpoints, and the rule is simple: **run the same command again** and it continues.
#
# - `nlteach.train` writes `checkpoint.pt` every `--ckpt-every` steps and when it stops: the first
#   Ctrl-C or SIGTERM finishes the current step, writes the checkpoint and exits; `--resume`
#   continues. The checkpoint holds everything the next step depends on: weights, optimizer and
#   scheduler state, the sampler's position, every rank's random-number state, the unfinished log
#   interval. So a resumed CPU run writes the same metrics and weights **bit for bit** as an
#   uninterrupted one (a resume with another CPU thread count is warned about: sums split across
#   threads round differently; under another number of GPUs data and weights resume exactly, the
#   dropout streams do not).
# - Every checkpoint has a SHA-256 file beside it and the previous one is kept: a damaged newest
#   checkpoint is detected and the previous one loads instead (docs/design.md#checkpoints).
# - The multi-seed programs (`continual`, `longctx`, the experiments) keep each finished seed's
#   file and resume only when the settings are equal; other settings are refused, naming each
#   difference, and `--overwrite` starts over (docs/design.md#resume-policy).
#
# Computed now: a small language model trained straight through, and the same run stopped after 5
# steps (`--stop-after 5`, as if interrupted) and resumed (seconds):

# %%
check = scaling.resume_check(stop_after=5)
print(f"stopped at step {check['stopped_at']} of {check['steps']}, resumed: same metrics lines {check['same_metrics']}, "
      f"same weights {check['same_weights']}")
print("the checkpoint holds:", ", ".join(check["checkpoint_keys"]))

# %% [markdown]
# ## 7. What to expect, and how to read the results
#
# This project has never run the full preset, so this notebook cannot tell you its numbers. It can
# tell you what to watch for and how to read them. One thing is plain from the presets: how many
# times a run of notebook 09's comparison reads tiny Shakespeare's training split.

# %%
print(text_table([{**r, "passes": f"{r['passes']:.2f}"} for r in scaling.passes_over_data()],
                 ["preset", "tokens_per_run", "train_chars", "passes"]))

# %% [markdown]
# A run that reads its data many times can **overfit**: the validation loss stops falling and turns
# up while the training loss keeps falling. Every `nlteach.train` results file keeps both the last
# validation loss (`val_loss`) and the lowest one seen (`best_val_loss`), and the comparison keeps
# each seed's whole curve, so you can see where it happened.
#
# **Learning curves.** Every run logs its training and validation loss against tokens
# (`metrics.jsonl`). Look at them before any table: a curve still falling steeply at the end means
# the budget, not the model, decides the ranking; a curve turning up means overfitting; a spike or a
# NaN points at the learning rate; curves of different seeds that cross mean the ranking is noise.
# The example below is a committed comparison of two arms over several seeds (HOPE with its CMS
# learning in context against the same model with its CMS fixed at test time, laptop preset):

# %%
example = scaling.reading_example()
if example is None:
    print(f"results/{scaling.READING_EXAMPLE[0]}/results.json is not committed: nothing to read here")
else:
    arms = {k: v for k, v in example["runs"].items() if k in (example["a"], example["b"])}
    fig = plt.figure(figsize=(7, 3.8), layout="constrained")
    lm_comparison.draw_comparison(fig, arms)
    fig.suptitle(f"{example['path']}: validation loss (mean over seeds, band: min..max)", fontsize=9)
    plt.show()

# %% [markdown]
# **Seeds and paired intervals.** Each seed fixes the initial weights and the data order, and both
# arms of a comparison share their seeds. So compare *seed by seed*: the difference $a - b$ on each
# seed removes what the seed does to both arms. The verdict rule of every comparison in the course
# (`lm_comparison.paired_verdict`): $a$ is better (worse) when the whole 95% t interval of the mean
# paired difference of a loss lies below (above) 0; otherwise the seeds cannot tell the arms apart.
# The comparisons of notebooks 06, 07 and 10 are read by the same rule (for an accuracy, higher is
# better).
#
# The second line reads the same file with only its first three seeds, as many as the full-preset
# jobs above run: fewer differences to average, and a larger t factor (t with $n - 1$ degrees of
# freedom grows fast as $n$ shrinks), so a wider interval. A bigger preset makes each run better,
# not the comparison surer: only more seeds (or a larger effect) do that.

# %%
if example is not None:
    print(example["verdict"])
    seeds = sorted({r["seed"] for r in example["per_seed"]})
    if len(seeds) > 3:
        first = [r for r in example["per_seed"] if r["seed"] in seeds[:3]]
        print(f"\nthe same comparison on its first three seeds only:\n{lm_comparison.paired_verdict(first, example['a'], example['b'])}")

# %% [markdown]
# **Provenance.** A number is only as good as the code that made it. Every results file records the
# git commit, the files that had uncommitted changes (`[]` for a clean tree) and the exact command
# (docs/design.md#results-folder); `nlteach.results` marks any committed file that lacks one of the
# three, and a test fails on a new one. Before you compare two runs, check that they come from clean
# trees, and from the same commit or commits that do not change the models.

# %%
if example is not None:
    prov = example["provenance"]
    print(f"{example['path']}: commit {prov.get('git_commit', '?')[:10]}, uncommitted changes "
          f"{prov.get('git_dirty')}, device {prov.get('device')}, {prov.get('threads')} thread(s)")
    print(f"command: {prov.get('command')}")
statuses = [results.file_provenance_status(f) for f in results.results_files()]
print(f"\n{sum(s['ok'] for s in statuses)} of {len(statuses)} committed results files record commit, clean tree "
      f"and command; the other {sum(not s['ok'] for s in statuses)} lack one of them (results.LEGACY_WITHOUT_PROVENANCE "
      "says why, file by file), and their rows are marked † where they appear in the tables below")

# %% [markdown]
# **Gathering runs made in several processes.** Seeds of one comparison can train in separate
# processes (different GPUs, different days) into the same folder; the folder's lock keeps two from
# training the same run at once. `python -m nlteach.experiments.lm_comparison ... --report-only`
# then trains nothing: it writes `results.json` from the runs already finished there. Such a file's
# `command` ends in `--report-only`, and its `reproduce` field is the command that trains everything:

# %%
ref = RESULTS_ROOT / "lm_reference" / "results.json"
if ref.is_file():
    d = read_json(ref)
    print(f"results/lm_reference: command   {d['provenance']['command']}")
    print(f"                      reproduce {d.get('reproduce')}")
else:
    print("results/lm_reference is not committed")

# %% [markdown]
# ## 8. Every committed result
#
# `results.load_all()` reads `results/<experiment>/results.json` (or one file per sub-folder when a
# command ran several methods or models), sorts them into language modelling (notebook 09),
# forgetting (10) and long context (11), and reports any file it cannot use instead of failing.
# Everything below is drawn from those files, with the seeds they hold; an experiment with no
# committed file is simply absent. The optimizer comparison of notebook 06 and the sequential-tasks
# experiment of notebook 07 are listed as `other` with their file names only: their own notebooks
# draw them. These are the project's CPU runs at the laptop preset, not the paper's numbers.

# %%
exps = results.load_all()
print(f"{len(exps)} experiments:", ", ".join(f"{e.name} ({e.kind})" for e in exps))
display(Markdown(results.all_tables(exps)))

# %%
kinds = {e.kind for e in exps}
if "lm" in kinds:
    fig = plt.figure(figsize=(9, 4.5), layout="constrained")
    results.draw_lm(fig, exps)
    fig.suptitle("language modelling: validation loss (mean ± std over seeds)", fontsize=9)
    plt.show()
if "continual" in kinds:
    fig = plt.figure(figsize=(11, 3.5), layout="constrained")
    results.draw_continual(fig, exps)
    fig.suptitle("forgetting: final average accuracy (mean ± std over seeds)", fontsize=9)
    plt.show()
if "longctx" in kinds:
    n = sum(e.kind == "longctx" for e in exps)
    fig = plt.figure(figsize=(11, 3.3 * ((n + 2) // 3)), layout="constrained")
    results.draw_longctx(fig, exps)
    fig.suptitle("long context and formal languages: accuracy vs length (band: min..max over seeds)", fontsize=9)
    plt.show()

# %% [markdown]
# The README's results section is generated from the same files
# (`python -m nlteach.results --readme`), so it never says more than the files do:

# %%
display(Markdown(results.readme_section()))

# %% [markdown]
# ## Recap
#
# **What you can now do.**
#
# - Compute what a preset costs: parameters from the sized models, tokens from steps x batch x
#   length, FLOPs from $6N$ per token plus attention's products, and counted FLOPs where a memory
#   model's in-context updates break the rule.
# - Explain why a memory model's cost relative to attention falls as sequences grow (FLOPs per
#   token: linear in $T$ for attention, flat for a chunked memory) and why FLOPs are not time (small
#   per-chunk products run at a lower rate; time ratio = FLOP ratio x rate ratio).
# - Say what data parallelism computes (each rank's mean gradient, all-reduced into the global
#   batch's), what stays exactly equal, what a checkpoint must hold for an exact resume, and what
#   bf16 autocast changes on a GPU.
# - Launch every experiment at the `full` preset on one GPU or several, resume it, and read what
#   comes back: learning curves first, then seed-paired intervals and the verdict rule, and the
#   provenance of every file.
#
# **What the next notebook adds.** This is the last notebook. From here: run the `full` preset on a
# GPU (start with `make gpu-check`), try the open questions the notebooks list (the "things to try"
# of 09 and 11, the open experiment of 10), or read `docs/paper-notes.md` for every choice the
# course made where the paper is open.
