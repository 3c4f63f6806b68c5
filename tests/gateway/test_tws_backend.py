"""The ``tws`` backend against the simulated gateway: what only a socket can show.

The contract suite (tests/contract) proves the backend answers like the simulator. Here: it
reconnects after the gateway restarts or drops the socket (same clientId, next call succeeds),
and with the gateway enforcing IB's limits (``pacing="ib"``) its client-side pacing keeps every
request inside them, where the same burst unpaced is refused.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ibkr_assets.broker.errors import NotConnected
from ibkr_assets.broker.models import Order
from ibkr_assets.broker.settings import BrokerSettings
from ibkr_assets.broker.sim import to_contract
from ibkr_assets.broker.tws import TwsBroker
from ibkr_sim.gateway import GatewayHandle, running_clock, start_gateway

SESSION_TIME = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)  # Fri 10:30 New York


def _gateway(data_dir: Path, port: int = 0, pacing: str = "off") -> GatewayHandle:
    return start_gateway(
        port=port, symbols=150, pacing=pacing, data_dir=data_dir, clock=running_clock(SESSION_TIME)
    )


def _broker(port: int, client_id: int = 1, **overrides: object) -> TwsBroker:
    settings = BrokerSettings(
        backend="tws",
        port=port,
        client_id=client_id,
        timeout=5.0,
        connect_attempts=2,
        reconnect_seconds=3.0,
    )
    return TwsBroker(settings.model_copy(update=overrides))


def test_reconnects_after_the_gateway_restarts(tmp_path: Path) -> None:
    gateway = _gateway(tmp_path)
    port = gateway.port
    broker = _broker(port, client_id=7)
    try:
        aapl = broker.resolve("AAPL")
        gateway.stop()
        with pytest.raises(NotConnected):
            broker.resolve("MSFT")  # a typed error, after the retries, not a hang
        with _gateway(tmp_path, port=port):
            assert broker.resolve("MSFT").symbol == "MSFT"
            assert broker.quotes([aapl])[0].price is not None
            status = broker.place(Order(contract=aapl, action="BUY", quantity=1))
            assert status.status == "Filled" and status.client_id == 7
    finally:
        broker.close()
        gateway.stop()


def test_reconnects_after_a_dropped_socket(tmp_path: Path) -> None:
    with _gateway(tmp_path) as gateway:
        broker = _broker(gateway.port, client_id=8)
        try:
            before = broker.now()
            for session in list(gateway.state.sessions):  # the gateway hangs up on the client
                asyncio.run_coroutine_threadsafe(session.close(), gateway._loop).result(5)
            time.sleep(0.3)  # the client sees the socket close
            assert broker.now() >= before  # reconnected with the same clientId: no error 326
            assert broker.accounts()
        finally:
            broker.close()


def test_calls_from_many_threads_at_once(tmp_path: Path) -> None:
    """The pipeline's request workers and the MCP server's threads share one connection: named
    requests (current time, news providers, account updates, open orders, scanner parameters)
    must not orphan each other."""
    with _gateway(tmp_path) as gateway:
        broker = _broker(gateway.port, pacing=False)
        try:
            contracts = [to_contract(inst) for inst in gateway.state.market.universe.stocks[:24]]
            calls = [lambda c=c: broker.news(c) for c in contracts]
            calls += [broker.now, broker.positions, broker.open_orders, broker.cash_balances] * 3
            calls += [broker.scanner_codes, broker.completed_orders] * 3
            with ThreadPoolExecutor(8) as pool:
                results = list(pool.map(lambda call: call(), calls))
            assert all(isinstance(r, list) for r in results[:24])
            assert sum(len(r) for r in results[:24]) > 0, "a day of news for 24 names"
        finally:
            broker.close()


def test_pacing_keeps_a_burst_inside_ibs_limits(tmp_path: Path) -> None:
    with _gateway(tmp_path, pacing="ib") as gateway:
        stocks = gateway.state.market.universe.stocks
        contracts = [to_contract(inst) for inst in stocks[:150]]
        others = [to_contract(inst) for inst in stocks[-30:]]

        unpaced = _broker(gateway.port, client_id=2, pacing=False, timeout=2.0)
        try:  # the same kind of burst without client-side pacing trips error 100
            with pytest.raises(NotConnected):
                unpaced.quotes(others * 3)
            assert {code for code, _ in unpaced.pacing_violations} == {100}
        finally:
            unpaced.close()

        broker = _broker(gateway.port, client_id=1)
        try:
            started = time.monotonic()
            quotes = broker.quotes(contracts)  # 150 requests: 3 s of IB's 50 messages/s
            assert all(q.price is not None for q in quotes)
            assert time.monotonic() - started >= 150 / 50 - 1.0

            # six requests for one contract within 2 s are one too many for IB: the sixth waits
            aapl = broker.resolve("AAPL")
            durations = ["1 M", "2 M", "3 M", "6 M", "1 Y", "2 Y"]
            started = time.monotonic()
            with ThreadPoolExecutor(6) as pool:
                series = list(pool.map(lambda d: broker.history(aapl, duration=d), durations))
            assert all(series) and time.monotonic() - started >= 2.0
            # an identical request within 15 s is answered from memory, not refused by IB
            assert broker.history(aapl, duration="1 M") == series[0]
            assert broker.pacing_violations == []
        finally:
            broker.close()
