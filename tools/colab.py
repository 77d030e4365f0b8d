"""The first code cell of every notebook: install the course on Google Colab, nothing elsewhere.

The repository URL and the install source live here and only here. ``python -m tools.colab`` rewrites the first code
cell of every notebook pair from :data:`SETUP_CELL`; ``tests/test_notebooks.py`` fails when a
notebook's first code cell differs from it.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_URL = "https://github.com/nlteach/nlteach"
"""The course's canonical repository: the default install source and the base of the Colab links."""

INSTALL_SOURCE_ENV = "NLTEACH_INSTALL_SOURCE"
"""Overrides the install source on Colab: a pip git URL (``git+https://github.com/<you>/nlteach``,
optionally ``@<branch>``) or the path of an uploaded nlteach wheel."""

DEFAULT_SOURCE = f"git+{REPO_URL}"

SETUP_CELL = f"""\
# Set-up. On Google Colab this installs the course library; anywhere else it does nothing.
# It installs from ${INSTALL_SOURCE_ENV} when set (a fork: git+https://github.com/<you>/nlteach,
# or the path of an uploaded nlteach wheel), else from the course's repository. Colab's own torch
# (and Jupyter) stay: torch's installed version is a requirement, so pip never replaces it.
import os
import sys

if "google.colab" in sys.modules:
    import importlib
    import subprocess
    from importlib.metadata import version
    from pathlib import Path

    source = os.environ.get("{INSTALL_SOURCE_ENV}", "{DEFAULT_SOURCE}")
    if "://" not in source:  # a path: an uploaded wheel
        source = Path(source).resolve(strict=True).as_uri()
    keep_torch = f"torch=={{version('torch')}}"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"nlteach @ {{source}}", keep_torch],
                   check=True)
    importlib.invalidate_caches()"""


def colab_link(notebook: str, branch: str = "main", repo_url: str = REPO_URL) -> str:
    """The "Open in Colab" address of ``notebooks/<notebook>`` (e.g. ``00_welcome.ipynb``) on
    ``branch`` of the GitHub repository ``repo_url``."""
    prefix = "https://github.com/"
    if not repo_url.startswith(prefix):
        raise ValueError(f"repo_url must be a GitHub address starting with {prefix!r}, got {repo_url!r}")
    if not notebook.endswith(".ipynb"):
        raise ValueError(f"notebook must be a file name ending in .ipynb, got {notebook!r}")
    owner_repo = repo_url.removeprefix(prefix).rstrip("/")
    return f"https://colab.research.google.com/github/{owner_repo}/blob/{branch}/notebooks/{notebook}"


def rewrite_setup_cells(notebooks: Path) -> list[Path]:
    """Replace the first code cell of each ``NN_*.py`` notebook with SETUP_CELL (then run jupytext --sync)."""
    changed = []
    for py in sorted(notebooks.glob("[0-9][0-9]_*.py")):
        text = py.read_text()
        parts = text.split("\n# %%")
        for i, part in enumerate(parts[1:], start=1):
            if part.startswith(" [markdown]") or part.startswith(" [md]"):
                continue
            header, _, _body = part.partition("\n")
            new = header + "\n" + SETUP_CELL + "\n\n"
            if part != new:
                parts[i] = new
                py.write_text("\n# %%".join(parts))
                changed.append(py)
            break
    return changed


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("notebooks")
    for p in rewrite_setup_cells(root):
        print(f"rewrote the set-up cell of {p}")
