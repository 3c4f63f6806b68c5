"""A broker backend behind the order guard (:mod:`ibkr_assets.broker.guard`).

:func:`ibkr_assets.broker.connect` returns a :class:`GuardedBroker`: ``place`` and ``modify`` pass
every check of the guard under the account's order lock and send an ``order_ref`` IB already has
only once; ``cancel`` passes the read-only check; every read is the backend's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from ibkr_assets.broker.errors import OrderNotFound
from ibkr_assets.broker.guard import Assessment, OrderGuard
from ibkr_assets.broker.known_orders import KnownOrders
from ibkr_assets.broker.models import Order, OrderStatus
from ibkr_assets.broker.protocol import Broker


class GuardedBroker:
    """A backend behind the order guard: ``place`` and ``modify`` pass every check and the
    account lock, ``cancel`` passes the read-only check; everything else is the backend's own.
    """

    def __init__(self, inner: Broker, guard: OrderGuard) -> None:
        self.inner = inner
        self.guard = guard
        self.name = inner.name

    def __getattr__(self, attribute: str) -> Any:
        # Reads (quotes, history, accounts, ...) are the backend's own.
        return getattr(self.inner, attribute)

    def pinned(self, at: datetime) -> GuardedBroker:
        """The backend pinned to ``at`` (the simulator's backfills), still behind the guard."""
        pinned = getattr(self.inner, "pinned", None)
        return GuardedBroker(pinned(at), self.guard) if callable(pinned) else self

    def account_id(self, wanted: str | None = None) -> str:
        """The account an order for ``wanted`` (None = the configured or primary one) goes to."""
        return self.guard.account_for(self.inner, wanted)

    @contextmanager
    def account_lock(self, account_id: str | None = None) -> Iterator[KnownOrders]:
        """Hold the account's order lock and read what IB has of its orders once (reconcile,
        then place, as one step): yields that snapshot, for :meth:`place` to look orders up in
        while the lock is held."""
        account = self.account_id(account_id)
        with self.guard.account_lock(account).held():
            known = KnownOrders.read(self.inner, account)
            try:
                yield known
            finally:
                known.held = False

    def assess(self, order: Order) -> Assessment:
        """Every check, without sending (a preview): raises OrderRefused or says what passed."""
        return self.guard.assess(self.inner, order, count_daily=order.parent_id is None)

    def place(self, order: Order, known: KnownOrders | None = None) -> OrderStatus:
        """Send an order that passes the guard, once: an ``order_ref`` IB already has returns
        that order. ``known``: the snapshot of :meth:`account_lock` the caller holds (read
        anew under the lock when None). Raises OrderRefused (nothing sent) or the backend's
        errors; ValueError for a snapshot of another account or one no longer held."""
        account = self.account_id(order.account_id)
        with self.guard.account_lock(account).held():
            if known is not None and (not known.held or known.account_id != account):
                raise ValueError(
                    f"an order for {account} was given the order snapshot of {known.account_id}"
                    f"{'' if known.held else ' after its lock was released'}: pass the snapshot "
                    f"`with broker.account_lock({account!r}) as known` yields, inside that block"
                )
            if order.order_ref:
                known = known if known is not None else KnownOrders.read(self.inner, account)
                existing = known.find(order.order_ref)
                if existing is not None:
                    return existing
            assessment = self.assess(order.model_copy(update={"account_id": account}))
            status = self.inner.place(assessment.order)
            counted = assessment.notional if order.parent_id is None else 0.0
            self.guard.record(assessment, counted)
            if known is not None:
                known.add(status)
            return status

    def modify(
        self,
        order_id: int,
        quantity: float | None = None,
        limit_price: float | None = None,
        stop_price: float | None = None,
    ) -> OrderStatus:
        """Change an open order; the order as it would stand passes the guard as a new one."""
        current = self.open_order(order_id)
        changed = self.modified_order(current, quantity, limit_price, stop_price)
        with self.guard.account_lock(current.account_id).held():
            assessment = self.guard.assess(self.inner, changed, count_daily=True)
            status = self.inner.modify(
                order_id, quantity=quantity, limit_price=limit_price, stop_price=stop_price
            )
            self.guard.record(assessment, assessment.notional)
            return status

    def open_order(self, order_id: int) -> OrderStatus:
        """The open order with IB ``orderId`` ``order_id``, in any managed account."""
        for acct in self.inner.accounts():
            for o in self.inner.open_orders(acct.account_id):
                if o.order_id == order_id:
                    return o
        raise OrderNotFound(f"no open order with id {order_id} (filled, cancelled or unknown)")

    @staticmethod
    def modified_order(
        current: OrderStatus,
        quantity: float | None,
        limit_price: float | None,
        stop_price: float | None,
    ) -> Order:
        """The order as it would stand after a modify (IB: the same orderId, new fields)."""
        return Order(
            contract=current.contract,
            action=current.action,
            quantity=quantity if quantity is not None else current.quantity,
            order_type=current.order_type,
            limit_price=limit_price if limit_price is not None else current.limit_price,
            stop_price=stop_price if stop_price is not None else current.stop_price,
            tif=current.tif,
            account_id=current.account_id,
            order_ref=current.order_ref,
        )

    def cancel(self, order_id: int) -> OrderStatus:
        """Cancel an open order (refused only in read-only mode)."""
        self.guard.check_cancel()
        return self.inner.cancel(order_id)

    def close(self) -> None:
        self.inner.close()
