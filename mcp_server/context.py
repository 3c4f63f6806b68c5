"""How tools reach the server's state (:class:`~mcp_server.app.AppState`) and register.

The MCP lifespan hands the state to every session as a typed lifespan context, and the
plain-HTTP routes (``/tools/list``, ``/tools/call``) reach the same object through the server
(:func:`state`). Broker methods are synchronous, so tools call them in a worker thread with
:func:`call_broker`, which also turns a broker error into a tool error with IB's message. A
market-data read goes through :func:`read_market_data` instead: on the event loop when the open
backend answers it from memory (the simulator, where the thread hop cost more than the read),
in a worker thread like any other call when it waits on IB.

The account a tool uses by default is chosen per MCP session (``select_account``); the plain-HTTP
routes have no session and take an explicit ``account_id`` (else the primary account).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from ibkr_assets.broker import Broker, BrokerError, GuardedBroker
from ibkr_assets.broker.errors import NotConnected, NotSupported, OrderRefused
from ibkr_assets.broker.models import Contract
from mcp_server.app import AppState, IBKRServer

T = TypeVar("T")


class NotAvailable(ToolError):
    """The broker backend in use does not offer this feature (IB offers it through another of
    its APIs, e.g. price alerts only in the Client Portal Web API); nothing was changed."""


def session_key(ctx: Context) -> str | None:
    """The MCP session a call belongs to, or None where there is none.

    MCP 2026-07-28 is stateless (each request stands alone, no ``Mcp-Session-Id``), and so are
    the plain-HTTP routes: None. A handshake-era (2025) client over streamable HTTP is keyed by
    its ``Mcp-Session-Id``; over stdio a server process has exactly one client."""
    try:
        request = ctx.request_context
    except ValueError:
        return None
    if request.protocol_version in MODERN_PROTOCOL_VERSIONS:
        return None
    if request.request is None:
        return "stdio"
    return request.request.headers.get("mcp-session-id")


def require_session(ctx: Context) -> str:
    """The call's MCP session, or a tool error saying there is none and what to do instead."""
    session = session_key(ctx)
    if session is None:
        raise ToolError(
            "this request has no MCP session to remember an account for (MCP 2026-07-28 "
            "requests and the plain-HTTP routes are stateless): pass account_id to each tool "
            "instead, or set IBKR_ACCOUNT for the whole server"
        )
    return session


def state(ctx: Context) -> AppState:
    """The server state, from the lifespan context (MCP sessions) or the server (plain HTTP)."""
    try:
        return ctx.request_context.lifespan_context
    except ValueError:
        server: IBKRServer = ctx.mcp_server  # type: ignore[assignment]
        return server.app_state


@contextmanager
def _tool_errors(app: AppState) -> Iterator[None]:
    """Broker errors as tool errors with IB's message; a feature the backend does not offer
    (NotSupported: "<feature> is not available on the <backend> backend: ...") as
    :class:`NotAvailable`. The server's metrics count the order guard's refusals by limit and
    note a connection found gone (until a broker call succeeds again)."""
    try:
        yield
    except NotSupported as exc:
        raise NotAvailable(exc.message) from None
    except BrokerError as exc:
        if isinstance(exc, OrderRefused):
            app.metrics.refusal(exc.limit)
        elif isinstance(exc, NotConnected):
            app.broker_lost = True
        raise ToolError(str(exc)) from None
    app.broker_lost = False


async def call_broker(ctx: Context, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn(broker, *args, **kwargs)`` in a worker thread; broker errors become tool errors
    with IB's message, and a feature the backend does not offer becomes :class:`NotAvailable`."""
    app = state(ctx)

    def run() -> T:
        return fn(app.broker(), *args, **kwargs)

    with _tool_errors(app):
        return await anyio.to_thread.run_sync(run)


async def read_market_data(ctx: Context, fn: Callable[[GuardedBroker], T]) -> T:
    """Run ``fn(broker)``, which may only resolve contracts and read quotes, as
    :func:`call_broker` does, except that when the broker is open and answers those from memory
    (``market_data_in_process``: the simulator) it runs here on the event loop: the hop to a
    worker thread and back cost more than the read. A backend that waits on IB (TWS, Client
    Portal), or a broker not yet opened (opening blocks), still runs in a worker thread."""
    app = state(ctx)
    broker = app.open_broker()
    if broker is None or not broker.market_data_in_process:
        return await call_broker(ctx, fn)
    with _tool_errors(app):
        return fn(broker)


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
