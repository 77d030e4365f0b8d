"""nlteach.course.widgets: the interactive-figure pattern of every notebook."""

import base64

import ipywidgets as widgets
import pytest
from matplotlib.figure import Figure

from nlteach.course import nb00_welcome as welcome
from nlteach.course import widgets as course_widgets
from nlteach.course.widgets import as_image, interactive_figure, render


def test_interactive_figure_redraws_on_change():
    calls = []

    def draw(fig: Figure, k: int):
        calls.append(k)
        fig.add_subplot().plot(range(k))

    s = widgets.IntSlider(value=3, min=1, max=9)
    box = interactive_figure(draw, {"k": s})
    assert calls == [3]  # one drawing: the live output's, also the static fallback
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


def test_the_static_figure_is_the_fallback_of_the_live_widget_not_a_second_copy(monkeypatch):
    """One display: the widget view (JupyterLab ranks it first and shows the live figure only) with
    a PNG of the default figure for front-ends without widgets (GitHub, an untrusted notebook)."""
    shown = []
    monkeypatch.setattr(course_widgets, "display", lambda obj, **kw: shown.append((obj, kw)))
    box = interactive_figure(lambda fig, k: fig.add_subplot().plot(range(k)),
                             {"k": widgets.IntSlider(value=3, min=1, max=9)})
    outer = [obj for obj, kw in shown if kw.get("raw")]
    assert len(outer) == 1
    bundle = outer[0]
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == box.model_id
    assert base64.b64decode(bundle["image/png"]).startswith(b"\x89PNG")
    shown.clear()
    interactive_figure(lambda fig, k: None, {"k": widgets.IntSlider(value=3)}, show_static=False)
    assert "image/png" not in next(obj for obj, kw in shown if kw.get("raw"))
