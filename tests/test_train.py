import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from nlteach import train as tr
from nlteach.models import ModelConfig, build_model, cms_level_parameters
from nlteach.runs.io import load_checkpoint
from nlteach.runs.lock import FolderInUse
from nlteach.runs.rundir import SettingsMismatch
from nlteach.runs.threads import ThreadCountWarning

ROOT = Path(__file__).resolve().parent.parent
# A run small enough for seconds on a loaded 2-core box; log_every=2 and stopping at odd steps
# puts interruptions in the middle of a log interval.
SMALL = dict(preset="tiny", dim=16, n_layers=1, n_heads=2, seq_len=16, batch_size=4, steps=12,
             log_every=2, eval_every=4, eval_windows=8, sample_chars=10, progress=False)
SMALL_ARGS = ["--preset", "tiny", "--dim", "16", "--n-layers", "1", "--n-heads", "2", "--seq-len", "16",
              "--batch-size", "4", "--steps", "12", "--log-every", "2", "--eval-every", "4",
              "--eval-windows", "8", "--sample-chars", "10", "--no-progress"]


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def metrics(out: Path, drop=("time",)) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(ln).items() if k not in drop} for ln in lines]


def weights(out: Path) -> dict:
    return load_checkpoint(out / "checkpoint.pt")["model"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_run_writes_metrics_results_and_checkpoint(tmp_path, data_mirror):
    logged = []
    res = tr.train(SMALL, out=str(tmp_path), on_log=logged.append)
    rows = metrics(tmp_path, drop=())
    assert [r["step"] for r in rows] == [2, 4, 6, 8, 10, 12] and rows == logged
    assert set(rows[0]) == {"step", "train_loss", "val_loss", "lr", "tokens", "time", "grad_norm"}
    assert [r["val_loss"] is not None for r in rows] == [False, True, False, True, False, True]
    assert rows[-1]["tokens"] == 12 * 4 * 16
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["val_loss"] == rows[-1]["val_loss"] == res["val_loss"]
    assert saved["steps"] == 12 and not saved["interrupted"] and len(saved["sample"]) == 10
    assert saved["n_params"] == 4416 and saved["vocab_size"] == 65
    assert saved["provenance"]["command"] and saved["provenance"]["device"] == "cpu"
    assert saved["cpu_seconds"] > 0 and saved["wall_seconds"] >= saved["time_s"] > 0
    assert saved["config"]["arch"]["dim"] == 16 and saved["config"]["arch"]["vocab_size"] is None
    model, vocab, cfg = tr.load_model(tmp_path)
    assert vocab.size == 65 and cfg["steps"] == 12 and model.config.vocab_size == 65
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("model", ["transformer", "hope", "hope-attention"])
def test_interrupted_and_resumed_run_is_bit_equal(tmp_path, data_mirror, model):
    """stop after step 5 (mid log interval), resume: same metrics (all but time) and weights, bit for bit.

    Dropout is on, so the restored RNG states matter too. hope and hope-attention: their CMS learns in context."""
    cfg = {**SMALL, "dropout": 0.1, "model": model}
    full = tr.train(cfg, out=str(tmp_path / "a"))
    part = tr.train(cfg, out=str(tmp_path / "b"), stop_after=5)
    assert part["interrupted"] and part["stopped_by"] == "stop_after" and part["step"] == 5
    assert [r["step"] for r in metrics(tmp_path / "b")] == [2, 4]
    resumed = tr.train(cfg, out=str(tmp_path / "b"), resume=True)
    assert metrics(tmp_path / "a") == metrics(tmp_path / "b")
    assert_same_weights(weights(tmp_path / "a"), weights(tmp_path / "b"))
    for key in ("val_loss", "test_loss", "train_loss", "sample"):
        assert full[key] == resumed[key], key


def test_sigint_checkpoints_and_resume_matches(tmp_path, data_mirror):
    """A real SIGINT during training: the step finishes, a checkpoint is written, resume is exact."""
    def interrupt(record):
        if record["step"] == 6:
            os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)
    res = tr.train(SMALL, out=str(tmp_path / "b"), on_log=interrupt)
    assert res["interrupted"] and res["stopped_by"] == "signal" and res["step"] == 6
    assert signal.getsignal(signal.SIGINT) is before  # handler restored
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["step"] == 6
    tr.train(SMALL, out=str(tmp_path / "b"), resume=True)
    tr.train(SMALL, out=str(tmp_path / "a"))
    assert metrics(tmp_path / "a") == metrics(tmp_path / "b")
    assert_same_weights(weights(tmp_path / "a"), weights(tmp_path / "b"))


def test_cli_resume_needs_only_out(tmp_path, data_mirror):
    out = str(tmp_path / "b")
    assert tr.main([*SMALL_ARGS, "--out", out, "--stop-after", "5"]) == 0
    assert tr.main(["--out", out, "--resume", "--no-progress"]) == 0  # settings from the checkpoint
    tr.train(SMALL, out=str(tmp_path / "a"))
    assert metrics(tmp_path / "a") == metrics(tmp_path / "b")
    with pytest.raises(SystemExit):
        tr.main(["--out", out, "--resume", "--lr", "0.5"])  # a setting that would change the numbers


def test_resume_refuses_different_settings_naming_each(tmp_path, data_mirror):
    tr.train(SMALL, out=str(tmp_path), stop_after=2)
    with pytest.raises(SettingsMismatch, match="lr: saved 0.003, now 0.01") as e:
        tr.train(SMALL, out=str(tmp_path), resume=True, lr=0.01, dim=32, chunk_size=8)
    for line in ("chunk_size: saved 16, now 8", "dim: saved 16, now 32", "lr: saved 0.003, now 0.01"):
        assert line in str(e.value)
    assert "seed" not in str(e.value) and "sample_chars" not in str(e.value)
    tr.train(SMALL, out=str(tmp_path), resume=True, stop_after=4, sample_chars=3)  # runtime options may change
    with pytest.raises(tr.ConfigError, match="already holds a run"):
        tr.train(SMALL, out=str(tmp_path))
    with pytest.raises(tr.ConfigError, match="no checkpoint"):
        tr.train(SMALL, out=str(tmp_path / "empty"), resume=True)
    with pytest.raises(SystemExit):  # the command line says the same, as a usage error
        tr.main(["--out", str(tmp_path), "--resume", "--n-layers", "2", "--no-progress"])


def test_optimizers_of_nlteach_optim_by_name(tmp_path, data_mirror):
    res = tr.train(SMALL, out=str(tmp_path / "f"), optimizer="momentummemory", steps=4, eval_every=2)
    assert res["steps"] == 4 and res["val_loss"] < 4.2 and res["config"]["optimizer"] == "momentummemory"
    with pytest.raises(tr.ConfigError, match="choose one of adamw, sgd, .*MomentumMemory"):
        tr.train(SMALL, out=str(tmp_path / "l"), optimizer="lion")
    res = tr.train(SMALL, out=str(tmp_path / "s"), optimizer="sgd", steps=2, eval_every=2)
    assert res["steps"] == 2


@pytest.mark.parametrize("argv, message", [
    (["--batch-size", "0"], "argument --batch-size: expected a positive integer, got '0'"),
    (["--model", "gpt5"], "model='gpt5' is not available; available models: hope"),
    (["--preset", "huge"], "argument --preset: invalid choice: 'huge'"),
    (["--optimizer", "lion"], "optimizer='lion' is not available; choose one of adamw, sgd"),
    (["--dim", "30", "--n-heads", "4"], "dim=30 must be divisible by n_heads=4"),
    (["--steps", "10", "--warmup", "10"], "warmup=10 must be smaller than steps=10"),
    (["--lr", "-1"], "lr must be a positive number, got -1.0"),
    (["--model", "hope", "--momentum", "1.5"], "momentum must be in [0, 1), got 1.5"),
    (["--memory-hidden", "0"], "memory_hidden must be a positive int, got 0"),
    (["--impl", "fast"], "argument --impl: invalid choice: 'fast'"),
    (["--out", "x", "--resume"], "--resume: there is no checkpoint at x/checkpoint.pt"),
])
def test_bad_arguments_are_clear_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        tr.main(argv + ([] if "--out" in argv else ["--out", "/nonexistent/never-written"]))
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_memory_options_reach_the_model(tmp_path, data_mirror):
    opts = dict(chunk_size=4, proj_chunk_size=8, memory_hidden=6, momentum=0.5)
    tr.train({**SMALL, "steps": 2, "log_every": 1, "eval_every": 2}, model="hope", out=str(tmp_path), **opts)
    model, _, cfg = tr.load_model(tmp_path)
    assert {k: getattr(model.config, k) for k in opts} == opts and {k: cfg["arch"][k] for k in opts} == opts
    layer = model.blocks[0].mixer
    assert layer.hidden == 6 and layer.opts["chunk_size"] == 4 and layer.opts["momentum"] == 0.5


def test_cli_help():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "nlteach.train", "--help"], capture_output=True, text=True,
                         check=True, cwd=ROOT, env=env).stdout
    for flag in ("--model", "--preset", "--resume", "--optimizer", "--batch-size", "GLOBAL", "--threads",
                 "--overwrite", "--seed", "--dim", "--chunk-size", "--memory-hidden", "--no-tie-embeddings",
                 "--cms-periods", "--no-amp", "--no-progress", "hidden width of each per-head MLP memory"):
        assert flag in " ".join(out.split()), flag
    assert "--vocab-size" not in out and "--seeds" not in out


def test_preset_defaults_to_the_environment(tmp_path, monkeypatch, data_mirror):
    args = [a for a in SMALL_ARGS if a not in ("--preset", "tiny")] + ["--steps", "2", "--eval-every", "2"]
    monkeypatch.setenv("NLTEACH_SIZE", "laptop")
    assert tr.main([*args, "--out", str(tmp_path / "a")]) == 0
    saved = json.loads((tmp_path / "a" / "results.json").read_text())
    assert saved["config"]["preset"] == "laptop" and saved["config"]["warmup"] == 0  # min(100, steps // 5)
    assert saved["config"]["arch"]["dim"] == 16  # typed options win over the preset


@pytest.mark.parametrize("model", ["transformer", "hope"])
def test_ddp_two_processes_match_one_process(tmp_path, data_mirror, model):
    """torchrun, 2 gloo processes, global batch 4 (2 per rank), stopped after step 5 (mid log
    interval) and resumed under torchrun, vs one uninterrupted process with batch 4.

    Both see the same windows each step and average the same gradients; only the order of float
    sums differs, so losses agree to ~1e-6 (tolerance 1e-5). hope: with its in-context CMS."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "nlteach.train", *SMALL_ARGS, "--model", model, "--out", str(tmp_path / "ddp")]
    resume = cmd[:cmd.index("nlteach.train") + 1] + ["--out", str(tmp_path / "ddp"), "--resume"]
    for command in (cmd + ["--stop-after", "5"], resume):  # resume takes its settings from the checkpoint
        proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=240)
        assert proc.returncode == 0, proc.stderr[-3000:]
    tr.train({**SMALL, "model": model}, out=str(tmp_path / "one"))
    ddp, one = metrics(tmp_path / "ddp"), metrics(tmp_path / "one")
    assert [r["step"] for r in ddp] == [r["step"] for r in one]
    for a, b in zip(ddp, one):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)
        assert (a["val_loss"] is None) == (b["val_loss"] is None)
        if a["val_loss"] is not None:
            assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-5)
    results = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert results["world_size"] == 2
    assert not list((tmp_path / "ddp").glob(".*.tmp"))


def test_a_diverging_run_stops_at_its_first_non_finite_gradient_and_says_so(tmp_path, data_mirror):
    """lr=1e30: the first full step (after warmup's first) overflows the weights, so step 2's loss
    and gradient are not finite. The loop stops there without applying it, evaluates nothing, and
    records the step; resuming takes the same step again and stops at the same place."""
    cfg = {**SMALL, "lr": 1e30}
    res = tr.train(cfg, out=str(tmp_path))
    assert res["diverged_at_step"] == 2 and res["steps"] == 1 and not res["interrupted"]
    assert res["val_loss"] is None and res["test_loss"] is None and res["val_bpc"] is None
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["diverged_at_step"] == 2 and saved["provenance"]["command"]
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["step"] == 1 and all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert tr.train(cfg, out=str(tmp_path), resume=True)["diverged_at_step"] == 2
    healthy = tr.train(SMALL, out=str(tmp_path / "ok"))
    assert healthy.get("diverged_at_step") is None and healthy["val_loss"] is not None


def test_a_diverging_run_exits_with_status_1_on_the_command_line_and_under_ddp(tmp_path, data_mirror):
    """The CLI's exit status 1, and under torchrun both ranks stop at the same step (they test the
    norm of the all-reduced gradient, so neither is left waiting in a collective)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["-m", "nlteach.train", *SMALL_ARGS, "--lr", "1e30"]
    one = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "one")], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=240)
    assert one.returncode == 1 and "diverged: the gradient norm at step 2" in one.stderr
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          *args, "--out", str(tmp_path / "ddp")], capture_output=True, text=True, cwd=ROOT,
                         env=env, timeout=240)
    assert ddp.returncode != 0, ddp.stderr[-3000:]
    for run in ("one", "ddp"):
        assert json.loads((tmp_path / run / "results.json").read_text())["diverged_at_step"] == 2


def test_crash_resume_drops_records_after_the_checkpoint(tmp_path, data_mirror):
    """A crash (an exception, no final checkpoint) at step 6 with the last checkpoint at step 4:
    resume drops the step-6 record, recomputes it, and ends equal to an uninterrupted run."""
    def crash(record):
        if record["step"] == 6:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        tr.train(SMALL, out=str(tmp_path / "b"), on_log=crash)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["step"] == 4
    assert [r["step"] for r in metrics(tmp_path / "b")] == [2, 4, 6]
    tr.train(SMALL, out=str(tmp_path / "b"), resume=True)
    tr.train(SMALL, out=str(tmp_path / "a"))
    assert metrics(tmp_path / "a") == metrics(tmp_path / "b")
    assert_same_weights(weights(tmp_path / "a"), weights(tmp_path / "b"))


def test_cms_multi_frequency_levels_wait_for_their_period_and_resume_exactly(tmp_path, data_mirror):
    """--cms-multi-frequency: a CMS level with period C changes only at steps that are multiples of C,
    the other parameters every step; a run stopped mid-period resumes bit for bit."""
    # in-context periods short enough that every level's value map and step gate get gradients
    cfg = {**SMALL, "model": "hope-attention", "cms_multi_frequency": True, "cms_periods": (2, 4, 8)}
    part = tr.train(cfg, out=str(tmp_path / "b"), stop_after=3)
    ckpt = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    torch.manual_seed(0)  # the run's initial weights: seed 0, same config
    init = build_model("hope-attention", ModelConfig(**ckpt["model_config"]))
    model = build_model("hope-attention", ModelConfig(**ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    assert model.config.cms_periods == (2, 4, 8)  # tokens; the optimizer-step periods default to 1, 4, 16
    lv_init, lv_now = cms_level_parameters(init), cms_level_parameters(model)
    assert all(not torch.equal(a, b) for a, b in zip(lv_init[0], lv_now[0]))  # period 1: moved at steps 1-3
    for level in (1, 2):  # periods 4 and 16: no update before step 4
        assert all(torch.equal(a, b) for a, b in zip(lv_init[level], lv_now[level]))
    assert not torch.equal(init.embed.weight, model.embed.weight)  # the rest trains every step
    assert part["step"] == 3
    tr.train(cfg, out=str(tmp_path / "b"), resume=True)
    tr.train(cfg, out=str(tmp_path / "a"))
    assert metrics(tmp_path / "a") == metrics(tmp_path / "b")
    assert_same_weights(weights(tmp_path / "a"), weights(tmp_path / "b"))
    with pytest.raises(tr.ConfigError, match="needs a model with a CMS"):
        tr.train({**cfg, "model": "transformer"}, out=str(tmp_path / "c"))
    with pytest.raises(tr.ConfigError, match=r"cms_step_periods must be 3 positive ints"):
        tr.train({**cfg, "cms_step_periods": (1, 4)}, out=str(tmp_path / "c"))
    with pytest.raises(tr.ConfigError, match="needs cms_multi_frequency=True"):
        tr.train({**cfg, "cms_multi_frequency": False, "cms_step_periods": (1, 2, 4)}, out=str(tmp_path / "c"))


def test_stop_flag_and_single_process_collectives():
    from nlteach.runs import distributed

    dist = distributed.Dist()
    assert dist.main and distributed.gather({"a": 1}, dist) == [{"a": 1}]
    assert distributed.any_rank(True, dist, torch.device("cpu")) is True
    before = signal.getsignal(signal.SIGTERM)
    with distributed.StopFlag(verbose=False) as stop:
        os.kill(os.getpid(), signal.SIGTERM)  # SIGTERM, like SIGINT, asks to stop after the step
        assert stop.requested
    assert signal.getsignal(signal.SIGTERM) is before


# -- hardening: safe and verified checkpoints, one run per folder, threads and preset on resume ----


def test_a_crafted_checkpoint_is_refused_everywhere_without_running_code(tmp_path, data_mirror, capsys,
                                                                          crafted_checkpoint):
    out = tmp_path / "run"
    tr.train(SMALL, out=str(out), stop_after=2)
    ckpt = out / "checkpoint.pt"
    marker = crafted_checkpoint(ckpt)
    with pytest.raises(SystemExit) as e:
        tr.main(["--out", str(out), "--resume", "--no-progress"])
    assert e.value.code == 2 and f"the checkpoint {ckpt} cannot be read" in capsys.readouterr().err
    with pytest.raises(tr.io.CorruptFileError, match="checkpoint.pt cannot be read"):
        tr.train(SMALL, out=str(out), resume=True)
    with pytest.raises(tr.io.CorruptFileError, match="checkpoint.pt cannot be read"):
        tr.load_model(out)
    assert not marker.exists()


def _flip_a_weight_byte(ckpt: Path) -> None:
    """Flip one byte inside a stored tensor: the file still loads, with other numbers."""
    w = load_checkpoint(ckpt)["model"]["embed.weight"]
    data = bytearray(ckpt.read_bytes())
    data[bytes(data).index(w.numpy().tobytes()) + 7] ^= 0x40
    ckpt.write_bytes(bytes(data))


def test_a_damaged_checkpoint_is_detected_and_the_previous_one_resumes_exactly(tmp_path, data_mirror):
    """Checkpoints at steps 2, 4 and (stopped) 5; one flipped byte in the newest: the resume names the
    file, falls back to step 4's checkpoint (kept as checkpoint.prev.pt) and still ends bit-equal."""
    cfg = {**SMALL, "ckpt_every": 2}
    tr.train(cfg, out=str(tmp_path / "b"), stop_after=5)
    ckpt = tmp_path / "b" / "checkpoint.pt"
    assert load_checkpoint(ckpt)["step"] == 5 and load_checkpoint(tmp_path / "b" / "checkpoint.prev.pt")["step"] == 4
    _flip_a_weight_byte(ckpt)
    with pytest.warns(tr.io.CheckpointWarning) as w:
        tr.train(cfg, out=str(tmp_path / "b"), resume=True)
    assert any(f"the checkpoint {ckpt} fails its checksum" in str(x.message) and "checkpoint.prev.pt" in str(x.message)
               for x in w)
    tr.train(cfg, out=str(tmp_path / "a"))
    assert metrics(tmp_path / "a") == metrics(tmp_path / "b")
    assert_same_weights(weights(tmp_path / "a"), weights(tmp_path / "b"))


def test_a_partial_metrics_line_and_stale_temporary_files_do_not_block_resume(tmp_path, data_mirror, capsys):
    """A kill mid-write leaves a partial last line in metrics.jsonl and .<name>.<random>.tmp files:
    --resume drops the line (and says so), deletes the files, and ends as an uninterrupted run."""
    out = tmp_path / "b"
    tr.train(SMALL, out=str(out), stop_after=5)
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "train_lo')
    stale = [out / ".checkpoint.pt.k1ll3d_x.tmp", out / ".results.json.abcdefgh.tmp"]
    for p in stale:
        p.write_bytes(b"cut short")
    assert tr.main(["--out", str(out), "--resume", "--no-progress"]) == 0
    assert "dropped a partial last line" in capsys.readouterr().err
    assert not any(p.exists() for p in stale)
    tr.train(SMALL, out=str(tmp_path / "a"))
    assert metrics(tmp_path / "a") == metrics(out)


def test_truncated_files_of_a_run_get_errors_naming_them(tmp_path, data_mirror, capsys):
    out = tmp_path / "b"
    tr.train(SMALL, out=str(out), stop_after=2)  # one checkpoint only: nothing to fall back on
    ckpt = out / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(SystemExit):
        tr.main(["--out", str(out), "--resume", "--no-progress"])
    assert f"the checkpoint {ckpt} fails its checksum" in capsys.readouterr().err
    (out / "metrics.jsonl").write_text('{"step": 2}\n{"st\n{"step": 4}\n')  # damage in the middle: an error
    with pytest.raises(tr.io.CorruptFileError, match=r"metrics\.jsonl, line 2, is not valid JSON"):
        tr.io.read_jsonl(out / "metrics.jsonl")


def test_a_second_run_on_the_same_folder_fails_at_once(tmp_path, data_mirror, capsys):
    """Two processes: a training run in a subprocess holds --out; a second run there (library or
    command line) fails at once, naming the folder; another folder is free."""
    out = tmp_path / "busy"
    first = subprocess.Popen([sys.executable, "-m", "nlteach.train", *SMALL_ARGS, "--steps", "100000", "--out", str(out)],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):  # wait until it trains (its first checkpoint)
            if (out / "checkpoint.pt.sha256").exists():
                break
            assert first.poll() is None, first.stderr.read()
            time.sleep(0.2)
        with pytest.raises(FolderInUse, match=f"{out} is in use: another process holds its lock"):
            tr.train(SMALL, out=str(out), overwrite=True)
        with pytest.raises(SystemExit) as e:
            tr.main([*SMALL_ARGS, "--out", str(out), "--overwrite"])
        assert e.value.code == 2 and f"{out} is in use" in capsys.readouterr().err
        with pytest.raises(SystemExit):
            tr.main(["--out", str(out), "--resume", "--no-progress"])
        assert f"{out} is in use" in capsys.readouterr().err
        assert first.poll() is None  # the first run goes on
    finally:
        first.send_signal(signal.SIGTERM)  # it finishes its step, checkpoints and exits
        assert first.wait(timeout=120) == 130, first.stderr.read()
    assert load_checkpoint(out / "checkpoint.pt")["step"] > 0


def test_resume_with_other_threads_warns_and_with_another_preset_is_refused(tmp_path, data_mirror, capsys):
    """Threads: the checkpoint records them; `--resume` without --threads uses the recorded count
    (exact), another count goes on with a ThreadCountWarning. Preset: refused, named."""
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    tr.train(SMALL, out=a, stop_after=5)
    assert load_checkpoint(Path(a) / "checkpoint.pt")["threads"] == 1
    torch.set_num_threads(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ThreadCountWarning)
        assert tr.main(["--out", a, "--resume", "--no-progress", "--stop-after", "7"]) == 0  # back to 1 thread
    assert torch.get_num_threads() == 1
    with pytest.warns(ThreadCountWarning, match=r"1 torch CPU thread\(s\) and this one uses 2"):
        assert tr.main(["--out", a, "--resume", "--no-progress", "--threads", "2", "--stop-after", "9"]) == 0
    torch.set_num_threads(1)
    with pytest.warns(ThreadCountWarning, match="--threads 2"):  # the library: the recorded count is 2 now
        tr.train(SMALL, out=a, resume=True, stop_after=10)
    tr.train(SMALL, out=b, stop_after=2)
    with pytest.raises(SystemExit) as e:
        tr.main(["--out", b, "--resume", "--no-progress", "--preset", "laptop"])
    assert e.value.code == 2 and "preset: saved 'tiny', now 'laptop'" in capsys.readouterr().err
    with pytest.raises(SettingsMismatch, match="preset: saved 'tiny', now 'laptop'"):
        tr.train({**SMALL, "preset": "laptop"}, out=b, resume=True)
