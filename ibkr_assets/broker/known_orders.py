"""What IB already has of one account's orders: its open orders, the orders done today and the
fills, read in one go under the account's order lock (:class:`KnownOrders`).

:class:`~ibkr_assets.broker.guarded.GuardedBroker` looks an order's ``order_ref`` up here before
sending it, so an order IB already has is never sent twice; a caller that places a whole batch
(:mod:`ibkr_assets.broker.submission`) reads the snapshot once and keeps it current by adding
each order it places, and reads it again (:meth:`KnownOrders.reread`) after a placement whose
fate is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ibkr_assets.broker.models import Execution, OrderStatus
from ibkr_assets.broker.protocol import Broker


def fill_side(execution: Execution) -> str:
    """The order side (``BUY``/``SELL``) of a fill (IB's ``BOT``/``SLD``)."""
    return "BUY" if execution.side == "BOT" else "SELL"


def _as_status(order_ref: str, executions: list[Execution]) -> OrderStatus:
    """The fills of an order IB no longer lists as an order, as its (filled) status."""
    first = executions[0]
    shares = sum(e.shares for e in executions)
    return OrderStatus(
        order_id=first.order_id,
        perm_id=first.perm_id,
        account_id=first.account_id,
        contract=first.contract,
        action=fill_side(first),  # type: ignore[arg-type]
        quantity=shares,
        order_type="MKT",
        order_ref=order_ref,
        status="Filled",
        filled=shares,
        remaining=0.0,
        avg_fill_price=sum(e.shares * e.price for e in executions) / shares,
        time=max(e.time for e in executions),
    )


@dataclass
class KnownOrders:
    """One account's orders as IB lists them at one moment: open (and, once added, those placed
    since), completed today, and the fills. Valid only while ``held`` — while the account's
    order lock is held, so no other sender can add to the account in between."""

    account_id: str
    open_orders: list[OrderStatus]
    completed_orders: list[OrderStatus]
    executions: list[Execution]
    held: bool = field(default=True, compare=False)

    @classmethod
    def read(cls, broker: Broker, account_id: str) -> KnownOrders:
        """The account's open orders, completed orders and fills, from ``broker`` (3 calls)."""
        return cls(
            account_id=account_id,
            open_orders=list(broker.open_orders(account_id)),
            completed_orders=list(broker.completed_orders(account_id)),
            executions=list(broker.executions(account_id)),
        )

    def reread(self, broker: Broker) -> None:
        """Read the account's orders again from ``broker``, into this snapshot (the one the
        caller holds with the lock): after a placement whose fate is unknown (a dropped
        connection, a timeout), what IB now has. Raises the backend's BrokerError when IB
        cannot be asked; ValueError once the lock is released."""
        if not self.held:
            raise ValueError(
                f"the order snapshot of {self.account_id} was read again after its lock was "
                "released: read it inside the `with broker.account_lock(...)` block"
            )
        fresh = KnownOrders.read(broker, self.account_id)
        self.open_orders = fresh.open_orders
        self.completed_orders = fresh.completed_orders
        self.executions = fresh.executions

    @property
    def orders(self) -> list[OrderStatus]:
        """Every order IB lists: the open ones first, then the completed ones."""
        return [*self.open_orders, *self.completed_orders]

    def order(self, order_ref: str) -> OrderStatus | None:
        """The order listed under ``order_ref`` (an open one before a completed one)."""
        if not order_ref:
            return None
        return next((s for s in self.orders if s.order_ref == order_ref), None)

    def fills(self, order_ref: str) -> list[Execution]:
        """The fills of the order ``order_ref`` (none for an empty ref)."""
        if not order_ref:
            return []
        return [e for e in self.executions if e.order_ref == order_ref]

    def find(self, order_ref: str) -> OrderStatus | None:
        """The order IB already has under ``order_ref``: listed as an order, or only as fills
        (then as its filled status); None for an empty ref or one IB does not know."""
        status = self.order(order_ref)
        if status is not None:
            return status
        fills = self.fills(order_ref)
        return _as_status(order_ref, fills) if fills else None

    def add(self, status: OrderStatus) -> None:
        """Record an order just placed, so the snapshot stays what IB now has."""
        self.open_orders.append(status)
