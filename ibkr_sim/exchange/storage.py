"""The paper exchange's state: one SQLite file (``paper.sqlite``), its schema and every query.

The file is shared by several processes - the pipeline, the MCP server, a gateway - so that they
see one set of accounts. It runs in WAL mode with a busy timeout, and every exchange call runs in
a single ``BEGIN IMMEDIATE`` transaction (:meth:`Store.tx`): matching resting orders, applying
fills to cash and positions and reading the account happen atomically, so two processes trading
the same account always leave positions and cash that add up. A new file is seeded with two
paper accounts: ``DU1234567`` (primary; USD 1,000,000, EUR 50,000, GBP 20,000) and ``DU7654321``
(USD 250,000). Times are stored as integer microseconds since the epoch (UTC). The price alerts
and watchlists of :mod:`~ibkr_sim.exchange.alerts` and :mod:`~ibkr_sim.exchange.watchlists` live
in the same file (their queries are theirs).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from ibkr_sim.exchange.accounts import AccountInfo, Book, Pos
from ibkr_sim.exchange.orders import (
    DUPLICATE_ORDER_ID,
    OPEN_STATUSES,
    ExecutionInfo,
    OrderInfo,
    OrderRequest,
)
from ibkr_spec.errors import INVALID_REQUEST, ORDER_NOT_FOUND, IBError

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
DONE_STATUSES = ("Filled", "Cancelled", "Inactive")
_LIQUIDITY_MINUTES = 1440  # how long the liquidity taken in a minute is remembered

SCHEMA = """
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
CREATE TABLE IF NOT EXISTS alerts (
    alert_id INTEGER PRIMARY KEY, account_id TEXT NOT NULL, conid INTEGER NOT NULL,
    operator TEXT NOT NULL, price REAL NOT NULL, name TEXT NOT NULL, message TEXT NOT NULL,
    repeatable INTEGER NOT NULL, outside_rth INTEGER NOT NULL, tif TEXT NOT NULL,
    expires_us INTEGER, active INTEGER NOT NULL, triggered_us INTEGER,
    created_us INTEGER NOT NULL, checked_us INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS watchlists (
    watchlist_id TEXT PRIMARY KEY, name TEXT NOT NULL, conids TEXT NOT NULL,
    modified_us INTEGER NOT NULL);
"""


def to_us(at: datetime) -> int:
    """``at`` as stored: microseconds since the epoch."""
    return round(at.timestamp() * 1_000_000)


def from_us(us: int) -> datetime:
    """A stored time (microseconds since the epoch) as a UTC datetime."""
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC)


class Store:
    """The state file, with one connection per process (opened lazily, reopened after a fork)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.tx():
            pass

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            conn = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                columns = {r[1] for r in conn.execute("PRAGMA table_info(orders)")}
                if "checked_us" not in columns:  # files written before catch-up matching
                    conn.execute("ALTER TABLE orders ADD COLUMN checked_us INTEGER")
                    conn.execute("UPDATE orders SET checked_us = updated_us")
                if conn.execute("SELECT count(*) FROM accounts").fetchone()[0] == 0:
                    for account, primary, base, alias, cash in DEFAULT_ACCOUNTS:
                        Tx(conn).add_account(account, primary, base, alias, cash)
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
    def tx(self) -> Iterator[Tx]:
        """One ``BEGIN IMMEDIATE`` transaction (the file's write lock) around a whole call."""
        with self._lock:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(conn)
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close this process's connection (the state stays in the file)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class Tx:
    """The queries of one transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    # -- accounts ----------------------------------------------------------------------------
    def accounts(self) -> list[AccountInfo]:
        """The paper accounts, primary first."""
        rows = self.conn.execute("SELECT * FROM accounts ORDER BY is_primary DESC, account_id")
        return [
            AccountInfo(r["account_id"], bool(r["is_primary"]), r["base_currency"], r["alias"])
            for r in rows
        ]

    def add_account(
        self, account: str, primary: bool, base: str, alias: str, cash: dict[str, float]
    ) -> None:
        """A new paper account holding ``cash`` (currency -> amount)."""
        self.conn.execute(
            "INSERT INTO accounts VALUES (?, ?, ?, ?)", (account, int(primary), base, alias)
        )
        self.conn.executemany(
            "INSERT INTO cash VALUES (?, ?, ?)", [(account, c, a) for c, a in cash.items()]
        )

    def base_currency(self, account: str) -> str:
        """The account's base currency; IBError 321 naming the known accounts if unknown."""
        row = self.conn.execute(
            "SELECT base_currency FROM accounts WHERE account_id = ?", (account,)
        ).fetchone()
        if row is None:
            known = ", ".join(r[0] for r in self.conn.execute("SELECT account_id FROM accounts"))
            raise IBError(INVALID_REQUEST, f"unknown account {account!r} (known: {known})")
        return row[0]

    def book(self, account: str) -> Book:
        """The account's cash and positions."""
        cash = {
            r["currency"]: r["amount"]
            for r in self.conn.execute("SELECT * FROM cash WHERE account_id = ?", (account,))
        }
        positions = {
            r["conid"]: Pos(r["quantity"], r["cost_basis"], r["comm_basis"])
            for r in self.conn.execute("SELECT * FROM positions WHERE account_id = ?", (account,))
        }
        return Book(cash, positions)

    def save_book(self, account: str, book: Book) -> None:
        """Replace the account's cash and positions with ``book``."""
        conn = self.conn
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

    # -- orders ------------------------------------------------------------------------------
    def next_order_id(self) -> int:
        """The next order id the exchange will assign (IB nextValidId)."""
        return int(
            self.conn.execute("SELECT value FROM meta WHERE key = 'next_order_id'").fetchone()[0]
        )

    def allocate_id(self, order_id: int | None) -> int:
        """``order_id`` (IBError 103 if taken) or the next free id; the next id moves past it."""
        nxt = self.next_order_id()
        if order_id is None:
            oid = nxt
        else:
            oid = int(order_id)
            if self.conn.execute("SELECT 1 FROM orders WHERE order_id = ?", (oid,)).fetchone():
                raise IBError(DUPLICATE_ORDER_ID, f"Duplicate order id {oid}")
        self.conn.execute(
            "UPDATE meta SET value = ? WHERE key = 'next_order_id'", (max(nxt, oid + 1),)
        )
        return oid

    def insert_order(
        self,
        order_id: int,
        client_id: int,
        account: str,
        conid: int,
        req: OrderRequest,
        status: str,
        tier_volume: float,
        expires: datetime | None,
        message: str,
        at: datetime,
    ) -> None:
        """Record a new order placed at ``at`` (``tier_volume``: the month's shares for its
        commission tier; ``expires``: the end of a DAY order's session)."""
        self.conn.execute(
            """INSERT INTO orders (order_id, client_id, account_id, conid, action, quantity,
            order_type, limit_price, stop_price, tif, order_ref, outside_rth, parent_id,
            status, tier_volume, expires_us, message, created_us, updated_us, checked_us)
            VALUES (:order_id, :client_id, :account_id, :conid, :action, :quantity, :order_type,
            :limit_price, :stop_price, :tif, :order_ref, :outside_rth, :parent_id, :status,
            :tier_volume, :expires_us, :message, :at_us, :at_us, :at_us)""",
            {
                **asdict(req),
                "order_id": order_id,
                "client_id": int(client_id),
                "account_id": account,
                "conid": conid,
                "quantity": float(req.quantity),
                "outside_rth": int(req.outside_rth),
                "status": status,
                "tier_volume": tier_volume,
                "expires_us": None if expires is None else to_us(expires),
                "message": message,
                "at_us": to_us(at),
            },
        )

    def orders(
        self,
        statuses: tuple[str, ...] | None,
        account: str | None = None,
        order_ref: str | None = None,
    ) -> list[OrderInfo]:
        """Orders in ``statuses`` (any when None), of one account or all, carrying ``order_ref``
        when one is given (even ''), oldest first."""
        where, args = ["1"], []
        if statuses is not None:
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            args += statuses
        if account is not None:
            where.append("account_id = ?")
            args.append(account)
        if order_ref is not None:
            where.append("order_ref = ?")
            args.append(order_ref)
        rows = self.conn.execute(
            f"SELECT * FROM orders WHERE {' AND '.join(where)} ORDER BY order_id", args
        )
        return [_order_info(r) for r in rows]

    def order(self, order_id: int) -> OrderInfo:
        """One order; IBError 10147 when unknown."""
        row = self.order_row(order_id)
        if row is None:
            raise IBError(ORDER_NOT_FOUND, f"OrderId {order_id} is not found")
        return _order_info(row)

    def order_row(self, order_id: int) -> sqlite3.Row | None:
        """The stored row of one order (with the matching state OrderInfo does not show)."""
        return self.conn.execute(
            "SELECT * FROM orders WHERE order_id = ?", (int(order_id),)
        ).fetchone()

    def open_rows(self) -> list[sqlite3.Row]:
        """The rows of every open order, oldest first."""
        return self.conn.execute(
            "SELECT * FROM orders WHERE status IN (?, ?) ORDER BY order_id", OPEN_STATUSES
        ).fetchall()

    def open_children(self, parent_id: int) -> list[int]:
        """The ids of a bracket parent's open child orders."""
        rows = self.conn.execute(
            "SELECT order_id FROM orders WHERE parent_id = ? AND status IN (?, ?)",
            (parent_id, *OPEN_STATUSES),
        )
        return [r[0] for r in rows]

    def status(self, order_id: int) -> str | None:
        """An order's status (None when unknown)."""
        row = self.conn.execute(
            "SELECT status FROM orders WHERE order_id = ?", (order_id,)
        ).fetchone()
        return None if row is None else row[0]

    def set_status(self, ids: list[int], status: str, message: str, at: datetime) -> None:
        """Move orders to ``status`` with a ``message`` (the reason shown to the client)."""
        self.conn.executemany(
            "UPDATE orders SET status = ?, message = ?, updated_us = ? WHERE order_id = ?",
            [(status, message, to_us(at), i) for i in ids],
        )

    def set_working_state(self, order_id: int, status: str, at: datetime) -> None:
        """Mark an order held (PreSubmitted) or working (Submitted), keeping its message."""
        self.conn.execute(
            "UPDATE orders SET status = ?, updated_us = ? WHERE order_id = ?",
            (status, to_us(at), order_id),
        )

    def set_triggered(self, order_id: int) -> None:
        """Record that a stop order's stop price was reached."""
        self.conn.execute("UPDATE orders SET triggered = 1 WHERE order_id = ?", (order_id,))

    def set_checked(self, order_id: int, at: datetime) -> None:
        """Record that the order was brought up to ``at`` (never moves back)."""
        self.conn.execute(
            "UPDATE orders SET checked_us = max(checked_us, ?) WHERE order_id = ?",
            (to_us(at), order_id),
        )

    def amend(
        self,
        order_id: int,
        quantity: float,
        limit_price: float | None,
        stop_price: float | None,
        at: datetime,
    ) -> None:
        """Change an order's quantity and prices (a modify)."""
        self.conn.execute(
            """UPDATE orders SET quantity = ?, limit_price = ?, stop_price = ?, updated_us = ?
            WHERE order_id = ?""",
            (float(quantity), limit_price, stop_price, to_us(at), order_id),
        )

    def record_fills(
        self,
        order_id: int,
        filled: float,
        fill_value: float,
        commission: float,
        last_fill_price: float,
        status: str,
        at: datetime,
        multiplier: float,
    ) -> None:
        """An order's cumulative fill state after new fills (``fill_value`` includes the
        contract ``multiplier``; the average fill price does not)."""
        avg = fill_value / filled / multiplier
        self.conn.execute(
            """UPDATE orders SET filled = ?, fill_value = ?, commission = ?, avg_fill_price = ?,
            last_fill_price = ?, status = ?, updated_us = ? WHERE order_id = ?""",
            (filled, fill_value, commission, avg, last_fill_price, status, to_us(at), order_id),
        )

    # -- executions and liquidity ------------------------------------------------------------
    def last_execution_seq(self) -> int:
        """The sequence number of the newest execution (0 when none)."""
        return self.conn.execute("SELECT coalesce(max(seq), 0) FROM executions").fetchone()[0]

    def insert_execution(self, e: ExecutionInfo, sec_type: str, multiplier: float) -> None:
        """Record one fill."""
        self.conn.execute(
            """INSERT INTO executions (exec_id, order_id, account_id, conid, sec_type, side,
            shares, price, multiplier, time_us, commission, commission_currency, realized_pnl,
            cum_qty, avg_price, order_ref, venue)
            VALUES (:exec_id, :order_id, :account_id, :conid, :sec_type, :side, :shares, :price,
            :multiplier, :time_us, :commission, :commission_currency, :realized_pnl, :cum_qty,
            :avg_price, :order_ref, :exchange)""",
            {**asdict(e), "sec_type": sec_type, "multiplier": multiplier, "time_us": to_us(e.time)},
        )

    def executions(self, account: str | None, since: datetime | None) -> list[ExecutionInfo]:
        """Fills in time order, of one account or all, at or after ``since``."""
        where, args = ["1"], []
        if account is not None:
            where.append("account_id = ?")
            args.append(account)
        if since is not None:
            where.append("time_us >= ?")
            args.append(to_us(since))
        rows = self.conn.execute(
            f"SELECT * FROM executions WHERE {' AND '.join(where)} ORDER BY seq", args
        ).fetchall()
        return [_execution_info(r) for r in rows]

    def execution_rows_after(self, account: str, start: datetime) -> list[sqlite3.Row]:
        """The account's execution rows strictly after ``start`` (with sec_type, multiplier)."""
        return self.conn.execute(
            "SELECT * FROM executions WHERE account_id = ? AND time_us > ? ORDER BY seq",
            (account, to_us(start)),
        ).fetchall()

    def stock_volume(self, account: str, since: datetime) -> float:
        """Shares of stock the account traded at or after ``since``."""
        row = self.conn.execute(
            """SELECT coalesce(sum(shares), 0) FROM executions
            WHERE account_id = ? AND time_us >= ? AND sec_type = 'STK'""",
            (account, to_us(since)),
        ).fetchone()
        return float(row[0])

    def liquidity_taken(self, conid: int, side: str, at: datetime) -> float:
        """Units already taken from one side of the book in ``at``'s market minute; forgets
        minutes more than a day old."""
        minute = to_us(at) // 60_000_000
        row = self.conn.execute(
            "SELECT taken FROM liquidity WHERE conid = ? AND minute = ? AND side = ?",
            (conid, minute, side),
        ).fetchone()
        self.conn.execute("DELETE FROM liquidity WHERE minute < ?", (minute - _LIQUIDITY_MINUTES,))
        return row[0] if row else 0.0

    def take_liquidity(self, conid: int, side: str, at: datetime, taken: float) -> None:
        """Remember ``taken`` more units taken from one side of the book in ``at``'s minute."""
        self.conn.execute(
            """INSERT INTO liquidity VALUES (?, ?, ?, ?) ON CONFLICT (conid, minute, side)
            DO UPDATE SET taken = taken + excluded.taken""",
            (conid, to_us(at) // 60_000_000, side, taken),
        )


#: OrderInfo fields stored in the orders table under the same name
_ORDER_COLUMNS = (
    "order_id", "client_id", "account_id", "conid", "action", "quantity", "order_type",
    "limit_price", "stop_price", "tif", "order_ref", "parent_id", "status", "filled",
    "avg_fill_price", "last_fill_price", "commission", "message",
)  # fmt: skip
#: ExecutionInfo fields stored in the executions table under the same name
_EXECUTION_COLUMNS = (
    "exec_id", "order_id", "order_ref", "account_id", "conid", "side", "shares", "price",
    "commission", "commission_currency", "realized_pnl", "cum_qty", "avg_price",
)  # fmt: skip


def _order_info(r: sqlite3.Row) -> OrderInfo:
    return OrderInfo(
        **{c: r[c] for c in _ORDER_COLUMNS},
        perm_id=r["order_id"],
        outside_rth=bool(r["outside_rth"]),
        remaining=max(r["quantity"] - r["filled"], 0.0),
        time=from_us(r["created_us"]),
        updated=from_us(r["updated_us"]),
    )


def _execution_info(r: sqlite3.Row) -> ExecutionInfo:
    return ExecutionInfo(
        **{c: r[c] for c in _EXECUTION_COLUMNS},
        perm_id=r["order_id"],
        time=from_us(r["time_us"]),
        exchange=r["venue"],
    )
