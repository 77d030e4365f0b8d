"""Reading the reference-budget comparison (notebook 09's main evidence, issue 18).

Two committed results feed it (besides the optional longer runs, :data:`LONGER`): the comparison (``results/lm_reference``, written by
``python -m nlteach.experiments.lm_comparison --budget reference ...``) and the n-gram baselines
counted at the same budget (``results/ngram_reference``, ``python -m nlteach.experiments.ngram
--budget reference ...``). Everything notebook 09 and the README say about them comes from here:

- :func:`arm_rows` and :func:`baseline_rows`: the table (each arm's parameters, learning rate,
  seeds, validation and test loss; the n-gram rows beside them);
- :func:`sweep_rows`: the learning-rate sweep (validation split, seed ``SWEEP_SEED``);
- :func:`checks`: the budget's own conditions (parameters within 3%, the Transformer at least
  0.3 nats/char below the whole-split trigram, curves flat over the last 20% of steps);
- :func:`verdict_lines`: every comparison as a seed-paired difference with its 95% t interval,
  worded by the one rule of :func:`lm_comparison.paired_verdict`;
- :func:`drift_lines`: whether each of those gaps still moved over the last 20% of the steps
  (:func:`gap_drift`, the same rule): what a verdict needs when the curves are not flat;
- :func:`longer_lines`: the runs of :data:`LONGER` (one seed, more steps) beside their seed at the
  reference budget, and :func:`load_levels`, the longer HOPE's CMS-level stream diagnosis;
- :func:`stream_lines` and :func:`adaptation_lines`: the domain stream
  (:mod:`nlteach.experiments.stream`): retention on the return to a domain, and adaptation to a new
  one, arm minus the sliding-window Transformer, by the same rule.

Every function takes the loaded dicts, so a partial comparison (seeds still running) reads as what
it is: the rows say how many seeds each arm has, and a comparison without two paired seeds says so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nlteach.experiments import lm_comparison, stream
from nlteach.experiments.reporting import ci_text
from nlteach.runs import stats
from nlteach.runs.io import read_json
from nlteach.runs.tables import markdown_table

COMPARISON, NGRAM = "lm_reference", "ngram_reference"
LONGER = "lm_reference_longer"
"""One seed of some main arms trained for more steps than the reference budget, otherwise the same
(``nlteach.train`` runs, one folder per model holding its ``results.json`` and ``metrics.jsonl``):
how far from flat the reference curves are (:func:`longer_lines`, ``docs/decisions.md#reference-budget``)."""
PARAM_TOLERANCE = 0.03  # every arm within 3% of the budget
MARGIN = 0.3  # the Transformer at least this far below the whole-split trigram (nats/char)
FLAT_FRACTION = 0.2  # "flat": the last 20% of steps change the validation loss by less than the seed spread
PAIRS_VS = "transformer"  # every other main arm is compared with the Transformer


def load(root: str | Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The comparison and the n-gram results under ``root`` (``None`` for a file not there yet)."""
    root = Path(root)
    files = (root / COMPARISON / "results.json", root / NGRAM / "results.json")
    return tuple(read_json(f) if f.exists() else None for f in files)  # type: ignore[return-value]


def load_longer(root: str | Path) -> dict[str, dict[str, Any]]:
    """The runs of :data:`LONGER` under ``root``: ``{model: {"result": its results.json, "curve": the
    lines of its metrics.jsonl that hold a validation loss}}``, in name order (empty when none)."""
    out = {}
    for run in sorted((Path(root) / LONGER).glob("*/results.json")):
        lines = (run.parent / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        curve = [r for r in map(json.loads, lines) if r.get("val_loss") is not None]
        out[run.parent.name] = {"result": read_json(run), "curve": curve}
    return out


LEVELS = "hope/cms_levels.json"  # under LONGER: tools.cms_levels run on the longer HOPE (stream.cms_level_records)


def load_levels(root: str | Path) -> dict[str, Any] | None:
    """The longer HOPE run's stream read with each set of slowest CMS levels switched off (the file
    ``tools.cms_levels --out`` writes; :func:`nlteach.experiments.stream.levels_table_rows` tabulates
    it), or ``None`` when it is not committed."""
    path = Path(root) / LONGER / LEVELS
    return read_json(path) if path.exists() else None


def longer_lines(comparison: dict[str, Any], longer: dict[str, dict[str, Any]]) -> list[str]:
    """Each longer run beside the same model and seed at the reference budget: the validation loss at
    both budgets and how much the longer run's last :data:`FLAT_FRACTION` of steps still moved it;
    then each gap to the Transformer at both budgets (one seed: no interval, so no verdict)."""
    ref = {(r["label"], r["seed"]): r for r in comparison.get("per_seed", [])}
    lines, gaps = [], {}
    for model, run in longer.items():
        cfg, res = run["result"]["config"], run["result"]
        seed, steps = cfg["seed"], cfg["steps"]
        r = ref.get((model, seed))
        if r is None:
            continue
        factor = steps / comparison["config"]["steps"]
        mid = _val_at(run["curve"], (1 - FLAT_FRACTION) * steps)
        moved = "n/a" if mid is None else f"{res['val_loss'] - mid:+.3f}"
        lines.append(f"{model}, seed {seed}: {r['val_loss']:.3f} after {comparison['config']['steps']} steps, "
                     f"{res['val_loss']:.3f} after {steps} ({factor:g}x the characters); the last "
                     f"{100 * FLAT_FRACTION:.0f}% of the longer run's steps still moved it by {moved}")
        gaps[model] = (seed, r["val_loss"], res["val_loss"], factor)
    if PAIRS_VS in gaps:
        seed0, ref0, long0, _ = gaps[PAIRS_VS]
        for model, (seed, ref1, long1, factor) in gaps.items():
            if model != PAIRS_VS and seed == seed0:
                lines.append(f"{model} - {PAIRS_VS}, seed {seed}: {ref1 - ref0:+.4f} at the reference budget, "
                             f"{long1 - long0:+.4f} at {factor:g}x (one seed: no interval)")
    return lines


def _by_label(comparison: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The seeds of each arm that did not diverge (every table, check and pair reads these only;
    :func:`diverged_rows` reports the others)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in lm_comparison.converged(comparison.get("per_seed", [])):
        out.setdefault(r["label"], []).append(r)
    return out


def diverged_rows(comparison: dict[str, Any]) -> list[dict[str, Any]]:
    """Per arm with seeds that diverged (stopped at a non-finite gradient, no losses): ``model``,
    ``lr``, ``seeds`` (the diverged ones), ``steps`` (where each stopped) and ``of`` (the arm's seeds)."""
    rows: dict[str, dict[str, Any]] = {}
    for r in comparison.get("per_seed", []):
        row = rows.setdefault(r["label"], {"model": r["label"], "lr": r.get("lr"), "seeds": [], "steps": [], "of": 0})
        row["of"] += 1
        if lm_comparison.diverged(r):
            row["seeds"].append(r["seed"])
            row["steps"].append(r["diverged_at_step"])
    return [r for r in rows.values() if r["seeds"]]


def diverged_lines(comparison: dict[str, Any]) -> list[str]:
    """One line per arm of :func:`diverged_rows`."""
    return [f"{r['model']} at learning rate {'-' if r['lr'] is None else format(r['lr'], 'g')}: diverged on "
            f"{len(r['seeds'])} of its {r['of']} seeds (seed {', '.join(map(str, r['seeds']))} at step "
            f"{', '.join(map(str, r['steps']))}: the first step whose gradient was not finite), "
            f"{'that seed is' if len(r['seeds']) == 1 else 'those seeds are'} left out of every mean and pair"
            for r in diverged_rows(comparison)]


def arm_rows(comparison: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per arm, in the order the arms first appear: ``model``, ``params``, ``lr``, ``seeds``
    (a list), ``val`` and ``test`` (:func:`nlteach.runs.stats.summarize` over the seeds)."""
    rows = []
    for label, recs in _by_label(comparison).items():
        rows.append({"model": label, "params": recs[0]["n_params"], "lr": recs[0].get("lr"),
                     "seeds": sorted(r["seed"] for r in recs),
                     "val": stats.summarize([r["val_loss"] for r in recs]),
                     "test": stats.summarize([r["test_loss"] for r in recs])})
    return rows


def baseline_rows(ngram: dict[str, Any]) -> list[dict[str, Any]]:
    """The n-gram rows (``model``, ``val``, ``test``: the means over the counted seeds)."""
    return [{"model": r["model"], "order": r["order"], "counted_on": r["counted_on"], "val": r["val_mean"],
             "test": r["test_mean"]} for r in ngram["summary"]]


def trigram_loss(ngram: dict[str, Any]) -> float:
    """Validation loss of the trigram counted on the whole training split."""
    return next(r["val"] for r in baseline_rows(ngram) if r["order"] == 3 and r["counted_on"] == "train split")


def sweep_rows(comparison: dict[str, Any]) -> list[dict[str, Any]]:
    """Per swept model: its learning rates and validation losses, the choice, and whether the choice
    sits on the edge of the grid after widening (then the grid did not bracket the best value)."""
    return [{"model": m, "lrs": s["lrs"], "val_loss": s["val_loss"], "chosen": s["chosen"],
             "at_edge": s.get("at_edge", False), "complete": s.get("complete", True)}
            for m, s in comparison.get("lr_sweep", {}).items()]


def _val_at(curve: Sequence[dict[str, Any]], step: float) -> float | None:
    """The last validation loss logged at or before ``step``."""
    points = [r for r in curve if r.get("val_loss") is not None and r["step"] <= step]
    return points[-1]["val_loss"] if points else None


def flatness(comparison: dict[str, Any], label: str) -> dict[str, Any]:
    """How much arm ``label``'s validation loss still moved over the last :data:`FLAT_FRACTION` of
    its steps (from the last evaluation at or before 80% of the steps to the end; mean over seeds),
    against the seeds' spread (standard deviation of the final validation loss): ``flat`` when the
    change is smaller. Needs two seeds for a spread."""
    recs = _by_label(comparison).get(label, [])
    steps = comparison["config"]["steps"]
    changes = [r["val_loss"] - v for r in recs if (v := _val_at(r["curve"], (1 - FLAT_FRACTION) * steps)) is not None]
    spread = stats.summarize([r["val_loss"] for r in recs])["std"]
    change = stats.summarize(changes)["mean"]
    return {"label": label, "seeds": len(recs), "change": change, "spread": spread,
            "flat": bool(len(recs) >= 2 and abs(change) < spread)}


def checks(comparison: dict[str, Any], ngram: dict[str, Any]) -> dict[str, Any]:
    """The reference budget's conditions: ``params`` (each arm's relative distance to the budget and
    whether all are within :data:`PARAM_TOLERANCE`), ``margin`` (the Transformer's mean validation loss
    below the whole-split trigram, and whether it reaches :data:`MARGIN`), ``flat`` (per arm)."""
    budget = comparison["config"]["params"]
    rows = arm_rows(comparison)
    gaps = {r["model"]: (r["params"] - budget) / budget for r in rows}
    tri = trigram_loss(ngram)
    tf = next((r for r in rows if r["model"] == "transformer"), None)
    margin = None if tf is None else tri - tf["val"]["mean"]
    return {"budget": budget, "param_gaps": gaps, "params_ok": all(abs(g) <= PARAM_TOLERANCE for g in gaps.values()),
            "trigram": tri, "transformer": None if tf is None else tf["val"]["mean"], "margin": margin,
            "margin_ok": margin is not None and margin >= MARGIN,
            "flat": {r["model"]: flatness(comparison, r["model"]) for r in rows}}


def pairs(comparison: dict[str, Any]) -> list[tuple[str, str]]:
    """The comparisons reported: each main arm against the Transformer, HOPE against HOPE with a
    static CMS, and HOPE against each ablation (arms that are present only)."""
    labels = list(_by_label(comparison))
    out = [(m, PAIRS_VS) for m in labels if m in lm_comparison.MAIN_MODELS and m != PAIRS_VS and PAIRS_VS in labels]
    out += [("hope", other) for other in labels if other != "hope" and other.startswith("hope-")
            and other != "hope-attention" and "hope" in labels]
    return out


def gap_drift(comparison: dict[str, Any], a: str, b: str) -> dict[str, Any]:
    """Whether the validation-loss gap ``a - b`` was still moving over the last :data:`FLAT_FRACTION`
    of the steps. For each seed both arms have: the gap at the last evaluation at or before 80% of
    the steps (``before``: :func:`nlteach.runs.stats.paired` of the two arms' losses there) and its
    change from there to the end (``change``: ``paired`` of the two arms' own changes, so per seed
    ``(a_end - a_80) - (b_end - b_80)``). By the comparison's one rule the gap is still moving when
    the change's 95% interval excludes 0 (``change["sign"] != 0``).

    The budget's flatness condition (:func:`flatness`) asks whether each curve has settled; this asks
    the weaker question the verdicts depend on: whether the *difference* between two curves has."""
    at = (1 - FLAT_FRACTION) * comparison["config"]["steps"]
    runs = _by_label(comparison)
    ra, rb = ({r["seed"]: r for r in runs.get(x, [])} for x in (a, b))
    seeds = sorted(set(ra) & set(rb))
    a80, b80 = ([_val_at(r[s]["curve"], at) for s in seeds] for r in (ra, rb))
    a_end, b_end = ([r[s]["val_loss"] for s in seeds] for r in (ra, rb))
    change = lambda end, mid: [None if m is None else e - m for e, m in zip(end, mid)]  # noqa: E731
    step = max((p["step"] for p in (ra[seeds[0]]["curve"] if seeds else []) if p.get("val_loss") is not None
                and p["step"] <= at), default=None)
    return {"a": a, "b": b, "seeds": seeds, "step": step,
            "before": stats.paired(a80, b80), "change": stats.paired(change(a_end, a80), change(b_end, b80))}


def drift_lines(comparison: dict[str, Any]) -> list[str]:
    """One line per pair of :func:`pairs` with two or more paired seeds: the gap at 80% of the steps
    and its change since, worded by :func:`gap_drift`'s rule."""
    lines = []
    for a, b in pairs(comparison):
        g = gap_drift(comparison, a, b)
        if g["change"]["n"] < 2:
            continue
        moving = {0: "no change the seeds can detect", 1: f"still moving in favour of {b}",
                  -1: f"still moving in favour of {a}"}[g["change"]["sign"]]
        lines.append(f"{a} - {b}: {ci_text(g['before'], 3)} at step {g['step']}, then {ci_text(g['change'], 3)} "
                     f"over the last {100 * FLAT_FRACTION:.0f}% of steps ({g['change']['n']} paired seeds): {moving}")
    return lines


def verdict_lines(comparison: dict[str, Any], key: str = "val_loss") -> list[str]:
    """:func:`lm_comparison.paired_verdict` of every pair of :func:`pairs` (``key``: ``val_loss``, or
    ``test_loss`` for the final table)."""
    return [lm_comparison.paired_verdict(comparison["per_seed"], a, b, key) for a, b in pairs(comparison)]


RETENTION_DOMAINS = ("clinc150", "shakespeare")


def stream_rows(comparison: dict[str, Any], bin_index: int = 0) -> list[dict[str, Any]]:
    """Per arm with stream records: the retention of each domain read twice (second visit minus
    first, bin ``bin_index`` of positions since the switch; :func:`stream.retention`), summarized
    over seeds, and the loss over each whole segment (mean over seeds)."""
    rows = []
    for label, recs in _by_label(comparison).items():
        recs = [r for r in recs if "stream" in r]
        if not recs:
            continue
        ret = {d: stats.summarize([stream.retention(r["stream"], d)[bin_index] for r in recs])
               for d in RETENTION_DOMAINS}
        rows.append({"model": label, "seeds": sorted(r["seed"] for r in recs), "retention": ret,
                     "bins": recs[0]["stream"]["bins"], "domains": recs[0]["stream"]["domains"]})
    return rows


def _stream_verdicts(comparison: dict[str, Any], domains: Sequence[str], paired, below: str, above: str) -> list[str]:
    """Each arm with stream records minus the Transformer, per domain: ``paired(per_seed, arm,
    "transformer", domain)`` (a :func:`stats.paired` dict) worded by the verdict rule of
    :func:`lm_comparison.paired_verdict`; ``below`` / ``above`` word an interval wholly below / above
    0 (``{label}`` and ``{d}`` filled in)."""
    labels = [label for label, recs in _by_label(comparison).items() if any("stream" in r for r in recs)]
    if PAIRS_VS not in labels:
        return []
    lines = []
    for d in domains:
        for label in labels:
            if label == PAIRS_VS:
                continue
            p = paired(comparison["per_seed"], label, PAIRS_VS, d)
            if p["n"] < 2:
                judged = "fewer than 2 paired seeds: cannot tell"
            else:
                judged = {-1: below, 1: above, 0: "no difference the seeds can detect"}[p["sign"]].format(label=label, d=d)
            lines.append(f"{d}, {label} - {PAIRS_VS}: {ci_text(p, 3)} over {p['n']} paired seed(s): {judged}")
    return lines


def stream_lines(comparison: dict[str, Any], bin_index: int = 0) -> list[str]:
    """Retention of each arm minus the Transformer's (whose attention window is the training length),
    seed by seed (:func:`_stream_verdicts`): an arm *keeps more* of a domain when the whole 95%
    interval lies below 0."""
    return _stream_verdicts(comparison, RETENTION_DOMAINS,
                            lambda ps, a, b, d: stream.paired_retention(ps, a, b, d, bin_index),
                            "{label} keeps more of {d}", "{label} keeps less of {d}")


ADAPTATION_DOMAINS = ("clinc150", "banking77")  # the domains the stream switches to for the first time


def adaptation_lines(comparison: dict[str, Any], bin_index: int = stream.ADAPTATION_BIN) -> list[str]:
    """Adaptation to each new domain (:func:`stream.adaptation`: how far the loss falls from the first
    characters after the switch to the next ones) of each arm minus the Transformer's, seed by seed
    (:func:`_stream_verdicts`): an arm *adapts faster* when the whole 95% interval lies below 0."""
    return _stream_verdicts(comparison, ADAPTATION_DOMAINS,
                            lambda ps, a, b, d: stream.paired_adaptation(ps, a, b, d, bin_index),
                            "{label} adapts to {d} faster", "{label} adapts to {d} more slowly")


def _fmt(s: dict[str, Any], digits: int = 3) -> str:
    if math.isnan(s["mean"]):
        return "-"
    return f"{s['mean']:.{digits}f}" if math.isnan(s["std"]) else f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


def markdown(comparison: dict[str, Any] | None, ngram: dict[str, Any] | None,
             longer: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """The README's (and notebook 09's) lines on the reference comparison: the table with the n-gram
    rows, the budget's checks, the sweep, the paired verdicts, the longer runs (:func:`load_longer`,
    when given) and the stream."""
    if comparison is None or ngram is None:
        return ["The reference-budget comparison has not been committed yet (`results/lm_reference`)."]
    cfg = comparison["config"]
    tokens = cfg["tokens_per_run"]
    rows = arm_rows(comparison)
    lines = [f"Reference budget: {cfg['params']:,} parameters, {tokens:,} training characters per run "
             f"({cfg['steps']} steps of {cfg['batch_size']} x {cfg['seq_len']}), each model at its own learning "
             "rate from a sweep on the validation split; the test split appears in this table only. The n-gram "
             "rows (interpolated Kneser-Ney) are counted on the whole training split or on the characters one run "
             "trains on (run windows), and scored on the same windows."
             + (f" Reproduce with `{comparison['reproduce']}`." if comparison.get("reproduce") else ""), ""]
    table = [[r["model"], f"{r['params']:,}", "-" if r["lr"] is None else f"{r['lr']:g}", len(r["seeds"]),
              _fmt(r["val"]), _fmt(r["test"])] for r in sorted(rows, key=lambda r: r["val"]["mean"])]
    table += [[r["model"], "-", "-" if r["lr"] is None else f"{r['lr']:g}", r["of"], "diverged", "diverged"]
              for r in diverged_rows(comparison) if len(r["seeds"]) == r["of"]]
    table += [[r["model"], "-", "-", "-", f"{r['val']:.3f}", f"{r['test']:.3f}"]
              for r in baseline_rows(ngram) if r["order"] > 1]
    lines.append(markdown_table(["model", "parameters", "lr", "seeds", "val loss", "test loss"], table))
    c = checks(comparison, ngram)
    if not rows:
        lines += ["", "- No arm has finished a seed yet: the learning-rate sweep comes first."]
    else:
        worst = max(c["param_gaps"].items(), key=lambda kv: abs(kv[1]))
        lines += ["", f"- Parameters: every arm within {100 * abs(worst[1]):.2f}% of the budget (largest gap: "
                  f"{worst[0]}); the condition is {100 * PARAM_TOLERANCE:.0f}%: "
                  f"{'met' if c['params_ok'] else 'NOT met'}."]
    if c["margin"] is not None:
        side = "below" if c["margin"] >= 0 else "above"
        lines.append(f"- The Transformer's validation loss is {abs(c['margin']):.3f} nats/char {side} the whole-split "
                     f"trigram's ({c['trigram']:.3f}); the condition is at least {MARGIN} below: "
                     f"{'met' if c['margin_ok'] else 'NOT met'}.")
    flat = [f"{k} {'flat' if v['flat'] else 'still moving'} ({v['change']:+.3f} vs spread {v['spread']:.3f})"
            for k, v in c["flat"].items() if v["seeds"] >= 2]
    if flat:
        lines.append(f"- Last {100 * FLAT_FRACTION:.0f}% of steps, change of the validation loss against the "
                     "seeds' spread: " + "; ".join(flat) + ".")
    sweep = sweep_rows(comparison)
    if sweep:
        lines.append("- Learning-rate sweep (validation loss, seed "
                     f"{comparison['lr_sweep'][sweep[0]['model']]['seed']}): " + "; ".join(
                         f"{s['model']} " + ", ".join(f"{lr:g}: {'diverged' if v is None else format(v, '.3f')}"
                                                      for lr, v in zip(s["lrs"], s["val_loss"]))
                         + (f" -> {s['chosen']:g}" if s["complete"] else " (sweep still running)")
                         + (" (on the grid's edge)" if s["at_edge"] and s["complete"] else "") for s in sweep)
                     + ".")
    lines += [f"- {v}." for v in diverged_lines(comparison)]
    verdicts = verdict_lines(comparison)
    if verdicts:
        lines += ["", "Paired over seeds (validation loss; a model is better when the whole 95% interval of the "
                  "difference lies below 0):", ""] + [f"- {v}" for v in verdicts]
    drift = drift_lines(comparison)
    if drift:
        lines += ["", "Was each gap settled? The paired difference at 80% of the steps, then its change over the "
                  "rest (two curves can both still fall while the gap between them has stopped moving; the gap is "
                  "still moving when the change's 95% interval excludes 0):", ""]
        lines += [f"- {v}" for v in drift]
    long_ = longer_lines(comparison, longer or {})
    if long_:
        lines += ["", "How far from flat? The same runs for more steps (otherwise the same settings, the same "
                  f"learning rates; `results/{LONGER}`, each run's command in its results.json):", ""] + [f"- {v}" for v in long_]
    st = stream_lines(comparison)
    if st:
        lines += ["", "Domain stream (retention: loss in the first "
                  f"{stream.BINS[1]} characters after returning to a domain minus the first visit's, arm minus the "
                  "Transformer with a sliding window of the training length; below 0: the arm keeps more):", ""]
        lines += [f"- {v}" for v in st]
    ad = adaptation_lines(comparison)
    if ad:
        b = stream.BINS
        lines += ["", f"Domain stream (adaptation: loss in characters {b[stream.ADAPTATION_BIN]}-"
                  f"{b[stream.ADAPTATION_BIN + 1]} after switching to a domain not read before minus the loss in its "
                  f"first {b[1]}, arm minus the same Transformer; below 0: the arm's loss falls further, it adapts "
                  "faster):", ""]
        lines += [f"- {v}" for v in ad]
    return lines
