"""Price-alert tools: list, create and delete the alerts IB keeps for an account.

An alert triggers once a contract's last price crosses a threshold (IB Client Portal
``/iserver/account/{accountId}/alert``); it places no order. IB offers alerts only through the
Client Portal Web API: on the ``tws`` backend these tools answer that alerts are not available
there (:class:`~mcp_server.context.NotAvailable`). Creating or deleting an alert changes the
account's state at IB, so in read-only mode (``IBKR_READONLY=true``) both are refused before
anything reaches IB, as orders and cancels are; the kill switch, which stops trading, does not
block them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from ibkr_assets.broker import GuardedBroker
from ibkr_assets.broker.models import PriceAlert
from mcp_server.context import add_tool, call_broker, resolve
from mcp_server.portfolio import AccountId, account_for
from mcp_server.reference import SecTypeParam, Symbol
from mcp_server.safety import TradingRefused

if TYPE_CHECKING:
    from mcp_server.app import IBKRServer

CATEGORY = "alerts"

AlertId = Annotated[int, Field(ge=0, description="IB alert id (alert_id of list_alerts)")]


class AlertList(BaseModel):
    """Price alerts of one account, active or not."""

    alerts: list[PriceAlert]


class AlertDeleted(BaseModel):
    """An alert IB no longer keeps."""

    alert_id: int
    deleted: bool = True


def refuse_in_readonly(b: GuardedBroker, change: str) -> None:
    """Raise TradingRefused when the broker is read-only (``IBKR_READONLY``): ``change`` (e.g.
    "create a price alert") would change the account's state at IB."""
    if b.guard.settings.readonly:
        raise TradingRefused(
            f"read-only mode (IBKR_READONLY=true): cannot {change}, which changes the account at "
            "IB; nothing was sent. Turn read-only mode off to change alerts."
        )


async def list_alerts(ctx: Context, account_id: AccountId = None) -> AlertList:
    """The account's price alerts (IB Client Portal alerts), with their condition, threshold
    and whether they are active or have triggered.

    Examples:
        list_alerts() -> {"alerts": [{"alert_id": 7, "name": "AAPL above 200",
                                      "condition": ">=", "price": 200.0, "active": true, ...}]}
    """
    acct = account_for(ctx, account_id)
    return AlertList(alerts=await call_broker(ctx, lambda b: b.alerts(acct)))


async def create_alert(
    ctx: Context,
    symbol: Symbol,
    condition: Annotated[
        Literal[">=", "<="],
        Field(description="trigger when the last price is >= (rises to) or <= (falls to) price"),
    ],
    price: Annotated[
        float, Field(gt=0, allow_inf_nan=False, description="threshold, contract's currency")
    ],
    name: Annotated[
        str, Field(max_length=100, description="the alert's name; empty: IB's default")
    ] = "",
    sec_type: SecTypeParam = "STK",
    account_id: AccountId = None,
) -> PriceAlert:
    """Create an active price alert on a contract's last price. It only notifies: no order is
    placed. Refused in read-only mode.

    Examples:
        create_alert(symbol="AAPL", condition=">=", price=200.0, name="AAPL above 200")
        create_alert(symbol="EUR.USD", sec_type="CASH", condition="<=", price=1.05)
    """
    acct = account_for(ctx, account_id)

    def run(b: GuardedBroker) -> PriceAlert:
        refuse_in_readonly(b, "create a price alert")
        return b.create_alert(resolve(b, symbol, sec_type), condition, price, name, acct)

    return await call_broker(ctx, run)


async def delete_alert(
    ctx: Context, alert_id: AlertId, account_id: AccountId = None
) -> AlertDeleted:
    """Delete a price alert by its id (from list_alerts). Refused in read-only mode.

    Examples:
        delete_alert(alert_id=7)
    """
    acct = account_for(ctx, account_id)

    def run(b: GuardedBroker) -> AlertDeleted:
        refuse_in_readonly(b, "delete a price alert")
        b.delete_alert(alert_id, acct)
        return AlertDeleted(alert_id=alert_id)

    return await call_broker(ctx, run)


def register(server: IBKRServer) -> None:
    """Add this category's tools to the server (alerts place no orders: they exist whether
    trading is on or not)."""
    add_tool(server, list_alerts, CATEGORY)
    add_tool(server, create_alert, CATEGORY, read_only=False)
    add_tool(server, delete_alert, CATEGORY, read_only=False, destructive=True)
