"""nlteach.longctx: task generators and checkers, accuracy metrics, one training step per model and
task, the resumable runner, results.json, the CLI and the figures."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure

from nlteach.cms import MultiFrequencyOptimizer
from nlteach.longctx import (
    IGNORE,
    LANGUAGES,
    LEARNED_BUDGET,
    MODELS,
    TASKS,
    accuracy,
    accuracy_by_answer,
    accuracy_counts,
    combine,
    config_periods,
    draw_accuracy,
    draw_cms_study,
    draw_grid,
    format_table,
    is_member,
    learned_command,
    length_bin,
    make_rng,
    make_task,
    preset_config,
    render_example,
    run,
    split_combined,
    token_names,
)
from nlteach.longctx import runner as runner_mod
from nlteach.longctx.__main__ import main, parse_model
from nlteach.longctx.runner import LongCtxConfig
from nlteach.memory import NonFiniteError
from nlteach.models import ModelConfig, cms_level_parameters, count_parameters
from nlteach.runs.io import CheckpointWarning, CorruptFileError, load_checkpoint, previous_path
from nlteach.runs.lock import FolderInUse
from nlteach.runs.rundir import SettingsMismatch
from nlteach.runs.seeds import save_seed_checkpoint

LENGTH = {"mqar": 32, "s-niah": 40, "mk-niah": 48, **{lang: 24 for lang in LANGUAGES}}


def _sample(name: str, seed: int = 0, batch: int = 16, length: int | None = None):
    task = make_task(name)
    return task, task.sample(batch, length or LENGTH[name], make_rng(seed, 7))


# ---------------------------------------------------------------------------------------------
# generators: valid, seeded, solvable


@pytest.mark.parametrize("name", TASKS)
def test_instances_are_valid(name):
    task, b = _sample(name)
    B, T = b.inputs.shape
    assert B == 16 and b.targets.shape == (B, T) and b.inputs.dtype == torch.long
    assert 0 <= int(b.inputs.min()) and int(b.inputs.max()) < task.vocab_size
    ans = b.targets[b.answer_mask]
    assert ans.numel() > 0 and 0 <= int(ans.min()) and int(ans.max()) < task.vocab_size
    # the checker finds the answer positions from the inputs alone, and they are the target positions
    assert torch.equal(task.answer_positions(b.inputs), b.answer_mask)
    # every answer is the next input token (teacher forcing), except a formal language's last one
    t = b.answer_mask.nonzero()
    nxt = b.inputs[t[:, 0], (t[:, 1] + 1).clamp(max=T - 1)]
    assert torch.equal(nxt, b.targets[b.answer_mask])


@pytest.mark.parametrize("name", TASKS)
def test_instances_are_seeded(name):
    _, a = _sample(name, seed=3)
    _, b = _sample(name, seed=3)
    _, c = _sample(name, seed=4)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.inputs, c.inputs)
    # an int seed works too and means make_rng(seed)
    task = make_task(name)
    assert torch.equal(task.sample(4, LENGTH[name], 5).inputs, task.sample(4, LENGTH[name], make_rng(5)).inputs)


@pytest.mark.parametrize("name", TASKS)
def test_checker_accepts_true_answers_and_rejects_wrong_ones(name):
    task, b = _sample(name, batch=32)
    assert task.check(b.inputs, b.targets).all()
    # corrupt one answer of the odd examples only: exactly those fail
    wrong = b.targets.clone()
    for i in range(1, 32, 2):
        j = b.answer_mask[i].nonzero()[0, 0]
        wrong[i, j] = (wrong[i, j] + 1) % task.vocab_size
    ok = task.check(b.inputs, wrong)
    assert ok[0::2].all() and not ok[1::2].any()
    # predictions at non-answer positions are not read
    noisy = b.targets.clone()
    noisy[~b.answer_mask] = 0
    assert task.check(b.inputs, noisy).all()


def test_checker_reads_inputs_not_targets():
    """Change the stored value of a key in the context: the checker's expected answer follows it."""
    task, b = _sample("mqar", batch=1, length=16)
    x = b.inputs.clone()
    old = x[0, 1].item()  # the value of the first pair
    new = task.value0 + (old - task.value0 + 1) % task.n_values
    x[0, 1] = new
    q = (x[0, 8::2] == x[0, 0]).nonzero()[0, 0].item() * 2 + 8  # where that key is queried
    assert task.expected(x)[0, q].item() == new
    assert not task.check(x, b.targets).all()


def test_mqar_layout():
    task, b = _sample("mqar", batch=8, length=32)
    N = 8
    for x in b.inputs:
        keys, vals = x[0:2 * N:2], x[1:2 * N:2]
        assert len(set(keys.tolist())) == N
        assert ((task.key0 <= keys) & (keys < task.value0)).all() and (vals >= task.value0).all()
        assert sorted(x[2 * N::2].tolist()) == sorted(keys.tolist())  # every key queried once
    with pytest.raises(ValueError, match="multiple of 4"):
        task.sample(2, 30, 0)
    with pytest.raises(ValueError, match="length=256"):
        make_task("mqar", n_keys=32).sample(2, 256, 0)


@pytest.mark.parametrize("name,needles", [("s-niah", 1), ("mk-niah", 4)])
def test_niah_layout(name, needles):
    task, b = _sample(name, batch=16, length=64)
    m = task.value_len
    for x in b.inputs:
        assert (x == task.NEEDLE).sum() == needles
        assert x[-m - 2] == task.QUERY
        starts = (x == task.NEEDLE).nonzero().flatten()
        keys = x[starts + 1]
        assert len(set(keys.tolist())) == needles and x[-m - 1] in keys.tolist()
    # depths vary: the single needle is not always in the same place
    if needles == 1:
        assert len({int((x == task.NEEDLE).nonzero()[0]) for x in b.inputs}) > 4
    with pytest.raises(ValueError, match="too short"):
        task.sample(1, task.min_length - 1, 0)


def test_is_member_by_hand():
    a, b, c = 0, 1, 2
    assert is_member("parity", [1, 0, 1]) and not is_member("parity", [1, 0, 0])
    assert is_member("aa", [a, a, a, a]) and not is_member("aa", [a, a, a])
    assert is_member("abab", [a, b, a, b]) and not is_member("abab", [a, b, a]) and not is_member("abab", [a, b, b, a])
    assert is_member("anbn", [a, a, b, b]) and not is_member("anbn", [a, b, a, b]) and not is_member("anbn", [a, a, a, b])
    assert is_member("anbncn", [a, b, c]) and not is_member("anbncn", [a, a, b, c, c, b])
    o1, c1, o2, c2 = 0, 1, 2, 3
    assert is_member("shuffle2", [o1, o2, c1, c2])  # interleaved: fine in Shuffle-2 (not in Dyck-2)
    assert not is_member("shuffle2", [o1, c2, o2, c1])  # ']' before any '['
    assert not is_member("shuffle2", [o1, o1, c1])
    with pytest.raises(ValueError, match="unknown language"):
        is_member("dyck", [0])


@pytest.mark.parametrize("lang", LANGUAGES)
def test_formal_languages_balanced_and_length_matched(lang):
    task = make_task(lang)
    b = task.sample(256, 32, make_rng(1))
    labels = b.targets[b.answer_mask]
    n_pos = int((labels == task.ACCEPT).sum())
    assert 90 < n_pos < 166  # about half members
    lo, hi = length_bin(32)
    lengths = b.answer_mask.int().argmax(1)  # the QUERY position = the string length
    assert ((lengths >= lo) & (lengths <= hi)).all()
    pos_len = set(lengths[labels == task.ACCEPT].tolist())
    neg_len = set(lengths[labels == task.REJECT].tolist())
    if lang == "aa":  # the language is a statement about length
        assert all(n % 2 == 0 for n in pos_len) and all(n % 2 for n in neg_len)
    else:  # negatives are near misses of the same lengths as the members
        assert neg_len <= pos_len | set(task.lengths(32, True))
    # labels agree with the membership function
    for x, y, n in zip(b.inputs, labels, lengths, strict=True):
        s = (x[:n] - task.SYMBOL0).tolist()
        assert is_member(lang, s) == (int(y) == task.ACCEPT)


def test_make_task_errors():
    with pytest.raises(ValueError, match="unknown task"):
        make_task("copy")
    with pytest.raises(ValueError, match="no options"):
        make_task("parity", n_keys=3)
    with pytest.raises(ValueError, match="batch_size"):
        make_task("mqar").sample(0, 16, 0)
    with pytest.raises(TypeError, match="rng"):
        make_task("mqar").sample(2, 16, "seed")


# ---------------------------------------------------------------------------------------------
# accuracy metrics on hand-made predictions


def test_accuracy_on_hand_made_predictions():
    I = IGNORE  # noqa: E741
    targets = torch.tensor([[I, 5, I, 6], [I, 7, I, 8], [I, I, I, I]])
    preds = torch.tensor([[0, 5, 0, 6], [0, 7, 0, 0], [1, 2, 3, 4]])
    assert accuracy_counts(preds, targets, "answer") == (3, 4)
    assert accuracy(preds, targets, "answer") == pytest.approx(0.75)
    assert accuracy_counts(preds, targets, "example") == (1, 2)  # the example without answers is skipped
    assert accuracy(preds, targets, "example") == pytest.approx(0.5)
    assert accuracy(preds, torch.full_like(targets, I)) != accuracy(preds, torch.full_like(targets, I))  # nan
    with pytest.raises(ValueError, match="unit"):
        accuracy(preds, targets, "token")
    with pytest.raises(ValueError, match="shape"):
        accuracy(preds[:, :2], targets)


# ---------------------------------------------------------------------------------------------
# every model trains one step on every task at the tiny preset


@pytest.mark.parametrize("model", MODELS)
def test_each_model_trains_one_step_on_each_task(model):
    for name in TASKS:
        cfg = preset_config(name, model, "tiny", seeds=(0,))
        net = runner_mod.build(cfg, 0)
        opt = runner_mod.build_optimizer(cfg, net)
        b = runner_mod.train_batch(cfg, cfg.make_task(), 0, 1)
        before = [p.detach().clone() for p in net.parameters()]
        logits = net(b.inputs)
        assert logits.shape == (*b.inputs.shape, cfg.make_task().vocab_size)
        loss = runner_mod.answer_loss(logits, b.targets)
        assert torch.isfinite(loss), (model, name)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert any(not torch.equal(a, p) for a, p in zip(before, net.parameters(), strict=True)), (model, name)


def test_same_seed_same_initial_weights_and_data():
    cfg = preset_config("mqar", "transformer", "tiny", seeds=(0,))
    a, b, c = runner_mod.build(cfg, 1), runner_mod.build(cfg, 1), runner_mod.build(cfg, 2)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters(), strict=True))
    task = cfg.make_task()
    assert torch.equal(runner_mod.train_batch(cfg, task, 0, 3).inputs, runner_mod.train_batch(cfg, task, 0, 3).inputs)


def test_the_presets_train_notebook_09s_hope():
    # the CMS levels learn in context (periods in tokens); the outer optimizer steps every parameter at
    # every step unless multi-frequency training is asked for, as in notebook 09
    for preset in ("laptop", "full"):
        for model in runner_mod.CMS_MODELS:
            cfg = preset_config("s-niah", model, preset)
            assert not cfg.multi_frequency and cfg.cms_step_periods is None
            assert cfg.arch.cms_periods == ModelConfig().cms_periods  # the model's default, not pinned here
            assert cfg.variant == f"{model}_cms{'-'.join(map(str, ModelConfig().cms_periods))}"
            if preset == "laptop":
                net = runner_mod.build(cfg, 0)
                assert not isinstance(runner_mod.build_optimizer(cfg, net), MultiFrequencyOptimizer)
    assert runner_mod.default_arch().cms_periods == ModelConfig().cms_periods
    assert LongCtxConfig().multi_frequency is False
    for task in TASKS:  # tiny: every level updates in context within the shortest training sequence
        cfg = preset_config(task, "hope", "tiny")
        assert max(cfg.arch.cms_periods) <= min(cfg.train_lengths) // 2, (task, cfg.arch.cms_periods)
    # the outer clock is a setting of its own, in optimizer steps, recorded in the config and the name
    mf = preset_config("s-niah", "hope", "laptop", multi_frequency=True)
    assert mf.cms_step_periods == (1, 4, 16) and mf.arch.cms_periods == ModelConfig().cms_periods
    assert mf.variant.endswith("_steps1-4-16") and mf.to_dict()["cms_step_periods"] == [1, 4, 16]
    assert preset_config("s-niah", "hope", "laptop", multi_frequency=True, cms_step_periods=(1, 2, 8)).variant \
        .endswith("_steps1-2-8")
    with pytest.raises(ValueError, match="needs multi_frequency"):
        preset_config("s-niah", "hope", "laptop", cms_step_periods=(1, 4, 16))
    with pytest.raises(ValueError, match="one per CMS level"):
        preset_config("s-niah", "hope", "laptop", multi_frequency=True, cms_step_periods=(1, 4))
    assert preset_config("s-niah", "titans", "laptop", multi_frequency=True).variant == "titans"  # no CMS


def test_multi_frequency_cms_levels_step_on_their_clock():
    cfg = preset_config("parity", "hope-attention", "tiny", seeds=(0,), multi_frequency=True, cms_step_periods=(1, 3))
    assert cfg.arch.cms_periods == (2, 4)  # the in-context periods (tokens) are another clock
    net = runner_mod.build(cfg, 0)
    opt = runner_mod.build_optimizer(cfg, net)
    assert isinstance(opt, MultiFrequencyOptimizer)
    slow = cms_level_parameters(net)[1]
    task = cfg.make_task()
    history = [[p.detach().clone() for p in slow]]
    for s in range(1, 4):
        b = runner_mod.train_batch(cfg, task, 0, s)
        opt.zero_grad()
        runner_mod.answer_loss(net(b.inputs), b.targets).backward()
        opt.step()
        history.append([p.detach().clone() for p in slow])
    same = [all(torch.equal(p, q) for p, q in zip(history[i], history[i + 1], strict=True)) for i in range(3)]
    assert same == [True, True, False]  # the period-3 level moves at step 3 only


# ---------------------------------------------------------------------------------------------
# the runner: results.json, resume, configuration checks


def _tiny(task="parity", model="transformer", **kw):
    return preset_config(task, model, "tiny", seeds=(0, 1), **kw)


def _check_schema(res, cfg):
    assert res["config"]["task"] == cfg.task and res["config"]["model"] == cfg.model
    assert [p["seed"] for p in res["per_seed"]] == list(cfg.seeds)
    for p in res["per_seed"]:
        assert isinstance(p["seed"], int)
        assert set(p["accuracy"]) == {str(L) for L in cfg.eval_lengths}
        assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in p["accuracy"].values())
    s = res["summary"]["accuracy"]
    assert set(s) == {str(L) for L in cfg.eval_lengths}
    assert res["summary"]["train_max_length"] == max(cfg.train_lengths)


def test_run_writes_results_and_resumes_identically(tmp_path):
    cfg = _tiny("parity", "hope-attention", steps=6, ckpt_every=2, multi_frequency=True)  # multi-frequency state too
    full = run(cfg, tmp_path / "a", figures=False)
    _check_schema(full, cfg)
    on_disk = json.loads((tmp_path / "a" / "results.json").read_text())
    assert on_disk["per_seed"] == full["per_seed"]
    with pytest.raises(runner_mod._Interrupted):
        run(cfg, tmp_path / "b", figures=False, _stop_after_step=3)  # seed 0 stops after its step-4 checkpoint
    assert (tmp_path / "b" / "seeds" / "seed_0.pt").exists()
    resumed = run(cfg, tmp_path / "b", figures=True)
    assert resumed["per_seed"] == full["per_seed"]
    timing = ("seconds", "eval_seconds", "cpu_seconds", "provenance")
    strip = [{k: v for k, v in d.items() if k not in timing} for d in full["details"]]
    assert [{k: v for k, v in d.items() if k not in timing} for d in resumed["details"]] == strip
    assert resumed["provenance"]["git_commit"] == full["provenance"]["git_commit"]
    assert (tmp_path / "b" / "accuracy.png").stat().st_size > 1000
    assert not list((tmp_path / "b" / "seeds").glob("*.pt"))  # checkpoints removed once a seed is done
    # each seed keeps the provenance it was trained with; reading it back does not re-stamp it
    seed_file = tmp_path / "b" / "seeds" / "seed_0.json"
    rec = json.loads(seed_file.read_text())
    assert {"git_commit", "git_dirty", "command"} <= set(rec["provenance"]) and rec["cpu_seconds"] > 0
    seed_file.write_text(json.dumps({**rec, "provenance": {**rec["provenance"], "git_commit": "trained-elsewhere"}}))
    again = run(cfg, tmp_path / "b", figures=False)
    assert again["details"][0]["provenance"]["git_commit"] == "trained-elsewhere"
    assert again["provenance"]["git_commit"] != "trained-elsewhere"  # the file's own: the code that wrote it


def test_run_refuses_other_settings_in_the_same_folder(tmp_path):
    run(_tiny(steps=2), tmp_path, figures=False)
    with pytest.raises(SettingsMismatch, match="other settings") as e:
        run(_tiny(steps=3, n_layers=2), tmp_path, figures=False)
    assert "steps: saved 2, now 3" in str(e.value) and "arch.n_layers: saved 1, now 2" in str(e.value)
    assert "lr" not in str(e.value)  # only what differs is named
    # a checkpoint written with other settings is refused the same way
    with pytest.raises(SettingsMismatch, match="arch.dim: saved 16, now 8"):
        save_seed_checkpoint(tmp_path / "x.pt", _tiny(steps=2).settings(), {"step": 1},
                             version=runner_mod.CHECKPOINT_VERSION)
        runner_mod.run_seed(_tiny(steps=2, dim=8), 0, checkpoint=tmp_path / "x.pt")
    # overwrite=True starts over
    assert run(_tiny(steps=3), tmp_path, figures=False, overwrite=True)["config"]["steps"] == 3
    # more seeds with the same settings is fine: finished seeds are reused
    res = run(preset_config("parity", "transformer", "tiny", seeds=(0, 1, 2), steps=3), tmp_path, figures=False)
    assert [p["seed"] for p in res["per_seed"]] == [0, 1, 2]


def test_config_validation():
    with pytest.raises(ValueError, match="task"):
        preset_config("nope", "transformer", "tiny")
    with pytest.raises(ValueError, match="model"):
        preset_config("mqar", "gpt", "tiny")
    with pytest.raises(ValueError, match="length 30"):
        preset_config("mqar", "transformer", "tiny", eval_lengths=(16, 30))
    with pytest.raises(ValueError, match="unknown setting"):
        preset_config("mqar", "transformer", "tiny", widht=3)
    with pytest.raises(ValueError, match="distinct"):
        preset_config("mqar", "transformer", "tiny", seeds=(1, 1))
    with pytest.raises(ValueError, match="exactly one of params"):
        LongCtxConfig(params=1000)  # a budget sizes dim: both set is ambiguous
    assert preset_config("mqar", "transformer", "tiny", params=20_000).arch.dim is None
    assert preset_config("mqar", "transformer", "laptop", dim=32).params is None
    for preset in ("tiny", "laptop", "full"):
        for task in TASKS:
            preset_config(task, "hope", preset)  # every preset is a valid configuration
    with pytest.raises(ValueError, match="match_mlp chooses arch.mlp_hidden"):
        preset_config("mqar", "transformer", "laptop", mlp_hidden=64, match_mlp=True)
    with pytest.raises(ValueError, match="match_mlp must be a bool"):
        preset_config("mqar", "transformer", "laptop", match_mlp=1)
    # a width or an MLP width given by hand leaves nothing to match
    assert not preset_config("mqar", "transformer", "laptop", dim=32).match_mlp
    assert not preset_config("mqar", "transformer", "laptop", mlp_hidden=64).match_mlp


def test_the_laptop_preset_matches_parameters_within_one_percent():
    """Widths in steps of 2 heads alone leave the models up to ~10% apart; match_mlp closes the gap."""
    for task in ("mqar", "parity"):
        counts = [count_parameters(runner_mod.build(preset_config(task, m, "laptop"), 0)) for m in MODELS]
        assert max(counts) / min(counts) - 1 < 0.01 and abs(counts[0] - 60_000) < 600, (task, counts)
        plain = [count_parameters(runner_mod.build(preset_config(task, m, "laptop", match_mlp=False), 0))
                 for m in MODELS]
        assert max(plain) / min(plain) - 1 > 0.03  # without it the gap is real (so the test can fail)


def test_config_round_trips_and_reads_the_flat_layout_of_older_files():
    cfg = preset_config("mqar", "hope", "laptop", seeds=(0, 1), cms_periods=(1, 4))
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["arch"]["cms_periods"] == [1, 4] and d["arch"]["dim"] is None and "cms_periods" not in d
    assert LongCtxConfig.from_dict(d) == cfg
    flat = {k: v for k, v in d.items() if k != "arch"} | {"dim": 64, "n_layers": 2, "n_heads": 2, "chunk_size": 16,
                                                          "proj_chunk_size": 16, "cms_periods": [1, 4]}
    assert LongCtxConfig.from_dict(flat) == cfg  # dim was recorded but unused when params was set
    assert config_periods(d) == config_periods(flat) == (1, 4) and config_periods({"task": "x"}) == ()
    # files of the flat layout predate the in-context CMS: multi-frequency (the default then) on the
    # levels' periods, which counted optimizer steps; their runs are named for the static CMS
    legacy = {k: v for k, v in flat.items() if k not in ("multi_frequency", "cms_step_periods")}
    assert LongCtxConfig.from_dict(legacy).cms_step_periods == (1, 4)
    assert LongCtxConfig.from_dict(legacy).multi_frequency is True
    assert runner_mod.static_cms_results(legacy) and not runner_mod.static_cms_results(d)
    assert not runner_mod.static_cms_results({**legacy, "model": "titans"})
    assert runner_mod.run_label("hope_cms1-4", {"config": legacy}) == "hope-static-cms_steps1-4"
    assert runner_mod.run_label("x", {"config": {**legacy, "multi_frequency": False}}) == "hope-static-cms_levels2"
    assert runner_mod.run_label("hope_cms1-4", {"config": d}) == "hope_cms1-4"  # a run of today's model


def test_combine_and_split_round_trip():
    r1 = run(_tiny(steps=1), None)
    r2 = run(_tiny(model="titans", steps=1), None)
    both = combine({"transformer": r1, "titans": r2})
    assert {p["model"] for p in both["per_seed"]} == {"transformer", "titans"}
    assert all(0 <= v <= 1 for p in both["per_seed"] for v in p["accuracy"].values())
    back = split_combined(both)
    assert back["titans"]["per_seed"] == r2["per_seed"] and back["transformer"]["summary"] == r1["summary"]
    table = format_table(back)
    assert "titans" in table and "24*" in table
    with pytest.raises(ValueError, match="one task"):
        combine({"a": r1, "b": run(_tiny(task="aa", steps=1), None)})


def test_draw_accuracy_on_hand_made_results():
    def res(accs):
        return {"config": {"task": "mqar", "preset": "laptop"},
                "per_seed": [{"seed": s, "accuracy": {"16": a, "64": b}} for s, (a, b) in enumerate(accs)],
                "summary": {"train_max_length": 16, "chance": 0.0625}}

    fig = Figure()
    ax = draw_accuracy(fig, {"a": res([(1.0, 0.5), (0.8, 0.3)]), "b": res([(0.2, 0.1)])})
    line = ax.get_lines()[0]
    assert list(line.get_xdata()) == [16, 64]
    assert line.get_ydata()[0] == pytest.approx(0.9) and line.get_ydata()[1] == pytest.approx(0.4)
    assert "2 seeds" in ax.get_legend().get_texts()[0].get_text()
    fig = Figure()
    draw_grid(fig, {"x": {"a": res([(1.0, 0.5)])}, "y": {"a": res([(0.5, 0.5)])}}, ncols=3)
    assert sum(ax.get_visible() for ax in fig.axes) == 2
    with pytest.raises(ValueError, match="empty"):
        draw_accuracy(Figure(), {})


# ---------------------------------------------------------------------------------------------
# command line


def test_cli_help_and_errors(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "--task" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--task", "mqar", "--model", "transformer@1,4", "--out", "x"])
    assert "has no CMS" in capsys.readouterr().err
    assert parse_model("hope@1,4,16") == ("hope", (1, 4, 16)) and parse_model("titans") == ("titans", None)
    with pytest.raises(SystemExit):
        main(["--task", "mqar", "--model", "hope", "--cms-step-periods", "1", "4", "16", "--out", "x"])
    assert "needs --cms-multi-frequency" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--task", "parity", "--budget", "learned", "--out", "x"])
    assert "retrieval tasks" in capsys.readouterr().err


def test_cli_trains_the_learned_budget(tmp_path, capsys):
    args = ["--task", "mqar", "--model", "transformer", "--preset", "tiny", "--budget", "learned", "--seeds", "0",
            "--out", str(tmp_path), "--no-progress", "--steps", "2", "--curriculum", "1"]
    assert main(args) == 0
    d = json.loads((tmp_path / "results.json").read_text())
    assert d["config"]["budget"] == "learned" and d["config"]["curriculum"] == 1
    assert [int(L) for L in d["per_seed"][0]["accuracy"]] == list(preset_config("mqar", preset="tiny", budget="learned").eval_lengths)
    assert "chance" in capsys.readouterr().out


def test_cli_runs_several_models_and_resumes(tmp_path, capsys):
    args = ["--task", "aa", "--model", "transformer", "hope-attention@1,2", "--preset", "tiny", "--seeds", "0",
            "--out", str(tmp_path), "--no-progress", "--steps", "2"]
    assert main(args) == 0
    combined = json.loads((tmp_path / "results.json").read_text())
    assert combined["provenance"]["command"].startswith("python -m nlteach.longctx --task aa")
    assert {p["model"] for p in combined["per_seed"]} == {"transformer", "hope-attention_cms1-2"}
    single = json.loads((tmp_path / "transformer" / "results.json").read_text())
    assert single["per_seed"][0]["seed"] == 0 and "accuracy" in single["per_seed"][0]
    assert (tmp_path / "accuracy.png").exists()
    assert main(args) == 0  # everything is finished: read back, same numbers
    assert json.loads((tmp_path / "results.json").read_text())["per_seed"] == combined["per_seed"]
    assert "hope-attention_cms1-2" in capsys.readouterr().out
    # the outer multi-frequency training, asked for by name (models without a CMS ignore it)
    mf = ["--task", "aa", "--model", "transformer", "hope-attention@2,4", "--preset", "tiny", "--seeds", "0",
          "--out", str(tmp_path / "mf"), "--no-progress", "--steps", "2", "--cms-multi-frequency",
          "--cms-step-periods", "1", "2"]
    assert main(mf) == 0
    variants = json.loads((tmp_path / "mf" / "results.json").read_text())["config"]["variants"]
    assert set(variants) == {"transformer", "hope-attention_cms2-4_steps1-2"}
    assert variants["hope-attention_cms2-4_steps1-2"]["multi_frequency"] is True
    assert variants["transformer"]["multi_frequency"] is False and variants["transformer"]["cms_step_periods"] is None


def test_cli_refuses_to_resume_with_other_settings(tmp_path, capsys):
    args = ["--task", "parity", "--preset", "tiny", "--seeds", "0", "--out", str(tmp_path), "--no-progress",
            "--steps", "2"]
    assert main(args) == 0
    capsys.readouterr()
    assert main([*args, "--lr", "0.01", "--chunk-size", "4"]) == 2
    err = capsys.readouterr().err
    assert "lr: saved 0.003, now 0.01" in err and "arch.chunk_size: saved 8, now 4" in err and "--overwrite" in err
    assert main([*args, "--lr", "0.01", "--overwrite"]) == 0
    assert json.loads((tmp_path / "results.json").read_text())["config"]["lr"] == 0.01
    with pytest.raises(SystemExit):  # the common options are there, and checked
        main([*args, "--preset", "huge"])


def _hand(accs_by_len, periods=(1,), multi=True, train_max=32, chance=0.01):
    seeds = len(next(iter(accs_by_len.values())))
    per_seed = [{"seed": s, "accuracy": {str(L): a[s] for L, a in accs_by_len.items()}} for s in range(seeds)]
    cfg = preset_config("s-niah", "hope-attention", "tiny", seeds=tuple(range(seeds)), cms_periods=periods,
                        multi_frequency=multi, eval_lengths=tuple(accs_by_len), train_lengths=(24,))
    res = {"config": cfg.to_dict(), "per_seed": per_seed, "summary": runner_mod.summarize(cfg, per_seed)}
    res["summary"]["train_max_length"], res["summary"]["chance"] = train_max, chance
    return res


def test_verdict_on_hand_made_results():
    a = _hand({32: [1.0, 0.98, 1.0], 128: [0.5, 0.52, 0.48]})
    b = _hand({32: [0.6, 0.62, 0.58], 128: [0.02, 0.01, 0.0]})
    c = _hand({32: [0.99, 0.95, 1.0], 128: [0.3, 0.7, 0.5]})
    text = runner_mod.verdict({"a": a, "b": b, "c": c})
    lines = text.splitlines()
    assert lines[0].startswith("at the longest training length (32): best a 0.993")
    # the one rule: the 95% interval of the seed-paired difference
    assert any(ln.strip().startswith("b:") and "behind" in ln for ln in lines[:4])
    assert any(ln.strip().startswith("c:") and "no clear difference" in ln for ln in lines[:4])
    assert "  b: 0.600 -> 0.010 (not above chance; solved at the training length on 0/3 seeds)" in lines
    assert "  a: 0.993 -> 0.500 (above chance; solved at the training length on 3/3 seeds)" in lines
    d = _hand({32: [0.3, 0.3, 0.31], 128: [0.3, 0.3, 0.3]})
    assert "  d: 0.303 -> 0.300 (above chance; solved at the training length on 0/3 seeds)" in \
        runner_mod.verdict({"a": a, "d": d}).splitlines()
    e = _hand({32: [0.0, 0.02, 0.0], 128: [0.0, 0.0, 0.01]})
    assert runner_mod.verdict({"a": a, "e": e}).endswith("(not learned even at the training length)")
    with pytest.raises(ValueError, match="empty"):
        runner_mod.verdict({})


def test_chance_comes_from_the_task_definition():
    assert make_task("mqar", n_keys=8, n_values=5).chance == pytest.approx(1 / 5)
    assert make_task("s-niah", value_len=3).chance == pytest.approx(1e-3)
    assert make_task("mk-niah", n_needles=4).distractor_chance == pytest.approx(0.25)
    assert all(make_task(lang).chance == 0.5 for lang in LANGUAGES)
    # a uniform guess scores chance: checked against the checker on generated examples
    task = make_task("mqar", n_keys=16, n_values=4)
    b = task.sample(512, 32, make_rng(0))
    guess = torch.randint(task.value0, task.value0 + task.n_values, b.inputs.shape, generator=torch.Generator().manual_seed(0))
    right, total = accuracy_counts(guess, b.targets, task.unit)
    assert abs(right / total - task.chance) < 0.03
    assert runner_mod.task_chance({"task": "mqar", "task_options": {"n_keys": 8, "n_values": 5}}) == pytest.approx(0.2)
    assert runner_mod.task_chance({"task": "s-niah"}) == pytest.approx(0.01)  # files without task options


def test_seeds_that_disagree_are_listed():
    assert runner_mod.seeds_cell([0.9, 0.92, 0.91]) == "0.91 ± 0.01"
    cell = runner_mod.seeds_cell([0.98, 0.27, 0.61])
    assert cell.endswith("(seeds: 0.98, 0.27, 0.61)"), cell
    hand = {"a": _hand({32: [1.0, 0.2, 1.0], 128: [0.1, 0.1, 0.1]})}
    table = format_table(hand)
    assert "(seeds: 1.000, 0.200, 1.000)" in table and "chance" in table.splitlines()[0] and "0.01" in table


def test_the_learned_budget_is_a_named_row():
    for task in LEARNED_BUDGET:
        cfg = preset_config(task, "transformer", "laptop", budget="learned")
        assert cfg.budget == "learned"
        row = LEARNED_BUDGET[task]
        for k, v in row.items():  # model settings (MK-NIAH's depth and heads) live in cfg.arch
            assert getattr(cfg.arch if k in runner_mod.ARCH_FIELDS else cfg, k) == (tuple(v) if isinstance(v, list) else v), k
        for m in MODELS:  # every model at the same parameter budget
            c = preset_config(task, m, "laptop", budget="learned")
            assert count_parameters(runner_mod.build(c, 0)) == pytest.approx(60_000, rel=0.01), (task, m)
        assert max(cfg.eval_lengths) == 8 * max(cfg.train_lengths)  # tested up to 8x the training length
        tiny = preset_config(task, "hope", "tiny", budget="learned")
        assert max(tiny.eval_lengths) == 8 * max(tiny.train_lengths) and tiny.steps == preset_config(task, preset="tiny").steps
        assert learned_command(task).endswith(f"--budget learned --seeds 0 1 2 3 4 --out results/longctx_{task}_learned")
    assert preset_config("mqar", preset="laptop").budget == "preset"
    with pytest.raises(ValueError, match="retrieval tasks"):
        preset_config("parity", budget="learned")
    with pytest.raises(ValueError, match="budget must be one of"):
        preset_config("mqar", budget="long")
    with pytest.raises(ValueError, match="preset='full'"):
        preset_config("mqar", preset="full", budget="learned")
    with pytest.raises(ValueError, match="curriculum must be"):
        preset_config("mqar", preset="tiny", curriculum=10_000)


def test_the_length_curriculum_trains_short_lengths_first():
    cfg = preset_config("mqar", preset="tiny", steps=12, train_lengths=(16, 8), curriculum=6, eval_lengths=(16,))
    assert [runner_mod.train_length(cfg, s) for s in range(1, 13)] == [8, 8, 8, 16, 16, 16, 16, 8, 16, 8, 16, 8]
    plain = replace(cfg, curriculum=0)
    assert [runner_mod.train_length(plain, s) for s in range(1, 5)] == [16, 8, 16, 8]


def test_the_needle_curriculum_adds_needles():
    cfg = preset_config("mk-niah", preset="tiny", steps=8, curriculum=4, curriculum_needles=(1, 2),
                        task_options={"n_keys": 4})
    task = cfg.make_task()
    counts = [runner_mod.train_task(cfg, task, s).n_needles for s in range(1, 9)]
    assert counts == [1, 1, 2, 2, 4, 4, 4, 4]
    b = runner_mod.train_batch(cfg, task, 0, 1)
    assert int((b.inputs == task.NEEDLE).sum(1).max()) == 1 and task.check(b.inputs, b.targets).all()
    assert runner_mod.train_task(cfg, task, 5) is task
    assert LongCtxConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="needs curriculum > 0"):
        preset_config("mk-niah", preset="tiny", curriculum_needles=(1, 2))
    with pytest.raises(ValueError, match="needle tasks"):
        preset_config("mqar", preset="tiny", curriculum=2, curriculum_needles=(1, 2))
    with pytest.raises(ValueError, match="99 needles"):
        preset_config("mk-niah", preset="tiny", curriculum=2, curriculum_needles=(99,))


def test_several_queries_per_needle_example():
    """``n_queries`` asks distinct needles in turn at the end; the checker (from the inputs alone)
    agrees with the generator on every answer; one query draws exactly the examples it drew before."""
    task = make_task("mk-niah", n_keys=4, n_queries=3)
    b = task.sample(16, 40, 0)
    m, w = task.value_len, 2 + task.value_len
    assert task.check(b.inputs, b.targets).all()
    assert (task.answer_positions(b.inputs) == b.answer_mask).all() and int(b.answer_mask.sum(1).max()) == 3 * m
    for x in b.inputs.tolist():
        asked = [x[40 - (3 - j) * w + 1] for j in range(3)]  # the keys of the three queries
        assert [x[40 - (3 - j) * w] for j in range(3)] == [task.QUERY] * 3 and len(set(asked)) == 3
    wrong = b.targets.clone()
    wrong[:, -2] = (wrong[:, -2] - task.digit0 + 1) % 10 + task.digit0  # the last query's last digit (predicted
    # one position before it appears)
    assert not task.check(b.inputs, wrong).any()
    assert task.min_length == 7 * w and task.chance == pytest.approx(0.1 ** 6)
    assert task.distractor_chance == pytest.approx(0.25 ** 3)
    one = make_task("mk-niah", n_keys=4)
    assert one.n_queries == 1 and torch.equal(one.sample(4, 32, 7).inputs, make_task("mk-niah", n_keys=4, n_queries=1)
                                              .sample(4, 32, 7).inputs)
    with pytest.raises(ValueError, match="at most n_needles=4"):
        make_task("mk-niah", n_queries=5)
    with pytest.raises(ValueError, match="too short"):
        task.sample(1, 7 * w - 1, 0)


def test_train_queries_ask_several_needles_in_training_only():
    cfg = preset_config("mk-niah", preset="tiny", steps=8, curriculum=4, curriculum_needles=(1, 2),
                        train_queries=3, train_lengths=(32,), eval_lengths=(32,), task_options={"n_keys": 4})
    task = cfg.make_task()
    assert task.n_queries == 1  # evaluation: the task's own single query
    assert [runner_mod.train_task(cfg, task, s).n_queries for s in range(1, 9)] == [1, 1, 2, 2, 3, 3, 3, 3]
    b = runner_mod.train_batch(cfg, task, 0, 6)
    assert int(b.answer_mask.sum(1).max()) == 3 * task.value_len
    assert LongCtxConfig.from_dict(cfg.to_dict()) == cfg and cfg.settings()["train_queries"] == 3
    assert "train_queries" not in replace(cfg, train_queries=None).settings()  # older run folders still resume
    with pytest.raises(ValueError, match="needle tasks"):
        preset_config("mqar", preset="tiny", train_queries=2)
    with pytest.raises(ValueError, match="positive int"):
        preset_config("mk-niah", preset="tiny", train_queries=0)
    with pytest.raises(ValueError, match="train_queries=4: 4 needles"):
        preset_config("mk-niah", preset="tiny", train_queries=4, train_lengths=(20,), eval_lengths=(20,))


def test_draw_cms_study_picks_the_two_series():
    runs = {str(p): _hand({32: [0.5, 0.7], 64: [0.1, 0.3]}, periods=p)
            for p in [(1,), (1, 4), (1, 4, 16), (1, 4, 64), (1, 4, 256)]}
    runs["same"] = _hand({32: [0.0, 0.0], 64: [0.0, 0.0]}, periods=(1, 4, 16), multi=False)  # left out
    fig = Figure()
    draw_cms_study(fig, runs)
    left, right = fig.axes[0], fig.axes[1]
    assert list(left.get_lines()[0].get_xdata()) == [1, 2, 3]
    assert list(right.get_lines()[0].get_xdata()) == [16, 64, 256]
    assert left.get_lines()[0].get_ydata()[0] == pytest.approx(0.6)
    with pytest.raises(ValueError, match="no runs match"):
        draw_cms_study(Figure(), {"x": _hand({32: [0.5]}, periods=(2, 3))})
    # in-context periods (tokens), trained at one frequency: the first run's schedule is used
    tokens = {str(p): _hand({32: [0.5, 0.7]}, periods=p, multi=False) for p in [(16,), (16, 64), (16, 64, 256)]}
    tokens["mf"] = _hand({32: [0.0, 0.0]}, periods=(16, 64), multi=True)  # left out
    fig = Figure()
    draw_cms_study(fig, tokens, levels=(16, 64, 256), lowest_prefix=(16,))
    assert list(fig.axes[0].get_lines()[0].get_xdata()) == [1, 2, 3]
    assert list(fig.axes[1].get_lines()[0].get_xdata()) == [64]


@pytest.mark.parametrize("name", TASKS)
def test_render_example_names_every_token(name):
    task, b = _sample(name, batch=2)
    names = token_names(task)
    assert set(range(task.vocab_size)) <= set(names)
    text = render_example(task, b, 1)
    assert "[->" in text
    assert "..." in render_example(task, b, 0, max_tokens=8)


def test_a_rerun_verifies_its_checkpoint_refuses_crafted_ones_and_busy_folders(tmp_path, crafted_checkpoint,
                                                                               hold_folder_lock):
    """Stopped after its step-4 checkpoint (the step-2 one kept as the previous): one flipped byte in
    the newest is detected and named, the previous one resumes to the uninterrupted result; a crafted
    pickle is refused without running code; a folder another process holds is refused."""
    cfg = preset_config("parity", "transformer", "tiny", seeds=(0,), steps=6, ckpt_every=2)
    full = run(cfg, tmp_path / "a", figures=False)
    with pytest.raises(runner_mod._Interrupted):
        run(cfg, tmp_path / "b", figures=False, _stop_after_step=3)
    ckpt = tmp_path / "b" / "seeds" / "seed_0.pt"
    assert load_checkpoint(ckpt)["step"] == 4 and load_checkpoint(previous_path(ckpt))["step"] == 2
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 0x01
    ckpt.write_bytes(bytes(data))
    with pytest.warns(CheckpointWarning, match=f"the checkpoint {ckpt} fails its checksum"):
        assert run(cfg, tmp_path / "b", figures=False)["per_seed"] == full["per_seed"]
    with pytest.raises(runner_mod._Interrupted):
        run(cfg, tmp_path / "c", figures=False, _stop_after_step=1)
    marker = crafted_checkpoint(tmp_path / "c" / "seeds" / "seed_0.pt")
    with pytest.raises(CorruptFileError, match="seed_0.pt cannot be read"):
        run(cfg, tmp_path / "c", figures=False)
    assert not marker.exists()
    hold_folder_lock(tmp_path / "a")
    with pytest.raises(FolderInUse, match=f"{tmp_path / 'a'} is in use"):
        run(cfg, tmp_path / "a", figures=False)


# ---------------------------------------------------------------------------------------------
# notebook 11: numbers generated, never typed (issue 19 item 5)

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "11_long_context.py"
PAPER_FIGURES = ("760M-1.3B",)  # the paper's model sizes: named, not measured by us


def _markdown_cells(path: Path) -> list[str]:
    cells, current = [], None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# %%"):
            current = [] if "[markdown]" in line else None
            if current is not None:
                cells.append(current)
        elif current is not None:
            current.append(line.removeprefix("#").removeprefix(" "))
    return ["\n".join(c) for c in cells]


def test_notebook_11_types_no_measured_number():
    cells = _markdown_cells(NOTEBOOK)
    assert len(cells) > 10
    text = "\n".join(cells)
    for name in PAPER_FIGURES:
        text = text.replace(name, " ")
    decimals = [text[max(0, m.start() - 40):m.end() + 40] for m in re.finditer(r"(?<![\w.])\d*\.\d+", text)]
    assert not decimals, f"notebook 11's markdown types measured numbers; generate them from the results files: {decimals}"
    assert not re.search(r"\d\s*±", text), "a mean ± std typed in notebook 11's markdown"
    assert "## 4. Long context that is learned" in text and "LEARNED_BUDGET" in text


def test_accuracy_by_answer_separates_the_answer_positions():
    I = IGNORE
    targets = torch.tensor([[I, 5, 6, I], [I, I, 7, 8], [I, 1, 2, I]])
    preds = torch.tensor([[0, 5, 0, 0], [0, 0, 7, 8], [0, 3, 2, 0]])
    assert accuracy_by_answer(preds, targets) == pytest.approx([2 / 3, 2 / 3])
    with pytest.raises(ValueError, match="same, non-zero number of answers"):
        accuracy_by_answer(preds, torch.tensor([[I, 5, 6, I], [I, I, I, 8], [I, 1, 2, I]]))
    with pytest.raises(ValueError, match="differ in shape"):
        accuracy_by_answer(preds[:, :3], targets)


def test_run_seed_can_return_the_trained_model():
    cfg = preset_config("s-niah", "transformer", "tiny", seeds=(0,), steps=2)
    record, model = runner_mod.run_seed(cfg, 0, return_model=True)
    again = runner_mod.evaluate(model, cfg.make_task(), cfg.eval_lengths, cfg.eval_examples, 0, batch=cfg.eval_batch)
    assert again == record["accuracy"]  # the model the record was measured on
    assert set(runner_mod.run_seed(cfg, 0)) == set(record)


class _Overflowing(torch.nn.Module):
    """Answers right (from the targets it is handed) up to ``ok_until`` tokens; beyond, its forward
    stops at a non-finite gate, as a Titans memory that overflowed; ``nan_row`` gives one example
    NaN logits at every length."""

    def __init__(self, task, ok_until: int, nan_row: int | None = None):
        super().__init__()
        self.task, self.ok_until, self.nan_row, self.targets = task, ok_until, nan_row, None

    def forward(self, x):
        if x.shape[1] > self.ok_until:
            raise NonFiniteError("lr must be finite and >= 0 (a test); got nan at (batch 0, head 0, token 9)")
        logits = torch.zeros(*x.shape, self.task.vocab_size)
        logits.scatter_(-1, self.targets.clamp_min(0).unsqueeze(-1), 1.0)
        if self.nan_row is not None:
            logits[self.nan_row] = float("nan")
        return logits


def test_an_overflow_at_an_untrained_length_counts_as_wrong_and_is_reported(monkeypatch):
    """A forward that stops at a non-finite gate (every example of the batch) or returns NaN
    logits for an example counts those examples as answered wrong, and the fraction is reported;
    any other error still stops the evaluation."""
    task = make_task("s-niah")
    model = _Overflowing(task, ok_until=40, nan_row=1)
    real = task.sample

    def sample(n, length, rng):  # hand the model the targets, so that it answers right where it can
        b = real(n, length, rng)
        model.targets = b.targets
        return b

    monkeypatch.setattr(task, "sample", sample)
    acc, overflow = runner_mod.evaluate_counting_overflow(model, task, (32, 64), 8, 0, batch=4)
    assert acc == {"32": 6 / 8, "64": 0.0}  # at 32, row 1 of each batch of 4 is NaN
    assert overflow == {"32": 2 / 8, "64": 1.0}
    assert runner_mod.evaluate(model, task, (32,), 8, 0, batch=8) == {"32": 7 / 8}
    model.nan_row = None
    assert runner_mod.evaluate_counting_overflow(model, task, (32,), 8, 0, batch=8) == ({"32": 1.0}, {})

    def broken(x):
        raise ValueError("a bug, not an overflow")

    monkeypatch.setattr(model, "forward", broken)
    with pytest.raises(ValueError, match="a bug"):
        runner_mod.evaluate(model, task, (32,), 8, 0, batch=8)
