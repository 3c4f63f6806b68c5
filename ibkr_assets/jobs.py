"""Jobs and schedules: the daily job at 14:00 Europe/Bucharest on NYSE sessions."""

from __future__ import annotations

import dagster as dg

JOBS: list[dg.UnresolvedAssetJobDefinition] = []
SCHEDULES: list[dg.ScheduleDefinition] = []
