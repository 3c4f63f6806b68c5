"""Faults during order submission (issue #16): the pipeline killed (``kill -9``) at several points
of ``submitted_orders``, a placement IB took but never acknowledged, connectivity lost in the
middle of a ticket, on the in-process simulator. After each, a rerun sends nothing twice and
everything the ticket says: every assertion reads the paper account through a separate
connection (open orders, completed orders, executions), not the submission's own answer. The
same faults through the simulated gateway (and its nightly restart) are in
test_gateway_submission_faults.py; the shared readers in tests/submission_fault_helpers.py.

The kill points are reached deterministically by a driver process that wraps
:meth:`GuardedBroker.place` (or the journal's append) and stops there until killed; the
dropped links by a backend that fails as one does. Production code carries no test hook.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from ibkr_assets.assets import daily_assets, daily_checks
from ibkr_assets.assets.execution import read_ticket
from ibkr_assets.assets.submission import submission_verdict
from ibkr_assets.broker import Broker, BrokerSettings, connect
from ibkr_assets.broker.errors import NotConnected, OrderRejected
from ibkr_assets.broker.guarded import GuardedBroker
from ibkr_assets.broker.known_orders import KnownOrders
from ibkr_assets.broker.models import Order, OrderStatus
from ibkr_assets.broker.submission import submit_orders
from ibkr_assets.decide_config import DecideConfig
from ibkr_assets.partitions import as_of
from ibkr_assets.quant.journal import verify_journal
from ibkr_assets.resources import build_resources
from ibkr_assets.resources.alerts import AlertResource
from tests.journal_key import TEST_KEY
from tests.submission_fault_helpers import (
    OPEN,
    PREFIX,
    SIM_SYMBOLS,
    SYMBOLS,
    _account,
    _assert_once,
    _kill_at_its_point,
    _orders_at_ib,
)

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

#: the pipeline's session for the kill tests (its run sees 07:00 New York: orders stay open)
SESSION = "2024-06-03"
PIPELINE_SYMBOLS = 30


# -- submission on the in-process simulator, with a backend that fails as a dropped link does ---
def _sim_broker(data_dir: Path) -> GuardedBroker:
    return connect(
        BrokerSettings(backend="sim", data_dir=data_dir, sim_now=OPEN, sim_symbols=SIM_SYMBOLS)
    )


def _orders(broker: GuardedBroker, quantity: int = 3) -> list[Order]:
    return [
        Order(
            contract=broker.resolve(s),
            action="BUY",
            quantity=quantity,
            order_ref=f"{PREFIX}{s}:BUY:{quantity}",
        )
        for s in SYMBOLS
    ]


class _Flaky:
    """A backend whose ``place`` fails as a dropped connection does, for the orders ``fail``
    names (symbol -> what happens): ``"ack-lost"`` (IB takes the order, the answer never comes:
    [IB 504]), ``"lost"`` (the order never reaches IB; ``"lost-once"``: the first time only),
    ``"rejected-but-filled"`` (IB takes it, the client reads a rejection). ``reads_fail`` makes
    the reads of orders fail after a failed placement (IB unreachable)."""

    def __init__(self, inner: Broker, fail: dict[str, str], reads_fail: bool = False) -> None:
        self.inner = inner
        self.fail = dict(fail)
        self.reads_fail = reads_fail
        self.broken = False
        self.sent: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name in ("open_orders", "completed_orders", "executions") and self.reads_fail:

            def read(*args: Any, **kwargs: Any) -> Any:
                if self.broken:
                    raise NotConnected("IB unreachable for 130 s, longer than 120 s")
                return attr(*args, **kwargs)

            return read
        return attr

    def place(self, order: Order) -> OrderStatus:
        how = self.fail.get(order.contract.symbol)
        if how == "lost-once":
            del self.fail[order.contract.symbol]
        if how in ("lost", "lost-once"):
            self.broken = True
            raise NotConnected("connection to IB lost: Socket disconnect")
        self.sent[order.order_ref] += 1
        status = self.inner.place(order)
        if how == "ack-lost":
            self.broken = True
            raise NotConnected(f"IB did not acknowledge order {status.order_id} in time", 504)
        if how == "rejected-but-filled":
            raise OrderRejected(f"{order.contract.symbol} was rejected: Cancelled", 201)
        return status


def _flaky(data_dir: Path, fail: dict[str, str], reads_fail: bool = False) -> GuardedBroker:
    broker = _sim_broker(data_dir)
    broker.inner = _Flaky(broker.inner, fail, reads_fail)  # type: ignore[assignment]
    return broker


@pytest.mark.parametrize("how", ["ack-lost", "rejected-but-filled"])
def test_an_order_ib_took_is_reported_as_ib_has_it(tmp_path: Path, how: str) -> None:
    broker = _flaky(tmp_path, {"NVDA": how})
    orders = _orders(broker)
    sent = submit_orders(broker, orders, PREFIX)
    nvda = next(s for s in sent if s.symbol == "NVDA")
    assert [s.outcome for s in sent] == ["placed"] * len(SYMBOLS)
    assert nvda.status == "Filled" and nvda.filled == 3 and nvda.order_id
    assert "IB has it under its order_ref" in (nvda.message or "")
    assert ("[IB 504]" if how == "ack-lost" else "[IB 201]") in (nvda.message or "")
    assert broker.inner.sent[nvda.order_ref] == 1  # looked up, never sent again
    _assert_once(_account(tmp_path), [o.order_ref for o in orders])


def test_an_order_that_never_reached_ib_is_sent_once_more(tmp_path: Path) -> None:
    broker = _flaky(tmp_path, {"MSFT": "lost-once"})
    orders = _orders(broker)
    sent = submit_orders(broker, orders, PREFIX)
    assert [s.outcome for s in sent] == ["placed"] * len(SYMBOLS)
    assert broker.inner.sent[orders[1].order_ref] == 1  # IB had nothing: sent once more
    _assert_once(_account(tmp_path), [o.order_ref for o in orders])


def test_an_order_lost_on_every_attempt_is_not_sent_and_a_rerun_sends_it(tmp_path: Path) -> None:
    broker = _flaky(tmp_path, {"MSFT": "lost"})
    orders = _orders(broker)
    sent = submit_orders(broker, orders, PREFIX)
    msft = sent[1]
    assert msft.symbol == "MSFT" and msft.outcome == "not_sent"
    assert "IB has no order and no fill" in (msft.message or "") and "rerun" in (msft.message or "")
    assert {s.outcome for s in sent if s is not msft} == {"placed"}
    _assert_once(_account(tmp_path), [o.order_ref for o in orders if o.contract.symbol != "MSFT"])
    # the rerun (the link is back) sends MSFT, and only MSFT
    again = submit_orders(_sim_broker(tmp_path), orders, PREFIX)
    assert Counter(s.outcome for s in again) == {"already_sent": 5, "placed": 1}
    _assert_once(_account(tmp_path), [o.order_ref for o in orders])


def test_a_placement_of_unknown_fate_with_ib_unreachable_is_unknown(tmp_path: Path) -> None:
    broker = _flaky(tmp_path, {"NVDA": "ack-lost"}, reads_fail=True)
    orders = _orders(broker)
    sent = submit_orders(broker, orders, PREFIX)
    nvda = next(s for s in sent if s.symbol == "NVDA")
    assert nvda.outcome == "unknown"
    assert "[IB 504]" in (nvda.message or "") and "could not be asked" in (nvda.message or "")
    # IB filled it: the rerun finds it and sends nothing twice
    again = submit_orders(_sim_broker(tmp_path), orders, PREFIX)
    assert next(s for s in again if s.symbol == "NVDA").outcome == "already_sent"
    _assert_once(_account(tmp_path), [o.order_ref for o in orders])


# -- the verdict: when is a run green ------------------------------------------------------------
def _frame(*outcomes: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "order_ref": [f"r{i}" for i in range(len(outcomes))],
            "symbol": SYMBOLS[: len(outcomes)],
            "action": "BUY",
            "quantity": 3.0,
            "outcome": list(outcomes),
            "message": [f"why {o}" for o in outcomes],
        }
    )


def test_the_verdict_fails_the_run_naming_what_is_missing() -> None:
    error, warn = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN
    passed, severity, summary = submission_verdict(
        _frame("placed", "not_sent", "already_sent", "unknown", "rejected"), True, ""
    )
    assert (passed, severity) == (False, error)
    assert summary.startswith("3 of 5 ticket orders did not go out")
    for missing in ("BUY 3 MSFT (not_sent: why not_sent)", "AMZN (unknown", "GOOGL (rejected"):
        assert missing in summary
    assert "2 of 5 ticket orders at IB" in summary and "Rerun" in summary
    assert submission_verdict(_frame("placed", "already_executed"), True, "")[:2] == (True, error)
    # deliberate outcomes: said clearly, green unless nothing at all went out
    assert submission_verdict(_frame("placed", "refused"), True, "")[:2] == (False, warn)
    assert submission_verdict(_frame("refused", "refused"), True, "")[:2] == (False, error)
    held = submission_verdict(_frame(), True, "U7 is a live account ... recommendation only")
    assert held[:2] == (False, warn) and "recommendation only" in held[2]
    assert submission_verdict(_frame("placed"), False, "")[0] is True


# -- the pipeline killed during submission, then run again ----------------------------------------
_DRIVER = """
import sys, time
import dagster as dg
from ibkr_assets.assets import daily_assets, journal
from ibkr_assets.broker.guarded import GuardedBroker
from ibkr_assets.broker.known_orders import KnownOrders
from ibkr_assets.decide_config import DecideConfig
from ibkr_assets.resources import build_resources

data_dir, where, k = sys.argv[1], sys.argv[2], int(sys.argv[3])


def stop():
    print("KILL-POINT", flush=True)
    time.sleep(600)


place, placed = GuardedBroker.place, []


def counted(self, order, known=None):
    if where == "before" and len(placed) == k:
        stop()
    status = place(self, order, known)
    placed.append(order.order_ref)
    if where == "after" and len(placed) == k:
        stop()
    return status


GuardedBroker.place = counted
if where == "journal":
    journal.record_decision = lambda *a, **kw: stop()
resources = {**build_resources(data_dir=data_dir), "decide": DecideConfig(auto_submit=True)}
dg.materialize(daily_assets(), partition_key=sys.argv[4], resources=resources,
               selection=["submitted_orders", "decision_journal"],
               instance=dg.DagsterInstance.ephemeral())
print("FINISHED", flush=True)
"""


@pytest.fixture(scope="module")
def pipeline_env() -> Iterator[dict[str, str]]:
    env = {"IBKR_SIM_SYMBOLS": str(PIPELINE_SYMBOLS), "IBKR_SENTIMENT_MODEL": "lexicon"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield {**os.environ, "PYTHONPATH": os.getcwd()}
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _materialize(data_dir: Path, decide: DecideConfig, selection: list[str] | None = None):
    resources = build_resources(data_dir=str(data_dir))
    resources["decide"] = decide
    resources["alerts"] = AlertResource(log_path=str(data_dir / "alerts.jsonl"))
    return dg.materialize(
        [*daily_assets(), *daily_checks()],
        partition_key=SESSION,
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
        selection=selection,
        raise_on_error=False,
    )


@pytest.fixture(scope="module")
def decided_day(tmp_path_factory, pipeline_env) -> Path:
    """A session run through the order ticket with auto-submit off: nothing at IB yet, one
    journal row (the recommendation)."""
    data_dir = tmp_path_factory.mktemp("decided")
    result = _materialize(data_dir, DecideConfig())
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    assert len(read_ticket(data_dir / "reports" / f"order_ticket_{SESSION}.json")) >= 3
    return data_dir


@pytest.mark.parametrize(
    ("where", "k"),
    [("before", 0), ("after", 2), ("after", -1), ("journal", -1)],
    ids=["before-the-first-order", "after-2-orders", "after-the-last-order", "before-the-journal"],
)
def test_the_pipeline_killed_during_submission_then_rerun_sends_each_order_once(
    decided_day: Path, pipeline_env: dict[str, str], tmp_path: Path, where: str, k: int
) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(decided_day, data_dir)
    ticket = read_ticket(data_dir / "reports" / f"order_ticket_{SESSION}.json")
    refs = list(ticket["order_ref"])
    sent_before = len(refs) if k < 0 else k
    args = [str(data_dir), where, str(sent_before), SESSION]
    _kill_at_its_point(_DRIVER, args, pipeline_env)  # submission and journal, killed at `where`
    account = _account(data_dir, as_of(SESSION), PIPELINE_SYMBOLS)
    _assert_once(account, refs[:sent_before])  # what the killed run sent, once each
    journal = pd.read_parquet(data_dir / "decision_log")
    assert len(journal) == 1  # the killed run appended nothing

    result = _materialize(
        data_dir, DecideConfig(auto_submit=True), ["submitted_orders", "decision_journal"]
    )
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    _assert_once(account, refs)
    report = json.loads((data_dir / "reports" / f"submitted_orders_{SESSION}.json").read_text())
    outcomes = {o["order_ref"]: o["outcome"] for o in report["orders"]}
    assert outcomes == {
        r: "already_sent" if i < sent_before else "placed" for i, r in enumerate(refs)
    }
    assert report["every_order_sent"] is True
    # the journal's last row: this session, each ticket order once, as the rerun found it
    journal = pd.read_parquet(data_dir / "decision_log").sort_values("seq")
    assert len(journal) == 2
    last = journal.iloc[-1]
    assert last["partition"] == SESSION
    submission = json.loads(last["submission"])
    assert {s["order_ref"]: s["outcome"] for s in submission} == outcomes
    assert len(submission) == len(refs)
    assert verify_journal(data_dir / "decision_log", key=TEST_KEY).ok


def test_a_run_with_an_order_not_sent_is_red_and_says_which(
    decided_day: Path, pipeline_env: dict[str, str], tmp_path: Path, monkeypatch
) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(decided_day, data_dir)
    ticket = read_ticket(data_dir / "reports" / f"order_ticket_{SESSION}.json")
    lost = str(ticket["symbol"].iloc[1])
    place = GuardedBroker.place

    def dropping(self: GuardedBroker, order: Order, known: Any = None) -> OrderStatus:
        if order.contract.symbol == lost:
            raise NotConnected("connection to IB lost: Socket disconnect")
        return place(self, order, known)

    monkeypatch.setattr(GuardedBroker, "place", dropping)
    result = _materialize(
        data_dir, DecideConfig(auto_submit=True), ["submitted_orders", "decision_journal"]
    )
    assert not result.success
    [check] = [
        e for e in result.get_asset_check_evaluations() if e.check_name == "every_order_sent"
    ]
    assert (
        not check.passed
        and "BUY" in check.description
        and f" {lost} (not_sent" in check.description
    )
    assert check.description.startswith(f"1 of {len(ticket)} ticket orders did not go out")
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == {"submitted_orders"}  # recorded, and the journal waits for the rerun
    [mat] = [e for e in result.get_asset_materialization_events()]
    metadata = mat.materialization.metadata
    assert metadata["not_sent"].value == 1 and metadata["placed"].value == len(ticket) - 1
    report = json.loads((data_dir / "reports" / f"submitted_orders_{SESSION}.json").read_text())
    assert report["every_order_sent"] is False and lost in report["summary"]
    assert len(report["orders"]) == len(ticket)


def test_a_run_that_cannot_reach_ib_before_the_first_order_fails_saying_nothing_was_sent(
    decided_day: Path, pipeline_env: dict[str, str], tmp_path: Path, monkeypatch
) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(decided_day, data_dir)
    n = len(read_ticket(data_dir / "reports" / f"order_ticket_{SESSION}.json"))

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise NotConnected("cannot reach TWS / IB Gateway at 127.0.0.1:4002 (clientId 1)", 502)

    monkeypatch.setattr(KnownOrders, "read", unreachable)
    result = _materialize(data_dir, DecideConfig(auto_submit=True), ["submitted_orders"])
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.message
    assert f"none of the {n} ticket orders was sent" in message and "[IB 502]" in message
    assert _orders_at_ib(_account(data_dir, as_of(SESSION), PIPELINE_SYMBOLS)) == Counter()
