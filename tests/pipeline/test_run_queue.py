"""The run queue: the shipped instance queues runs within per-account and backfill limits, every
run carries its account (and, when our code starts it, its trigger), and ``ibkr-agent run`` —
which executes in its own process, outside the queue — keeps the per-account limit itself."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from ibkr_assets.cli.run import run_daily
from ibkr_assets.definitions import defs
from ibkr_assets.errors import ConfigurationError
from ibkr_assets.jobs import (
    ACCOUNT_TAG,
    JOBS,
    PROCESS_TAG,
    TRIGGER_TAG,
    account_run_in_progress,
    daily_schedule,
    in_process_tags,
    weekly_schedule,
)

REPO = Path(__file__).resolve().parents[2]
SESSION = "2026-03-02"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Dagster home with the project's ``dagster.yaml``, as ``ibkr-agent run`` sets it up."""
    home = tmp_path / ".dagster"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.delenv("IBKR_ACCOUNT", raising=False)
    monkeypatch.delenv("IBKR_RUN_TRIGGER", raising=False)
    return home


def test_the_shipped_instance_queues_one_run_per_account_and_few_backfill_runs(home: Path):
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
    by_key = {limit["key"]: limit for limit in limits}
    assert by_key[ACCOUNT_TAG] == {
        "key": ACCOUNT_TAG,
        "value": {"applyLimitPerUniqueValue": True},
        "limit": 1,
    }
    assert (
        1 <= by_key["dagster/backfill"]["limit"] <= 4 and "value" not in by_key["dagster/backfill"]
    )
    # the limit holds for every run, however started: the account comes with the job
    for job in JOBS:
        assert defs.resolve_job_def(job.name).run_tags[ACCOUNT_TAG] == "primary"


def test_scheduled_runs_say_so_and_go_ahead_of_backfills():
    bucharest = datetime(2026, 3, 2, 14, 0, tzinfo=ZoneInfo("Europe/Bucharest"))
    daily = daily_schedule(dg.build_schedule_context(scheduled_execution_time=bucharest))
    assert daily.partition_key == SESSION
    assert daily.tags == {TRIGGER_TAG: "schedule", "dagster/priority": "10"}
    saturday = datetime(2026, 3, 7, 10, 0, tzinfo=ZoneInfo("America/New_York"))
    weekly = weekly_schedule(dg.build_schedule_context(scheduled_execution_time=saturday))
    assert weekly.tags == {TRIGGER_TAG: "schedule"}


def test_in_process_tags_name_the_trigger_the_account_and_the_process(monkeypatch):
    monkeypatch.setenv("IBKR_ACCOUNT", "DU7654321")
    monkeypatch.setenv("IBKR_RUN_TRIGGER", "mcp")
    tags = in_process_tags()
    assert tags[TRIGGER_TAG] == "mcp" and tags[ACCOUNT_TAG] == "DU7654321"
    assert tags[PROCESS_TAG].endswith(f":{os.getpid()}")
    monkeypatch.setenv("IBKR_RUN_TRIGGER", "cron")
    with pytest.raises(ConfigurationError, match=r"IBKR_RUN_TRIGGER='cron'.*cli, mcp"):
        in_process_tags()


RELEASE = threading.Event()


@dg.asset
def slow_asset() -> int:
    RELEASE.wait(30)
    return 1


@contextmanager
def run_in_progress(home: Path, account: str) -> Iterator[dg.DagsterRun]:
    """A run of ``account`` executing in this process until the block ends."""
    RELEASE.clear()
    instance = dg.DagsterInstance.from_config(str(home))
    worker = threading.Thread(
        target=dg.materialize,
        args=([slow_asset],),
        kwargs={"instance": instance, "tags": {ACCOUNT_TAG: account}},
    )
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while not (
            runs := instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        ):
            assert time.monotonic() < deadline, "the run did not start"
            time.sleep(0.05)
        yield runs[0]
    finally:
        RELEASE.set()
        worker.join()
        instance.dispose()


def test_ibkr_agent_run_refuses_while_a_run_of_the_account_is_in_progress(home: Path, capsys):
    with run_in_progress(home, "primary") as busy:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert account_run_in_progress(instance, "DU7654321") is None
            assert account_run_in_progress(instance, "primary").run_id == busy.run_id
        assert run_daily(datetime.fromisoformat(SESSION).date(), quiet=True) is False
    out = " ".join(capsys.readouterr().out.split())
    assert f"not started: run {busy.run_id} (__ephemeral_asset_job__, session -)" in out
    assert "of account primary is in progress" in out and "one run per account" in out
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert [r.job_name for r in instance.get_runs()] == ["__ephemeral_asset_job__"]


KILLED_RUN = """
import sys, time
import dagster as dg
from ibkr_assets.jobs import in_process_tags

@dg.asset
def forever() -> None:
    print("started", flush=True)
    time.sleep(600)

dg.materialize([forever], instance=dg.DagsterInstance.get(), tags=in_process_tags())
"""


@pytest.mark.slow
def test_a_run_whose_process_was_killed_frees_the_account(home: Path):
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN],
        env={**os.environ, "IBKR_ACCOUNT": "DU1234567"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # no chance to record the end of its run
        proc.wait()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        [run] = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.STARTED
        assert run.tags[PROCESS_TAG].endswith(f":{proc.pid}")
        assert account_run_in_progress(instance, "DU1234567") is None
        run = instance.get_run_by_id(run.run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.FAILURE
        [failure] = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE
        ).records
        assert f"({run.tags[PROCESS_TAG]}) exited" in failure.event_log_entry.dagster_event.message
