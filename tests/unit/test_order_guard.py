"""The order guard (:mod:`ibkr_assets.broker.guard`) on the in-process simulator, one behaviour per
test: switches (read-only, kill switch, live opt-in), the allow-list by resolved contract, caps
valued at the market, the price-distance rule, quote freshness, persisted rate limits and
exactly-once placement. Every test checks what reached the paper account (positions, open
orders, executions), not only the refusal.

The simulator's clock is pinned inside a NYSE session, so its quotes are always "now"; stale,
delayed or missing quotes come from :class:`_QuotesAs`, the simulator with its quotes replaced.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ibkr_assets.broker import BrokerSettings, OrderLimits, OrderRefused, connect
from ibkr_assets.broker.errors import MarketDataUnavailable
from ibkr_assets.broker.guard import OrderGuard
from ibkr_assets.broker.guarded import GuardedBroker
from ibkr_assets.broker.models import Contract, Order, OrderStatus, Quote
from ibkr_assets.broker.sim import SimBroker

#: Friday 20 Nov 2026, 10:30 New York: the NYSE is open and the simulator's quotes are live.
SESSION = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
LIVE = "U7777777"
#: Price-distance limit high enough that the caps, not the distance rule, refuse absurd prices.
FAR = 1_000.0


def _limits(**changes: Any) -> OrderLimits:
    """The pipeline's limits, roomy except where a test narrows one (USD, shares, orders)."""
    base: dict[str, Any] = {
        "principal": "pipeline",
        "setting_prefix": "IBKR_PIPELINE_",
        "max_quantity": 10_000,
        "max_notional": 50_000.0,
        "max_nlv_share": 0.10,
        "orders_per_minute": 1_000,
        "orders_per_day": 10_000,
        "max_daily_notional": 10_000_000.0,
    }
    return OrderLimits(**{**base, **changes})


def _settings(data_dir: Path, **changes: Any) -> BrokerSettings:
    """The sim on ``data_dir``, guard switches off unless a test turns one on (the environment
    of whoever runs the tests never decides them)."""
    base: dict[str, Any] = {
        "backend": "sim",
        "data_dir": data_dir,
        "sim_now": SESSION,
        "sim_symbols": 120,
        "readonly": False,
        "kill_switch": False,
        "allow_live": False,
        "allow_symbols": [],
    }
    return BrokerSettings(**{**base, **changes})


def _open(data_dir: Path, limits: OrderLimits | None = None, **changes: Any) -> GuardedBroker:
    return connect(_settings(data_dir, **changes), limits or _limits())


def _with_clock(b: GuardedBroker, clock: Callable[[], float]) -> GuardedBroker:
    """The same backend and limits behind a guard whose rate limits read ``clock`` (epoch s)."""
    return GuardedBroker(b.inner, OrderGuard(b.guard.settings, b.guard.limits, wall_clock=clock))


class _QuotesAs:
    """The simulator with its quotes ``age_s`` seconds old and of market-data type
    ``data_type`` (1 live, 3 delayed), or with no market data at all (``missing``)."""

    def __init__(
        self, inner: SimBroker, age_s: float = 0.0, data_type: int = 1, missing: bool = False
    ) -> None:
        self.inner = inner
        self.age_s = age_s
        self.data_type = data_type
        self.missing = missing

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.inner, attribute)

    def quotes(self, contracts: Sequence[Contract]) -> list[Quote]:
        if self.missing:
            raise MarketDataUnavailable("no market data subscription (test)")
        shift = timedelta(seconds=self.age_s)
        return [
            q.model_copy(update={"time": q.time - shift, "market_data_type": self.data_type})
            for q in self.inner.quotes(contracts)
        ]


def _with_quotes(data_dir: Path, **quotes: Any) -> GuardedBroker:
    """The guarded sim on ``data_dir`` seeing :class:`_QuotesAs` quotes (``require_live``
    turns IBKR_REQUIRE_LIVE_QUOTES on)."""
    settings = _settings(data_dir, require_live_quotes=quotes.pop("require_live", False))
    inner = _QuotesAs(SimBroker.from_settings(settings), **quotes)
    return GuardedBroker(inner, OrderGuard(settings, _limits()))  # type: ignore[arg-type]


def _held(b: GuardedBroker, account: str | None = None) -> dict[tuple[str, str], float]:
    """Positions in the paper account: (symbol, secType) -> signed quantity."""
    return {
        (p.contract.symbol, p.contract.sec_type): p.quantity for p in b.inner.positions(account)
    }


def _nothing_reached(b: GuardedBroker, account: str | None = None) -> None:
    """No open order, no fill, no position in the account (None = the primary)."""
    assert b.inner.open_orders(account) == []
    assert b.inner.executions(account) == []
    assert _held(b, account) == {}


def _quote(b: GuardedBroker, contract: Contract) -> Quote:
    return b.inner.quotes([contract])[0]


def _aapl(b: GuardedBroker) -> Contract:
    return b.resolve("AAPL")


def _aapl_call(b: GuardedBroker) -> Contract:
    """An AAPL call near the money, first listed expiry (multiplier 100)."""
    aapl = _aapl(b)
    chain = b.option_chain(aapl)
    mid = _quote(b, aapl).mid
    strike = min(chain.strikes, key=lambda k: abs(k - mid))
    return b.option_contract(aapl, chain.expirations[0], strike, "C")


def _buy(contract: Contract, quantity: float = 1, ref: str = "", **kw: Any) -> Order:
    return Order(contract=contract, action="BUY", quantity=quantity, order_ref=ref, **kw)


def _sell(contract: Contract, quantity: float = 1, ref: str = "", **kw: Any) -> Order:
    return Order(contract=contract, action="SELL", quantity=quantity, order_ref=ref, **kw)


def _resting_stop(b: GuardedBroker, ref: str = "resting") -> OrderStatus:
    """A 1-share AAPL buy stop 5% above the ask: open, not triggered."""
    aapl = _aapl(b)
    stop = round(_quote(b, aapl).ask * 1.05, 2)
    status = b.place(_buy(aapl, 1, ref, order_type="STP", stop_price=stop))
    assert [o.order_id for o in b.inner.open_orders()] == [status.order_id]
    return status


def _refused(call: Callable[[], object], limit: str) -> str:
    """Run ``call``, expect the guard to refuse it on ``limit``; the refusal's text."""
    with pytest.raises(OrderRefused) as caught:
        call()
    assert caught.value.limit == limit, str(caught.value)
    return str(caught.value)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


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


# -- caps valued at the market ------------------------------------------------------------------
def _notional_refusal(b: GuardedBroker, order: Order, value: float) -> None:
    """``order`` is refused by the per-order value cap at ``value`` (USD), and nothing is sent."""
    text = _refused(lambda: b.place(order), "max_notional")
    cap = b.guard.limits.max_notional
    assert f"order value {value:,.2f} at the market" in text
    assert f"cap of {cap:,.2f} by {value - cap:,.2f} (IBKR_PIPELINE_MAX_NOTIONAL)" in text
    _nothing_reached(b)


def test_buy_stop_far_below_the_market_is_valued_at_the_ask(data_dir):
    b = _open(data_dir, max_price_distance=FAR)
    aapl = _aapl(b)
    assert b.assess(_buy(aapl, 1, order_type="STP", stop_price=1.0)).reference_price == (
        _quote(b, aapl).ask
    )
    order = _buy(aapl, 120, "stp", order_type="STP", stop_price=1.0)  # $120 at its own price
    _notional_refusal(b, order, 120 * _quote(b, aapl).ask)


def test_sell_limit_far_below_the_market_is_valued_at_the_bid(data_dir):
    b = _open(data_dir, max_price_distance=FAR)
    aapl = _aapl(b)
    order = _sell(aapl, 120, "lmt", order_type="LMT", limit_price=0.01)  # $1.20 at its own price
    _notional_refusal(b, order, 120 * _quote(b, aapl).bid)


def test_sell_stop_limit_with_a_far_limit_is_valued_at_the_bid(data_dir):
    b = _open(data_dir, max_price_distance=FAR)
    aapl = _aapl(b)
    stop = round(_quote(b, aapl).bid * 0.95, 2)
    order = _sell(aapl, 120, "sl", order_type="STP LMT", stop_price=stop, limit_price=0.01)
    _notional_refusal(b, order, 120 * _quote(b, aapl).bid)


def test_buy_stop_limit_with_a_far_limit_is_valued_at_its_limit(data_dir):
    b = _open(data_dir, max_price_distance=FAR)
    aapl = _aapl(b)
    ask = _quote(b, aapl).ask
    stop, limit = round(ask * 1.05, 2), round(ask * 10, 2)
    order = _buy(aapl, 12, "bl", order_type="STP LMT", stop_price=stop, limit_price=limit)
    _notional_refusal(b, order, 12 * limit)  # may pay up to the limit once triggered


def test_option_value_counts_the_multiplier(data_dir):
    b = _open(data_dir)
    call = _aapl_call(b)
    ask = _quote(b, call).ask
    fits, too_many = int(50_000 // (ask * 100)), int(50_000 // (ask * 100)) + 1
    _notional_refusal(b, _buy(call, too_many, "big", order_type="MKT"), too_many * ask * 100)
    b.place(_buy(call, fits, "fits", order_type="MKT"))
    assert _held(b) == {("AAPL", "OPT"): fits}


def test_option_multiplier_is_the_resolved_contracts_not_the_orders(data_dir):
    b = _open(data_dir)
    call = _aapl_call(b)
    ask = _quote(b, call).ask
    dressed = call.model_copy(update={"sec_type": "STK", "multiplier": 1.0})
    quantity = int(50_000 // (ask * 100)) + 1  # fits only if counted without the multiplier
    _notional_refusal(b, _buy(dressed, quantity, "d", order_type="MKT"), quantity * ask * 100)


@pytest.mark.parametrize("limit", ["max_quantity", "max_notional", "max_nlv_share"])
def test_cap_refusal_names_the_limit_its_setting_and_the_excess(data_dir, limit):
    caps = {
        "max_quantity": {"max_quantity": 5},
        "max_notional": {"max_notional": 2_000.0},
        "max_nlv_share": {"max_notional": 1e9, "max_nlv_share": 0.002},
    }[limit]
    b = _open(data_dir, limits=_limits(**caps))
    aapl = _aapl(b)
    value = 6 * _quote(b, aapl).ask
    text = _refused(lambda: b.place(_buy(aapl, 6, "cap", order_type="MKT")), limit)
    if limit == "max_quantity":
        expected = "quantity 6 exceeds the cap of 5 per order by 1 (IBKR_PIPELINE_MAX_QUANTITY)"
    elif limit == "max_notional":
        expected = (
            f"exceeds the cap of 2,000.00 by {value - 2_000:,.2f} (IBKR_PIPELINE_MAX_NOTIONAL)"
        )
    else:
        share = value / b.account_summary().net_liquidation
        expected = f"above the cap of 0.20% by {share - 0.002:.2%} (IBKR_PIPELINE_MAX_NLV_SHARE)"
    assert expected in text
    _nothing_reached(b)


def test_caps_are_in_the_accounts_base_currency(data_dir):
    """USD 100,000 bought against CHF is worth USD 100,000 whatever the price's currency."""
    b = _open(data_dir, limits=_limits(max_quantity=1e6, max_notional=95_000.0, max_nlv_share=1))
    usd_chf = b.resolve("USD", "CASH", "IDEALPRO", "CHF")
    cash_before = {c.currency: c.cash for c in b.cash_balances()}
    _refused(lambda: b.place(_buy(usd_chf, 100_000, "fx", order_type="MKT")), "max_notional")
    assert {c.currency: c.cash for c in b.cash_balances()} == cash_before
    assert b.inner.executions() == []


# -- price distance -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("action", "order_type", "stop", "limit"),
    [
        ("BUY", "STP", 1.0, None),  # a buy stop that triggers at once, disguised as $1
        ("SELL", "LMT", None, 0.01),  # a market sell disguised as a $0.01 limit
        ("BUY", "LMT", None, 2_000.0),  # a fat finger: twice the price
        ("SELL", "STP LMT", 950.0, 0.01),  # a sell stop that would sell at any price
    ],
)
def test_a_price_far_from_the_market_is_refused(data_dir, action, order_type, stop, limit):
    b = _open(data_dir)  # IBKR_MAX_PRICE_DISTANCE 20%, AAPL about $999
    order = Order(
        contract=_aapl(b),
        action=action,
        quantity=1,
        order_type=order_type,
        stop_price=stop,
        limit_price=limit,
        order_ref="far",
    )
    text = _refused(lambda: b.place(order), "max_price_distance")
    assert "IBKR_MAX_PRICE_DISTANCE" in text and "limit of 20%" in text
    _nothing_reached(b)


def test_a_limit_within_the_price_distance_rests(data_dir):
    b = _open(data_dir)
    aapl = _aapl(b)
    limit = round(_quote(b, aapl).bid * 0.85, 2)  # 15% below: within 20%, not marketable
    status = b.place(_buy(aapl, 1, "near", order_type="LMT", limit_price=limit))
    [resting] = b.inner.open_orders()
    assert (resting.order_id, resting.limit_price, resting.filled) == (status.order_id, limit, 0)
    assert b.inner.executions() == []


# -- quote freshness ----------------------------------------------------------------------------
def test_a_stale_quote_refuses_a_market_order(data_dir):
    b = _with_quotes(data_dir, age_s=300.0)  # IBKR_MAX_QUOTE_AGE_S 60
    text = _refused(lambda: b.place(_buy(_aapl(b), 1, "m", order_type="MKT")), "max_quote_age_s")
    assert "300 s old" in text and "IBKR_MAX_QUOTE_AGE_S" in text
    _nothing_reached(b)


def test_a_stale_quote_refuses_a_triggered_stop(data_dir):
    b = _with_quotes(data_dir, age_s=300.0)
    aapl = _aapl(b)
    stop = round(_quote(b, aapl).ask * 0.95, 2)  # already triggered: trades at once
    order = _buy(aapl, 1, "t", order_type="STP", stop_price=stop)
    _refused(lambda: b.place(order), "max_quote_age_s")
    _nothing_reached(b)


def test_delayed_data_is_judged_against_its_own_age_bound(data_dir):
    """A paper account without a subscription trades on IB's delayed data (15-20 minutes old),
    but not on delayed data older than IBKR_MAX_DELAYED_QUOTE_AGE_S (1,260 s)."""
    b = _with_quotes(data_dir, age_s=900.0, data_type=3)
    status = b.place(_sell(_aapl(b), 1, "dly", order_type="MKT"))
    assert [e.order_id for e in b.inner.executions()] == [status.order_id]
    stale = _with_quotes(data_dir, age_s=1800.0, data_type=3)
    text = _refused(
        lambda: stale.place(_sell(_aapl(stale), 1, "old", order_type="MKT")),
        "max_delayed_quote_age_s",
    )
    assert "delayed quote is 1,800 s old" in text and "IBKR_MAX_DELAYED_QUOTE_AGE_S" in text


def test_delayed_data_refuses_a_marketable_order_when_live_data_is_required(data_dir):
    b = _with_quotes(data_dir, data_type=3, require_live=True)
    text = _refused(
        lambda: b.place(_sell(_aapl(b), 1, "d", order_type="MKT")), "require_live_quotes"
    )
    assert "IBKR_REQUIRE_LIVE_QUOTES" in text
    _nothing_reached(b)


@pytest.mark.parametrize(
    "quotes", [{"age_s": 300.0}, {"data_type": 3, "require_live": True}], ids=["stale", "delayed"]
)
def test_a_resting_limit_does_not_need_a_fresh_live_quote(data_dir, quotes):
    b = _with_quotes(data_dir, **quotes)
    aapl = _aapl(b)
    limit = round(_quote(b, aapl).bid * 0.95, 2)
    b.place(_buy(aapl, 1, "rest", order_type="LMT", limit_price=limit))
    [resting] = b.inner.open_orders()
    assert (resting.order_ref, resting.filled) == ("rest", 0)
    assert b.inner.executions() == []


def test_no_quote_refuses_a_market_order(data_dir):
    b = _with_quotes(data_dir, missing=True)
    text = _refused(lambda: b.place(_buy(_aapl(b), 1, "nq", order_type="MKT")), "quote")
    assert "no quote" in text
    _nothing_reached(b)


@pytest.mark.parametrize(
    ("action", "order_type", "stop", "limit"),
    [("BUY", "STP", 1.0, None), ("SELL", "LMT", None, 0.01)],
    ids=["buy-stop-at-1", "sell-limit-at-0.01"],
)
def test_no_quote_never_values_an_order_at_an_absurd_price_of_its_own(
    data_dir, action, order_type, stop, limit
):
    """Without market data neither the distance rule nor the market can value these orders;
    at their own prices 60 AAPL (about $28,000 at the market) would count as $60 or $0.60."""
    b = _with_quotes(data_dir, missing=True)
    order = Order(
        contract=_aapl(b),
        action=action,
        quantity=60,
        order_type=order_type,
        stop_price=stop,
        limit_price=limit,
        order_ref="absurd",
    )
    with pytest.raises(OrderRefused):
        b.place(order)
    _nothing_reached(b)


# -- rate and daily limits, persisted -----------------------------------------------------------
def test_orders_per_day_survive_a_restart(data_dir):
    first = _open(data_dir, limits=_limits(orders_per_day=2))
    first.place(_buy(_aapl(first), 1, "d1", order_type="MKT"))
    first.place(_buy(_aapl(first), 1, "d2", order_type="MKT"))
    first.close()
    restarted = _open(data_dir, limits=_limits(orders_per_day=2))
    text = _refused(
        lambda: restarted.place(_buy(_aapl(restarted), 1, "d3", order_type="MKT")),
        "orders_per_day",
    )
    assert "IBKR_PIPELINE_ORDERS_PER_DAY" in text and "2 orders from pipeline" in text
    assert sorted(e.order_ref for e in restarted.inner.executions()) == ["d1", "d2"]


_CHILD = """
import sys
from datetime import datetime
from ibkr_assets.broker import BrokerSettings, OrderLimits, OrderRefused, connect
from ibkr_assets.broker.models import Order

data_dir, sim_now, limits, ref = sys.argv[1:5]
settings = BrokerSettings(
    backend="sim", data_dir=data_dir, sim_now=datetime.fromisoformat(sim_now), sim_symbols=120
)
b = connect(settings, OrderLimits.model_validate_json(limits))
order = Order(contract=b.resolve("AAPL"), action="BUY", quantity=1, order_type="MKT", order_ref=ref)
try:
    b.place(order)
except OrderRefused as exc:
    print("refused", exc.limit)
else:
    print("placed")
"""


def _place_in_another_process(data_dir: Path, limits: OrderLimits, ref: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IBKR_")}
    args = [data_dir, SESSION.isoformat(), limits.model_dump_json(), ref]
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    )
    return done.stdout.strip()


def test_orders_per_day_hold_across_processes(data_dir):
    limits = _limits(orders_per_day=2)
    b = _open(data_dir, limits=limits)
    b.place(_buy(_aapl(b), 1, "p1", order_type="MKT"))
    assert _place_in_another_process(data_dir, limits, "p2") == "placed"
    assert _place_in_another_process(data_dir, limits, "p3") == "refused orders_per_day"
    _refused(lambda: b.place(_buy(_aapl(b), 1, "p4", order_type="MKT")), "orders_per_day")
    assert sorted(e.order_ref for e in b.inner.executions()) == ["p1", "p2"]
    assert _held(b) == {("AAPL", "STK"): 2}


class _Clock:
    """A settable wall clock, seconds since the epoch."""

    def __init__(self, at: datetime) -> None:
        self.t = at.timestamp()

    def __call__(self) -> float:
        return self.t


def test_orders_per_minute_with_a_fake_clock(data_dir):
    clock = _Clock(datetime(2026, 11, 20, 15, 0, tzinfo=UTC))
    b = _with_clock(_open(data_dir, limits=_limits(orders_per_minute=2)), clock)
    b.place(_buy(_aapl(b), 1, "m1", order_type="MKT"))
    clock.t += 20
    b.place(_buy(_aapl(b), 1, "m2", order_type="MKT"))
    clock.t += 20
    text = _refused(lambda: b.place(_buy(_aapl(b), 1, "m3", order_type="MKT")), "orders_per_minute")
    assert "IBKR_PIPELINE_ORDERS_PER_MINUTE" in text
    clock.t += 21  # 61 s after the first order: one slot is free again
    b.place(_buy(_aapl(b), 1, "m4", order_type="MKT"))
    assert sorted(e.order_ref for e in b.inner.executions()) == ["m1", "m2", "m4"]


def test_orders_per_minute_count_across_utc_midnight(data_dir):
    clock = _Clock(datetime(2026, 11, 20, 23, 59, 50, tzinfo=UTC))
    b = _with_clock(_open(data_dir, limits=_limits(orders_per_minute=1)), clock)
    b.place(_buy(_aapl(b), 1, "late", order_type="MKT"))
    clock.t += 30  # 00:00:20 UTC the next day, 30 s later
    _refused(lambda: b.place(_buy(_aapl(b), 1, "early", order_type="MKT")), "orders_per_minute")
    assert [e.order_ref for e in b.inner.executions()] == ["late"]


def test_orders_per_day_reset_on_the_next_utc_day(data_dir):
    clock = _Clock(datetime(2026, 11, 20, 12, 0, tzinfo=UTC))
    b = _with_clock(_open(data_dir, limits=_limits(orders_per_day=1)), clock)
    b.place(_buy(_aapl(b), 1, "day1", order_type="MKT"))
    _refused(lambda: b.place(_buy(_aapl(b), 1, "day1b", order_type="MKT")), "orders_per_day")
    clock.t += 86_400
    b.place(_buy(_aapl(b), 1, "day2", order_type="MKT"))
    assert sorted(e.order_ref for e in b.inner.executions()) == ["day1", "day2"]


def test_daily_value_limit(data_dir):
    b = _open(data_dir, limits=_limits(max_daily_notional=1_200.0))
    aapl = _aapl(b)
    ask = _quote(b, aapl).ask  # about $466: two fit in $1,200, a third does not
    b.place(_buy(aapl, 1, "v1", order_type="MKT"))
    b.place(_buy(aapl, 1, "v2", order_type="MKT"))
    text = _refused(lambda: b.place(_buy(aapl, 1, "v3", order_type="MKT")), "max_daily_notional")
    assert f"{2 * ask:,.2f} sent today plus this order's {ask:,.2f}" in text
    assert f"by {3 * ask - 1_200:,.2f} (IBKR_PIPELINE_MAX_DAILY_NOTIONAL)" in text
    assert _held(b) == {("AAPL", "STK"): 2}


def test_limits_are_counted_per_sender(data_dir):
    pipeline = _open(data_dir, limits=_limits(orders_per_day=1))
    pipeline.place(_buy(_aapl(pipeline), 1, "pipe", order_type="MKT"))
    mcp = _open(data_dir, limits=_limits(principal="mcp", orders_per_day=1))
    mcp.place(_buy(_aapl(mcp), 1, "mcp", order_type="MKT"))
    _refused(
        lambda: pipeline.place(_buy(_aapl(pipeline), 1, "p2", order_type="MKT")), "orders_per_day"
    )
    assert sorted(e.order_ref for e in mcp.inner.executions()) == ["mcp", "pipe"]


def test_a_refused_order_does_not_count(data_dir):
    b = _open(data_dir, limits=_limits(orders_per_day=1, max_quantity=5))
    _refused(lambda: b.place(_buy(_aapl(b), 6, "big", order_type="MKT")), "max_quantity")
    b.place(_buy(_aapl(b), 1, "ok", order_type="MKT"))
    assert [e.order_ref for e in b.inner.executions()] == ["ok"]


# -- exactly once -------------------------------------------------------------------------------
def test_the_same_order_ref_twice_returns_the_first_order(data_dir):
    b = _open(data_dir)
    first = b.place(_buy(_aapl(b), 1, "once", order_type="MKT"))
    again = b.place(_buy(_aapl(b), 5, "once", order_type="MKT"))  # a retry, even a changed one
    assert again.order_id == first.order_id
    assert [e.order_ref for e in b.inner.executions()] == ["once"]
    assert _held(b) == {("AAPL", "STK"): 1}


@pytest.mark.parametrize("brokers", ["one broker", "two brokers"])
def test_two_threads_placing_the_same_order_ref_send_one_order(data_dir, brokers):
    first = _open(data_dir)
    second = first if brokers == "one broker" else _open(data_dir)  # two brokers: the flock
    order = _buy(_aapl(first), 1, "twin", order_type="MKT")
    start = threading.Barrier(2)
    placed: list[OrderStatus] = []

    def place(b: GuardedBroker) -> None:
        start.wait()
        placed.append(b.place(order))

    threads = [threading.Thread(target=place, args=(b,)) for b in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(placed) == 2 and placed[0].order_id == placed[1].order_id
    assert [e.order_ref for e in first.inner.executions()] == ["twin"]
    assert _held(first) == {("AAPL", "STK"): 1}


def test_a_modify_is_checked_as_a_new_order(data_dir):
    b = _open(data_dir)  # max_notional $50,000
    resting = _resting_stop(b)
    text = _refused(lambda: b.modify(resting.order_id, quantity=1000), "max_notional")
    assert f"order value {1000 * resting.stop_price:,.2f}" in text
    [still] = b.inner.open_orders()
    assert (still.order_id, still.quantity, still.filled) == (resting.order_id, 1, 0)
    assert b.inner.executions() == []


def test_a_modify_counts_against_the_rate_limits(data_dir):
    b = _open(data_dir, limits=_limits(orders_per_day=2))
    resting = _resting_stop(b)
    new_stop = round(resting.stop_price * 1.01, 2)
    b.modify(resting.order_id, stop_price=new_stop)
    _refused(lambda: b.place(_buy(_aapl(b), 1, "third", order_type="MKT")), "orders_per_day")
    [still] = b.inner.open_orders()
    assert (still.order_id, still.stop_price) == (resting.order_id, new_stop)
    assert b.inner.executions() == []
