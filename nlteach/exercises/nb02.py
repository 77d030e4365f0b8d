"""Graders for notebook 02 (attention is associative memory): the intra-chunk causal term."""

from __future__ import annotations

import torch

from nlteach.course.nb02_attention import chunked_linear_attention_loop, intra_chunk_term
from nlteach.exercises import GradingFailure, assert_close, register


@register(
    "02.intra_chunk",
    name="intra_chunk",
    notebook="02_attention_is_memory",
    reference=intra_chunk_term,
    hint="inside the chunk, token i reads the value of every token j <= i (itself included), "
         "weighted by q_i . k_j. Compute all those weights at once as a [C, C] matrix, keep only the"
         " causal part, then combine the values with them.",
    solution="scores = Qc @ Kc.T is [C, C] with entry (i, j) = q_i . k_j; token i may only see j <= i "
         "(its own write included), so zero the entries above the diagonal (torch.tril) before "
         "multiplying by Vc.",
)
def check_intra_chunk(fn) -> None:
    g = torch.Generator().manual_seed(0)
    for C, d_k, d_v in ((1, 3, 2), (4, 3, 5), (7, 2, 3)):
        Qc = torch.randn(C, d_k, generator=g, dtype=torch.float64)
        Kc = torch.randn(C, d_k, generator=g, dtype=torch.float64)
        Vc = torch.randn(C, d_v, generator=g, dtype=torch.float64)
        got = fn(Qc, Kc, Vc)
        if got is None:
            raise GradingFailure("your function returned None; return the [C, d_v] tensor.")
        exp = intra_chunk_term(Qc, Kc, Vc)
        got_t = torch.as_tensor(got)
        if got_t.shape == exp.shape and C > 1:
            if torch.allclose(got_t, (Qc @ Kc.T) @ Vc):
                raise GradingFailure("you used every key of the chunk: token i must not see keys "
                                     "j > i (apply the causal mask).")
            if torch.allclose(got_t, (Qc @ Kc.T).tril(-1) @ Vc):
                raise GradingFailure("you excluded the diagonal: the read is inclusive, token i "
                                     "sees its own write (j <= i).")
        assert_close(got, exp, what=f"intra_chunk for a chunk of C={C} tokens (d_k={d_k}, d_v={d_v})")
    # used inside a chunked linear attention, it must reproduce the token loop
    q, k, v = (torch.randn(10, 3, generator=g, dtype=torch.float64) for _ in range(3))
    o, _ = chunked_linear_attention_loop(q, k, v, 4, intra=fn)
    assert_close(o, (q @ k.T).tril() @ v, what="chunked linear attention built on your intra_chunk")
