"""When an order can work: trading windows, the extended session, DAY-order expiry, the day's start.

IB accepts market and DAY orders outside regular hours and holds them for the next session; so
does the simulator (a DAY order placed after the close is good for the next session). Only LMT /
STP LMT orders with ``outside_rth`` work in the extended session (04:00-20:00 New York), as at IB.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pandas as pd

from ibkr_sim.exchange.orders import OrderRequest
from ibkr_sim.market import SimMarket
from ibkr_sim.market.calendar import exchange_calendar
from ibkr_sim.universe import Instrument
from ibkr_spec.errors import INVALID_REQUEST, ORDER_REJECTED, IBError

NEW_YORK = ZoneInfo("America/New_York")
#: the extended session of US stocks, New York time
EXTENDED_HOURS = (time(4, 0), time(20, 0))


def utc(at: datetime) -> datetime:
    """``at`` in UTC; IBError 321 for a naive time."""
    if at.tzinfo is None:
        raise IBError(INVALID_REQUEST, f"time {at.isoformat()} must be timezone-aware")
    return at.astimezone(UTC)


def day_start(at: datetime) -> datetime:
    """The close the snapshot's ``prev_close`` refers to: the close of the session before
    today's (open, not yet open, or closed) or, on a non-trading day, before the last one.

    Read off the simulated market's NYSE calendar (:func:`exchange_calendar`: December 2018
    to January 2029, around every session with prices), which the gateway builds before it
    listens; a calendar of its own made the first positions request, sent when a client
    connects, wait 0.2-0.4 s for it (session 18, 700-stock daily job)."""
    cal = exchange_calendar()
    local = pd.Timestamp(at.astimezone(NEW_YORK).date())
    current = local if cal.is_session(local) else cal.date_to_session(local, "previous")
    return cal.session_close(cal.previous_session(current)).to_pydatetime()


def month_start(at: datetime) -> datetime:
    """Midnight New York on the first of ``at``'s month (IB's commission tiers count from it)."""
    local = at.astimezone(NEW_YORK)
    return datetime.combine(local.date().replace(day=1), time(0), NEW_YORK)


def extended(order_type: str, outside_rth: bool) -> bool:
    """IB works only limit orders outside regular trading hours."""
    return outside_rth and order_type in ("LMT", "STP LMT")


def windows(
    market: SimMarket, inst: Instrument, day: date, extended: bool
) -> list[tuple[datetime, datetime]]:
    """The (start, end) UTC windows in which an order on ``inst`` can work on ``day``."""
    hours = market.trading_hours(inst.conid, day)
    if extended and hours and inst.sec_type == "STK":
        lo, hi = EXTENDED_HOURS
        return [
            (
                datetime.combine(day, lo, NEW_YORK).astimezone(UTC),
                datetime.combine(day, hi, NEW_YORK).astimezone(UTC),
            )
        ]
    return hours


def is_open(market: SimMarket, inst: Instrument, extended: bool, at: datetime) -> bool:
    """Whether ``at`` falls in one of the order's trading windows."""
    local = at.astimezone(NEW_YORK).date()
    for day in (local, local + timedelta(days=1)):
        for start, end in windows(market, inst, day, extended):
            if start <= at < end:
                return True
    return False


def expiry(market: SimMarket, inst: Instrument, req: OrderRequest, at: datetime) -> datetime | None:
    """A DAY order lives until the end of the current or next session it can work in; a GTC
    order does not expire (None). IBError 201 when no session follows within two weeks."""
    if req.tif != "DAY":
        return None
    ext = extended(req.order_type, req.outside_rth)
    local = at.astimezone(NEW_YORK).date()
    for day in market.sessions(local, local + timedelta(days=14)):
        for _, end in windows(market, inst, day, ext):
            if end > at:
                return end
    raise IBError(ORDER_REJECTED, f"no trading session for {inst.symbol} after {at.isoformat()}")
