"""The learner's JupyterLab: a working copy of the course's notebooks, and the lab that opens it.

``make lab`` runs ``python -m tools.lab``. The course's notebooks in ``notebooks/`` stay as they
are committed (no outputs, paired with their ``.py``); the learner works in ``notebooks-work/``
(git-ignored), a copy made on first use:

- a notebook missing from the working copy is copied in (so a new course notebook appears, and a
  learner starts a notebook over by deleting it and running ``make lab`` again);
- a notebook already there is never overwritten by ``make lab``;
- ``make lab-refresh`` (``python -m tools.lab --refresh``) brings the working copy up to the
  course's current version: a notebook whose cells the learner left as they were (outputs do not
  count) is replaced by the new version; one the learner edited is kept as it is, and the new
  version is written beside it as ``NN_topic.course.ipynb`` (replaced at each refresh: rename it
  to keep edits made there).

The copy of each notebook as it was handed out is kept in ``notebooks-work/.course/``: it is how
``--refresh`` tells an edited notebook from an untouched one. The working copy is not paired with
jupytext (its own ``jupytext.toml`` turns pairing off), so saving never writes a ``.py``.

The lab starts with the same data mirror default as ``make test`` (:func:`default_data_mirror`)
and with JupyterLab's news and update check off (the news question covers the plots).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
COURSE = ROOT / "notebooks"
WORK = ROOT / "notebooks-work"
BASE_DIR = ".course"  # inside the working copy: each notebook as it was handed out
PATTERN = "[0-9][0-9]_*.ipynb"
WORK_JUPYTEXT = 'formats = "ipynb"  # the working copy is not paired: saving writes no .py\n'
# JupyterLab default-setting overrides for the course: no news question, no news, no update check.
SETTINGS_OVERRIDES = {
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
}
OVERRIDES_FILE = "nlteach-course.json"  # in <app settings>/overrides.d/
LAB_OPTIONS = ("--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate")


def default_data_mirror(root: Path = ROOT) -> Path | None:
    """The data mirror used when ``$NLTEACH_DATA_MIRROR`` is unset: the folder ``shared/data``
    beside the checkout when it exists (a shared machine's mirror), else None (the network).
    One definition for ``make test`` (the root conftest) and ``make lab``."""
    mirror = root.parent / "shared" / "data"
    return mirror if mirror.is_dir() else None


def lab_environment(environ: Mapping[str, str] | None = None, root: Path = ROOT) -> dict[str, str]:
    """The environment of the lab's server and kernels: ``environ`` plus the data mirror default."""
    env = dict(os.environ if environ is None else environ)
    mirror = default_data_mirror(root)
    if "NLTEACH_DATA_MIRROR" not in env and mirror is not None:
        env["NLTEACH_DATA_MIRROR"] = str(mirror)
    return env


# ------------------------------------------------------------------------------- the working copy
@dataclass
class SyncReport:
    """What :func:`sync_working_copy` did, one notebook name per entry."""

    copied: list[str] = field(default_factory=list)  # new in the working copy
    updated: list[str] = field(default_factory=list)  # untouched by the learner, replaced (refresh)
    kept: list[str] = field(default_factory=list)  # edited by the learner, new version written beside
    unchanged: list[str] = field(default_factory=list)

    def lines(self, work: Path) -> list[str]:
        out = [f"working copy: {work}"]
        if self.copied:
            out.append("  copied from the course: " + ", ".join(self.copied))
        if self.updated:
            out.append("  updated to the course's new version: " + ", ".join(self.updated))
        for name in self.kept:
            out.append(f"  kept your edited {name}; the course's new version is "
                       f"{course_version_name(name)} beside it")
        return out


def course_version_name(name: str) -> str:
    """``NN_topic.ipynb`` -> ``NN_topic.course.ipynb`` (a refreshed version beside an edited one)."""
    return name.removesuffix(".ipynb") + ".course.ipynb"


def cell_sources(path: Path) -> list[tuple[str, str]]:
    """The cells of a notebook as (type, source): what the learner edits (outputs excluded)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    return [(c["cell_type"], "".join(c["source"])) for c in nb["cells"]]


def _same_cells(a: Path, b: Path) -> bool:
    """Whether two notebooks have the same cells (False when either does not exist)."""
    return a.exists() and b.exists() and cell_sources(a) == cell_sources(b)


def unpaired(notebook: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``notebook`` (ipynb JSON) without its jupytext pairing."""
    nb = json.loads(json.dumps(notebook))
    nb.get("metadata", {}).get("jupytext", {}).pop("formats", None)
    return nb


def _hand_out(src: Path, dst: Path, base: Path) -> None:
    """Write the course notebook ``src`` as ``dst`` (unpaired), and remember it in ``base``."""
    text = json.dumps(unpaired(json.loads(src.read_text(encoding="utf-8"))), indent=1,
                      ensure_ascii=False) + "\n"
    base.parent.mkdir(parents=True, exist_ok=True)
    base.write_text(text, encoding="utf-8")
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(dst)


def sync_working_copy(course: Path = COURSE, work: Path = WORK, *, refresh: bool = False) -> SyncReport:
    """Create or complete the working copy ``work`` of the notebooks in ``course``.

    Missing notebooks are copied. With ``refresh``, a notebook whose cells equal the version it was
    handed out as is replaced by the course's current one; an edited one is kept, and the current
    version is written beside it (:func:`course_version_name`). Nothing the learner wrote is lost.
    """
    if not course.is_dir():
        raise FileNotFoundError(f"course={course}: no such folder of notebooks")
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "jupytext.toml").exists():
        (work / "jupytext.toml").write_text(WORK_JUPYTEXT)
    report = SyncReport()
    for src in sorted(course.glob(PATTERN)):
        dst, base = work / src.name, work / BASE_DIR / src.name
        if not dst.exists():
            _hand_out(src, dst, base)
            report.copied.append(src.name)
        elif not refresh or _same_cells(base, src) or _same_cells(dst, src):
            report.unchanged.append(src.name)  # not asked to, the course did not change, or up to date
        elif _same_cells(dst, base):
            _hand_out(src, dst, base)
            report.updated.append(src.name)
        else:
            _hand_out(src, work / course_version_name(src.name), base)
            report.kept.append(src.name)
    return report


# ------------------------------------------------------------------------------------- the lab
def install_settings_overrides(app_settings_dir: Path) -> Path:
    """Write the course's JupyterLab default settings (news off) into ``app_settings_dir``'s
    ``overrides.d/`` (the environment's own folder: nothing of the user's is touched)."""
    path = app_settings_dir / "overrides.d" / OVERRIDES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(SETTINGS_OVERRIDES, indent=2) + "\n")
    return path


def app_settings_dir() -> Path:
    """The settings folder of the JupyterLab installed in this environment."""
    # deferred: jupyterlab is an optional dependency (the `course` extra); only the lab needs it
    from jupyterlab.commands import get_app_dir

    return Path(get_app_dir()) / "settings"


def lab_command(work: Path, extra: Sequence[str] = ()) -> list[str]:
    """The command that opens JupyterLab on the working copy, news and update check off."""
    return [sys.executable, "-m", "jupyter", "lab", str(work), *LAB_OPTIONS, *extra]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.lab",
        description="Open the course in JupyterLab, on a git-ignored working copy of notebooks/.",
        epilog="Other arguments go to JupyterLab (e.g. --no-browser --port 8899).",
        allow_abbrev=False,  # a JupyterLab option must never be taken for an abbreviation of ours
    )
    parser.add_argument("--refresh", action="store_true",
                        help="bring the working copy up to the course's current notebooks (your "
                             "edited notebooks are kept; the new version goes beside them)")
    parser.add_argument("--no-lab", action="store_true", help="only create or refresh the copy")
    args, lab_args = parser.parse_known_args(argv)
    report = sync_working_copy(refresh=args.refresh)
    print("\n".join(report.lines(WORK)))
    if args.no_lab:
        return 0
    install_settings_overrides(app_settings_dir())
    return subprocess.call(lab_command(WORK, lab_args), env=lab_environment(), cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main())
