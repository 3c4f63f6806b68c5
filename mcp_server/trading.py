"""Trading tools: preview (what-if), place, cancel, modify, live orders and executions.

Every order passes the broker layer's order guard (:mod:`ibkr_assets.broker.guard`) with the
server's limits (``IBKR_MCP_*``). ``preview_order`` runs the guard's checks and IB's what-if
(initial/maintenance margin change, commission, share of net liquidation) and, when both pass,
hands back a confirmation token bound to that exact order for 120 s (:mod:`mcp_server.safety`);
``place_order`` needs that token and a reason, which is written to the MCP order log. A change to
an open order is a new order for the guard: ``preview_modify`` then ``modify_order`` with its
token. With ``IBKR_MCP_TRADING`` off, ``place_order``, ``cancel_order``, ``preview_modify`` and
``modify_order`` are not registered at all. A bracket is a parent (market or limit) with a
take-profit limit and a stop-loss stop, both on the opposite side, as IB's bracket orders.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ibkr_assets.broker import GuardedBroker
from ibkr_assets.broker.errors import InvalidOrder
from ibkr_assets.broker.guard import Assessment
from ibkr_assets.broker.models import (
    Execution,
    Order,
    OrderStatus,
    OrderType,
    TimeInForce,
    WhatIfResult,
)
from mcp_server.context import add_tool, call_broker, resolve, state
from mcp_server.portfolio import AccountId, account_for
from mcp_server.safety import TradingRefused

if TYPE_CHECKING:
    from mcp_server.app import IBKRServer

CATEGORY = "trading"

Price = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Reason = Annotated[
    str, Field(min_length=3, max_length=500, description="why: recorded in the audit log")
]


class OrderRequest(BaseModel):
    """An order as an assistant states it. The confirmation token is bound to these fields."""

    model_config = ConfigDict(extra="forbid")

    symbol: str = Field(min_length=1, max_length=32, description="ticker or numeric conId")
    action: Literal["BUY", "SELL"]
    quantity: float = Field(gt=0, allow_inf_nan=False, description="shares / contracts")
    order_type: OrderType = "MKT"
    limit_price: Price | None = Field(None, description="for LMT and STP LMT (IB lmtPrice)")
    stop_price: Price | None = Field(None, description="for STP and STP LMT (IB auxPrice)")
    tif: TimeInForce = "DAY"
    sec_type: Literal["STK", "ETF", "OPT", "CASH", "FUT"] = "STK"
    account_id: str | None = Field(None, max_length=32, description="omit for primary/selected")
    client_order_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.:-]{1,40}$",
        description="your idempotency key: an order with the same key is never sent twice "
        "(becomes IB orderRef mcp-<key>)",
    )
    take_profit: Price | None = Field(None, description="bracket: take-profit limit price")
    stop_loss: Price | None = Field(None, description="bracket: stop-loss stop price")

    @model_validator(mode="after")
    def _bracket(self) -> OrderRequest:
        if (self.take_profit is None) != (self.stop_loss is None):
            raise ValueError("a bracket needs both take_profit and stop_loss")
        if self.take_profit is not None and self.order_type not in ("MKT", "LMT"):
            raise ValueError("a bracket's parent must be MKT or LMT")
        if self.take_profit is not None and self.stop_loss is not None:
            low, high = (
                (self.stop_loss, self.take_profit)
                if self.action == "BUY"
                else (self.take_profit, self.stop_loss)
            )
            if low >= high:
                raise ValueError(
                    "bracket prices are inverted: a BUY needs stop_loss < take_profit, "
                    "a SELL needs take_profit < stop_loss"
                )
        return self


#: The fields of an order request that the broker order takes over unchanged, by name.
ORDER_FIELDS = frozenset({"action", "quantity", "order_type", "limit_price", "stop_price", "tif"})


#: What a preview shows of IB's what-if (:class:`WhatIfResult`), by the same names.
WHAT_IF_FIELDS = (
    "init_margin_change",
    "maint_margin_change",
    "excess_liquidity_after",
    "commission",
    "accepted",
    "warning",
)


class Checked(BaseModel):
    """What an order would do once it passed the order guard and IB's what-if, and the token
    that lets it be sent."""

    account_id: str
    reference_price: float = Field(
        description="price used for the caps: the higher of the order's prices and the market"
    )
    notional: float = Field(description="quantity x price x multiplier, account currency")
    share_of_net_liq: float
    init_margin_change: float
    maint_margin_change: float
    excess_liquidity_after: float
    commission: float
    accepted: bool = Field(description="False if IB would reject it (see warning)")
    warning: str
    confirmation_token: str = Field(description="pass back with the very same request")
    expires_at: datetime

    @classmethod
    def of(
        cls, checked: Assessment, w: WhatIfResult, token: str, ttl: float, **fields: Any
    ) -> Self:
        """The preview of an order the guard assessed and IB what-if'ed, with its token."""
        return cls(
            account_id=checked.account_id,
            reference_price=checked.reference_price,
            notional=checked.notional,
            share_of_net_liq=checked.share_of_net_liquidation,
            **{name: getattr(w, name) for name in WHAT_IF_FIELDS},
            confirmation_token=token,
            expires_at=datetime.now(UTC) + timedelta(seconds=ttl),
            **fields,
        )


class Preview(Checked):
    """A new order: what it would do, and the token ``place_order`` needs."""

    order: OrderRequest


class Placed(BaseModel):
    """The orders sent (one, or three for a bracket)."""

    orders: list[OrderStatus]


class OrderList(BaseModel):
    """Orders of the account."""

    orders: list[OrderStatus]


class ExecutionList(BaseModel):
    """Fills with commissions."""

    executions: list[Execution]


def _parent_order(b: GuardedBroker, req: OrderRequest, order_ref: str = "") -> Order:
    """The (parent) broker order an order request stands for, in its account."""
    c = resolve(b, req.symbol, req.sec_type)
    try:
        return Order(
            contract=c,
            **req.model_dump(include=ORDER_FIELDS),
            account_id=b.account_id(req.account_id),
            order_ref=order_ref,
        )
    except InvalidOrder as exc:
        raise ToolError(str(exc)) from None


def _bracket_exits(req: OrderRequest, parent: Order, parent_id: int) -> list[Order]:
    """Take-profit limit and stop-loss stop on the opposite side, children of ``parent_id``."""
    common = {
        "contract": parent.contract,
        "action": "SELL" if req.action == "BUY" else "BUY",
        "quantity": req.quantity,
        "tif": "GTC",
        "account_id": parent.account_id,
        "parent_id": parent_id,
    }
    return [
        Order(
            **common,
            order_type="LMT",
            limit_price=req.take_profit,
            order_ref=parent.order_ref + "-tp",
        ),
        Order(
            **common, order_type="STP", stop_price=req.stop_loss, order_ref=parent.order_ref + "-sl"
        ),
    ]


def _refuse_rejected(w: WhatIfResult) -> None:
    """No token for an order IB's what-if rejects."""
    if not w.accepted:
        o = w.order
        raise TradingRefused(
            f"IB's what-if rejects {o.action} {o.quantity:g} {o.contract.symbol}: "
            f"{w.warning or 'not accepted'}; no confirmation token issued"
        )


async def preview_order(ctx: Context, order: OrderRequest) -> Preview:
    """What-if an order (margin, commission, share of net liquidation), check it against every
    limit of the order guard, and get the confirmation token place_order needs (valid 120 s,
    for this exact order only). No token is issued for an order the guard or IB would refuse.

    Examples:
        preview_order(order={"symbol": "AAPL", "action": "BUY", "quantity": 10,
                             "order_type": "LMT", "limit_price": 180.0})
    """
    app = state(ctx)

    def run(b: GuardedBroker) -> Preview:
        req = order.model_copy(
            update={"account_id": b.account_id(account_for(ctx, order.account_id))}
        )
        parent = _parent_order(b, req)
        checked = b.assess(parent)
        if req.take_profit is not None:
            for exit_order in _bracket_exits(req, checked.order, parent_id=0):
                b.assess(exit_order)
        w = b.what_if(checked.order)
        _refuse_rejected(w)
        token, ttl = app.confirmations.issue(req)
        return Preview.of(checked, w, token, ttl, order=req)

    return await call_broker(ctx, run)


ConfirmationToken = Annotated[
    str,
    Field(
        min_length=8,
        max_length=64,
        description="the confirmation_token preview_order (or preview_modify) returned; "
        "preview first",
    ),
]


async def place_order(
    ctx: Context,
    order: OrderRequest,
    confirmation_token: ConfirmationToken,
    reason: Reason,
) -> Placed:
    """Send an order previewed with preview_order, presenting its confirmation token. Confirming
    the same token again returns the order already sent, never a second one.

    Examples:
        place_order(order={...same as previewed...}, confirmation_token="k3J...",
                    reason="rebalance: AAPL under target weight")
    """
    app = state(ctx)

    def run(b: GuardedBroker) -> Placed:
        req = order.model_copy(
            update={"account_id": b.account_id(account_for(ctx, order.account_id))}
        )
        redemption = app.confirmations.check(confirmation_token, req)
        if redemption.result is not None:
            return Placed.model_validate(redemption.result)
        key = req.client_order_id or redemption.digest[:24]
        parent = _parent_order(b, req, order_ref=f"mcp-{key}")
        sent = [b.place(parent)]
        if req.take_profit is not None:
            sent += [b.place(o) for o in _bracket_exits(req, parent, sent[0].order_id)]
        placed = Placed(orders=sent)
        app.confirmations.spend(redemption, placed.model_dump(mode="json"))
        app.audit(
            "place",
            reason,
            {
                "request": req.model_dump(mode="json"),
                "orders": [s.model_dump(mode="json") for s in sent],
            },
        )
        return placed

    return await call_broker(ctx, run)


async def cancel_order(
    ctx: Context, order_id: Annotated[int, Field(ge=0, description="IB orderId")], reason: Reason
) -> OrderStatus:
    """Cancel an open order. Works under the kill switch (only read-only mode refuses it).

    Examples:
        cancel_order(order_id=12, reason="price moved away")
    """
    app = state(ctx)

    def run(b: GuardedBroker) -> OrderStatus:
        status = b.cancel(order_id)
        app.audit("cancel", reason, status.model_dump(mode="json"))
        return status

    return await call_broker(ctx, run)


class ModifyRequest(BaseModel):
    """A change to an open order. The confirmation token is bound to these fields."""

    model_config = ConfigDict(extra="forbid")

    order_id: int = Field(ge=0, description="IB orderId")
    quantity: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="new total quantity"
    )
    limit_price: Price | None = None
    stop_price: Price | None = None

    @model_validator(mode="after")
    def _something(self) -> ModifyRequest:
        if self.quantity is None and self.limit_price is None and self.stop_price is None:
            raise ValueError("nothing to modify: give quantity, limit_price or stop_price")
        return self


class ModifyPreview(Checked):
    """A change to an open order: the order as it would stand, and the token modify_order
    needs."""

    change: ModifyRequest
    order: Order = Field(description="the order after the change")


async def preview_modify(ctx: Context, change: ModifyRequest) -> ModifyPreview:
    """Check a change to an open order as a new order (every limit, IB's what-if) and get the
    confirmation token modify_order needs (valid 120 s, for this exact change only).

    Examples:
        preview_modify(change={"order_id": 12, "limit_price": 181.5})
    """
    app = state(ctx)

    def run(b: GuardedBroker) -> ModifyPreview:
        current = b.open_order(change.order_id)
        changed = b.modified_order(current, change.quantity, change.limit_price, change.stop_price)
        checked = b.assess(changed)
        w = b.what_if(checked.order)
        _refuse_rejected(w)
        token, ttl = app.confirmations.issue(change)
        return ModifyPreview.of(checked, w, token, ttl, change=change, order=checked.order)

    return await call_broker(ctx, run)


async def modify_order(
    ctx: Context,
    change: ModifyRequest,
    confirmation_token: ConfirmationToken,
    reason: Reason,
) -> OrderStatus:
    """Change an open order's quantity or prices, presenting the token of preview_modify for
    this exact change; the changed order passes every limit again, as a new order would.

    Examples:
        modify_order(change={"order_id": 12, "limit_price": 181.5}, confirmation_token="k3J...",
                     reason="improve the limit")
    """
    app = state(ctx)

    def run(b: GuardedBroker) -> OrderStatus:
        redemption = app.confirmations.check(confirmation_token, change)
        if redemption.result is not None:
            return OrderStatus.model_validate(redemption.result)
        status = b.modify(
            change.order_id,
            quantity=change.quantity,
            limit_price=change.limit_price,
            stop_price=change.stop_price,
        )
        app.confirmations.spend(redemption, status.model_dump(mode="json"))
        app.audit("modify", reason, status.model_dump(mode="json"))
        return status

    return await call_broker(ctx, run)


async def open_orders(ctx: Context, account_id: AccountId = None) -> OrderList:
    """Orders that can still fill (IB reqOpenOrders).

    Examples:
        open_orders()
    """
    acct = account_for(ctx, account_id)
    return OrderList(orders=await call_broker(ctx, lambda b: b.open_orders(acct)))


async def executions(ctx: Context, account_id: AccountId = None) -> ExecutionList:
    """Today's fills with price and commission (IB reqExecutions).

    Examples:
        executions()
    """
    acct = account_for(ctx, account_id)
    return ExecutionList(executions=await call_broker(ctx, lambda b: b.executions(acct)))


def register(server: IBKRServer, trading: bool) -> None:
    """Add the read tools; add the tools that send orders only when trading is on."""
    for fn in (preview_order, open_orders, executions):
        add_tool(server, fn, CATEGORY)
    if trading:
        add_tool(server, preview_modify, CATEGORY)
        add_tool(server, place_order, CATEGORY, read_only=False, destructive=True)
        add_tool(server, cancel_order, CATEGORY, read_only=False, destructive=True)
        add_tool(server, modify_order, CATEGORY, read_only=False, destructive=True)
