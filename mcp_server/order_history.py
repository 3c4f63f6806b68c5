"""Order lookups of the ``trading`` category: one order's status by id, and today's completed
orders.

``open_orders`` and ``executions`` (:mod:`mcp_server.trading`) show what can still fill and the
fills; these two answer "what became of order 12?" whether it is still working or done (IB
Client Portal ``/iserver/account/order/status/{orderId}``; over TWS the open and completed
orders), and list the orders finished today: filled, cancelled or inactive with IB's reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from mcp.server.mcpserver import Context
from pydantic import Field

from ibkr_assets.broker.models import OrderStatus
from mcp_server.context import add_tool, call_broker
from mcp_server.portfolio import AccountId, account_for
from mcp_server.trading import CATEGORY, OrderList

if TYPE_CHECKING:
    from mcp_server.app import IBKRServer


async def order_status(
    ctx: Context, order_id: Annotated[int, Field(ge=0, description="IB orderId")]
) -> OrderStatus:
    """Where one of today's orders is (Submitted, Filled, Cancelled, Inactive...), its fills
    so far and IB's message, whether it is still open or done, in any managed account.

    Examples:
        order_status(order_id=12) -> {"order_id": 12, "status": "Filled", "filled": 5.0,
                                      "remaining": 0.0, "avg_fill_price": 411.2, ...}
    """
    return await call_broker(ctx, lambda b: b.order_status(order_id))


async def completed_orders(ctx: Context, account_id: AccountId = None) -> OrderList:
    """Today's orders that are done: filled, cancelled or inactive (with IB's reason).

    Examples:
        completed_orders()
    """
    acct = account_for(ctx, account_id)
    return OrderList(orders=await call_broker(ctx, lambda b: b.completed_orders(acct)))


def register(server: IBKRServer) -> None:
    """Add these read tools to the ``trading`` category."""
    for fn in (order_status, completed_orders):
        add_tool(server, fn, CATEGORY)
