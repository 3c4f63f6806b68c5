"""Exchange time helpers shared by the backends: session closes and IB's trading-hours strings."""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")


@functools.lru_cache(maxsize=4096)
def session_close_utc(
    session: date, tz: ZoneInfo = NEW_YORK, close: time = time(16, 0)
) -> datetime:
    """The UTC instant a daily bar is stamped with: the session's regular close (16:00 New York)."""
    return datetime.combine(session, close, tzinfo=tz).astimezone(UTC)


def parse_ib_hours(text: str, tz_name: str) -> list[tuple[datetime, datetime]]:
    """Parse IB's ``tradingHours`` / ``liquidHours`` string into UTC (start, end) windows.

    IB writes ``20261120:0930-20261120:1600;20261121:CLOSED`` in the contract's ``timeZoneId``;
    closed days are skipped.
    """
    tz = ZoneInfo(tz_name or "America/New_York")
    windows: list[tuple[datetime, datetime]] = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        if part.endswith("CLOSED") or "-" not in part:
            continue
        start_s, end_s = part.split("-", 1)
        start = datetime.strptime(start_s, "%Y%m%d:%H%M").replace(tzinfo=tz)
        end = datetime.strptime(end_s, "%Y%m%d:%H%M").replace(tzinfo=tz)
        windows.append((start.astimezone(UTC), end.astimezone(UTC)))
    return windows
