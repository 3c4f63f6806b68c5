"""The order sensor against the in-process simulated broker and a real (ephemeral) Dagster
instance: alerts for orders IB rejects or cancels (or the guard refuses), the submission and
end-of-session summaries with counts and USD values, each order alerted once.

The session's orders are placed on the simulated paper account (unguarded, at 10:00 New York)
and its ticket and submission reports written as the pipeline writes them; the sensor is then
evaluated with the simulator's clock pinned later in the day."""

from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from ibkr_assets.broker.errors import BrokerError
from ibkr_assets.broker.models import Order
from ibkr_assets.broker.settings import BrokerSettings
from ibkr_assets.broker.sim import SimBroker
from ibkr_assets.order_watch import Tally, session_orders, shares, tallies
from ibkr_assets.resources.alerts import AlertResource
from ibkr_assets.resources.ib import IBResource
from ibkr_assets.resources.storage import StorageResource
from ibkr_assets.sensors import order_summary_alerts

SESSION = "2024-03-04"
NEW_YORK = ZoneInfo("America/New_York")
SYMBOLS = 40
PARTS = dg.StaticPartitionsDefinition([SESSION])
NVDA, META = f"ibkr-agent:{SESSION}:nvda", f"ibkr-agent:{SESSION}:meta"
GUARD_MESSAGE = "order guard: notional 60,000.00 USD exceeds max_order_notional 50,000 by 10,000"


@dg.asset(partitions_def=PARTS)
def order_ticket() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"orders": 5})


@dg.asset(partitions_def=PARTS)
def submitted_orders() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"auto_submit": True})


def _at(hour: int, minute: int) -> datetime:
    return datetime.fromisoformat(f"{SESSION}T{hour:02d}:{minute:02d}").replace(tzinfo=NEW_YORK)


@dataclass
class Session:
    """The data root, the Dagster instance, and the orders of the session by name."""

    data_dir: Path
    instance: dg.DagsterInstance
    ticket: list[dict[str, Any]]
    submitted: list[dict[str, Any]]

    def alerts(self) -> list[dict]:
        path = self.data_dir / "alerts" / "alerts.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def write_reports(self, submitted: list[dict[str, Any]]) -> None:
        reports = self.data_dir / "reports"
        reports.mkdir(parents=True, exist_ok=True)
        (reports / f"order_ticket_{SESSION}.json").write_text(
            json.dumps({"partition": SESSION, "auto_submit": True, "orders": self.ticket})
        )
        (reports / f"submitted_orders_{SESSION}.json").write_text(
            json.dumps({"partition": SESSION, "auto_submit": True, "orders": submitted})
        )

    def tick(self, at: datetime, cursor: str | None, poll_seconds: float = 0.0) -> str:
        """Evaluate the sensor with IB's clock at ``at``; returns the new cursor."""
        resources = {
            "alerts": AlertResource(
                log_path=str(self.data_dir / "alerts" / "alerts.jsonl"),
                order_poll_seconds=poll_seconds,
            ),
            "ib": IBResource(
                backend="sim",
                data_dir=str(self.data_dir),
                sim_symbols=SYMBOLS,
                sim_now=at.isoformat(),
            ),
            "storage": StorageResource(data_dir=str(self.data_dir)),
        }
        with dg.build_sensor_context(
            instance=self.instance, cursor=cursor, resources=resources
        ) as ctx:
            order_summary_alerts(ctx)
            return ctx.cursor


def _row(order: Order, outcome: str, status=None, message: str = "") -> dict[str, Any]:
    return {
        "order_ref": order.order_ref,
        "symbol": order.contract.symbol,
        "action": order.action,
        "quantity": order.quantity,
        "outcome": outcome,
        "order_id": status.order_id if status else None,
        "perm_id": status.perm_id if status else None,
        "status": status.status if status else None,
        "filled": status.filled if status else None,
        "message": message or (status.message if status else ""),
    }


@pytest.fixture
def session(tmp_path: Path) -> Session:
    """Five ticket orders at 10:00 New York: AAPL fills at once; MSFT rests far below the market
    (to expire at the close); NVDA is beyond buying power (IB rejects it, error 201); META is
    refused by the order guard (never sent); AMZN takes the top of the book, and an operator
    cancels the rest."""
    broker = SimBroker.from_settings(
        BrokerSettings(data_dir=tmp_path, sim_symbols=SYMBOLS, sim_now=_at(10, 0))
    )
    names = ("AAPL", "MSFT", "NVDA", "META", "AMZN")
    quotes = {q.contract.symbol: q for q in broker.quotes([broker.resolve(s) for s in names])}

    def order(symbol: str, quantity: float, limit: float | None) -> Order:
        return Order(
            contract=quotes[symbol].contract,
            action="BUY",
            quantity=quantity,
            order_type="LMT" if limit else "MKT",
            limit_price=limit,
            order_ref=f"ibkr-agent:{SESSION}:{symbol.lower()}",
        )

    amzn = quotes["AMZN"]
    orders = {
        "AAPL": order("AAPL", 10, round(quotes["AAPL"].ask * 1.01, 2)),
        "MSFT": order("MSFT", 10, round(quotes["MSFT"].bid * 0.5, 2)),
        "NVDA": order("NVDA", 1_000_000, None),
        "META": order("META", 50, round(quotes["META"].ask, 2)),
        "AMZN": order("AMZN", amzn.ask_size + 500, amzn.ask),
    }
    submitted = []
    for name in ("AAPL", "MSFT", "AMZN"):
        submitted.append(_row(orders[name], "placed", broker.place(orders[name])))
    with pytest.raises(BrokerError, match="insufficient buying power") as rejected:
        broker.place(orders["NVDA"])
    submitted.append(_row(orders["NVDA"], "rejected", message=str(rejected.value)))
    submitted.append(_row(orders["META"], "refused", message=GUARD_MESSAGE))
    partial = broker.cancel(submitted[2]["order_id"])
    assert partial.status == "Cancelled" and 0 < partial.filled < orders["AMZN"].quantity
    ticket = [
        {
            "symbol": o.contract.symbol,
            "action": o.action,
            "quantity": o.quantity,
            "order_type": o.order_type,
            "limit_price": o.limit_price,
            "notional": o.quantity * quotes[name].mid,
            "order_ref": o.order_ref,
        }
        for name, o in orders.items()
    ]
    world = Session(tmp_path, dg.DagsterInstance.ephemeral(), ticket, submitted)
    world.write_reports(submitted)
    dg.materialize([order_ticket, submitted_orders], partition_key=SESSION, instance=world.instance)
    return world


def _table(body: str) -> dict[str, tuple[int, float]]:
    """The summary's table: label -> (orders, value USD)."""
    rows = {}
    for line in body.splitlines():
        match = re.fullmatch(r"(\D+?)\s+(\d+)\s+([\d,]+\.\d\d)", line)
        if match:
            rows[match[1].strip()] = (int(match[2]), float(match[3].replace(",", "")))
    return rows


def _value(ticket: list[dict], symbol: str) -> float:
    return next(r["notional"] for r in ticket if r["symbol"] == symbol)


def test_submission_alerts_each_refusal_and_rejection_then_summarises(session: Session):
    session.tick(_at(10, 0), None)
    alerts = session.alerts()
    subjects = [a["subject"] for a in alerts]
    assert subjects == [
        f"Orders queued [{SESSION}]",
        f"Order rejected by IB: BUY 1,000,000 NVDA [{SESSION}]",
        f"Order refused by the order guard: BUY 50 META [{SESSION}]",
        f"Order cancelled at IB: BUY {shares(session.ticket[4]['quantity'])} AMZN [{SESSION}]",
        f"Orders submitted [{SESSION}]: 3 of 5 at IB, 1 filled, 1 partially filled, "
        "2 rejected/cancelled",
    ]
    nvda, meta, amzn, summary = alerts[1:]
    assert nvda["severity"] == "error" and f"ibkr-agent:{SESSION}:nvda" in nvda["body"]
    assert (
        "IB's reason: [IB 201] Order rejected - reason: insufficient buying power" in nvda["body"]
    )
    assert f"limit: {GUARD_MESSAGE}" in meta["body"]
    filled = shares(session.submitted[2]["filled"])
    assert f"{filled} of" in amzn["body"] and "cancelled by request" in amzn["body"]
    # the summary reads IB's statuses and executions: counts and USD values
    executions = SimBroker.from_settings(
        BrokerSettings(data_dir=session.data_dir, sim_symbols=SYMBOLS, sim_now=_at(10, 0))
    ).executions()
    fill_value = {e.contract.symbol: e.shares * e.price for e in executions}
    table = _table(summary["body"])
    t = session.ticket
    assert table["queued (ticket)"] == (5, pytest.approx(sum(r["notional"] for r in t), abs=0.01))
    submitted = sum(_value(t, s) for s in ("AAPL", "MSFT")) + t[4]["quantity"] * (
        t[4]["notional"] / t[4]["quantity"]
    )
    assert table["submitted to IB"] == (3, pytest.approx(submitted, abs=0.01))
    assert table["filled"] == (1, pytest.approx(fill_value["AAPL"], abs=0.01))
    assert table["partially filled"] == (1, pytest.approx(fill_value["AMZN"], abs=0.01))
    assert table["working"] == (1, pytest.approx(_value(t, "MSFT"), abs=0.01))
    rejected = _value(t, "NVDA") + _value(t, "META")
    assert table["rejected / cancelled"] == (2, pytest.approx(rejected, abs=0.01))
    assert summary["severity"] == "warning"


def test_a_later_cancellation_by_ib_is_alerted_once_with_the_final_summary(session: Session):
    cursor = session.tick(_at(10, 0), None)
    first = len(session.alerts())
    cursor = session.tick(_at(12, 0), cursor)  # MSFT still working: nothing new to say
    assert len(session.alerts()) == first
    cursor = session.tick(_at(16, 5), cursor)  # the DAY order expired at the close
    cancelled, done = session.alerts()[first:]
    assert cancelled["subject"] == f"Order cancelled at IB: BUY 10 MSFT [{SESSION}]"
    assert "IB's reason: DAY order expired at the session end" in cancelled["body"]
    assert cancelled["severity"] == "error"
    assert done["subject"] == (
        f"Orders done [{SESSION}]: 3 of 5 at IB, 1 filled, 1 partially filled, 3 rejected/cancelled"
    )
    assert _table(done["body"])["working"] == (0, 0.0)
    assert "MSFT (ibkr-agent:2024-03-04:msft) cancelled: Cancelled" in done["body"]
    # the watch is over: later ticks ask IB nothing and say nothing
    cursor = session.tick(_at(16, 10), cursor)
    assert len(session.alerts()) == first + 2
    assert json.loads(cursor)["sessions"][SESSION]["open"] is False


def test_a_rerun_never_pages_twice_for_one_order(session: Session):
    cursor = session.tick(_at(10, 0), None)
    cursor = session.tick(_at(16, 5), cursor)
    before = len(session.alerts())
    # the session is run again: IB has every order (NVDA as Inactive), the guard refuses META
    rerun = [
        {**row, "outcome": "already_sent"} if row["outcome"] != "refused" else row
        for row in session.submitted
    ]
    session.write_reports(rerun)
    dg.materialize([submitted_orders], partition_key=SESSION, instance=session.instance)
    session.tick(_at(16, 10), cursor)
    [summary] = session.alerts()[before:]  # a summary of the rerun, no order alerted again
    assert summary["subject"].startswith(f"Orders done [{SESSION}]")


def test_ib_is_asked_again_only_after_the_poll_interval(session: Session):
    cursor = session.tick(_at(10, 0), None)
    first = len(session.alerts())
    cursor = session.tick(_at(16, 5), cursor, poll_seconds=3600)  # polled moments ago
    assert len(session.alerts()) == first
    session.tick(_at(16, 5), cursor, poll_seconds=0)
    assert len(session.alerts()) == first + 2


def test_no_order_alert_when_auto_submit_is_off(tmp_path: Path):
    world = Session(tmp_path, dg.DagsterInstance.ephemeral(), [], [])
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / f"submitted_orders_{SESSION}.json").write_text(
        json.dumps({"partition": SESSION, "auto_submit": False, "orders": []})
    )
    dg.materialize([order_ticket, submitted_orders], partition_key=SESSION, instance=world.instance)
    cursor = world.tick(_at(8, 5), None)
    [queued] = world.alerts()
    assert queued["subject"] == f"Orders queued [{SESSION}]" and "orders: 5" in queued["body"]
    assert json.loads(cursor)["sessions"] == {}


def test_an_unreachable_ib_is_retried_on_the_next_tick(session: Session, monkeypatch):
    monkeypatch.setenv("IBKR_CONNECT_ATTEMPTS", "1")
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    offline = IBResource(backend="tws", port=port, data_dir=str(session.data_dir))
    with dg.build_sensor_context(
        instance=session.instance,
        resources={
            "alerts": AlertResource(log_path=str(session.data_dir / "alerts" / "alerts.jsonl")),
            "ib": offline,
            "storage": StorageResource(data_dir=str(session.data_dir)),
        },
    ) as ctx:
        order_summary_alerts(ctx)
        cursor = ctx.cursor
    # the refusal and rejection still went out; the summary waits for IB
    assert [a["subject"].split(":")[0] for a in session.alerts()] == [
        f"Orders queued [{SESSION}]",
        "Order rejected by IB",
        "Order refused by the order guard",
    ]
    assert json.loads(cursor)["sessions"][SESSION]["due"] is True
    session.tick(_at(10, 0), cursor, poll_seconds=3600)  # due now, whatever the interval
    assert session.alerts()[-1]["subject"].startswith(f"Orders submitted [{SESSION}]")


def test_orders_not_sent_or_of_unknown_fate_are_alerted_once_saying_what_to_do(session: Session):
    # the link dropped while NVDA and META were placed: IB could not be asked about NVDA
    # afterwards (it had in fact rejected it); IB had nothing of META after two attempts
    unknown = "placing it failed ([IB 504] ...) and IB could not be asked what it has"
    not_sent = "IB has no order and no fill under its ref after 2 attempts"
    rows = [
        *session.submitted[:3],
        {**session.submitted[3], "outcome": "unknown", "message": unknown},
        {**session.submitted[4], "outcome": "not_sent", "message": not_sent},
    ]
    session.write_reports(rows)
    cursor = session.tick(_at(10, 0), None)
    _queued, nvda, meta, amzn, summary = session.alerts()
    assert nvda["subject"] == f"Order fate unknown: BUY 1,000,000 NVDA [{SESSION}]"
    assert nvda["severity"] == "error" and "outcome unknown, status Unknown" in nvda["body"]
    assert f"why: {unknown}" in nvda["body"]
    assert f"what to do: check at IB for an order or fills under order_ref {NVDA}" in nvda["body"]
    assert meta["subject"] == f"Order not sent: BUY 50 META [{SESSION}]"
    assert meta["severity"] == "error" and "outcome not_sent, status NotSent" in meta["body"]
    assert f"why: {not_sent}" in meta["body"]
    assert f"what to do: rerun the partition {SESSION}:" in meta["body"]
    assert amzn["subject"].startswith("Order cancelled at IB")
    # the summary asks IB: it has NVDA (Inactive), not META
    assert summary["subject"] == (
        f"Orders submitted [{SESSION}]: 4 of 5 at IB, 1 filled, 1 partially filled, "
        "2 rejected/cancelled"
    )
    assert f"META ({META}) not sent: NotSent — {not_sent}" in summary["body"]
    assert f"NVDA ({NVDA}) cancelled: Inactive — insufficient buying power" in summary["body"]
    # a rerun that still could not send META nor ask about NVDA pages no order again
    before = len(session.alerts())
    dg.materialize([submitted_orders], partition_key=SESSION, instance=session.instance)
    session.tick(_at(10, 0), cursor)
    [rerun] = session.alerts()[before:]
    assert rerun["subject"].startswith(f"Orders submitted [{SESSION}]: 4 of 5 at IB")


def test_an_order_of_unknown_fate_ib_does_not_report_is_not_counted_at_ib(session: Session):
    row = {**session.submitted[4], "outcome": "unknown", "message": "IB could not be asked"}
    [order] = session_orders([row], session.ticket, [], [])
    assert (order.state, order.at_ib) == ("unknown", False)
    counts = tallies(session.ticket, [order])
    assert counts["submitted"].orders == 0
    assert counts["unknown"] == Tally(1, pytest.approx(_value(session.ticket, "META")))
