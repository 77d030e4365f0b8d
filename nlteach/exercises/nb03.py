"""Graders for notebook 03 (the delta rule and chunking): the UT transform of one chunk."""

from __future__ import annotations

import torch

from nlteach.course.nb03_delta_rule import delta_chunk_wy, ut_transform
from nlteach.exercises import GradingFailure, assert_close, register


def _chunk(C: int, d: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    K = torch.nn.functional.normalize(torch.randn(C, d, generator=g, dtype=torch.float64), dim=-1)
    beta = 0.1 + 0.9 * torch.rand(C, generator=g, dtype=torch.float64)
    return K, beta


@register(
    "03.ut_transform",
    name="ut_transform",
    notebook="03_delta_rule_chunking",
    reference=ut_transform,
    hint="unroll the delta rule inside the chunk: token i's correction depends on the earlier tokens"
         " j < i through beta_i k_i . k_j. Collect these in a strictly lower-triangular [C, C] "
         "matrix; T is the inverse of (identity + that matrix) applied to diag(beta), and a "
         "triangular system needs no loop.",
    solution="A = torch.tril(beta[:, None] * (K @ K.T), diagonal=-1); then solve (I + A) T = diag(beta) "
         "with torch.linalg.solve_triangular(I + A, torch.diag(beta), upper=False).",
)
def check_ut_transform(fn) -> None:
    for C, d, seed in ((1, 3, 0), (4, 3, 1), (6, 4, 2), (9, 5, 3)):
        K, beta = _chunk(C, d, seed)
        got = fn(K.clone(), beta.clone())
        if got is None:
            raise GradingFailure("your function returned None; return the [C, C] matrix T.")
        exp = ut_transform(K, beta)
        got_t = torch.as_tensor(got)
        if got_t.shape == exp.shape and C > 1:
            eye = torch.eye(C, dtype=K.dtype)
            A = (beta[:, None] * (K @ K.T)).tril(-1)
            if torch.allclose(got_t, torch.linalg.inv(eye + A)):
                raise GradingFailure("you returned (I + A)^{-1}; the UT transform also multiplies "
                                     "by diag(beta) on the right.")
            if torch.allclose(got_t, torch.linalg.inv(eye - A) @ torch.diag(beta)):
                raise GradingFailure("you inverted (I - A); the sign is +: u_i + beta_i sum_{j<i} "
                                     "(k_i . k_j) u_j = beta_i v_i.")
            if not torch.allclose(got_t.triu(1), torch.zeros_like(got_t)):
                raise GradingFailure("T should be lower-triangular (token i depends only on tokens "
                                     "j <= i); check the mask of A.")
        assert_close(got, exp, what=f"ut_transform for a chunk of C={C} keys of dimension {d}")
    # inside a chunk of the delta rule it must reproduce the token loop
    K, beta = _chunk(7, 3, 4)
    g = torch.Generator().manual_seed(5)
    Q, V = torch.randn(7, 3, generator=g, dtype=torch.float64), torch.randn(7, 2, generator=g, dtype=torch.float64)
    S = torch.randn(3, 2, generator=g, dtype=torch.float64)
    O, S_new = delta_chunk_wy(S, Q, K, V, beta, ut=fn)
    O_ref, S_ref = delta_chunk_wy(S, Q, K, V, beta)
    assert_close(O, O_ref, what="the chunk's outputs computed with your T")
    assert_close(S_new, S_ref, what="the memory after the chunk computed with your T")
