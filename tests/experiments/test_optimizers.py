"""nlteach.experiments.optimizers: notebook 06's optimizer comparison, at tiny sizes.

The reference numbers in tests/data/optimizers_tiny_reference.json were made by the code before it
moved onto nlteach.runs and nlteach.recipes (the commit is in the file); the tiny preset must give
them back, equal to 1e-6 relative: on another CPU (an AMD EPYC against the Intel that made the
file) float32 kernels sum in another order and the last bits differ (a few 1e-8), while a change of
the computation moves them far more.
"""

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from nlteach.course.widgets import render
from nlteach.data import load_digits_split, load_tinyshakespeare
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
    assert got.keys() == ref["runs"].keys()
    for name, per in got.items():  # every optimizer and seed, every logged loss
        want = ref["runs"][name]
        assert [r["seed"] for r in per] == [r["seed"] for r in want], name
        for g, w in zip(per, want):
            for key in ("train_loss", "eval_loss"):
                assert g[key] == pytest.approx(w[key], rel=1e-6, abs=0), (name, g["seed"], key)


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
    monkeypatch.setattr(E, "train_one", lambda c, name, seed, *a, **k: calls.append(seed) or real(c, name, seed, *a, **k))
    again = E.run(replace(cfg, seeds=(0, 1)), tmp_path)
    assert set(calls) == {1}
    assert again["per_seed"][0]["runs"] == first["per_seed"][0]["runs"]
    with pytest.raises(SettingsMismatch, match="steps: saved 4, now 5"):
        E.run(replace(cfg, steps=5), tmp_path)


def test_interrupted_seed_continues_after_its_last_finished_optimizer(tmp_path, monkeypatch):
    cfg = small(optimizers=("SGD+momentum", "AdamW"), seeds=(0,))
    whole = E.run(cfg)
    real = E.train_one

    def crash_on_adamw(c, name, *a, **k):
        if name == "AdamW":
            raise KeyboardInterrupt
        return real(c, name, *a, **k)

    monkeypatch.setattr(E, "train_one", crash_on_adamw)
    with pytest.raises(KeyboardInterrupt):
        E.run(cfg, tmp_path)
    assert (tmp_path / "seeds" / "seed_0.pt").exists()
    calls = []
    monkeypatch.setattr(E, "train_one", lambda c, name, *a, **k: calls.append(name) or real(c, name, *a, **k))
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

    def crash_on_adamw(c, name, *a, **k):
        if name == "AdamW":
            raise KeyboardInterrupt
        return real(c, name, *a, **k)

    monkeypatch.setattr(E, "train_one", crash_on_adamw)
    with pytest.raises(KeyboardInterrupt):
        E.run(cfg, tmp_path / "r")
    monkeypatch.setattr(E, "train_one", real)
    assert_rerun_refuses_crafted_and_busy(lambda: E.run(cfg, tmp_path / "r"), tmp_path / "r")


# ---------------------------------------------------------------------------------------------
# The learning-rate sweep on tuning data carved from the training split (issue 19)


def test_tuning_data_is_carved_from_the_training_split():
    dev = torch.device("cpu")
    d = load_digits_split()
    train_rows = {tuple(r) for r in d["train"][0].tolist()}
    test_rows = {tuple(r) for r in d["test"][0].tolist()}
    tune = E.load_task(small("digits"), dev, split="tune")
    held = {tuple(r) for r in tune["eval"][0].tolist()}
    assert tune["eval_name"] == "tuning" and len(tune["eval"][1]) == round(E.TUNE_FRACTION["digits"] * len(d["train"][1]))
    assert held <= train_rows and not (held & test_rows - train_rows)
    gen = torch.Generator().manual_seed(0)
    xb, _ = tune["batch"](gen, 512)  # training batches never draw a held-out example (nor a test one)
    rows = [tuple(r) for r in d["train"][0].tolist()]
    twice = {r for r in rows if rows.count(r) > 1}  # an image that occurs twice may sit on both sides
    drawn = {tuple(r) for r in xb.tolist()}
    assert drawn <= train_rows and not (drawn & held) - twice
    report = E.load_task(small("digits"), dev)
    assert report["eval_name"] == "test" and len(report["eval"][1]) == len(d["test"][1])

    text = load_tinyshakespeare()
    cfg = small("shakespeare", context=8, n_eval=64)
    tune = E.load_task(cfg, dev, split="tune")
    cut = len(text["train"]) - round(E.TUNE_FRACTION["shakespeare"] * len(text["train"]))
    chars = sorted(set("".join(text.values())))
    decode = lambda ids: "".join(chars[i] for i in ids)  # noqa: E731
    X, y = tune["eval"]
    for row, nxt in zip(X[:16].tolist(), y[:16].tolist()):
        assert decode(row) + chars[nxt] in text["train"][cut - 8:]  # every tuning window lies in the last tenth
    assert tune["eval_name"] == "tuning" and E.load_task(cfg, dev)["eval_name"] == "val"
    with pytest.raises(ValueError, match="split must be one of"):
        E.load_task(cfg, dev, split="test")


def _fake_losses(best: dict[str, float], calls: list):
    """A train_one whose final tuning loss is (log lr - log best[name])^2, recording every call."""
    def fake(cfg, name, seed, data, device, lr=None):
        lr = cfg.learning_rates()[name] if lr is None else lr
        calls.append((name, seed, lr, data["eval_name"]))
        loss = (math.log(lr) - math.log(best[name])) ** 2 + 1.0
        return {"train_loss": [loss] * cfg.steps, "eval_loss": [loss + 1.0, loss], "step_time": 1e-3, "opt_time": 1e-4}
    return fake


def test_sweep_widens_at_an_edge_and_resumes(tmp_path, monkeypatch):
    cfg = small(optimizers=("SGD+momentum", "AdamW"), sweep=True, n_evals=2)
    sgd, adam = E.DEFAULT_LRS["digits"]["SGD+momentum"], E.DEFAULT_LRS["digits"]["AdamW"]
    calls: list = []
    # SGD's best lies inside the grid; AdamW's far above it: two widenings, then still on the edge
    monkeypatch.setattr(E, "train_one", _fake_losses({"SGD+momentum": sgd, "AdamW": adam * 1000}, calls))
    sweep = E.sweep_lrs(cfg, torch.device("cpu"), folder=tmp_path)
    s, a = sweep["per_optimizer"]["SGD+momentum"], sweep["per_optimizer"]["AdamW"]
    assert s["chosen"] == pytest.approx(sgd) and not s["at_edge"] and len(s["lrs"]) == 3
    assert len(a["lrs"]) == 3 + E.SWEEP_MAX_WIDEN and a["chosen"] == max(a["lrs"]) and a["at_edge"]
    assert a["chosen"] == pytest.approx(adam * 3 * E.SWEEP_FACTOR ** E.SWEEP_MAX_WIDEN)
    assert {c[1] for c in calls} == {E.SWEEP_SEED} and {c[3] for c in calls} == {"tuning"}
    assert len(calls) == 3 + 3 + E.SWEEP_MAX_WIDEN
    calls.clear()  # a rerun reads every finished value back
    assert E.sweep_lrs(cfg, torch.device("cpu"), folder=tmp_path) == sweep and calls == []


def test_a_swept_run_trains_every_seed_at_the_chosen_rates(tmp_path, monkeypatch):
    cfg = small(optimizers=("SGD+momentum", "AdamW"), sweep=True, seeds=(0, 1), n_evals=2)
    best = {"SGD+momentum": E.DEFAULT_LRS["digits"]["SGD+momentum"] / 3, "AdamW": E.DEFAULT_LRS["digits"]["AdamW"]}
    calls: list = []
    monkeypatch.setattr(E, "train_one", _fake_losses(best, calls))
    res = E.run(cfg, tmp_path)
    chosen = {n: r["chosen"] for n, r in res["lr_sweep"]["per_optimizer"].items()}
    assert res["config"]["lrs"] == chosen and chosen["AdamW"] == pytest.approx(best["AdamW"])
    saved = read_json(tmp_path / "config.json")  # the folder's settings: the grids, not the chosen rates
    assert saved["lrs"] == {} and saved["lr_sweep"]["grids"]["AdamW"][1] == E.DEFAULT_LRS["digits"]["AdamW"]
    seeds_runs = [c for c in calls if c[1] in (0, 1)]
    assert {(c[0], c[2]) for c in seeds_runs} == set(chosen.items()) and {c[3] for c in seeds_runs} == {"test"}
    assert [r["lr"] for r in res["summary"]] == [chosen["SGD+momentum"], chosen["AdamW"]]
    table = E.sweep_table(res)
    assert "**" in table and "AdamW" in table and E.sweep_table({"lr_sweep": None}) == ""
    # the sweep counts as a setting: the same folder refuses a run without it
    with pytest.raises(SettingsMismatch):
        E.run(replace(cfg, sweep=False), tmp_path)


def test_sweep_and_hand_set_rates_exclude_each_other():
    with pytest.raises(ValueError, match="lrs=.*sweep=True"):
        small(sweep=True, lrs={"AdamW": 1e-3})
    assert E.preset_config("digits", "laptop").sweep and not E.preset_config("digits", "tiny").sweep
    assert len(E.preset_config("shakespeare", "laptop").seeds) >= 5
