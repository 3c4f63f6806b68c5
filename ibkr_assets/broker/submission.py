"""Submitting a batch of orders (the pipeline's ticket) through the order guard, each at most
once, whatever runs at the same time and whatever happens to the connection (:func:`submit_orders`).

Reconciliation and placement are one step: the account's order lock (shared by every process on
the data root) is held from reading what IB has of the account's orders — once, as a
:class:`~ibkr_assets.broker.known_orders.KnownOrders` snapshot — to the last placement, and each
order placed is added to that snapshot, so any number of simultaneous submissions send each
order once. An order is skipped when IB knows its exact ``order_ref`` (a rerun after a crash),
and also when IB has an order of the same batch (refs starting with the batch's prefix) for the
same symbol and side at another size: positions moved by partial fills change the sizes, and
with them the refs, but must never double the trade.

A placement that fails for any reason but the order guard's refusal leaves the order's fate
open: the connection may have dropped after IB took the order (``[IB 504] IB did not
acknowledge order N in time`` for an order IB in fact filled), or IB may have rejected it.
Nothing is reported until IB has been asked: the account's orders are read again (the tws
backend reconnects first) and the ``order_ref`` looked up among the open orders, the completed
orders and the executions. An order IB has is reported as IB has it (``placed``, with IB's
status and fills; ``rejected`` only when IB ended it unfilled); an order IB has nothing of
after a connection failure is sent once more (:data:`SEND_ATTEMPTS`), then reported
``not_sent``; when IB cannot be asked at all the outcome is ``unknown``. Either way a rerun
reconciles by ``order_ref`` first, so it sends what IB does not have, and nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ibkr_assets.broker.errors import BrokerError, OrderRefused, OrderRejected
from ibkr_assets.broker.guarded import GuardedBroker
from ibkr_assets.broker.known_orders import KnownOrders, fill_side
from ibkr_assets.broker.models import Order, OrderStatus

#: What became of an order: sent now; skipped because IB has its ref (as an order, or only as
#: fills) or another order of the batch on the same symbol and side; refused by the order guard;
#: rejected by IB; not at IB after every attempt failed (``not_sent``); or not known because IB
#: could not be asked after a failed placement (``unknown``).
Outcome = Literal[
    "placed",
    "already_sent",
    "same_side_sent",
    "already_executed",
    "refused",
    "rejected",
    "not_sent",
    "unknown",
]
#: Outcomes of an order that is at IB as the ticket says, sent now or by an earlier run.
SENT_OUTCOMES: frozenset[str] = frozenset(
    {"placed", "already_sent", "same_side_sent", "already_executed"}
)
#: Times an order IB has nothing of is placed in one batch: the first attempt, and one more
#: after a connection failure (never while IB might have it: only after IB was asked).
SEND_ATTEMPTS = 2
#: IB statuses of an order IB ended; with no fill, IB did not take it.
_ENDED_UNFILLED = frozenset({"Cancelled", "ApiCancelled", "Inactive"})


@dataclass(frozen=True)
class Submission:
    """One order of a batch and what became of it. ``order_id``, ``perm_id``, ``status``
    (IB's order status), ``filled`` (shares) and ``message`` are IB's; an order IB knows only
    from its fills reads ``Filled`` with the batch's quantity and no ids; a refused, rejected,
    unsent or unknown order has the guard's, IB's or the lookup's ``message``."""

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


def _submission(
    order: Order, outcome: Outcome, status: OrderStatus | None, message: str | None = None
) -> Submission:
    """The :class:`Submission` of ``order``: IB's ids and status from ``status``; an order IB
    knows only from its fills (``already_executed`` with no status) reads as filled."""
    head = (order.order_ref, order.contract.symbol, order.action, order.quantity, outcome)
    if status is not None:
        return Submission(
            *head,
            order_id=status.order_id,
            perm_id=status.perm_id,
            status=status.status,
            filled=status.filled,
            message=status.message if message is None else message,
        )
    if outcome == "already_executed":
        return Submission(*head, status="Filled", filled=order.quantity, message="")
    return Submission(*head, message=message)


def _send(broker: GuardedBroker, known: KnownOrders, order: Order) -> Submission:
    """Place ``order`` (IB has nothing of it); when the placement fails but for the guard's
    refusal, ask IB what it has under the ``order_ref`` before reporting (see the module
    docstring)."""
    ref = order.order_ref
    failure: BrokerError | None = None
    for _ in range(SEND_ATTEMPTS):
        try:
            status = broker.place(order.model_copy(update={"account_id": known.account_id}), known)
        except OrderRefused as exc:
            return _submission(order, "refused", None, str(exc))
        except BrokerError as exc:
            failure = exc
        else:
            return _submission(order, "placed", status)
        try:
            known.reread(broker.inner)
        except BrokerError as exc:
            return _submission(
                order,
                "unknown",
                None,
                f"placing it failed ({failure}) and IB could not be asked what it has under "
                f"{ref} ({exc}): rerun the submission once IB answers; it looks the order up "
                "by order_ref first and sends it only if IB has nothing of it",
            )
        found = known.find(ref)
        if found is not None:
            taken = found.filled > 0 or found.status not in _ENDED_UNFILLED
            said = f"; IB: {found.message}" if found.message else ""
            return _submission(
                order,
                "placed" if taken else "rejected",
                found,
                f"IB has it under its order_ref, {found.status} with {found.filled:g} filled "
                f"(placing it had failed: {failure}){said}",
            )
        if isinstance(failure, OrderRejected):
            return _submission(order, "rejected", None, str(failure))
    return _submission(
        order,
        "not_sent",
        None,
        f"IB has no order and no fill under {ref} after {SEND_ATTEMPTS} attempts, the last "
        f"failing with: {failure}; rerun the submission to send it",
    )


def submit_order(
    broker: GuardedBroker, known: KnownOrders, order: Order, ref_prefix: str
) -> Submission:
    """Send one order of a batch unless IB already has it (:func:`already_sent`), through the
    order guard, with the snapshot ``known`` of :meth:`GuardedBroker.account_lock` (held). A
    refusal, a rejection or a failed placement is recorded, not raised, once IB has been asked
    what it has under the ``order_ref``."""
    skipped = already_sent(known, order, ref_prefix)
    if skipped is not None:
        outcome, status = skipped
        return _submission(order, outcome, status)
    return _send(broker, known, order)


def submit_orders(
    broker: GuardedBroker,
    orders: Sequence[Order],
    ref_prefix: str,
    account_id: str | None = None,
) -> list[Submission]:
    """Place each order IB has never seen, through the order guard, under the account's order
    lock (``account_id``; None: the configured or primary account); one :class:`Submission`
    per order, in order. ``ref_prefix``: the refs of this batch (e.g.
    ``ibkr-agent:2026-11-20:``), for the same-symbol-and-side rule. Raises the backend's
    BrokerError only when the account's orders cannot be read before the first placement
    (nothing was sent)."""
    with broker.account_lock(account_id) as known:
        return [submit_order(broker, known, order, ref_prefix) for order in orders]
