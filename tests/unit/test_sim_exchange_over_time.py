"""The paper exchange's orders that wait for a later price: a resting limit filled at the
first crossing though nobody looked, a market order placed before the open, bracket children
behind their parent and cancelled by a sibling's fill, a GTC limit over weeks; and a reader
pinned in the past that must not rewrite what happened after.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ibkr_sim.exchange import OrderRequest, PaperExchange
from ibkr_sim.market import SimMarket
from ibkr_spec.errors import IBError
from tests.sim_direct import OPEN, SECOND, Clock, _conid


def test_a_resting_order_fills_when_the_price_crossed_even_if_nobody_looked(
    ex: PaperExchange, market: SimMarket, clock: Clock
) -> None:
    amzn = _conid(market, "AMZN")
    marks = [OPEN + timedelta(minutes=m) for m in range(1, 330)]
    asks = [market.snapshot(amzn, t).ask for t in marks]
    limit = min(asks)
    assert limit < market.snapshot(amzn, OPEN).ask
    first = marks[next(i for i, a in enumerate(asks) if a <= limit + 1e-9)]
    day = ex.place(SECOND, OrderRequest(amzn, "BUY", 10, "LMT", limit_price=limit))
    never = ex.place(
        SECOND, OrderRequest(amzn, "BUY", 10, "LMT", limit_price=round(limit * 0.5, 2))
    )
    assert day.status == "Submitted" and day.filled == 0
    clock.at = datetime(2026, 11, 21, 15, 0, tzinfo=UTC)  # the next day, a Saturday
    filled = ex.order(day.order_id)
    assert filled.status == "Filled" and filled.avg_fill_price <= limit + 1e-9
    (fill,) = ex.executions(SECOND)
    assert fill.time == first
    assert ex.order(never.order_id).status == "Cancelled"


def test_a_market_order_placed_before_the_open_fills_at_the_open(
    ex: PaperExchange, market: SimMarket, clock: Clock
) -> None:
    amzn = _conid(market, "AMZN")
    clock.at = datetime(2026, 11, 20, 13, 0, tzinfo=UTC)  # 08:00 New York
    placed = ex.place(SECOND, OrderRequest(amzn, "BUY", 10))
    assert placed.status == "PreSubmitted"
    clock.at = OPEN
    assert ex.order(placed.order_id).status == "Filled"
    (fill,) = ex.executions(SECOND)
    opening = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)
    assert fill.time == opening
    assert fill.price == pytest.approx(market.snapshot(amzn, opening).ask)


def test_bracket_child_waits_for_its_parent(ex: PaperExchange, market: SimMarket) -> None:
    amzn = _conid(market, "AMZN")
    snap = market.snapshot(amzn, OPEN)
    parent = ex.place(SECOND, OrderRequest(amzn, "BUY", 10, "LMT", limit_price=snap.bid - 1))
    child = ex.place(
        SECOND,
        OrderRequest(amzn, "SELL", 10, "STP", stop_price=snap.bid + 5, parent_id=parent.order_id),
    )
    # the stop is above the last price, so it would trigger at once - but its parent is working
    assert child.status == "PreSubmitted" and child.filled == 0
    ex.modify(parent.order_id, limit_price=snap.ask)
    assert ex.order(parent.order_id).status == "Filled"
    assert ex.order(child.order_id).status == "Filled"
    assert ex.positions(SECOND) == []
    other = ex.place(SECOND, OrderRequest(amzn, "BUY", 10, "LMT", limit_price=snap.bid - 1))
    orphan = ex.place(
        SECOND,
        OrderRequest(amzn, "SELL", 10, "LMT", limit_price=snap.ask, parent_id=other.order_id),
    )
    ex.cancel(other.order_id)
    assert ex.order(orphan.order_id).status == "Cancelled"
    with pytest.raises(IBError) as err:
        ex.place(SECOND, OrderRequest(amzn, "SELL", 1, parent_id=123_456))
    assert err.value.code == 10147


def test_a_bracket_childs_fill_cancels_its_sibling(ex: PaperExchange, market: SimMarket) -> None:
    amzn = _conid(market, "AMZN")
    snap = market.snapshot(amzn, OPEN)
    parent = ex.place(SECOND, OrderRequest(amzn, "BUY", 10, "LMT", limit_price=snap.bid - 1))
    take_profit = ex.place(
        SECOND,
        OrderRequest(amzn, "SELL", 10, "LMT", limit_price=snap.bid, parent_id=parent.order_id),
    )
    stop_loss = ex.place(
        SECOND,
        OrderRequest(amzn, "SELL", 10, "STP", stop_price=snap.bid - 20, parent_id=parent.order_id),
    )
    ex.modify(parent.order_id, limit_price=snap.ask)  # the parent fills, the take-profit at once
    assert ex.order(take_profit.order_id).status == "Filled"
    cancelled = ex.order(stop_loss.order_id)
    assert (cancelled.status, cancelled.filled) == ("Cancelled", 0)
    assert "sibling filled" in cancelled.message
    assert ex.positions(SECOND) == [] and ex.open_orders(SECOND) == []


def test_a_reader_pinned_in_the_past_does_not_rewrite_history(
    ex: PaperExchange, market: SimMarket, clock: Clock
) -> None:
    amzn = _conid(market, "AMZN")
    bid = market.snapshot(amzn, OPEN).bid
    placed = ex.place(SECOND, OrderRequest(amzn, "BUY", 10, "LMT", limit_price=bid, tif="GTC"))
    clock.at = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)
    now_status = ex.order(placed.order_id)
    fills = ex.executions(SECOND)
    past = PaperExchange(market, ex.state_path, clock=lambda: OPEN + timedelta(minutes=5))
    assert past.order(placed.order_id) == now_status
    assert past.executions(SECOND) == fills


def test_a_gtc_limit_left_alone_for_weeks_fills_at_the_first_crossing(
    ex: PaperExchange, market: SimMarket, clock: Clock
) -> None:
    amzn = _conid(market, "AMZN")
    sessions = market.sessions(OPEN.date() + timedelta(days=1), OPEN.date() + timedelta(days=40))
    bars = market.daily_bars(amzn, sessions[0], sessions[-1])
    target = bars["low"].iloc[3:].idxmin().date()

    def marks(day):  # every minute mark of a session's regular hours
        start, end = market.trading_hours(amzn, day)[0]
        return [start + timedelta(minutes=k) for k in range(int((end - start).seconds / 60))]

    limit = min(market.snapshot(amzn, t).ask for t in marks(target))
    assert limit < market.snapshot(amzn, OPEN).bid
    placed = ex.place(SECOND, OrderRequest(amzn, "BUY", 10, "LMT", limit_price=limit, tif="GTC"))
    assert placed.status == "Submitted"
    # brute force: the first minute mark from now on at which the ask is at or below the limit
    expected = next(
        t
        for day in [OPEN.date(), *sessions]
        if day == OPEN.date() or bars.loc[str(day), "low"] <= limit
        for t in marks(day)
        if t > OPEN and market.snapshot(amzn, t).ask <= limit + 1e-9
    )
    clock.at = datetime.combine(sessions[-1], datetime.min.time(), UTC) + timedelta(hours=23)
    assert ex.order(placed.order_id).status == "Filled"
    (fill,) = ex.executions(SECOND)
    assert fill.time == expected and fill.price <= limit + 1e-9
