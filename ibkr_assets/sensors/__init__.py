"""Sensors: alerts on failed asset checks (:mod:`.checks`), failed runs (:mod:`.runs`), and the
orders of each session (:mod:`.orders`); what they share is in :mod:`.alerting`. The
:mod:`.housekeeping` sensor deletes the runs and staging payloads past their retention; the
:mod:`.metrics` sensors write each finished run's Prometheus metrics.

Every run on the instance is seen, however it was started: from the UI, a schedule, a backfill,
``ibkr-agent run`` or the MCP launcher (the last two execute in-process, with no code-location
origin; the sensors do not filter on it).

Each sensor keeps a cursor (the last storage id it read), so an alert goes out once. The daemon
evaluates each sensor at most every ``IBKR_ALERT_SENSOR_INTERVAL_SECONDS`` seconds (60).
"""

from __future__ import annotations

import dagster as dg

from ibkr_assets.sensors.checks import asset_check_failure_alerts
from ibkr_assets.sensors.housekeeping import housekeeping
from ibkr_assets.sensors.metrics import run_metrics_failed, run_metrics_succeeded
from ibkr_assets.sensors.orders import order_summary_alerts
from ibkr_assets.sensors.runs import innermost, root_cause, run_failure_alerts

SENSORS: list[dg.SensorDefinition] = [
    asset_check_failure_alerts,
    run_failure_alerts,
    order_summary_alerts,
    housekeeping,
    run_metrics_succeeded,
    run_metrics_failed,
]

__all__ = [
    "SENSORS",
    "asset_check_failure_alerts",
    "housekeeping",
    "innermost",
    "order_summary_alerts",
    "root_cause",
    "run_failure_alerts",
    "run_metrics_failed",
    "run_metrics_succeeded",
]
