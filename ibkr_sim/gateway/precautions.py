"""TWS's precautionary settings: order size and value limits, checked before an order is placed.

TWS Global Configuration -> API -> Precautions, and the order Presets' "Size Limit" and "Total
Value Limit": when "Bypass Order Precautions for API Orders" is off, an API order above a limit
is rejected through the error callback (tws.md, "Orders", "Precautionary settings"). The code is
UNCERTAIN there (201 or 10xxx); we answer 201, whose "Order rejected - reason:" ends the order in
every client, with the precaution's text. The order never reaches the exchange. What-if orders
are not checked (they place nothing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ibkr_sim.exchange import OrderRequest
    from ibkr_sim.gateway.session import Session


def precaution_problem(s: Session, order: OrderRequest, inst: Any) -> str:
    """The precautionary-settings text TWS rejects ``order`` with, or '' (tws.md, "Orders",
    "Precautionary settings"; the wording follows its "size exceeds the Size Limit of 500")."""
    profile = s.state.profile
    described = f'"{order.action} {order.quantity:g} {inst.symbol}"'
    if profile.max_order_size is not None and order.quantity > profile.max_order_size:
        return (
            f"The following order {described} size exceeds the Size Limit of "
            f"{profile.max_order_size:g}."
        )
    if profile.max_order_value is None:
        return ""
    price = order.limit_price or order.stop_price
    if price is None:
        snap = s.state.market.snapshot(inst.conid, s.state.now())
        price = snap.ask if order.action == "BUY" else snap.bid
    value = order.quantity * float(price) * inst.multiplier
    if value > profile.max_order_value:
        return (
            f"The following order {described} value estimate of {value:,.2f} {inst.currency} "
            f"exceeds the Total Value Limit of {profile.max_order_value:,.0f} {inst.currency}."
        )
    return ""
