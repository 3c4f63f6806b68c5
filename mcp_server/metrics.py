"""The MCP server's Prometheus metrics, served at ``GET /metrics`` by its HTTP app.

One :class:`ServerMetrics` per server (its own ``CollectorRegistry``, never the process-global
one), so several servers in one process (the tests) count apart:

* ``ibkr_mcp_tool_calls_total{tool, outcome}`` — every tool call, on every transport; outcome is
  ``ok``, ``error`` (a tool error: IB's message, a refusal), ``invalid_arguments`` or
  ``unexpected`` (a bug: the tool raised something else). A name that is no tool of the server is
  counted as tool ``unknown`` (callers cannot grow the label set).
* ``ibkr_mcp_tool_latency_seconds{tool}`` — each call's time in the server, seconds (histogram).
* ``ibkr_mcp_order_refusals_total{limit}`` — orders the order guard refused, by the setting that
  refused them (``readonly``, ``kill_switch``, ``max_order_value``...; ``OrderRefused.limit``).
* ``ibkr_mcp_broker_connected`` — 1 while the broker connection is open and its last call did
  not find it disconnected, else 0; ``ibkr_mcp_broker_opened`` — 1 once the connection (opened
  on first use) is open. Both are read when Prometheus scrapes, at no cost to a tool call.

Recording a call costs a few microseconds (a dictionary lookup, a counter and a histogram
bucket), against ~0.3-1 ms for the cheapest tool call (bench/mcp_latency.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

#: Outcomes of a tool call (the ``outcome`` label).
OUTCOMES = ("ok", "error", "invalid_arguments", "unexpected")
#: Latency buckets, seconds: a no-op call takes ~0.3 ms in-server, a history request seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
#: The tool label of a name that is no tool of this server.
UNKNOWN_TOOL = "unknown"
#: The media type of ``/metrics`` (Prometheus text format 0.0.4).
CONTENT_TYPE = CONTENT_TYPE_LATEST


class _BrokerState(Collector):
    """The broker connection's gauges, read from the server state at each scrape."""

    def __init__(self, opened: Callable[[], bool], connected: Callable[[], bool]) -> None:
        self._opened = opened
        self._connected = connected

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "ibkr_mcp_broker_opened",
            "1 once the MCP server's broker connection (opened on first use) is open",
            value=float(self._opened()),
        )
        yield GaugeMetricFamily(
            "ibkr_mcp_broker_connected",
            "1 while the broker connection is open and its last call did not find it "
            "disconnected, else 0",
            value=float(self._connected()),
        )


class ServerMetrics:
    """The metrics of one MCP server, in their own registry."""

    def __init__(self, opened: Callable[[], bool], connected: Callable[[], bool]) -> None:
        """``opened``/``connected``: the broker connection's state, asked at each scrape."""
        self.registry = CollectorRegistry(auto_describe=True)
        self._calls = Counter(
            "ibkr_mcp_tool_calls",
            "MCP tool calls by tool and outcome (ok, error, invalid_arguments, unexpected)",
            ["tool", "outcome"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "ibkr_mcp_tool_latency_seconds",
            "time an MCP tool call spent in the server, seconds",
            ["tool"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._refusals = Counter(
            "ibkr_mcp_order_refusals",
            "orders the order guard refused, by the limit (setting) that refused them",
            ["limit"],
            registry=self.registry,
        )
        self.registry.register(_BrokerState(opened, connected))
        # label children looked up once: .labels() takes a lock and builds a tuple each time
        self._children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}

    def tool_call(self, tool: str, outcome: str, seconds: float) -> None:
        """Count one call of ``tool`` (a registered tool's name, else :data:`UNKNOWN_TOOL`) that
        ended with ``outcome`` (one of :data:`OUTCOMES`) after ``seconds``."""
        key = (tool, outcome)
        children = self._children.get(key)
        if children is None:
            children = (self._calls.labels(tool, outcome), self._latency.labels(tool))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def refusal(self, limit: str) -> None:
        """Count one order the order guard refused by ``limit``."""
        self._refusals.labels(limit).inc()

    def exposition(self) -> bytes:
        """Every metric in Prometheus' text format (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)


__all__ = ["CONTENT_TYPE", "OUTCOMES", "UNKNOWN_TOOL", "ServerMetrics"]
