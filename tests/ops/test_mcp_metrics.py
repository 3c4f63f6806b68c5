"""The MCP server's ``/metrics``: tool calls by tool and outcome, the latency histogram, the order
guard's refusals by limit and the broker connection's state, counted per server (two servers in
one process count apart), through a real MCP client over streamable HTTP on the simulator."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.mcp.conftest import call, err, ok, trading_server

pytestmark = [pytest.mark.anyio, pytest.mark.ops]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def scrape(running) -> dict[tuple[str, frozenset], float]:
    """Every sample of the server's /metrics: (name, labels) -> value."""
    response = httpx.get(running.base + "/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def sample(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_calls_outcomes_refusals_and_broker_state_are_counted(tmp_path):
    with trading_server(tmp_path / "a") as a, trading_server(tmp_path / "b") as b:
        before = scrape(a)
        assert sample(before, "ibkr_mcp_broker_opened") == 0.0
        assert sample(before, "ibkr_mcp_broker_connected") == 0.0
        for _ in range(3):
            await ok(a, "ping")
        await ok(a, "quotes", {"symbols": ["AAPL"]})
        await err(a, "quotes", {"symbols": "AAPL", "nonsense": 1})  # arguments refused
        order = {"symbol": "MSFT", "action": "BUY", "quantity": 501, "order_type": "MKT"}
        text = await err(a, "preview_order", {"order": order})
        assert "max_quantity" in text
        result = await call(a, "no_such_tool")
        assert result.is_error

        got = scrape(a)
        calls = "ibkr_mcp_tool_calls_total"
        assert sample(got, calls, tool="ping", outcome="ok") == 3.0
        assert sample(got, calls, tool="quotes", outcome="ok") == 1.0
        assert sample(got, calls, tool="quotes", outcome="invalid_arguments") == 1.0
        assert sample(got, calls, tool="preview_order", outcome="error") == 1.0
        assert sample(got, calls, tool="unknown", outcome="error") == 1.0
        assert sample(got, "ibkr_mcp_order_refusals_total", limit="max_quantity") == 1.0
        assert sample(got, "ibkr_mcp_tool_latency_seconds_count", tool="ping") == 3.0
        assert sample(got, "ibkr_mcp_tool_latency_seconds_sum", tool="ping") > 0.0
        inf = sample(got, "ibkr_mcp_tool_latency_seconds_bucket", tool="ping", le="+Inf")
        assert inf == 3.0
        assert sample(got, "ibkr_mcp_broker_opened") == 1.0
        assert sample(got, "ibkr_mcp_broker_connected") == 1.0

        # the other server in this process counted nothing of it
        other = scrape(b)
        assert sample(other, calls, tool="ping", outcome="ok") == 0.0
        assert sample(other, "ibkr_mcp_order_refusals_total", limit="max_quantity") == 0.0


async def test_a_lost_connection_shows_until_a_call_succeeds(tmp_path):
    from ibkr_assets.broker.errors import NotConnected

    with trading_server(tmp_path) as a:
        await ok(a, "quotes", {"symbols": ["AAPL"]})
        broker = a.server.app_state.broker()
        real = broker.accounts

        def gone():
            raise NotConnected("connection to IB lost (test)")

        broker.accounts = gone  # GuardedBroker forwards attributes; this one answers first
        try:
            await err(a, "list_accounts")
            assert sample(scrape(a), "ibkr_mcp_broker_connected") == 0.0
        finally:
            broker.accounts = real
        await ok(a, "list_accounts")
        assert sample(scrape(a), "ibkr_mcp_broker_connected") == 1.0
