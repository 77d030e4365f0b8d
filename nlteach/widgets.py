"""Interactive figures for the notebooks: ipywidgets controls with an inline redraw.

The pattern every widget in the course follows:

- the drawing is a plain library function ``draw(fig, **values)`` that fills a
  ``matplotlib.figure.Figure`` (so it is unit-tested without a browser);
- :func:`interactive_figure` first shows a **static** figure at the default values (what a static
  render of the notebook, e.g. on GitHub, shows), then the controls and a live output area that is
  redrawn whenever a control moves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
from matplotlib.figure import Figure

Draw = Callable[..., Any]


def render(draw: Draw, values: dict[str, Any], *, figsize: tuple[float, float] = (8, 3.2)) -> Figure:
    """Call ``draw`` on a fresh figure (not registered with pyplot, so nothing leaks)."""
    fig = Figure(figsize=figsize, layout="constrained")
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
    from IPython.display import display

    if not controls:
        raise ValueError("controls must name at least one widget, got an empty dict.")
    values = {k: w.value for k, w in controls.items()}
    if show_static:
        display(render(draw, values, figsize=figsize))
    out = widgets.Output()

    def redraw(_change: Any = None) -> None:
        fig = render(draw, {k: w.value for k, w in controls.items()}, figsize=figsize)
        with out:
            out.clear_output(wait=True)
            display(fig)

    for w in controls.values():
        w.observe(redraw, names="value")
    redraw()
    box = widgets.VBox([widgets.HBox(list(controls.values())), out])
    box.add_class("nlteach-widget")
    display(box)
    return box
