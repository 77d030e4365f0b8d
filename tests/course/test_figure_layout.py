"""Every figure the notebooks draw through a ``draw_*`` function, at the notebook's own figure size,
has no overlapping titles, axis labels, tick labels or legends and no text outside the figure
(``tools.figcheck``). Inputs are small (tiny sizes) or the committed results, which the notebooks
draw at every preset."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from nlteach import longctx, results
from nlteach.continual import (
    draw_acc_matrix,
    draw_memory_trace,
    draw_trace,
    preset_config,
    trace_tasks,
)
from nlteach.continual import draw_comparison as continual_comparison
from nlteach.continual.runner import load_committed
from nlteach.course import nb00_welcome as nb00
from nlteach.course import nb01_associative_memory as nb01
from nlteach.course import nb02_attention as nb02
from nlteach.course import nb03_delta_rule as nb03
from nlteach.course import nb04_deep_memory as nb04
from nlteach.course import nb05_levels as nb05
from nlteach.course import nb06_optimizers as nb06
from nlteach.course import nb07_cms as nb07
from nlteach.course import nb08_self_modifying as nb08
from nlteach.course import nb12_scaling as nb12
from nlteach.experiments import cms_tasks, lm_comparison, optimizers
from nlteach.runs import RESULTS_ROOT
from tools.figcheck import problems


def figure(figsize, draw, *args, **kwargs) -> Figure:
    """As the notebooks draw: a constrained-layout figure of the notebook's size."""
    fig = Figure(figsize=figsize, layout="constrained")
    draw(fig, *args, **kwargs)
    return fig


def _nb01_capacity():
    fig = figure((11, 3.4), nb01.draw_capacity,
                 nb01.capacity_experiment(16, list(range(2, 49, 2)), [0, 1],
                                          kinds=("orthogonal", "random", "correlated")), 16)
    fig.axes[0].set_ylim(0, 3)  # as the notebook does
    return fig


def _nb03_speed():
    res = nb03.speed_sweep([64, 128, 256], [16, 32, 64, 128], BH=2, d=8, repeat=1)
    return figure((10, 3.2), nb03.draw_speed, res, BH=2, d=8)


def _nb04_capacity():
    cap = nb04.capacity_experiment([4, 8, 16, 32], d=8, hidden=32, epochs=2, seeds=2, chunk_size=4)
    return figure((6.5, 3.5), nb04.draw_capacity, cap)


def _nb04_chunks():
    rows = [{"chunk_size": c, "us_per_token": 1200.0 / c ** 0.8, "error_mean": {0.05: 0.99 - c / 3000, 0.3: e},
             "error_per_seq": {0.05: [0.99, 0.98], 0.3: [e, e]}}
            for c, e in zip([1, 2, 4, 8, 16, 32, 64, 128], [0.31, 0.32, 0.32, 0.32, 0.33, 0.41, np.nan, np.nan])]
    return figure((9, 3.2), nb04.draw_chunk_tradeoff, rows)


def _nb07_levels():
    changes = np.abs(np.random.default_rng(0).normal(size=(32, 3))) * (np.arange(32)[:, None] % [1, 4, 16] == 0)
    return figure((9, 2.2), nb07.draw_level_changes, changes, (1, 4, 16))


def _committed(name):
    path = RESULTS_ROOT / name
    if not path.exists():
        pytest.skip(f"results/{name} is not committed")
    return path


def _nb06_comparison():
    _committed("optimizers_digits_laptop")
    res = {task: optimizers.load_committed(task) for task in optimizers.TASKS}
    return figure((13, 3.8), optimizers.draw_comparison, list(res.values()))


def _nb07_sequential():
    _committed("cms_tasks_laptop")
    return figure((10, 3.4), cms_tasks.draw_sequential_tasks, cms_tasks.load_committed())


def _nb09_comparison(title):
    runs = lm_comparison.load_comparison(_committed("lm_tinyshakespeare_laptop"))
    fig = figure((8, 4), lm_comparison.draw_comparison, {k: runs[k] for k in lm_comparison.MAIN_MODELS if k in runs})
    fig.axes[0].set_title(title)
    return fig


def _nb10_trace():
    traces = {m: trace_tasks(preset_config("split-digits", m, preset="tiny", seeds=(0,)), 0, n_tasks=3, eval_every=2)
              for m in ("finetune", "replay")}
    return figure((10, 3.2), draw_trace, traces)


def _nb10_memory_trace():
    rng = np.random.default_rng(0)
    traces = [list(np.cumsum(rng.random(n)) / 10) for n in (30, 45, 60)]
    labels = ["what is my checking account balance", "set an alarm for 7 am tomorrow", "how do I say thanks in french"]
    return figure((7, 3), draw_memory_trace, traces, labels)


def _nb10_comparison(name):
    res = load_committed(name)
    if res is None:
        pytest.skip(f"{name} is not committed")
    return figure((3 + 1.6 * len(res), 3.0), continual_comparison, res)


def _nb10_matrix():
    res = load_committed("clinc150")
    if res is None or "hope" not in res:
        pytest.skip("clinc150 is not committed")
    return figure((5, 4.2), draw_acc_matrix, res["hope"])


def _longctx(name):
    exp = results.load_experiment(_committed(name))
    return exp.runs


def _nb11_niah():
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    runs = _longctx("longctx_s-niah_laptop")
    longctx.draw_accuracy(fig, runs, ax=axes[0], title="live run, preset tiny")
    longctx.draw_accuracy(fig, runs, ax=axes[1], title="S-NIAH, laptop (committed, 3 seeds)")
    return fig


def _nb11_cms():
    fig = figure((10, 3.6), longctx.draw_cms_study, _longctx("longctx_s-niah_cms_laptop"))
    fig.suptitle("Hope-Attention with the static CMS (before issue 17) on S-NIAH, laptop preset, 3 seeds; "
                 "periods in optimizer steps (multi-frequency training)", fontsize=9)
    return fig


def _nb11_grid():
    formal = {lang: _longctx(f"longctx_{lang}_laptop") for lang in longctx.LANGUAGES
              if (RESULTS_ROOT / f"longctx_{lang}_laptop").exists()}
    fig = figure((11, 6), longctx.draw_grid, formal, ncols=3)
    fig.suptitle("formal languages, laptop preset, 3 seeds (band: min..max over seeds)", fontsize=9)
    return fig


def _nb12(kind, figsize, draw):
    exps = results.load_all()
    if not any(e.kind == kind for e in exps):
        pytest.skip(f"no committed {kind} results")
    if kind == "longctx":
        n = sum(e.kind == "longctx" for e in exps)
        figsize = (11, 3.3 * ((n + 2) // 3))
    return figure(figsize, draw, exps)


def _nb12_flops_per_token():
    lens = (16, 64, 256)  # the notebook's lengths; values of the right size (counting them takes seconds)
    curves = {m: [3e5 * (1 + i) * (T / 16) ** 0.1 for T in lens] for i, m in enumerate(nb12.MODELS)}
    fig = figure((7, 3.8), nb12.draw_flops_per_token, lens, curves)
    fig.suptitle("one layer, width 64: counted training FLOPs per token", fontsize=9)
    return fig


def _nb12_reading_example():
    example = nb12.reading_example()
    if example is None:
        pytest.skip("the reading example is not committed")
    arms = {k: v for k, v in example["runs"].items() if k in (example["a"], example["b"])}
    fig = figure((7, 3.8), lm_comparison.draw_comparison, arms)
    fig.suptitle(f"{example['path']}: validation loss (mean over seeds, band: min..max)", fontsize=9)
    return fig


CASES = {
    "00 ema": lambda: figure((8, 3.2), nb00.draw_ema, 0.9),
    "01 memory writes": lambda: figure((10, 3.4), nb01.draw_memory_writes, 4, "correlated"),
    "01 memory writes 16": lambda: figure((10, 3.4), nb01.draw_memory_writes, 16, "random"),
    "01 capacity": _nb01_capacity,
    "02 kernel regression": lambda: figure((9, 3.2), nb02.draw_kernel_regression, 0.05),
    "03 speed": _nb03_speed,
    "04 capacity": _nb04_capacity,
    "04 gates": lambda: figure((9, 5), nb04.draw_gates, 0.3, 0.6, 0.0),
    "04 chunk trade-off": _nb04_chunks,
    **{f"05 nested {s}": (lambda s=s: figure((9, 2.6 if s != "titans" else 3.2), nb05.draw_nested_system, s))
       for s in nb05.NESTED_SYSTEMS},
    "05 timeline": lambda: figure((9, 2.8), nb05.draw_timeline, 16, 4),
    "06 momentum memory": lambda: figure((8, 3.2), nb06.draw_momentum_memory, 0.9),
    "06 orthogonal tasks": lambda: figure((10, 3.4), nb06.draw_orthogonal_tasks, nb06.orthogonal_tasks(steps_a=40, steps_b=80)),
    "06 toy": lambda: figure((11, 4.2), nb06.draw_toy, nb06.toy_trajectories(steps=150)),
    "06 dgd stream": lambda: figure((10, 3.4), nb06.draw_dgd_stream, nb06.dgd_stream(steps=150)),
    "06 optimizer comparison": _nb06_comparison,
    "07 level changes": _nb07_levels,
    "07 sequential tasks": _nb07_sequential,
    "08 self-modification": lambda: figure((9, 5.5), nb08.draw_self_modification, 1, 8, 0.5),
    "09 comparison (live)": lambda: _nb09_comparison("live run, tiny preset: validation loss (band: min..max over seeds)"),
    "09 comparison (committed)": lambda: _nb09_comparison(
        "committed laptop results: validation loss, mean over seeds (band: min..max)"),
    "10 trace": _nb10_trace,
    "10 memory trace": _nb10_memory_trace,
    **{f"10 comparison {n}": (lambda n=n: _nb10_comparison(n))
       for n in ("clinc150", "banking77", "split-digits", "permuted-digits")},
    "10 accuracy matrix": _nb10_matrix,
    "11 s-niah": _nb11_niah,
    "11 mqar": lambda: figure((6, 3.6), longctx.draw_accuracy, _longctx("longctx_mqar_laptop"),
                              title="MQAR, laptop preset (committed, 3 seeds)"),
    "11 cms study": _nb11_cms,
    "11 formal languages": _nb11_grid,
    "12 flops per token": _nb12_flops_per_token,
    "12 reading example": _nb12_reading_example,
    "12 lm": lambda: _nb12("lm", (9, 4.5), results.draw_lm),
    "12 continual": lambda: _nb12("continual", (11, 3.5), results.draw_continual),
    "12 longctx": lambda: _nb12("longctx", None, results.draw_longctx),
}


@pytest.mark.parametrize("case", list(CASES))
def test_no_text_overlaps(case):
    fig = CASES[case]()
    assert problems(fig) == []


def test_the_checker_sees_an_overlap_and_a_clipped_title():
    fig = Figure(figsize=(3, 2), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    ax1.set_title("a title far too long for half of a small figure")
    ax2.set_title("and another one")
    found = problems(fig)
    assert any(p.startswith("overlap: axes 0 title") for p in found), found
    assert any(p.startswith("outside the figure: axes 0 title") for p in found), found


def test_the_checker_sees_crowded_tick_labels():
    fig = Figure(figsize=(3, 2), layout="constrained")
    ax = fig.subplots()
    ax.set_xticks(range(10), [f"label number {i}" for i in range(10)])
    assert any("xtick" in p for p in problems(fig))
    ax.set_xticks(range(10), [f"label number {i}" for i in range(10)], rotation=90)
    assert not any("xtick" in p and "overlap" in p for p in problems(fig))


def test_a_clean_figure_passes():
    fig = Figure(figsize=(6, 3), layout="constrained")
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], label="line")
    ax.set(title="short", xlabel="x", ylabel="y")
    ax.legend()
    assert problems(fig) == []


NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
FIGURE_CALL = re.compile(r"\b(?:plt\.figure|plt\.subplots|PngFigure|Figure)\(")


def _call_text(src: str, start: int) -> str:
    """The text of the call whose opening parenthesis is at ``start - 1``, to its closing one."""
    depth = 1
    for i in range(start, len(src)):
        depth += {"(": 1, ")": -1}.get(src[i], 0)
        if depth == 0:
            return src[start:i]
    return src[start:]


def test_every_notebook_figure_uses_a_layout_engine():
    """A figure made in a notebook cell without ``layout=`` lets titles, suptitles and labels of
    neighbouring panels run into each other (the inline backend's tight crop does not move them)."""
    bare = []
    for py in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py")):
        src = py.read_text(encoding="utf-8")
        for m in FIGURE_CALL.finditer(src):
            if "layout=" not in _call_text(src, m.end()):
                bare.append(f"{py.name}:{src.count(chr(10), 0, m.start()) + 1}")
    assert bare == [], f"figures without layout='constrained': {bare}"


def test_check_notebook_reports_a_figure_a_cell_shows(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    from tools.figcheck import check_notebook  # after the skips: nbclient is optional

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import matplotlib.pyplot as plt\n"
        "fig, (a, b) = plt.subplots(1, 2, figsize=(3, 2))\n"
        "a.set_title('a title far too long for half of a small figure')\n"
        "plt.show()")])
    path = tmp_path / "overlap.ipynb"
    nbformat.write(nb, path)
    monkeypatch.setenv("MPLBACKEND", "agg")
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
    found = check_notebook(path, timeout=120)
    assert any(f.startswith("cell 1: outside the figure: axes 0 title") for f in found), found
