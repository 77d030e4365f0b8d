"""Every command line refuses bad arguments with a usage error (exit status 2, a message naming the
option, no traceback) before anything trains (issue 22, item 6). Each case fails in validation, so
these tests train nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from nlteach import results
from nlteach.bench import __main__ as bench
from nlteach.continual import __main__ as continual
from nlteach.continual import tune
from nlteach.data import ENV_DATA_DIR, ENV_MIRROR
from nlteach.experiments import cms_tasks, lm_comparison, optimizers
from nlteach.longctx import __main__ as longctx
from nlteach.longctx.runner import preset_config as longctx_preset_config
from nlteach.runs.cli import folder_problem
from nlteach.train import main as train_main

ROOT = Path(__file__).resolve().parents[1]
HAS_PROC = Path("/proc").is_dir()  # /proc: unwritable even for root (Linux)

# Every entry point that takes the common options, with the arguments it needs to get that far.
COMMANDS: dict[str, tuple[Callable[[list[str]], int], list[str]]] = {
    "train": (train_main, []),
    "lm_comparison": (lm_comparison.main, []),
    "optimizers": (optimizers.main, ["--task", "digits"]),
    "cms_tasks": (cms_tasks.main, []),
    "continual": (continual.main, ["--dataset", "split-digits", "--seeds", "0"]),
    "tune": (tune.main, ["--dataset", "split-digits", "--method", "ewc", "--param", "ewc_lambda", "--grid", "1"]),
    "longctx": (longctx.main, ["--task", "mqar", "--seeds", "0"]),
    "bench": (bench.main, ["memory"]),
}
NEEDS_OUT = ("continual", "longctx")  # --out is required


def usage_error(main: Callable[[list[str]], int], argv: list[str], capsys) -> str:
    """Run ``main(argv)``; assert exit status 2 and no traceback; return what went to stderr."""
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    return err


def command(name: str, tmp_path: Path, *extra: str) -> tuple[Callable[[list[str]], int], list[str]]:
    main, args = COMMANDS[name]
    out = [] if "--out" in extra or name not in NEEDS_OUT else ["--out", str(tmp_path / "run")]
    return main, [*args, *out, "--preset", "tiny", *extra]


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    f = tmp_path / "a_file"
    f.write_text("not a folder")
    return f


# ---------------------------------------------------------------------------------------------
# The common options (nlteach.runs.cli.apply_common): every command alike.


@pytest.mark.parametrize("name", COMMANDS)
def test_unknown_device(name, tmp_path, capsys):
    err = usage_error(*command(name, tmp_path, "--device", "bogus"), capsys)
    expected = "runs on the CPU" if name == "cms_tasks" else "expected cpu, cuda, cuda:N or mps"
    assert "--device 'bogus'" in err and expected in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", COMMANDS)
def test_a_cuda_device_this_machine_lacks(name, tmp_path, capsys):
    err = usage_error(*command(name, tmp_path, "--device", "cuda:99"), capsys)
    assert "--device 'cuda:99'" in err
    if not torch.cuda.is_available() and name != "cms_tasks":
        assert "CUDA is not available" in usage_error(*command(name, tmp_path, "--device", "cuda"), capsys)


@pytest.mark.parametrize("name", COMMANDS)
def test_out_is_a_file(name, tmp_path, a_file, capsys):
    err = usage_error(*command(name, tmp_path, "--out", str(a_file)), capsys)
    assert f"--out '{a_file}'" in err and "is a file, not a folder" in err
    err = usage_error(*command(name, tmp_path, "--out", str(a_file / "sub")), capsys)
    assert "is a file, so no folder can be made under it" in err


@pytest.mark.skipif(not HAS_PROC, reason="needs /proc, a folder nobody can write in")
@pytest.mark.parametrize("name", COMMANDS)
def test_out_cannot_be_written(name, tmp_path, capsys):
    err = usage_error(*command(name, tmp_path, "--out", "/proc/nlteach-test/run"), capsys)
    assert "--out '/proc/nlteach-test/run'" in err and "cannot write in /proc" in err


@pytest.mark.parametrize("name", COMMANDS)
def test_unknown_size_preset_in_the_environment(name, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NLTEACH_SIZE", "bogus")
    main, argv = command(name, tmp_path)
    argv = argv[:argv.index("--preset")] + argv[argv.index("--preset") + 2:]
    err = usage_error(main, argv, capsys)
    assert "NLTEACH_SIZE is 'bogus'" in err and "expected one of tiny, laptop, full" in err


@pytest.mark.parametrize("name", COMMANDS)
def test_data_dir_is_a_file(name, tmp_path, a_file, monkeypatch, capsys):
    monkeypatch.setenv(ENV_DATA_DIR, str(a_file))
    err = usage_error(*command(name, tmp_path), capsys)
    assert f"{ENV_DATA_DIR}='{a_file}'" in err and "is a file, not a folder" in err


@pytest.mark.skipif(not HAS_PROC, reason="needs /proc, a folder nobody can write in")
def test_data_dir_cannot_be_created(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(ENV_DATA_DIR, "/proc/nlteach-test")
    err = usage_error(*command("train", tmp_path), capsys)
    assert f"{ENV_DATA_DIR}='/proc/nlteach-test'" in err and "cannot write in /proc" in err


@pytest.mark.skipif(not HAS_PROC, reason="needs /proc, a folder nobody can write in")
@pytest.mark.parametrize("name", ["train", "continual"])
def test_a_data_cache_that_cannot_be_written(name, tmp_path, monkeypatch, capsys):
    """An existing folder may be a read-only cache that holds the files; one that lacks them is
    refused when the data is fetched (before training), naming the variable."""
    monkeypatch.setenv(ENV_DATA_DIR, "/proc")
    monkeypatch.setenv("NLTEACH_OFFLINE", "1")  # never the network
    main, argv = command(name, tmp_path, "--out", str(tmp_path / "run"))
    if name == "continual":  # a data set that is fetched (the digits come with scikit-learn)
        argv[argv.index("split-digits")] = "clinc150"
    err = usage_error(main, argv, capsys)
    if os.environ.get(ENV_MIRROR):
        assert "cannot write the data cache /proc" in err and ENV_DATA_DIR in err
    else:
        assert "offline" in err


def test_folder_problem(tmp_path, a_file):
    assert folder_problem(tmp_path) is None and folder_problem(tmp_path / "new" / "deeper") is None
    assert not (tmp_path / "new").exists()  # nothing left behind
    assert "is a file" in folder_problem(a_file)
    assert not list(tmp_path.glob(".nlteach-write-check-*"))


# ---------------------------------------------------------------------------------------------
# Each command's own settings, checked where its config is resolved.


def test_train_budget_too_small(tmp_path, capsys):
    err = usage_error(train_main, ["--preset", "tiny", "--params", "10", "--out", str(tmp_path / "run")], capsys)
    assert "params=10" in err and "too small" in err
    assert not (tmp_path / "run").exists()


def test_train_seq_len_longer_than_the_data(tmp_path, capsys):
    err = usage_error(train_main, ["--preset", "tiny", "--seq-len", "200000", "--out", str(tmp_path / "run")], capsys)
    assert "seq_len=200000 is longer than the data allows" in err and "expected seq_len <=" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", ["2.5e0", "2.5", "0", "-3", "ten"])
def test_train_steps_must_be_a_positive_integer(value, tmp_path, capsys):
    err = usage_error(train_main, ["--preset", "tiny", "--steps", value, "--out", str(tmp_path / "run")], capsys)
    assert f"argument --steps: expected a positive integer, got '{value}'" in err


def test_lm_comparison_unknown_model(tmp_path, capsys):
    err = usage_error(lm_comparison.main, ["--preset", "tiny", "--models", "transformer", "bogus",
                                           "--out", str(tmp_path / "run")], capsys)
    assert "--models: model='bogus' is not available" in err
    assert not (tmp_path / "run").exists()  # not even the transformer trained first


def test_optimizers_context_longer_than_the_data(tmp_path, capsys):
    err = usage_error(optimizers.main, ["--task", "shakespeare", "--preset", "tiny", "--context", "2000000",
                                        "--out", str(tmp_path / "run")], capsys)
    assert "context=2000000 is longer than the data allows" in err
    assert not (tmp_path / "run").exists()


def test_cms_tasks_runs_on_the_cpu_only(tmp_path, capsys):
    assert "runs on the CPU" in usage_error(cms_tasks.main, ["--preset", "tiny", "--device", "meta",
                                                             "--out", str(tmp_path / "run")], capsys)


def _other_settings(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"lr": 123.0}))


def test_continual_settings_mismatch_in_a_later_method_refused_before_training(tmp_path, capsys):
    _other_settings(tmp_path / "ewc")
    err = usage_error(continual.main, ["--dataset", "split-digits", "--method", "finetune", "ewc", "--preset", "tiny",
                                       "--seeds", "0", "--out", str(tmp_path), "--no-progress"], capsys)
    assert "other settings" in err and "lr: saved 123.0" in err and "--overwrite" in err
    assert not (tmp_path / "finetune").exists()  # the first method did not train


def test_longctx_settings_mismatch(tmp_path, capsys):
    _other_settings(tmp_path)
    err = usage_error(longctx.main, ["--task", "mqar", "--preset", "tiny", "--seeds", "0", "--out", str(tmp_path),
                                     "--no-progress"], capsys)
    assert "other settings" in err and "--overwrite" in err
    assert not (tmp_path / "seeds").exists()


def test_longctx_settings_mismatch_in_a_later_variant(tmp_path, capsys):
    _other_settings(tmp_path / longctx_preset_config("mqar", "hope", "tiny").variant)
    err = usage_error(longctx.main, ["--task", "mqar", "--model", "transformer", "hope", "--preset", "tiny",
                                     "--seeds", "0", "--out", str(tmp_path), "--no-progress"], capsys)
    assert "other settings" in err
    assert not (tmp_path / "transformer").exists()


def test_tune_checks_every_value_and_the_tuning_file_first(tmp_path, a_file, capsys):
    base = ["--dataset", "split-digits", "--method", "ewc", "--preset", "tiny"]
    err = usage_error(tune.main, [*base, "--param", "bogus", "--grid", "1"], capsys)
    assert "unknown setting 'bogus'" in err
    err = usage_error(tune.main, [*base, "--param", "ewc_lambda", "--grid", "1", "--update-tuning", str(tmp_path)],
                      capsys)
    assert f"--update-tuning '{tmp_path}'" in err and "is a folder" in err
    err = usage_error(tune.main, [*base, "--param", "ewc_lambda", "--grid", "1", "--update-tuning", str(a_file)],
                      capsys)
    assert "not valid JSON" in err
    _other_settings(tune.value_folder(tmp_path / "t", "split-digits", "ewc", {"ewc_lambda": 10.0}))
    err = usage_error(tune.main, [*base, "--param", "ewc_lambda", "--grid", "1", "10", "--out", str(tmp_path / "t")],
                      capsys)
    assert "other settings" in err
    assert not tune.value_folder(tmp_path / "t", "split-digits", "ewc", {"ewc_lambda": 1.0}).exists()


@pytest.mark.parametrize("argv, message", [
    (["models", "--params", "10"], "too small"),
    (["models", "--params", "2.5e0"], "argument --params: expected a positive integer"),
    (["models", "--models", "bogus"], "--models: ['bogus'] not registered"),
    (["optim", "--only", "bogus"], "--only: unknown optimizer 'bogus'"),
    (["memory", "--T", "0"], "argument --T: expected a positive integer, got '0'"),
    (["titans", "--chunk", "-1"], "argument --chunk: expected a positive integer"),
])
def test_bench_suite_options(argv, message, capsys):
    assert message in usage_error(bench.main, [*argv, "--preset", "tiny"], capsys)


def test_results_root_and_readme(tmp_path, a_file, capsys):
    err = usage_error(results.main, ["--root", str(tmp_path / "missing")], capsys)
    assert f"--root '{tmp_path / 'missing'}': does not exist" in err
    assert "is a file" in usage_error(results.main, ["--root", str(a_file)], capsys)
    err = usage_error(results.main, ["--root", str(tmp_path), "--write-readme", str(tmp_path / "README.md")], capsys)
    assert "no such file" in err
    err = usage_error(results.main, ["--root", str(tmp_path), "--write-readme", str(a_file)], capsys)
    assert "has no generated-results block" in err
    assert a_file.read_text() == "not a folder"


# ---------------------------------------------------------------------------------------------
# As a user sees it: the process, its exit status and its stderr.


@pytest.mark.parametrize("argv", [
    ["-m", "nlteach.train", "--preset", "tiny", "--device", "bogus"],
    ["-m", "nlteach.results", "--root", "no/such/folder"],
])
def test_the_process_exits_with_a_usage_error(argv):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "error:" in proc.stderr and proc.stderr.startswith("usage:")
