"""Continual learning on real task streams (notebook 10): streams, learners, metrics, runner.

    python -m nlteach.continual --dataset clinc150 --method finetune ewc replay lwf cms joint \\
        --seeds 0 1 2 --preset laptop --out runs/clinc150

Modules: :mod:`~nlteach.continual.streams` (class-incremental CLINC150, Banking77, split digits;
domain-incremental permuted digits; hashed n-gram text features), :mod:`~nlteach.continual.learners`
(one backbone; fine-tuning, EWC, replay, LwF, multi-frequency CMS, joint),
:mod:`~nlteach.continual.metrics` (accuracy matrix, average accuracy, BWT, forgetting),
:mod:`~nlteach.continual.runner` (presets, resumable runs, results.json) and
:mod:`~nlteach.continual.plots`.

Not available yet: the HOPE-style learner (self-modifying memory + CMS, learning in context)
needs the HOPE model, which the course has not built yet; it will be registered as a learner
with :func:`~nlteach.continual.learners.register_learner` when it exists.
"""

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
    mean_std,
    summarize,
)
from nlteach.continual.plots import draw_acc_matrix, draw_avg_acc, draw_comparison, draw_trace
from nlteach.continual.runner import (
    ContinualConfig,
    format_table,
    load_results,
    preset_config,
    run,
    run_methods,
    run_seed,
    trace_tasks,
)
from nlteach.continual.streams import STREAMS, Stream, Task, first_tasks, hashed_ngrams, make_stream

__all__ = [
    "LEARNERS", "STREAMS", "Backbone", "ContinualConfig", "Learner", "LearnerConfig", "Stream", "Task",
    "available_learners", "average_accuracy", "backward_transfer", "draw_acc_matrix", "draw_avg_acc",
    "draw_comparison", "draw_trace", "first_tasks", "forgetting", "format_table", "hashed_ngrams", "learning_accuracy", "load_results",
    "make_learner", "make_stream", "mean_std", "preset_config", "run", "run_methods", "run_seed", "summarize", "trace_tasks",
]
