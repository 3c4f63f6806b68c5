"""Housekeeping (ibkr_assets/housekeeping.py) on an on-disk instance built from the project's
dagster.yaml: old finished runs go with their event logs and compute logs, recent and unfinished
ones and the latest materialisation stay, old staging payloads go, and the instance stops
growing across reruns."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.scheduler.instigation import TickStatus
from dagster._core.storage.runs.schema import RunsTable

from ibkr_assets.housekeeping import housekeep
from ibkr_assets.jobs import DAILY_JOB_NAME
from ibkr_assets.sensors.housekeeping import housekeeping

PROJECT_CONFIG = Path(__file__).resolve().parents[2] / "dagster.yaml"
DAYS = 30


@dg.asset
def tiny() -> int:
    """One number, so a run writes a run row, an event log and a materialisation."""
    print("computing tiny")  # captured: the run's compute logs
    return 1


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    home = tmp_path / ".dagster"
    home.mkdir()
    shutil.copy(PROJECT_CONFIG, home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


@dg.asset_check(asset=tiny)
def tiny_is_one(tiny: int) -> dg.AssetCheckResult:
    """A check, so a run leaves an asset-check execution in the index."""
    return dg.AssetCheckResult(passed=tiny == 1)


def _rerun(instance: dg.DagsterInstance, tags: dict[str, str] | None = None) -> str:
    result = dg.materialize([tiny, tiny_is_one], instance=instance, tags=tags)
    assert result.success
    return result.run_id


def _bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _later(days: float) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


def test_old_runs_go_with_their_logs_recent_running_and_latest_stay(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    old = [_rerun(instance) for _ in range(3)]
    running = dg.DagsterRun(
        job_name="tiny_job", run_id="f" * 36, status=dg.DagsterRunStatus.STARTED
    )
    instance.add_run(running)
    horizon = datetime.now(UTC)
    recent = [_rerun(instance) for _ in range(2)]
    runs_dir = Path(instance.root_directory) / "history" / "runs"
    logs_dir = Path(instance.root_directory) / "storage"
    assert all((runs_dir / f"{r}.db").exists() and (logs_dir / r).is_dir() for r in old)

    done = housekeep(
        instance,
        tmp_path,
        run_days=DAYS,
        staging_days=0,
        keep_sessions=0,
        now=_later(DAYS) + (horizon - datetime.now(UTC)),
    )

    assert set(done.runs) == set(old)
    assert done.bytes_freed > 0
    for run_id in old:
        assert instance.get_run_by_id(run_id) is None
        assert not (runs_dir / f"{run_id}.db").exists()
        assert not (logs_dir / run_id).exists()
    # nor does the index: the materialisations left are the kept runs'
    records = instance.fetch_materializations(dg.AssetKey("tiny"), limit=100).records
    assert {r.run_id for r in records} == set(recent)
    checks = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("tiny"), "tiny_is_one"), limit=100
    )
    assert {c.run_id for c in checks} == set(recent)
    for run_id in [*recent, running.run_id]:
        assert instance.get_run_by_id(run_id) is not None
    assert instance.all_logs(recent[-1])


def test_the_latest_materialisation_and_the_newest_sessions_are_kept(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    daily_job = dg.Definitions(
        assets=[tiny], jobs=[dg.define_asset_job(DAILY_JOB_NAME, selection=[tiny])]
    ).resolve_job_def(DAILY_JOB_NAME)
    sessions = ["2024-06-03", "2024-06-04", "2024-06-05"]
    daily = {
        s: daily_job.execute_in_process(instance=instance, tags={"dagster/partition": s}).run_id
        for s in sessions
    }
    other = [_rerun(instance) for _ in range(2)]  # the last one holds tiny's latest materialisation

    done = housekeep(
        instance, tmp_path, run_days=DAYS, staging_days=0, keep_sessions=2, now=_later(DAYS + 1)
    )

    assert set(done.runs) == {daily["2024-06-03"], other[0]}
    kept = {r for r in [*daily.values(), *other] if instance.get_run_by_id(r) is not None}
    assert kept == {daily["2024-06-04"], daily["2024-06-05"], other[1]}
    latest = instance.get_latest_materialization_event(dg.AssetKey("tiny"))
    assert latest is not None and latest.run_id == other[1]


def test_the_instance_stops_growing_across_reruns(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    home = Path(instance.root_directory)
    _rerun(instance)
    grown = [_bytes(home)]
    for _ in range(4):
        _rerun(instance)
        grown.append(_bytes(home))
    per_rerun = (grown[-1] - grown[0]) / 4
    assert per_rerun > 10_000  # without housekeeping each rerun leaves its event-log file

    kept = []
    for _ in range(6):
        _rerun(instance)
        housekeep(
            instance, tmp_path, run_days=DAYS, staging_days=0, keep_sessions=0, now=_later(DAYS + 1)
        )
        kept.append(_bytes(home))
    # SQLite reuses the pages deleted rows freed: after the first pass no rerun adds a run's worth
    assert max(kept[1:]) - kept[1] < per_rerun / 4, (per_rerun, kept)
    assert len(instance.get_run_records()) == 1


def test_old_staging_payloads_go_newest_session_and_other_files_stay(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    old = (datetime.now(UTC) - timedelta(days=20)).timestamp()
    files = {
        "staging/2024-06-03/quotes.json": old,
        "staging/2024-06-03/sub/daily_bars.parquet": old,
        "staging/2024-06-04/quotes.json": old,
        "staging/2024-06-04/headlines.json": None,  # rewritten by a rerun today
        "staging/2024-06-05/quotes.json": old,  # the newest session: kept
        "decision_log/part-0.parquet": old,
        "metrics/rolling_backtest.csv": old,
        "evidence/signal_ic.parquet": old,
        "features/2024-06-03.parquet": old,
    }
    for name, mtime in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)
        if mtime is not None:
            os.utime(path, (mtime, mtime))

    done = housekeep(instance, tmp_path, run_days=0, staging_days=14, keep_sessions=0)

    gone = {
        "staging/2024-06-03/quotes.json",
        "staging/2024-06-03/sub/daily_bars.parquet",
        "staging/2024-06-04/quotes.json",
    }
    assert {p.relative_to(tmp_path).as_posix() for p in done.staging_files} == gone
    assert {n for n in files if (tmp_path / n).exists()} == set(files) - gone
    assert not (tmp_path / "staging" / "2024-06-03").exists()
    assert done.bytes_freed == sum(len(n) for n in gone)
    assert not done.runs


def test_zero_keeps_everything(instance: dg.DagsterInstance, tmp_path: Path) -> None:
    run_id = _rerun(instance)
    _rerun(instance)
    payload = tmp_path / "staging" / "2024-06-03" / "quotes.json"
    payload.parent.mkdir(parents=True)
    payload.write_text("{}")
    os.utime(payload, (0, 0))
    (tmp_path / "staging" / "2024-06-04").mkdir()

    done = housekeep(
        instance, tmp_path, run_days=0, staging_days=0, keep_sessions=0, now=_later(400)
    )

    assert not done.runs and not done.staging_files and done.summary() == ""
    assert instance.get_run_by_id(run_id) is not None and payload.exists()


def test_the_daemon_purges_old_ticks(instance: dg.DagsterInstance) -> None:
    """dagster.yaml's ``retention:``: sensor ticks go after 30 days (skipped ones after 7),
    schedule ticks after 90; Dagster's default keeps successful ones forever."""
    sensor = instance.get_tick_retention_settings(InstigatorType.SENSOR)
    schedule = instance.get_tick_retention_settings(InstigatorType.SCHEDULE)
    assert sensor == {**dict.fromkeys(TickStatus, 30), TickStatus.SKIPPED: 7}
    assert schedule == dict.fromkeys(TickStatus, 90)


def test_the_latest_check_evaluation_is_kept(instance: dg.DagsterInstance, tmp_path: Path) -> None:
    first = _rerun(instance)
    checked = dg.materialize(
        [tiny, tiny_is_one], instance=instance, selection=dg.AssetSelection.checks(tiny_is_one)
    )
    materialised = dg.materialize([tiny], instance=instance)

    done = housekeep(
        instance, tmp_path, run_days=DAYS, staging_days=0, keep_sessions=0, now=_later(DAYS + 1)
    )

    assert done.runs == (first,)
    latest = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("tiny"), "tiny_is_one"), limit=1
    )
    assert [c.run_id for c in latest] == [checked.run_id]
    assert instance.get_run_by_id(materialised.run_id) is not None


def test_the_daemon_sensor_deletes_what_is_past_retention(
    instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IBKR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("IBKR_RETENTION_DAYS", "2")
    old, new = _rerun(instance), _rerun(instance)
    created = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=3)  # stored naive, UTC
    with instance.run_storage.connect() as conn:  # type: ignore[attr-defined]
        conn.execute(
            RunsTable.update().where(RunsTable.c.run_id == old).values(create_timestamp=created)
        )

    tick = housekeeping(dg.build_sensor_context(instance=instance))

    assert isinstance(tick, dg.SkipReason) and "1 old run(s)" in str(tick.skip_message)
    assert instance.get_run_by_id(old) is None and instance.get_run_by_id(new) is not None
