"""Jobs, schedules, and the run tags the run queue limits on.

* ``daily_pipeline`` materialises every daily asset for one session (stages 1–9);
* ``ingest_features`` only stages 1–3 (ingest, feature matrix and its checks, alpha scores,
  portfolio snapshot) — what the ingest benchmark and a data-only backfill run;
* ``weekly_backtest`` materialises the weekly assets (the rolling backtest) for one week;
* ``daily_schedule`` fires Monday–Friday at 14:00 Europe/Bucharest — 07:00 in New York, before
  the open, in winter and summer alike; both cities move their clocks, on different Sundays,
  and in the weeks between the two changes (from the second to the last Sunday of March, from
  the last Sunday of October to the first of November) it is 08:00 — and requests the
  partition of that day's NYSE session; on an exchange holiday it skips, with the reason in the
  tick's log. It is on by default (like the alert sensors): with auto-submit off, a run writes
  the order ticket but sends nothing. Its runs go ahead of queued backfill runs;
* ``weekly_schedule`` fires on Saturdays at 10:00 New York and replays the week just closed
  (the partition of that Monday): the markets are shut and the daily job is not running.

Run tags (see ``dagster.yaml`` for the queue's limits):

=================  ============================================================================
``ibkr/account``   the IB account the run uses (``IBKR_ACCOUNT``; ``primary`` when unset: the
                   connection's primary account) — on every run of every job, however started.
                   The queue runs one run per account at a time: runs of one account share its
                   IB clientId and the DuckDB warehouse, which takes one writer at a time
``ibkr/trigger``   what started the run, set by our code: ``schedule``, ``cli``
                   (``ibkr-agent run``), ``mcp`` (the MCP server's ``run_daily_pipeline``).
                   Runs launched from the UI carry none; backfill runs carry Dagster's own
                   ``dagster/backfill`` (the backfill's id)
``ibkr/process``   ``<host>:<pid>`` of an in-process run (``ibkr-agent run``), so a later
                   command can tell a run whose process was killed from one still going
=================  ============================================================================
"""

from __future__ import annotations

import os
import socket
from datetime import datetime
from typing import Literal

import dagster as dg

from ibkr_assets.partitions import NEW_YORK, is_session, week_start
from ibkr_assets.settings import load_settings

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

# -- run tags ---------------------------------------------------------------------------------
ACCOUNT_TAG = "ibkr/account"
TRIGGER_TAG = "ibkr/trigger"
PROCESS_TAG = "ibkr/process"
#: Dagster's tag of the runs of a backfill (its id).
BACKFILL_TAG = "dagster/backfill"
#: The account tag's value when no account is configured (the connection's primary account).
PRIMARY_ACCOUNT = "primary"
Trigger = Literal["schedule", "cli", "mcp"]
#: Run statuses during which a run holds its account's slot.
IN_PROGRESS = [
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
#: Queue priority of scheduled runs (``dagster/priority``; backfill runs have 0): the session's
#: scheduled run goes ahead of a backfill waiting in the queue.
SCHEDULE_PRIORITY = "10"


def account_tag() -> str:
    """The value of ``ibkr/account`` for this process's settings (``IBKR_ACCOUNT``)."""
    return load_settings().broker.account or PRIMARY_ACCOUNT


def trigger_tags(trigger: Trigger) -> dict[str, str]:
    """The tags our code adds to a run it starts (the account comes with the job's tags)."""
    return {TRIGGER_TAG: trigger}


def in_process_tags() -> dict[str, str]:
    """The tags of a run ``ibkr-agent run`` executes in this process: the trigger named by
    ``IBKR_RUN_TRIGGER`` (``cli`` or ``mcp``; default ``cli``; anything else raises
    :class:`~ibkr_assets.errors.ConfigurationError`), the account and the process."""
    trigger = load_settings().checked("run").run.run_trigger
    return {
        TRIGGER_TAG: trigger,
        ACCOUNT_TAG: account_tag(),
        PROCESS_TAG: f"{socket.gethostname()}:{os.getpid()}",
    }


def _process_gone(run: dg.DagsterRun) -> bool:
    """True when ``run`` was executed in-process on this host by a process that has exited
    (killed before it could record the run's end). A run the daemon launched is never such a
    run, even when it re-executes one and copied its tags."""
    if run.remote_job_origin is not None:
        return False
    host, _, pid = run.tags.get(PROCESS_TAG, "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def account_run_in_progress(instance: dg.DagsterInstance, account: str) -> dg.DagsterRun | None:
    """The run of ``account`` in progress on the instance, if any — the queue's limit of one
    run per account, for runs that do not go through the queue (``ibkr-agent run``). An
    in-process run whose process is gone is marked failed (with the reason) on the way."""
    runs = instance.get_runs(
        filters=dg.RunsFilter(statuses=IN_PROGRESS, tags={ACCOUNT_TAG: account})
    )
    for run in runs:
        if _process_gone(run):
            instance.report_run_failed(
                run,
                f"the process that executed it ({run.tags[PROCESS_TAG]}) exited without "
                "recording the end of the run (killed?)",
            )
            continue
        return run
    return None


#: The tags every run of every job carries, however it is started: job ``tags`` (not
#: ``run_tags``), because the UI's launchpad and backfills copy the job's tags onto each run.
JOB_RUN_TAGS = {ACCOUNT_TAG: account_tag()}

daily_pipeline = dg.define_asset_job(
    DAILY_JOB_NAME,
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups(WEEKLY_GROUP),
    executor_def=RUN_EXECUTOR,
    tags=JOB_RUN_TAGS,
    description="Every daily stage for one NYSE session: ingest to decision journal.",
)

ingest_features = dg.define_asset_job(
    INGEST_JOB_NAME,
    selection=dg.AssetSelection.groups(*INGEST_GROUPS),
    executor_def=RUN_EXECUTOR,
    tags=JOB_RUN_TAGS,
    description="Stages 1–3 for one NYSE session: ingest, feature matrix, alpha scores.",
)

weekly_backtest = dg.define_asset_job(
    WEEKLY_JOB_NAME,
    selection=dg.AssetSelection.groups(WEEKLY_GROUP),
    executor_def=RUN_EXECUTOR,
    tags=JOB_RUN_TAGS,
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
    return dg.RunRequest(
        run_key=session,
        partition_key=session,
        tags={**trigger_tags("schedule"), "dagster/priority": SCHEDULE_PRIORITY},
    )


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
    return dg.RunRequest(run_key=week, partition_key=week, tags=trigger_tags("schedule"))


JOBS: list[dg.UnresolvedAssetJobDefinition] = [daily_pipeline, ingest_features, weekly_backtest]
SCHEDULES: list[dg.ScheduleDefinition] = [daily_schedule, weekly_schedule]
