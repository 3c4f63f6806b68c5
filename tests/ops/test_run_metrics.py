"""A finished run's metrics (ibkr_assets/metrics.py): written atomically to its textfile, pushed
to a Pushgateway (a loopback receiver here) grouped by Dagster job and account, the file kept
when the Pushgateway cannot be reached; the run's figures read from its event log."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ibkr_assets.metrics import record_run, run_figures, textfile_path

pytestmark = pytest.mark.ops


@dg.op
def fetch() -> int:
    return 3


@dg.op
def fail(rows: int) -> None:
    raise ValueError(f"{rows} rows are not enough")


@dg.job
def tiny_job() -> None:
    fetch()


@dg.job
def failing_job() -> None:
    fail(fetch())


@contextmanager
def pushgateway() -> Iterator[tuple[str, list[tuple[str, str, str]]]]:
    """A loopback stand-in for a Pushgateway: records (method, path, body) of each push."""
    pushes: list[tuple[str, str, str]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            pushes.append((self.command, self.path, body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", pushes
    finally:
        server.shutdown()
        server.server_close()


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_run_is_written_and_pushed_by_job_and_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    run = tiny_job.execute_in_process(instance=instance, tags={"ibkr/account": "DU1"})
    with pushgateway() as (url, pushes):
        monkeypatch.setenv("IBKR_PUSHGATEWAY_URL", url + "/")
        path = record_run(instance, run.run_id, tmp_path)
    assert path == textfile_path(tmp_path, "tiny_job")
    assert path == tmp_path / "metrics" / "ibkr_agent_tiny_job.prom"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    written = _samples(path.read_text())
    labels = {"dagster_job": "tiny_job", "account": "DU1"}
    assert written[("ibkr_pipeline_run_success", frozenset(labels.items()))] == 1.0
    stage = frozenset({**labels, "stage": "fetch"}.items())
    assert written[("ibkr_pipeline_stage_duration_seconds", stage)] >= 0.0
    [(method, where, body)] = pushes
    assert method == "PUT"
    assert where == "/metrics/job/ibkr_agent/account/DU1/dagster_job/tiny_job"
    assert _samples(body) == written


def test_a_failed_run_is_recorded_and_an_unreachable_pushgateway_named(tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    run = failing_job.execute_in_process(instance=instance, raise_on_error=False)
    figures = run_figures(instance, run.run_id)
    assert not figures.success and figures.account == "none"
    assert set(figures.stage_seconds) == {"fetch", "fail"}
    assert figures.deadline() is None  # not the daily job
    with pytest.raises(OSError):
        record_run(instance, run.run_id, tmp_path, pushgateway="http://127.0.0.1:9")
    written = _samples(textfile_path(tmp_path, "failing_job").read_text())
    labels = frozenset({"dagster_job": "failing_job", "account": "none"}.items())
    assert written[("ibkr_pipeline_run_success", labels)] == 0.0


def test_a_malformed_pushgateway_url_is_named_after_the_file_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    run = tiny_job.execute_in_process(instance=instance)
    monkeypatch.setenv("IBKR_PUSHGATEWAY_URL", "pushgateway:9091")
    with pytest.raises(ValueError, match="IBKR_PUSHGATEWAY_URL must be an http"):
        record_run(instance, run.run_id, tmp_path)
    assert textfile_path(tmp_path, "tiny_job").exists()


def test_an_unknown_run_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no run nope"):
        record_run(dg.DagsterInstance.ephemeral(), "nope", tmp_path)


def test_the_deadline_is_1430_bucharest_of_the_next_session() -> None:
    from ibkr_assets.metrics import RunFigures

    def deadline(partition: str) -> float | None:
        return RunFigures("r", "daily_pipeline", "DU1", partition, True, 0.0, 0.0).deadline()

    # Friday 2024-11-29 -> Monday 2024-12-02 14:30 EET (UTC+2) = 12:30 UTC
    assert deadline("2024-11-29") == 1733142600.0
    # Wednesday 2024-07-03 -> Friday 2024-07-05 (the 4th is a holiday), 14:30 EEST = 11:30 UTC
    assert deadline("2024-07-03") == 1720179000.0


def test_orders_exposure_var_and_missing_data_are_read_from_what_the_run_materialised(
    tmp_path: Path,
) -> None:
    """Assets named and described as the daily job's (same metadata keys, same report files)."""
    risk = tmp_path / "risk_report.json"
    risk.write_text(
        json.dumps(
            {
                "net_liquidation": 1_000_000.0,
                "checks": [
                    {"check": "var_historical", "value": 0.021},
                    {"check": "var_parametric", "value": 0.019},
                    {"check": "liquidity", "value": 0.5},
                ],
            }
        )
    )
    sent = tmp_path / "submitted_orders.json"
    statuses = ["Filled", "Filled", "Submitted", "Inactive"]
    sent.write_text(json.dumps({"orders": [{"status": s} for s in statuses]}))

    @dg.asset
    def daily_bars() -> dg.MaterializeResult:
        line = "daily_bars 2024-06-03: 2 could not be fetched (MSFT, KO: [IB 162] no data)"
        return dg.MaterializeResult(metadata={"dagster/row_count": 1200, "missing_data": line})

    @dg.asset
    def overlaid_targets() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"gross": 0.95})

    @dg.asset
    def risk_report() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(str(risk))})

    @dg.asset
    def order_ticket() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"orders": 5})

    @dg.asset
    def submitted_orders() -> dg.MaterializeResult:
        meta = {"placed": 4, "rejected": 1, "refused": 0, "path": str(sent)}
        return dg.MaterializeResult(metadata=meta)

    instance = dg.DagsterInstance.ephemeral()
    assets = [daily_bars, overlaid_targets, risk_report, order_ticket, submitted_orders]
    result = dg.materialize(assets, instance=instance, tags={"ibkr/account": "DU1"})
    figures = run_figures(instance, result.run_id)
    assert figures.rows == {"daily_bars": 1200}
    assert figures.missing == {"daily_bars": 2}
    assert figures.orders == {
        "queued": 5,
        "submitted": 4,
        "rejected": 1,
        "refused": 0,
        "filled": 2,
    }
    assert figures.gross_exposure == 0.95
    assert figures.var == {"historical": 0.021, "parametric": 0.019}
    assert figures.net_liquidation == 1_000_000.0


def test_the_sensors_record_runs_the_daemon_launched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ibkr_assets.sensors.metrics import run_metrics_failed, run_metrics_succeeded

    monkeypatch.setenv("IBKR_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("IBKR_PUSHGATEWAY_URL", raising=False)
    instance = dg.DagsterInstance.ephemeral()
    good = tiny_job.execute_in_process(instance=instance)
    bad = failing_job.execute_in_process(instance=instance, raise_on_error=False)
    run_metrics_succeeded(
        dg.build_run_status_sensor_context(
            sensor_name="run_metrics_succeeded",
            dagster_event=good.get_run_success_event(),
            dagster_instance=instance,
            dagster_run=good.dagster_run,
        )
    )
    run_metrics_failed(
        dg.build_run_status_sensor_context(
            sensor_name="run_metrics_failed",
            dagster_event=bad.get_run_failure_event(),
            dagster_instance=instance,
            dagster_run=bad.dagster_run,
        ).for_run_failure()
    )
    labels = {"account": "none"}
    for job, success in (("tiny_job", 1.0), ("failing_job", 0.0)):
        written = _samples(textfile_path(tmp_path, job).read_text())
        key = frozenset({**labels, "dagster_job": job}.items())
        assert written[("ibkr_pipeline_run_success", key)] == success
