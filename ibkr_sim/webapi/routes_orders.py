"""Orders: place (``POST /iserver/account/{accountId}/orders``) with IBKR's reply questions
answered through ``POST /iserver/reply/{replyId}``, what-if, modify, cancel, live orders, trades
and question suppression, over the paper exchange the TWS-protocol gateway uses (an order placed
here is the TWS gateway's order too).

**Reply questions** (webapi.md, "Orders"): before an order reaches the exchange the gateway may
ask, one question at a time, each answered with ``{"confirmed": true}`` (the next question or the
order's acknowledgement follows; ``false`` drops the order). Asked here, from the realism profile:

- ``o354`` no market data: the account has no real-time subscription for the contract;
- ``o163`` price cap: a limit price more than :data:`PRICE_CAP_PERCENT` away from the last price
  (asked only where the profile models TWS's precautions, as it does o383 / o451);
- ``o383`` size above the profile's Size Limit, ``o451`` value above its Total Value Limit.

Questions suppressed through ``/iserver/questions/suppress`` are not asked. Any later order
request cancels an unanswered question: answering it then gives 503 [V1DOC]; an unknown reply id
gives ``{"error": "reply id not found: '<id>'"}``.

**Errors**: a malformed order (missing or bad fields, an unsupported type or time in force) is
400; a conid the gateway does not know is 400; the exchange's rejections (price off the tick,
margin, index) are HTTP 200 ``{"error": text}``; an order id that is unknown or done is 200
``{"error": "OrderID <id> doesn't exist"}``; an account the login does not have is 500.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ibkr_sim.exchange import ExecutionInfo, OrderInfo, OrderRequest, order_problem
from ibkr_sim.universe import Instrument
from ibkr_sim.webapi.routes_contracts import instrument
from ibkr_sim.webapi.state import (
    PendingOrder,
    WebApiState,
    account_problem,
    bad_request,
    error,
    json_body,
    ok,
    web_state,
)
from ibkr_spec.errors import IBError

NEW_YORK = ZoneInfo("America/New_York")
#: the TWS clientId Web API orders are placed under (TWS's own, as for manual orders)
WEBAPI_CLIENT_ID = 0
#: TWS precaution "Percentage" price cap for limit orders, in percent of the last price
#: (UNCERTAIN: IBKR's default depends on the preset; ours)
PRICE_CAP_PERCENT = 3.0
#: message ids that can be suppressed (IBKR's spec, /iserver/questions/suppress)
SUPPRESSIBLE = frozenset(
    [
        "o163",
        "o354",
        "o382",
        "o383",
        "o403",
        "o451",
        "o2136",
        "o2137",
        "o2165",
        "o10082",
        "o10138",
        "o10151",
        "o10152",
        "o10153",
        "o10164",
        "o10223",
        "o10288",
        "o10331",
        "o10332",
        "o10333",
        "o10334",
        "o10335",
        "o10336",
        "p6",
        "p12",
    ]
)
MAX_SUPPRESS = 51
#: IBKR orderType -> the exchange's
ORDER_TYPES = {"MKT": "MKT", "LMT": "LMT", "STP": "STP", "STOP_LIMIT": "STP LMT"}
#: the exchange's order type -> IBKR's (origOrderType, orderType) in /iserver/account/orders
ORDER_TYPE_NAMES = {
    "MKT": ("MARKET", "Market"),
    "LMT": ("LIMIT", "Limit"),
    "STP": ("STOP", "Stop"),
    "STP LMT": ("STOP_LIMIT", "Stop Limit"),
}
TIFS = ("DAY", "GTC")
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


# -- the order as sent -------------------------------------------------------------------------
def _number(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{name} {value!r} must be a number")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name} {value!r} must be a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} {value!r} must be a finite number")
    return number


def parse_order(st: WebApiState, body: dict[str, Any]) -> tuple[OrderRequest, Instrument]:
    """The exchange's order and its contract from an IBKR order object; ``ValueError`` naming
    what is missing or wrong (answered 400), ``LookupError`` for an unknown conid (400)."""
    missing = [f for f in ("conid", "orderType", "side", "quantity", "tif") if f not in body]
    if missing and not ("conid" in missing and "conidex" in body):
        raise ValueError(f"order is missing {', '.join(missing)} (IBKR requires all five)")
    raw_conid = body.get("conid", str(body.get("conidex", "")).partition("@")[0])
    inst = instrument(st, raw_conid)
    if isinstance(inst, JSONResponse):
        raise LookupError(f"Invalid conid: {raw_conid!r} is not a contract id the gateway knows")
    order_type = ORDER_TYPES.get(str(body["orderType"]).upper())
    if order_type is None:
        raise ValueError(
            f"orderType {body['orderType']!r}: the simulated gateway serves "
            f"{', '.join(ORDER_TYPES)}"
        )
    tif = str(body["tif"]).upper()
    if tif not in TIFS:
        raise ValueError(f"tif {body['tif']!r}: the simulated gateway serves DAY and GTC")
    quantity = _number(body, "quantity")
    price, aux = _number(body, "price"), _number(body, "auxPrice")
    limit = price if order_type in ("LMT", "STP LMT") else None
    stop = price if order_type == "STP" else aux if order_type == "STP LMT" else None
    outside = body.get("outsideRTH", body.get("outsideRth", False))
    req = OrderRequest(
        conid=inst.conid,
        action=str(body["side"]).upper(),
        quantity=quantity if quantity is not None else 0.0,
        order_type=order_type,
        limit_price=limit,
        stop_price=stop,
        tif=tif,
        order_ref=str(body.get("cOID", "") or ""),
        outside_rth=bool(outside),
    )
    problem = order_problem(req)
    if problem:
        raise ValueError(problem)
    for name, value in (("price", limit), ("auxPrice", stop)):
        needed = (name == "price" and order_type in ("LMT", "STP LMT", "STP")) or (
            name == "auxPrice" and order_type == "STP LMT"
        )
        if needed and value is None:
            raise ValueError(f"a {body['orderType']} order needs {name}")
    return req, inst


def _describe(req: OrderRequest, inst: Instrument) -> str:
    price = req.limit_price or req.stop_price
    tail = f" {req.order_type} {price:.2f}" if price is not None else ""
    return f'"{req.action} {req.quantity:g} {inst.symbol}{tail}"'


def questions(st: WebApiState, account: str, req: OrderRequest, inst: Instrument) -> list:
    """The reply questions ``req`` meets, as (message id, text), suppressed ones left out (see
    the module docstring)."""
    profile = st.world.profile
    asked: list[tuple[str, str]] = []
    if not profile.has_live_data(account, inst.sec_type):
        asked.append(
            (
                "o354",
                "You are submitting an order without market data. We strongly recommend against "
                "this as it may result in erroneous and unexpected trades. Are you sure you want "
                "to submit this order?",
            )
        )
    precautions = profile.max_order_size is not None or profile.max_order_value is not None
    quote = st.world.market.snapshot(inst.conid, st.world.now())
    described = _describe(req, inst)
    if precautions and req.limit_price is not None and quote.last > 0:
        away = abs(req.limit_price / quote.last - 1) * 100
        if away > PRICE_CAP_PERCENT:
            asked.append(
                (
                    "o163",
                    f"The following order {described} price exceeds the Percentage constraint "
                    f"of {PRICE_CAP_PERCENT:g}%. Are you sure you want to submit this order?",
                )
            )
    if profile.max_order_size is not None and req.quantity > profile.max_order_size:
        asked.append(
            (
                "o383",
                f"The following order {described} size exceeds the Size Limit of "
                f"{profile.max_order_size:g}. Are you sure you want to submit this order?",
            )
        )
    if profile.max_order_value is not None:
        price = (
            req.limit_price or req.stop_price or (quote.ask if req.action == "BUY" else quote.bid)
        )
        value = req.quantity * price * inst.multiplier
        if value > profile.max_order_value:
            asked.append(
                (
                    "o451",
                    f"The following order {described} value estimate of {value:,.2f} "
                    f"{inst.currency} exceeds the Total Value Limit of "
                    f"{profile.max_order_value:,.0f} {inst.currency}. Are you sure you want to "
                    "submit this order?",
                )
            )
    return [(mid, text) for mid, text in asked if mid not in st.suppressed]


# -- placing -----------------------------------------------------------------------------------
def _ask(st: WebApiState, pending: PendingOrder) -> JSONResponse:
    """Store ``pending`` under a new reply id and ask its first question."""
    reply_id = str(uuid.uuid4())
    with st.lock:
        st.replies[reply_id] = pending
    mid, text = pending.questions[0]
    return ok([{"id": reply_id, "message": [text], "isSuppressed": False, "messageIds": [mid]}])


def _cancel_pending(st: WebApiState) -> None:
    """A new order request: every unanswered question is void (answering it gives 503)."""
    with st.lock:
        st.stale_replies.update(st.replies)
        st.replies.clear()


def _submit(st: WebApiState, pending: PendingOrder) -> JSONResponse:
    """Send the order (or modification) to the exchange; IBKR's acknowledgement or error."""
    ex = st.world.exchange
    try:
        if pending.modify_id is None:
            info = ex.place(pending.account, pending.request, client_id=WEBAPI_CLIENT_ID)
        else:
            req = pending.request
            info = ex.modify(
                pending.modify_id,
                quantity=req.quantity,
                limit_price=req.limit_price,
                stop_price=req.stop_price,
            )
    except IBError as exc:
        return error(exc.message)
    ack = {"order_id": str(info.order_id), "order_status": info.status, "encrypt_message": "1"}
    return ok([ack])


def _proceed(st: WebApiState, pending: PendingOrder) -> JSONResponse:
    """Ask the first question, or submit when none is left; the exchange's checks of the order's
    form (price off the tick, fractional quantity) answer before any question is asked."""
    if pending.questions:
        try:
            st.world.exchange.what_if(pending.account, pending.request)
        except IBError as exc:
            return error(exc.message)
        return _ask(st, pending)
    return _submit(st, pending)


async def _order_body(request: Request, wrapped: bool) -> dict[str, Any] | JSONResponse:
    body = await json_body(request)
    if body is None:
        return bad_request("the body must be a JSON object")
    if not wrapped:
        return body
    orders = body.get("orders")
    if not isinstance(orders, list) or not orders or not isinstance(orders[0], dict):
        return bad_request('the body must be {"orders": [ {order} ]}')
    if len(orders) > 1:
        return bad_request("one order per request: brackets and OCA groups are not simulated yet")
    return orders[0]


def _parsed(
    st: WebApiState, body: dict[str, Any]
) -> tuple[OrderRequest, Instrument] | JSONResponse:
    try:
        return parse_order(st, body)
    except (ValueError, LookupError) as exc:
        return bad_request(str(exc))


async def place(request: Request) -> JSONResponse:
    """``POST /iserver/account/{accountId}/orders`` with ``{"orders": [order]}``."""
    st = web_state(request)
    account = request.path_params["accountId"]
    _cancel_pending(st)
    if (problem := account_problem(st, account)) is not None:
        return problem
    body = await _order_body(request, wrapped=True)
    if isinstance(body, JSONResponse):
        return body
    parsed = _parsed(st, body)
    if isinstance(parsed, JSONResponse):
        return parsed
    req, inst = parsed
    if req.order_ref and st.world.exchange.find_by_ref(account, req.order_ref):
        return error(
            f"Order couldn't be submitted: Local order ID={req.order_ref} is already registered."
        )
    return _proceed(st, PendingOrder(account, req, questions(st, account, req, inst)))


async def reply(request: Request) -> JSONResponse:
    """``POST /iserver/reply/{replyId}`` with ``{"confirmed": true|false}``."""
    st = web_state(request)
    reply_id = request.path_params["replyId"]
    body = await json_body(request)
    if body is None or not isinstance(body.get("confirmed"), bool):
        return bad_request('the body must be {"confirmed": true} or {"confirmed": false}')
    with st.lock:
        pending = st.replies.pop(reply_id, None)
        stale = reply_id in st.stale_replies
    if pending is None:
        if stale:
            return error(
                f"reply id {reply_id} was cancelled by a later order request; send the order again",
                503,
            )
        return error(f"reply id not found: '{reply_id}'")
    if not body["confirmed"]:
        return error("Order not confirmed ")
    pending.questions = pending.questions[1:]
    return _proceed(st, pending)


async def what_if(request: Request) -> JSONResponse:
    """``POST /iserver/account/{accountId}/orders/whatif``: margin, equity and commission if the
    order filled now; every value a formatted string."""
    st = web_state(request)
    account = request.path_params["accountId"]
    if (problem := account_problem(st, account)) is not None:
        return problem
    body = await _order_body(request, wrapped=True)
    if isinstance(body, JSONResponse):
        return body
    parsed = _parsed(st, body)
    if isinstance(parsed, JSONResponse):
        return parsed
    req, inst = parsed
    try:
        w = st.world.exchange.what_if(account, req)
    except IBError as exc:
        return error(exc.message)
    quote = st.world.market.snapshot(inst.conid, st.world.now())
    price = req.limit_price or req.stop_price or (quote.ask if req.action == "BUY" else quote.bid)
    amount = req.quantity * price * inst.multiplier
    held = {p.conid: p.quantity for p in st.world.exchange.positions(account)}.get(inst.conid, 0)
    change = req.quantity if req.action == "BUY" else -req.quantity
    ccy = w.currency

    def trio(before: float, after: float) -> dict[str, str]:
        return {
            "current": f"{before:,.2f}",
            "change": f"{after - before:,.2f}",
            "after": f"{after:,.2f}",
        }

    out: dict[str, Any] = {
        "amount": {
            "amount": f"{amount:,.2f} {inst.currency} ({req.quantity:g} Shares)",
            "commission": f"{w.commission:,.2f} {ccy}",
            "total": f"{amount + w.commission:,.2f} {inst.currency}",
        },
        "equity": trio(w.equity_with_loan_before, w.equity_with_loan_after),
        "initial": trio(w.init_margin_before, w.init_margin_after),
        "maintenance": trio(w.maint_margin_before, w.maint_margin_after),
        "position": {
            "current": f"{held:g}",
            "change": f"{change:g}",
            "after": f"{held + change:g}",
        },
        "error": None if w.accepted else w.warning,
    }
    asked = questions(st, account, req, inst)
    if asked:
        out["warn"] = "\n".join(f"{mid}/{text}" for mid, text in asked)
    return ok(out)


def _order_of(st: WebApiState, account: str, raw: str) -> OrderInfo | JSONResponse:
    """The open order ``raw`` of ``account``, or IBKR's "doesn't exist" error."""
    missing = error(f"OrderID {raw} doesn't exist")
    try:
        info = st.world.exchange.order(int(raw))
    except (ValueError, IBError):
        return missing
    if info.account_id != account or info.status not in ("PreSubmitted", "Submitted"):
        return missing
    return info


async def modify(request: Request) -> JSONResponse:
    """``POST /iserver/account/{accountId}/order/{orderId}``: the body is one order object (not
    wrapped), repeating the original fields with the changes; answered as a new order is."""
    st = web_state(request)
    account = request.path_params["accountId"]
    _cancel_pending(st)
    if (problem := account_problem(st, account)) is not None:
        return problem
    info = _order_of(st, account, request.path_params["orderId"])
    if isinstance(info, JSONResponse):
        return info
    body = await _order_body(request, wrapped=False)
    if isinstance(body, JSONResponse):
        return body
    parsed = _parsed(st, {"conid": info.conid, **body})
    if isinstance(parsed, JSONResponse):
        return parsed
    req, inst = parsed
    if req.conid != info.conid or req.action != info.action or req.order_type != info.order_type:
        return error(
            f"OrderID {info.order_id}: only quantity and prices can be modified (conid, side and "
            "orderType must repeat the original order's)"
        )
    asked = questions(st, account, req, inst)
    return _proceed(st, PendingOrder(account, req, asked, modify_id=info.order_id))


async def cancel(request: Request) -> JSONResponse:
    """``DELETE /iserver/account/{accountId}/order/{orderId}`` (``-1``: every open order)."""
    st = web_state(request)
    account = request.path_params["accountId"]
    _cancel_pending(st)
    if (problem := account_problem(st, account)) is not None:
        return problem
    raw = request.path_params["orderId"]
    ex = st.world.exchange
    if raw == "-1":
        for o in ex.open_orders(account):
            ex.cancel(o.order_id)
        return ok({"msg": "Request was submitted", "order_id": "-1", "conid": "-1"})
    info = _order_of(st, account, raw)
    if isinstance(info, JSONResponse):
        return info
    try:
        ex.cancel(info.order_id)
    except IBError:
        return error(f"OrderID {raw} doesn't exist")
    return ok(
        {
            "msg": "Request was submitted",
            "order_id": str(info.order_id),
            "conid": str(info.conid),
            "account": account,
        }
    )


# -- reads -------------------------------------------------------------------------------------
def _day_start(now: datetime) -> datetime:
    local = now.astimezone(NEW_YORK)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def _order_row(st: WebApiState, o: OrderInfo) -> dict[str, Any]:
    inst = st.world.market.universe.by_conid(o.conid)
    orig, name = ORDER_TYPE_NAMES[o.order_type]
    verb = "Bought" if o.action == "BUY" else "Sold"
    price = o.limit_price or o.stop_price
    desc = f"{verb if o.filled else o.action.title()} {o.quantity:g} {name}"
    desc += f" {price:.2f}" if price is not None else ""
    desc += ", Day" if o.tif == "DAY" else ", GTC"
    row: dict[str, Any] = {
        "acct": o.account_id,
        "account": o.account_id,
        "conidex": str(o.conid),
        "conid": str(o.conid),
        "orderId": o.order_id,
        "cashCcy": inst.currency,
        "sizeAndFills": f"{o.filled:g}/{o.quantity:g}",
        "orderDesc": desc,
        "description1": inst.symbol,
        "ticker": inst.symbol,
        "secType": inst.sec_type,
        "listingExchange": inst.primary_exchange or inst.exchange,
        "remainingQuantity": f"{o.remaining:g}",
        "filledQuantity": f"{o.filled:g}",
        "totalSize": f"{o.quantity:g}",
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
        row["price"] = f"{price:.2f}"
    if o.avg_fill_price is not None:
        row["avgPrice"] = f"{o.avg_fill_price:.2f}"
    return row


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
    ex = st.world.exchange
    since = _day_start(st.world.now())
    rows: list[OrderInfo] = []
    for account in st.accounts():
        rows += ex.open_orders(account)
        rows += [o for o in ex.completed_orders(account) if o.updated >= since]
    rows = [o for o in rows if not wanted or o.status in wanted]
    rows.sort(key=lambda o: o.time, reverse=True)
    return ok({"orders": [_order_row(st, o) for o in rows], "snapshot": True})


def _trade_row(st: WebApiState, e: ExecutionInfo) -> dict[str, Any]:
    inst = st.world.market.universe.by_conid(e.conid)
    buy = e.side == "BOT"
    gross = e.shares * e.price * inst.multiplier
    return {
        "execution_id": e.exec_id,
        "symbol": inst.symbol,
        "supports_tax_opt": "0",
        "side": "B" if buy else "S",
        "order_description": f"{'Bought' if buy else 'Sold'} {e.shares:g} @ {e.price:.2f} on "
        f"{e.exchange}",
        "trade_time": e.time.astimezone(UTC).strftime("%Y%m%d-%H:%M:%S"),
        "trade_time_r": int(e.time.timestamp() * 1000),
        "size": e.shares,
        "price": f"{e.price:.2f}",
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


async def suppress(request: Request) -> JSONResponse:
    """``POST /iserver/questions/suppress {"messageIds": [...]}`` for the brokerage session."""
    st = web_state(request)
    body = await json_body(request)
    ids = None if body is None else body.get("messageIds")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        return bad_request('the body must be {"messageIds": ["o163", ...]}')
    if len(ids) > MAX_SUPPRESS:
        return error(f"{len(ids)} message ids; at most {MAX_SUPPRESS} per request", 500)
    unknown = sorted(set(ids) - SUPPRESSIBLE)
    if unknown:
        return bad_request(f"message ids {', '.join(unknown)} cannot be suppressed")
    with st.lock:
        st.suppressed.update(ids)
    return ok({"status": "submitted"})


async def suppress_reset(request: Request) -> JSONResponse:
    """``POST /iserver/questions/suppress/reset``: every question asked again."""
    st = web_state(request)
    with st.lock:
        st.suppressed.clear()
    return ok({"status": "submitted"})


ROUTES = [
    Route("/iserver/account/{accountId}/orders", place, methods=["POST"]),
    Route("/iserver/account/{accountId}/orders/whatif", what_if, methods=["POST"]),
    Route("/iserver/account/{accountId}/order/{orderId}", modify, methods=["POST"]),
    Route("/iserver/account/{accountId}/order/{orderId}", cancel, methods=["DELETE"]),
    Route("/iserver/reply/{replyId}", reply, methods=["POST"]),
    Route("/iserver/account/orders", live_orders, methods=["GET"]),
    Route("/iserver/account/trades", trades, methods=["GET"]),
    Route("/iserver/questions/suppress", suppress, methods=["POST"]),
    Route("/iserver/questions/suppress/reset", suppress_reset, methods=["POST"]),
]

__all__ = ["ROUTES", "parse_order", "questions"]
