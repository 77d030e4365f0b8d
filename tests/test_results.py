"""nlteach.results: reading every results/*/results.json layout, tables, README section, figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from nlteach import longctx
from nlteach import results as R
from nlteach.experiments import lm_comparison


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))


def _longctx(model="transformer", accs=((1.0, 0.5), (0.8, 0.3)), task="s-niah"):
    return {"config": {"task": task, "model": model, "preset": "laptop", "seeds": list(range(len(accs))),
                       "train_lengths": [32], "arch": {"cms_periods": [16, 64, 256]}},
            "variant": model,
            "per_seed": [{"seed": s, "accuracy": {"32": a, "128": b}} for s, (a, b) in enumerate(accs)],
            "summary": {"train_max_length": 32, "chance": 0.01},
            "details": [{"seed": s, "nonfinite_step": None} for s in range(len(accs))]}


def _continual(method, mats):
    return {"config": {"dataset": "split-digits", "method": method, "preset": "laptop"},
            "per_seed": [{"seed": s, "acc_matrix": m} for s, m in enumerate(mats)],
            "summary": {}}


M1 = [[0.9, 0.0], [0.5, 0.8]]  # avg acc 0.65, BWT -0.4
M2 = [[1.0, 0.0], [0.7, 0.9]]  # avg acc 0.80, BWT -0.3


@pytest.fixture
def root(tmp_path):
    from nlteach.longctx.runner import combine

    r = tmp_path / "results"
    _write(r / "longctx_s-niah_laptop" / "results.json",
           combine({"transformer": _longctx(), "hope": _longctx("hope", ((0.5, 0.1), (0.3, 0.1)))}))
    _write(r / "longctx_parity_laptop" / "results.json", _longctx("transformer", ((0.6, 0.5),), task="parity"))
    _write(r / "continual_split-digits_laptop" / "finetune" / "results.json", _continual("finetune", [M1, M2]))
    _write(r / "continual_split-digits_laptop" / "replay" / "results.json", _continual("replay", [M2]))
    _write(r / "lm_tinyshakespeare_laptop" / "results.json",
           {"config": {"preset": "laptop"},
            "runs": {"transformer": [{"seed": 0, "val_loss": 1.5, "test_loss": 1.6, "n_params": 1000},
                                     {"seed": 1, "val_loss": 1.7, "test_loss": 1.8, "n_params": 1000}],
                     "hope": [{"seed": 0, "val_loss": 1.4, "test_loss": 1.5, "n_params": 990}]}})
    _write(r / "lm_single_laptop" / "results.json",
           {"config": {"model": "titans", "seed": 3, "preset": "laptop"}, "val_loss": 2.0, "test_loss": 2.1,
            "n_params": 5})
    _write(r / "broken_laptop" / "results.json", "{not json")
    _write(r / "continual_tuning_laptop" / "tuning.json", {"method": "ewc"})  # no results.json: skipped
    _write(r / "odd_laptop" / "results.json", {"hello": 1})
    return r


def test_load_all_classifies_every_layout(root):
    exps = {e.name: e for e in R.load_all(root)}
    assert "continual_tuning_laptop" not in exps
    assert exps["longctx_s-niah_laptop"].kind == "longctx"
    assert set(exps["longctx_s-niah_laptop"].runs) == {"transformer", "hope"}
    assert exps["continual_split-digits_laptop"].kind == "continual"
    assert set(exps["continual_split-digits_laptop"].runs) == {"finetune", "replay"}
    assert exps["lm_tinyshakespeare_laptop"].kind == "lm" and exps["lm_single_laptop"].kind == "lm"
    assert exps["broken_laptop"].problems and exps["broken_laptop"].kind == "other"
    assert exps["odd_laptop"].kind == "other"
    assert exps["longctx_parity_laptop"].preset == "laptop"
    assert R.load_all(root / "missing") == []


def test_rows_are_computed_from_the_files(root):
    exps = {e.name: e for e in R.load_all(root)}
    rows = {r["model"]: r for r in R.longctx_rows(exps["longctx_s-niah_laptop"])}
    assert rows["transformer"]["acc"][32]["mean"] == pytest.approx(0.9)
    a = rows["transformer"]["acc"][128]
    assert (a["mean"], a["std"], a["n"], a["dropped"]) == pytest.approx((0.4, 0.1414213562, 2, 0), rel=1e-6)
    assert rows["hope"]["at_train"] == 32 and rows["hope"]["longest"] == 128
    cont = {r["method"]: r for r in R.continual_rows(exps["continual_split-digits_laptop"])}
    assert cont["finetune"]["avg_acc"]["mean"] == pytest.approx((0.65 + 0.8) / 2)
    assert cont["finetune"]["bwt"]["mean"] == pytest.approx((-0.4 - 0.3) / 2)
    assert cont["replay"]["avg_acc"]["mean"] == pytest.approx(0.8)
    assert math.isnan(cont["replay"]["avg_acc"]["std"])  # one seed: no spread, not a spread of 0
    lm = R.lm_rows(exps["lm_tinyshakespeare_laptop"])
    assert [r["model"] for r in lm] == ["hope", "transformer"]  # sorted by validation loss
    assert (lm[1]["val"]["mean"], lm[1]["val"]["std"]) == pytest.approx((1.6, 0.1414213562), rel=1e-6)
    assert R.lm_rows(exps["lm_single_laptop"])[0]["seeds"] == [3]


def test_readme_section_and_cli(root, capsys):
    text = R.readme_section(root)
    assert text.startswith("## Results (our measurements)")
    assert "| s-niah | transformer † | 0.01 | 32 | 0.90 ± 0.14 | 128 | 0.40 ± 0.14 (seeds: 0.50, 0.30) | 0,1 |" in text
    assert "| finetune | 0.73 (-0.35), 2 seeds † |" in text and "| replay | 0.80 (-0.30), 1 seed † |" in text
    assert "hope" in text and "1.400" in text and "1.400 ±" not in text  # one seed: no ± shown
    assert "broken_laptop" in text  # a bad file is reported, not hidden
    assert R.main(["--root", str(root), "--readme"]) == 0
    assert capsys.readouterr().out == text
    assert R.main(["--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "### longctx_s-niah_laptop (longctx, preset laptop)" in out and "128*" in out
    empty = R.readme_section(root / "missing")
    assert "No results are committed yet." in empty


def test_figures(root):
    exps = R.load_all(root)
    fig = Figure()
    R.draw_longctx(fig, exps)
    assert sum(ax.get_visible() for ax in fig.axes) == 2
    fig = Figure()
    R.draw_continual(fig, exps)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["finetune", "replay"]
    fig = Figure()
    R.draw_lm(fig, exps)
    assert len(fig.axes[0].patches) == 3
    with pytest.raises(ValueError, match="no long-context"):
        R.draw_longctx(Figure(), [])


def test_the_repository_results_load():
    """Whatever is committed under results/ loads without an exception."""
    exps = R.load_all()
    R.all_tables(exps)
    R.readme_section()


def test_experiment_jobs_parse_with_their_command_lines():
    from nlteach.continual.__main__ import build_parser as continual_parser
    from nlteach.experiments import cms_tasks, optimizers
    from nlteach.longctx.__main__ import build_parser as longctx_parser
    from nlteach.longctx.__main__ import parse_model
    from nlteach.train import build_parser as train_parser

    jobs = R.experiment_jobs("full", seeds=(0, 1))
    assert {j["notebook"] for j in jobs} == {"06", "07", "09", "10", "11"}
    assert len({j["out"] for j in jobs}) == len(jobs)  # no two jobs share an output folder
    parsers = {"nlteach.train": train_parser(), "nlteach.continual": continual_parser(),
               "nlteach.longctx": longctx_parser(), "nlteach.experiments.optimizers": optimizers.build_parser(),
               "nlteach.experiments.cms_tasks": cms_tasks.build_parser()}
    for j in jobs:
        assert j["ddp"] == (j["module"] == "nlteach.train")
        ns = parsers[j["module"]].parse_args(j["args"])
        assert ns.preset == "full"
        if j["module"] == "nlteach.longctx":
            for m in ns.model:
                parse_model(m)
    full = lm_comparison.sizes("full")  # notebook 09's jobs take the experiment's own table
    lm = [parsers["nlteach.train"].parse_args(j["args"]) for j in jobs if j["notebook"] == "09"]
    assert all((ns.params, ns.steps, ns.lr, ns.eval_every, ns.eval_windows) == (
        full["params"], full["steps"], full["lr"], full["eval_every"], full["eval_windows"]) for ns in lm)
    small = [ns for ns in lm if ns.memory_hidden is not None]
    assert [ns.seed for ns in small] == [0, 1] and {ns.model for ns in small} == {"hope"}
    assert small[0].memory_hidden == lm_comparison.half_width_memory_hidden(full["params"], 6, 6) > 1


def test_launch_script():
    jobs = R.experiment_jobs("full", seeds=(0,))
    one = R.launch_script(jobs, 1)
    assert one.count("\npython -m ") == len(jobs) and "torchrun" not in one
    two = R.launch_script(jobs, 2)
    assert two.count("torchrun --standalone --nproc_per_node 2 -m nlteach.train") == sum(j["ddp"] for j in jobs)
    assert "CUDA_VISIBLE_DEVICES=0" in two and "CUDA_VISIBLE_DEVICES=1" in two and two.rstrip().endswith("wait")
    with pytest.raises(ValueError, match="gpus"):
        R.launch_script(jobs, 0)


def test_timing_rows(root):
    from nlteach.longctx.runner import combine

    r = _longctx()
    r["details"] = [{"seed": 0, "seconds": 10.0, "eval_seconds": 2.0}, {"seed": 1, "seconds": 14.0, "eval_seconds": 2.0}]
    _write(root / "longctx_timed_laptop" / "results.json", combine({"transformer": r}))
    rows = {(t["experiment"], t["run"]): t for t in R.timing_rows(R.load_all(root))}
    assert rows[("longctx_timed_laptop", "transformer")]["seconds_per_seed"]["mean"] == pytest.approx(14.0)
    assert rows[("longctx_timed_laptop", "transformer")]["seconds_per_seed"]["std"] == pytest.approx(2.828427, rel=1e-5)
    assert ("longctx_s-niah_laptop", "transformer") not in rows  # no recorded time: left out, not estimated


def test_readme_formal_languages_are_pivoted(root):
    from nlteach.longctx.runner import combine

    t = _longctx("transformer", ((1.0, 0.6), (0.9, 0.4)), task="anbn")
    h = _longctx("hope", ((0.7, 0.5),), task="anbn")
    _write(root / "longctx_anbn_laptop" / "results.json", combine({"transformer": t, "hope": h}))
    text = R.readme_section(root)
    assert "| language | lengths | transformer | hope | seeds |" in text
    assert "| anbn | 32 -> 128 | 0.95 -> 0.50 † | 0.70 -> 0.50 † | 0,1 |" in text
    # seeds that disagree (one solved the language, one did not) are listed beside the mean
    t = _longctx("transformer", ((1.0, 0.9), (0.5, 0.5)), task="anbn")
    _write(root / "longctx_anbn_laptop" / "results.json", combine({"transformer": t, "hope": h}))
    assert "| anbn | 32 -> 128 | 0.75 -> 0.70 (seeds: 1.00, 0.50 -> 0.90, 0.50) † | 0.70 -> 0.50 † | 0,1 |" in R.readme_section(root)


def test_longctx_runs_made_before_the_in_context_cms_are_named_for_what_they_measured(tmp_path):
    # the flat layout (no "arch") of every committed results/longctx_* file: HOPE's CMS was fixed at
    # test time then, and trained multi-frequency on the recorded periods (optimizer steps)
    old = _longctx("hope", ((0.5, 0.1),))
    old["config"] = {k: v for k, v in old["config"].items() if k != "arch"} | {"cms_periods": [1, 4, 16],
                                                                             "multi_frequency": True}
    new = _longctx("hope", ((0.6, 0.2),))
    _write(tmp_path / "longctx_s-niah_laptop" / "results.json",
           longctx.combine({"hope_cms1-4-16": old, "hope_cms16-64-256": new, "transformer": _longctx()}))
    exp = R.load_experiment(tmp_path / "longctx_s-niah_laptop")
    assert list(exp.runs) == ["hope-static-cms_steps1-4-16", "hope_cms16-64-256", "transformer"]
    text = R.readme_section(tmp_path)
    assert "| hope-static-cms_steps1-4-16 † |" in text and "`-static-cms`: made before the in-context CMS" in text
    _write(tmp_path / "longctx_parity_laptop" / "hope_cms1-4-16" / "results.json", {**old, "variant": "hope_cms1-4-16"})
    assert list(R.load_experiment(tmp_path / "longctx_parity_laptop").runs) == ["hope-static-cms_steps1-4-16"]


def test_readme_results_block_is_current():
    # The README's results section is generated from the committed results/*/results.json; a new or
    # changed result must be followed by `python -m nlteach.results --write-readme`.
    readme = Path(__file__).resolve().parent.parent / "README.md"
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(R.README_BEGIN), text.find(R.README_END)
    assert 0 <= start < end, "README.md lost its generated-results markers"
    block = text[start + len(R.README_BEGIN) + 1:end]
    assert block == R.readme_section(), "README results are stale: run python -m nlteach.results --write-readme"


def test_update_readme_replaces_only_the_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# top\n\n{R.README_BEGIN}\nOLD-BLOCK\n{R.README_END}\n\n## after\n", encoding="utf-8")
    assert R.update_readme(readme, tmp_path / "no-results")
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("# top\n\n") and text.endswith(f"{R.README_END}\n\n## after\n")
    assert "OLD-BLOCK" not in text and "No results are committed yet." in text
    assert not R.update_readme(readme, tmp_path / "no-results")  # idempotent
    (tmp_path / "bad.md").write_text("no markers", encoding="utf-8")
    with pytest.raises(ValueError, match="generated-results block"):
        R.update_readme(tmp_path / "bad.md", tmp_path)


def test_a_longctx_run_of_this_version_reads_back(tmp_path):
    """The nested config (``config.arch``) and the provenance block of a run written now: read by
    the same tables as the older committed files."""
    longctx.run(longctx.preset_config("parity", "hope", "tiny", seeds=(0,), steps=2),
                tmp_path / "longctx_parity_tiny" / "hope", figures=False)
    exps = R.load_all(tmp_path)
    assert exps[0].kind == "longctx" and exps[0].preset == "tiny"
    row = R.longctx_rows(exps[0])[0]
    assert row["task"] == "parity" and row["train_max"] == 12 and row["seeds"] == [0]
    (t,) = R.timing_rows(exps)
    assert t["device"] == "cpu" and t["steps"] == 2


def test_a_diverged_seed_is_counted_in_the_tables_not_dropped_silently(tmp_path):
    _write(tmp_path / "lm_nan_laptop" / "results.json",
           {"config": {"preset": "laptop"},
            "runs": {"hope": [{"seed": 0, "val_loss": 1.4, "test_loss": 1.5, "n_params": 990},
                              {"seed": 1, "val_loss": float("nan"), "test_loss": float("nan"), "n_params": 990}]}})
    (row,) = R.lm_rows(R.load_all(tmp_path)[0])
    assert row["val"]["n"] == 1 and row["val"]["dropped"] == 1
    assert "(1 diverged)" in R.lm_table([row])


def test_a_train_run_with_another_memory_width_is_its_own_row(tmp_path):
    for name, hidden in (("hope_seed0", None), ("hope-half-width-memories_seed0", 8)):
        _write(tmp_path / "lm_tinyshakespeare_full" / name / "results.json",
               {"config": {"model": "hope", "seed": 0, "preset": "full", "arch": {"memory_hidden": hidden}},
                "val_loss": 1.5, "test_loss": 1.6, "n_params": 1000})
    rows = R.lm_rows(R.load_all(tmp_path)[0])
    assert sorted(r["model"] for r in rows) == ["hope", "hope (memory_hidden=8)"]


def test_speed_table_comes_from_the_committed_bench_files(tmp_path):
    """``bench_models_*/bench_models.json`` (what ``python -m nlteach.bench models --out`` writes)
    becomes the README's speed table, with the run's threads and shape; a broken file is named."""
    assert R.speed_lines(tmp_path) == []
    row = {"model": "hope", "impl": "chunked", "dim": 40, "params": 1234567, "x_transformer": 3.456,
           "flops_x": 2.5, "gflop_step": 10.0, "gflop_per_s": 12.34, "step_ms": 800.0}
    bench = {"suite": "models", "budget": 2000000, "batch_size": 4, "seq_len": 512, "rows": [row],
             "provenance": {"threads": 1, "git_commit": "abc", "git_dirty": []}}
    (tmp_path / "bench_models_laptop_threads1").mkdir()
    (tmp_path / "bench_models_laptop_threads1" / "bench_models.json").write_text(json.dumps(bench))
    text = "\n".join(R.speed_lines(tmp_path))
    assert "| bench_models_laptop_threads1 | 1 | 4 x 512 | hope | chunked | 1,234,567 | 3.46 | 2.50 | 12.3 |" in text
    assert f"at most {R.SPEED_TARGET:g}x" in text
    assert "(T=512, 1 thread(s)): a `hope` step is 3.46x a Transformer step, within the 4x target" in text
    naive = {**row, "impl": "naive", "x_transformer": 34.56}
    (tmp_path / "bench_models_laptop_threads1" / "bench_models.json").write_text(json.dumps({**bench, "rows": [row, naive]}))
    assert "chunked `hope` is 10.0x faster than its token loop" in "\n".join(R.speed_lines(tmp_path))
    assert "**Speed**" in R.readme_section(tmp_path)
    (tmp_path / "bench_models_bad").mkdir()
    (tmp_path / "bench_models_bad" / "bench_models.json").write_text(json.dumps({"rows": []}))
    assert "could not be used" in "\n".join(R.speed_lines(tmp_path))


def test_lm_files_from_before_the_in_context_cms_name_their_hope_arms_static(tmp_path):
    """A notebook-09 file without provenance (written before issue 17) measured the static CMS: its
    HOPE-family arms are renamed; a file with provenance keeps its labels."""
    assert [R.static_cms_label(x) for x in ("hope", "hope-attention", "hope-no-dgd", "hope-no-cms", "titans")] == [
        "hope-static-cms", "hope-attention-static-cms", "hope-no-dgd (static CMS)", "hope-no-cms", "titans"]
    rec = {"model": "hope", "seed": 0, "val_loss": 2.5, "test_loss": 2.6, "n_params": 10}
    old, new = {"per_seed": [rec]}, {"per_seed": [rec], "provenance": {"git_commit": "abc"}}
    assert [r["model"] for r in R._lm_records(old)] == ["hope-static-cms"]
    assert [r["model"] for r in R._lm_records(new)] == ["hope"]


# ---------------------------------------------------------------------------------------------
# notebook 10: tables and verdict generated from the continual results files


def _continual_run(method, mats, task_mats=None, tuning=None, dataset="split-digits"):
    per = [{"seed": s, "acc_matrix": m, **({} if task_mats is None else {"acc_matrix_task": task_mats[s]})}
           for s, m in enumerate(mats)]
    return {"config": {"dataset": dataset, "method": method, "preset": "laptop", "tuning": tuning},
            "per_seed": per, "summary": {}}


def _shift(M, d):
    return [[min(1.0, v + d) if j <= i else 0.0 for j, v in enumerate(row)] for i, row in enumerate(M)]


def test_notebook10_tables_and_verdict_come_from_the_files(tmp_path):
    """A new-layout stream (task-incremental matrices, a persistent HOPE arm) beside a legacy one:
    every number is the files', every missing learner or measure reads 'not measured yet'."""
    base = [[[0.9, 0.0], [0.1, 0.8]], [[0.8, 0.0], [0.2, 0.9]], [[0.9, 0.0], [0.0, 0.7]]]
    task = [_shift(m, 0.05) for m in base]
    new = tmp_path / "continual_split-digits_laptop"
    rec = {"method": "ewc", "axes": {"ewc_lambda": [1.0, 10.0]}, "points": [{"ewc_lambda": 1.0}, {"ewc_lambda": 10.0}],
           "val_avg_acc": [0.2, 0.3], "val_bwt": [-0.5, -0.4], "chosen": {"ewc_lambda": 10.0}}
    _write(new / "finetune" / "results.json", _continual_run("finetune", base, base))
    _write(new / "hope" / "results.json", _continual_run("hope", base, task))
    _write(new / "hope-persistent" / "results.json",
           _continual_run("hope-persistent", [_shift(m, 0.1) for m in base], [_shift(m, 0.1) for m in task]))
    _write(new / "ewc" / "results.json", _continual_run("ewc", base, base, tuning=rec))
    legacy = {"ewc_lambda": {"method": "ewc", "grid": [1.0, 10.0], "val_avg_acc": [0.3, 0.2], "val_bwt": [0, 0],
                             "chosen": 1.0, "seeds": [0], "preset": "laptop", "criterion": "c"}}
    old = tmp_path / "continual_banking77_laptop"
    _write(old / "finetune" / "results.json", _continual_run("finetune", base, dataset="banking77"))
    _write(old / "ewc" / "results.json", _continual_run("ewc", base, tuning=legacy, dataset="banking77"))
    exps = R.continual_experiments(tmp_path)
    assert list(exps) == ["banking77", "split-digits"]  # the order of STREAMS

    rows = {(r["dataset"], r["method"]): r for e in exps.values() for r in R.continual_rows(e)}
    assert rows[("split-digits", "finetune")]["learning_acc"]["mean"] == pytest.approx((0.85 + 0.85 + 0.8) / 3)
    assert rows[("split-digits", "hope")]["task_avg_acc"]["mean"] > rows[("split-digits", "hope")]["avg_acc"]["mean"]
    assert rows[("banking77", "finetune")]["task_avg_acc"] is None  # legacy: not measured
    pivot = R.continual_pivot([r for e in exps.values() for r in R.continual_rows(e)])
    assert [line.split(" | ")[0] for line in pivot.splitlines()[2:]] == [  # the learners' order, not the files'
        "| finetune", "| ewc", "| hope", "| hope-persistent"]
    overview = R.continual_overview(exps)
    assert "learning accuracy" in overview and "task-IL BWT" in overview and R.NOT_MEASURED in overview

    pair = R.continual_pair(exps["split-digits"], "hope-persistent", "hope")
    assert pair["avg_acc"]["mean"] == pytest.approx(0.1) and pair["avg_acc"]["sign"] == 1  # +0.1 on every seed
    table = R.continual_paired_table(exps, [("hope-persistent", "hope"), ("cms", "finetune")])
    assert "| hope-persistent − hope | final avg. accuracy | not measured yet | +0.100 [+0.100, +0.100] better † |" \
        in table  # † these files record no provenance
    assert table.count(R.NOT_MEASURED) == 4 + 2 * 4  # 4 measures: banking77 has no persistent arm; no cms anywhere
    with pytest.raises(ValueError, match="measures must be in"):
        R.continual_paired_table(exps, [("hope", "finetune")], measures=("accuracy",))

    verdict = R.continual_verdict(exps)
    assert "`hope-persistent` − `hope`, final average accuracy: better on split-digits; not measured yet on banking77" \
        in verdict
    assert "`cms` − `finetune`: not measured yet (no `cms` runs in the results files)" in verdict
    assert "minus its class-incremental one, the same runs: no detectable difference on split-digits" in verdict
    assert "- Every number above comes from files marked †" in verdict  # no file records its provenance
    for f in new.glob("*/results.json"):  # split-digits rerun with provenance: only banking77's numbers are marked
        r = json.loads(f.read_text())
        _write(f, {**r, "provenance": {"git_commit": "a" * 40, "git_dirty": [], "command": "python -m nlteach.continual"}})
    marked = R.continual_verdict(R.continual_experiments(tmp_path))
    assert marked.splitlines()[-1].startswith("- The numbers of `ewc` on banking77; `finetune` on banking77 come from files marked †")
    assert "Every number above" not in marked
    assert R.continual_verdict({}).startswith("No continual results")
    assert R.paired_words(None) == R.NOT_MEASURED
    assert R.paired_words({"n": 3, "mean": 0.1, "ci95": [0.05, 0.15], "sign": 1}, higher_is_better=False).endswith("worse")

    tuning = R.tuning_table(R.continual_tuning_rows(exps))
    assert ("| banking77 | ewc | ewc_lambda ∈ {1, 10} | 2 | ewc_lambda=1 | 0.300 | 0.000 | not measured yet | "
            "ewc_lambda |") in tuning  # a record of the first layout
    assert "| split-digits | ewc | ewc_lambda ∈ {1, 10} | 2 | ewc_lambda=10 | 0.300 | -0.400 |" in tuning
    assert "| split-digits | hope | not tuned (defaults) | 0 |" in tuning
    assert "| banking77 | hope-persistent | not measured yet (no run) | 0 |" in tuning  # every learner has a row
