"""``make gpu-check`` (``python -m tools.gpu_check``): the library's first run on a CUDA GPU, in one
prepared script of under 8 minutes on one H100 (issue 19, item 7).

Stages, each a subprocess with its own time budget (a stage past its budget is stopped and recorded
as ``timeout``; a failing stage is recorded and the next one runs):

1. ``cuda-tests``: the tests marked ``cuda`` (chunked kernels and models, CUDA vs CPU, fp32);
2. ``bench-memory``: ``python -m nlteach.bench memory --device cuda`` (chunked vs naive);
3. ``bench-models``: ``python -m nlteach.bench models --device cuda`` (step time vs the Transformer);
4. ``train-<model>``: a short ``--preset full`` run of each main model through ``nlteach.train``;
5. ``fla``: flash-linear-attention's Triton kernels beside ours (:mod:`tools.fla_compare`), only
   when the ``fla`` package imports (``skipped`` otherwise; nothing is ever installed).

Every stage writes into its own folder under ``--out`` (default ``results/gpu_check_<gpu name>``):
``log.txt`` (its stdout and stderr) and its own results. ``--out``/``results.json`` sums it up:
the provenance (commit, clean tree, command, device name, torch and CUDA versions), and per stage
its command, status (passed, failed, timeout, skipped, not_run), exit code, seconds, budget, folder
and headline numbers. The whole script has a hard cap (``--cap``): stages that would start after it
are ``not_run``. A folder holding an earlier check is replaced only with ``--overwrite``;
``--rehearse`` runs the same stages on the CPU at the tiny preset (checks the script, no GPU
number). Exit status: 0 when every stage passed or was skipped, 1 when any failed, 3 on a
machine without CUDA (nothing run; ``--dry-run`` prints the plan there too and exits 0).

The training stages read tinyshakespeare from the data cache (``data/``) or ``$NLTEACH_DATA_MIRROR``:
on a GPU machine without network, bring ``data/tinyshakespeare`` along.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from nlteach.runs import RESULTS_ROOT
from nlteach.runs.io import atomic_write_json
from nlteach.runs.provenance import command_line, git_dirty, provenance

ROOT = Path(__file__).resolve().parents[1]
NO_CUDA = 3  # exit status on a machine without CUDA (nothing was run)
SKIPPED = 4  # a stage's exit status meaning "not applicable here" (fla not installed)
CAP_S = 450.0  # the whole script's hard cap: under 8 minutes on one H100
MAIN_MODELS = ("transformer", "titans", "hope", "hope-attention")
TRAIN_STEPS = 50


@dataclasses.dataclass
class Stage:
    """One step of the check: ``command`` runs in the repository root with ``{out}`` replaced by
    the stage's folder; past ``budget_s`` seconds it is stopped. ``cleanup``: glob patterns removed
    from the stage's folder afterwards (checkpoints: too large to keep)."""

    name: str
    command: list[str]
    budget_s: float
    description: str
    cleanup: tuple[str, ...] = ()

    def argv(self, folder: Path) -> list[str]:
        return [part.replace("{out}", str(folder)) for part in self.command]


def cuda_test_files() -> list[str]:
    """The test files that hold a test marked ``cuda`` (only those are collected: the rest of the
    suite needs the course's extras, which a bare GPU machine may lack)."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")
                  if "pytest.mark.cuda" in p.read_text(encoding="utf-8", errors="replace"))


def plan(python: str = sys.executable, *, steps: int = TRAIN_STEPS) -> list[Stage]:
    """The stages of the check, in order (budgets sum above the cap on purpose: each is a ceiling,
    the cap is the promise)."""
    stages = [
        Stage("cuda-tests", [python, "-m", "pytest", *cuda_test_files(), "-m", "cuda", "-q", "-p", "no:cacheprovider",
                             "--junitxml", "{out}/junit.xml"], 120,
              "the tests marked cuda: chunked kernels, Titans, self-modifying Titans, in-context CMS and "
              "every main model's forward/backward, CUDA vs CPU in fp32"),
        Stage("bench-memory", [python, "-m", "nlteach.bench", "memory", "--device", "cuda", "--preset", "laptop",
                               "--health", "--out", "{out}"], 100,
              "linear attention, delta rule, gated delta rule: chunked vs naive at B*H=8, T=4096, d=64 "
              "(the shape of the speed targets), fp32, plus the numerical health checks"),
        Stage("bench-models", [python, "-m", "nlteach.bench", "models", "--device", "cuda", "--preset", "full",
                               "--models", ",".join(MAIN_MODELS), "--rounds", "3", "--out", "{out}"], 120,
              "step time (forward+backward, bf16 autocast) of the main models at 25M parameters, T=2048, "
              "relative to the Transformer"),
    ]
    for model in MAIN_MODELS:
        stages.append(Stage(
            f"train-{model}",
            [python, "-m", "nlteach.train", "--model", model, "--preset", "full", "--steps", str(steps),
             "--device", "cuda", "--eval-windows", "200", "--sample-chars", "0", "--no-progress",
             "--out", "{out}/run", "--overwrite"],
            90, f"{steps} steps of {model} at the full preset (dim 384, 6 layers, T=256, batch 64)",
            cleanup=("run/*.pt", "run/*.pt.sha256")))
    # optional, so last: the cap never takes a main model's run for it
    stages.append(Stage("fla", [python, "-m", "tools.fla_compare", "--out", "{out}"], 90,
                        "flash-linear-attention's Triton chunk kernels vs ours on the same inputs (skipped when "
                        "the fla package does not import)"))
    return stages


def gpu_slug(name: str) -> str:
    """A folder-friendly form of a device name: 'NVIDIA H100 80GB HBM3' -> 'nvidia_h100_80gb_hbm3'."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "gpu"


def device_info() -> dict:
    """The CUDA device and the versions the numbers depend on."""
    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update({"device_name": props.name, "device_count": torch.cuda.device_count(),
                     "memory_gib": round(props.total_memory / 2**30, 1),
                     "capability": f"{props.major}.{props.minor}",
                     "cudnn": torch.backends.cudnn.version(), "driver": _driver_version()})
    return info


def _driver_version() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().splitlines()[0] if out.strip() else None


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group (a training run checkpoints and exits), SIGKILL 10 s later."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


def _run_one(argv: list[str], log: Path, timeout: float, env: dict) -> tuple[int | None, bool]:
    """Run ``argv`` (stdout and stderr to ``log``) in its own process group; past ``timeout`` the
    whole group is stopped. Returns (exit status, timed out)."""
    with open(log, "w") as f:
        f.write(f"$ {shlex.join(argv)}\n")
        f.flush()
        try:
            proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                                    start_new_session=True)
        except OSError as e:
            f.write(f"could not start: {e}\n")
            return None, False
        try:
            return proc.wait(timeout=max(timeout, 0.1)), False
        except subprocess.TimeoutExpired:
            _stop(proc)
            f.write(f"\n[gpu_check] stopped after its budget of {timeout:.0f} s\n")
            return proc.returncode, True
        except BaseException:  # Ctrl-C or a kill of this script: the stage's own process group goes too
            _stop(proc)
            raise
            return proc.returncode, True


def headline(stage: str, folder: Path) -> dict:
    """A few numbers from a stage's own results files (the files hold the rest)."""
    def load(name: str) -> dict | None:
        try:
            return json.loads((folder / name).read_text())
        except (OSError, ValueError):
            return None

    if stage == "bench-memory" and (r := load("bench_memory.json")):
        return {"targets": r.get("targets"), "health": r.get("health")}
    if stage == "bench-models" and (r := load("bench_models.json")):
        return {"x_transformer": {row.get("model"): row.get("x_transformer") for row in r.get("rows", [])
                                  if isinstance(row, dict)}}
    if stage == "fla" and (r := load("fla_compare.json")):
        return {k: v for k, v in r.items() if k.startswith(("max_rel", "ours_over_fla"))}
    if stage.startswith("train-") and (r := load("run/results.json")):
        return {k: r.get(k) for k in ("steps", "train_loss", "val_loss", "test_loss", "tokens_per_s", "time_s")}
    if stage == "cuda-tests" and (folder / "junit.xml").exists():
        text = (folder / "junit.xml").read_text(errors="replace")
        m = re.search(r'<testsuite [^>]*errors="(\d+)" failures="(\d+)" skipped="(\d+)" tests="(\d+)"', text)
        if m:
            return dict(zip(("errors", "failures", "skipped", "tests"), map(int, m.groups())))
    return {}


def run_stages(stages: list[Stage], out: Path, *, cap_s: float = CAP_S, command: str | None = None,
               device: str | None = None, env: dict | None = None, extra: dict | None = None) -> dict:
    """Run ``stages`` in order under the hard cap ``cap_s``, each in ``out/<name>/``, and write
    ``out/results.json`` (rewritten after every stage, so a killed run still leaves a summary).
    Returns the summary; its ``ok`` is False when any stage failed, timed out or did not run."""
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))  # this checkout first
    t_start = time.perf_counter()
    summary: dict = {
        "what": "make gpu-check (tools/gpu_check.py): the library on one CUDA GPU",
        "cap_s": cap_s, **(extra or {}), "stages": [],
        "provenance": {**provenance(command=command, device=device), "cuda": torch.version.cuda},
    }
    for st in stages:
        folder = out / st.name
        record = {"name": st.name, "description": st.description, "command": shlex.join(st.argv(folder)),
                  "budget_s": st.budget_s, "folder": os.path.relpath(folder, out)}
        left = cap_s - (time.perf_counter() - t_start)
        if left <= 1:
            record.update(status="not_run", returncode=None, seconds=0.0,
                          note=f"the script's cap of {cap_s:.0f} s was reached")
        else:
            folder.mkdir(parents=True, exist_ok=True)
            timeout = min(st.budget_s, left)
            print(f"[gpu_check] {st.name} (budget {timeout:.0f} s): {record['command']}", flush=True)
            t0 = time.perf_counter()
            rc, timed_out = _run_one(st.argv(folder), folder / "log.txt", timeout, env)
            seconds = time.perf_counter() - t0
            status = ("timeout" if timed_out else "skipped" if rc == SKIPPED
                      else "passed" if rc == 0 else "failed")
            removed = [p for pattern in st.cleanup for p in folder.glob(pattern)]
            for p in removed:
                p.unlink(missing_ok=True)
            record.update(status=status, returncode=rc, seconds=round(seconds, 2), log=f"{record['folder']}/log.txt",
                          outputs=sorted(os.path.relpath(p, out) for p in folder.rglob("*")
                                         if p.is_file() and p.name != ".lock"),  # a run folder's lock: meaningless after
                          headline=headline(st.name, folder))
            if removed:
                record["removed"] = sorted(p.name for p in removed)
            print(f"[gpu_check] {st.name}: {status} in {seconds:.1f} s", flush=True)
        summary["stages"].append(record)
        summary["total_s"] = round(time.perf_counter() - t_start, 2)
        summary["ok"] = all(s["status"] in ("passed", "skipped") for s in summary["stages"])
        atomic_write_json(out / "results.json", summary, indent=2)
    summary["ok"] = all(s["status"] in ("passed", "skipped") for s in summary["stages"])
    atomic_write_json(out / "results.json", summary, indent=2)
    return summary


def rehearsal(stages: list[Stage], steps: int = 3) -> list[Stage]:
    """``stages`` on the CPU at the tiny preset, ``steps`` training steps: a rehearsal that checks the
    script and its commands where no GPU is (the CUDA tests skip, fla is skipped; no GPU number)."""
    value = {"--device": "cpu", "--preset": "tiny", "--steps": str(steps), "--rounds": "1"}
    out = []
    for st in stages:
        cmd = [value.get(st.command[i - 1], part) if i else part for i, part in enumerate(st.command)]
        out.append(dataclasses.replace(st, command=cmd, description="(rehearsal on the CPU, tiny) " + st.description))
    return out


def describe(stages: list[Stage], cap_s: float, out: str) -> str:
    lines = [f"make gpu-check: {len(stages)} stages, hard cap {cap_s:.0f} s, results in {out}/results.json"]
    for i, st in enumerate(stages, 1):
        lines.append(f"{i:2d}. {st.name:22s} budget {st.budget_s:4.0f} s  {st.description}")
        lines.append(f"      $ {shlex.join(st.argv(Path(out) / st.name))}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.gpu_check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None,
                   help="results folder (default: results/gpu_check_<gpu name>; <device> in it is replaced "
                        "by the GPU's name)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (stages, commands, budgets) and exit")
    p.add_argument("--cap", type=float, default=CAP_S, help=f"hard cap of the whole script in seconds (default {CAP_S:.0f})")
    p.add_argument("--only", default=None, help="comma-separated stage names to run (default: all)")
    p.add_argument("--steps", type=int, default=TRAIN_STEPS, help=f"training steps per model (default {TRAIN_STEPS})")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the results of an earlier gpu-check in --out (refused without it)")
    p.add_argument("--rehearse", action="store_true",
                   help="run every stage on the CPU at the tiny preset (3 training steps) to check the script "
                        "itself where no GPU is; default --out runs/gpu_check_rehearsal; no GPU number")
    args = p.parse_args(argv)
    stages = plan(steps=args.steps)
    if args.rehearse:
        stages = rehearsal(stages)
    if args.only:
        wanted = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = sorted(set(wanted) - {s.name for s in stages})
        if unknown:
            p.error(f"--only: unknown stage(s) {unknown}; the stages are {[s.name for s in stages]}")
        stages = [s for s in stages if s.name in wanted]
    cuda = torch.cuda.is_available()
    slug = gpu_slug(torch.cuda.get_device_name(0)) if cuda and not args.rehearse else "<device>"
    default_out = ROOT / "runs" / "gpu_check_rehearsal" if args.rehearse else RESULTS_ROOT / "gpu_check_<device>"
    out = (args.out or str(default_out)).replace("<device>", "cpu" if args.rehearse else slug)
    if args.dry_run:
        print(describe(stages, args.cap, out))
        if not cuda:
            print("(this machine has no CUDA device: without --dry-run the script would refuse to run)")
        return 0
    if not cuda and not args.rehearse:
        print(f"gpu_check: no CUDA device here (torch {torch.__version__}, built with CUDA "
              f"{torch.version.cuda or 'none'}); nothing was run. Run `make gpu-check` on a machine with an "
              f"NVIDIA GPU and a CUDA build of torch, or `python -m tools.gpu_check --dry-run` for the plan.",
              file=sys.stderr)
        return NO_CUDA
    previous = Path(out) / "results.json"
    if previous.exists():  # stale files of an earlier check must not pass for this one's
        try:
            ours = json.loads(previous.read_text()).get("what", "").startswith("make gpu-check")
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            p.error(f"--out {out} holds a results.json that gpu_check did not write; choose another --out")
        if not args.overwrite:
            p.error(f"--out {out} holds an earlier gpu-check; --overwrite replaces it (or choose another --out)")
        shutil.rmtree(out)
    info = device_info() if not args.rehearse else {**device_info(), "device_name": "cpu (rehearsal)"}
    dirty = git_dirty()
    if dirty:
        print(f"gpu_check: warning: {len(dirty)} file(s) with uncommitted changes ({', '.join(dirty[:5])}"
              f"{', ...' if len(dirty) > 5 else ''}): results.json records them; commit first for numbers "
              "that a commit reproduces", file=sys.stderr)
    print(f"gpu_check: {info.get('device_name')}, torch {info['torch']}, CUDA {info['cuda']}; results in {out}", flush=True)
    summary = run_stages(stages, Path(out), cap_s=args.cap, command=command_line(), device=info["device_name"],
                         extra={"device_info": info, **({"rehearsal": True} if args.rehearse else {})})
    bad = [s["name"] for s in summary["stages"] if s["status"] not in ("passed", "skipped")]
    print(f"gpu_check: {'all stages passed' if not bad else 'NOT passed: ' + ', '.join(bad)} "
          f"({summary['total_s']:.0f} s); summary in {Path(out) / 'results.json'}")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
