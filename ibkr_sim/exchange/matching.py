"""The order book and matching: how orders trigger, walk the book, fill and expire.

Orders follow IB's status lifecycle:

- ``PreSubmitted``: accepted but not working - a stop not yet triggered, a child whose parent has
  not filled, or an order placed outside its trading hours (see :mod:`ibkr_sim.exchange.hours`).
- ``Submitted``: working. A marketable order walks the displayed depth (``SimMarket.depth``) level
  by level; a limit order takes only levels at or better than its limit, and what the book cannot
  fill rests. Liquidity taken in a market minute is remembered, so two orders in the same minute
  do not both take the same displayed size. Walking the book is the slippage model: a large order
  pays the spread and then the deeper levels. Stops trigger on the last price (IB's default for
  US stocks): a buy stop when last >= stop, a sell stop when last <= stop; a triggered STP is a
  market order, STP LMT a limit order. FX (IDEALPRO) fills in full at the top of book.
- With a participation limit (the gateway's ``ib-paper`` profile) the orders on one side of a
  stock take at most that share of the minute's traded volume in each minute, so an order large
  against the minute bar fills in several executions over several minutes (``Submitted`` with a
  growing filled quantity, then ``Filled``), each recorded with its own commission and
  cumulative quantity, as IB reports partial fills (tws.md, "Partial fills").
- ``Filled``, ``Cancelled`` (by request, or a DAY order at the end of its session; a bracket child
  whose parent is cancelled, or whose sibling filled: a bracket's children are one-cancels-all,
  as IB links a bracket's profit taker and stop loss), ``Inactive`` (rejected at placement).

Resting orders are matched **lazily**: whenever the exchange is consulted (any read or write), it
first brings every open order up to the clock's current instant. It does not only look at the
book now: it replays the instants the order missed since it was last examined - the start of each
trading window (an order held overnight fills at the open) and the minute marks at which the
simulated price reached its limit or stop (prefiltered on daily, then one-minute bars) - so a
resting limit fills at the minute the quotes crossed it, with that time on the execution, however
rarely anyone looks. With a pinned clock nothing moves. A reader pinned in the past never matches
an order already examined at a later instant.
"""

from __future__ import annotations

import math
import sqlite3
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from ibkr_sim.exchange import hours
from ibkr_sim.exchange.accounts import apply_fill
from ibkr_sim.exchange.hours import NEW_YORK
from ibkr_sim.exchange.orders import EPS, OPEN_STATUSES, ExecutionInfo, OrderRequest
from ibkr_sim.exchange.storage import Tx, from_us, to_us
from ibkr_sim.market import SimMarket
from ibkr_sim.universe import Instrument
from ibkr_spec.commissions import order_commission

_DEPTH_ROWS = 50
_MAX_MISSED = 64  # instants examined per order when catching up


def walk_book(
    levels: list[tuple[float, float, str]],
    quantity: float,
    buy: bool,
    limit: float | None = None,
    taken: float = 0.0,
) -> list[tuple[float, float, str]]:
    """Fills (price, quantity, venue) of an order for ``quantity`` against one side of the book
    (``levels`` best first, as (price, displayed size, venue)), taking only levels at ``limit`` or
    better, after ``taken`` units at the top of the book were already consumed."""
    fills, left = [], quantity
    for price, size, venue in levels:
        if limit is not None and (price > limit + EPS if buy else price < limit - EPS):
            break
        shown = size - min(taken, size)
        taken -= size - shown
        take = min(shown, left)
        if take > EPS:
            fills.append((price, take, venue))
            left -= take
        if left <= EPS:
            break
    return fills


class Matcher:
    """Brings the open orders of a state file up to an instant of a :class:`SimMarket`."""

    def __init__(self, market: SimMarket, participation: float | None = None) -> None:
        self.market = market
        #: share of a minute's stock volume the orders on one side may take in that minute
        self.participation = participation

    def minute_cap(self, inst: Instrument, at: datetime) -> float:
        """Shares the orders on one side may take in the minute of ``at`` (inf: no limit, or
        no minute bar at ``at``, e.g. outside regular hours)."""
        if self.participation is None or inst.sec_type != "STK":
            return math.inf
        day = at.astimezone(NEW_YORK).date()
        if not self.market.sessions(day, day):
            return math.inf
        bars = self.market.intraday_bars(inst.conid, day, 1)
        minute = pd.Timestamp(at).floor("min")
        if minute not in bars.index:
            return math.inf
        return math.floor(self.participation * float(bars.at[minute, "volume"]))

    def levels(self, inst: Instrument, buy: bool, at: datetime) -> list[tuple[float, float, str]]:
        """The side of the book an order takes: (price, displayed size, venue), best first.
        IDEALPRO (FX) is treated as unlimited at the top of book."""
        if inst.sec_type == "CASH":
            snap = self.market.snapshot(inst.conid, at)
            return [(snap.ask if buy else snap.bid, math.inf, "IDEALPRO")]
        bids, asks = self.market.depth(inst.conid, at, rows=_DEPTH_ROWS)
        return asks if buy else bids

    def expected_fills(
        self, req: OrderRequest, inst: Instrument, at: datetime
    ) -> list[tuple[float, float]]:
        """(price, quantity) the order would get now without moving the book (what-if)."""
        limit = req.limit_price
        if req.order_type == "STP":
            return [(float(req.stop_price), req.quantity)]
        if req.order_type == "STP LMT":
            return [(float(limit), req.quantity)]
        levels = self.levels(inst, req.action == "BUY", at)
        fills = [(p, q) for p, q, _ in walk_book(levels, req.quantity, req.action == "BUY", limit)]
        left = req.quantity - sum(q for _, q in fills)
        if left > EPS:
            fills.append((limit if limit is not None else levels[-1][0], left))
        return fills

    def process(self, tx: Tx, at: datetime) -> None:
        """Expire, trigger and match every open order at ``at``."""
        for row in tx.open_rows():
            oid = row["order_id"]
            if row["checked_us"] > to_us(at):
                continue  # already examined later than ``at`` (a reader pinned in the past)
            for instant in [*self._missed(row, at), at]:
                fresh = tx.order_row(oid)
                if fresh["status"] not in OPEN_STATUSES:
                    break
                self._work(tx, fresh, instant)
            tx.set_checked(oid, at)

    def _missed(self, row: sqlite3.Row, at: datetime) -> list[datetime]:
        """Instants since the order was last looked at when it may have become workable: the
        start of each trading window it can work in, and the minute marks of bars whose range
        reached its limit or stop price. Matching at these instants first gives a resting order
        the fill (and timestamp) it would have had, however rarely the exchange is consulted."""
        since = from_us(row["checked_us"])
        if at - since < timedelta(minutes=1):
            return []
        inst = self.market.universe.by_conid(row["conid"])
        if inst.sec_type == "OPT":
            return []
        order_type, buy = row["order_type"], row["action"] == "BUY"
        limit = row["limit_price"] if order_type in ("LMT", "STP LMT") else None
        stop = (
            row["stop_price"] if order_type in ("STP", "STP LMT") and not row["triggered"] else None
        )

        def reached(low: pd.Series, high: pd.Series) -> np.ndarray:
            hit = np.zeros(len(low), dtype=bool)
            if limit is not None:
                hit |= (low <= limit if buy else high >= limit).to_numpy()
            if stop is not None:
                hit |= (high >= stop if buy else low <= stop).to_numpy()
            return hit

        extended = hours.extended(order_type, bool(row["outside_rth"]))
        first = since.astimezone(NEW_YORK).date() - timedelta(days=1)
        last = at.astimezone(NEW_YORK).date()
        priced = limit is not None or stop is not None
        if priced:
            daily = self.market.daily_bars(inst.conid, first, last)
            days = set(daily.index[reached(daily["low"], daily["high"])].date)
        out: list[datetime] = []
        for day in self.market.sessions(first, last):
            for start, end in hours.windows(self.market, inst, day, extended):
                lo, hi = max(start, since), min(end, at)
                if lo >= hi:
                    continue
                if priced and day not in days:
                    continue  # the price never reached the order's level that day
                if start > since:
                    out.append(start)
                if not priced:
                    continue
                bars = self.market.intraday_bars(inst.conid, day, 1)
                bars = bars.loc[(bars.index >= lo - timedelta(minutes=1)) & (bars.index < hi)]
                for ts in bars.index[reached(bars["low"], bars["high"])][:_MAX_MISSED]:
                    bar = ts.to_pydatetime()
                    out += [bar, bar + timedelta(minutes=1)]
            if len(out) >= _MAX_MISSED:
                break
        return sorted({t for t in out if since < t < at})[:_MAX_MISSED]

    def _work(self, tx: Tx, row: sqlite3.Row, at: datetime) -> None:
        oid = row["order_id"]
        status = tx.status(oid)
        if status not in OPEN_STATUSES:
            return  # cancelled with its parent earlier in this pass
        if row["expires_us"] is not None and to_us(at) >= row["expires_us"]:
            tx.set_status([oid], "Cancelled", "DAY order expired at the session end", at)
            return
        if row["parent_id"] is not None:
            parent = tx.status(row["parent_id"])
            if parent in ("Cancelled", "Inactive"):
                tx.set_status([oid], "Cancelled", "parent order cancelled", at)
                return
            if parent is not None and parent != "Filled":
                self._held(tx, row, at)
                return
        inst = self.market.universe.by_conid(row["conid"])
        order_type = row["order_type"]
        extended = hours.extended(order_type, bool(row["outside_rth"]))
        if not hours.is_open(self.market, inst, extended, at):
            self._held(tx, row, at)
            return
        buy = row["action"] == "BUY"
        limit = row["limit_price"] if order_type in ("LMT", "STP LMT") else None
        if order_type in ("STP", "STP LMT") and not row["triggered"]:
            last = self.market.snapshot(inst.conid, at).last
            hit = last >= row["stop_price"] - EPS if buy else last <= row["stop_price"] + EPS
            if not hit:
                self._held(tx, row, at)
                return
            tx.set_triggered(oid)
        if status != "Submitted":
            tx.set_working_state(oid, "Submitted", at)
        left = row["quantity"] - row["filled"]
        fills = self._take(tx, inst, buy, left, limit, at)
        if fills:
            self._fill(tx, row, inst, fills, at)

    @staticmethod
    def _held(tx: Tx, row: sqlite3.Row, at: datetime) -> None:
        if row["status"] != "PreSubmitted" and row["filled"] == 0:
            tx.set_working_state(row["order_id"], "PreSubmitted", at)

    def _take(
        self,
        tx: Tx,
        inst: Instrument,
        buy: bool,
        quantity: float,
        limit: float | None,
        at: datetime,
    ) -> list[tuple[float, float, str]]:
        """Walk the displayed book for up to ``quantity`` at ``limit`` or better, after the
        liquidity already taken in this market minute; record what is taken."""
        side = "ask" if buy else "bid"
        already = tx.liquidity_taken(inst.conid, side, at)
        quantity = min(quantity, max(0.0, self.minute_cap(inst, at) - already))
        if quantity <= EPS:
            return []
        fills = walk_book(self.levels(inst, buy, at), quantity, buy, limit, already)
        taken = sum(q for _, q, _ in fills)
        if taken:
            tx.take_liquidity(inst.conid, side, at, taken)
        return fills

    @staticmethod
    def _fill(
        tx: Tx,
        row: sqlite3.Row,
        inst: Instrument,
        fills: list[tuple[float, float, str]],
        at: datetime,
    ) -> None:
        """Record ``fills`` (price, quantity, venue) of an order: executions with their
        commissions (IB's tiers on the order's cumulative size), the account's cash and positions,
        and the order's fill state."""
        account = row["account_id"]
        book = tx.book(account)
        sell = row["action"] == "SELL"
        sign = -1.0 if sell else 1.0
        filled, value, commission = row["filled"], row["fill_value"], row["commission"]
        seq = tx.last_execution_seq()
        for price, qty, venue in fills:
            cum_qty, cum_value = filled + qty, value + price * qty * inst.multiplier
            cum_comm = order_commission(inst.sec_type, cum_qty, cum_value, sell, row["tier_volume"])
            comm = cum_comm - commission
            realized = apply_fill(book, inst, sign * qty, price, comm)
            seq += 1
            execution = ExecutionInfo(
                exec_id=f"{row['order_id']:08x}.{seq:08x}.01.01",
                order_id=row["order_id"],
                perm_id=row["order_id"],
                order_ref=row["order_ref"],
                account_id=account,
                conid=inst.conid,
                side="SLD" if sell else "BOT",
                shares=qty,
                price=price,
                time=at,
                commission=comm,
                commission_currency=inst.currency,
                realized_pnl=realized,
                cum_qty=cum_qty,
                avg_price=cum_value / cum_qty / inst.multiplier,
                exchange=venue,
            )
            tx.insert_execution(execution, inst.sec_type, inst.multiplier)
            filled, value, commission = cum_qty, cum_value, cum_comm
        status = "Filled" if row["quantity"] - filled <= EPS else "Submitted"
        tx.record_fills(
            row["order_id"], filled, value, commission, fills[-1][0], status, at, inst.multiplier
        )
        tx.save_book(account, book)
        if status == "Filled" and row["parent_id"] is not None:
            siblings = [i for i in tx.open_children(row["parent_id"]) if i != row["order_id"]]
            tx.set_status(siblings, "Cancelled", "OCA: its bracket sibling filled", at)
