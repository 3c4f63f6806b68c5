"""The simulated Client Portal gateway's Prometheus metrics, at ``GET /metrics`` of its own app.

:class:`MetricsMiddleware` is the app's outermost layer: it answers ``/metrics`` (outside
``/v1/api``, so neither the rate limits nor the session gate apply to it) and counts every other
request once its answer has started. Each app has its own registry (several gateways in one
process count apart):

* ``ibkr_sim_webapi_requests_total{method, endpoint, status}`` — requests by the route's path
  template (``/v1/api/iserver/contract/{conid}/info``: a conid does not make a new series;
  ``unmatched`` for a path no route serves) and HTTP status;
* ``ibkr_sim_webapi_rate_limited_total{endpoint}`` — the 429s among them (IBKR's pacing);
* ``ibkr_sim_webapi_session{state}`` — 1/0 for ``logged_in`` and ``brokerage`` (the brokerage
  session is open), read at each scrape.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ibkr_sim.webapi.auth import AuthSession

#: The path Prometheus scrapes.
METRICS_PATH = "/metrics"
#: The endpoint label of a path no route serves.
UNMATCHED = "unmatched"
#: Methods counted by name; any other is counted as ``OTHER`` (callers cannot grow the labels).
_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})
#: Distinct request paths whose route template is remembered.
_TEMPLATE_CACHE = 4096


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The path template of the route that serves ``scope`` (mounts included), or
    :data:`UNMATCHED`. A route that serves the path but not the method counts as serving it."""
    for route in routes:
        match, child = route.matches(scope)
        if match == Match.NONE:
            continue
        if isinstance(route, Mount):
            inner = route_template(route.routes, {**scope, **child})
            return UNMATCHED if inner == UNMATCHED else route.path + inner
        return str(getattr(route, "path", UNMATCHED))
    return UNMATCHED


class _Session(Collector):
    """``ibkr_sim_webapi_session{state}``, read from the gateway's session at each scrape."""

    def __init__(self, session: AuthSession) -> None:
        self._session = session

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "ibkr_sim_webapi_session",
            "1 while the simulated Web API session is in that state (logged_in, brokerage)",
            labels=["state"],
        )
        family.add_metric(["logged_in"], float(self._session.logged_in))
        family.add_metric(["brokerage"], float(self._session.brokerage))
        yield family


class WebApiMetrics:
    """The metrics of one simulated Client Portal gateway, in their own registry."""

    def __init__(self, session: AuthSession) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "ibkr_sim_webapi_requests",
            "Web API requests by method, route template and HTTP status",
            ["method", "endpoint", "status"],
            registry=self.registry,
        )
        self._limited = Counter(
            "ibkr_sim_webapi_rate_limited",
            "Web API requests answered 429 (IBKR's rate limits), by route template",
            ["endpoint"],
            registry=self.registry,
        )
        self.registry.register(_Session(session))

    def request(self, method: str, endpoint: str, status: int) -> None:
        """Count one answered request."""
        self._requests.labels(method, endpoint, str(status)).inc()
        if status == 429:
            self._limited.labels(endpoint).inc()

    def exposition(self) -> bytes:
        """Every metric in Prometheus' text format."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """ASGI middleware: ``GET /metrics`` answered from ``metrics``; every other HTTP request
    counted by the template of the route in ``routes`` that serves it, with its status."""

    def __init__(self, app: ASGIApp, metrics: WebApiMetrics, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics

        @lru_cache(maxsize=_TEMPLATE_CACHE)
        def template(method: str, path: str) -> str:
            scope: dict[str, Any] = {"type": "http", "method": method, "path": path}
            return route_template(routes, {**scope, "root_path": ""})

        self._template = template

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        method = method if method in _METHODS else "OTHER"
        if path == METRICS_PATH and method == "GET":
            body = self.metrics.exposition()
            headers = [
                (b"content-type", CONTENT_TYPE_LATEST.encode()),
                (b"content-length", str(len(body)).encode()),
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        status = 500  # an app that raises before answering: uvicorn answers 500

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        finally:
            self.metrics.request(method, self._template(method, path), status)


__all__ = ["METRICS_PATH", "MetricsMiddleware", "WebApiMetrics", "route_template"]
