"""nlteach.experiments.optimizers: notebook 06's optimizer comparison, at tiny sizes.

The reference numbers in tests/data/optimizers_tiny_reference.json were made by the code before it
moved onto nlteach.runs and nlteach.recipes (the commit is in the file); the tiny preset must give
them back exactly.
"""

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from nlteach.course.widgets import render
from nlteach.experiments import optimizers as E
from nlteach.runs.io import read_json
from nlteach.runs.rundir import SettingsMismatch

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "optimizers_tiny_reference.json"


def small(task="digits", **kw):
    return E.OptimizerComparisonConfig(task=task, **{**dict(steps=4, hidden=8, seeds=(0, 1), n_eval=64, n_evals=3,
                                                           context=8, embed=4), **kw})


@pytest.mark.parametrize("task", E.TASKS)
def test_tiny_preset_gives_the_reference_numbers(task):
    ref = json.loads(REFERENCE.read_text())["tasks"][task]
    cfg = E.preset_config(task, "tiny")
    assert {k: list(v) if isinstance(v, tuple) else v for k, v in E.PRESETS["tiny"][task].items()} == ref["sizes"]
    res = E.run(cfg)
    assert res["eval_steps"] == ref["eval_steps"]
    got = {n: [{"seed": r["seed"], "train_loss": r["train_loss"], "eval_loss": r["eval_loss"]} for r in per]
           for n, per in E.by_optimizer(res).items()}
    assert got == ref["runs"]  # exact equality, every optimizer and seed


@pytest.mark.parametrize("task", E.TASKS)
def test_run_is_well_formed(task):
    threads = torch.get_num_threads()
    res = E.run(small(task))
    assert torch.get_num_threads() == threads
    assert list(E.by_optimizer(res)) == list(E.COMPARED)
    assert res["eval_steps"] == [0, 2, 4] and res["eval_name"] == ("test" if task == "digits" else "val")
    for per_seed in E.by_optimizer(res).values():
        assert [r["seed"] for r in per_seed] == [0, 1]
        for r in per_seed:
            assert len(r["train_loss"]) == 4 and len(r["eval_loss"]) == 3
            assert r["step_time"] > 0 and r["opt_time"] > 0
    # same seed => same initial weights for every optimizer; different seeds differ
    first = {name: [r["eval_loss"][0] for r in per] for name, per in E.by_optimizer(res).items()}
    assert len({v[0] for v in first.values()}) == 1 and first["AdamW"][0] != first["AdamW"][1]
    rows = E.summarize(res)
    assert rows[0]["optimizer"] == "SGD+momentum" and rows[0]["step_time_ratio"]["mean"] == 1.0
    assert rows[0]["vs_baseline"] is None and rows[1]["vs_baseline"]["n"] == 2
    assert all(math.isfinite(r["eval"]["mean"]) and r["eval"]["n"] == 2 for r in rows)
    assert "DMGD" in E.summary_table(res) and "±" in E.summary_table(res, markdown=False)
    assert [v["optimizer"] for v in res["verdict"]] == list(E.COMPARED[1:])


def test_draw_comparison():
    res = E.run(small(steps=3, optimizers=("SGD+momentum", "AdamW"), seeds=(0,)))
    fig = render(E.draw_comparison, {"results": [res, res]}, figsize=(12, 3.5))
    assert len(fig.axes) == 3


def test_adamw_keeps_the_comparisons_own_settings():
    p = [torch.nn.Parameter(torch.zeros(2, 2)), torch.nn.Parameter(torch.zeros(2))]
    opt = E.make_optimizer("AdamW", p, 1e-2)
    assert isinstance(opt, torch.optim.AdamW)
    assert all(g["betas"] == (0.9, 0.999) and g["weight_decay"] == 0.0 for g in opt.param_groups)
    sgd = E.make_optimizer("SGD+momentum", p, 0.1)
    assert sgd.param_groups[0]["momentum"] == 0.9
    with pytest.raises(ValueError, match="weight_decay"):
        E.make_optimizer("Muon", p, 0.01, weight_decay=0.1)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="task"):
        E.OptimizerComparisonConfig(task="mnist")
    with pytest.raises(ValueError, match="optimizer name"):
        E.OptimizerComparisonConfig(optimizers=("Lion",))
    with pytest.raises(ValueError, match="optimizer name"):
        E.make_optimizer("Lion", [torch.zeros(1, requires_grad=True)], 0.1)
    with pytest.raises(ValueError, match="steps"):
        E.OptimizerComparisonConfig(steps=0)
    with pytest.raises(ValueError, match="threads"):
        E.run(small(), threads=0)
    with pytest.raises(ValueError, match="task"):
        E.preset_config("mnist")


def test_presets_are_one_table():
    tiny, laptop = E.preset_config("digits", "tiny"), E.preset_config("shakespeare", "laptop")
    assert tiny.steps < laptop.steps and len(tiny.seeds) >= 3 and laptop.preset == "laptop"
    assert set(E.PRESETS) == {"tiny", "laptop", "full"} and all(set(v) == set(E.TASKS) for v in E.PRESETS.values())


def test_run_folder_resumes_and_refuses_other_settings(tmp_path, monkeypatch):
    cfg = small(optimizers=("SGD+momentum", "AdamW"), seeds=(0,))
    first = E.run(cfg, tmp_path)
    assert (tmp_path / "results.json").exists() and (tmp_path / "seeds" / "seed_0.json").exists()
    assert read_json(tmp_path / "results.json")["provenance"]["git_commit"] == first["provenance"]["git_commit"]
    # a second call reads the finished seed back and trains only the new one
    calls = []
    real = E.train_one
    monkeypatch.setattr(E, "train_one", lambda c, name, seed, *a: calls.append(seed) or real(c, name, seed, *a))
    again = E.run(replace(cfg, seeds=(0, 1)), tmp_path)
    assert set(calls) == {1}
    assert again["per_seed"][0]["runs"] == first["per_seed"][0]["runs"]
    with pytest.raises(SettingsMismatch, match="steps: saved 4, now 5"):
        E.run(replace(cfg, steps=5), tmp_path)


def test_interrupted_seed_continues_after_its_last_finished_optimizer(tmp_path, monkeypatch):
    cfg = small(optimizers=("SGD+momentum", "AdamW"), seeds=(0,))
    whole = E.run(cfg)
    real = E.train_one

    def crash_on_adamw(c, name, *a):
        if name == "AdamW":
            raise KeyboardInterrupt
        return real(c, name, *a)

    monkeypatch.setattr(E, "train_one", crash_on_adamw)
    with pytest.raises(KeyboardInterrupt):
        E.run(cfg, tmp_path)
    assert (tmp_path / "seeds" / "seed_0.pt").exists()
    calls = []
    monkeypatch.setattr(E, "train_one", lambda c, name, *a: calls.append(name) or real(c, name, *a))
    res = E.run(cfg, tmp_path)
    assert calls == ["AdamW"] and not (tmp_path / "seeds" / "seed_0.pt").exists()
    for name in cfg.optimizers:
        assert res["per_seed"][0]["runs"][name]["eval_loss"] == whole["per_seed"][0]["runs"][name]["eval_loss"]


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as e:
        E.main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for opt in ("--task", "--preset", "--device", "--out", "--threads", "--seeds", "--overwrite", "--steps", "--lr"):
        assert opt in text


def test_cli_writes_results_and_refuses_a_changed_resume(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--task", "digits", "--preset", "tiny", "--out", str(out), "--seeds", "0", "--steps", "3",
            "--optimizers", "SGD+momentum", "AdamW", "--no-progress"]
    assert E.main(args) == 0
    res = read_json(out / "results.json")
    assert res["config"]["steps"] == 3 and res["preset"] == "tiny" and res["config"]["hidden"] == 16
    assert set(res["provenance"]) >= {"git_commit", "git_dirty", "command"}
    assert "AdamW" in capsys.readouterr().out
    assert E.main([*args[:-1], "--hidden", "8", "--lr", "AdamW=3e-3"]) == 2  # a refused resume
    err = capsys.readouterr().err
    assert "hidden: saved 16, now 8" in err and "lrs: saved" in err and "--overwrite" in err
    assert E.main([*args, "--hidden", "8", "--overwrite"]) == 0
    assert read_json(out / "results.json")["config"]["hidden"] == 8


def _fake_committed(tmp_path, task="digits"):
    """A realistic committed file: a real (small) run written through the CLI's run folder, then
    edited so that the verdict has one optimizer of each outcome."""
    folder = tmp_path / f"optimizers_{task}_laptop"
    cfg = small(task, optimizers=("SGD+momentum", "AdamW", "Muon", "M3"), seeds=(0, 1, 2), steps=3)
    E.run(cfg, folder)
    res = read_json(folder / "results.json")
    base = E.final_losses(res, "SGD+momentum")
    shifts = {"AdamW": [-0.10, -0.11, -0.12], "Muon": [0.1, -0.1, 0.0], "M3": [0.5, 0.6, 0.4]}
    for p, b in zip(res["per_seed"], base):
        for name, d in shifts.items():
            p["runs"][name]["eval_loss"][-1] = b + d[p["seed"]]
    res["summary"], res["verdict"] = E.summarize(res), E.verdict(res)
    (folder / "results.json").write_text(json.dumps(res))
    return res


def test_load_committed_and_the_verdict(tmp_path):
    with pytest.raises(FileNotFoundError, match="--task digits --preset laptop"):
        E.load_committed("digits", root=tmp_path)
    _fake_committed(tmp_path)
    res = E.load_committed("digits", root=tmp_path)
    outcome = {v["optimizer"]: v["outcome"] for v in E.verdict(res)}
    assert outcome == {"AdamW": "better", "Muon": "no clear difference", "M3": "worse"}
    text = E.verdict_text(res)
    assert "AdamW" in text and "beats SGD+momentum" in text and "is worse than" in text
    assert "-0.110 [" in text  # the mean difference, from the file
    table = E.comparison_table({"digits": res, "shakespeare": res})
    assert table.count("\n") == 1 + 4 and "digits test loss" in table


def test_a_rerun_refuses_a_crafted_checkpoint_and_a_busy_folder(tmp_path, monkeypatch,
                                                                 assert_rerun_refuses_crafted_and_busy):
    cfg = small(optimizers=("SGD+momentum", "AdamW"), seeds=(0,))
    real = E.train_one

    def crash_on_adamw(c, name, *a):
        if name == "AdamW":
            raise KeyboardInterrupt
        return real(c, name, *a)

    monkeypatch.setattr(E, "train_one", crash_on_adamw)
    with pytest.raises(KeyboardInterrupt):
        E.run(cfg, tmp_path / "r")
    monkeypatch.setattr(E, "train_one", real)
    assert_rerun_refuses_crafted_and_busy(lambda: E.run(cfg, tmp_path / "r"), tmp_path / "r")
