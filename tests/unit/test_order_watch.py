"""A session's submitted orders joined to the broker's statuses and executions, on fixed
hand-made inputs: matching, states, and the USD values of the summary."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ibkr_assets.broker.models import Contract, Execution, OrderStatus
from ibkr_assets.order_watch import session_orders, summary_text, tallies

AT = datetime(2024, 3, 4, 15, 0, tzinfo=UTC)
REF = "ibkr-agent:2024-03-04:"


def _contract(symbol: str) -> Contract:
    return Contract(conid=sum(map(ord, symbol)), symbol=symbol, sec_type="STK")


def _status(symbol: str, ref: str, quantity: float, status: str, filled: float = 0.0, **kw):
    return OrderStatus(
        order_id=kw.pop("order_id", 1),
        perm_id=kw.pop("perm_id", 0),
        account_id="DU1234567",
        contract=_contract(symbol),
        action="BUY",
        quantity=quantity,
        order_type="LMT",
        limit_price=kw.pop("limit_price", 10.0),
        order_ref=ref,
        status=status,
        filled=filled,
        remaining=quantity - filled,
        time=AT,
        **kw,
    )


def _fill(symbol: str, ref: str, shares: float, price: float, perm_id: int = 0) -> Execution:
    return Execution(
        exec_id=f"{symbol}.{shares}",
        order_id=1,
        perm_id=perm_id,
        order_ref=ref,
        account_id="DU1234567",
        contract=_contract(symbol),
        side="BOT",
        shares=shares,
        price=price,
        time=AT,
        commission=1.0,
    )


def _row(symbol: str, quantity: float, outcome: str, perm_id: int | None = None, message=""):
    return {
        "order_ref": REF + symbol,
        "symbol": symbol,
        "action": "BUY",
        "quantity": quantity,
        "outcome": outcome,
        "perm_id": perm_id,
        "message": message,
    }


#: The ticket values every order at a mid of 10 USD a share.
TICKET = [
    {"order_ref": REF + s, "symbol": s, "quantity": q, "notional": q * 10.0}
    for s, q in [("AAA", 100), ("BBB", 100), ("CCC", 50), ("DDD", 40), ("EEE", 30), ("FFF", 20)]
]


def test_each_order_matched_by_ref_or_perm_id_and_valued():
    statuses = [
        _status("AAA", REF + "AAA", 100, "Filled", 100),
        # another size of BBB already at IB under another ref: found by its permId
        _status("BBB", REF + "bbb-earlier", 80, "Submitted", 30, perm_id=77),
        _status("CCC", REF + "CCC", 50, "Cancelled", message="DAY order expired"),
        _status("DDD", REF + "DDD", 40, "Inactive", message="insufficient buying power"),
    ]
    fills = [
        _fill("AAA", REF + "AAA", 60, 10.5),
        _fill("AAA", REF + "AAA", 40, 10.25),
        _fill("BBB", "", 30, 9.0, perm_id=77),  # an execution without its ref, by permId
        _fill("ZZZ", "other-session", 5, 1.0),
    ]
    rows = [
        _row("AAA", 100, "placed"),
        _row("BBB", 100, "same_side_sent", perm_id=77),
        _row("CCC", 50, "placed"),
        _row("DDD", 40, "already_sent"),
        _row("EEE", 30, "refused", message="order guard: max_order_notional"),
        _row("FFF", 20, "placed"),  # IB no longer reports it
    ]
    orders = {o.symbol: o for o in session_orders(rows, TICKET, statuses, fills)}
    assert {s: o.state for s, o in orders.items()} == {
        "AAA": "filled",
        "BBB": "partially_filled",
        "CCC": "cancelled",
        "DDD": "cancelled",
        "EEE": "rejected",
        "FFF": "unknown",
    }
    assert orders["AAA"].fill_value == pytest.approx(60 * 10.5 + 40 * 10.25)
    assert (orders["BBB"].quantity, orders["BBB"].filled) == (80, 30)  # IB's order, not the ticket
    assert orders["BBB"].fill_value == pytest.approx(270.0)
    assert orders["CCC"].message == "DAY order expired"
    assert orders["EEE"].message == "order guard: max_order_notional"
    ended = sorted(s for s, o in orders.items() if o.ended_unfilled)
    assert ended == ["CCC", "DDD", "EEE"]
    assert [s for s, o in orders.items() if not o.is_done] == ["BBB", "FFF"]

    counts = tallies(TICKET, list(orders.values()))
    assert (counts["queued"].orders, counts["queued"].value) == (6, 3400.0)
    assert (counts["submitted"].orders, counts["submitted"].value) == (5, 2900.0)
    assert counts["filled"].value == pytest.approx(1040.0)
    assert counts["partially_filled"].value == pytest.approx(270.0)
    assert (counts["rejected_cancelled"].orders, counts["rejected_cancelled"].value) == (3, 1200.0)
    assert (counts["unknown"].orders, counts["unknown"].value) == (1, 200.0)
    assert counts["working"].orders == 0
    text = summary_text(TICKET, list(orders.values()), AT)
    assert "not reported by IB" in text and "EEE (ibkr-agent:2024-03-04:EEE) refused" in text


def test_a_partial_fill_then_cancel_counts_as_partial_and_is_alerted():
    status = _status("AAA", REF + "AAA", 100, "Cancelled", 40, avg_fill_price=10.0)
    [order] = session_orders([_row("AAA", 100, "placed")], TICKET, [status], [])
    # no executions reported (yet): the order's own filled and average price value it
    assert (order.state, order.fill_value, order.unfilled_value) == ("partially_filled", 400, 600)
    assert order.ended_unfilled and order.is_done


def test_a_fully_filled_order_is_never_alerted_even_if_ib_says_cancelled():
    status = _status("AAA", REF + "AAA", 100, "Cancelled", 100)
    [order] = session_orders([_row("AAA", 100, "placed")], TICKET, [status], [])
    assert order.state == "filled" and not order.ended_unfilled
