"""The course in a real browser: JupyterLab + Debian's Chromium (headless, through Playwright).

JupyterLab serves the learner's working copy (``notebooks-work/``, made by ``tools.lab`` as ``make
lab`` does) of a snapshot of this checkout. For each notebook under test: open it, Run > Run All
Cells, wait for the kernel to go idle, check that no cell shows an error or a traceback, then move
the slider of every course widget (``nlteach.course.widgets.interactive_figure``) and check that the
plot in its live output is redrawn (the image's pixels change). Then: a notebook saved with its
outputs in the working copy leaves the repository clean (``git status``, the notebook checks), and
a training cell's log is shown as output, not as an error (stderr). Screenshots go to a temporary folder; on failure they are copied to
``.browser-test-artifacts/`` (git-ignored) with the server and browser logs.

Run it alone with ``.venv/bin/python -m pytest -m browser tests/test_browser.py``. Without Chromium
it is skipped with the command that installs it (``apt-get install chromium``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools import browser_check as bc
from tools import lab as learner
from tools import nbtools

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
ARTIFACTS = ROOT / ".browser-test-artifacts"
UNDER_TEST = ("00", "01")  # notebook numbers; 01 has the associative-memory widget
TRAINING_NOTEBOOK = "90_training_log.ipynb"  # written into the working copy by the lab fixture
TRAINING_CELL = """\
import tempfile
from nlteach.experiments import lm_comparison

with tempfile.TemporaryDirectory() as out:  # notebook 09's training helper, one small run
    live = lm_comparison.run_comparison(out, preset="tiny", seeds=(0,), models=("transformer",),
                                        ablation_seeds=(), multi_frequency_seeds=(), sample_chars=0)
print("trained:", sorted(lm_comparison.by_label(live)))
"""

RUN_ALL_TIMEOUT_MS = 150_000
REDRAW_TIMEOUT_MS = 20_000
MIN_CHANGED_PIXELS = 0.001  # a redraw must change at least 0.1 % of the plot's pixels

pytestmark = pytest.mark.browser


def _notebook(number: str) -> str:
    found = sorted(NOTEBOOKS.glob(f"{number}_*.ipynb"))
    return found[0].name if found else f"{number}_<missing>.ipynb"


# --------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def chromium() -> str:
    path = bc.find_chromium()
    if path is None:
        pytest.skip(bc.ENABLE_HINT)
    return path


@pytest.fixture(scope="module")
def repo(chromium, tmp_path_factory, snapshot_repository) -> Path:
    """A snapshot of this checkout (a git repository whose status is clean)."""
    return snapshot_repository(tmp_path_factory.mktemp("repo"))


@pytest.fixture(scope="module")
def lab(chromium, repo, tmp_path_factory) -> Iterator[bc.LabServer]:
    work = tmp_path_factory.mktemp("lab")
    served = repo / learner.WORK.name  # what `make lab` opens, inside the snapshot
    learner.sync_working_copy(repo / "notebooks", served)
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(TRAINING_CELL)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    nbformat.write(nb, served / TRAINING_NOTEBOOK)
    kernel_env = {
        "NLTEACH_SIZE": "tiny",
        "MPLBACKEND": "",  # removed: the kernel uses Jupyter's inline backend, as a learner's does
    }
    if os.environ.get("NLTEACH_DATA_MIRROR"):
        kernel_env["NLTEACH_DATA_MIRROR"] = os.environ["NLTEACH_DATA_MIRROR"]
    with bc.jupyter_lab(served, work / "server", env=kernel_env) as server:
        yield server


@pytest.fixture(scope="module")
def browser(chromium):
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the Python package playwright is missing: `make venv`"
    )
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=list(bc.CHROMIUM_ARGS))
        try:
            yield b
        finally:
            b.close()


class Evidence:
    """Screenshots and logs of one notebook's run; kept in .browser-test-artifacts/ on failure."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.log: list[str] = []  # the browser's console, page errors, blocked requests
        self.summary: list[str] = []  # what the test saw, printed at the end

    def shot(self, target, name: str) -> bytes:
        return target.screenshot(path=str(self.folder / f"{name}.png"))

    def keep(self, name: str, lab: bc.LabServer) -> Path:
        (self.folder / "browser.log").write_text("\n".join([*self.summary, *self.log]))
        shutil.copy(lab.log_path, self.folder / "jupyter-server.log")
        dest = ARTIFACTS / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"
        shutil.copytree(self.folder, dest)
        return dest


# ---------------------------------------------------------------------------------- the browser
# JupyterLab's own state, read through window.jupyterapp (the test server exposes it).
_STATE_JS = """(path) => {
    if (document.querySelector('.jp-Dialog'))
        return 'dialog: ' + document.querySelector('.jp-Dialog').innerText;
    const app = window.jupyterapp;
    if (!app) return null;
    const w = Array.from(app.shell.widgets('main')).find(x => x.context && x.context.path === path);
    if (!w || !w.context || !w.context.isReady || !w.sessionContext) return null;
    const session = w.sessionContext.session;
    const kernel = session && session.kernel;
    const cells = Array.from(w.content.model.cells).filter(
        c => c.type === 'code' && c.sharedModel.getSource().trim() !== '');
    return JSON.stringify({
        path: w.context.path,
        kernel: kernel ? kernel.status + '/' + kernel.connectionStatus : 'none',
        code_cells: cells.length,
        executed: cells.filter(c => c.executionCount !== null).length,
        pending: Array.from(w.content.node.querySelectorAll('.jp-InputPrompt'))
            .filter(p => p.innerText.includes('*')).length,
        errors: w.content.node.querySelectorAll(
            '.jp-RenderedText[data-mime-type="application/vnd.jupyter.error"]').length,
    });
}"""


def _wait_for_state(page, path: str, done: str, timeout_ms: int, what: str) -> dict:
    """Poll the state of notebook ``path`` until the JS expression ``done`` (over ``s``) holds;
    fail on a dialog."""
    handle = page.wait_for_function(
        f"""(path) => {{
            const raw = ({_STATE_JS})(path);
            if (raw === null) return null;
            if (raw.startsWith('dialog: ')) return raw;
            const s = JSON.parse(raw);
            return ({done}) ? raw : null;
        }}""",
        arg=path,
        timeout=timeout_ms,
        polling=250,
    )
    raw = handle.json_value()
    if raw.startswith("dialog: "):
        raise AssertionError(f"JupyterLab showed a dialog while {what}: {raw[8:]!r}")
    return json.loads(raw)


def _open_notebook(page, lab: bc.LabServer, name: str) -> dict:
    """Open the notebook; wait for its kernel (started from the notebook's metadata) to be idle.

    A "Select Kernel" dialog would mean the course's kernel is missing: that fails the test.
    """
    # ?reset: a fresh workspace, so the notebook opened by a previous test is not restored
    page.goto(lab.url(f"lab/tree/{name}?reset"), wait_until="domcontentloaded")
    return _wait_for_state(page, name, "s.kernel === 'idle/connected'", 90_000, f"opening {name}")


def _run_all(page, name: str) -> dict:
    """Run > Run All Cells; wait until every code cell has run (or one failed) and the kernel is idle."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    return _wait_for_state(
        page,
        name,
        "s.kernel === 'idle/connected' && s.pending === 0"
        " && (s.executed === s.code_cells || s.errors > 0)",
        RUN_ALL_TIMEOUT_MS,
        "running all cells",
    )


def _errors_shown(page) -> list[str]:
    """Text of every error output, traceback on stderr or widget that failed to display."""
    return page.evaluate(
        """() => {
            const found = [];
            const nb = document.querySelector('.jp-NotebookPanel .jp-Notebook');
            for (const el of nb.querySelectorAll(
                    '.jp-RenderedText[data-mime-type="application/vnd.jupyter.error"]'))
                found.push('error output: ' + el.innerText);
            for (const el of nb.querySelectorAll(
                    '.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]'))
                if (/Traceback|Error\\b/.test(el.innerText)) found.push('stderr: ' + el.innerText);
            for (const el of nb.querySelectorAll('.jp-OutputArea-output'))
                if (/Error displaying widget|Loading widget\\.\\.\\./.test(el.innerText))
                    found.push('widget did not render: ' + el.innerText);
            return found.map(t => t.slice(0, 2000));
        }"""
    )


def _plot_src(widget) -> str | None:
    return widget.evaluate(
        "w => { const i = w.querySelector('.widget-output img'); return i ? i.src : null; }"
    )


def _move_slider_and_check_redraw(page, widget, label: str, evidence: Evidence) -> str:
    """Press End (Home if already at the end) on the widget's first slider; return a summary."""
    handle = widget.locator(".widget-slider .noUi-handle").first
    readout = widget.locator(".widget-slider .widget-readout").first
    name = widget.locator(".widget-slider .widget-label").first.inner_text().strip()
    widget.scroll_into_view_if_needed()
    # The live output holds the first drawing as soon as the widget is displayed.
    shown = page.wait_for_function(
        """w => {
            const out = w.querySelector('.widget-output .jp-OutputArea-output');
            if (!out) return null;
            const i = out.querySelector('img');
            if (!i) return 'text: ' + out.innerText;
            return i.complete && i.naturalWidth > 0 ? 'image' : null;
        }""",
        arg=widget.element_handle(),
        timeout=REDRAW_TIMEOUT_MS,
    ).json_value()
    assert shown == "image", (
        f"{label}: the widget's live output shows no plot image but {shown[6:300]!r} (a matplotlib "
        "Figure displayed where no PNG formatter is registered shows as '<Figure size ...>')"
    )
    src_before, value_before = _plot_src(widget), readout.inner_text()
    shot_before = evidence.shot(widget, f"{label}-before")
    at_max = handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemax")
    handle.focus()
    handle.press("Home" if at_max else "End")
    try:
        page.wait_for_function(
            "([r, v]) => r.innerText !== v",
            arg=[readout.element_handle(), value_before],
            timeout=5_000,
        )
    except Exception as err:
        raise AssertionError(f"{label}: the slider {name!r} did not move on a key press") from err
    value_after = readout.inner_text()
    try:
        page.wait_for_function(
            """([w, before]) => {
                const i = w.querySelector('.widget-output img');
                return i && i.complete && i.naturalWidth > 0 && i.src !== before;
            }""",
            arg=[widget.element_handle(), src_before],
            timeout=REDRAW_TIMEOUT_MS,
        )
    except Exception as err:
        evidence.shot(widget, f"{label}-after")
        raise AssertionError(
            f"{label}: slider {name!r} moved {value_before} -> {value_after} but the plot was not "
            f"redrawn within {REDRAW_TIMEOUT_MS / 1000:.0f} s (the image in the widget's output "
            "is unchanged or missing)"
        ) from err
    page.wait_for_timeout(200)  # let the new image paint before the screenshot
    shot_after = evidence.shot(widget, f"{label}-after")
    src_after = _plot_src(widget)
    size_before, size_after = bc.decode_image(src_before).shape, bc.decode_image(src_after).shape
    assert size_before == size_after, (
        f"{label}: the plot changed size on redraw ({size_before[:2]} -> {size_after[:2]} pixels):"
        " the live figure is not rendered the same way each time"
    )
    changed = bc.image_difference(src_before, src_after)
    on_screen = bc.image_difference(shot_before, shot_after)
    assert changed >= MIN_CHANGED_PIXELS, (
        f"{label}: slider {name!r} {value_before} -> {value_after}: the new plot differs from the "
        f"old one in only {changed:.4%} of its pixels"
    )
    assert on_screen >= MIN_CHANGED_PIXELS, f"{label}: the widget looks the same on screen"
    return f"{label}: {name} {value_before} -> {value_after}, {changed:.1%} of plot pixels changed"


# ------------------------------------------------------------------------------------------ tests
def test_server_listens_on_localhost_only_and_requires_the_token(lab):
    if os.path.isdir("/proc/net"):
        assert bc.listening_addresses(lab.port) == ["127.0.0.1"]
    with pytest.raises(urllib.error.HTTPError) as err:
        lab.api("api/contents", token=False)
    assert err.value.code == 403
    assert lab.api("api/contents")["type"] == "directory"


@pytest.mark.parametrize("name", [_notebook(n) for n in UNDER_TEST])
def test_notebook_runs_and_widgets_redraw(name, lab, browser, tmp_path):
    assert (lab.root_dir / name).exists(), f"notebook {name} not found in {NOTEBOOKS}"
    evidence = Evidence(tmp_path)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.on("console", lambda m: evidence.log.append(f"console.{m.type}: {m.text}"))
    page.on("pageerror", lambda e: evidence.log.append(f"pageerror: {e}"))

    def local_only(route):  # the page may talk to the test server only
        if route.request.url.startswith(lab.base_url) or route.request.url.startswith("data:"):
            route.continue_()
        else:
            evidence.log.append(f"blocked off-machine request: {route.request.url}")
            route.abort()

    context.route("**/*", local_only)
    stem = name.removesuffix(".ipynb")
    t0 = time.monotonic()
    try:
        _open_notebook(page, lab, name)
        t1 = time.monotonic()
        state = _run_all(page, name)
        evidence.summary.append(
            f"{name}: opened in {t1 - t0:.1f} s, Run All took {time.monotonic() - t1:.1f} s: {state}"
        )
        evidence.shot(page, f"{stem}-after-run-all")
        errors = _errors_shown(page)
        assert not errors, f"{name} shows errors after Run All:\n" + "\n---\n".join(errors)
        assert state["executed"] == state["code_cells"] > 0, state
        kernels = lab.api("api/kernels")
        assert kernels and all(k["execution_state"] == "idle" for k in kernels), kernels

        widgets = page.locator(".jp-Notebook .nlteach-widget")
        with_slider = [w for w in widgets.all() if w.locator(".widget-slider .noUi-handle").count()]
        assert with_slider, f"{name}: no course widget with a slider was displayed"
        static_copies = page.evaluate(  # images in a widget's cell outside the widget itself
            """() => Array.from(document.querySelectorAll('.jp-Notebook .nlteach-widget')).map(w =>
                Array.from(w.closest('.jp-Cell').querySelectorAll('.jp-OutputArea-output img'))
                    .filter(i => !w.contains(i)).length)"""
        )
        assert not any(static_copies), (
            f"{name}: a widget's cell also shows a static copy of the figure: {static_copies}"
        )
        for i, widget in enumerate(with_slider):
            evidence.summary.append(
                _move_slider_and_check_redraw(page, widget, f"{stem}-widget{i}", evidence)
            )
        errors = _errors_shown(page)
        assert not errors, f"{name} shows errors after moving sliders:\n" + "\n".join(errors)
        evidence.shot(page, f"{stem}-end")
        notes = [x for x in evidence.log if x.startswith(("pageerror", "blocked", "console.error"))]
        print("\n".join([*evidence.summary, *notes]))
    except BaseException as err:
        try:
            evidence.shot(page, f"{stem}-at-failure")
        except Exception:
            pass
        kept = evidence.keep(stem, lab)
        print(f"\nscreenshots and logs kept in {kept}")
        if isinstance(err, Exception):
            err.add_note(f"screenshots and logs kept in {kept}")
        raise
    finally:
        context.close()
        for session in lab.api("api/sessions"):  # free the CPU for the next notebook
            lab.api(f"api/sessions/{session['id']}", method="DELETE")


def _save(page, path: str) -> None:
    """Save the open notebook ``path`` as JupyterLab's File > Save does."""
    page.evaluate(
        """(path) => {
            const w = Array.from(window.jupyterapp.shell.widgets('main'))
                .find(x => x.context && x.context.path === path);
            return w.context.save();
        }""",
        path,
    )


def _open_run_all(browser, lab: bc.LabServer, name: str, tmp_path: Path):
    """A new page with ``name`` opened and run; returns (context, page, evidence)."""
    evidence = Evidence(tmp_path)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.on("console", lambda m: evidence.log.append(f"console.{m.type}: {m.text}"))
    page.on("pageerror", lambda e: evidence.log.append(f"pageerror: {e}"))
    _open_notebook(page, lab, name)
    state = _run_all(page, name)
    evidence.summary.append(f"{name}: {state}")
    return context, page, evidence


def _kept_on_failure(evidence: Evidence, page, lab: bc.LabServer, stem: str, err: BaseException) -> None:
    try:
        evidence.shot(page, f"{stem}-at-failure")
    except Exception:
        pass
    kept = evidence.keep(stem, lab)
    if isinstance(err, Exception):
        err.add_note(f"screenshots and logs kept in {kept}")


def _free_kernels(lab: bc.LabServer) -> None:
    for session in lab.api("api/sessions"):
        lab.api(f"api/sessions/{session['id']}", method="DELETE")


def test_saving_in_the_working_copy_leaves_the_repository_clean(lab, browser, repo, tmp_path):
    """Run notebook 00 in the working copy and save it with its outputs: the file holds them, no
    jupytext pair is written, `git status` stays clean and the committed notebooks pass their checks."""
    name = _notebook("00")
    context, page, evidence = _open_run_all(browser, lab, name, tmp_path)
    try:
        assert not _errors_shown(page)
        _save(page, name)
        saved = lab.root_dir / name
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            cells = json.loads(saved.read_text())["cells"]
            if any(c.get("outputs") for c in cells):
                break
            time.sleep(0.25)
        assert any(c.get("outputs") for c in cells), f"{saved} was saved without outputs"
        assert not saved.with_suffix(".py").exists(), "saving the working copy wrote a jupytext pair"
        status = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True,
                                text=True, check=True).stdout
        assert status == "", f"using the course changed the repository:\n{status}"
        for ipynb in sorted((repo / "notebooks").glob(learner.PATTERN)):
            assert nbtools.pair_problems(ipynb) == []
    except BaseException as err:
        _kept_on_failure(evidence, page, lab, "save", err)
        raise
    finally:
        context.close()
        _free_kernels(lab)


def test_a_training_log_is_shown_as_output_not_as_an_error(lab, browser, tmp_path):
    """Notebook 09's training helper in a cell: its log is on stdout (JupyterLab draws stderr as a
    red error box), with no empty "--- sample ---" block."""
    context, page, evidence = _open_run_all(browser, lab, TRAINING_NOTEBOOK, tmp_path)
    try:
        assert not _errors_shown(page)
        shown = page.evaluate(
            """() => {
                const nb = document.querySelector('.jp-NotebookPanel .jp-Notebook');
                const text = sel => Array.from(nb.querySelectorAll(sel)).map(e => e.innerText);
                return {
                    stdout: text('.jp-RenderedText[data-mime-type="application/vnd.jupyter.stdout"]'),
                    stderr: text('.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]'),
                };
            }"""
        )
        stdout = "\n".join(shown["stdout"])
        assert "[nlteach.train] done" in stdout and "trained: ['transformer']" in stdout, shown
        assert not shown["stderr"], f"shown as errors (stderr): {shown['stderr']}"
        assert "--- sample ---" not in stdout
    except BaseException as err:
        _kept_on_failure(evidence, page, lab, "training-log", err)
        raise
    finally:
        context.close()
        _free_kernels(lab)
