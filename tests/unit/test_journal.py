import datetime as dt
import hashlib
import json
import multiprocessing
import os
import stat

import numpy as np
import pandas as pd
import pytest

from ibkr_assets.quant.journal import (
    GENESIS_HASH,
    Anchor,
    JournalKey,
    JournalKeyError,
    JournalTampered,
    append_entry,
    canonical_json,
    head_file,
    read_journal,
    sha256_file,
    sha256_json,
    verify_journal,
)
from ibkr_assets.settings import load_settings
from ibkr_assets.settings.journal import KEY_ENV, KEY_FILE_ENV
from tests.journal_key import TEST_KEY as KEY


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
        append_entry(tmp_path, _entry(20 + i), now=start + dt.timedelta(days=i), key=KEY)
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
    res = verify_journal(tmp_path, key=KEY)
    assert res.ok and res.first_bad_row is None and res.rows == 4
    assert verify_journal(tmp_path, expected_head=df["row_hash"].iloc[-1], key=KEY).ok
    assert not list(tmp_path.glob(".tmp-*"))
    with pytest.raises(ValueError, match="may not set \\['row_hash'\\]"):
        append_entry(tmp_path, {"partition": "2026-11-25", "row_hash": "x"}, key=KEY)
    with pytest.raises(ValueError, match="needs a partition"):
        append_entry(tmp_path, {"ex_ante_return": 0.1}, key=KEY)
    assert len(read_journal(tmp_path)) == 4  # nothing written by the failed appends


def test_detects_changed_row(tmp_path):
    files = _journal(tmp_path)
    df = pd.read_parquet(files[1])
    df.loc[0, "ex_ante_return"] = 0.5
    df.to_parquet(files[1], index=False)
    res = verify_journal(tmp_path, key=KEY)
    assert not res.ok and res.first_bad_row == 1 and "contents changed" in res.reason


def _forge(path, **changes) -> dict:
    """Rewrite one row file as a forger without the key would: edit fields, keep the chain
    consistent by recomputing ``row_hash`` with sha256; return the new row."""
    row = pd.read_parquet(path).iloc[0].to_dict()
    row.update(changes)
    hashed = {k: v for k, v in row.items() if k not in ("row_hash", "row_hmac")}
    row["row_hash"] = sha256_json(hashed)
    pd.DataFrame([row]).to_parquet(path, index=False)
    return row


def test_detects_changed_row_with_recomputed_hash(tmp_path):
    files = _journal(tmp_path)
    _forge(files[1], constraints_passed=False)  # was True
    res = verify_journal(tmp_path, key=KEY)
    assert not res.ok and res.first_bad_row == 1 and res.check == "signature"
    assert "not signed with the journal key" in res.reason


def test_detects_full_rewrite_with_recomputed_hashes(tmp_path):
    files = _journal(tmp_path)
    prev = GENESIS_HASH
    for f in files:  # every row rewritten, every hash recomputed: a valid sha256 chain
        prev = _forge(f, ex_ante_return=0.9, prev_hash=prev)["row_hash"]
    head = json.loads(head_file(tmp_path).read_text())
    head["row_hash"] = prev
    head_file(tmp_path).write_text(json.dumps(head))
    res = verify_journal(tmp_path, key=KEY)
    assert not res.ok and res.first_bad_row == 0 and res.check == "signature"


def test_detects_forged_append(tmp_path):
    files = _journal(tmp_path)
    last = pd.read_parquet(files[-1]).iloc[0].to_dict()
    forged = files[-1].with_name("00000004_2026-11-24.parquet")
    pd.DataFrame([{**last, "seq": 4, "prev_hash": last["row_hash"]}]).to_parquet(forged)
    _forge(forged, row_hmac="ab" * 32, partition="2026-11-24")
    res = verify_journal(tmp_path, key=KEY)
    assert not res.ok and res.first_bad_row == 4 and res.check == "signature"
    with pytest.raises(JournalTampered, match=r"last row 00000004_\S+ is not signed"):
        append_entry(tmp_path, _entry(25), key=KEY)


def test_detects_removed_row(tmp_path):
    files = _journal(tmp_path)
    os.remove(files[1])
    res = verify_journal(tmp_path, key=KEY)
    assert not res.ok and res.first_bad_row == 1 and "removed" in res.reason
    assert res.check == "sequence"


def test_detects_reordered_rows(tmp_path):
    files = _journal(tmp_path)
    a, b = files[1].read_bytes(), files[2].read_bytes()
    files[1].write_bytes(b)
    files[2].write_bytes(a)
    res = verify_journal(tmp_path, key=KEY)
    assert not res.ok and res.first_bad_row == 1 and "reordered" in res.reason


def test_detects_removed_last_row(tmp_path):
    files = _journal(tmp_path)
    os.remove(files[-1])
    res = verify_journal(tmp_path, key=KEY)
    assert not res.ok and res.check == "truncated"
    assert "says the journal has 4 rows, it has 3" in res.reason
    with pytest.raises(JournalTampered, match="rows were deleted from the end"):
        append_entry(tmp_path, _entry(25), key=KEY)  # appending would hide the truncation
    assert len(read_journal(tmp_path)) == 3


def test_detects_all_rows_removed(tmp_path):
    for f in _journal(tmp_path):
        os.remove(f)
    res = verify_journal(tmp_path, key=KEY)
    assert not res.ok and res.check == "truncated" and "4 rows, it has 0" in res.reason


def test_detects_missing_or_forged_head_file(tmp_path):
    _journal(tmp_path)
    head = head_file(tmp_path)
    assert head == tmp_path.with_name(f"{tmp_path.name}.head.json")  # outside the journal
    saved = json.loads(head.read_text())
    head.write_text(json.dumps({**saved, "seq": 2}))  # claims fewer rows, hmac not redone
    res = verify_journal(tmp_path, key=KEY)
    assert not res.ok and res.check == "head" and "not signed" in res.reason
    head.unlink()
    res = verify_journal(tmp_path, key=KEY)
    assert not res.ok and res.check == "head" and "missing" in res.reason


def test_old_head_file_and_truncation_caught_by_an_anchor(tmp_path):
    _journal(tmp_path, 3)
    old_head = head_file(tmp_path).read_bytes()
    last = append_entry(tmp_path, _entry(23), key=KEY)
    os.remove(sorted(tmp_path.glob("*.parquet"))[-1])
    head_file(tmp_path).write_bytes(old_head)  # an earlier genuine head file put back
    assert verify_journal(tmp_path, key=KEY).ok  # nothing local can tell
    anchor = Anchor(last["row_hash"], "Dagster (decision_journal 2026-11-23)")
    res = verify_journal(tmp_path, anchors=[anchor], key=KEY)
    assert not res.ok and res.check == "anchor"
    assert res.reason.startswith("Dagster (decision_journal 2026-11-23) recorded row")


def test_truncation_against_an_expected_head(tmp_path):
    _journal(tmp_path)
    head = read_journal(tmp_path)["row_hash"].iloc[-1]
    assert verify_journal(tmp_path, expected_head=head, key=KEY).ok
    res = verify_journal(tmp_path, expected_head="0" * 64, key=KEY)
    assert not res.ok and res.check == "expected_head" and "truncated" in res.reason


def test_without_the_key_nothing_is_intact(tmp_path, monkeypatch):
    _journal(tmp_path)
    monkeypatch.delenv(KEY_ENV)
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path.parent / "absent.key"))
    journal = load_settings().journal
    res = verify_journal(tmp_path, key=journal.key())
    assert not res.ok and res.check == "key" and res.rows == 4
    assert KEY_ENV in res.reason and "absent.key" in res.reason
    with pytest.raises(JournalKeyError, match="does not exist"):  # never a new key for old rows
        append_entry(tmp_path, _entry(25), key=journal.appending_key(tmp_path))
    assert not (tmp_path.parent / "absent.key").exists()
    res = verify_journal(tmp_path, key=JournalKey(b"another key of at least thirty-two chars"))
    assert not res.ok and res.check == "signature" and res.first_bad_row == 0


def test_a_new_journal_verifies_without_a_key(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "absent.key"))
    res = verify_journal(tmp_path / "log", key=load_settings().journal.key())
    assert res.ok and res.reason == "no rows yet"
    res = verify_journal(
        tmp_path / "log", key=load_settings().journal.key(), anchors=[Anchor("ab" * 32, "Dagster")]
    )
    assert not res.ok and res.check == "key" and res.rows == 0


def test_key_file_created_once_with_mode_0600(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    path = tmp_path / "config" / "ibkr-agent" / "journal.key"
    journal = load_settings().journal
    assert journal.key_file == path and journal.key().secret is None  # not created to read
    assert not path.exists()
    append_entry(tmp_path / "log", _entry(20), key=journal.appending_key(tmp_path / "log"))
    key = path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(key.strip()) == 64
    append_entry(tmp_path / "log", _entry(21), key=journal.appending_key(tmp_path / "log"))
    assert path.read_bytes() == key and verify_journal(tmp_path / "log", key=journal.key()).ok
    assert key not in (tmp_path / "log.head.json").read_bytes()
    assert all(key.strip().decode() not in str(v) for v in read_journal(tmp_path / "log").values)
    assert key.strip() not in repr(journal.key()).encode()
    monkeypatch.setenv(KEY_ENV, key.decode())  # the same key given in the environment
    assert verify_journal(tmp_path / "log", key=load_settings().journal.key()).ok
    monkeypatch.setenv(KEY_ENV, "short")
    with pytest.raises(JournalKeyError, match="IBKR_JOURNAL_KEY is 5 characters; use at least 32"):
        load_settings().journal.key().required()
    monkeypatch.setenv(KEY_ENV, "  ")  # blank: the key file, as if unset
    assert load_settings().journal.key().secret == key.strip()


def test_interrupted_append_is_reported_and_resumed(tmp_path):
    _journal(tmp_path, 2)
    before = head_file(tmp_path).read_bytes()
    append_entry(tmp_path, _entry(22), key=KEY)
    head_file(tmp_path).write_bytes(before)  # the process died before replacing the head
    res = verify_journal(tmp_path, key=KEY)
    assert res.ok and "1 signed rows after the head" in res.reason
    append_entry(tmp_path, _entry(23), key=KEY)
    res = verify_journal(tmp_path, key=KEY)
    assert res.ok and res.rows == 4 and "after the head" not in res.reason


def _append_many(directory: str, worker: int, count: int) -> None:
    for i in range(count):
        append_entry(directory, {"partition": f"w{worker}-{i}", "worker": worker}, key=KEY)


def test_concurrent_appends_from_processes_lose_nothing(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(str(tmp_path), w, 5)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    rows = read_journal(tmp_path)
    assert len(rows) == 20 and sorted(rows["partition"]) == sorted(
        f"w{w}-{i}" for w in range(4) for i in range(5)
    )
    res = verify_journal(tmp_path, key=KEY)
    assert res.ok and "after the head" not in res.reason
    assert json.loads(head_file(tmp_path).read_text())["seq"] == 19


def test_cli_verify_compares_with_the_heads_dagster_recorded(tmp_path, capsys):
    import dagster as dg

    from ibkr_assets.cli import main

    log = tmp_path / "decision_log"
    _journal(log, 2)
    old_head = head_file(log).read_bytes()
    last = append_entry(log, _entry(22), key=KEY)
    (tmp_path / ".dagster").mkdir()
    with dg.DagsterInstance.from_config(str(tmp_path / ".dagster")) as instance:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                "decision_journal", partition="2026-11-22", metadata={"row_hash": last["row_hash"]}
            )
        )
    assert main(["journal", "verify", "--dir", str(log)]) == 0
    assert "1 journal rows recorded in Dagster, all present" in capsys.readouterr().out
    os.remove(sorted(log.glob("*.parquet"))[-1])
    head_file(log).write_bytes(old_head)  # the earlier head file matches the shorter chain
    assert main(["journal", "verify", "--dir", str(log)]) == 1
    out = capsys.readouterr().out
    assert "journal NOT verified (anchor check): Dagster (decision_journal 2026-11-22" in out
    assert last["row_hash"][:16] in out


def test_cli_verify_without_the_key_is_not_intact(tmp_path, capsys, monkeypatch):
    from ibkr_assets.cli import main

    _journal(tmp_path / "decision_log", 1)
    monkeypatch.delenv(KEY_ENV)
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "nowhere.key"))
    assert main(["journal", "verify", "--dir", str(tmp_path / "decision_log")]) == 1
    out = capsys.readouterr().out
    assert "journal NOT verified (key check): no journal key" in out and "intact" not in out


def test_journal_drivers_are_each_held_names_alpha_contributions():
    """Every name held, largest |weight| first, with the alpha stage's five contributions."""
    from ibkr_assets.assets.journal import top_drivers
    from ibkr_assets.quant.alpha import SIGNALS, compute_alpha_scores

    rng = np.random.default_rng(3)
    columns = list(SIGNALS)
    features = pd.DataFrame(rng.normal(size=(12, len(columns))), columns=columns)
    features.insert(0, "symbol", [f"S{i:02d}" for i in range(12)])
    # evidence weights as the signal_evidence asset would give them (|w| summing to 1)
    raw = rng.normal(size=len(columns))
    evidence = dict(zip(columns, raw / np.abs(raw).sum(), strict=True))
    scores = compute_alpha_scores(features, evidence, macro_adjustment=0.2)
    weights = [0.0] * 12
    weights[4], weights[7], weights[1] = 0.05, -0.12, 0.08
    targets = scores.assign(weight=weights)
    rows = top_drivers(targets)
    assert [r["symbol"] for r in rows] == ["S07", "S01", "S04"], "held only, largest first"
    for r in rows:
        drivers = r["drivers"].split("; ")
        assert len(drivers) == 5
        values = [abs(float(d.split(" ")[1])) for d in drivers]
        assert values == sorted(values, reverse=True)
        assert r["alpha"] == pytest.approx(
            scores.set_index("symbol").loc[r["symbol"], "alpha_score"], abs=1e-6
        )
    assert top_drivers(targets.iloc[:0]) == []
