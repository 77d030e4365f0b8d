"""The notebooks' longer experiments, each a module with a command line (``python -m
nlteach.experiments.NAME --preset P``): :mod:`~nlteach.experiments.optimizers` (notebook 06's
optimizer comparison) and :mod:`~nlteach.experiments.cms_tasks` (notebook 07's sequential-tasks
experiment). They build on the mechanisms and models and return plain data with ``draw_*``
companions; the notebooks' short demos are in :mod:`nlteach.course`.
"""
