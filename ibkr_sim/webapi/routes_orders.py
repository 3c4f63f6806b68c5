"""Order entry: place (``POST /iserver/account/{accountId}/orders``) with IBKR's reply questions
answered through ``POST /iserver/reply/{replyId}``, what-if, modify, cancel and question
suppression, over the paper exchange the TWS-protocol gateway uses (an order placed here is the
TWS gateway's order too). The order object and the questions it meets: :mod:`.order_form`;
reading orders and fills: :mod:`.routes_order_status`.

**Reply questions** (webapi.md, "Orders"): before an order reaches the exchange the gateway may
ask, one question at a time, each answered with ``{"confirmed": true}`` (the next question or the
order's acknowledgement follows; ``false`` drops the order). Any later order request cancels an
unanswered question: answering it then gives 503 [V1DOC]; an unknown reply id gives
``{"error": "reply id not found: '<id>'"}``.

**Brackets** (webapi.md, "Brackets"): one request may hold a bracket, the parent (with its
``cOID``) first and then its children, each naming it by ``parentId``; any other group of orders
is 400. The questions of every order are asked in turn, then the parent is placed and the
children after it with its order id as their parent, held at the exchange until it fills (as the
TWS gateway's bracket children are); the answer acknowledges each order, in the request's order.
A lone child whose ``parentId`` names the ``cOID`` of a working order of the account is attached
to that order, as TWS attaches a child to a working parent (UNCERTAIN whether IBKR's gateway
resolves a ``cOID`` of an earlier request; IBKR's campus lesson "Complex Orders" says legs may
also be placed one after the other); a ``parentId`` naming neither is ``{"error"}``. The paper
exchange has no OCA between a bracket's children (neither gateway cancels the other child when
one fills).

**Errors**: a malformed order (missing or bad fields, an unsupported type or time in force) is
400; a conid the gateway does not know is 400; the exchange's rejections (price off the tick,
margin, index) are HTTP 200 ``{"error": text}``; an order id that is unknown or done is 200
``{"error": "OrderID <id> doesn't exist"}``; an account the login does not have is 500.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ibkr_sim.exchange import OrderInfo, OrderRequest
from ibkr_sim.universe import Instrument
from ibkr_sim.webapi.order_form import parent_ref, parse_order, questions
from ibkr_sim.webapi.state import (
    PendingOrder,
    WebApiState,
    account_route,
    bad_request,
    error,
    json_body,
    ok,
    web_state,
)
from ibkr_spec.errors import IBError

#: the TWS clientId Web API orders are placed under (TWS's own, as for manual orders)
WEBAPI_CLIENT_ID = 0
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


# -- placing -----------------------------------------------------------------------------------
def _ask(st: WebApiState, pending: PendingOrder) -> JSONResponse:
    """Store ``pending`` under a new reply id and ask its first question."""
    reply_id = str(uuid.uuid4())
    with st.lock:
        st.replies[reply_id] = pending
    mid, text = pending.questions[0]
    return ok([{"id": reply_id, "message": [text], "isSuppressed": False, "messageIds": [mid]}])


def _submit(st: WebApiState, pending: PendingOrder) -> JSONResponse:
    """Send the order (or modification) to the exchange, a bracket's children after their
    parent; IBKR's acknowledgement of each, or the error (a bracket refused whole)."""
    ex = st.world.exchange
    placed: list[OrderInfo] = []
    try:
        if pending.modify_id is None:
            placed.append(ex.place(pending.account, pending.request, client_id=WEBAPI_CLIENT_ID))
            for child in pending.children:
                child = replace(child, parent_id=placed[0].order_id)
                placed.append(ex.place(pending.account, child, client_id=WEBAPI_CLIENT_ID))
        else:
            req = pending.request
            placed.append(
                ex.modify(
                    pending.modify_id,
                    quantity=req.quantity,
                    limit_price=req.limit_price,
                    stop_price=req.stop_price,
                )
            )
    except IBError as exc:
        if placed and pending.modify_id is None:
            ex.cancel(placed[0].order_id)  # its children placed so far go with it
        return error(exc.message)
    return ok(
        [
            {"order_id": str(i.order_id), "order_status": i.status, "encrypt_message": "1"}
            for i in placed
        ]
    )


def _proceed(st: WebApiState, pending: PendingOrder) -> JSONResponse:
    """Ask the first question, or submit when none is left; the exchange's checks of the order's
    form (price off the tick, fractional quantity) answer before any question is asked."""
    if pending.questions:
        try:
            for req in [pending.request, *pending.children]:
                st.world.exchange.what_if(pending.account, req)
        except IBError as exc:
            return error(exc.message)
        return _ask(st, pending)
    return _submit(st, pending)


Parsed = tuple[OrderRequest, Instrument, str | None]


def _parsed(st: WebApiState, body: dict[str, Any]) -> Parsed | JSONResponse:
    """One order object as the exchange's order, its contract and the ``cOID`` its
    ``parentId`` names; else the 400 answer naming what is wrong."""
    try:
        req, inst = parse_order(st, body)
        return req, inst, parent_ref(body)
    except (ValueError, LookupError) as exc:
        return bad_request(str(exc))


async def _orders_sent(request: Request, st: WebApiState) -> list[Parsed] | JSONResponse:
    """The orders of a ``{"orders": [order, ...]}`` body: one order, or a bracket (the parent
    first, then its children naming its ``cOID``); else the 400 answer naming what is wrong."""
    body = await json_body(request)
    orders = None if body is None else body.get("orders")
    if not isinstance(orders, list) or not orders or not all(isinstance(o, dict) for o in orders):
        return bad_request('the body must be {"orders": [ {order}, ... ]}')
    parsed: list[Parsed] = []
    for order in orders:
        one = _parsed(st, order)
        if isinstance(one, JSONResponse):
            return one
        parsed.append(one)
    parent = parsed[0][0]
    if len(parsed) > 1 and (
        parsed[0][2] is not None
        or not parent.order_ref
        or any(ref != parent.order_ref for _, _, ref in parsed[1:])
    ):
        return bad_request(
            "several orders in one request must be a bracket: the parent first, with a cOID, "
            "then its children, each with parentId equal to that cOID"
        )
    return parsed


async def _modification(
    request: Request, st: WebApiState, original: OrderInfo
) -> tuple[OrderRequest, Instrument] | JSONResponse:
    """The order object of a modification of ``original`` (its conid unless the body names
    one), parsed; else the 400 answer naming what is wrong."""
    body = await json_body(request)
    if body is None:
        return bad_request("the body must be a JSON object")
    parsed = _parsed(st, {"conid": original.conid, **body})
    return parsed if isinstance(parsed, JSONResponse) else parsed[:2]


def _attached(st: WebApiState, account: str, req: OrderRequest, ref: str) -> OrderRequest | None:
    """A lone child with its parent's exchange id: the working order of ``account`` whose
    ``cOID`` is ``ref``; None when there is none."""
    working = [
        o
        for o in st.world.exchange.find_by_ref(account, ref)
        if o.status in ("PreSubmitted", "Submitted")
    ]
    return replace(req, parent_id=working[-1].order_id) if working else None


async def place(request: Request, st: WebApiState, account: str) -> JSONResponse:
    """``POST /iserver/account/{accountId}/orders`` with ``{"orders": [order, ...]}``: one
    order or a bracket (see the module docstring)."""
    parsed = await _orders_sent(request, st)
    if isinstance(parsed, JSONResponse):
        return parsed
    for req, _, _ in parsed:
        if req.order_ref and st.world.exchange.find_by_ref(account, req.order_ref):
            return error(
                f"Order couldn't be submitted: Local order ID={req.order_ref} is already "
                "registered."
            )
    first, _, ref = parsed[0]
    if ref is not None:
        attached = _attached(st, account, first, ref)
        if attached is None:
            return error(
                f"parentId {ref!r} names no working order of {account}: a child's parentId is "
                "the cOID of its parent, sent in the same request or working already"
            )
        first = attached
    asked = [q for req, i, _ in parsed for q in questions(st, account, req, i)]
    asked = list(dict.fromkeys(asked))  # a question the legs share is asked once
    pending = PendingOrder(account, first, asked, children=[c for c, _, _ in parsed[1:]])
    return _proceed(st, pending)


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


async def what_if(request: Request, st: WebApiState, account: str) -> JSONResponse:
    """``POST /iserver/account/{accountId}/orders/whatif``: margin, equity and commission if the
    order filled now; every value a formatted string."""
    parsed = await _orders_sent(request, st)
    if isinstance(parsed, JSONResponse):
        return parsed
    req, inst, _ = parsed[0]
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
            "amount": f"{amount:,.2f} {inst.currency} ({req.quantity:.10g} Shares)",
            "commission": f"{w.commission:,.2f} {ccy}",
            "total": f"{amount + w.commission:,.2f} {inst.currency}",
        },
        "equity": trio(w.equity_with_loan_before, w.equity_with_loan_after),
        "initial": trio(w.init_margin_before, w.init_margin_after),
        "maintenance": trio(w.maint_margin_before, w.maint_margin_after),
        "position": {
            "current": f"{held:.10g}",
            "change": f"{change:.10g}",
            "after": f"{held + change:.10g}",
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


async def modify(request: Request, st: WebApiState, account: str) -> JSONResponse:
    """``POST /iserver/account/{accountId}/order/{orderId}``: the body is one order object (not
    wrapped), repeating the original fields with the changes; answered as a new order is."""
    info = _order_of(st, account, request.path_params["orderId"])
    if isinstance(info, JSONResponse):
        return info
    parsed = await _modification(request, st, info)
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


async def cancel(request: Request, st: WebApiState, account: str) -> JSONResponse:
    """``DELETE /iserver/account/{accountId}/order/{orderId}`` (``-1``: every open order)."""
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
    Route(
        "/iserver/account/{accountId}/orders",
        account_route(place, voids_questions=True),
        methods=["POST"],
    ),
    Route("/iserver/account/{accountId}/orders/whatif", account_route(what_if), methods=["POST"]),
    Route(
        "/iserver/account/{accountId}/order/{orderId}",
        account_route(modify, voids_questions=True),
        methods=["POST"],
    ),
    Route(
        "/iserver/account/{accountId}/order/{orderId}",
        account_route(cancel, voids_questions=True),
        methods=["DELETE"],
    ),
    Route("/iserver/reply/{replyId}", reply, methods=["POST"]),
    Route("/iserver/questions/suppress", suppress, methods=["POST"]),
    Route("/iserver/questions/suppress/reset", suppress_reset, methods=["POST"]),
]

__all__ = ["ROUTES"]
