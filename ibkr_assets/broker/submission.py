"""Submitting a batch of orders (the pipeline's ticket) through the order guard, each at most
once, whatever runs at the same time (:func:`submit_orders`).

Reconciliation and placement are one step: the account's order lock (shared by every process on
the data root) is held from reading what IB has of the account's orders — once, as a
:class:`~ibkr_assets.broker.known_orders.KnownOrders` snapshot — to the last placement, and each
order placed is added to that snapshot, so any number of simultaneous submissions send each
order once. An order is skipped when IB knows its exact ``order_ref`` (a rerun after a crash),
and also when IB has an order of the same batch (refs starting with the batch's prefix) for the
same symbol and side at another size: positions moved by partial fills change the sizes, and
with them the refs, but must never double the trade.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ibkr_assets.broker.errors import BrokerError, OrderRefused
from ibkr_assets.broker.guarded import GuardedBroker
from ibkr_assets.broker.known_orders import KnownOrders, fill_side
from ibkr_assets.broker.models import Order, OrderStatus

#: What became of an order: sent now; skipped because IB has its ref (as an order, or only as
#: fills) or another order of the batch on the same symbol and side; refused by the order guard;
#: rejected by IB.
Outcome = Literal[
    "placed", "already_sent", "same_side_sent", "already_executed", "refused", "rejected"
]


@dataclass(frozen=True)
class Submission:
    """One order of a batch and what became of it. ``order_id``, ``perm_id``, ``status``
    (IB's order status), ``filled`` (shares) and ``message`` are IB's; an order IB knows only
    from its fills reads ``Filled`` with the batch's quantity and no ids; a refused or rejected
    order has only the guard's or IB's ``message``."""

    order_ref: str
    symbol: str
    action: str
    quantity: float
    outcome: Outcome
    order_id: int | None = None
    perm_id: int | None = None
    status: str | None = None
    filled: float | None = None
    message: str | None = None


def already_sent(
    known: KnownOrders, order: Order, ref_prefix: str
) -> tuple[Outcome, OrderStatus | None] | None:
    """Why ``order`` must not be sent, with the order IB has (None when IB lists only fills),
    or None when IB has nothing of it: its exact ``order_ref`` first, then an order of the batch
    (``ref_prefix``) on the same symbol and side (the latest listed). An order IB lists wins
    over fills."""
    listed = known.order(order.order_ref)
    if listed is not None:
        return "already_sent", listed
    if known.fills(order.order_ref):
        return "already_executed", None
    symbol, action = order.contract.symbol, order.action

    def in_batch(ref: str) -> bool:
        return bool(ref) and ref.startswith(ref_prefix)

    latest_first = reversed([*known.completed_orders, *known.open_orders])
    same_side = (
        s
        for s in latest_first
        if in_batch(s.order_ref) and s.contract.symbol == symbol and s.action == action
    )
    listed = next(same_side, None)
    if listed is not None:
        return "same_side_sent", listed
    if any(
        in_batch(e.order_ref) and e.contract.symbol == symbol and fill_side(e) == action
        for e in known.executions
    ):
        return "already_executed", None
    return None


def submit_order(
    broker: GuardedBroker, known: KnownOrders, order: Order, ref_prefix: str
) -> Submission:
    """Send one order of a batch unless IB already has it (:func:`already_sent`), through the
    order guard, with the snapshot ``known`` of :meth:`GuardedBroker.account_lock` (held). A
    refusal or a rejection is recorded, not raised."""
    ref, symbol, action, quantity = (
        order.order_ref,
        order.contract.symbol,
        order.action,
        order.quantity,
    )
    skipped = already_sent(known, order, ref_prefix)
    if skipped is not None:
        outcome, status = skipped
    else:
        try:
            status = broker.place(order.model_copy(update={"account_id": known.account_id}), known)
        except OrderRefused as exc:
            return Submission(ref, symbol, action, quantity, "refused", message=str(exc))
        except BrokerError as exc:
            return Submission(ref, symbol, action, quantity, "rejected", message=str(exc))
        outcome = "placed"
    if status is None:  # IB knows the order only from its fills
        return Submission(
            ref, symbol, action, quantity, outcome, status="Filled", filled=quantity, message=""
        )
    return Submission(
        ref,
        symbol,
        action,
        quantity,
        outcome,
        order_id=status.order_id,
        perm_id=status.perm_id,
        status=status.status,
        filled=status.filled,
        message=status.message,
    )


def submit_orders(
    broker: GuardedBroker,
    orders: Sequence[Order],
    ref_prefix: str,
    account_id: str | None = None,
) -> list[Submission]:
    """Place each order IB has never seen, through the order guard, under the account's order
    lock (``account_id``; None: the configured or primary account); one :class:`Submission`
    per order, in order. ``ref_prefix``: the refs of this batch (e.g.
    ``ibkr-agent:2026-11-20:``), for the same-symbol-and-side rule."""
    with broker.account_lock(account_id) as known:
        return [submit_order(broker, known, order, ref_prefix) for order in orders]
