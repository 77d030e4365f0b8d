"""Solutions to every exercise, one module per notebook (``solutions/nbNN.py``), graded in CI."""
