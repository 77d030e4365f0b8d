"""The notebooks' own code: one module per notebook, ``nbNN_topic.py``, holding that notebook's
data generators, demos and ``draw_*(fig, ...)`` figure functions (each a plain function, unit-tested
in ``tests/course/``), plus :mod:`nlteach.course.widgets` (the interactive-figure pattern every
notebook uses) and :mod:`nlteach.course.live` (whether a slow training cell runs live or the
notebook uses the committed results: the ``TRAIN_LIVE`` flag). The mechanisms themselves live in the library modules below (``nlteach.memory``,
``nlteach.deep_memory``, ``nlteach.clock``, ``nlteach.cms``, ``nlteach.optim``, ``nlteach.titans``);
nothing in the library imports from here.
"""
