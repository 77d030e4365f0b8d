"""tools.cms_levels: the command line of stream.cms_level_records (tests/experiments/test_stream.py tests the
records themselves)."""

from __future__ import annotations

from nlteach.experiments import stream
from nlteach.text import CharVocab
from tools import cms_levels

VOCAB = CharVocab("\n !',.?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
SOURCES = {"shakespeare": [f"LINE {chr(65 + i % 26)}: to be or not to be.\n" for i in range(200)],
           "clinc150": [f"what is the weather in city {i}" for i in range(200)],
           "banking77": [f"My card {i} was declined, why?" for i in range(200)]}


def test_the_command_line_writes_the_records_with_their_provenance(tmp_path, monkeypatch, capsys):
    """A trained run folder (tiny preset, two steps) read by ``main``; ``--out`` writes the JSON."""
    from nlteach.runs.io import read_json
    from nlteach.train import train

    monkeypatch.setattr(stream, "_domain_texts", lambda: SOURCES)
    run = tmp_path / "run"
    train(model="hope", preset="tiny", out=str(run), steps=2, eval_every=2, seed=0, progress=False, sample_chars=0)
    out = tmp_path / "levels.json"
    assert cms_levels.main(["--run", str(run), "--window", "16", "--segment-chars", "48", "--streams", "1",
                            "--out", str(out)]) == 0
    text = capsys.readouterr().out
    d = read_json(out)
    assert [r["frozen"] for r in d["records"]] == [list(range(k, len(d["periods"]))) for k in
                                                   range(len(d["periods"]), -1, -1)]
    assert d["provenance"]["command"] and "git_dirty" in d["provenance"] and d["run_provenance"]["command"]
    assert "levels switched off (periods): none" in text  # one block per set, each visiting clinc150 twice
    assert text.count("clinc150") == 2 * len(d["records"]) and f"written to {out}" in text
    rows = stream.levels_table_rows(d)
    assert [r["switched off (periods)"] for r in rows][0] == "none" and len(rows) == len(d["periods"]) + 1
    assert list(rows[0])[1:] == [f"{k + 1}. {x}" for k, x in enumerate(stream.DOMAINS_IN_ORDER)]
    assert rows[-1]["5. shakespeare"] == f"{d['records'][-1]['record']['loss'][-1][-1]:.3f}"
