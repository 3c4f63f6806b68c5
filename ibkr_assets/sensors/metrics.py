"""The ``run_metrics`` sensors: under the daemon, each finished run's metrics are written to its
Prometheus textfile (and pushed to the Pushgateway when ``IBKR_PUSHGATEWAY_URL`` is set), as
``ibkr-agent run`` does after its own run (:mod:`ibkr_assets.metrics`). One sensor for runs that
succeeded, one for runs that failed (a run-status sensor watches one status); both launch
nothing. A run ``ibkr-agent run`` already recorded is recorded again with the same figures."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from ibkr_assets.metrics import record_run
from ibkr_assets.sensors.alerting import SENSOR_INTERVAL_S
from ibkr_assets.settings import load_settings


def _record(context: dg.RunStatusSensorContext) -> None:
    """Record the metrics of the run the sensor saw finish; a Pushgateway that cannot be
    reached (the textfile is written first) or a malformed IBKR_PUSHGATEWAY_URL is logged and
    the sensor carries on."""
    data_root = Path(load_settings().checked("broker").broker.data_dir)
    try:
        path = record_run(context.instance, context.dagster_run.run_id, data_root)
    except (OSError, ValueError) as exc:
        context.log.warning(f"run metrics of {context.dagster_run.run_id}: {exc}")
        return
    context.log.info(f"run metrics of {context.dagster_run.run_id} written to {path}")


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    monitor_all_code_locations=True,  # also the in-process runs of `ibkr-agent run` (no origin)
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="writes each succeeded run's metrics to <data root>/metrics (Prometheus "
    "textfile) and pushes them to IBKR_PUSHGATEWAY_URL when set",
)
def run_metrics_succeeded(context: dg.RunStatusSensorContext) -> None:
    """Record the metrics of a run that succeeded."""
    _record(context)


@dg.run_failure_sensor(
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    monitor_all_code_locations=True,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="writes each failed run's metrics to <data root>/metrics (Prometheus textfile) "
    "and pushes them to IBKR_PUSHGATEWAY_URL when set",
)
def run_metrics_failed(context: dg.RunFailureSensorContext) -> None:
    """Record the metrics of a run that failed."""
    _record(context)


__all__ = ["run_metrics_failed", "run_metrics_succeeded"]
