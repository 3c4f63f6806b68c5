"""Fixtures of the MCP server tests: a real uvicorn server on a free loopback port.

Every server here runs on the simulated IB world with a temporary data root and a clock inside a
NYSE session, so market orders fill the same way on every run: on the in-process simulator
(``IBKR_BACKEND=sim``, its clock pinned) by default; a module whose tests take the ``backend``
fixture runs once per Broker backend, the ``tws`` and ``webapi`` ones through their simulated
gateway on loopback (tests/backends.py), except its tests marked ``backends("sim")``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from mcp import Client

from ibkr_assets.settings import MCPSettings
from mcp_server.app import IBKRServer
from mcp_server.server import build_server, serve_in_thread
from tests.backends import backend, broker_fields, pytest_configure, pytest_generate_tests

#: the backend fixture and its hooks, found here by the tests of this folder
__all__ = ["backend", "pytest_configure", "pytest_generate_tests"]

#: Friday 2026-11-20, 10:30 in New York: the market is open.
SESSION_TIME = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
SIM_SYMBOLS = 120


def sim_env(data_dir: Path) -> dict[str, str]:
    """Environment variables pointing a server at the simulator under ``data_dir``."""
    return {
        "IBKR_BACKEND": "sim",
        "IBKR_DATA_DIR": str(data_dir),
        "IBKR_SIM_NOW": SESSION_TIME.isoformat(),
        "IBKR_SIM_SYMBOLS": str(SIM_SYMBOLS),
    }


def broker_factory(fields: dict):
    """Open the backend of the ``broker`` settings ``fields`` the way the server does (behind
    the order guard, with the server's limits), without touching os.environ."""
    from ibkr_assets.broker import BrokerSettings, connect

    def factory(settings: MCPSettings):
        return connect(BrokerSettings(**fields), settings.order_limits())

    return factory


def sim_broker_factory(data_dir: Path):
    """Open the sim backend on ``data_dir`` the way the server does."""
    return broker_factory(
        {
            "backend": "sim",
            "data_dir": data_dir,
            "sim_now": SESSION_TIME,
            "sim_symbols": SIM_SYMBOLS,
        }
    )


@dataclass
class Running:
    """A server listening on loopback."""

    server: IBKRServer
    port: int
    host_header: str

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.base + "/mcp"


@contextmanager
def serve_http(
    settings: MCPSettings, bind_host: str = "127.0.0.1", broker_factory=None
) -> Iterator[Running]:
    """Run the HTTP app in a thread on a free loopback port (``bind_host`` only selects the
    security configuration, so no test listens off loopback)."""
    server = build_server(settings, broker_factory=broker_factory)
    try:
        with serve_in_thread(server, bind_host) as port:
            yield Running(server, port, f"127.0.0.1:{port}")
    finally:
        server.app_state.close()


#: Tight caps of the trading-on test servers.
CAPS = {"max_quantity": 500, "max_notional": 60_000, "max_nlv_share": 0.05}


@contextmanager
def trading_server(data_dir: Path, backend: str = "sim") -> Iterator[Running]:
    """A trading-on server with tight caps and generous rate limits on ``data_dir``, through
    ``backend`` (its simulated gateway, if any, running as long as the server)."""
    settings = MCPSettings(
        data_dir=data_dir,
        trading=True,
        orders_per_minute=50,
        orders_per_day=100,
        user="pytest",
        agent_cli="true",
        **CAPS,
    )
    with (
        broker_fields(backend, data_dir, SESSION_TIME, SIM_SYMBOLS) as fields,
        serve_http(settings, broker_factory=broker_factory(fields)) as r,
    ):
        yield r


async def call(running: Running, name: str, args: dict | None = None):
    """One tool call through a real MCP client."""
    async with Client(running.url) as client:
        return await client.call_tool(name, args or {})


async def ok(running: Running, name: str, args: dict | None = None) -> dict:
    """A tool call that must succeed: its structured result."""
    result = await call(running, name, args)
    assert not result.is_error, result.content[0].text
    return result.structured_content


async def err(running: Running, name: str, args: dict | None = None) -> str:
    """A tool call that must fail: its message."""
    result = await call(running, name, args)
    assert result.is_error, result.structured_content
    return result.content[0].text


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def readonly_broker_factory(data_dir: Path):
    """The sim backend on ``data_dir`` in read-only mode (``IBKR_READONLY=true``)."""
    return broker_factory(
        {
            "backend": "sim",
            "data_dir": data_dir,
            "sim_now": SESSION_TIME,
            "sim_symbols": SIM_SYMBOLS,
            "readonly": True,
        }
    )
