"""Fixtures for the unit tests (the environment set-up is in the root conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def data_mirror() -> Path:
    """The data mirror ($NLTEACH_DATA_MIRROR, which the root conftest sets when the workplace has one)."""
    mirror = os.environ.get("NLTEACH_DATA_MIRROR")
    if not mirror or not Path(mirror).is_dir():
        pytest.skip("no data mirror: set NLTEACH_DATA_MIRROR to a folder holding the pinned data files")
    return Path(mirror)
