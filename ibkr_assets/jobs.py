"""Jobs and schedules: the daily job at 14:00 Europe/Bucharest on NYSE sessions.

* ``daily_pipeline`` materialises every daily asset for one session (stages 1–9);
* ``ingest_features`` only stages 1–3 (ingest, feature matrix and its checks, alpha scores,
  portfolio snapshot) — what the ingest benchmark and a data-only backfill run;
* ``weekly_backtest`` materialises the weekly assets (the rolling backtest) for one week;
* ``daily_schedule`` fires Monday–Friday at 14:00 Bucharest (08:00 New York, before the open)
  and requests the partition of that day's NYSE session; on an exchange holiday it skips, with
  the reason in the tick's log. It is on by default (like the alert sensors): with auto-submit
  off, a run writes the order ticket but sends nothing;
* ``weekly_schedule`` fires on Saturdays at 10:00 New York and replays the week just closed
  (the partition of that Monday): the markets are shut and the daily job is not running.
"""

from __future__ import annotations

from datetime import datetime

import dagster as dg

from ibkr_assets.partitions import (
    DAILY_PARTITIONS,
    NEW_YORK,
    WEEKLY_PARTITIONS,
    is_session,
    week_start,
)

#: Asset groups of stages 1–3 (see ibkr_assets/assets).
INGEST_GROUPS = ("ingest", "features", "signals", "portfolio")
#: The weekly assets (rolling backtest) are partitioned by week, not by session.
WEEKLY_GROUP = "backtest"

DAILY_JOB_NAME = "daily_pipeline"

#: Every step of a run in one process: one IB connection (one clientId) per run, as IB expects,
#: instead of one per step process, and no interpreter start-up per step (a daily run in the UI
#: took 295 s with the multiprocess executor, about 50 s in-process).
RUN_EXECUTOR = dg.in_process_executor
INGEST_JOB_NAME = "ingest_features"
WEEKLY_JOB_NAME = "weekly_backtest"

daily_pipeline = dg.define_asset_job(
    DAILY_JOB_NAME,
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups(WEEKLY_GROUP),
    partitions_def=DAILY_PARTITIONS,
    executor_def=RUN_EXECUTOR,
    description="Every daily stage for one NYSE session: ingest to decision journal.",
)

ingest_features = dg.define_asset_job(
    INGEST_JOB_NAME,
    selection=dg.AssetSelection.groups(*INGEST_GROUPS),
    partitions_def=DAILY_PARTITIONS,
    executor_def=RUN_EXECUTOR,
    description="Stages 1–3 for one NYSE session: ingest, feature matrix, alpha scores.",
)

weekly_backtest = dg.define_asset_job(
    WEEKLY_JOB_NAME,
    selection=dg.AssetSelection.groups(WEEKLY_GROUP),
    partitions_def=WEEKLY_PARTITIONS,
    executor_def=RUN_EXECUTOR,
    description="The rolling backtest: the last six months of daily decisions replayed.",
)


@dg.schedule(
    cron_schedule="0 14 * * 1-5",
    execution_timezone="Europe/Bucharest",
    job=daily_pipeline,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def daily_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    """Run the day's NYSE session at 14:00 Bucharest; skip exchange holidays."""
    scheduled = context.scheduled_execution_time or datetime.now(NEW_YORK)
    session = scheduled.astimezone(NEW_YORK).date().isoformat()
    if not is_session(session):
        return dg.SkipReason(f"{session} is not an NYSE session (exchange holiday)")
    return dg.RunRequest(run_key=session, partition_key=session)


@dg.schedule(
    cron_schedule="0 10 * * 6",
    execution_timezone="America/New_York",
    job=weekly_backtest,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def weekly_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Saturday 10:00 New York: replay the six months up to the week's last close."""
    scheduled = context.scheduled_execution_time or datetime.now(NEW_YORK)
    week = week_start(scheduled.astimezone(NEW_YORK).date()).isoformat()
    return dg.RunRequest(run_key=week, partition_key=week)


JOBS: list[dg.UnresolvedAssetJobDefinition] = [daily_pipeline, ingest_features, weekly_backtest]
SCHEDULES: list[dg.ScheduleDefinition] = [daily_schedule, weekly_schedule]
