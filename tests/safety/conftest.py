"""The attacks of issue #13 replayed from outside: an assistant driving the MCP server (over
streamable HTTP and over stdio, as a desktop assistant launches it) and the pipeline's own
submission, on the simulated paper account. Every test asserts on what reached the account
(positions, open orders, executions), read back through a separate connection to the same
``paper.sqlite``, not only on the tool's answer.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from ibkr_assets.broker import Broker, BrokerSettings, connect
from ibkr_assets.settings import MCPSettings
from mcp_server.server import build_server, serve_in_thread

#: Friday 2026-11-20, 10:30 in New York: the market is open.
SESSION_TIME = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
SIM_SYMBOLS = 120
TRANSPORTS = ["http", "stdio"]


@dataclass
class World:
    """A data root with a simulated paper account, and the environment a server gets."""

    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    def server_env(self, **extra: str) -> dict[str, str]:
        """The ``IBKR_*`` environment of a trading-on MCP server on this world."""
        return {
            "IBKR_BACKEND": "sim",
            "IBKR_DATA_DIR": str(self.data_dir),
            "IBKR_SIM_NOW": SESSION_TIME.isoformat(),
            "IBKR_SIM_SYMBOLS": str(SIM_SYMBOLS),
            "IBKR_MCP_TRADING": "on",
            "IBKR_MCP_USER": "attacker",
            **self.env,
            **extra,
        }

    def account(self) -> Broker:
        """A separate, unguarded reader of the paper account (what really reached it)."""
        return connect(
            BrokerSettings(
                backend="sim",
                data_dir=self.data_dir,
                sim_now=SESSION_TIME,
                sim_symbols=SIM_SYMBOLS,
            )
        ).inner

    def holdings(self, symbol: str) -> float:
        """Shares of ``symbol`` held in the primary account."""
        return sum(p.quantity for p in self.account().positions() if p.contract.symbol == symbol)

    def orders_of(self, symbol: str) -> list:
        """Open orders on ``symbol``, every account."""
        broker = self.account()
        return [
            o
            for a in broker.accounts()
            for o in broker.open_orders(a.account_id)
            if o.contract.symbol == symbol
        ]

    def fills_of(self, symbol: str) -> list:
        """Executions on ``symbol``, every account."""
        broker = self.account()
        return [
            e
            for a in broker.accounts()
            for e in broker.executions(a.account_id)
            if e.contract.symbol == symbol
        ]


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class Session:
    """One MCP client session: ``call`` answers (is_error, text, structured content)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def call(self, name: str, args: dict[str, Any] | None = None) -> tuple[bool, str, Any]:
        result = await self.client.call_tool(name, args or {})
        text = result.content[0].text if result.content else ""
        return result.is_error, text, result.structured_content

    async def ok(self, name: str, args: dict[str, Any] | None = None) -> Any:
        is_error, text, content = await self.call(name, args)
        assert not is_error, text
        return content

    async def refused(self, name: str, args: dict[str, Any] | None = None) -> str:
        is_error, text, content = await self.call(name, args)
        assert is_error, f"{name} was not refused: {content}"
        return text


@asynccontextmanager
async def mcp_session(
    world: World, transport: str, mode: str = "auto", **env: str
) -> AsyncIterator[Session]:
    """A client session with a server started the way a user starts it: ``ibkr-mcp serve`` over
    stdio as a subprocess, or the HTTP app on a free loopback port; both read the same
    ``IBKR_*`` environment. ``mode="legacy"`` speaks the handshake-era protocol (sessions);
    the default negotiates MCP 2026-07-28 (stateless)."""
    values = world.server_env(**env)
    if transport == "stdio":
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "mcp_server.cli", "serve", "--transport", "stdio"],
            env={**os.environ, **values},
        )
        async with Client(params, mode=mode) as client:
            yield Session(client)
        return
    with _env(values):
        server = build_server(MCPSettings())
        try:
            with serve_in_thread(server) as port:
                async with Client(f"http://127.0.0.1:{port}/mcp", mode=mode) as client:
                    yield Session(client)
        finally:
            server.app_state.close()
