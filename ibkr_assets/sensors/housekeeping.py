"""The housekeeping sensor: under the daemon (``make dev``, ``dagster-daemon run``), the runs and
staging payloads past their retention are deleted once an hour, as ``ibkr-agent run`` does
after each run (:mod:`ibkr_assets.housekeeping`), so an instance whose runs all come from the
schedule and the UI does not grow without bound either. It launches nothing: each tick says what
it deleted (the tick's skip reason)."""

from __future__ import annotations

import dagster as dg

from ibkr_assets.housekeeping import housekeep_as_configured
from ibkr_assets.settings import load_settings

#: Seconds between two housekeeping passes (a modelling choice: retention is counted in days).
HOUSEKEEPING_INTERVAL_S = 3600


@dg.sensor(
    minimum_interval_seconds=HOUSEKEEPING_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="deletes the runs older than IBKR_RETENTION_DAYS and the staging payloads older "
    "than IBKR_STAGING_RETENTION_DAYS (ibkr_assets/housekeeping.py); launches nothing",
)
def housekeeping(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    """Delete what is past its retention on this instance and data root; say what."""
    settings = load_settings().checked("broker", "run", "promotion")
    done = housekeep_as_configured(context.instance, settings)
    return dg.SkipReason(done.summary() or "nothing past its retention")
