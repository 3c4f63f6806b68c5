"""Order requests: placeOrder (new, modify, what-if), cancel, open / completed orders, executions.

An API client numbers its own orders (``orderId``, unique per clientId); the paper exchange has
its own ids. The gateway keeps the mapping ``(clientId, orderId) -> exchange order`` so every
client sees its own ids, and placing an order with an id that is already live modifies it, as
at TWS. After each request, and every quarter second, each session compares the exchange's
orders and executions with what it has reported and pushes ``orderStatus``, ``openOrder``,
``execDetails`` (reqId -1) and ``commissionReport`` for the changes - this is how a resting limit
order's fill reaches the client that placed it.

With the realism profile's precautionary settings an order above a limit is rejected before
it reaches the exchange (:mod:`ibkr_sim.gateway.precautions`).

``whatIf`` orders never reach the book: the exchange's pre-trade check answers with an
``openOrder`` whose order state carries margin before / change / after, equity with loan and
the commission, exactly the fields ``ib_async.IB.whatIfOrder`` returns.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ibkr_sim.exchange import DUPLICATE_ORDER_ID, OrderRequest, order_problem
from ibkr_sim.gateway.accounts import send_account_updates, send_position
from ibkr_sim.gateway.contracts import contract_fields, read_contract, resolve
from ibkr_sim.gateway.precautions import precaution_problem
from ibkr_sim.gateway.wire import UNSET_DOUBLE, Reader
from ibkr_spec.errors import (
    CANNOT_CANCEL,
    INVALID_REQUEST,
    ORDER_NOT_FOUND,
    ORDER_REJECTED,
    IBError,
)

if TYPE_CHECKING:
    from ibkr_sim.gateway.session import Session


@dataclass(frozen=True)
class OrderMessage:
    """A placeOrder request: the client's ``order_id`` and ``contract``, the order itself (its
    conid set once the contract is resolved, its parent as the client numbers it in
    ``parent_order_id``, 0 for none) and whether it is only a what-if."""

    order_id: int
    contract: Any
    account: str
    order: OrderRequest
    parent_order_id: int
    what_if: bool


def _price(value: float) -> float | None:
    return None if value >= UNSET_DOUBLE / 2 else value


def read_place_order(r: Reader) -> OrderMessage:
    """Read message 3 up to whatIf in the layout ib_async writes for server version 178."""
    order_id = r.int()
    contract = read_contract(r)
    r.str(), r.str()  # secIdType, secId
    action = r.str().upper()
    quantity = r.float()
    order_type = r.str().upper()
    limit_price = _price(r.float(UNSET_DOUBLE))
    stop_price = _price(r.float(UNSET_DOUBLE))
    tif = r.str().upper() or "DAY"
    r.str()  # ocaGroup
    account = r.str()
    r.str(), r.str()  # openClose, origin
    order_ref = r.str()
    if r.fields[r.pos] != "":  # transmit: ignored, every order is transmitted
        r.bool()
    parent_id = r.int()
    r.str(), r.str(), r.str(), r.str()  # blockOrder sweepToFill displaySize triggerMethod
    outside_rth = r.bool()
    r.str()  # hidden
    if contract.sec_type == "BAG":
        raise IBError(INVALID_REQUEST, "Combo (BAG) orders are not supported by the simulator")
    for _ in range(7):  # "", discretionaryAmt, goodAfterTime, goodTillDate, fa group/method/pct
        r.str()
    for _ in range(24):  # modelCode ... deltaNeutralAuxPrice
        r.str()
    delta_neutral_type = r.fields[r.pos - 2]
    if delta_neutral_type:
        for _ in range(8):
            r.str()
    for _ in range(
        6
    ):  # continuousUpdate referencePriceType trailStopPrice trailingPercent scale x2
        r.str()
    increment = r.float(UNSET_DOUBLE)
    if 0 < increment < UNSET_DOUBLE:
        for _ in range(7):
            r.str()
    for _ in range(3):  # scaleTable activeStartTime activeStopTime
        r.str()
    if r.str():  # hedgeType
        r.str()
    for _ in range(4):  # optOutSmartRouting clearingAccount clearingIntent notHeld
        r.str()
    if r.bool():  # deltaNeutralContract
        r.str(), r.str(), r.str()
    if r.str():  # algoStrategy
        for _ in range(2 * r.int()):
            r.str()
    r.str()  # algoId
    what_if = r.bool()
    r.rest()
    order = OrderRequest(
        conid=0,
        action=action,
        quantity=quantity,
        order_type=order_type,
        limit_price=limit_price,
        stop_price=stop_price,
        tif=tif,
        order_ref=order_ref,
        outside_rth=outside_rth,
    )
    return OrderMessage(order_id, contract, account, order, parent_id, what_if)


def _order_request(s: Session, msg: OrderMessage, conid: int) -> OrderRequest:
    """The order as the exchange takes it: ``conid`` resolved, the parent by exchange id."""
    parent = s.orders.get(msg.parent_order_id) if msg.parent_order_id else None
    return replace(msg.order, conid=conid, parent_id=parent)


def _account(s: Session, requested: str) -> str:
    managed = s.state.managed_accounts()
    if requested:
        if requested not in managed:
            raise IBError(ORDER_REJECTED, f"Order rejected - reason: unknown account {requested!r}")
        return requested
    return managed[0]


def place_order(s: Session, r: Reader) -> None:
    msg = read_place_order(r)
    try:
        problem = order_problem(msg.order)
        if problem:
            raise IBError(ORDER_REJECTED, f"Order rejected - reason: {problem}")
        inst = resolve(s.state.market, msg.contract)
        account = _account(s, msg.account)
        ex = s.state.exchange
        if msg.what_if:
            # a what-if IB would refuse still answers with its numbers and the warning text
            result = ex.what_if(account, _order_request(s, msg, inst.conid))
            fields = open_order_fields(
                s, msg.order, inst, account, what_if=result, client_order_id=msg.order_id
            )
            s.send(*fields)
            return
        caution = precaution_problem(s, msg.order, inst)
        if caution:
            raise IBError(ORDER_REJECTED, f"Order rejected - reason:{caution}")
        existing = s.orders.get(msg.order_id)
        if existing is not None:
            info = ex.modify(
                existing,
                quantity=msg.order.quantity,
                limit_price=msg.order.limit_price,
                stop_price=msg.order.stop_price,
            )
        else:
            request = _order_request(s, msg, inst.conid)
            try:  # keep the exchange's id (IB's permId) equal to the client's orderId if free
                info = ex.place(account, request, client_id=s.client_id or 0, order_id=msg.order_id)
            except IBError as exc:
                if exc.code != DUPLICATE_ORDER_ID:
                    raise
                info = ex.place(account, request, client_id=s.client_id or 0)
            s.orders[msg.order_id] = info.order_id
            s.state.order_owner[info.order_id] = (s.client_id or 0, msg.order_id)
    except IBError as exc:
        s.error(msg.order_id, exc.code, exc.message)
        return
    push_order_updates(s, force=info.order_id)


def _state_fields(status: str, what_if: Any | None) -> list[object]:
    if what_if is None:
        return [status, *([""] * 9), "", "", "", "", ""]
    w = what_if
    return [
        "PreSubmitted",
        f"{w.init_margin_before:.2f}",
        f"{w.maint_margin_before:.2f}",
        f"{w.equity_with_loan_before:.2f}",
        f"{w.init_margin_after - w.init_margin_before:.2f}",
        f"{w.maint_margin_after - w.maint_margin_before:.2f}",
        f"{w.equity_with_loan_after - w.equity_with_loan_before:.2f}",
        f"{w.init_margin_after:.2f}",
        f"{w.maint_margin_after:.2f}",
        f"{w.equity_with_loan_after:.2f}",
        float(w.commission),
        float(w.min_commission),
        float(w.max_commission),
        w.currency,
        w.warning or ("" if w.accepted else "order would not be accepted"),
    ]


def open_order_fields(
    s: Session,
    order: Any,
    inst: Any,
    account: str,
    what_if: Any | None = None,
    status: str = "",
    client_order_id: int | None = None,
    client_id: int | None = None,
    perm_id: int = 0,
) -> list[object]:
    """Message 5 (openOrder) in the server-version-178 layout ``ib_async`` decodes."""
    order_id = order.order_id if client_order_id is None else client_order_id
    # fmt: off
    return [
        5, order_id, *contract_fields(inst),
        order.action, float(order.quantity), order.order_type,
        order.limit_price, order.stop_price, order.tif, "", account, "", 0, order.order_ref,
        s.client_id if client_id is None else client_id, perm_id,
        bool(order.outside_rth), False, 0.0, "", "", "", "", "",  # hidden .. faPercentage
        "", "", "", "", "", 0, "", -1,  # modelCode .. exemptCode
        0, "", "", "", "", "", 0, False, False, False, "", 0, False, False, "",  # .. nbboPriceCap
        0, 0, "", 0, "", "",  # parentId triggerMethod volatility volatilityType dnType dnAux
        False, 0, "", "", "", "", "",  # continuousUpdate .. comboLegsDescrip
        0, 0, 0,  # combo legs, order combo legs, smart routing params
        "", "", "",  # scale init/subs/increment
        "",  # hedgeType
        False, "", "", False, 0,  # optOutSmartRouting .. deltaNeutralContract
        "",  # algoStrategy
        False, what_if is not None,  # solicited whatIf
        *_state_fields(status, what_if),
        False, False,  # randomizeSize randomizePrice
        0,  # conditions
        "", "", "", "", "", "", "", 0, "", "", "", "", False, False, "", False,
        "", False, False,  # duration postToAts autoCancelParent
        "", "", "", "", "",  # minTradeQty .. midOffsetAtHalf
    ]
    # fmt: on


def _client_ids(s: Session, info: Any) -> tuple[int, int]:
    """(clientId, orderId) of an exchange order as the API reports it."""
    owner = s.state.order_owner.get(info.order_id)
    if owner is not None:
        return owner
    return int(getattr(info, "client_id", 0) or 0), int(info.order_id)


def _send_open_order(s: Session, info: Any) -> None:
    inst = s.state.market.universe.by_conid(info.conid)
    client_id, order_id = _client_ids(s, info)
    s.send(
        *open_order_fields(
            s,
            info,
            inst,
            info.account,
            status=info.status,
            client_order_id=order_id,
            client_id=client_id,
            perm_id=int(info.order_id),
        )
    )


def _send_status(s: Session, info: Any) -> None:
    client_id, order_id = _client_ids(s, info)
    s.send(
        3,
        order_id,
        info.status,
        float(info.filled),
        float(info.remaining),
        float(info.avg_fill_price or 0.0),
        int(info.order_id),
        0,
        float(info.last_fill_price or 0.0),
        client_id,
        "",
        0.0,
    )


def _exec_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y%m%d %H:%M:%S UTC")


def _send_execution(s: Session, req_id: int, e: Any) -> None:
    inst = s.state.market.universe.by_conid(e.conid)
    owner = s.state.order_owner.get(e.order_id)
    client_id, order_id = owner if owner else (0, int(e.order_id))
    s.send(
        11,
        req_id,
        order_id,
        *contract_fields(inst, exchange="SMART"),
        e.exec_id,
        _exec_time(e.time),
        e.account,
        e.exchange,
        "BOT" if e.side.upper() in ("BUY", "BOT") else "SLD",
        float(e.shares),
        float(e.price),
        int(e.order_id),
        client_id,
        0,
        float(e.cum_qty),
        float(e.avg_price),
        e.order_ref,
        "",
        "",
        "",
        1,
        False,
    )
    realized = None if e.realized_pnl is None else float(e.realized_pnl)  # unset on openings
    s.send(59, 1, e.exec_id, float(e.commission), e.commission_currency, realized, "", "")


TERMINAL = {"Filled", "Cancelled", "ApiCancelled", "Inactive"}


def push_order_updates(s: Session, force: int | None = None) -> None:
    """Report new fills, order status changes and the positions they moved.

    Fills of this client's orders go out as ``execDetails`` + ``commissionReport``; a changed
    status as ``orderStatus`` (with ``openOrder`` the first time); a fill of *any* client moves
    a position, sent as ``position`` to clients that called ``reqPositions`` and as
    ``updatePortfolio`` + account values to clients subscribed to that account's updates.
    """
    live = {oid for oid in s.orders.values() if oid not in s.finished}
    if not (live or s.positions_subscribed or s.account_updates):
        return
    ex = s.state.exchange
    # Order states are read before the executions, so a fill that lands in between (another
    # process shares the account) reaches the client as execDetails first and as a Filled
    # status on the next poll - never a Filled order whose fills have not been sent.
    infos = {o.order_id: o for o in ex.open_orders() if o.order_id in live} if live else {}
    if len(infos) < len(live):
        infos.update({o.order_id: o for o in ex.completed_orders() if o.order_id in live})
    new = [e for e in ex.executions(since=s.exec_cursor) if e.exec_id not in s.seen_execs]
    mine = set(s.orders.values())
    for e in new:
        s.seen_execs.add(e.exec_id)
        s.exec_cursor = e.time if s.exec_cursor is None else max(s.exec_cursor, e.time)
        if e.order_id in mine:
            _send_execution(s, -1, e)
    if live:
        for oid, info in infos.items():
            key = (info.status, float(info.filled))
            if s.reported_status.get(oid) != key or oid == force:
                if oid == force or s.reported_status.get(oid) is None:
                    _send_open_order(s, info)
                s.reported_status[oid] = key
                _send_status(s, info)
            if info.status in TERMINAL:
                s.finished.add(oid)
    for account, conid in sorted({(e.account, e.conid) for e in new}):
        if s.positions_subscribed:
            send_position(s, account, conid)
    if s.account_updates and any(e.account == s.account_updates for e in new):
        send_account_updates(s, s.account_updates)


def cancel_order(s: Session, r: Reader) -> None:
    r.int()
    order_id = r.int()
    r.rest()
    exchange_id = s.orders.get(order_id)
    if exchange_id is None:
        s.error(
            order_id,
            ORDER_NOT_FOUND,
            f"OrderId {order_id} that needs to be cancelled is not found.",
        )
        return
    try:
        s.state.exchange.cancel(exchange_id)
    except IBError as exc:
        if exc.code != ORDER_NOT_FOUND:
            raise
        # the order is done (filled, perhaps just now, or cancelled): TWS reports the final
        # state first and then refuses the cancel with 10148; the client keeps its fill
        done = s.state.exchange.order(exchange_id)
        push_order_updates(s)
        s.error(
            order_id,
            CANNOT_CANCEL,
            f"OrderId {order_id} that needs to be cancelled cannot be cancelled, "
            f"state: {done.status}.",
        )
        return
    push_order_updates(s)


def _send_open_orders(s: Session, only_mine: bool) -> None:
    mine = set(s.orders.values())
    for info in s.state.exchange.open_orders():
        if (
            only_mine
            and info.order_id not in mine
            and getattr(info, "client_id", None) != s.client_id
        ):
            continue
        _send_open_order(s, info)
        _send_status(s, info)
    s.send(53, 1)


def req_open_orders(s: Session, r: Reader) -> None:
    r.rest()
    _send_open_orders(s, only_mine=True)


def req_all_open_orders(s: Session, r: Reader) -> None:
    r.rest()
    _send_open_orders(s, only_mine=False)


def req_global_cancel(s: Session, r: Reader) -> None:
    r.rest()
    for info in s.state.exchange.open_orders():
        s.state.exchange.cancel(info.order_id)
    push_order_updates(s)


def req_executions(s: Session, r: Reader) -> None:
    r.int()
    req_id = r.int()
    client_id = r.int(0)
    account = r.str()
    since = r.str()
    symbol = r.str().upper()
    sec_type = r.str().upper()
    r.str()  # exchange
    side = r.str().upper()
    universe = s.state.market.universe
    for e in s.state.exchange.executions(account or None):
        owner = s.state.order_owner.get(e.order_id)
        inst = universe.by_conid(e.conid)
        if client_id and (owner is None or owner[0] != client_id):
            continue
        if (symbol and inst.symbol != symbol) or (sec_type and inst.sec_type != sec_type):
            continue
        if side and side[0] != ("B" if e.side.upper() in ("BUY", "BOT") else "S"):
            continue
        if since and _exec_time(e.time).replace("-", " ") < since.replace("-", " "):
            continue
        _send_execution(s, req_id, e)
    s.send(55, 1, req_id)


def completed_order_fields(s: Session, info: Any) -> list[object]:
    """Message 101 (completedOrder) in the layout ``ib_async`` decodes at version 178."""
    inst = s.state.market.universe.by_conid(info.conid)
    updated = getattr(info, "updated", None) or s.state.now()
    # fmt: off
    return [
        101, *contract_fields(inst),
        info.action, float(info.quantity), info.order_type, info.limit_price, info.stop_price,
        info.tif, "", info.account, "", 0, info.order_ref, int(info.order_id),
        bool(info.outside_rth), False, 0.0, "", "", "", "",  # hidden .. faPercentage
        "", "", "", "", "", 0, "", -1,  # modelCode .. exemptCode
        "", "", "", "", "", 0, False, False, "", 0, 0, "", 0, "", "",  # .. deltaNeutralAuxPrice
        False, 0, "", "", "",  # continuousUpdate .. comboLegsDescrip
        0, 0, 0, "", "", "", "",  # legs x3, scale x3, hedgeType
        "", "", False, 0, "",  # clearingAccount clearingIntent notHeld dnc algoStrategy
        False, info.status, False, False, 0,  # solicited status randomize x2 conditions
        "", "", "", False, False, "", float(info.filled), 0, False, "", False, False, 0,
        _exec_time(updated), info.status,
        "", "", "", "", "",
    ]
    # fmt: on


def req_completed_orders(s: Session, r: Reader) -> None:
    r.rest()
    for info in s.state.exchange.completed_orders():
        s.send(*completed_order_fields(s, info))
    s.send(102)
