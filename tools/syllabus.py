"""Keep the course's syllabus in one place: ``nlteach.course.nb00_welcome.SYLLABUS``.

Three texts are generated from it and checked by tests/test_course_story.py:

- the ``## Objectives`` cell of every notebook (the markdown cell right after the title cell);
- the syllabus table in notebook 00 and in README.md, between the markers
  ``<!-- syllabus:start -->`` and ``<!-- syllabus:end -->``.

The time column and the objectives' time come from the committed measurement
``results/notebook_times_laptop/results.json`` (``python -m tools.time_notebooks``, read by
:func:`nlteach.course.nb00_welcome.measured_times`); without it they say "not yet measured".

After changing ``SYLLABUS`` or committing a new measurement, run

    python -m tools.syllabus            # rewrite the notebooks' .py files and README.md
    jupytext --sync notebooks/*.py      # then sync the .ipynb pairs

``python -m tools.syllabus --check`` only reports what is out of date (exit status 1 if anything is).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from nlteach.course.nb00_welcome import SYLLABUS, objectives_markdown, syllabus_markdown
from nlteach.runs import RESULTS_ROOT

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
README = ROOT / "README.md"
START, END = "<!-- syllabus:start -->", "<!-- syllabus:end -->"
OBJECTIVES_HEADING = "# ## Objectives"


def as_markdown_cell(markdown: str) -> str:
    """``markdown`` as a jupytext percent-format markdown cell (with its trailing blank line)."""
    body = "\n".join(f"# {line}" if line else "#" for line in markdown.splitlines())
    return f"# %% [markdown]\n{body}\n\n"


def _cells(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of each percent-format cell of ``text`` (the header excluded)."""
    starts = [m.start() for m in re.finditer(r"^# %%", text, flags=re.M)]
    return [(a, b) for a, b in zip(starts, starts[1:] + [len(text)])]


def with_objectives(text: str, nb: str, *, root: Path = RESULTS_ROOT) -> str:
    """``text`` (a notebook's .py) with its objectives cell replaced, or inserted after the title cell."""
    cell = as_markdown_cell(objectives_markdown(nb, root=root))
    cells = _cells(text)
    for a, b in cells:
        if text[a:b].startswith("# %% [markdown]\n" + OBJECTIVES_HEADING + "\n"):
            return text[:a] + cell + text[b:]
    if not cells:
        raise ValueError(f"notebook {nb} has no cells")
    _, b = cells[0]  # the title cell
    return text[:b] + cell + text[b:]


def with_block(text: str, content: str, *, prefix: str = "", where: str = "") -> str:
    """``text`` with the lines between the syllabus markers replaced by ``content``; each line gets
    ``prefix`` (``"# "`` inside a notebook's markdown cell)."""
    if START not in text or END not in text:
        raise ValueError(f"{where}: the markers {START} and {END} are missing")
    a = text.index(START) + len(START)
    b = text.rindex("\n", 0, text.index(END)) + 1  # keep the end marker's line (and its prefix)
    lines = "".join(f"{prefix}{line}\n" if line else f"{prefix.rstrip()}\n" for line in content.splitlines())
    return text[:a] + "\n" + lines + text[b:]


def targets(root: Path = RESULTS_ROOT) -> dict[Path, str]:
    """Every generated file and the text it should have (the times read from the results ``root``)."""
    out = {}
    table = syllabus_markdown(root=root)
    for e in SYLLABUS:
        py = NOTEBOOKS / f"{e.stem}.py"
        text = with_objectives(py.read_text(), e.nb, root=root)
        if e.nb == "00":
            text = with_block(text, table, prefix="# ", where=py.name)
        out[py] = text
    out[README] = with_block(README.read_text(), table, where="README.md")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report out-of-date files, change nothing")
    args = parser.parse_args(argv)
    stale = [p for p, text in targets().items() if p.read_text() != text]
    if args.check:
        for p in stale:
            print(f"out of date: {p.relative_to(ROOT)} (run python -m tools.syllabus)")
        return 1 if stale else 0
    for p, text in targets().items():
        if p in stale:
            p.write_text(text)
            print(f"wrote {p.relative_to(ROOT)}")
    if stale:
        print("now sync the notebooks: jupytext --sync notebooks/*.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
