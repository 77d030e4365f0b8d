"""Exercises and their graders.

Every exercise has three parts:

- a **stub** in a notebook cell tagged ``exercise``: a function the learner completes, whose body
  starts as ``raise NotImplementedError``;
- a **grader**, registered here (one module per notebook, ``nlteach/exercises/nbNN.py``), that
  calls the learner's function on fixed inputs, compares with the library's reference and explains
  what is wrong;
- a **solution** in ``solutions/nbNN.py`` under the same function name.

In the notebook the cell after the stub calls :func:`grade`. An unattempted exercise (the stub
still raises ``NotImplementedError``) prints "Not attempted yet" and does not stop the notebook.
A failed attempt prints what is wrong and a hint (the idea, not the answer); the solution is
printed from the ``SOLUTION_AFTER``-th failure on, or on request (``grade(..., show_solution=True)``
or :func:`solution`). When the learner's function raises, the verdict names the inputs (shapes and
dtypes) of the call that failed. :func:`grade` returns a :class:`Result` whose ``function`` is the
learner's function when it passed and the library's reference otherwise, so later cells always
have a working version, and every verdict says which one they use.
CI proves that each solution passes its grader and each stub fails it (``tests/test_exercises.py``).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


class GradingFailure(AssertionError):
    """Raised by a grader's check with a message that tells the learner what is wrong."""


SOLUTION_AFTER = 3  # the solution is printed from this failed attempt on (or when asked for)


@dataclass(frozen=True)
class Exercise:
    id: str  # "NN.short_name", e.g. "00.ema"
    name: str  # the function name in the notebook stub and in solutions/nbNN.py
    notebook: str  # notebook stem, e.g. "00_welcome"
    reference: Callable[..., Any]
    check: Callable[[Callable[..., Any]], None]
    hint: str = ""  # the idea, without the answer: printed from the first failure on
    solution: str = ""  # the formula or the code: printed after SOLUTION_AFTER failures, or on request
    difficulty: str = "medium"  # "easy", "medium" or "hard": shown in the notebook beside the stub
    minutes: int = 10  # expected time at the keyboard, shown beside the stub
    derivation: bool = False  # True when the exercise turns a derivation into code (not a transcription)

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

    @property
    def whose(self) -> str:
        """``"your"`` when the learner's function passed, else ``"the library's"``: for labels in
        later cells (``f"{result.whose} intra term"``)."""
        return "your" if self.passed else "the library's"


_REGISTRY: dict[str, Exercise] = {}
_FAILURES: dict[str, int] = {}  # failed attempts per exercise id, in this process (the kernel)


DIFFICULTIES = ("easy", "medium", "hard")


def register(
    id: str, *, name: str, notebook: str, reference: Callable[..., Any], hint: str = "",
    solution: str = "", difficulty: str = "medium", minutes: int = 10, derivation: bool = False,
) -> Callable[[Callable[[Callable[..., Any]], None]], Callable[[Callable[..., Any]], None]]:
    """Decorator registering ``check(fn)`` as the grader of exercise ``id``. ``hint`` gives the idea
    (never the answer); ``solution`` the formula, shown only after repeated failures or on request.
    ``difficulty`` and ``minutes`` are shown in the notebook's exercise cell (a test checks that
    they agree); ``derivation`` marks an exercise that turns a derivation into code."""
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")

    def deco(check: Callable[[Callable[..., Any]], None]) -> Callable[[Callable[..., Any]], None]:
        if id in _REGISTRY:
            raise ValueError(f"exercise id {id!r} is registered twice")
        _REGISTRY[id] = Exercise(id, name, notebook, reference, check, hint, solution, difficulty,
                                 minutes, derivation)
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


def failed_attempts(id: str) -> int:
    """How many times exercise ``id`` failed its grader in this process."""
    return _FAILURES.get(get(id).id, 0)


def reset_attempts(id: str | None = None) -> None:
    """Forget the failed attempts of exercise ``id`` (of every exercise when None)."""
    if id is None:
        _FAILURES.clear()
    else:
        _FAILURES.pop(get(id).id, None)


def solution(id: str, *, quiet: bool = False) -> str:
    """The solution of exercise ``id`` (the formula or code); printed unless ``quiet``."""
    ex = get(id)
    text = f"[{ex.id}] Solution: {ex.solution or 'see solutions/nb' + ex.id.split('.')[0] + '.py'}"
    if not quiet:
        print(text)
    return text


# --------------------------------------------------------------------- calling the learner's code
class LearnerError(Exception):
    """The learner's function raised: carries the original error and the inputs it was given."""

    def __init__(self, error: Exception, inputs: str) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.error, self.inputs = error, inputs


def describe_value(value: Any) -> str:
    """A short description of one input: a tensor's or array's shape and dtype, else its repr."""
    if isinstance(value, torch.Tensor):
        dtype = str(value.dtype).removeprefix("torch.")
        return f"tensor of shape {list(value.shape)} ({dtype})"
    if isinstance(value, np.ndarray):
        return f"array of shape {list(value.shape)} ({value.dtype})"
    if isinstance(value, tuple | list) and any(isinstance(v, torch.Tensor | np.ndarray) for v in value):
        inner = ", ".join(describe_value(v) for v in value)
        return f"{type(value).__name__} of {len(value)}: ({inner})"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe_call(fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> str:
    """``name = description`` for every argument of one call, named after ``fn``'s parameters."""
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs).arguments
    except (TypeError, ValueError):  # the learner's signature does not fit the call
        bound = {**{f"argument {i + 1}": a for i, a in enumerate(args)}, **kwargs}
    return "; ".join(f"{k} = {describe_value(v)}" for k, v in bound.items())


def _watched(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, with any error it raises (other than NotImplementedError and GradingFailure)
    turned into a :class:`LearnerError` naming the inputs of the failing call. A stub returning
    ``NotImplemented`` counts as not attempted."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            out = fn(*args, **kwargs)
        except (NotImplementedError, GradingFailure):
            raise
        except Exception as e:
            raise LearnerError(e, describe_call(fn, args, kwargs)) from e
        if out is NotImplemented:
            raise NotImplementedError
        return out

    return call


# ------------------------------------------------------------------------------------- grading
def _later_cells(ex: Exercise, passed: bool) -> str:
    if passed:
        return f"The following cells use your `{ex.name}`."
    return (f"The following cells use the library's `{ex.name}` until yours passes "
            "(re-run this cell after each change).")


def _advice(ex: Exercise, failures: int, show_solution: bool) -> list[str]:
    """The hint from the first failure on; the solution after SOLUTION_AFTER or on request."""
    lines = [f"  Hint: {ex.hint}"] if ex.hint else []
    if ex.solution and (show_solution or failures >= SOLUTION_AFTER):
        lines.append(f"  Solution: {ex.solution}")
    elif ex.solution:
        lines.append(f"  (attempt {failures}: the solution is shown after {SOLUTION_AFTER} "
                     f"failed attempts, or now with grade(..., show_solution=True).)")
    return lines


def grade(id: str, fn: Callable[..., Any], *, quiet: bool = False,
          show_solution: bool = False) -> Result:
    """Check the learner's ``fn`` for exercise ``id``, print a verdict, and return a :class:`Result`.

    A failure prints what is wrong and a hint; the solution comes with the ``SOLUTION_AFTER``-th
    failure of the exercise in this kernel, or at once with ``show_solution=True``. When ``fn``
    raises, the verdict names the inputs of the call that failed. The verdict ends by saying which
    version the following cells use (``Result.function``).
    """
    ex = get(id)
    attempted, passed = True, False
    lines: list[str] = []
    try:
        ex.check(_watched(fn))
        passed = True
        lines.append(f"[{ex.id}] Correct: `{ex.name}` matches the reference. Well done.")
    except NotImplementedError:
        attempted = False
        lines.append(f"[{ex.id}] Not attempted yet: fill in `{ex.name}` above and re-run this cell.")
    except GradingFailure as e:
        lines.append(f"[{ex.id}] Not quite: {e}")
    except LearnerError as e:  # the learner's code crashed: say on which inputs, keep going
        lines.append(f"[{ex.id}] Your `{ex.name}` raised {e}")
        lines.append(f"  It was called with: {e.inputs}")
    except Exception as e:  # raised by the grader on what the function returned
        lines.append(f"[{ex.id}] Checking what your `{ex.name}` returned raised "
                     f"{type(e).__name__}: {e}")
    if attempted and not passed:
        _FAILURES[ex.id] = _FAILURES.get(ex.id, 0) + 1
        lines += _advice(ex, _FAILURES[ex.id], show_solution)
    elif show_solution:
        lines.append(solution(ex.id, quiet=True))
    lines.append(_later_cells(ex, passed))
    message = "\n".join(lines)
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


def check_returned(got: Any, what: str) -> Any:
    """``got``, or a GradingFailure when the learner's function returned None (forgot ``return``)."""
    if got is None:
        raise GradingFailure(f"your function returned None; return {what}.")
    return got


def same(got: Any, expected: torch.Tensor, *, atol: float = 1e-9) -> bool:
    """Whether ``got`` has ``expected``'s shape and values (for matching a typical wrong answer)."""
    try:
        got_t = torch.as_tensor(got).detach().to(torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return False
    exp = expected.detach().to(torch.float64)
    return got_t.shape == exp.shape and bool(torch.allclose(got_t, exp, rtol=1e-7, atol=atol))


def diagnose(got: Any, wrong: dict[str, torch.Tensor], *, where: str = "") -> None:
    """Raise a GradingFailure with the explanation of the first typical mistake whose result
    ``got`` reproduces (``wrong``: explanation -> what that mistake returns)."""
    for why, value in wrong.items():
        if same(got, value):
            raise GradingFailure(f"{where}{': ' if where else ''}{why}")


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
