"""The one Dagster entry point: every asset, check, job, schedule, sensor and resource.

Each concern lives in its own module and is merged here; asset modules under ``assets/`` and
check modules under ``checks/`` are picked up automatically.
"""

from __future__ import annotations

import dagster as dg

from ibkr_assets import assets as assets_package
from ibkr_assets import checks as checks_package
from ibkr_assets.jobs import JOBS, SCHEDULES
from ibkr_assets.resources import build_resources
from ibkr_assets.sensors import SENSORS

defs = dg.Definitions(
    assets=dg.load_assets_from_package_module(assets_package),
    asset_checks=dg.load_asset_checks_from_package_module(checks_package),
    jobs=JOBS,
    schedules=SCHEDULES,
    sensors=SENSORS,
    resources=build_resources(),
)
