"""nlteach.results for notebook 11 (issue 19 items 4 and 5): chance from the task's definition,
every seed where seeds disagree, paired verdicts by the course's one rule, and 'not measured yet'
for a folder that does not exist."""

from __future__ import annotations

import json

import pytest

from nlteach import results as R
from nlteach.longctx.runner import combine


def _run(model: str, accs: list[tuple[float, float]], task: str = "mqar") -> dict:
    return {"config": {"task": task, "model": model, "preset": "laptop", "budget": "learned", "steps": 3000,
                       "seeds": list(range(len(accs))), "train_lengths": [32], "eval_lengths": [32, 256],
                       "task_options": {"n_keys": 64, "n_values": 16} if task == "mqar" else {},
                       "arch": {"cms_periods": [16, 64, 256]}},
            "variant": model,
            "per_seed": [{"seed": s, "accuracy": {"32": a, "256": b}} for s, (a, b) in enumerate(accs)],
            "summary": {"train_max_length": 32, "chance": 0.5},  # a wrong recorded chance: not used
            "details": [{"seed": s, "nonfinite_step": None} for s in range(len(accs))]}


@pytest.fixture
def root(tmp_path):
    runs = {"transformer": _run("transformer", [(1.0, 0.30), (0.99, 0.25), (0.98, 0.35), (1.0, 0.28), (0.97, 0.31)]),
            "hope": _run("hope", [(0.95, 0.06), (0.2, 0.07), (0.96, 0.05), (0.3, 0.06), (0.94, 0.06)]),
            "titans": _run("titans", [(0.1, 0.06), (0.12, 0.06), (0.09, 0.07), (0.1, 0.06), (0.11, 0.06)])}
    folder = tmp_path / "longctx_mqar_learned"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(combine(runs)))
    return tmp_path


def test_report_generates_every_number_from_the_files(root):
    text = R.longctx_report("longctx_mqar_learned", root)
    assert "budget learned" in text and "steps 3000" in text and "seeds 0,1,2,3,4" in text
    assert "| model | chance | 32 | 256* | seeds |" in text
    assert "| transformer † | 0.0625 |" in text  # chance 1/n_values from the task, not the file's 0.5
    # HOPE's seeds disagree at the training length: every seed is listed
    assert "(seeds: 0.95, 0.20, 0.96, 0.30, 0.94)" in text
    assert "Each model minus the transformer, paired by seed" in text
    assert "| mqar | titans † | 32 |" in text and "| worse |" in text
    assert "no recorded commit" in text


def test_not_measured_yet_says_so_with_the_command(tmp_path):
    text = R.longctx_report("longctx_mk-niah_learned", tmp_path, command="python -m nlteach.longctx --task mk-niah")
    assert text.startswith("**`results/longctx_mk-niah_learned`: not measured yet.**")
    assert "python -m nlteach.longctx --task mk-niah" in text


def test_paired_rows_use_the_one_rule(root):
    exp = R.load_experiment(root / "longctx_mqar_learned")
    rows = {(r["model"], r["length"]): r for r in R.longctx_paired_rows(exp)}
    assert set(rows) == {("hope", 32), ("hope", 256), ("titans", 32), ("titans", 256)}
    assert rows[("titans", 32)]["sign"] == -1 and R.paired_word(rows[("titans", 32)]) == "worse"
    assert rows[("hope", 32)]["sign"] == 0 and R.paired_word(rows[("hope", 32)]) == "no clear difference"
    assert rows[("hope", 256)]["seeds"] == [0, 1, 2, 3, 4]
    assert R.longctx_paired_rows(exp, reference="absent") == []
    assert R.paired_word({"n": 1, "sign": 0}) == "one seed: cannot tell"


def test_findings_and_summary_table(root):
    exp = R.load_experiment(root / "longctx_mqar_learned")
    (line,) = R.longctx_findings([exp])
    assert line.startswith("- `longctx_mqar_learned` (mqar; chance 0.0625): at the training length (32)")
    assert "on every seed by transformer † (5/5)" in line
    assert "on some seeds by hope † (3/5)" in line and "on no seed by titans † (0/5)" in line
    assert "At 256 (8x the training length), above chance by its 95% interval: transformer † (0.30); not above chance: hope † (0.06)" in line
    table = R.longctx_summary_table([exp])
    assert "| mqar | hope † | 0.0625 | 32: 0.67 ± 0.39 (seeds: 0.95, 0.20, 0.96, 0.30, 0.94) | 3/5 |" in table
    assert R.longctx_chance({"task": "s-niah"}) == pytest.approx(0.01)


def test_an_overflow_at_test_time_is_named_with_its_seeds_and_lengths(root):
    """A run whose forward pass overflowed on some test examples (``eval_overflow`` in its details)
    is named with its seeds, lengths and largest fraction, in the report and the README block; a
    run without any adds nothing."""
    exp = R.load_experiment(root / "longctx_mqar_learned")
    assert R.overflow_lines(R.longctx_rows(exp)) == []
    data = json.loads((root / "longctx_mqar_learned" / "results.json").read_text())
    data["details"]["titans"][1]["eval_overflow"] = {"256": 0.25}
    data["details"]["titans"][3]["eval_overflow"] = {"128": 0.5, "256": 1.0}
    (root / "longctx_mqar_learned" / "results.json").write_text(json.dumps(data))
    (line,) = [x for x in R.overflow_lines(R.longctx_rows(R.load_experiment(root / "longctx_mqar_learned"))) if x]
    assert "`longctx_mqar_learned` titans (seed 1,3; lengths 128, 256; up to 100% of the examples)" in line
    assert line in R.longctx_report("longctx_mqar_learned", root)
    assert line in R.readme_section(root)
