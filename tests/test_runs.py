"""nlteach.runs: files, RNG states, run folders and the resume policy, provenance, statistics,
tables, common command-line options."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from nlteach.runs import RESULTS_ROOT, cli, commands, io, provenance, rng, seeds, stats, tables
from nlteach.runs.console import ENV_VAR as LOG_STREAM_VAR
from nlteach.runs.console import in_notebook, log
from nlteach.runs.lock import FolderInUse, FolderLock
from nlteach.runs.rundir import RunDir, SettingsMismatch, check_same_settings, settings_diff
from nlteach.runs.sweep import choose_on_grid
from nlteach.runs.threads import ThreadCountWarning, torch_threads

ROOT = Path(__file__).resolve().parents[1]

# -- io -------------------------------------------------------------------------------------------


def test_atomic_writes_leave_no_temporary_files(tmp_path):
    io.atomic_write_json(tmp_path / "a" / "x.json", {"k": [1, 2]})
    io.atomic_save({"w": torch.ones(2)}, tmp_path / "a" / "c.pt")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["c.pt", "c.pt.sha256", "x.json"]
    assert io.read_json(tmp_path / "a" / "x.json") == {"k": [1, 2]}
    assert torch.equal(io.load_checkpoint(tmp_path / "a" / "c.pt")["w"], torch.ones(2))
    io.atomic_save({"w": torch.zeros(2)}, tmp_path / "a" / "c.pt")  # the first one is kept as c.prev.pt
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["c.prev.pt", "c.prev.pt.sha256", "c.pt",
                                                                  "c.pt.sha256", "x.json"]
    io.remove_checkpoint(tmp_path / "a" / "c.pt")
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["x.json"]


def test_checkpoint_checksum_in_sha256sum_format(tmp_path):
    path = io.atomic_save({"w": torch.arange(3)}, tmp_path / "c.pt")
    digest, name = (tmp_path / "c.pt.sha256").read_text().split()
    assert name == "c.pt" and digest == hashlib.sha256(path.read_bytes()).hexdigest()


def _flip_byte_in_tensor_data(path, value: torch.Tensor):
    """Flip one byte inside the stored bytes of ``value`` (the file still loads without a checksum)."""
    data = bytearray(path.read_bytes())
    at = bytes(data).index(value.numpy().tobytes()) + 5
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_flipped_byte_is_detected_and_the_previous_checkpoint_is_used(tmp_path):
    path = tmp_path / "c.pt"
    first, second = torch.arange(64, dtype=torch.float32), torch.arange(64, dtype=torch.float32) * 2
    io.atomic_save({"step": 1, "w": first}, path)
    io.atomic_save({"step": 2, "w": second}, path)
    _flip_byte_in_tensor_data(path, second)
    # without its checksum the damage would go unnoticed: torch loads the file
    assert not torch.equal(torch.load(path, weights_only=True)["w"], second)
    with pytest.warns(io.CheckpointWarning) as w:
        state = io.load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["w"], first)  # the previous good checkpoint
    msg = str(w[0].message)
    assert f"the checkpoint {path} fails its checksum" in msg and str(tmp_path / "c.prev.pt") in msg
    # the next save keeps the good previous checkpoint (a damaged one is never rotated into its place)
    io.atomic_save({"step": 3, "w": first}, path)
    assert io.load_checkpoint(tmp_path / "c.prev.pt")["step"] == 1 and io.load_checkpoint(path)["step"] == 3
    # both damaged: the error names both files
    _flip_byte_in_tensor_data(path, first)
    _flip_byte_in_tensor_data(tmp_path / "c.prev.pt", first)
    with pytest.raises(io.CorruptFileError) as e:
        io.load_checkpoint(path)
    assert str(path) in str(e.value) and "c.prev.pt" in str(e.value) and "Delete both" in str(e.value)
    # no previous one: the error names the file
    only = io.atomic_save({"w": second}, tmp_path / "only.pt")
    _flip_byte_in_tensor_data(only, second)
    with pytest.raises(io.CorruptFileError, match=r"the checkpoint .*only\.pt fails its checksum"):
        io.load_checkpoint(only)


def test_a_checkpoint_without_checksum_loads_with_a_warning(tmp_path):
    torch.save({"w": torch.ones(2)}, tmp_path / "old.pt")  # as written before checksums existed
    with pytest.warns(io.CheckpointWarning, match="no checksum file"):
        assert torch.equal(io.load_checkpoint(tmp_path / "old.pt")["w"], torch.ones(2))
    io.atomic_save({"w": torch.ones(2)}, tmp_path / "c.pt")
    (tmp_path / "c.pt.sha256").write_text("not a digest\n")
    with pytest.raises(io.CorruptFileError, match="c.pt.sha256 does not hold a SHA-256"):
        io.load_checkpoint(tmp_path / "c.pt")


def test_stale_temporary_files_are_removed(tmp_path):
    stale = [tmp_path / ".checkpoint.pt.abc123_z.tmp", tmp_path / ".results.json.0a1b2c3d.tmp"]
    keep = [tmp_path / "notes.tmp", tmp_path / ".hidden", tmp_path / "config.json", tmp_path / ".x.short.tmp"]
    for p in stale + keep:
        p.write_text("x")
    assert sorted(io.remove_stale_temporaries(tmp_path)) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in keep)
    # a run folder removes them when it is opened (it holds the lock, so no live write is touched)
    (tmp_path / "r" / "seeds").mkdir(parents=True)
    left = [tmp_path / "r" / ".config.json.abcdefgh.tmp", tmp_path / "r" / "seeds" / ".seed_0.pt.abcdefgh.tmp"]
    for p in left:
        p.write_text("partial")
    with RunDir(tmp_path / "r", {"a": 1}):
        assert not any(p.exists() for p in left)


def test_read_jsonl_tolerates_a_partial_last_line_only(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1}\n\n{"step": 2}\n{"st')
    assert io.read_jsonl(path) == ([{"step": 1}, {"step": 2}], True)
    path.write_text('{"step": 1}\n{"step": 2}\n')
    assert io.read_jsonl(path) == ([{"step": 1}, {"step": 2}], False)
    path.write_text('{"step": 1}\n{"st\n{"step": 3}\n')
    with pytest.raises(io.CorruptFileError, match=r"m\.jsonl, line 2, is not valid JSON"):
        io.read_jsonl(path)


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "x.json"
    io.atomic_write_json(path, {"v": 1})
    with pytest.raises(TypeError):
        io.atomic_write_json(path, {"v": object()})  # not JSON: fails mid-write
    assert io.read_json(path) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_checkpoints_load_without_running_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, path)
    with pytest.raises(io.CorruptFileError, match="evil.pt"):
        io.load_checkpoint(path)


def test_truncated_files_get_errors_that_name_them(tmp_path):
    io.atomic_save({"w": torch.randn(100)}, tmp_path / "c.pt")
    data = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "c.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(io.CorruptFileError, match="c.pt"):
        io.load_checkpoint(tmp_path / "c.pt")
    (tmp_path / "r.json").write_text('{"a": [1, 2')
    with pytest.raises(io.CorruptFileError, match="r.json"):
        io.read_json(tmp_path / "r.json")
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        io.load_checkpoint(tmp_path / "nothere.pt")


# -- rng ------------------------------------------------------------------------------------------


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached Gaussian in Python's state
    np.random.standard_normal()
    io.atomic_save({"rng": rng.rng_state()}, tmp_path / "r.pt")
    expected = (random.random(), random.gauss(0, 1), np.random.rand(), np.random.standard_normal(), torch.rand(1))
    rng.set_rng_state(io.load_checkpoint(tmp_path / "r.pt")["rng"])
    got = (random.random(), random.gauss(0, 1), np.random.rand(), np.random.standard_normal(), torch.rand(1))
    assert got[:4] == expected[:4] and torch.equal(got[4], expected[4])


# -- run folders and the resume policy ------------------------------------------------------------


def test_run_dir_reads_finished_seeds_and_accepts_more_seeds(tmp_path):
    run = RunDir(tmp_path, {"lr": 0.1, "sizes": (1, 2), "seeds": [0, 1]})
    assert run.finished([0, 1]) == {}
    assert json.loads((tmp_path / "config.json").read_text()) == {"lr": 0.1, "sizes": [1, 2], "seeds": [0, 1]}
    run.checkpoint_path(1).write_bytes(b"partial")
    rec = run.save_seed(1, {"acc": 0.5})
    assert rec["provenance"]["git_commit"] is None or len(rec["provenance"]["git_commit"]) == 40
    assert not run.checkpoint_path(1).exists()  # a finished seed's checkpoint is deleted
    grown = RunDir(tmp_path, {"lr": 0.1, "sizes": [1, 2], "seeds": [0, 1, 2]})  # tuples == lists
    assert grown.finished([0, 1, 2])[1]["acc"] == 0.5
    assert list(grown.finished([0, 1, 2])) == [1]


def test_run_dir_refuses_other_settings_and_names_them(tmp_path):
    RunDir(tmp_path, {"lr": 0.1, "steps": 5, "seeds": [0]})
    with pytest.raises(SettingsMismatch) as e:
        RunDir(tmp_path, {"lr": 0.2, "steps": 5, "model": "hope", "seeds": [0]})
    msg = str(e.value)
    assert "lr: saved 0.1, now 0.2" in msg and "model: saved (absent), now 'hope'" in msg
    assert "steps" not in msg and "--overwrite" in msg


def test_overwrite_starts_over_but_never_deletes_a_foreign_folder(tmp_path):
    run = RunDir(tmp_path / "r", {"lr": 0.1})
    run.save_seed(0, {"acc": 1.0})
    fresh = RunDir(tmp_path / "r", {"lr": 0.3}, overwrite=True)
    assert fresh.finished([0]) == {}
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("years of work")
    with pytest.raises(SettingsMismatch, match="does not look like a run folder"):
        RunDir(tmp_path / "mine", {"lr": 0.1}, overwrite=True)
    assert (tmp_path / "mine" / "thesis.tex").exists()


TRY_LOCK = "import sys; from nlteach.runs.lock import FolderLock; FolderLock(sys.argv[1])"


def test_a_run_folder_held_by_another_process_is_refused_at_once(tmp_path, hold_folder_lock):
    out = tmp_path / "run"
    other = hold_folder_lock(out)
    with pytest.raises(FolderInUse) as e:
        RunDir(out, {"lr": 0.1})
    assert f"{out} is in use: another process holds its lock" in str(e.value)
    assert not (out / "config.json").exists()  # nothing was written
    other.stdin.close()  # that process ends
    other.wait(timeout=60)
    with RunDir(out, {"lr": 0.1}) as run:  # free again
        assert run.finished([0]) == {}
        with RunDir(out, {"lr": 0.1}):  # the same process may open it again (e.g. a notebook cell re-run)
            pass
        assert run._lock.held  # still held by the outer one
        other = subprocess.run([sys.executable, "-c", TRY_LOCK, str(out)], cwd=ROOT, capture_output=True,
                               text=True, timeout=60)
        assert other.returncode == 1 and "FolderInUse" in other.stderr and f"{out} is in use" in other.stderr
    assert not run._lock.held


def test_the_lock_of_a_killed_process_is_released(tmp_path, hold_folder_lock):
    other = hold_folder_lock(tmp_path)
    with pytest.raises(FolderInUse):
        FolderLock(tmp_path)
    other.kill()  # SIGKILL: no clean-up code runs; the operating system drops the lock
    other.wait(timeout=60)
    with FolderLock(tmp_path) as lock:
        assert lock.held and (tmp_path / ".lock").exists()


def test_overwrite_keeps_the_lock_it_holds(tmp_path):
    with RunDir(tmp_path, {"lr": 0.1}) as run:
        run.save_seed(0, {"acc": 1.0})
    with RunDir(tmp_path, {"lr": 0.2}, overwrite=True) as fresh:
        assert fresh.finished([0]) == {} and (tmp_path / ".lock").exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "config.json", "seeds"]


def test_write_results_records_provenance(tmp_path):
    run = RunDir(tmp_path, {"a": 1})
    out = run.write_results({"per_seed": []}, command="python -m x --a 1", device="cpu")
    saved = io.read_json(tmp_path / "results.json")
    assert saved == out
    p = saved["provenance"]
    assert p["command"] == "python -m x --a 1" and p["device"] == "cpu"
    assert set(p) >= {"git_commit", "git_dirty", "command", "torch", "python", "device", "threads", "host"}


def test_settings_diff_and_check():
    assert settings_diff({"a": 1, "seeds": [0]}, {"a": 1, "seeds": [0, 1]}) == []
    assert settings_diff({"a": (1, 2)}, {"a": [1, 2]}) == []
    assert settings_diff({"a": 1}, {"a": 2, "b": 3}) == ["a: saved 1, now 2", "b: saved (absent), now 3"]
    with pytest.raises(SettingsMismatch, match="ckpt.pt holds a run with other settings"):
        check_same_settings({"a": 1}, {"a": 2}, "ckpt.pt")


def test_provenance_command_line():
    assert provenance.command_line(["prog", "--out", "a b"]) == "prog --out 'a b'"
    assert provenance.git_dirty() is None or all("results/" not in f for f in provenance.git_dirty())
    c = provenance.Clock()
    assert c.wall >= 0 and c.cpu >= 0 and set(c.as_dict()) == {"wall_seconds", "cpu_seconds"}


def test_results_root_is_the_repository_folder():
    assert RESULTS_ROOT.name == "results" and (RESULTS_ROOT.parent / "nlteach").is_dir()


# -- statistics -----------------------------------------------------------------------------------


def test_summarize_t_interval_and_dropped_values():
    s = stats.summarize([1.0, 2.0, 3.0, float("nan"), None, float("inf")])
    assert s["n"] == 3 and s["dropped"] == 3 and s["mean"] == 2.0 and s["std"] == 1.0
    half = 4.302652729911275 / math.sqrt(3)  # t_{0.975, 2}
    assert s["ci95"] == pytest.approx([2 - half, 2 + half])
    one = stats.summarize([0.5])
    assert one["mean"] == 0.5 and math.isnan(one["std"]) and all(math.isnan(x) for x in one["ci95"])
    assert stats.summarize([])["n"] == 0


def test_paired_differences():
    p = stats.paired([1.0, 2.0, 3.0], [0.0, 0.5, 1.0])
    assert p["diffs"] == [1.0, 1.5, 2.0] and p["mean"] == 1.5 and p["sign"] == 1
    q = stats.paired([1.0, float("nan")], [2.0, 0.0])
    assert q["diffs"] == [-1.0, None] and q["dropped"] == 1 and q["sign"] == 0
    with pytest.raises(ValueError, match="one value per seed"):
        stats.paired([1.0], [1.0, 2.0])


# -- tables ---------------------------------------------------------------------------------------


def test_tables():
    assert tables.markdown_table(["a", "b"], [[1, "x"]]) == "| a | b |\n| --- | --- |\n| 1 | x |"
    assert tables.pm(0.123, 0.01) == "0.12 ± 0.01"
    assert tables.pm(0.123, float("nan")) == "0.12" and tables.pm(float("nan"), 1.0) == "n/a"
    assert tables.pm_summary({"mean": 1.0, "std": 0.5, "dropped": 2}) == "1.00 ± 0.50 (2 diverged)"
    text = tables.text_table([{"m": "hope", "t": 0.12345}, {"m": "x", "t": None}], ["m", "t"])
    assert text.splitlines()[0].split() == ["m", "t"] and "0.123" in text


# -- command line ---------------------------------------------------------------------------------


@dataclass
class _Cfg:
    steps: int = 10
    lr: float | None = None
    name: str = field(default="a", metadata={"help": "the name", "choices": ("a", "b")})
    periods: tuple[int, ...] = (1, 4)
    amp: bool = True
    resume: bool = False


def test_dataclass_arguments_generate_the_options():
    p = argparse.ArgumentParser()
    assert cli.dataclass_arguments(p, _Cfg) == ["steps", "lr", "name", "periods", "amp", "resume"]
    a = p.parse_args(["--steps", "5", "--lr", "0.1", "--periods", "2", "8", "--no-amp", "--resume"])
    assert vars(a) == {"steps": 5, "lr": 0.1, "name": "a", "periods": [2, 8], "amp": False, "resume": True}
    assert vars(p.parse_args([])) == {"steps": 10, "lr": None, "name": "a", "periods": (1, 4), "amp": True,
                                      "resume": False}
    with pytest.raises(SystemExit):
        p.parse_args(["--name", "c"])
    given = argparse.ArgumentParser()
    cli.dataclass_arguments(given, _Cfg, only_given=True)
    assert vars(given.parse_args(["--lr", "1e-3"])) == {"lr": 1e-3}


def test_common_arguments_default_to_the_environment_preset(monkeypatch):
    p = argparse.ArgumentParser()
    cli.add_common_arguments(p, seeds=[0, 1, 2])
    monkeypatch.setenv("NLTEACH_SIZE", "tiny")
    a = cli.apply_common(p, p.parse_args([]))
    assert a.preset == "tiny" and a.seeds == [0, 1, 2] and a.out is None and a.overwrite is False
    assert cli.apply_common(p, p.parse_args(["--preset", "full"])).preset == "full"
    with pytest.raises(SystemExit):
        cli.apply_common(p, p.parse_args(["--seeds", "1", "1"]))
    with pytest.raises(SystemExit):
        p.parse_args(["--threads", "0"])


def test_torch_threads_restores_and_checks():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads must be a positive int or None, got 0"):
        with torch_threads(0):
            pass


def test_a_seed_checkpoint_resumed_with_other_threads_is_warned_about(tmp_path, recwarn):
    """A seed checkpoint records torch's thread count; a resume with another count goes on with a
    ThreadCountWarning (the numbers are no longer bit-equal), with the same count silently."""
    with torch_threads(1):
        seeds.save_seed_checkpoint(tmp_path / "x.pt", {"lr": 0.1}, {"step": 3}, version=1)
        assert seeds.load_seed_checkpoint(tmp_path / "x.pt", {"lr": 0.1}, version=1)["threads"] == 1
    assert not [w for w in recwarn if issubclass(w.category, ThreadCountWarning)]
    with torch_threads(2), pytest.warns(ThreadCountWarning, match=r"1 torch CPU thread\(s\) and this one uses 2"):
        assert seeds.load_seed_checkpoint(tmp_path / "x.pt", {"lr": 0.1}, version=1)["step"] == 3


@dataclass
class _Inner:
    dim: int | None = None
    periods: tuple[int, ...] = (1, 4)


@dataclass
class _Outer:
    model: str = "hope"
    arch: _Inner = field(default_factory=_Inner)


def test_nested_dataclass_options_are_flattened_and_rebuilt():
    p = argparse.ArgumentParser()
    assert cli.dataclass_arguments(p, _Outer) == ["model", "dim", "periods"]
    values = vars(p.parse_args(["--dim", "64", "--periods", "1", "2"]))
    assert cli.dataclass_from_values(_Outer, values) == _Outer("hope", _Inner(64, (1, 2)))
    assert cli.dataclass_from_values(_Outer, {}) == _Outer()


# -- seeds: every seed of a run folder; commands: a runner's command line ---------------------------


def test_run_seeds_reads_back_finished_seeds_and_resumes_from_checkpoints(tmp_path):
    settings = {"lr": 0.1, "arch": {"dim": 8}}
    calls = []

    def train_seed(seed, checkpoint, bar):
        state = seeds.load_seed_checkpoint(checkpoint, seeds.flat_settings(settings), version=1)
        done = state["done"] if state else 0
        calls.append((seed, done))
        if seed == 1 and state is None:  # a Ctrl-C after the first half of seed 1
            seeds.save_seed_checkpoint(checkpoint, seeds.flat_settings(settings), {"done": 1}, version=1)
            raise KeyboardInterrupt
        return {"seed": seed, "value": seed * 10 + done}

    rd = RunDir(tmp_path, seeds.flat_settings(settings))
    assert rd.settings == {"lr": 0.1, "arch.dim": 8}
    with pytest.raises(KeyboardInterrupt):
        seeds.run_seeds([0, 1], train_seed, rundir=rd)
    assert rd.checkpoint_path(1).exists() and list(rd.finished([0, 1])) == [0]
    got = seeds.run_seeds([0, 1], train_seed, rundir=RunDir(tmp_path, seeds.flat_settings(settings)))
    assert calls == [(0, 0), (1, 0), (1, 1)]  # seed 0 read back, seed 1 resumed
    assert [got[s]["value"] for s in (0, 1)] == [0, 11] and not rd.checkpoint_path(1).exists()
    assert got[1]["cpu_seconds"] >= 0 and "git_commit" in got[1]["provenance"]
    free = seeds.run_seeds([2], train_seed)  # no folder: nothing saved, no provenance
    assert free[2]["value"] == 20 and set(free[2]) == {"seed", "value", "wall_seconds", "cpu_seconds"}
    seeds.save_seed_checkpoint(tmp_path / "x.pt", {"lr": 0.1}, {}, version=1)
    with pytest.raises(SettingsMismatch, match="lr: saved 0.1, now 0.2"):
        seeds.load_seed_checkpoint(tmp_path / "x.pt", {"lr": 0.2}, version=1)
    with pytest.raises(SettingsMismatch, match="checkpoint format"):
        seeds.load_seed_checkpoint(tmp_path / "x.pt", {"lr": 0.1}, version=2)
    rd.write_results({"per_seed": []})
    assert seeds.load_results(tmp_path)["per_seed"] == [] == seeds.load_results(tmp_path / "results.json")["per_seed"]


def test_run_command_line_options_and_exit_codes(capsys):
    @dataclass
    class Cfg:
        steps: int = 3
        name: str = "x"

    p = argparse.ArgumentParser()
    commands.add_run_arguments(p, Cfg, skip=("name",), what="the test")
    args = p.parse_args(["--out", "o", "--steps", "5"])
    assert commands.typed_settings(args) == {"steps": 5} and args.no_progress is False and args.seeds == [0, 1, 2]
    assert commands.typed_settings(p.parse_args(["--out", "o"])) == {}
    assert commands.run_guarded(lambda: 7) == (7, 0)

    def refused():
        raise SettingsMismatch("o holds a run with other settings:\n  steps: saved 3, now 5")

    assert commands.run_guarded(refused) == (None, 2) and "steps: saved 3, now 5" in capsys.readouterr().err

    def interrupted():
        raise KeyboardInterrupt

    assert commands.run_guarded(interrupted) == (None, 130) and "resume" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ console
def pretend_notebook(monkeypatch) -> None:
    """Make this process look like a Jupyter kernel to :func:`nlteach.runs.console.in_notebook`."""
    shell = type("ZMQInteractiveShell", (), {})()
    monkeypatch.setitem(sys.modules, "IPython", argparse.Namespace(get_ipython=lambda: shell))
    monkeypatch.delenv(LOG_STREAM_VAR, raising=False)


def test_logs_go_to_stderr_on_a_command_line_and_stdout_in_a_notebook(monkeypatch, capsys):
    monkeypatch.delenv(LOG_STREAM_VAR, raising=False)
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    log("[x] cli")
    assert capsys.readouterr() == ("", "[x] cli\n")
    pretend_notebook(monkeypatch)
    assert in_notebook()
    log("[x] notebook")
    assert capsys.readouterr() == ("[x] notebook\n", "")
    monkeypatch.setenv(LOG_STREAM_VAR, "stderr")  # the override wins
    log("[x] forced")
    assert capsys.readouterr().err == "[x] forced\n"
    monkeypatch.setenv(LOG_STREAM_VAR, "both")
    with pytest.raises(ValueError, match=LOG_STREAM_VAR):
        log("[x] bad")


# ---------------------------------------------------------------------------------------------
# nlteach.runs.sweep


def test_choose_on_grid_picks_the_lowest_finite_loss_and_widens_at_an_edge():
    assert choose_on_grid({1.0: 2.0, 2.0: 1.9, 4.0: 2.1}) == (2.0, None)
    assert choose_on_grid({1.0: 2.0, 2.0: 1.9, 4.0: 1.8}) == (4.0, 8.0)
    assert choose_on_grid({1.0: 1.7, 3.0: 1.9, 9.0: float("nan")}, factor=3.0) == (1.0, 1.0 / 3)
    assert choose_on_grid({1.0: float("inf"), 2.0: float("nan")}) == (1.0, 0.5)  # all diverged: go lower
    assert choose_on_grid({5.0: 1.0}) == (5.0, 10.0)  # one value is both edges: the upper side first
    for bad, match in (({}, "at least one value"), ({0.0: 1.0}, "positive finite"), ({-1.0: 1.0}, "positive")):
        with pytest.raises(ValueError, match=match):
            choose_on_grid(bad)
    with pytest.raises(ValueError, match="factor must be"):
        choose_on_grid({1.0: 1.0}, factor=1.0)


@pytest.mark.parametrize(("synchronize", "barrier_fails", "expected"), [
    (True, False, ["barrier", "destroy"]),  # a normal end: the ranks meet before any tears down
    (True, True, ["barrier", "destroy"]),  # a peer already gone: the group still ends
    (False, False, ["destroy"]),  # leaving on an error: no wait for a peer that may never come
])
def test_closing_a_process_group_waits_for_every_rank_first(monkeypatch, synchronize, barrier_fails, expected):
    """``Dist.close`` meets the other ranks at a barrier before destroying the group (without it,
    gloo sometimes aborted the rank that exited second), except on an error path."""
    from nlteach.runs import distributed

    calls: list[str] = []

    def barrier():
        calls.append("barrier")
        if barrier_fails:
            raise RuntimeError("Connection closed by peer")

    monkeypatch.setattr(torch.distributed, "barrier", barrier)
    monkeypatch.setattr(torch.distributed, "destroy_process_group", lambda: calls.append("destroy"))
    distributed.Dist(rank=1, world_size=2, owns_group=True).close(synchronize=synchronize)
    assert calls == expected
    calls.clear()
    distributed.Dist(rank=1, world_size=2, owns_group=False).close(synchronize=synchronize)  # not ours to end
    assert calls == []
