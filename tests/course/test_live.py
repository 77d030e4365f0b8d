"""nlteach.course.live: the opt-in rule of the notebooks' slow training cells."""

import pytest

from nlteach.course import live


@pytest.fixture(autouse=True)
def no_override(monkeypatch):
    monkeypatch.delenv(live.ENV_VAR, raising=False)


@pytest.mark.parametrize("preset", ["laptop", "full"])
def test_skipped_by_default_at_laptop_and_full(preset):
    assert live.should_run(False, preset=preset) is False


def test_live_by_default_at_tiny_so_ci_runs_the_code():
    assert live.should_run(False, preset="tiny") is True


@pytest.mark.parametrize("preset", ["tiny", "laptop", "full"])
def test_flag_opts_in(preset):
    assert live.should_run(True, preset=preset) is True


@pytest.mark.parametrize("value", ["1", "true", "YES", " on "])
def test_env_opts_in_whatever_the_flag(monkeypatch, value):
    monkeypatch.setenv(live.ENV_VAR, value)
    assert live.should_run(False, preset="laptop") is True


@pytest.mark.parametrize("value", ["0", "false", "No", "off"])
def test_env_opts_out_even_at_tiny_and_with_the_flag(monkeypatch, value):
    monkeypatch.setenv(live.ENV_VAR, value)
    assert live.should_run(True, preset="tiny") is False


def test_empty_env_is_unset(monkeypatch):
    monkeypatch.setenv(live.ENV_VAR, "")
    assert live.should_run(False, preset="laptop") is False


def test_env_typo_is_an_error(monkeypatch):
    monkeypatch.setenv(live.ENV_VAR, "ture")
    with pytest.raises(ValueError, match="NLTEACH_TRAIN_LIVE"):
        live.should_run(False, preset="laptop")


def test_preset_from_the_environment(monkeypatch):
    monkeypatch.setenv("NLTEACH_SIZE", "laptop")
    assert live.should_run(False) is False
    monkeypatch.setenv("NLTEACH_SIZE", "tiny")
    assert live.should_run(False) is True


def test_skip_message_names_the_results_the_flag_and_the_cost(capsys):
    assert live.live_cell(False, minutes=15, results="lm_tinyshakespeare_laptop", preset="laptop") is False
    out = capsys.readouterr()
    assert out.err == ""
    assert out.out == ("skipped: loading the committed results from results/lm_tinyshakespeare_laptop; "
                       "set TRAIN_LIVE = True to retrain (about 15 minutes at the laptop preset)\n")


def test_skip_message_with_another_fallback_and_action():
    msg = live.skip_message(10, instead="showing the committed timings below", action="time the jobs now")
    assert msg == ("skipped: showing the committed timings below; set TRAIN_LIVE = True to time the jobs now "
                   "(about 10 minutes at the laptop preset)")
    assert "1 minute at" in live.skip_message(1, results="x")


def test_a_cell_must_say_what_it_uses_when_skipped():
    with pytest.raises(ValueError, match="results="):
        live.live_cell(False, minutes=3, preset="tiny")  # caught at tiny too, not only where it skips


def test_live_lines_say_why(capsys, monkeypatch):
    assert live.live_cell(False, minutes=9, results="x", preset="tiny") is True
    assert "live at the tiny preset" in capsys.readouterr().out
    assert live.live_cell(True, minutes=9, results="x", preset="laptop") is True
    assert "live (TRAIN_LIVE = True) at the laptop preset: about 9 minutes" in capsys.readouterr().out
    monkeypatch.setenv(live.ENV_VAR, "1")
    assert live.live_cell(False, minutes=9, results="x", preset="full") is True
    assert "$NLTEACH_TRAIN_LIVE=1" in capsys.readouterr().out
