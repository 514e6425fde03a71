"""Shared fixtures: the real data beside the repository (skipped with a reason when absent)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("AFFECTLENS_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data; the calling test is skipped with a reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is missing (it lives in ../shared/data)")
    return path


@pytest.fixture
def shared_data():
    return shared_path


def pytest_configure(config):
    # Tests share 2 cores with each other and with torch's own threads: keep torch polite.
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    # Progress lines on a non-terminal stderr are for people reading logs; tests that count a
    # command's stderr lines must not see them (tests/report/test_progress.py turns them back on).
    os.environ["AFFECTLENS_PROGRESS"] = "off"
