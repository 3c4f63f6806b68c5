"""``run_failure_alerts``: an alert on every failed run with each failed step and its error (the
innermost exception, not Dagster's wrapper), except a run stopped only by failed blocking checks:
those checks were alerted on their own (:mod:`ibkr_assets.sensors.checks`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dagster as dg

from ibkr_assets.resources.alerts import AlertResource
from ibkr_assets.sensors.alerting import SENSOR_INTERVAL_S, deliver, run_line

#: The error Dagster raises in a step whose blocking asset check failed
#: (``dagster._core.errors.DagsterAssetCheckFailedError``).
CHECK_FAILED_ERROR = "DagsterAssetCheckFailedError"


def innermost(error: Any) -> Any:
    """The error our code raised inside Dagster's wrappers around it (a
    ``SerializableErrorInfo``, or None)."""
    while error is not None and error.cause is not None:
        error = error.cause
    return error


def root_cause(error: Any) -> str:
    """The innermost error of a failure (a ``SerializableErrorInfo``): the exception our code
    raised, not Dagster's wrapper around it, as ``Type: message``."""
    error = innermost(error)
    return error.message.strip() if error is not None else "no error recorded"


def _stopped_only_by_checks(failures: Sequence[dg.DagsterEvent]) -> bool:
    """True when every failed step failed because a blocking check failed (each such check
    has its own alert: the data-quality ones from the check sensor, the gate from the run)."""
    return bool(failures) and all(
        f.step_failure_data.error is not None
        and f.step_failure_data.error.cls_name == CHECK_FAILED_ERROR
        for f in failures
    )


@dg.run_failure_sensor(
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    monitor_all_code_locations=True,  # also the in-process runs of `ibkr-agent run` (no origin)
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def run_failure_alerts(context: dg.RunFailureSensorContext, alerts: AlertResource) -> None:
    """Alert when any run fails, naming each failed step and its error (or the run's own error
    when it failed outside any step, e.g. a resource that could not start) — except a run
    stopped only by failed blocking checks, already alerted one by one."""
    run = context.dagster_run
    failures = context.get_step_failure_events()
    if _stopped_only_by_checks(failures):
        return
    partition = run.tags.get("dagster/partition", "-")
    steps = [f"- step {f.step_key}: {root_cause(f.step_failure_data.error)}" for f in failures]
    run_error = context.failure_event.job_failure_data.error
    if not failures and run_error is not None:
        steps = [f"- error: {root_cause(run_error)}"]
    where = f" at {', '.join(f.step_key or '-' for f in failures)}" if failures else ""
    message = context.failure_event.message or "run failed"
    deliver(
        context,
        alerts,
        subject=f"Run failed: {run.job_name} [{partition}]{where}",
        body="\n".join([run_line(run, run.run_id), *steps, message]),
        severity="error",
    )


__all__ = ["innermost", "root_cause", "run_failure_alerts"]
