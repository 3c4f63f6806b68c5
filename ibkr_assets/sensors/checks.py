"""``asset_check_failure_alerts``: an alert on each failed asset check (data-quality
expectations on ``feature_matrix``) with its partition and metadata, once the run that evaluated
it has ended (succeeded, failed or was cancelled).

It follows the instance's run-end events by storage id (``fetch_run_status_changes``, served from
one global sequence by every event log storage: the index shard of the run-sharded SQLite storage
the project ships, the events table of Postgres) and reads each ended run's check evaluations.
The compliance gate's own failure is alerted from inside the run by ``risk_report`` — with the
recommendation report's path — so this sensor skips the gate's checks: one alert per breach, not
two. It starts from the instance's latest run end when first evaluated (as Dagster's run-status
sensors do): switching it on never pages about old runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import dagster as dg

from ibkr_assets.checks.compliance import COMPLIANCE_CHECKS
from ibkr_assets.resources.alerts import AlertResource
from ibkr_assets.sensors.alerting import SENSOR_INTERVAL_S, deliver, metadata_text, run_line

GATED_ASSET = dg.AssetKey("risk_report")
#: The run-status events after which a run's check evaluations are final.
RUN_ENDS = (
    dg.DagsterEventType.RUN_SUCCESS,
    dg.DagsterEventType.RUN_FAILURE,
    dg.DagsterEventType.RUN_CANCELED,
)
#: Run ends of each kind read per evaluation (the rest on the next one).
RUN_ENDS_PER_TICK = 100


def _latest_run_end(instance: dg.DagsterInstance) -> int:
    """The storage id of the instance's latest run end (-1 when no run ever ended)."""
    ids = [
        record.storage_id
        for kind in RUN_ENDS
        for record in instance.fetch_run_status_changes(kind, limit=1).records
    ]
    return max(ids, default=-1)


def _run_ends_after(
    instance: dg.DagsterInstance, after: int
) -> tuple[list[dg.EventLogRecord], int]:
    """The run ends (success, failure, cancellation) after storage id ``after``, oldest first,
    and the storage id to continue after. When one kind fills its page, the others are cut at
    its last record, so nothing beyond the new cursor is read now and skipped later."""
    pages = [
        instance.fetch_run_status_changes(
            dg.RunStatusChangeRecordsFilter(kind, after_storage_id=after),
            limit=RUN_ENDS_PER_TICK,
            ascending=True,
        )
        for kind in RUN_ENDS
    ]
    records = sorted((r for page in pages for r in page.records), key=lambda r: r.storage_id)
    full = [page.records[-1].storage_id for page in pages if page.has_more]
    if full:
        records = [r for r in records if r.storage_id <= min(full)]
    return records, (records[-1].storage_id if records else after)


def _failed_checks(instance: dg.DagsterInstance, run_id: str) -> Iterable[dg.AssetCheckEvaluation]:
    """The failed check evaluations of a run, but the compliance gate's (alerted in-run)."""
    for record in instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ).records:
        evaluation = record.event_log_entry.dagster_event.asset_check_evaluation_data
        if not evaluation.passed and not _is_gate(evaluation):
            yield evaluation


def _is_gate(evaluation: dg.AssetCheckEvaluation) -> bool:
    return evaluation.asset_key == GATED_ASSET and evaluation.check_name in COMPLIANCE_CHECKS


def _check_cursor(cursor: str | None) -> int | None:
    """The storage id of the last run end read, or None before the first evaluation (or after
    the sensor read check evaluations by their own ids, before it followed run ends)."""
    if not cursor or not cursor.startswith("{"):
        return None
    return int(json.loads(cursor)["run_ends_after"])


@dg.sensor(
    minimum_interval_seconds=SENSOR_INTERVAL_S, default_status=dg.DefaultSensorStatus.RUNNING
)
def asset_check_failure_alerts(
    context: dg.SensorEvaluationContext, alerts: AlertResource
) -> dg.SkipReason:
    """Alert on every failed asset check of each run that ended (except the compliance gate,
    alerted in-run), with the session and the check's metadata."""
    instance = context.instance
    after = _check_cursor(context.cursor)
    if after is None:
        after = _latest_run_end(instance)
        context.update_cursor(json.dumps({"run_ends_after": after}))
        return dg.SkipReason(f"started: alerting on runs that end after event {after}")
    ends, last = _run_ends_after(instance, after)
    sent = 0
    for end in ends:
        run = instance.get_run_by_id(end.run_id)
        for evaluation in _failed_checks(instance, end.run_id):
            asset = evaluation.asset_key.to_user_string()
            deliver(
                context,
                alerts,
                subject=(
                    f"Check failed: {asset}.{evaluation.check_name} [{evaluation.partition or '-'}]"
                ),
                body=(
                    f"{run_line(run, end.run_id)}\n{evaluation.description or ''}\n"
                    f"{metadata_text(evaluation.metadata)}"
                ).strip(),
                severity=(
                    "error" if evaluation.severity == dg.AssetCheckSeverity.ERROR else "warning"
                ),
            )
            sent += 1
    context.update_cursor(json.dumps({"run_ends_after": last}))
    return dg.SkipReason(f"{sent} check alert(s) sent for {len(ends)} ended run(s)")


__all__ = ["asset_check_failure_alerts"]
