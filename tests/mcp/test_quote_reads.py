"""Where the quotes tool reads the broker: on the server's event loop once a backend that
answers from memory (the simulator) is open, since a worker thread's hop cost more than the
read; in a worker thread while the broker is not open yet (opening blocks) and always for a
backend that waits on IB. A broker error is a tool error on either path."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ibkr_assets.broker import GuardedBroker
from ibkr_assets.settings import MCPSettings

from .conftest import err, ok, serve_http, sim_broker_factory

pytestmark = pytest.mark.anyio


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class _Watched:
    """The sim backend, declaring ``market_data_in_process`` as told and noting for each
    ``quotes`` call whether it ran on an event loop."""

    def __init__(self, inner, in_process: bool) -> None:
        self._inner = inner
        self.market_data_in_process = in_process
        self.on_loop: list[bool] = []

    def __getattr__(self, attribute: str):
        return getattr(self._inner, attribute)

    def quotes(self, contracts):
        self.on_loop.append(_on_event_loop())
        return self._inner.quotes(contracts)


def _watched_factory(data_dir: Path, in_process: bool, opened: list[_Watched]):
    sim = sim_broker_factory(data_dir)

    def factory(settings: MCPSettings) -> GuardedBroker:
        guarded = sim(settings)
        watched = _Watched(guarded.inner, in_process)
        opened.append(watched)
        return GuardedBroker(watched, guarded.guard)

    return factory


async def test_an_in_process_backend_is_read_on_the_event_loop_once_open(tmp_path: Path):
    opened: list[_Watched] = []
    factory = _watched_factory(tmp_path, True, opened)
    with serve_http(MCPSettings(data_dir=tmp_path), broker_factory=factory) as running:
        first = await ok(running, "quotes", {"symbols": ["AAPL"]})
        again = await ok(running, "quotes", {"symbols": ["AAPL", "MSFT"]})
    assert opened[0].on_loop == [False, True]  # the first call opened the broker off the loop
    assert first["quotes"][0]["quote"] == again["quotes"][0]["quote"]
    assert [r["quote"]["contract"]["symbol"] for r in again["quotes"]] == ["AAPL", "MSFT"]


async def test_a_backend_that_waits_on_ib_is_always_read_in_a_worker_thread(tmp_path: Path):
    opened: list[_Watched] = []
    factory = _watched_factory(tmp_path, False, opened)
    with serve_http(MCPSettings(data_dir=tmp_path), broker_factory=factory) as running:
        for _ in range(3):
            await ok(running, "quotes", {"symbols": ["AAPL"]})
    assert opened[0].on_loop == [False, False, False]


async def test_a_broker_error_on_the_event_loop_is_a_tool_error(tmp_path: Path):
    opened: list[_Watched] = []
    factory = _watched_factory(tmp_path, True, opened)
    with serve_http(MCPSettings(data_dir=tmp_path), broker_factory=factory) as running:
        await ok(running, "quotes", {"symbols": ["AAPL"]})  # opens the broker
        message = await err(running, "quotes", {"symbols": ["NOSUCHCO"]})
        assert "NOSUCHCO" in message and "[IB 200]" in message
        assert (await ok(running, "quotes", {"symbols": ["MSFT"]}))["quotes"]  # still serving
