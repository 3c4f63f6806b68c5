"""The simulated TWS gateway's Prometheus metrics.

The gateway speaks IB's binary socket protocol, so its metrics are served on a port of their own
(``ibkr-sim gateway --metrics-port``) by prometheus_client's HTTP server, from the gateway's own
registry (never the process-global one: several gateways in one process count apart):

* ``ibkr_sim_gateway_requests_total{message}`` — API messages received, by the name of the
  handler that served them (``req_mkt_data``, ``place_order``...; ``unsupported`` for a message
  the simulator answers with an error, ``unknown`` for an id it does not know);
* ``ibkr_sim_gateway_pacing_violations_total{limit}`` — IB pacing errors sent: ``messages``
  (100, over 50 messages a second), ``market_data_lines`` (101), ``historical`` (162 "Pacing
  violation"), ``depth`` (309), ``scanners`` (420);
* ``ibkr_sim_gateway_connected_clients`` — API connections open now (read at each scrape);
* ``ibkr_sim_gateway_refused_connections_total`` — connections closed at once because
  ``max_connections`` clients were connected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ibkr_spec.errors import (
    HISTORICAL_DATA_ERROR,
    MAX_DEPTH,
    MAX_RATE,
    MAX_SCANNERS,
    MAX_TICKERS,
)

#: The ``limit`` label of each IB pacing error code.
PACING_LIMITS = {
    MAX_RATE: "messages",
    MAX_TICKERS: "market_data_lines",
    HISTORICAL_DATA_ERROR: "historical",
    MAX_DEPTH: "depth",
    MAX_SCANNERS: "scanners",
}


class _Clients(Collector):
    """``ibkr_sim_gateway_connected_clients``, counted at each scrape."""

    def __init__(self, count: Callable[[], int]) -> None:
        self._count = count

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "ibkr_sim_gateway_connected_clients",
            "API client connections open on the simulated gateway",
            value=float(self._count()),
        )


class GatewayMetrics:
    """The metrics of one gateway, in their own registry."""

    def __init__(self, clients: Callable[[], int]) -> None:
        """``clients``: the number of connections open, asked at each scrape."""
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "ibkr_sim_gateway_requests",
            "TWS API messages received, by the handler that served them",
            ["message"],
            registry=self.registry,
        )
        self._pacing = Counter(
            "ibkr_sim_gateway_pacing_violations",
            "IB pacing errors sent (100, 101, 162, 309, 420), by the limit broken",
            ["limit"],
            registry=self.registry,
        )
        self.refused_connections = Counter(
            "ibkr_sim_gateway_refused_connections",
            "API connections closed at once: max_connections clients were connected",
            registry=self.registry,
        )
        self.registry.register(_Clients(clients))
        self._by_message: dict[str, Counter] = {}

    def request(self, message: str) -> None:
        """Count one API message served by the handler named ``message``."""
        child = self._by_message.get(message)
        if child is None:
            child = self._by_message[message] = self._requests.labels(message)
        child.inc()

    def error_sent(self, code: int, text: str) -> None:
        """Count an error sent to a client when it is a pacing violation (162 only when it says
        so: the code also carries other historical-data errors)."""
        limit = PACING_LIMITS.get(code)
        if limit is None or (code == HISTORICAL_DATA_ERROR and "Pacing violation" not in text):
            return
        self._pacing.labels(limit).inc()

    def serve(self, host: str, port: int) -> tuple[WSGIServer, Thread]:
        """Serve ``/metrics`` on ``host``:``port`` (0: a free port; the server's
        ``server_port``) from a daemon thread; ``shutdown()`` the server to stop it."""
        return start_http_server(port, addr=host, registry=self.registry)


__all__ = ["PACING_LIMITS", "GatewayMetrics"]
