"""tools.longctx_pilot: a pilot run prints what the learned-budget decision reads (tiny preset)."""

from __future__ import annotations

import argparse

import pytest

from tools import longctx_pilot as pilot


def test_a_needle_pilot_prints_the_accuracy_by_answer_position(capsys):
    assert pilot.main(["--task", "mk-niah", "--preset", "tiny", "--seed", "1", "--every", "2",
                       "--examples", "16", "--set", "steps=4", "task_options={\"n_keys\": 4}"]) == 0
    out = capsys.readouterr().out
    assert '"steps": 4' in out and '"task_options.n_keys": 4' in out
    assert "loss: 2:" in out and "4:" in out.split("loss:")[1]
    position = [line for line in out.splitlines() if line.startswith("accuracy by answer position at 24 tokens:")]
    assert len(position) == 1 and position[0].count(",") == 1  # two digits, two positions


def test_other_tasks_have_no_answer_positions_and_bad_settings_are_refused(capsys):
    assert pilot.main(["--task", "mqar", "--preset", "tiny", "--set", "steps=2"]) == 0
    assert "answer position" not in capsys.readouterr().out
    with pytest.raises(SystemExit):
        pilot.main(["--task", "mqar", "--preset", "tiny", "--set", "widht=3"])
    assert "unknown setting 'widht'" in capsys.readouterr().err
    with pytest.raises(argparse.ArgumentTypeError, match="KEY=VALUE"):
        pilot.parse_setting("steps")
    assert pilot.parse_setting("curriculum_needles=null") == ("curriculum_needles", None)
    assert pilot.parse_setting("model=abc") == ("model", "abc")
