"""nlteach.experiments.cms_tasks: notebook 07's sequential-tasks experiment, at tiny sizes.

The reference numbers in tests/data/cms_tasks_tiny_reference.json were made by the code before it
moved onto nlteach.runs (the commit is in the file); the tiny preset must give them back exactly.
"""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from nlteach.course.widgets import render
from nlteach.experiments import cms_tasks as E
from nlteach.runs.io import read_json
from nlteach.runs.rundir import SettingsMismatch, plain

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "cms_tasks_tiny_reference.json"


def small(**kw):
    return E.SequentialTasksConfig(**{**dict(dim=4, hidden=8, periods=(1, 4), n_tasks=2, steps_per_task=16,
                                             n_eval=64, eval_every=8, seeds=(0, 1)), **kw})


def test_tiny_preset_gives_the_reference_numbers():
    ref = json.loads(REFERENCE.read_text())
    cfg = E.preset_config("tiny", seeds=(0, 2))  # a subset of the reference's seeds, every arm
    for k, v in ref["config"].items():
        assert plain(getattr(cfg, k)) == v, k
    res = E.run(cfg)
    for arm, runs in E.by_arm(res).items():
        want = {r["seed"]: r for r in ref["arms"][arm]}
        for r in runs:
            assert r == want[r["seed"]], (arm, r["seed"])  # exact equality


def test_sequential_tasks_experiment_is_deterministic_and_well_formed():
    cfg = small()
    a, b = E.run_one("CMS, slower levels", cfg, seed=3), E.run_one("CMS, slower levels", cfg, seed=3)
    assert a == b
    assert len(a["loss_matrix"]) == 2 and all(len(r) == 2 for r in a["loss_matrix"])
    assert a["eval_steps"] == [8, 16, 24, 32] and len(a["curve"]) == 4
    assert a["curve"][1] == a["loss_matrix"][0] and a["curve"][3] == a["loss_matrix"][1]
    state = torch.random.get_rng_state()
    res = E.run(replace(cfg, arms=E.ALL_ARMS))
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is left alone
    s = E.summarize(res)
    for arm in E.ALL_ARMS:
        runs = E.by_arm(res)[arm]
        forg = [r["loss_matrix"][-1][0] - r["loss_matrix"][0][0] for r in runs]
        assert abs(s[arm]["forgetting_A"]["mean"] - sum(forg) / 2) < 1e-12
        assert s[arm]["forgetting_A"]["std"] == pytest.approx(abs(forg[0] - forg[1]) / 2 ** 0.5)
    assert "single MLP" in E.summary_table(res) and "±" in E.summary_table(res, markdown=False)
    assert len(res["verdict"]) == 2 * len(E.COMPARISONS)
    fig = render(E.draw_sequential_tasks, {"results": res})
    assert [ln.get_label() for ln in fig.axes[0].lines[:len(E.ALL_ARMS)]] == list(E.ALL_ARMS)


def test_experiment_arms_have_equal_hidden_units_and_the_right_clocks():
    cfg = E.SequentialTasksConfig(dim=4, hidden=8)
    mlp, _ = E.build_arm("single MLP", cfg)
    eq, opt_eq = E.build_arm("CMS, equal rates", cfg)
    slow, opt_slow = E.build_arm("CMS, slower levels", cfg)
    assert sum(p.numel() for p in mlp.parameters()) == sum(p.numel() for p in eq.parameters())
    assert opt_eq.periods == (1, 1, 1, 1) and opt_slow.periods == cfg.periods
    with pytest.raises(ValueError, match="arm must be one of"):
        E.build_arm("transformer", cfg)
    with pytest.raises(ValueError, match="optimizer"):
        E.SequentialTasksConfig(optimizer="lbfgs")
    with pytest.raises(ValueError, match="arm must be one of"):
        E.SequentialTasksConfig(arms=("transformer",))


def test_run_folder_resumes_and_refuses_other_settings(tmp_path, monkeypatch):
    cfg = small(arms=("single MLP", "CMS, equal rates"), seeds=(0,))
    first = E.run(cfg, tmp_path)
    assert read_json(tmp_path / "seeds" / "seed_0.json")["provenance"]["git_commit"] == first["provenance"]["git_commit"]
    calls = []
    real = E.run_one
    monkeypatch.setattr(E, "run_one", lambda arm, c, seed: calls.append(seed) or real(arm, c, seed))
    again = E.run(replace(cfg, seeds=(0, 1)), tmp_path)
    assert set(calls) == {1} and again["per_seed"][0]["arms"] == first["per_seed"][0]["arms"]
    with pytest.raises(SettingsMismatch, match="lr: saved 0.003, now 0.01"):
        E.run(replace(cfg, lr=0.01), tmp_path)


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as e:
        E.main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for opt in ("--preset", "--device", "--out", "--threads", "--seeds", "--overwrite", "--steps-per-task", "--arms"):
        assert opt in text


def test_cli_writes_results_and_refuses_a_changed_resume(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--preset", "tiny", "--out", str(out), "--seeds", "0", "--steps-per-task", "8", "--eval-every", "4",
            "--arms", "single MLP", "CMS, nested", "--no-progress"]
    assert E.main(args) == 0
    res = read_json(out / "results.json")
    assert res["config"]["steps_per_task"] == 8 and res["config"]["n_eval"] == 128 and res["preset"] == "tiny"
    assert res["config"]["arms"] == ["single MLP", "CMS, nested"]
    assert set(res["provenance"]) >= {"git_commit", "git_dirty", "command"}
    assert "CMS, nested" in capsys.readouterr().out
    assert E.main([*args, "--periods", "1", "8"]) == 2  # a refused resume
    err = capsys.readouterr().err
    assert "periods: saved [1, 4, 16, 64], now [1, 8]" in err and "--overwrite" in err
    with pytest.raises(SystemExit):
        E.main([*args, "--device", "cuda"])
    assert "runs on the CPU" in capsys.readouterr().err


def test_load_committed_and_the_verdict(tmp_path):
    with pytest.raises(FileNotFoundError, match="--preset laptop"):
        E.load_committed(root=tmp_path)
    folder = tmp_path / "cms_tasks_laptop"
    E.run(small(arms=E.ALL_ARMS, seeds=(0, 1, 2)), folder)
    res = read_json(folder / "results.json")
    # make the nested arm forget clearly less than the single MLP, and the chain no different
    for p in res["per_seed"]:
        ref = p["arms"]["single MLP"]["loss_matrix"]
        p["arms"]["CMS, nested"]["loss_matrix"] = [[ref[0][0], 1.0], [ref[0][0] + 0.1 * (1 + p["seed"]), 0.5]]
        p["arms"]["single MLP"]["loss_matrix"][-1][0] = ref[0][0] + 2.0 + 0.1 * p["seed"]
        p["arms"]["CMS, equal rates"]["loss_matrix"] = [[ref[0][0], 1.0],
                                                        [ref[0][0] + 2.0 + [0.5, -0.5, 0.1][p["seed"]], 0.5]]
    (folder / "results.json").write_text(json.dumps(res))
    res = E.load_committed(root=tmp_path)
    v = {(x["arm"], x["reference"], x["metric"]): x["outcome"] for x in E.verdict(res)}
    assert v[("CMS, nested", "single MLP", "forgetting_A")] == "lower"
    assert v[("CMS, equal rates", "single MLP", "forgetting_A")] == "no clear difference"
    text = E.verdict_text(res)
    assert "CMS, nested forgets task A less than single MLP" in text
    assert "-1.900 [" in text  # the mean paired difference, from the file


def test_a_rerun_refuses_a_crafted_checkpoint_and_a_busy_folder(tmp_path, monkeypatch,
                                                                 assert_rerun_refuses_crafted_and_busy):
    cfg = small(arms=("single MLP", "CMS, equal rates"), seeds=(0,))
    real = E.run_one

    def crash_on_cms(arm, c, seed):
        if arm == "CMS, equal rates":
            raise KeyboardInterrupt
        return real(arm, c, seed)

    monkeypatch.setattr(E, "run_one", crash_on_cms)
    with pytest.raises(KeyboardInterrupt):
        E.run(cfg, tmp_path / "r")
    monkeypatch.setattr(E, "run_one", real)
    assert_rerun_refuses_crafted_and_busy(lambda: E.run(cfg, tmp_path / "r"), tmp_path / "r")
