"""nlteach: the library behind the Nested Learning course.

One module per mechanism; each has a readable reference ("naive") and a fast ("chunked")
implementation, tested equal. See README.md and the notebooks in notebooks/.
"""

__version__ = "0.1.0"
