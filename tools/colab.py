"""The first code cell of every notebook: install the course on Google Colab, nothing elsewhere.

The repository URL lives here and only here. ``python -m tools.colab`` rewrites the first code
cell of every notebook pair from :data:`SETUP_CELL`; ``tests/test_notebooks.py`` fails when a
notebook's first code cell differs from it.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_URL = "https://github.com/nlteach/nlteach"

SETUP_CELL = f"""\
# Set-up. On Google Colab this installs the course library; anywhere else it does nothing.
import sys

if "google.colab" in sys.modules:
    import subprocess

    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "nlteach[course] @ git+{REPO_URL}"],
        check=True,
    )"""


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
