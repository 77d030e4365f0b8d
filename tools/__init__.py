"""Repository tooling, not part of the installed ``nlteach`` package: the notebook-pair checks
(:mod:`tools.nbtools`), the Colab set-up cell (:mod:`tools.colab`, ``python -m tools.colab``) and
the browser-test helpers (:mod:`tools.browser_check`). Run from the repository root (tests import
them as ``tools.*``; the root ``conftest.py`` puts the root on ``sys.path``).
"""
