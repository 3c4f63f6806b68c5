"""Trading tools: preview (what-if), place, cancel, modify, live orders and executions.

Placing goes through the guard of :mod:`mcp_server.safety`: ``preview_order`` returns IB's what-if
(initial/maintenance margin change, commission) and the order's share of net liquidation, checks the
caps, and hands back a confirmation token bound to that exact order for 120 s; ``place_order``
needs that token and a reason, which is written to the MCP order log. With
``IBKR_MCP_TRADING`` off, ``place_order``, ``cancel_order`` and ``modify_order`` are not registered
at all. A bracket is a parent (market or limit) with a take-profit limit and a stop-loss stop,
both on the opposite side, as IB's bracket orders.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Literal, NamedTuple

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ibkr_assets.broker import Broker
from ibkr_assets.broker.errors import InvalidOrder
from ibkr_assets.broker.models import (
    Contract,
    Execution,
    Order,
    OrderStatus,
    OrderType,
    TimeInForce,
)
from mcp_server.context import AppState, add_tool, call_broker, resolve, state
from mcp_server.portfolio import AccountId, account_for

if TYPE_CHECKING:
    from mcp_server.server import IBKRServer

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


class Preview(BaseModel):
    """What the order would do, and the token that lets ``place_order`` send it."""

    order: OrderRequest
    account_id: str
    reference_price: float = Field(description="price used for the caps (ask/bid for MKT)")
    notional: float = Field(description="quantity x price x multiplier, account currency")
    share_of_net_liq: float
    init_margin_change: float
    maint_margin_change: float
    excess_liquidity_after: float
    commission: float
    accepted: bool = Field(description="False if IB would reject it (see warning)")
    warning: str
    confirmation_token: str = Field(description="pass to place_order with the same order")
    expires_at: datetime


class Placed(BaseModel):
    """The orders sent (one, or three for a bracket)."""

    orders: list[OrderStatus]


class OrderList(BaseModel):
    """Orders of the account."""

    orders: list[OrderStatus]


class ExecutionList(BaseModel):
    """Fills with commissions."""

    executions: list[Execution]


class _Checked(NamedTuple):
    contract: Contract
    parent: Order
    price: float
    notional: float
    net_liq: float


def _parent_order(b: Broker, req: OrderRequest, account_id: str) -> tuple[Contract, Order]:
    """The contract and the (parent) broker order an order request stands for."""
    c = resolve(b, req.symbol, req.sec_type)
    try:
        parent = Order(
            contract=c,
            action=req.action,
            quantity=req.quantity,
            order_type=req.order_type,
            limit_price=req.limit_price,
            stop_price=req.stop_price,
            tif=req.tif,
            account_id=account_id,
            order_ref=f"mcp-{datetime.now(UTC):%Y%m%dT%H%M%S%f}",
        )
    except InvalidOrder as exc:
        raise ToolError(str(exc)) from None
    return c, parent


def _reference_price(b: Broker, c: Contract, req: OrderRequest) -> float:
    """The price the caps use: ask for a market buy, bid for a market sell, else the order's."""
    if req.order_type in ("LMT", "STP LMT"):
        return float(req.limit_price)  # type: ignore[arg-type]
    if req.order_type == "STP":
        return float(req.stop_price)  # type: ignore[arg-type]
    q = b.quotes([c])[0]
    side = q.ask if req.action == "BUY" else q.bid
    price = side if side and side > 0 else q.price
    if not price:
        raise ToolError(f"{c.symbol}: no quote to value a market order; use a limit order")
    return float(price)


def _guarded_check(app: AppState, b: Broker, req: OrderRequest) -> _Checked:
    """Kill switch, live-account and caps checks shared by preview and place."""
    guard = app.guard
    guard.check_kill_switch()
    accounts = b.accounts()
    wanted = req.account_id
    acct = next((a for a in accounts if (a.account_id == wanted if wanted else a.is_primary)), None)
    if acct is None:
        known = ", ".join(a.account_id for a in accounts)
        raise ToolError(f"account {wanted!r} is not managed here (known: {known})")
    guard.check_account(acct.account_id, acct.is_paper)
    c, parent = _parent_order(b, req, acct.account_id)
    net_liq = b.account_summary(acct.account_id).net_liquidation
    price = _reference_price(b, c, req)
    notional = guard.check_caps(c.symbol, req.quantity, price, c.multiplier, net_liq)
    return _Checked(c, parent, price, notional, net_liq)


async def preview_order(ctx: Context, order: OrderRequest) -> Preview:
    """What-if an order (margin, commission, share of net liquidation), check the caps, and get
    the confirmation token place_order needs (valid 120 s, for this exact order only).

    Examples:
        preview_order(order={"symbol": "AAPL", "action": "BUY", "quantity": 10,
                             "order_type": "LMT", "limit_price": 180.0})
    """
    app = state(ctx)
    req = order.model_copy(update={"account_id": account_for(ctx, order.account_id)})

    def run(b: Broker) -> Preview:
        chk = _guarded_check(app, b, req)
        w = b.what_if(chk.parent)
        token, ttl = app.guard.issue_token(req)
        return Preview(
            order=req,
            account_id=chk.parent.account_id or "",
            reference_price=chk.price,
            notional=chk.notional,
            share_of_net_liq=chk.notional / chk.net_liq,
            init_margin_change=w.init_margin_change,
            maint_margin_change=w.maint_margin_change,
            excess_liquidity_after=w.excess_liquidity_after,
            commission=w.commission,
            accepted=w.accepted,
            warning=w.warning,
            confirmation_token=token,
            expires_at=datetime.now(UTC) + timedelta(seconds=ttl),
        )

    return await call_broker(ctx, run)


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


async def place_order(
    ctx: Context,
    order: OrderRequest,
    confirmation_token: Annotated[str, Field(min_length=8, max_length=64)],
    reason: Reason,
) -> Placed:
    """Send an order previewed with preview_order, presenting its confirmation token.

    Examples:
        place_order(order={...same as previewed...}, confirmation_token="k3J...",
                    reason="rebalance: AAPL under target weight")
    """
    app = state(ctx)
    req = order.model_copy(update={"account_id": account_for(ctx, order.account_id)})

    def run(b: Broker) -> Placed:
        chk = _guarded_check(app, b, req)
        app.guard.redeem_token(confirmation_token, req)
        app.guard.take_rate_slot()
        sent = [b.place(chk.parent)]
        if req.take_profit is not None:
            sent += [b.place(o) for o in _bracket_exits(req, chk.parent, sent[0].order_id)]
        app.guard.audit(
            "place",
            app.settings.user,
            reason,
            {
                "request": req.model_dump(mode="json"),
                "orders": [s.model_dump(mode="json") for s in sent],
            },
        )
        return Placed(orders=sent)

    return await call_broker(ctx, run)


async def cancel_order(
    ctx: Context, order_id: Annotated[int, Field(ge=0, description="IB orderId")], reason: Reason
) -> OrderStatus:
    """Cancel an open order.

    Examples:
        cancel_order(order_id=12, reason="price moved away")
    """
    app = state(ctx)

    def run(b: Broker) -> OrderStatus:
        app.guard.check_kill_switch()
        status = b.cancel(order_id)
        app.guard.audit("cancel", app.settings.user, reason, status.model_dump(mode="json"))
        return status

    return await call_broker(ctx, run)


async def modify_order(
    ctx: Context,
    order_id: Annotated[int, Field(ge=0, description="IB orderId")],
    reason: Reason,
    quantity: Annotated[float | None, Field(gt=0, allow_inf_nan=False)] = None,
    limit_price: Price | None = None,
    stop_price: Price | None = None,
) -> OrderStatus:
    """Change an open order's quantity or prices; the caps and rate limits apply again.

    Examples:
        modify_order(order_id=12, limit_price=181.5, reason="improve the limit")
    """
    app = state(ctx)
    if quantity is None and limit_price is None and stop_price is None:
        raise ToolError("nothing to modify: give quantity, limit_price or stop_price")

    def run(b: Broker) -> OrderStatus:
        app.guard.check_kill_switch()
        current = next((o for o in b.open_orders() if o.order_id == order_id), None)
        if current is None:
            raise ToolError(f"no open order with id {order_id}")
        qty = quantity if quantity is not None else current.remaining
        price = limit_price or stop_price or current.limit_price or current.stop_price
        if price is None:
            q = b.quotes([current.contract])[0]
            price = (q.ask if current.action == "BUY" else q.bid) or q.price or 0.0
        net_liq = b.account_summary(current.account_id).net_liquidation
        app.guard.check_caps(
            current.contract.symbol, qty, price, current.contract.multiplier, net_liq
        )
        app.guard.take_rate_slot()
        status = b.modify(
            order_id, quantity=quantity, limit_price=limit_price, stop_price=stop_price
        )
        app.guard.audit("modify", app.settings.user, reason, status.model_dump(mode="json"))
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
        add_tool(server, place_order, CATEGORY, read_only=False, destructive=True)
        add_tool(server, cancel_order, CATEGORY, read_only=False, destructive=True)
        add_tool(server, modify_order, CATEGORY, read_only=False, destructive=True)
