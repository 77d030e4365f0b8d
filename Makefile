# nlteach: two commands. `make lab` opens the course (your working copy, notebooks-work/), `make test`
# runs every check. `make lab-refresh` brings the course's new notebook versions into your copy.
# Both create .venv/ at the repository root on first use and reuse it afterwards.
#
# Variables (set on the command line, e.g. `make test TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu`):
#   PYTHON           the interpreter that creates the venv (default: python3, must be >= 3.10)
#   TORCH            the torch requirement installed first (default: torch)
#   TORCH_INDEX_URL  a wheel index for torch only, e.g. the CPU-only wheels; empty = the default index
#   PYTEST_ARGS      extra arguments for pytest (e.g. -x, -k memory, -m "not browser")
#   LAB_ARGS         extra arguments for JupyterLab (e.g. --no-browser --port 8899)

PYTHON ?= python3
TORCH ?= torch
TORCH_INDEX_URL ?=
PYTEST_ARGS ?=
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.nlteach-installed

.PHONY: lab lab-refresh test venv sync lint bench gpu-check clean-venv

venv: $(STAMP)

# Re-installs only when pyproject.toml changed since the last install (fast when up to date).
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "nlteach needs Python >= 3.10, found " + sys.version' 
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c 'import torch' 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH)" $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL),)
	$(PY) -m pip install --quiet -e ".[course,dev]"
	@touch $@

# LAB_ARGS: extra JupyterLab options (e.g. --no-browser --port 8899). Root (containers) needs --allow-root.
# The lab opens notebooks-work/, the learner's git-ignored copy of notebooks/ (tools/lab.py): made on
# first use, never overwritten; `make lab-refresh` brings in the course's new versions (edited
# notebooks are kept, the new version is written beside them). Same data mirror default as `make test`.
LAB_ARGS ?=
ROOT_ARGS := $(if $(filter 0,$(shell id -u)),--allow-root,)
lab: venv
	$(PY) -m tools.lab $(ROOT_ARGS) $(LAB_ARGS)

lab-refresh: venv
	$(PY) -m tools.lab --refresh $(ROOT_ARGS) $(LAB_ARGS)

# Unit tests (the layer contract included), every notebook executed at the tiny preset (nbval, lax),
# every solution graded. Data come from $NLTEACH_DATA_MIRROR when it is set (CI), else the network.
test: venv
	NLTEACH_SIZE=tiny MPLBACKEND=agg $(PY) -m pytest tests notebooks --nbval-lax --nbval-cell-timeout=300 \
	    --durations=15 $(PYTEST_ARGS)

# After editing a notebook (either side of the pair): bring .ipynb and .py back in sync.
sync: venv
	$(VENV)/bin/jupytext --sync notebooks/[0-9][0-9]_*.py

lint: venv
	$(VENV)/bin/ruff check nlteach tests solutions tools

bench: venv
	$(PY) -m nlteach.bench --help

# On a machine with an NVIDIA GPU: the CUDA tests, the benchmarks on CUDA (and flash-linear-attention's
# kernels when `fla` imports) and a short full-preset run of each main model, in under 8 minutes on one
# H100; summary in results/gpu_check_<gpu>/results.json (tools/gpu_check.py). Exit 3 without CUDA.
# GPU_CHECK_ARGS: e.g. --dry-run (the plan), --only cuda-tests,bench-memory, --out DIR, --overwrite.
# GPU_PY: an interpreter that already has a CUDA build of torch (then no venv is made), e.g. GPU_PY=python3.
GPU_CHECK_ARGS ?=
GPU_PY ?= $(PY)
gpu-check: $(if $(filter $(PY),$(GPU_PY)),venv,)
	$(GPU_PY) -m tools.gpu_check $(GPU_CHECK_ARGS)

# dist/nlteach-<version>-py3-none-any.whl: the library with the committed results as package data (what a
# plain `pip install` or a Colab upload gets; see README). build/ is cleared first so no stale file ships.
.PHONY: wheel
wheel: venv
	rm -rf build
	$(PY) -m pip wheel . --no-deps --wheel-dir dist

clean-venv:
	rm -rf $(VENV)
