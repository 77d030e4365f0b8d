"""Fixtures for the unit tests (the environment set-up is in the root conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

_mirror = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


@pytest.fixture
def data_mirror() -> Path:
    if not _mirror.is_dir():
        pytest.skip(f"the shared data mirror {_mirror} is not present")
    return _mirror
