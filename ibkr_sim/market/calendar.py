"""The simulated market's calendar: NYSE sessions from 2019-01-02 to 2028-12-29.

Sessions, opens and closes (early closes included) come from ``exchange_calendars``' XNYS
calendar. Inside the package an instant is an ``int`` of UTC nanoseconds (:func:`to_ns`) and a
session is its row ``j`` in :func:`schedule`, the row of the daily panel that holds its prices.
:func:`when` places an instant relative to the sessions: during session ``j``, before its open
(same New York date, or before the first session) or after the close of session ``i``.
"""

from __future__ import annotations

import bisect
import functools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import numpy as np
import pandas as pd

from ibkr_spec.errors import HISTORICAL_DATA_ERROR, NO_MARKET_DATA, IBError

NEW_YORK = ZoneInfo("America/New_York")
FIRST_SESSION = date(2019, 1, 2)
LAST_SESSION = date(2028, 12, 29)


@functools.cache
def exchange_calendar() -> xcals.ExchangeCalendar:
    """NYSE (XNYS) from a month before the first session to a month after the last."""
    return xcals.get_calendar("XNYS", start="2018-12-01", end="2029-01-31")


@functools.cache
def schedule() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Panel sessions (datetime64[D]) with their open and close instants (int64 ns, UTC)."""
    sch = exchange_calendar().schedule
    sch = sch.loc[
        (sch.index >= pd.Timestamp(FIRST_SESSION)) & (sch.index <= pd.Timestamp(LAST_SESSION))
    ]
    days = sch.index.values.astype("datetime64[D]")
    opens = sch["open"].dt.tz_convert("UTC").dt.tz_localize(None).values.astype("datetime64[ns]")
    closes = sch["close"].dt.tz_convert("UTC").dt.tz_localize(None).values.astype("datetime64[ns]")
    return days, opens.astype(np.int64), closes.astype(np.int64)


@functools.cache
def close_index() -> pd.DatetimeIndex:
    """The UTC close of every panel session, the index of daily bars (sliced per request)."""
    return pd.DatetimeIndex(pd.to_datetime(schedule()[2], utc=True), name="time")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_ns(at: datetime) -> int:
    """UTC nanoseconds of a timezone-aware instant; ``ValueError`` for a naive one."""
    if at.tzinfo is None:
        raise ValueError(f"timestamp {at!r} must be timezone-aware (UTC)")
    if isinstance(at, pd.Timestamp):  # may hold nanoseconds
        return int(at.tz_convert("UTC").value)
    # a datetime holds whole microseconds: exact, and ~10x cheaper than through pd.Timestamp
    return (at - _EPOCH) // _MICROSECOND * 1000


def from_ns(ns: int | np.integer) -> datetime:
    """The UTC ``datetime`` of an instant in nanoseconds."""
    return pd.Timestamp(int(ns), tz="UTC").to_pydatetime()


def sessions(start: date, end: date) -> list[date]:
    """NYSE sessions between ``start`` and ``end`` inclusive."""
    days = exchange_calendar().sessions.values.astype("datetime64[D]")
    lo, hi = (
        np.searchsorted(days, np.datetime64(start, "D")),
        np.searchsorted(days, np.datetime64(end, "D"), "right"),
    )
    return [d.item() for d in days[lo:hi]]


def last_session(at: datetime) -> date:
    """The latest session whose close is at or before ``at``."""
    cal = exchange_calendar()
    closes = cal.schedule["close"].values.astype("datetime64[ns]").astype(np.int64)
    i = int(np.searchsorted(closes, to_ns(at), "right")) - 1
    if i < 0:
        raise IBError(NO_MARKET_DATA, f"no session closed by {at.isoformat()}")
    return cal.sessions[i].date()


def trading_hours(sec_type: str, day: date) -> list[tuple[datetime, datetime]]:
    """Regular trading hours in UTC (FX: IDEALPRO's 17:15 ET the day before to 17:00 ET)."""
    return list(_trading_hours(sec_type, day))


@functools.lru_cache(maxsize=256)
def _trading_hours(sec_type: str, day: date) -> tuple[tuple[datetime, datetime], ...]:
    """:func:`trading_hours`, worked out once per security type and day: every market-data
    request asks (the calendar's look-ups cost ~0.1 ms; 1,400 requests of a 700-stock daily
    job spent ~0.15 s of the gateway's time there, session 18)."""
    cal = exchange_calendar()
    ts = pd.Timestamp(day)
    if not cal.is_session(ts):
        return ()
    if sec_type == "CASH":
        start = datetime.combine(day - timedelta(days=1), time(17, 15), NEW_YORK)
        end = datetime.combine(day, time(17, 0), NEW_YORK)
        return ((start.astimezone(UTC), end.astimezone(UTC)),)
    opened, closed = cal.session_open(ts), cal.session_close(ts)
    return ((opened.to_pydatetime().astimezone(UTC), closed.to_pydatetime().astimezone(UTC)),)


def session_slice(start: date, end: date) -> slice:
    """The panel rows of the sessions in [start, end]."""
    days = schedule()[0]
    lo = int(np.searchsorted(days, np.datetime64(start, "D")))
    hi = int(np.searchsorted(days, np.datetime64(end, "D"), "right"))
    return slice(lo, hi)


def session_index(session: date) -> int:
    """The panel row of one session; IB's error 162 when ``session`` is not one."""
    days = schedule()[0]
    j = int(np.searchsorted(days, np.datetime64(session, "D")))
    if j >= len(days) or days[j] != np.datetime64(session, "D"):
        raise IBError(HISTORICAL_DATA_ERROR, f"{session} is not a simulated NYSE session")
    return j


@functools.cache
def _bounds() -> tuple[list[int], list[int]]:
    """:func:`schedule`'s opens and closes as Python ints, which :func:`when` bisects: numpy's
    searchsorted and scalars cost ~2 of its ~3 us hot, ~30 us inside the MCP server's quote
    (bench/mcp_latency.py, measured with time.thread_time in session 18)."""
    _, opens, closes = schedule()
    return opens.tolist(), closes.tolist()


def when(at: datetime) -> tuple[str, int, float]:
    """("open", j, minutes into session j) | ("pre", j, 0) | ("closed", i, 0) for ``at``."""
    ns = to_ns(at)
    days = schedule()[0]
    opens, closes = _bounds()
    i = bisect.bisect_right(closes, ns) - 1
    j = i + 1
    if j < len(days) and opens[j] <= ns:
        return "open", j, (ns - opens[j]) / 60e9
    if j < len(days) and (i < 0 or at.astimezone(NEW_YORK).date() == days[j].item()):
        if i < 0 and ns < opens[0] - 86_400_000_000_000:
            raise IBError(
                NO_MARKET_DATA,
                f"the simulated market starts on {FIRST_SESSION}; no data at {at.isoformat()}",
            )
        return "pre", j, 0.0
    if j >= len(days) and ns > closes[-1] + 5 * 86_400_000_000_000:
        raise IBError(
            NO_MARKET_DATA,
            f"the simulated market ends on {LAST_SESSION}; no data at {at.isoformat()}",
        )
    return "closed", i, 0.0
