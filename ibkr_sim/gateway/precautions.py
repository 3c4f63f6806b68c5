"""TWS's precautionary settings: order size and value limits, checked before an order is placed.

TWS Global Configuration -> API -> Precautions, and the order Presets' "Size Limit" and "Total
Value Limit": when "Bypass Order Precautions for API Orders" is off, an API order above a limit
is rejected through the error callback (tws.md, "Orders", "Precautionary settings"). The code is
UNCERTAIN there (201 or 10xxx); we answer 201, whose "Order rejected - reason:" ends the order in
every client, with the precaution's text. The order never reaches the exchange. What-if orders
are not checked (they place nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ibkr_sim.exchange import OrderRequest
    from ibkr_sim.gateway.profile import RealismProfile
    from ibkr_sim.gateway.session import Session


def precaution_breaches(
    profile: RealismProfile,
    order: OrderRequest,
    inst: Any,
    described: str,
    market_price: Callable[[], float],
) -> dict[str, str]:
    """The precautionary limits ``order`` breaks, by kind ("size", "value"), each with TWS's text
    naming the order as ``described`` (tws.md, "Orders", "Precautionary settings"; the wording
    follows its "size exceeds the Size Limit of 500"). The order's value is taken at its limit or
    stop price, else at ``market_price()`` (the side it would meet), in the contract's currency.
    The TWS-protocol gateway rejects an order with the first; the Web API asks each as a reply
    question (o383 size, o451 value)."""
    out: dict[str, str] = {}
    if profile.max_order_size is not None and order.quantity > profile.max_order_size:
        out["size"] = (
            f"The following order {described} size exceeds the Size Limit of "
            f"{profile.max_order_size:.10g}."
        )
    if profile.max_order_value is not None:
        price = order.limit_price or order.stop_price or market_price()
        value = order.quantity * float(price) * inst.multiplier
        if value > profile.max_order_value:
            out["value"] = (
                f"The following order {described} value estimate of {value:,.2f} "
                f"{inst.currency} exceeds the Total Value Limit of "
                f"{profile.max_order_value:,.0f} {inst.currency}."
            )
    return out


def precaution_problem(s: Session, order: OrderRequest, inst: Any) -> str:
    """The precautionary-settings text TWS rejects ``order`` with, or ''."""

    def market_price() -> float:
        snap = s.state.market.snapshot(inst.conid, s.state.now())
        return float(snap.ask if order.action == "BUY" else snap.bid)

    described = f'"{order.action} {order.quantity:.10g} {inst.symbol}"'
    breaches = precaution_breaches(s.state.profile, order, inst, described, market_price)
    return next(iter(breaches.values()), "")
