"""Sensors: alerts on failed asset checks, failed runs, and the orders of each session.

* ``asset_check_failure_alerts`` reads new asset-check evaluations from the event log and alerts
  on each failure (data-quality expectations, the compliance gate) with its metadata. The gate's
  own failure is also alerted from inside the run by ``risk_report`` — with the recommendation
  report's path — so this sensor skips those to avoid a double page.
* ``run_failure_alerts`` alerts on any failed run of the code location with the error.
* ``order_summary_alerts`` follows each session's orders (:mod:`ibkr_assets.order_watch`):
  a summary when an order ticket is written (orders queued); when orders are submitted, an
  error alert for each order IB rejected or the order guard refused (the order and the reason),
  then a summary of queued, submitted, filled, partially filled, working and rejected/cancelled
  orders with their USD values, read from IB's order statuses and executions. It keeps asking
  IB (every ``IBKR_ALERT_ORDER_POLL_SECONDS``, through its own read-only connection) until
  every order of the session is done or the session closed: each order IB cancels or makes
  Inactive later (a DAY order expiring unfilled, a cancel from elsewhere) raises its own alert,
  and a final summary goes out with the session's fills.

All three read the event log with a cursor (the last storage id seen), so an alert goes out
once; the order sensor's cursor also keeps, for each recent session, the orders already alerted
(a rerun of the session, or the next poll, never pages twice for one order).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from ibkr_assets.broker.errors import BrokerError
from ibkr_assets.checks.compliance import COMPLIANCE_CHECKS
from ibkr_assets.order_watch import (
    NOT_ACCEPTED,
    SessionOrder,
    session_orders,
    shares,
    summary_text,
    tallies,
)
from ibkr_assets.partitions import nyse_calendar
from ibkr_assets.resources.alerts import AlertDeliveryError, AlertResource
from ibkr_assets.resources.ib import IBResource
from ibkr_assets.resources.storage import StorageResource

ORDER_ASSETS = ("order_ticket", "submitted_orders")
#: The order watch connects as the pipeline's clientId plus this, read-only, so it never takes
#: a running pipeline's connection (IB error 326, "client id is already in use").
WATCH_CLIENT_ID_OFFSET = 100
#: How long after the session's close the watch keeps asking IB (DAY orders end at the close).
WATCH_AFTER_CLOSE = timedelta(minutes=30)
#: How long a session's alerted orders stay in the cursor after its watch ended (reruns).
KEEP_SESSIONS = timedelta(days=10)
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


# -- orders ---------------------------------------------------------------------------------

#: One session under watch, as kept in the cursor: refs already alerted, whether IB is still
#: asked about it, whether a submission summary is due, and when IB was last asked (UTC epoch s).
Watch = dict[str, Any]


def _load_cursor(cursor: str | None) -> tuple[int, dict[str, Watch]]:
    """(last storage id seen, sessions under watch) from the sensor's cursor."""
    if not cursor:
        return 0, {}
    if cursor.isdigit():  # the cursor of the sensor before it followed orders at IB
        return int(cursor), {}
    state = json.loads(cursor)
    return int(state["after"]), state["sessions"]


def _new_order_materializations(
    context: dg.SensorEvaluationContext, after: int
) -> list[dg.EventLogRecord]:
    return sorted(
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


def _read_report(
    context: dg.SensorEvaluationContext, storage: StorageResource, kind: str, day: str
) -> dict[str, Any] | None:
    path = storage.report_path(kind, day, "json")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        context.log.error(
            f"{day}: {kind} was materialised but {path} is missing; its orders cannot be "
            "followed — re-materialise the session's order_ticket and submitted_orders"
        )
        return None


def _ticket_orders(
    context: dg.SensorEvaluationContext, storage: StorageResource, day: str
) -> list[dict[str, Any]]:
    """The orders of the session's ticket (none when the ticket file is missing)."""
    return (_read_report(context, storage, "order_ticket", day) or {}).get("orders", [])


def _order_alert(day: str, order: SessionOrder) -> dict[str, str]:
    """The alert for an order IB rejected or cancelled, or the guard refused."""
    if order.outcome == "refused":
        what, why = "refused by the order guard", "limit"
    elif order.outcome == "rejected":
        what, why = "rejected by IB", "IB's reason"
    elif order.status == "Inactive":
        what, why = "made inactive by IB", "IB's reason"
    else:
        what, why = "cancelled at IB", "IB's reason"
    filled = f", {shares(order.filled)} of {shares(order.quantity)} filled" if order.filled else ""
    return {
        "subject": f"Order {what}: {order.describe()} [{day}]",
        "body": (
            f"order_ref {order.order_ref}\n"
            f"status {order.status}{filled}; unfilled value USD {order.unfilled_value:,.2f}\n"
            f"{why}: {order.message or 'none given'}"
        ),
        "severity": "error",
    }


def _submission_alerts(
    context: dg.SensorEvaluationContext,
    alerts: AlertResource,
    storage: StorageResource,
    day: str,
    sessions: dict[str, Watch],
) -> int:
    """Alert each order the submission could not place, and put the session under watch.
    Returns the number of alerts sent."""
    report = _read_report(context, storage, "submitted_orders", day)
    if report is None or not report.get("auto_submit") or not report["orders"]:
        return 0  # auto-submit off, or an empty ticket: nothing went anywhere
    rows = report["orders"]
    fresh = [r for r in rows if r["outcome"] in ("placed", *NOT_ACCEPTED)]
    if day in sessions and not fresh:
        return 0  # a rerun that found every order already at IB: the watch goes on as it was
    watch = sessions.setdefault(day, {"alerted": [], "open": True, "due": True, "polled": 0.0})
    watch.update(open=True, due=True)
    sent = 0
    for order in session_orders(rows, _ticket_orders(context, storage, day), [], []):
        if order.outcome in NOT_ACCEPTED and order.order_ref not in watch["alerted"]:
            _deliver(context, alerts, **_order_alert(day, order))
            watch["alerted"].append(order.order_ref)
            sent += 1
    return sent


def _session_over(day: str, at: datetime) -> bool:
    close = nyse_calendar().session_close(day).to_pydatetime()
    return at >= close + WATCH_AFTER_CLOSE


def _follow(
    context: dg.SensorEvaluationContext,
    alerts: AlertResource,
    ib: IBResource,
    storage: StorageResource,
    due: dict[str, Watch],
) -> int:
    """Ask IB once for its orders and executions, then, for each session under watch: alert
    every order IB ended unfilled that was not alerted yet, and send the summary when one is
    due (after a submission) or the session's orders are all done. Returns the alerts sent."""
    fields = {name: getattr(ib, name) for name in IBResource.model_fields}
    watcher = IBResource(
        **{**fields, "client_id": ib.client_id + WATCH_CLIENT_ID_OFFSET, "readonly": True}
    )
    try:
        broker = watcher.get_broker()
        statuses = [*broker.completed_orders(ib.account), *broker.open_orders(ib.account)]
        executions = broker.executions(ib.account)
        at = broker.now()
    except BrokerError as exc:
        context.log.error(f"order watch: cannot read the orders at IB ({exc}); next tick retries")
        return 0
    finally:
        watcher.close()
    sent = 0
    for day, watch in due.items():
        report = _read_report(context, storage, "submitted_orders", day)
        if report is None:
            watch.update(open=False, due=False)
            continue
        ticket = _ticket_orders(context, storage, day)
        orders = session_orders(report["orders"], ticket, statuses, executions)
        for order in orders:
            if order.ended_unfilled and order.order_ref not in watch["alerted"]:
                _deliver(context, alerts, **_order_alert(day, order))
                watch["alerted"].append(order.order_ref)
                sent += 1
        finished = all(o.is_done for o in orders) or _session_over(day, at)
        if finished or watch["due"]:
            _deliver(context, alerts, **_summary_alert(day, ticket, orders, at, finished))
            sent += 1
        watch.update(open=not finished, due=False, polled=datetime.now(UTC).timestamp())
    return sent


def _summary_alert(
    day: str,
    ticket: Sequence[dict[str, Any]],
    orders: Sequence[SessionOrder],
    at: datetime,
    finished: bool,
) -> dict[str, str]:
    counts = tallies(ticket, orders)
    trouble = counts["rejected_cancelled"].orders + counts["unknown"].orders
    partial = counts["partially_filled"].orders
    return {
        "subject": (
            f"Orders {'done' if finished else 'submitted'} [{day}]: "
            f"{counts['submitted'].orders} of {counts['queued'].orders} at IB, "
            f"{counts['filled'].orders} filled, {partial} partially filled, "
            f"{counts['rejected_cancelled'].orders} rejected/cancelled"
        ),
        "body": summary_text(ticket, orders, at),
        "severity": "warning" if trouble or (finished and partial) else "info",
    }


def _prune(sessions: dict[str, Watch], now: float) -> None:
    """Forget sessions whose watch ended more than :data:`KEEP_SESSIONS` ago (``now``: UTC
    epoch seconds)."""
    for day in [d for d, w in sessions.items() if not w["open"]]:
        if now - sessions[day]["polled"] > KEEP_SESSIONS.total_seconds():
            del sessions[day]


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def order_summary_alerts(
    context: dg.SensorEvaluationContext,
    alerts: AlertResource,
    ib: IBResource,
    storage: StorageResource,
) -> dg.SkipReason:
    """Orders queued and submitted, followed at IB until done: an alert for each order IB
    rejects or cancels (or the guard refuses), a summary at submission and one at the end."""
    after, sessions = _load_cursor(context.cursor)
    records = _new_order_materializations(context, after)
    sent = 0
    for record in records:
        mat = record.asset_materialization
        day = mat.partition or "-"
        if mat.asset_key.path[-1] == "submitted_orders":
            sent += _submission_alerts(context, alerts, storage, day, sessions)
            continue
        count = mat.metadata.get("orders")
        if count is not None and not count.value:
            continue  # an empty ticket: nothing queued
        _deliver(
            context,
            alerts,
            subject=f"Orders queued [{day}]",
            body=_metadata_text(mat.metadata),
            severity="info",
        )
        sent += 1
    now = datetime.now(UTC)
    due = {
        day: watch
        for day, watch in sessions.items()
        if watch["open"]
        and (watch["due"] or now.timestamp() - watch["polled"] >= alerts.order_poll_seconds)
    }
    if due:
        sent += _follow(context, alerts, ib, storage, due)
    _prune(sessions, now.timestamp())
    last = max([after, *(r.storage_id for r in records)])
    context.update_cursor(json.dumps({"after": last, "sessions": sessions}, sort_keys=True))
    watching = sorted(day for day, watch in sessions.items() if watch["open"])
    return dg.SkipReason(
        f"{sent} order alert(s) sent; following at IB: {', '.join(watching) or 'none'}"
    )


SENSORS: list[dg.SensorDefinition] = [
    asset_check_failure_alerts,
    run_failure_alerts,
    order_summary_alerts,
]
