"""The simulated gateway through plain ib_async, as a user would drive IB Gateway.

Nothing of ours sits between the test and the socket except starting the gateway. The gateway
clock is pinned to a regular NYSE session (and advances in real time) so market orders fill and
quotes are live whatever the wall-clock time of the test run.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import time
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from ib_async import (
    IB,
    Forex,
    LimitOrder,
    MarketOrder,
    Option,
    Order,
    ScannerSubscription,
    Stock,
)

from ibkr_sim.gateway import start_gateway
from ibkr_sim.gateway.profile import IB_PAPER
from tests.gateway.cli_gateway import bound_port, gateway_command

SESSION_START = datetime(2025, 6, 10, 15, 0, tzinfo=UTC)  # Tue 11:00 New York


def session_clock():
    t0 = time.monotonic()
    return lambda: SESSION_START + timedelta(seconds=time.monotonic() - t0)


#: an advisor-style paper login (two accounts) whose live account shares its market-data
#: subscriptions, so live quotes flow; no seeded farm drops or history gaps: each test says what
#: it expects (tests/gateway/test_realism_profile.py covers entitlements and faults)
PROFILE = IB_PAPER.with_options(
    accounts=2,
    live_data=frozenset({"STK", "ETF", "OPT", "IND", "FUT", "CASH"}),
    history_gap_rate=0.0,
    farm_drops_per_day=0.0,
)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    handle = start_gateway(
        port=0,
        symbols=60,
        data_dir=tmp_path_factory.mktemp("gw"),
        clock=session_clock(),
        profile=PROFILE,
    )
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def ib(gateway):
    client = IB()
    client.connect("127.0.0.1", gateway.port, clientId=1, timeout=10)
    errors: list[tuple[int, int, str]] = []
    client.errorEvent += lambda req_id, code, msg, contract: errors.append((req_id, code, msg))
    client.test_errors = errors  # type: ignore[attr-defined]
    yield client
    client.disconnect()


def test_connect_accounts_and_time(ib, gateway):
    assert ib.isConnected()
    assert ib.client.serverVersion() == 178
    assert ib.managedAccounts() == ["DU1234567", "DU7654321"]
    now = ib.reqCurrentTime()
    assert abs((now - gateway.state.now()).total_seconds()) < 5


def test_contract_details_and_unknown_symbol(ib, gateway):
    (details,) = ib.reqContractDetails(Stock("AAPL", "SMART", "USD"))
    inst = gateway.state.market.universe.lookup("AAPL")
    assert details.contract.conId == inst.conid
    assert details.contract.primaryExchange == inst.primary_exchange
    assert details.longName == inst.name
    assert details.minTick == pytest.approx(0.01)
    assert details.timeZoneId == "US/Eastern"
    assert ib.reqContractDetails(Stock("ZZZZQ", "SMART", "USD")) == []
    assert any(code == 200 and "ZZZZQ" in msg for _, code, msg in ib.test_errors)
    (qualified,) = ib.qualifyContracts(Stock("MSFT", "SMART", "USD"))
    assert qualified.conId == gateway.state.market.universe.lookup("MSFT").conid


def test_one_year_of_daily_bars(ib, gateway):
    contract = Stock("AAPL", "SMART", "USD")
    bars = ib.reqHistoricalData(contract, "", "1 Y", "1 day", "TRADES", useRTH=True, formatDate=1)
    assert 245 <= len(bars) <= 255
    dates = [b.date for b in bars]
    assert dates == sorted(dates) and isinstance(dates[0], date)
    # IB includes today's bar so far while the session is open (ibkr_spec.historical)
    assert dates[-1] == SESSION_START.date()
    market = gateway.state.market
    conid = market.universe.lookup("AAPL").conid
    expected = market.daily_bars(conid, dates[0], dates[-2])
    done = bars[:-1]
    np.testing.assert_allclose([b.close for b in done], expected["close"].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose([b.volume for b in done], expected["volume"].to_numpy())
    today = market.snapshot(conid, gateway.state.now())
    assert bars[-1].open == pytest.approx(today.open)
    assert 0 < bars[-1].volume <= today.volume
    assert all(b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high for b in bars)
    mid = ib.reqHistoricalData(contract, "", "1 M", "1 day", "MIDPOINT", True, 1)
    bid = ib.reqHistoricalData(contract, "", "1 M", "1 day", "BID", True, 1)
    assert [b.date for b in mid] == [b.date for b in bid]
    assert all(b.close < m.close for b, m in zip(bid, mid, strict=True))


def test_intraday_bars_format_date_2(ib):
    bars = ib.reqHistoricalData(
        Stock("MSFT", "SMART", "USD"), "", "2 D", "30 mins", "TRADES", True, formatDate=2
    )
    assert bars and all(b.date.tzinfo is not None for b in bars)
    assert bars[-1].date + timedelta(minutes=30) <= SESSION_START + timedelta(minutes=5)
    local = ib.reqHistoricalData(
        Stock("MSFT", "SMART", "USD"), "", "2 D", "30 mins", "TRADES", True, formatDate=1
    )
    assert [b.date for b in local] == [b.date for b in bars]  # same instants, New York time
    assert str(local[0].date.tzinfo) == "US/Eastern"
    bad = ib.reqHistoricalData(
        Stock("MSFT", "SMART", "USD"), "", "2 D", "7 mins", "TRADES", True, 1
    )
    assert len(bad) == 0
    assert any(code == 162 and "7 mins" in msg for _, code, msg in ib.test_errors)


def test_snapshot_quotes(ib, gateway):
    contracts = ib.qualifyContracts(Stock("AAPL", "SMART", "USD"), Stock("NVDA", "SMART", "USD"))
    tickers = ib.reqTickers(*contracts)
    for t in tickers:
        snap = gateway.state.market.snapshot(t.contract.conId, gateway.state.now())
        assert 0 < t.bid < t.ask
        assert t.last == pytest.approx(snap.last, rel=0.02)
        assert t.close == pytest.approx(snap.prev_close)
        assert t.volume > 0


def test_streaming_quotes_depth_and_delayed_data(ib, gateway):
    (contract,) = ib.qualifyContracts(Stock("AAPL", "SMART", "USD"))
    ticker = ib.reqMktData(contract)
    ib.sleep(1.3)
    assert 0 < ticker.bid < ticker.ask and ticker.last > 0
    ib.cancelMktData(contract)
    book = ib.reqMktDepth(contract, numRows=5)
    ib.sleep(0.3)
    assert len(book.domBids) == 5 and len(book.domAsks) == 5
    assert book.domBids[0].price == pytest.approx(ticker.bid, rel=0.01)
    assert all(a.price > b.price for a, b in zip(book.domAsks, book.domBids, strict=True))
    ib.cancelMktDepth(contract)
    ib.reqMarketDataType(3)
    try:
        (asked_delayed,) = ib.reqTickers(contract)
    finally:
        ib.reqMarketDataType(1)
    # with a subscription live data is sent whatever type was asked [DELAYED]; delayed data
    # itself: tests/gateway/test_realism_profile.py
    now = gateway.state.market.snapshot(contract.conId, gateway.state.now())
    assert asked_delayed.marketDataType == 1
    assert asked_delayed.last == pytest.approx(now.last, rel=0.005)


def test_what_if_order(ib):
    (contract,) = ib.qualifyContracts(Stock("AAPL", "SMART", "USD"))
    state = ib.whatIfOrder(contract, MarketOrder("BUY", 100))
    assert float(state.initMarginChange) > 0
    assert float(state.equityWithLoanBefore) > 0
    assert 0 < state.commission < 10
    assert ib.positions() == [] or all(p.contract.conId != contract.conId for p in ib.positions())


def test_market_order_fills_with_fill_events(ib):
    (contract,) = ib.qualifyContracts(Stock("MSFT", "SMART", "USD"))
    fills = []
    ib.execDetailsEvent += lambda trade, fill: fills.append(fill)
    trade = ib.placeOrder(contract, MarketOrder("BUY", 10, orderRef="gw-test-1"))
    deadline = time.monotonic() + 10
    while not trade.isDone() and time.monotonic() < deadline:
        ib.sleep(0.05)
    assert trade.orderStatus.status == "Filled"
    assert trade.orderStatus.filled == 10
    assert sum(f.execution.shares for f in trade.fills) == 10
    assert fills and fills[0].execution.side == "BOT"
    ib.sleep(0.1)
    assert trade.fills[0].commissionReport.commission > 0
    positions = {p.contract.conId: p.position for p in ib.reqPositions()}
    assert positions[contract.conId] == 10


def test_resting_limit_order_modify_and_cancel(ib):
    (contract,) = ib.qualifyContracts(Stock("NVDA", "SMART", "USD"))
    (ticker,) = ib.reqTickers(contract)
    order = LimitOrder("BUY", 5, round(ticker.bid * 0.5, 2))
    trade = ib.placeOrder(contract, order)
    ib.sleep(0.5)
    assert trade.orderStatus.status == "Submitted"
    assert any(t.order.orderId == order.orderId for t in ib.reqAllOpenOrders())
    order.lmtPrice = round(ticker.bid * 0.6, 2)
    ib.placeOrder(contract, order)
    ib.sleep(0.5)
    assert trade.order.lmtPrice == pytest.approx(round(ticker.bid * 0.6, 2))
    ib.cancelOrder(order)
    deadline = time.monotonic() + 5
    while trade.orderStatus.status != "Cancelled" and time.monotonic() < deadline:
        ib.sleep(0.05)
    assert trade.orderStatus.status == "Cancelled"


def test_account_summary_and_updates(ib):
    values = {(v.account, v.tag, v.currency): v.value for v in ib.accountSummary()}
    net = float(values[("DU1234567", "NetLiquidation", "USD")])
    assert net > 1_000_000 * 0.9
    assert float(values[("DU7654321", "TotalCashValue", "USD")]) == pytest.approx(250_000, rel=1e-3)
    ib.reqAccountUpdates("DU1234567")
    assert any(v.tag == "NetLiquidation" for v in ib.accountValues("DU1234567"))


def test_scanner_and_news(ib):
    sub = ScannerSubscription(
        instrument="STK", locationCode="STK.US.MAJOR", scanCode="TOP_PERC_GAIN", numberOfRows=10
    )
    rows = ib.reqScannerData(sub)
    assert 1 <= len(rows) <= 10
    assert [r.rank for r in rows] == sorted(r.rank for r in rows)
    ib.test_errors.clear()
    bad = ScannerSubscription(instrument="STK", locationCode="STK.US.MAJOR", scanCode="NOPE")
    assert len(ib.reqScannerData(bad)) == 0
    assert any(code == 162 and "NOPE" in msg for _, code, msg in ib.test_errors)
    xml = ib.reqScannerParameters()
    assert "TOP_PERC_GAIN" in xml and "<ScanParameterResponse>" in xml
    providers = ib.reqNewsProviders()
    assert {p.code for p in providers} >= {"BRFG"}
    conid = rows[0].contractDetails.contract.conId
    codes = "+".join(p.code for p in providers)
    news = ib.reqHistoricalNews(conid, codes, "", "", 20)
    assert all(n.providerCode in codes for n in news)


def test_duplicate_client_id_is_refused(gateway, ib):
    other = IB()
    codes: list[int] = []
    other.errorEvent += lambda req_id, code, msg, contract: codes.append(code)
    with pytest.raises((ConnectionError, TimeoutError)):
        other.connect("127.0.0.1", gateway.port, clientId=1, timeout=2)
    assert not other.isConnected()
    assert 326 in codes
    assert ib.reqCurrentTime() is not None  # the first client is untouched
    second = IB()
    second.connect("127.0.0.1", gateway.port, clientId=2, timeout=10)
    try:
        assert second.managedAccounts() == ib.managedAccounts()
        (a,) = second.reqContractDetails(Stock("AAPL", "SMART", "USD"))
        (b,) = ib.reqContractDetails(Stock("AAPL", "SMART", "USD"))
        assert a.contract.conId == b.contract.conId
    finally:
        second.disconnect()


def _raw(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def _framed(text: bytes) -> bytes:
    return struct.pack(">I", len(text)) + text


def test_garbage_from_one_client_leaves_others_and_account_alone(gateway, ib):
    before = {(v.tag, v.currency): v.value for v in ib.accountSummary("DU1234567")}
    refused = _raw(gateway.port, b"\x00\xff garbage that is not a handshake")
    assert b"505" in refused and b"handshake" in refused
    handshake = b"API\0" + _framed(b"v157..178")
    junk = _raw(
        gateway.port, handshake + _framed(b"71\x002\x007\x00\x00") + _framed(b"\xff\xfe\x00")
    )
    assert b"505" in junk  # error 505 for the undecodable message, then closed
    unknown = _raw(gateway.port, handshake + _framed(b"71\x002\x008\x00\x00") + _framed(b"999\x00"))
    assert b"505" in unknown and b"unknown message id 999" in unknown
    # a truncated placeOrder is answered with an error for that order id, never placed
    cut = _raw(gateway.port, handshake + _framed(b"71\x002\x009\x00\x00") + _framed(b"3\x0042\x00"))
    assert b"320" in cut
    assert ib.reqCurrentTime() is not None
    ib.sleep(0.2)
    after = {(v.tag, v.currency): v.value for v in ib.accountSummary("DU1234567")}
    assert after[("TotalCashValue", "USD")] == before[("TotalCashValue", "USD")]


def test_unimplemented_request_gets_an_error(ib):
    ib.test_errors.clear()
    ib.client.reqRealTimeBars(
        ib.client.getReqId(), Stock("AAPL", "SMART", "USD"), 5, "TRADES", True, []
    )
    ib.sleep(0.3)
    assert any(code == 503 for _, code, _ in ib.test_errors)


def test_pacing_ib_rejects_identical_historical_request(tmp_path):
    with start_gateway(
        port=0, symbols=20, pacing="ib", data_dir=tmp_path, clock=session_clock(), profile=PROFILE
    ) as gw:
        client = IB()
        client.connect("127.0.0.1", gw.port, clientId=3, timeout=10)
        errors = []
        client.errorEvent += lambda req_id, code, msg, contract: errors.append(code)
        try:
            contract = Stock("AAPL", "SMART", "USD")
            first = client.reqHistoricalData(contract, "", "1 M", "1 day", "TRADES", True, 1)
            second = client.reqHistoricalData(contract, "", "1 M", "1 day", "TRADES", True, 1)
            other = client.reqHistoricalData(contract, "", "2 M", "1 day", "TRADES", True, 1)
            assert errors.count(162) == 1
            (qualified,) = client.qualifyContracts(contract)
            for _ in range(101):  # one more streaming line than IB's 100
                client.client.reqMktData(client.client.getReqId(), qualified, "", False, False, [])
            client.sleep(3.0)
            assert errors.count(101) == 1
            client.client.MaxRequests = 0  # switch off ib_async's own throttle: 80 at once
            for _ in range(80):
                client.client.reqCurrentTime()
            client.sleep(0.5)
            assert errors.count(100) >= 25
        finally:
            client.disconnect()
    assert len(first) > 0 and len(second) == 0 and len(other) > len(first)


def test_cli_serves_ib_async(tmp_path):
    proc = subprocess.Popen(
        gateway_command(tmp_path, 20, "--now", "2025-06-10T15:00:00Z", "--log-level", "WARNING"),
        stdout=subprocess.PIPE,
        text=True,
    )
    client = IB()
    try:
        port = bound_port(proc.stdout.readline())
        client.connect("127.0.0.1", port, clientId=9, timeout=10)
        assert client.managedAccounts() == ["DU1234567"]  # ib-paper by default: one login
        assert abs((client.reqCurrentTime() - SESSION_START).total_seconds()) < 30
        assert (tmp_path / "sim" / "paper.sqlite").exists()
    finally:
        client.disconnect()  # before the server goes, so no disconnect error leaks into ib_async
        proc.terminate()
        proc.wait(10)


def test_executions_completed_orders_and_pnl(ib, gateway):
    (contract,) = ib.qualifyContracts(Stock("AMZN", "SMART", "USD"))
    trade = ib.placeOrder(contract, MarketOrder("BUY", 3, orderRef="gw-test-exec"))
    deadline = time.monotonic() + 10
    while not trade.isDone() and time.monotonic() < deadline:
        ib.sleep(0.05)
    assert trade.orderStatus.status == "Filled"
    fills = ib.reqExecutions()
    mine = [f for f in fills if f.execution.orderRef == "gw-test-exec"]
    assert sum(f.execution.shares for f in mine) == 3
    assert all(f.contract.conId == contract.conId for f in mine)
    done = ib.reqCompletedOrders(apiOnly=False)
    refs = {t.order.orderRef: t.orderStatus.status for t in done}
    assert refs["gw-test-exec"] == "Filled"
    pnl = ib.reqPnL("DU1234567")
    single = ib.reqPnLSingle("DU1234567", "", contract.conId)
    ib.sleep(1.3)
    expected = gateway.state.exchange.pnl("DU1234567")
    assert pnl.unrealizedPnL == pytest.approx(expected.unrealized, abs=50.0)
    assert single.position == 3
    assert single.value == pytest.approx(3 * trade.orderStatus.avgFillPrice, rel=0.02)
    ib.cancelPnL("DU1234567")
    ib.cancelPnLSingle("DU1234567", "", contract.conId)


def test_reference_lookups(ib, gateway):
    matches = ib.reqMatchingSymbols("MSF")
    assert matches[0].contract.symbol == "MSFT"
    (eur,) = ib.reqContractDetails(Forex("EURUSD"))
    assert eur.contract.secType == "CASH" and eur.contract.currency == "USD"
    (chain,) = ib.reqSecDefOptParams("AAPL", "", "STK", ib.qualifyContracts(Stock("AAPL"))[0].conId)
    assert chain.expirations and chain.strikes and chain.multiplier == "100"
    expiry, strike = chain.expirations[0], chain.strikes[len(chain.strikes) // 2]
    (opt,) = ib.reqContractDetails(Option("AAPL", expiry, strike, "C", "SMART"))
    assert opt.contract.secType == "OPT" and opt.contract.strike == strike
    assert opt.underConId == gateway.state.market.universe.lookup("AAPL").conid
    calls = ib.reqContractDetails(Option("AAPL", expiry, right="C", exchange="SMART"))
    assert sorted(d.contract.strike for d in calls) == sorted(chain.strikes)
    assert {d.contract.right for d in calls} == {"C"}


def test_history_end_date_weekly_bars_and_fx(ib, gateway):
    contract = Stock("AAPL", "SMART", "USD")
    end = date(2025, 3, 14)  # a Friday
    daily = ib.reqHistoricalData(contract, end, "1 M", "1 day", "TRADES", True, 1)
    assert daily[-1].date == end and daily[0].date >= date(2025, 2, 14)
    weekly = ib.reqHistoricalData(contract, end, "6 M", "1 week", "TRADES", True, 1)
    assert 24 <= len(weekly) <= 27
    assert weekly[-1].close == pytest.approx(daily[-1].close)
    assert sum(b.volume for b in daily if b.date > weekly[-2].date) == pytest.approx(
        weekly[-1].volume
    )
    fx = Forex("EURUSD")
    mid = ib.reqHistoricalData(fx, "", "5 D", "1 hour", "MIDPOINT", True, 1)
    assert mid and all(0.5 < b.close < 2.0 for b in mid)
    ib.test_errors.clear()
    assert len(ib.reqHistoricalData(fx, "", "5 D", "1 hour", "TRADES", True, 1)) == 0
    assert any(code == 162 and "TRADES" in msg for _, code, msg in ib.test_errors)


def test_fill_made_elsewhere_is_pushed_to_the_client(ib, gateway):
    """A resting order that fills outside this connection (here: modified at the exchange
    directly, as another process sharing the paper account could) reaches the client by the
    gateway's periodic poll, with its fill and commission."""
    (contract,) = ib.qualifyContracts(Stock("GOOGL", "SMART", "USD"))
    (ticker,) = ib.reqTickers(contract)
    trade = ib.placeOrder(contract, LimitOrder("BUY", 4, round(ticker.bid * 0.7, 2)))
    ib.sleep(0.4)
    assert trade.orderStatus.status == "Submitted"
    exchange = gateway.state.exchange
    (working,) = [o for o in exchange.open_orders() if o.conid == contract.conId]
    exchange.modify(working.order_id, limit_price=round(ticker.ask * 1.05, 2))
    deadline = time.monotonic() + 5
    while not trade.isDone() and time.monotonic() < deadline:
        ib.sleep(0.05)
    assert trade.orderStatus.status == "Filled"
    assert sum(f.execution.shares for f in trade.fills) == 4
    ib.sleep(0.1)
    assert all(f.commissionReport.commission > 0 for f in trade.fills)


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    from ibkr_sim.cli import main

    assert main(["gateway", "--symbols", "5001", "--port", "0", "--data-dir", str(tmp_path)]) == 2
    assert "1 to 5000 stocks" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["gateway", "--pacing", "fast"])


def test_bad_orders_are_rejected_with_a_reason(ib):
    (contract,) = ib.qualifyContracts(Stock("AAPL", "SMART", "USD"))
    positions = {p.contract.conId: p.position for p in ib.reqPositions()}
    ib.test_errors.clear()
    negative = ib.placeOrder(contract, MarketOrder("BUY", -5))
    odd_type = ib.placeOrder(contract, Order(action="BUY", totalQuantity=1, orderType="PEG MID"))
    ib.sleep(0.5)
    assert negative.orderStatus.status == "Cancelled"
    assert odd_type.orderStatus.status == "Cancelled"
    reasons = {req_id: (code, msg) for req_id, code, msg in ib.test_errors}
    assert reasons[negative.order.orderId][0] == 201
    assert "quantity" in reasons[negative.order.orderId][1]
    assert "PEG MID" in reasons[odd_type.order.orderId][1]
    assert {p.contract.conId: p.position for p in ib.reqPositions()} == positions


def test_cancelling_a_filled_order_gets_10148_and_the_gateway_keeps_serving(ib):
    """As TWS: the cancel is refused with 10148 naming the state; the trade stays filled, the
    position stays, and the connection serves the next request."""
    (contract,) = ib.qualifyContracts(Stock("AMZN", "SMART", "USD"))
    trade = ib.placeOrder(contract, MarketOrder("BUY", 3))
    deadline = time.monotonic() + 10
    while not trade.isDone() and time.monotonic() < deadline:
        ib.sleep(0.05)
    assert trade.orderStatus.status == "Filled"
    positions = {p.contract.conId: p.position for p in ib.reqPositions()}
    ib.test_errors.clear()
    ib.cancelOrder(trade.order)
    deadline = time.monotonic() + 5
    while not ib.test_errors and time.monotonic() < deadline:
        ib.sleep(0.05)
    ((req_id, code, msg),) = ib.test_errors
    order_id = trade.order.orderId
    assert (req_id, code) == (order_id, 10148)
    assert (
        msg == f"OrderId {order_id} that needs to be cancelled cannot be cancelled, state: Filled."
    )
    assert trade.orderStatus.status == "Filled"
    assert trade.orderStatus.filled == 3
    assert ib.isConnected()
    assert {p.contract.conId: p.position for p in ib.reqPositions()} == positions
    assert ib.reqCurrentTime() is not None
