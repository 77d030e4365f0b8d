"""Graders for notebook 12 (full-size runs): the FLOPs of causal attention, and the gradient that
data parallelism's all-reduce produces."""

from __future__ import annotations

import torch

from nlteach.bench.models import attention_flops
from nlteach.course.nb12_scaling import all_reduce_mean
from nlteach.exercises import GradingFailure, assert_close, check_returned, diagnose, register, same


# ----------------------------------------------------------------------- FLOPs of causal attention
def causal_attention_flops_reference(B: int, H: int, T: int, d: int) -> int:
    """Matrix-product FLOPs of the forward pass of causal softmax attention with ``q, k, v`` of shape
    ``[B, H, T, d]``: the benchmark's own count (:func:`nlteach.bench.models.attention_flops`)."""
    shape = (B, H, T, d)
    return attention_flops(shape, shape, shape, True)


def _attention_wrong(B: int, H: int, T: int, d: int) -> dict[str, float]:
    pairs = T * (T + 1) / 2
    return {
        "you counted the whole T x T score matrix; a causal kernel computes only the scores on or below "
        "the diagonal (query t sees keys 0..t).": 2 * B * H * T * T * 2 * d,
        "you left out the diagonal: every token also attends to itself, so there are T (T + 1) / 2 "
        "(query, key) pairs, not T (T - 1) / 2.": 2 * B * H * (T * (T - 1) / 2) * 2 * d,
        "T^2 / 2 is not the number of pairs on and below the diagonal: that is T (T + 1) / 2.":
            2 * B * H * (T * T / 2) * 2 * d,
        "you found half the answer: either you counted one FLOP per multiply-add (the convention, and "
        "torch's counter, count two: a multiplication and an addition), or you counted q k^T only (the "
        "weighted sum P v is a second product of the same size).": B * H * pairs * 2 * d,
        "you counted the backward pass too; the question is the forward pass (q k^T and P v).":
            2 * B * H * pairs * 5 * d,
    }


@register(
    "12.attention_flops",
    name="causal_attention_flops",
    notebook="12_full_size_runs",
    reference=causal_attention_flops_reference,
    hint="attention does two matrix products per head: scores from queries and keys, then the scores "
         "times the values. Count the (query, key) pairs a causal kernel computes, the multiply-adds per "
         "pair in each product, and how many FLOPs one multiply-add is.",
    solution="pairs = T (T + 1) / 2 (each query sees itself and the keys before it); each product costs "
             "2 d FLOPs per pair (d multiply-adds); two products: 2 * B * H * pairs * (d + d).",
    difficulty="easy",
    minutes=15,
    derivation=True,
)
def check_attention_flops(fn) -> None:
    for B, H, T, d in ((1, 1, 4, 2), (2, 3, 7, 5), (4, 6, 256, 44), (1, 2, 1, 8)):
        got = check_returned(fn(B, H, T, d), "one number: the FLOPs of the forward pass")
        try:
            got = float(got)
        except (TypeError, ValueError) as e:
            raise GradingFailure(f"return one number (an int or a float), got {type(got).__name__}.") from e
        want = causal_attention_flops_reference(B, H, T, d)
        if abs(got - want) > 0.5:
            where = f"for B={B}, H={H}, T={T}, d={d} you returned {got:,.0f} (expected {want:,})"
            for why, value in _attention_wrong(B, H, T, d).items():
                if abs(got - value) <= 0.5:
                    raise GradingFailure(f"{where}: {why}")
            raise GradingFailure(f"{where}.")


# ------------------------------------------------------------------ the data-parallel gradient
def _ddp_wrong(grads: list[torch.Tensor], rows: list[int]) -> dict[str, torch.Tensor]:
    R = len(grads)
    return {
        "you summed the ranks' gradients: that is world_size times too large. Each rank's gradient is "
        "already a mean over its rows; DDP's all-reduce sums them and divides by the number of ranks.":
            sum(grads),
        "you weighted each rank by its rows but did not divide by the total number of rows: a mean of "
        "means weighted by rows must divide by the sum of the weights.": sum(g * n for g, n in zip(grads, rows)),
        "you weighted each rank by its rows and divided by the number of ranks; divide by the total "
        "number of rows.": sum(g * n for g, n in zip(grads, rows)) / R,
        "you averaged the ranks' gradients without weights: with shards of different sizes that gives "
        "a small shard's rows more weight than the others'. Weight each rank by its share of the rows "
        "(DDP can average plainly only because every rank gets batch_size / world_size rows).":
            sum(grads) / R,
        "you returned one rank's gradient.": grads[0],
    }


@register(
    "12.ddp_gradient",
    name="all_reduce_mean",
    notebook="12_full_size_runs",
    reference=all_reduce_mean,
    hint="each rank's gradient is the gradient of the MEAN loss over its own rows. Write the mean loss "
         "over all rows of the global batch as a combination of the ranks' mean losses, then "
         "differentiate (a gradient is linear).",
    solution="sum over ranks of grads[r] * rows[r] / sum(rows); with equal shards this is the plain "
             "average sum(grads) / len(grads), which is what DDP's all-reduce computes.",
    difficulty="easy",
    minutes=15,
    derivation=True,
)
def check_ddp_gradient(fn) -> None:
    g = torch.Generator().manual_seed(12)
    cases = ([4, 4], [2, 2, 2, 2], [3, 1], [5, 2, 1], [7])
    for rows in cases:
        grads = [torch.randn(6, generator=g, dtype=torch.float64) for _ in rows]
        before = [x.clone() for x in grads]
        got = check_returned(fn(grads, list(rows)), "one gradient, shaped like each rank's")
        if any(not torch.equal(a, b) for a, b in zip(grads, before, strict=True)):
            raise GradingFailure("your function changed the ranks' gradients in place; return a new tensor.")
        if isinstance(got, list | tuple):
            raise GradingFailure(f"return one tensor (the global batch's gradient), not a {type(got).__name__}.")
        want = all_reduce_mean(grads, rows)
        where = f"{len(rows)} rank(s) with {rows} rows"
        if not same(got, want):
            diagnose(got, _ddp_wrong(grads, list(rows)), where=where)
        assert_close(got, want, what=f"the combined gradient ({where})", rtol=1e-10, atol=1e-12)
