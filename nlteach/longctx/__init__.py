"""Long context and formal languages (notebook 11): synthetic tasks, a resumable runner, figures.

    python -m nlteach.longctx --task mqar --model all --seeds 0 1 2 --preset laptop --out runs/mqar

Modules: :mod:`~nlteach.longctx.tasks` (MQAR, single- and multi-key needle in a haystack, the
formal languages of the paper's Table 5; generators seeded by ``make_rng``, each with a checker
that verifies answers from the inputs alone), :mod:`~nlteach.longctx.runner` (presets, training,
evaluation at every context length, resumable runs, ``results.json``) and
:mod:`~nlteach.longctx.plots` (accuracy against context length).
"""

from nlteach.longctx.plots import (
    accuracy_table,
    config_periods,
    draw_accuracy,
    draw_cms_study,
    draw_grid,
    save_accuracy_figure,
)
from nlteach.longctx.runner import (
    BUDGETS,
    CMS_MODELS,
    LEARNED_ACCURACY,
    LEARNED_BUDGET,
    LEARNED_SEEDS,
    LEARNED_VERIFIED,
    MODELS,
    LongCtxConfig,
    build,
    build_optimizer,
    chance_accuracy,
    combine,
    evaluate,
    format_table,
    learned_command,
    learned_folder,
    learned_sizes,
    model_config,
    preset_config,
    run,
    run_label,
    run_seed,
    run_variants,
    split_combined,
    static_cms_results,
    train_length,
    train_task,
    verdict,
)
from nlteach.longctx.tasks import (
    IGNORE,
    LANGUAGES,
    MQAR,
    NIAH,
    RECALL_TASKS,
    TASKS,
    Batch,
    FormalLanguage,
    Task,
    accuracy,
    accuracy_by_answer,
    accuracy_counts,
    is_member,
    length_bin,
    make_rng,
    make_task,
    render_example,
    token_names,
)
from nlteach.runs.seeds import load_results

__all__ = [
    "BUDGETS", "LEARNED_ACCURACY", "LEARNED_BUDGET", "LEARNED_SEEDS", "LEARNED_VERIFIED", "chance_accuracy", "learned_command",
    "learned_folder", "learned_sizes", "train_length", "train_task",
    "CMS_MODELS", "IGNORE", "LANGUAGES", "MODELS", "MQAR", "NIAH", "RECALL_TASKS", "TASKS", "Batch",
    "FormalLanguage", "LongCtxConfig", "Task", "accuracy", "accuracy_by_answer", "accuracy_counts", "accuracy_table", "build",
    "build_optimizer", "combine", "config_periods", "draw_accuracy", "draw_grid", "evaluate", "format_table", "is_member", "length_bin",
    "load_results", "make_rng", "make_task", "model_config", "preset_config", "run", "run_seed",
    "run_label", "run_variants", "save_accuracy_figure", "static_cms_results", "split_combined", "verdict", "draw_cms_study", "render_example",
    "token_names",
]
