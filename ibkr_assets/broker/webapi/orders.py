"""Orders through the Web API: place with IBKR's reply questions, what-if, modify, cancel, and
the day's orders and fills.

**Reply questions.** IBKR may answer an order with a question (``{"id", "message",
"messageIds"}``) to confirm through ``/iserver/reply/{id}`` before the order goes on. The backend
confirms only the message ids in :data:`SAFE_REPLIES`, each a warning the project's order guard
has already judged for itself (every order reaches a backend through it); any other question is
declined (``{"confirmed": false}``: IBKR drops the order) and the placement fails with IB's own
text, so a trader can decide at IB. Questions are answered one at a time, at once (IBKR cancels
an order whose question waits while other requests go by).

**Order status.** IBKR acknowledges a placement with an order id and a status only; the order as
IB holds it (fills, average price) is read from ``/iserver/account/order/status/{id}``, one
order of the current brokerage session (IBKR answers 503 for any other), after every placement,
modification and cancellation and before a modification or cancellation (its account, whether
it is still open, its prices). The day's orders, ``/iserver/account/orders`` (IBKR: 1 request
per 5 s, paced), are read only to list open and completed orders. The single status (IBKR's
``orderStatus`` schema) names neither the order reference nor the limit and stop prices, so the
backend keeps those terms for the orders it placed, modified or listed, and reads the day's orders
(``price``, ``auxPrice``) once for an order it has not seen (placed by another client).

**Brackets.** IBKR links a bracket child to its parent by the parent's ``cOID`` (the
order_ref): the child's ``parentId``. A child (``parent_id``, the parent's IB order id) is sent
as the tws backend sends it, after its parent, naming the parent's order_ref as ``parentId``;
the parent must carry one. As V1DOC asks, a child's own ``cOID`` is left out; the backend keeps
its order_ref with its other terms. The Web API has no untransmitted orders (IBKR numbers an
order when it receives it, so a held parent would have no id for its children to name): an
order with ``transmit=False`` is refused.

**Errors.** IBKR answers business errors with HTTP 200 ``{"error": text}``: ``"OrderID <id>
doesn't exist"`` -> OrderNotFound, any other -> OrderRejected with IB's text.
"""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime
from typing import Any, NamedTuple, cast

from ibkr_assets.broker.errors import (
    BrokerError,
    InvalidOrder,
    OrderNotFound,
    OrderRejected,
)
from ibkr_assets.broker.models import (
    DONE_STATUSES,
    ORDER_STATUSES,
    Execution,
    Order,
    OrderStatus,
    OrderStatusCode,
    OrderType,
    WhatIfResult,
)
from ibkr_assets.broker.order_change import OrderChange
from ibkr_assets.broker.webapi.accounts import Accounts
from ibkr_assets.broker.webapi.contracts import Contracts
from ibkr_assets.broker.webapi.session import GatewayError, Session, error_text
from ibkr_spec import errors as ib

#: message ids confirmed without asking anyone, and the guard check that already covers each
SAFE_REPLIES: dict[str, str] = {
    "o354": "no market data: the guard's quote-age limits (IBKR_MAX_QUOTE_AGE_S, "
    "IBKR_MAX_DELAYED_QUOTE_AGE_S, IBKR_REQUIRE_LIVE_QUOTES)",
    "o163": "price away from the market: the guard's IBKR_MAX_PRICE_DISTANCE",
    "o383": "size above the precautionary Size Limit: the sender's max_quantity",
    "o451": "value above the precautionary Total Value Limit: the sender's max_notional",
}
#: questions one order may chain before the backend gives up (IBind loops 20 times)
MAX_QUESTIONS = 20
#: the broker's order type -> IBKR's orderType
WIRE_TYPES = {"MKT": "MKT", "LMT": "LMT", "STP": "STP", "STP LMT": "STOP_LIMIT"}
#: /iserver/account/orders' origOrderType -> the broker's order type
ROW_TYPES = {"MARKET": "MKT", "LIMIT": "LMT", "STOP": "STP", "STOP_LIMIT": "STP LMT"}
#: days of fills /iserver/account/trades reaches back
MAX_TRADE_DAYS = 7


def wire_order(order: Order, account: str, parent_ref: str = "") -> dict[str, Any]:
    """``order`` as IBKR's order object (``price`` is the limit, or the stop of a STP;
    ``auxPrice`` the stop of a STOP_LIMIT; ``cOID`` the order_ref; a bracket child's
    ``parentId`` is ``parent_ref``, its parent's order_ref, and it carries no ``cOID``).

    An order on a currency pair (CASH) is IBKR's currency conversion (``isCcyConv``), sized by
    ``quantity`` in the base currency - the quantity the order guard judged. IBKR's prose
    (V1DOC) sizes conversions by ``fxQty``, cash in the quote currency that IB turns into a base
    quantity at the fill price (the spec's example row: 2,500 CAD bought 2,806.46 AUD at an
    average 0.8908 under a 0.90 limit), so no ``fxQty`` fixes the base quantity the guard
    judged; the spec's order object has no ``fxQty`` and requires ``quantity``."""
    if not order.transmit:
        raise InvalidOrder(
            f"{order.contract.symbol}: the Web API transmits every order it receives "
            "(transmit=False is not served by the webapi backend): place the parent, then "
            "each child with parent_id"
        )
    body: dict[str, Any] = {
        "acctId": account,
        "conid": order.contract.conid,
        "orderType": WIRE_TYPES[order.order_type],
        "side": order.action,
        "quantity": order.quantity,
        "tif": order.tif,
        "outsideRTH": order.outside_rth,
    }
    if order.order_type == "STP":
        body["price"] = order.stop_price
    elif order.limit_price is not None:
        body["price"] = order.limit_price
    if order.order_type == "STP LMT":
        body["auxPrice"] = order.stop_price
    if order.parent_id is not None:
        body["parentId"] = parent_ref
    elif order.order_ref:
        body["cOID"] = order.order_ref
    if order.contract.sec_type == "CASH":  # IBKR's currency conversion: cash, no FX position
        body["isCcyConv"] = True
    return body


def order_error(text: str, label: str) -> BrokerError:
    """IBKR's ``{"error": text}`` about an order as the broker's error."""
    if "doesn't exist" in text:
        return OrderNotFound(f"{label}: {text}")
    return OrderRejected(f"{label}: {text}")


def _money(text: object) -> float:
    """``"1,977.60 USD"`` -> 1977.6."""
    head = str(text or "0").replace(",", "").split()
    try:
        return float(head[0]) if head else 0.0
    except ValueError:
        return 0.0


class _Terms(NamedTuple):
    """What IBKR's single order status leaves out: the order reference, its prices and a
    bracket child's parent order id."""

    order_ref: str
    limit_price: float | None
    stop_price: float | None
    parent_id: int | None = None


class Orders:
    """Placing and reading orders over one :class:`Session`."""

    def __init__(self, session: Session, accounts: Accounts, contracts: Contracts) -> None:
        self._s = session
        self._accounts = accounts
        self._contracts = contracts
        self._lock = threading.Lock()
        #: order id -> its terms the single status does not name, of the orders placed,
        #: modified or listed
        self._terms: dict[int, _Terms] = {}

    # -- sending -----------------------------------------------------------------------------
    def _confirmed(self, answer: Any, label: str) -> dict[str, Any]:
        """Answer the reply questions of ``answer`` (see the module docstring) until IBKR
        acknowledges the order; its acknowledgement ``{"order_id", "order_status"}``."""
        for _ in range(MAX_QUESTIONS):
            text = error_text(answer)
            if text is not None:
                raise order_error(text, label)
            first = answer[0] if isinstance(answer, list) and answer else {}
            if "order_id" in first:
                return first
            if "id" not in first:
                raise BrokerError(f"{label}: the gateway answered the order with {answer!r}")
            ids = [str(i) for i in first.get("messageIds") or []]
            question = " ".join(str(m) for m in first.get("message") or [])
            unsafe = [i for i in ids if i not in SAFE_REPLIES]
            if unsafe or not ids:
                self._s.post(f"/iserver/reply/{first['id']}", {"confirmed": False})
                raise OrderRejected(
                    f"{label}: IB asked ({', '.join(ids) or 'no message id'}): {question} -- "
                    f"the webapi backend confirms only {', '.join(SAFE_REPLIES)}; nothing was "
                    "placed (confirm or suppress this question at IB if the order is meant)"
                )
            answer = self._s.post(f"/iserver/reply/{first['id']}", {"confirmed": True})
        raise OrderRejected(f"{label}: IB asked more than {MAX_QUESTIONS} questions; not placed")

    def _parent_ref(self, order: Order) -> str:
        """The order_ref (IBKR's ``cOID``) of a bracket child's parent; '' for any other order.
        Raises InvalidOrder when the parent has none."""
        if order.parent_id is None:
            return ""
        ref = self._known_terms(order.parent_id).order_ref
        if not ref:
            raise InvalidOrder(
                f"{order.contract.symbol}: parent order {order.parent_id} has no order_ref; IBKR "
                "names a bracket child's parent by the parent's cOID (order_ref), so place the "
                "parent with one"
            )
        return ref

    def place(self, order: Order) -> OrderStatus:
        account = self._accounts.account(order.account_id)
        body = {"orders": [wire_order(order, account, self._parent_ref(order))]}
        self._s.iserver_accounts()
        label = f"{order.action} {order.quantity:g} {order.contract.symbol} ({account})"
        ack = self._confirmed(self._s.post(f"/iserver/account/{account}/orders", body), label)
        order_id = int(ack["order_id"])
        self._remember(
            order_id,
            _Terms(order.order_ref, order.limit_price, order.stop_price, order.parent_id),
        )
        try:
            return self.status(order_id)
        except OrderNotFound:  # placed, but not shown yet: report the acknowledgement
            return OrderStatus(
                order_id=order_id,
                account_id=account,
                contract=order.contract,
                action=order.action,
                quantity=order.quantity,
                order_type=order.order_type,
                limit_price=order.limit_price,
                stop_price=order.stop_price,
                tif=order.tif,
                order_ref=order.order_ref,
                parent_id=order.parent_id,
                status=_status_code(str(ack.get("order_status", "Submitted"))),
                remaining=order.quantity,
                time=self._s.now(),
            )

    def what_if(self, order: Order) -> WhatIfResult:
        account = self._accounts.account(order.account_id)
        self._s.iserver_accounts()
        label = f"what-if {order.action} {order.quantity:g} {order.contract.symbol} ({account})"
        wired = wire_order(order, account, self._parent_ref(order))
        body = self._s.post(f"/iserver/account/{account}/orders/whatif", {"orders": [wired]})
        if not isinstance(body, dict) or "amount" not in body:
            raise order_error(error_text(body) or f"unexpected answer {body!r}", label)
        amount = body["amount"]
        commission_text = str(amount.get("commission") or "0")
        parts = commission_text.split()
        problem = body.get("error")

        def trio(key: str) -> tuple[float, float]:
            entry = body.get(key) or {}
            return _money(entry.get("current")), _money(entry.get("after"))

        init, maint, equity = trio("initial"), trio("maintenance"), trio("equity")
        return WhatIfResult(
            order=order,
            account_id=account,
            init_margin_before=init[0],
            init_margin_after=init[1],
            maint_margin_before=maint[0],
            maint_margin_after=maint[1],
            equity_with_loan_before=equity[0],
            equity_with_loan_after=equity[1],
            commission=_money(commission_text),
            commission_currency=parts[1] if len(parts) > 1 else "USD",
            accepted=not problem,
            warning=str(problem or body.get("warn") or ""),
        )

    def modify(self, change: OrderChange) -> OrderStatus:
        order_id = change.order_id
        current = self._open_status(order_id)
        changed = current.model_copy(update=change.updates())
        order = Order(
            contract=changed.contract,
            action=changed.action,
            quantity=changed.quantity,
            order_type=changed.order_type,
            limit_price=changed.limit_price,
            stop_price=changed.stop_price,
            tif=changed.tif,
            account_id=changed.account_id,
        )
        account = current.account_id
        label = f"modify order {order_id} ({account})"
        body = wire_order(order, account)
        self._s.iserver_accounts()
        answer = self._s.post(f"/iserver/account/{account}/order/{order_id}", body)
        self._confirmed(answer, label)
        self._remember(
            order_id,
            _Terms(current.order_ref, changed.limit_price, changed.stop_price, current.parent_id),
        )
        return self.status(order_id)

    def cancel(self, order_id: int) -> OrderStatus:
        current = self._open_status(order_id)
        account = current.account_id
        self._s.iserver_accounts()
        answer = self._s.request("DELETE", f"/iserver/account/{account}/order/{order_id}")
        text = error_text(answer)
        if text is not None:
            raise order_error(text, f"cancel order {order_id} ({account})")
        return self.status(order_id)

    # -- reading -----------------------------------------------------------------------------
    def status(self, order_id: int) -> OrderStatus:
        """``/iserver/account/order/status/{order_id}``: one order of the current brokerage
        session, open or done; OrderNotFound for any other (IBKR's 503)."""
        try:
            body = self._s.get(f"/iserver/account/order/status/{order_id}")
        except GatewayError as exc:
            if exc.status != 503:
                raise
            raise OrderNotFound(
                f"order {order_id} is not an order of this brokerage session (IBKR answers the "
                f"status of the current session's orders only): {exc.text}",
                code=ib.ORDER_NOT_FOUND,
            ) from None
        text = error_text(body)
        if text is not None or not isinstance(body, dict) or "order_id" not in body:
            raise OrderNotFound(
                f"order {order_id}: the gateway answered no status: {text or body!r}",
                code=ib.ORDER_NOT_FOUND,
            )
        order_type = cast(OrderType, ROW_TYPES.get(str(body.get("order_type")), "MKT"))
        raw_status = str(body.get("order_status", ""))
        stamp = str(body.get("order_time") or "")
        terms = self._known_terms(order_id)
        return OrderStatus(
            order_id=int(body["order_id"]),
            account_id=str(body.get("account")),
            contract=self._contracts.contract(int(body["conid"])),
            action="BUY" if str(body.get("side", "")).upper().startswith("B") else "SELL",
            quantity=float(body.get("total_size") or 0.0),
            order_type=order_type,
            limit_price=terms.limit_price if order_type in ("LMT", "STP LMT") else None,
            stop_price=terms.stop_price if order_type in ("STP", "STP LMT") else None,
            tif="GTC" if body.get("tif") == "GTC" else "DAY",
            order_ref=terms.order_ref,
            parent_id=terms.parent_id,
            status=_status_code(raw_status),
            filled=float(body.get("cum_fill") or 0.0),
            remaining=float(body.get("size") or 0.0),
            avg_fill_price=_number(body.get("average_price")),
            message="" if raw_status in ORDER_STATUSES else f"IB status {raw_status}",
            time=datetime.strptime(stamp, "%y%m%d%H%M%S").replace(tzinfo=UTC)
            if stamp
            else self._s.now(),
        )

    def _remember(self, order_id: int, terms: _Terms) -> None:
        with self._lock:
            self._terms[order_id] = terms

    def _known_terms(self, order_id: int) -> _Terms:
        """The reference and prices of ``order_id``: remembered, else read once from the day's
        orders (an order another client placed); blank if it is not among them."""
        with self._lock:
            known = self._terms.get(order_id)
        if known is not None:
            return known
        for row in self._rows():
            self._row_terms(row)  # remembers every listed order's terms (no contract lookups)
        with self._lock:
            return self._terms.setdefault(order_id, _Terms("", None, None))

    def _rows(self) -> list[dict[str, Any]]:
        """``/iserver/account/orders``: the day's orders of every account of the login."""
        self._s.iserver_accounts()
        body = self._s.get("/iserver/account/orders")
        return list(body.get("orders") or []) if isinstance(body, dict) else []

    def _open_status(self, order_id: int) -> OrderStatus:
        status = self.status(order_id)
        if status.is_done:
            raise OrderNotFound(
                f"order {order_id} is {status.status}: no open order with that id",
                code=ib.ORDER_NOT_FOUND,
            )
        return status

    def _row_terms(self, row: dict[str, Any]) -> tuple[int, OrderType, _Terms]:
        """A day's-orders row's id, order type and terms, remembered for the single status."""
        order_type = cast(OrderType, ROW_TYPES.get(str(row.get("origOrderType")), "MKT"))
        price = _number(row.get("price"))
        aux = _number(row.get("auxPrice"))
        limit = price if order_type in ("LMT", "STP LMT") else None
        stop = price if order_type == "STP" else aux if order_type == "STP LMT" else None
        order_id = int(row["orderId"])
        with self._lock:  # a child's order_ref is the backend's own (no cOID sent for it)
            known = self._terms.get(order_id)
        ref = str(row.get("order_ref") or "") or (known.order_ref if known else "")
        parent = int(row["parentId"]) if row.get("parentId") else None
        terms = _Terms(ref, limit, stop, parent)
        self._remember(order_id, terms)
        return order_id, order_type, terms

    def _status(self, row: dict[str, Any]) -> OrderStatus:
        order_id, order_type, terms = self._row_terms(row)
        updated = row.get("lastExecutionTime_r")
        raw_status = str(row.get("status", ""))
        return OrderStatus(
            order_id=order_id,
            account_id=str(row.get("acct") or row.get("account")),
            contract=self._contracts.contract(int(row["conid"])),
            action="BUY" if str(row.get("side", "")).upper().startswith("B") else "SELL",
            quantity=float(row.get("totalSize") or 0.0),
            order_type=order_type,
            limit_price=terms.limit_price,
            stop_price=terms.stop_price,
            tif="GTC" if row.get("timeInForce") == "GTC" else "DAY",
            order_ref=terms.order_ref,
            parent_id=terms.parent_id,
            status=_status_code(raw_status),
            filled=float(row.get("filledQuantity") or 0.0),
            remaining=float(row.get("remainingQuantity") or 0.0),
            avg_fill_price=_number(row.get("avgPrice")),
            message="" if raw_status in ORDER_STATUSES else f"IB status {raw_status}",
            time=datetime.fromtimestamp(int(updated) / 1000, UTC) if updated else self._s.now(),
        )

    def orders(self, account_id: str | None, done: bool) -> list[OrderStatus]:
        """The day's open (``done`` False) or finished orders of one account."""
        account = self._accounts.account(account_id)
        statuses = [self._status(r) for r in self._rows() if (r.get("acct") or "") == account]
        return [s for s in statuses if (s.status in DONE_STATUSES) == done]

    def executions(self, account_id: str | None, since: datetime | None) -> list[Execution]:
        """Fills of one account since ``since`` (today's when None; IBKR reaches 7 days back)."""
        account = self._accounts.account(account_id)
        days = 1
        if since is not None:
            days = min(MAX_TRADE_DAYS, max(1, math.ceil((self._s.now() - since).days) + 1))
        rows = self._s.get("/iserver/account/trades", days=days) or []
        out = []
        for r in rows:
            if (r.get("account") or r.get("accountCode")) != account:
                continue
            stamp = datetime.fromtimestamp(int(r["trade_time_r"]) / 1000, UTC)
            if since is not None and stamp < since:
                continue
            out.append(
                Execution(
                    exec_id=str(r["execution_id"]),
                    order_id=int(r.get("order_id") or 0),
                    order_ref=str(r.get("order_ref") or ""),
                    account_id=account,
                    contract=self._contracts.contract(int(r["conid"])),
                    side="BOT" if str(r.get("side", "")).upper().startswith("B") else "SLD",
                    shares=float(r["size"]),
                    price=float(str(r["price"]).replace(",", "")),
                    time=stamp,
                    exchange=str(r.get("exchange") or ""),
                    commission=_money(r.get("commission")),
                )
            )
        return out


def _number(value: object) -> float | None:
    if value is None or value == "":
        return None
    return _money(value)


def _status_code(text: str) -> OrderStatusCode:
    """IBKR's order status as IB's (``WarnState``, a working order with a warning: Submitted)."""
    return cast(OrderStatusCode, text if text in ORDER_STATUSES else "Submitted")


__all__ = ["SAFE_REPLIES", "Orders", "wire_order"]
