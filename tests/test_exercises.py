"""Every exercise: its solution passes the grader, the notebook stub fails it, wrong answers fail."""

import importlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nlteach import exercises
from tools import nbtools

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
ALL = exercises.all_exercises()


@pytest.fixture(autouse=True)
def _fresh_attempts():
    """Each test starts with no failed attempt counted (the solution comes after a few)."""
    exercises.reset_attempts()
    yield
    exercises.reset_attempts()


def _stub(ex):
    ipynb = NOTEBOOKS / f"{ex.notebook}.ipynb"
    for src in nbtools.exercise_cells(ipynb):
        ns = {"torch": torch, "np": np, "math": math}
        exec(src, ns)
        if ex.name in ns:
            return ns[ex.name]
    raise AssertionError(f"no cell tagged 'exercise' in {ipynb.name} defines `{ex.name}`")


def test_there_are_exercises():
    assert any(ex.notebook.startswith("00_") for ex in ALL)


@pytest.mark.parametrize("ex", ALL, ids=lambda e: e.id)
def test_solution_passes(ex):
    fn = getattr(importlib.import_module(ex.solution_module), ex.name)
    res = exercises.grade(ex.id, fn)
    assert res.passed, res.message
    assert res.function is fn


@pytest.mark.parametrize("ex", ALL, ids=lambda e: e.id)
def test_reference_passes(ex):
    assert exercises.grade(ex.id, ex.reference).passed


@pytest.mark.parametrize("ex", ALL, ids=lambda e: e.id)
def test_stub_fails_gently(ex, capsys):
    res = exercises.grade(ex.id, _stub(ex))
    assert not res.passed and not res.attempted
    out = capsys.readouterr().out
    assert "Not attempted yet" in out and "Correct" not in out and "Your" not in out
    assert f"use the library's `{ex.name}`" in out
    assert res.function is ex.reference  # later cells get a working version
    assert res.whose == "the library's"
    assert exercises.failed_attempts(ex.id) == 0  # an untouched stub is not a failed attempt


def test_a_stub_returning_notimplemented_is_not_attempted():
    res = exercises.grade("00.ema", lambda x, beta: NotImplemented, quiet=True)
    assert not res.attempted and "Not attempted yet" in res.message


@pytest.mark.parametrize("ex", ALL, ids=lambda e: e.id)
def test_every_exercise_has_a_hint_and_a_separate_solution(ex):
    assert ex.hint and ex.solution and ex.hint != ex.solution


@pytest.mark.parametrize("ex", ALL, ids=lambda e: e.id)
def test_a_crashing_answer_is_reported_not_raised(ex):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    res = exercises.grade(ex.id, broken, quiet=True)
    assert res.attempted and not res.passed and "boom" in res.message
    assert "It was called with: " in res.message


def test_a_raising_function_reports_the_input_shapes():
    def transposed(S, k, v):  # a [d_v, d_k] outer product added to a [d_k, d_v] memory
        return S + torch.outer(v, k)

    res = exercises.grade("01.hebbian_write", transposed, quiet=True)
    assert "Your `hebbian_write` raised RuntimeError" in res.message
    assert ("It was called with: S = tensor of shape [3, 2] (float64); k = tensor of shape [3] "
            "(float64); v = tensor of shape [2] (float64)") in res.message
    assert res.function is exercises.get("01.hebbian_write").reference


def test_first_failure_gives_a_hint_not_the_solution_which_comes_later():
    ex = exercises.get("01.hebbian_write")
    wrong = lambda S, k, v: S + 2 * torch.outer(k, v)
    messages = [exercises.grade(ex.id, wrong, quiet=True).message for _ in range(exercises.SOLUTION_AFTER)]
    for first in messages[:-1]:
        assert "Not quite" in first and ex.hint in first
        assert ex.solution not in first and "torch.outer" not in first
        assert "show_solution=True" in first
    assert ex.solution in messages[-1]  # after SOLUTION_AFTER failed attempts
    assert exercises.failed_attempts(ex.id) == exercises.SOLUTION_AFTER


def test_the_solution_on_request(capsys):
    ex = exercises.get("01.delta_write")
    res = exercises.grade(ex.id, lambda S, k, v, beta: S, quiet=True, show_solution=True)
    assert ex.solution in res.message
    assert ex.solution in exercises.solution(ex.id)
    assert ex.solution in capsys.readouterr().out


def test_the_verdict_says_which_version_later_cells_use():
    good = exercises.grade("00.ema", importlib.import_module("solutions.nb00").ema, quiet=True)
    assert good.message.endswith("The following cells use your `ema`.") and good.whose == "your"
    bad = exercises.grade("00.ema", lambda x, beta: x * 0, quiet=True)
    assert "The following cells use the library's `ema` until yours passes" in bad.message


def test_wrong_answer_gets_an_explanation():
    res = exercises.grade("00.ema", lambda x, beta: x * 0, quiet=True)
    assert not res.passed and "differs from the reference" in res.message
    res = exercises.grade("00.ema", lambda x, beta: x[:-1], quiet=True)
    assert "shape" in res.message


def test_every_exercise_cell_belongs_to_an_exercise():
    names = {(ex.notebook, ex.name) for ex in ALL}
    for ipynb in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"):
        for src in nbtools.exercise_cells(ipynb):
            ns = {"torch": torch, "np": np, "math": math}
            exec(src, ns)
            defined = {k for k, v in ns.items() if callable(v) and getattr(v, "__module__", "") is None}
            defined |= {k for k, v in ns.items() if getattr(v, "__code__", None) is not None}
            assert any((ipynb.stem, n) in names for n in defined), \
                f"{ipynb.name} has an exercise cell defining {sorted(defined)} with no grader"
