"""The pipeline's per-run metrics, for Prometheus: read from what a finished run materialised.

A run is a batch job, so nothing is scraped while it runs: when it finishes (``ibkr-agent run``
after its run, the ``run_metrics`` sensor for the runs the daemon launches) :func:`record_run`
reads the run's event log — step timings, materialisation metadata, asset-check evaluations —
and the reports it wrote (the risk report, the submitted orders), then

* always writes them in Prometheus' text format to ``<data root>/metrics/ibkr_agent_<job>.prom``
  (atomically: a temporary file renamed over the old one), for node-exporter's textfile
  collector (``--collector.textfile.directory=<data root>/metrics``); one file per Dagster job,
  holding its latest finished run;
* pushes them to a Pushgateway when ``IBKR_PUSHGATEWAY_URL`` is set (``http://host:9091``),
  grouped by Dagster job and account, so each push replaces that job's previous run.

Series (labels ``dagster_job`` and ``account`` on each; ``job`` is left to Prometheus):

* ``ibkr_pipeline_run_success`` 1/0 (Dagster's run status),
  ``ibkr_pipeline_run_finished_timestamp_seconds``, ``ibkr_pipeline_run_duration_seconds``,
  ``ibkr_pipeline_run_info{run_id, partition}`` 1;
* ``ibkr_pipeline_next_run_deadline_timestamp_seconds``: 14:30 Europe/Bucharest of the NYSE
  session after the run's partition (daily job): Prometheus alerts when ``time()`` passes it
  before another run moved it on (ops/alerts.yml, "no run by 14:30 Bucharest");
* ``ibkr_pipeline_stage_duration_seconds{stage}``: each step, start to end;
* ``ibkr_pipeline_rows{asset}``: rows each asset materialised (``dagster/row_count``);
* ``ibkr_pipeline_missing_data{asset}``: items (symbols, gauges, scanners) an ingest asset could not
  fetch (its ``missing_data`` line: "N could not be fetched");
* ``ibkr_pipeline_check_passed{asset, check}`` 1/0 and ``ibkr_pipeline_checks{outcome}``;
* ``ibkr_pipeline_orders{state}``: ``queued`` (on the order ticket), ``submitted`` (placed at IB
  by this run), ``filled`` (IB status Filled), ``rejected`` (by IB), ``refused`` (by the order
  guard); 0 when the run sent nothing (auto-submit off);
* ``ibkr_pipeline_gross_exposure_ratio`` (the overlaid targets' gross weight, fraction of net
  liquidation), ``ibkr_pipeline_var_ratio{method="historical|parametric"}`` (1-day VaR at the
  compliance confidence, fraction of net liquidation), ``ibkr_pipeline_net_liquidation_usd``.

A figure the run did not produce (a failed step, a job without that asset) is left out, never 0.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile

from ibkr_assets.jobs import ACCOUNT_TAG, DAILY_JOB_NAME
from ibkr_assets.partitions import BUCHAREST, nyse_calendar
from ibkr_assets.settings import load_settings

log = logging.getLogger(__name__)

#: The Prometheus ``job`` the Pushgateway groups the pipeline's pushes under.
PUSH_JOB = "ibkr_agent"
#: Bucharest time by which each NYSE session's daily run must have finished (it starts at 14:00).
RUN_DEADLINE_BUCHAREST = time(14, 30)
#: An ingest asset's missing-data line: "<asset> <day>: N could not be fetched (...)".
_MISSING = re.compile(r": (\d+) could not be fetched")
_PARTITION_TAG = "dagster/partition"


@dataclass
class RunFigures:
    """What one finished run produced, as numbers (units in each field's comment)."""

    run_id: str
    job: str
    account: str
    partition: str
    success: bool
    finished: float  # epoch seconds
    duration_s: float
    stage_seconds: dict[str, float] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)
    checks: dict[tuple[str, str], bool] = field(default_factory=dict)  # (asset, check)
    orders: dict[str, int] = field(default_factory=dict)
    gross_exposure: float | None = None  # fraction of net liquidation
    var: dict[str, float] = field(default_factory=dict)  # method -> fraction of NAV
    net_liquidation: float | None = None  # USD

    def deadline(self) -> float | None:
        """14:30 Bucharest of the NYSE session after the partition, epoch seconds (None for a
        run of another job than the daily one, or without a partition)."""
        if self.job != DAILY_JOB_NAME:
            return None
        try:
            day = date.fromisoformat(self.partition)
        except ValueError:
            return None
        calendar = nyse_calendar()
        after = calendar.date_to_session(day + timedelta(days=1), direction="next").date()
        return datetime.combine(after, RUN_DEADLINE_BUCHAREST, BUCHAREST).timestamp()


def _value(metadata: dict[str, Any], key: str) -> Any:
    """A metadata entry's plain value (None when absent)."""
    entry = metadata.get(key)
    return getattr(entry, "value", entry)


def run_figures(instance: dg.DagsterInstance, run_id: str) -> RunFigures:
    """The figures of the finished run ``run_id``, from its event log and the reports it wrote.

    Raises ValueError when the instance has no such run."""
    record = instance.get_run_record_by_id(run_id)
    if record is None:
        raise ValueError(f"no run {run_id} on the Dagster instance {instance.root_directory}")
    run = record.dagster_run
    start = record.start_time or record.create_timestamp.timestamp()
    end = record.end_time or datetime.now().timestamp()
    figures = RunFigures(
        run_id=run_id,
        job=run.job_name,
        account=run.tags.get(ACCOUNT_TAG) or "none",
        partition=run.tags.get(_PARTITION_TAG, ""),
        success=run.status == dg.DagsterRunStatus.SUCCESS,
        finished=end,
        duration_s=max(0.0, end - start),
    )
    started: dict[str, float] = {}
    paths: dict[str, str] = {}
    kinds = dg.DagsterEventType
    for rec in instance.all_logs(run_id):
        event = rec.dagster_event
        if event is None:
            continue
        kind = event.event_type
        if kind == kinds.STEP_START:
            started[str(event.step_key)] = rec.timestamp
        elif kind in (kinds.STEP_SUCCESS, kinds.STEP_FAILURE) and event.step_key in started:
            figures.stage_seconds[str(event.step_key)] = rec.timestamp - started[event.step_key]
        elif kind == kinds.ASSET_CHECK_EVALUATION:
            data = event.asset_check_evaluation_data
            figures.checks[(data.asset_key.to_user_string(), data.check_name)] = data.passed
        elif kind == kinds.ASSET_MATERIALIZATION:
            _read_materialisation(figures, event.materialization, paths)
    _read_reports(figures, paths)
    return figures


def _read_materialisation(
    figures: RunFigures, materialization: dg.AssetMaterialization, paths: dict[str, str]
) -> None:
    """Rows, missing data, orders and exposure from one materialisation's metadata; the path of
    a report to read afterwards in ``paths``."""
    asset = materialization.asset_key.to_user_string()
    meta = dict(materialization.metadata)
    rows = _value(meta, "dagster/row_count")
    if rows is not None:
        figures.rows[asset] = int(rows)
    missing = _value(meta, "missing_data")
    if missing is not None:
        found = _MISSING.search(str(missing))
        figures.missing[asset] = int(found.group(1)) if found else 1
    if asset == "order_ticket":
        figures.orders["queued"] = int(_value(meta, "orders") or 0)
    elif asset == "submitted_orders":
        figures.orders["submitted"] = int(_value(meta, "placed") or 0)
        figures.orders["rejected"] = int(_value(meta, "rejected") or 0)
        figures.orders["refused"] = int(_value(meta, "refused") or 0)
    elif asset == "overlaid_targets" and _value(meta, "gross") is not None:
        figures.gross_exposure = float(_value(meta, "gross"))
    if asset in ("risk_report", "submitted_orders") and _value(meta, "path") is not None:
        paths[asset] = str(_value(meta, "path"))


def _read_reports(figures: RunFigures, paths: dict[str, str]) -> None:
    """Net liquidation and VaR from the risk report, fills from the submitted orders' report."""
    report = _json(paths.get("risk_report"))
    if report is not None:
        figures.net_liquidation = float(report["net_liquidation"])
        for check in report.get("checks", []):
            method = {"var_historical": "historical", "var_parametric": "parametric"}.get(
                check["check"]
            )
            if method is not None and check.get("value") is not None:
                figures.var[method] = float(check["value"])
    if "queued" in figures.orders:
        for state in ("submitted", "filled", "rejected", "refused"):
            figures.orders.setdefault(state, 0)
    sent = _json(paths.get("submitted_orders"))
    if sent is not None:
        figures.orders["filled"] = sum(o.get("status") == "Filled" for o in sent["orders"])


def _json(path: str | None) -> dict[str, Any] | None:
    """A report the run wrote, or None when it wrote none or it is gone (logged)."""
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        log.warning("run metrics: could not read %s (%s); its figures are left out", path, exc)
        return None


def registry_of(figures: RunFigures) -> CollectorRegistry:
    """The run's figures as gauges in a registry of their own (see the module docstring)."""
    registry = CollectorRegistry()
    base = {"dagster_job": figures.job, "account": figures.account}

    def gauge(name: str, doc: str, value: float | None, **labels: str) -> None:
        if value is None:
            return
        names = [*base, *labels]
        metric = metrics.get(name)
        if metric is None:
            metric = metrics[name] = Gauge(name, doc, names, registry=registry)
        metric.labels(**base, **labels).set(value)

    metrics: dict[str, Gauge] = {}
    gauge("ibkr_pipeline_run_success", "1 when the run succeeded, else 0", float(figures.success))
    gauge(
        "ibkr_pipeline_run_finished_timestamp_seconds",
        "when the run finished, Unix time",
        figures.finished,
    )
    gauge("ibkr_pipeline_run_duration_seconds", "the run's wall time, seconds", figures.duration_s)
    gauge(
        "ibkr_pipeline_run_info",
        "the latest finished run: its id and partition",
        1.0,
        run_id=figures.run_id,
        partition=figures.partition,
    )
    gauge(
        "ibkr_pipeline_next_run_deadline_timestamp_seconds",
        "14:30 Europe/Bucharest of the NYSE session after this run's partition, Unix time",
        figures.deadline(),
    )
    for stage, seconds in figures.stage_seconds.items():
        doc = "a step's wall time, seconds"
        gauge("ibkr_pipeline_stage_duration_seconds", doc, seconds, stage=stage)
    for asset, rows in figures.rows.items():
        gauge("ibkr_pipeline_rows", "rows an asset materialised in the run", rows, asset=asset)
    for asset, count in figures.missing.items():
        gauge(
            "ibkr_pipeline_missing_data",
            "symbols (or gauges, scanners) an ingest asset could not fetch",
            count,
            asset=asset,
        )
    doc = "1 when the asset check passed in the run, else 0"
    for (asset, check), passed in figures.checks.items():
        gauge("ibkr_pipeline_check_passed", doc, float(passed), asset=asset, check=check)
    failed = sum(not p for p in figures.checks.values())
    doc = "asset checks evaluated in the run, by outcome"
    gauge("ibkr_pipeline_checks", doc, len(figures.checks) - failed, outcome="passed")
    gauge("ibkr_pipeline_checks", doc, failed, outcome="failed")
    doc = "orders of the run: queued (ticket), submitted, filled, rejected (IB), refused (guard)"
    for state, count in figures.orders.items():
        gauge("ibkr_pipeline_orders", doc, count, state=state)
    gauge(
        "ibkr_pipeline_gross_exposure_ratio",
        "gross weight of the overlaid targets, fraction of net liquidation",
        figures.gross_exposure,
    )
    for method, var in figures.var.items():
        gauge(
            "ibkr_pipeline_var_ratio",
            "1-day VaR of the targets at the compliance confidence, fraction of net liquidation",
            var,
            method=method,
        )
    gauge(
        "ibkr_pipeline_net_liquidation_usd",
        "the account's net liquidation value, USD",
        figures.net_liquidation,
    )
    return registry


def textfile_path(data_root: Path, job: str) -> Path:
    """``<data root>/metrics/ibkr_agent_<job>.prom``: the textfile of ``job``'s latest run."""
    return Path(data_root) / "metrics" / f"ibkr_agent_{job}.prom"


def record_run(
    instance: dg.DagsterInstance, run_id: str, data_root: Path, pushgateway: str | None = None
) -> Path:
    """Write the metrics of the finished run ``run_id`` to its textfile (atomically) and push
    them to ``pushgateway`` (default ``IBKR_PUSHGATEWAY_URL``, read now; none when unset);
    returns the file. After the file is written, a Pushgateway that cannot be reached raises
    OSError and a malformed ``IBKR_PUSHGATEWAY_URL`` ValueError naming it."""
    figures = run_figures(instance, run_id)
    registry = registry_of(figures)
    path = textfile_path(data_root, figures.job)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)  # a temporary file renamed over the old one
    url = (
        pushgateway
        if pushgateway is not None
        else load_settings().checked("metrics").metrics.pushgateway_url
    )
    if url:
        grouping = {"dagster_job": figures.job, "account": figures.account}
        push_to_gateway(url, job=PUSH_JOB, registry=registry, grouping_key=grouping, timeout=10)
    return path


__all__ = [
    "RunFigures",
    "record_run",
    "registry_of",
    "run_figures",
    "textfile_path",
]
