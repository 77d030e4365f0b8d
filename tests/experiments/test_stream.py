"""The domain stream of notebook 09 (nlteach.experiments.stream)."""

from __future__ import annotations

import math

import pytest
import torch

from nlteach.experiments import lm_comparison as C
from nlteach.experiments import stream as S
from nlteach.models import ModelConfig, build_model
from nlteach.text import CharVocab

VOCAB = CharVocab("\n !',.?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def word(i: int) -> str:
    return "".join(chr(97 + (i // 26 ** k) % 26) for k in range(3))


SOURCES = {
    "shakespeare": [f"LINE {chr(65 + i % 26)}: to be or not to be, that is the question.\n" for i in range(400)],
    "clinc150": [f"what is the weather in {word(i)} 1" if i % 7 else f"set an alarm {word(i)}" for i in range(300)],
    "banking77": [f"My card {i} was declined, why?" for i in range(300)],
}


def text_of(stream: S.Stream) -> str:
    return "".join(VOCAB.chars[i] for i in stream.tokens.tolist())


def test_segments_follow_the_domains_and_drop_unknown_characters():
    st = S.build_stream(VOCAB, segment_chars=200, seed=3, sources=SOURCES)
    assert [d for d, _, _ in st.segments] == list(S.DOMAINS_IN_ORDER)
    assert [(a, b) for _, a, b in st.segments] == [(200 * i, 200 * (i + 1)) for i in range(5)]
    assert st.tokens.numel() == 1000
    text = text_of(st)
    assert "LINE" in text[:200] and "weather" in text[200:400] or "alarm" in text[200:400]
    assert "card" in text[400:600] and "LINE" not in text[200:800]
    assert not any(ch.isdigit() for ch in text)  # digits are not in VOCAB: dropped
    first, second = set(text[200:400].splitlines()[:-1]), set(text[600:800].splitlines()[1:])
    assert first and second and not first & second  # the second visit reads other queries


def test_the_stream_is_a_function_of_its_seed():
    a, b = (S.build_stream(VOCAB, segment_chars=150, seed=5, sources=SOURCES) for _ in range(2))
    c = S.build_stream(VOCAB, segment_chars=150, seed=6, sources=SOURCES)
    assert torch.equal(a.tokens, b.tokens) and not torch.equal(a.tokens, c.tokens)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="domains="):
        S.build_stream(VOCAB, domains=("poetry",), sources=SOURCES)
    with pytest.raises(ValueError, match="segment_chars must be"):
        S.build_stream(VOCAB, segment_chars=1, sources=SOURCES)
    with pytest.raises(ValueError, match="too few unused queries"):
        S.build_stream(VOCAB, segment_chars=20_000, domains=("clinc150",), sources=SOURCES)
    with pytest.raises(ValueError, match="retention needs two"):
        S.retention({"domains": ["clinc150", "banking77"], "loss": [[1.0], [2.0]]}, "banking77")


def test_segment_losses_average_the_right_positions_and_retention_subtracts_visits():
    nll = torch.arange(1.0, 12.0)  # entry i predicts character i + 1 of a 12-character stream
    segments = [("clinc150", 0, 4), ("banking77", 4, 8), ("clinc150", 8, 12)]
    got = S.segment_losses(nll, segments, bins=(0, 2, 4))
    # segment 0: positions 0 (no prediction), 1 -> entry 0; positions 2, 3 -> entries 1, 2
    assert got == [[1.0, 2.5], [4.5, 6.5], [8.5, 10.5]]
    assert S.retention({"domains": ["clinc150", "banking77", "clinc150"], "loss": got}, "clinc150") == [7.5, 8.0]
    assert S.bins_for(1536) == (0, 16, 64, 256, 768, 1536) and S.bins_for(100) == (0, 16, 64, 100)


def test_stream_nll_is_the_models_loss_and_restores_the_window():
    torch.manual_seed(0)
    model = build_model("transformer", ModelConfig(vocab_size=VOCAB.size, dim=16, n_layers=2, n_heads=2))
    tokens = torch.randint(0, VOCAB.size, (40,))
    full = torch.nn.functional.cross_entropy(model.eval()(tokens[None, :-1])[0], tokens[1:], reduction="none")
    assert torch.allclose(S.stream_nll(model, tokens, window=None), full, atol=1e-6)
    windowed = S.stream_nll(model, tokens, window=8)
    assert torch.allclose(windowed[:8], full[:8], atol=1e-6) and not torch.allclose(windowed, full)
    assert [m.window for m in S.attention_layers(model)] == [None, None]
    with pytest.raises(ValueError, match="1-d id tensor"):
        S.stream_nll(model, tokens[None], window=None)


def test_paired_retention_compares_arms_seed_by_seed():
    def rec(label, seed, second):
        return {"label": label, "seed": seed,
                "stream": {"domains": ["clinc150", "banking77", "clinc150"], "loss": [[2.0], [3.0], [second]]}}

    per_seed = [rec("a", s, 1.5 + 0.01 * s) for s in range(4)] + [rec("b", s, 2.0) for s in range(3)]
    d = S.paired_retention(per_seed, "a", "b", "clinc150")
    assert d["seeds"] == [0, 1, 2] and d["mean"] == pytest.approx(-0.49) and d["ci95"][1] < 0


def test_adaptation_is_the_fall_of_the_loss_after_switching_to_a_new_domain():
    rec = {"domains": ["shakespeare", "clinc150", "banking77", "clinc150"],
           "loss": [[2.0, 1.9, 1.8], [3.0, 2.6, 2.2], [3.5, 3.1, 2.8], [2.5, 2.3, 2.2]]}
    assert S.adaptation(rec, "clinc150") == pytest.approx(-0.4)  # the first visit (segment 1), not the return
    assert S.adaptation(rec, "banking77", bin_index=2) == pytest.approx(-0.7)
    with pytest.raises(ValueError, match="'shakespeare' must be switched to"):
        S.adaptation(rec, "shakespeare")  # the stream starts there: no switch
    for bad in (0, 3):
        with pytest.raises(ValueError, match=f"bin_index must be in \\[1, 2\\].*got {bad}"):
            S.adaptation(rec, "clinc150", bin_index=bad)

    def arm(label, seed, bin1):
        return {"label": label, "seed": seed, "stream": {**rec, "loss": [rec["loss"][0], [3.0, bin1, 2.2]] + rec["loss"][2:]}}

    per_seed = [arm("a", s, 2.3 + 0.01 * s) for s in range(3)] + [arm("b", s, 2.6) for s in range(3)]
    d = S.paired_adaptation(per_seed, "a", "b", "clinc150")
    assert d["seeds"] == [0, 1, 2] and d["mean"] == pytest.approx(-0.29) and d["ci95"][1] < 0


def test_a_reference_arm_records_its_stream(tmp_path, monkeypatch, data_mirror):
    """At a budget in STREAM_BUDGETS every trained arm (not the sweep) reads the streams."""
    monkeypatch.setattr(C, "STREAM_BUDGETS", ("tiny",))
    monkeypatch.setattr(C, "STREAM_SEGMENT_CHARS", 96)
    res = C.run_comparison(tmp_path / "r", preset="tiny", seeds=(0,), models=("transformer", "hope"),
                           ablations=(), multi_frequency_seeds=())
    for r in res["per_seed"]:
        s = r["stream"]
        assert s["domains"] == list(S.DOMAINS_IN_ORDER) and s["window"] == C.SIZES["tiny"]["seq_len"]
        assert len(s["loss"]) == 5 and all(len(row) == len(S.bins_for(96)) - 1 and all(math.isfinite(x) for x in row) for row in s["loss"])


def hope_model(name: str = "hope") -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=VOCAB.size, dim=16, n_layers=2, n_heads=2, chunk_size=4, proj_chunk_size=4,
                      cms_periods=(2, 8, 32))
    return build_model(name, cfg).eval()


def test_cms_level_records_switch_off_each_set_of_slowest_levels_then_restore(monkeypatch):
    monkeypatch.setattr(S, "_domain_texts", lambda: SOURCES)
    assert S.frozen_sets(3) == [frozenset(), {2}, {1, 2}, {0, 1, 2}]
    m = hope_model()
    recs = S.cms_level_records(m, VOCAB, window=16, segment_chars=48, n_streams=1)
    assert [r["frozen"] for r in recs] == [[], [2], [1, 2], [0, 1, 2]]
    assert all(b.frozen_levels == frozenset() for b in S.cms_branches(m))  # restored
    # every level off is the inner step 0
    for b in S.cms_branches(m):
        b.eta_max = 0.0
    with torch.no_grad():
        static = S.evaluate_streams(m, VOCAB, window=16, segment_chars=48, n_streams=1)
    torch.testing.assert_close(torch.tensor(recs[-1]["record"]["loss"]), torch.tensor(static["loss"]))
    assert not torch.allclose(torch.tensor(recs[0]["record"]["loss"]), torch.tensor(static["loss"]), rtol=1e-5)


def test_a_model_without_an_in_context_cms_is_refused():
    with pytest.raises(ValueError, match="no in-context CMS"):
        S.cms_branches(hope_model("hope-static-cms"))
