"""Housekeeping: what a data root may forget, so it does not grow without bound.

Every daily run adds to the Dagster instance under ``<data root>/.dagster`` (the run's row, its
event log — an SQLite file per run plus rows in the index — and its captured compute logs) and
writes the session's raw payloads under ``staging/YYYY-MM-DD/``; nothing reclaimed them, so a
rerun cost about 1.4 MB of instance storage for good. :func:`housekeep`, called by
``ibkr-agent run`` after each run and by the ``housekeeping`` sensor under the daemon
(:mod:`ibkr_assets.sensors.housekeeping`), deletes:

* **runs** created more than ``run_days`` days ago (``IBKR_RETENTION_DAYS``, default 30), with
  their events (``DagsterInstance.delete_run``), their per-run event-log file and their compute
  logs. Kept whatever their age: runs not finished (queued, starting, in progress, cancelling),
  each run holding the latest materialisation of an asset (what the UI and the next run read as
  the asset's current state), and the runs of the newest ``keep_sessions`` partitions of the
  daily job (the evidence ``ibkr-agent promote`` reads: ``IBKR_PROMOTION_SESSIONS``). Dagster OSS
  has no run retention of its own; its ``retention:`` block (``dagster.yaml``) purges only the
  daemon's schedule and sensor ticks.
* **staging payloads** (``staging/YYYY-MM-DD/*``, written by the ingest stage and read by no
  later stage) last written more than ``staging_days`` days ago
  (``IBKR_STAGING_RETENTION_DAYS``, default 14); the newest partition's directory is kept.

Retention 0 keeps everything of that kind. Never touched: the decision journal, the metrics,
the evidence cache, features, positions, reports, plots and the warehouse — files a later run,
the journal's verification or an audit reads.

The horizons are modelling choices, not measured figures: 30 days covers a month of reruns and
the 10 sessions a promotion reads by default; 14 days of raw payloads covers two weeks of
"what did IB send that day" questions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

# Dagster's public API deletes a run's events but leaves its asset-check executions in the
# index, the SQLite file of its event log and its captured compute logs; these name them.
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.local_compute_log_manager import LocalComputeLogManager

from ibkr_assets.jobs import DAILY_JOB_NAME
from ibkr_assets.settings import Settings

#: The run tag holding a run's partition key.
PARTITION_TAG = "dagster/partition"
#: Statuses of a run that has ended; no other run is ever deleted.
FINISHED = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
#: Runs fetched per page while looking for old ones.
_PAGE = 200


@dataclass(frozen=True)
class Reclaimed:
    """What :func:`housekeep` deleted: run ids, staging files and bytes freed on disk."""

    runs: tuple[str, ...] = ()
    staging_files: tuple[Path, ...] = ()
    bytes_freed: int = 0

    def summary(self) -> str:
        """One line for the operator: counts and MB freed (empty when nothing was deleted)."""
        if not self.runs and not self.staging_files:
            return ""
        return (
            f"housekeeping: {len(self.runs)} old run(s) and {len(self.staging_files)} staging "
            f"file(s) deleted, {self.bytes_freed / 1e6:.1f} MB freed"
        )


def housekeep(
    instance: dg.DagsterInstance,
    data_root: Path,
    run_days: int,
    staging_days: int,
    keep_sessions: int,
    now: datetime | None = None,
) -> Reclaimed:
    """Delete the runs older than ``run_days`` days and the staging payloads older than
    ``staging_days`` days (0 = keep that kind), as the module docstring says, measured back from
    ``now`` (default: the current time, UTC). ``keep_sessions``: the newest daily partitions
    whose runs are always kept."""
    now = now or datetime.now(UTC)
    runs: tuple[str, ...] = ()
    freed = 0
    if run_days > 0:
        runs, freed = _delete_runs(instance, now - timedelta(days=run_days), keep_sessions)
    staging: tuple[Path, ...] = ()
    if staging_days > 0:
        staging, staged = _delete_staging(data_root / "staging", now - timedelta(days=staging_days))
        freed += staged
    return Reclaimed(runs=runs, staging_files=staging, bytes_freed=freed)


def housekeep_as_configured(instance: dg.DagsterInstance, settings: Settings) -> Reclaimed:
    """:func:`housekeep` on ``settings``' data root with their retention
    (``IBKR_RETENTION_DAYS``, ``IBKR_STAGING_RETENTION_DAYS``) and promotion window
    (``IBKR_PROMOTION_SESSIONS``): what ``ibkr-agent run`` and the housekeeping sensor do."""
    return housekeep(
        instance,
        Path(settings.broker.data_dir),
        run_days=settings.run.retention_days,
        staging_days=settings.run.staging_retention_days,
        keep_sessions=settings.promotion.promotion_sessions,
    )


def _delete_runs(
    instance: dg.DagsterInstance, horizon: datetime, keep_sessions: int
) -> tuple[tuple[str, ...], int]:
    """Delete the finished runs created before ``horizon`` but those :func:`_kept_runs` names;
    the deleted run ids and the bytes their event-log files and compute logs held."""
    kept = _kept_runs(instance, keep_sessions)
    old = dg.RunsFilter(created_before=horizon, statuses=list(FINISHED))
    doomed: list[str] = []
    cursor = None
    while records := instance.get_run_records(filters=old, limit=_PAGE, cursor=cursor):
        cursor = records[-1].dagster_run.run_id
        doomed += [r.dagster_run.run_id for r in records if r.dagster_run.run_id not in kept]
    freed = 0
    for run_id in doomed:  # after paging: a cursor must name a run that still exists
        instance.delete_run(run_id)
        freed += _delete_run_files(instance, run_id)
    return tuple(doomed), freed


def _kept_runs(instance: dg.DagsterInstance, keep_sessions: int) -> set[str]:
    """Runs kept whatever their age: the latest materialisation of each asset, the latest
    evaluation of each asset check, and every run of the newest ``keep_sessions`` partitions of
    the daily job."""
    kept = set()
    for key in instance.get_asset_keys():
        event = instance.get_latest_materialization_event(key)
        if event is not None:
            kept.add(event.run_id)
    storage = instance.event_log_storage
    if isinstance(storage, SqlEventLogStorage):
        table = AssetCheckExecutionsTable
        latest = sa.select(sa.func.max(table.c.id)).group_by(table.c.asset_key, table.c.check_name)
        with storage.index_connection() as conn:
            kept |= {
                row[0]
                for row in conn.execute(sa.select(table.c.run_id).where(table.c.id.in_(latest)))
            }
    daily = instance.get_run_records(filters=dg.RunsFilter(job_name=DAILY_JOB_NAME))
    sessions = sorted({r.dagster_run.tags.get(PARTITION_TAG, "") for r in daily} - {""})
    newest = set(sessions[-keep_sessions:]) if keep_sessions > 0 else set()
    kept |= {r.dagster_run.run_id for r in daily if r.dagster_run.tags.get(PARTITION_TAG) in newest}
    return kept


def _delete_run_files(instance: dg.DagsterInstance, run_id: str) -> int:
    """Delete what a deleted run leaves behind: its asset-check executions in the index, the
    SQLite file of its event log (when the instance keeps one per run) and its captured compute
    logs; the bytes of the files."""
    freed = 0
    storage = instance.event_log_storage
    if isinstance(storage, SqlEventLogStorage):
        table = AssetCheckExecutionsTable
        with storage.index_connection() as conn:
            conn.execute(table.delete().where(table.c.run_id == run_id))
    if isinstance(storage, SqliteEventLogStorage):
        shard = Path(storage.path_for_shard(run_id))
        for path in (shard, shard.with_suffix(".db-wal"), shard.with_suffix(".db-shm")):
            if path.is_file():
                freed += path.stat().st_size
                path.unlink()
        # as SqliteEventLogStorage.wipe does: a later read of the run id creates its file anew
        # with the tables, instead of an empty file ("no such table: event_logs")
        storage._initialized_dbs.discard(run_id)
    logs = instance.compute_log_manager
    if isinstance(logs, LocalComputeLogManager):
        # <base>/<run_id>/: the parent of any log the run could have captured
        directory = Path(logs.get_captured_local_path([run_id, "step"], "out")).parent
        if directory.is_dir():
            freed += _size(directory)
            logs.delete_logs(prefix=[run_id])
    return freed


def _delete_staging(staging: Path, horizon: datetime) -> tuple[tuple[Path, ...], int]:
    """Delete the files under ``staging/<day>/`` last written before ``horizon``, and the
    directories they leave empty; the newest day's directory is kept whole. The deleted files
    and their bytes."""
    days = sorted(p for p in staging.iterdir() if p.is_dir()) if staging.is_dir() else []
    cutoff = horizon.timestamp()
    deleted: list[Path] = []
    freed = 0
    for day in days[:-1]:
        for path in sorted(day.rglob("*")):
            stat = path.stat()
            if path.is_file() and stat.st_mtime < cutoff:
                path.unlink()
                deleted.append(path)
                freed += stat.st_size
        for directory in sorted((d for d in day.rglob("*") if d.is_dir()), reverse=True):
            if not any(directory.iterdir()):
                directory.rmdir()
        if not any(day.iterdir()):
            day.rmdir()
    return tuple(deleted), freed


def _size(path: Path) -> int:
    """Bytes of the files under ``path``."""
    return sum(os.path.getsize(p) for p in path.rglob("*") if p.is_file())
