"""Run plumbing shared by every entry point: files, randomness, run folders, provenance, statistics,
tables and the common command-line options. Each concern has one home here:

- :mod:`nlteach.runs.io`: atomic writes, checkpoints (loaded with ``weights_only=True``, verified
  against a SHA-256 written beside them, the previous one kept), JSON and JSON-lines reading with
  errors that name the file, the removal of temporary files left by killed writes;
- :mod:`nlteach.runs.lock`: one run per folder (an exclusive lock, held for the whole run);
- :mod:`nlteach.runs.threads`: torch's CPU thread count for a block, and the warning when a run
  resumes with another count (no longer bit-equal);
- :mod:`nlteach.runs.rng`: the RNG states of Python, NumPy and torch as plain data (so a checkpoint
  that holds them loads without unpickling arbitrary objects);
- :mod:`nlteach.runs.provenance`: what produced a result (commit, dirty files, command, versions,
  device, threads) and how long it took (wall and CPU seconds);
- :mod:`nlteach.runs.rundir`: the output folder of a resumable multi-seed run (locked while it runs)
  and the one resume policy of the project (resume only with the same settings; ``--overwrite``
  starts over);
- :mod:`nlteach.runs.stats`: mean, standard deviation and 95% confidence intervals over seeds,
  paired differences, and what was dropped;
- :mod:`nlteach.runs.tables`: markdown and plain-text tables, ``mean ± std`` cells;
- :mod:`nlteach.runs.distributed`: the DDP set-up under ``torchrun`` and the flag that turns Ctrl-C
  into "stop after this step" (so a checkpoint is written first);
- :mod:`nlteach.runs.console`: where log lines go (stdout in a notebook, where stderr looks like an
  error; stderr on a command line);
- :mod:`nlteach.runs.cli`: ``--preset --device --out --threads --seeds --overwrite`` for every command
  line, and options generated from a config dataclass;
- :mod:`nlteach.runs.seeds`: every seed of a run folder (finished seeds read back, the others trained,
  timed and saved with provenance) and seed checkpoints under the resume policy;
- :mod:`nlteach.runs.commands`: the command line of a resumable multi-seed runner (the common
  options, one option per setting, exit codes for a refused resume and Ctrl-C).

The layer rule (``docs/design.md``): this package imports only the config/data layer and torch.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

COMMITTED_RESULTS = "committed_results"
"""The package-data folder of the committed results: in a checkout, ``nlteach/committed_results``
is a link to the repository's ``results/``; a wheel holds a copy of its JSON files there."""


def committed_results_root() -> Path:
    """The committed results (``<root>/<experiment>/results.json``), located through
    :mod:`importlib.resources` the same way in a checkout and in an installed wheel. In a checkout
    this resolves to the repository's ``results/``, where commands write with ``--out results/<name>``."""
    entry = resources.files("nlteach") / COMMITTED_RESULTS
    return Path(str(entry)).resolve()


RESULTS_ROOT: Path = committed_results_root()
"""The committed results; read by every ``load_committed`` and by :mod:`nlteach.results`."""
