"""Notebook 00: environment check, the course map, and the warm-up exercise (a running average).

The running (exponential moving) average ``m_t = beta m_{t-1} + (1 - beta) x_t`` is the smallest
memory in the course: one number that compresses a whole stream. Notebook 06 shows that momentum
is exactly this memory applied to gradients.
"""

from __future__ import annotations

import importlib
import math
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from nlteach.config import get_device, get_preset
from nlteach.runs import RESULTS_ROOT
from nlteach.runs.io import read_json

# (import name, what the course needs it for)
REQUIRED = [
    ("torch", "tensors, autograd, every mechanism"),
    ("numpy", "arrays"),
    ("matplotlib", "figures"),
    ("seaborn", "heatmaps and plot styles"),
    ("ipywidgets", "interactive figures"),
    ("tqdm", "progress bars"),
    ("sklearn", "the bundled digits data set"),
]
OPTIONAL = [("jupytext", "notebook pairing"), ("jupyterlab", "the course UI")]

@dataclass(frozen=True)
class Lesson:
    """One notebook of the course, as the syllabus (notebook 00 and the README) lists it."""

    nb: str  # "00"
    stem: str  # the notebook's file name without extension, "00_welcome"
    title: str
    summary: str  # one line, for the course map
    objectives: tuple[str, ...]  # each one completes "you will be able to ..."
    paper: str  # sections / equations of arXiv v1 (or of another paper, named)
    prerequisites: str
    deep_dive: str = ""  # the optional "making it fast" sections, "" when there are none


# The course's one syllabus: notebook 00's table, the objectives cell of every notebook and the
# README's table are checked against it (tests/test_course_story.py). The time column is not written
# here: it is read from the committed measurement (:func:`measured_times`).
SYLLABUS: tuple[Lesson, ...] = (
    Lesson("00", "00_welcome", "Welcome", "the paper in one page; set-up, presets, widgets, exercises, notation",
           ("say what the paper diagnoses, what \"nested learning\" and the title's \"illusion\" mean, "
            "and which notebook teaches each contribution",
            "run the course at a size preset and use its widgets and graded exercises",
            "read every notebook's equations in the course's one notation"),
           "abstract, Sec. 1, Defs. 1-2", "PyTorch; the Transformer block"),
    Lesson("01", "01_associative_memory", "Associative memory",
           "memory is an optimization problem; Hebbian vs delta writes; capacity",
           ("define an associative memory as the solution of an optimization problem (Def. 1)",
            "derive the Hebbian and the delta-rule write as one gradient step on a dot-product and on "
            "an L2 objective, and code both",
            "measure capacity and interference, and explain why the delta rule can overwrite"),
           "Def. 1; the dot-product and L2 objectives", "00"),
    Lesson("02", "02_attention_is_memory", "Attention is associative memory",
           "softmax and linear attention as memories; chunked linear attention",
           ("show that softmax attention is the non-parametric solution of a regression over the context",
            "derive linear attention as one gradient step per token, and Linear Attention++ as an MLP "
            "weight with a faster level",
            "place attention and MLP weights on the frequency axis"),
           "Def. 1 applied to attention; Linear Attention++", "01",
           deep_dive="section 5 (chunked linear attention, speed)"),
    Lesson("03", "03_delta_rule_chunking", "The delta rule and chunking",
           "delta and gated delta rules; the WY/UT chunked algorithm",
           ("write the delta rule and the gated delta rule as recurrences on a matrix memory",
            "derive the chunked (WY/UT) form with one triangular solve per chunk and test it against "
            "the token loop",
            "spot why a chunked gated rule needs the decay in four places"),
           "the L2 objective (Def. 1); chunked form: DeltaNet (Yang et al., 2024), Gated DeltaNet",
           "01, 02",
           deep_dive="sections 2-6 (the whole chunked algorithm and its speed); section 1 is the concept"),
    Lesson("04", "04_deep_memory", "Deep memory (Titans)",
           "an MLP trained at test time: surprise, momentum, forgetting",
           ("run a Titans memory token by token: an MLP trained at test time with momentum and forgetting",
            "explain why an MLP memory stores more pairs than a matrix of the same width, and what "
            "surprise, momentum and forgetting do",
            "trade chunk size against staleness of the gradients"),
           "Titans (arXiv 2501.00663) Sec. 3; Sec. 8, Eq. 89", "01, 03 section 1",
           deep_dive="sections 5-6 (the chunked dual form and the chunk-size trade-off)"),
    Lesson("05", "05_levels_and_clocks", "Levels and clocks",
           "update frequency, level ordering, nested optimization",
           ("order the components of a model by update frequency into levels (Def. 2)",
            "draw SGD with momentum, a Transformer block and Titans as nested optimization problems",
            "write the level clock and name the five ways knowledge moves between levels"),
           "Sec. 3, Def. 2", "01, 04"),
    Lesson("06", "06_optimizers_are_memories", "Optimizers are memories",
           "momentum, delta momentum, DMGD, Muon, M3, DGD",
           ("read momentum, Adam's moments and a layer trained by gradient descent as associative memories",
            "derive delta momentum and delta gradient descent (DGD, Eq. 57) from their objectives",
            "compare the paper's optimizers on two small tasks, with seeds and spreads"),
           "Sec. 4 (Eqs. 47-57, Algorithm 1), App. B", "01, 05"),
    Lesson("07", "07_continuum_memory", "Continuum Memory System",
           "MLPs at several frequencies; multi-frequency training",
           ("build the sequential, nested and independent CMS variants",
            "train a CMS with a multi-frequency optimizer and write Eq. 71 as a token loop",
            "judge, from a paired interval over seeds, whether a CMS keeps an old task better"),
           "Sec. 7, Eqs. 70-74", "05",
           deep_dive="in section 3, the chunked in-context form"),
    Lesson("08", "08_self_modifying_titans", "Self-modifying Titans",
           "memories that generate their own keys, values and learning rates",
           ("read the self-modifying Titans reference loop line by line against Eqs. 83-88",
            "write one memory's DGD update with weight decay, and explain the stability choice (b)",
            "watch generated keys and learning rates drift inside a sequence"),
           "Sec. 8, Eqs. 79-93", "04, 06 section 7",
           deep_dive="section 5 (two chunk sizes and the chunked version; its hand-written backward pass is in `nlteach.titans`)"),
    Lesson("09", "09_hope", "HOPE", "the full block, trained as a language model against baselines",
           ("assemble a HOPE block: self-modifying Titans followed by an in-context CMS",
            "compare HOPE with a Transformer, Titans and Hope-Attention at equal parameters and tokens",
            "read an ablation with seeds and say what it does and does not show"),
           "Sec. 8, Eqs. 94-97; Table 2 and Table 6", "07, 08"),
    Lesson("10", "10_forgetting", "Forgetting experiments", "class-incremental CLINC150, Banking77, split digits",
           ("measure forgetting with an accuracy matrix, average accuracy, backward transfer and forgetting",
            "run fine-tuning, EWC, replay, LwF, a CMS learner and a HOPE-style learner on the same streams",
            "compare the result with the paper's continual-learning claim"),
           "Sec. 9.1", "07, 09"),
    Lesson("11", "11_long_context", "Long context", "associative recall, needles, formal languages",
           ("measure recall against context length (needle in a haystack, MQAR)",
            "study the number and the slowest frequency of CMS levels (after Fig. 7)",
            "pose formal languages as recognition, train short and test long (Table 5)"),
           "Sec. 9 (Table 1, Table 5, Fig. 7)", "09"),
    Lesson("12", "12_full_size_runs", "Full-size runs",
           "from a laptop to one GPU and several: costs, data parallelism, resume, reading results",
           ("compute what a preset costs in parameters, tokens and FLOPs, and explain why a memory model's "
            "cost relative to attention changes with the sequence length and the hardware",
            "explain what data parallelism (torchrun, DDP) computes and keeps exactly equal, what a checkpoint "
            "needs for an exact resume, and what bf16 autocast changes on a GPU",
            "launch every experiment at the full preset on one GPU or several, and read the results: learning "
            "curves, paired seeds and the verdict rule, provenance"),
           "Sec. 9 (the experiments)", "03, 09, 10, 11"),
)

# (notebook, title, one line): notebook 00's printed course map
COURSE_MAP = [(lesson.nb, lesson.title, lesson.summary) for lesson in SYLLABUS]

NOT_MEASURED = "not yet measured"
TIMES_FOLDER = "notebook_times_laptop"
"""The committed measurement of every notebook at the laptop preset (``results/<this>/results.json``,
written by ``python -m tools.time_notebooks --preset laptop --out results/notebook_times_laptop``)."""
TIME_LIMIT_MINUTES = 10  # issue 20: every notebook runs top to bottom at the laptop preset within this
NOTE_MARKS = "¹²³⁴⁵⁶⁷⁸⁹"


@dataclass(frozen=True)
class NotebookTime:
    """One notebook's measured run time at the laptop preset (a record of the committed file)."""

    nb: str
    status: str  # "ok", "error" or "timeout"
    minutes: float
    note: str = ""  # what else the machine was doing ("" when nothing was said)
    failed_cell: int | None = None
    exception: str | None = None


def measured_times(root: str | Path = RESULTS_ROOT) -> dict[str, NotebookTime] | None:
    """``{nb: NotebookTime}`` from ``<root>/notebook_times_laptop/results.json``; None when that file
    is not there. Only records at the laptop preset count."""
    file = Path(root) / TIMES_FOLDER / "results.json"
    if not file.is_file():
        return None
    out = {}
    for name, r in read_json(file).get("notebooks", {}).items():
        if r.get("preset") == "laptop" and isinstance(r.get("seconds"), int | float):
            out[name[:2]] = NotebookTime(name[:2], r.get("status", "?"), r["seconds"] / 60, r.get("note") or "",
                                         r.get("failed_cell"), r.get("exception"))
    return out


def measured_minutes(root: str | Path = RESULTS_ROOT) -> dict[str, float] | None:
    """``{nb: minutes}`` of the notebooks measured ``ok`` at the laptop preset; None without a file."""
    times = measured_times(root)
    return None if times is None else {nb: t.minutes for nb, t in times.items() if t.status == "ok"}


def format_minutes(minutes: float | None) -> str:
    """The syllabus's time column: ``"4 min"`` (rounded half up), ``"< 1 min"``, or ``"not yet
    measured"`` for None."""
    if minutes is None:
        return NOT_MEASURED
    return "< 1 min" if minutes < 0.5 else f"{math.floor(minutes + 0.5)} min"


def format_time(t: NotebookTime | None) -> str:
    """The time of one measured notebook: ``format_minutes`` for a run that finished, else what happened."""
    if t is None:
        return NOT_MEASURED
    if t.status == "ok":
        return format_minutes(t.minutes)
    if t.status == "timeout":
        return f"over {format_minutes(t.minutes)} (stopped at cell {t.failed_cell})"
    return f"{NOT_MEASURED} (failed at cell {t.failed_cell}: {t.exception})"


def _note_marks(times: dict[str, NotebookTime]) -> dict[str, str]:
    """``{note: mark}`` for the distinct notes of ``times``, in notebook order."""
    notes = list(dict.fromkeys(t.note for _, t in sorted(times.items()) if t.note))
    return {note: NOTE_MARKS[i] if i < len(NOTE_MARKS) else f"({i + 1})" for i, note in enumerate(notes)}


def lesson(nb: str) -> Lesson:
    """The syllabus entry of notebook ``nb`` ("00" .. "12"); a clear error for an unknown one."""
    for entry in SYLLABUS:
        if entry.nb == nb:
            return entry
    raise KeyError(f"no notebook {nb!r} in the syllabus; it has {', '.join(e.nb for e in SYLLABUS)}.")


def syllabus_markdown(lessons: Sequence[Lesson] = SYLLABUS, *, root: str | Path = RESULTS_ROOT) -> str:
    """The syllabus as a Markdown table (notebook 00 and the README carry exactly this text); the
    time column comes from :func:`measured_times` (``root``), and a measurement made with a note (a
    loaded machine) gets a mark and the note under the table."""
    times = measured_times(root)
    marks = _note_marks(times or {})
    rows = ["| notebook | you will be able to ... | paper | prerequisites | optional deep dive | laptop time |",
            "| --- | --- | --- | --- | --- | --- |"]
    for e in lessons:
        t = (times or {}).get(e.nb)
        mark = marks.get(t.note, "") if t else ""
        rows.append(f"| **{e.nb}** {e.title} | {'; '.join(e.objectives)} | {e.paper} | {e.prerequisites} | "
                    f"{e.deep_dive or '-'} | {format_time(t)}{mark} |")
    if times is not None:
        cpus = (read_json(Path(root) / TIMES_FOLDER / "results.json").get("machine") or {}).get("cpu_count")
        rows += ["", f"Laptop time: wall-clock minutes to run the notebook top to bottom at the laptop preset"
                 f"{f' on {cpus} CPU cores' if cpus else ''}, measured by `python -m tools.time_notebooks` "
                 f"(`results/{TIMES_FOLDER}/results.json`), with live training off (`TRAIN_LIVE = False`, the "
                 "default: slow cells load the committed results; each notebook's flag cell states what turning it "
                 "on costs)."]
        for note, mark in marks.items():  # each note its own paragraph
            rows += ["", f"{mark} Note on the measurement: {note.rstrip('.')}."]
    return "\n".join(rows)


def objectives_markdown(nb: str, *, root: str | Path = RESULTS_ROOT) -> str:
    """The body of notebook ``nb``'s objectives cell (the notebook carries exactly this text)."""
    e = lesson(nb)
    t = (measured_times(root) or {}).get(nb)
    time_text = format_time(t) + (f" (note on the measurement: {t.note.rstrip('.')})" if t and t.note else "")
    lines = ["## Objectives", "", "After this notebook you will be able to:", ""]
    lines += [f"- {o};" if i < len(e.objectives) - 1 else f"- {o}." for i, o in enumerate(e.objectives)]
    lines += ["", f"**Paper:** {e.paper}. **Prerequisites:** {_prerequisites(e.prerequisites)}. "
              f"**Time at the laptop preset:** {time_text}."]
    if e.deep_dive:
        lines += ["", f"**Optional deep dive** (skip it for the conceptual path): {e.deep_dive}."]
    return "\n".join(lines)


def _prerequisites(text: str) -> str:
    """Turn "01, 03 section 1" into "notebooks 01, 03 section 1"; leave prose alone."""
    return f"notebook{'s' if ',' in text else ''} {text}" if text[:2].isdigit() else text


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def environment_report() -> list[Check]:
    """One :class:`Check` per dependency (version or the import error) plus the device and preset."""
    checks = []
    for name, why in REQUIRED + OPTIONAL:
        try:
            mod = importlib.import_module(name)
            checks.append(Check(name, True, f"{getattr(mod, '__version__', '?')}  ({why})"))
        except Exception as e:  # report any import failure, do not raise
            optional = (name, why) in OPTIONAL
            checks.append(Check(name, optional, f"{'optional, ' if optional else ''}missing: {e}"))
    dev = get_device()
    detail = dev.type
    if dev.type == "cuda":
        detail += f" ({torch.cuda.get_device_name(dev)})"
    checks.append(Check("device", True, detail))
    try:
        checks.append(Check("preset", True, get_preset()))
    except ValueError as e:
        checks.append(Check("preset", False, str(e)))
    checks.append(Check("python", True, platform.python_version()))
    return checks


def print_environment_report() -> bool:
    """Print OK/FAIL per line; return True when every required item is OK."""
    checks = environment_report()
    for c in checks:
        print(f"{'OK  ' if c.ok else 'FAIL'} {c.name:<11} {c.detail}")
    return all(c.ok for c in checks)


def ema(x: torch.Tensor, beta: float) -> torch.Tensor:
    """Running average of a stream: ``m_0 = 0``, ``m_t = beta m_{t-1} + (1 - beta) x_t``.

    x: [T] -> returns [T] with ``m_1 .. m_T``.
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta!r}.")
    m = torch.zeros((), dtype=x.dtype)
    out = []
    for x_t in x:
        m = beta * m + (1 - beta) * x_t
        out.append(m)
    return torch.stack(out) if out else x.new_zeros(0)


def noisy_signal(T: int = 200, *, seed: int = 0) -> torch.Tensor:
    """A slow sine with a step in the middle plus noise: [T], float64."""
    g = np.random.default_rng(seed)
    t = np.arange(T)
    clean = np.sin(2 * np.pi * t / T) + (t >= T // 2) * 1.0
    return torch.tensor(clean + 0.4 * g.standard_normal(T))


def memory_horizon(beta: float, mass: float = 0.5) -> int:
    """How many of the most recent inputs carry ``mass`` of the average's weight: the smallest n
    with ``1 - beta**n >= mass``."""
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta!r}.")
    if not 0.0 < mass < 1.0:
        raise ValueError(f"mass must be in (0, 1), got {mass!r}.")
    if beta == 0.0:
        return 1
    return int(np.ceil(np.log(1 - mass) / np.log(beta)))


def draw_ema(fig: Figure, beta: float = 0.9, *, seed: int = 0) -> Figure:
    """Widget callback of notebook 00: a noisy stream and its running average for one ``beta``."""
    x = noisy_signal(seed=seed)
    m = ema(x, beta)
    ax, ax2 = fig.subplots(1, 2, width_ratios=[2, 1])
    ax.plot(x.numpy(), color="0.7", lw=1, label="input x_t")
    ax.plot(m.numpy(), color="C0", lw=2, label=f"memory m_t (beta={beta:.2f})")
    ax.set_xlabel("step t")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("a one-number memory of a stream")
    n = 40
    weights = (1 - beta) * beta ** np.arange(n)
    ax2.bar(np.arange(n), weights, color="C0")
    ax2.set_xlabel("age of the input (steps ago)")
    ax2.set_ylabel("weight in m_t")
    ax2.set_title(f"half the weight: last {memory_horizon(beta)}")
    return fig


def format_course_map(rows: Sequence[tuple[str, str, str]] = COURSE_MAP) -> str:
    return "\n".join(f"{nb}  {title:<32} {promise}" for nb, title, promise in rows)
