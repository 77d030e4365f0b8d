"""The notebooks' longer experiments, one module each: :mod:`~nlteach.experiments.optimizers`
(notebook 06's optimizer comparison, ``python -m nlteach.experiments.optimizers --preset P``) and
:mod:`~nlteach.experiments.cms_tasks` (notebook 07's sequential-tasks experiment). They build on
the mechanisms and return plain data with ``draw_*(fig, ...)`` companions; the notebooks' short
demos are in :mod:`nlteach.course`.
"""
