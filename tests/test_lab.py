"""The learner's working copy (tools/lab.py): made on first use, never overwritten, refreshed
without losing edits; a notebook run and saved there leaves the repository clean and its checks green."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext.config
import pytest

from tools import lab, nbtools

ROOT = Path(__file__).resolve().parent.parent
COURSE = ROOT / "notebooks"
FIRST = sorted(COURSE.glob(lab.PATTERN))[0].name  # 00_welcome.ipynb


def _edit_first_code_cell(path: Path, text: str) -> None:
    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code")
    cell["source"] = text
    path.write_text(json.dumps(nb))


def _with_outputs(path: Path) -> None:
    """What JupyterLab's save writes: execution counts and outputs in every code cell."""
    nb = json.loads(path.read_text())
    for i, cell in enumerate(c for c in nb["cells"] if c["cell_type"] == "code"):
        cell["execution_count"] = i + 1
        cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["ran\n"]}]
    path.write_text(json.dumps(nb))


@pytest.fixture
def course(tmp_path) -> Path:
    src = tmp_path / "notebooks"
    src.mkdir()
    for ipynb in sorted(COURSE.glob(lab.PATTERN))[:2]:
        shutil.copy(ipynb, src / ipynb.name)
    return src


def test_first_use_copies_every_notebook_unpaired(course, tmp_path):
    work = tmp_path / "work"
    report = lab.sync_working_copy(course, work)
    names = sorted(p.name for p in course.glob(lab.PATTERN))
    assert report.copied == names
    assert sorted(p.name for p in work.glob(lab.PATTERN)) == names
    for name in names:
        assert lab.cell_sources(work / name) == lab.cell_sources(course / name)
        assert "formats" not in json.loads((work / name).read_text())["metadata"].get("jupytext", {})
    # JupyterLab's jupytext reads the nearest config: the working copy's turns pairing off
    config = jupytext.config.find_jupytext_configuration_file(str(work))
    assert Path(config) == work / "jupytext.toml"
    assert jupytext.config.load_jupytext_configuration_file(config).formats == ["ipynb"]


def test_make_lab_never_overwrites_and_adds_missing_notebooks(course, tmp_path):
    work = tmp_path / "work"
    lab.sync_working_copy(course, work)
    mine = work / FIRST
    _edit_first_code_cell(mine, "print('my answer')")
    _with_outputs(mine)
    before = mine.read_text()
    _edit_first_code_cell(course / FIRST, "print('the course changed')")
    second = sorted(course.glob(lab.PATTERN))[1]
    (work / second.name).unlink()  # deleted by the learner: handed out again
    report = lab.sync_working_copy(course, work)
    assert mine.read_text() == before
    assert report.copied == [second.name] and report.unchanged == [FIRST]


def test_refresh_updates_untouched_notebooks_and_keeps_edited_ones(course, tmp_path):
    work = tmp_path / "work"
    lab.sync_working_copy(course, work)
    first, second = sorted(p.name for p in course.glob(lab.PATTERN))
    _with_outputs(work / second)  # run but not edited: outputs do not count as edits
    _edit_first_code_cell(work / first, "print('my answer')")
    mine = (work / first).read_text()
    for name in (first, second):
        _edit_first_code_cell(course / name, "print('new course version')")
    report = lab.sync_working_copy(course, work, refresh=True)
    assert report.updated == [second] and report.kept == [first]
    assert lab.cell_sources(work / second) == lab.cell_sources(course / second)
    assert (work / first).read_text() == mine
    beside = work / lab.course_version_name(first)
    assert lab.cell_sources(beside) == lab.cell_sources(course / first)
    assert "kept your edited" in "\n".join(report.lines(work))
    again = lab.sync_working_copy(course, work, refresh=True)  # nothing new in the course
    assert again.unchanged == [first, second] and not again.kept


def test_refresh_without_a_record_keeps_edits_and_leaves_current_copies(course, tmp_path):
    """A working copy made by hand (no .course/ record): an up-to-date notebook is left alone, an
    edited one is kept and the course's version written beside it."""
    work = tmp_path / "work"
    lab.sync_working_copy(course, work)
    shutil.rmtree(work / lab.BASE_DIR)
    first, second = sorted(p.name for p in course.glob(lab.PATTERN))
    _edit_first_code_cell(work / first, "print('my answer')")
    report = lab.sync_working_copy(course, work, refresh=True)
    assert report.unchanged == [second] and report.kept == [first]
    assert (work / lab.course_version_name(first)).exists()


def test_missing_course_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="course="):
        lab.sync_working_copy(tmp_path / "nope", tmp_path / "work")


def test_lab_uses_the_test_data_mirror_default_and_turns_news_off(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    assert "NLTEACH_DATA_MIRROR" not in lab.lab_environment({}, root)
    (tmp_path / "shared" / "data").mkdir(parents=True)
    assert lab.lab_environment({}, root)["NLTEACH_DATA_MIRROR"] == str(tmp_path / "shared" / "data")
    assert lab.lab_environment({"NLTEACH_DATA_MIRROR": "/m"}, root)["NLTEACH_DATA_MIRROR"] == "/m"
    path = lab.install_settings_overrides(tmp_path / "settings")
    notification = json.loads(path.read_text())["@jupyterlab/apputils-extension:notification"]
    assert notification["fetchNews"] == "false"  # "none" (the default) asks the news question
    cmd = lab.lab_command(tmp_path / "work", ["--no-browser"])
    assert "--LabApp.news_url=None" in cmd and cmd[-1] == "--no-browser"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.mark.slow
def test_a_notebook_run_and_saved_in_the_working_copy_leaves_the_repository_clean(
    tmp_path, snapshot_repository
):
    """In a snapshot of this checkout: `python -m tools.lab --no-lab` (what `make lab` does before
    the lab opens), run notebook 00 in the working copy and save it with its outputs (nbconvert, as
    JupyterLab's Run All and save would; tests/test_browser.py does it through JupyterLab), then:
    git status is clean, the committed notebooks pass their checks, and pytest does not collect
    the working copy."""
    repo = snapshot_repository(tmp_path / "repo")
    env = {**os.environ, "PYTHONPATH": str(repo), "NLTEACH_SIZE": "tiny", "MPLBACKEND": "agg"}
    subprocess.run([sys.executable, "-m", "tools.lab", "--no-lab"], cwd=repo, env=env, check=True,
                   capture_output=True)
    saved = repo / "notebooks-work" / FIRST
    subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--inplace",
         "--ExecutePreprocessor.timeout=300", str(saved)],
        cwd=saved.parent, env=env, check=True, capture_output=True,
    )
    outputs = [c for c in json.loads(saved.read_text())["cells"] if c.get("outputs")]
    assert outputs, "the executed working copy holds no outputs"
    assert not (saved.parent / saved.with_suffix(".py").name).exists()

    assert _git(repo, "status", "--porcelain") == ""
    assert _git(repo, "check-ignore", str(saved)).strip() == str(saved)
    for ipynb in sorted((repo / "notebooks").glob(lab.PATTERN)):
        assert nbtools.pair_problems(ipynb) == []
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "--nbval-lax", "-p",
         "no:cacheprovider", "--ignore=tests", "."],
        cwd=repo, env=env, capture_output=True, text=True,
    ).stdout
    assert f"notebooks/{FIRST}" in collected
    assert "notebooks-work" not in collected


def test_jupyterlab_reads_the_news_question_off(tmp_path):
    """JupyterLab asks "Would you like to get notified about official Jupyter news?" (a toast over
    the plots) while the setting fetchNews is "none", its default; the course's override makes the
    default "false", so the question never comes (a learner can still turn news on)."""
    settings_utils = pytest.importorskip("jupyterlab_server.settings_utils")
    commands = pytest.importorskip("jupyterlab.commands")
    app_settings = tmp_path / "app-settings"
    lab.install_settings_overrides(app_settings)
    (tmp_path / "user").mkdir()
    settings, _ = settings_utils.get_settings(
        str(app_settings), str(Path(commands.get_app_dir()) / "schemas"), str(tmp_path / "user"),
        schema_name="@jupyterlab/apputils-extension:notification",
    )
    properties = settings["schema"]["properties"]
    assert properties["fetchNews"]["default"] == "false"
    assert properties["checkForUpdates"]["default"] is False
