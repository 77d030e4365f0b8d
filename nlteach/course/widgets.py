"""Interactive figures for the notebooks: ipywidgets controls with an inline redraw.

The pattern every widget in the course follows:

- the drawing is a plain library function ``draw(fig, **values)`` that fills a
  ``matplotlib.figure.Figure`` (so it is unit-tested without a browser);
- :func:`interactive_figure` first shows a **static** figure at the default values (what a static
  render of the notebook, e.g. on GitHub, shows), then the controls and a live output area that is
  redrawn whenever a control moves.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
from IPython.display import Image, display
from matplotlib.figure import Figure

Draw = Callable[..., Any]


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes (the figure's own size and dpi, no cropping)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


class PngFigure(Figure):
    """A ``Figure`` that shows itself as a PNG in Jupyter, whatever matplotlib backend is loaded.

    A plain ``Figure`` made without pyplot has no rich display of its own: in a fresh kernel
    ``display(fig)`` shows only ``<Figure size ...>``, because Jupyter's inline backend (which
    registers a PNG formatter for figures) is loaded lazily, by the first pyplot drawing.
    tests/test_browser.py caught this in JupyterLab.
    """

    def _repr_png_(self) -> bytes:
        return png_bytes(self)


def as_image(fig: Figure) -> Any:
    """``IPython.display.Image`` of the figure: displays the same before and after a later cell
    loads the inline backend (whose formatter, once registered, would crop with bbox 'tight')."""
    return Image(data=png_bytes(fig), format="png")


def render(draw: Draw, values: dict[str, Any], *, figsize: tuple[float, float] = (8, 3.2)) -> Figure:
    """Call ``draw`` on a fresh figure (not registered with pyplot, so nothing leaks)."""
    fig = PngFigure(figsize=figsize, layout="constrained")
    draw(fig, **values)
    return fig


def interactive_figure(
    draw: Draw,
    controls: dict[str, widgets.ValueWidget],
    *,
    figsize: tuple[float, float] = (8, 3.2),
    show_static: bool = True,
) -> widgets.VBox:
    """Display a static figure at the controls' defaults, then the live widget; return the widget.

    ``controls`` maps each keyword of ``draw`` to an ipywidgets control (slider, dropdown, ...).
    """
    if not controls:
        raise ValueError("controls must name at least one widget, got an empty dict.")
    values = {k: w.value for k, w in controls.items()}
    if show_static:
        display(as_image(render(draw, values, figsize=figsize)))
    out = widgets.Output()

    def redraw(_change: Any = None) -> None:
        fig = render(draw, {k: w.value for k, w in controls.items()}, figsize=figsize)
        with out:
            out.clear_output(wait=True)
            display(as_image(fig))

    for w in controls.values():
        w.observe(redraw, names="value")
    redraw()
    box = widgets.VBox([widgets.HBox(list(controls.values())), out])
    box.add_class("nlteach-widget")
    display(box)
    return box
