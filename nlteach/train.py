"""Language-model training: ``python -m nlteach.train`` and ``train(config)`` for notebooks.

    python -m nlteach.train --model transformer --preset tiny --out runs/t
    python -m nlteach.train --out runs/t --resume    # continue after Ctrl-C or a crash (same settings)
    torchrun --nproc_per_node 2 -m nlteach.train --preset tiny   # DDP (gloo on CPU, nccl on CUDA)

A config (:class:`TrainConfig`, nesting the model's :class:`~nlteach.models.ModelConfig`), a loop
(:func:`train`) and an evaluation (:func:`evaluate`); optimizers and schedules come from
:mod:`nlteach.recipes`; files, checkpoints (checksummed, the previous one kept), the folder lock,
RNG states, DDP, interrupts and provenance from :mod:`nlteach.runs` (docs/design.md#runs). Step
``s`` trains on ``RandomWindowSampler(seed).starts_for_step(s)``; warmup then cosine; clipping by
global norm; bf16 autocast on CUDA only (CPU runs are float32 and reproducible bit for bit). ``out``
receives ``metrics.jsonl`` (every ``log_every`` steps: step, train_loss since the last line,
val_loss or null, lr, tokens, time, grad_norm), ``checkpoint.pt`` and ``results.json``.
**Exact resume**: stopped (first Ctrl-C or SIGTERM: finish the step, checkpoint, exit 130) and
resumed, a CPU run writes the same metrics (all but ``time``) and weights as an uninterrupted one; a
resume with other settings (the preset included) is refused, naming each; another CPU thread count
is warned about. **DDP**: each rank takes ``batch_size / world_size`` rows of one global batch.
**Divergence**: the loop stops at the first step whose global gradient norm is not finite (a NaN
or infinite loss), before applying it; ``results.json`` then holds ``diverged_at_step`` and no
losses, and the command exits with status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from nlteach import models, recipes, text
from nlteach.config import get_device
from nlteach.data import DataUnavailableError
from nlteach.models import ModelConfig
from nlteach.runs import cli, console, distributed, io, rng
from nlteach.runs.lock import FolderInUse, FolderLock
from nlteach.runs.provenance import Clock, provenance
from nlteach.runs.rundir import SettingsMismatch, check_same_settings
from nlteach.runs.threads import check_resume_threads
from nlteach.text import CharVocab, RandomWindowSampler, get_batch
from nlteach.train_config import (
    SETTING_NAMES,
    ConfigError,
    TrainConfig,
    flatten_settings,
    resolve_config,
)

CHECKPOINT, METRICS, RESULTS = "checkpoint.pt", "metrics.jsonl", "results.json"
CHECKPOINT_VERSION = 3  # bumped whenever the checkpoint layout changes (3: plain data, nested arch)
# Settings that may differ between a run and its resumption (they do not change the numbers). Not the
# preset: it changes no number once the sizes are resolved, but a resume under another one would
# relabel the run, so it is refused like a setting.
RUNTIME_FIELDS = ("device", "out", "resume", "overwrite", "stop_after", "progress", "ckpt_every", "sample_chars")
COMMON_OPTIONS = ("preset", "device", "out", "overwrite")  # from runs.cli.add_common_arguments


def load_model(out: str | os.PathLike, *, device: str | torch.device | None = None) -> tuple[models.LanguageModel, CharVocab, dict]:
    """The model (eval mode), vocabulary and run config (:meth:`TrainConfig.to_dict`) in ``out/checkpoint.pt``."""
    path = Path(out) / CHECKPOINT
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; train first (python -m nlteach.train --out {out}).")
    ckpt = io.load_checkpoint(path)
    model = models.build_model(ckpt["config"]["model"], ModelConfig(**ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    model.to(get_device(device)).eval()
    return model, CharVocab(ckpt["vocab"]), ckpt["config"]


@torch.no_grad()
def evaluate(model: nn.Module, tokens: torch.Tensor, starts: np.ndarray, seq_len: int, batch_size: int,
             device: torch.device, autocast, *, rank: int = 0, world_size: int = 1) -> float:
    """Mean next-character cross-entropy (nats) over the windows ``starts`` (split across ranks)."""
    was_training = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=device)  # [sum of losses, number of tokens]
    mine = starts[rank::world_size]
    for i in range(0, len(mine), batch_size):
        x, y = (t.to(device) for t in get_batch(tokens, mine[i:i + batch_size], seq_len))
        with autocast():
            logits = model(x)
        total[0] += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum").double()
        total[1] += y.numel()
    if world_size > 1:
        torch.distributed.all_reduce(total)
    model.train(was_training)
    return float(total[0] / total[1])


@dataclass
class _Progress:  # the loop's running numbers, checkpointed so that a resumed run logs the same lines
    count: int = 0  # steps in the unfinished log interval
    elapsed: float = 0.0  # seconds spent in training steps
    best_val: float | None = None
    last_val: float | None = None
    last_train: float | None = None
    wall: float = 0.0  # wall and CPU seconds of the whole run (evaluation included)
    cpu: float = 0.0


def train(config: TrainConfig | dict | None = None, *, on_log=None, **overrides) -> dict:
    """Train one language model; returns the results (also written to ``out/results.json``).

    ``config``: a :class:`TrainConfig` or a dict of its fields; ``overrides`` replace fields
    (``train(model="hope", preset="tiny", steps=50, dim=64)``). ``on_log(record)`` gets every
    ``metrics.jsonl`` record on rank 0. A run stopped early (signal or ``stop_after``) returns
    ``{"interrupted": True, "step": ...}``; a diverged run (module docstring) returns its results with
    ``diverged_at_step`` set and ``val_loss``/``test_loss`` None."""
    cfg = resolve_config(config, **overrides)
    if cfg.resume and not (Path(cfg.out) / CHECKPOINT).exists():  # before the lock creates the folder
        raise ConfigError(f"resume=True but there is no checkpoint at {Path(cfg.out) / CHECKPOINT}; start without "
                          "--resume.")
    corpus, model_cfg = _data_and_model(cfg)  # every check that needs the data, before anything is written
    dist, device = distributed.init_distributed(get_device(cfg.device))
    finished = False  # the ranks meet at a barrier before the group ends, unless leaving on an error
    try:
        # one run per folder: rank 0 holds the lock of `out` for the whole run (its ranks share it)
        with FolderLock(cfg.out) if dist.main else contextlib.nullcontext():
            if dist.main:
                io.remove_stale_temporaries(cfg.out)
            results = _train(cfg, corpus, model_cfg, device, dist, on_log)
        finished = True
        return results
    finally:
        dist.close(synchronize=finished)


def _data_and_model(cfg: TrainConfig) -> tuple[text.CharCorpus, ModelConfig]:
    """The corpus and the complete model config (vocabulary from the data, ``dim`` from ``params``)."""
    corpus = text.load_char_corpus(cfg.data)
    shortest = min(corpus[split].numel() for split in ("train", "val", "test"))  # every split is read
    if cfg.seq_len > shortest - 2:
        raise ConfigError(f"seq_len={cfg.seq_len} is longer than the data allows: {cfg.data}'s shortest split "
                          f"has {shortest} characters; expected seq_len <= {shortest - 2}.")
    model_cfg = cfg.arch.replace(vocab_size=corpus.vocab.size)
    if cfg.params:
        try:
            model_cfg = models.size_to_budget(cfg.model, cfg.params, model_cfg, match_mlp=cfg.match_mlp)
        except ValueError as e:  # a budget too small for the smallest width
            raise ConfigError(f"params={cfg.params}: {e}") from None
    return corpus, model_cfg


def _train(cfg: TrainConfig, corpus: text.CharCorpus, model_cfg: ModelConfig, device: torch.device,
           dist: distributed.Dist, on_log) -> dict:
    out = Path(cfg.out)
    ckpt_path, metrics_path = out / CHECKPOINT, out / METRICS
    ckpt = None
    if cfg.resume:
        ckpt = io.load_checkpoint(ckpt_path)
        if ckpt.get("version") != CHECKPOINT_VERSION:
            raise ConfigError(f"{ckpt_path} has checkpoint format {ckpt.get('version')!r}; this version of "
                              f"nlteach resumes format {CHECKPOINT_VERSION} only.")
        check_same_settings(flatten_settings(ckpt["config"]), cfg.flat(), ckpt_path, ignore=RUNTIME_FIELDS)
        if device.type == "cpu":  # CUDA runs (bf16 autocast) are not bit-exact anyway
            check_resume_threads(ckpt.get("threads"), ckpt_path)
    elif (ckpt_path.exists() or metrics_path.exists()) and not cfg.overwrite:
        raise ConfigError(f"{out} already holds a run ({CHECKPOINT} or {METRICS}); pass --resume to continue "
                          "it, --overwrite to start again, or choose another --out.")

    vocab, train_tokens, val_tokens, test_tokens = corpus.vocab, corpus["train"], corpus["val"], corpus["test"]
    if ckpt is not None and ckpt["vocab"] != vocab.chars:
        raise ConfigError("the checkpoint's vocabulary differs from the data's; was the corpus changed?")
    torch.manual_seed(cfg.seed)  # the initial weights depend on the seed only (all ranks alike)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    raw_model = models.build_model(cfg.model, model_cfg).to(device)
    if dist.rank > 0:  # dropout masks differ across ranks; rank 0 matches a single process
        torch.manual_seed(cfg.seed + 7919 * dist.rank)
    model: nn.Module = raw_model
    if dist.world_size > 1:
        model = nn.parallel.DistributedDataParallel(raw_model, device_ids=[device.index] if device.type == "cuda" else None,
                                                    find_unused_parameters=not raw_model.uses_every_parameter)
    try:
        optimizer = recipes.make_model_optimizer(cfg.optimizer, raw_model, cfg.lr, weight_decay=cfg.weight_decay,
                                                 cms_multi_frequency=cfg.cms_multi_frequency,
                                                 step_periods=cfg.cms_step_periods)
    except ValueError as e:  # the only one resolve_config cannot foresee: a model without a CMS
        raise ConfigError(f"cms_multi_frequency needs a model with a CMS: {e}") from None
    scheduler = recipes.make_scheduler(optimizer, recipes.WarmupCosine(cfg.steps, cfg.warmup, cfg.min_lr_ratio))
    sampler = RandomWindowSampler(train_tokens.numel(), cfg.seq_len, cfg.batch_size, seed=cfg.seed,
                                  rank=dist.rank, world_size=dist.world_size)

    def autocast():
        use_amp = cfg.amp and device.type == "cuda"
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16) if use_amp else contextlib.nullcontext()

    def run_eval(tokens: torch.Tensor) -> float:
        starts = text.eval_windows(tokens.numel(), cfg.seq_len, cfg.eval_windows)
        return evaluate(raw_model, tokens, starts, cfg.seq_len, max(1, cfg.batch_size // dist.world_size), device,
                        autocast, rank=dist.rank, world_size=dist.world_size)

    step, p = 0, _Progress()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)  # this rank's, of the unfinished interval
    if ckpt is not None:
        raw_model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        sampler.load_state_dict(ckpt["sampler"])
        step, p, per_rank = int(ckpt["step"]), _Progress(**ckpt["log"]), ckpt["per_rank"]
        if ckpt["world_size"] == dist.world_size:
            rng.set_rng_state(per_rank[dist.rank]["rng"], device)
            loss_sum = per_rank[dist.rank]["loss_sum"].to(device)
        else:  # the unfinished interval's mean loss is kept; its split over ranks is not
            loss_sum = (sum(r["loss_sum"] for r in per_rank) / len(per_rank)).to(device)
            _say(dist, f"the checkpoint was written by {ckpt['world_size']} process(es), this run has "
                       f"{dist.world_size}: data and weights resume exactly, RNG states (dropout) do not.")
        if dist.main and metrics_path.exists():  # keep the records up to the checkpoint; later ones are redone
            records, partial = io.read_jsonl(metrics_path)  # a kill mid-write leaves a partial last line
            if partial:
                _say(dist, f"{metrics_path}: dropped a partial last line (a write cut short); it is redone.")
            io.atomic_write_text(metrics_path, "".join(json.dumps(r) + "\n" for r in records if r["step"] <= step))
    elif dist.main:
        for name in (METRICS, RESULTS):
            (out / name).unlink(missing_ok=True)
        io.remove_checkpoint(ckpt_path)
    clock = Clock(p.wall, p.cpu)
    n_params, tokens_per_step = models.count_parameters(raw_model), cfg.batch_size * cfg.seq_len

    def save_checkpoint() -> None:
        per_rank = distributed.gather({"rng": rng.rng_state(device), "loss_sum": loss_sum.cpu()}, dist)
        if dist.main:
            p.wall, p.cpu = clock.wall, clock.cpu
            io.atomic_save({"version": CHECKPOINT_VERSION, "config": cfg.to_dict(), "model_config": model_cfg.to_dict(),
                            "vocab": vocab.chars, "step": step, "model": raw_model.state_dict(),
                            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                            "sampler": sampler.state_dict(), "per_rank": per_rank, "world_size": dist.world_size,
                            "threads": torch.get_num_threads(), "log": dataclasses.asdict(p)}, ckpt_path)

    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
    _say(dist, f"{cfg.model}: {n_params:,} parameters (dim={model_cfg.dim}, n_layers={model_cfg.n_layers}, "
               f"n_heads={model_cfg.n_heads}), {cfg.data} vocab {vocab.size}, device {device}, {dist.world_size} "
               f"process(es), preset {cfg.preset}, out {out}" + (f", resuming at step {step}" if ckpt else ""))
    bar = tqdm(total=cfg.steps, initial=step, desc=cfg.model, dynamic_ncols=True, disable=not (cfg.progress and dist.main))
    metrics_file = open(metrics_path, "a", encoding="utf-8") if dist.main else None  # noqa: SIM115
    interrupted: str | None = None  # why the loop stopped early: "signal" or "stop_after"
    diverged: int | None = None  # the step whose gradient was not finite (the loop stops there)
    model.train()
    try:
        with distributed.StopFlag(distributed=dist.world_size > 1, verbose=dist.main, name="nlteach.train") as stop:
            while step < cfg.steps:
                if cfg.stop_after is not None and step >= cfg.stop_after:
                    interrupted = "stop_after"
                    break
                if distributed.any_rank(stop.requested, dist, device):
                    interrupted = "signal"
                    break
                t0 = time.perf_counter()
                x, y = get_batch(train_tokens, sampler.next_starts(), cfg.seq_len)
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                lr = optimizer.param_groups[0]["lr"]
                with autocast():
                    logits = model(x)  # [B_local, T, V]
                loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                # global gradient norm, clipped to grad_clip (an infinite max norm only measures it)
                grad_norm = nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
                if not math.isfinite(float(grad_norm)):  # a NaN/inf loss or gradient: stop before the step
                    diverged = step + 1  # (DDP: the norm of the all-reduced gradients, the same on every rank)
                    break
                optimizer.step()
                scheduler.step()
                step += 1
                loss_sum += loss.detach().double()
                p.count += 1
                p.elapsed += time.perf_counter() - t0
                bar.update(1)

                is_eval = step % cfg.eval_every == 0 or step == cfg.steps
                if is_eval or step % cfg.log_every == 0:
                    if dist.world_size > 1:
                        torch.distributed.all_reduce(loss_sum)
                        loss_sum /= dist.world_size
                    p.last_train, p.count = float(loss_sum) / p.count, 0
                    loss_sum.zero_()
                    val = None
                    if is_eval:
                        val = p.last_val = run_eval(val_tokens)
                        p.best_val = val if p.best_val is None else min(p.best_val, val)
                    record = {"step": step, "train_loss": p.last_train, "val_loss": val, "lr": lr,
                              "tokens": step * tokens_per_step, "time": round(p.elapsed, 3), "grad_norm": float(grad_norm)}
                    if dist.main:
                        metrics_file.write(json.dumps(record) + "\n")
                        metrics_file.flush()
                        bar.set_postfix(loss=f"{p.last_train:.3f}", val="-" if p.last_val is None else f"{p.last_val:.3f}")
                        if on_log is not None:
                            on_log(record)
                if step % cfg.ckpt_every == 0 and step < cfg.steps:
                    save_checkpoint()
    finally:
        bar.close()
        if metrics_file is not None:
            metrics_file.close()

    save_checkpoint()
    if interrupted:
        launcher = f"torchrun --nproc_per_node {dist.world_size}" if dist.world_size > 1 else "python"
        _say(dist, f"stopped at step {step}; checkpoint written to {ckpt_path}. Continue with: "
                   f"{launcher} -m nlteach.train --out {out} --resume")
        return {"interrupted": True, "stopped_by": interrupted, "step": step, "checkpoint": str(ckpt_path),
                "out": str(out)}
    ok = diverged is None  # a diverged run is not evaluated: its losses are None (module docstring)
    test_loss = run_eval(test_tokens) if ok else None
    sampled = ""
    if ok and dist.main and cfg.sample_chars:
        sampled = models.sample(raw_model, vocab, "\n", cfg.sample_chars, temperature=cfg.temperature, context=cfg.seq_len,
                      seed=cfg.seed)
    results = {
        "config": cfg.to_dict(), "model_config": model_cfg.to_dict(), "n_params": n_params,
        "n_params_non_embedding": models.count_parameters(raw_model, non_embedding=True), "vocab_size": vocab.size,
        "device": str(device), "world_size": dist.world_size, "steps": step, "tokens": step * tokens_per_step,
        **({} if ok else {"diverged_at_step": diverged}),
        "train_loss": p.last_train if ok else None, "val_loss": p.last_val if ok else None, "best_val_loss": p.best_val,
        "test_loss": test_loss, "val_bpc": p.last_val / math.log(2) if ok else None,
        "test_bpc": test_loss / math.log(2) if ok else None, "time_s": p.elapsed,
        "tokens_per_s": step * tokens_per_step / p.elapsed if p.elapsed > 0 else None, **clock.as_dict(),
        "sample": sampled, "interrupted": False, "provenance": provenance(device=device),
    }
    if dist.main:
        io.atomic_write_json(out / RESULTS, results, indent=2)
    if ok:
        _say(dist, f"done: val loss {p.last_val:.4f}, test loss {test_loss:.4f} nats/char ({results['test_bpc']:.3f} "
                   f"bits/char); results in {out / RESULTS}" + (f"\n--- sample ---\n{sampled}" if sampled else ""))
    else:  # the checkpoint holds the weights before that step: a resume takes the same step again
        _say(dist, f"diverged: the gradient norm at step {diverged} is not finite (a NaN or infinite loss or "
                   f"gradient); stopped before applying it, no evaluation. Results in {out / RESULTS}")
    return results


def _say(dist: distributed.Dist, message: str) -> None:
    if dist.main:
        console.log(f"[nlteach.train] {message}")  # stdout in a notebook, stderr on a command line


def build_parser(*, only_given: bool = False) -> argparse.ArgumentParser:
    """The command line, generated from :class:`TrainConfig` and :class:`nlteach.models.ModelConfig`
    plus the common options; ``only_given=True`` leaves the options not typed out of the namespace
    (to lay them over a checkpoint's settings on ``--resume``)."""
    p = argparse.ArgumentParser(
        prog="python -m nlteach.train",
        description="Train a character-level language model (the docstring of nlteach.train says what a run "
                    "does). Unset sizes come from the size preset. With --resume, unset options come from "
                    "the checkpoint in --out, so `--out DIR --resume` is enough.")
    cli.add_common_arguments(p)
    cli.dataclass_arguments(p, TrainConfig, skip=(*COMMON_OPTIONS, "vocab_size"), only_given=only_given)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    typed_preset = args.preset  # None when --preset was not typed
    values = dict(vars(cli.apply_common(parser, args)))
    threads = values.pop("threads")  # applied by apply_common when typed
    try:
        if values["resume"]:  # the checkpoint's settings, then the runtime options, then what was typed
            if values["out"] is None:
                raise ConfigError("--resume needs --out DIR, the folder of the run to continue.")
            path = Path(values["out"]) / CHECKPOINT
            if not path.exists():
                raise ConfigError(f"--resume: there is no checkpoint at {path}; start without --resume.")
            ckpt = io.load_checkpoint(path)
            saved = flatten_settings(ckpt["config"])
            if threads is None and ckpt.get("threads"):  # resume with the recorded threads: exact
                torch.set_num_threads(int(ckpt["threads"]))
            given = vars(build_parser(only_given=True).parse_args(argv))
            values = {**saved, **{k: values[k] for k in RUNTIME_FIELDS}, "preset": typed_preset or saved["preset"],
                      **{k: v for k, v in given.items() if k in SETTING_NAMES and k not in COMMON_OPTIONS}}
        result = train(values)
    except (ConfigError, SettingsMismatch, io.CorruptFileError, FolderInUse, DataUnavailableError) as e:
        parser.error(str(e))
    if result.get("diverged_at_step") is not None:
        return 1
    return 130 if result.get("stopped_by") == "signal" else 0


if __name__ == "__main__":
    sys.exit(main())
