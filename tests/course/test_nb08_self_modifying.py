"""nlteach.course.nb08_self_modifying: what the memories generate along one sequence, and its widget."""

import numpy as np

from nlteach.course.nb08_self_modifying import draw_self_modification, self_modification_trace
from nlteach.course.widgets import render


def test_self_modification_trace_and_drawing():
    r = self_modification_trace(2, 4, T=24)
    assert r["key_drift"][0] < 1e-12 and r["key_drift"][1:].max() > 1e-4  # equal start, then drift
    assert np.isfinite(r["eta"]).all() and ((r["alpha"] > 0) & (r["alpha"] < 1)).all()
    fig = render(draw_self_modification, {"proj_chunk_size": 3, "chunk_size": 5, "eta_max": 0.3})
    assert len(fig.axes) == 2
