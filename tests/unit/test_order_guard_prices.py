"""The order guard (:mod:`ibkr_assets.broker.guard`) valuing an order at the market, on the
in-process simulator: the caps (quantity, value, share of net liquidation) at the price the
order would meet, not its own; the price-distance rule; quote freshness (stale, delayed or
missing quotes). Every test checks what reached the paper account, not only the refusal.

The simulator's clock is pinned inside a NYSE session, so its quotes are always "now"; stale,
delayed or missing quotes come from :class:`_QuotesAs`, the simulator with its quotes replaced.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ibkr_assets.broker import OrderRefused
from ibkr_assets.broker.errors import MarketDataUnavailable
from ibkr_assets.broker.guard import OrderGuard
from ibkr_assets.broker.guarded import GuardedBroker
from ibkr_assets.broker.models import Contract, Order, Quote
from ibkr_assets.broker.sim import SimBroker
from tests.order_guard_sim import (
    _aapl,
    _aapl_call,
    _buy,
    _held,
    _limits,
    _nothing_reached,
    _open,
    _quote,
    _refused,
    _sell,
    _settings,
)

#: Price-distance limit high enough that the caps, not the distance rule, refuse absurd prices.
FAR = 1_000.0


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
