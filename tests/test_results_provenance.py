"""Every committed results file records its commit, a clean tree and its command (issue 19 item 1);
the reader marks the rows of the files that do not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nlteach import results as R
from nlteach.longctx.runner import combine
from nlteach.runs import RESULTS_ROOT

CLEAN = {"git_commit": "abc1234def", "git_dirty": [], "command": "python -m nlteach.x --out results/x"}


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _rel(path: Path) -> str:
    return path.relative_to(RESULTS_ROOT).as_posix()


# ---------------------------------------------------------------------------------------------
# The committed files


def test_every_results_file_records_commit_clean_tree_and_command():
    files = R.results_files()
    assert files, "no results file found under results/"
    bad = {}
    for f in files:
        status = R.file_provenance_status(f)
        if not status["ok"] and _rel(f) not in R.LEGACY_WITHOUT_PROVENANCE:
            bad[_rel(f)] = status["missing"] + status["dirty"]
    assert not bad, ("results files without a commit, a clean tree or a command (rerun them from a clean "
                     f"checkout; runs.provenance records all three): {bad}")


def test_the_legacy_list_only_shrinks():
    """Each listed file still exists and still lacks provenance: when its rerun lands, delete its line."""
    for name, reason in R.LEGACY_WITHOUT_PROVENANCE.items():
        path = RESULTS_ROOT / name
        assert path.is_file(), f"{name} is listed in LEGACY_WITHOUT_PROVENANCE but is gone: delete its line"
        assert not R.file_provenance_status(path)["ok"], (
            f"{name} now records commit, clean tree and command: delete its line from LEGACY_WITHOUT_PROVENANCE")
        assert isinstance(reason, str) and len(reason) > 20, f"{name}: say why it is legacy"
    assert set(R.LEGACY_WITHOUT_PROVENANCE) <= {_rel(f) for f in R.results_files()}


def test_the_readme_block_marks_the_legacy_files():
    block = R.readme_section()
    legacy = {name.split("/")[0] for name in R.LEGACY_WITHOUT_PROVENANCE}
    if not legacy & {e.name for e in R.load_all()}:
        pytest.skip("no legacy experiment left")
    assert R.PROVENANCE_NOTE in block
    for exp in R.load_all():
        if exp.name in legacy and not R.provenance_status(exp)["ok"]:
            assert f"- `{exp.name}` (" in block, exp.name


# ---------------------------------------------------------------------------------------------
# provenance_status on crafted dicts


def test_a_provenance_block_is_complete():
    s = R.provenance_status({"provenance": CLEAN})
    assert s["ok"] and s["commit"] and s["clean"] and s["command"]
    assert s["missing"] == [] and s["commits"] == ["abc1234def"] and s["dirty"] == []


def test_top_level_fields_and_a_command_beside_the_block_count():
    assert R.provenance_status(dict(CLEAN))["ok"]  # older long-context files: at the top level
    block = {k: v for k, v in CLEAN.items() if k != "command"}
    assert R.provenance_status({"provenance": block, "command": "python -m x"})["ok"]
    assert R.provenance_status({"provenance": block})["missing"] == ["command"]


def test_dirty_paths_under_results_are_clean_others_are_not():
    assert R.provenance_status({"provenance": {**CLEAN, "git_dirty": ["results/x/results.json"]}})["ok"]
    s = R.provenance_status({"provenance": {**CLEAN, "git_dirty": ["results/x.json", "nlteach/models.py"]}})
    assert not s["ok"] and not s["clean"] and s["missing"] == ["clean tree"] and s["dirty"] == ["nlteach/models.py"]


def test_an_unrecorded_tree_state_is_not_clean():
    for block in ({**CLEAN, "git_dirty": None}, {k: v for k, v in CLEAN.items() if k != "git_dirty"}):
        s = R.provenance_status({"provenance": block})
        assert s["missing"] == ["clean tree"] and s["dirty"] == []


def test_nothing_recorded():
    for d in ({"config": {}, "per_seed": []}, [1, 2], None):
        s = R.provenance_status(d)
        assert not s["ok"] and s["missing"] == ["commit", "clean tree", "command"]


def test_per_seed_records_supply_what_the_top_level_lacks():
    per_seed = [{"seed": 0, "provenance": CLEAN}, {"seed": 1, "provenance": {**CLEAN, "git_commit": "fff0000"}}]
    s = R.provenance_status({"per_seed": per_seed})
    assert s["ok"] and s["commits"] == ["abc1234def", "fff0000"]
    s = R.provenance_status({"per_seed": [*per_seed, {"seed": 2}]})  # one seed without: not enough
    assert not s["ok"] and s["missing"] == ["commit", "clean tree", "command"]
    dirty = [{"seed": 0, "provenance": {**CLEAN, "git_dirty": ["nlteach/train.py"]}}]
    s = R.provenance_status({"provenance": CLEAN, "per_seed": dirty})  # a dirty seed makes the file dirty
    assert s["missing"] == ["clean tree"] and s["dirty"] == ["nlteach/train.py"]


def test_per_seed_files_beside_a_results_file(tmp_path):
    f = tmp_path / "exp" / "results.json"
    _write(f, {"config": {}, "per_seed": [{"seed": 0}, {"seed": 1}]})
    assert not R.file_provenance_status(f)["ok"]
    for seed in (0, 1):
        _write(tmp_path / "exp" / "seeds" / f"seed_{seed}.json", {"seed": seed, "provenance": CLEAN})
    assert R.file_provenance_status(f)["ok"]
    (tmp_path / "broken.json").write_text("{nope")
    s = R.file_provenance_status(tmp_path / "broken.json")
    assert not s["ok"] and "problem" in s


# ---------------------------------------------------------------------------------------------
# Marking rows and the README footnote


def _continual(method, provenance=None):
    d = {"config": {"dataset": "split-digits", "method": method, "preset": "laptop"},
         "per_seed": [{"seed": 0, "acc_matrix": [[0.9, 0.0], [0.5, 0.8]]}], "summary": {}}
    return d if provenance is None else {**d, "provenance": provenance}


def _longctx(model, **top):
    return {"config": {"task": "s-niah", "model": model, "preset": "laptop", "seeds": [0], "train_lengths": [32]},
            "variant": model, "per_seed": [{"seed": 0, "accuracy": {"32": 1.0, "128": 0.5}}],
            "summary": {"train_max_length": 32, "chance": 0.01}, "details": [], **top}


def test_rows_of_files_without_provenance_are_marked_and_listed(tmp_path):
    root = tmp_path / "results"
    _write(root / "continual_split-digits_laptop" / "finetune" / "results.json", _continual("finetune"))
    _write(root / "continual_split-digits_laptop" / "replay" / "results.json", _continual("replay", CLEAN))
    # a combined long-context file without provenance: each variant's own file decides
    variants = {"transformer": _longctx("transformer", **CLEAN),
                "titans": _longctx("titans", **{**CLEAN, "git_dirty": ["nlteach/titans.py"]})}
    _write(root / "longctx_s-niah_laptop" / "results.json", {**combine(variants), "command": "python -m x"})
    for name, d in variants.items():
        _write(root / "longctx_s-niah_laptop" / name / "results.json", d)
    exps = {e.name: e for e in R.load_all(root)}
    status = R.provenance_status(exps["longctx_s-niah_laptop"])
    assert not status["ok"] and status["runs"]["transformer"]["ok"] and not status["runs"]["titans"]["ok"]
    assert status["dirty"] == ["nlteach/titans.py"]
    block = R.readme_section(root)
    assert "| replay | 0.65 (-0.40), 1 seed |" in block
    assert "| finetune | 0.65 (-0.40), 1 seed † |" in block
    assert "| longctx_s-niah_laptop | s-niah | transformer | 0.01 | 32 |" in block
    assert "| longctx_s-niah_laptop | s-niah | titans † | 0.01 | 32 |" in block
    assert R.PROVENANCE_NOTE in block
    assert ("- `continual_split-digits_laptop` (`finetune`): no recorded commit or command; no record of whether "
            "the tree was clean.") in block
    assert ("- `longctx_s-niah_laptop` (`titans`): made at commit abc1234 with uncommitted changes to "
            "nlteach/titans.py.") in block
    assert "- `longctx_s-niah_laptop` (`titans`)" in R.all_tables(list(exps.values()))


def test_no_footnote_when_every_file_has_provenance(tmp_path):
    root = tmp_path / "results"
    _write(root / "continual_split-digits_laptop" / "replay" / "results.json", _continual("replay", CLEAN))
    block = R.readme_section(root)
    assert R.PROVENANCE_MARK not in block and R.provenance_lines(R.load_all(root)) == []
