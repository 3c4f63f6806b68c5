"""Price alerts, kept with the paper accounts in ``paper.sqlite`` (so the TWS-protocol gateway,
the Client Portal gateway and the in-process sim backend see the same alerts).

An alert watches one contract's last price against a threshold, ``>=`` or ``<=`` (IB's price
condition, type 1). Alert ids come from the exchange's order-id sequence, as IB's alert ids are
order ids.

**When an alert triggers.** IB evaluates an alert's condition on each trade after the alert is
made; a condition already met when the alert is made triggers at the first trade after it. The
simulator evaluates lazily, when alerts are read: every active, untriggered alert is brought up
to the clock over the market's prices since it was last brought up (its ``checked`` time),
and triggers at the first moment the last price meets the condition:

- whole sessions in between are screened by their daily high/low, and a session that reaches
  the threshold is searched minute by minute (an alert triggers at the end of the first minute
  bar whose high, for ``>=``, or low, for ``<=``, reaches it);
- the session still open is searched minute by minute, then the last price now is checked.

Bars are regular-trading-hours bars, so a move outside them does not trigger (``outside_rth``
is kept as IB's flag only). A non-repeatable alert that triggers is no longer active (IB
deactivates it); a repeatable one stays active. A GTD alert that has not triggered by its
expiry time becomes inactive then. A contract without price history (an option) is checked
against its last price at each read only.

Errors are :class:`~ibkr_spec.errors.IBError`: 321 for a bad condition, price, time in force or
account, 200 for an unknown conid, 10147 for an unknown alert id (or one of another account).
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

from ibkr_sim.exchange.hours import utc
from ibkr_sim.exchange.storage import Store, Tx, from_us, to_us
from ibkr_sim.market import SimMarket
from ibkr_spec.errors import INVALID_REQUEST, ORDER_NOT_FOUND, IBError
from ibkr_spec.historical import parse_bar_size

#: IB's price-condition operators the simulator evaluates
OPERATORS = (">=", "<=")
#: IB's times in force for an alert
ALERT_TIFS = ("GTC", "GTD")
_DAY = parse_bar_size("1 day")
_MINUTE = parse_bar_size("1 min")
#: longer than any session, shorter than the time between two sessions' closes
_SESSION_SPAN = timedelta(hours=12)


@dataclass(frozen=True)
class AlertInfo:
    """A price alert as kept: it triggers once the last price of ``conid`` is ``operator``
    ``price`` (in the contract's currency); times are UTC."""

    alert_id: int
    account_id: str
    conid: int
    operator: str
    price: float
    name: str
    message: str
    repeatable: bool
    outside_rth: bool
    tif: str
    expires: datetime | None
    active: bool
    triggered: datetime | None
    created: datetime


def _info(r: sqlite3.Row) -> AlertInfo:
    return AlertInfo(
        alert_id=r["alert_id"],
        account_id=r["account_id"],
        conid=r["conid"],
        operator=r["operator"],
        price=r["price"],
        name=r["name"],
        message=r["message"],
        repeatable=bool(r["repeatable"]),
        outside_rth=bool(r["outside_rth"]),
        tif=r["tif"],
        expires=None if r["expires_us"] is None else from_us(r["expires_us"]),
        active=bool(r["active"]),
        triggered=None if r["triggered_us"] is None else from_us(r["triggered_us"]),
        created=from_us(r["created_us"]),
    )


def first_touch(
    market: SimMarket, conid: int, operator: str, price: float, start: datetime, end: datetime
) -> datetime | None:
    """The first time in ``[start, end]`` the last price of ``conid`` met ``operator`` ``price``
    (see the module docstring), or None."""
    if end < start:
        return None

    def met(high: float, low: float) -> bool:
        return high >= price if operator == ">=" else low <= price

    def first_minute(frame: pd.DataFrame) -> datetime | None:
        hits = frame[[met(h, lo) for h, lo in zip(frame["high"], frame["low"], strict=True)]]
        if hits.empty:
            return None
        return min(hits.index[0].to_pydatetime() + timedelta(minutes=1), end)

    try:
        daily = market.history(conid, start, end, _DAY)
    except IBError:  # no price history (options): the last price now only
        daily = None
    if daily is not None:
        closes = [t.to_pydatetime() for t in daily.index]
        for close, high, low in zip(closes, daily["high"], daily["low"], strict=True):
            if met(high, low):
                session = market.history(conid, max(start, close - _SESSION_SPAN), close, _MINUTE)
                found = first_minute(session)
                if found is not None:
                    return found
        since = max([start, *closes])
        found = first_minute(market.history(conid, since, end, _MINUTE))
        if found is not None:
            return found
    last = market.snapshot(conid, end).last
    return end if math.isfinite(last) and last > 0 and met(last, last) else None


class AlertBook:
    """The price alerts of every paper account, over the exchange's state file and market."""

    def __init__(self, store: Store, market: SimMarket, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._market = market
        self._clock = clock

    # -- reads -------------------------------------------------------------------------------
    def alerts(self, account: str) -> list[AlertInfo]:
        """The account's alerts, active or not, brought up to the clock, oldest first."""
        with self._store.tx() as tx:
            tx.base_currency(account)
            self._bring_up(tx, account)
            rows = tx.conn.execute(
                "SELECT * FROM alerts WHERE account_id = ? ORDER BY alert_id", (account,)
            )
            return [_info(r) for r in rows]

    def alert(self, alert_id: int, account: str | None = None) -> AlertInfo:
        """One alert brought up to the clock (of ``account`` when one is named)."""
        with self._store.tx() as tx:
            row = self._row(tx, alert_id, account)
            self._bring_up(tx, row["account_id"], alert_id)
            return _info(self._row(tx, alert_id, account))

    # -- writes ------------------------------------------------------------------------------
    def create(
        self,
        account: str,
        conid: int,
        operator: str,
        price: float,
        name: str,
        message: str = "",
        repeatable: bool = False,
        outside_rth: bool = False,
        tif: str = "GTC",
        expires: datetime | None = None,
        alert_id: int | None = None,
    ) -> AlertInfo:
        """A new active alert, or (``alert_id`` given) the account's alert ``alert_id``
        replaced by this one, active and untriggered again (IB: the POST with ``orderId``)."""
        self._market.universe.by_conid(conid)  # IBError 200 when unknown
        if operator not in OPERATORS:
            raise IBError(
                INVALID_REQUEST,
                f"alert operator {operator!r}: the simulator evaluates {' and '.join(OPERATORS)}",
            )
        if not (math.isfinite(price) and price > 0):
            raise IBError(INVALID_REQUEST, f"alert price {price!r} must be a positive number")
        if tif not in ALERT_TIFS:
            raise IBError(INVALID_REQUEST, f"alert tif {tif!r} must be GTC or GTD")
        if tif == "GTD" and expires is None:
            raise IBError(INVALID_REQUEST, "a GTD alert needs an expireTime")
        at = utc(self._clock())
        with self._store.tx() as tx:
            tx.base_currency(account)
            if alert_id is None:
                alert_id = tx.allocate_id(None)
            else:
                self._row(tx, alert_id, account)
            tx.conn.execute(
                "INSERT OR REPLACE INTO alerts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, NULL, "
                "?, ?)",
                (
                    alert_id,
                    account,
                    conid,
                    operator,
                    float(price),
                    name or f"{operator} {price:g}",
                    message,
                    int(repeatable),
                    int(outside_rth),
                    tif,
                    None if expires is None or tif != "GTD" else to_us(utc(expires)),
                    to_us(at),
                    to_us(at),
                ),
            )
            return _info(self._row(tx, alert_id, account))

    def activate(self, account: str, alert_id: int, active: bool) -> AlertInfo:
        """Turn an alert on or off (off: it stays, without notifying; on: evaluated from now)."""
        at = utc(self._clock())
        with self._store.tx() as tx:
            self._row(tx, alert_id, account)
            tx.conn.execute(
                "UPDATE alerts SET active = ?, checked_us = max(checked_us, ?) WHERE alert_id = ?",
                (int(active), to_us(at), alert_id),
            )
            return _info(self._row(tx, alert_id, account))

    def delete(self, account: str, alert_id: int) -> AlertInfo:
        """Remove the account's alert ``alert_id``; the alert as it was."""
        with self._store.tx() as tx:
            gone = _info(self._row(tx, alert_id, account))
            tx.conn.execute("DELETE FROM alerts WHERE alert_id = ?", (alert_id,))
            return gone

    # -- internals ---------------------------------------------------------------------------
    @staticmethod
    def _row(tx: Tx, alert_id: int, account: str | None) -> sqlite3.Row:
        row = tx.conn.execute("SELECT * FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
        if row is None or (account is not None and row["account_id"] != account):
            where = f" of account {account}" if account is not None else ""
            raise IBError(ORDER_NOT_FOUND, f"alert {alert_id}{where} is not found")
        return row

    def _bring_up(self, tx: Tx, account: str, alert_id: int | None = None) -> None:
        """Evaluate the account's active, untriggered alerts (or one) up to the clock."""
        now = utc(self._clock())
        where = "account_id = ? AND active = 1 AND triggered_us IS NULL"
        args: list[object] = [account]
        if alert_id is not None:
            where += " AND alert_id = ?"
            args.append(alert_id)
        for r in tx.conn.execute(f"SELECT * FROM alerts WHERE {where}", args).fetchall():
            a = _info(r)
            checked = from_us(r["checked_us"])
            until = now if a.expires is None else min(now, a.expires)
            hit = first_touch(self._market, a.conid, a.operator, a.price, checked, until)
            still_active = hit is None or a.repeatable
            if hit is None and a.expires is not None and a.expires <= now:
                still_active = False
            tx.conn.execute(
                "UPDATE alerts SET triggered_us = ?, active = ?, checked_us = max(checked_us, ?) "
                "WHERE alert_id = ?",
                (None if hit is None else to_us(hit), int(still_active), to_us(until), a.alert_id),
            )


__all__ = ["ALERT_TIFS", "OPERATORS", "AlertBook", "AlertInfo", "first_touch"]
