import datetime as dt
import hashlib
import json
import os

import numpy as np
import pandas as pd
import pytest

from ibkr_assets.quant.journal import (
    GENESIS_HASH,
    append_entry,
    canonical_json,
    decision_entry,
    read_journal,
    sha256_file,
    sha256_json,
    verify_journal,
)


def _entry(day: int) -> dict:
    return {
        "partition": f"2026-11-{day:02d}",
        "targets_sha256": sha256_json({"AAPL": 0.1 * day}),
        "orders_sha256": sha256_json([]),
        "files_sha256": {"reports/x.json": "ab" * 32},
        "top_drivers": ["mom_12_1 +0.08", "piotroski +0.06"],
        "ex_ante_return": 0.0012 * day,
        "ex_ante_volatility": 0.011,
        "ex_ante_cvar": np.float64(0.025),
        "constraints_passed": bool(day % 2),
        "note": None,
    }


def _journal(tmp_path, n: int = 4):
    start = dt.datetime(2026, 11, 20, 13, 0, tzinfo=dt.UTC)
    for i in range(n):
        append_entry(tmp_path, _entry(20 + i), now=start + dt.timedelta(days=i))
    return sorted(p for p in tmp_path.iterdir() if p.suffix == ".parquet")


def test_canonical_json_is_deterministic_and_normalised():
    a = {"b": 0.1 + 0.2, "a": [np.int64(3), np.float32(1.5), float("nan")], "c": -0.0}
    assert canonical_json(a) == '{"a":[3,1.5,null],"b":0.3,"c":0.0}'
    assert canonical_json({"x": 1.0}) == canonical_json({"x": 1})
    assert canonical_json(pd.Series({"z": 1.25, "y": np.bool_(True)})) == '{"y":true,"z":1.25}'
    assert canonical_json(pd.Timestamp("2026-11-24", tz="UTC")) == '"2026-11-24T00:00:00+00:00"'
    with pytest.raises(ValueError, match="infinite"):
        canonical_json({"x": float("inf")})
    with pytest.raises(TypeError, match="object"):
        canonical_json(object())


def test_sha256_file(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"abc" * 1000)
    assert sha256_file(p) == hashlib.sha256(b"abc" * 1000).hexdigest()


def test_append_and_read_chain(tmp_path):
    files = _journal(tmp_path)
    assert [f.name for f in files][:2] == [
        "00000000_2026-11-20.parquet",
        "00000001_2026-11-21.parquet",
    ]
    df = read_journal(tmp_path)
    assert list(df["seq"]) == [0, 1, 2, 3]
    assert df["prev_hash"].iloc[0] == GENESIS_HASH
    assert list(df["prev_hash"].iloc[1:]) == list(df["row_hash"].iloc[:-1])
    assert df["ts_utc"].iloc[1] == "2026-11-21T13:00:00.000000+00:00"
    assert json.loads(df["top_drivers"].iloc[0]) == ["mom_12_1 +0.08", "piotroski +0.06"]
    assert df["ex_ante_cvar"].iloc[0] == pytest.approx(0.025)
    res = verify_journal(tmp_path)
    assert res.ok and res.first_bad_row is None and res.rows == 4
    assert verify_journal(tmp_path, expected_head=df["row_hash"].iloc[-1]).ok
    assert not list(tmp_path.glob(".tmp-*"))
    with pytest.raises(ValueError, match="may not set \\['row_hash'\\]"):
        append_entry(tmp_path, {"partition": "2026-11-25", "row_hash": "x"})
    with pytest.raises(ValueError, match="needs a partition"):
        append_entry(tmp_path, {"ex_ante_return": 0.1})
    assert len(read_journal(tmp_path)) == 4  # nothing written by the failed appends


def test_detects_changed_row(tmp_path):
    files = _journal(tmp_path)
    df = pd.read_parquet(files[1])
    df.loc[0, "ex_ante_return"] = 0.5
    df.to_parquet(files[1], index=False)
    res = verify_journal(tmp_path)
    assert not res.ok and res.first_bad_row == 1 and "contents changed" in res.reason


def test_detects_changed_row_with_recomputed_hash(tmp_path):
    files = _journal(tmp_path)
    df = pd.read_parquet(files[1])
    df.loc[0, "constraints_passed"] = False  # was True
    row = {k: v for k, v in df.iloc[0].to_dict().items() if k != "row_hash"}
    df.loc[0, "row_hash"] = sha256_json(row)  # a forger re-hashes the edited row
    df.to_parquet(files[1], index=False)
    res = verify_journal(tmp_path)
    assert not res.ok and res.first_bad_row == 2 and "prev_hash" in res.reason


def test_detects_removed_row(tmp_path):
    files = _journal(tmp_path)
    os.remove(files[1])
    res = verify_journal(tmp_path)
    assert not res.ok and res.first_bad_row == 1 and "removed" in res.reason


def test_detects_reordered_rows(tmp_path):
    files = _journal(tmp_path)
    a, b = files[1].read_bytes(), files[2].read_bytes()
    files[1].write_bytes(b)
    files[2].write_bytes(a)
    res = verify_journal(tmp_path)
    assert not res.ok and res.first_bad_row == 1 and "reordered" in res.reason


def test_truncation_needs_the_anchor(tmp_path):
    files = _journal(tmp_path)
    head = read_journal(tmp_path)["row_hash"].iloc[-1]
    os.remove(files[-1])
    assert verify_journal(tmp_path).ok  # a shorter chain is still a chain
    res = verify_journal(tmp_path, expected_head=head)
    assert not res.ok and "truncated" in res.reason


def test_decision_entry_hashes_payloads_and_files(tmp_path):
    f = tmp_path / "ticket.json"
    f.write_text('{"orders": []}')
    targets = pd.Series({"AAA": 0.1, "BBB": 0.05})
    entry = decision_entry(
        "2026-11-24",
        targets,
        [{"symbol": "AAA", "quantity": 10}],
        {"order_ticket": f},
        top_drivers={"AAA": "mom_12_1 +0.08"},
        ex_ante_return=0.001,
        constraints_passed=np.bool_(True),
        run_id="abc",
    )
    assert entry["targets_sha256"] == hashlib.sha256(b'{"AAA":0.1,"BBB":0.05}').hexdigest()
    assert entry["files_sha256"] == {"order_ticket": sha256_file(f)}
    assert entry["constraints_passed"] is True and entry["run_id"] == "abc"
    row = append_entry(tmp_path / "log", entry)
    assert json.loads(row["files_sha256"]) == {"order_ticket": sha256_file(f)}
    assert verify_journal(tmp_path / "log").ok
