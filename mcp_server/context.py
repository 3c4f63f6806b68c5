"""The server's state (one broker connection, settings, trading guard) and how tools reach it.

The state lives for the whole server process; the MCP lifespan hands it to every session as a typed
lifespan context, and the plain-HTTP routes (``/tools/list``, ``/tools/call``) reach the same
object through the server. Broker methods are synchronous, so tools call them in a worker thread
with :func:`call_broker`, which also turns a broker error into a tool error with IB's message.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations

from ibkr_assets.broker import Broker, BrokerError
from ibkr_assets.broker.models import Contract
from mcp_server.config import MCPSettings
from mcp_server.safety import TradingGuard

if TYPE_CHECKING:
    from mcp_server.server import IBKRServer

T = TypeVar("T")


def broker_from_env() -> Broker:
    """The broker the ``IBKR_*`` environment describes, through the pipeline's IB resource."""
    from ibkr_assets.resources.ib import IBResource

    return IBResource.from_env().get_broker()


@dataclass
class AppState:
    """One per server: the broker (opened on first use), settings and the trading guard."""

    settings: MCPSettings
    broker_factory: Callable[[], Broker] = broker_from_env
    guard: TradingGuard = field(init=False)
    selected_account: str | None = None
    _broker: Broker | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.guard = TradingGuard(self.settings)

    @property
    def data_dir(self) -> Path:
        """The pipeline's data root."""
        return self.settings.data_dir

    def broker(self) -> Broker:
        """The one connection, opened on first use (blocking: call from a worker thread)."""
        with self._lock:
            if self._broker is None:
                self._broker = self.broker_factory()
            return self._broker

    def close(self) -> None:
        """Close the broker connection if one is open."""
        with self._lock:
            if self._broker is not None:
                self._broker.close()
                self._broker = None


def state(ctx: Context) -> AppState:
    """The server state, from the lifespan context (MCP sessions) or the server (plain HTTP)."""
    try:
        return ctx.request_context.lifespan_context
    except ValueError:
        server: IBKRServer = ctx.mcp_server  # type: ignore[assignment]
        return server.app_state


async def call_broker(ctx: Context, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn(broker, *args, **kwargs)`` in a worker thread; broker errors become tool errors."""
    app = state(ctx)

    def run() -> T:
        return fn(app.broker(), *args, **kwargs)

    try:
        return await anyio.to_thread.run_sync(run)
    except BrokerError as exc:
        raise ToolError(str(exc)) from None


#: An option as a trader writes it: "AAPL 20261218 200 C" (underlying, expiry, strike, right).
_OPTION = re.compile(
    r"^(?P<symbol>[A-Z][A-Z0-9.]*)\s+(?P<expiry>\d{8})\s+(?P<strike>\d+(?:\.\d+)?)\s+"
    r"(?P<right>C|P|CALL|PUT)$"
)


def resolve(broker: Broker, symbol: str, sec_type: str = "STK", currency: str = "USD") -> Contract:
    """A contract from a ticker, a numeric conId, or an option written
    "SYMBOL YYYYMMDD STRIKE C|P" (e.g. "AAPL 20261218 200 C")."""
    text = " ".join(symbol.split()).upper()
    if text.isdigit():
        return broker.resolve(int(text))
    option = _OPTION.match(text)
    if option:
        underlying = broker.resolve(option["symbol"], currency=currency)
        return broker.option_contract(
            underlying, option["expiry"], float(option["strike"]), option["right"]
        )
    return broker.resolve(text, sec_type=sec_type, currency=currency)


def add_tool(
    server: IBKRServer,
    fn: Callable[..., Any],
    category: str,
    *,
    read_only: bool = True,
    destructive: bool = False,
    open_world: bool = True,
) -> None:
    """Register ``fn`` as a tool of ``category`` with its read-only / destructive annotations."""
    server.add_tool(
        fn,
        title=fn.__name__.replace("_", " ").capitalize(),
        annotations=ToolAnnotations(
            read_only_hint=read_only,
            destructive_hint=destructive,
            idempotent_hint=read_only,
            open_world_hint=open_world,
        ),
        meta={"category": category},
    )
