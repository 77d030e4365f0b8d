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
    assert "Not attempted" in capsys.readouterr().out
    assert res.function is ex.reference  # later cells get a working version


@pytest.mark.parametrize("ex", ALL, ids=lambda e: e.id)
def test_a_crashing_answer_is_reported_not_raised(ex):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    res = exercises.grade(ex.id, broken, quiet=True)
    assert res.attempted and not res.passed and "boom" in res.message


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
