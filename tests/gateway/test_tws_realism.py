"""The ``tws`` backend against the ``ib-paper`` gateway: what a real paper account meets on its
first day, one behaviour per test (IB's behaviour cited by the tags of
``shared/ibkr-behaviour/tws.md``).

The gateway clock starts inside a NYSE session and runs in real time; the profile keeps its
entitlements (no live US equity data, delayed data enabled) and leaves out what would make a
test flaky (seeded farm drops, history gaps) unless the test is about it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest

from ibkr_assets.broker.errors import DuplicateClientId, MarketDataUnavailable, NotConnected
from ibkr_assets.broker.models import Quote
from ibkr_assets.broker.settings import BrokerSettings
from ibkr_assets.broker.tws import TwsBroker, to_ib_contract
from ibkr_assets.broker.tws.connection import MessageBucket, Stream
from ibkr_sim.gateway import GatewayHandle, running_clock, start_gateway
from ibkr_sim.gateway.profile import IB_PAPER, RealismProfile

SESSION_START = datetime(2025, 6, 10, 15, 0, tzinfo=UTC)  # Tue 11:00 New York
SYMBOLS = 60
PAPER = IB_PAPER.with_options(history_gap_rate=0.0, farm_drops_per_day=0.0)
DELAY = timedelta(minutes=15)  # delayed data [MDTYPE]


def gateway(
    data_dir: Path, profile: RealismProfile = PAPER, pacing: str = "off", port: int = 0
) -> GatewayHandle:
    return start_gateway(
        port=port,
        symbols=SYMBOLS,
        data_dir=data_dir,
        clock=running_clock(SESSION_START),
        profile=profile,
        pacing=pacing,
    )


def broker(port: int, client_id: int = 1, **overrides: Any) -> TwsBroker:
    settings = BrokerSettings(
        backend="tws",
        port=port,
        client_id=client_id,
        timeout=5.0,
        connect_attempts=2,
        pacing=False,
    )
    return TwsBroker(settings.model_copy(update=overrides))


def error_codes(b: TwsBroker) -> list[int]:
    """Every error code IB sends ``b`` from now on (filled on the backend's loop)."""
    seen: list[int] = []
    b.connection.ib.errorEvent += lambda _req, code, _msg, _contract: seen.append(code)
    return seen


def wait_until(done: Callable[[], bool], seconds: float = 10.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not done():
        time.sleep(0.05)
    return done()


@pytest.fixture(scope="module")
def paper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHandle]:
    with gateway(tmp_path_factory.mktemp("paper")) as handle:
        yield handle


# ---------------------------------------------------------------------- market data [MDTYPE]
def test_live_refused_falls_back_to_delayed_with_ibs_times(paper: GatewayHandle) -> None:
    b = broker(paper.port, client_id=21)
    try:
        codes = error_codes(b)
        contracts = [b.resolve(s) for s in ("AAPL", "MSFT", "NVDA", "AMZN")]
        quotes = b.quotes(contracts)
        # one 10089 (the first request goes alone), then delayed data for all [DELAYED]
        assert codes.count(10089) == 1 and b.connection.data_type == 3
        ib_now = paper.state.now()
        for q in quotes:
            assert q.market_data_type == 3 and q.bid and q.ask and q.bid < q.ask
            # the time is IB's delayed-last timestamp (tick 88), 15 minutes before IB's clock,
            # not the client's wall clock (which is a year later)
            assert abs((ib_now - DELAY) - q.time) < timedelta(seconds=5), q.time
        # the values are the market's of 15 minutes ago
        snap = paper.state.market.snapshot(contracts[0].conid, quotes[0].time)
        assert quotes[0].bid == pytest.approx(snap.bid, abs=0.05)
        assert b.quotes(contracts[:1])[0].market_data_type == 3 and codes.count(10089) == 1
    finally:
        b.close()


def test_configured_delayed_type_is_asked_first(paper: GatewayHandle) -> None:
    b = broker(paper.port, client_id=22, market_data_type="delayed-frozen")
    try:
        codes = error_codes(b)
        (q,) = b.quotes([b.resolve("AAPL")])
        assert q.market_data_type == 3  # delayed-frozen is served delayed while the market is open
        assert not {354, 10089, 10168} & set(codes)
    finally:
        b.close()


def test_delayed_data_disabled_is_a_clear_error(tmp_path: Path) -> None:
    with gateway(tmp_path, PAPER.with_options(delayed_data=False)) as handle:
        b = broker(handle.port)
        try:
            aapl = b.resolve("AAPL")
            with pytest.raises(MarketDataUnavailable, match="enable delayed data") as err:
                b.quotes([aapl])
            assert err.value.code == 10168  # live: 354, then delayed: 10168 [MDTYPE]
            # average volume then comes from the daily bars, and says so
            details = b.contract_details(aapl)
            assert details.avg_volume_source == "daily_bars"
            bars = b.history(aapl, duration="21 D", bar_size="1 day")
            complete = [x.volume for x in bars if x.time.hour == 20][-20:]  # closed 16:00 EDT
            assert details.avg_daily_volume == pytest.approx(sum(complete) / len(complete))
        finally:
            b.close()


def test_average_volume_is_ibs_tick_21(paper: GatewayHandle) -> None:
    b = broker(paper.port, client_id=23)
    try:
        aapl = b.resolve("AAPL")
        details = b.contract_details(aapl)
        inst = paper.state.market.universe.by_conid(aapl.conid)
        assert details.avg_daily_volume == inst.adv and details.avg_volume_source == "ib"
        assert b.connection.streams == {}  # the tick-165 request was cancelled
    finally:
        b.close()


def test_todays_daily_bar_is_the_day_so_far(paper: GatewayHandle) -> None:
    b = broker(paper.port, client_id=24)
    try:
        bars = b.history(b.resolve("AAPL"), duration="5 D", bar_size="1 day")
        assert len(bars) == 5 and bars[-1].session == SESSION_START.date()
        assert bars[-1].time <= b.now() < datetime(2025, 6, 10, 20, 0, tzinfo=UTC)
        assert all(x.time.hour == 20 for x in bars[:-1])  # complete: stamped at the close
    finally:
        b.close()


# ---------------------------------------------------------------------- connectivity [MSGCODES]
def test_a_farm_drop_is_information(paper: GatewayHandle, caplog: pytest.LogCaptureFixture) -> None:
    b = broker(paper.port, client_id=25)
    try:
        aapl = b.resolve("AAPL")
        with caplog.at_level(logging.INFO, logger="ibkr_assets.broker.tws.connection"):
            paper.trigger("farm-drop", seconds=1.0)
            assert wait_until(lambda: "2104" in caplog.text, 5)
        notices = [r for r in caplog.records if "IB notice" in r.getMessage()]
        assert {r.levelno for r in notices} == {logging.INFO} and len(notices) == 6
        assert b.quotes([aapl])[0].bid  # nothing failed, nothing reconnected
    finally:
        b.close()


def _subscribe(b: TwsBroker, symbol: str) -> Stream:
    contract = to_ib_contract(b.resolve(symbol))

    async def start() -> Stream:
        return b.connection.subscribe(contract)

    return b.connection.call(start())


def test_1101_requests_the_subscriptions_again(paper: GatewayHandle) -> None:
    b = broker(paper.port, client_id=26)
    try:
        codes = error_codes(b)
        b.quotes([b.resolve("AAPL")])  # settles the market-data type (delayed)
        stream = _subscribe(b, "AAPL")
        session = next(s for s in paper.state.sessions if s.client_id == 26)
        assert wait_until(lambda: stream.ticker.bid > 0 and stream.req_id in session.tickers)
        paper.trigger("drop", seconds=0.5, restore=1101)
        # on 1101 the gateway drops every subscription (tests/gateway/test_realism_profile.py
        # shows no tick comes after it unless the client asks again) [MSGCODES]
        assert wait_until(lambda: 1101 in codes, 5)
        assert wait_until(lambda: stream.req_id in session.tickers, 5), "requested again"
        stream.ticker.ticks.clear()
        assert wait_until(lambda: len(stream.ticker.ticks) > 0, 5), "ticks flow again"

        async def stop() -> None:
            b.connection.unsubscribe(stream)

        b.connection.call(stop())
        assert wait_until(lambda: stream.req_id not in session.tickers, 5)
    finally:
        b.close()


def test_reconnects_after_a_restart_within_a_run(tmp_path: Path) -> None:
    with gateway(tmp_path) as handle:
        b = broker(handle.port)
        try:
            codes = error_codes(b)
            aapl = b.resolve("AAPL")
            assert b.quotes([aapl])[0].market_data_type == 3
            handle.trigger("restart", seconds=2.0)  # every client dropped, the port closed
            assert wait_until(lambda: not b.connection.ib.isConnected(), 5)
            started = time.monotonic()
            (q,) = b.quotes([aapl])  # waits out the restart with backoff, then answers
            assert 1.0 < time.monotonic() - started < 15.0
            # the delayed type is asked again on connect: no second refusal
            assert q.market_data_type == 3 and codes.count(10089) == 1
        finally:
            b.close()


def test_a_gateway_that_stays_down_fails_within_the_reconnect_budget(tmp_path: Path) -> None:
    handle = gateway(tmp_path)
    b = broker(handle.port, reconnect_seconds=2.0)
    try:
        aapl = b.resolve("AAPL")
        handle.stop()
        started = time.monotonic()
        with pytest.raises(NotConnected, match="IBKR_RECONNECT_SECONDS"):
            b.quotes([aapl])
        assert time.monotonic() - started < 2.0 + 5.0
        started = time.monotonic()
        with pytest.raises(NotConnected):
            b.quotes([aapl])  # one attempt, refused at once: no second budget
        assert time.monotonic() - started < 1.0
    finally:
        b.close()
        handle.stop()


def test_client_id_in_use_fails_at_once(paper: GatewayHandle) -> None:
    first = broker(paper.port, client_id=27)
    try:
        started = time.monotonic()
        with pytest.raises(DuplicateClientId, match="IBKR_CLIENT_ID"):
            broker(paper.port, client_id=27, connect_attempts=5)
        assert time.monotonic() - started < 5.0  # not retried [IBAPI-ERR] 326
    finally:
        first.close()


# ---------------------------------------------------------------------- message pacing [ORDLIM]
def test_token_bucket_keeps_to_ibs_rate(tmp_path: Path) -> None:
    """300 snapshots at once against IB's 50 msg/s: no error 100 at the gateway, and no slower
    than IB's own bucket allows by more than a little."""
    with gateway(tmp_path, pacing="ib") as handle:
        refused: list[float] = []
        allow = handle.state.pacer.allow_message

        def counted(session: Any, arrived: float | None = None) -> bool:
            ok = allow(session, arrived)
            if not ok:
                refused.append(time.monotonic())
            return ok

        handle.state.pacer.allow_message = counted  # type: ignore[method-assign]
        b = broker(handle.port, pacing=True)
        try:
            contracts = [b.resolve(i.symbol) for i in handle.state.market.universe.stocks]
            contracts = (contracts * 5)[:300]
            b.quotes(contracts[:1])  # settles the market-data type
            time.sleep(1.0)  # IB's bucket full again
            sent = b.connection.bucket.sent
            started = time.monotonic()
            quotes: list[Quote] = b.quotes(contracts)
            elapsed = time.monotonic() - started
            messages = b.connection.bucket.sent - sent
        finally:
            b.close()
    assert len(quotes) == 300 and refused == [] and b.pacing_violations == []
    floor = (messages - 50) / 50  # IB's bucket: a burst of 50, then 50 per second
    assert messages >= 300 and floor <= elapsed <= floor * 1.15 + 0.5, (messages, elapsed)


def test_bucket_refills_at_the_rate_and_caps_at_the_burst() -> None:
    sent: list[float] = []

    class Conn:
        def sendMsg(self, _data: bytes) -> None:  # noqa: N802 - ib_async's name
            sent.append(asyncio.get_running_loop().time())

    class Client:
        MaxRequests = 45
        conn = Conn()

    async def burst() -> None:
        client = Client()
        bucket = MessageBucket(client, rate=50, burst=10)  # type: ignore[arg-type]
        assert client.MaxRequests == 0  # ib_async's own window is off
        for i in range(60):
            client.sendMsg(f"{i}\0")  # type: ignore[attr-defined]
        assert bucket.sent == 10
        await asyncio.sleep(1.2)

    asyncio.run(burst())
    assert len(sent) == 60
    assert sent[9] - sent[0] < 0.01  # the burst goes at once
    # any stretch of messages keeps to the bucket: at most 10 + 50/s x its length
    for i, j in combinations(range(60), 2):
        assert j - i + 1 <= 10 + 50 * (sent[j] - sent[i]) + 1e-6, (i, j)
    assert (sent[-1] - sent[10]) / 49 == pytest.approx(0.02, abs=0.002)  # then 50 per second
