"""Collect the committed results (``results/<experiment>/results.json``) into tables and figures.

    python -m nlteach.results              # every table, as markdown
    python -m nlteach.results --readme     # the README's short results section

Each experiment is one folder under ``results/``: either it holds a ``results.json``, or (a run of
several methods or models written by a command line) its sub-folders each hold one, e.g.
``results/continual_clinc150_laptop/<method>/results.json``. :func:`load_all` reads both layouts,
skips other files, and sorts what it finds into kinds:

- ``longctx``: :mod:`nlteach.longctx` (``per_seed`` entries with ``accuracy`` per context length;
  single runs or the combined file of several variants; runs are named by
  :func:`nlteach.longctx.run_label`, so those made before the in-context CMS read
  ``hope-static-cms_steps1-4-16``, what they measured, not ``hope_cms1-4-16``);
- ``continual``: :mod:`nlteach.continual` (``per_seed`` entries with ``acc_matrix`` and, since
  issue 19, ``acc_matrix_task``; ``summary`` with ``avg_acc``, ``bwt``, ``forgetting``,
  ``learning_acc`` and their ``task_`` twins; every measure is recomputed here from the matrices,
  and one a file cannot give reads "not measured yet");
- ``lm``: language-model runs and comparisons (:mod:`nlteach.train` results, or any file whose
  records name a ``model`` and a ``val_loss``/``test_loss``);
- ``other``: anything else (listed, never an error).

A file that cannot be read or understood is reported in the experiment's ``problems`` and left
out of the tables, so one bad file never hides the others. Every run's provenance is checked
(:func:`provenance_status`: a commit, a clean tree, a command); rows from a file lacking any of
them are marked † and listed under the tables with what is missing and the uncommitted paths
(:data:`LEGACY_WITHOUT_PROVENANCE` lists the committed files awaiting their rerun). Only numbers
from these files are shown: nothing here knows the paper's numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nlteach.config import PRESETS
from nlteach.continual import metrics
from nlteach.continual.learners import available_learners
from nlteach.continual.runner import method_tuning, normalize_record
from nlteach.continual.streams import STREAMS
from nlteach.experiments import cms_tasks, lm_comparison, lm_reference, optimizers
from nlteach.longctx.plots import draw_grid
from nlteach.longctx.runner import (
    LEARNED_ACCURACY,
    SEEDS_DISAGREE,
    run_label,
    seeds_cell,
    split_combined,
)
from nlteach.longctx.tasks import LANGUAGES, make_task
from nlteach.runs import RESULTS_ROOT
from nlteach.runs.io import CorruptFileError, read_json
from nlteach.runs.stats import paired, summarize
from nlteach.runs.tables import markdown_table, pm_summary

DEFAULT_ROOT = RESULTS_ROOT
KINDS = ("longctx", "continual", "lm", "other")


@dataclass
class Experiment:
    """One folder of ``results/``. ``runs``: ``{name: results dict}`` (name = model, method or
    variant; a folder with one plain results.json has one run named after the folder)."""

    name: str
    path: Path
    kind: str
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    provenance: dict[str, dict[str, Any]] = field(default_factory=dict)  # {run: provenance_status}

    @property
    def preset(self) -> str | None:
        for r in self.runs.values():
            cfg = r.get("config", {}) if isinstance(r, dict) else {}
            if isinstance(cfg, dict) and cfg.get("preset"):
                return str(cfg["preset"])
        for p in ("tiny", "laptop", "full"):
            if self.name.endswith(f"_{p}"):
                return p
        return None


# ---------------------------------------------------------------------------------------------
# Reading and classifying


def _per_seed(d: dict[str, Any]) -> list[dict[str, Any]]:
    ps = d.get("per_seed")
    return ps if isinstance(ps, list) and all(isinstance(p, dict) for p in ps) else []


def classify(d: Any) -> str:
    """The kind of one results dict (see the module docstring)."""
    if not isinstance(d, dict):
        return "other"
    ps = _per_seed(d)
    if ps and all("accuracy" in p and isinstance(p["accuracy"], dict) for p in ps):
        return "longctx"
    if ps and all("acc_matrix" in p for p in ps):
        return "continual"
    if _lm_records(d):
        return "lm"
    return "other"


def static_cms_label(label: str) -> str:
    """The name today's library gives a HOPE-family arm of a language-model comparison written
    before the CMS learned in context (issue 17; such files have no ``provenance``): its CMS was
    fixed at test time, so ``hope`` is ``hope-static-cms``, ``hope-attention`` is
    ``hope-attention-static-cms`` and an ablation ``X`` of HOPE is ``X (static CMS)``."""
    if label in ("hope", "hope-attention"):
        return f"{label}-static-cms"
    if label.startswith("hope") and "static" not in label and label != "hope-no-cms":
        return f"{label} (static CMS)"
    return label


def _lm_records(d: dict[str, Any]) -> list[dict[str, Any]]:
    """Flat records ``{"model", "seed", "val_loss", "test_loss", "n_params"}`` from the layouts
    language-model results come in (empty when ``d`` is not one of them)."""
    def rec(model, r, seed=None):
        if not isinstance(r, dict):
            return None
        val, test = r.get("val_loss"), r.get("test_loss")
        if not any(isinstance(v, int | float) for v in (val, test)):
            return None
        return {"model": str(model), "seed": r.get("seed", seed), "val_loss": val, "test_loss": test,
                "n_params": r.get("n_params")}

    out = []
    cfg = d.get("config") if isinstance(d.get("config"), dict) else {}
    if "test_loss" in d or "val_loss" in d:  # one nlteach.train run
        name = cfg.get("model", "model")
        hidden = (cfg.get("arch") or {}).get("memory_hidden") if isinstance(cfg.get("arch"), dict) else None
        if hidden is not None:  # another memory width is another arm: never pooled with the default
            name = f"{name} (memory_hidden={hidden})"
        r = rec(name, d, cfg.get("seed"))
        return [r] if r else []
    static = "provenance" not in d  # notebook 09's files from before the in-context CMS (issue 17)
    for p in _per_seed(d):  # per_seed records that name their model
        if "model" in p:
            r = rec(static_cms_label(p["model"]) if static else p["model"], p)
            if r:
                out.append(r)
    for key in ("runs", "models", "per_model"):  # {model: [records]} or {model: record}
        block = d.get(key)
        if isinstance(block, dict):
            for model, recs in block.items():
                for i, r in enumerate(recs if isinstance(recs, list) else [recs]):
                    r = rec(model, r, i)
                    if r:
                        out.append(r)
    return out


def _read(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    try:
        return read_json(path), None
    except (OSError, CorruptFileError) as e:
        return None, f"{path}: cannot be read as JSON ({e})"


def load_experiment(folder: str | Path) -> Experiment | None:
    """The experiment in ``folder`` (None when it holds no results.json at either depth)."""
    folder = Path(folder)
    top = folder / "results.json"
    files = [top] if top.is_file() else sorted(folder.glob("*/results.json"))
    if not files:
        return None
    exp = Experiment(folder.name, folder, "other")
    kinds = []
    for f in files:
        d, err = _read(f)
        if err:
            exp.problems.append(err)
            continue
        kind = classify(d)
        kinds.append(kind)
        if kind == "longctx":
            try:
                runs = split_combined(d)
            except (KeyError, TypeError, ValueError) as e:
                exp.problems.append(f"{f}: not a long-context results file ({e!r})")
                continue
            if f is not top and len(runs) == 1:
                runs = {f.parent.name: next(iter(runs.values()))}
            exp.runs.update({run_label(name, r): r for name, r in runs.items()})
            exp.provenance.update({run_label(name, r): _run_provenance(f, d, name) for name, r in runs.items()})
        else:
            exp.runs[f.parent.name if f is not top else folder.name] = d
            exp.provenance[f.parent.name if f is not top else folder.name] = file_provenance_status(f, d)
    known = [k for k in kinds if k != "other"]
    exp.kind = known[0] if known and len(set(known)) == 1 else ("other" if not known else "mixed")
    if exp.kind == "mixed":
        exp.problems.append(f"{folder}: results of different kinds ({sorted(set(known))}); shown as 'other'")
        exp.kind = "other"
    return exp


def load_all(root: str | Path = DEFAULT_ROOT) -> list[Experiment]:
    """Every experiment under ``root`` (sorted by folder name); an empty list if there is none."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        exp = load_experiment(folder)
        if exp is not None:
            out.append(exp)
    return out


# ---------------------------------------------------------------------------------------------
# Provenance: which commit, from a clean tree, by which command (issue 19 item 1)

PROVENANCE_MARK = "†"
PROVENANCE_NOTE = (f"{PROVENANCE_MARK} no recorded commit/clean tree/command: produced before provenance was "
                   "recorded, or from a tree with uncommitted changes; rerun pending (issue 19)")
RESULTS_FILE_NAMES = ("results.json", "bench_models.json", "tuning.json")  # what a run commits under results/

_LEGACY_CONTINUAL = ("written by nlteach.continual before it recorded provenance: no commit, no command, no "
                     "clean-tree record; rerun pending with today's learners (issue 19 items 1-3)")
# Files under results/ that lack a commit, a clean tree or a command, each with why. The list may
# only shrink: tests/test_results_provenance.py fails when a file not listed here lacks provenance,
# and when a listed file is gone or has gained it (then delete its line).
LEGACY_WITHOUT_PROVENANCE: dict[str, str] = {
    "continual_clinc150_laptop/hope/results.json": _LEGACY_CONTINUAL,
    "lm_tinyshakespeare_laptop/results.json": ("notebook 09's laptop comparison, written by the former "
                                               "`python -m nlteach.models` before provenance was recorded: a "
                                               "command but no commit (its HOPE arms have the static CMS)"),
}


def _own_provenance(d: dict[str, Any]) -> tuple[Any, Any, Any]:
    """``(git_commit, git_dirty, command)`` recorded by one dict: in its ``provenance`` block, or at
    its top level (older long-context files; a top-level ``command`` beside the block counts too)."""
    block = d.get("provenance") if isinstance(d.get("provenance"), dict) else {}
    commit = block.get("git_commit") or d.get("git_commit")
    dirty = block["git_dirty"] if block.get("git_dirty") is not None else d.get("git_dirty")
    command = block.get("command") or d.get("command")
    return commit, dirty, command


def _outside_results(dirty: Any) -> list[str]:
    return sorted(str(p) for p in dirty if not str(p).startswith("results/")) if isinstance(dirty, list) else []


def provenance_status(obj: Experiment | dict[str, Any] | Any) -> dict[str, Any]:
    """Whether a results dict (or every run of an :class:`Experiment`) records what produced it.

    Returns ``{"ok", "commit", "clean", "command"`` (bools), ``"missing"`` (the names of the missing
    ones, of ``"commit"``, ``"clean tree"``, ``"command"``), ``"commits"`` (the recorded commits),
    ``"dirty"`` (recorded uncommitted paths outside ``results/``)``}``. A clean tree is a recorded
    ``git_dirty`` that is empty or lists only ``results/`` paths; not recorded counts as not clean.
    A field missing at the top level may come from the per-seed records (``per_seed[i]["provenance"]``)
    when every one of them has it; any recorded dirty path, at either level, makes the tree not clean.
    For an Experiment: ``ok`` when every run is, the union of the rest, plus ``"runs"``
    (``{run: status}``)."""
    if isinstance(obj, Experiment):
        return _merged_status({name: run_provenance(obj, name) for name in obj.runs})
    d = obj if isinstance(obj, dict) else {}
    commit, dirty, command = _own_provenance(d)
    seeds = [_own_provenance(p) for p in _per_seed(d) if any(_own_provenance(p))]
    if seeds and len(seeds) == len(_per_seed(d)):  # every per-seed record carries its own provenance
        commit = commit or (all(s[0] for s in seeds) and "per-seed")
        command = command or (all(s[2] for s in seeds) and "per-seed")
        if dirty is None and all(isinstance(s[1], list) for s in seeds):
            dirty = [p for s in seeds for p in s[1]]
    paths = sorted({*_outside_results(dirty), *(p for s in seeds for p in _outside_results(s[1]))})
    ok = {"commit": bool(commit), "clean tree": isinstance(dirty, list) and not paths, "command": bool(command)}
    commits = {c for c in [commit, *(s[0] for s in seeds)] if c and c != "per-seed"}
    missing = [k for k, v in ok.items() if not v]
    return {"ok": not missing, "commit": ok["commit"], "clean": ok["clean tree"], "command": ok["command"],
            "missing": missing, "commits": sorted(commits), "dirty": paths}


def run_provenance(exp: Experiment, name: str) -> dict[str, Any]:
    """The :func:`provenance_status` of run ``name`` of ``exp`` (recorded when it was loaded)."""
    return exp.provenance.get(name) or provenance_status(exp.runs[name])


def _merged_status(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    missing = [m for m in ("commit", "clean tree", "command") if any(m in s["missing"] for s in runs.values())]
    return {"ok": not missing, "commit": "commit" not in missing, "clean": "clean tree" not in missing,
            "command": "command" not in missing, "missing": missing,
            "commits": sorted({c for s in runs.values() for c in s["commits"]}),
            "dirty": sorted({p for s in runs.values() for p in s["dirty"]}), "runs": runs}


def file_provenance_status(path: str | Path, d: Any = None) -> dict[str, Any]:
    """:func:`provenance_status` of one results file (``d``: its contents, read when None); when the
    file itself lacks something, the per-seed files beside it (``seeds/seed_*.json``, each with its
    own ``provenance``) may supply it, as per-seed records do."""
    path = Path(path)
    if d is None:
        d, err = _read(path)
        if err:
            return {**provenance_status({}), "problem": err}
    status = provenance_status(d)
    seed_files = sorted(path.parent.glob("seeds/seed_*.json"))
    if status["ok"] or not seed_files or not isinstance(d, dict):
        return status
    records = []
    for f in seed_files:
        s, err = _read(f)
        if err or not isinstance(s, dict):
            return status
        records.append(s)
    return provenance_status({**d, "per_seed": records})


def _run_provenance(path: Path, d: dict[str, Any], variant: str) -> dict[str, Any]:
    """The provenance of one variant of a long-context file: the file's own, or, when it lacks some
    (combined files written before they carried a provenance block), the variant's own folder's file."""
    status = provenance_status(d)
    own = path.parent / variant / "results.json"
    if status["ok"] or not own.is_file() or own == path:
        return status
    return file_provenance_status(own)


def results_files(root: str | Path = DEFAULT_ROOT) -> list[Path]:
    """Every results file under ``root``: ``<experiment>/<name>`` and ``<experiment>/<run>/<name>`` for
    each name of :data:`RESULTS_FILE_NAMES` (per-seed files and configs are not results files)."""
    root = Path(root)
    return sorted(p for name in RESULTS_FILE_NAMES for pattern in (f"*/{name}", f"*/*/{name}")
                  for p in root.glob(pattern) if p.is_file())


def provenance_mark(row: dict[str, Any]) -> str:
    """``" †"`` for a table row whose file lacks commit, clean tree or command (see
    :data:`PROVENANCE_NOTE`), else ``""``."""
    status = row.get("provenance")
    return f" {PROVENANCE_MARK}" if isinstance(status, dict) and not status["ok"] else ""


def provenance_lines(experiments: list[Experiment]) -> list[str]:
    """The README block's footnote: :data:`PROVENANCE_NOTE`, then one line per experiment whose files
    lack something (which runs, what is missing, the commits and the uncommitted paths recorded)."""
    lines = []
    for exp in experiments:
        status = provenance_status(exp)
        if status["ok"]:
            continue
        bad = {name: s for name, s in status["runs"].items() if not s["ok"]}
        which = "every run" if len(bad) == len(status["runs"]) else ", ".join(f"`{n}`" for n in bad)
        missing = [m for m in ("commit", "command") if any(m in s["missing"] for s in bad.values())]
        commits = sorted({c[:7] for s in bad.values() for c in s["commits"]})
        dirty = sorted({p for s in bad.values() for p in s["dirty"]})
        unknown = any("clean tree" in s["missing"] and not s["dirty"] for s in bad.values())
        made = " ".join(([f"made at commit{'s' * (len(commits) > 1)} {', '.join(commits)}"] if commits else [])
                        + ([f"with uncommitted changes to {', '.join(dirty)}"] if dirty else []))
        says = ([f"no recorded {' or '.join(missing)}"] if missing else []) + ([made] if made else []) \
            + (["no record of whether the tree was clean"] if unknown else [])
        lines.append(f"- `{exp.name}` ({which}): {'; '.join(says)}.")
    return ["", PROVENANCE_NOTE + ":", "", *lines] if lines else []


# ---------------------------------------------------------------------------------------------
# Rows


def longctx_rows(exp: Experiment) -> list[dict[str, Any]]:
    """One row per run: the task, the longest training length L, and accuracy (mean, std over
    seeds) at L, at the longest length tested, and at every length (``acc``)."""
    rows = []
    for name, r in exp.runs.items():
        cfg = r.get("config", {})
        ps = _per_seed(r)
        if not ps:
            continue
        lengths = sorted({int(L) for p in ps for L in p["accuracy"]})
        seed_acc = {L: [p["accuracy"].get(str(L), math.nan) for p in ps] for L in lengths}  # seed order
        acc = {L: summarize(v) for L, v in seed_acc.items()}
        train_max = r.get("summary", {}).get("train_max_length") or max(cfg.get("train_lengths", [lengths[0]]))
        at_train = max((L for L in lengths if L <= train_max), default=lengths[0])
        rows.append({"experiment": exp.name, "task": cfg.get("task", "?"), "model": name,
                     "chance": longctx_chance(cfg) if "task" in cfg else math.nan,
                     "seeds": [p["seed"] for p in ps], "train_max": train_max, "lengths": lengths, "acc": acc,
                     "seed_acc": seed_acc,
                     "at_train": at_train, "longest": lengths[-1],
                     "nonfinite": [d.get("seed") for d in r.get("details", []) if d.get("nonfinite_step")],
                     # {seed: {length: fraction}}: examples whose forward pass overflowed (counted wrong)
                     "overflow": {d.get("seed"): d["eval_overflow"] for d in r.get("details", []) if d.get("eval_overflow")},
                     "provenance": run_provenance(exp, name)})
    return rows


CONTINUAL_MEASURES: dict[str, str] = {
    "avg_acc": "final avg. accuracy", "bwt": "BWT", "forgetting": "forgetting", "learning_acc": "learning accuracy",
    "task_avg_acc": "task-IL final avg. accuracy", "task_bwt": "task-IL BWT", "task_forgetting": "task-IL forgetting",
    "task_learning_acc": "task-IL learning accuracy"}
"""Every measure of a continual run (:data:`nlteach.continual.metrics.MEASURES` of the class-incremental
matrix, then of the task-incremental one, ``task_``), with its title. Higher is better for all but forgetting."""
NOT_MEASURED = "not measured yet"


def continual_seed_values(r: dict[str, Any]) -> dict[Any, dict[str, float]]:
    """``{seed: {measure: value}}`` of one continual results dict, computed from its per-seed
    accuracy matrices: every measure of :data:`CONTINUAL_MEASURES` the file can give (the ``task_``
    ones only where the seed has ``acc_matrix_task``: files written before that evaluation have none)."""
    out = {}
    for p in _per_seed(r):
        vals = {k: float(v) for k, v in metrics.measures(p["acc_matrix"]).items()}
        if p.get("acc_matrix_task") is not None:
            vals |= {f"task_{k}": float(v) for k, v in metrics.measures(p["acc_matrix_task"]).items()}
        out[p["seed"]] = vals
    return out


def continual_rows(exp: Experiment) -> list[dict[str, Any]]:
    """One row per method: every measure of :data:`CONTINUAL_MEASURES` (mean, std over seeds; None
    where the file does not hold it, e.g. the task-incremental ones of older files)."""
    rows = []
    for name, r in exp.runs.items():
        cfg = r.get("config", {})
        if not _per_seed(r):
            continue
        try:
            per = continual_seed_values(r)
        except (ValueError, IndexError, TypeError, KeyError) as e:
            exp.problems.append(f"{exp.name}/{name}: accuracy matrices not usable ({e})")
            continue
        vals = {k: [v[k] for v in per.values()] for k in CONTINUAL_MEASURES if all(k in v for v in per.values())}
        rows.append({"experiment": exp.name, "dataset": cfg.get("dataset", exp.name), "method": cfg.get("method", name),
                     "seeds": [p["seed"] for p in _per_seed(r)], "provenance": run_provenance(exp, name),
                     **{k: summarize(vals[k]) if k in vals else None for k in CONTINUAL_MEASURES}})
    return rows


def lm_rows(exp: Experiment) -> list[dict[str, Any]]:
    """One row per model: validation and test loss (nats per token; mean, std over seeds)."""
    by_model: dict[str, list[dict[str, Any]]] = {}
    sources: dict[str, dict[str, dict[str, Any]]] = {}  # {model: {run: provenance}}
    for name, r in exp.runs.items():
        for rec in _lm_records(r):
            by_model.setdefault(rec["model"], []).append(rec)
            sources.setdefault(rec["model"], {})[name] = run_provenance(exp, name)
    rows = []
    for model, recs in by_model.items():
        params = next((r["n_params"] for r in recs if r.get("n_params")), None)
        rows.append({"experiment": exp.name, "model": model, "seeds": [r["seed"] for r in recs], "params": params,
                     "val": summarize([r["val_loss"] for r in recs]),
                     "test": summarize([r["test_loss"] for r in recs]),
                     "provenance": _merged_status(sources[model])})
    return sorted(rows, key=lambda r: (math.isnan(r["val"]["mean"]), r["val"]["mean"]))


# ---------------------------------------------------------------------------------------------
# Markdown


def _seeds(seeds: list[Any]) -> str:
    return ",".join(str(s) for s in seeds)


def longctx_table(rows: list[dict[str, Any]], full: bool = False, experiment: bool = False) -> str:
    """Markdown: accuracy at the longest training length and at the longest tested length
    (``full=True``: every length, lengths beyond training marked *; ``experiment=True``: a first
    column names the results folder, so a model run in two studies shows as two rows that say so)."""
    if full:
        lengths = sorted({L for r in rows for L in r["lengths"]})
        header = ["task", "model", *(f"{L}{'*' if all(L > r['train_max'] for r in rows) else ''}" for L in lengths),
                  "seeds"]
        body = [[r["task"], r["model"] + provenance_mark(r),
                 *(pm_summary(r["acc"][L]) if L in r["acc"] else "" for L in lengths), _seeds(r["seeds"])] for r in rows]
        return markdown_table(header, body)
    header = ["task", "model", "chance", "trained up to", "acc. at that length", "tested up to", "acc. there", "seeds"]
    def cell(r: dict[str, Any], L: int) -> str:  # every seed listed where seeds disagree (a bimodal mean)
        return seeds_cell(r["seed_acc"][L]) if "seed_acc" in r else pm_summary(r["acc"][L])

    body = [[r["task"], r["model"] + provenance_mark(r), f"{r['chance']:.2g}", r["train_max"], cell(r, r["at_train"]),
             r["longest"], cell(r, r["longest"]), _seeds(r["seeds"])] for r in rows]
    if experiment:
        header = ["experiment", *header]
        body = [[r["experiment"], *b] for r, b in zip(rows, body)]
    return markdown_table(header, body)


def formal_table(rows: list[dict[str, Any]]) -> str:
    """Markdown, one row per language, one column per model: ``acc at the longest training length ->
    acc at the longest tested length`` (means over seeds), followed by every seed's values when the
    seeds disagree by :data:`nlteach.longctx.runner.SEEDS_DISAGREE` or more at either length (a mean
    of seeds that solved the language and seeds that did not describes none of them)."""
    def per_seed(r: dict[str, Any]) -> str:
        a, b = r["seed_acc"][r["at_train"]], r["seed_acc"][r["longest"]]
        spread = [max(v) - min(v) for v in (a, b) if len(v) > 1 and all(math.isfinite(x) for x in v)]
        if not spread or max(spread) < SEEDS_DISAGREE:
            return ""
        return f" (seeds: {', '.join(f'{x:.2f}' for x in a)} -> {', '.join(f'{x:.2f}' for x in b)})"

    models = list(dict.fromkeys(r["model"] for r in rows))
    langs = list(dict.fromkeys(r["task"] for r in rows))
    cell = {(r["task"], r["model"]): r for r in rows}
    body = []
    for lang in langs:
        some = next(r for r in rows if r["task"] == lang)
        cells = []
        for m in models:
            r = cell.get((lang, m))
            cells.append("" if r is None else
                         f"{r['acc'][r['at_train']]['mean']:.2f} -> {r['acc'][r['longest']]['mean']:.2f}{per_seed(r)}"
                         f"{provenance_mark(r)}")
        seeds = sorted({s for r in rows if r["task"] == lang for s in r["seeds"]})
        body.append([lang, f"{some['train_max']} -> {some['longest']}", *cells, _seeds(seeds)])
    return markdown_table(["language", "lengths", *models, "seeds"], body)


CONTINUAL_TABLE_MEASURES = ("avg_acc", "bwt", "forgetting", "learning_acc", "task_avg_acc", "task_bwt")


def _pm_or_not(summary: dict[str, Any] | None) -> str:
    return NOT_MEASURED if summary is None else pm_summary(summary)


# ---------------------------------------------------------------------------------------------
# Long context in notebook 11 (issue 19 items 4 and 5): chance levels computed from each task's
# definition, every seed shown where seeds disagree, and model comparisons paired by seed with the
# course's one verdict rule (the 95% t interval of the paired difference, as
# nlteach.experiments.lm_comparison.paired_verdict and the continual tables use it).

LONGCTX_REFERENCE = "transformer"  # the arm every long-context model is paired against
def longctx_chance(config: dict[str, Any]) -> float:
    """Chance accuracy of a long-context run, computed from its task's definition (``config``'s
    ``task`` and ``task_options``: :attr:`nlteach.longctx.tasks.Task.chance`), not read from the file."""
    return make_task(config["task"], **(config.get("task_options") or {})).chance


def longctx_seed_accuracy(run: dict[str, Any], length: int) -> dict[int, float]:
    """``{seed: accuracy at length}`` of one run (results dict); seeds without that length are left out."""
    return {p["seed"]: p["accuracy"][str(length)] for p in _per_seed(run) if str(length) in p["accuracy"]}


def _solved(values: list[float]) -> str:
    return f"{sum(v >= LEARNED_ACCURACY for v in values)}/{len(values)}"


def longctx_summary_table(experiments: list[Experiment]) -> str:
    """Markdown, one row per run of every long-context experiment: the task, the model, chance (from
    the task's definition), accuracy at the longest training length and at the longest tested length
    (:func:`seeds_cell`: mean ± std, every seed where they disagree), how many seeds solve the task at
    the training length (accuracy >= :data:`nlteach.longctx.runner.LEARNED_ACCURACY`), and the seeds.
    Rows of files without full provenance are marked †."""
    body = []
    for exp in experiments:
        for r in longctx_rows(exp) if exp.kind == "longctx" else []:
            run = exp.runs[r["model"]]
            at_train = list(longctx_seed_accuracy(run, r["at_train"]).values())
            longest = list(longctx_seed_accuracy(run, r["longest"]).values())
            body.append([r["task"], r["model"] + provenance_mark(r), f"{longctx_chance(run['config']):.3g}",
                         f"{r['at_train']}: {seeds_cell(at_train)}", _solved(at_train),
                         f"{r['longest']} ({r['longest'] / r['at_train']:g}x): {seeds_cell(longest)}", _seeds(r["seeds"])])
    return markdown_table(["task", "model", "chance", "at the training length", f"seeds >= {LEARNED_ACCURACY:g} there",
                           "at the longest tested length", "seeds"], body)


def longctx_length_table(exp: Experiment) -> str:
    """Markdown for one long-context experiment: one row per run, one column per tested length
    (beyond training marked *), each cell :func:`seeds_cell`; a chance column computed from the task."""
    rows = longctx_rows(exp)
    if not rows:
        return "(no runs)"
    lengths = sorted({L for r in rows for L in r["lengths"]})
    header = ["model", "chance", *(f"{L}{'*' if all(L > r['train_max'] for r in rows) else ''}" for L in lengths),
              "seeds"]
    body = []
    for r in rows:
        run = exp.runs[r["model"]]
        cells = [seeds_cell(list(longctx_seed_accuracy(run, L).values())) if L in r["acc"] else "" for L in lengths]
        body.append([r["model"] + provenance_mark(r), f"{longctx_chance(run['config']):.3g}", *cells, _seeds(r["seeds"])])
    return markdown_table(header, body)


def longctx_paired_rows(exp: Experiment, reference: str = LONGCTX_REFERENCE) -> list[dict[str, Any]]:
    """Every other run of ``exp`` against ``reference``, paired by seed, at the longest training
    length and at the longest tested length: ``{"task", "model", "length", "seeds"`` and
    :func:`nlteach.runs.stats.paired` of the model's accuracy minus the reference's (``"sign"``: +1
    better, -1 worse, 0 no clear difference), ``"provenance"``}``; empty without the reference."""
    if exp.kind != "longctx" or reference not in exp.runs:
        return []
    ref_row = next(r for r in longctx_rows(exp) if r["model"] == reference)
    out = []
    for r in longctx_rows(exp):
        if r["model"] == reference:
            continue
        for L in dict.fromkeys((r["at_train"], r["longest"])):
            own = longctx_seed_accuracy(exp.runs[r["model"]], L)
            ref = longctx_seed_accuracy(exp.runs[reference], L)
            seeds = sorted(set(own) & set(ref))
            if not seeds:
                continue
            out.append({"task": r["task"], "model": r["model"], "length": L, "seeds": seeds,
                        **paired([own[s] for s in seeds], [ref[s] for s in seeds]),
                        "provenance": _merged_status({r["model"]: r["provenance"], reference: ref_row["provenance"]})})
    return out


def paired_word(d: dict[str, Any]) -> str:
    """The course's one verdict rule on a paired difference (higher is better): ``better`` (``worse``)
    when its whole 95% interval lies above (below) 0, else ``no clear difference``; one seed cannot tell."""
    if d["n"] < 2:
        return "one seed: cannot tell"
    return {1: "better", -1: "worse", 0: "no clear difference"}[d["sign"]]


def longctx_paired_table(experiments: list[Experiment], reference: str = LONGCTX_REFERENCE) -> str:
    """Markdown: each model minus ``reference``, paired by seed (:func:`longctx_paired_rows`), mean
    [95% interval] and :func:`paired_word`; empty string when no experiment has a pair."""
    rows = [r for e in experiments for r in longctx_paired_rows(e, reference)]
    if not rows:
        return ""
    body = [[r["task"], r["model"] + provenance_mark(r), r["length"],
             f"{r['mean']:+.2f} [{r['ci95'][0]:+.2f}, {r['ci95'][1]:+.2f}]" if r["n"] > 1 else
             ", ".join("nan" if x is None else f"{x:+.2f}" for x in r["diffs"]),
             paired_word(r), _seeds(r["seeds"])] for r in rows]
    return markdown_table(["task", f"model - {reference}", "length", "accuracy difference [95% interval]", "verdict",
                           "paired seeds"], body)


def longctx_settings_line(exp: Experiment) -> str:
    """What the runs of ``exp`` were trained and tested on, read from their configs: preset, budget,
    steps x batch, learning rate, training and tested lengths, task options, seeds."""
    cfgs = [r.get("config", {}) for r in exp.runs.values()]
    parts = []
    for key, name in (("preset", "preset"), ("budget", "budget"), ("steps", "steps"), ("batch_size", "batch"),
                      ("lr", "learning rate"), ("curriculum", "curriculum (steps)"), ("curriculum_needles", "needles during the curriculum"),
                      ("train_lengths", "trained on lengths"), ("eval_lengths", "tested at lengths"),
                      ("task_options", "task options"), ("params", "parameters")):
        values = list(dict.fromkeys(str(c.get(key)) for c in cfgs if c.get(key) not in (None, {}, 0)))
        if values:
            parts.append(f"{name} {' / '.join(values)}")
    seeds = sorted({s for r in exp.runs.values() for s in (p["seed"] for p in _per_seed(r))})
    return "; ".join([*parts, f"seeds {_seeds(seeds)}"])


def _names(items: list[tuple[str, str]]) -> str:
    return ", ".join(f"{m} ({k})" for m, k in items) if items else "none"


def longctx_findings(experiments: list[Experiment]) -> list[str]:
    """Notebook 11's verdict sentences, one markdown bullet per long-context experiment, written from
    its files: which runs solve the task at the longest training length on every seed, on some, on
    none (accuracy >= :data:`nlteach.longctx.runner.LEARNED_ACCURACY`), and which are above chance
    at the longest tested length (the 95% interval of the mean over seeds lies above the chance
    level of the task's definition) with their mean there. Rows of files without full provenance are
    marked †."""
    out = []
    for exp in experiments:
        rows = longctx_rows(exp) if exp.kind == "longctx" else []
        if not rows:
            continue
        every, some, none, above, not_above = [], [], [], [], []
        chance = longctx_chance(exp.runs[rows[0]["model"]]["config"])
        for r in rows:
            name = r["model"] + provenance_mark(r)
            vals = list(longctx_seed_accuracy(exp.runs[r["model"]], r["at_train"]).values())
            k = sum(v >= LEARNED_ACCURACY for v in vals)
            (every if k == len(vals) else some if k else none).append((name, f"{k}/{len(vals)}"))
            z = r["acc"][r["longest"]]
            (above if z["n"] > 1 and z["ci95"][0] > chance else not_above).append((name, f"{z['mean']:.2f}"))
        task = rows[0]["task"]
        train, longest = max(r["at_train"] for r in rows), max(r["longest"] for r in rows)
        solved = "; ".join(f"{words} by {_names(group)}" for words, group in (
            ("on every seed", every), ("on some seeds", some), ("on no seed", none)) if group)
        far = "; ".join(f"{words}: {_names(group)}" for words, group in (
            ("above chance by its 95% interval", above), ("not above chance", not_above)) if group)
        out.append(f"- `{exp.name}` ({task}; chance {chance:.3g}): at the training length ({train}), solved "
                   f"(accuracy >= {LEARNED_ACCURACY:g}) {solved}. At {longest} ({longest / train:g}x the training "
                   f"length), {far}.")
    return out


def overflow_lines(rows: list[dict[str, Any]]) -> list[str]:
    """One markdown paragraph naming the long-context runs (of :func:`longctx_rows`) whose forward
    pass overflowed on some test examples (NaN logits or a non-finite gate: counted as wrong), with
    the seeds, the lengths and the largest fraction of examples; empty when none did."""
    items = []
    for r in rows:
        if r.get("overflow"):
            lengths = sorted({int(L) for per in r["overflow"].values() for L in per})
            worst = max(f for per in r["overflow"].values() for f in per.values())
            items.append(f"`{r['experiment']}` {r['model']} (seed {_seeds(sorted(r['overflow']))}; lengths "
                         f"{', '.join(map(str, lengths))}; up to {worst:.0%} of the examples)")
    if not items:
        return []
    return ["", "At lengths beyond training, the forward pass of some runs overflowed on some test examples "
            "(a memory's state growing along the sequence until a value is no longer finite); those examples "
            "count as answered wrong: " + "; ".join(items) + "."]


def longctx_report(name: str, root: str | Path = DEFAULT_ROOT, *, command: str | None = None,
                   reference: str = LONGCTX_REFERENCE) -> str:
    """Markdown for the long-context results folder ``root/name``: its settings, accuracy at every
    length (with chance and every seed where seeds disagree), each model paired against
    ``reference``, and the provenance notes; or a line saying it is not measured yet (with
    ``command``, the command that makes it). Nothing here is typed: every number comes from the files."""
    exp = load_experiment(Path(root) / name)
    if exp is None or exp.kind != "longctx":
        return (f"**`results/{name}`: not measured yet.**"
                + (f" The command that makes it: `{command}`" if command else ""))
    lines = [f"**`results/{name}`** ({longctx_settings_line(exp)}):", "", longctx_length_table(exp)]
    pairs = longctx_paired_table([exp], reference)
    if pairs:
        lines += ["", f"Each model minus the {reference}, paired by seed (better/worse only when the whole 95% "
                  "interval lies above/below 0):", "", pairs]
    lines += overflow_lines(longctx_rows(exp))
    notes = provenance_lines([exp])  # the files of this folder that lack commit, clean tree or command
    lines += notes
    lines += [f"\nnote: {p}" for p in exp.problems]
    return "\n".join(lines)


def continual_table(rows: list[dict[str, Any]]) -> str:
    """Markdown, one row per (data set, method): the class-incremental measures, learning accuracy and
    the task-incremental final accuracy and BWT (:data:`CONTINUAL_TABLE_MEASURES`; "not measured yet"
    where the file has no task-incremental matrices), mean ± std over seeds."""
    header = ["data set", "method", *(CONTINUAL_MEASURES[k] for k in CONTINUAL_TABLE_MEASURES), "seeds"]
    body = [[r["dataset"], r["method"] + provenance_mark(r), *(_pm_or_not(r.get(k)) for k in CONTINUAL_TABLE_MEASURES),
             _seeds(r["seeds"])] for r in rows]
    return markdown_table(header, body)


def _learner_order(methods: Iterable[str]) -> list[str]:
    """The distinct ``methods`` in the order of :func:`available_learners` (others after them, as met)."""
    seen = list(dict.fromkeys(methods))
    known = [m for m in available_learners() if m in seen]
    return known + [m for m in seen if m not in known]


def continual_pivot(rows: list[dict[str, Any]]) -> str:
    """Markdown, one row per method, one column per data set: ``avg acc (BWT)`` (means over seeds;
    the number of seeds is added when it is not 3); "not measured yet" where a data set has no run
    of the method."""
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    methods = _learner_order(r["method"] for r in rows)
    cell = {(r["method"], r["dataset"]): r for r in rows}
    body = []
    for m in methods:
        cells = []
        for d in datasets:
            r = cell.get((m, d))
            if r is None:
                cells.append(NOT_MEASURED)
                continue
            n = len(r["seeds"])
            cells.append(f"{r['avg_acc']['mean']:.2f} ({r['bwt']['mean']:+.2f})" + ("" if n == 3 else f", {n} seed{'s' * (n > 1)}")
                         + provenance_mark(r))
        body.append([m, *cells])
    return markdown_table(["method", *datasets], body)


CONTINUAL_REFERENCE = "finetune"  # the arm every continual learner is paired against
CONTINUAL_UPPER_BOUND = "joint"  # trained on every task at once: not a continual learner, not paired


def continual_pair(exp: Experiment, a: str, b: str) -> dict[str, Any] | None:
    """Run ``a`` minus run ``b`` of one continual experiment, paired by seed over the seeds both have:
    ``{"dataset", "method": a, "reference": b, "seeds", <measure>: paired dict or None, "provenance"}``
    with every measure of :data:`CONTINUAL_MEASURES` (:func:`nlteach.runs.stats.paired`: mean, ci95,
    sign, diffs; None where either file lacks the measure). None when either run is missing."""
    if a not in exp.runs or b not in exp.runs:
        return None
    own, ref = continual_seed_values(exp.runs[a]), continual_seed_values(exp.runs[b])
    seeds = sorted(set(own) & set(ref), key=str)
    row = {"dataset": exp.runs[a].get("config", {}).get("dataset", exp.name), "method": a, "reference": b,
           "seeds": seeds, "provenance": _merged_status({n: run_provenance(exp, n) for n in (a, b)})}
    for k in CONTINUAL_MEASURES:
        ok = seeds and all(k in own[s] and k in ref[s] for s in seeds)
        row[k] = paired([own[s][k] for s in seeds], [ref[s][k] for s in seeds]) if ok else None
    return row


def continual_paired_rows(experiments: list[Experiment]) -> list[dict[str, Any]]:
    """Each continual learner against plain fine-tuning on the same data set, paired by seed
    (:func:`continual_pair`: ``"avg_acc"``, ``"bwt"``, ... the method minus fine-tuning)."""
    rows = []
    for exp in experiments:
        if exp.kind != "continual" or CONTINUAL_REFERENCE not in exp.runs:
            continue
        try:
            for name in exp.runs:
                if name not in (CONTINUAL_REFERENCE, CONTINUAL_UPPER_BOUND):
                    rows.append(continual_pair(exp, name, CONTINUAL_REFERENCE))
        except (KeyError, ValueError, IndexError, TypeError) as e:
            exp.problems.append(f"{exp.name}: accuracy matrices not usable for paired differences ({e})")
    return rows


def continual_paired_lines(experiments: list[Experiment]) -> list[str]:
    """The README block's paired differences against fine-tuning (nothing without continual results):
    one row per method and measure, one column per data set, ``mean [95% interval]`` and the verdict
    by the course's one rule (better/worse when the interval excludes 0)."""
    rows = continual_paired_rows(experiments)
    if not rows:
        return []
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    cell = {(r["method"], r["dataset"]): r for r in rows}
    body = []
    for method in _learner_order(r["method"] for r in rows):
        for key, title in (("avg_acc", "final avg. accuracy"), ("bwt", "BWT")):
            cells = []
            for ds in datasets:
                r = cell.get((method, ds))
                if r is None or r[key] is None:
                    cells.append(NOT_MEASURED)
                    continue
                d = r[key]
                lo, hi = d["ci95"]
                word = {1: "better", -1: "worse", 0: "no clear difference"}[d["sign"]]
                cells.append(f"{d['mean']:+.3f} [{lo:+.3f}, {hi:+.3f}] {word}{provenance_mark(r)}")
            body.append([method, title, *cells])
    n = sorted({len(r["seeds"]) for r in rows})
    return ["", f"Each learner minus plain fine-tuning ({CONTINUAL_REFERENCE}), paired by seed ({'/'.join(map(str, n))} "
            "seeds): mean [95% interval]; better (worse) when the whole interval lies above (below) 0, else no clear "
            "difference (higher is better for both measures):", "",
            markdown_table(["method", "measure", *datasets], body)]


# ---------------------------------------------------------------------------------------------
# Notebook 10: every number of its tables and verdict, generated from the results files


def continual_experiments(root: str | Path = DEFAULT_ROOT, preset: str = "laptop") -> dict[str, Experiment]:
    """``{stream: Experiment}`` for ``results/continual_<stream>_<preset>`` in the order of
    :data:`nlteach.continual.streams.STREAMS` (clinc150, banking77, split-digits, permuted-digits);
    streams without results are left out."""
    out = {}
    for stream in STREAMS:
        exp = load_experiment(Path(root) / f"continual_{stream}_{preset}")
        if exp is not None and exp.kind == "continual":
            out[stream] = exp
    return out


def continual_overview(experiments: dict[str, Experiment]) -> str:
    """Every learner on every stream (:func:`continual_table`: the class-incremental measures, learning
    accuracy, the task-incremental ones), rows marked † where a file lacks provenance."""
    rows = [r for exp in experiments.values() for r in continual_rows(exp)]
    return continual_table(rows) if rows else "(no continual results)"


_WORDS = {1: "better", -1: "worse", 0: "no difference the seeds can detect"}


def paired_words(d: dict[str, Any] | None, *, higher_is_better: bool = True, digits: int = 3) -> str:
    """One paired difference (:func:`nlteach.runs.stats.paired`) in words, by the course's one verdict
    rule (that of :func:`nlteach.experiments.lm_comparison.paired_verdict`): better or worse when the
    95% t interval of the seed-paired difference lies wholly on one side of 0, otherwise no difference
    the seeds can detect. ``higher_is_better=False`` for forgetting. None: "not measured yet"."""
    if d is None:
        return NOT_MEASURED
    if d["n"] < 2:
        diffs = ", ".join("nan" if x is None else f"{x:+.{digits}f}" for x in d["diffs"])
        return f"{diffs} on {d['n']} paired seed: no interval, cannot tell"
    lo, hi = d["ci95"]
    sign = d["sign"] if higher_is_better else -d["sign"]
    return f"{d['mean']:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}] {_WORDS[sign]}"


def _pairs(experiments: dict[str, Experiment], a: str, b: str) -> dict[str, dict[str, Any] | None]:
    return {stream: continual_pair(exp, a, b) for stream, exp in experiments.items()}


def continual_paired_table(experiments: dict[str, Experiment], pairs: list[tuple[str, str]],
                           measures: tuple[str, ...] = ("avg_acc", "bwt", "learning_acc", "task_avg_acc")) -> str:
    """Markdown: one row per (comparison ``a - b``, measure), one column per stream: the seed-paired
    difference, its 95% interval and the verdict word (:func:`paired_words`); "not measured yet"
    where a run or a measure is missing; † where a file lacks provenance."""
    for k in measures:
        if k not in CONTINUAL_MEASURES:
            raise ValueError(f"measures must be in {list(CONTINUAL_MEASURES)}, got {k!r}.")
    body = []
    for a, b in pairs:
        rows = _pairs(experiments, a, b)
        for k in measures:
            cells = [NOT_MEASURED if r is None else paired_words(r[k], higher_is_better="forgetting" not in k)
                     + provenance_mark(r) for r in rows.values()]
            body.append([f"{a} − {b}", CONTINUAL_MEASURES[k], *cells])
    return markdown_table(["comparison", "measure", *experiments], body)


def _tally(rows: dict[str, dict[str, Any] | None], key: str) -> str:
    """``better on X; worse on Y; no detectable difference on Z; not measured on W`` over streams."""
    groups: dict[str, list[str]] = {}
    for stream, r in rows.items():
        d = None if r is None else r[key]
        word = ("not measured yet" if d is None else "one seed only" if d["n"] < 2
                else {1: "better", -1: "worse", 0: "no detectable difference"}[d["sign"]])
        groups.setdefault(word, []).append(stream)
    order = ("better", "worse", "no detectable difference", "one seed only", "not measured yet")
    return "; ".join(f"{w} on {', '.join(groups[w])}" for w in order if w in groups)


def _numbers(rows: dict[str, dict[str, Any] | None], key: str) -> str:
    """``stream mean [lo, hi]`` for every stream that has the measure (the words are in :func:`_tally`)."""
    parts = []
    for stream, r in rows.items():
        d = None if r is None else r[key]
        if d is not None:
            parts.append(f"{stream} {d['mean']:+.3f}" + (f" [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]" if d["n"] > 1 else ""))
    return ", ".join(parts)


def _judged(rows: dict[str, dict[str, Any] | None], key: str) -> str:
    numbers = _numbers(rows, key)
    return _tally(rows, key) + (f" ({numbers})" if numbers else "")


def continual_verdict(experiments: dict[str, Experiment]) -> str:
    """Notebook 10's verdict as markdown bullets, every number from the results files: for each
    question, the seed-paired differences with 95% intervals, stream by stream, sorted by the verdict
    word of the one rule (:func:`paired_words`: better/worse when the interval excludes 0); "not
    measured yet" for learners or measures the files do not hold (the persistent HOPE learner and
    the task-incremental measures before the rerun of issue 19)."""
    if not experiments:
        return "No continual results found: nothing to judge yet."
    ref = CONTINUAL_REFERENCE
    out = []

    def both(a: str, b: str, title: str, extra: str = "") -> None:
        rows = _pairs(experiments, a, b)
        head = f"- *{title}* `{a}` − `{b}`"
        if all(r is None for r in rows.values()):
            missing = [m for m in (a, b) if not any(m in e.runs for e in experiments.values())]
            out.append(f"{head}: {NOT_MEASURED} (no `{'`, `'.join(missing) or a}` runs in the results files)." + extra)
            return
        out.append(f"{head}, final average accuracy: {_judged(rows, 'avg_acc')}. BWT: {_judged(rows, 'bwt')}. "
                   f"Learning accuracy: {_judged(rows, 'learning_acc')}. Task-incremental final average accuracy: "
                   f"{_judged(rows, 'task_avg_acc')}." + extra)

    both("cms", ref, "Does multi-frequency training (CMS) reduce forgetting?")
    both("hope", ref, "Does the HOPE-style learner (memory reset per query) reduce forgetting?")
    both("hope", "cms", "Does its in-context memory add anything to the CMS?")
    both("hope-persistent", "hope", "Does a memory that persists across the stream keep more?",
         " Its state at evaluation is the one the training stream left (`docs/decisions.md#continual-hope-persistent`).")
    both("hope-persistent", ref, "And against fine-tuning?")
    for m, title in (("ewc", "EWC against fine-tuning:"), ("replay", "Replay (a stated buffer budget) against "
                                                                      "fine-tuning:"), ("lwf", "LwF against fine-tuning:")):
        both(m, ref, title)
    head = {}
    for stream, exp in experiments.items():  # within one run: task-IL minus class-IL final accuracy
        vals = continual_seed_values(exp.runs[ref]) if ref in exp.runs else {}
        ok = vals and all("task_avg_acc" in v for v in vals.values())
        head[stream] = None if not ok else {
            "avg_acc": paired([v["task_avg_acc"] for v in vals.values()], [v["avg_acc"] for v in vals.values()])}
    out.append("- *How much of fine-tuning's forgetting is the shared head?* Its task-incremental final average "
               "accuracy (the task given at test time) minus its class-incremental one, the same runs: "
               + (f"{NOT_MEASURED} (the runs in the results files predate the task-incremental evaluation)"
                  if all(h is None for h in head.values()) else
                  f"{_judged(head, 'avg_acc')}; better here means higher with the task given, i.e. that part of the "
                  "class-incremental loss was the head's choice between tasks, not lost features") + ".")
    claim = []
    for arm in ("hope", "hope-persistent"):
        for other in (ref, "ewc"):
            rows = {s: r for s, r in _pairs(experiments, arm, other).items() if s != "permuted-digits"}
            claim.append(f"`{arm}` against `{other}`: {_tally(rows, 'avg_acc')}")
    out.append("- *The paper's claim* (HOPE ahead of EWC and of plain training on class-incremental intent "
               "streams; Sec. 9.1, figures only), final average accuracy on our class-incremental streams, by the "
               "same rule: " + "; ".join(claim) + ".")
    rows = [r for exp in experiments.values() for r in continual_rows(exp)]
    marked: dict[str, list[str]] = {}  # learner -> the streams where its file is marked
    for r in rows:
        if not r["provenance"]["ok"]:
            marked.setdefault(r["method"], []).append(r["dataset"])
    if marked:
        which = ("Every number above comes" if sum(map(len, marked.values())) == len(rows) else
                 "The numbers of " + "; ".join(f"`{m}` on {', '.join(s)}" for m, s in marked.items()) + " come")
        out.append(f"- {which} from files marked † in the tables: {PROVENANCE_NOTE.split(' ', 1)[1]}.")
    return "\n".join(out)


def continual_tuning_rows(experiments: dict[str, Experiment]) -> list[dict[str, Any]]:
    """The tuning record of every run (its ``config["tuning"]``, either layout:
    :func:`nlteach.continual.runner.method_tuning`), for every learner of
    :func:`nlteach.continual.learners.available_learners` on every stream: ``{"dataset", "method",
    "record", "run"}``; ``record`` None when the run used the defaults (not tuned) or there is no run
    (``run`` False: not measured yet)."""
    rows = []
    for stream, exp in experiments.items():
        by_method = {r.get("config", {}).get("method", name): r for name, r in exp.runs.items()}
        for method in [*available_learners(), *(m for m in by_method if m not in available_learners())]:
            r = by_method.get(method)
            cfg = (r or {}).get("config", {})
            tuning = cfg.get("tuning") if isinstance(cfg.get("tuning"), dict) else None
            rec = None
            if tuning is not None:
                rec = (normalize_record(tuning, dataset=stream) if "axes" in tuning
                       else method_tuning({stream: tuning}, stream, method))
            rows.append({"dataset": stream, "method": method, "record": rec, "run": r is not None})
    return rows


def grid_value_text(v: Any) -> str:
    return "-".join(map(str, v)) if isinstance(v, list | tuple) else format(v, "g")


def tuning_table(rows: list[dict[str, Any]]) -> str:
    """Markdown, one row per (stream, method): the knobs and their values, the number of points run
    (the budget is :data:`nlteach.continual.tune.GRID_POINTS` per learner, plus widenings), the chosen
    point, its validation scores (final average accuracy, the criterion; BWT; learning accuracy, "not
    measured yet" in records that predate it), and whether the choice still sits on an edge of its grid."""
    body = []
    for r in rows:
        rec = r["record"]
        if rec is None:
            what = "not tuned (defaults)" if r.get("run", True) else f"{NOT_MEASURED} (no run)"
            body.append([r["dataset"], r["method"], what, "0", "", "", "", "", ""])
            continue
        knobs = "; ".join(f"{k} ∈ {{{', '.join(grid_value_text(v) for v in vs)}}}" for k, vs in rec["axes"].items())
        chosen = rec.get("chosen") or {}
        at = next((i for i, p in enumerate(rec["points"]) if json.dumps(p) == json.dumps(chosen)), None)

        def score(key: str, at: int | None = at, rec: dict[str, Any] = rec) -> str:
            v = None if at is None else (rec.get(key) or [None] * len(rec["points"]))[at]
            return NOT_MEASURED if v is None and at is not None else "" if v is None else f"{v:.3f}"

        edge = [k for k, vs in rec["axes"].items() if len(vs) > 1 and k in chosen
                and json.dumps(chosen[k]) in (json.dumps(vs[0]), json.dumps(vs[-1]))]
        body.append([r["dataset"], r["method"], knobs, str(len(rec["points"])),
                     ", ".join(f"{k}={grid_value_text(v)}" for k, v in chosen.items()) or "none (every point diverged)",
                     score("val_avg_acc"), score("val_bwt"), score("val_learning_acc"), ", ".join(edge) or "no"])
    return markdown_table(["stream", "learner", "knobs (grid)", "points run", "chosen", "val. avg acc", "val. BWT",
                           "val. learning acc", "on an edge"], body)


def lm_table(rows: list[dict[str, Any]]) -> str:
    header = ["experiment", "model", "parameters", "val loss", "test loss", "seeds"]
    body = [[r["experiment"], r["model"] + provenance_mark(r), f"{r['params']:,}" if isinstance(r["params"], int) else "",
             pm_summary(r["val"], 3), pm_summary(r["test"], 3), _seeds(r["seeds"])] for r in rows]
    return markdown_table(header, body)


def all_tables(experiments: list[Experiment]) -> str:
    """Every experiment as a markdown section (long context with every length)."""
    parts = []
    for exp in experiments:
        title = f"### {exp.name} ({exp.kind}, preset {exp.preset or '?'})"
        if exp.kind == "longctx":
            body = longctx_table(longctx_rows(exp), full=True)
        elif exp.kind == "continual":
            body = continual_table(continual_rows(exp))
        elif exp.kind == "lm":
            body = lm_table(lm_rows(exp))
        else:
            body = "files: " + ", ".join(sorted(exp.runs)) + " (not a known results layout)"
        parts.append(title + "\n\n" + body + "".join(f"\n\nnote: {p}" for p in exp.problems)
                     + "".join(f"\n\n{line}" for line in provenance_lines([exp])[1:] if line))
    return "\n\n".join(parts) if parts else "(no results found)"


def readme_section(root: str | Path = DEFAULT_ROOT, *, heading: str = "## Results (our measurements)") -> str:
    """The README's short results section, in markdown, generated from the committed files."""
    exps = load_all(root)
    lines = [heading, "",
             "Generated by `python -m nlteach.results --readme` from the committed `results/*/results.json` "
             "(each holds its settings, seeds and per-seed numbers; those that also record the commit, a clean "
             "tree and the command are unmarked, the others are marked and listed at the end). Mean ± standard "
             "deviation over seeds. These are this project's small-scale CPU runs, not the paper's numbers; "
             "notebook 12 draws them all."]
    if not exps:
        return "\n".join([*lines, "", "No results are committed yet.", *speed_lines(root)]) + "\n"
    lines += notebooks_06_07_lines(root)  # the optimizer comparison and the CMS experiment
    reference = lm_reference.markdown(*lm_reference.load(root), lm_reference.load_longer(root))
    lines += ["", "**Language modelling at the reference budget** (notebook 09, issue 18; character-level tiny "
              "Shakespeare, nats per character; `results/lm_reference` and `results/ngram_reference`):", "",
              *reference]
    lm = [r for e in exps if e.kind == "lm" and e.name not in (lm_reference.COMPARISON, lm_reference.LONGER) for r in lm_rows(e)]
    if lm:
        z = lm_comparison.sizes("laptop")
        lines += ["", f"**Language modelling, laptop preset** (notebook 09's live budget, {z['params']:,} parameters and "
                  f"{z['steps'] * z['batch_size'] * z['seq_len']:,} training characters per run: the models have barely "
                  "started learning; character-level tiny Shakespeare, nats per character):",
                  "", lm_table(lm)]
        lines += [f"- `{e.name}`: " + lm_comparison.paired_verdict(d["per_seed"], "hope", "hope-static-cms")
                  for e in exps if e.kind == "lm" and e.name not in (lm_reference.COMPARISON, lm_reference.LONGER) for d in e.runs.values()
                  if {"hope", "hope-static-cms"} <= {r.get("label") for r in d.get("per_seed", [])}]
    cont = [r for e in exps if e.kind == "continual" for r in continual_rows(e)]
    if cont:
        lines += ["", "**Forgetting** (notebook 10; final average accuracy over all tasks after learning the last "
                  "one, and in brackets the backward transfer BWT; 3 seeds unless noted):", "",
                  continual_pivot(cont)]
        lines += continual_paired_lines(exps)  # issue 19 item 5: the README's forgetting claims, generated
    lc = [r for e in exps if e.kind == "longctx" for r in longctx_rows(e)]
    formal = [r for r in lc if r["task"] in LANGUAGES]
    recall = [r for r in lc if r["task"] not in LANGUAGES]
    if recall:
        lines += ["", "**Long context** (notebook 11; trained on short inputs, tested on longer ones; accuracy, beside "
                  "the chance level computed from each task's definition, every seed listed where seeds differ by "
                  f"{SEEDS_DISAGREE:g} or more; "
                  "`_cmsA-B-C` = the CMS levels' in-context periods in tokens, `_stepsA-B-C` = multi-frequency "
                  "training, level l stepping every A, B, C optimizer steps"
                  + ("; `-static-cms`: made before the in-context CMS, with the CMS fixed at test time"
                     if any("-static-cms" in r["model"] for r in recall) else "") + "):", "",
                  longctx_table(recall, experiment=True)]
        lines += ["", "What the table shows, by the same rule everywhere (solved: accuracy >= "
                  f"{LEARNED_ACCURACY:g}; above chance: the 95% interval of the mean over seeds lies above it):",
                  ""] + longctx_findings([e for e in exps if e.kind == "longctx" and any(
                      r["task"] not in LANGUAGES for r in longctx_rows(e))])
    if formal:
        lines += ["", "**Formal languages** (notebook 11; recognition accuracy at the longest training length "
                  "-> at the longest tested length; chance 0.5):", "", formal_table(formal)]
        bad = sorted({f"{r['task']}/{r['model']}" for r in lc if r["nonfinite"]})
        if bad:
            lines += ["", f"Training loss went to NaN/inf in some seeds of: {', '.join(bad)} (their accuracy is "
                      "that of the diverged model)."]
    lines += overflow_lines(lc)
    lines += speed_lines(root)
    lines += provenance_lines(exps)  # the files that lack commit/clean tree/command (issue 19), marked † above
    presets = sorted({e.preset for e in exps if e.preset})
    lines += ["", f"Presets: {', '.join(presets) or '?'}. Experiments: "
              + ", ".join(f"`{e.name}`" for e in exps) + "."]
    problems = [p for e in exps for p in e.problems]
    if problems:
        lines += ["", "Files that could not be used: " + "; ".join(problems)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Figures (notebook 12)


def draw_longctx(fig, experiments: list[Experiment], ncols: int = 3) -> None:
    """One panel per long-context experiment: accuracy against context length for every run."""
    groups = {e.name.removeprefix("longctx_"): e.runs for e in experiments if e.kind == "longctx" and e.runs}
    if not groups:
        raise ValueError("no long-context experiments to draw.")
    draw_grid(fig, groups, ncols=ncols, legend_everywhere=True)


def draw_continual(fig, experiments: list[Experiment]) -> None:
    """Final average accuracy per method (bars: mean; error bars: std over seeds), one panel per data set."""
    rows = [r for e in experiments if e.kind == "continual" for r in continual_rows(e)]
    if not rows:
        raise ValueError("no continual-learning experiments to draw.")
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    axes = np.atleast_1d(fig.subplots(1, len(datasets), sharey=True, squeeze=False)).ravel()
    for ax, ds in zip(axes, datasets, strict=True):
        sub = [r for r in rows if r["dataset"] == ds]
        x = np.arange(len(sub))
        ax.bar(x, [r["avg_acc"]["mean"] for r in sub], yerr=[r["avg_acc"]["std"] for r in sub], color="C0", capsize=3)
        ax.set_xticks(x)
        ax.set_xticklabels([r["method"] for r in sub], rotation=45, ha="right", fontsize=7)
        ax.set_title(ds, fontsize=9)
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("final average accuracy")


def draw_lm(fig, experiments: list[Experiment]) -> None:
    """Validation loss per model (mean, std over seeds)."""
    rows = [r for e in experiments if e.kind == "lm" for r in lm_rows(e)]
    if not rows:
        raise ValueError("no language-model experiments to draw.")
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(rows))
    ax.bar(x, [r["val"]["mean"] for r in rows], yerr=[r["val"]["std"] for r in rows], color="C1", capsize=3)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{r['model']}\n({r['experiment']})" for r in rows], fontsize=7, rotation=45, ha="right",
                       rotation_mode="anchor")
    ax.set_ylabel("validation loss (nats per token)")


# ---------------------------------------------------------------------------------------------
# Running the experiments at a preset, on one or several GPUs (notebook 12)

NB11_RUNS = (  # (task, models): the experiments of notebook 11
    ("s-niah", ("transformer", "titans", "hope", "hope-attention")),
    ("mqar", ("transformer", "titans", "hope", "hope-attention")),
    # the levels study with today's in-context levels (periods in tokens; the committed laptop study
    # clocked a static CMS in optimizer steps): 1-4 levels, and the slowest of three levels
    ("mk-niah", ("hope@16", "hope@16,64", "hope@16,64,256", "hope@16,64,256,1024", "hope@16,64,512",
                 "hope@16,64,1024")),
    *((lang, ("transformer", "hope")) for lang in ("parity", "aa", "abab", "anbn", "anbncn", "shuffle2")),
)


def experiment_jobs(preset: str = "full", seeds: tuple[int, ...] = (0, 1, 2), runs_dir: str = "runs") -> list[dict[str, Any]]:
    """Every experiment of notebooks 06, 07, 09, 10 and 11 as independent jobs: ``{"notebook",
    "module", "args" (list of strings, without the launcher), "ddp" (True if the module supports
    torchrun), "out"}``. One job = one process; jobs do not share output folders, so they can run
    in parallel on different GPUs. Only :mod:`nlteach.train` supports several processes per job
    (DDP through torchrun); the others are single-process programs."""

    s = [str(x) for x in seeds]
    jobs = []
    for task in ("digits", "shakespeare"):
        out = f"{runs_dir}/optimizers_{task}_{preset}"
        jobs.append({"notebook": "06", "module": "nlteach.experiments.optimizers", "ddp": False, "out": out,
                     "args": ["--preset", preset, "--task", task, "--out", out, "--no-progress"]})
    out = f"{runs_dir}/cms_tasks_{preset}"
    jobs.append({"notebook": "07", "module": "nlteach.experiments.cms_tasks", "ddp": False, "out": out,
                 "args": ["--preset", preset, "--out", out, "--no-progress"]})
    nb09 = lm_comparison.sizes(preset)  # notebook 09's settings at this preset, one nlteach.train job per run
    sizes = lm_comparison.train_arguments(preset)
    for model in lm_comparison.MAIN_MODELS:
        for seed in s:
            out = f"{runs_dir}/lm_tinyshakespeare_{preset}/{model}_seed{seed}"
            jobs.append({"notebook": "09", "module": "nlteach.train", "ddp": True, "out": out,
                         "args": ["--model", model, "--preset", preset, "--seed", seed, *sizes, "--out", out]})
    if preset == "full":  # notebook 09's HOPE with half-width memories, at the same parameter budget
        hidden = str(lm_comparison.half_width_memory_hidden(nb09["params"], nb09["n_layers"], nb09["n_heads"]))
        for seed in s:
            out = f"{runs_dir}/lm_tinyshakespeare_{preset}/hope-half-width-memories_seed{seed}"
            jobs.append({"notebook": "09", "module": "nlteach.train", "ddp": True, "out": out,
                         "args": ["--model", "hope", "--preset", preset, "--seed", seed, *sizes,
                                  "--memory-hidden", hidden, "--out", out]})
    for dataset in STREAMS:
        for method in available_learners():
            out = f"{runs_dir}/continual_{dataset}_{preset}/{method}"
            jobs.append({"notebook": "10", "module": "nlteach.continual", "ddp": False, "out": out,
                         "args": ["--dataset", dataset, "--method", method, "--seeds", *s, "--preset", preset,
                                  "--out", out, "--no-progress"]})
    for task, models in NB11_RUNS:
        for model in models:
            out = f"{runs_dir}/longctx_{task}_{preset}/{model.replace('@', '_cms').replace(',', '-')}"
            jobs.append({"notebook": "11", "module": "nlteach.longctx", "ddp": False, "out": out,
                         "args": ["--task", task, "--model", model, "--seeds", *s, "--preset", preset, "--out", out,
                                  "--no-progress"]})
    return jobs


def launch_script(jobs: list[dict[str, Any]], gpus: int = 1) -> str:
    """A bash script running ``jobs`` on ``gpus`` GPUs.

    One GPU: the jobs one after the other. Several GPUs: DDP jobs (:mod:`nlteach.train`) run one at
    a time on all GPUs through ``torchrun --nproc_per_node gpus``; every other job is a single
    process pinned to one GPU with ``CUDA_VISIBLE_DEVICES``, ``gpus`` of them at a time (GPU i takes
    jobs i, i + gpus, ...), and the script waits for them all."""
    if not isinstance(gpus, int) or gpus < 1:
        raise ValueError(f"gpus must be a positive int, got {gpus!r}.")
    lines = ["#!/usr/bin/env bash", "set -e", "export OMP_NUM_THREADS=4"]
    ddp = [j for j in jobs if j["ddp"]]
    single = [j for j in jobs if not j["ddp"]]

    def cmd(j, launcher):
        return f"{launcher} -m {j['module']} " + " ".join(shlex.quote(a) for a in j["args"])

    if gpus == 1:
        lines += [cmd(j, "python") for j in jobs]
        return "\n".join(lines) + "\n"
    lines.append(f"# {len(ddp)} DDP jobs, one after the other, each on all {gpus} GPUs")
    lines += [cmd(j, f"torchrun --standalone --nproc_per_node {gpus}") for j in ddp]
    lines.append(f"# {len(single)} single-process jobs, {gpus} at a time (one per GPU)")
    for g in range(gpus):
        mine = single[g::gpus]
        if mine:
            body = " && ".join(cmd(j, "python") for j in mine)
            lines.append(f"(export CUDA_VISIBLE_DEVICES={g}; {body}) > {shlex.quote(f'gpu{g}.log')} 2>&1 &")
    lines.append("wait")
    return "\n".join(lines) + "\n"


def timing_rows(experiments: list[Experiment]) -> list[dict[str, Any]]:
    """Measured seconds per seed (training, plus evaluation where recorded) of every run whose file
    records it: long-context ``details`` and :mod:`nlteach.train`'s ``time_s``. Runs without a
    recorded time are left out (nothing is estimated)."""
    rows = []
    for exp in experiments:
        for name, r in exp.runs.items():
            det = r.get("details") if isinstance(r, dict) else None
            if isinstance(det, list) and det and all(isinstance(d, dict) and "seconds" in d for d in det):
                secs = [d["seconds"] + d.get("eval_seconds", 0.0) for d in det]
                device = r.get("device") or (r.get("provenance") or {}).get("device") or "?"  # (top level: older files)
                rows.append({"experiment": exp.name, "run": name, "seeds": len(secs), "device": device,
                             "seconds_per_seed": summarize(secs), "steps": r.get("config", {}).get("steps")})
            elif isinstance(r, dict) and isinstance(r.get("time_s"), int | float):
                rows.append({"experiment": exp.name, "run": name, "seeds": 1, "device": r.get("device", "?"),
                             "seconds_per_seed": (float(r["time_s"]), 0.0), "steps": r.get("steps")})
    return rows


# ---------------------------------------------------------------------------------------------
# Notebooks 06 and 07: the optimizer comparison and the sequential-tasks CMS experiment, rendered by
# their own modules (nlteach.experiments.optimizers, nlteach.experiments.cms_tasks) from
# results/optimizers_<task>_<preset>/ and results/cms_tasks_<preset>/; an absent folder is skipped.


def optimizer_results(root: str | Path = DEFAULT_ROOT) -> dict[str, dict[str, dict[str, Any]]]:
    """``{preset: {task: results}}`` of the committed optimizer comparisons (presets and tasks
    without a file are left out)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for preset in PRESETS:
        for task in optimizers.TASKS:
            if optimizers.committed_path(task, preset, root).exists():
                out.setdefault(preset, {})[task] = optimizers.load_committed(task, preset, root)
    return out


def cms_tasks_results(root: str | Path = DEFAULT_ROOT) -> dict[str, dict[str, Any]]:
    """``{preset: results}`` of the committed sequential-tasks CMS experiments."""
    return {preset: cms_tasks.load_committed(preset, root) for preset in PRESETS
            if cms_tasks.committed_path(preset, root).exists()}


SPEED_TARGET = 4.0  # issue 17: a HOPE training step at most 4x a Transformer step at equal parameters


def speed_rows(root: str | Path = DEFAULT_ROOT) -> list[dict[str, Any]]:
    """One row per model of every committed ``bench_models_*/bench_models.json``
    (``python -m nlteach.bench models --out results/bench_models_<name>``), with the run's threads,
    batch, sequence length and folder; step ratios measured side by side in that run."""
    rows = []
    for path in sorted(Path(root).glob("bench_models_*/bench_models.json")):
        d = read_json(path)
        meta = {"run": path.parent.name, "threads": d["provenance"]["threads"], "batch_size": d["batch_size"],
                "seq_len": d["seq_len"], "budget": d["budget"]}
        rows += [{**r, **meta} for r in d["rows"]]
    return rows


def speed_lines(root: str | Path = DEFAULT_ROOT) -> list[str]:
    """The README block's speed table (nothing when no bench file is committed)."""
    try:
        rows = speed_rows(root)
    except (CorruptFileError, KeyError, TypeError) as e:
        return ["", f"**Speed**: a bench file could not be used ({e})."]
    if not rows:
        return []
    table = markdown_table(
        ["bench run", "threads", "B x T", "model", "impl", "params", "step / Transformer step", "FLOPs / Transformer's",
         "GFLOP/s"],
        [[r["run"], r["threads"], f"{r['batch_size']} x {r['seq_len']}", r["model"], r["impl"], f"{r['params']:,}",
          f"{r['x_transformer']:.2f}", f"{r['flops_x']:.2f}", f"{r.get('gflop_per_s', float('nan')):.1f}"]
         for r in rows])
    verdicts = [f"{r['run']} (T={r['seq_len']}, {r['threads']} thread(s)): a `hope` step is {r['x_transformer']:.2f}x "
                "a Transformer step, " + ("within" if r["x_transformer"] <= SPEED_TARGET else "above")
                + f" the {SPEED_TARGET:g}x target" for r in rows if r["model"] == "hope" and r["impl"] == "chunked"]
    for run in sorted({r["run"] for r in rows}):
        hope = {r["impl"]: r["x_transformer"] for r in rows if r["run"] == run and r["model"] == "hope"}
        if {"naive", "chunked"} <= set(hope):
            verdicts.append(f"{run}: chunked `hope` is {hope['naive'] / hope['chunked']:.1f}x faster than its token loop")
    return ["", "**Speed** (`python -m nlteach.bench models`, forward+backward of one training step at equal "
            f"parameters, CPU, ratios measured side by side in one run; target for HOPE: at most {SPEED_TARGET:g}x "
            "the Transformer):", "", table, "", "; ".join(verdicts) + "." if verdicts else ""]


def notebooks_06_07_lines(root: str | Path = DEFAULT_ROOT) -> list[str]:
    """The README block's lines for notebooks 06 and 07 (nothing when neither is committed); a file
    that cannot be read or understood is named instead of its table."""
    lines: list[str] = []
    try:
        for preset, by_task in optimizer_results(root).items():
            seeds = sorted({len(r["per_seed"]) for r in by_task.values()})
            swept = all(r.get("lr_sweep") for r in by_task.values())
            tuning = ("each optimizer at its own learning rate, chosen by a sweep on data carved from the training "
                      "split (notebook 06, section 8); " if swept else "")
            lines += ["", f"**Optimizers** (notebook 06, preset {preset}, {'/'.join(map(str, seeds))} seeds; the same "
                      f"small MLP trained with each optimizer, {tuning}final evaluation loss in nats, mean ± std over seeds, and "
                      f"the per-seed difference to {optimizers.BASELINE} with its 95% interval: an optimizer beats "
                      f"{optimizers.BASELINE} when the whole interval lies below 0):", "",
                      optimizers.comparison_table(by_task)]
    except (CorruptFileError, KeyError, TypeError, ValueError, IndexError) as e:
        lines += ["", f"Optimizer comparison: the committed results could not be used ({type(e).__name__}: {e})."]
    try:
        for preset, res in cms_tasks_results(root).items():
            lines += ["", f"**CMS and forgetting** (notebook 07, preset {preset}, {len(res['per_seed'])} seeds; three "
                      "regression tasks learned in sequence; NMSE, 1 = no better than predicting the mean, lower is "
                      "better; mean ± std over seeds):", "", cms_tasks.summary_table(res), "",
                      "Forgetting of task A, paired per seed (arm minus reference, mean [95% interval]):", "",
                      *(f"- {line}" for line in cms_tasks.verdict_lines(res, metrics=("forgetting_A",)))]
    except (CorruptFileError, KeyError, TypeError, ValueError, IndexError) as e:
        lines += ["", f"CMS experiment: the committed results could not be used ({type(e).__name__}: {e})."]
    return lines


# ---------------------------------------------------------------------------------------------
# Command line


README_BEGIN = "<!-- results: generated by `python -m nlteach.results --write-readme`; do not edit by hand -->"
README_END = "<!-- end of generated results -->"


def update_readme(readme: str | Path, root: str | Path = DEFAULT_ROOT) -> bool:
    """Replace the text between README_BEGIN and README_END in ``readme`` by :func:`readme_section`.
    Returns True if the file changed. Raises ValueError if the markers are missing."""
    path = Path(readme)
    text = path.read_text(encoding="utf-8")
    start, end = text.find(README_BEGIN), text.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"{path} has no generated-results block: expected a line {README_BEGIN!r} "
                         f"followed later by {README_END!r}")
    new = text[:start] + README_BEGIN + "\n" + readme_section(root) + text[end:]
    if new == text:
        return False
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(new, encoding="utf-8")
    tmp.replace(path)
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nlteach.results",
                                description="Tables of every committed results/*/results.json, in markdown.")
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="the results folder (default: the repository's)")
    p.add_argument("--readme", action="store_true", help="print only the README's short results section")
    p.add_argument("--write-readme", type=Path, nargs="?", const=DEFAULT_ROOT.parent / "README.md", default=None,
                   metavar="README", help="rewrite the generated results block of README (default: the repository's)")
    args = p.parse_args(argv)
    if not args.root.is_dir():
        p.error(f"--root {str(args.root)!r}: {'is a file' if args.root.exists() else 'does not exist'}; expected the "
                f"results folder (one subfolder per experiment, each with a results.json; default {DEFAULT_ROOT}).")
    if args.write_readme is not None:
        text = args.write_readme.read_text(encoding="utf-8") if args.write_readme.is_file() else ""
        if not 0 <= text.find(README_BEGIN) < text.find(README_END):
            p.error(f"--write-readme {str(args.write_readme)!r}: "
                    f"{'has no generated-results block' if args.write_readme.is_file() else 'no such file'}; expected a README with a "
                    f"line {README_BEGIN!r} followed later by {README_END!r}.")
    try:
        if args.write_readme is not None:
            changed = update_readme(args.write_readme, args.root)
            print(f"{args.write_readme}: {'updated' if changed else 'already current'}")
        elif args.readme:
            sys.stdout.write(readme_section(args.root))
        else:
            print(all_tables(load_all(args.root)))
    except CorruptFileError as e:  # a results.json that is not valid JSON (the error names it)
        p.error(str(e))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
