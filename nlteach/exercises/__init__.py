"""Exercises and their graders.

Every exercise has three parts:

- a **stub** in a notebook cell tagged ``exercise``: a function the learner completes, whose body
  starts as ``raise NotImplementedError``;
- a **grader**, registered here (one module per notebook, ``nlteach/exercises/nbNN.py``), that
  calls the learner's function on fixed inputs, compares with the library's reference and explains
  what is wrong;
- a **solution** in ``solutions/nbNN.py`` under the same function name.

In the notebook the cell after the stub calls :func:`grade`. An unattempted exercise (the stub
still raises ``NotImplementedError``) prints a friendly note and does not stop the notebook;
:func:`grade` returns a :class:`Result` whose ``function`` is the learner's function when it
passed and the library's reference otherwise, so later cells always have a working version.
CI proves that each solution passes its grader and each stub fails it (``tests/test_exercises.py``).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


class GradingFailure(AssertionError):
    """Raised by a grader's check with a message that tells the learner what is wrong."""


@dataclass(frozen=True)
class Exercise:
    id: str  # "NN.short_name", e.g. "00.ema"
    name: str  # the function name in the notebook stub and in solutions/nbNN.py
    notebook: str  # notebook stem, e.g. "00_welcome"
    reference: Callable[..., Any]
    check: Callable[[Callable[..., Any]], None]
    hint: str = ""

    @property
    def solution_module(self) -> str:
        return f"solutions.nb{self.id.split('.')[0]}"


@dataclass
class Result:
    exercise: Exercise
    attempted: bool
    passed: bool
    message: str
    function: Callable[..., Any]

    def __bool__(self) -> bool:
        return self.passed


_REGISTRY: dict[str, Exercise] = {}


def register(
    id: str, *, name: str, notebook: str, reference: Callable[..., Any], hint: str = ""
) -> Callable[[Callable[[Callable[..., Any]], None]], Callable[[Callable[..., Any]], None]]:
    """Decorator registering ``check(fn)`` as the grader of exercise ``id``."""

    def deco(check: Callable[[Callable[..., Any]], None]) -> Callable[[Callable[..., Any]], None]:
        if id in _REGISTRY:
            raise ValueError(f"exercise id {id!r} is registered twice")
        _REGISTRY[id] = Exercise(id, name, notebook, reference, check, hint)
        return check

    return deco


def _load_all() -> None:
    for mod in pkgutil.iter_modules(__path__):
        if mod.name.startswith("nb"):
            importlib.import_module(f"{__name__}.{mod.name}")


def all_exercises() -> list[Exercise]:
    """Every registered exercise, sorted by id."""
    _load_all()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def get(id: str) -> Exercise:
    _load_all()
    if id not in _REGISTRY:
        raise KeyError(f"no exercise with id {id!r}; known: {sorted(_REGISTRY)}")
    return _REGISTRY[id]


def grade(id: str, fn: Callable[..., Any], *, quiet: bool = False) -> Result:
    """Check the learner's ``fn`` for exercise ``id``, print a verdict, and return a :class:`Result`."""
    ex = get(id)
    attempted, passed = True, False
    try:
        ex.check(fn)
        passed, message = True, f"[{ex.id}] Correct: `{ex.name}` matches the reference. Well done."
    except NotImplementedError:
        attempted = False
        message = (
            f"[{ex.id}] Not attempted yet: fill in `{ex.name}` above and re-run this cell. "
            f"Meanwhile the following cells use the library's reference implementation."
        )
    except GradingFailure as e:
        message = f"[{ex.id}] Not quite: {e}"
        if ex.hint:
            message += f"\n  Hint: {ex.hint}"
    except Exception as e:  # the learner's code crashed: say where, keep the notebook going
        message = f"[{ex.id}] Your `{ex.name}` raised {type(e).__name__}: {e}"
        if ex.hint:
            message += f"\n  Hint: {ex.hint}"
    if not quiet:
        print(message)
    return Result(ex, attempted, passed, message, fn if passed else ex.reference)


# ---------------------------------------------------------------------------------------------
# Helpers for writing graders.


def as_tensor(x: Any, what: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, np.ndarray | list | tuple | float | int):
        try:
            return torch.as_tensor(np.asarray(x, dtype=np.float64))
        except (TypeError, ValueError) as e:
            raise GradingFailure(f"{what} could not be read as numbers ({e}).") from e
    raise GradingFailure(f"{what} should be a tensor (or array), got {type(x).__name__}.")


def assert_close(
    got: Any, expected: torch.Tensor, *, what: str, rtol: float = 1e-5, atol: float = 1e-6
) -> None:
    """Compare ``got`` with ``expected``; on mismatch raise a GradingFailure that explains it."""
    got_t = as_tensor(got, what)
    exp = expected.detach()
    if tuple(got_t.shape) != tuple(exp.shape):
        raise GradingFailure(
            f"{what} has shape {tuple(got_t.shape)}, expected {tuple(exp.shape)}."
        )
    got_t = got_t.to(torch.float64)
    exp = exp.to(torch.float64)
    if not torch.isfinite(got_t).all():
        raise GradingFailure(f"{what} contains NaN or Inf.")
    err = (got_t - exp).abs()
    tol = atol + rtol * exp.abs()
    if (err > tol).any():
        idx = np.unravel_index(int(torch.argmax(err - tol)), tuple(exp.shape)) if exp.dim() else ()
        idx_s = ", ".join(str(int(i)) for i in idx)
        raise GradingFailure(
            f"{what} differs from the reference: max abs error {err.max().item():.3g}; "
            f"e.g. at [{idx_s}] you returned {got_t[idx].item():.6g}, expected {exp[idx].item():.6g}."
        )
