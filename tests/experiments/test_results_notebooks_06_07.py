"""nlteach.results renders notebooks 06 and 07's committed results into the README block."""

from nlteach import results as R
from nlteach.experiments import cms_tasks, optimizers


def _write_runs(root, cms=True):
    for task in optimizers.TASKS:
        cfg = optimizers.OptimizerComparisonConfig(task=task, optimizers=("SGD+momentum", "AdamW"), seeds=(0, 1),
                                                   steps=3, hidden=8, n_eval=32, n_evals=2, context=4, embed=2)
        optimizers.run(cfg, root / f"optimizers_{task}_laptop")
    if cms:
        cfg = cms_tasks.SequentialTasksConfig(dim=4, hidden=4, periods=(1, 2), n_tasks=2, steps_per_task=4, n_eval=16,
                                              eval_every=2, arms=cms_tasks.ALL_ARMS, seeds=(0, 1))
        cms_tasks.run(cfg, root / "cms_tasks_laptop")


def test_readme_block_renders_both_experiments_from_their_files(tmp_path):
    _write_runs(tmp_path)
    text = R.readme_section(tmp_path)
    assert "**Optimizers** (notebook 06, preset laptop, 2 seeds" in text
    assert "| optimizer | digits test loss | digits: - SGD+momentum [95%] | shakespeare val loss |" in text
    assert "**CMS and forgetting** (notebook 07, preset laptop, 2 seeds" in text
    assert "- CMS, nested vs single MLP, forgetting of A: " in text and "just learned:" not in text
    assert "| CMS, slower levels |" in text
    # the numbers come from the files
    res = optimizers.load_committed("digits", root=tmp_path)
    adamw = next(r for r in optimizers.summarize(res) if r["optimizer"] == "AdamW")
    assert f"{adamw['eval']['mean']:.3f} ± {adamw['eval']['std']:.3f}" in text


def test_an_absent_or_broken_experiment_is_skipped_or_named(tmp_path):
    assert "Optimizers" not in R.readme_section(tmp_path) and R.notebooks_06_07_lines(tmp_path) == []
    _write_runs(tmp_path, cms=False)
    lines = "\n".join(R.notebooks_06_07_lines(tmp_path))
    assert "**Optimizers**" in lines and "CMS and forgetting" not in lines
    (tmp_path / "cms_tasks_laptop").mkdir()
    (tmp_path / "cms_tasks_laptop" / "results.json").write_text("{not json")
    lines = "\n".join(R.notebooks_06_07_lines(tmp_path))
    assert "**Optimizers**" in lines and "CMS experiment: the committed results could not be used" in lines
