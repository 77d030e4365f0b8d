"""Overlapping text in a matplotlib figure: titles, axis labels, tick labels, legends, free text.

``problems(fig)`` draws the figure (Agg, no window) and returns one line per pair of text boxes
that overlap, and per text box that sticks out of the figure (a clipped title, a tick label cut at
the edge). Used by ``tests/course/test_figure_layout.py`` on every ``draw_*`` function the
notebooks show; run it on any figure while writing one:

    from tools.figcheck import problems
    print(problems(fig))   # [] when every text is readable

On whole notebooks (every figure they show or save, inline cells included), at the tiny preset:

    NLTEACH_SIZE=tiny PYTHONPATH=. python -m tools.figcheck notebooks/09_hope.ipynb [...]
"""

from __future__ import annotations

import argparse
import math
import sys
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

TOLERANCE_PX = 1.0
"""Two boxes overlap when they share more than this many pixels across every separating direction
(a touch is fine)."""


def _visible_text(t: Any) -> bool:
    return t is not None and t.get_visible() and bool(t.get_text().strip())


def _tick_labels(axis: Any) -> list[Any]:
    """The tick labels the axis really draws (ticks inside the view, labels switched on)."""
    ticks = axis._update_ticks()  # the ticks within the view interval, as draw() uses them
    return [lab for tick in ticks for lab in (tick.label1, tick.label2) if _visible_text(lab)]


def _outline(artist: Any, renderer: Any) -> np.ndarray:
    """The four corners [4, 2] (pixels) of the artist's box: its window extent, or for text
    rotated by an angle that is not a multiple of 90 degrees the rotated rectangle of the text
    itself (its window extent is the axis-aligned box around it, which overlaps its neighbours'
    when tick labels are slanted, although the labels do not touch)."""
    box = artist.get_window_extent(renderer)
    angle = artist.get_rotation() % 90 if isinstance(artist, Text) else 0.0
    if angle == 0.0:
        return np.array([[box.x0, box.y0], [box.x1, box.y0], [box.x1, box.y1], [box.x0, box.y1]])
    rotation = artist.get_rotation()
    artist.set_rotation(0)
    flat = artist.get_window_extent(renderer)
    artist.set_rotation(rotation)
    t = math.radians(rotation)  # the rotated rectangle has the same centre as its bounding box
    R = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    half = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * [flat.width / 2, flat.height / 2]
    return half @ R.T + [(box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2]


def text_boxes(fig: Figure) -> list[tuple[str, np.ndarray]]:
    """``(name, corners [4, 2])`` of every visible, non-empty text and legend of ``fig`` (drawn
    first), each artist once."""
    if fig.canvas is None or not hasattr(fig.canvas, "get_renderer"):
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    out: list[tuple[str, np.ndarray]] = []
    seen: set[int] = set()

    def add(name: str, artist: Any) -> None:
        if _visible_text(artist) and id(artist) not in seen:
            seen.add(id(artist))
            out.append((f"{name} {artist.get_text()!r}", _outline(artist, renderer)))

    for attr in ("_suptitle", "_supxlabel", "_supylabel"):
        add(attr.strip("_"), getattr(fig, attr, None))
    for t in fig.texts:
        add("figure text", t)
    for leg in fig.legends:
        if leg.get_visible():
            out.append(("figure legend", _outline(leg, renderer)))
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible():
            continue
        where = f"axes {i}"
        for attr in ("title", "_left_title", "_right_title"):
            add(f"{where} title", getattr(ax, attr))
        if ax.axison:
            for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
                add(f"{where} {name}label", axis.label)
                add(f"{where} {name} offset", axis.get_offset_text())
                for lab in _tick_labels(axis):
                    add(f"{where} {name}tick", lab)
        for t in ax.texts:
            add(f"{where} text", t)
        leg = ax.get_legend()
        if leg is not None and leg.get_visible():
            out.append((f"{where} legend", _outline(leg, renderer)))
    return out


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two convex quadrilaterals overlap by more than the tolerance along every edge normal
    of either (the separating axis test)."""
    for poly in (a, b):
        for i in range(4):
            edge = poly[(i + 1) % 4] - poly[i]
            normal = np.array([-edge[1], edge[0]]) / (np.hypot(*edge) or 1.0)
            pa, pb = a @ normal, b @ normal
            if min(pa.max(), pb.max()) - max(pa.min(), pb.min()) <= TOLERANCE_PX:
                return False
    return True


def problems(fig: Figure) -> list[str]:
    """One line per overlapping pair of texts and per text outside the figure; ``[]`` when clean.
    A legend placed inside its own axes may cover that axes' free text (it is drawn on top), so only
    its overlaps with titles, labels and other axes' texts count."""
    boxes = text_boxes(fig)
    page = fig.bbox
    found = []
    for name, box in boxes:
        (x0, y0), (x1, y1) = box.min(0), box.max(0)
        if (x0 < page.x0 - TOLERANCE_PX or y0 < page.y0 - TOLERANCE_PX
                or x1 > page.x1 + TOLERANCE_PX or y1 > page.y1 + TOLERANCE_PX):
            found.append(f"outside the figure: {name}")
    for (na, a), (nb, b) in combinations(boxes, 2):
        if _overlap(a, b) and not _legend_over_own_text(na, nb):
            found.append(f"overlap: {na} / {nb}")
    return found


def _legend_over_own_text(na: str, nb: str) -> bool:
    for leg, other in ((na, nb), (nb, na)):
        if leg.endswith(" legend") and leg.startswith("axes "):
            owner = leg.removesuffix(" legend")
            return other.startswith(owner + " text")
    return False


HOOK = """
import matplotlib.pyplot as _plt
from matplotlib.figure import Figure as _Figure
from tools.figcheck import problems as _problems
_checked = set()
def _figcheck(fig):
    if id(fig) not in _checked:
        _checked.add(id(fig))
        for p in _problems(fig):
            print("FIGCHECK", p)
def _figcheck_open(*_):
    for n in _plt.get_fignums():
        _figcheck(_plt.figure(n))
_show = _plt.show
def _checked_show(*args, **kwargs):
    _figcheck_open()
    return _show(*args, **kwargs)
_plt.show = _checked_show
_savefig = _Figure.savefig
def _checked_savefig(self, *args, **kwargs):
    _figcheck(self)
    return _savefig(self, *args, **kwargs)
_Figure.savefig = _checked_savefig
get_ipython().events.register("post_run_cell", _figcheck_open)
"""
"""Run first in the kernel: every figure is checked when shown (``plt.show``), saved or rendered to
PNG (``savefig``: the course's widgets and ``render``), or left open at the end of a cell."""


def check_notebook(path: str | Path, *, timeout: int = 600) -> list[str]:
    """Execute the notebook (errors allowed: exercise stubs raise) with :data:`HOOK` first; return
    ``"cell N: problem"`` for every problem of every figure it made. The kernel inherits this
    process's environment: set ``NLTEACH_SIZE=tiny``, ``MPLBACKEND=agg`` and ``PYTHONPATH``."""
    import nbformat  # optional: only this command line runs notebooks
    from nbclient import NotebookClient  # optional, as above

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(HOOK))
    NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    found = []
    for i, cell in enumerate(nb.cells[1:], start=1):
        for out in cell.get("outputs", []):
            for line in out.get("text", "").splitlines() if out.get("output_type") == "stream" else []:
                if line.startswith("FIGCHECK "):
                    found.append(f"cell {i}: {line.removeprefix('FIGCHECK ')}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Report overlapping text in every figure of the notebooks.")
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args(argv)
    bad = 0
    for nb in args.notebooks:
        found = check_notebook(nb, timeout=args.timeout)
        print(f"{nb}: {len(found)} problem(s)" + "".join(f"\n  {f}" for f in found), flush=True)
        bad += len(found)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
