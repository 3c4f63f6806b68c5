"""The simulated gateway through IB's own Python client, ``ibapi`` (``ibapi-stable`` 10.50).

A second, independent TWS API client beside ``ib_async`` (tests/gateway/test_gateway_ib_async.py):
``ibapi`` encodes requests and decodes answers with IB's own field layouts for the server
version the gateway announces (178), so every assertion below is about what ``ibapi`` decoded
and fails if a message of ours is laid out wrong. The gateway runs the ``ib-paper`` realism
profile (tws.md; tags in brackets name its sources), its clock starting at 11:00 New York on a
Tuesday and running 60 times real time, so an order large against the minute's volume fills
over several simulated minutes within seconds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from ibapi.execution import ExecutionFilter
from ibapi.order_cancel import OrderCancel

from ibkr_sim.gateway import GatewayHandle, running_clock, start_gateway
from ibkr_sim.gateway.profile import IB_PAPER
from tests.gateway.ibapi_client import IbapiClient, fx_pair, order, stock
from tests.gateway.test_realism_profile import fast_clock

SESSION_START = datetime(2025, 6, 10, 15, 0, tzinfo=UTC)  # Tue 11:00 New York
SPEED = 60.0  # simulated seconds per real second
ACCOUNT = "DU1234567"  # the one managed account of an ib-paper login
DELAYED_TICKS = set(range(66, 77))  # delayed bid .. delayed open [DELAYED]
LIVE_TICKS = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14}  # bid size, bid, ask, ask size, last .. open


@pytest.fixture(scope="module")
def paper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHandle]:
    """An ib-paper gateway (no seeded history gaps or farm drops among these symbols)."""
    profile = IB_PAPER.with_options(history_gap_rate=0.0, farm_drops_per_day=0.0)
    with start_gateway(
        symbols=40,
        data_dir=tmp_path_factory.mktemp("ibapi"),
        clock=fast_clock(SESSION_START, SPEED),
        profile=profile,
    ) as handle:
        yield handle


def connect(paper: GatewayHandle, client_id: int) -> IbapiClient:
    return IbapiClient().open(paper.port, client_id)


def conid(paper: GatewayHandle, symbol: str) -> int:
    return paper.state.market.universe.lookup(symbol).conid


# ---------------------------------------------------------------------- handshake [MSGCODES]
def test_handshake_server_version_ids_account_and_farm_notices(paper: GatewayHandle) -> None:
    before = paper.state.now()
    with connect(paper, client_id=1) as ib:
        assert ib.serverVersion() == 178
        assert ib.connTime.decode().endswith(" UTC")
        (first_id,) = ib.named("nextValidId")[0]
        assert first_id >= 1
        ib.wait_for("managedAccounts")
        assert ib.named("managedAccounts") == [(ACCOUNT,)]  # one account per paper login
        ib.wait_until(lambda: len(ib.errors()) >= 3, what="farm notices")
        notices = ib.errors()[:3]
        assert [(rid, code) for rid, code, _ in notices] == [(-1, 2104), (-1, 2106), (-1, 2158)]
        assert [text.split(":")[0] for *_, text in notices] == [
            "Market data farm connection is OK",
            "HMDS data farm connection is OK",
            "Sec-def data farm connection is OK",
        ]
        order_of_arrival = [c.name for c in ib.callbacks]
        assert order_of_arrival.index("nextValidId") < order_of_arrival.index("error")
        ib.reqCurrentTime()
        (server_time,) = ib.wait_for("currentTime")
        assert int(before.timestamp()) <= server_time <= paper.state.now().timestamp()


# ---------------------------------------------------------------------- contracts and history
def test_contract_details_and_unknown_symbol(paper: GatewayHandle) -> None:
    with connect(paper, client_id=2) as ib:
        ib.reqContractDetails(7, stock("AAPL"))
        ib.wait_for("contractDetailsEnd", lambda rid: rid == 7)
        ((_, details),) = ib.named("contractDetails", lambda rid, _: rid == 7)
        inst = paper.state.market.universe.lookup("AAPL")
        assert details.contract.conId == inst.conid
        assert (details.contract.symbol, details.contract.secType) == ("AAPL", "STK")
        assert details.contract.primaryExchange == inst.primary_exchange
        assert details.longName == inst.name
        assert details.minTick == pytest.approx(0.01)
        assert details.timeZoneId == "US/Eastern"
        assert "20250610:0930-20250610:1600" in details.liquidHours.split(";")
        assert "LMT" in details.orderTypes.split(",") and "SMART" in details.validExchanges
        ib.reqContractDetails(8, stock("ZZZZQ"))
        ib.wait_until(lambda: 200 in ib.error_codes(8), what="error 200")
        assert "ZZZZQ" not in {d.contract.symbol for _, d in ib.named("contractDetails")}


def test_daily_bars(paper: GatewayHandle) -> None:
    with connect(paper, client_id=3) as ib:
        ib.reqHistoricalData(9, stock("AAPL"), "", "1 M", "1 day", "TRADES", 1, 1, False, [])
        _, start, end = ib.wait_for("historicalDataEnd", lambda rid, *_: rid == 9)
        bars = [bar for _, bar in ib.named("historicalData", lambda rid, _: rid == 9)]
        days = [datetime.strptime(b.date, "%Y%m%d").date() for b in bars]
        assert 19 <= len(bars) <= 23 and days == sorted(days)
        assert days[-1] == SESSION_START.date()  # today's bar so far, during the session
        assert (start[:8], end[:8]) == (bars[0].date, bars[-1].date)
        expected = paper.state.market.daily_bars(conid(paper, "AAPL"), days[0], days[-2])
        assert [b.close for b in bars[:-1]] == pytest.approx(expected["close"].tolist())
        assert [float(b.volume) for b in bars[:-1]] == pytest.approx(expected["volume"].tolist())
        assert all(isinstance(b.volume, Decimal) and b.barCount > 0 for b in bars)
        assert all(b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high for b in bars)


# ---------------------------------------------------------------------- market data [MDTYPE]
def test_live_data_is_refused_without_a_subscription(paper: GatewayHandle) -> None:
    with connect(paper, client_id=4) as ib:
        ib.reqMarketDataType(1)
        ib.reqMktData(20, stock("AAPL"), "", False, False, [])
        ib.wait_until(lambda: 10089 in ib.error_codes(20), what="error 10089")
        ((_, _, text),) = ib.errors(20)
        assert "requires additional subscription for API" in text
        assert "Delayed market data is available" in text
        time.sleep(1.3)  # longer than the gateway's tick interval
        assert ib.named("tickPrice", lambda rid, *_: rid == 20) == []
        assert ib.named("tickSize", lambda rid, *_: rid == 20) == []


def test_delayed_data_after_market_data_type_3(paper: GatewayHandle) -> None:
    with connect(paper, client_id=5) as ib:
        ib.reqMarketDataType(3)
        ib.reqMktData(21, stock("AAPL"), "", False, False, [])
        ib.reqMktData(22, fx_pair("EUR", "USD"), "", False, False, [])
        wanted = {66, 67, 68, 69, 70, 74}
        ib.wait_until(
            lambda: wanted <= {t for _, t, *_ in ib.named("tickPrice") + ib.named("tickSize")},
            what="delayed ticks 66-70, 74",
        )
        ib.wait_until(lambda: ib.named("tickPrice", lambda rid, *_: rid == 22), what="FX ticks")
        assert ib.error_codes(21) == ib.error_codes(22) == []
        assert (21, 3) in ib.named("marketDataType")  # delayed, announced per request
        assert (22, 1) in ib.named("marketDataType")  # IDEALPRO needs no subscription: live
        names = [(c.name, c.args[0]) for c in ib.callbacks]
        first_tick = min(names.index((n, 21)) for n in ("tickPrice", "tickSize"))
        assert names.index(("marketDataType", 21)) < first_tick
        prices = {t: p for rid, t, p, _ in ib.named("tickPrice") if rid == 21}
        sizes = {t for rid, t, _ in ib.named("tickSize") if rid == 21}
        assert set(prices) | sizes <= DELAYED_TICKS  # no live tick type on a delayed request
        assert 0 < prices[66] < prices[67]
        delayed = paper.state.market.snapshot(
            conid(paper, "AAPL"), paper.state.now() - timedelta(minutes=15)
        )
        assert prices[66] == pytest.approx(delayed.bid, rel=0.01)
        fx = {t for rid, t, *_ in ib.named("tickPrice") + ib.named("tickSize") if rid == 22}
        assert fx <= LIVE_TICKS and {1, 2} <= fx


# ---------------------------------------------------------------------- orders [ORDLIM]
def test_what_if_returns_margins_and_commission_and_places_nothing(paper: GatewayHandle) -> None:
    with connect(paper, client_id=6) as ib:
        ask = paper.state.market.snapshot(conid(paper, "AAPL"), paper.state.now()).ask
        order_id = ib.take_order_id()
        ib.placeOrder(order_id, stock("AAPL"), order("BUY", 100, round(ask, 2), "what-if", True))
        _, contract, placed, state = ib.wait_for("openOrder", lambda oid, *_: oid == order_id)
        assert contract.symbol == "AAPL" and placed.whatIf and placed.orderRef == "what-if"
        assert placed.totalQuantity == Decimal(100) and placed.lmtPrice == pytest.approx(ask, 1e-4)
        assert state.status == "PreSubmitted"
        value = 100 * ask
        init, maint = float(state.initMarginChange), float(state.maintMarginChange)
        assert 0 < maint < init <= value
        assert float(state.initMarginAfter) == pytest.approx(
            float(state.initMarginBefore) + init, abs=0.02
        )
        ewl_change = float(state.equityWithLoanChange)
        assert -0.01 * value < ewl_change < 0  # cash becomes stock, less spread and commission
        assert 0 < state.commissionAndFees < 10 and state.commissionAndFeesCurrency == "USD"
        assert state.minCommissionAndFees <= state.commissionAndFees
        assert state.commissionAndFees <= state.maxCommissionAndFees
        assert state.warningText == ""
        time.sleep(0.6)
        assert ib.named("orderStatus") == [] and ib.named("execDetails") == []
        assert paper.state.exchange.find_by_ref(ACCOUNT, "what-if") == []


@dataclass
class Trades:
    """The fills of one client: a marketable limit order and a market order large against the
    minute's volume, with the client that placed them (still connected)."""

    ib: IbapiClient
    limit_id: int
    limit_price: float
    big_id: int
    big_quantity: float
    minute_caps: list[float]


@pytest.fixture(scope="module")
def trades(paper: GatewayHandle) -> Iterator[Trades]:
    """Client 7 buys 10 AAPL at a limit above the ask (fills at once) and, under ib-paper's
    participation limit (10% of each minute's volume), a market order for MRK of about three
    minutes' allowance; waits until both are Filled."""
    ib = connect(paper, client_id=7)
    try:
        market, now = paper.state.market, paper.state.now()
        ask = market.snapshot(conid(paper, "AAPL"), now).ask
        bars = market.intraday_bars(conid(paper, "MRK"), now.date(), 1)
        soon = bars.loc[minute_of(now) : minute_of(now + timedelta(minutes=10)), "volume"]
        caps = [math.floor(IB_PAPER.participation * float(v)) for v in soon]
        quantity = float(round(2.5 * max(caps), -1))
        limit_id, big_id = ib.take_order_id(), ib.take_order_id()
        limit = round(ask + 0.50, 2)
        ib.placeOrder(limit_id, stock("AAPL"), order("BUY", 10, limit, "ibapi-limit"))
        ib.placeOrder(big_id, stock("MRK"), order("BUY", quantity, None, "ibapi-partial"))
        for oid in (limit_id, big_id):
            ib.wait_for(
                "orderStatus", lambda o, status, *_, i=oid: o == i and status == "Filled", 30
            )
        time.sleep(0.3)  # the last commission report follows its execution
        yield Trades(ib, limit_id, limit, big_id, quantity, caps)
    finally:
        ib.close()


def minute_of(at: datetime) -> datetime:
    """``at`` to the minute (the index of the simulated one-minute bars)."""
    return at.replace(second=0, microsecond=0)


def fills_of(ib: IbapiClient, order_id: int, req_id: int = -1) -> list:
    return [e for rid, _, e in ib.named("execDetails") if rid == req_id and e.orderId == order_id]


def test_a_marketable_limit_order_fills(paper: GatewayHandle, trades: Trades) -> None:
    ib = trades.ib
    statuses = ib.named("orderStatus", lambda oid, *_: oid == trades.limit_id)
    opened = ib.named("openOrder", lambda oid, *_: oid == trades.limit_id)
    assert opened and opened[0][1].conId == conid(paper, "AAPL")
    assert opened[0][2].orderType == "LMT" and opened[0][2].orderRef == "ibapi-limit"
    _, status, filled, remaining, avg_price, perm_id = statuses[-1]
    assert (status, filled, remaining) == ("Filled", Decimal(10), Decimal(0))
    assert perm_id > 0 and 0 < avg_price <= trades.limit_price
    (fill,) = fills_of(ib, trades.limit_id)
    assert (fill.side, fill.shares, fill.acctNumber, fill.clientId) == ("BOT", 10, ACCOUNT, 7)
    assert fill.price <= trades.limit_price and fill.orderRef == "ibapi-limit"
    assert fill.cumQty == Decimal(10) and fill.avgPrice == pytest.approx(avg_price)
    assert fill.time.startswith(SESSION_START.strftime("%Y%m%d "))
    (report,) = [r for (r,) in ib.named("commissionAndFeesReport") if r.execId == fill.execId]
    assert 0 < report.commissionAndFees < 5 and report.currency == "USD"


def test_a_large_order_fills_in_parts(paper: GatewayHandle, trades: Trades) -> None:
    """Several orderStatus with a growing filled and a shrinking remaining quantity, an
    execDetails and a commission report per fill, then Filled (tws.md, "Partial fills")."""
    ib, quantity = trades.ib, Decimal(str(trades.big_quantity))
    statuses = ib.named("orderStatus", lambda oid, *_: oid == trades.big_id)
    assert all(filled + remaining == quantity for _, _, filled, remaining, *_ in statuses)
    partial = [filled for _, s, filled, *_ in statuses if s == "Submitted" and filled > 0]
    assert len(partial) >= 2 and partial == sorted(partial) and partial[-1] < quantity
    assert statuses[-1][1:4] == ("Filled", quantity, Decimal(0))
    fills = fills_of(ib, trades.big_id)
    assert len(fills) >= 3
    assert [f.cumQty for f in fills] == sorted(f.cumQty for f in fills)
    assert sum(Decimal(str(f.shares)) for f in fills) == quantity == fills[-1].cumQty
    minutes = {f.time[:14] for f in fills}  # "YYYYMMDD HH:MM"
    assert len(minutes) >= 3, "the fills spread over several simulated minutes"
    assert all(f.shares <= max(trades.minute_caps) for f in fills)
    vwap = sum(f.price * float(f.shares) for f in fills) / float(quantity)
    assert statuses[-1][4] == pytest.approx(vwap, rel=1e-6) == fills[-1].avgPrice
    reports = {r.execId: r for (r,) in ib.named("commissionAndFeesReport")}
    assert all(reports[f.execId].commissionAndFees > 0 for f in fills)
    assert len({f.execId for f in fills}) == len(fills)


def test_executions_after_the_fact_from_another_client(
    paper: GatewayHandle, trades: Trades
) -> None:
    """reqExecutions from a fresh connection recovers the day's fills of client 7, with their
    commission reports, as a client does after a reconnect (tws.md, "After a reconnect")."""
    live = fills_of(trades.ib, trades.limit_id) + fills_of(trades.ib, trades.big_id)
    with connect(paper, client_id=8) as ib:
        everything, by_client, mrk = ExecutionFilter(), ExecutionFilter(), ExecutionFilter()
        by_client.clientId = 7
        mrk.symbol = "MRK"
        for req_id, flt in ((30, everything), (31, by_client), (32, mrk)):
            ib.reqExecutions(req_id, flt)
            ib.wait_for("execDetailsEnd", lambda rid, r=req_id: rid == r)
        got = {rid: [e for r, _, e in ib.named("execDetails") if r == rid] for rid in (30, 31, 32)}
        assert ib.named("execDetails", lambda rid, *_: rid == -1) == []  # none were client 8's
        mine = {e.execId for e in live}
        assert mine <= {e.execId for e in got[30]}
        assert {e.execId for e in got[31]} == mine
        assert {e.execId for e in got[32]} == {e.execId for e in fills_of(trades.ib, trades.big_id)}
        again = {e.execId: e for e in got[31]}
        for e in live:
            seen = again[e.execId]
            assert (seen.orderId, seen.clientId, seen.shares) == (e.orderId, 7, e.shares)
            assert (seen.price, seen.cumQty, seen.time) == (e.price, e.cumQty, e.time)
        reports = {r.execId for (r,) in ib.named("commissionAndFeesReport")}
        assert mine <= reports


def test_cancel_an_open_order(paper: GatewayHandle) -> None:
    with connect(paper, client_id=9) as ib:
        bid = paper.state.market.snapshot(conid(paper, "AAPL"), paper.state.now()).bid
        order_id = ib.take_order_id()
        ib.placeOrder(order_id, stock("AAPL"), order("BUY", 10, round(0.8 * bid, 2), "rest"))
        ib.wait_for("orderStatus", lambda o, status, *_: o == order_id and status == "Submitted")
        ib.cancelOrder(order_id, OrderCancel())
        ib.wait_for("orderStatus", lambda o, status, *_: o == order_id and status == "Cancelled")
        _, _, filled, remaining, *_ = ib.named("orderStatus", lambda o, *_: o == order_id)[-1]
        assert (filled, remaining) == (Decimal(0), Decimal(10))
        assert fills_of(ib, order_id) == []
        (info,) = paper.state.exchange.find_by_ref(ACCOUNT, "rest")
        assert info.status == "Cancelled"
        ib.cancelOrder(order_id, OrderCancel())  # TWS: not cancellable any more
        ib.wait_until(lambda: 10148 in ib.error_codes(order_id), what="error 10148")


def test_fills_are_reported_after_a_restart_on_the_same_data_dir(tmp_path: Path) -> None:
    """A gateway started again on its data dir with its clock at the same instant (a pinned
    session, as ``make demo`` and the fault tests run it) still sends a new fill's execDetails,
    although the earlier run stamped its executions later."""
    for run, pause in ((1, 1.5), (2, 0.0)):
        with (
            start_gateway(
                symbols=40,
                data_dir=tmp_path,
                clock=running_clock(SESSION_START),
                profile=IB_PAPER,
            ) as handle,
            connect(handle, client_id=1) as ib,
        ):
            time.sleep(pause)  # run 1 fills later on the gateway clock than run 2 will
            order_id = ib.take_order_id()
            ib.placeOrder(order_id, stock("AAPL"), order("BUY", 10, None, f"run-{run}"))
            _, _, fill = ib.wait_for("execDetails", lambda _, __, e, i=order_id: e.orderId == i)
            assert fill.orderRef == f"run-{run}" and fill.shares == 10


# ---------------------------------------------------------------------- connectivity [MSGCODES]
def tick_count(ib: IbapiClient, req_id: int) -> int:
    return len(ib.named("tickPrice", lambda rid, *_: rid == req_id))


@pytest.mark.parametrize("restore", [1101, 1102])
def test_connectivity_lost_then_restored(paper: GatewayHandle, restore: int) -> None:
    """1100, then 1101 (data lost: market data must be requested again, no more ticks come) or
    1102 (data maintained: the subscription survives, ticks come again), as error callbacks
    with id -1."""
    with connect(paper, client_id=restore) as ib:
        ib.reqMarketDataType(3)
        ib.reqMktData(40, stock("AAPL"), "", False, False, [])
        ib.wait_until(lambda: tick_count(ib, 40) > 0, what="delayed ticks")
        seen = len(ib.errors())
        paper.trigger("drop", seconds=0.5, restore=restore)
        ib.wait_until(lambda: restore in ib.error_codes(), what=f"error {restore}")
        news = ib.errors()[seen:]
        assert [(rid, code) for rid, code, _ in news] == [(-1, 1100), (-1, restore)]
        assert news[0][2] == "Connectivity between IB and Trader Workstation has been lost."
        after = tick_count(ib, 40)
        if restore == 1101:
            assert news[1][2].endswith("has been restored - data lost.")
            time.sleep(1.5)  # more than a tick interval: the subscription is gone
            assert tick_count(ib, 40) == after
        else:
            assert news[1][2].endswith("has been restored - data maintained.")
            ib.wait_until(lambda: tick_count(ib, 40) > after, what="ticks after 1102")
