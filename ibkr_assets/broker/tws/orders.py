"""The tws backend's trading: what-if, place, cancel, modify, open and completed orders, and
executions with their commission reports.

Completed-order messages carry the permId, not the orderId, so the backend remembers the orderId
of every order this client sent by permId. Open and completed orders are requests ib_async files
under one name: one in flight at a time.
"""

from __future__ import annotations

import asyncio
import time as _time
from datetime import UTC, datetime
from typing import Any

import ib_async
from ib_async import ExecutionFilter

from ibkr_assets.broker.errors import NotConnected, OrderNotFound, OrderRejected
from ibkr_assets.broker.models import (
    DONE_STATUSES,
    ORDER_STATUSES,
    Contract,
    Execution,
    Order,
    OrderStatus,
    WhatIfResult,
)
from ibkr_assets.broker.order_change import OrderChange
from ibkr_assets.broker.tws.accounts import Accounts
from ibkr_assets.broker.tws.connection import Connection
from ibkr_assets.broker.tws.contracts import from_ib_contract, to_ib_contract
from ibkr_assets.broker.tws.wire import UNSET, num

#: How long a market order may take to fill during regular hours before place() returns it open.
_FILL_WAIT = 3.0
#: Seconds between two looks at an order's status (and the connection) while waiting on it.
_POLL_S = 0.005
_ACK_STATUSES = {"PreSubmitted", "Submitted"} | set(DONE_STATUSES)


def to_ib_order(o: Order, account: str) -> ib_async.Order:
    """Our validated order as ib_async's."""
    return ib_async.Order(
        action=o.action,
        totalQuantity=o.quantity,
        orderType=o.order_type,
        lmtPrice=o.limit_price if o.limit_price is not None else UNSET,
        auxPrice=o.stop_price if o.stop_price is not None else UNSET,
        tif=o.tif,
        account=account,
        orderRef=o.order_ref,
        outsideRth=o.outside_rth,
        parentId=o.parent_id or 0,
        transmit=o.transmit,
    )


class Orders:
    """Order requests, run on the connection's loop."""

    def __init__(self, conn: Connection, accounts: Accounts) -> None:
        self._conn = conn
        self._ib = conn.ib
        self._accounts = accounts
        self._order_ids: dict[int, int] = {}  # permId -> orderId of the orders this client sent

    async def what_if(self, order: Order) -> WhatIfResult:
        account = await self._accounts.account(order.account_id)
        try:
            state = await self._conn.wait(
                self._ib.whatIfOrderAsync(
                    to_ib_contract(order.contract), to_ib_order(order, account)
                ),
                f"the what-if of {order.action} {order.quantity:g} {order.contract.symbol}",
            )
        except ib_async.RequestError as exc:
            raise OrderRejected(f"{order.contract.symbol}: {exc.message}", code=exc.code) from None
        if not state:
            raise OrderRejected(f"{order.contract.symbol}: IB returned no what-if result")

        def f(x: Any) -> float:
            return num(x) or 0.0

        init_after, ewl_after = f(state.initMarginAfter), f(state.equityWithLoanAfter)
        warning = state.warningText or ""
        accepted = not warning and init_after <= ewl_after
        if not accepted and not warning:
            warning = (
                f"initial margin after the order ({init_after:,.0f}) would exceed equity with loan "
                f"({ewl_after:,.0f})"
            )
        return WhatIfResult(
            order=order,
            account_id=account,
            init_margin_before=f(state.initMarginBefore),
            init_margin_after=init_after,
            maint_margin_before=f(state.maintMarginBefore),
            maint_margin_after=f(state.maintMarginAfter),
            equity_with_loan_before=f(state.equityWithLoanBefore),
            equity_with_loan_after=ewl_after,
            commission=f(state.commission),
            min_commission=num(state.minCommission),
            max_commission=num(state.maxCommission),
            commission_currency=state.commissionCurrency or "USD",
            accepted=accepted,
            warning=warning,
        )

    async def place(self, order: Order) -> OrderStatus:
        account = await self._accounts.account(order.account_id)
        trade = self._ib.placeOrder(to_ib_contract(order.contract), to_ib_order(order, account))
        await self._settle(trade, wait_fill=order.order_type == "MKT")
        self._remember(trade)
        status = _status_model(trade, order.contract)
        if status.status in ("Cancelled", "ApiCancelled", "Inactive") and status.filled == 0:
            raise OrderRejected(
                f"{order.action} {order.quantity:g} {order.contract.symbol} was rejected: "
                f"{status.message or status.status}",
                code=_last_error_code(trade) or 201,
            )
        return status

    async def _settle(self, trade: ib_async.Trade, wait_fill: bool) -> None:
        """Wait for IB to acknowledge an order (at most the settings' timeout) and, for a market
        order, briefly for its fill (:data:`_FILL_WAIT` s). Raises NotConnected (504) when the
        acknowledgement does not come in time, and as soon as the socket closes before it comes
        (a gateway restart): the order's fate is then unknown, and the submission asks IB by
        ``order_ref`` (:mod:`ibkr_assets.broker.submission`). A drop after the acknowledgement
        only ends the wait for the fill."""
        started = _time.monotonic()
        deadline = started + self._conn.settings.timeout
        while trade.orderStatus.status not in _ACK_STATUSES:
            if not self._ib.isConnected():
                raise NotConnected(
                    f"IB did not acknowledge order {trade.order.orderId}: the connection to IB "
                    f"closed {_time.monotonic() - started:.1f} s after it was placed"
                )
            if _time.monotonic() > deadline:
                raise NotConnected(f"IB did not acknowledge order {trade.order.orderId} in time")
            await asyncio.sleep(_POLL_S)
        fill_deadline = _time.monotonic() + (_FILL_WAIT if wait_fill else 0.0)
        while not trade.isDone() and self._ib.isConnected() and _time.monotonic() < fill_deadline:
            await asyncio.sleep(_POLL_S)

    def _remember(self, trade: ib_async.Trade) -> None:
        """Note an order's permId: completed-order messages carry the permId, not the orderId."""
        perm_id = trade.order.permId or trade.orderStatus.permId
        if perm_id and trade.order.orderId:
            self._order_ids[perm_id] = trade.order.orderId

    async def _all_open(self) -> list[ib_async.Trade]:
        trades = await self._conn.named_request(
            "openOrders", self._ib.reqAllOpenOrdersAsync, "open orders"
        )
        for trade in trades:
            self._remember(trade)
        return trades

    async def _find_open(self, order_id: int) -> ib_async.Trade:
        trades = await self._all_open()
        for trade in list(trades) + self._ib.openTrades():
            if trade.order.orderId == order_id and not trade.isDone():
                return trade
        raise OrderNotFound(f"no open order with id {order_id} (filled, cancelled or unknown)")

    async def cancel(self, order_id: int) -> OrderStatus:
        trade = await self._find_open(order_id)
        self._ib.cancelOrder(trade.order)
        deadline = _time.monotonic() + self._conn.settings.timeout
        while not trade.isDone() and _time.monotonic() < deadline:
            await asyncio.sleep(_POLL_S)
        return _status_model(trade, from_ib_contract(trade.contract))

    async def modify(self, change: OrderChange) -> OrderStatus:
        trade = await self._find_open(change.order_id)
        o = trade.order
        if change.quantity is not None:
            o.totalQuantity = change.quantity
        if change.limit_price is not None:
            o.lmtPrice = change.limit_price
        if change.stop_price is not None:
            o.auxPrice = change.stop_price
        before = len(trade.log)
        self._ib.placeOrder(trade.contract, o)
        deadline = _time.monotonic() + self._conn.settings.timeout
        while len(trade.log) == before and _time.monotonic() < deadline:
            await asyncio.sleep(_POLL_S)
        return _status_model(trade, from_ib_contract(trade.contract))

    async def open_orders(self, account_id: str | None) -> list[OrderStatus]:
        account = await self._accounts.account(account_id)
        trades = await self._all_open()
        return [
            _status_model(t, from_ib_contract(t.contract))
            for t in trades
            if t.order.account == account and not t.isDone()
        ]

    async def completed(self, account_id: str | None) -> list[OrderStatus]:
        account = await self._accounts.account(account_id)
        return [s for s in await self._all_completed() if s.account_id == account]

    async def _all_completed(self) -> list[OrderStatus]:
        """Today's completed orders of every account, with the orderIds this client knows and
        the average price of their fills (see :meth:`_with_fill_prices`)."""
        for trade in self._ib.trades():
            self._remember(trade)
        trades = await self._conn.named_request(
            "completedOrders", lambda: self._ib.reqCompletedOrdersAsync(False), "completed orders"
        )
        done = [
            _completed_model(t, self._order_ids.get(t.order.permId, t.order.orderId))
            for t in trades
        ]
        return await self._with_fill_prices(done)

    async def _with_fill_prices(self, done: list[OrderStatus]) -> list[OrderStatus]:
        """``done`` with each filled order's average fill price: IB's completed-order message
        carries none, so it is the size-weighted price of the order's fills (by permId) - the
        fills this client has seen, else today's executions, asked for once."""
        missing = {s.perm_id for s in done if s.perm_id and s.filled and s.avg_fill_price is None}
        if not missing:
            return done
        fills = list(self._ib.fills())
        if missing - {f.execution.permId for f in fills}:
            fills += await self._conn.wait(
                self._ib.reqExecutionsAsync(ExecutionFilter()), "executions"
            )
        prices = {perm_id: _average_price(fills, perm_id) for perm_id in missing}
        return [
            s.model_copy(update={"avg_fill_price": prices[s.perm_id]}) if s.perm_id in prices else s
            for s in done
        ]

    async def status(self, order_id: int) -> OrderStatus:
        """The order ``order_id`` of any account: open (IB's open orders), else done today
        (IB's completed orders). Raises OrderNotFound."""
        for trade in await self._all_open():
            if trade.order.orderId == order_id and not trade.isDone():
                return _status_model(trade, from_ib_contract(trade.contract))
        for done in await self._all_completed():
            if done.order_id == order_id:
                return done
        raise OrderNotFound(f"order {order_id} is neither open nor among today's completed orders")

    async def executions(self, account_id: str | None, since: datetime | None) -> list[Execution]:
        account = await self._accounts.account(account_id)
        flt = ExecutionFilter(acctCode=account)
        if since is not None:
            flt.time = since.astimezone(UTC).strftime("%Y%m%d-%H:%M:%S")
        answered = await self._conn.wait(self._ib.reqExecutionsAsync(flt), "executions")
        # ib_async attaches commission reports to the fills it keeps by execId, not to the copies
        # a reqExecutions answer holds
        known = self._ib.wrapper.fills
        fills = [known.get(f.execution.execId, f) for f in answered]
        return [
            Execution(
                exec_id=f.execution.execId,
                order_id=f.execution.orderId,
                perm_id=f.execution.permId,
                order_ref=f.execution.orderRef,
                account_id=f.execution.acctNumber,
                contract=from_ib_contract(f.contract),
                side=f.execution.side,  # type: ignore[arg-type]
                shares=f.execution.shares,
                price=f.execution.price,
                time=f.execution.time.astimezone(UTC),
                exchange=f.execution.exchange or "SIM",
                commission=num(f.commissionReport.commission) or 0.0,
                commission_currency=f.commissionReport.currency or "USD",
                realized_pnl=num(f.commissionReport.realizedPNL),
            )
            for f in fills
            if f.execution.acctNumber == account
        ]


def _average_price(fills: list[ib_async.Fill], perm_id: int) -> float | None:
    """The size-weighted price of the fills of order ``perm_id`` (each fill counted once)."""
    mine = {f.execution.execId: f.execution for f in fills if f.execution.permId == perm_id}
    shares = sum(e.shares for e in mine.values())
    if not shares:
        return None
    return sum(e.shares * e.price for e in mine.values()) / shares


def _last_error_code(trade: ib_async.Trade) -> int | None:
    codes = [e.errorCode for e in trade.log if e.errorCode]
    return codes[-1] if codes else None


def _status_model(trade: ib_async.Trade, contract: Contract) -> OrderStatus:
    o, s = trade.order, trade.orderStatus
    messages = [e.message for e in trade.log if e.message]
    status = s.status if s.status in ORDER_STATUSES else "PendingSubmit"
    return OrderStatus(
        order_id=o.orderId,
        perm_id=o.permId or s.permId,
        client_id=o.clientId,
        account_id=o.account,
        contract=contract,
        action=o.action,  # type: ignore[arg-type]
        quantity=float(o.totalQuantity),
        order_type=o.orderType,  # type: ignore[arg-type]
        limit_price=num(o.lmtPrice) if o.orderType in ("LMT", "STP LMT") else None,
        stop_price=num(o.auxPrice) if o.orderType in ("STP", "STP LMT") else None,
        tif=o.tif or "DAY",  # type: ignore[arg-type]
        order_ref=o.orderRef,
        parent_id=o.parentId or None,
        status=status,  # type: ignore[arg-type]
        filled=float(s.filled),
        remaining=float(s.remaining) if s.status else float(o.totalQuantity),
        avg_fill_price=num(s.avgFillPrice) or None,
        message=messages[-1] if messages else "",
        time=(trade.log[-1].time if trade.log else datetime.now(UTC)).astimezone(UTC),
    )


def _completed_model(trade: ib_async.Trade, order_id: int) -> OrderStatus:
    """A completed order (IB's completedOrder message: permId, no orderId) as ours."""
    status = _status_model(trade, from_ib_contract(trade.contract))
    filled = float(trade.order.filledQuantity) if num(trade.order.filledQuantity) else 0.0
    return status.model_copy(
        update={
            "order_id": order_id,
            "filled": max(status.filled, filled),
            "remaining": max(status.quantity - max(status.filled, filled), 0.0),
        }
    )
