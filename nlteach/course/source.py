"""Put the library's code on screen where a notebook explains it.

Where a notebook says that a reference implementation "reads like the equations", it shows that
implementation with :func:`show_source` instead of asking the learner to open the file:

    from nlteach.course.source import show_source
    show_source(memory.delta_rule_naive)

In Jupyter the source appears as a syntax-highlighted Python block (a Markdown code fence, which
every Jupyter front-end highlights); anywhere else (a script, a test, a terminal) it is printed as
plain text. :func:`get_source` returns the same text as a string.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from typing import Any

from IPython import get_ipython
from IPython.display import Markdown, display

__all__ = ["get_source", "show_source"]


def _check(obj: Any) -> None:
    if isinstance(obj, type) or inspect.isfunction(obj) or inspect.ismethod(obj):
        return
    what = type(obj).__name__
    if inspect.isbuiltin(obj) or inspect.ismethoddescriptor(obj):
        raise TypeError(f"show_source: {obj!r} is built in (written in C), so it has no Python source to "
                        "show; pass a function, method or class written in Python.")
    raise TypeError(f"show_source expects a Python function, method or class (e.g. "
                    f"memory.delta_rule_naive), got a {what}: {obj!r:.80}.")


def _without_docstring(src: str) -> str:
    """``src`` (one dedented ``def``/``class``) without its docstring, if it has one."""
    node = ast.parse(src).body[0]
    body = getattr(node, "body", [])
    if not (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)):
        return src
    doc = body[0]
    lines = src.splitlines(keepends=True)
    # lineno/end_lineno are 1-based and inclusive; drop the docstring's lines only
    return "".join(lines[: doc.lineno - 1] + lines[doc.end_lineno:])


def get_source(obj: Any, *, docstring: bool = True) -> str:
    """The source text of a Python function, method or class, dedented.

    ``docstring=False`` leaves the docstring out (the code alone is often what a notebook wants
    to put beside the equations). Raises ``TypeError`` for anything else (a number, a string, a
    built-in function) and ``OSError`` when Python cannot find the source (e.g. a function made
    with ``exec``).
    """
    _check(obj)
    try:
        src = inspect.getsource(obj)
    except (OSError, TypeError) as err:
        name = getattr(obj, "__qualname__", repr(obj))
        raise OSError(f"show_source: no source file found for {name} ({err}).") from err
    src = textwrap.dedent(src)
    if not docstring:
        src = _without_docstring(src)
    return src.rstrip("\n") + "\n"


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (which can show Markdown), False in a terminal or a script."""
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def show_source(obj: Any, *, docstring: bool = True) -> None:
    """Show the source of ``obj`` (a Python function, method or class): highlighted in Jupyter,
    plain text elsewhere. ``docstring=False`` leaves the docstring out. See :func:`get_source`
    for the errors."""
    src = get_source(obj, docstring=docstring)
    where = inspect.getsourcefile(obj) or "?"
    module = getattr(obj, "__module__", None) or "?"
    name = f"{module}.{getattr(obj, '__qualname__', '?')}"
    if _in_notebook():
        header = f"`{name}`" + ("" if module == "__main__" else f" (file `{_short(where)}`)")
        display(Markdown(f"{header}\n\n```python\n{src}```"))
    else:
        print(f"# {name}\n{src}", end="")


def _short(path: str) -> str:
    """The path from the package folder on (``nlteach/titans.py``), not the machine's full path."""
    parts = path.replace("\\", "/").split("/")
    return "/".join(parts[parts.index("nlteach"):]) if "nlteach" in parts else parts[-1]
