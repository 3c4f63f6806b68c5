"""The paper exchange: fills, accounting, commissions, margin, order lifecycle, concurrency."""

from __future__ import annotations

import math
import multiprocessing
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from ibkr_sim.exchange import (
    Book,
    OrderRequest,
    PaperExchange,
    apply_fill,
    walk_book,
)
from ibkr_sim.market import SimMarket
from ibkr_spec.commissions import order_commission, stock_commission, stock_tier_rate
from ibkr_spec.errors import IBError
from ibkr_spec.margin import buying_power, position_margin

#: Friday 2026-11-20, 10:30 in New York: the market is open.
OPEN = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
PRIMARY, SECOND = "DU1234567", "DU7654321"


class Clock:
    """A settable clock for the exchange."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture(scope="module")
def market() -> SimMarket:
    return SimMarket(seed=7, n_stocks=700)


@pytest.fixture
def clock() -> Clock:
    return Clock(OPEN)


@pytest.fixture
def ex(market: SimMarket, tmp_path: Path, clock: Clock) -> PaperExchange:
    return PaperExchange(market, tmp_path / "sim" / "paper.sqlite", clock=clock)


def _conid(market: SimMarket, symbol: str) -> int:
    return market.universe.lookup(symbol).conid


def _state(ex: PaperExchange, account: str) -> tuple:
    return (
        ex.summary(account),
        ex.positions(account),
        ex.cash(account),
        ex.open_orders(account),
        ex.executions(account),
    )


# -- pure pieces -------------------------------------------------------------------------------


def test_tiered_stock_commission_against_hand_computed_numbers() -> None:
    # IB 0.35 minimum + (exchange 0.0030 + clearing 0.0002) x 100
    assert stock_commission(100, 5_000.0, sell=False) == pytest.approx(0.35 + 0.32)
    # 1000 x 0.0035 + 1000 x 0.0032
    assert stock_commission(1_000, 50_000.0, sell=False) == pytest.approx(3.50 + 3.20)
    # a $20 order: the 1 % maximum (0.20) is below the minimum and wins
    assert stock_commission(10, 20.0, sell=False) == pytest.approx(0.20 + 0.032)
    # second tier once 300k shares traded this month
    assert stock_commission(1_000, 50_000.0, False, month_shares=500_000) == pytest.approx(5.20)
    # a sale adds SEC (27.80 per million) and FINRA TAF (0.000166 / share)
    assert stock_commission(1_000, 50_000.0, sell=True) == pytest.approx(
        6.70 + 50_000 * 27.8e-6 + 0.166
    )
    # FINRA TAF is capped at 8.30 per order
    assert stock_commission(100_000, 1_000_000.0, sell=True) == pytest.approx(
        350.0 + 320.0 + 27.80 + 8.30
    )
    rates = [stock_tier_rate(v) for v in (0, 299_999, 300_000, 3e6, 2e7, 1e8, 5e8)]
    np.testing.assert_allclose(rates, [0.0035, 0.0035, 0.0020, 0.0015, 0.0010, 0.0005, 0.0005])
    assert order_commission("OPT", 1, 250.0, False) == pytest.approx(1.00)
    assert order_commission("OPT", 3, 750.0, False) == pytest.approx(1.95)
    assert order_commission("CASH", 10_000, 11_500.0, False) == pytest.approx(2.00)
    assert order_commission("CASH", 1e6, 1.15e6, False) == pytest.approx(23.0)
    with pytest.raises(ValueError, match="IND"):
        order_commission("IND", 1, 1.0, False)


def test_reg_t_margin_per_position() -> None:
    assert position_margin("STK", 100, 50.0) == pytest.approx((2_500.0, 1_250.0))
    assert position_margin("STK", -100, 50.0) == pytest.approx((2_500.0, 1_500.0))
    assert position_margin("OPT", 2, 3.0, 100) == (0.0, 0.0)
    # short OTM call: premium 200 + max(20 % of 10,000 - 1,000 OTM, 10 % of 10,000)
    assert position_margin("OPT", -1, 2.0, 100, 1.0, 100.0, 110.0, "C") == pytest.approx(
        (1_200.0, 1_200.0)
    )
    # short ITM put: premium 1,200 + 20 % of 10,000
    assert position_margin("OPT", -1, 12.0, 100, 1.0, 100.0, 110.0, "P") == pytest.approx(
        (3_200.0, 3_200.0)
    )
    assert position_margin("FUT", -1, 70.0, 1000) == pytest.approx((8_400.0, 7_000.0))
    assert buying_power(1_000.0) == 2_000.0 and buying_power(-5.0) == 0.0


def test_apply_fill_average_cost_realized_pnl_and_reversal(market: SimMarket) -> None:
    inst = market.universe.lookup("AAPL")
    book = Book({"USD": 10_000.0})
    assert apply_fill(book, inst, 100, 10.0, 1.0) is None
    pos = book.positions[inst.conid]
    assert (pos.cost_basis + pos.comm_basis) / pos.quantity == pytest.approx(10.01)
    # sell 40 at 12: 480 - 40/100 of (1000 + 1) - 1 commission
    assert apply_fill(book, inst, -40, 12.0, 1.0) == pytest.approx(480 - 400.4 - 1.0)
    assert (pos.cost_basis + pos.comm_basis) / pos.quantity == pytest.approx(10.01)
    # sell 100 at 12 from +60: closes 60 (realized), opens a 40 short with 40 % of the commission
    realized = apply_fill(book, inst, -100, 12.0, 1.0)
    assert realized == pytest.approx(720 - 600.6 - 0.6)
    assert pos.quantity == -40
    assert (pos.cost_basis + pos.comm_basis) / pos.quantity == pytest.approx((480 - 0.4) / 40)
    assert book.cash["USD"] == pytest.approx(10_000 - 1_001 + 479 + 1_199)
    assert apply_fill(book, inst, 40, 11.0, 1.0) == pytest.approx(480 - 0.4 - 440 - 1.0)
    assert inst.conid not in book.positions


def test_walk_book_takes_levels_in_order_within_the_limit() -> None:
    asks = [(10.00, 100.0, "A"), (10.01, 200.0, "B"), (10.03, 300.0, "C")]
    assert walk_book(asks, 250, buy=True) == [(10.00, 100.0, "A"), (10.01, 150.0, "B")]
    assert walk_book(asks, 250, buy=True, taken=50) == [(10.00, 50.0, "A"), (10.01, 200.0, "B")]
    assert walk_book(asks, 1_000, buy=True, limit=10.01) == [
        (10.00, 100.0, "A"),
        (10.01, 200.0, "B"),
    ]
    assert walk_book(asks, 100, buy=True, limit=10.01, taken=300) == []
    bids = [(9.99, 100.0, "A"), (9.98, 100.0, "B")]
    assert walk_book(bids, 150, buy=False, limit=9.985) == [(9.99, 100.0, "A")]


# -- accounts ----------------------------------------------------------------------------------


def test_new_file_is_seeded_with_two_accounts(ex: PaperExchange) -> None:
    accounts = ex.accounts()
    assert [(a.account_id, a.is_primary, a.base_currency) for a in accounts] == [
        (PRIMARY, True, "USD"),
        (SECOND, False, "USD"),
    ]
    assert ex.cash(PRIMARY) == {"EUR": 50_000.0, "GBP": 20_000.0, "USD": 1_000_000.0}
    s = ex.summary(PRIMARY)
    eur, gbp = (ex.market.fx_rate(c, OPEN) for c in ("EUR", "GBP"))
    assert s.net_liquidation == pytest.approx(1_000_000 + 50_000 * eur + 20_000 * gbp)
    assert s.buying_power == pytest.approx(2 * s.net_liquidation)
    assert ex.summary(SECOND).net_liquidation == pytest.approx(250_000.0)
    with pytest.raises(IBError) as err:
        ex.summary("U0000000")
    assert err.value.code == 321


# -- fills -------------------------------------------------------------------------------------


def test_round_trip_costs_exactly_commissions_and_spread(
    ex: PaperExchange, market: SimMarket
) -> None:
    msft = _conid(market, "MSFT")
    snap = market.snapshot(msft, OPEN)
    before = ex.summary(SECOND)
    buy = ex.place(SECOND, OrderRequest(msft, "BUY", 100, order_ref="rt-buy"))
    assert buy.status == "Filled" and buy.filled == 100 and buy.remaining == 0
    assert buy.avg_fill_price == pytest.approx(snap.ask)
    mid = ex.summary(SECOND)
    (pos,) = ex.positions(SECOND)
    assert pos.quantity == 100
    assert pos.avg_cost == pytest.approx(snap.ask + buy.commission / 100)
    assert pos.unrealized_pnl == pytest.approx(100 * (pos.market_price - snap.ask) - buy.commission)
    assert mid.net_liquidation - before.net_liquidation == pytest.approx(
        -(buy.commission + 100 * (snap.ask - pos.market_price))
    )
    assert mid.init_margin == pytest.approx(0.5 * 100 * pos.market_price)
    assert mid.maint_margin == pytest.approx(0.25 * 100 * pos.market_price)
    sell = ex.place(SECOND, OrderRequest(msft, "SELL", 100, order_ref="rt-sell"))
    assert sell.avg_fill_price == pytest.approx(snap.bid)
    after = ex.summary(SECOND)
    spread = 100 * (snap.ask - snap.bid)
    assert after.net_liquidation - before.net_liquidation == pytest.approx(
        -(buy.commission + sell.commission + spread)
    )
    assert ex.positions(SECOND) == []
    fills = ex.executions(SECOND)
    assert [e.side for e in fills] == ["BOT", "SLD"]
    assert fills[0].realized_pnl is None
    assert fills[1].realized_pnl == pytest.approx(-(buy.commission + sell.commission + spread))
    assert sum(e.commission for e in fills) == pytest.approx(buy.commission + sell.commission)
    pnl = ex.pnl(SECOND)
    assert pnl.realized == pytest.approx(fills[1].realized_pnl)
    assert pnl.daily == pytest.approx(after.net_liquidation - before.net_liquidation)
    assert pnl.unrealized == 0.0


def test_daily_pnl_is_the_change_since_the_previous_close(
    ex: PaperExchange, market: SimMarket, clock: Clock
) -> None:
    aapl = _conid(market, "AAPL")
    ex.place(SECOND, OrderRequest(aapl, "BUY", 200))
    clock.at = OPEN + timedelta(hours=2)
    s = ex.summary(SECOND)
    assert ex.pnl(SECOND).daily == pytest.approx(s.net_liquidation - 250_000.0)
    # next session: daily P&L is measured from Friday's close
    clock.at = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)
    friday_close = market.snapshot(aapl, clock.at).prev_close
    (pos,) = ex.positions(SECOND)
    assert ex.pnl(SECOND).daily == pytest.approx(200 * (pos.market_price - friday_close))


def test_short_sale_and_cover(ex: PaperExchange, market: SimMarket) -> None:
    nvda = _conid(market, "NVDA")
    snap = market.snapshot(nvda, OPEN)
    short = ex.place(SECOND, OrderRequest(nvda, "SELL", 50))
    (pos,) = ex.positions(SECOND)
    assert pos.quantity == -50 and pos.market_value < 0
    assert pos.avg_cost == pytest.approx(snap.bid - short.commission / 50)
    s = ex.summary(SECOND)
    assert s.maint_margin == pytest.approx(0.30 * 50 * pos.market_price)
    cover = ex.place(SECOND, OrderRequest(nvda, "BUY", 50))
    assert ex.executions(SECOND)[-1].realized_pnl == pytest.approx(
        50 * (snap.bid - snap.ask) - short.commission - cover.commission
    )


def test_limit_above_displayed_size_fills_partly_and_the_rest_rests(
    ex: PaperExchange, market: SimMarket, clock: Clock
) -> None:
    amzn = _conid(market, "AMZN")
    _, asks = market.depth(amzn, OPEN)
    top_price, top_size, _ = asks[0]
    qty = top_size + 500
    placed = ex.place(PRIMARY, OrderRequest(amzn, "BUY", qty, "LMT", limit_price=top_price))
    assert placed.status == "Submitted"
    assert placed.filled == top_size and placed.remaining == 500
    assert placed.avg_fill_price == pytest.approx(top_price)
    assert placed.order_id in {o.order_id for o in ex.open_orders(PRIMARY)}
    # the displayed size is gone for this minute: a second order at the same limit gets nothing
    other = ex.place(SECOND, OrderRequest(amzn, "BUY", 100, "LMT", limit_price=top_price))
    assert other.filled == 0 and other.status == "Submitted"
    # a market order walks past the taken level
    mkt = ex.place(SECOND, OrderRequest(amzn, "BUY", 100))
    assert mkt.avg_fill_price > top_price
    (pos,) = ex.positions(PRIMARY)
    assert pos.quantity == top_size
    assert sum(e.shares for e in ex.executions(PRIMARY)) == top_size
    # later the book refreshes and the resting remainder fills as soon as the ask is at the limit
    for minute in range(1, 390):
        clock.at = OPEN + timedelta(minutes=minute)
        if market.snapshot(amzn, clock.at).ask <= top_price:
            break
    else:
        pytest.skip("AMZN never traded back to the limit this session")
    done = ex.order(placed.order_id)
    assert done.status == "Filled" and done.filled == qty
    assert all(e.price <= top_price + 1e-9 for e in ex.executions(PRIMARY))


def test_resting_limit_then_modify_and_cancel(ex: PaperExchange, market: SimMarket) -> None:
    aapl = _conid(market, "AAPL")
    bid = market.snapshot(aapl, OPEN).bid
    before = ex.summary(SECOND)
    placed = ex.place(
        SECOND,
        OrderRequest(
            aapl, "BUY", 10, "LMT", limit_price=round(bid * 0.8, 2), tif="GTC", order_ref="rest-1"
        ),
    )
    assert placed.status == "Submitted" and placed.filled == 0
    assert [o.order_id for o in ex.find_by_ref(SECOND, "rest-1")] == [placed.order_id]
    modified = ex.modify(placed.order_id, quantity=20, limit_price=round(bid * 0.75, 2))
    assert modified.quantity == 20 and modified.limit_price == pytest.approx(round(bid * 0.75, 2))
    assert modified.status == "Submitted"
    cancelled = ex.cancel(placed.order_id)
    assert cancelled.status == "Cancelled"
    assert ex.open_orders(SECOND) == []
    assert [o.order_id for o in ex.completed_orders(SECOND)] == [placed.order_id]
    for call in (
        lambda: ex.cancel(placed.order_id),
        lambda: ex.modify(placed.order_id, quantity=5),
        lambda: ex.cancel(999_999),
    ):
        with pytest.raises(IBError) as err:
            call()
        assert err.value.code == 10147
    assert ex.summary(SECOND) == before


def test_modify_to_a_marketable_price_fills(ex: PaperExchange, market: SimMarket) -> None:
    aapl = _conid(market, "AAPL")
    snap = market.snapshot(aapl, OPEN)
    placed = ex.place(SECOND, OrderRequest(aapl, "BUY", 100, "LMT", limit_price=snap.bid - 1))
    assert placed.filled == 0
    filled = ex.modify(placed.order_id, limit_price=snap.ask + 0.05)
    assert filled.status == "Filled" and filled.avg_fill_price == pytest.approx(snap.ask)


def test_stop_waits_presubmitted_then_triggers_on_the_last_price(
    ex: PaperExchange, market: SimMarket, clock: Clock
) -> None:
    aapl = _conid(market, "AAPL")
    lasts = [
        (minute, market.snapshot(aapl, OPEN + timedelta(minutes=minute)).last)
        for minute in range(0, 300, 5)
    ]
    now_last = lasts[0][1]
    trigger_minute, trough = min(lasts, key=lambda x: x[1])
    assert trough < now_last, "AAPL dips at some point after 10:30 in this session"
    stop = ex.place(SECOND, OrderRequest(aapl, "SELL", 100, "STP", stop_price=trough))
    assert stop.status == "PreSubmitted" and stop.filled == 0
    clock.at = OPEN + timedelta(minutes=trigger_minute // 2)
    assert ex.order(stop.order_id).status == "PreSubmitted"
    clock.at = OPEN + timedelta(minutes=trigger_minute)
    filled = ex.order(stop.order_id)
    assert filled.status == "Filled"
    assert filled.avg_fill_price <= trough + 0.05
    (pos,) = ex.positions(SECOND)
    assert pos.quantity == -100
    # a buy stop below the last price triggers at once and fills like a market order
    buy_stop = ex.place(
        SECOND, OrderRequest(aapl, "BUY", 100, "STP", stop_price=round(trough * 0.9, 2))
    )
    assert buy_stop.status == "Filled"
    assert ex.positions(SECOND) == []
    # a triggered stop limit whose limit is not reachable rests
    stp_lmt = ex.place(
        SECOND,
        OrderRequest(
            aapl,
            "BUY",
            10,
            "STP LMT",
            limit_price=round(trough * 0.8, 2),
            stop_price=round(trough * 0.9, 2),
        ),
    )
    assert stp_lmt.status == "Submitted" and stp_lmt.filled == 0


def test_orders_outside_hours_wait_for_the_session_and_day_orders_expire(
    ex: PaperExchange, market: SimMarket, clock: Clock
) -> None:
    aapl = _conid(market, "AAPL")
    bid = market.snapshot(aapl, OPEN).bid
    day = ex.place(SECOND, OrderRequest(aapl, "BUY", 5, "LMT", limit_price=round(bid * 0.5, 2)))
    gtc = ex.place(
        SECOND, OrderRequest(aapl, "BUY", 5, "LMT", limit_price=round(bid * 0.5, 2), tif="GTC")
    )
    clock.at = datetime(2026, 11, 21, 15, 0, tzinfo=UTC)  # Saturday
    assert ex.order(day.order_id).status == "Cancelled"
    assert "expired" in ex.order(day.order_id).message
    assert ex.order(gtc.order_id).status == "PreSubmitted"
    weekend = ex.place(SECOND, OrderRequest(aapl, "BUY", 10))
    assert weekend.status == "PreSubmitted" and weekend.filled == 0
    assert ex.positions(SECOND) == []
    clock.at = datetime(2026, 11, 23, 14, 31, tzinfo=UTC)  # Monday 09:31 New York
    monday = ex.order(weekend.order_id)
    assert monday.status == "Filled" and monday.filled == 10
    assert ex.order(gtc.order_id).status == "Submitted"


def test_what_if_beyond_buying_power_is_flagged_and_changes_nothing(
    ex: PaperExchange, market: SimMarket
) -> None:
    nvda = _conid(market, "NVDA")
    before = _state(ex, SECOND)
    next_id = ex.next_order_id()
    price = market.snapshot(nvda, OPEN).ask
    qty = math.ceil(before[0].buying_power * 1.5 / price)
    w = ex.what_if(SECOND, OrderRequest(nvda, "BUY", qty))
    assert not w.accepted and "buying power" in w.warning
    assert w.init_margin_after > w.equity_with_loan_after
    assert w.init_margin_before == 0 and w.commission > 0
    assert w.min_commission <= w.commission <= w.max_commission
    assert _state(ex, SECOND) == before and ex.next_order_id() == next_id
    # within buying power: accepted, and the commission is what the fill then charges
    small = OrderRequest(nvda, "BUY", 100)
    ok = ex.what_if(SECOND, small)
    assert ok.accepted and ok.warning == ""
    assert _state(ex, SECOND) == before
    placed = ex.place(SECOND, small)
    assert placed.commission == pytest.approx(ok.commission)
    assert ex.summary(SECOND).init_margin == pytest.approx(ok.init_margin_after)
    # placing the oversized order is rejected (201), recorded Inactive, and moves nothing
    middle = _state(ex, SECOND)
    with pytest.raises(IBError) as err:
        ex.place(SECOND, OrderRequest(nvda, "BUY", qty, order_ref="too-big"))
    assert err.value.code == 201 and "buying power" in err.value.message
    (rejected,) = ex.find_by_ref(SECOND, "too-big")
    assert rejected.status == "Inactive" and "buying power" in rejected.message
    assert _state(ex, SECOND)[:3] == middle[:3]


def test_bad_requests_are_clear_errors_and_change_nothing(
    ex: PaperExchange, market: SimMarket
) -> None:
    aapl = _conid(market, "AAPL")
    before = _state(ex, PRIMARY)
    cases = [
        (OrderRequest(aapl, "BUY", 0), 321, "quantity"),
        (OrderRequest(aapl, "BUY", float("nan")), 321, "quantity"),
        (OrderRequest(aapl, "HOLD", 1), 321, "action"),
        (OrderRequest(aapl, "BUY", 1, "LMT"), 321, "limit_price"),
        (OrderRequest(aapl, "BUY", 1, "LMT", limit_price=float("nan")), 321, "limit_price"),
        (OrderRequest(aapl, "BUY", 1, "STP"), 321, "stop_price"),
        (OrderRequest(aapl, "BUY", 1, tif="FOK"), 321, "time in force"),
        (OrderRequest(aapl, "BUY", 1.5), 321, "whole"),
        (OrderRequest(aapl, "BUY", 1, "LMT", limit_price=100.005), 110, "minimum price variation"),
        (OrderRequest(1, "BUY", 1), 200, ""),
        (OrderRequest(market.universe.lookup("VIX", "IND").conid, "BUY", 1), 201, "index"),
    ]
    for req, code, text in cases:
        with pytest.raises(IBError) as err:
            ex.place(PRIMARY, req)
        assert err.value.code == code and text in err.value.message
    with pytest.raises(IBError) as err:
        ex.place("DU0000000", OrderRequest(aapl, "BUY", 1))
    assert err.value.code == 321
    assert _state(ex, PRIMARY)[:3] == before[:3]


def test_accounts_are_independent(ex: PaperExchange, market: SimMarket) -> None:
    before = _state(ex, PRIMARY)
    ex.place(SECOND, OrderRequest(_conid(market, "AMZN"), "BUY", 5))
    assert _state(ex, PRIMARY) == before
    assert len(ex.positions(SECOND)) == 1


def test_fx_order_converts_cash(ex: PaperExchange, market: SimMarket) -> None:
    eur = market.universe.lookup("EUR", "CASH").conid
    snap = market.snapshot(eur, OPEN)
    placed = ex.place(PRIMARY, OrderRequest(eur, "BUY", 10_000))
    cash = ex.cash(PRIMARY)
    assert cash["EUR"] == pytest.approx(60_000.0)
    assert cash["USD"] == pytest.approx(1_000_000 - 10_000 * snap.ask - placed.commission)
    assert placed.commission == pytest.approx(2.0) and ex.positions(PRIMARY) == []


def test_state_is_shared_through_the_file(
    ex: PaperExchange, market: SimMarket, tmp_path: Path
) -> None:
    placed = ex.place(PRIMARY, OrderRequest(_conid(market, "MSFT"), "BUY", 7, order_ref="shared"))
    other = PaperExchange(market, ex.state_path, clock=lambda: OPEN)
    assert other.find_by_ref(PRIMARY, "shared")[0].order_id == placed.order_id
    assert other.positions(PRIMARY)[0].quantity == 7
    assert other.next_order_id() == placed.order_id + 1


# -- concurrency -------------------------------------------------------------------------------

N_ORDERS = 12


def _trade(market: SimMarket, path: Path, tag: str) -> None:
    ex = PaperExchange(market, path, clock=lambda: OPEN)
    conid = market.universe.lookup("AMZN").conid
    for i in range(N_ORDERS):
        account = PRIMARY if i % 2 else SECOND
        action = "SELL" if i % 3 == 2 else "BUY"
        ex.place(account, OrderRequest(conid, action, 10 + i, order_ref=f"{tag}-{i}"))
    ex.close()


def test_two_instances_and_a_process_trading_at_once_add_up(
    market: SimMarket, tmp_path: Path
) -> None:
    path = tmp_path / "paper.sqlite"
    PaperExchange(market, path, clock=lambda: OPEN).close()
    child = multiprocessing.get_context("fork").Process(target=_trade, args=(market, path, "p"))
    child.start()
    threads = [threading.Thread(target=_trade, args=(market, path, t)) for t in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    child.join(timeout=60)
    assert child.exitcode == 0
    ex = PaperExchange(market, path, clock=lambda: OPEN)
    orders = ex.completed_orders()
    assert len(orders) == 3 * N_ORDERS and all(o.status == "Filled" for o in orders)
    assert len({o.order_id for o in orders}) == 3 * N_ORDERS
    amzn = market.universe.lookup("AMZN").conid
    for account, usd in ((PRIMARY, 1_000_000.0), (SECOND, 250_000.0)):
        fills = ex.executions(account)
        signed = [e.shares if e.side == "BOT" else -e.shares for e in fills]
        expected = sum(
            (10 + i) * (1 if i % 3 != 2 else -1)
            for i in range(N_ORDERS)
            if (i % 2 == 1) == (account == PRIMARY)
        )
        (pos,) = [p for p in ex.positions(account) if p.conid == amzn]
        assert pos.quantity == pytest.approx(3 * expected) == pytest.approx(sum(signed))
        spent = sum(s * e.price + e.commission for s, e in zip(signed, fills, strict=True))
        assert ex.cash(account)["USD"] == pytest.approx(usd - spent)
    execs = ex.executions()
    assert len({e.exec_id for e in execs}) == len(execs)


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


def test_long_options_have_no_loan_value_and_futures_move_no_cash(
    ex: PaperExchange, market: SimMarket
) -> None:
    aapl = _conid(market, "AAPL")
    expiries, strikes = market.option_chain(aapl, OPEN.date())
    spot = market.snapshot(aapl, OPEN).last
    call = market.option(aapl, expiries[1], min(strikes, key=lambda k: abs(k - spot)), "C")
    bought = ex.place(SECOND, OrderRequest(call.conid, "BUY", 2))
    assert bought.commission == pytest.approx(1.30)
    (opt,) = ex.positions(SECOND)
    assert opt.market_value == pytest.approx(2 * 100 * opt.market_price)
    assert opt.avg_cost == pytest.approx(100 * bought.avg_fill_price + 0.65)
    s = ex.summary(SECOND)
    assert s.init_margin == 0.0
    assert s.equity_with_loan == pytest.approx(s.net_liquidation - opt.market_value)
    assert s.total_cash == pytest.approx(250_000 - 200 * bought.avg_fill_price - 1.30)

    cl = market.universe.lookup("CL", "FUT")
    cash_before = ex.cash(SECOND)["USD"]
    net_before = s.net_liquidation
    fut = ex.place(SECOND, OrderRequest(cl.conid, "BUY", 1))
    assert ex.cash(SECOND)["USD"] == pytest.approx(cash_before - fut.commission)
    pos = next(p for p in ex.positions(SECOND) if p.conid == cl.conid)
    after = ex.summary(SECOND)
    assert after.net_liquidation - net_before == pytest.approx(
        -fut.commission - 1_000 * (fut.avg_fill_price - pos.market_price)
    )
    assert after.init_margin == pytest.approx(0.12 * 1_000 * pos.market_price)
    sold = ex.place(SECOND, OrderRequest(cl.conid, "SELL", 1))
    gain = 1_000 * (sold.avg_fill_price - fut.avg_fill_price)
    assert ex.cash(SECOND)["USD"] == pytest.approx(
        cash_before - fut.commission - sold.commission + gain
    )
    assert ex.executions(SECOND)[-1].realized_pnl == pytest.approx(
        gain - fut.commission - sold.commission
    )


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
