"""Sensors: alerts on failed asset checks, failed runs, and the orders of each session.

Every run on the instance is seen, however it was started: from the UI, a schedule, a backfill,
``ibkr-agent run`` or the MCP launcher (the last two execute in-process, with no code-location
origin; the sensors do not filter on it).

* ``asset_check_failure_alerts`` alerts on each failed asset check (data-quality expectations on
  ``feature_matrix``) with its partition and metadata, once the run that evaluated it has ended
  (succeeded, failed or was cancelled): it follows the instance's run-end events by storage id
  (``fetch_run_status_changes``, served from one global sequence by every event log storage:
  the index shard of the run-sharded SQLite storage the project ships, the events table of
  Postgres) and reads each ended run's check evaluations. The compliance gate's own failure is
  alerted from inside the run by ``risk_report`` — with the recommendation report's path — so
  this sensor skips the gate's checks: one alert per breach, not two.
* ``run_failure_alerts`` alerts on every failed run with each failed step and its error (the
  innermost exception, not Dagster's wrapper), except a run stopped only by failed blocking
  checks: those checks were alerted on their own.
* ``order_summary_alerts`` follows each session's orders (:mod:`ibkr_assets.order_watch`):
  a summary when an order ticket is written (orders queued); when orders are submitted, an
  error alert for each order IB rejected, the order guard refused, the submission could not
  send (``not_sent``) or could not learn the fate of (``unknown``): the order, the reason and,
  for the last two, what to do (rerun the partition; check the order at IB); then a summary
  of queued, submitted, filled, partially filled, working and rejected/cancelled orders with
  their USD values, read from IB's order statuses and executions. It keeps asking
  IB (every ``IBKR_ALERT_ORDER_POLL_SECONDS``, through its own read-only connection) until
  every order of the session is done or the session closed: each order IB cancels or makes
  Inactive later (a DAY order expiring unfilled, a cancel from elsewhere) raises its own alert,
  and a final summary goes out with the session's fills.

Each sensor keeps a cursor (the last storage id it read), so an alert goes out once; the order
sensor's cursor also keeps, for each recent session, the orders already alerted (a rerun of the
session, or the next poll, never pages twice for one order). The check and run sensors start
from the instance's latest run end when first evaluated (as Dagster's run-status sensors do):
switching them on never pages about old runs. The daemon evaluates each sensor at most every
``IBKR_ALERT_SENSOR_INTERVAL_SECONDS`` seconds (60).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from ibkr_assets.broker.errors import BrokerError
from ibkr_assets.checks.compliance import COMPLIANCE_CHECKS
from ibkr_assets.jobs import ACCOUNT_TAG, BACKFILL_TAG, TRIGGER_TAG
from ibkr_assets.order_watch import (
    ALERTED_AT_SUBMISSION,
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
from ibkr_assets.settings import load_settings

ORDER_ASSETS = ("order_ticket", "submitted_orders")
#: The order watch connects as the pipeline's clientId plus this, read-only, so it never takes
#: a running pipeline's connection (IB error 326, "client id is already in use").
WATCH_CLIENT_ID_OFFSET = 100
#: How long after the session's close the watch keeps asking IB (DAY orders end at the close).
WATCH_AFTER_CLOSE = timedelta(minutes=30)
#: How long a session's alerted orders stay in the cursor after its watch ended (reruns).
KEEP_SESSIONS = timedelta(days=10)
GATED_ASSET = dg.AssetKey("risk_report")
#: Seconds between two evaluations of each alert sensor by the daemon, at least.
SENSOR_INTERVAL_S = load_settings().alerts.sensor_interval_seconds
#: The run-status events after which a run's check evaluations are final.
RUN_ENDS = (
    dg.DagsterEventType.RUN_SUCCESS,
    dg.DagsterEventType.RUN_FAILURE,
    dg.DagsterEventType.RUN_CANCELED,
)
#: Run ends of each kind read per evaluation (the rest on the next one).
RUN_ENDS_PER_TICK = 100
#: The error Dagster raises in a step whose blocking asset check failed
#: (``dagster._core.errors.DagsterAssetCheckFailedError``).
CHECK_FAILED_ERROR = "DagsterAssetCheckFailedError"


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


def _run_line(run: dg.DagsterRun | None, run_id: str) -> str:
    """``run <id> of <job>, trigger cli, account DU123`` — which run, and who started it."""
    if run is None:
        return f"run {run_id}"
    trigger = run.tags.get(TRIGGER_TAG, "ui (no trigger tag)")
    if BACKFILL_TAG in run.tags:
        trigger = f"backfill {run.tags[BACKFILL_TAG]}"
    account = run.tags.get(ACCOUNT_TAG, "-")
    return f"run {run_id} of {run.job_name}, trigger {trigger}, account {account}"


def innermost(error: Any) -> Any:
    """The error our code raised inside Dagster's wrappers around it (a
    ``SerializableErrorInfo``, or None)."""
    while error is not None and error.cause is not None:
        error = error.cause
    return error


def root_cause(error: Any) -> str:
    """The innermost error of a failure (a ``SerializableErrorInfo``): the exception our code
    raised, not Dagster's wrapper around it, as ``Type: message``."""
    error = innermost(error)
    return error.message.strip() if error is not None else "no error recorded"


# -- asset checks ---------------------------------------------------------------------------


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
            _deliver(
                context,
                alerts,
                subject=(
                    f"Check failed: {asset}.{evaluation.check_name} [{evaluation.partition or '-'}]"
                ),
                body=(
                    f"{_run_line(run, end.run_id)}\n{evaluation.description or ''}\n"
                    f"{_metadata_text(evaluation.metadata)}"
                ).strip(),
                severity=(
                    "error" if evaluation.severity == dg.AssetCheckSeverity.ERROR else "warning"
                ),
            )
            sent += 1
    context.update_cursor(json.dumps({"run_ends_after": last}))
    return dg.SkipReason(f"{sent} check alert(s) sent for {len(ends)} ended run(s)")


# -- runs -----------------------------------------------------------------------------------


def _stopped_only_by_checks(failures: Sequence[dg.DagsterEvent]) -> bool:
    """True when every failed step failed because a blocking check failed (each such check
    has its own alert: the data-quality ones from the check sensor, the gate from the run)."""
    return bool(failures) and all(
        f.step_failure_data.error is not None
        and f.step_failure_data.error.cls_name == CHECK_FAILED_ERROR
        for f in failures
    )


@dg.run_failure_sensor(
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    monitor_all_code_locations=True,  # also the in-process runs of `ibkr-agent run` (no origin)
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def run_failure_alerts(context: dg.RunFailureSensorContext, alerts: AlertResource) -> None:
    """Alert when any run fails, naming each failed step and its error (or the run's own error
    when it failed outside any step, e.g. a resource that could not start) — except a run
    stopped only by failed blocking checks, already alerted one by one."""
    run = context.dagster_run
    failures = context.get_step_failure_events()
    if _stopped_only_by_checks(failures):
        return
    partition = run.tags.get("dagster/partition", "-")
    steps = [f"- step {f.step_key}: {root_cause(f.step_failure_data.error)}" for f in failures]
    run_error = context.failure_event.job_failure_data.error
    if not failures and run_error is not None:
        steps = [f"- error: {root_cause(run_error)}"]
    where = f" at {', '.join(f.step_key or '-' for f in failures)}" if failures else ""
    message = context.failure_event.message or "run failed"
    _deliver(
        context,
        alerts,
        subject=f"Run failed: {run.job_name} [{partition}]{where}",
        body="\n".join([_run_line(run, run.run_id), *steps, message]),
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
    """The alert for an order IB rejected or cancelled, the guard refused, or the submission
    could not send or could not learn the fate of (these two say what to do)."""
    todo = ""
    if order.outcome == "refused":
        what, why = "refused by the order guard", "limit"
    elif order.outcome == "rejected":
        what, why = "rejected by IB", "IB's reason"
    elif order.outcome == "not_sent":
        what, why = "not sent", "why"
        todo = (
            f"rerun the partition {day}: it looks the order up by order_ref first and sends "
            "it only if IB has nothing of it"
        )
    elif order.outcome == "unknown":
        what, why = "fate unknown", "why"
        todo = (
            f"check at IB for an order or fills under order_ref {order.order_ref}, or rerun "
            f"the partition {day} once IB answers: it looks the order up by order_ref first and "
            "sends it only if IB has nothing of it"
        )
    elif order.status == "Inactive":
        what, why = "made inactive by IB", "IB's reason"
    else:
        what, why = "cancelled at IB", "IB's reason"
    filled = f", {shares(order.filled)} of {shares(order.quantity)} filled" if order.filled else ""
    return {
        "subject": f"Order {what}: {order.describe()} [{day}]",
        "body": (
            f"order_ref {order.order_ref}\n"
            f"outcome {order.outcome}, status {order.status}{filled}; "
            f"unfilled value USD {order.unfilled_value:,.2f}\n"
            f"{why}: {order.message or 'none given'}" + (f"\nwhat to do: {todo}" if todo else "")
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
    """Alert each order the submission could not place or could not learn the fate of
    (:data:`~ibkr_assets.order_watch.ALERTED_AT_SUBMISSION`), once per order, and put the
    session under watch. Returns the number of alerts sent."""
    report = _read_report(context, storage, "submitted_orders", day)
    if report is None or not report.get("auto_submit") or not report["orders"]:
        return 0  # auto-submit off, or an empty ticket: nothing went anywhere
    rows = report["orders"]
    fresh = [r for r in rows if r["outcome"] in ("placed", *ALERTED_AT_SUBMISSION)]
    if day in sessions and not fresh:
        return 0  # a rerun that found every order already at IB: the watch goes on as it was
    watch = sessions.setdefault(day, {"alerted": [], "open": True, "due": True, "polled": 0.0})
    watch.update(open=True, due=True)
    sent = 0
    for order in session_orders(rows, _ticket_orders(context, storage, day), [], []):
        if order.outcome in ALERTED_AT_SUBMISSION and order.order_ref not in watch["alerted"]:
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


@dg.sensor(
    minimum_interval_seconds=SENSOR_INTERVAL_S, default_status=dg.DefaultSensorStatus.RUNNING
)
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
