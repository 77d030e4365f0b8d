"""The character n-gram baselines of notebook 09 (nlteach.experiments.ngram): a hand-computed
corpus, an independent slow implementation of the same definitions, normalization, the events a
window gives, and the tiny Shakespeare rows."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict

import numpy as np
import pytest
import torch

from nlteach.experiments import lm_comparison, ngram
from nlteach.text import CharCorpus, CharVocab, RandomWindowSampler, eval_windows, get_batch


def _reference_log_probs(rows: list[list[int]], n: int, vocab_size: int, discount: float | None,
                         queries: list[list[int]]) -> list[float]:
    """Interpolated Kneser-Ney written out with dictionaries, for the last character of each query
    row given its earlier characters (the module docstring's definitions, read independently)."""
    counts: dict[int, Counter] = {}
    counts[n] = Counter((tuple(r[t - n + 1:t]), r[t]) for r in rows for t in range(1, len(r)) if t >= n - 1)
    for k in range(n - 1, 0, -1):
        lefts: dict[tuple, set] = defaultdict(set)
        for r in rows:
            for t in range(max(1, k - 1), len(r)):
                lefts[(tuple(r[t - k + 1:t]), r[t])].add(r[t - k] if t - k >= 0 else "start")
        counts[k] = Counter({key: len(s) for key, s in lefts.items()})

    def ney(c: Counter) -> float:
        if discount is not None:
            return discount
        n1, n2 = sum(v == 1 for v in c.values()), sum(v == 2 for v in c.values())
        return min(max(n1 / (n1 + 2 * n2) if n1 + n2 else 0.1, 0.1), 0.9)

    discounts = {k: ney(c) for k, c in counts.items()}
    out = []
    for q in queries:
        ctx, c = tuple(q[:-1]), q[-1]
        p = 1.0 / vocab_size
        for k in range(1, n + 1):
            if len(ctx) < k - 1:
                break
            h = ctx[len(ctx) - (k - 1):] if k > 1 else ()
            seen = {cc: v for (hh, cc), v in counts[k].items() if hh == h}
            if not seen:
                continue
            d = discounts[k]
            p = (max(seen.get(c, 0) - d, 0) + d * len(seen) * p) / sum(seen.values())
        out.append(math.log(p))
    return out


def test_a_hand_computed_bigram():
    # events of 0 1 0 1 1: 1|0, 0|1, 1|0, 1|1. Bigram counts (0,1):2 (1,0):1 (1,1):1; unigram
    # continuation counts: 1 follows {0, 1} -> 2, 0 follows {1} -> 1. With D = 1/2:
    # P1(0) = (1/2 + 1/2*2*1/2)/3 = 1/3, P1(1) = 2/3; P2(1|0) = (3/2 + 1/2*1*2/3)/2 = 11/12,
    # P2(0|1) = (1/2 + 1/2*2*1/3)/2 = 5/12, P2(1|1) = (1/2 + 1/2*2*2/3)/2 = 7/12.
    model = ngram.fit(torch.tensor([0, 1, 0, 1, 1]), 2, 2, discount=0.5)
    assert model.probs([0]).tolist() == pytest.approx([1 / 12, 11 / 12])
    assert model.probs([1]).tolist() == pytest.approx([5 / 12, 7 / 12])
    assert model.probs([]).tolist() == pytest.approx([1 / 3, 2 / 3])
    expected = [11 / 12, 5 / 12, 11 / 12, 7 / 12]
    assert model.log_probs(torch.tensor([0, 1, 0, 1, 1])).tolist() == pytest.approx(np.log(expected).tolist())
    assert model.nll(torch.tensor([0, 1, 0, 1, 1])) == pytest.approx(-np.mean(np.log(expected)))


@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize("discount", [None, 0.75])
def test_it_matches_a_slow_dictionary_implementation(n, discount):
    g = np.random.default_rng(n)
    rows = g.integers(0, 4, size=(6, 9))  # windows: each row on its own
    model = ngram.fit(torch.from_numpy(rows), n, 4, discount=discount)
    test_rows = g.integers(0, 4, size=(3, 7))
    queries = [list(r[:t + 1]) for r in test_rows for t in range(1, len(r))]
    expected = _reference_log_probs(rows.tolist(), n, 4, discount, queries)
    assert model.log_probs(torch.from_numpy(test_rows)).flatten().tolist() == pytest.approx(expected)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("discount", [None, 0.0, 0.3, 1.0])
def test_probabilities_sum_to_one_after_any_context(n, discount):
    g = np.random.default_rng(0)
    model = ngram.fit(torch.from_numpy(g.integers(0, 5, size=300)), n, 7, discount=discount)  # ids 5, 6 unseen
    for length in range(n + 2):
        for _ in range(5):
            p = model.probs(g.integers(0, 7, size=length).tolist())
            assert p.shape == (7,)
            assert float(p.sum()) == pytest.approx(1.0, abs=1e-12)
            assert bool((p >= 0).all())
            if discount is None or discount > 0:
                assert bool((p > 0).all())  # every character keeps a positive probability


def test_a_unigram_scores_the_entropy_of_its_own_counts():
    tokens = torch.from_numpy(np.random.default_rng(1).integers(0, 6, size=2000))
    model = ngram.fit(tokens, 1, 6, discount=0.0)
    freq = torch.bincount(tokens[1:], minlength=6).double() / (tokens.numel() - 1)  # the predicted characters
    entropy = float(-(freq * freq.log()).sum())
    assert model.nll(tokens) == pytest.approx(entropy, rel=1e-12)
    assert ngram.fit(tokens, 1, 6).nll(tokens) == pytest.approx(entropy, abs=1e-3)  # smoothing costs little


def test_more_training_data_never_hurts_the_bigram_on_a_periodic_sequence():
    pattern = [0, 1, 2, 0, 1, 3, 0, 2, 1, 3]
    stream = torch.tensor(pattern * 100)
    held_out = torch.tensor(pattern * 5)
    losses = [ngram.fit(stream[:length], 2, 4).nll(held_out) for length in (12, 25, 50, 100, 200, 400, 1000)]
    assert all(b <= a + 1e-12 for a, b in zip(losses, losses[1:], strict=False)), losses
    assert losses[-1] < losses[0]


def test_the_loss_on_a_deterministic_sequence_goes_to_zero_once_the_context_determines_it():
    stream = torch.tensor([0, 1, 0, 2, 0, 3, 0, 4] * 500)  # after x 0 the next character is x + 1 (4 -> 1)
    held_out = ngram.windows(stream, np.arange(0, 3000, 301), 200)  # [10, 201]
    loss = {n: ngram.fit(stream, n, 5).nll(held_out) for n in (1, 2, 3, 5)}
    assert loss[1] > 1.0 and loss[2] > 0.5  # one character of context leaves the character after 0 open
    assert loss[3] < 0.05 and loss[5] < 0.05


def test_no_context_crosses_a_window_start():
    # training: the bigram 1 -> 2 spans two windows and is not counted
    rows = torch.tensor([[0, 1], [2, 3]])
    model = ngram.fit(rows, 2, 4, discount=0.5)
    assert torch.equal(model.probs([1]), model.probs([]))  # context 1 never seen: the unigram level
    assert not torch.equal(ngram.fit(rows.flatten(), 2, 4, discount=0.5).probs([1]), model.probs([]))
    assert torch.equal(ngram.fit(rows.flip(0), 2, 4, discount=0.5).probs([1]), model.probs([1]))
    # evaluation: each window is scored on its own; its first prediction has one character of context
    tokens = torch.from_numpy(np.random.default_rng(2).integers(0, 4, size=400))
    model = ngram.fit(tokens, 3, 4)
    win = ngram.windows(tokens, np.array([5, 100, 250]), 20)  # [3, 21]
    logp = model.log_probs(win)  # [3, 20]
    assert logp.shape == (3, 20)
    for i in range(3):
        assert torch.equal(logp[i], model.log_probs(win[i]))
        assert float(logp[i, 0]) == pytest.approx(math.log(float(model.probs(win[i, :1])[win[i, 1]])))
    preceded = model.probs(tokens[99:101])[int(tokens[101])]  # the same character with the one before the window
    assert float(logp[1, 0]) != pytest.approx(math.log(float(preceded)))


def test_windows_and_run_windows_are_what_a_neural_run_sees():
    tokens = torch.arange(1000) % 50
    starts = ngram.run_windows(tokens, steps=3, batch_size=4, seq_len=16, seed=7)
    sampler = RandomWindowSampler(1000, 16, 4, seed=7)
    assert np.array_equal(starts, np.concatenate([sampler.next_starts() for _ in range(3)]))
    win = ngram.windows(tokens, starts, 16)  # [12, 17]
    x, y = get_batch(tokens, starts, 16)
    assert torch.equal(win[:, :-1], x) and torch.equal(win[:, 1:], y)


def test_wrong_arguments_are_named():
    tokens = torch.tensor([0, 1, 2, 1])
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        ngram.fit(tokens, 0, 3)
    with pytest.raises(ValueError, match="tokens holds ids in"):
        ngram.fit(tokens, 2, 2)
    with pytest.raises(ValueError, match="integer token ids"):
        ngram.fit(tokens.float(), 2, 3)
    with pytest.raises(ValueError, match="discount must be None"):
        ngram.fit(tokens, 2, 3, discount=1.5)
    with pytest.raises(ValueError, match="does not fit"):
        ngram.fit(tokens, 40, 3)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        ngram.fit(torch.tensor([[0], [1]]), 2, 3)


def test_tiny_shakespeare_rows_are_plausible(data_mirror):
    rows = ngram.baseline_rows("laptop", seeds=(0,), orders=(3, 5))
    z = lm_comparison.sizes("laptop")
    by = {(r["order"], r["counted_on"]): r for r in rows}
    assert set(by) == {(3, "train split"), (5, "train split"), (3, "run windows"), (5, "run windows")}
    trigram, fivegram = by[3, "train split"], by[5, "train split"]
    assert 1.8 < trigram["val_loss"] < 2.3  # interpolated Kneser-Ney; ~1.98 at the laptop preset
    assert fivegram["val_loss"] < trigram["val_loss"] - 0.2
    assert by[3, "run windows"]["train_chars"] == z["steps"] * z["batch_size"] * z["seq_len"]
    assert by[5, "run windows"]["val_loss"] > fivegram["val_loss"]  # fewer characters counted
    assert trigram["val_bpc"] == pytest.approx(trigram["val_loss"] / math.log(2))


def test_the_command_line_writes_the_rows_and_their_provenance(data_mirror, tmp_path, capsys):
    assert ngram.main(["--preset", "tiny", "--seeds", "0", "1", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"),
                     parse_constant=lambda c: pytest.fail(f"results.json holds {c}, not strict JSON"))
    assert res["preset"] == "tiny" and res["seeds"] == [0, 1] and res["settings"] == lm_comparison.sizes("tiny")
    assert len(res["rows"]) == 3 * len(ngram.ORDERS)  # the whole split, then seeds 0 and 1
    assert [r["model"] for r in res["summary"]] == [r["model"] for r in res["rows"][:2 * len(ngram.ORDERS)]]
    assert res["provenance"]["command"].startswith("python -m nlteach.experiments.ngram --preset tiny")
    assert "5-gram (run windows)" in capsys.readouterr().out


def test_the_command_line_refuses_a_repeated_seed(capsys):
    with pytest.raises(SystemExit) as stop:
        ngram.main(["--seeds", "0", "0"])
    assert stop.value.code == 2 and "--seeds" in capsys.readouterr().err


def test_baseline_rows_on_a_toy_corpus_with_given_settings():
    text = "abcab cabba " * 60
    vocab = CharVocab.from_text(text)
    corpus = CharCorpus("toy", vocab, {"train": vocab.encode(text[:500]), "val": vocab.encode(text[500:620]),
                                       "test": vocab.encode(text[620:])})
    settings = {"steps": 3, "batch_size": 2, "seq_len": 10, "eval_windows": 4}
    rows = ngram.baseline_rows(seeds=(0, 1), orders=(1, 3), corpus=corpus, settings=settings)
    assert [(r["model"], r["seed"]) for r in rows] == [
        ("unigram (train split)", None), ("trigram (train split)", None), ("unigram (run windows)", 0),
        ("trigram (run windows)", 0), ("unigram (run windows)", 1), ("trigram (run windows)", 1)]
    assert [r["train_chars"] for r in rows] == [499, 499] + [3 * 2 * 10] * 4
    starts = eval_windows(120, 10, 4)
    val = ngram.windows(corpus["val"], starts, 10)
    assert rows[1]["val_loss"] == pytest.approx(ngram.fit(corpus["train"], 3, vocab.size).nll(val))
    run = ngram.windows(corpus["train"], ngram.run_windows(500, steps=3, batch_size=2, seq_len=10, seed=1), 10)
    assert rows[5]["val_loss"] == pytest.approx(ngram.fit(run, 3, vocab.size).nll(val))
    with pytest.raises(ValueError, match="settings lacks eval_windows"):
        ngram.baseline_rows(corpus=corpus, settings={"steps": 3, "batch_size": 2, "seq_len": 10})


def test_summarize_rows_averages_the_run_rows_over_seeds():
    rows = [{"model": "bigram (train split)", "order": 2, "counted_on": "train split", "seed": None,
             "train_chars": 100, "val_loss": 2.0, "test_loss": 2.1}]
    rows += [{"model": "bigram (run windows)", "order": 2, "counted_on": "run windows", "seed": s,
              "train_chars": 30, "val_loss": v, "test_loss": v + 0.1} for s, v in ((0, 2.2), (1, 2.4))]
    whole, run = ngram.summarize_rows(rows)
    assert whole["model"] == "bigram (train split)" and whole["val_mean"] == 2.0 and whole["val_std"] is None
    assert run["seeds"] == [0, 1] and run["val_mean"] == pytest.approx(2.3)
    assert run["test_mean"] == pytest.approx(2.4) and run["val_std"] == pytest.approx(math.sqrt(0.02))


def test_the_command_line_takes_the_comparisons_budget(monkeypatch, tmp_path, capsys):
    seen = []
    monkeypatch.setattr(ngram, "baseline_rows", lambda preset, seeds: seen.append((preset, tuple(seeds))) or [])
    assert ngram.main(["--budget", "reference", "--seeds", "0", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert seen == [("reference", (0,))] and res["preset"] == "reference"
    assert res["settings"] == lm_comparison.sizes("reference")
