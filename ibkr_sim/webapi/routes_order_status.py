"""Reading orders: ``GET /iserver/account/orders`` (the day's orders, open ones whenever placed),
``GET /iserver/account/order/status/{orderId}`` (one of those orders) and
``GET /iserver/account/trades`` (fills), from the paper exchange the TWS-protocol gateway uses
(an order placed there is listed here too).

A bracket child's row in the day's orders names its parent's order id, ``parentId`` (IBKR's
spec lists no parent field in ``liveOrdersResponse``; UNCERTAIN what IBKR names it). An order on a
currency pair is listed as IBKR lists a currency conversion (webapi.md, "FX"; the spec's example
row): ``secType`` CASH, ``listingExchange`` FXCONV, ``description1`` the pair (``EUR.USD``),
``cashCcy`` the quote currency and ``totalCashSize`` the order's value in it (at the average fill
price, else the limit; left out while neither is known); the paper exchange books every FX fill
as cash, as IB books a conversion.

An order status carries the fields of IBKR's ``orderStatus`` schema and no others: the spec lists
no limit or stop price there (a client learns them from the day's orders, ``price`` and
``auxPrice``), so neither does the simulator. An order that is not among the day's orders (done on
an earlier day, or unknown) answers 503, as IBKR's does for an earlier session's.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ibkr_sim.exchange import ExecutionInfo, OrderInfo
from ibkr_sim.universe import Instrument
from ibkr_sim.webapi.state import WebApiState, bad_request, error, ok, web_state

NEW_YORK = ZoneInfo("America/New_York")
#: the exchange's order type -> IBKR's (origOrderType, orderType) in /iserver/account/orders
ORDER_TYPE_NAMES = {
    "MKT": ("MARKET", "Market"),
    "LMT": ("LIMIT", "Limit"),
    "STP": ("STOP", "Stop"),
    "STP LMT": ("STOP_LIMIT", "Stop Limit"),
}
STATUS_FILTERS = {
    "inactive": "Inactive",
    "pending_submit": "PendingSubmit",
    "pre_submitted": "PreSubmitted",
    "submitted": "Submitted",
    "filled": "Filled",
    "pending_cancel": "PendingCancel",
    "cancelled": "Cancelled",
    "warn_state": "WarnState",
}
MAX_TRADE_DAYS = 7


def _day_start(now: datetime) -> datetime:
    local = now.astimezone(NEW_YORK)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def _price(value: float, inst: Instrument) -> str:
    """A price as IBKR writes it: cents for stocks and options, five decimals for a currency
    pair (the spec's example: ``"0.90000"``)."""
    return f"{value:.5f}" if inst.sec_type == "CASH" else f"{value:.2f}"


def _order_row(st: WebApiState, o: OrderInfo) -> dict[str, Any]:
    inst = st.world.market.universe.by_conid(o.conid)
    orig, name = ORDER_TYPE_NAMES[o.order_type]
    verb = "Bought" if o.action == "BUY" else "Sold"
    price = o.limit_price or o.stop_price
    desc = f"{verb if o.filled else o.action.title()} {o.quantity:.10g} {name}"
    desc += f" {_price(price, inst)}" if price is not None else ""
    desc += ", Day" if o.tif == "DAY" else ", GTC"
    row: dict[str, Any] = {
        "acct": o.account_id,
        "account": o.account_id,
        "conidex": str(o.conid),
        "conid": str(o.conid),
        "orderId": o.order_id,
        "cashCcy": inst.currency,
        "sizeAndFills": f"{o.filled:.10g}/{o.quantity:.10g}",
        "orderDesc": desc,
        "description1": inst.symbol,
        "ticker": inst.symbol,
        "secType": inst.sec_type,
        "listingExchange": inst.primary_exchange or inst.exchange,
        "remainingQuantity": f"{o.remaining:.10g}",
        "filledQuantity": f"{o.filled:.10g}",
        "totalSize": f"{o.quantity:.10g}",
        "companyName": inst.name,
        "status": o.status,
        "order_ccp_status": o.status,
        "origOrderType": orig,
        "orderType": name,
        "timeInForce": o.tif,
        "lastExecutionTime": o.updated.astimezone(NEW_YORK).strftime("%y%m%d%H%M%S"),
        "lastExecutionTime_r": str(int(o.updated.timestamp() * 1000)),
        "side": o.action,
        "order_ref": o.order_ref,
        "supportsTaxOpt": "0",
        "isEventTrading": "0",
    }
    if price is not None:
        row["price"] = _price(price, inst)
    if o.avg_fill_price is not None:
        row["avgPrice"] = _price(o.avg_fill_price, inst)
    if o.parent_id is not None:
        row["parentId"] = o.parent_id
    if inst.sec_type == "CASH":
        row.update(listingExchange="FXCONV", description1=inst.local_symbol)
        rate = o.avg_fill_price if o.avg_fill_price is not None else o.limit_price
        if rate is not None:
            row["totalCashSize"] = f"{o.quantity * rate:.2f}"
    return row


def todays_orders(st: WebApiState) -> list[OrderInfo]:
    """The login's orders the gateway knows this day: open ones whenever placed, done ones
    finished since midnight New York; newest first."""
    ex = st.world.exchange
    since = _day_start(st.world.now())
    rows: list[OrderInfo] = []
    for account in st.accounts():
        rows += ex.open_orders(account)
        rows += [o for o in ex.completed_orders(account) if o.updated >= since]
    rows.sort(key=lambda o: o.time, reverse=True)
    return rows


async def live_orders(request: Request) -> JSONResponse:
    """``GET /iserver/account/orders?filters=&force=``: the day's orders of the login's accounts
    (open ones whenever placed); ``force=true`` clears the cache and answers none."""
    st = web_state(request)
    if request.query_params.get("force", "false").lower() == "true":
        return ok({"orders": [], "snapshot": True})
    wanted = set()
    for f in request.query_params.get("filters", "").split(","):
        f = f.strip().lower()
        if f and f != "sort_by_time":
            if f not in STATUS_FILTERS:
                return bad_request(f"filter {f!r} is not one of {', '.join(STATUS_FILTERS)}")
            wanted.add(STATUS_FILTERS[f])
    rows = [o for o in todays_orders(st) if not wanted or o.status in wanted]
    return ok({"orders": [_order_row(st, o) for o in rows], "snapshot": True})


#: the exchange's status -> IBKR's order_status_description
STATUS_DESCRIPTIONS = {
    "PreSubmitted": "Order Submitted",
    "Submitted": "Order Submitted",
    "Filled": "Order Filled",
    "Cancelled": "Order Cancelled",
    "Inactive": "Order Inactive",
}


async def order_status(request: Request) -> JSONResponse:
    """``GET /iserver/account/order/status/{orderId}``: one of the day's orders (503 for any
    other, see the module docstring)."""
    st = web_state(request)
    raw = request.path_params["orderId"]
    try:
        order_id = int(raw)
    except ValueError:
        return bad_request(f"orderId {raw!r} must be a whole number")
    found = [o for o in todays_orders(st) if o.order_id == order_id]
    if not found:
        return error(
            f"order {order_id} is not an order of this brokerage session: IBKR answers the "
            "status of the current session's orders only",
            503,
        )
    o = found[0]
    inst = st.world.market.universe.by_conid(o.conid)
    orig, name = ORDER_TYPE_NAMES[o.order_type]
    done = o.status not in ("PreSubmitted", "Submitted")
    verb = ("Bought" if o.action == "BUY" else "Sold") if o.filled else o.action.title()
    price = o.limit_price if o.limit_price is not None else o.stop_price
    terms = f"{name} {_price(price, inst)}" if price is not None else name
    desc = f"{verb} {o.quantity:.10g} {terms}" + (", Day" if o.tif == "DAY" else ", GTC")
    body: dict[str, Any] = {
        "order_id": o.order_id,
        "server_id": "0",
        "request_id": "0",
        "conid": o.conid,
        "conidex": str(o.conid),
        "symbol": inst.symbol,
        "contract_description_1": inst.symbol,
        "company_name": inst.name.upper(),
        "listing_exchange": inst.primary_exchange or inst.exchange,
        "sec_type": inst.sec_type,
        "currency": inst.currency,
        "account": o.account_id,
        "order_clearing_account": o.account_id,
        "side": o.action,  # the schema's enum (BUY/SELL); the spec's example shows "S"
        "order_type": orig,
        "tif": o.tif,
        "total_size": f"{o.quantity:.1f}",
        "cum_fill": f"{o.filled:.1f}",
        "size": f"{o.remaining:.1f}",
        "size_and_fills": f"{o.filled:.10g}" if done else f"{o.filled:.10g}/{o.quantity:.10g}",
        "order_status": o.status,
        "order_status_description": STATUS_DESCRIPTIONS.get(o.status, o.status),
        "order_description": desc,
        "order_description_with_contract": desc.replace(name, f"{inst.symbol} {name}", 1),
        "order_time": o.time.astimezone(UTC).strftime("%y%m%d%H%M%S"),
        "order_not_editable": done,
        "cannot_cancel_order": done,
        "deactivate_order": False,
        "editable_fields": "",
        "child_order_type": "0",
        "alert_active": 0,
        "sub_type": None,
    }
    if o.avg_fill_price is not None:
        body["average_price"] = _price(o.avg_fill_price, inst)
    return ok(body)


def _trade_row(st: WebApiState, e: ExecutionInfo) -> dict[str, Any]:
    inst = st.world.market.universe.by_conid(e.conid)
    buy = e.side == "BOT"
    gross = e.shares * e.price * inst.multiplier
    return {
        "execution_id": e.exec_id,
        "symbol": inst.symbol,
        "supports_tax_opt": "0",
        "side": "B" if buy else "S",
        "order_description": f"{'Bought' if buy else 'Sold'} {e.shares:.10g} @ "
        f"{_price(e.price, inst)} on {e.exchange}",
        "trade_time": e.time.astimezone(UTC).strftime("%Y%m%d-%H:%M:%S"),
        "trade_time_r": int(e.time.timestamp() * 1000),
        "size": e.shares,
        "price": _price(e.price, inst),
        "order_ref": e.order_ref,
        "submitter": "simuser",
        "exchange": e.exchange,
        "commission": f"{e.commission:.2f}",
        "net_amount": -gross - e.commission if buy else gross - e.commission,
        "account": e.account_id,
        "accountCode": e.account_id,
        "account_allocation_name": e.account_id,
        "company_name": inst.name,
        "contract_description_1": inst.symbol,
        "sec_type": inst.sec_type,
        "listing_exchange": inst.primary_exchange or inst.exchange,
        "conid": str(e.conid),
        "conidEx": str(e.conid),
        "clearing_id": "IB",
        "clearing_name": "IB",
        "liquidation_trade": "0",
        "is_event_trading": "0",
        "order_id": e.order_id,
    }


async def trades(request: Request) -> JSONResponse:
    """``GET /iserver/account/trades?days=N``: fills of the login's accounts, today's unless
    ``days`` (at most 7) says how many days back."""
    st = web_state(request)
    raw = request.query_params.get("days", "1")
    try:
        days = int(raw)
    except ValueError:
        return bad_request(f"days {raw!r} must be a whole number from 1 to {MAX_TRADE_DAYS}")
    if not 1 <= days <= MAX_TRADE_DAYS:
        return bad_request(f"days {days} must be from 1 to {MAX_TRADE_DAYS}")
    since = _day_start(st.world.now()) - timedelta(days=days - 1)
    fills: list[ExecutionInfo] = []
    for account in st.accounts():
        fills += st.world.exchange.executions(account, since)
    fills.sort(key=lambda e: e.time, reverse=True)
    return ok([_trade_row(st, e) for e in fills])


ROUTES = [
    Route("/iserver/account/orders", live_orders, methods=["GET"]),
    Route("/iserver/account/order/status/{orderId}", order_status, methods=["GET"]),
    Route("/iserver/account/trades", trades, methods=["GET"]),
]

__all__ = ["ROUTES"]
