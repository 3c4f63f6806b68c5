"""Freshness of the daily outputs: the order ticket and the decision journal are due by 14:30
Europe/Bucharest on every NYSE session (the daily run starts at 14:00).

The same deadline, seen twice:

* **in the UI**: :data:`DAILY_OUTPUT_FRESHNESS`, a Dagster cron freshness policy on both assets.
  The freshness daemon (part of ``dagster dev`` and of ``dagster-daemon``) marks an asset
  *failing* — late — when it was not materialised between 07:00 and 14:30 Bucharest (from about
  midnight in New York, when the session's partition opens) on a weekday, and *passing* again
  once it is. The policy knows weekdays only, not the NYSE calendar, and any partition's
  materialisation counts: on an exchange holiday it shows the assets late (nothing was due)
  until the next session's run.
* **alerted**: :func:`late_output_alerts`, a sensor that, after 14:30 Bucharest on an NYSE
  session, checks that today's partition of each asset was materialised and otherwise sends
  one alert (``alerts`` resource) naming the missing outputs and what the session's latest run
  is doing — or that the compliance gate blocked the ticket (then the gate's own alert went out
  already, and this one is a warning). One alert per session: the cursor keeps the last session
  alerted.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from ibkr_assets.jobs import WEEKLY_JOB_NAME
from ibkr_assets.partitions import is_session
from ibkr_assets.resources.alerts import AlertDeliveryError, AlertResource
from ibkr_assets.settings import load_settings

#: The daily outputs with a deadline.
DAILY_OUTPUTS = ("order_ticket", "decision_journal")
#: When they are late, local time in :data:`DEADLINE_TIMEZONE`, on an NYSE session.
DEADLINE = time(14, 30)
DEADLINE_TIMEZONE = "Europe/Bucharest"
#: How long before the deadline a materialisation counts for the day: from 07:00 Bucharest.
ON_TIME_WINDOW = timedelta(hours=7, minutes=30)
#: The UI's view of the deadline (Monday to Friday: a cron has no exchange holidays).
DAILY_OUTPUT_FRESHNESS = dg.FreshnessPolicy.cron(
    deadline_cron=f"{DEADLINE.minute} {DEADLINE.hour} * * 1-5",
    lower_bound_delta=ON_TIME_WINDOW,
    timezone=DEADLINE_TIMEZONE,
)
PARTITION_TAG = "dagster/partition"
GATE_ASSET = dg.AssetKey("risk_report")


def now() -> datetime:
    """The sensor's clock (UTC); tests pin it."""
    return datetime.now(UTC)


def session_due(at: datetime) -> str | None:
    """The session whose outputs are due at ``at``: today's (in Bucharest, the same date as in
    New York from 07:00 to 24:00) when it is an NYSE session and 14:30 has passed; else None."""
    local = at.astimezone(ZoneInfo(DEADLINE_TIMEZONE))
    if local.time() < DEADLINE or not is_session(local.date()):
        return None
    return local.date().isoformat()


def missing_outputs(instance: dg.DagsterInstance, session: str) -> list[str]:
    """The :data:`DAILY_OUTPUTS` with no materialisation of ``session``'s partition."""
    return [
        name
        for name in DAILY_OUTPUTS
        if not _materialisations(instance, dg.AssetKey(name), session)
    ]


def _materialisations(
    instance: dg.DagsterInstance, key: dg.AssetKey, session: str
) -> list[dg.EventLogRecord]:
    return list(
        instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[session]), limit=1
        ).records
    )


def blocked_by_gate(instance: dg.DagsterInstance, session: str) -> bool:
    """True when the session's latest risk report failed the compliance gate."""
    records = _materialisations(instance, GATE_ASSET, session)
    if not records:
        return False
    passed = records[0].asset_materialization.metadata.get("passed")
    return passed is not None and passed.value is False


def latest_run(instance: dg.DagsterInstance, session: str) -> str:
    """What the latest daily run of ``session`` is doing, in one line."""
    runs = [
        run
        for run in instance.get_runs(filters=dg.RunsFilter(tags={PARTITION_TAG: session}), limit=5)
        if run.job_name != WEEKLY_JOB_NAME  # a weekly partition key is a Monday's date too
    ]
    if not runs:
        return f"no run of {session} on this instance yet"
    run = runs[0]
    return f"latest run {run.run_id} ({run.job_name}): {run.status.value}"


@dg.sensor(
    # the alert sensors' interval (IBKR_ALERT_SENSOR_INTERVAL_SECONDS)
    minimum_interval_seconds=load_settings().alerts.sensor_interval_seconds,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "After 14:30 Europe/Bucharest on an NYSE session: one alert when today's order_ticket "
        "or decision_journal has not been materialised."
    ),
)
def late_output_alerts(context: dg.SensorEvaluationContext, alerts: AlertResource) -> dg.SkipReason:
    """Alert once per session when a daily output is missing after its deadline (the cursor
    holds the last session alerted; a failed delivery is retried on the next tick)."""
    at = now()
    session = session_due(at)
    if session is None:
        return dg.SkipReason(f"nothing due at {at:%Y-%m-%d %H:%M} UTC")
    if context.cursor == session:
        return dg.SkipReason(f"{session}: late outputs already alerted")
    missing = missing_outputs(context.instance, session)
    if not missing:
        return dg.SkipReason(f"{session}: {' and '.join(DAILY_OUTPUTS)} materialised")
    gate = blocked_by_gate(context.instance, session)
    why = (
        "the compliance gate blocked the order ticket (recommendation only; alerted in the run)"
        if gate
        else latest_run(context.instance, session)
    )
    try:
        alerts.send(
            subject=(
                f"Late: {', '.join(missing)} for {session} not materialised by "
                f"{DEADLINE:%H:%M} {DEADLINE_TIMEZONE}"
            ),
            body=(
                f"{why}\nThe order ticket and the decision journal are due by {DEADLINE:%H:%M} "
                f"{DEADLINE_TIMEZONE} on every NYSE session: run `ibkr-agent run --date "
                f"{session}` or launch the daily_pipeline job for partition {session}."
            ),
            severity="warning" if gate else "error",
        )
    except AlertDeliveryError as exc:  # logged by the resource already; retried next tick
        context.log.error(str(exc))
        return dg.SkipReason(f"{session}: late alert not delivered ({exc}); retrying")
    context.update_cursor(session)
    return dg.SkipReason(f"{session}: alerted late {', '.join(missing)}")


FRESHNESS_SENSORS: list[dg.SensorDefinition] = [late_output_alerts]
