"""The data root's writers replace files whole and never lose the previous version."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ibkr_assets.resources.storage import StorageResource, atomic_write


def test_paths_follow_the_operator_layout(tmp_path: Path) -> None:
    s = StorageResource(data_dir=str(tmp_path))
    assert s.staging_path("2024-03-28", "quotes") == tmp_path / "staging/2024-03-28/quotes.json"
    assert s.features_path("2024-03-28") == tmp_path / "features/2024-03-28.parquet"
    assert s.positions_path("2024-03-28") == tmp_path / "positions/2024-03-28.json"
    assert s.report_path("order_ticket", "2024-03-28") == (
        tmp_path / "reports/order_ticket_2024-03-28.json"
    )
    assert s.warehouse_path == tmp_path / "warehouse.duckdb"


def test_rewrite_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    s = StorageResource(data_dir=str(tmp_path))
    path = s.staging_path("2024-03-28", "universe")
    s.write_json(path, {"n": 1})
    s.write_json(path, {"n": 2, "when": pd.Timestamp("2024-03-28"), "x": np.float64(1.5)})
    assert json.loads(path.read_text()) == {"n": 2, "when": "2024-03-28T00:00:00", "x": 1.5}
    assert [p.name for p in path.parent.iterdir()] == ["universe.json"]

    frame = pd.DataFrame({"symbol": ["A", "B"], "close": [1.0, 2.0]})
    pq = s.write_parquet(s.features_path("2024-03-28"), frame)
    pd.testing.assert_frame_equal(pd.read_parquet(pq), frame)


def test_failed_write_keeps_the_previous_version(tmp_path: Path) -> None:
    s = StorageResource(data_dir=str(tmp_path))
    path = s.positions_path("2024-03-28")
    s.write_json(path, {"cash": 100.0})
    with pytest.raises(ValueError, match="Out of range float"):
        s.write_json(path, {"cash": float("nan")})

    def half_then_crash(tmp: Path) -> None:
        tmp.write_text('{"cash": 1')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half_then_crash)
    assert json.loads(path.read_text()) == {"cash": 100.0}
    assert [p.name for p in path.parent.iterdir()] == [path.name]
