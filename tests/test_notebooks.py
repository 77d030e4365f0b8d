"""Static checks on the notebook pairs. (Executing them is nbval's job: `make test` runs
`pytest notebooks --nbval-lax` at the tiny preset.)"""

import json
import shutil
from pathlib import Path

import pytest

from tools import nbtools
from tools.colab import SETUP_CELL

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
IPYNBS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def test_there_are_notebooks():
    assert IPYNBS, "no notebooks found"
    assert IPYNBS[0].name.startswith("00_")


@pytest.mark.parametrize("ipynb", IPYNBS, ids=lambda p: p.name)
def test_pair_is_synced_stripped_and_has_setup_cell(ipynb):
    assert nbtools.pair_problems(ipynb) == []


def test_every_py_has_an_ipynb():
    for py in NOTEBOOKS.glob("[0-9][0-9]_*.py"):
        assert py.with_suffix(".ipynb").exists(), f"{py.name} has no .ipynb pair"


@pytest.fixture
def pair(tmp_path):
    src = IPYNBS[0]
    dst = tmp_path / src.name
    shutil.copy(src, dst)
    shutil.copy(src.with_suffix(".py"), dst.with_suffix(".py"))
    return dst


def test_checker_catches_an_unsynced_pair(pair):
    py = pair.with_suffix(".py")
    py.write_text(py.read_text() + "\n# %%\nprint('added on one side only')\n")
    assert any("differ" in p for p in nbtools.pair_problems(pair))


def test_checker_catches_outputs(pair):
    nb = json.loads(pair.read_text())
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    code["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["hi\n"]}]
    code["execution_count"] = 1
    pair.write_text(json.dumps(nb))
    assert any("outputs" in p for p in nbtools.pair_problems(pair))


def test_checker_catches_a_missing_setup_cell(pair):
    nb = json.loads(pair.read_text())
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    code["source"] = ["print('no set-up')"]
    pair.write_text(json.dumps(nb))
    assert any("set-up cell" in p for p in nbtools.pair_problems(pair))


def test_setup_cell_does_nothing_outside_colab():
    ns = {}
    exec(SETUP_CELL, ns)  # must not try to pip install here
    assert "subprocess" not in ns


@pytest.mark.parametrize("ipynb", IPYNBS, ids=lambda p: p.name)
def test_notebooks_read_sizes_from_the_preset_helper(ipynb):
    """Notebooks must not pin sizes themselves: any size choice goes through by_preset()."""
    text = ipynb.with_suffix(".py").read_text()
    assert "NLTEACH_SIZE" not in text.replace("`NLTEACH_SIZE", ""), \
        f"{ipynb.name} reads NLTEACH_SIZE directly; use nlteach.config.by_preset"


@pytest.mark.parametrize("ipynb", IPYNBS, ids=lambda p: p.name)
def test_notebooks_remove_their_temporary_folders(ipynb):
    """Run folders (checkpoints: megabytes per run) go in a tempfile.TemporaryDirectory, used in a
    `with` block or cleaned up by the notebook; a bare mkdtemp would stay behind after every run."""
    text = ipynb.with_suffix(".py").read_text()
    assert "mkdtemp(" not in text, f"{ipynb.name} makes a temporary folder it never removes"
    for line in text.splitlines():
        if "TemporaryDirectory(" in line and not line.lstrip().startswith("with "):
            name = line.split("=")[0].strip()
            assert f"{name}.cleanup()" in text, f"{ipynb.name} never removes {name} ({line.strip()})"
