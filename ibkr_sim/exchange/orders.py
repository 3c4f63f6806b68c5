"""Orders as a client sends them and as the exchange keeps them, and the checks an order passes.

An order is described once, by :class:`OrderRequest` (MKT, LMT, STP, STP LMT; DAY or GTC), whoever
sends it: the in-process broker backend builds one from its ``Order``, the TWS-protocol gateway
from a ``placeOrder`` message. :class:`OrderInfo` is the order at the exchange with its place in
IB's status lifecycle, :class:`ExecutionInfo` one fill with its commission report.

**Rejections** raise :class:`~ibkr_spec.errors.IBError`: 321 for a malformed request (quantity not
positive, finite and whole, a limit order without a limit price, unknown action / type / tif),
110 for a price off the contract's tick, 200 for an unknown conId.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from ibkr_sim.universe import Instrument, Universe
from ibkr_spec.errors import INVALID_REQUEST, NO_SECURITY_DEFINITION, PRICE_INCREMENT, IBError

#: IB's "duplicate order id" error.
DUPLICATE_ORDER_ID = 103
ACTIONS = ("BUY", "SELL")
ORDER_TYPES = ("MKT", "LMT", "STP", "STP LMT")
TIFS = ("DAY", "GTC")
#: accepted and not done: held (PreSubmitted) or working (Submitted)
OPEN_STATUSES = ("PreSubmitted", "Submitted")
#: quantities (units) and prices closer than this are equal
EPS = 1e-9


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


class _IBAccountName:
    """IB calls the account field ``account``; the records keep ``account_id``."""

    account_id: str

    @property
    def account(self) -> str:
        """IB's name for the account field."""
        return self.account_id


@dataclass(frozen=True)
class OrderInfo(_IBAccountName):
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


@dataclass(frozen=True)
class ExecutionInfo(_IBAccountName):
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


def order_problem(req: OrderRequest) -> str:
    """What is wrong with the order's form (action, type, time in force, quantity), or ''.

    The checks that need no contract; the exchange answers a problem with 321, the gateway (as
    TWS does for an order it refuses before routing) with 201.
    """
    if req.action not in ACTIONS:
        return f"action {req.action!r} must be BUY or SELL"
    if req.order_type not in ORDER_TYPES:
        return f"order type {req.order_type!r} is not one of {', '.join(ORDER_TYPES)}"
    if req.tif not in TIFS:
        return f"time in force {req.tif!r} must be DAY or GTC"
    q = req.quantity
    if not (isinstance(q, int | float) and math.isfinite(q) and q > 0):
        return f"quantity {q!r} must be a positive finite number"
    return ""


def validate(req: OrderRequest, universe: Universe) -> Instrument:
    """The instrument ``req`` trades, once the request is well formed (see the module docstring
    for the IBError codes)."""

    def bad(reason: str) -> IBError:
        return IBError(INVALID_REQUEST, f"invalid order for conid {req.conid}: {reason}")

    problem = order_problem(req)
    if problem:
        raise bad(problem)
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
    inst = universe.by_conid(conid)
    q = req.quantity
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
