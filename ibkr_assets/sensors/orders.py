"""``order_summary_alerts`` follows each session's orders (:mod:`ibkr_assets.order_watch`).

A summary when an order ticket is written (orders queued); when orders are submitted, an error
alert for each order IB rejected, the order guard refused, the submission could not send
(``not_sent``) or could not learn the fate of (``unknown``): the order, the reason and, for the
last two, what to do (rerun the partition; check the order at IB); then a summary of queued,
submitted, filled, partially filled, working and rejected/cancelled orders with their USD values,
read from IB's order statuses and executions. It keeps asking IB (every
``IBKR_ALERT_ORDER_POLL_SECONDS``, through its own read-only connection) until every order of the
session is done or the session closed: each order IB cancels or makes Inactive later (a DAY order
expiring unfilled, a cancel from elsewhere) raises its own alert, and a final summary goes out
with the session's fills.

The sensor's cursor keeps, besides the last storage id it read, the orders already alerted for
each recent session (a rerun of the session, or the next poll, never pages twice for one order).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from ibkr_assets.broker.errors import BrokerError
from ibkr_assets.order_watch import (
    ALERTED_AT_SUBMISSION,
    SessionOrder,
    session_orders,
    shares,
    summary_text,
    tallies,
)
from ibkr_assets.partitions import nyse_calendar
from ibkr_assets.resources.alerts import AlertResource
from ibkr_assets.resources.ib import IBResource
from ibkr_assets.resources.storage import StorageResource
from ibkr_assets.sensors.alerting import SENSOR_INTERVAL_S, deliver, metadata_text

ORDER_ASSETS = ("order_ticket", "submitted_orders")
#: The order watch connects as the pipeline's clientId plus this, read-only, so it never takes
#: a running pipeline's connection (IB error 326, "client id is already in use").
WATCH_CLIENT_ID_OFFSET = 100
#: How long after the session's close the watch keeps asking IB (DAY orders end at the close).
WATCH_AFTER_CLOSE = timedelta(minutes=30)
#: How long a session's alerted orders stay in the cursor after its watch ended (reruns).
KEEP_SESSIONS = timedelta(days=10)

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
            deliver(context, alerts, **_order_alert(day, order))
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
                deliver(context, alerts, **_order_alert(day, order))
                watch["alerted"].append(order.order_ref)
                sent += 1
        finished = all(o.is_done for o in orders) or _session_over(day, at)
        if finished or watch["due"]:
            deliver(context, alerts, **_summary_alert(day, ticket, orders, at, finished))
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
        deliver(
            context,
            alerts,
            subject=f"Orders queued [{day}]",
            body=metadata_text(mat.metadata),
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


__all__ = ["order_summary_alerts"]
