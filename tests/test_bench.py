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
