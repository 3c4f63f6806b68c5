"""ops/grafana/ibkr-agent.json is a Grafana dashboard over the series the code exposes, and
ops/alerts.yml alerts on those series only: every ``ibkr_*`` name either uses is one the MCP
server, the simulated gateways or the pipeline's run metrics produce (a renamed metric fails
here, not silently on a dashboard). The expressions themselves are parsed by a real Prometheus
in tests/ops/test_prometheus.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ibkr_assets.metrics import RunFigures, registry_of
from ibkr_sim.gateway.metrics import GatewayMetrics
from ibkr_sim.webapi.auth import AuthSession
from ibkr_sim.webapi.metrics import WebApiMetrics
from mcp_server.metrics import ServerMetrics

pytestmark = pytest.mark.ops

OPS = Path(__file__).resolve().parents[2] / "ops"
DASHBOARD = OPS / "grafana" / "ibkr-agent.json"
METRIC = re.compile(r"\bibkr_[a-z0-9_]+")


def dashboard_exprs() -> list[str]:
    """Every query expression of the dashboard's panels."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def alert_exprs() -> list[str]:
    groups = yaml.safe_load((OPS / "alerts.yml").read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def exposed_names() -> set[str]:
    """The sample names (``_total``, ``_bucket`` included) every series of ours produces, each
    label set exercised once."""
    server = ServerMetrics(opened=lambda: True, connected=lambda: True)
    server.tool_call("ping", "ok", 0.001)
    server.refusal("max_quantity")
    gateway = GatewayMetrics(clients=lambda: 1)
    gateway.request("req_mkt_data")
    gateway.error_sent(100, "Max rate of messages per second has been exceeded")
    gateway.refused_connections.inc()
    webapi = WebApiMetrics(AuthSession(authenticated=True))
    webapi.request("GET", "/v1/api/portfolio/accounts", 429)
    run = RunFigures(
        run_id="r",
        job="daily_pipeline",
        account="DU1",
        partition="2024-06-03",
        success=True,
        finished=1.0,
        duration_s=1.0,
        stage_seconds={"universe": 1.0},
        rows={"universe": 3},
        missing={"daily_bars": 1},
        checks={("feature_matrix", "universe_coverage"): True},
        orders={"queued": 1},
        gross_exposure=0.9,
        var={"historical": 0.02},
        net_liquidation=1e6,
    )
    texts = [
        server.exposition(),
        generate_latest(gateway.registry),
        webapi.exposition(),
        generate_latest(registry_of(run)),
    ]
    return {
        s.name
        for text in texts
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def test_the_dashboard_is_grafana_json_over_the_provisioned_data_source() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "ibkr-agent" and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    provisioned = yaml.safe_load(
        (OPS / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]["uid"]
    for p in panels:
        grid = p["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == provisioned, p["title"]
        assert p["targets"] and all(t["expr"] and t["refId"] for t in p["targets"]), p["title"]
    titles = {p["title"] for p in panels}
    assert {"Stage durations", "Orders", "Tool latency", "Pacing violations"} <= titles


def test_the_dashboard_and_the_alerts_use_only_series_the_code_exposes() -> None:
    exposed = exposed_names()
    used = {name for expr in dashboard_exprs() + alert_exprs() for name in METRIC.findall(expr)}
    assert used - exposed == set()
    # and they cover each process: the pipeline, the MCP server, both gateways
    for prefix in ("ibkr_pipeline_", "ibkr_mcp_", "ibkr_sim_gateway_", "ibkr_sim_webapi_"):
        assert any(name.startswith(prefix) for name in used), prefix
