"""Fixtures shared by the unit tests split across several files."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty data directory (the order-guard tests' simulator keeps its account there)."""
    path = tmp_path / "data"
    path.mkdir()
    return path
