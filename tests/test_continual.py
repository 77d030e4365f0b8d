"""nlteach.continual: metrics, streams, learners, the resumable runner, results.json, the CLI."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from nlteach.continual import (
    available_learners,
    average_accuracy,
    backward_transfer,
    draw_acc_matrix,
    draw_avg_acc,
    draw_both_matrices,
    draw_comparison,
    draw_memory_trace,
    first_tasks,
    forgetting,
    hashed_ngrams,
    learning_accuracy,
    make_learner,
    make_stream,
    memory_trace,
    parameter_counts,
    preset_config,
    run,
    summarize,
)
from nlteach.continual import runner as runner_mod
from nlteach.continual import tune as tune_mod
from nlteach.continual.__main__ import main
from nlteach.continual.hope import PersistentHopeLearner
from nlteach.continual.learners import LearnerConfig, register_learner
from nlteach.continual.runner import TUNING, TUNING_FILE, ContinualConfig, train_task
from nlteach.continual.streams import hashed_ngram_sequence, take
from nlteach.continual.tune import (
    GRID_POINTS,
    TUNING_PLAN,
    as_records,
    file_provenance,
    grid_points,
    merge_records,
    read_records,
    tune,
    value_folder,
    widen,
)
from nlteach.continual.tune import main as tune_main
from nlteach.runs.io import (
    CheckpointWarning,
    CorruptFileError,
    load_checkpoint,
    previous_path,
    read_json,
)
from nlteach.runs.lock import FolderInUse
from nlteach.runs.rundir import SettingsMismatch

R3 = [[0.9, 0.0, 0.0],
      [0.5, 0.8, 0.0],
      [0.3, 0.6, 0.7]]


# ---------------------------------------------------------------------------------------------
# metrics


def test_average_accuracy_by_hand():
    np.testing.assert_allclose(average_accuracy(R3), [0.9, 0.65, (0.3 + 0.6 + 0.7) / 3])


def test_bwt_and_forgetting_by_hand():
    assert backward_transfer(R3) == pytest.approx(((0.3 - 0.9) + (0.6 - 0.8)) / 2)
    assert forgetting(R3) == pytest.approx(((0.9 - 0.3) + (0.8 - 0.6)) / 2)
    assert learning_accuracy(R3) == pytest.approx((0.9 + 0.8 + 0.7) / 3)
    # the best accuracy of task 0 came after task 1: forgetting uses it, BWT uses the diagonal
    R = [[0.5, 0.0, 0.0], [0.9, 0.8, 0.0], [0.6, 0.8, 0.9]]
    assert backward_transfer(R) == pytest.approx(((0.6 - 0.5) + 0.0) / 2)
    assert forgetting(R) == pytest.approx(((0.9 - 0.6) + 0.0) / 2)
    # rows before a task was learned do not count towards its forgetting (domain-IL guesses)
    R = [[0.9, 0.95], [0.9, 0.5]]
    assert forgetting(R) == pytest.approx(0.0)
    assert backward_transfer(R) == pytest.approx(0.0)


def test_no_forgetting_and_perfect_memory():
    R = np.tril(np.ones((4, 4)))
    assert backward_transfer(R) == 0.0 and forgetting(R) == 0.0
    np.testing.assert_allclose(average_accuracy(R), 1.0)


def test_summary_mean_std_over_seeds():
    R2 = [[1.0, 0.0, 0.0], [0.5, 1.0, 0.0], [0.5, 0.5, 1.0]]
    s = summarize([R3, R2])
    assert set(s) == {"avg_acc", "bwt", "forgetting", "learning_acc"}
    assert s["bwt"]["mean"] == pytest.approx((backward_transfer(R3) + backward_transfer(R2)) / 2)
    assert s["bwt"]["std"] == pytest.approx(np.std([backward_transfer(R3), backward_transfer(R2)], ddof=1))
    assert s["bwt"]["n"] == 2 and s["bwt"]["dropped"] == 0 and s["bwt"]["ci95"][0] < s["bwt"]["mean"]
    one = summarize([R3])["avg_acc"]
    assert one["n"] == 1 and np.isnan(one["std"])  # one seed shows no spread


@pytest.mark.parametrize("bad, match", [
    ([[0.5, 0.2]], "square"), ([[0.5, np.nan], [0.1, 0.2]], "NaN"), ([[1.5, 0], [0, 1]], r"\[0, 1\]")])
def test_metrics_reject_bad_matrices(bad, match):
    with pytest.raises(ValueError, match=match):
        average_accuracy(bad)


def test_bwt_needs_two_tasks():
    with pytest.raises(ValueError, match="at least 2 tasks"):
        backward_transfer([[0.9]])


# ---------------------------------------------------------------------------------------------
# streams


@pytest.mark.parametrize("dataset, n_tasks, n_classes", [
    ("clinc150", 15, 150), ("banking77", 7, 77), ("split-digits", 5, 10)])
def test_class_incremental_streams(dataset, n_tasks, n_classes):
    s = make_stream(dataset, 0, n_buckets=1024, max_train_per_class=5, max_test_per_class=3)
    assert s.scenario == "class" and s.n_tasks == n_tasks and s.n_classes == n_classes
    all_classes = [c for t in s.tasks for c in t.classes]
    assert sorted(all_classes) == list(range(n_classes))  # every class exactly once, so disjoint
    for t in s.tasks:
        assert len(t.classes) == n_classes // n_tasks
        assert set(t.y_train.tolist()) == set(t.classes) == set(t.y_test.tolist())
    again = make_stream(dataset, 0, n_buckets=1024, max_train_per_class=5, max_test_per_class=3)
    assert [t.classes for t in again.tasks] == [t.classes for t in s.tasks]  # seeded: reproducible
    other = make_stream(dataset, 1, n_buckets=1024, max_train_per_class=5, max_test_per_class=3)
    assert [t.classes for t in other.tasks] != [t.classes for t in s.tasks]
    assert s.seen_classes(1) == sorted(s.tasks[0].classes + s.tasks[1].classes)


def test_official_test_splits_are_used():
    s = make_stream("clinc150", 0, n_buckets=1024)
    assert sum(len(t.y_test) for t in s.tasks) == 150 * 30  # CLINC150 test: 30 per intent
    assert sum(len(t.y_train) for t in s.tasks) == 150 * 100
    d = make_stream("split-digits", 3)
    d0 = make_stream("split-digits", 0)
    # the held-out digits are the same images whatever the seed
    assert sorted(map(tuple, torch.cat([t.x_test for t in d.tasks]).tolist())) == \
        sorted(map(tuple, torch.cat([t.x_test for t in d0.tasks]).tolist()))


def test_permuted_digits_is_domain_incremental():
    s = make_stream("permuted-digits", 0, n_tasks=3)
    assert s.scenario == "domain" and s.n_tasks == 3
    base = s.tasks[0]
    for t in s.tasks[1:]:
        assert torch.equal(t.y_train, base.y_train)
        assert not torch.equal(t.x_train, base.x_train)
        assert torch.equal(t.x_train.sort(dim=1).values, base.x_train.sort(dim=1).values)  # same pixels
    assert s.seen_classes(0) == list(range(10))


def test_stream_errors():
    with pytest.raises(ValueError, match="dataset must be one of"):
        make_stream("mnist", 0)
    with pytest.raises(ValueError, match="must divide"):
        make_stream("split-digits", 0, n_tasks=3)
    with pytest.raises(ValueError, match="k must be"):
        first_tasks(make_stream("split-digits", 0), 9)


def test_hashed_ngrams():
    ids, w = hashed_ngrams(["book a flight", "what is my balance", "x"], 512)
    assert ids.shape == w.shape and ids.dtype == torch.int64
    torch.testing.assert_close((w ** 2).sum(1), torch.ones(3))  # L2-normalized counts
    assert (ids[2][w[2] == 0] == 0).all()  # padding: id 0 with weight 0
    ids2, w2 = hashed_ngrams(["book a flight", "what is my balance", "x"], 512)
    assert torch.equal(ids, ids2) and torch.equal(w, w2)  # no salt: deterministic across runs
    assert int(ids.max()) < 512


# ---------------------------------------------------------------------------------------------
# learners


def test_learners_are_registered_once():
    assert available_learners() == ["finetune", "ewc", "replay", "lwf", "cms", "hope", "hope-persistent", "joint"]
    with pytest.raises(ValueError, match="registered twice"):
        register_learner("finetune")(type("X", (), {}))


@pytest.mark.parametrize("method", ["finetune", "ewc", "replay", "lwf", "cms", "hope", "hope-persistent", "joint"])
def test_each_learner_runs_end_to_end_tiny(method):
    cfg = preset_config("split-digits", method, "tiny", seeds=(0,))
    res = run(cfg)
    R = np.asarray(res["per_seed"][0]["acc_matrix"])
    assert R.shape == (5, 5) and ((R >= 0) & (R <= 1)).all()
    assert (R[np.triu_indices(5, 1)] == 0).all()  # class-IL: unseen classes are never predicted
    # it learns: each task right after learning it (joint: all tasks at the end); chance is <= 0.5
    score = average_accuracy(R)[-1] if method == "joint" else np.diag(R).mean()
    assert score > 0.5


def test_text_learner_runs_end_to_end_tiny():
    cfg = preset_config("banking77", "replay", "tiny", seeds=(0,))
    R = np.asarray(run(cfg)["per_seed"][0]["acc_matrix"])
    assert R.shape == (7, 7)


def test_future_classes_get_no_gradient():
    cfg = preset_config("split-digits", "finetune", "tiny", seeds=(0,))
    s = make_stream("split-digits", 0, max_train_per_class=20)
    L = make_learner("finetune", s, cfg.learner)
    before = L.model.head.weight.detach().clone()
    train_task(L, s, 0, cfg, 0)
    after = L.model.head.weight.detach()
    future = [c for t in s.tasks[1:] for c in t.classes]
    seen = list(s.tasks[0].classes)
    assert torch.equal(after[future], before[future])
    assert not torch.equal(after[seen], before[seen])


def test_replay_buffer_is_small_and_holds_past_tasks():
    cfg = preset_config("split-digits", "replay", "tiny", seeds=(0,), replay_size=8)
    s = make_stream("split-digits", 0, max_train_per_class=20)
    L = make_learner("replay", s, cfg.learner)
    for t in range(3):
        train_task(L, s, t, cfg, 0)
    assert len(L.buf_y) == 8
    assert set(L.buf_y.tolist()) <= set(s.seen_classes(2))
    assert L.n_seen == sum(len(s.tasks[t].y_train) for t in range(3))


def test_cms_learner_updates_slow_levels_less_often():
    cfg = preset_config("split-digits", "cms", "tiny", seeds=(0,), periods=(1, 1000))
    s = make_stream("split-digits", 0, max_train_per_class=20)
    L = make_learner("cms", s, cfg.learner)
    slow = [p.detach().clone() for p in L.model.body.blocks[1].parameters()]
    fast = L.model.body.blocks[0].W_in.detach().clone()
    train_task(L, s, 0, cfg, 0)
    assert all(torch.equal(a, p) for a, p in zip(slow, L.model.body.blocks[1].parameters(), strict=True))
    assert not torch.equal(fast, L.model.body.blocks[0].W_in)


def test_same_backbone_size_and_initial_weights():
    s = make_stream("split-digits", 0, max_train_per_class=5)
    cfg = preset_config("split-digits", "finetune", "tiny")
    sizes, shared, inits = set(), set(), []
    for m in available_learners():
        torch.manual_seed(0)
        L = make_learner(m, s, cfg.learner)
        if not m.startswith("hope"):  # their encoder reads a sequence; the rest of the backbone is the same
            sizes.add(sum(p.numel() for p in L.model.parameters()))
        shared.add(sum(p.numel() for n, p in L.model.named_parameters() if not n.startswith("encoder.")))
        inits.append([L.model.head.weight.detach().clone(), L.model.body.blocks[2].W_in.detach().clone()])
    assert len(sizes) == 1 and len(shared) == 1
    assert all(torch.equal(a, b) for w in inits for a, b in zip(w, inits[0], strict=True))


# ---------------------------------------------------------------------------------------------
# runner: results.json schema, resume, refusal, CLI


def _check_schema(res: dict, n_seeds: int, T: int) -> None:
    assert set(res) == {"config", "per_seed", "summary", "provenance"}
    assert {"git_commit", "git_dirty", "command", "device"} <= set(res["provenance"])
    assert len(res["per_seed"]) == n_seeds
    for p in res["per_seed"]:
        assert set(p) == {"seed", "acc_matrix", "acc_matrix_task"} and isinstance(p["seed"], int)
        for R in (p["acc_matrix"], p["acc_matrix_task"]):
            assert len(R) == T and all(len(r) == T for r in R)
            assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for r in R for v in r)
    assert set(res["summary"]) == {p + k for p in ("", "task_") for k in ("avg_acc", "bwt", "forgetting", "learning_acc")}
    for v in res["summary"].values():
        assert set(v) == {"mean", "std", "n", "ci95", "dropped"} and v["n"] == n_seeds and v["dropped"] == 0


@pytest.mark.parametrize("method, seeds", [("cms", (0, 1)), ("ewc", (0, 1)), ("replay", (0, 1)), ("hope", (0,)),
                                           ("hope-persistent", (0,))])
def test_resume_after_interruption_gives_the_same_results(tmp_path, method, seeds):
    cfg = preset_config("split-digits", method, "tiny", seeds=seeds)
    ref = run(cfg, tmp_path / "ref", figures=False)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "cut", figures=False, _stop_after_task=2)  # seed 0 stops after task 2
    assert (tmp_path / "cut" / "seeds" / "seed_0.pt").exists()
    assert not (tmp_path / "cut" / "seeds" / "seed_0.json").exists()
    got = run(cfg, tmp_path / "cut", figures=False)
    assert {k: v for k, v in got.items() if k != "provenance"} == {k: v for k, v in ref.items() if k != "provenance"}
    assert not (tmp_path / "cut" / "seeds" / "seed_0.pt").exists()  # removed once the seed is done


def test_finished_seeds_are_not_recomputed(tmp_path, monkeypatch):
    cfg = preset_config("split-digits", "finetune", "tiny", seeds=(0,))
    first = run(cfg, tmp_path, figures=False)

    def boom(*a, **k):
        raise AssertionError("a finished seed was recomputed")

    monkeypatch.setattr(runner_mod, "run_seed", boom)
    assert run(cfg, tmp_path, figures=False)["per_seed"] == first["per_seed"]
    seed_file = read_json(tmp_path / "seeds" / "seed_0.json")
    assert seed_file["cpu_seconds"] > 0 and seed_file["provenance"]["git_commit"] == first["provenance"]["git_commit"]
    with pytest.raises(AssertionError, match="recomputed"):  # a new seed is computed
        run(runner_mod.with_seeds(cfg, (0, 1)), tmp_path, figures=False)


def test_results_json_schema_and_figures(tmp_path):
    cfg = preset_config("split-digits", "lwf", "tiny", seeds=(0, 1))
    res = run(cfg, tmp_path)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk == res
    _check_schema(on_disk, 2, 5)
    assert ContinualConfig.from_dict(on_disk["config"]) == cfg
    assert (tmp_path / "acc_matrix.png").stat().st_size > 0 and (tmp_path / "avg_acc.png").stat().st_size > 0


def test_another_config_in_the_same_folder_is_refused(tmp_path):
    run(preset_config("split-digits", "finetune", "tiny", seeds=(0,)), tmp_path, figures=False)
    with pytest.raises(SettingsMismatch, match="other settings") as e:
        run(preset_config("split-digits", "finetune", "tiny", seeds=(0,), lr=0.5, epochs=2), tmp_path, figures=False)
    assert "learner.lr: saved 0.001, now 0.5" in str(e.value) and "epochs: saved 8, now 2" in str(e.value)
    res = run(preset_config("split-digits", "finetune", "tiny", seeds=(0,), lr=0.5), tmp_path, figures=False,
              overwrite=True)
    assert res["config"]["learner"]["lr"] == 0.5


def test_config_errors():
    with pytest.raises(ValueError, match="method must be one of"):
        preset_config("split-digits", "hopeful", "tiny")
    with pytest.raises(ValueError, match="split must be"):
        preset_config("split-digits", "finetune", "tiny", split="train")
    with pytest.raises(ValueError, match="unknown setting"):
        preset_config("split-digits", "finetune", "tiny", nonsense=1)


def test_cli(tmp_path, capsys):
    rc = main(["--dataset", "split-digits", "--method", "finetune", "replay", "--seeds", "0", "--preset", "tiny",
               "--out", str(tmp_path), "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "finetune" in out and "replay" in out and "BWT" in out
    for m in ("finetune", "replay"):
        _check_schema(json.loads((tmp_path / m / "results.json").read_text()), 1, 5)
    assert (tmp_path / "comparison.png").exists()
    # a second command adds learners: the figure draws those of both commands (same stream and preset)
    from nlteach.continual.__main__ import figure_results
    shown = figure_results(tmp_path, {"ewc": json.loads((tmp_path / "replay" / "results.json").read_text())})
    assert list(shown) == ["finetune", "ewc", "replay"]  # the learners' order, not the commands'
    other = json.loads((tmp_path / "finetune" / "results.json").read_text())
    other["config"]["dataset"] = "permuted-digits"
    (tmp_path / "finetune" / "results.json").write_text(json.dumps(other))  # another stream: not drawn
    (tmp_path / "lwf").mkdir()
    (tmp_path / "lwf" / "results.json").write_text("{not json")  # unreadable: not drawn
    assert list(figure_results(tmp_path, {"cms": shown["replay"]})) == ["replay", "cms"]


def test_cli_refuses_to_resume_with_other_settings(tmp_path, capsys):
    args = ["--dataset", "split-digits", "--method", "finetune", "--seeds", "0", "--preset", "tiny",
            "--out", str(tmp_path), "--no-progress", "--epochs", "1"]
    assert main(args) == 0
    rec = json.loads((tmp_path / "results.json").read_text())
    assert rec["config"]["epochs"] == 1 and rec["provenance"]["command"].startswith("python -m nlteach.continual")
    capsys.readouterr()
    assert main([*args, "--lr", "0.01"]) == 2
    err = capsys.readouterr().err
    assert "learner.lr: saved 0.001, now 0.01" in err and "--overwrite" in err
    assert main([*args, "--lr", "0.01", "--overwrite"]) == 0
    with pytest.raises(SystemExit):  # a value the config refuses is a usage error
        main([*args, "--split", "train"])


def test_draw_functions():
    res = {"config": {"dataset": "toy", "method": "m"},
           "per_seed": [{"seed": 0, "acc_matrix": R3}, {"seed": 1, "acc_matrix": R3}]}
    for draw, kw in [(draw_acc_matrix, {"results": res}), (draw_avg_acc, {"results_by_method": {"m": res}}),
                     (draw_comparison, {"results_by_method": {"a": res, "b": res}})]:
        fig = Figure()
        draw(fig, **kw)
        assert fig.axes
    with pytest.raises(ValueError, match="empty"):
        draw_avg_acc(Figure(), {})


# ---------------------------------------------------------------------------------------------
# validation split, sequence features, tuning


def test_validation_split_never_touches_test_data():
    d_val, d_test = make_stream("split-digits", 0, split="val"), make_stream("split-digits", 0)
    rows = lambda xs: set(map(tuple, torch.cat(xs).tolist()))  # noqa: E731
    val, val_train = rows([t.x_test for t in d_val.tasks]), rows([t.x_train for t in d_val.tasks])
    test, train = rows([t.x_test for t in d_test.tasks]), rows([t.x_train for t in d_test.tasks])
    assert val <= train and val_train <= train and not (val & val_train) and not (val & test)
    assert len(val) > 200  # a fifth of the train images
    c = make_stream("clinc150", 0, n_buckets=1024, split="val")
    assert sum(len(t.y_test) for t in c.tasks) == 150 * 20  # CLINC150's official val split
    with pytest.raises(ValueError, match="split must be"):
        make_stream("split-digits", 0, split="train")


def test_hashed_ngram_sequence_is_causal_and_deterministic():
    ids, mask = hashed_ngram_sequence(["book a flight", "book a table", "x"], 512, max_len=10)
    assert ids.shape == (3, 10, 4) and mask.shape == (3, 10)
    assert mask.sum(1).tolist() == [10.0, 10.0, 1.0]  # truncated to max_len bytes; padding 0
    assert torch.equal(ids[0, :7], ids[1, :7])  # "book a " is shared: n-grams ending there agree
    assert not torch.equal(ids[0, 7], ids[1, 7])
    assert (ids[2, 1:] == 0).all() and int(ids.max()) < 512
    again = hashed_ngram_sequence(["book a flight", "book a table", "x"], 512, max_len=10)
    assert torch.equal(ids, again[0])
    s = make_stream("banking77", 0, n_buckets=1024, max_train_per_class=2, text_features="sequence", max_len=16)
    assert s.input_kind == "seq" and s.tasks[0].x_train[0].shape[1:] == (16, 4)


def test_tune_picks_the_best_validation_score(capsys):
    rec = tune("split-digits", "lwf", {"lwf_temperature": [1.0, 4.0]}, preset="tiny", seeds=(0,), max_widenings=0)
    assert rec["split"] == "val" and rec["axes"] == {"lwf_temperature": [1.0, 4.0]} and len(rec["val_avg_acc"]) == 2
    assert rec["chosen"] == rec["points"][int(np.argmax(rec["val_avg_acc"]))]
    assert rec["on_edge"] == ["lwf_temperature"] and rec["budget"] == GRID_POINTS
    assert "val avg acc" in capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown setting 'temperature'"):
        tune("split-digits", "lwf", {"temperature": [1.0]}, preset="tiny")


def test_every_learner_gets_the_same_tuning_budget():
    assert set(TUNING_PLAN) == set(available_learners())
    for method, axes in TUNING_PLAN.items():
        assert len(grid_points(axes)) == GRID_POINTS, method
        assert all(list(v) == sorted(v) for v in axes.values()), method  # widen reads the edges
        preset_config("clinc150", method, "laptop", **grid_points(axes)[0])  # every knob is a setting
    assert "replay_size" not in TUNING_PLAN["replay"]  # a stated budget, not a knob


def test_widen_grows_an_axis_at_the_edge_it_chose():
    assert widen("lr", [1e-3, 3e-3], 3e-3) == [1e-3, 3e-3, 9e-3]
    assert widen("ewc_lambda", [1e2, 1e4, 1e6], 1e2) == [1.0, 1e2, 1e4, 1e6]
    assert widen("lr", [1e-3, 3e-3, 1e-2], 3e-3) is None  # inside
    assert widen("lr", [1e-3], 1e-3) is None  # one value: no edge to read
    assert widen("hope_chunk_size", [8, 24], 8) == [3, 8, 24]
    assert widen("periods", [(1, 2, 4, 8), (1, 4, 16, 64), (1, 8, 64, 512)], (1, 8, 64, 512))[-1] == (1, 16, 256, 4096)
    assert widen("periods", [[1, 2, 4, 8], [1, 4, 16, 64]], [1, 2, 4, 8])[0] == (1, 1, 1, 1)


def test_tune_widens_until_the_choice_is_inside(monkeypatch):
    """A fake stream whose validation score peaks at lr = 0.3: the grid grows past its upper edge
    twice (the limit), the choice is recorded as still on the edge, every point is recorded once."""
    seen = []

    def fake_run(cfg, folder, **kw):
        seen.append(cfg.learner.lr)
        acc = 1.0 - abs(np.log10(cfg.learner.lr) - np.log10(0.3)) / 10
        R = [[acc, 0.0], [acc, acc]]
        return {"per_seed": [{"seed": 0, "acc_matrix": R}], "summary": summarize([R])}

    monkeypatch.setattr(tune_mod, "run", fake_run)
    rec = tune("split-digits", "finetune", {"lr": [1e-3, 3e-3]}, preset="tiny", seeds=(0,))
    assert rec["axes"]["lr"] == pytest.approx([1e-3, 3e-3, 9e-3, 2.7e-2]) and len(seen) == 4
    assert rec["chosen"] == {"lr": rec["axes"]["lr"][-1]} and rec["on_edge"] == ["lr"]
    assert rec["widenings"] == {"lr": 2}
    seen.clear()
    rec = tune("split-digits", "finetune", {"lr": [0.1, 0.3, 1.0]}, preset="tiny", seeds=(0,))
    assert rec["chosen"] == {"lr": 0.3} and rec["on_edge"] == [] and len(seen) == 3

    def diverging(cfg, folder, **kw):
        if cfg.learner.lr > 0.5:
            raise FloatingPointError("boom")
        return fake_run(cfg, folder, **kw)

    monkeypatch.setattr(tune_mod, "run", diverging)
    rec = tune("split-digits", "finetune", {"lr": [0.1, 1.0]}, preset="tiny", seeds=(0,), max_widenings=0)
    assert rec["val_avg_acc"][1] is None and rec["chosen"] == {"lr": 0.1}


def test_tune_cli_resumes_refuses_other_settings_and_merges(tmp_path, capsys):
    tuning = tmp_path / "tuning.json"
    tuning.write_text(json.dumps({"clinc150": TUNING["clinc150"]}))
    args = ["--dataset", "split-digits", "--method", "lwf", "--param", "lwf_temperature", "--grid", "1", "4",
            "--widen", "0", "--preset", "tiny", "--out", str(tmp_path / "t"), "--update-tuning", str(tuning)]
    assert tune_main(args) == 0
    assert (value_folder(tmp_path / "t", "split-digits", "lwf", {"lwf_temperature": 4.0}) / "results.json").exists()
    merged = read_json(tuning)
    assert merged["clinc150"] == TUNING["clinc150"]  # untouched
    assert merged["split-digits"]["lwf"]["axes"] == {"lwf_temperature": [1.0, 4.0]}
    assert tune_main(args) == 0  # finished: read back, and the record is replaced, not repeated
    written = read_json(tmp_path / "t" / "tuning.json")
    assert len(written["records"]) == 1 and written["records"][0]["provenance"]["command"].endswith(str(tuning))
    assert written["provenance"]["git_commit"] == written["records"][0]["provenance"]["git_commit"]
    assert "--method lwf" in written["provenance"]["command"]
    capsys.readouterr()
    assert tune_main([*args[:-2], "--preset", "laptop"]) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "preset: saved 'tiny', now 'laptop'" in err
    with pytest.raises(SystemExit):
        tune_main(["--dataset", "split-digits", "--method", "lwf", "--param", "lwf_temperature"])  # no --grid
    with pytest.raises(SystemExit):
        tune_main(["--help"])
    package = tmp_path / "package.json"
    assert tune_main(["--merge", str(tmp_path / "t" / "tuning.json"), "--update-tuning", str(package)]) == 0
    assert read_json(package)["split-digits"]["lwf"] == merged["split-digits"]["lwf"]
    package.write_text(json.dumps({"clinc150": TUNING["clinc150"], **read_json(package)}))
    assert tune_main(["--merge", str(tmp_path / "t" / "tuning.json"), "--update-tuning", str(package), "--fresh"]) == 0
    assert read_json(package) == merge_records(read_records(tmp_path / "t" / "tuning.json"))  # clinc150 dropped
    with pytest.raises(SystemExit):
        tune_main(["--dataset", "split-digits", "--method", "lwf", "--fresh"])  # --fresh without --merge
    with pytest.raises(SystemExit):
        tune_main(["--merge", str(tmp_path / "missing.json")])
    with pytest.raises(SystemExit):
        tune_main(["--method", "lwf"])  # no --dataset
    assert [tune_mod._value(t) for t in ("1e-3", "3", "1-4-16")] == [1e-3, 3.0, (1, 4, 16)]
    for bad in ("inf", "1-x"):
        with pytest.raises(argparse.ArgumentTypeError):
            tune_mod._value(bad)


def test_the_tuning_file_is_the_merge_of_the_committed_records():
    assert TUNING == read_json(TUNING_FILE)
    assert merge_records(as_records(TUNING)) == TUNING  # merging is idempotent
    committed = runner_mod.RESULTS_ROOT / "continual_tuning_laptop" / "tuning.json"
    if committed.exists():  # the package ships the committed records
        assert merge_records(read_records(committed)) == TUNING


def test_presets_record_their_tuning(monkeypatch):
    rec = {"method": "ewc", "axes": {"ewc_lambda": [1.0, 10.0]}, "points": [{"ewc_lambda": 1.0}, {"ewc_lambda": 10.0}],
           "val_avg_acc": [0.1, 0.2], "val_bwt": [-0.5, -0.4], "chosen": {"ewc_lambda": 10.0}}
    monkeypatch.setitem(runner_mod.TUNING, "split-digits", {"ewc": rec})  # the presets read the module's dict
    cfg = preset_config("split-digits", "ewc", "laptop")
    assert cfg.learner.ewc_lambda == 10.0 and cfg.to_dict()["tuning"]["chosen"] == {"ewc_lambda": 10.0}
    assert ContinualConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert preset_config("split-digits", "lwf", "laptop").tuning is None  # a method's record is its own
    tiny = preset_config("split-digits", "ewc", "tiny")  # tuned at laptop: tiny keeps the defaults
    assert tiny.tuning is None and tiny.learner.ewc_lambda == LearnerConfig().ewc_lambda
    legacy = {"ewc_lambda": {"method": "ewc", "grid": [1.0, 10.0], "val_avg_acc": [0.1, 0.2], "val_bwt": [-0.5, -0.4],
                             "chosen": 10.0, "seeds": [0], "preset": "laptop", "criterion": "c"}}
    monkeypatch.setitem(runner_mod.TUNING, "split-digits", legacy)  # the first runs' layout is read too
    cfg = preset_config("split-digits", "ewc", "laptop")
    assert cfg.learner.ewc_lambda == 10.0 and cfg.tuning["axes"] == {"ewc_lambda": [1.0, 10.0]}
    cms = {"method": "cms", "axes": {"periods": [[1, 2], [1, 4]]}, "points": [{"periods": [1, 2]}, {"periods": [1, 4]}],
           "val_avg_acc": [0.1, 0.2], "val_bwt": [0.0, 0.0], "chosen": {"periods": [1, 4]}}
    monkeypatch.setitem(runner_mod.TUNING, "split-digits", {"cms": cms})
    assert preset_config("split-digits", "cms", "laptop").learner.periods == (1, 4)


def test_merge_records_extends_a_grid():
    base = {"dataset": "d", "method": "ewc", "param": "ewc_lambda", "seeds": [0], "preset": "laptop",
            "criterion": "c"}
    recs = [base | {"grid": [1.0, 10.0], "val_avg_acc": [0.1, 0.3], "val_bwt": [-0.9, -0.5]},
            base | {"grid": [100.0], "val_avg_acc": [0.2], "val_bwt": [-0.1]}]
    m = merge_records(recs)["d"]["ewc"]
    assert m["axes"]["ewc_lambda"] == [1.0, 10.0, 100.0] and m["val_avg_acc"] == [0.1, 0.3, 0.2]
    assert m["chosen"] == {"ewc_lambda": 10.0} and m["on_edge"] == []
    two = {"dataset": "d", "method": "cms", "axes": {"periods": [[1, 2]], "lr": [1e-3, 3e-3]}, "seeds": [0],
           "preset": "laptop", "criterion": "c", "points": [{"periods": [1, 2], "lr": 1e-3}, {"periods": [1, 2], "lr": 3e-3}],
           "val_avg_acc": [0.5, 0.4], "val_bwt": [0.0, 0.0]}
    more = two | {"axes": {"periods": [[1, 4]], "lr": [1e-3]}, "points": [{"periods": [1, 4], "lr": 1e-3}],
                  "val_avg_acc": [0.6], "val_bwt": [0.0]}
    m = merge_records([two, more])["d"]["cms"]
    assert len(m["points"]) == 3 and m["chosen"] == {"periods": [1, 4], "lr": 1e-3}
    assert m["axes"] == {"periods": [[1, 2], [1, 4]], "lr": [1e-3, 3e-3]}
    other = more | {"axes": {"lr": [1e-2]}, "points": [{"lr": 1e-2}]}  # other knobs: a new search replaces the old
    assert merge_records([two, other])["d"]["cms"]["points"] == [{"lr": 1e-2}]


def test_a_tuning_file_names_one_commit_only_when_every_record_was_made_there():
    a = {"provenance": {"git_commit": "abc", "git_dirty": [], "command": "x"}}
    b = {"provenance": {"git_commit": "abc", "git_dirty": ["results/t.json"], "command": "y"}}
    assert file_provenance([a, b]) == {"git_commit": "abc", "git_dirty": ["results/t.json"], "command": "x\ny"}
    assert file_provenance([a, {}]) == {"git_commit": None, "git_dirty": None, "command": "x"}  # a legacy record


# ---------------------------------------------------------------------------------------------
# the HOPE-style learner


def _hope(dataset="split-digits", seed=0, **kw):
    cfg = preset_config(dataset, "hope", "tiny", seeds=(seed,), **kw)
    s = runner_mod.build_stream(cfg, seed)
    torch.manual_seed(seed)
    return make_learner("hope", s, cfg.learner), s


def test_hope_memory_learns_in_context():
    L, s = _hope("banking77", max_train_per_class=2)
    enc = L.model.encoder
    x = take(s.tasks[0].x_train, torch.tensor([0, 2, 4, 6]))  # different classes (0 and 1 can be equal texts)
    h, mask = enc.tokens(x)
    h = enc.norm_in(h)
    y, final = enc.read(h)
    torch.testing.assert_close(y, enc.memory(h))  # the exposed state is the layer's own computation
    init = enc.memory.initial_states(4)
    for box in ("memory", "k", "v"):  # every memory was written while reading (self-modification)
        assert not torch.allclose(final[box][0], init[box][0])
    assert not torch.allclose(final["memory"][0][0], final["memory"][0][1])  # different inputs, states
    # causal: changing the last real token changes no earlier output
    n = int(mask[0].sum())
    h2 = h.clone()
    h2[0, n - 1] += 1.0
    y2, _ = enc.read(h2)
    torch.testing.assert_close(y2[0, :n - 1], y[0, :n - 1])
    assert not torch.allclose(y2[0, n - 1], y[0, n - 1])
    # the state a read starts from matters (what a memory carried across examples would use)
    _, st = enc.read(h[:, :5])
    assert not torch.allclose(enc.read(h[:, 5:], st)[0], enc.read(h[:, 5:])[0])
    # padding after the text changes nothing; the same seed gives the same model
    ids, m = x
    padded = (torch.cat([ids, torch.zeros_like(ids[:, :3])], 1), torch.cat([m, torch.zeros_like(m[:, :3])], 1))
    torch.testing.assert_close(L.logits(padded), L.logits(x))
    L2, _ = _hope("banking77", max_train_per_class=2)
    assert torch.equal(L2.logits(x), L.logits(x))


def test_hope_reads_digits_as_rows_and_stops_on_divergence():
    L, s = _hope()
    assert L.model.encoder.tokens(s.tasks[0].x_train[:3])[0].shape == (3, 8, L.cfg.dim)
    with torch.no_grad():
        L.model.head.bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        L.train_step(s.tasks[0].x_train[:8], s.tasks[0].y_train[:8], 0, torch.Generator())


def test_memory_trace_and_parameter_counts():
    L, s = _hope("banking77", max_train_per_class=2)
    x = take(s.tasks[0].x_train, torch.tensor([0, 2]))
    tr = memory_trace(L, x)
    assert [len(t) for t in tr] == x[1].sum(1).int().tolist()  # one value per real token
    assert all(b > 0 for t in tr for b in t) and tr[0] != tr[1]
    fig = Figure()
    draw_memory_trace(fig, tr, ["a", "b"])
    assert fig.axes
    with pytest.raises(ValueError, match="one label per trace"):
        draw_memory_trace(Figure(), tr, ["a"])
    counts = parameter_counts("clinc150", preset_config("clinc150", "finetune", "tiny"))
    assert set(counts) == set(available_learners())
    assert len({c["total"] for m, c in counts.items() if not m.startswith("hope")}) == 1
    assert counts["hope"]["total"] - counts["hope"]["encoder"] == counts["cms"]["total"] - counts["cms"]["encoder"]
    assert counts["hope-persistent"] == counts["hope"]  # the same model; only the memory's lifetime differs


def test_load_committed(tmp_path):
    assert runner_mod.load_committed("split-digits", root=tmp_path) is None
    cfg = preset_config("split-digits", "finetune", "tiny", seeds=(0,))
    run(cfg, tmp_path / "continual_split-digits_laptop" / "finetune", figures=False)
    got = runner_mod.load_committed("split-digits", root=tmp_path)
    assert list(got) == ["finetune"] and got["finetune"]["cpu_seconds"][0] > 0


def test_comparison_rows_and_markdown():
    res = {"config": {}, "per_seed": [{"seed": 0, "acc_matrix": R3}], "summary": summarize([R3]),
           "cpu_seconds": [2.0]}
    rows = runner_mod.comparison_rows({"toy": {"finetune": res, "cms": res}}, {"toy": {"cms": {"total": 10}}})
    assert rows[1]["d_bwt"] == 0.0 and rows[1]["params"] == 10 and rows[0]["cpu_seconds"] == 2.0
    md = runner_mod.comparison_table(rows)
    assert md.count("\n") == 3 and "| toy | cms |" in md and "10 |" in md


def test_a_rerun_verifies_its_checkpoint_refuses_crafted_ones_and_busy_folders(tmp_path, crafted_checkpoint,
                                                                               hold_folder_lock):
    """Interrupted after task 2 (checkpoints after tasks 0, 1, 2): one flipped byte in the newest is
    detected, named, and the previous one (after task 1) resumes to the uninterrupted result; a
    crafted pickle is refused without running code; truncated JSON files are named; a folder
    another process holds is refused."""
    cfg = preset_config("split-digits", "finetune", "tiny", seeds=(0,))
    ref = run(cfg, tmp_path / "ref", figures=False)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "cut", figures=False, _stop_after_task=2)
    ckpt = tmp_path / "cut" / "seeds" / "seed_0.pt"
    assert len(load_checkpoint(ckpt)["rows"]) == 3 and len(load_checkpoint(previous_path(ckpt))["rows"]) == 2
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 0x01
    ckpt.write_bytes(bytes(data))
    with pytest.warns(CheckpointWarning, match=f"the checkpoint {ckpt} fails its checksum"):
        got = run(cfg, tmp_path / "cut", figures=False)
    assert got["per_seed"] == ref["per_seed"]
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "evil", figures=False, _stop_after_task=1)
    marker = crafted_checkpoint(tmp_path / "evil" / "seeds" / "seed_0.pt")
    with pytest.raises(CorruptFileError, match="seed_0.pt cannot be read"):
        run(cfg, tmp_path / "evil", figures=False)
    assert not marker.exists()
    for name in ("seeds/seed_0.json", "config.json"):  # truncated JSON files: errors naming them
        path = tmp_path / "cut" / name
        path.write_text(path.read_text()[:20])
        with pytest.raises(CorruptFileError, match=f"{path} is not valid JSON"):
            run(cfg, tmp_path / "cut", figures=False)
    hold_folder_lock(tmp_path / "ref")
    with pytest.raises(FolderInUse, match=f"{tmp_path / 'ref'} is in use"):
        run(cfg, tmp_path / "ref", figures=False)


# ---------------------------------------------------------------------------------------------
# learning accuracy, the task-incremental evaluation and the persistent HOPE memory


def test_learning_accuracy_and_task_measures_in_the_summary():
    assert learning_accuracy(R3) == pytest.approx(0.8)
    s = summarize([R3, R3], [np.eye(3).tolist()] * 2)
    assert s["learning_acc"]["mean"] == pytest.approx(0.8) and s["task_bwt"]["mean"] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="one matrix per seed"):
        summarize([R3, R3], [R3])
    old = {"per_seed": [{"seed": 0, "acc_matrix": R3}], "summary": {"avg_acc": summarize([R3])["avg_acc"]}}
    assert runner_mod.measure_summary(old, "learning_acc")["mean"] == pytest.approx(0.8)  # recomputed
    assert runner_mod.measure_summary(old, "task_avg_acc") is None  # not measured by that run
    assert "not measured yet" in runner_mod.format_table({"finetune": old})
    with pytest.raises(ValueError, match="key must be one of"):
        runner_mod.measure_summary(old, "accuracy")


def test_task_incremental_rows():
    cfg = preset_config("split-digits", "finetune", "tiny", seeds=(0,))
    res = run(cfg)["per_seed"][0]
    R, Rt = np.array(res["acc_matrix"]), np.array(res["acc_matrix_task"])
    assert (Rt[np.triu_indices(5, 1)] == 0).all()
    assert (Rt[np.tril_indices(5)] >= R[np.tril_indices(5)]).all()  # fewer classes to choose from
    assert Rt[4, :4].mean() > R[4, :4].mean()  # the head's recency bias was most of the forgetting
    fig = Figure()
    draw_both_matrices(fig, {"config": cfg.to_dict(), "per_seed": [res]})
    assert "task-incremental" in fig.axes[1].get_title() and "incremental" not in fig.axes[0].get_title()
    with pytest.raises(ValueError, match="no 'acc_matrix_task' for seeds"):
        draw_acc_matrix(Figure(), {"config": cfg.to_dict(), "per_seed": [{"seed": 0, "acc_matrix": R.tolist()}]},
                        matrix="acc_matrix_task")
    perm = run(preset_config("permuted-digits", "finetune", "tiny", seeds=(0,), n_tasks=2))["per_seed"][0]
    assert perm["acc_matrix_task"] == perm["acc_matrix"]  # domain-incremental: every task has every class


def _persistent(dataset="banking77", seed=0, **kw):
    cfg = preset_config(dataset, "hope-persistent", "tiny", seeds=(seed,), **kw)
    s = runner_mod.build_stream(cfg, seed)
    torch.manual_seed(seed)
    return make_learner("hope-persistent", s, cfg.learner), s, cfg


def _short_and_long_texts():
    """The persistent learner's encoder and a batch of its two shortest and two longest texts."""
    L, s, _ = _persistent(max_len=48)
    xa = s.tasks[0].x_train
    order = xa[1].sum(1).argsort()
    return L.model.encoder, take(xa, torch.cat([order[:2], order[-2:]]))


def _assert_as_if_read_alone(enc, h, mask):
    """Each input's reads and final state from one padded batch equal those of reading it alone."""
    with torch.no_grad():
        y, final = enc.read_masked(h, mask, enc.start_states(len(h)))
        for i in range(len(h)):
            n = int(mask[i].sum())
            yi, fi = enc.read_masked(h[i:i + 1, :n], mask[i:i + 1, :n], enc.start_states(1))
            torch.testing.assert_close(y[i, :n], yi[0])
            for box in fi:
                for k in range(2):
                    assert torch.isfinite(final[box][k][i]).all()
                    torch.testing.assert_close(final[box][k][i], fi[box][k][0], rtol=1e-5, atol=1e-6)


def test_persistent_memory_ignores_padding_exactly():
    """The state each input ends in is the state after its last real byte: as if read alone."""
    enc, x = _short_and_long_texts()
    h, mask = enc.tokens(x)
    h = enc.norm_in(h)
    assert mask.sum(1).min() < mask.shape[1]  # some padding to ignore
    _assert_as_if_read_alone(enc, h, mask)


def test_persistent_memory_ignores_padding_exactly_at_low_retention():
    """A retention so low that undoing the padding's decay would overflow or lose precision: the
    inputs are read again in length groups, and the states are still those of reading each alone."""
    enc, x = _short_and_long_texts()
    with torch.no_grad():
        enc.memory.b_alpha.fill_(-7.0)  # retention sigmoid(-7) ~ 9e-4 per padding token
        h, mask = enc.tokens(x)
        h = enc.norm_in(h)
        n_pad = int((mask.shape[1] - mask.sum(1)).max())
        assert torch.sigmoid(torch.tensor(-7.0)) ** -n_pad > enc.max_undo(h.dtype)  # the fallback is taken
    _assert_as_if_read_alone(enc, h, mask)


def test_persistent_memory_is_carried_and_read_at_evaluation():
    L, s, cfg = _persistent("split-digits")
    assert isinstance(L, PersistentHopeLearner)
    enc = L.model.encoder
    x_test = s.tasks[0].x_test
    before = L.logits(x_test)
    assert enc.state is None  # evaluating writes nothing
    g = torch.Generator().manual_seed(0)
    L.train_step(s.tasks[0].x_train[:8], s.tasks[0].y_train[:8], 0, g)
    first = {b: (S2.clone(), S1.clone()) for b, (S2, S1) in enc.state.items()}
    assert all(S2.shape[0] == 1 and not S2.requires_grad for S2, _ in first.values())
    L.train_step(s.tasks[0].x_train[8:16], s.tasks[0].y_train[8:16], 0, g)
    assert not torch.equal(enc.state["memory"][0], first["memory"][0])  # updated once per step
    after = L.logits(x_test)
    assert torch.equal(L.logits(x_test), after)  # reads, does not write: the same state twice
    assert torch.equal(L.logits(x_test.flip(0)).flip(0), after)  # and the test order does not matter
    enc.state = first  # the logits depend on the carried state
    assert not torch.allclose(L.logits(x_test), after)
    assert not torch.allclose(before, after)
    state = L.state_dict()  # the carried state is saved and restored with the learner
    L2, _, _ = _persistent("split-digits")
    L2.load_state_dict(state)
    assert torch.equal(L2.logits(x_test), L.logits(x_test))
