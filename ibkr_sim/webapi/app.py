"""The Starlette app of the simulated Client Portal gateway: every route under ``/v1/api``, and
what the gateway does before any route runs, in this order:

1. ``411`` for a POST without ``Content-Length`` [V1DOC "Headers"];
2. IBKR's rate limits (:mod:`~ibkr_sim.webapi.ratelimit`): ``429 {"error": ...}``;
3. the session (:mod:`~ibkr_sim.webapi.auth`): the request keeps it alive (or finds it timed
   out or ended by IBKR's nightly reset); before login every endpoint but ``/sim/login`` answers
   401, without a brokerage session every ``/iserver`` endpoint but the session ones answers 401
   (503 while the nightly reset is under way).

A route that fails with an unexpected exception answers 500 ``{"error": ...}`` naming it (IBKR
answers 500 "internal server error" with its reason), never a dropped connection. A path the
simulator does not serve answers 404, a method it does not serve on a path 405 (with ``Allow``),
both ``{"error": ...}`` like every other error of the gateway.

Outside all of that, ``GET /metrics`` serves the gateway's Prometheus metrics and every request
is counted by route and status (:mod:`ibkr_sim.webapi.metrics`).
"""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount

from ibkr_sim.webapi import (
    routes_alerts,
    routes_contracts,
    routes_fx,
    routes_market_data,
    routes_order_status,
    routes_orders,
    routes_pnl,
    routes_portfolio,
    routes_reference,
    routes_scanner,
    routes_session,
    routes_watchlists,
)
from ibkr_sim.webapi.metrics import MetricsMiddleware, WebApiMetrics
from ibkr_sim.webapi.routes_session import OPEN_WITHOUT_BROKERAGE, OPEN_WITHOUT_LOGIN
from ibkr_sim.webapi.state import WebApiState, error

log = logging.getLogger(__name__)
PREFIX = "/v1/api"


class GatewayMiddleware(BaseHTTPMiddleware):
    """Content-Length, rate limits and the session gate (see the module docstring)."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        st: WebApiState = request.app.state.webapi
        path = request.url.path
        if not path.startswith(PREFIX + "/"):
            return error(f"{path} is not served: the Web API lives under {PREFIX}/", 404)
        path = path[len(PREFIX) :]
        headers = request.headers
        if request.method == "POST" and not {"content-length", "transfer-encoding"} & {
            k.lower() for k in headers
        }:
            return error("Length Required: send a Content-Length header with a POST", 411)
        refused = st.limits.admit(request.method, path)
        if refused:
            return error(refused, 429)
        if path not in OPEN_WITHOUT_LOGIN:
            gated = path.startswith("/iserver/") and path not in OPEN_WITHOUT_BROKERAGE
            gate = st.session.refusal(gated)
            if gate is not None:
                return error(*gate)
        try:
            return await call_next(request)
        except Exception as exc:  # boundary: a simulator bug answers 500, as IBKR's errors do
            log.exception("%s %s failed", request.method, request.url.path)
            return JSONResponse(
                {"error": f"internal server error: {type(exc).__name__}: {exc}"}, status_code=500
            )


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 (no route) and 405 (route without that method) as ``{"error": ...}``."""
    assert isinstance(exc, HTTPException)
    text = {
        404: f"{request.url.path} is not served by this gateway",
        405: f"{request.method} is not served on {request.url.path}",
    }.get(exc.status_code, exc.detail)
    return JSONResponse({"error": text}, status_code=exc.status_code, headers=exc.headers)


def build_app(state: WebApiState) -> Starlette:
    """The ASGI app serving ``state`` under ``/v1/api``, and its metrics at ``/metrics``."""
    routes = (
        routes_session.ROUTES
        + routes_portfolio.ROUTES
        + routes_contracts.ROUTES
        + routes_market_data.ROUTES
        + routes_orders.ROUTES
        + routes_order_status.ROUTES
        + routes_reference.ROUTES
        + routes_scanner.ROUTES
        + routes_pnl.ROUTES
        + routes_alerts.ROUTES
        + routes_watchlists.ROUTES
        + routes_fx.ROUTES
    )
    metrics = WebApiMetrics(state.session)
    mounted = [Mount(PREFIX, routes=routes)]
    app = Starlette(
        routes=mounted,
        middleware=[
            Middleware(MetricsMiddleware, metrics=metrics, routes=mounted),
            Middleware(GatewayMiddleware),
        ],
        exception_handlers={HTTPException: _http_error},
    )
    app.state.webapi = state
    app.state.metrics = metrics
    return app


__all__ = ["PREFIX", "build_app"]
