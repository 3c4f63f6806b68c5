"""Partitions: one per NYSE trading session, and one per week for the rolling backtest.

A trader's "day" is an NYSE session, not a calendar day: Saturdays, Sundays and exchange
holidays (Good Friday, Thanksgiving, ...) have no partition. The sessions come from
``exchange_calendars`` (calendar ``XNYS``). Dagster's ``TimeWindowPartitionsDefinition`` is a
weekday cron (``0 0 * * 1-5`` in New York) with the weekday holidays as ``exclusions``, so the
partition set is exactly the session list, backfills select sessions only, and a partition key
is the session date ``YYYY-MM-DD``.

The pipeline runs for a session at 14:00 Europe/Bucharest — 07:00 New York, or 08:00 in the
weeks when the two daylight-saving changes differ — before the open: :func:`as_of` is that
instant, and every asset keeps only data dated strictly before it — a backfill of an old session
sees the market exactly as it was that morning.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import exchange_calendars as xcals
import pandas as pd

from ibkr_assets.errors import ConfigurationError

NEW_YORK = ZoneInfo("America/New_York")
BUCHAREST = ZoneInfo("Europe/Bucharest")
#: First session with a partition.
FIRST_SESSION = "2024-01-02"
#: The local Bucharest time of the daily run, the "now" it sees (the schedule's own time).
RUN_TIME_BUCHAREST = time(14, 0)
#: How far ahead holidays are known (exchange_calendars' default horizon is about a year).
_HORIZON_DAYS = 365


@functools.lru_cache(maxsize=1)
def nyse_calendar() -> xcals.ExchangeCalendar:
    """The NYSE calendar (XNYS), loaded once."""
    return xcals.get_calendar("XNYS")


def is_session(day: date | str) -> bool:
    """True when ``day`` is an NYSE trading session."""
    return bool(nyse_calendar().is_session(pd.Timestamp(day)))


def sessions_between(start: date | str, end: date | str) -> list[date]:
    """NYSE sessions from ``start`` to ``end`` inclusive."""
    return [ts.date() for ts in nyse_calendar().sessions_in_range(start, end)]


def previous_sessions(day: date | str, count: int) -> list[date]:
    """The ``count`` sessions strictly before ``day``, oldest first."""
    cal = nyse_calendar()
    ts = pd.Timestamp(day)
    last = cal.date_to_session(ts, direction="previous")
    if last == ts:
        last = cal.previous_session(last)
    window = cal.sessions_window(last, -count)
    return [s.date() for s in window]


def weekday_holidays(start: date | str, end: date | str) -> list[date]:
    """Weekdays from ``start`` to ``end`` on which NYSE is closed."""
    days = pd.bdate_range(start, end)
    sessions = set(nyse_calendar().sessions_in_range(start, end))
    return [d.date() for d in days if d not in sessions]


def as_of(partition_key: str) -> datetime:
    """The instant (UTC) a session's run sees as "now": 14:00 Europe/Bucharest on the session
    date (07:00 New York most of the year)."""
    session = date.fromisoformat(partition_key)
    return datetime.combine(session, RUN_TIME_BUCHAREST, tzinfo=BUCHAREST).astimezone(UTC)


def latest_partition_date(now: datetime) -> date:
    """The most recent session whose run time (14:00 Bucharest) is at or before ``now``."""
    day = now.astimezone(NEW_YORK).date()
    if is_session(day) and now >= as_of(day.isoformat()):
        return day
    return previous_sessions(day, 1)[0]


def nearest_sessions(day: date) -> tuple[date | None, date | None]:
    """The NYSE sessions strictly before and after ``day`` (None beyond the calendar)."""
    cal = nyse_calendar()
    found: list[date | None] = []
    for direction, step in (("previous", -1), ("next", 1)):
        probe = pd.Timestamp(day + timedelta(days=step))
        try:
            found.append(cal.date_to_session(probe, direction=direction).date())
        except (ValueError, xcals.errors.DateOutOfBounds):
            found.append(None)
    return found[0], found[1]


def _named(day: date | None) -> str:
    return f"{day:%A} {day.isoformat()}" if day is not None else "none in the calendar"


def check_session(day: date) -> str:
    """``day``'s partition key; :class:`~ibkr_assets.errors.ConfigurationError` when ``day``
    has no partition: not an NYSE session (naming the nearest sessions before and after),
    before :data:`FIRST_SESSION`, or after the latest partition."""
    key = day.isoformat()
    first, last = FIRST_SESSION, DAILY_PARTITIONS.get_last_partition_key()
    if key < first:
        raise ConfigurationError(f"{key} is before the first session with a partition, {first}")
    try:
        session = is_session(day)
    except xcals.errors.DateOutOfBounds:  # beyond the calendar's horizon: no partition either
        session = True
    if not session:
        why = "a weekend day" if day.weekday() >= 5 else "an exchange holiday"
        before, after = nearest_sessions(day)
        raise ConfigurationError(
            f"{key} ({day:%A}) is not an NYSE session ({why}); the nearest sessions are "
            f"{_named(before)} before and {_named(after)} after"
        )
    if last is None or key > last:
        raise ConfigurationError(
            f"{key} has no partition yet: the latest is {last} (a session's partition exists "
            "from midnight New York on its day)"
        )
    return key


def _daily_partitions() -> dg.TimeWindowPartitionsDefinition:
    cal = nyse_calendar()
    last = min(cal.last_session.date(), date.today() + timedelta(days=_HORIZON_DAYS))
    holidays = weekday_holidays(FIRST_SESSION, last)
    return dg.TimeWindowPartitionsDefinition(
        start=FIRST_SESSION,
        fmt="%Y-%m-%d",
        cron_schedule="0 0 * * 1-5",
        timezone="America/New_York",
        # today's session exists from midnight New York, so the 14:00 Bucharest run can run it
        end_offset=1,
        exclusions=[datetime.combine(d, time(0), tzinfo=NEW_YORK) for d in holidays],
    )


#: One partition per NYSE session, key ``YYYY-MM-DD``.
DAILY_PARTITIONS = _daily_partitions()
#: One partition per week (Monday start, key = that Monday) for the weekly rolling backtest;
#: the current week's partition exists from Monday, so Saturday's run can replay it.
WEEKLY_PARTITIONS = dg.WeeklyPartitionsDefinition(
    start_date=FIRST_SESSION, timezone="America/New_York", day_offset=1, end_offset=1
)


def week_start(day: date) -> date:
    """The Monday of ``day``'s week (a weekly partition key)."""
    return day - timedelta(days=day.weekday())
