"""A session's orders as the broker sees them: what the order alerts and summaries report.

The daily run writes the order ticket (``reports/order_ticket_<day>.json``: every order queued,
with its notional at the mid) and, with auto-submit on, the submission report
(``reports/submitted_orders_<day>.json``: one row per ticket order with its ``outcome`` —
``placed``, ``already_sent``, ``same_side_sent``, ``already_executed``, ``rejected`` by IB,
``refused`` by the order guard, ``not_sent`` (IB had nothing of it after every placement failed)
or ``unknown`` (IB could not be asked after a placement failed) — and IB's order id, permId and
message). What happened next
is only at the broker: :func:`session_orders` joins each submitted order to the broker's order
(by ``order_ref``, or by permId for an order the broker already held under another ref) and to
its executions, and :class:`SessionOrder` says where it stands:

=====================  ======================================================================
``filled``             every share executed
``partially_filled``   some shares executed (still working, or the rest cancelled)
``working``            accepted by IB, nothing executed yet (PreSubmitted / Submitted)
``cancelled``          cancelled or made Inactive by IB after it was accepted, nothing executed
``rejected``           never accepted: rejected by IB at placement, refused by the guard, or
                       not sent (every placement failed and IB had nothing of it)
``unknown``            the broker does not report it: no longer (IB keeps completed orders for
                       a day), or never, for an order whose fate the submission could not learn
=====================  ======================================================================

Values are in USD: ordered value = shares × the ticket's mid (the value the ticket queued);
executed value = Σ shares × price × multiplier over the order's executions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from ibkr_assets.broker.models import DONE_STATUSES, Execution, OrderStatus

OrderState = Literal["filled", "partially_filled", "working", "cancelled", "rejected", "unknown"]

#: Submission outcomes where the order never became an order at IB, with the status a
#: :class:`SessionOrder` reads for it (IB has none).
NOT_ACCEPTED: dict[str, str] = {"rejected": "Rejected", "refused": "Refused", "not_sent": "NotSent"}
#: The outcome of an order whose fate the submission could not learn (IB could not be asked).
FATE_UNKNOWN = "unknown"
#: Submission outcomes alerted as soon as the submission is recorded, once per order: the
#: orders not at IB as the ticket says, or not known to be.
ALERTED_AT_SUBMISSION = frozenset({*NOT_ACCEPTED, FATE_UNKNOWN})
#: The status of an order the broker does not report.
UNREPORTED = "Unknown"
#: IB statuses that end an order without (all of) its fills.
CANCELLED_STATUSES = frozenset({"Cancelled", "ApiCancelled", "Inactive"})
#: Shares below which an order counts as fully executed (float noise).
_SHARES_EPS = 1e-9

#: The rows of a summary, in order, with their labels.
SUMMARY_ROWS: dict[str, str] = {
    "queued": "queued (ticket)",
    "submitted": "submitted to IB",
    "filled": "filled",
    "partially_filled": "partially filled",
    "working": "working",
    "rejected_cancelled": "rejected / cancelled",
    "unknown": "not reported by IB",
}


@dataclass(frozen=True)
class SessionOrder:
    """One submitted order of a session and where it stands at the broker.

    ``quantity`` and ``filled`` are shares; ``price`` is the USD per share the ticket valued the
    order at (its mid); ``fill_value`` is the executed value in USD; ``status`` is IB's order
    status (``Rejected`` / ``Refused`` / ``NotSent`` for an order IB never accepted, ``Unknown``
    when the broker does not report it); ``message`` is IB's reason, the guard's refusal or
    why the submission could not place it."""

    order_ref: str
    symbol: str
    action: str
    quantity: float
    price: float
    outcome: str
    status: str
    filled: float
    fill_value: float
    message: str

    @property
    def state(self) -> OrderState:
        """Where the order stands (see the module docstring)."""
        if self.outcome in NOT_ACCEPTED:
            return "rejected"
        if self.filled >= self.quantity - _SHARES_EPS:
            return "filled"
        if self.filled > 0:
            return "partially_filled"
        if self.status in CANCELLED_STATUSES:
            return "cancelled"
        if self.status == UNREPORTED:
            return "unknown"
        return "working"

    @property
    def is_done(self) -> bool:
        """True once the order can no longer change (filled, cancelled, rejected)."""
        return self.state in ("filled", "rejected", "cancelled") or self.status in DONE_STATUSES

    @property
    def ended_unfilled(self) -> bool:
        """True when IB (or the guard) ended the order before all of it executed: the orders
        an alert names."""
        return self.outcome in NOT_ACCEPTED or (
            self.status in CANCELLED_STATUSES and self.filled < self.quantity - _SHARES_EPS
        )

    @property
    def at_ib(self) -> bool:
        """True when the order went to IB: sent, or (fate unknown at submission) reported by
        IB since."""
        if self.outcome == FATE_UNKNOWN:
            return self.status != UNREPORTED
        return self.outcome not in NOT_ACCEPTED

    @property
    def value(self) -> float:
        """Ordered value in USD (shares × the ticket's mid)."""
        return self.quantity * self.price

    @property
    def unfilled_value(self) -> float:
        """Value in USD of the shares not executed."""
        return max(self.quantity - self.filled, 0.0) * self.price

    def describe(self) -> str:
        """``BUY 1,000 AAPL`` — the order as a trader names it."""
        return f"{self.action} {shares(self.quantity)} {self.symbol}"

    @property
    def label(self) -> str:
        """The state in words (a guard refusal and an order not sent named as such)."""
        if self.outcome in ("refused", "not_sent"):
            return self.outcome.replace("_", " ")
        return self.state.replace("_", " ")


def shares(quantity: float) -> str:
    """A share count as a trader writes it: ``1,000``, or ``0.5`` for a fraction."""
    return f"{quantity:,.0f}" if float(quantity).is_integer() else f"{quantity:,g}"


@dataclass(frozen=True)
class Tally:
    """A count of orders and their value in USD."""

    orders: int
    value: float


def _ticket_prices(ticket: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """USD per share of each ticket order (its notional over its quantity), by order_ref."""
    return {
        str(row["order_ref"]): float(row["notional"]) / float(row["quantity"])
        for row in ticket
        if row.get("notional") is not None and float(row.get("quantity") or 0) > 0
    }


def _latest(statuses: Iterable[OrderStatus]) -> dict[Any, OrderStatus]:
    out: dict[Any, OrderStatus] = {}
    for status in sorted(statuses, key=lambda s: s.time):
        if status.order_ref:
            out[status.order_ref] = status
        if status.perm_id:
            out[("perm", status.perm_id)] = status
    return out


def session_orders(
    submitted: Sequence[Mapping[str, Any]],
    ticket: Sequence[Mapping[str, Any]],
    statuses: Iterable[OrderStatus],
    executions: Iterable[Execution],
) -> list[SessionOrder]:
    """Each submitted order (rows of the submission report) with its state at the broker.

    ``statuses`` are the broker's open and completed orders, ``executions`` its fills; both may
    cover other sessions (only the submitted orders' refs and permIds are looked at)."""
    known = _latest(statuses)
    prices = _ticket_prices(ticket)
    fills = list(executions)
    orders = []
    for row in submitted:
        ref = str(row["order_ref"])
        perm = row.get("perm_id")
        status = known.get(ref) or (known.get(("perm", int(perm))) if perm else None)
        refs = {ref} | ({status.order_ref} if status and status.order_ref else set())
        perms = {int(perm)} if perm else set()
        if status and status.perm_id:
            perms.add(status.perm_id)
        own = [f for f in fills if f.order_ref in refs or (f.perm_id and f.perm_id in perms)]
        shares = sum(f.shares for f in own)
        value = sum(f.shares * f.price * f.contract.multiplier for f in own)
        quantity = status.quantity if status else float(row["quantity"])
        if status and status.filled > shares:  # fills IB reports on the order but not (yet) here
            value += (status.filled - shares) * (status.avg_fill_price or 0.0)
            shares = status.filled
        outcome = str(row["outcome"])
        state = status.status if status else NOT_ACCEPTED.get(outcome, UNREPORTED)
        message = (status.message if status else "") or str(row.get("message") or "")
        if outcome in NOT_ACCEPTED:
            message = str(row.get("message") or "") or message
        orders.append(
            SessionOrder(
                order_ref=ref,
                symbol=str(row["symbol"]),
                action=str(row["action"]),
                quantity=float(quantity),
                price=prices.get(ref) or (status.limit_price if status else None) or 0.0,
                outcome=outcome,
                status=state,
                filled=float(shares),
                fill_value=float(value),
                message=message,
            )
        )
    return orders


def tallies(
    ticket: Sequence[Mapping[str, Any]], orders: Sequence[SessionOrder]
) -> dict[str, Tally]:
    """Counts and USD values of :data:`SUMMARY_ROWS`: queued = the ticket at its notional;
    submitted = orders that went to IB (:attr:`SessionOrder.at_ib`), at their ordered value;
    filled and partially filled at their executed value; working at ordered value; rejected /
    cancelled at the value not executed."""
    by_state: dict[str, list[SessionOrder]] = {}
    for order in orders:
        by_state.setdefault(order.state, []).append(order)

    def tally(rows: Sequence[SessionOrder], value: str) -> Tally:
        return Tally(len(rows), float(sum(getattr(o, value) for o in rows)))

    ended = by_state.get("rejected", []) + by_state.get("cancelled", [])
    return {
        "queued": Tally(len(ticket), float(sum(float(r.get("notional") or 0) for r in ticket))),
        "submitted": tally([o for o in orders if o.at_ib], "value"),
        "filled": tally(by_state.get("filled", []), "fill_value"),
        "partially_filled": tally(by_state.get("partially_filled", []), "fill_value"),
        "working": tally(by_state.get("working", []), "value"),
        "rejected_cancelled": tally(ended, "unfilled_value"),
        "unknown": tally(by_state.get("unknown", []), "value"),
    }


def summary_text(
    ticket: Sequence[Mapping[str, Any]], orders: Sequence[SessionOrder], at: datetime
) -> str:
    """The summary an operator reads: a table of :func:`tallies`, then every order not simply
    filled or working, with IB's reason."""
    counts = tallies(ticket, orders)
    lines = [
        f"as IB reports them at {at.astimezone(UTC):%Y-%m-%d %H:%M} UTC",
        f"{'':<22}{'orders':>7}{'value USD':>15}",
    ]
    for key, label in SUMMARY_ROWS.items():
        t = counts[key]
        if key == "unknown" and not t.orders:
            continue
        lines.append(f"{label:<22}{t.orders:>7}{t.value:>15,.2f}")
    notes = [
        f"- {o.describe()} ({o.order_ref}) {o.label}: "
        + (
            f"{shares(o.filled)} of {shares(o.quantity)} filled, {o.status}"
            if o.state == "partially_filled"
            else o.status
        )
        + (f" — {o.message}" if o.message else "")
        for o in orders
        if o.state in ("partially_filled", "cancelled", "rejected", "unknown")
    ]
    return "\n".join(lines + (["", *notes] if notes else []))
