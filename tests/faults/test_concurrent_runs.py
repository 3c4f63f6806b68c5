"""Several ``ibkr-agent run`` processes of one session started at once on a fresh data dir (a
schedule tick, a manual run and an assistant's launch can coincide; issue #16).

Before the instance lock, Dagster's SQLite storages were created by all of them together and the
instance was broken for good (``table runs already exists``, then ``Version table
'alembic_version' has more than one head present`` on every later run). Now one run proceeds,
the others refuse at once naming it, and the instance stays usable.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest

from ibkr_assets.cli.instance import file_lock
from ibkr_assets.cli.run import run_daily
from tests.small_world import SMALL_WORLD_EVIDENCE

pytestmark = [pytest.mark.faults, pytest.mark.timeout(150)]

SESSION = "2024-06-03"
RUNS = 3


@pytest.mark.slow
def test_runs_started_together_on_a_fresh_data_dir_one_proceeds_the_others_refuse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IBKR_", "DAGSTER_"))}
    env |= {
        "IBKR_DATA_DIR": str(tmp_path),
        **SMALL_WORLD_EVIDENCE,
        "IBKR_SIM_SYMBOLS": "20",
        "IBKR_WATCHLIST": '["AAPL","MSFT","KO"]',
        "IBKR_JOURNAL_KEY": os.environ["IBKR_JOURNAL_KEY"],
    }
    command = [sys.executable, "-m", "ibkr_assets.cli", "run", "--date", SESSION]
    procs = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(RUNS)
    ]
    outputs = [(p.communicate(timeout=120)[0], p.returncode) for p in procs]
    texts = [" ".join(out.split()) for out, _ in outputs]
    assert [code for _, code in outputs].count(0) == 1, texts
    [ran] = [t for t, (_, code) in zip(texts, outputs, strict=True) if code == 0]
    run_id = ran.split(f" for {SESSION}: success")[0].rsplit("run ", 1)[1]
    for text, (_, code) in zip(texts, outputs, strict=True):
        assert "already exists" not in text and "alembic" not in text, text
        if code != 0:  # refused at once, naming the run in progress and what to do
            assert text.startswith(
                f"not started: run {run_id} (session {SESSION}) of account "
                "primary is in progress in process"
            ), text
            assert "one run per account at a time" in text

    # the instance is sound: one alembic head, and a later run of the session succeeds
    runs_db = tmp_path / ".dagster" / "history" / "runs.db"
    with sqlite3.connect(runs_db) as conn:
        assert len(conn.execute("select * from alembic_version").fetchall()) == 1
    for name, value in env.items():
        if name.startswith("IBKR_"):
            monkeypatch.setenv(name, value)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert run_daily(date.fromisoformat(SESSION), quiet=True) is True


def test_a_lock_is_held_by_one_holder_at_a_time_with_its_note(tmp_path: Path) -> None:
    path = tmp_path / "home" / "instance.lock"
    with file_lock(path, note="run 1") as first:
        assert first and path.read_text() == "run 1"
        started = time.monotonic()
        with file_lock(path, wait=0.3, note="run 2") as second:
            assert not second, "another holder (another open file) is refused"
            assert time.monotonic() - started >= 0.3, "after waiting"
            assert path.read_text() == "run 1", "the holder's note is kept"
    assert path.read_text() == "", "the note goes with its holder"
    with file_lock(path) as again:
        assert again, "released when its holder leaves"
