"""nlteach.experiments.optimizers: notebook 06's optimizer comparison, at tiny sizes."""

import math

import pytest
import torch

from nlteach.course.widgets import render
from nlteach.experiments import optimizers as E


@pytest.mark.parametrize("task", ["digits", "shakespeare"])
def test_compare_optimizers_tiny(task):
    threads = torch.get_num_threads()
    res = E.compare_optimizers(task, steps=4, hidden=8, seeds=(0, 1), n_eval=64, n_evals=3,
                               context=8, embed=4)
    assert torch.get_num_threads() == threads and res["config"]["threads"] == 1
    assert list(res["runs"]) == list(E.COMPARED)
    assert res["eval_steps"] == [0, 2, 4]
    for per_seed in res["runs"].values():
        assert [r["seed"] for r in per_seed] == [0, 1]
        for r in per_seed:
            assert len(r["train_loss"]) == 4 and len(r["eval_loss"]) == 3
            assert r["step_time"] > 0 and r["opt_time"] > 0
    # same seed => same initial weights for every optimizer; different seeds differ
    first = {name: [r["eval_loss"][0] for r in per] for name, per in res["runs"].items()}
    assert len({v[0] for v in first.values()}) == 1 and first["AdamW"][0] != first["AdamW"][1]
    rows = E.summarize(res)
    assert rows[0]["optimizer"] == "SGD+momentum" and rows[0]["step_time_ratio"] == 1.0
    assert all(math.isfinite(r["eval_mean"]) and r["seeds"] == 2 for r in rows)
    text = E.format_summary(res)
    assert "DMGD" in text and "+-" in text
    fig = render(E.draw_comparison, {"results": [res, res]}, figsize=(12, 3.5))
    assert len(fig.axes) == 3


def test_compare_optimizers_rejects_bad_input():
    with pytest.raises(ValueError, match="task"):
        E.compare_optimizers("mnist")
    with pytest.raises(ValueError, match="optimizer name"):
        E.compare_optimizers("digits", optimizers=["Lion"])
    with pytest.raises(ValueError, match="threads"):
        E.compare_optimizers("digits", threads=0)
    with pytest.raises(ValueError, match="optimizer name"):
        E.make_optimizer("Lion", [torch.zeros(1, requires_grad=True)], 0.1)


def test_comparison_sizes_follow_the_preset():
    tiny = E.comparison_sizes("digits", "tiny")
    laptop = E.comparison_sizes("shakespeare", "laptop")
    assert tiny["steps"] < laptop["steps"] and len(tiny["seeds"]) >= 3
    with pytest.raises(ValueError, match="task"):
        E.comparison_sizes("mnist")
