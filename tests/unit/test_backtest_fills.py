"""The backtest's fill model (ibkr_assets.quant.backtest.fills): a DAY order sent before the
open fills as the paper exchange fills it, from the session's daily bar."""

from __future__ import annotations

import math
from datetime import date

import pandas as pd
import pytest

from ibkr_assets.quant.backtest.fills import Bar, fill_order, participation_cap
from ibkr_assets.quant.backtest.trading import SizedOrder, fill_orders
from ibkr_assets.quant.costs import OrderCost
from ibkr_assets.quant.orders import ProposedOrder

# a session that opens at 100, trades down to 98 and up to 103, 1,000,000 shares
BAR = Bar(open=100.0, high=103.0, low=98.0, close=101.0, volume=1_000_000.0)
HALF = 0.02  # half spread, USD per share


def costs(shares, price, half_spread, adv_shares, daily_vol, month_shares, sell):
    """A stand-in cost model: 1 c a share, the half spread, and 1 bp of impact."""
    return OrderCost(0.01 * shares, half_spread * shares, 1e-4 * price * shares)


def fill(buy, quantity, limit, bar=BAR, participation=0.10):
    return fill_order(
        buy,
        quantity,
        limit,
        HALF,
        bar,
        costs,
        adv_shares=1e6,
        daily_vol=0.02,
        month_shares=0.0,
        participation=participation,
    )


@pytest.mark.parametrize(("buy", "limit"), [(True, 97.99), (False, 102.99)])
def test_a_limit_the_path_never_reaches_does_not_fill(buy, limit):
    # a buy's ask reaches low + half spread = 98.02 at best; a sell's bid 103 - 0.02 = 102.98
    got = fill(buy, 500, limit)
    assert got.kind == "none" and got.quantity == 0 and got.cost == 0


@pytest.mark.parametrize(("buy", "limit"), [(True, 99.0), (False, 102.0)])
def test_a_resting_limit_the_path_crosses_fills_at_its_limit(buy, limit):
    got = fill(buy, 500, limit)
    assert (got.kind, got.quantity, got.price) == ("limit", 500, limit)
    assert got.commission == pytest.approx(5.0)
    assert got.spread == 0 and got.impact == 0  # a resting order pays no spread


@pytest.mark.parametrize("buy", [True, False])
def test_marketable_at_the_open_pays_the_spread_and_impact(buy):
    limit = 100.5 if buy else 99.5
    got = fill(buy, 1_000, limit)
    sign = 1 if buy else -1
    assert got.kind == "open" and got.quantity == 1_000
    assert got.spread == pytest.approx(HALF * 1_000)
    assert got.impact == pytest.approx(1e-4 * 100.0 * 1_000)
    assert got.price == pytest.approx(100.0 + sign * (HALF + 0.01))
    market = fill(buy, 1_000, None)
    assert market.kind == "open" and market.price == pytest.approx(got.price)


def test_no_fill_is_better_than_the_limit():
    # marketable by a hair: the impact would carry the price past the limit, the walk stops there
    buy = fill(True, 1_000, 100.021)
    assert buy.kind == "open" and buy.price == pytest.approx(100.021)
    assert buy.price <= 100.021 and buy.impact == pytest.approx(0.001 * 1_000)
    sell = fill(False, 1_000, 99.979)
    assert sell.price >= 99.979
    for limit in (98.5, 99.0, 99.9):  # resting buys: never below their limit
        assert fill(True, 100, limit).price == limit
    for limit in (100.1, 101.0, 102.9):  # resting sells: never above
        assert fill(False, 100, limit).price == limit


def test_a_large_order_fills_partially_under_participation():
    # buy limit 99: the ask is at or below it while the path is at or below 98.98, which is
    # (98.98 - 98) / (103 - 98) = 19.6 % of the day's range: 10 % of 196,000 shares
    cap = participation_cap(BAR, True, 99.0, HALF, 0.10)
    assert cap == 19_600
    got = fill(True, 50_000, 99.0)
    assert (got.kind, got.quantity, got.ordered, got.price) == ("limit", 19_600, 50_000, 99.0)
    assert fill(True, 10_000, 99.0).quantity == 10_000  # under the cap: in full
    # a market order may take 10 % of the whole day's volume
    assert fill(True, 500_000, None).quantity == 100_000
    # a sell marketable at the open: the bid is at or above 99.5 while the path is >= 99.52
    sell = fill(False, 500_000, 99.5)
    assert sell.kind == "open"
    assert sell.quantity == math.floor(0.1 * 1e6 * (103 - 99.52) / 5)
    # without a participation limit the whole order fills
    assert fill(True, 50_000, 99.0, participation=None).quantity == 50_000


def test_a_flat_day_fills_only_a_limit_at_or_through_its_price():
    flat = Bar(open=50.0, high=50.0, low=50.0, close=50.0, volume=10_000.0)
    assert fill(True, 100, 49.0, bar=flat).kind == "none"
    got = fill(True, 100, 50.05, bar=flat)
    assert got.kind == "open" and got.quantity == 100


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="quantity"):
        fill(True, 0, 99.0)
    with pytest.raises(ValueError, match="half_spread"):
        fill_order(True, 1, 99.0, -0.1, BAR, costs, adv_shares=1, daily_vol=0.1, month_shares=0)


def test_an_order_without_a_bar_that_session_expires_unfilled():
    order = ProposedOrder("HALT", "BUY", 100, 10.0, 10.0, 1000.0, 0.0, 100.0, 0.01, "")
    bars = pd.DataFrame(
        {"open": [100.0], "high": [103.0], "low": [98.0], "close": [101.0], "volume": [1e6]},
        index=pd.Index(["OTHER"], name="symbol"),
    )
    quotes = pd.DataFrame({"symbol": ["HALT"], "spread": [0.02], "mid": [10.0]})
    fills, rows = fill_orders(
        date(2024, 6, 3),
        [SizedOrder(order, 100, 1, "accepted")],
        bars,
        quotes,
        pd.Series({"HALT": 1e6}),
        pd.Series({"HALT": 0.02}),
        0.0,
        costs,
        0.10,
    )
    assert fills[0].kind == "none" and rows[0]["filled"] == 0 and rows[0]["ordered"] == 100
