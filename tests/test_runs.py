"""nlteach.runs: the output folder of the resumable experiment runners."""

from __future__ import annotations

import json

import pytest
import torch

from nlteach.runs import comparable, open_run_dir, torch_threads


def test_open_run_dir_reads_finished_seeds_and_accepts_more_seeds(tmp_path):
    settings = {"lr": 0.1, "seeds": [0, 1]}
    assert open_run_dir(tmp_path, settings, [0, 1]) == {}
    assert json.loads((tmp_path / "config.json").read_text()) == settings
    (tmp_path / "seeds" / "seed_1.json").write_text(json.dumps({"acc": 0.5}))
    grown = {"lr": 0.1, "seeds": [0, 1, 2]}  # more seeds: the same experiment
    assert open_run_dir(tmp_path, grown, [0, 1, 2]) == {1: {"acc": 0.5}}
    assert json.loads((tmp_path / "config.json").read_text()) == grown


def test_open_run_dir_refuses_other_settings(tmp_path):
    open_run_dir(tmp_path, {"lr": 0.1, "steps": 5, "seeds": [0]}, [0])
    with pytest.raises(ValueError, match=r"other settings \(differs in \['lr'\]\)"):
        open_run_dir(tmp_path, {"lr": 0.2, "steps": 5, "seeds": [0]}, [0])


def test_comparable_ignores_only_the_seed_list():
    assert comparable({"a": 1, "seeds": [3]}) == {"a": 1}


def test_torch_threads_restores_and_checks():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads must be a positive int or None, got 0"):
        with torch_threads(0):
            pass
