"""Reading the reference-budget comparison (nlteach.experiments.lm_reference) on a crafted file."""

from __future__ import annotations

import json

import pytest

from nlteach.experiments import lm_reference as R

DOMAINS = ["shakespeare", "clinc150", "banking77", "clinc150", "shakespeare"]


def record(label, seed, val, *, params=200_000, lr=4e-3, moving=0.0, second_clinc=2.0, early=0.3):
    curve = [{"step": s, "tokens": s * 10, "train_loss": val + 1, "val_loss": val + moving * (600 - s) / 200}
             for s in (100, 200, 300, 400, 500, 600)]
    # [segment][bin]; adaptation to clinc150 (bin 1 minus bin 0 of its first visit) is early - 0.5
    loss = [[2.0, 1.9, 1.8], [3.0, 2.5 + early, 2.5], [3.2, 3.0, 2.9], [second_clinc, 2.45, 2.4], [2.1, 1.9, 1.8]]
    return {"label": label, "model": label, "architecture": label, "seed": seed, "val_loss": val, "test_loss": val + 0.1,
            "n_params": params, "lr": lr, "curve": curve,
            "stream": {"domains": DOMAINS, "bins": [0, 16, 64, 1536], "segment_chars": 1536, "loss": loss,
                       "window": 256}}


def comparison():
    per_seed = []
    for s in range(5):
        per_seed += [record("transformer", s, 1.80 + 0.01 * s, params=200_144, second_clinc=3.0 + 0.001 * s,
                            early=0.3 + 0.001 * s),
                     record("hope", s, 1.85 + 0.012 * s, params=199_628, moving=0.05, second_clinc=2.5, early=0.1),
                     record("hope-static-cms", s, 1.85 + 0.01 * s + 0.001 * (s % 2), params=200_400)]
    return {"config": {"params": 200_000, "steps": 600, "batch_size": 16, "seq_len": 256, "tokens_per_run": 2_457_600},
            "per_seed": per_seed,
            "lr_sweep": {"transformer": {"seed": 100, "lrs": [2e-3, 4e-3, 8e-3], "val_loss": [1.9, 1.8, 1.85],
                                         "chosen": 4e-3, "at_edge": False}}}


NGRAM = {"summary": [
    {"model": "unigram (train split)", "order": 1, "counted_on": "train split", "val_mean": 3.3, "test_mean": 3.4},
    {"model": "trigram (train split)", "order": 3, "counted_on": "train split", "val_mean": 2.0, "test_mean": 2.1},
    {"model": "5-gram (train split)", "order": 5, "counted_on": "train split", "val_mean": 1.5, "test_mean": 1.6}]}


def test_rows_checks_and_flatness():
    c = comparison()
    rows = {r["model"]: r for r in R.arm_rows(c)}
    assert rows["hope"]["seeds"] == [0, 1, 2, 3, 4] and rows["hope"]["params"] == 199_628
    assert rows["transformer"]["val"]["mean"] == pytest.approx(1.82)
    ch = R.checks(c, NGRAM)
    assert ch["params_ok"] and ch["param_gaps"]["hope"] == pytest.approx(-372 / 200_000)
    assert ch["trigram"] == 2.0 and ch["margin"] == pytest.approx(0.18) and not ch["margin_ok"]
    assert ch["flat"]["transformer"]["flat"] and not ch["flat"]["hope"]["flat"]  # hope moved 0.05 in the last 20%
    assert ch["flat"]["hope"]["change"] == pytest.approx(-0.05)
    c["per_seed"][0]["n_params"] = 210_000  # the transformer's first record sets its count: 5% over
    assert not R.checks(c, NGRAM)["params_ok"]


def test_pairs_and_verdicts_follow_the_one_rule():
    c = comparison()
    assert R.pairs(c) == [("hope", "transformer"), ("hope", "hope-static-cms")]
    lines = R.verdict_lines(c)
    assert "hope is worse" in lines[0]  # +0.05 + 0.002 s on every seed
    assert lines[1].startswith("hope - hope-static-cms") and "no difference the seeds can detect" in lines[1]


def test_gap_drift_asks_whether_the_difference_still_moves():
    c = comparison()
    g = R.gap_drift(c, "hope", "transformer")
    assert g["seeds"] == [0, 1, 2, 3, 4] and g["step"] == 400  # the last evaluation at or before 80% of 600
    assert g["before"]["mean"] == pytest.approx(0.104)  # hope's curve is 0.05 higher at step 400: 0.10 + 0.002 s
    assert g["change"]["diffs"] == pytest.approx([-0.05] * 5) and g["change"]["sign"] == -1
    assert R.drift_lines(c)[0].startswith("hope - transformer: +0.104") and "still moving in favour of hope" in R.drift_lines(c)[0]
    # the Transformer falls too, by 0.05 +- 0.01 alternating: the gap's change straddles 0
    for s, r in enumerate(x for x in c["per_seed"] if x["label"] == "transformer"):
        r["curve"] = record("transformer", s, r["val_loss"], moving=0.05 + 0.01 * (-1) ** s)["curve"]
    g = R.gap_drift(c, "hope", "transformer")
    assert g["change"]["diffs"] == pytest.approx([0.01, -0.01, 0.01, -0.01, 0.01]) and g["change"]["sign"] == 0
    assert "no change the seeds can detect" in R.drift_lines(c)[0]
    assert any(line.startswith("Was each gap settled?") for line in R.markdown(c, NGRAM))
    c["per_seed"] = [r for r in c["per_seed"] if r["label"] != "hope" or r["seed"] == 0]  # one paired seed: no line
    assert not any(line.startswith("hope - transformer") for line in R.drift_lines(c))


def write_longer_run(root, model, seed, val_at, steps=1800):
    """A crafted nlteach.train run folder of lm_reference_longer: results.json and metrics.jsonl."""
    run = root / R.LONGER / model
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({"config": {"model": model, "seed": seed, "steps": steps},
                                                  "val_loss": val_at[steps], "test_loss": val_at[steps] + 0.1}))
    lines = [{"step": s, "train_loss": 2.0, "val_loss": val_at.get(s)} for s in range(100, steps + 1, 100)]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")


def test_longer_runs_beside_the_reference_budget(tmp_path):
    assert R.load_longer(tmp_path) == {}
    write_longer_run(tmp_path, "transformer", 0, {1400: 1.55, 1800: 1.50})
    write_longer_run(tmp_path, "hope", 0, {1400: 1.52, 1800: 1.48})
    longer = R.load_longer(tmp_path)
    assert list(longer) == ["hope", "transformer"] and [p["step"] for p in longer["hope"]["curve"]] == [1400, 1800]
    lines = R.longer_lines(comparison(), longer)
    # seed 0 at the reference budget: transformer 1.80, hope 1.85; the 80% point of 1800 steps is step 1400
    assert lines[0] == ("hope, seed 0: 1.850 after 600 steps, 1.480 after 1800 (3x the characters); the last 20% "
                        "of the longer run's steps still moved it by -0.040")
    assert lines[1].startswith("transformer, seed 0: 1.800 after 600 steps, 1.500 after 1800") and "-0.050" in lines[1]
    assert lines[2] == "hope - transformer, seed 0: +0.0500 at the reference budget, -0.0200 at 3x (one seed: no interval)"
    md = R.markdown(comparison(), NGRAM, longer)
    assert any(line.startswith("How far from flat?") for line in md) and f"- {lines[2]}" in md
    assert not any(line.startswith("How far from flat?") for line in R.markdown(comparison(), NGRAM))
    write_longer_run(tmp_path, "titans", 0, {1400: 1.5, 1800: 1.4})  # no reference-budget titans: left out
    assert len(R.longer_lines(comparison(), R.load_longer(tmp_path))) == 3


def test_stream_retention_against_the_windowed_transformer():
    c = comparison()
    rows = {r["model"]: r for r in R.stream_rows(c)}
    assert rows["hope"]["retention"]["clinc150"]["mean"] == pytest.approx(-0.5)
    lines = R.stream_lines(c)
    hope = next(x for x in lines if x.startswith("clinc150, hope -"))
    assert "hope keeps more of clinc150" in hope  # -0.5 - (0.0 + 0.001 s) on every seed
    assert any("shakespeare, hope -" in x and "no difference" in x for x in lines)


def test_stream_adaptation_against_the_windowed_transformer():
    lines = R.adaptation_lines(comparison())
    hope = next(x for x in lines if x.startswith("clinc150, hope -"))
    assert hope.startswith("clinc150, hope - transformer: -0.202") and "hope adapts to clinc150 faster" in hope
    # banking77's first visit: bin 1 is 0.2 below bin 0 for every arm and seed
    assert any(x.startswith("banking77, hope-static-cms -") and "no difference" in x for x in lines)
    assert len(lines) == 4  # two new domains x two arms besides the Transformer
    c = comparison()
    c["per_seed"] = [r for r in c["per_seed"] if r["label"] != "transformer"]
    assert R.adaptation_lines(c) == []  # nothing to pair with


def test_markdown_has_the_table_the_checks_and_no_missing_piece():
    text = "\n".join(R.markdown(comparison(), NGRAM))
    for piece in ("| transformer | 200,144 | 0.004 | 5 |", "| trigram (train split) | - |", "NOT met",
                  "Learning-rate sweep", "transformer 0.002: 1.900, 0.004: 1.800, 0.008: 1.850 -> 0.004",
                  "hope keeps more of clinc150", "hope adapts to clinc150 faster"):
        assert piece in text, piece
    assert "unigram" not in text  # the table starts at the bigram
    c = comparison()
    c["lr_sweep"]["transformer"]["complete"] = False
    assert "transformer 0.002: 1.900, 0.004: 1.800, 0.008: 1.850 (sweep still running)" in "\n".join(R.markdown(c, NGRAM))
    assert R.markdown(None, NGRAM) == ["The reference-budget comparison has not been committed yet "
                                       "(`results/lm_reference`)."]


def diverged(label, seed, step, lr=4e-3):
    """A per-seed record as lm_comparison writes it for a run that stopped at a non-finite gradient."""
    r = record(label, seed, 0.0, lr=lr)
    del r["stream"]
    return {**r, "val_loss": None, "test_loss": None, "diverged_at_step": step, "curve": []}


def test_diverged_seeds_are_reported_and_kept_out_of_rows_checks_and_pairs():
    """An arm whose every seed diverged shows as "diverged" in the table and in one line naming the
    seeds and steps; it makes no pair. An arm with one diverged seed keeps its other seeds' rows and
    pairs; its diverged seed is named too."""
    c = comparison()
    c["per_seed"] += [diverged("hope-no-dgd", s, step) for s, step in ((0, 60), (1, 80), (2, 100))]
    c["per_seed"] += [record("hope-no-dgd, own lr", s, 1.86 + 0.01 * s, lr=2e-3, params=199_628) for s in (0, 1)]
    c["per_seed"] += [diverged("hope-no-dgd, own lr", 2, 340, lr=2e-3)]
    assert [r["model"] for r in R.arm_rows(c)] == ["transformer", "hope", "hope-static-cms", "hope-no-dgd, own lr"]
    assert R.arm_rows(c)[-1]["seeds"] == [0, 1]
    assert R.pairs(c)[-1] == ("hope", "hope-no-dgd, own lr") and ("hope", "hope-no-dgd") not in R.pairs(c)
    assert "over 2 paired seeds" in R.verdict_lines(c)[-1]
    assert R.checks(c, NGRAM)["flat"]["hope-no-dgd, own lr"]["seeds"] == 2
    assert [(r["model"], r["seeds"], r["steps"], r["of"]) for r in R.diverged_rows(c)] == [
        ("hope-no-dgd", [0, 1, 2], [60, 80, 100], 3), ("hope-no-dgd, own lr", [2], [340], 3)]
    text = "\n".join(R.markdown(c, NGRAM))
    assert "| hope-no-dgd | - | 0.004 | 3 | diverged | diverged |" in text
    assert ("- hope-no-dgd at learning rate 0.004: diverged on 3 of its 3 seeds (seed 0, 1, 2 at step 60, 80, 100"
            in text)
    assert "- hope-no-dgd, own lr at learning rate 0.002: diverged on 1 of its 3 seeds (seed 2 at step 340" in text
    assert "not finite), that seed is left out" in text and "not finite), those seeds are left out" in text
    assert "| hope-no-dgd, own lr | 199,628 | 0.002 | 2 |" in text
    c["lr_sweep"]["hope-no-dgd"] = {"seed": 100, "lrs": [2e-3, 4e-3], "val_loss": [1.9, None], "chosen": 2e-3,
                                    "at_edge": True, "diverged_at_step": {"0.004": 60}}
    assert "hope-no-dgd 0.002: 1.900, 0.004: diverged -> 0.002" in "\n".join(R.markdown(c, NGRAM))


def test_a_comparison_with_only_its_sweep_reads_as_such():
    c = {**comparison(), "per_seed": []}
    text = "\n".join(R.markdown(c, NGRAM))
    assert "No arm has finished a seed yet" in text and "Learning-rate sweep" in text and "Paired" not in text


def test_the_cms_level_diagnosis_is_read_when_committed(tmp_path):
    assert R.load_levels(tmp_path) is None
    path = tmp_path / R.LONGER / R.LEVELS
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"periods": [16, 64, 256], "records": []}))
    assert R.load_levels(tmp_path)["periods"] == [16, 64, 256]
