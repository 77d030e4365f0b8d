"""The course outside a checkout, as Google Colab runs it (issue 21).

The wheel is built from a copy of the sources, then notebooks 00, 03 and 09 are copied to a folder
with no repository around them and executed at the tiny preset by a kernel that

- runs in a fresh virtual environment without nlteach (it sees the project environment's packages,
  torch among them, through a ``.pth`` file: Colab's preinstalled torch and Jupyter);
- has a fake ``google.colab`` module imported at start-up, as Colab's kernels do, so each notebook's
  set-up cell takes the Colab branch and pip-installs the course from ``$NLTEACH_INSTALL_SOURCE``,
  pointed at the wheel (``PIP_NO_INDEX``: nothing is downloaded).

The test fails when the install fails, when a notebook stops with an error, when the kernel imports
nlteach from anywhere but the fresh environment, or when notebook 09 cannot find the committed
results (which the wheel ships as package data, docs/design.md#committed-results). The readers of
notebooks 06-12 (``nlteach.results`` and the ``load_committed`` functions), run in the same fresh
environment, must find every committed experiment the checkout finds.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

import pytest

from nlteach import results
from nlteach.runs import COMMITTED_RESULTS, RESULTS_ROOT, committed_results_root
from tools.colab import INSTALL_SOURCE_ENV, REPO_URL, SETUP_CELL, colab_link

ROOT = Path(__file__).resolve().parents[1]
BUILD_INPUTS = ("pyproject.toml", "README.md", "nlteach", "results")  # what the wheel is built from
NOTEBOOKS = ("00_welcome.ipynb", "03_delta_rule_chunking.ipynb", "09_hope.ipynb")
KERNEL = "colab-sim"
PROBE = ("import sys\n\nimport nlteach\n\nprint('colab branch:', 'google.colab' in sys.modules)\n"
         "print('nlteach from:', nlteach.__file__)")
# The kernel's start-up: import google.colab (as Colab's kernels do), then the ordinary ipykernel.
KERNEL_START = "import google.colab; from ipykernel.kernelapp import launch_new_instance; launch_new_instance()"


def _run(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (f"{' '.join(map(str, cmd))} exited with {done.returncode}:\n"
                                  f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done


def _copy_build_inputs(dst: Path) -> None:
    """The sources of the wheel, outside the checkout (so the build leaves nothing in it)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "*.png")
    for name in BUILD_INPUTS:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dst / name, symlinks=True, ignore=ignore)
        else:
            shutil.copy2(src, dst / name)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str]:
    """(the wheel, the build's verbose output), built like `make wheel` (in an isolated build
    environment: pip fetches setuptools>=77 from the package index, as `make venv` does)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src, out = tmp / "src", tmp / "dist"
    src.mkdir()
    _copy_build_inputs(src)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    done = _run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--verbose",
                 "--wheel-dir", str(out)], env=env)
    wheels = sorted(out.glob("nlteach-*.whl"))
    assert len(wheels) == 1, f"expected one nlteach wheel in {out}, found {wheels}"
    return wheels[0], done.stdout + done.stderr


def test_the_committed_results_are_package_data_in_the_checkout():
    """Found through importlib.resources (as from a wheel): nlteach/committed_results links to results/."""
    entry = resources.files("nlteach") / COMMITTED_RESULTS
    assert entry.is_dir() and (entry / "lm_tinyshakespeare_laptop" / "results.json").is_file()
    assert committed_results_root() == RESULTS_ROOT == (ROOT / "results").resolve()


def test_the_wheel_builds_without_deprecation_warnings(built):
    _, log = built
    warnings = [line for line in log.splitlines() if "deprecat" in line.lower()]
    assert not warnings, "the build warns:\n" + "\n".join(warnings)


def test_the_wheel_ships_the_committed_results_and_no_figures(built):
    wheel, _ = built
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"nlteach/committed_results/{p.relative_to(ROOT / 'results').as_posix()}"
                for pattern in ("*.json", "metrics.jsonl") for p in (ROOT / "results").rglob(pattern)}
    assert expected, "the checkout has no committed results"
    assert not expected - names, f"missing from the wheel: {sorted(expected - names)[:5]}"
    assert not [n for n in names if n.endswith(".png")], "figures are redrawn from the JSON; no PNG ships"


def test_the_colab_link_and_the_install_source_come_from_one_url():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert colab_link("00_welcome.ipynb") in readme, "the README's Open-in-Colab link is not built from REPO_URL"
    assert INSTALL_SOURCE_ENV in readme
    assert f'Homepage = "{REPO_URL}"' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert f"git+{REPO_URL}" in SETUP_CELL and INSTALL_SOURCE_ENV in SETUP_CELL


def _fresh_venv(folder: Path) -> Path:
    """A virtual environment without nlteach that sees this environment's packages (torch, Jupyter)
    after its own, like Colab's preinstalled ones. Returns its python."""
    _run([sys.executable, "-m", "venv", "--without-pip", str(folder)])
    python = folder / "bin" / "python"
    own = _run([str(python), "-c", "import site; print(site.getsitepackages()[0])"], cwd=folder,
               env={"PATH": os.environ.get("PATH", "")}).stdout.strip()
    (Path(own) / "project-packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return python


def _fake_colab(folder: Path) -> Path:
    """A folder for PYTHONPATH holding an empty ``google.colab`` (google stays a namespace package)."""
    (folder / "google" / "colab").mkdir(parents=True)
    (folder / "google" / "colab" / "__init__.py").write_text('"""A stand-in for Colab\'s module (tests only)."""\n')
    return folder


def _kernelspec(jupyter_path: Path, python: Path) -> None:
    spec = jupyter_path / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-c", KERNEL_START, "-f", "{connection_file}"],
        "display_name": "Colab (simulated)", "language": "python"}))


def _with_probe(src: Path, dst: Path) -> None:
    """Copy a notebook, adding a last cell that prints where the kernel's nlteach comes from."""
    nb = json.loads(src.read_text(encoding="utf-8"))
    nb["cells"].append({"cell_type": "code", "execution_count": None, "id": "colab-probe",
                        "metadata": {}, "outputs": [], "source": PROBE})
    dst.write_text(json.dumps(nb), encoding="utf-8")


def _printed(nb_path: Path) -> str:
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    texts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                texts.append("".join(out["text"]))
            elif "text/plain" in out.get("data", {}):
                texts.append("".join(out["data"]["text/plain"]))
    return "\n".join(texts)


@pytest.fixture(scope="module")
def colab_runs(built, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """(the fresh environment, ``{notebook: everything it printed}``) for the notebooks executed in
    the simulated Colab."""
    wheel, _ = built
    tmp = tmp_path_factory.mktemp("colab")
    python = _fresh_venv(tmp / "venv")
    before = subprocess.run([str(python), "-c", "import nlteach"], capture_output=True, cwd=tmp,
                            env={"PATH": os.environ.get("PATH", "")})  # cwd: not the checkout
    assert before.returncode != 0, "the fresh environment already imports nlteach: the test would prove nothing"
    _kernelspec(tmp / "jupyter", python)
    content = tmp / "content"  # Colab's working folder: the notebooks and nothing else
    content.mkdir()
    env = {
        "PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", str(tmp)),
        "PYTHONPATH": str(_fake_colab(tmp / "fake")),  # never the checkout
        "JUPYTER_PATH": str(tmp / "jupyter"), "MPLBACKEND": "agg", "NLTEACH_SIZE": "tiny",
        "NLTEACH_DATA_DIR": str(tmp / "data"), INSTALL_SOURCE_ENV: str(wheel),
        "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "OMP_NUM_THREADS": "2",
    }
    if os.environ.get("NLTEACH_DATA_MIRROR"):
        env["NLTEACH_DATA_MIRROR"] = os.environ["NLTEACH_DATA_MIRROR"]
    printed = {}
    for name in NOTEBOOKS:
        _with_probe(ROOT / "notebooks" / name, content / name)
        _run([sys.executable, "-m", "nbconvert", "--to", "notebook", "--execute", "--inplace",
              f"--ExecutePreprocessor.kernel_name={KERNEL}", "--ExecutePreprocessor.timeout=300",
              str(content / name)], env=env, cwd=content, timeout=600)
        printed[name] = _printed(content / name)
    return tmp / "venv", printed


READERS = """\
import json
from nlteach import continual, results
from nlteach.experiments import cms_tasks, optimizers
print(json.dumps({"experiments": sorted(e.name for e in results.load_all() if not e.problems),
                  "continual": continual.load_committed("clinc150") is not None,
                  "cms_tasks": bool(cms_tasks.load_committed()),
                  "optimizers": bool(optimizers.load_committed("digits"))}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_on_simulated_colab_from_the_wheel(colab_runs, name):
    venv, printed = colab_runs
    text = printed[name]
    origin = next((line for line in text.splitlines() if line.startswith("nlteach from:")), None)
    assert origin is not None, f"{name} did not reach its last cell:\n{text[-2000:]}"
    assert "colab branch: True" in text, f"{name}'s kernel did not import the fake google.colab"
    module = Path(origin.removeprefix("nlteach from:").strip()).resolve()
    assert module.is_relative_to(venv.resolve()), \
        f"{name}'s kernel imported nlteach from outside the fresh environment {venv}: {module}"


@pytest.mark.slow
def test_notebook_09_shows_the_committed_results_outside_the_checkout(colab_runs):
    _, printed = colab_runs
    text = printed["09_hope.ipynb"]
    assert "is not here" not in text, "notebook 09 did not find the committed results:\n" + text[-2000:]
    assert "best laptop model" in text  # the committed laptop comparison was read
    assert "Reference budget:" in text  # and the reference comparison with its n-gram rows


@pytest.mark.slow
def test_the_readers_of_notebooks_06_to_12_find_the_committed_results_from_the_wheel(colab_runs):
    venv, _ = colab_runs
    done = _run([str(venv / "bin" / "python"), "-c", READERS], cwd=venv,
                env={"PATH": os.environ.get("PATH", ""), "MPLBACKEND": "agg"})
    found = json.loads(done.stdout.strip().splitlines()[-1])
    in_checkout = sorted(e.name for e in results.load_all() if not e.problems)
    assert in_checkout and found["experiments"] == in_checkout, f"read from the wheel: {found['experiments']}"
    assert found["continual"] and found["cms_tasks"] and found["optimizers"], found
