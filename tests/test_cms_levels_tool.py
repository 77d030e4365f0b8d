"""tools.cms_levels: the domain stream read with chosen CMS levels' in-context updates switched off."""

from __future__ import annotations

import pytest
import torch

from nlteach.experiments import stream
from nlteach.models import ModelConfig, build_model
from nlteach.text import CharVocab
from tools import cms_levels

VOCAB = CharVocab("\n !',.?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
SOURCES = {"shakespeare": [f"LINE {chr(65 + i % 26)}: to be or not to be.\n" for i in range(200)],
           "clinc150": [f"what is the weather in city {i}" for i in range(200)],
           "banking77": [f"My card {i} was declined, why?" for i in range(200)]}


def model(name: str = "hope") -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=VOCAB.size, dim=16, n_layers=2, n_heads=2, chunk_size=4, proj_chunk_size=4,
                      cms_periods=(2, 8, 32))
    return build_model(name, cfg).eval()


def test_each_set_of_slowest_levels_switched_off_then_restored(monkeypatch):
    monkeypatch.setattr(stream, "_domain_texts", lambda: SOURCES)
    assert cms_levels.frozen_sets(3) == [frozenset(), {2}, {1, 2}, {0, 1, 2}]
    m = model()
    recs = cms_levels.level_records(m, VOCAB, window=16, segment_chars=48, n_streams=1)
    assert [r["frozen"] for r in recs] == [[], [2], [1, 2], [0, 1, 2]]
    assert all(b.frozen_levels == frozenset() for b in cms_levels.cms_branches(m))  # restored
    # every level off is the inner step 0
    for b in cms_levels.cms_branches(m):
        b.eta_max = 0.0
    with torch.no_grad():
        static = stream.evaluate_streams(m, VOCAB, window=16, segment_chars=48, n_streams=1)
    torch.testing.assert_close(torch.tensor(recs[-1]["record"]["loss"]), torch.tensor(static["loss"]))
    assert not torch.allclose(torch.tensor(recs[0]["record"]["loss"]), torch.tensor(static["loss"]), rtol=1e-5)
    text = cms_levels.table(recs, (2, 8, 32))
    assert "levels switched off (periods): none" in text and "levels switched off (periods): 2, 8, 32" in text
    assert text.count("clinc150") == 2 * len(recs)  # the stream visits clinc150 twice


def test_a_model_without_an_in_context_cms_is_refused():
    with pytest.raises(ValueError, match="no in-context CMS"):
        cms_levels.cms_branches(model("hope-static-cms"))
