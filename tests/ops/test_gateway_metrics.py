"""The simulated gateways' Prometheus metrics: the TWS gateway's on its own HTTP port (requests,
pacing violations, connected clients; ``ibkr-sim gateway --metrics-port``), the Web API
gateway's at ``/metrics`` of its app (requests by route template and status, 429s, session)."""

from __future__ import annotations

import subprocess
import time

import httpx
import pytest
from ib_async import IB, Stock
from prometheus_client.parser import text_string_to_metric_families

from ibkr_sim.gateway.profile import IB_PAPER
from ibkr_sim.gateway.server import running_clock, start_gateway
from ibkr_sim.webapi.server import start_webapi
from tests.gateway.cli_gateway import gateway_command
from tests.mcp.conftest import SESSION_TIME

pytestmark = pytest.mark.ops

#: no seeded farm drops or history gaps: the test counts what it causes
PROFILE = IB_PAPER.with_options(history_gap_rate=0.0, farm_drops_per_day=0.0)


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    """Every sample at ``url``: (name, labels) -> value."""
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def sample(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_tws_gateway_counts_requests_pacing_and_clients(tmp_path):
    with start_gateway(
        port=0,
        metrics_port=0,
        symbols=20,
        pacing="ib",
        data_dir=tmp_path,
        clock=running_clock(SESSION_TIME),
        profile=PROFILE,
    ) as gw:
        url = f"http://127.0.0.1:{gw.metrics_port}/metrics"
        assert sample(scrape(url), "ibkr_sim_gateway_connected_clients") == 0.0
        client = IB()
        client.connect("127.0.0.1", gw.port, clientId=5, timeout=10)
        try:
            contract = Stock("AAPL", "SMART", "USD")
            for _ in range(2):  # the second, identical within 15 s, is a pacing violation
                client.reqHistoricalData(contract, "", "1 M", "1 day", "TRADES", True, 1)
            got = scrape(url)
            assert sample(got, "ibkr_sim_gateway_connected_clients") == 1.0
            limit = {"limit": "historical"}
            assert sample(got, "ibkr_sim_gateway_pacing_violations_total", **limit) == 1.0
            history = {"message": "req_historical_data"}
            assert sample(got, "ibkr_sim_gateway_requests_total", **history) == 2.0
            assert sample(got, "ibkr_sim_gateway_requests_total", message="start_api") == 1.0
        finally:
            client.disconnect()
        deadline = time.monotonic() + 10
        while sample(scrape(url), "ibkr_sim_gateway_connected_clients") != 0.0:
            assert time.monotonic() < deadline, "the closed client is still counted"
            time.sleep(0.1)


def test_cli_serves_metrics_on_its_port(tmp_path):
    command = gateway_command(tmp_path, 20, "--metrics-port", "0", "--profile", "ideal")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(2)]
        metrics = next(line for line in lines if "metrics on" in line).split()[-1]
        assert metrics.startswith("http://127.0.0.1:") and metrics.endswith("/metrics")
        assert sample(scrape(metrics), "ibkr_sim_gateway_connected_clients") == 0.0
    finally:
        proc.terminate()
        proc.wait(10)


def test_cli_refuses_a_metrics_port_out_of_range(tmp_path):
    command = gateway_command(tmp_path, 20, "--metrics-port", "70000")
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--metrics-port 70000 is not a TCP port" in done.stderr


def test_webapi_counts_by_route_template_status_and_429(tmp_path):
    with (
        start_webapi(tls=False, authenticated=True, symbols=20, data_dir=tmp_path) as gw,
        httpx.Client(base_url=gw.url, timeout=30) as api,
    ):
        base = gw.url.removesuffix("/v1/api")
        for conid in (265598, 272093):  # two conids, one series
            api.get(f"/iserver/contract/{conid}/info")
        statuses = [api.get("/portfolio/accounts").status_code for _ in range(2)]
        assert statuses == [200, 429]  # one request per 5 s
        assert api.get("/no/such/path").status_code == 404
        got = scrape(base + "/metrics")
        requests = "ibkr_sim_webapi_requests_total"
        info = "/v1/api/iserver/contract/{conid}/info"
        counted = sum(
            v for (n, labels), v in got.items() if n == requests and ("endpoint", info) in labels
        )
        assert counted == 2.0
        portfolio = {"method": "GET", "endpoint": "/v1/api/portfolio/accounts"}
        assert sample(got, requests, **portfolio, status="200") == 1.0
        assert sample(got, requests, **portfolio, status="429") == 1.0
        limited = "ibkr_sim_webapi_rate_limited_total"
        assert sample(got, limited, endpoint=portfolio["endpoint"]) == 1.0
        assert sample(got, requests, method="GET", endpoint="unmatched", status="404") == 1.0
        assert sample(got, "ibkr_sim_webapi_session", state="logged_in") == 1.0
        assert sample(got, "ibkr_sim_webapi_session", state="brokerage") == 1.0
