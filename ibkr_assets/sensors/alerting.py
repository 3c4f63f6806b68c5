"""What every alert sensor shares: how often the daemon evaluates it, delivering an alert
without stopping the sensor, and the lines naming a run and an event's metadata."""

from __future__ import annotations

import dagster as dg

from ibkr_assets.jobs import ACCOUNT_TAG, BACKFILL_TAG, TRIGGER_TAG
from ibkr_assets.resources.alerts import AlertDeliveryError, AlertResource
from ibkr_assets.settings import load_settings

#: Seconds between two evaluations of each alert sensor by the daemon, at least.
SENSOR_INTERVAL_S = load_settings().alerts.sensor_interval_seconds


def deliver(context: dg.SensorEvaluationContext, alerts: AlertResource, **alert) -> None:
    """Send ``alert``; a delivery that fails is logged on the sensor, which goes on."""
    try:
        alerts.send(**alert)
    except AlertDeliveryError as exc:  # already logged by the resource; keep the sensor alive
        context.log.error(str(exc))


def metadata_text(metadata: dict) -> str:
    """The plain values of an event's metadata, one ``- key: value`` line each."""
    lines = []
    for key, value in metadata.items():
        raw = getattr(value, "value", value)
        if isinstance(raw, str | int | float | bool):
            lines.append(f"- {key}: {raw}")
    return "\n".join(lines)


def run_line(run: dg.DagsterRun | None, run_id: str) -> str:
    """``run <id> of <job>, trigger cli, account DU123`` — which run, and who started it."""
    if run is None:
        return f"run {run_id}"
    trigger = run.tags.get(TRIGGER_TAG, "ui (no trigger tag)")
    if BACKFILL_TAG in run.tags:
        trigger = f"backfill {run.tags[BACKFILL_TAG]}"
    account = run.tags.get(ACCOUNT_TAG, "-")
    return f"run {run_id} of {run.job_name}, trigger {trigger}, account {account}"


__all__ = ["SENSOR_INTERVAL_S", "deliver", "metadata_text", "run_line"]
