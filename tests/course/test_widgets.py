"""nlteach.course.widgets: the interactive-figure pattern of every notebook."""

import ipywidgets as widgets
import pytest
from matplotlib.figure import Figure

from nlteach.course import nb00_welcome as welcome
from nlteach.course.widgets import as_image, interactive_figure, render


def test_interactive_figure_redraws_on_change():
    calls = []

    def draw(fig: Figure, k: int):
        calls.append(k)
        fig.add_subplot().plot(range(k))

    s = widgets.IntSlider(value=3, min=1, max=9)
    box = interactive_figure(draw, {"k": s})
    assert calls == [3, 3]  # static figure + live output at the default
    s.value = 7
    assert calls[-1] == 7
    assert isinstance(box, widgets.VBox)
    with pytest.raises(ValueError, match="controls"):
        interactive_figure(draw, {})


def test_rendered_figures_display_as_png_without_pyplot():
    """A bare Figure has no rich display until the inline backend loads; ours must (browser bug)."""
    fig = render(welcome.draw_ema, {"beta": 0.9})
    png = fig._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert as_image(fig).data[:8] == png[:8]
