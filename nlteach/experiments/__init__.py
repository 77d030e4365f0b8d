"""The notebooks' longer experiments, one module each: :mod:`~nlteach.experiments.optimizers`
(notebook 06's optimizer comparison, ``python -m nlteach.experiments.optimizers --preset P``),
:mod:`~nlteach.experiments.cms_tasks` (notebook 07's sequential-tasks experiment) and
:mod:`~nlteach.experiments.lm_comparison` (notebook 09's language models at equal parameters and
tokens, ``python -m nlteach.experiments.lm_comparison --preset P``; it owns its preset table and
writes its run folder through :mod:`nlteach.runs`). :mod:`~nlteach.experiments.ngram` gives that
comparison's character n-gram baselines (``python -m nlteach.experiments.ngram --preset P``). They
build on the mechanisms and return plain data with ``draw_*(fig, ...)`` companions; the notebooks'
short demos are in :mod:`nlteach.course`.
"""
