"""nlteach.course.nb00_welcome: the environment report, the running average and its widget."""

import pytest
import torch

from nlteach.course import nb00_welcome as welcome
from nlteach.course.widgets import render


def test_environment_report_has_every_dependency_and_device():
    names = [c.name for c in welcome.environment_report()]
    for dep, _ in welcome.REQUIRED:
        assert dep in names
    assert "device" in names and "preset" in names
    assert welcome.print_environment_report() is True


def test_ema_matches_closed_form():
    x = torch.randn(50, dtype=torch.float64)
    beta = 0.8
    m = welcome.ema(x, beta)
    t = 20  # m_t = (1 - beta) sum_i beta^(t-i) x_i
    closed = sum((1 - beta) * beta ** (t - i) * x[i] for i in range(t + 1))
    assert torch.allclose(m[t], closed)
    with pytest.raises(ValueError, match="beta"):
        welcome.ema(x, 1.0)


@pytest.mark.parametrize("beta,expected", [(0.0, 1), (0.5, 1), (0.9, 7), (0.99, 69)])
def test_memory_horizon(beta, expected):
    assert welcome.memory_horizon(beta) == expected


def test_draw_ema_changes_with_beta():
    a = render(welcome.draw_ema, {"beta": 0.5})
    b = render(welcome.draw_ema, {"beta": 0.95})
    ya = a.axes[0].lines[1].get_ydata()
    yb = b.axes[0].lines[1].get_ydata()
    assert len(ya) == len(yb) and not (ya == yb).all()
    assert b.axes[1].get_title().endswith("last 14")
