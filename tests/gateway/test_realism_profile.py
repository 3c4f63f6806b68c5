"""The gateway's realism profile (``ib-paper``), faults and IB's session count, through ib_async.

Each test sets one knob and watches what a TWS API client sees, against the IB behaviour in
``shared/ibkr-behaviour/tws.md`` (tags in brackets name its sources). The gateway clock starts
inside a NYSE session and runs in real time unless a test needs minutes to pass quickly.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path

import pytest
from ib_async import IB, Forex, LimitOrder, MarketOrder, Stock

from ibkr_sim.gateway import running_clock, start_gateway
from ibkr_sim.gateway.faults import parse_fault
from ibkr_sim.gateway.profile import IB_PAPER, IDEAL, RealismProfile, get_profile

SESSION_START = datetime(2025, 6, 10, 15, 0, tzinfo=UTC)  # Tue 11:00 New York
SYMBOLS = 40
Errors = list[tuple[int, int, str]]


def connect(port: int, client_id: int = 1) -> tuple[IB, Errors]:
    ib = IB()
    errors: Errors = []
    ib.errorEvent += lambda req_id, code, msg, contract: errors.append((req_id, code, msg))
    ib.connect("127.0.0.1", port, clientId=client_id, timeout=10)
    return ib, errors


def wait_for(ib: IB, done: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Let ib_async's loop run until ``done()`` or ``seconds`` pass."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if done():
            return True
        try:
            ib.sleep(0.05)
        except ConnectionError:  # ib_async raises from its loop once the peer hung up
            time.sleep(0.05)
    return done()


def codes(errors: Errors) -> list[int]:
    return [code for _, code, _ in errors]


@pytest.fixture(scope="module")
def paper(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """An ib-paper gateway (no history gaps among the symbols the tests use)."""
    profile = IB_PAPER.with_options(history_gap_rate=0.0, farm_drops_per_day=0.0)
    with start_gateway(
        symbols=SYMBOLS,
        data_dir=tmp_path_factory.mktemp("paper"),
        clock=running_clock(SESSION_START),
        profile=profile,
    ) as handle:
        yield handle


# ---------------------------------------------------------------------- the profiles themselves
def test_profiles_by_name_and_ideal_models_nothing() -> None:
    assert get_profile("ideal") is IDEAL and get_profile("ib-paper") is IB_PAPER
    with pytest.raises(ValueError, match="ideal, ib-paper"):
        get_profile("ib-live")
    assert IDEAL.live_data is None and IDEAL.has_live_data("DU1234567", "STK")
    assert IDEAL.accounts == 2 and IDEAL.participation is None
    assert IDEAL.max_order_size is None and IDEAL.nightly_restart is None
    assert IDEAL.max_connections == IB_PAPER.max_connections == 32  # [IBAPI-ERR] 502 text
    assert not IB_PAPER.has_live_data("DU1234567", "STK")  # no US equity subscription
    assert IB_PAPER.has_live_data("DU1234567", "CASH")  # IDEALPRO FX needs none
    with pytest.raises(ValueError, match="restore_code"):
        RealismProfile(name="x", restore_code=1100)


def test_history_gaps_and_farm_drops_are_seeded() -> None:
    symbols = [f"S{i:03d}" for i in range(400)]
    a = IB_PAPER.with_options(history_gap_rate=0.2)
    gaps = {s for s in symbols if a.history_gap(s, "STK")}
    assert gaps == {s for s in symbols if a.with_options().history_gap(s, "STK")}
    assert 40 < len(gaps) < 120
    other = {s for s in symbols if a.with_options(seed=8).history_gap(s, "STK")}
    assert other != gaps
    assert not a.history_gap("EUR", "CASH")
    drops = a.farm_drop_offsets(horizon=30 * 86_400.0)
    assert drops == a.farm_drop_offsets(horizon=30 * 86_400.0) and 20 < len(drops) < 110
    assert drops != a.with_options(seed=8).farm_drop_offsets(horizon=30 * 86_400.0)
    assert IDEAL.farm_drop_offsets() == []


def test_fault_grammar() -> None:
    drop = parse_fault("drop-at=+30,for=10,restore=1102")
    assert (drop.kind, drop.after, drop.seconds, drop.restore) == ("drop", 30.0, 10.0, 1102)
    restart = parse_fault("restart-at=2026-11-20T15:31:00Z")
    assert restart.at == datetime(2026, 11, 20, 15, 31, tzinfo=UTC) and restart.after is None
    assert parse_fault("farm-drop-at=+0").kind == "farm-drop"
    for bad in ("crash-at=+1", "drop=+1", "drop-at=soon", "drop-at=+1,for=x", "drop-at=+1,x=1"):
        with pytest.raises(ValueError, match="fault"):
            parse_fault(bad)
    with pytest.raises(ValueError, match="1101 or 1102"):
        parse_fault("drop-at=+1,restore=1100")


# ---------------------------------------------------------------------- accounts
def test_one_managed_account_per_paper_login(paper) -> None:
    ib, _ = connect(paper.port, client_id=11)
    try:
        assert ib.managedAccounts() == ["DU1234567"]
        summary = {v.account for v in ib.accountSummary()}
        assert summary == {"DU1234567"}
    finally:
        ib.disconnect()


def test_advisor_login_lists_n_accounts(tmp_path: Path) -> None:
    profile = IB_PAPER.with_options(accounts=4)
    with start_gateway(symbols=SYMBOLS, data_dir=tmp_path, profile=profile) as handle:
        ib, _ = connect(handle.port)
        try:
            assert ib.managedAccounts() == ["DU1234567", "DU7654321", "DU8000003", "DU8000004"]
        finally:
            ib.disconnect()


# ---------------------------------------------------------------------- entitlements [MDTYPE]
def test_live_us_equity_data_is_refused_on_a_paper_login(paper) -> None:
    ib, errors = connect(paper.port, client_id=12)
    try:
        ib.reqMarketDataType(1)
        (aapl,) = ib.qualifyContracts(Stock("AAPL", "SMART", "USD"))
        ticker = ib.reqMktData(aapl, "", snapshot=False)
        assert wait_for(ib, lambda: 10089 in codes(errors))
        (message,) = [m for _, c, m in errors if c == 10089]
        assert "requires additional subscription" in message and "Delayed market data" in message
        ib.sleep(1.2)
        assert ticker.bid != ticker.bid or ticker.bid <= 0  # NaN: no quote ever came
        assert not paper.state.lines()
    finally:
        ib.disconnect()


def test_delayed_data_flows_with_delayed_ticks_and_market_data_type(paper) -> None:
    ib, errors = connect(paper.port, client_id=13)
    try:
        ib.reqMarketDataType(3)
        (aapl,) = ib.qualifyContracts(Stock("AAPL", "SMART", "USD"))
        ticker = ib.reqMktData(aapl, "", snapshot=False)
        assert wait_for(ib, lambda: ticker.bid > 0 and ticker.marketDataType == 3)
        session = next(x for x in paper.state.sessions if x.client_id == 13)
        (req_id,) = session.tickers
        assert req_id in session.delayed
        sent = {m[2] for m in session.last_ticks[req_id].values()}
        assert {66, 67, 68, 74, 75} <= sent and not sent & {1, 2, 4}  # [DELAYED] tick types
        delayed_at = paper.state.now() - timedelta(minutes=15)
        snap = paper.state.market.snapshot(aapl.conId, delayed_at)
        assert ticker.bid == pytest.approx(snap.bid, abs=0.5)
        # with a subscription live data comes whatever was asked, marketDataType 1 [DELAYED]
        (eur,) = ib.qualifyContracts(Forex("EURUSD"))
        fx = ib.reqMktData(eur, "", snapshot=False)
        assert wait_for(ib, lambda: fx.last > 0 and len(session.tickers) == 2)
        assert fx.marketDataType == 1 and session.delayed == {req_id}
        assert not [c for c in codes(errors) if c in (354, 10089, 10168)]
    finally:
        ib.disconnect()


def test_delayed_data_disabled_gives_354_and_10168(tmp_path: Path) -> None:
    profile = IB_PAPER.with_options(delayed_data=False)
    with start_gateway(
        symbols=SYMBOLS, data_dir=tmp_path, profile=profile, clock=running_clock(SESSION_START)
    ) as handle:
        ib, errors = connect(handle.port)
        try:
            (aapl,) = ib.qualifyContracts(Stock("AAPL", "SMART", "USD"))
            ib.reqMktData(aapl, "", snapshot=True)
            assert wait_for(ib, lambda: 354 in codes(errors))
            ib.reqMarketDataType(4)
            ib.reqMktData(aapl, "", snapshot=True)
            assert wait_for(ib, lambda: 10168 in codes(errors))
            assert "Delayed market data is not enabled" in next(
                m for _, c, m in errors if c == 10168
            )
        finally:
            ib.disconnect()


def test_per_account_entitlement(tmp_path: Path) -> None:
    profile = IB_PAPER.with_options(live_data_by_account={"DU1234567": frozenset({"STK", "CASH"})})
    with start_gateway(
        symbols=SYMBOLS, data_dir=tmp_path, profile=profile, clock=running_clock(SESSION_START)
    ) as handle:
        ib, errors = connect(handle.port)
        try:
            (aapl,) = ib.qualifyContracts(Stock("AAPL", "SMART", "USD"))
            ticker = ib.reqMktData(aapl, "", snapshot=False)
            assert wait_for(ib, lambda: ticker.bid > 0 and ticker.marketDataType == 1)
            assert 10089 not in codes(errors)
        finally:
            ib.disconnect()


# ---------------------------------------------------------------------- outages [MSGCODES]
def test_farm_drop_and_recovery_pause_streaming(paper) -> None:
    ib, errors = connect(paper.port, client_id=14)
    try:
        ib.reqMarketDataType(3)
        (aapl,) = ib.qualifyContracts(Stock("AAPL", "SMART", "USD"))
        ticker = ib.reqMktData(aapl, "", snapshot=False)
        assert wait_for(ib, lambda: ticker.bid > 0)
        errors.clear()
        paper.trigger("farm-drop", seconds=2.5)
        assert wait_for(ib, lambda: {2103, 2105, 2157} <= set(codes(errors)))
        assert paper.state.farms_down
        ib.sleep(0.2)
        updates = len(ticker.ticks)
        ticker.ticks.clear()
        ib.sleep(1.5)
        assert ticker.ticks == [], "no ticks while the market-data farm is broken"
        assert wait_for(ib, lambda: {2104, 2106, 2158} <= set(codes(errors)), 5)
        assert codes(errors)[:3] == [2103, 2105, 2157]
        assert wait_for(ib, lambda: len(ticker.ticks) > 0, 5), "streaming resumes"
        del updates
    finally:
        ib.disconnect()


@pytest.mark.parametrize("restore", [1101, 1102])
def test_connectivity_loss_and_restore(paper, restore: int) -> None:
    ib, errors = connect(paper.port, client_id=15 + restore % 10)
    try:
        ib.reqMarketDataType(3)
        (aapl,) = ib.qualifyContracts(Stock("AAPL", "SMART", "USD"))
        ticker = ib.reqMktData(aapl, "", snapshot=False)
        assert wait_for(ib, lambda: ticker.bid > 0)
        session = next(x for x in paper.state.sessions if x.client_id == 15 + restore % 10)
        errors.clear()
        paper.trigger("drop", seconds=1.5, restore=restore)
        assert wait_for(ib, lambda: 1100 in codes(errors))
        assert wait_for(ib, lambda: restore in codes(errors), 5)
        assert codes(errors) == [1100, restore]
        ticker.ticks.clear()
        if restore == 1101:  # data lost: the gateway stopped streaming; resubscribe to get it
            assert session.tickers == {}
            ib.sleep(2.5)
            assert ticker.ticks == []
        else:  # data maintained: the subscription survives and ticks come again
            assert len(session.tickers) == 1
            assert wait_for(ib, lambda: len(ticker.ticks) > 0, 5)
    finally:
        ib.disconnect()


def test_scripted_fault_from_start_gateway(tmp_path: Path) -> None:
    with start_gateway(
        symbols=SYMBOLS,
        data_dir=tmp_path,
        profile=IB_PAPER,
        faults=["drop-at=+1.5,for=0.5,restore=1102", "farm-drop-at=+1.5,for=0.5"],
    ) as handle:
        ib, errors = connect(handle.port)
        try:
            assert wait_for(ib, lambda: {1100, 1102, 2103, 2104} <= set(codes(errors)[3:]), 10)
        finally:
            ib.disconnect()


def test_restart_drops_every_client_and_closes_the_port(tmp_path: Path) -> None:
    with start_gateway(symbols=SYMBOLS, data_dir=tmp_path, profile=IB_PAPER) as handle:
        first, _ = connect(handle.port, client_id=1)
        second, _ = connect(handle.port, client_id=2)
        handle.trigger("restart", seconds=1.5)
        assert wait_for(first, lambda: not first.isConnected() and not second.isConnected(), 5)
        assert handle.restarting
        with pytest.raises(ConnectionRefusedError):
            IB().connect("127.0.0.1", handle.port, clientId=3, timeout=2)
        end = time.monotonic() + 10
        while handle.restarting and time.monotonic() < end:
            time.sleep(0.05)
        again, _ = connect(handle.port, client_id=1)  # the client id is free again
        try:
            assert again.managedAccounts() == ["DU1234567"]
        finally:
            again.disconnect()


def test_nightly_restart_at_the_profile_time(tmp_path: Path) -> None:
    # 23:44:58.5 New York (EDT, UTC-4): the 23:45 restart comes 1.5 s after the start
    start = datetime(2025, 6, 11, 3, 44, 58, 500_000, tzinfo=UTC)
    profile = IB_PAPER.with_options(nightly_restart=clock_time(23, 45), restart_seconds=1.0)
    with start_gateway(
        symbols=SYMBOLS, data_dir=tmp_path, profile=profile, clock=running_clock(start)
    ) as handle:
        ib, _ = connect(handle.port)
        assert wait_for(ib, lambda: not ib.isConnected(), 6)
        assert handle.state.now() >= start + timedelta(seconds=1.5)


# ---------------------------------------------------------------------- orders [ORDLIM]
def test_precautionary_size_and_value_limits(tmp_path: Path) -> None:
    profile = IB_PAPER.with_options(max_order_size=500, max_order_value=20_000)
    with start_gateway(
        symbols=SYMBOLS, data_dir=tmp_path, profile=profile, clock=running_clock(SESSION_START)
    ) as handle:
        ib, errors = connect(handle.port)
        try:
            (aapl,) = ib.qualifyContracts(Stock("AAPL", "SMART", "USD"))
            big = MarketOrder("BUY", 600, orderRef="size-limit")
            trade = ib.placeOrder(aapl, big)
            assert wait_for(ib, trade.isDone)
            (size_msg,) = [m for _, c, m in errors if c == 201]
            assert "size exceeds the Size Limit of 500" in size_msg
            price = handle.state.market.snapshot(aapl.conId, handle.state.now()).ask
            rich = LimitOrder("BUY", 400, round(price, 2), orderRef="value-limit")
            trade = ib.placeOrder(aapl, rich)
            assert wait_for(ib, trade.isDone)
            assert any("exceeds the Total Value Limit of 20,000 USD" in m for _, _, m in errors)
            assert trade.orderStatus.status == "Cancelled"
            exchange = handle.state.exchange
            assert exchange.find_by_ref("DU1234567", "size-limit") == []  # never reached IB
            assert exchange.find_by_ref("DU1234567", "value-limit") == []
            small = ib.placeOrder(aapl, MarketOrder("BUY", 10, orderRef="within"))
            assert wait_for(ib, lambda: small.orderStatus.status == "Filled")
        finally:
            ib.disconnect()


def test_margin_rejection_is_kept(paper) -> None:
    ib, errors = connect(paper.port, client_id=21)
    try:
        (eur,) = ib.qualifyContracts(Forex("EURUSD"))
        trade = ib.placeOrder(eur, MarketOrder("BUY", 900_000_000, orderRef="too-big-fx"))
        assert wait_for(ib, trade.isDone)
        assert any(c == 201 for c in codes(errors))
    finally:
        ib.disconnect()


def fast_clock(start: datetime, speed: float) -> Callable[[], datetime]:
    t0 = time.monotonic()
    return lambda: start + timedelta(seconds=(time.monotonic() - t0) * speed)


def test_partial_fills_of_an_order_large_against_the_minute(tmp_path: Path) -> None:
    """A market order of about 3.5 minutes' allowed participation fills in several executions
    (orderStatus Submitted with a growing filled quantity, execDetails and commissionReport for
    each), then Filled; paper.sqlite records the same executions (tws.md, "Partial fills")."""
    profile = IB_PAPER.with_options(participation=0.005, max_order_size=None, max_order_value=None)
    with start_gateway(
        symbols=SYMBOLS,
        data_dir=tmp_path,
        profile=profile,
        clock=fast_clock(SESSION_START, 60.0),  # a simulated minute per second
    ) as handle:
        ib, _ = connect(handle.port)
        try:
            (msft,) = ib.qualifyContracts(Stock("MSFT", "SMART", "USD"))
            bars = handle.state.market.intraday_bars(msft.conId, SESSION_START.date(), 1)
            per_minute = 0.005 * float(bars["volume"].iloc[90:100].mean())
            quantity = float(round(3.5 * per_minute))
            statuses: list[tuple[str, float]] = []
            trade = ib.placeOrder(msft, MarketOrder("BUY", quantity, orderRef="partial"))
            trade.statusEvent += lambda t: statuses.append(
                (t.orderStatus.status, t.orderStatus.filled)
            )
            assert wait_for(ib, lambda: trade.orderStatus.status == "Filled", 20)
            ib.sleep(0.3)
            assert len(trade.fills) >= 3
            assert sum(f.execution.shares for f in trade.fills) == pytest.approx(quantity)
            assert all(f.commissionReport.commission > 0 for f in trade.fills)
            partial = [f for s, f in statuses if s == "Submitted" and 0 < f < quantity]
            assert partial and partial == sorted(partial)
        finally:
            ib.disconnect()
        db = sqlite3.connect(tmp_path / "sim" / "paper.sqlite")
        (order_id, filled, status) = db.execute(
            "SELECT order_id, filled, status FROM orders WHERE order_ref = 'partial'"
        ).fetchone()
        rows = db.execute(
            "SELECT shares, cum_qty, time_us FROM executions WHERE order_id = ? ORDER BY seq",
            (order_id,),
        ).fetchall()
        (position,) = db.execute(
            "SELECT quantity FROM positions WHERE conid = ? AND account_id = 'DU1234567'",
            (msft.conId,),
        ).fetchone()
    assert status == "Filled" and filled == pytest.approx(quantity)
    assert len(rows) >= 3 and position == pytest.approx(quantity)
    running = 0.0
    for shares, cum_qty, _ in rows:
        running += shares
        assert cum_qty == pytest.approx(running)
    minutes = {t // 60_000_000 for *_, t in rows}
    assert len(minutes) >= 3, "the fills spread over several minutes"
    assert all(shares <= per_minute * 2 for shares, *_ in rows)


# ---------------------------------------------------------------------- historical data
def test_history_gap_answers_hmds_no_data(tmp_path: Path) -> None:
    profile = IB_PAPER.with_options(history_gap_symbols=frozenset({"MSFT"}))
    with start_gateway(symbols=SYMBOLS, data_dir=tmp_path, profile=profile) as handle:
        ib, errors = connect(handle.port)
        try:
            msft, aapl = Stock("MSFT", "SMART", "USD"), Stock("AAPL", "SMART", "USD")
            assert len(ib.reqHistoricalData(msft, "", "1 M", "1 day", "TRADES", True, 1)) == 0
            assert any(c == 162 and "HMDS query returned no data: MSFT@" in m for _, c, m in errors)
            assert len(ib.reqHistoricalData(aapl, "", "1 M", "1 day", "TRADES", True, 1)) > 15
        finally:
            ib.disconnect()


MONDAY_OPEN = datetime(2025, 6, 9, 15, 0, tzinfo=UTC)  # Mon 11:00 New York
MONDAY_EARLY = datetime(2025, 6, 9, 12, 0, tzinfo=UTC)  # Mon 08:00, before the open


@pytest.mark.parametrize(
    ("profile", "now", "expected"),
    [
        ("ideal", MONDAY_OPEN, [date(2025, 6, 6), date(2025, 6, 9)]),
        ("ib-paper", MONDAY_OPEN, [date(2025, 6, 6), date(2025, 6, 9)]),
        ("ideal", MONDAY_EARLY, [date(2025, 6, 5), date(2025, 6, 6)]),
    ],
)
def test_two_days_on_a_monday_count_sessions(
    tmp_path: Path, profile: str, now: datetime, expected: list[date]
) -> None:
    """'2 D' of daily bars is two trading sessions, today's bar so far included while the
    session is open - not 48 calendar hours (which on a Monday finds no bar: 162)."""
    chosen = get_profile(profile).with_options(history_gap_rate=0.0)
    with start_gateway(
        symbols=SYMBOLS, data_dir=tmp_path, profile=chosen, clock=running_clock(now)
    ) as handle:
        ib, errors = connect(handle.port)
        try:
            aapl = Stock("AAPL", "SMART", "USD")
            bars = ib.reqHistoricalData(aapl, "", "2 D", "1 day", "TRADES", True, 1)
            assert [b.date for b in bars] == expected
            assert 162 not in codes(errors)
            week = ib.reqHistoricalData(aapl, "", "1 W", "1 day", "TRADES", True, 1)
            assert len(week) == 5 and week[-1].date == expected[-1]
        finally:
            ib.disconnect()


def test_session_window_counts_sessions() -> None:
    """The rule itself (ibkr_spec.historical.session_window), on the simulated NYSE calendar."""
    from ibkr_sim.market.calendar import schedule
    from ibkr_spec.historical import session_window

    days, opens, closes = schedule()

    def sessions(end: datetime, duration: str) -> list[date]:
        w = session_window(end, duration, days, opens, closes)
        return [d.item() for d in days[w.first : w.last + 1]]

    assert sessions(MONDAY_OPEN, "1 D") == [date(2025, 6, 9)]  # today so far
    assert session_window(MONDAY_OPEN, "1 D", days, opens, closes).in_progress
    assert sessions(MONDAY_EARLY, "1 D") == [date(2025, 6, 6)]
    saturday = datetime(2025, 6, 7, 16, 0, tzinfo=UTC)
    assert sessions(saturday, "3 D") == [date(2025, 6, 4), date(2025, 6, 5), date(2025, 6, 6)]
    assert len(sessions(saturday, "1 W")) == 5
    assert 20 <= len(sessions(saturday, "1 M")) <= 22
    assert 250 <= len(sessions(saturday, "1 Y")) <= 253
    # Presidents' Day 2025-02-17 is no session: 5 D before Fri 2025-02-21 starts on the 14th
    friday = datetime(2025, 2, 21, 22, 0, tzinfo=UTC)
    assert sessions(friday, "5 D")[0] == date(2025, 2, 14)
    assert session_window(datetime(2018, 1, 2, tzinfo=UTC), "1 D", days, opens, closes).empty
