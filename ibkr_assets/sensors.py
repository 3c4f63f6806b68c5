"""Sensors: alerts on asset-check failures and run failures."""

from __future__ import annotations

import dagster as dg

SENSORS: list[dg.SensorDefinition] = []
