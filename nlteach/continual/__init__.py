"""Continual learning on real task streams (notebook 10): streams, learners, metrics, runner.

    python -m nlteach.continual --dataset clinc150 --method all --seeds 0 1 2 --preset laptop \\
        --out results/continual_clinc150_laptop

Modules: :mod:`~nlteach.continual.streams` (class-incremental CLINC150, Banking77, split digits;
domain-incremental permuted digits; hashed n-gram text features), :mod:`~nlteach.continual.learners`
(one backbone; fine-tuning, EWC, replay, LwF, multi-frequency CMS, joint),
:mod:`~nlteach.continual.hope` (the HOPE-style learners: in-context self-modifying memory + CMS, the
memory reset per input or carried across the stream),
:mod:`~nlteach.continual.tune` (every learner's knobs chosen on validation splits, the same budget each),
:mod:`~nlteach.continual.metrics` (accuracy matrix, average accuracy, BWT, forgetting, learning
accuracy; class- and task-incremental),
:mod:`~nlteach.continual.runner` (presets, resumable runs, results.json) and
:mod:`~nlteach.continual.plots`.
"""

# hope first: importing it registers the "hope" learner (after the learners of learners.py, which
# it imports), so any import of nlteach.continual.* sees every learner.
from nlteach.continual.hope import draw_memory_trace, memory_trace, parameter_counts
from nlteach.continual.learners import (
    LEARNERS,
    Backbone,
    Learner,
    LearnerConfig,
    available_learners,
    make_learner,
)
from nlteach.continual.metrics import (
    average_accuracy,
    backward_transfer,
    forgetting,
    learning_accuracy,
    summarize,
)
from nlteach.continual.plots import (
    draw_acc_matrix,
    draw_avg_acc,
    draw_both_matrices,
    draw_comparison,
    draw_trace,
)
from nlteach.continual.runner import (
    ContinualConfig,
    comparison_rows,
    comparison_table,
    format_table,
    load_committed,
    preset_config,
    run,
    run_methods,
    run_seed,
    trace_tasks,
)
from nlteach.continual.streams import STREAMS, Stream, Task, first_tasks, hashed_ngrams, make_stream
from nlteach.runs.seeds import load_results

__all__ = [
    "LEARNERS", "STREAMS", "Backbone", "ContinualConfig", "Learner", "LearnerConfig", "Stream", "Task",
    "available_learners", "average_accuracy", "backward_transfer", "comparison_rows", "comparison_table",
    "draw_acc_matrix", "draw_both_matrices", "draw_avg_acc", "draw_comparison", "draw_memory_trace", "draw_trace", "first_tasks",
    "forgetting", "format_table", "hashed_ngrams", "learning_accuracy", "load_committed", "load_results",
    "make_learner", "make_stream", "memory_trace", "parameter_counts", "preset_config", "run", "run_methods", "run_seed", "summarize", "trace_tasks",
]
