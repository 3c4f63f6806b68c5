"""The IBKR MCP server: Interactive Brokers as tools for AI assistants.

One broker connection per server process (``IBResource.from_settings(...).get_broker()``, the same
resource class the pipeline uses), handed to every MCP session as a typed lifespan context. Tools
come in ten categories (``reference``, ``portfolio``, ``market_data``, ``trading``, ``fx``,
``alerts``, ``watchlists``, ``scanner``, ``analysis``, ``pipeline``) plus ``server`` (health,
ping); each tool carries its category in its metadata and read-only / destructive annotations.
The tools that send orders exist only with ``IBKR_MCP_TRADING=on`` (see
:mod:`mcp_server.safety`). Resources (:mod:`mcp_server.resources`) publish the accounts,
positions, P&L and the pipeline's latest ticket and risk report for assistants to attach
without a tool call.

Transports: stdio (desktop assistants) and streamable HTTP at ``/mcp``; the HTTP app also answers
plain ``GET /tools/list`` and ``POST /tools/call`` for scripts, and ``GET /metrics`` for
Prometheus (:mod:`mcp_server.metrics`), behind the same Host/Origin checks and bearer token
(:mod:`mcp_server.security`).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ibkr_assets.broker import BrokerError, GuardedBroker
from ibkr_assets.settings import MCPSettings, load_settings
from mcp_server import (
    alerts,
    analysis,
    fx,
    market_data,
    order_history,
    pipeline,
    portfolio,
    reference,
    resources,
    scanner,
    trading,
    watchlists,
)
from mcp_server.app import AppState, IBKRServer, broker_from_env
from mcp_server.context import add_tool, state
from mcp_server.metrics import CONTENT_TYPE
from mcp_server.portfolio import account_for
from mcp_server.security import (
    SecurityMiddleware,
    require_token_off_loopback,
    transport_security,
    uvicorn_tls,
)

SERVER_NAME = "ibkr-mcp"
CATEGORY = "server"
CATEGORIES = (
    reference.CATEGORY,
    portfolio.CATEGORY,
    market_data.CATEGORY,
    trading.CATEGORY,
    fx.CATEGORY,
    alerts.CATEGORY,
    watchlists.CATEGORY,
    scanner.CATEGORY,
    analysis.CATEGORY,
    pipeline.CATEGORY,
    CATEGORY,
)


class Health(BaseModel):
    """Whether the broker answers, and the account and mode of the server. When the broker does
    not answer, ``connected`` is false, ``error`` says why, and the broker's fields are null."""

    connected: bool = Field(description="the broker answered this call (accounts and its clock)")
    error: str | None = Field(default=None, description="why the broker did not answer")
    backend: str | None = Field(default=None, description="the broker backend: sim, tws, webapi")
    account_id: str | None = None
    paper: bool | None = None
    trading: bool = Field(description="IBKR_MCP_TRADING: the order tools are offered")
    kill_switch: bool | None = None
    broker_time: str | None = Field(default=None, description="the broker's clock, ISO 8601")


class Pong(BaseModel):
    """The answer of the no-op tool."""

    ok: bool = True


async def health(ctx: Context) -> Health:
    """Whether the broker answers, the account in use, paper/live, and whether trading is on.

    Examples:
        health() -> {"connected": true, "backend": "sim", "paper": true, "trading": false, ...}
        health() -> {"connected": false, "error": "[IB 502] cannot reach TWS / IB Gateway ...",
                     "backend": null, ...}
    """
    app = state(ctx)
    wanted = account_for(ctx, None)

    def run() -> Health:
        try:
            b = app.broker()
            accounts = b.accounts()
            acct = next(a for a in accounts if (a.account_id == wanted if wanted else a.is_primary))
            return Health(
                connected=True,
                backend=b.name,
                account_id=acct.account_id,
                paper=acct.is_paper,
                trading=app.settings.trading,
                kill_switch=b.guard.halt_reason() is not None,
                broker_time=b.now().isoformat(),
            )
        except BrokerError as exc:
            return Health(connected=False, error=str(exc), trading=app.settings.trading)

    return await anyio.to_thread.run_sync(run)


async def ping() -> Pong:
    """A no-op: the latency floor of a tool call (used by bench/mcp_latency.py).

    Examples:
        ping() -> {"ok": true}
    """
    return Pong()


def build_server(
    settings: MCPSettings | None = None,
    broker_factory: Callable[[MCPSettings], GuardedBroker] | None = None,
) -> IBKRServer:
    """The MCP server with every tool registered (order tools only when trading is on)."""
    settings = settings or load_settings().checked("mcp").mcp
    app_state = AppState(settings, broker_factory or broker_from_env)

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        # The connection outlives sessions: it is opened on first use and closed by the caller
        # of the server (cli.serve) when the process stops.
        yield app_state

    server = IBKRServer(
        SERVER_NAME,
        instructions=(
            "Interactive Brokers tools. Paper account by default. To trade: preview_order, then "
            "place_order with the returned confirmation_token and a reason."
        ),
        lifespan=lifespan,
        log_level=settings.log_level,
    )
    server.app_state = app_state
    reference.register(server)
    portfolio.register(server)
    market_data.register(server)
    trading.register(server, trading=settings.trading)
    order_history.register(server)
    fx.register(server)
    alerts.register(server)
    watchlists.register(server)
    scanner.register(server)
    analysis.register(server)
    pipeline.register(server, trading=settings.trading)
    add_tool(server, health, CATEGORY, open_world=True)
    add_tool(server, ping, CATEGORY, open_world=False)
    resources.register(server)
    _add_plain_routes(server)
    return server


def _add_plain_routes(server: IBKRServer) -> None:
    @server.custom_route("/metrics", methods=["GET"])
    async def metrics(request: Request) -> Response:
        return Response(server.app_state.metrics.exposition(), media_type=CONTENT_TYPE)

    @server.custom_route("/tools/list", methods=["GET"])
    async def tools_list(request: Request) -> Response:
        tools = await server.list_tools()
        return JSONResponse(
            {"tools": [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools]}
        )

    @server.custom_route("/tools/call", methods=["POST"])
    async def tools_call(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
            name = body["name"]
            arguments: dict[str, Any] = body.get("arguments") or {}
            if not isinstance(name, str) or not isinstance(arguments, dict):
                raise TypeError
        except RecursionError:
            return JSONResponse(
                {"error": "body is JSON nested too deeply; tool arguments are a few levels deep"},
                status_code=400,
            )
        except (ValueError, KeyError, TypeError):
            return JSONResponse(
                {"error": 'body must be JSON {"name": "<tool>", "arguments": {...}}'},
                status_code=400,
            )
        try:
            result = await server.call_tool(name, arguments)
        except UnexpectedToolError as exc:
            return JSONResponse({"isError": True, "error": str(exc)}, status_code=500)
        except ToolError as exc:
            return JSONResponse({"isError": True, "error": str(exc)}, status_code=400)
        return JSONResponse(result.model_dump(mode="json", by_alias=True, exclude_none=True))


def http_app(server: IBKRServer, host: str = "127.0.0.1", port: int = 8000) -> Starlette:
    """The streamable HTTP app (``/mcp`` plus the plain routes) behind the security middleware,
    for a server listening on ``host``:``port`` (the Origin header must name that port).

    Raises InsecureBinding for a non-loopback ``host`` without IBKR_MCP_TOKEN, and
    :class:`~ibkr_assets.settings.SecretError` for a token that is set but unusable (too short,
    its file unreadable).
    """
    settings = server.app_state.settings
    token = require_token_off_loopback(host)
    app = server.streamable_http_app(
        transport_security=transport_security(settings, host, port), host=host
    )
    app.add_middleware(SecurityMiddleware, settings=settings, host=host, port=port, token=token)
    return app


@contextmanager
def serve_in_thread(server: IBKRServer, host: str = "127.0.0.1") -> Iterator[int]:
    """Serve ``http_app(server, host, port)`` from a background thread on a free loopback port
    (HTTPS when the TLS settings are set); yields the port. ``host`` selects the security
    configuration (the socket is always 127.0.0.1), so tests and benchmarks exercise the token and
    Host checks without listening off loopback."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = http_app(server, host, port)
    config = uvicorn.Config(
        app, log_level="warning", lifespan="on", **uvicorn_tls(server.app_state.settings)
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            sock.close()
            raise RuntimeError("the MCP HTTP server did not start")
        time.sleep(0.02)
    try:
        yield port
    finally:
        uv.should_exit = True
        thread.join(timeout=10)
        sock.close()
