"""The paper exchange: IB-like paper accounts, orders and fills over the simulated market.

**State** lives in one SQLite file (WAL journal, a busy timeout) so that several processes - the
pipeline, the MCP server, a gateway - see one set of accounts. Every call runs in a single
``BEGIN IMMEDIATE`` transaction: matching resting orders, applying fills to cash and positions
and reading the account happen atomically, so two processes trading the same account always
leave positions and cash that add up. A new file is seeded with two paper accounts:
``DU1234567`` (primary; USD 1,000,000, EUR 50,000, GBP 20,000) and ``DU7654321`` (USD 250,000).

**Orders** (MKT, LMT, STP, STP LMT; DAY or GTC) follow IB's status lifecycle:

- ``PreSubmitted``: accepted but not working - a stop not yet triggered, a child whose parent has
  not filled, or an order placed outside its trading hours. IB accepts market and DAY orders
  outside regular hours and holds them for the next session; so does the simulator (a DAY order
  placed after the close is good for the next session). Only LMT / STP LMT orders with
  ``outside_rth`` work in the extended session (04:00-20:00 New York), as at IB.
- ``Submitted``: working. A marketable order walks the displayed depth (``SimMarket.depth``) level
  by level; a limit order takes only levels at or better than its limit, and what the book cannot
  fill rests. Liquidity taken in a market minute is remembered, so two orders in the same minute
  do not both take the same displayed size. Walking the book is the slippage model: a large order
  pays the spread and then the deeper levels. Stops trigger on the last price (IB's default for
  US stocks): a buy stop when last >= stop, a sell stop when last <= stop; a triggered STP is a
  market order, STP LMT a limit order. FX (IDEALPRO) fills in full at the top of book.
- ``Filled``, ``Cancelled`` (by request, or a DAY order at the end of its session; a bracket child
  whose parent is cancelled), ``Inactive`` (rejected at placement).

Resting orders are matched **lazily**: whenever the exchange is consulted (any read or write), it
first brings every open order up to the clock's current instant. It does not only look at the
book now: it replays the instants the order missed since it was last examined - the start of each
trading window (an order held overnight fills at the open) and the minute marks at which the
simulated price reached its limit or stop (prefiltered on daily, then one-minute bars) - so a
resting limit fills at the minute the quotes crossed it, with that time on the execution, however
rarely anyone looks. With a pinned clock nothing moves. A reader pinned in the past never matches
an order already examined at a later instant.

**Rejections** raise :class:`~ibkr_sim.errors.IBError`: 321 for a malformed request (quantity not
positive, finite and whole, a limit order without a limit price, unknown action / type / tif,
unknown account), 110 for a price off the contract's tick, 200 for an unknown conId, 201 when the
pre-trade margin check fails or the contract is not tradable (indices) - the rejected order is
recorded as ``Inactive`` with the reason, so it is still found by its ``order_ref`` - and 10147 to
cancel or modify an order that is unknown or done.

**Accounting** (see :mod:`ibkr_spec.commissions` and :mod:`ibkr_sim.margin`): positions carry
IB's average cost (price x multiplier plus commission, per unit), unrealized P&L = market value
- quantity x average cost, realized P&L on closing fills net of both commissions. Positions are
marked at the last price clamped into the bid/ask. Daily P&L is the change since the previous
session's close: value now - value of the start-of-day quantity at the previous close - cash
spent on today's trades (commissions included). Futures are marked to market (no cash changes
hands on a trade; their P&L is in net liquidation, realized P&L settles into cash). Settled cash
equals total cash (no settlement lag is modelled).
"""

from __future__ import annotations

import functools
import math
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import numpy as np
import pandas as pd

from ibkr_sim.market import SimMarket
from ibkr_sim.universe import Instrument
from ibkr_spec.commissions import order_commission
from ibkr_spec.errors import (
    INVALID_REQUEST,
    NO_SECURITY_DEFINITION,
    ORDER_NOT_FOUND,
    ORDER_REJECTED,
    PRICE_INCREMENT,
    IBError,
)
from ibkr_spec.margin import buying_power, position_margin

NEW_YORK = ZoneInfo("America/New_York")
#: IB's "duplicate order id" error.
DUPLICATE_ORDER_ID = 103
#: IB's "price does not conform to the minimum price variation" error.
ORDER_TYPES = ("MKT", "LMT", "STP", "STP LMT")
TIFS = ("DAY", "GTC")
OPEN_STATUSES = ("PreSubmitted", "Submitted")
#: (account, is primary, base currency, alias, opening cash by currency)
DEFAULT_ACCOUNTS: tuple[tuple[str, bool, str, str, dict[str, float]], ...] = (
    (
        "DU1234567",
        True,
        "USD",
        "Paper primary",
        {"USD": 1_000_000.0, "EUR": 50_000.0, "GBP": 20_000.0},
    ),
    ("DU7654321", False, "USD", "Paper secondary", {"USD": 250_000.0}),
)
EXTENDED_HOURS = (time(4, 0), time(20, 0))
_DEPTH_ROWS = 50
_MAX_MISSED = 64  # instants examined per order when catching up
_EPS = 1e-9

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    account_id TEXT PRIMARY KEY, is_primary INTEGER NOT NULL, base_currency TEXT NOT NULL,
    alias TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cash (
    account_id TEXT NOT NULL, currency TEXT NOT NULL, amount REAL NOT NULL,
    PRIMARY KEY (account_id, currency));
CREATE TABLE IF NOT EXISTS positions (
    account_id TEXT NOT NULL, conid INTEGER NOT NULL, quantity REAL NOT NULL,
    cost_basis REAL NOT NULL, comm_basis REAL NOT NULL, PRIMARY KEY (account_id, conid));
CREATE TABLE IF NOT EXISTS orders (
    order_id INTEGER PRIMARY KEY, client_id INTEGER NOT NULL, account_id TEXT NOT NULL,
    conid INTEGER NOT NULL, action TEXT NOT NULL, quantity REAL NOT NULL, order_type TEXT NOT NULL,
    limit_price REAL, stop_price REAL, tif TEXT NOT NULL, order_ref TEXT NOT NULL,
    outside_rth INTEGER NOT NULL, parent_id INTEGER, status TEXT NOT NULL,
    filled REAL NOT NULL DEFAULT 0, avg_fill_price REAL, last_fill_price REAL,
    commission REAL NOT NULL DEFAULT 0, fill_value REAL NOT NULL DEFAULT 0,
    tier_volume REAL NOT NULL DEFAULT 0, triggered INTEGER NOT NULL DEFAULT 0,
    expires_us INTEGER, message TEXT NOT NULL DEFAULT '', created_us INTEGER NOT NULL,
    updated_us INTEGER NOT NULL, checked_us INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS orders_status ON orders (status);
CREATE INDEX IF NOT EXISTS orders_ref ON orders (account_id, order_ref);
CREATE TABLE IF NOT EXISTS executions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, exec_id TEXT UNIQUE NOT NULL, order_id INTEGER NOT NULL,
    account_id TEXT NOT NULL, conid INTEGER NOT NULL, sec_type TEXT NOT NULL, side TEXT NOT NULL,
    shares REAL NOT NULL,
    price REAL NOT NULL, multiplier REAL NOT NULL, time_us INTEGER NOT NULL,
    commission REAL NOT NULL, commission_currency TEXT NOT NULL, realized_pnl REAL,
    cum_qty REAL NOT NULL, avg_price REAL NOT NULL, order_ref TEXT NOT NULL, venue TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS executions_account ON executions (account_id, time_us);
CREATE TABLE IF NOT EXISTS liquidity (
    conid INTEGER NOT NULL, minute INTEGER NOT NULL, side TEXT NOT NULL, taken REAL NOT NULL,
    PRIMARY KEY (conid, minute, side));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


# -- public records ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountInfo:
    """A paper account: IB account id (``DU...``), whether it is the primary one, base currency."""

    account_id: str
    is_primary: bool
    base_currency: str
    alias: str


@dataclass(frozen=True)
class OrderRequest:
    """An order as sent: ``quantity`` positive (the side is ``action``), ``stop_price`` is IB's
    auxPrice, ``order_ref`` IB's orderRef (the pipeline's idempotency key), ``parent_id`` the
    exchange order id of a bracket parent."""

    conid: int
    action: str
    quantity: float
    order_type: str = "MKT"
    limit_price: float | None = None
    stop_price: float | None = None
    tif: str = "DAY"
    order_ref: str = ""
    outside_rth: bool = False
    parent_id: int | None = None


@dataclass(frozen=True)
class OrderInfo:
    """An order at the exchange and where it is in IB's lifecycle (prices in its currency)."""

    order_id: int
    perm_id: int
    client_id: int
    account_id: str
    conid: int
    action: str
    quantity: float
    order_type: str
    limit_price: float | None
    stop_price: float | None
    tif: str
    order_ref: str
    outside_rth: bool
    parent_id: int | None
    status: str
    filled: float
    remaining: float
    avg_fill_price: float | None
    last_fill_price: float | None
    commission: float
    message: str
    time: datetime
    updated: datetime

    @property
    def account(self) -> str:
        """IB's name for the account field."""
        return self.account_id


@dataclass(frozen=True)
class ExecutionInfo:
    """One fill with its commission report; ``side`` is IB's BOT / SLD, ``realized_pnl`` is set
    on closing fills (net of commissions), None on opening ones."""

    exec_id: str
    order_id: int
    perm_id: int
    order_ref: str
    account_id: str
    conid: int
    side: str
    shares: float
    price: float
    time: datetime
    commission: float
    commission_currency: str
    realized_pnl: float | None
    cum_qty: float
    avg_price: float
    exchange: str

    @property
    def account(self) -> str:
        """IB's name for the account field."""
        return self.account_id


@dataclass(frozen=True)
class PositionInfo:
    """A holding marked at the current price; money in the instrument's ``currency``;
    ``realized_pnl`` is today's."""

    conid: int
    quantity: float
    avg_cost: float
    market_price: float
    market_value: float
    unrealized_pnl: float
    realized_pnl: float
    currency: str


@dataclass(frozen=True)
class PnLInfo:
    """Account P&L in base currency: ``daily`` since the previous session's close, ``unrealized``
    on open positions, ``realized`` today."""

    daily: float
    unrealized: float
    realized: float


@dataclass(frozen=True)
class AccountNumbers:
    """IB's account-summary values in the base ``currency`` (Reg-T, see :mod:`ibkr_sim.margin`)."""

    currency: str
    net_liquidation: float
    total_cash: float
    settled_cash: float
    gross_position_value: float
    equity_with_loan: float
    init_margin: float
    maint_margin: float
    available_funds: float
    excess_liquidity: float
    buying_power: float
    cushion: float


@dataclass(frozen=True)
class WhatIf:
    """The pre-trade check of an order (IB whatIf): margins and equity with loan before and after
    the order fills at the expected prices, its commission, and whether IB would accept it."""

    init_margin_before: float
    init_margin_after: float
    maint_margin_before: float
    maint_margin_after: float
    equity_with_loan_before: float
    equity_with_loan_after: float
    commission: float
    min_commission: float
    max_commission: float
    accepted: bool
    warning: str
    currency: str = "USD"


# -- in-memory account state ---------------------------------------------------------------------


@dataclass
class _Pos:
    quantity: float = 0.0
    cost_basis: float = 0.0  # signed quantity x entry price x multiplier, instrument currency
    comm_basis: float = 0.0  # commissions in the average cost of the open quantity


@dataclass
class _Book:
    cash: dict[str, float]
    positions: dict[int, _Pos] = field(default_factory=dict)

    def copy(self) -> _Book:
        return _Book(dict(self.cash), {k: replace(v) for k, v in self.positions.items()})


def apply_fill(
    book: _Book, inst: Instrument, signed_qty: float, price: float, commission: float
) -> float | None:
    """Apply one fill to ``book``; return its realized P&L (None for a purely opening fill).

    Closing quantity realizes (exit value - its share of cost and entry commission - its share of
    this fill's commission); the rest opens at this price. Stocks and options move cash by the
    trade value; futures only by realized P&L; FX converts between the two currencies.
    """
    ccy = inst.currency
    book.cash[ccy] = book.cash.get(ccy, 0.0) - commission
    if inst.sec_type == "CASH":
        book.cash[inst.symbol] = book.cash.get(inst.symbol, 0.0) + signed_qty
        book.cash[ccy] -= signed_qty * price
        return None
    mult = inst.multiplier
    futures = inst.sec_type == "FUT"
    if not futures:
        book.cash[ccy] -= signed_qty * price * mult
    pos = book.positions.setdefault(inst.conid, _Pos())
    realized = None
    closing = min(abs(signed_qty), abs(pos.quantity)) if pos.quantity * signed_qty < 0 else 0.0
    if closing > 0:
        frac = closing / abs(pos.quantity)
        basis, comm = pos.cost_basis * frac, pos.comm_basis * frac
        closed_qty = math.copysign(closing, signed_qty)
        gross = -closed_qty * price * mult - basis
        realized = gross - comm - commission * closing / abs(signed_qty)
        if futures:
            book.cash[ccy] += gross
        pos.quantity += closed_qty
        pos.cost_basis -= basis
        pos.comm_basis -= comm
        if abs(pos.quantity) < _EPS:
            pos.quantity, pos.cost_basis, pos.comm_basis = 0.0, 0.0, 0.0
    opening = signed_qty - math.copysign(closing, signed_qty)
    if abs(opening) > _EPS:
        pos.quantity += opening
        pos.cost_basis += opening * price * mult
        pos.comm_basis += commission * abs(opening) / abs(signed_qty)
    if pos.quantity == 0:
        del book.positions[inst.conid]
    return realized


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
        if limit is not None and (price > limit + _EPS if buy else price < limit - _EPS):
            break
        shown = size - min(taken, size)
        taken -= size - shown
        take = min(shown, left)
        if take > _EPS:
            fills.append((price, take, venue))
            left -= take
        if left <= _EPS:
            break
    return fills


# -- time helpers --------------------------------------------------------------------------------


@functools.cache
def _calendar() -> xcals.ExchangeCalendar:
    return xcals.get_calendar("XNYS", start="2018-06-01", end="2029-12-31")


def _us(at: datetime) -> int:
    return round(at.timestamp() * 1_000_000)


def _dt(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC)


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise IBError(INVALID_REQUEST, f"time {at.isoformat()} must be timezone-aware")
    return at.astimezone(UTC)


def _mark(bid: float, ask: float, last: float) -> float:
    """IB-style mark: the last price, clamped into the bid/ask when both are quoted."""
    if bid > 0 and ask > 0 and bid <= ask:
        return min(max(last, bid), ask)
    return last


class PaperExchange:
    """Paper accounts, orders and fills over a :class:`SimMarket` (see the module docstring)."""

    def __init__(
        self,
        market: SimMarket,
        state_path: Path | str,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.market = market
        self.state_path = Path(state_path)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        with self._tx():
            pass

    # -- storage ---------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            conn = sqlite3.connect(
                self.state_path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                columns = {r[1] for r in conn.execute("PRAGMA table_info(orders)")}
                if "checked_us" not in columns:  # files written before catch-up matching
                    conn.execute("ALTER TABLE orders ADD COLUMN checked_us INTEGER")
                    conn.execute("UPDATE orders SET checked_us = updated_us")
                if conn.execute("SELECT count(*) FROM accounts").fetchone()[0] == 0:
                    for account, primary, base, alias, cash in DEFAULT_ACCOUNTS:
                        conn.execute(
                            "INSERT INTO accounts VALUES (?, ?, ?, ?)",
                            (account, int(primary), base, alias),
                        )
                        conn.executemany(
                            "INSERT INTO cash VALUES (?, ?, ?)",
                            [(account, c, a) for c, a in cash.items()],
                        )
                    conn.execute("INSERT OR IGNORE INTO meta VALUES ('next_order_id', 1)")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                conn.close()
                raise
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction (the file's write lock) around a whole call."""
        with self._lock:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close this instance's connection (the state stays in the file)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def now(self) -> datetime:
        """The exchange clock (UTC)."""
        return _utc(self._clock())

    # -- accounts --------------------------------------------------------------------------
    def accounts(self) -> list[AccountInfo]:
        """The paper accounts, primary first."""
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT * FROM accounts ORDER BY is_primary DESC, account_id"
            ).fetchall()
        return [
            AccountInfo(r["account_id"], bool(r["is_primary"]), r["base_currency"], r["alias"])
            for r in rows
        ]

    def _check_account(self, conn: sqlite3.Connection, account: str) -> str:
        row = conn.execute(
            "SELECT base_currency FROM accounts WHERE account_id = ?", (account,)
        ).fetchone()
        if row is None:
            known = ", ".join(r[0] for r in conn.execute("SELECT account_id FROM accounts"))
            raise IBError(INVALID_REQUEST, f"unknown account {account!r} (known: {known})")
        return row[0]

    def _load(self, conn: sqlite3.Connection, account: str) -> _Book:
        cash = {
            r["currency"]: r["amount"]
            for r in conn.execute("SELECT * FROM cash WHERE account_id = ?", (account,))
        }
        positions = {
            r["conid"]: _Pos(r["quantity"], r["cost_basis"], r["comm_basis"])
            for r in conn.execute("SELECT * FROM positions WHERE account_id = ?", (account,))
        }
        return _Book(cash, positions)

    def _save(self, conn: sqlite3.Connection, account: str, book: _Book) -> None:
        conn.execute("DELETE FROM cash WHERE account_id = ?", (account,))
        conn.executemany(
            "INSERT INTO cash VALUES (?, ?, ?)", [(account, c, a) for c, a in book.cash.items()]
        )
        conn.execute("DELETE FROM positions WHERE account_id = ?", (account,))
        conn.executemany(
            "INSERT INTO positions VALUES (?, ?, ?, ?, ?)",
            [
                (account, conid, p.quantity, p.cost_basis, p.comm_basis)
                for conid, p in book.positions.items()
            ],
        )

    def _fx(self, at: datetime, base: str) -> Callable[[str], float]:
        """Units of ``base`` per unit of a currency at ``at`` (memoised for one call)."""
        base_rate = self.market.fx_rate(base, at)

        @functools.cache
        def fx(currency: str) -> float:
            return self.market.fx_rate(currency, at) / base_rate

        return fx

    def _valuation(
        self, book: _Book, at: datetime, base: str = "USD"
    ) -> tuple[AccountNumbers, list[PositionInfo], dict[int, tuple[float, float]]]:
        """Account numbers, marked positions and {conid: (mark, prev_close)} at ``at``."""
        universe = self.market.universe
        conids = sorted(book.positions)
        insts = {c: universe.by_conid(c) for c in conids}
        under_ids = sorted({i.underlying_conid for i in insts.values() if i.sec_type == "OPT"})
        snaps = dict(
            zip(conids + under_ids, self.market.snapshots(conids + under_ids, at), strict=True)
        )
        fx = self._fx(at, base)

        total_cash = sum(amount * fx(c) for c, amount in book.cash.items())
        net = total_cash
        gross = options = init = maint = 0.0
        rows, marks = [], {}
        for conid in conids:
            inst, pos, s = insts[conid], book.positions[conid], snaps[conid]
            mark = _mark(s.bid, s.ask, s.last)
            marks[conid] = (mark, s.prev_close)
            value = pos.quantity * mark * inst.multiplier
            rate = fx(inst.currency)
            if inst.sec_type == "FUT":
                net += (value - pos.cost_basis) * rate
            else:
                net += value * rate
                gross += abs(value) * rate
            if inst.sec_type == "OPT":
                options += value * rate
            under = snaps[inst.underlying_conid].last if inst.sec_type == "OPT" else 0.0
            i, m = position_margin(
                inst.sec_type,
                pos.quantity,
                mark,
                inst.multiplier,
                rate,
                under,
                inst.strike,
                inst.right,
            )
            init, maint = init + i, maint + m
            rows.append(
                PositionInfo(
                    conid=conid,
                    quantity=pos.quantity,
                    avg_cost=(pos.cost_basis + pos.comm_basis) / pos.quantity,
                    market_price=mark,
                    market_value=value,
                    unrealized_pnl=value - pos.cost_basis - pos.comm_basis,
                    realized_pnl=0.0,
                    currency=inst.currency,
                )
            )
        ewl = net - options
        available = ewl - init
        excess = ewl - maint
        numbers = AccountNumbers(
            currency=base,
            net_liquidation=net,
            total_cash=total_cash,
            settled_cash=total_cash,
            gross_position_value=gross,
            equity_with_loan=ewl,
            init_margin=init,
            maint_margin=maint,
            available_funds=available,
            excess_liquidity=excess,
            buying_power=buying_power(available),
            cushion=excess / net if net else 0.0,
        )
        return numbers, rows, marks

    def summary(self, account: str) -> AccountNumbers:
        """IB's account summary (NetLiquidation, EquityWithLoanValue, margins, BuyingPower ...)."""
        with self._tx() as conn:
            at = self._process(conn)
            base = self._check_account(conn, account)
            return self._valuation(self._load(conn, account), at, base)[0]

    def cash(self, account: str) -> dict[str, float]:
        """Cash ledger: currency -> amount (in that currency)."""
        with self._tx() as conn:
            self._process(conn)
            self._check_account(conn, account)
            return dict(sorted(self._load(conn, account).cash.items()))

    def _today(self, conn: sqlite3.Connection, account: str, at: datetime) -> list[sqlite3.Row]:
        start = self._day_start(at)
        return conn.execute(
            "SELECT * FROM executions WHERE account_id = ? AND time_us > ? ORDER BY seq",
            (account, _us(start)),
        ).fetchall()

    def positions(self, account: str) -> list[PositionInfo]:
        """Open positions marked at the current price, with today's realized P&L."""
        with self._tx() as conn:
            at = self._process(conn)
            base = self._check_account(conn, account)
            _, rows, _ = self._valuation(self._load(conn, account), at, base)
            realized: dict[int, float] = {}
            for e in self._today(conn, account, at):
                realized[e["conid"]] = realized.get(e["conid"], 0.0) + (e["realized_pnl"] or 0.0)
        return [replace(p, realized_pnl=realized.get(p.conid, 0.0)) for p in rows]

    def pnl(self, account: str) -> PnLInfo:
        """Daily (since the previous session's close), unrealized and today's realized P&L."""
        with self._tx() as conn:
            at = self._process(conn)
            base = self._check_account(conn, account)
            book = self._load(conn, account)
            _, rows, marks = self._valuation(book, at, base)
            today = self._today(conn, account, at)
        universe = self.market.universe
        fx = self._fx(at, base)

        flows: dict[int, float] = {}
        traded: dict[int, float] = {}
        realized = 0.0
        for e in today:
            inst = universe.by_conid(e["conid"])
            realized += (e["realized_pnl"] or 0.0) * fx(e["commission_currency"])
            if inst.sec_type == "CASH":
                continue
            signed = e["shares"] if e["side"] == "BOT" else -e["shares"]
            traded[e["conid"]] = traded.get(e["conid"], 0.0) + signed
            flow = (signed * e["price"] * e["multiplier"] + e["commission"]) * fx(inst.currency)
            flows[e["conid"]] = flows.get(e["conid"], 0.0) + flow
        daily = 0.0
        for conid in set(flows) | set(book.positions):
            inst = universe.by_conid(conid)
            qty = book.positions[conid].quantity if conid in book.positions else 0.0
            if conid in marks:
                mark, prev = marks[conid]
            else:
                s = self.market.snapshot(conid, at)
                mark, prev = _mark(s.bid, s.ask, s.last), s.prev_close
            start_qty = qty - traded.get(conid, 0.0)
            value_now = qty * mark * inst.multiplier
            value_start = start_qty * prev * inst.multiplier
            daily += (value_now - value_start) * fx(inst.currency) - flows.get(conid, 0.0)
        unrealized = sum((p.unrealized_pnl * fx(p.currency) for p in rows), 0.0)
        return PnLInfo(daily=daily, unrealized=unrealized, realized=realized)

    def _day_start(self, at: datetime) -> datetime:
        """The close the snapshot's ``prev_close`` refers to: the close of the session before
        today's (open, not yet open, or closed) or, on a non-trading day, before the last one."""
        cal = _calendar()
        local = pd.Timestamp(at.astimezone(NEW_YORK).date())
        current = local if cal.is_session(local) else cal.date_to_session(local, "previous")
        return cal.session_close(cal.previous_session(current)).to_pydatetime()

    # -- orders: reads ---------------------------------------------------------------------
    def next_order_id(self) -> int:
        """The next order id the exchange will assign (IB nextValidId)."""
        with self._tx() as conn:
            return int(
                conn.execute("SELECT value FROM meta WHERE key = 'next_order_id'").fetchone()[0]
            )

    def _orders(self, conn: sqlite3.Connection, where: str, args: tuple) -> list[OrderInfo]:
        rows = conn.execute(f"SELECT * FROM orders WHERE {where} ORDER BY order_id", args)
        return [_order_info(r) for r in rows]

    def open_orders(self, account: str | None = None) -> list[OrderInfo]:
        """Working and held orders (PreSubmitted, Submitted), all accounts unless one is named."""
        with self._tx() as conn:
            self._process(conn)
            if account is None:
                return self._orders(conn, "status IN ('PreSubmitted', 'Submitted')", ())
            self._check_account(conn, account)
            return self._orders(
                conn, "status IN ('PreSubmitted', 'Submitted') AND account_id = ?", (account,)
            )

    def completed_orders(self, account: str | None = None) -> list[OrderInfo]:
        """Filled, cancelled and rejected (Inactive) orders."""
        with self._tx() as conn:
            self._process(conn)
            if account is None:
                return self._orders(conn, "status IN ('Filled', 'Cancelled', 'Inactive')", ())
            self._check_account(conn, account)
            return self._orders(
                conn, "status IN ('Filled', 'Cancelled', 'Inactive') AND account_id = ?", (account,)
            )

    def order(self, order_id: int) -> OrderInfo:
        """One order by its exchange id (IBError 10147 when unknown)."""
        with self._tx() as conn:
            self._process(conn)
            return self._get(conn, order_id)

    def find_by_ref(self, account: str, order_ref: str) -> list[OrderInfo]:
        """Every order of ``account`` carrying ``order_ref`` (any status), oldest first: how the
        pipeline recognises an order it already sent."""
        with self._tx() as conn:
            self._process(conn)
            self._check_account(conn, account)
            return self._orders(conn, "account_id = ? AND order_ref = ?", (account, order_ref))

    def executions(
        self, account: str | None = None, since: datetime | None = None
    ) -> list[ExecutionInfo]:
        """Fills in time order, of one account or all, at or after ``since``."""
        with self._tx() as conn:
            self._process(conn)
            where, args = ["1"], []
            if account is not None:
                self._check_account(conn, account)
                where.append("account_id = ?")
                args.append(account)
            if since is not None:
                where.append("time_us >= ?")
                args.append(_us(_utc(since)))
            rows = conn.execute(
                f"SELECT * FROM executions WHERE {' AND '.join(where)} ORDER BY seq", args
            ).fetchall()
        return [
            ExecutionInfo(
                exec_id=r["exec_id"],
                order_id=r["order_id"],
                perm_id=r["order_id"],
                order_ref=r["order_ref"],
                account_id=r["account_id"],
                conid=r["conid"],
                side=r["side"],
                shares=r["shares"],
                price=r["price"],
                time=_dt(r["time_us"]),
                commission=r["commission"],
                commission_currency=r["commission_currency"],
                realized_pnl=r["realized_pnl"],
                cum_qty=r["cum_qty"],
                avg_price=r["avg_price"],
                exchange=r["venue"],
            )
            for r in rows
        ]

    def _get(self, conn: sqlite3.Connection, order_id: int) -> OrderInfo:
        row = conn.execute("SELECT * FROM orders WHERE order_id = ?", (int(order_id),)).fetchone()
        if row is None:
            raise IBError(ORDER_NOT_FOUND, f"OrderId {order_id} is not found")
        return _order_info(row)

    # -- orders: writes --------------------------------------------------------------------
    def place(
        self, account: str, req: OrderRequest, client_id: int = 0, order_id: int | None = None
    ) -> OrderInfo:
        """Place an order; it fills at once as far as the book allows, the rest works or waits.

        Raises IBError 321 (malformed), 200 (unknown conId), 201 (rejected: recorded Inactive).
        """
        inst = self._validate(req)
        with self._tx() as conn:
            at = self._process(conn)
            self._check_account(conn, account)
            oid = self._allocate_id(conn, order_id)
            if req.parent_id is not None:
                self._get(conn, req.parent_id)
            warning = self._pre_trade(conn, account, req, inst, at)
            status = "Inactive" if warning else "PreSubmitted"
            month = self._month_volume(conn, account, at) if inst.sec_type == "STK" else 0.0
            conn.execute(
                """INSERT INTO orders (order_id, client_id, account_id, conid, action, quantity,
                order_type, limit_price, stop_price, tif, order_ref, outside_rth, parent_id,
                status, tier_volume, expires_us, message, created_us, updated_us, checked_us)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    oid,
                    int(client_id),
                    account,
                    inst.conid,
                    req.action,
                    float(req.quantity),
                    req.order_type,
                    req.limit_price,
                    req.stop_price,
                    req.tif,
                    req.order_ref,
                    int(req.outside_rth),
                    req.parent_id,
                    status,
                    month,
                    self._expiry(inst, req, at),
                    warning,
                    _us(at),
                    _us(at),
                    _us(at),
                ),
            )
            if not warning:
                self._process(conn, at)
            info = self._get(conn, oid)
        if warning:
            raise IBError(ORDER_REJECTED, f"Order rejected - reason: {warning}")
        return info

    def cancel(self, order_id: int) -> OrderInfo:
        """Cancel an open order (its children too); IBError 10147 if unknown or already done."""
        with self._tx() as conn:
            at = self._process(conn)
            info = self._open(conn, order_id, "cancelled")
            self._set_status(conn, [info.order_id], "Cancelled", "cancelled by request", at)
            children = conn.execute(
                "SELECT order_id FROM orders WHERE parent_id = ? AND status IN (?, ?)",
                (info.order_id, *OPEN_STATUSES),
            ).fetchall()
            self._set_status(
                conn, [c[0] for c in children], "Cancelled", "parent order cancelled", at
            )
            return self._get(conn, order_id)

    def modify(
        self,
        order_id: int,
        quantity: float | None = None,
        limit_price: float | None = None,
        stop_price: float | None = None,
    ) -> OrderInfo:
        """Change an open order's quantity and/or prices (then it is matched again at once)."""
        with self._tx() as conn:
            at = self._process(conn)
            info = self._open(conn, order_id, "modified")
            new = OrderRequest(
                conid=info.conid,
                action=info.action,
                quantity=info.quantity if quantity is None else quantity,
                order_type=info.order_type,
                limit_price=info.limit_price if limit_price is None else limit_price,
                stop_price=info.stop_price if stop_price is None else stop_price,
                tif=info.tif,
                order_ref=info.order_ref,
                outside_rth=info.outside_rth,
            )
            self._validate(new)
            if new.quantity < info.filled - _EPS:
                raise IBError(
                    INVALID_REQUEST,
                    f"order {order_id}: quantity {new.quantity} is below the {info.filled} "
                    "already filled",
                )
            conn.execute(
                """UPDATE orders SET quantity = ?, limit_price = ?, stop_price = ?, updated_us = ?
                WHERE order_id = ?""",
                (float(new.quantity), new.limit_price, new.stop_price, _us(at), info.order_id),
            )
            if new.quantity - info.filled <= _EPS:
                self._set_status(conn, [info.order_id], "Filled", "", at)
            self._process(conn, at)
            return self._get(conn, order_id)

    def what_if(self, account: str, req: OrderRequest) -> WhatIf:
        """Margin, equity and commission impact of ``req`` if it filled now; changes nothing."""
        inst = self._validate(req)
        with self._tx() as conn:
            at = self._process(conn)
            base = self._check_account(conn, account)
            return self._what_if(conn, account, base, req, inst, at)

    def process(self, at: datetime | None = None) -> None:
        """Match every open order against the book at ``at`` (default: the clock)."""
        with self._tx() as conn:
            self._process(conn, None if at is None else _utc(at))

    # -- internals -------------------------------------------------------------------------
    def _validate(self, req: OrderRequest) -> Instrument:
        def bad(reason: str) -> IBError:
            return IBError(INVALID_REQUEST, f"invalid order for conid {req.conid}: {reason}")

        if req.action not in ("BUY", "SELL"):
            raise bad(f"action {req.action!r} must be BUY or SELL")
        if req.order_type not in ORDER_TYPES:
            raise bad(f"order type {req.order_type!r} is not one of {', '.join(ORDER_TYPES)}")
        if req.tif not in TIFS:
            raise bad(f"time in force {req.tif!r} must be DAY or GTC")
        q = req.quantity
        if not (isinstance(q, int | float) and math.isfinite(q) and q > 0):
            raise bad(f"quantity {q!r} must be a positive finite number")
        for name, needed in (
            ("limit_price", req.order_type in ("LMT", "STP LMT")),
            ("stop_price", req.order_type in ("STP", "STP LMT")),
        ):
            value = getattr(req, name)
            if needed and value is None:
                raise bad(f"a {req.order_type} order needs a {name}")
            if value is not None and not (math.isfinite(value) and value > 0):
                raise bad(f"{name} {value!r} must be a positive finite price")
        try:
            conid = int(req.conid)
        except (TypeError, ValueError):
            raise IBError(NO_SECURITY_DEFINITION, f"bad conid {req.conid!r}") from None
        inst = self.market.universe.by_conid(conid)
        if inst.sec_type != "CASH" and q != round(q):
            raise bad(f"quantity {q} of {inst.symbol} must be whole (no fractional orders via API)")
        for name in ("limit_price", "stop_price"):
            value = getattr(req, name)
            steps = None if value is None else value / inst.min_tick
            if steps is not None and abs(steps - round(steps)) > 1e-6 * max(1.0, steps):
                raise IBError(
                    PRICE_INCREMENT,
                    f"The price {value} does not conform to the minimum price variation "
                    f"({inst.min_tick}) for {inst.symbol}",
                )
        return inst

    def _allocate_id(self, conn: sqlite3.Connection, order_id: int | None) -> int:
        nxt = int(conn.execute("SELECT value FROM meta WHERE key = 'next_order_id'").fetchone()[0])
        if order_id is None:
            oid = nxt
        else:
            oid = int(order_id)
            if conn.execute("SELECT 1 FROM orders WHERE order_id = ?", (oid,)).fetchone():
                raise IBError(DUPLICATE_ORDER_ID, f"Duplicate order id {oid}")
        conn.execute("UPDATE meta SET value = ? WHERE key = 'next_order_id'", (max(nxt, oid + 1),))
        return oid

    def _open(self, conn: sqlite3.Connection, order_id: int, verb: str) -> OrderInfo:
        info = self._get(conn, order_id)
        if info.status not in OPEN_STATUSES:
            raise IBError(
                ORDER_NOT_FOUND,
                f"OrderId {order_id} that needs to be {verb} is not found (state: {info.status})",
            )
        return info

    def _set_status(
        self, conn: sqlite3.Connection, ids: list[int], status: str, message: str, at: datetime
    ) -> None:
        conn.executemany(
            "UPDATE orders SET status = ?, message = ?, updated_us = ? WHERE order_id = ?",
            [(status, message, _us(at), i) for i in ids],
        )

    def _month_volume(self, conn: sqlite3.Connection, account: str, at: datetime) -> float:
        local = at.astimezone(NEW_YORK)
        start = datetime.combine(local.date().replace(day=1), time(0), NEW_YORK)
        row = conn.execute(
            """SELECT coalesce(sum(shares), 0) FROM executions
            WHERE account_id = ? AND time_us >= ? AND sec_type = 'STK'""",
            (account, _us(start)),
        ).fetchone()
        return float(row[0])

    def _windows(
        self, inst: Instrument, day: date, extended: bool
    ) -> list[tuple[datetime, datetime]]:
        hours = self.market.trading_hours(inst.conid, day)
        if extended and hours and inst.sec_type == "STK":
            lo, hi = EXTENDED_HOURS
            return [
                (
                    datetime.combine(day, lo, NEW_YORK).astimezone(UTC),
                    datetime.combine(day, hi, NEW_YORK).astimezone(UTC),
                )
            ]
        return hours

    @staticmethod
    def _extended(order_type: str, outside_rth: bool) -> bool:
        """IB works only limit orders outside regular trading hours."""
        return outside_rth and order_type in ("LMT", "STP LMT")

    def _is_open(self, inst: Instrument, extended: bool, at: datetime) -> bool:
        local = at.astimezone(NEW_YORK).date()
        for day in (local, local + timedelta(days=1)):
            for start, end in self._windows(inst, day, extended):
                if start <= at < end:
                    return True
        return False

    def _expiry(self, inst: Instrument, req: OrderRequest, at: datetime) -> int | None:
        """A DAY order lives until the end of the current or next session it can work in."""
        if req.tif != "DAY":
            return None
        extended = self._extended(req.order_type, req.outside_rth)
        local = at.astimezone(NEW_YORK).date()
        for day in self.market.sessions(local, local + timedelta(days=14)):
            for _, end in self._windows(inst, day, extended):
                if end > at:
                    return _us(end)
        raise IBError(
            ORDER_REJECTED, f"no trading session for {inst.symbol} after {at.isoformat()}"
        )

    def _pre_trade(
        self,
        conn: sqlite3.Connection,
        account: str,
        req: OrderRequest,
        inst: Instrument,
        at: datetime,
    ) -> str:
        """The reason IB would reject the order at placement, or ''."""
        if inst.sec_type == "IND":
            return f"{inst.symbol} is an index and cannot be traded"
        base = self._check_account(conn, account)
        check = self._what_if(conn, account, base, req, inst, at)
        return "" if check.accepted else check.warning

    def _expected_fills(
        self, req: OrderRequest, inst: Instrument, at: datetime
    ) -> list[tuple[float, float]]:
        """(price, quantity) the order would get now without moving the book (what-if)."""
        limit = req.limit_price
        if req.order_type == "STP":
            return [(float(req.stop_price), req.quantity)]
        if req.order_type == "STP LMT":
            return [(float(limit), req.quantity)]
        levels = self._levels(inst, req.action == "BUY", at)
        fills = [(p, q) for p, q, _ in walk_book(levels, req.quantity, req.action == "BUY", limit)]
        left = req.quantity - sum(q for _, q in fills)
        if left > _EPS:
            fills.append((limit if limit is not None else levels[-1][0], left))
        return fills

    def _levels(self, inst: Instrument, buy: bool, at: datetime) -> list[tuple[float, float, str]]:
        """The side of the book an order takes: (price, displayed size, venue), best first.
        IDEALPRO (FX) is treated as unlimited at the top of book."""
        if inst.sec_type == "CASH":
            snap = self.market.snapshot(inst.conid, at)
            return [(snap.ask if buy else snap.bid, math.inf, "IDEALPRO")]
        bids, asks = self.market.depth(inst.conid, at, rows=_DEPTH_ROWS)
        return asks if buy else bids

    def _what_if(
        self,
        conn: sqlite3.Connection,
        account: str,
        base: str,
        req: OrderRequest,
        inst: Instrument,
        at: datetime,
    ) -> WhatIf:
        book = self._load(conn, account)
        before = self._valuation(book, at, base)[0]
        fills = self._expected_fills(req, inst, at)
        qty = sum(q for _, q in fills)
        value = sum(p * q for p, q in fills) * inst.multiplier
        month = self._month_volume(conn, account, at) if inst.sec_type == "STK" else 0.0
        sell = req.action == "SELL"
        commission = order_commission(inst.sec_type, qty, value, sell, month)
        prices = [p for p, _ in fills]
        low = order_commission(inst.sec_type, qty, min(prices) * qty * inst.multiplier, sell, month)
        high = order_commission(
            inst.sec_type, qty, max(prices) * qty * inst.multiplier, sell, month
        )
        after_book = book.copy()
        sign = 1.0 if req.action == "BUY" else -1.0
        for price, q in fills:
            apply_fill(after_book, inst, sign * q, price, commission * q / qty)
        after = self._valuation(after_book, at, base)[0]
        accepted = (
            after.init_margin <= after.equity_with_loan + _EPS
            or after.init_margin <= before.init_margin + _EPS
        )
        warning = ""
        if not accepted:
            warning = (
                f"insufficient buying power: initial margin after the order "
                f"{after.init_margin:,.2f} {base} would exceed equity with loan value "
                f"{after.equity_with_loan:,.2f} {base} (buying power {before.buying_power:,.2f})"
            )
        return WhatIf(
            init_margin_before=before.init_margin,
            init_margin_after=after.init_margin,
            maint_margin_before=before.maint_margin,
            maint_margin_after=after.maint_margin,
            equity_with_loan_before=before.equity_with_loan,
            equity_with_loan_after=after.equity_with_loan,
            commission=commission,
            min_commission=min(low, high),
            max_commission=max(low, high),
            accepted=accepted,
            warning=warning,
            currency=base,
        )

    def _process(self, conn: sqlite3.Connection, at: datetime | None = None) -> datetime:
        """Expire, trigger and match every open order at ``at``; return ``at``."""
        at = self.now() if at is None else at
        rows = conn.execute(
            "SELECT * FROM orders WHERE status IN (?, ?) ORDER BY order_id", OPEN_STATUSES
        ).fetchall()
        for row in rows:
            oid = row["order_id"]
            if row["checked_us"] > _us(at):
                continue  # already examined later than ``at`` (a reader pinned in the past)
            for instant in [*self._missed(row, at), at]:
                fresh = conn.execute("SELECT * FROM orders WHERE order_id = ?", (oid,)).fetchone()
                if fresh["status"] not in OPEN_STATUSES:
                    break
                self._work(conn, fresh, instant)
            conn.execute(
                "UPDATE orders SET checked_us = max(checked_us, ?) WHERE order_id = ?",
                (_us(at), oid),
            )
        return at

    def _missed(self, row: sqlite3.Row, at: datetime) -> list[datetime]:
        """Instants since the order was last looked at when it may have become workable: the
        start of each trading window it can work in, and the minute marks of bars whose range
        reached its limit or stop price. Matching at these instants first gives a resting order
        the fill (and timestamp) it would have had, however rarely the exchange is consulted."""
        since = _dt(row["checked_us"])
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

        extended = self._extended(order_type, bool(row["outside_rth"]))
        first = since.astimezone(NEW_YORK).date() - timedelta(days=1)
        last = at.astimezone(NEW_YORK).date()
        priced = limit is not None or stop is not None
        if priced:
            daily = self.market.daily_bars(inst.conid, first, last)
            days = set(daily.index[reached(daily["low"], daily["high"])].date)
        out: list[datetime] = []
        for day in self.market.sessions(first, last):
            for start, end in self._windows(inst, day, extended):
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

    def _work(self, conn: sqlite3.Connection, row: sqlite3.Row, at: datetime) -> None:
        oid = row["order_id"]
        status = conn.execute("SELECT status FROM orders WHERE order_id = ?", (oid,)).fetchone()[0]
        if status not in OPEN_STATUSES:
            return  # cancelled with its parent earlier in this pass
        if row["expires_us"] is not None and _us(at) >= row["expires_us"]:
            self._set_status(conn, [oid], "Cancelled", "DAY order expired at the session end", at)
            return
        if row["parent_id"] is not None:
            parent = conn.execute(
                "SELECT status FROM orders WHERE order_id = ?", (row["parent_id"],)
            ).fetchone()
            if parent is not None and parent[0] in ("Cancelled", "Inactive"):
                self._set_status(conn, [oid], "Cancelled", "parent order cancelled", at)
                return
            if parent is not None and parent[0] != "Filled":
                self._held(conn, row, at)
                return
        inst = self.market.universe.by_conid(row["conid"])
        order_type = row["order_type"]
        if not self._is_open(inst, self._extended(order_type, bool(row["outside_rth"])), at):
            self._held(conn, row, at)
            return
        buy = row["action"] == "BUY"
        limit = row["limit_price"] if order_type in ("LMT", "STP LMT") else None
        if order_type in ("STP", "STP LMT") and not row["triggered"]:
            last = self.market.snapshot(inst.conid, at).last
            hit = last >= row["stop_price"] - _EPS if buy else last <= row["stop_price"] + _EPS
            if not hit:
                self._held(conn, row, at)
                return
            conn.execute("UPDATE orders SET triggered = 1 WHERE order_id = ?", (oid,))
        if status != "Submitted":
            conn.execute(
                "UPDATE orders SET status = 'Submitted', updated_us = ? WHERE order_id = ?",
                (_us(at), oid),
            )
        left = row["quantity"] - row["filled"]
        fills = self._take(conn, inst, buy, left, limit, at)
        if fills:
            self._fill(conn, row, inst, fills, at)

    def _held(self, conn: sqlite3.Connection, row: sqlite3.Row, at: datetime) -> None:
        if row["status"] != "PreSubmitted" and row["filled"] == 0:
            conn.execute(
                "UPDATE orders SET status = 'PreSubmitted', updated_us = ? WHERE order_id = ?",
                (_us(at), row["order_id"]),
            )

    def _take(
        self,
        conn: sqlite3.Connection,
        inst: Instrument,
        buy: bool,
        quantity: float,
        limit: float | None,
        at: datetime,
    ) -> list[tuple[float, float, str]]:
        """Walk the displayed book for up to ``quantity`` at ``limit`` or better, after the
        liquidity already taken in this market minute; record what is taken."""
        side = "ask" if buy else "bid"
        minute = _us(at) // 60_000_000
        row = conn.execute(
            "SELECT taken FROM liquidity WHERE conid = ? AND minute = ? AND side = ?",
            (inst.conid, minute, side),
        ).fetchone()
        conn.execute("DELETE FROM liquidity WHERE minute < ?", (minute - 1440,))
        fills = walk_book(self._levels(inst, buy, at), quantity, buy, limit, row[0] if row else 0.0)
        taken = sum(q for _, q, _ in fills)
        if taken:
            conn.execute(
                """INSERT INTO liquidity VALUES (?, ?, ?, ?) ON CONFLICT (conid, minute, side)
                DO UPDATE SET taken = taken + excluded.taken""",
                (inst.conid, minute, side, taken),
            )
        return fills

    def _fill(
        self,
        conn: sqlite3.Connection,
        row: sqlite3.Row,
        inst: Instrument,
        fills: list[tuple[float, float, str]],
        at: datetime,
    ) -> None:
        account = row["account_id"]
        book = self._load(conn, account)
        sell = row["action"] == "SELL"
        sign = -1.0 if sell else 1.0
        filled, value, commission = row["filled"], row["fill_value"], row["commission"]
        seq = conn.execute("SELECT coalesce(max(seq), 0) FROM executions").fetchone()[0]
        for price, qty, venue in fills:
            cum_qty, cum_value = filled + qty, value + price * qty * inst.multiplier
            cum_comm = order_commission(inst.sec_type, cum_qty, cum_value, sell, row["tier_volume"])
            comm = cum_comm - commission
            realized = apply_fill(book, inst, sign * qty, price, comm)
            seq += 1
            conn.execute(
                """INSERT INTO executions (exec_id, order_id, account_id, conid, sec_type, side,
                shares, price, multiplier, time_us, commission, commission_currency, realized_pnl,
                cum_qty, avg_price, order_ref, venue)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    f"{row['order_id']:08x}.{seq:08x}.01.01",
                    row["order_id"],
                    account,
                    inst.conid,
                    inst.sec_type,
                    "SLD" if sell else "BOT",
                    qty,
                    price,
                    inst.multiplier,
                    _us(at),
                    comm,
                    inst.currency,
                    realized,
                    cum_qty,
                    cum_value / cum_qty / inst.multiplier,
                    row["order_ref"],
                    venue,
                ),
            )
            filled, value, commission = cum_qty, cum_value, cum_comm
        done = row["quantity"] - filled <= _EPS
        conn.execute(
            """UPDATE orders SET filled = ?, fill_value = ?, commission = ?, avg_fill_price = ?,
            last_fill_price = ?, status = ?, updated_us = ? WHERE order_id = ?""",
            (
                filled,
                value,
                commission,
                value / filled / inst.multiplier,
                fills[-1][0],
                "Filled" if done else "Submitted",
                _us(at),
                row["order_id"],
            ),
        )
        self._save(conn, account, book)


def _order_info(r: sqlite3.Row) -> OrderInfo:
    return OrderInfo(
        order_id=r["order_id"],
        perm_id=r["order_id"],
        client_id=r["client_id"],
        account_id=r["account_id"],
        conid=r["conid"],
        action=r["action"],
        quantity=r["quantity"],
        order_type=r["order_type"],
        limit_price=r["limit_price"],
        stop_price=r["stop_price"],
        tif=r["tif"],
        order_ref=r["order_ref"],
        outside_rth=bool(r["outside_rth"]),
        parent_id=r["parent_id"],
        status=r["status"],
        filled=r["filled"],
        remaining=max(r["quantity"] - r["filled"], 0.0),
        avg_fill_price=r["avg_fill_price"],
        last_fill_price=r["last_fill_price"],
        commission=r["commission"],
        message=r["message"],
        time=_dt(r["created_us"]),
        updated=_dt(r["updated_us"]),
    )


__all__ = [
    "DEFAULT_ACCOUNTS",
    "AccountInfo",
    "AccountNumbers",
    "ExecutionInfo",
    "OrderInfo",
    "OrderRequest",
    "PaperExchange",
    "PnLInfo",
    "PositionInfo",
    "WhatIf",
    "apply_fill",
    "walk_book",
]
