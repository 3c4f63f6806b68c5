"""The order guard (:mod:`ibkr_assets.broker.guard`) on the in-process simulator, one behaviour per
test: its switches (read-only, kill switch, live opt-in) and the allow-list by resolved
contract. Every test checks what reached the paper account (positions, open orders,
executions), not only the refusal. Valuing orders at the market (caps, price distance, quote
freshness) is tested in test_order_guard_prices.py, the persisted rate limits and exactly-once
placement in test_order_guard_limits.py; the helpers are tests/order_guard_sim.py.

The simulator's clock is pinned inside a NYSE session, so its quotes are always "now".
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ibkr_assets.broker.guarded import GuardedBroker
from tests.order_guard_sim import (
    _aapl,
    _aapl_call,
    _buy,
    _held,
    _limits,
    _nothing_reached,
    _open,
    _refused,
    _resting_stop,
)

LIVE = "U7777777"


# -- read-only ----------------------------------------------------------------------------------
def test_read_only_refuses_place(data_dir):
    b = _open(data_dir, readonly=True)
    text = _refused(lambda: b.place(_buy(_aapl(b), 1, "ro", order_type="MKT")), "readonly")
    assert "IBKR_READONLY" in text
    _nothing_reached(b)


@pytest.mark.parametrize("operation", ["modify", "cancel"])
def test_read_only_refuses_modify_and_cancel(data_dir, operation):
    resting = _resting_stop(_open(data_dir))
    ro = _open(data_dir, readonly=True)
    if operation == "modify":
        _refused(lambda: ro.modify(resting.order_id, quantity=2), "readonly")
    else:
        _refused(lambda: ro.cancel(resting.order_id), "readonly")
    [still] = ro.inner.open_orders()
    assert (still.order_id, still.quantity, still.stop_price) == (
        resting.order_id,
        1,
        resting.stop_price,
    )
    assert not still.is_done


# -- kill switch --------------------------------------------------------------------------------
def _kill(data_dir: Path, how: str) -> GuardedBroker:
    """A broker on ``data_dir`` with the kill switch on, by setting or by the KILL file."""
    if how == "setting":
        return _open(data_dir, kill_switch=True)
    (data_dir / "KILL").touch()
    return _open(data_dir)


@pytest.mark.parametrize("how", ["setting", "file"])
def test_kill_switch_refuses_place(data_dir, how):
    b = _open(data_dir, kill_switch=how == "setting")
    if how == "file":
        (data_dir / "KILL").touch()  # switched on while the broker is open
    text = _refused(lambda: b.place(_buy(_aapl(b), 1, "k", order_type="MKT")), "kill_switch")
    assert ("IBKR_KILL_SWITCH" in text) if how == "setting" else (str(data_dir / "KILL") in text)
    _nothing_reached(b)


def test_removing_the_kill_file_lets_orders_through_again(data_dir):
    b = _kill(data_dir, "file")
    _refused(lambda: b.place(_buy(_aapl(b), 1, "k1", order_type="MKT")), "kill_switch")
    (data_dir / "KILL").unlink()
    b.place(_buy(_aapl(b), 1, "k2", order_type="MKT"))
    assert _held(b) == {("AAPL", "STK"): 1}
    assert [e.order_ref for e in b.inner.executions()] == ["k2"]


@pytest.mark.parametrize("how", ["setting", "file"])
def test_kill_switch_refuses_modify(data_dir, how):
    resting = _resting_stop(_open(data_dir))
    b = _kill(data_dir, how)
    _refused(lambda: b.modify(resting.order_id, quantity=2), "kill_switch")
    [still] = b.inner.open_orders()
    assert (still.order_id, still.quantity) == (resting.order_id, 1)


@pytest.mark.parametrize("how", ["setting", "file"])
def test_kill_switch_lets_a_cancel_through(data_dir, how):
    resting = _resting_stop(_open(data_dir))
    b = _kill(data_dir, how)
    b.cancel(resting.order_id)
    assert b.inner.open_orders() == []
    [done] = [o for o in b.inner.completed_orders() if o.order_id == resting.order_id]
    assert done.status in ("Cancelled", "ApiCancelled")
    assert b.inner.executions() == []


# -- live accounts ------------------------------------------------------------------------------
def _add_live_account(data_dir: Path) -> None:
    """A live (non-paper, non-primary) account joins the simulator's account file."""
    with sqlite3.connect(data_dir / "sim" / "paper.sqlite") as db:
        db.execute("INSERT OR IGNORE INTO accounts VALUES (?, 0, 'USD', 'Live')", (LIVE,))
        db.execute("INSERT OR IGNORE INTO cash VALUES (?, 'USD', 500000.0)", (LIVE,))


def test_live_account_refused_without_ibkr_allow_live(data_dir):
    b = _open(data_dir, limits=_limits(allow_live=True))
    _add_live_account(data_dir)
    order = _buy(_aapl(b), 1, "live", order_type="MKT", account_id=LIVE)
    text = _refused(lambda: b.place(order), "allow_live")
    assert f"{LIVE} is a live (non-paper) account" in text and "IBKR_ALLOW_LIVE" in text
    _nothing_reached(b, LIVE)


def test_live_account_refused_without_the_senders_allow_live(data_dir):
    b = _open(data_dir, limits=_limits(allow_live=False), allow_live=True)
    _add_live_account(data_dir)
    order = _buy(_aapl(b), 1, "live", order_type="MKT", account_id=LIVE)
    text = _refused(lambda: b.place(order), "allow_live")
    assert "IBKR_PIPELINE_ALLOW_LIVE" in text
    _nothing_reached(b, LIVE)


def test_live_account_trades_with_both_opt_ins(data_dir):
    b = _open(data_dir, limits=_limits(allow_live=True), allow_live=True)
    _add_live_account(data_dir)
    b.place(_buy(_aapl(b), 1, "live", order_type="MKT", account_id=LIVE))
    assert _held(b, LIVE) == {("AAPL", "STK"): 1}
    assert _held(b) == {}  # the paper primary account is untouched


# -- allow-list by resolved contract ------------------------------------------------------------
def test_allow_list_symbol_allows_its_stock(data_dir):
    b = _open(data_dir, allow_symbols=["AAPL"])
    b.place(_buy(_aapl(b), 1, "stk", order_type="MKT"))
    assert _held(b) == {("AAPL", "STK"): 1}


def test_allow_list_symbol_does_not_allow_its_options(data_dir):
    b = _open(data_dir, allow_symbols=["AAPL"])
    text = _refused(lambda: b.place(_buy(_aapl_call(b), 1, "o", order_type="MKT")), "allow_symbols")
    assert "AAPL:OPT" in text and "IBKR_ALLOW_SYMBOLS" in text
    _nothing_reached(b)


def test_allow_list_symbol_opt_allows_options_only(data_dir):
    b = _open(data_dir, allow_symbols=["AAPL:OPT"])
    b.place(_buy(_aapl_call(b), 1, "o", order_type="MKT"))
    _refused(lambda: b.place(_buy(_aapl(b), 1, "s", order_type="MKT")), "allow_symbols")
    assert _held(b) == {("AAPL", "OPT"): 1}


def test_allow_list_judges_the_conid_not_the_claimed_symbol(data_dir):
    b = _open(data_dir, allow_symbols=["MSFT"])
    claimed = _aapl(b).model_copy(update={"symbol": "MSFT", "name": "Microsoft"})
    text = _refused(lambda: b.place(_buy(claimed, 1, "x", order_type="MKT")), "allow_symbols")
    assert f"AAPL (STK conId {_aapl(b).conid})" in text
    _nothing_reached(b)


def test_allow_list_judges_an_option_dressed_as_its_stock_as_the_option(data_dir):
    b = _open(data_dir, allow_symbols=["AAPL"])
    call = _aapl_call(b)
    dressed = call.model_copy(update={"sec_type": "STK", "multiplier": 1.0, "strike": 0.0})
    text = _refused(lambda: b.place(_buy(dressed, 1, "x", order_type="MKT")), "allow_symbols")
    assert "AAPL:OPT" in text
    _nothing_reached(b)
