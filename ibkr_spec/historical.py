"""IB's grammar for historical-data requests: duration strings and bar sizes.

``reqHistoricalData`` takes a *duration* (``"60 S"``, ``"30 D"``, ``"2 W"``, ``"6 M"``, ``"1 Y"``:
an integer, a space, one unit letter) that reaches back from ``endDateTime``, and a *bar size*
spelled exactly as IB lists it (``"1 secs"``, ``"5 secs"`` ... ``"1 min"``, ``"5 mins"`` ...
``"1 hour"``, ``"4 hours"``, ``"1 day"``, ``"1 week"``, ``"1 month"``). A malformed string is
IB error 321 ("Error validating request"); here it raises :class:`ibkr_spec.errors.SpecError`,
which is both an ``IBError(321)`` and a ``ValueError`` and names the offending text.

The backends (the in-process broker, the ``tws`` backend before it sends a request), the MCP
tools and the simulated TWS-protocol gateway all parse requests through this module, so they
accept and reject exactly the same strings. Reference: IB TWS API,
"Historical Bar Data" (valid duration units and bar sizes).

How far back one request may reach depends on the bar size (:func:`check_span`): IB's "Step Sizes"
table (TWS API, Historical Data Limitations, ``#hd_step_sizes``) lists, per duration, the bar
sizes a request of that length may use, so that "only a few thousand bars are returned at a time";
its longest row is 1 Y. For bars of a day or longer, which IB serves further back than a year, the
older API guide's rule of at most 2000 bars per request bounds the duration instead.

**Bars of a day or longer count trading sessions, not calendar time** (:func:`session_window`):
``"N D"`` answers the last N sessions, and ``"N W"`` / ``"N M"`` / ``"N Y"`` the sessions after the
same date N weeks / months / years before the last one; while a session is open its bar (the day
so far) is the last one. So ``"2 D"`` asked on a Monday at 11:00 New York answers Friday's bar and
Monday's bar so far, and on a Monday before the open Thursday's and Friday's; counted as 48
calendar hours it would reach back only to Saturday and find no bar at all (error 162 "HMDS query
returned no data"), which is what IB does not answer. Intraday bar sizes keep
:func:`start_of`'s calendar reach.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from ibkr_spec.errors import SpecError

DURATION_UNITS = {"S": "seconds", "D": "days", "W": "weeks", "M": "months", "Y": "years"}

#: Bar sizes IB accepts, in seconds (month = 0: calendar, built from daily bars).
BAR_SIZES: dict[str, int] = {
    "1 secs": 1,
    "5 secs": 5,
    "10 secs": 10,
    "15 secs": 15,
    "30 secs": 30,
    "1 min": 60,
    "2 mins": 120,
    "3 mins": 180,
    "5 mins": 300,
    "10 mins": 600,
    "15 mins": 900,
    "20 mins": 1200,
    "30 mins": 1800,
    "1 hour": 3600,
    "2 hours": 7200,
    "3 hours": 10800,
    "4 hours": 14400,
    "8 hours": 28800,
    "1 day": 86400,
    "1 week": 7 * 86400,
    "1 month": 0,
}
_UNIT_ALIASES = {
    "sec": "secs",
    "secs": "secs",
    "min": "mins",
    "mins": "mins",
    "hour": "hours",
    "hours": "hours",
    "day": "day",
    "days": "day",
    "week": "week",
    "weeks": "week",
    "month": "month",
    "months": "month",
}
_DURATION_RE = re.compile(r"^\s*(\d+)\s+([SDWMY])\s*$")
_BAR_RE = re.compile(r"^\s*(\d+)\s+([A-Za-z]+)\s*$")


@dataclass(frozen=True)
class Duration:
    """A request's look-back, e.g. ``Duration(6, "M")`` for ``"6 M"``."""

    count: int
    unit: str  # one of "S", "D", "W", "M", "Y"

    @property
    def text(self) -> str:
        """IB's spelling, e.g. ``"6 M"``."""
        return f"{self.count} {self.unit}"

    def offset(self) -> pd.DateOffset:
        """The calendar offset to step back from the end time."""
        return pd.DateOffset(**{DURATION_UNITS[self.unit]: self.count})


@dataclass(frozen=True)
class BarSize:
    """One bar size: ``seconds`` for fixed bars, or a calendar ``day``/``week``/``month`` bar."""

    text: str  # IB's spelling, e.g. "5 mins"
    seconds: int  # 0 for "1 month"

    @property
    def is_daily(self) -> bool:
        """True for bars built from whole sessions (1 day, 1 week, 1 month)."""
        return self.seconds == 0 or self.seconds >= 86400

    @property
    def minutes(self) -> int:
        """Intraday bar length in whole minutes (sub-minute bars return 0)."""
        if self.is_daily:
            raise ValueError(f"{self.text!r} is not an intraday bar size")
        return self.seconds // 60

    @property
    def pandas_rule(self) -> str:
        """The pandas resample rule for this bar (``"5min"``, ``"1h"``, ``"W-FRI"``, ``"MS"``)."""
        if self.text == "1 month":
            return "MS"
        if self.text == "1 week":
            return "W-FRI"
        if self.text == "1 day":
            return "D"
        return f"{self.seconds}s"


def parse_duration(text: str) -> Duration:
    """``"30 D"`` -> ``Duration(30, "D")``; :class:`SpecError` (321) for anything else."""
    m = _DURATION_RE.match(text) if isinstance(text, str) else None
    if m is None or int(m.group(1)) <= 0:
        raise SpecError(
            f"Invalid duration {text!r}: expected '<integer> <unit>' with unit S, D, W, M or Y, "
            "e.g. '30 D' or '1 Y'"
        )
    return Duration(int(m.group(1)), m.group(2))


def parse_bar_size(text: str) -> BarSize:
    """``"5 mins"`` -> ``BarSize("5 mins", 300)``; :class:`SpecError` (321) for a bad size.

    IB's own spellings are accepted, plus the obvious singular/plural slips (``"1 mins"``,
    ``"5 min"``, ``"1 days"``) which are normalised to IB's spelling.
    """
    m = _BAR_RE.match(text) if isinstance(text, str) else None
    if m is not None:
        count, unit = int(m.group(1)), _UNIT_ALIASES.get(m.group(2).lower())
        if unit is not None:
            if count == 1 and unit in ("mins", "hours"):
                unit = unit[:-1]
            canonical = f"{count} {unit}"
            if canonical in BAR_SIZES:
                return BarSize(canonical, BAR_SIZES[canonical])
    raise SpecError(f"Invalid bar size {text!r}: IB accepts {', '.join(BAR_SIZES)}")


#: Average calendar lengths, in seconds, to compare durations written in different units.
_UNIT_SECONDS = {"S": 1.0, "D": 86_400.0, "W": 7 * 86_400.0, "Y": 365.25 * 86_400.0}
_UNIT_SECONDS["M"] = _UNIT_SECONDS["Y"] / 12

#: The longest duration of one request, per bar size. Intraday sizes from IB's Step Sizes table
#: (the longest row that allows the size: 1800 S up to "1 secs", 1 D up to "1 min", 1 W up to
#: "20 mins", 1 M up to "8 hours"); daily and longer bars from the 2000-bars-per-request rule
#: (7 Y of sessions = ~1,764 bars, 38 Y of weeks = ~1,983, 166 Y of months = 1,992).
MAX_DURATION: dict[str, Duration] = {
    "1 secs": Duration(1800, "S"),
    "5 secs": Duration(3600, "S"),
    "10 secs": Duration(14400, "S"),
    "15 secs": Duration(14400, "S"),
    "30 secs": Duration(28800, "S"),
    "1 min": Duration(1, "D"),
    "2 mins": Duration(2, "D"),
    **dict.fromkeys(["3 mins", "5 mins", "10 mins", "15 mins", "20 mins"], Duration(1, "W")),
    **dict.fromkeys(
        ["30 mins", "1 hour", "2 hours", "3 hours", "4 hours", "8 hours"], Duration(1, "M")
    ),
    "1 day": Duration(7, "Y"),
    "1 week": Duration(38, "Y"),
    "1 month": Duration(166, "Y"),
}


def span_seconds(duration: Duration) -> float:
    """A duration's length in seconds, months and years at their average calendar length."""
    return duration.count * _UNIT_SECONDS[duration.unit]


def check_span(duration: str, bar_size: str) -> tuple[Duration, BarSize]:
    """Parse a request's duration and bar size and check the duration against
    :data:`MAX_DURATION` for that bar size; :class:`SpecError` naming the limit otherwise."""
    span, size = parse_duration(duration), parse_bar_size(bar_size)
    limit = MAX_DURATION[size.text]
    if span_seconds(span) > span_seconds(limit):
        rule = "2000 bars per request" if size.is_daily else "historical-data step sizes"
        raise SpecError(
            f"Duration {span.text!r} is too long for {size.text!r} bars: at most {limit.text} "
            f"per request (IB's {rule}); ask for a shorter duration or a larger bar size"
        )
    return span, size


def start_of(end: datetime, duration: Duration | str) -> datetime:
    """The start of a request reaching back ``duration`` from ``end`` (same timezone as ``end``),
    in calendar time: the reach of intraday bars. Bars of a day or longer count sessions
    instead (:func:`session_window`)."""
    span = parse_duration(duration) if isinstance(duration, str) else duration
    if span.unit == "S":
        return end - timedelta(seconds=span.count)
    if span.unit == "D":
        return end - timedelta(days=span.count)
    if span.unit == "W":
        return end - timedelta(weeks=span.count)
    return (pd.Timestamp(end) - span.offset()).to_pydatetime()


@dataclass(frozen=True)
class SessionWindow:
    """The sessions whose daily bars answer a request: rows ``first`` .. ``last`` (inclusive) of
    the calendar passed to :func:`session_window`; ``in_progress`` when the last one is still open
    at the end time (its bar is the day so far). Empty when ``last < first``."""

    first: int
    last: int
    in_progress: bool

    @property
    def empty(self) -> bool:
        return self.last < self.first


def session_window(
    end: datetime,
    duration: Duration | str,
    days: np.ndarray,
    opens: np.ndarray,
    closes: np.ndarray,
) -> SessionWindow:
    """The sessions a request for bars of a day or longer reaching back ``duration`` from ``end``
    answers, counted in trading sessions as IB counts them (see the module docstring).

    ``days`` are the calendar's sessions (``datetime64[D]``, ascending), ``opens`` / ``closes``
    their open and close instants as int64 nanoseconds UTC; ``end`` must be timezone-aware.
    The last session is the one open at ``end`` (open <= end < close) or else the latest closed
    by ``end``. ``"N S"`` reaches back N seconds from ``end`` (sessions closing after that).
    """
    span = parse_duration(duration) if isinstance(duration, str) else duration
    if end.tzinfo is None:
        raise ValueError(f"end {end!r} must be timezone-aware")
    end_ns = int(pd.Timestamp(end).tz_convert("UTC").value)
    started = int(np.searchsorted(opens, end_ns, "right")) - 1  # latest session opened by end
    in_progress = started >= 0 and end_ns < int(closes[started])
    last = started if in_progress else int(np.searchsorted(closes, end_ns, "right")) - 1
    if last < 0:
        return SessionWindow(0, -1, False)
    if span.unit == "D":
        first = last - span.count + 1
    elif span.unit == "S":
        first = int(np.searchsorted(closes, end_ns - span.count * 1_000_000_000, "right"))
    else:
        cut = pd.Timestamp(days[last]) - span.offset()
        first = int(np.searchsorted(days, np.datetime64(cut.date(), "D"), "right"))
    return SessionWindow(max(first, 0), last, in_progress)


__all__ = [
    "BAR_SIZES",
    "MAX_DURATION",
    "BarSize",
    "Duration",
    "SessionWindow",
    "check_span",
    "parse_bar_size",
    "parse_duration",
    "session_window",
    "span_seconds",
    "start_of",
]
