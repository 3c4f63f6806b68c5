"""The project's Dagster instance on a real PostgreSQL server (issue #19 item 2).

A fresh data root whose Dagster home holds the project's own ``dagster.yaml``, unchanged; the
environment names the throwaway server (``IBKR_PG_URL``) and the file holding its password
(``IBKR_PG_PASSWORD_FILE``), as a deployment does. A real ``dagster-daemon`` runs the queued
run coordinator, the schedules and the sensors over the 20-stock simulated world with a short
watch-list. Then:

1. two daily runs of one session for the same account, launched together with
   ``dagster job launch``: the daemon starts one; the other waits in the queue until it ends;
2. a backfill of the daily job over three sessions (``dagster job backfill``): its runs go
   through the daemon one at a time (all are the same account's);
3. the runs, their event logs and the asset-check evaluations are rows in PostgreSQL (read with
   psycopg), and the home holds no SQLite storage;
4. housekeeping (``ibkr_assets.housekeeping``) on that instance deletes an old run with its
   events and check evaluations there.

Five runs one after another, each in a worker process that loads the code location: 11.9 min
on this 2-core machine beside other engineers' test sessions (load average ~11), most of it
the runs (~50-60 s each) and the ~70 s before each starts.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.scheduler.instigation import TickStatus

from ibkr_assets.housekeeping import housekeep
from ibkr_assets.jobs import ACCOUNT_TAG, BACKFILL_TAG, DAILY_JOB_NAME, IN_PROGRESS
from ibkr_assets.partitions import previous_sessions
from tests.instance.conftest import Server
from tests.small_world import daemon_environment

#: Five runs one after another (see the module docstring): more than the suite's 600 s on a
#: loaded machine.
pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(1500)]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SIM_SYMBOLS = 20
WATCHLIST = ["AAPL", "MSFT", "KO"]
SESSION = "2024-06-03"
BACKFILL = [day.isoformat() for day in previous_sessions(SESSION, 3)]
#: Seconds for a CLI command (it loads the code location), and for queued runs to finish.
CLI_S = 180
RUNS_S = 600
ENDED = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


@dataclass(frozen=True)
class World:
    """A data root on the PostgreSQL instance, and the environment its processes get."""

    root: Path
    home: Path
    env: dict[str, str]
    server: Server

    def instance(self) -> dg.DagsterInstance:
        """The instance, opened in this process (whose environment names the server)."""
        return dg.DagsterInstance.from_config(str(self.home))


@pytest.fixture(scope="module")
def world(postgres: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The data root, its instance's tables created on the server, and the daemon running."""
    root = tmp_path_factory.mktemp("pg-data")
    home = root / ".dagster"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    server_env = {"IBKR_PG_URL": postgres.url, "IBKR_PG_PASSWORD_FILE": str(postgres.password_file)}
    env = daemon_environment(root, SIM_SYMBOLS, WATCHLIST, **server_env)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in server_env.items():
            patch.setenv(name, value)
        world = World(root=root, home=home, env=env, server=postgres)
        world.instance().dispose()  # the tables, once, before the daemon starts
        log = (root / "daemon.log").open("w")
        daemon = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
            env=env,
            cwd=home,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield world
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait()
            log.close()


def _drain(world: World, daily: list[str], others: list[str]) -> tuple[int, bool]:
    """Wait until the runs ``daily`` and ``others`` have ended; the most runs of the account
    seen in progress at once, and whether one daily run was seen queued while the other was in
    progress."""
    most, queued_behind = 0, False
    deadline = time.monotonic() + RUNS_S
    with world.instance() as instance:
        while True:
            status = {}
            for run_id in [*daily, *others]:
                run = instance.get_run_by_id(run_id)
                status[run_id] = run.status if run else None
            busy = instance.get_runs(
                dg.RunsFilter(statuses=IN_PROGRESS, tags={ACCOUNT_TAG: "primary"})
            )
            most = max(most, len(busy))
            daily_status = {status[run_id] for run_id in daily}
            queued_behind |= dg.DagsterRunStatus.QUEUED in daily_status and bool(
                daily_status & set(IN_PROGRESS)
            )
            if all(s in ENDED for s in status.values()):
                return most, queued_behind
            assert time.monotonic() < deadline, (
                f"after {RUNS_S} s the runs are {status}; see {world.root / 'daemon.log'}"
            )
            time.sleep(0.5)


def _run_events(world: World, run_ids: list[str]) -> dict[str, dict[str, float]]:
    """From PostgreSQL's event log: each run's start and end (s since the epoch)."""
    start = dg.DagsterEventType.RUN_START.value
    ends = [dg.DagsterEventType.RUN_SUCCESS.value, dg.DagsterEventType.RUN_FAILURE.value]
    with world.server.connect() as conn:
        rows = conn.execute(
            "SELECT run_id, dagster_event_type, extract(epoch from timestamp) FROM event_logs "
            "WHERE run_id = ANY(%s) AND dagster_event_type = ANY(%s)",
            (run_ids, [start, *ends]),
        ).fetchall()
    events: dict[str, dict[str, float]] = {run_id: {} for run_id in run_ids}
    for run_id, kind, at in rows:
        events[run_id]["start" if kind == start else "end"] = float(at)
    return events


def _count(world: World, table: str, run_id: str) -> int:
    with world.server.connect() as conn:
        row = conn.execute(f"SELECT count(*) FROM {table} WHERE run_id = %s", (run_id,)).fetchone()
    assert row is not None
    return int(row[0])


@dataclass(frozen=True)
class Launched:
    """The runs launched through the queue: the two daily runs of ``SESSION`` in the order they
    started, and the backfill's runs."""

    daily: list[str]
    backfill: list[dg.DagsterRun]


def _cli(world: World, *args: str) -> subprocess.Popen[str]:
    """``dagster ARGS`` on the project's workspace, in the home, started."""
    return subprocess.Popen(
        [str(BIN / "dagster"), *args, "-w", str(REPO / "workspace.yaml")],
        env=world.env,
        cwd=world.home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _output(command: subprocess.Popen[str]) -> str:
    """The command's output once it has ended (it must succeed)."""
    out, err = command.communicate(timeout=CLI_S)
    assert command.returncode == 0, f"{' '.join(command.args)} failed:\n{err[-3000:]}"
    return out


@pytest.fixture(scope="module")
def launched(world: World) -> Launched:
    """Two daily runs of ``SESSION`` for the one account (``dagster job launch``) and a backfill
    of ``BACKFILL`` (``dagster job backfill``), submitted together to the queue, all ended; at
    most one of them in progress at any time, and a daily run seen waiting in the queue while
    the other was in progress."""
    daily = [str(uuid.uuid4()) for _ in range(2)]
    tags = json.dumps({"dagster/partition": SESSION})
    commands = [
        *(
            _cli(world, "job", "launch", "-j", DAILY_JOB_NAME, "--run-id", run_id, "--tags", tags)
            for run_id in daily
        ),
        _cli(world, "job", "backfill", "-j", DAILY_JOB_NAME, "--noprompt",
             "--partitions", ",".join(BACKFILL)),
    ]  # fmt: skip
    *_, out = [_output(command) for command in commands]
    backfill_id = out.split("Launched backfill job `")[1].split("`")[0]
    with world.instance() as instance:
        backfill = instance.get_runs(dg.RunsFilter(tags={BACKFILL_TAG: backfill_id}))
    most, queued_behind = _drain(world, daily, [run.run_id for run in backfill])
    assert most == 1, f"{most} runs of one account were in progress at once"
    assert queued_behind, "no daily run was seen waiting in the queue while the other ran"
    events = _run_events(world, daily)
    return Launched(sorted(daily, key=lambda run_id: events[run_id]["start"]), backfill)


def test_the_instance_is_on_postgres_with_run_retries(world: World) -> None:
    with world.instance() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 1
        assert not instance.run_retries_retry_on_asset_or_op_failure
        # what a run's worker is handed names no server and no password: it reads its own env
        ref = instance.get_ref()
        assert ref.storage_data is not None and ref.storage_data.config_yaml == "{}\n"
    assert not (world.home / "history").exists() and not (world.home / "schedules").exists()


def test_a_second_daily_run_of_the_account_waits_for_the_first(
    world: World, launched: Launched
) -> None:
    first, second = launched.daily
    events = _run_events(world, launched.daily)
    assert events[second]["start"] >= events[first]["end"]
    with world.instance() as instance:
        for run_id in launched.daily:
            run = instance.get_run_by_id(run_id)
            assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS, run_id
            assert run.tags[ACCOUNT_TAG] == "primary" and run.tags["dagster/partition"] == SESSION


def test_a_backfill_of_three_sessions_runs_through_the_daemon(
    world: World, launched: Launched
) -> None:
    assert sorted(run.tags["dagster/partition"] for run in launched.backfill) == BACKFILL
    run_ids = [run.run_id for run in launched.backfill]
    with world.instance() as instance:
        for run_id in run_ids:
            run = instance.get_run_by_id(run_id)
            assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS, run_id
        # every session's materialisations are in the instance's index, on PostgreSQL
        partitions = instance.get_materialized_partitions(dg.AssetKey("order_ticket"))
    assert {*BACKFILL, SESSION} <= partitions
    # one run at a time, by the event log the runs wrote to PostgreSQL
    events = _run_events(world, [*run_ids, *launched.daily])
    spans = sorted((e["start"], e["end"]) for e in events.values())
    assert len(spans) == 5
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans))


def test_the_daemon_keeps_its_state_and_the_sensor_ticks_in_postgres(
    world: World, launched: Launched
) -> None:
    with world.instance() as instance:
        beating = set(instance.get_daemon_heartbeats())
        assert set(instance.get_required_daemon_types()) <= beating
        assert {"SCHEDULER", "SENSOR", "QUEUED_RUN_COORDINATOR", "BACKFILL"} <= beating
        [state] = [
            s
            for s in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
            if s.instigator_name == "housekeeping"
        ]
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id)
    assert ticks and all(tick.status != TickStatus.FAILURE for tick in ticks)


def test_housekeeping_deletes_an_old_run_from_postgres(world: World, launched: Launched) -> None:
    first = launched.daily[0]  # the second daily run rewrote its session's materialisations
    assert _count(world, "event_logs", first) > 0
    assert _count(world, "asset_check_executions", first) > 0
    with world.instance() as instance:
        done = housekeep(
            instance,
            world.root,
            run_days=1,
            staging_days=0,
            keep_sessions=0,
            now=datetime.now(UTC) + timedelta(days=2),
        )
        assert first in done.runs
        assert instance.get_run_by_id(first) is None
        assert instance.get_runs()  # the runs holding the latest materialisations stay
    for table in ("runs", "event_logs", "asset_check_executions"):
        assert _count(world, table, first) == 0, table
