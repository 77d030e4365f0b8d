"""Whether a notebook's slow training cell runs live, or the notebook uses the committed results.

Notebooks 04, 06, 07 and 09-12 have cells that train (or time) for many minutes at the ``laptop`` preset
only to recreate numbers that ``results/`` already holds. Each such notebook has ONE flag near its
top, ``TRAIN_LIVE = False``, with its cost beside it, and every slow cell asks :func:`live_cell`
whether to run. The rule, first match wins:

1. ``$NLTEACH_TRAIN_LIVE`` set to ``1/true/yes/on`` runs every live cell, ``0/false/no/off`` none
   (so a whole course, or CI, can be switched without editing a notebook);
2. ``TRAIN_LIVE = True`` in the notebook runs them;
3. at the ``tiny`` preset they run anyway: they take seconds there, and CI executes the notebooks
   at ``tiny``, so the live code path stays tested;
4. otherwise (``laptop``, ``full``) they are skipped: the cell says so in one line, naming the
   committed results it uses instead and what the live run would cost.
"""

from __future__ import annotations

import os

from nlteach.config import get_preset

ENV_VAR = "NLTEACH_TRAIN_LIVE"
FLAG = "TRAIN_LIVE"
ON = ("1", "true", "yes", "on")
OFF = ("0", "false", "no", "off")
LIVE_PRESETS = ("tiny",)
"""Presets at which a live cell runs without the flag (seconds long; CI runs the notebooks there)."""


def env_override() -> bool | None:
    """``$NLTEACH_TRAIN_LIVE`` as a decision: True, False, or None when unset or empty. Any other
    value raises ``ValueError`` naming the accepted ones (a typo must not silently train for an hour)."""
    raw = os.environ.get(ENV_VAR, "").strip().lower()
    if not raw:
        return None
    if raw in ON:
        return True
    if raw in OFF:
        return False
    raise ValueError(f"${ENV_VAR}={os.environ[ENV_VAR]!r}: expected one of {', '.join(ON + OFF)}")


def should_run(flag: bool, *, preset: str | None = None) -> bool:
    """The decision rule of this module's docstring: the environment, then ``flag``, then the preset."""
    env = env_override()
    if env is not None:
        return env
    return bool(flag) or get_preset(preset) in LIVE_PRESETS


def _cost(minutes: float) -> str:
    return f"about {minutes:g} minute{'' if minutes == 1 else 's'} at the laptop preset"


def skip_message(minutes: float, *, results: str | None = None, instead: str | None = None,
                 action: str = "retrain") -> str:
    """The one line a skipped cell prints: what it does instead (``instead``, else loading the
    committed ``results/<results>``) and how to run it live, with its cost."""
    if instead is None:
        if results is None:
            raise ValueError("say what the skipped cell uses instead: results=<name> or instead=<text>")
        instead = f"loading the committed results from results/{results}"
    return f"skipped: {instead}; set {FLAG} = True to {action} ({_cost(minutes)})"


def live_message(flag: bool, minutes: float, *, preset: str | None = None) -> str:
    """The one line a live cell prints before it starts: why it runs and what it costs."""
    preset = get_preset(preset)
    env = env_override()
    if env:
        why = f"${ENV_VAR}={os.environ[ENV_VAR].strip()}"
    elif flag:
        why = f"{FLAG} = True"
    else:
        return (f"live at the {preset} preset (seconds); at the laptop preset this cell is skipped "
                f"unless {FLAG} = True ({_cost(minutes)})")
    return f"live ({why}) at the {preset} preset: {_cost(minutes)}; progress below"


def live_cell(flag: bool, *, minutes: float, results: str | None = None, instead: str | None = None,
              action: str = "retrain", preset: str | None = None) -> bool:
    """Whether this slow cell runs live (:func:`should_run`); prints one line saying which and why.

    ``flag``: the notebook's ``TRAIN_LIVE``; ``minutes``: the cell's cost at the laptop preset
    (measured, on a 2-core CPU); ``results``: the folder under ``results/`` the notebook uses when
    the cell is skipped (or ``instead``: what it does then, in words); ``action``: what
    ``TRAIN_LIVE = True`` makes the cell do ("retrain", "time the jobs now", ...)."""
    if results is None and instead is None:  # checked at every preset, not only where it is skipped
        raise ValueError("say what the skipped cell uses instead: results=<name> or instead=<text>")
    run = should_run(flag, preset=preset)
    if run:
        print(live_message(flag, minutes, preset=preset), flush=True)
    else:
        print(skip_message(minutes, results=results, instead=instead, action=action), flush=True)
    return run
