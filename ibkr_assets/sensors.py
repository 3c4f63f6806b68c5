"""Sensors: alerts on failed asset checks, failed runs, and orders queued or sent.

* ``asset_check_failure_alerts`` reads new asset-check evaluations from the event log and alerts
  on each failure (data-quality expectations, the compliance gate) with its metadata. The gate's
  own failure is also alerted from inside the run by ``risk_report`` — with the recommendation
  report's path — so this sensor skips those to avoid a double page.
* ``run_failure_alerts`` alerts on any failed run of the code location with the error.
* ``order_summary_alerts`` sends a summary when an order ticket is written (orders queued) or
  orders are submitted to the broker.

All three read the event log with a cursor (the last storage id seen), so an alert goes out once.
"""

from __future__ import annotations

import dagster as dg

from ibkr_assets.checks.compliance import COMPLIANCE_CHECKS
from ibkr_assets.resources.alerts import AlertDeliveryError, AlertResource

ORDER_ASSETS = ("order_ticket", "submitted_orders")
GATED_ASSET = dg.AssetKey("risk_report")
#: Dagster's step keys of the gate's checks (``<asset>_<check>``).
GATE_STEPS = frozenset(f"{GATED_ASSET.path[-1]}_{name}" for name in COMPLIANCE_CHECKS)


def _new_check_evaluations(context: dg.SensorEvaluationContext) -> list[dg.EventLogRecord]:
    after = int(context.cursor) if context.cursor else None
    return list(
        context.instance.get_event_records(
            dg.EventRecordsFilter(
                event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION, after_cursor=after
            ),
            ascending=True,
            limit=200,
        )
    )


def _deliver(context: dg.SensorEvaluationContext, alerts: AlertResource, **alert) -> None:
    try:
        alerts.send(**alert)
    except AlertDeliveryError as exc:  # already logged by the resource; keep the sensor alive
        context.log.error(str(exc))


def _metadata_text(metadata: dict) -> str:
    lines = []
    for key, value in metadata.items():
        raw = getattr(value, "value", value)
        if isinstance(raw, str | int | float | bool):
            lines.append(f"- {key}: {raw}")
    return "\n".join(lines)


def _failed_only_at_the_gate(instance: dg.DagsterInstance, run_id: str) -> bool:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
    failed = {r.event_log_entry.step_key for r in records}
    return bool(failed) and failed <= GATE_STEPS


def _is_gate(evaluation: dg.AssetCheckEvaluation) -> bool:
    return evaluation.asset_key == GATED_ASSET and evaluation.check_name in COMPLIANCE_CHECKS


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def asset_check_failure_alerts(
    context: dg.SensorEvaluationContext, alerts: AlertResource
) -> dg.SkipReason:
    """Alert on every failed asset check (except the compliance gate, alerted in-run)."""
    records = _new_check_evaluations(context)
    sent = 0
    for record in records:
        evaluation = record.event_log_entry.dagster_event.asset_check_evaluation_data
        if evaluation.passed or _is_gate(evaluation):
            continue
        asset = evaluation.asset_key.to_user_string()
        partition = evaluation.partition or "-"
        _deliver(
            context,
            alerts,
            subject=f"Check failed: {asset}.{evaluation.check_name} [{partition}]",
            body=(
                f"run {record.run_id}\n"
                f"{evaluation.description or ''}\n{_metadata_text(evaluation.metadata)}"
            ).strip(),
            severity="error" if evaluation.severity == dg.AssetCheckSeverity.ERROR else "warning",
        )
        sent += 1
    if records:
        context.update_cursor(str(records[-1].storage_id))
    return dg.SkipReason(f"{sent} alert(s) sent for {len(records)} new check evaluation(s)")


@dg.run_failure_sensor(default_status=dg.DefaultSensorStatus.RUNNING)
def run_failure_alerts(context: dg.RunFailureSensorContext, alerts: AlertResource) -> None:
    """Alert when any run of the pipeline fails — except a run stopped only by the compliance
    gate, whose alert (with the recommendation report) was already sent by ``risk_report``."""
    run = context.dagster_run
    if _failed_only_at_the_gate(context.instance, run.run_id):
        return
    partition = run.tags.get("dagster/partition", "-")
    message = context.failure_event.message or "run failed"
    _deliver(
        context,
        alerts,
        subject=f"Run failed: {run.job_name} [{partition}]",
        body=f"run {run.run_id}\n{message}",
        severity="error",
    )


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def order_summary_alerts(
    context: dg.SensorEvaluationContext, alerts: AlertResource
) -> dg.SkipReason:
    """Summarise each order ticket written (orders queued) and each submission (orders sent)."""
    after = int(context.cursor) if context.cursor else 0
    records = sorted(
        (
            r
            for name in ORDER_ASSETS
            for r in context.instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(name), after_storage_id=after or None),
                limit=200,
                ascending=True,
            ).records
        ),
        key=lambda r: r.storage_id,
    )
    sent = 0
    for record in records:
        mat = record.asset_materialization
        verb = "queued" if mat.asset_key.path[-1] == "order_ticket" else "submitted"
        count = mat.metadata.get("orders" if verb == "queued" else "placed")
        if count is not None and not count.value:
            continue  # an empty ticket, or auto-submit off: nothing went anywhere
        sent += 1
        _deliver(
            context,
            alerts,
            subject=f"Orders {verb} [{mat.partition or '-'}]",
            body=_metadata_text(mat.metadata),
            severity="info",
        )
    last = max([after, *(r.storage_id for r in records)])
    if last:
        context.update_cursor(str(last))
    return dg.SkipReason(f"{sent} order summary alert(s) sent")


SENSORS: list[dg.SensorDefinition] = [
    asset_check_failure_alerts,
    run_failure_alerts,
    order_summary_alerts,
]
