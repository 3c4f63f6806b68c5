"""Prometheus end to end: Debian's ``prometheus`` (``.ci/run`` installs it when missing) on
loopback, with a generated config, scrapes a running MCP server and the textfile of a finished
pipeline run (served as node-exporter's textfile collector would, by a tiny static HTTP server),
and its HTTP API (``/api/v1/query``) answers with the series. ``promtool`` validates
ops/prometheus.yml and ops/alerts.yml and runs the alert rules' unit tests (ops/alerts_test.yml)."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from ibkr_assets.metrics import textfile_path
from tests.mcp.conftest import ok, trading_server
from tests.ops.test_dashboard import alert_exprs, dashboard_exprs
from tests.small_world import SMALL_WORLD_EVIDENCE

pytestmark = [pytest.mark.ops]

OPS = Path(__file__).resolve().parents[2] / "ops"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
SESSION = "2024-06-03"
WATCHLIST = '["AAPL","MSFT","KO"]'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _require(binary: str) -> None:
    if not Path(binary).exists():
        pytest.fail(f"{binary} is missing: apt-get install -y prometheus (.ci/run does it)")


def test_promtool_validates_the_config_and_the_alert_rules() -> None:
    _require(PROMTOOL)
    # --syntax-only: the bearer-token file the config names exists only in the compose stack
    for args in (
        ["check", "config", "--syntax-only", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ):
        done = subprocess.run(
            [PROMTOOL, *args], cwd=OPS, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}{done.stderr}"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data root of a finished ``ibkr-agent run`` on a small simulated world."""
    data = tmp_path_factory.mktemp("ops-run")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IBKR_", "DAGSTER_"))}
    env |= {
        "IBKR_DATA_DIR": str(data),
        **SMALL_WORLD_EVIDENCE,
        "IBKR_SIM_SYMBOLS": "20",
        "IBKR_WATCHLIST": WATCHLIST,
        "IBKR_JOURNAL_KEY": os.environ["IBKR_JOURNAL_KEY"],
    }
    command = [sys.executable, "-m", "ibkr_assets.cli", "run", "--date", SESSION]
    # the output to a file, not a pipe: a process the run leaves behind holding the pipe (Dagster's
    # compute-log tail) would keep subprocess.run reading after the run had exited (CI, session
    # 18: the run exited 0, the fixture waited out its 300 s)
    output = tmp_path_factory.mktemp("ops-run-output") / "run.log"
    with output.open("w") as log:
        done = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=300)
    assert done.returncode == 0, output.read_text()
    return data


def test_the_run_writes_its_metrics_textfile(finished_run: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    text = textfile_path(finished_run, "daily_pipeline").read_text()
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    base = {"dagster_job": "daily_pipeline"}

    def values(name: str) -> dict[frozenset, float]:
        return {labels: v for (n, labels), v in samples.items() if n == name}

    [success] = values("ibkr_pipeline_run_success").values()
    assert success == 1.0
    stages = {
        dict(k)["stage"]: v for k, v in values("ibkr_pipeline_stage_duration_seconds").items()
    }
    assert {"daily_bars", "target_weights", "order_ticket"} <= set(stages)
    assert all(v > 0 for v in stages.values())
    rows = {dict(k)["asset"]: v for k, v in values("ibkr_pipeline_rows").items()}
    missing = {dict(k)["asset"]: v for k, v in values("ibkr_pipeline_missing_data").items()}
    # the 20-stock world knows 2 of the 3 watch-list symbols; the third is missing data
    assert rows["universe"] + missing.get("universe", 0.0) == 3.0
    assert rows["daily_bars"] > 100
    checks = values("ibkr_pipeline_check_passed")
    assert checks and all(v == 1.0 for v in checks.values())
    orders = {dict(k)["state"]: v for k, v in values("ibkr_pipeline_orders").items()}
    ticket = json.loads((finished_run / "reports" / f"order_ticket_{SESSION}.json").read_text())
    assert orders["queued"] == ticket["order_count"]
    assert set(orders) == {"queued", "submitted", "filled", "rejected", "refused"}
    report = json.loads((finished_run / "reports" / f"risk_report_{SESSION}.json").read_text())
    [nav] = values("ibkr_pipeline_net_liquidation_usd").values()
    assert nav == pytest.approx(report["net_liquidation"])
    var = {dict(k)["method"]: v for k, v in values("ibkr_pipeline_var_ratio").items()}
    checks_by_name = {c["check"]: c["value"] for c in report["checks"]}
    assert var == {
        "historical": pytest.approx(checks_by_name["var_historical"]),
        "parametric": pytest.approx(checks_by_name["var_parametric"]),
    }
    [gross] = values("ibkr_pipeline_gross_exposure_ratio").values()
    assert 0 <= gross <= 1.5
    [deadline] = values("ibkr_pipeline_next_run_deadline_timestamp_seconds").values()
    assert deadline == 1717500600.0  # 2024-06-04 14:30 EEST (UTC+3) = 11:30 UTC
    assert all(dict(k).items() >= base.items() for k in values("ibkr_pipeline_run_success"))


@contextmanager
def _static_server(root: Path) -> Iterator[int]:
    """Serve ``root``'s files over HTTP on a free loopback port (the textfile, as node-exporter's
    textfile collector exposes it)."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args) -> None:  # quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def _prometheus(workdir: Path, targets: dict[str, tuple[int, str]]) -> Iterator[str]:
    """A real Prometheus on a free loopback port scraping ``targets`` (job -> (port, path))
    every second; yields its base URL."""
    _require(PROMETHEUS)
    port = _free_port()
    jobs = "".join(
        f"  - job_name: {job}\n    metrics_path: {path}\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
        for job, (target, path) in targets.items()
    )
    config = workdir / "prometheus.yml"
    config.write_text(f"global:\n  scrape_interval: 1s\nscrape_configs:\n{jobs}")
    log = (workdir / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (workdir / "prometheus.log").read_text()
            try:
                if httpx.get(base + "/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "Prometheus did not become ready in 60 s"
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def _query(base: str, promql: str, timeout: float = 60) -> list[dict]:
    """The result of an instant query, once it is not empty (scrapes take a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = httpx.get(base + "/api/v1/query", params={"query": promql}, timeout=10).json()
        assert answer["status"] == "success", answer
        if answer["data"]["result"]:
            return answer["data"]["result"]
        assert time.monotonic() < deadline, f"no series for {promql} in {timeout:.0f} s"
        time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.anyio
async def test_prometheus_scrapes_the_mcp_server_and_a_finished_run(
    finished_run: Path, tmp_path: Path
) -> None:
    textfile = textfile_path(finished_run, "daily_pipeline")
    with (
        trading_server(tmp_path / "mcp") as mcp,
        _static_server(textfile.parent) as files,
        _prometheus(
            tmp_path, {"mcp": (mcp.port, "/metrics"), "pipeline": (files, f"/{textfile.name}")}
        ) as prom,
    ):
        for _ in range(2):
            await ok(mcp, "ping")
        await ok(mcp, "quotes", {"symbols": ["AAPL"]})

        for job in ("mcp", "pipeline"):  # each target scraped (each waits for its first scrape)
            _query(prom, f'up{{job="{job}"}} == 1')
        calls = _query(prom, 'ibkr_mcp_tool_calls_total{tool="ping", outcome="ok"} >= 2')
        assert float(calls[0]["value"][1]) == 2.0
        _query(prom, 'ibkr_mcp_tool_latency_seconds_count{tool="quotes"} >= 1')
        _query(prom, "ibkr_mcp_broker_connected == 1")
        [run] = _query(prom, 'ibkr_pipeline_run_success{dagster_job="daily_pipeline"}')
        assert run["value"][1] == "1" and run["metric"]["job"] == "pipeline"
        _query(prom, 'ibkr_pipeline_orders{state="queued"}')
        _query(prom, "ibkr_pipeline_net_liquidation_usd > 0")
        _query(prom, 'ibkr_pipeline_stage_duration_seconds{stage="target_weights"} > 0')

        # every dashboard panel's and alert's expression is PromQL this Prometheus accepts
        for expr in dashboard_exprs() + alert_exprs():
            promql = expr.replace("$__rate_interval", "1m").replace("$account", ".*")
            answer = httpx.get(prom + "/api/v1/query", params={"query": promql}, timeout=10)
            assert answer.json()["status"] == "success", (expr, answer.text)
