"""Shared test set-up: offline, quiet, ci profile; paths of the repository."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]          # `autograder` and the `kernel` helper
for key, value in {"LEAKLAB_PROFILE": "ci", "LEAKLAB_PROGRESS": "0", "HF_HUB_OFFLINE": "1",
                   "MPLBACKEND": "Agg"}.items():
    os.environ.setdefault(key, value)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
