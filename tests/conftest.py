"""Fixtures for the unit tests (the environment set-up is in the root conftest.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nlteach.runs.io import CorruptFileError
from nlteach.runs.lock import FolderInUse


@pytest.fixture
def data_mirror() -> Path:
    """The data mirror ($NLTEACH_DATA_MIRROR, which the root conftest sets when the workplace has one)."""
    mirror = os.environ.get("NLTEACH_DATA_MIRROR")
    if not mirror or not Path(mirror).is_dir():
        pytest.skip("no data mirror: set NLTEACH_DATA_MIRROR to a folder holding the pinned data files")
    return Path(mirror)


@pytest.fixture(scope="session")
def snapshot_repository():
    """``make(dest) -> dest``: a fresh git repository at ``dest`` holding this checkout's files as
    they are now (committed or not, ignored files left out), committed once: a repository whose
    ``git status`` is clean, for tests that check that using the course leaves it clean."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")

    def git(repo: Path, *args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout

    def make(dest: Path) -> Path:
        files = git(root, "ls-files", "--cached", "--others", "--exclude-standard", "-z").split("\0")
        for name in filter(None, files):
            if (root / name).is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(root / name, dest / name)
        git(dest, "init", "--quiet")
        git(dest, "add", "--all")
        git(dest, "-c", "user.name=test", "-c", "user.email=test@localhost", "-c", "commit.gpgsign=false",
            "commit", "--quiet", "--no-verify", "-m", "snapshot")
        return dest

    return make


# -- hostile files and a second process: the hardening tests of every runner ----------------------

ROOT = Path(__file__).resolve().parents[1]


class _RunsCode:
    """Unpickled without ``weights_only``, this creates the file ``marker``: proof that code ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def crafted_checkpoint(tmp_path):
    """``write(path) -> marker``: replace the checkpoint ``path`` by a crafted pickle (its checksum
    file and previous checkpoint removed: nothing to fall back on); ``marker`` exists only if
    loading it ran code."""
    def write(path: Path) -> Path:
        marker = tmp_path / f"pwned_{Path(path).stem}"
        torch.save({"version": 1, "settings": {}, "state": _RunsCode(str(marker))}, path)
        for p in (Path(path).with_name(Path(path).name + ".sha256"),
                  Path(path).with_name(f"{Path(path).stem}.prev{Path(path).suffix}")):
            p.unlink(missing_ok=True)
        return marker
    return write


@pytest.fixture
def hold_folder_lock():
    """``hold(folder)``: another process takes the lock of ``folder`` (nlteach.runs.lock) and keeps
    it until the test ends."""
    procs: list[subprocess.Popen] = []
    code = ("import sys; from nlteach.runs.lock import FolderLock; lock = FolderLock(sys.argv[1]); "
            "print('locked', flush=True); sys.stdin.read()")

    def hold(folder: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], cwd=ROOT, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "locked"
        return proc

    yield hold
    for proc in procs:
        if proc.poll() is None:
            proc.stdin.close()
            proc.wait(timeout=60)


@pytest.fixture
def assert_rerun_refuses_crafted_and_busy(crafted_checkpoint, hold_folder_lock):
    """``check(rerun, folder)`` for a run folder holding ``seeds/seed_0.pt``: with that checkpoint
    replaced by a crafted pickle, ``rerun()`` raises ``CorruptFileError`` naming it without running
    its code; with the folder's lock held by another process, ``FolderInUse`` naming the folder."""
    def check(rerun, folder: Path) -> None:
        marker = crafted_checkpoint(folder / "seeds" / "seed_0.pt")
        with pytest.raises(CorruptFileError, match="seed_0.pt cannot be read"):
            rerun()
        assert not marker.exists()
        hold_folder_lock(folder)
        with pytest.raises(FolderInUse, match=f"{folder} is in use"):
            rerun()
    return check
