import subprocess
import sys

import torch

from nlteach.bench import measure, text_table


def test_bench_cli_lists_suites():
    out = subprocess.run([sys.executable, "-m", "nlteach.bench", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "SUITE" in out


def test_measure_returns_positive_median_and_runs_fn():
    n = []
    t = measure(lambda: n.append(torch.ones(3).sum()), warmup=2, repeat=3)
    assert t > 0 and len(n) == 5


def test_text_table():
    s = text_table([{"a": 1.23456, "b": "x"}], ["a", "b"])
    assert "1.23" in s and "x" in s


def test_bench_writes_its_results_with_provenance(tmp_path, monkeypatch, capsys):
    from nlteach.bench.__main__ import main
    from nlteach.runs.io import read_json
    from nlteach.runs.threads import torch_threads

    monkeypatch.setenv("NLTEACH_SIZE", "tiny")
    with torch_threads(torch.get_num_threads()):  # --threads sets torch's count: restore it afterwards
        assert main(["optim", "--out", str(tmp_path), "--threads", "1"]) == 0
    res = read_json(tmp_path / "bench_optim.json")
    assert res["suite"] == "optim" and res["preset"] == "tiny"
    assert set(res["provenance"]) >= {"git_commit", "git_dirty", "command", "torch", "device", "threads"}
    assert res["provenance"]["threads"] == 1
