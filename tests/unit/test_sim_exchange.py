"""The paper exchange (:class:`ibkr_sim.exchange.PaperExchange`): accounts, fills and their
accounting, order lifecycle at an instant, margin of options and futures, concurrency through
the shared file. The pure arithmetic (commissions, Reg T margin, fills, book walk) is in
test_sim_exchange_arithmetic.py, orders that wait for a later price in
test_sim_exchange_over_time.py; fixtures in tests/unit/conftest.py.
"""

from __future__ import annotations

import math
import multiprocessing
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ibkr_sim.exchange import OrderRequest, PaperExchange
from ibkr_sim.market import SimMarket
from ibkr_spec.errors import IBError
from tests.sim_direct import OPEN, PRIMARY, SECOND, Clock, _conid, _state

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
