"""Notebook 12 (full-size runs): what a preset costs, why a step's cost ratio depends on the sequence
length and the hardware, data parallelism, exact resume and bf16, all computed with the library's
own functions.

- **Cost of a preset.** :func:`preset_rows` reads the language-model comparison's size table
  (:func:`nlteach.experiments.lm_comparison.sizes`); :func:`cost_rows` sizes each model to the
  preset's parameter budget (:func:`nlteach.models.size_to_budget`), counts its parameters
  (:func:`nlteach.models.param_count`) and estimates the FLOPs of one training step with
  :func:`estimate_step_flops` (the "6 N" rule plus causal attention's own products). With
  ``count=True`` it also *counts* them, with the benchmark's counter (:func:`count_step_flops`,
  which runs ``torch.utils.flop_counter`` through :mod:`nlteach.bench.models`).
- **Sequence length.** :func:`flops_per_token` counts one training step's FLOPs per token at
  several lengths (:func:`draw_flops_per_token` draws them): attention's grow with ``T``, a
  chunked memory's do not.
- **FLOPs are not time.** :func:`rate_rows` turns the committed benchmark files
  (:func:`nlteach.results.speed_rows`) into the identity *time ratio = FLOP ratio x rate ratio*.
- **Data parallelism.** :func:`rank_gradients` computes what each of ``world_size`` DDP ranks
  computes on its rows of one global batch; :func:`all_reduce_mean` (the reference of exercise
  12.ddp_gradient) combines them; :func:`data_parallel_check` compares the result with one process.
- **Exact resume** (:func:`resume_check`) and **bf16** (:func:`bf16_matmul_error`).

No GPU has been used to write or test any of this; nothing here times anything.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from nlteach.bench.models import attention_flops, step_flops, training_step
from nlteach.config import PRESETS
from nlteach.experiments import lm_comparison
from nlteach.models import (
    CausalSelfAttention,
    ModelConfig,
    build_model,
    param_count,
    size_to_budget,
)
from nlteach.results import speed_rows
from nlteach.runs import RESULTS_ROOT
from nlteach.runs.io import load_checkpoint, read_json, read_jsonl
from nlteach.text import load_char_corpus
from nlteach.train import train

VOCAB_SIZE = 65  # tiny Shakespeare's characters: the comparison's vocabulary (nlteach.train reads it from the data)
MODELS = lm_comparison.MAIN_MODELS


# ---------------------------------------------------------------------------------------------
# What a preset costs


def preset_rows(presets: Sequence[str] = PRESETS) -> list[dict[str, Any]]:
    """One row per preset of notebook 09's comparison: its parameter budget, depth, steps, global
    batch, sequence length, tokens per step (batch x length) and per run (x steps)."""
    rows = []
    for p in presets:
        z = lm_comparison.sizes(p)
        tokens_step = int(z["batch_size"]) * int(z["seq_len"])
        rows.append({"preset": p, "params": int(z["params"]), "n_layers": int(z["n_layers"]),
                     "n_heads": int(z["n_heads"]), "steps": int(z["steps"]), "batch_size": int(z["batch_size"]),
                     "seq_len": int(z["seq_len"]), "tokens_per_step": tokens_step,
                     "tokens_per_run": tokens_step * int(z["steps"])})
    return rows


def sized_config(model: str, preset: str) -> ModelConfig:
    """``model``'s configuration at ``preset``'s budget, as :mod:`nlteach.train` builds it
    (``size_to_budget`` on the preset's depth and heads; the other fields are ModelConfig's defaults).
    Sizing builds the model several times (seconds at the full preset), so the answer is cached."""
    return _sized(model, preset).replace()


@functools.lru_cache(maxsize=64)
def _sized(model: str, preset: str) -> ModelConfig:
    z = lm_comparison.sizes(preset)
    base = ModelConfig(vocab_size=VOCAB_SIZE, dim=2 * int(z["n_heads"]), n_layers=int(z["n_layers"]),
                       n_heads=int(z["n_heads"]))
    return size_to_budget(model, int(z["params"]), base, match_mlp=bool(z.get("match_mlp", False)))


def attention_layer_count(model: str, config: ModelConfig) -> int:
    """How many softmax-attention layers ``model`` has (counted on a parameter-free meta build)."""
    with torch.device("meta"):
        net = build_model(model, config)
    return sum(isinstance(m, CausalSelfAttention) for m in net.modules())


def estimate_step_flops(n_params: int, batch_size: int, seq_len: int, *, attention_layers: int = 0,
                        dim: int = 0, n_heads: int = 1) -> float:
    """Estimated matrix-product FLOPs of one training step (forward + backward).

    The parameter term is the usual rule: every weight is used in one multiply-add (2 FLOPs) per
    token forward and twice as many backward (gradients of the inputs and of the weights): ``6 N``
    per token, ``N`` the non-embedding parameters. Each causal softmax-attention layer adds its own
    products, which no parameter counts (:func:`nlteach.bench.models.attention_flops`: ``q k^T``
    and ``P v`` over the causal triangle, and their backward). A memory model's in-context updates
    (its inner gradient steps) are *not* in this estimate: :func:`count_step_flops` counts them."""
    flops = 6.0 * n_params * batch_size * seq_len
    if attention_layers:
        shape = (batch_size, n_heads, seq_len, dim // n_heads)
        per_layer = attention_flops(shape, shape, shape, True) + attention_flops(shape, shape, shape, True,
                                                                                 backward=True)
        flops += attention_layers * per_layer
    return flops


def count_step_flops(model: str, config: ModelConfig, batch_size: int, seq_len: int, *, count_batch: int = 1,
                     seed: int = 0) -> float:
    """FLOPs of one training step (forward + backward) of ``model`` on ``batch_size`` sequences of
    ``seq_len`` tokens, counted by the benchmark's counter (``nlteach.bench.models``: the products the
    implementation executes, attention over its causal triangle on CPU). Counted on ``count_batch``
    sequences and scaled to ``batch_size``: every product is linear in the batch (a test checks it)."""
    torch.manual_seed(seed)
    net = build_model(model, config)
    idx = torch.randint(0, config.vocab_size, (count_batch, seq_len + 1), generator=torch.Generator().manual_seed(seed))
    return step_flops(training_step(net, idx, False)) * batch_size / count_batch


def cost_rows(preset: str, models: Sequence[str] = MODELS, *, count: bool = False) -> list[dict[str, Any]]:
    """Per model at ``preset`` (notebook 09's comparison): width, heads, attention layers, parameters (all and non-embedding),
    tokens per run, the estimated FLOPs of a step and of a run (:func:`estimate_step_flops`), and with
    ``count`` the counted FLOPs of a step (:func:`count_step_flops`) and counted / estimated."""
    z = lm_comparison.sizes(preset)
    B, T, steps = int(z["batch_size"]), int(z["seq_len"]), int(z["steps"])
    rows = []
    for name in models:
        cfg = sized_config(name, preset)
        n, n_body = param_count(name, cfg), param_count(name, cfg, non_embedding=True)
        layers = attention_layer_count(name, cfg)
        est = estimate_step_flops(n_body, B, T, attention_layers=layers, dim=cfg.dim,
                                  n_heads=cfg.n_heads)
        row = {"model": name, "dim": cfg.dim, "n_heads": cfg.n_heads, "attention_layers": layers, "params": n,
               "non_embedding": n_body, "tokens_per_run": B * T * steps,
               "est_gflop_step": est / 1e9, "est_pflop_run": est * steps / 1e15}
        if count:
            counted = count_step_flops(name, cfg, B, T)
            row.update(counted_gflop_step=counted / 1e9, counted_over_est=counted / est)
        rows.append(row)
    return rows


def passes_over_data(presets: Sequence[str] = PRESETS) -> list[dict[str, Any]]:
    """How many times one run of notebook 09's comparison reads its training split, per preset:
    tokens per run / characters in tiny Shakespeare's training split (loaded through the data mirror
    or the pinned download)."""
    train_chars = load_char_corpus(lm_comparison.DATA)["train"].numel()
    return [{"preset": r["preset"], "tokens_per_run": r["tokens_per_run"], "train_chars": train_chars,
             "passes": r["tokens_per_run"] / train_chars} for r in preset_rows(presets)]


# ---------------------------------------------------------------------------------------------
# Sequence length: FLOPs per token


def flops_per_token(models: Sequence[str], seq_lens: Sequence[int], *, dim: int = 64, n_heads: int = 2,
                    n_layers: int = 1) -> dict[str, list[float]]:
    """``{model: [counted training FLOPs per token at each length]}`` for one sequence of each length,
    every model at the same width (not the same parameters: the curves' shapes are the point)."""
    cfg = ModelConfig(vocab_size=VOCAB_SIZE, dim=dim, n_layers=n_layers, n_heads=n_heads)
    return {m: [count_step_flops(m, cfg, 1, T) / T for T in seq_lens] for m in models}


def estimated_flops_per_token(models: Sequence[str], seq_lens: Sequence[int], *, dim: int = 64, n_heads: int = 2,
                              n_layers: int = 1) -> dict[str, list[float]]:
    """:func:`estimate_step_flops` per token, for the same models and sizes as :func:`flops_per_token`
    (to put the estimate beside the count)."""
    cfg = ModelConfig(vocab_size=VOCAB_SIZE, dim=dim, n_layers=n_layers, n_heads=n_heads)
    out = {}
    for m in models:
        n, layers = param_count(m, cfg, non_embedding=True), attention_layer_count(m, cfg)
        out[m] = [estimate_step_flops(n, 1, T, attention_layers=layers, dim=dim, n_heads=n_heads) / T
                  for T in seq_lens]
    return out


def draw_flops_per_token(fig: Figure, seq_lens: Sequence[int], curves: dict[str, list[float]]) -> None:
    """Counted training FLOPs per token against the sequence length, one line per model."""
    ax = fig.add_subplot(1, 1, 1)
    for i, (name, ys) in enumerate(curves.items()):
        ax.plot(list(seq_lens), [y / 1e6 for y in ys], marker="o", color=f"C{i}", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("sequence length T (tokens)")
    ax.set_ylabel("training MFLOP per token")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)


# ---------------------------------------------------------------------------------------------
# FLOPs are not time: the committed benchmark files


def rate_rows(root: str | Path = RESULTS_ROOT) -> list[dict[str, Any]]:
    """For every model row of every committed ``bench_models_*`` file: the FLOP ratio to the
    Transformer of the same run, its achieved rate and the Transformer's, and the time ratio both
    measured and rebuilt as *FLOP ratio x (Transformer's rate / its rate)* (equal up to rounding:
    the rate is defined as FLOPs / time)."""
    rows = speed_rows(root)
    base = {r["run"]: r for r in rows if r["model"] == "transformer"}
    out = []
    for r in rows:
        b = base.get(r["run"])
        if b is None or r is b:
            continue
        out.append({"run": r["run"], "threads": r["threads"], "T": r["seq_len"], "model": r["model"],
                    "impl": r["impl"], "flops_x": r["flops_x"], "gflop_per_s": r["gflop_per_s"],
                    "transformer_gflop_per_s": b["gflop_per_s"], "time_x": r["x_transformer"],
                    "flops_x_times_rate_ratio": r["flops_x"] * b["gflop_per_s"] / r["gflop_per_s"]})
    return out


# ---------------------------------------------------------------------------------------------
# Data parallelism


def _flat_grad(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])


def batch_gradient(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The gradient of the mean next-token loss over the rows of ``x`` (one flat vector)."""
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
    return _flat_grad(model)


def rank_gradients(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                   world_size: int) -> tuple[list[torch.Tensor], list[int]]:
    """What ``world_size`` DDP ranks compute before the all-reduce: rank ``r`` takes rows
    ``r * B/world_size ...`` of the global batch (as ``nlteach.text.RandomWindowSampler`` hands them
    out) and the gradient of *its* mean loss. Returns (one flat gradient per rank, rows per rank)."""
    B = x.shape[0]
    if B % world_size:
        raise ValueError(f"the global batch ({B} rows) must divide among world_size={world_size} ranks.")
    n = B // world_size
    grads = [batch_gradient(model, x[r * n:(r + 1) * n], y[r * n:(r + 1) * n]) for r in range(world_size)]
    return grads, [n] * world_size


def all_reduce_mean(grads: Sequence[torch.Tensor], rows: Sequence[int]) -> torch.Tensor:
    """The gradient of the mean loss over the whole global batch, from each rank's gradient of its
    own mean loss (``grads[r]``) and its number of rows (``rows[r]``): the mean of means, each
    weighted by its rows. With equal shards (DDP's case) it is the plain average DDP's all-reduce
    computes."""
    total = sum(rows)
    return sum(g * (n / total) for g, n in zip(grads, rows, strict=True))


def data_parallel_check(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, world_size: int,
                        combine=all_reduce_mean) -> dict[str, float]:
    """One process's gradient on the global batch against ``world_size`` ranks' gradients combined
    by ``combine``: the largest absolute difference and the gradient's largest entry."""
    one = batch_gradient(model, x, y)
    grads, rows = rank_gradients(model, x, y, world_size)
    many = combine(grads, rows)
    return {"max_abs_diff": float((many - one).abs().max()), "max_abs_grad": float(one.abs().max())}


# ---------------------------------------------------------------------------------------------
# Exact resume


def resume_check(stop_after: int = 5, **settings: Any) -> dict[str, Any]:
    """Train one small language model twice in temporary folders: straight through, and stopped
    after ``stop_after`` steps then resumed (``nlteach.train``'s ``--stop-after`` and ``--resume``).
    Returns the steps, whether every metrics line (all but the wall time) and every weight agree bit
    for bit, and the checkpoint's keys. ``settings``: :class:`nlteach.train_config.TrainConfig` fields."""
    cfg = {"preset": "tiny", "dim": 16, "n_layers": 1, "n_heads": 2, "seq_len": 16, "batch_size": 4, "steps": 12,
           "log_every": 2, "eval_every": 4, "eval_windows": 8, "sample_chars": 0, "progress": False, **settings}
    with tempfile.TemporaryDirectory(prefix="nb12_resume_") as tmp:
        a, b = Path(tmp) / "straight", Path(tmp) / "resumed"
        train(cfg, out=str(a))
        part = train(cfg, out=str(b), stop_after=stop_after)
        train(cfg, out=str(b), resume=True)

        def lines(folder: Path) -> list[dict[str, Any]]:
            return [{k: v for k, v in r.items() if k != "time"} for r in read_jsonl(folder / "metrics.jsonl")[0]]

        wa, wb = (load_checkpoint(f / "checkpoint.pt") for f in (a, b))
        same_weights = all(torch.equal(wa["model"][k], wb["model"][k]) for k in wa["model"])
        return {"steps": cfg["steps"], "stopped_at": part["step"], "same_metrics": lines(a) == lines(b),
                "same_weights": same_weights, "checkpoint_keys": sorted(wa)}


# ---------------------------------------------------------------------------------------------
# bf16


def bf16_matmul_error(n: int = 256, seed: int = 0) -> dict[str, float]:
    """Relative error (Frobenius) of an ``n x n`` product computed from bfloat16 inputs (accumulated
    in float32, as CUDA's bf16 autocast does) against float64, beside float32's; and the unit
    roundoff of each type."""
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(n, n, generator=g, dtype=torch.float64), torch.randn(n, n, generator=g, dtype=torch.float64)
    exact = a @ b

    def rel(c: torch.Tensor) -> float:
        return float(torch.linalg.norm(c.double() - exact) / torch.linalg.norm(exact))

    bf = a.to(torch.bfloat16).float() @ b.to(torch.bfloat16).float()  # bf16 inputs, float32 sums
    return {"bf16": rel(bf), "float32": rel(a.float() @ b.float()),
            "bf16_eps": torch.finfo(torch.bfloat16).eps, "float32_eps": torch.finfo(torch.float32).eps}


# ---------------------------------------------------------------------------------------------
# Reading a committed comparison

READING_EXAMPLE = ("lm_hope_cms_laptop", "hope", "hope-static-cms")  # folder, arm a, arm b (a - b)


def reading_example(root: str | Path = RESULTS_ROOT) -> dict[str, Any] | None:
    """The committed comparison notebook 12 reads (``READING_EXAMPLE``): its per-seed records, the
    two arms, the paired verdict (:func:`nlteach.experiments.lm_comparison.paired_verdict`) and its
    provenance; None when the file is not there."""
    folder, a, b = READING_EXAMPLE
    path = Path(root) / folder / "results.json"
    if not path.is_file():
        return None
    d = read_json(path)
    per_seed = d.get("per_seed", [])
    return {"path": f"results/{folder}/results.json", "a": a, "b": b, "per_seed": per_seed,
            "runs": lm_comparison.by_label(d), "verdict": lm_comparison.paired_verdict(per_seed, a, b),
            "provenance": d.get("provenance", {}), "config": d.get("config", {})}

