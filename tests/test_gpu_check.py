"""``make gpu-check`` (tools/gpu_check.py) without a GPU: the dry-run plan lists every stage, a
machine without CUDA is refused with its own exit status, and the results writer records the
provenance and each stage's status (stages simulated by cheap shell commands)."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from nlteach.memory import delta_rule_naive
from tools import fla_compare, gpu_check
from tools.gpu_check import NO_CUDA, SKIPPED, Stage, main, plan, run_stages

PROVENANCE_KEYS = {"git_commit", "git_dirty", "command", "torch", "cuda", "python", "device", "host"}


def sh(name: str, script: str, budget: float = 20.0, **kw) -> Stage:
    return Stage(name, ["sh", "-c", script], budget, f"simulated: {script}", **kw)


def test_dry_run_lists_every_stage_with_its_command_and_budget(capsys):
    assert main(["--dry-run", "--out", "OUT"]) == 0
    text = capsys.readouterr().out
    names = [s.name for s in plan()]
    assert names == ["cuda-tests", "bench-memory", "bench-models",
                     *(f"train-{m}" for m in gpu_check.MAIN_MODELS), "fla"]
    for st in plan():
        assert st.name in text and f"budget {st.budget_s:4.0f} s" in text
    assert "tests/test_cuda.py" in text and "tests/test_memory.py" in text and "-m cuda" in text
    assert "nlteach.bench memory --device cuda" in text and "nlteach.bench models --device cuda" in text
    assert "tools.fla_compare" in text
    for m in gpu_check.MAIN_MODELS:
        assert f"nlteach.train --model {m} --preset full --steps 50 --device cuda" in text
    assert f"hard cap {gpu_check.CAP_S:.0f} s" in text and gpu_check.CAP_S < 8 * 60


def test_the_rehearsal_runs_the_same_stages_on_the_cpu_at_the_tiny_preset():
    """``--rehearse`` (the script checked where no GPU is; run by hand, about 3 minutes on 2 cores)."""
    stages = gpu_check.rehearsal(plan())
    assert [s.name for s in stages] == [s.name for s in plan()]
    for st in stages:
        cmd = " ".join(st.command)
        assert "cuda" not in cmd.replace("-m cuda", "").replace("test_cuda", "")
        assert "--preset full" not in cmd and "--preset laptop" not in cmd
    assert "--steps 3 --device cpu" in " ".join(stages[-2].command)


def test_without_cuda_it_refuses_clearly_and_runs_nothing(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["--out", str(tmp_path / "out")]) == NO_CUDA
    err = capsys.readouterr().err
    assert "no CUDA device here" in err and "nothing was run" in err and "--dry-run" in err
    assert not (tmp_path / "out").exists()


def test_results_record_provenance_and_each_stage_and_go_on_after_a_failure(tmp_path):
    stages = [sh("ok", "echo hello > {out}/made.txt; echo done"),
              sh("fails", "echo broken >&2; exit 1"),
              sh("slow", "sleep 30", budget=1.0),
              sh("optional", f"exit {SKIPPED}"),
              sh("after", "rm -f {out}/ckpt.pt; touch {out}/ckpt.pt {out}/kept.json", cleanup=("*.pt",))]
    summary = run_stages(stages, tmp_path, cap_s=60, command="make gpu-check", device="Fake GPU")
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == summary
    assert PROVENANCE_KEYS <= set(saved["provenance"])
    assert saved["provenance"]["command"] == "make gpu-check" and saved["provenance"]["device"] == "Fake GPU"
    by = {s["name"]: s for s in saved["stages"]}
    assert [s["name"] for s in saved["stages"]] == [s.name for s in stages]  # every stage ran, in order
    assert {n: s["status"] for n, s in by.items()} == {
        "ok": "passed", "fails": "failed", "slow": "timeout", "optional": "skipped", "after": "passed"}
    assert by["fails"]["returncode"] == 1 and by["slow"]["seconds"] < 15
    assert "ok/made.txt" in by["ok"]["outputs"] and "done" in (tmp_path / by["ok"]["log"]).read_text()
    assert "broken" in (tmp_path / "fails" / "log.txt").read_text()
    assert by["after"]["removed"] == ["ckpt.pt"] and by["after"]["outputs"] == ["after/kept.json", "after/log.txt"]
    for s in saved["stages"]:
        assert {"command", "budget_s", "seconds", "folder", "description"} <= set(s)
    assert saved["ok"] is False


def test_the_cap_leaves_later_stages_not_run(tmp_path):
    summary = run_stages([sh("long", "sleep 30", budget=100), sh("never", "exit 0")], tmp_path, cap_s=3.0)
    assert [s["status"] for s in summary["stages"]] == ["timeout", "not_run"]
    assert "cap" in summary["stages"][1]["note"] and not summary["ok"]


def fake_gpu(monkeypatch, stages):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Fake GPU 80GB")
    monkeypatch.setattr(gpu_check, "device_info", lambda: {"device_name": "Fake GPU 80GB", "torch": "x", "cuda": "y"})
    monkeypatch.setattr(gpu_check, "plan", lambda **kw: stages)


def test_an_earlier_check_is_replaced_only_with_overwrite(monkeypatch, tmp_path, capsys):
    fake_gpu(monkeypatch, [sh("one", "echo new > {out}/new.txt")])
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "stale.json").write_text("{}")
    (tmp_path / "results.json").write_text(json.dumps({"what": "make gpu-check (earlier)"}))
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path)])
    assert "--overwrite" in capsys.readouterr().err and (tmp_path / "one" / "stale.json").exists()
    assert main(["--out", str(tmp_path), "--overwrite"]) == 0
    assert not (tmp_path / "one" / "stale.json").exists() and (tmp_path / "one" / "new.txt").exists()
    (tmp_path / "results.json").write_text(json.dumps({"what": "something else"}))
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--overwrite"])  # never clears a folder it did not write
    assert "did not write" in capsys.readouterr().err


@pytest.mark.parametrize("script, code", [("exit 0", 0), ("exit 2", 1)])
def test_exit_status_is_non_zero_when_a_stage_failed(monkeypatch, tmp_path, script, code):
    fake_gpu(monkeypatch, [sh("one", script), sh("two", "exit 0")])
    assert main(["--out", str(tmp_path / "gpu_check_<device>")]) == code
    saved = json.loads((tmp_path / "gpu_check_fake_gpu_80gb" / "results.json").read_text())
    assert saved["device_info"]["device_name"] == "Fake GPU 80GB" and saved["provenance"]["device"] == "Fake GPU 80GB"
    assert [s["status"] for s in saved["stages"]] == ["passed" if code == 0 else "failed", "passed"]


def fake_fla_kernel(q, k, v, beta, scale=None, initial_state=None, output_final_state=False, g=None,
                    head_first=True):
    """A stand-in with fla's conventions ([B, T, H, d] when head_first=False, q scaled by ``scale``,
    gate g = log alpha), computed by our naive delta rule."""
    assert head_first is False and scale == 1.0 and output_final_state
    t = lambda x: None if x is None else x.transpose(1, 2)  # noqa: E731
    o, S = delta_rule_naive(t(q) * scale, t(k), t(v), t(beta), alpha=None if g is None else t(g).exp())
    return o.transpose(1, 2), S


@pytest.mark.parametrize("rule", ["delta", "gated_delta"])
def test_fla_comparison_maps_layout_scale_and_gate(rule):
    """tools.fla_compare against a kernel with fla's conventions: fp32 outputs and gradients agree,
    so the comparison itself (layout, scale, gate) is right before it meets the real kernels."""
    r = fla_compare.compare(rule, fake_fla_kernel, B=1, H=2, T=20, d=4, device="cpu", repeat=1)
    assert r["fla_float32"]["out_rel_rms"] < 1e-5 and r["ours_float32"]["out_rel_rms"] == 0
    grads = [k for k in r["fla_float32"] if k.startswith("grad_")]
    assert len(grads) == (5 if rule == "gated_delta" else 4)
    assert all(r["fla_float32"][k] < 1e-4 for k in grads)
    assert r["fla_bfloat16"]["out_rel_rms"] < fla_compare.TOLERANCE
    assert r["ours_over_fla_fwd"] > 0 and r["ours_over_fla_fwd_bwd"] > 0


def test_fla_comparison_is_skipped_when_fla_does_not_import(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "fla", None)  # import fla raises ImportError
    assert fla_compare.main([]) == SKIPPED
    assert "skipped" in capsys.readouterr().out
