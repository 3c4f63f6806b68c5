"""Faults during order submission (issue #16) through the simulated gateway: connectivity lost
mid-ticket, an acknowledgement lost in the gateway's nightly restart, a socket closed before
the acknowledgement, the gateway down longer than the reconnect budget, the submission killed
(``kill -9``). After each, a rerun sends nothing twice and everything the ticket says; every
assertion reads the paper account through a separate connection.

The gateway faults come from patching the simulated gateway's own placeOrder handler in this
process, the kill point from a driver process that wraps :meth:`GuardedBroker.place` and
stops there until killed. Production code carries no test hook.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from ibkr_assets.assets.execution import TICKET_COLUMNS
from ibkr_assets.assets.submission import submission_verdict, submit_ticket
from ibkr_assets.broker import Broker, BrokerSettings, connect
from ibkr_assets.broker.errors import NotConnected
from ibkr_assets.broker.models import Order
from ibkr_sim.gateway import handlers as gateway_handlers
from ibkr_sim.gateway import orders as gateway_orders
from ibkr_sim.gateway import running_clock, start_gateway
from ibkr_sim.gateway.profile import IB_PAPER
from tests.submission_fault_helpers import (
    OPEN,
    PREFIX,
    SIM_SYMBOLS,
    SYMBOLS,
    _account,
    _assert_once,
    _kill_at_its_point,
)

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]


# -- through the simulated gateway: connectivity lost, an acknowledgement lost in a restart --------
def _ticket(account: Broker, quantity: int = 3) -> pd.DataFrame:
    rows = []
    for sym in SYMBOLS:
        c = account.resolve(sym)
        rows.append(
            {
                "symbol": sym,
                "conid": c.conid,
                "action": "BUY",
                "quantity": quantity,
                "order_type": "MKT",
                "limit_price": float("nan"),
                "notional": quantity * account.quotes([c])[0].price,
                "order_ref": f"{PREFIX}{sym}:BUY:{quantity}",
                "whatif_attempts": 1,
                "whatif_decision": "accepted",
                "maint_margin_after": 0.0,
                "commission": 1.0,
            }
        )
    return pd.DataFrame(rows, columns=list(TICKET_COLUMNS)).astype(TICKET_COLUMNS)


@contextmanager
def _gateway(data_dir: Path) -> Iterator[Any]:
    # a paper login with live US-equity data (delayed quotes are 15 minutes old, and the order
    # guard rightly refuses marketable orders on them), no seeded farm drops or history gaps
    profile = IB_PAPER.with_options(
        live_data=IB_PAPER.live_data | {"STK"}, history_gap_rate=0.0, farm_drops_per_day=0.0
    )
    with start_gateway(
        symbols=SIM_SYMBOLS,
        pacing="off",
        data_dir=data_dir,
        clock=running_clock(OPEN),
        profile=profile,
    ) as gateway:
        yield gateway


def _submit_via_gateway(port: int, data_dir: Path, ticket: pd.DataFrame, **kw: Any) -> pd.DataFrame:
    """The ticket submitted by the pipeline's guarded tws broker on the gateway at ``port``
    (answers within 3 s, a drop reconnected for up to 30 s; ``kw`` overrides these and the
    clientId 31), its connection closed after."""
    settings = {"timeout": 3.0, "reconnect_seconds": 30.0, "connect_attempts": 2, "client_id": 31}
    broker = connect(
        BrokerSettings(backend="tws", port=port, data_dir=data_dir, pacing=False, **(settings | kw))
    )
    try:
        return submit_ticket(broker, ticket, PREFIX)
    finally:
        broker.close()


def _on_placement(monkeypatch, nth: int, act: Callable[[Any], None], swallow: bool) -> None:
    """Patch the gateway's placeOrder handler: at the ``nth`` real (not what-if) placement,
    take the order (``swallow``: send the client nothing about it) and then ``act(session)``."""
    seen: list[int] = []

    def handler(s: Any, r: Any) -> None:
        start = r.pos
        what_if = gateway_orders.read_place_order(r).what_if
        r.pos = start
        if what_if:
            return gateway_orders.place_order(s, r)
        seen.append(1)
        if len(seen) != nth:
            return gateway_orders.place_order(s, r)
        if swallow:
            s.send = s.send_frame = lambda *a, **k: None
        gateway_orders.place_order(s, r)
        act(s)

    monkeypatch.setitem(gateway_handlers.HANDLERS, 3, handler)


def test_a_restart_that_loses_an_acknowledgement_reports_the_order_ib_filled(
    tmp_path: Path, monkeypatch
) -> None:
    ticket = _ticket(_account(tmp_path))
    with _gateway(tmp_path) as gateway:
        # the 3rd order reaches IB and fills; the gateway then restarts before answering, as at
        # IB's nightly reset: the client sees "[IB 504] not acknowledged in time"
        _on_placement(monkeypatch, 3, lambda s: gateway.trigger("restart", 2.0), swallow=True)
        started = time.monotonic()
        frame = _submit_via_gateway(gateway.port, tmp_path, ticket)
        assert time.monotonic() - started < 45
        monkeypatch.undo()
        assert set(frame["outcome"]) == {"placed"}, frame[["symbol", "outcome", "message"]]
        third = frame.iloc[2]
        assert third["status"] == "Filled" and "[IB 504]" in third["message"]
        assert "IB has it under its order_ref" in third["message"]
        _assert_once(_account(tmp_path), list(ticket["order_ref"]))
        again = _submit_via_gateway(gateway.port, tmp_path, ticket, client_id=32)
    assert set(again["outcome"]) == {"already_sent"}
    _assert_once(_account(tmp_path), list(ticket["order_ref"]))


def test_a_drop_before_the_acknowledgement_fails_the_placement_at_once(
    tmp_path: Path, monkeypatch
) -> None:
    """The socket closing while an order awaits IB's acknowledgement fails the placement in
    about a second (504, fate unknown), not after the 20 s timeout; IB has the order once."""
    contract = _account(tmp_path).resolve("AAPL")
    ref = f"{PREFIX}AAPL:BUY:3"
    with _gateway(tmp_path) as gateway:
        _on_placement(monkeypatch, 1, lambda s: gateway.trigger("restart", 1.0), swallow=True)
        settings = {"port": gateway.port, "pacing": False, "timeout": 20.0, "client_id": 34}
        broker = connect(BrokerSettings(backend="tws", data_dir=tmp_path, **settings)).inner
        try:
            started = time.monotonic()
            with pytest.raises(NotConnected, match=r"^\[IB 504\] .* the connection to IB closed"):
                broker.place(Order(contract=contract, action="BUY", quantity=3, order_ref=ref))
            assert time.monotonic() - started < 2.0
        finally:
            broker.close()
    _assert_once(_account(tmp_path), [ref])


def test_a_gateway_down_longer_than_the_reconnect_budget_fails_clearly_then_rerun_completes(
    tmp_path: Path, monkeypatch
) -> None:
    ticket = _ticket(_account(tmp_path))
    with _gateway(tmp_path) as gateway:
        _on_placement(monkeypatch, 2, lambda s: gateway.trigger("restart", 6.0), swallow=True)
        frame = _submit_via_gateway(gateway.port, tmp_path, ticket, reconnect_seconds=1.0)
        monkeypatch.undo()
        outcomes = list(frame["outcome"])
        assert outcomes[0] == "placed" and set(outcomes[1:]) <= {"unknown", "not_sent"}
        assert "could not be asked" in frame.iloc[1]["message"]
        passed, _, summary = submission_verdict(frame, True, "")
        assert not passed and summary.startswith(f"{len(ticket) - 1} of {len(ticket)}")
        while gateway.restarting:
            time.sleep(0.1)
        again = _submit_via_gateway(gateway.port, tmp_path, ticket, client_id=32)
    assert list(again["outcome"][:2]) == ["already_sent", "already_sent"]  # the 2nd IB had
    assert set(again["outcome"][2:]) == {"placed"}
    _assert_once(_account(tmp_path), list(ticket["order_ref"]))


def test_connectivity_lost_mid_submission_completes_and_a_rerun_sends_nothing(
    tmp_path: Path, monkeypatch
) -> None:
    ticket = _ticket(_account(tmp_path))
    with _gateway(tmp_path) as gateway:
        # 1100 after the 2nd order, restored (1101) 2 s later; the submission goes on
        _on_placement(monkeypatch, 2, lambda s: gateway.trigger("drop", 2.0), swallow=False)
        frame = _submit_via_gateway(gateway.port, tmp_path, ticket)
        monkeypatch.undo()
        assert set(frame["outcome"]) == {"placed"}, frame[["symbol", "outcome", "message"]]
        again = _submit_via_gateway(gateway.port, tmp_path, ticket, client_id=32)
    assert set(again["outcome"]) == {"already_sent"}
    _assert_once(_account(tmp_path), list(ticket["order_ref"]))


_GATEWAY_DRIVER = """
import sys, time
import pandas as pd
from ibkr_assets.assets.execution import TICKET_COLUMNS
from ibkr_assets.assets.submission import submit_ticket
from ibkr_assets.broker import BrokerSettings, connect
from ibkr_assets.broker.guarded import GuardedBroker
from ibkr_assets.broker.known_orders import KnownOrders

data_dir, port, ticket_path, k, prefix = sys.argv[1:6]
place, placed = GuardedBroker.place, []


def counted(self, order, known=None):
    status = place(self, order, known)
    placed.append(order.order_ref)
    if len(placed) == int(k):
        print("KILL-POINT", flush=True)
        time.sleep(600)
    return status


GuardedBroker.place = counted
broker = connect(BrokerSettings(backend="tws", port=int(port), client_id=33, data_dir=data_dir,
                                pacing=False, timeout=3.0))
submit_ticket(broker, pd.read_json(ticket_path).astype(TICKET_COLUMNS), prefix)
"""


def test_a_submission_killed_through_the_gateway_then_rerun_sends_each_order_once(
    tmp_path: Path,
) -> None:
    ticket = _ticket(_account(tmp_path))
    path = tmp_path / "ticket.json"
    path.write_text(ticket.to_json(orient="records"))
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    with _gateway(tmp_path) as gateway:
        args = [str(tmp_path), str(gateway.port), str(path), "2", PREFIX]
        _kill_at_its_point(_GATEWAY_DRIVER, args, env)
        refs = list(ticket["order_ref"])
        _assert_once(_account(tmp_path), refs[:2])
        # the gateway still lists the dead client's orders; the rerun (another client) finds them
        again = _submit_via_gateway(gateway.port, tmp_path, ticket)
    assert list(again["outcome"]) == ["already_sent"] * 2 + ["placed"] * (len(refs) - 2)
    _assert_once(_account(tmp_path), refs)
