"""Where a run's log lines go: stdout inside a Jupyter kernel, stderr on a command line.

JupyterLab shows a cell's stderr in red "error" boxes, so training logs written there look like
failures; on a command line stderr keeps the logs apart from the results printed on stdout. The
choice is made per line, so the same code serves both. ``$NLTEACH_LOG_STREAM=stdout|stderr``
overrides it.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

ENV_VAR = "NLTEACH_LOG_STREAM"
STREAMS = ("stdout", "stderr")


def in_notebook() -> bool:
    """True inside a Jupyter kernel (an IPython kernel shell is running in this process)."""
    ipython = sys.modules.get("IPython")  # never imported here: a kernel has it loaded already
    get = getattr(ipython, "get_ipython", None)
    shell = get() if get is not None else None
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def log_stream() -> TextIO:
    """The stream for log lines: ``$NLTEACH_LOG_STREAM`` if set, else stdout in a notebook and
    stderr elsewhere."""
    choice = os.environ.get(ENV_VAR, "").strip().lower()
    if choice and choice not in STREAMS:
        raise ValueError(f"${ENV_VAR}={os.environ[ENV_VAR]!r}: expected one of {', '.join(STREAMS)}")
    if choice:
        return sys.stdout if choice == "stdout" else sys.stderr
    return sys.stdout if in_notebook() else sys.stderr


def log(message: str) -> None:
    """Print one log message (already prefixed by its caller) to :func:`log_stream`."""
    print(message, file=log_stream(), flush=True)
