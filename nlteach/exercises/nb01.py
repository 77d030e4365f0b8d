"""Graders for notebook 01 (associative memory): one Hebbian write and one delta write."""

from __future__ import annotations

import torch

from nlteach.course.nb01_associative_memory import delta_write, hebbian_write
from nlteach.exercises import GradingFailure, assert_close, register


def _cases(seed: int = 0):
    """Fixed memories, keys and values with d_k != d_v, so a transposed answer fails."""
    g = torch.Generator().manual_seed(seed)
    for d_k, d_v in ((3, 2), (5, 4), (4, 6)):
        S = torch.randn(d_k, d_v, generator=g, dtype=torch.float64)
        k = torch.nn.functional.normalize(torch.randn(d_k, generator=g, dtype=torch.float64), dim=0)
        v = torch.randn(d_v, generator=g, dtype=torch.float64)
        yield S, k, v


def _call(fn, S, *args, what):
    S_in = S.clone()
    got = fn(S_in, *args)
    if got is None:
        raise GradingFailure(f"{what} returned None; return the new memory matrix S_new.")
    if not torch.equal(S_in, S):
        raise GradingFailure(f"{what} changed S in place; build and return a new tensor instead "
                             "(e.g. `S + ...`, not `S += ...`).")
    return got


@register(
    "01.hebbian_write",
    name="hebbian_write",
    notebook="01_associative_memory",
    reference=hebbian_write,
    hint="the Hebbian write is one gradient step (size 1) on the loss -<S^T k, v>. Work out its "
         "gradient with respect to S: a matrix of S's shape [d_k, d_v] built from k and v alone.",
    solution="the gradient of -<S^T k, v> with respect to S is -k v^T (an outer product, shape "
         "[d_k, d_v]); one step of size 1 adds k v^T: torch.outer(k, v).",
)
def check_hebbian_write(fn) -> None:
    for S, k, v in _cases():
        got = _call(fn, S, k, v, what=f"hebbian_write(S {tuple(S.shape)}, k, v)")
        assert_close(got, hebbian_write(S, k, v), what=f"hebbian_write for S of shape {tuple(S.shape)}")
    S = torch.zeros(3, 2, dtype=torch.float64)
    k = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    v = torch.tensor([2.0, -1.0], dtype=torch.float64)
    assert_close(fn(S, k, v), hebbian_write(S, k, v), what="writing v=[2, -1] at the key e_1 into an empty memory")


@register(
    "01.delta_write",
    name="delta_write",
    notebook="01_associative_memory",
    reference=delta_write,
    hint="the delta write is one gradient step of size beta on 1/2 ||S^T k - v||^2. Its gradient "
         "involves the memory's current error for this key: what S recalls for k, minus v.",
    solution="the gradient of 1/2 ||S^T k - v||^2 with respect to S is k (S^T k - v)^T; "
         "S_new = S - beta * torch.outer(k, S.T @ k - v).",
)
def check_delta_write(fn) -> None:
    for beta in (1.0, 0.3):
        for S, k, v in _cases(1):
            got = _call(fn, S, k, v, beta, what=f"delta_write(S {tuple(S.shape)}, k, v, beta={beta})")
            assert_close(got, delta_write(S, k, v, beta),
                         what=f"delta_write for S of shape {tuple(S.shape)}, beta={beta}")
    S, k, v = next(_cases(2))
    got = fn(S.clone(), k, v, 1.0)
    err = (got.T @ k - v).abs().max().item()
    if err > 1e-8:
        raise GradingFailure(f"with a unit-norm key and beta=1 the memory should return v exactly "
                             f"right after the write, but S_new^T k - v has entries up to {err:.3g}.")
