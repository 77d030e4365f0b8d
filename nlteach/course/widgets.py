"""Interactive figures for the notebooks: ipywidgets controls with an inline redraw.

The pattern every widget in the course follows:

- the drawing is a plain library function ``draw(fig, **values)`` that fills a
  ``matplotlib.figure.Figure`` (so it is unit-tested without a browser);
- :func:`interactive_figure` shows the controls and a live output area that is redrawn whenever a
  control moves. Its display also carries a **static** PNG of the figure at the default values:
  a front-end that cannot show the live widget (a static render of the notebook, e.g. on GitHub,
  or a saved notebook reopened untrusted) shows that picture instead, and JupyterLab, which ranks
  the widget first, shows the live figure only (no second copy above it).
"""

from __future__ import annotations

import base64
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
    """Display the controls and a live figure redrawn when a control moves; return the widget.

    ``controls`` maps each keyword of ``draw`` to an ipywidgets control (slider, dropdown, ...).
    With ``show_static`` the same display carries a PNG of the figure at the controls' defaults,
    the fallback of front-ends without the live widget (module docstring).
    """
    if not controls:
        raise ValueError("controls must name at least one widget, got an empty dict.")
    out = widgets.Output()

    def redraw(_change: Any = None) -> bytes:
        png = png_bytes(render(draw, {k: w.value for k, w in controls.items()}, figsize=figsize))
        with out:
            out.clear_output(wait=True)
            display(Image(data=png, format="png"))
        return png

    for w in controls.values():
        w.observe(redraw, names="value")
    first = redraw()
    box = widgets.VBox([widgets.HBox(list(controls.values())), out])
    box.add_class("nlteach-widget")
    display(widget_bundle(box, first if show_static else None), raw=True)
    return box


def widget_bundle(widget: widgets.Widget, png: bytes | None = None) -> dict[str, Any]:
    """The display data of ``widget``, plus ``png`` as its static fallback (``image/png``)."""
    bundle = dict(widget._repr_mimebundle_())
    if png is not None:
        bundle["image/png"] = base64.b64encode(png).decode("ascii")
    return bundle
