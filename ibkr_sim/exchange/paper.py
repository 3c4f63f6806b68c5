"""The paper exchange: IB-like paper accounts, orders and fills over the simulated market.

:class:`PaperExchange` is composed of the state file (:mod:`~ibkr_sim.exchange.storage`), the
matcher (:mod:`~ibkr_sim.exchange.matching`) and the account arithmetic
(:mod:`~ibkr_sim.exchange.accounts`). Every public call is one transaction that first brings the
open orders up to the clock, then does its work.

**Rejections** raise :class:`~ibkr_spec.errors.IBError`: the order checks of
:mod:`~ibkr_sim.exchange.orders` (321, 110, 200), 321 for an unknown account, 201 when the
pre-trade margin check fails or the contract is not tradable (indices) - the rejected order is
recorded as ``Inactive`` with the reason, so it is still found by its ``order_ref`` - 103 for an
order id already used, and 10147 to cancel or modify an order that is unknown or done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from ibkr_sim.exchange import accounts, hours
from ibkr_sim.exchange.accounts import AccountInfo, AccountNumbers, PnLInfo, PositionInfo, WhatIf
from ibkr_sim.exchange.alerts import AlertBook
from ibkr_sim.exchange.hours import utc
from ibkr_sim.exchange.matching import Matcher
from ibkr_sim.exchange.orders import (
    EPS,
    OPEN_STATUSES,
    ExecutionInfo,
    OrderInfo,
    OrderRequest,
    validate,
)
from ibkr_sim.exchange.storage import DONE_STATUSES, Store, Tx
from ibkr_sim.exchange.watchlists import WatchlistBook
from ibkr_sim.market import SimMarket
from ibkr_sim.universe import Instrument
from ibkr_spec.errors import INVALID_REQUEST, ORDER_NOT_FOUND, ORDER_REJECTED, IBError


class PaperExchange:
    """Paper accounts, orders and fills over a :class:`SimMarket`, with their state in the SQLite
    file ``state_path`` (see :mod:`ibkr_sim.exchange`); ``participation`` caps the share of a
    minute's stock volume taken in that minute (partial fills; None: the displayed book only)."""

    def __init__(
        self,
        market: SimMarket,
        state_path: Path | str,
        clock: Callable[[], datetime] | None = None,
        participation: float | None = None,
    ) -> None:
        self.market = market
        self.state_path = Path(state_path)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._store = Store(self.state_path)
        self._matcher = Matcher(market, participation)
        #: the accounts' price alerts and the login's watchlists, kept in the same file
        self.alerts = AlertBook(self._store, market, self.now)
        self.watchlists = WatchlistBook(self._store, market.universe, self.now)

    def close(self) -> None:
        """Close this instance's connection (the state stays in the file)."""
        self._store.close()

    def now(self) -> datetime:
        """The exchange clock (UTC)."""
        return utc(self._clock())

    def _process(self, tx: Tx, at: datetime | None = None) -> datetime:
        """Bring every open order up to ``at`` (default: the clock); return ``at``."""
        at = self.now() if at is None else at
        self._matcher.process(tx, at)
        return at

    # -- accounts --------------------------------------------------------------------------
    def accounts(self) -> list[AccountInfo]:
        """The paper accounts, primary first."""
        with self._store.tx() as tx:
            return tx.accounts()

    def open_accounts(self, count: int) -> list[AccountInfo]:
        """At least ``count`` paper accounts (an advisor-style login's), primary first: the two
        seeded ones, then ``DU8000003``, ``DU8000004``... with USD 100,000 each."""
        with self._store.tx() as tx:
            have = tx.accounts()
            for n in range(len(have) + 1, count + 1):
                tx.add_account(f"DU8{n:06d}", False, "USD", f"Paper {n}", {"USD": 100_000.0})
            return tx.accounts()

    def summary(self, account: str) -> AccountNumbers:
        """IB's account summary (NetLiquidation, EquityWithLoanValue, margins, BuyingPower ...)."""
        with self._store.tx() as tx:
            at = self._process(tx)
            base = tx.base_currency(account)
            return accounts.valuation(self.market, tx.book(account), at, base)[0]

    def cash(self, account: str) -> dict[str, float]:
        """Cash ledger: currency -> amount (in that currency)."""
        with self._store.tx() as tx:
            self._process(tx)
            tx.base_currency(account)
            return dict(sorted(tx.book(account).cash.items()))

    def positions(self, account: str) -> list[PositionInfo]:
        """Open positions marked at the current price, with today's realized P&L."""
        with self._store.tx() as tx:
            at = self._process(tx)
            base = tx.base_currency(account)
            _, rows, _ = accounts.valuation(self.market, tx.book(account), at, base)
            today = tx.execution_rows_after(account, hours.day_start(at))
        realized = accounts.realized_by_conid(today)
        return [replace(p, realized_pnl=realized.get(p.conid, 0.0)) for p in rows]

    def pnl(self, account: str) -> PnLInfo:
        """Daily (since the previous session's close), unrealized and today's realized P&L."""
        with self._store.tx() as tx:
            at = self._process(tx)
            base = tx.base_currency(account)
            book = tx.book(account)
            today = tx.execution_rows_after(account, hours.day_start(at))
        return accounts.pnl(self.market, book, today, at, base)

    # -- orders: reads ---------------------------------------------------------------------
    def next_order_id(self) -> int:
        """The next order id the exchange will assign (IB nextValidId)."""
        with self._store.tx() as tx:
            return tx.next_order_id()

    def _orders(
        self, statuses: tuple[str, ...] | None, account: str | None, order_ref: str | None = None
    ) -> list[OrderInfo]:
        with self._store.tx() as tx:
            self._process(tx)
            if account is not None:
                tx.base_currency(account)
            return tx.orders(statuses, account, order_ref)

    def open_orders(self, account: str | None = None) -> list[OrderInfo]:
        """Working and held orders (PreSubmitted, Submitted), all accounts unless one is named."""
        return self._orders(OPEN_STATUSES, account)

    def completed_orders(self, account: str | None = None) -> list[OrderInfo]:
        """Filled, cancelled and rejected (Inactive) orders."""
        return self._orders(DONE_STATUSES, account)

    def order(self, order_id: int) -> OrderInfo:
        """One order by its exchange id (IBError 10147 when unknown)."""
        with self._store.tx() as tx:
            self._process(tx)
            return tx.order(order_id)

    def find_by_ref(self, account: str, order_ref: str) -> list[OrderInfo]:
        """Every order of ``account`` carrying ``order_ref`` (any status), oldest first: how the
        pipeline recognises an order it already sent."""
        return self._orders(None, account, order_ref)

    def executions(
        self, account: str | None = None, since: datetime | None = None
    ) -> list[ExecutionInfo]:
        """Fills in time order, of one account or all, at or after ``since``."""
        with self._store.tx() as tx:
            self._process(tx)
            if account is not None:
                tx.base_currency(account)
            return tx.executions(account, None if since is None else utc(since))

    # -- orders: writes --------------------------------------------------------------------
    def place(
        self, account: str, req: OrderRequest, client_id: int = 0, order_id: int | None = None
    ) -> OrderInfo:
        """Place an order; it fills at once as far as the book allows, the rest works or waits.

        Raises IBError 321 (malformed), 200 (unknown conId), 201 (rejected: recorded Inactive).
        """
        inst = validate(req, self.market.universe)
        with self._store.tx() as tx:
            at = self._process(tx)
            tx.base_currency(account)
            oid = tx.allocate_id(order_id)
            if req.parent_id is not None:
                tx.order(req.parent_id)
            warning = self._pre_trade(tx, account, req, inst, at)
            status = "Inactive" if warning else "PreSubmitted"
            expires = hours.expiry(self.market, inst, req, at)
            tx.insert_order(
                oid,
                client_id,
                account,
                inst.conid,
                req,
                status,
                self._month_volume(tx, account, inst, at),
                expires,
                warning,
                at,
            )
            if not warning:
                self._process(tx, at)
            info = tx.order(oid)
        if warning:
            raise IBError(ORDER_REJECTED, f"Order rejected - reason: {warning}")
        return info

    def cancel(self, order_id: int) -> OrderInfo:
        """Cancel an open order (its children too); IBError 10147 if unknown or already done."""
        with self._store.tx() as tx:
            at = self._process(tx)
            info = self._open(tx, order_id, "cancelled")
            tx.set_status([info.order_id], "Cancelled", "cancelled by request", at)
            children = tx.open_children(info.order_id)
            tx.set_status(children, "Cancelled", "parent order cancelled", at)
            return tx.order(order_id)

    def modify(
        self,
        order_id: int,
        quantity: float | None = None,
        limit_price: float | None = None,
        stop_price: float | None = None,
    ) -> OrderInfo:
        """Change an open order's quantity and/or prices (then it is matched again at once)."""
        with self._store.tx() as tx:
            at = self._process(tx)
            info = self._open(tx, order_id, "modified")
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
            validate(new, self.market.universe)
            if new.quantity < info.filled - EPS:
                raise IBError(
                    INVALID_REQUEST,
                    f"order {order_id}: quantity {new.quantity} is below the {info.filled} "
                    "already filled",
                )
            tx.amend(info.order_id, new.quantity, new.limit_price, new.stop_price, at)
            if new.quantity - info.filled <= EPS:
                tx.set_status([info.order_id], "Filled", "", at)
            self._process(tx, at)
            return tx.order(order_id)

    def what_if(self, account: str, req: OrderRequest) -> WhatIf:
        """Margin, equity and commission impact of ``req`` if it filled now; changes nothing."""
        inst = validate(req, self.market.universe)
        with self._store.tx() as tx:
            at = self._process(tx)
            base = tx.base_currency(account)
            return self._what_if(tx, account, base, req, inst, at)

    def process(self, at: datetime | None = None) -> None:
        """Match every open order against the book at ``at`` (default: the clock)."""
        with self._store.tx() as tx:
            self._process(tx, None if at is None else utc(at))

    # -- internals -------------------------------------------------------------------------
    @staticmethod
    def _open(tx: Tx, order_id: int, verb: str) -> OrderInfo:
        info = tx.order(order_id)
        if info.status not in OPEN_STATUSES:
            raise IBError(
                ORDER_NOT_FOUND,
                f"OrderId {order_id} that needs to be {verb} is not found (state: {info.status})",
            )
        return info

    @staticmethod
    def _month_volume(tx: Tx, account: str, inst: Instrument, at: datetime) -> float:
        """Stock shares traded this month (IB's commission tier); 0 for other instruments."""
        if inst.sec_type != "STK":
            return 0.0
        return tx.stock_volume(account, hours.month_start(at))

    def _pre_trade(
        self, tx: Tx, account: str, req: OrderRequest, inst: Instrument, at: datetime
    ) -> str:
        """The reason IB would reject the order at placement, or ''."""
        if inst.sec_type == "IND":
            return f"{inst.symbol} is an index and cannot be traded"
        base = tx.base_currency(account)
        check = self._what_if(tx, account, base, req, inst, at)
        return "" if check.accepted else check.warning

    def _what_if(
        self, tx: Tx, account: str, base: str, req: OrderRequest, inst: Instrument, at: datetime
    ) -> WhatIf:
        fills = self._matcher.expected_fills(req, inst, at)
        month = self._month_volume(tx, account, inst, at)
        return accounts.what_if(self.market, tx.book(account), base, req, inst, fills, month, at)
