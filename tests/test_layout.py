"""The repository's structure rules (docs/design.md#layers): the import-layer contract, no hidden
function-level imports, no reference to files outside the repository."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "nlteach"
# A function-level import must say why it is not at the top: which cycle or optional dependency it
# avoids, or that it defers a slow import (scikit-learn) to the one function that needs it.
JUSTIFIED = re.compile(r"#.*\b(cycle|optional|deferred)\b", re.IGNORECASE)


def _function_level_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines = path.read_text(encoding="utf-8").splitlines()
    found = []
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Import | ast.ImportFrom):
                text = " ".join(lines[node.lineno - 2:node.end_lineno])  # the line above counts too
                if not JUSTIFIED.search(text):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    return found


def test_no_unexplained_function_level_imports():
    found = [f for p in sorted(PACKAGE.rglob("*.py")) for f in _function_level_imports(p)]
    assert not found, ("imports inside functions hide the module graph; move them to the top, or say in a "
                       "comment on the import which cycle or optional dependency they avoid:\n" + "\n".join(found))


def test_the_layer_contract_holds():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    run = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), i.e. import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycles():
    grimp = pytest.importorskip("grimp", reason="grimp comes with import-linter (pip install -e '.[dev]')")
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    cycles = _cycles(grimp.build_graph("nlteach"))
    assert not cycles, f"import cycles: {cycles}"


def _repository_files() -> list[str]:
    """Tracked and untracked-but-not-ignored files (what a commit would hold)."""
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run([git, "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return sorted(set(out.splitlines()))


def test_no_reference_to_files_outside_the_repository():
    pattern = re.compile(r"DESIGN\.md|PAPER_NOTES|\.\./shared")
    allowed = {".ci/run", "tests/test_layout.py"}  # .ci/run: CI reads the data mirror from beside the checkout
    hits = []
    for rel in _repository_files():
        p = ROOT / rel
        if rel in allowed or p.suffix in {".ipynb", ".png"} or not p.is_file():
            continue  # a notebook's text is checked in its paired .py
        try:
            text = p.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        hits += [f"{rel}:{i}: {line.strip()}" for i, line in enumerate(text.splitlines(), 1) if pattern.search(line)]
    assert not hits, "cite docs/ inside the repository instead:\n" + "\n".join(hits)
