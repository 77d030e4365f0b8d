"""Graders for notebook 11 (long context and formal languages): Shuffle-2 membership, and MQAR
solved by a recurrent associative memory."""

from __future__ import annotations

import numpy as np
import torch

from nlteach.exercises import GradingFailure, check_returned, register
from nlteach.longctx.tasks import IGNORE, MQAR, is_member, make_rng


def is_shuffle2(s: list[int]) -> bool:
    """Reference: membership in Shuffle-2 (0 = '(', 1 = ')', 2 = '[', 3 = ']')."""
    return is_member("shuffle2", s)


_SHOW = "()[]"

# (string, member?, what a wrong answer on it usually means)
_CASES = [
    ([0, 1], True, "'()' is balanced."),
    ([0, 2, 1, 3], True, "'([)]' is in Shuffle-2: each bracket type is balanced on its own, and the two "
                         "types may interleave freely. A stack (Dyck-2 rules) wrongly rejects it."),
    ([2, 0, 3, 1], True, "'[(])' interleaves the two types; it is in Shuffle-2."),
    ([0, 3], False, "'(]' mixes the types: with one shared counter it looks balanced, but each type "
                    "needs its own counter."),
    ([1, 0], False, "')(' closes before opening: a counter must never go below zero."),
    ([3, 2, 0, 1], False, "'][()' closes '[' before it is opened."),
    ([0, 0, 1], False, "'(()' leaves one '(' open: both counters must end at zero."),
    ([], True, "the empty string is balanced."),
]


@register(
    "11.shuffle2",
    name="is_shuffle2",
    notebook="11_long_context",
    reference=is_shuffle2,
    hint="a shuffle of two bracket languages is valid when each bracket type on its own is balanced "
         "and never closes more than it has opened; the two types need not nest with each other.",
    solution="keep one counter per bracket type; an opening bracket adds 1 to its type's counter, a closing one "
         "subtracts 1; reject as soon as a counter goes below 0; accept if both are 0 at the end.",
    difficulty="medium",
    minutes=15,
)
def check_shuffle2(fn) -> None:
    for s, member, why in _CASES:
        got = fn(list(s))
        if got is None:
            raise GradingFailure("your function returned None; return True or False.")
        if bool(got) != member:
            shown = "".join(_SHOW[c] for c in s) or "(empty)"
            raise GradingFailure(f"is_shuffle2({s}) = {bool(got)} for '{shown}', expected {member}: {why}")
    rng = np.random.default_rng(11)
    for n in (2, 4, 6, 8, 12, 20):
        for _ in range(40):
            s = [int(c) for c in rng.integers(0, 4, size=n)]
            if bool(fn(list(s))) != is_shuffle2(s):
                shown = "".join(_SHOW[c] for c in s)
                raise GradingFailure(f"on the random string {s} ('{shown}') you returned {bool(fn(list(s)))}, "
                                     f"expected {is_shuffle2(s)}.")


# ------------------------------------------------------------------ MQAR with a recurrent memory
def mqar_recall_reference(inputs: torch.Tensor, n_keys: int, n_values: int) -> torch.Tensor:
    """The right answers of one MQAR example (``MQAR.expected``): at every query key of the second
    half, its value's token id; IGNORE (-100) elsewhere. inputs: [T] -> [T]."""
    return MQAR(n_keys, n_values).expected(torch.as_tensor(inputs)[None])[0]


def _predictions(fn, inputs: torch.Tensor, n_keys: int, n_values: int, where: str) -> torch.Tensor:
    got = check_returned(fn(inputs.clone(), n_keys, n_values), "the predictions [T] (token ids)")
    try:
        got_t = torch.as_tensor(got)
    except (TypeError, ValueError, RuntimeError) as e:
        raise GradingFailure(f"{where} return a tensor of token ids [T], got {type(got).__name__}.") from e
    if tuple(got_t.shape) != tuple(inputs.shape):
        raise GradingFailure(f"{where} your predictions have shape {tuple(got_t.shape)}; return one entry per "
                             f"input token, shape {tuple(inputs.shape)}.")
    return got_t.long()


@register(
    "11.mqar_memory",
    name="mqar_recall",
    notebook="11_long_context",
    reference=mqar_recall_reference,
    hint="read the tokens left to right, keeping a matrix memory of one-hot keys and values (notebook 01). "
         "In the first half a key and its value arrive at two consecutive steps, so the step that sees the "
         "value must remember the previous token to write the pair. In the second half, the step that "
         "sees a query key must answer at once (its value is the next token, which it may not read).",
    solution="S = zeros(n_keys, n_values); out = full([T], -100); for i in range(T): in the first half "
             "(i < T // 2) at odd i write the pair (key inputs[i-1], value inputs[i]) with the delta rule "
             "(beta = 1, one-hot key and value); in the second half at even i read S^T e_key and set "
             "out[i] = 1 + n_keys + argmax. Return out.",
    difficulty="medium",
    minutes=20,
    derivation=True,
)
def check_mqar_memory(fn) -> None:
    for n_keys, n_values, T, seed in ((8, 5, 16, 0), (6, 6, 4, 1), (16, 3, 64, 2), (5, 9, 20, 3)):
        task = MQAR(n_keys, n_values)
        inputs = task.sample(1, T, make_rng(11, seed)).inputs[0]
        where = f"(n_keys={n_keys}, n_values={n_values}, T={T})"
        got = _predictions(fn, inputs, n_keys, n_values, where)
        exp = mqar_recall_reference(inputs, n_keys, n_values)
        pos = exp != IGNORE
        wrong = pos & (got != exp)
        if wrong.any():
            i = int(wrong.nonzero()[0])
            if torch.equal(got[pos.nonzero()[:, 0] + 1], exp[pos]):
                raise GradingFailure(f"{where} your answers sit one position late, on the value tokens; in "
                                     "next-token prediction the value is predicted at the query key's position.")
            if torch.equal(got[pos] + task.value0, exp[pos]):
                raise GradingFailure(f"{where} you returned the value's index; return its token id (values "
                                     f"start at 1 + n_keys = {task.value0}).")
            raise GradingFailure(f"{where} at the query position {i} (key token {int(inputs[i])}) you predicted "
                                 f"{int(got[i])}, expected {int(exp[i])}.")
        # causality: an answer may not depend on the tokens after it (the next token IS the answer)
        for i in pos.nonzero()[:, 0].tolist()[:3]:
            cut = inputs.clone()
            cut[i + 1:] = MQAR.PAD
            got_cut = _predictions(fn, cut, n_keys, n_values, where)
            if int(got_cut[i]) != int(exp[i]):
                raise GradingFailure(f"{where} your answer at position {i} changed when the tokens after it were "
                                     "hidden: it read the future (the value right after a query key is the "
                                     "answer itself). A recurrent model sees only tokens 0..i.")
