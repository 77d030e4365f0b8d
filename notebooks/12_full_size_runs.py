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
# # 12 · Full-size runs: one GPU, several GPUs, and every result in one place
#
# The notebooks so far run at the `tiny` or `laptop` size. This one says how to run every
# experiment of notebooks 06 (optimizers), 09 (HOPE language model), 10 (forgetting) and 11
# (long context) at the **`full`** preset, on one GPU or on several, what that costs, and then
# gathers every result this project has committed (`results/*/results.json`) into final tables
# and figures.
#
# Honesty first: **no GPU was available to us when this notebook was written.** Every time below
# was measured on a CPU (the machine, preset and seeds are stated next to each number); we publish
# no GPU times, measured or estimated. What we can say exactly is how much *more work* the full
# preset is than the laptop preset (section 3), and the commands are tested: each one parses with
# its program's own argument parser (`tests/test_results.py`).
#
# Library: `nlteach.results` (jobs, launch scripts, tables, figures, the README section; tested in
# `tests/test_results.py`).

# %% [markdown]
# ## Objectives
#
# After this notebook you will be able to:
#
# - run every experiment of the course at the full preset, on one GPU or several;
# - estimate what the full preset costs relative to the laptop preset;
# - gather every committed result into the final tables and figures.
#
# **Paper:** Sec. 9 (the experiments). **Prerequisites:** notebooks 06, 09, 10, 11. **Time at the laptop preset:** < 1 min.

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
import tempfile
import time
from collections import Counter

import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display

from nlteach import config, longctx, results
from nlteach.runs.tables import text_table

torch.set_num_threads(1)
print(config.describe())
preset = config.get_preset()

# %%
from nlteach.course.live import live_cell

# Live timing: section 2 trains one job of each kind to time it, about 10 minutes at the laptop
# preset on a 2-core CPU (measured). False (the default): it prints one line and the run times
# recorded in the committed results stand for it. True: it trains and times now. At the tiny
# preset it always runs (seconds). $NLTEACH_TRAIN_LIVE=1 (or 0) overrides this flag.
TRAIN_LIVE = False

# %% [markdown]
# ## 1. Every experiment as a job
#
# Each experiment is a command-line program with `--preset`, `--device`, `--out` and resumable
# output (rerun the same command after an interruption):
#
# | notebook | program | what | several GPUs |
# | --- | --- | --- | --- |
# | 06 | `python -m nlteach.experiments.optimizers --task digits\|shakespeare` | every optimizer on one task, all seeds | no (one process) |
# | 07 | `python -m nlteach.experiments.cms_tasks` | every CMS arm on the sequential tasks, all seeds (CPU only) | no (one process) |
# | 09 | `python -m nlteach.train` with the settings of `nlteach.experiments.lm_comparison` | one language model, one seed | **yes: `torchrun` (DDP)** |
# | 10 | `python -m nlteach.continual` | one learner on one task stream, all seeds | no (one process) |
# | 11 | `python -m nlteach.longctx` | one model (or CMS variant) on one task, all seeds | no (one process) |
#
# Only `nlteach.train` runs one job on several GPUs: under `torchrun` every process takes
# `batch_size / world_size` rows of the same global batch and the gradients are averaged, so N
# GPUs compute what one GPU computes (notebook 09, `tests/test_train.py`). The other
# programs are single-process: starting them with `torchrun` would run the same job N times. For
# them, several GPUs help by running **different jobs at the same time**, one per GPU, which is
# why `experiment_jobs` cuts every experiment into jobs with their own output folders. (Notebook
# 09's whole comparison is also one command, `python -m nlteach.experiments.lm_comparison`, one
# process for every model and seed; the jobs here run the same settings,
# `lm_comparison.train_arguments(preset)`, one model and seed per job, so each can use every GPU.)

# %%
jobs = results.experiment_jobs("full", seeds=(0, 1, 2), runs_dir="runs")
print("jobs per notebook:", dict(Counter(j["notebook"] for j in jobs)))
print(text_table([{"notebook": j["notebook"], "program": j["module"], "torchrun": j["ddp"], "out": j["out"]}
                    for j in jobs[::6]], ["notebook", "program", "torchrun", "out"]))

# %% [markdown]
# ### One GPU
#
# Before the first long job run `make gpu-check` once (tools/gpu_check.py: the CUDA tests, the
# benchmarks and 50 steps of each main model, capped at 7.5 minutes): nothing in the library has
# run on CUDA before it.
#
# The jobs one after the other (`python -m ...` picks CUDA when it is there). Save the script and
# run it with `bash full_1gpu.sh`; an interrupted script can simply be run again, every job
# resumes or skips what is finished. The first lines:

# %%
one_gpu = results.launch_script(jobs, gpus=1)
print("\n".join(one_gpu.splitlines()[:8]) + f"\n... ({len(one_gpu.splitlines())} lines)")

# %% [markdown]
# ### Several GPUs
#
# With `G` GPUs: the language-model jobs run one after the other, each on all GPUs through
# `torchrun --standalone --nproc_per_node G` (the `--batch-size` stays the global batch); then the
# single-process jobs run `G` at a time, GPU `i` taking jobs `i, i + G, ...`
# (`CUDA_VISIBLE_DEVICES=i`), each GPU's log in `gpu<i>.log`.

# %%
four_gpus = results.launch_script(jobs, gpus=4)
lines = four_gpus.splitlines()
print("\n".join(lines[:5] + ["..."] + [ln[:160] + (" ..." if len(ln) > 160 else "") for ln in lines[-6:]]))

# %% [markdown]
# ## 2. How long does it take? (measured on a CPU)
#
# **Slow cell.** At the `laptop` preset the next cell trains for about ten minutes on a 2-core CPU
# (seconds at `tiny`), so it runs only with `TRAIN_LIVE = True`; a progress bar shows each job.
#
# **Live, at the active preset.** One job of each kind, timed now in this process (at `tiny`,
# these are smoke-test sizes: the time is mostly start-up); the training run's folder is
# temporary and removed right after it. The CPU, its load and the thread count
# decide these numbers; they say nothing about a GPU.

# %%
from nlteach.continual import preset_config as continual_config
from nlteach.continual import run as continual_run
from nlteach.train import train


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if live_cell(TRAIN_LIVE, minutes=10, action="time the jobs now",
             instead="the run times recorded in the committed results (next table) stand for it"):
    live = []
    for m in ("transformer", "hope"):
        c = longctx.preset_config("s-niah", m, preset, seeds=(0,))
        live.append({"job": f"nlteach.longctx s-niah {m}, 1 seed",
                     "seconds": timed(lambda c=c: longctx.run(c, progress=True))})
    c = continual_config("split-digits", "finetune", preset, seeds=(0,))
    live.append({"job": "nlteach.continual split-digits finetune, 1 seed",
                 "seconds": timed(lambda: continual_run(c, progress=True))})
    with tempfile.TemporaryDirectory(prefix="nb12_") as workdir:  # the run's checkpoints, removed after the run
        live.append({"job": "nlteach.train transformer, 1 seed",
                     "seconds": timed(lambda: train(model="transformer", preset=preset, out=f"{workdir}/lm",
                                                    sample_chars=0))})
    print(f"preset {preset}, {torch.get_num_threads()} thread(s), device {config.get_device()}")
    print(text_table(live, ["job", "seconds"]))

# %% [markdown]
# **Recorded in the committed results.** Long-context runs record their training and evaluation
# seconds per seed; `nlteach.train` records its training time. These are the laptop-preset runs
# of notebook 11, on a 2-core CPU shared with other work (so they are upper bounds for that CPU),
# one torch thread each:

# %%
exps = results.load_all()
timing = results.timing_rows(exps)
if timing:
    print(text_table([{"experiment": t["experiment"], "run": t["run"], "device": t["device"], "seeds": t["seeds"],
                         "steps": t["steps"], "s/seed": f"{t['seconds_per_seed']['mean']:.0f} ± {t['seconds_per_seed']['std']:.0f}"}
                        for t in timing], ["experiment", "run", "device", "seeds", "steps", "s/seed"]))
else:
    print("no committed result records its run time yet")

# %% [markdown]
# ## 3. How much more work is the full preset?
#
# Not a time: the number of training tokens (examples x length, summed over steps) one seed
# processes, read from the presets, for the long-context runs of notebook 11, and the size of the
# models. On a GPU the full preset's longer sequences and wider models use the hardware far better
# than the laptop sizes use a CPU, so time does not scale like this ratio; we have not measured it.

# %%
rows = []
for task in ("s-niah", "mqar", "parity"):
    cfg = {p: longctx.preset_config(task, "hope", p) for p in ("laptop", "full")}
    tok = {p: c.steps * c.batch_size * sum(c.train_lengths) / len(c.train_lengths) for p, c in cfg.items()}
    rows.append({"task": task, "laptop tokens": int(tok["laptop"]), "full tokens": int(tok["full"]),
                 "ratio": tok["full"] / tok["laptop"], "laptop params": cfg["laptop"].params,
                 "full params": cfg["full"].params, "longest test (full)": max(cfg["full"].eval_lengths)})
print(text_table(rows, ["task", "laptop tokens", "full tokens", "ratio", "laptop params", "full params",
                          "longest test (full)"]))

# %% [markdown]
# ## 4. Results: every committed `results.json`
#
# `results.load_all()` reads `results/<experiment>/results.json` (or one file per sub-folder when a
# command ran several methods or models), sorts them into language modelling (notebook 09),
# forgetting (10) and long context (11), and reports any file it cannot use instead of failing.
# Everything below is drawn from those files, with the seeds they hold; an experiment with no
# committed file is simply absent. The optimizer comparison of notebook 06 and the sequential-tasks
# experiment of notebook 07 are listed as `other` with their file names only: their own notebooks
# draw them (`nlteach.experiments.optimizers`, `nlteach.experiments.cms_tasks`).

# %%
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
# ### The README's results section
#
# The README's short results section is generated from the same files
# (`python -m nlteach.results --readme`), so it never says more than the files do:

# %%
display(Markdown(results.readme_section()))

# %% [markdown]
# ## Recap
#
# **What you can now do.**
#
# - Launch any experiment of the course at the `full` preset, on one GPU or with `torchrun` on
#   several, and resume it.
# - Estimate how much more work the full preset is than the laptop preset.
# - Regenerate every results table and figure, and the README's results section, from the
#   committed `results.json` files.
#
# **What the next notebook adds.** This is the last notebook. From here: run the `full` preset on a
# GPU, try the open questions the notebooks list (the "things to try" of 09 and 11, the open
# experiment of 10), or read `docs/paper-notes.md` for every choice the course made where the paper
# is open.
