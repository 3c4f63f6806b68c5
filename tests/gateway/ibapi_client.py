"""IB's own Python client (``ibapi``) driven synchronously, for the gateway conformance test.

:class:`IbapiClient` is an ``EClient`` whose ``EWrapper`` side records every callback the
conformance test looks at as a :class:`Callback` (its name and the arguments ``ibapi`` decoded
from the wire), in arrival order. ``EClient.run`` (ibapi's decoding loop) runs on a daemon thread;
the test thread sends requests and waits, with a timeout, until the callbacks it expects have
arrived. Nothing here parses the wire itself: what the test sees is what ``ibapi`` decoded.
"""

# EWrapper's callbacks keep IB's camelCase names: ibapi's decoder calls them by those names.
# ruff: noqa: N802

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ibapi.client import EClient
from ibapi.commission_and_fees_report import CommissionAndFeesReport
from ibapi.common import BarData, TickAttrib
from ibapi.contract import Contract, ContractDetails
from ibapi.execution import Execution
from ibapi.order import Order
from ibapi.order_state import OrderState
from ibapi.wrapper import EWrapper

TIMEOUT = 10.0  # seconds to wait for an answer of the gateway on loopback


def stock(symbol: str) -> Contract:
    """A US stock routed SMART, as an ``ibapi`` user writes it."""
    contract = Contract()
    contract.symbol, contract.secType = symbol, "STK"
    contract.exchange, contract.currency = "SMART", "USD"
    return contract


def fx_pair(base: str, quote: str) -> Contract:
    """An IDEALPRO currency pair (``EUR``, ``USD`` -> EUR.USD)."""
    contract = Contract()
    contract.symbol, contract.secType = base, "CASH"
    contract.exchange, contract.currency = "IDEALPRO", quote
    return contract


def order(
    action: str,
    quantity: float,
    limit: float | None = None,
    ref: str = "",
    what_if: bool = False,
) -> Order:
    """A DAY market order, or a limit order at ``limit`` (in the contract's currency)."""
    o = Order()
    o.action, o.totalQuantity, o.orderRef, o.tif = action, Decimal(str(quantity)), ref, "DAY"
    o.orderType = "MKT" if limit is None else "LMT"
    if limit is not None:
        o.lmtPrice = limit
    o.whatIf = what_if
    return o


@dataclass(frozen=True)
class Callback:
    """One ``EWrapper`` callback: its method name and the arguments ``ibapi`` passed."""

    name: str
    args: tuple[Any, ...]


class IbapiClient(EWrapper, EClient):
    """An ``ibapi`` client that records its callbacks (see the module docstring).

    Use :meth:`open` to connect and start the reader thread, :meth:`close` to end both.
    """

    def __init__(self) -> None:
        EWrapper.__init__(self)
        EClient.__init__(self, wrapper=self)
        self.callbacks: list[Callback] = []
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self.next_order_id = 0

    # ------------------------------------------------------------------ life cycle
    def open(self, port: int, client_id: int, timeout: float = TIMEOUT) -> IbapiClient:
        """Connect to the gateway on loopback ``port`` as ``client_id``, start ``EClient.run``
        on a thread and wait for ``nextValidId`` (``TimeoutError`` if it does not come)."""
        self.connect("127.0.0.1", port, client_id)
        if not self.isConnected():
            raise ConnectionError(
                f"ibapi could not connect to 127.0.0.1:{port} as client {client_id}: "
                f"{self.named('error')}"
            )
        self._thread = threading.Thread(target=self.run, name=f"ibapi-{client_id}", daemon=True)
        self._thread.start()
        self.wait_for("nextValidId", timeout=timeout)
        return self

    def close(self) -> None:
        """Disconnect and let the reader thread end."""
        self.disconnect()
        if self._thread is not None:
            self._thread.join(TIMEOUT)

    def __enter__(self) -> IbapiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reading what came
    def _record(self, name: str, *args: Any) -> None:
        with self._changed:
            self.callbacks.append(Callback(name, args))
            self._changed.notify_all()

    def named(self, name: str, where: Callable[..., bool] | None = None) -> list[tuple[Any, ...]]:
        """The arguments of every ``name`` callback so far (those ``where(*args)`` accepts)."""
        with self._changed:
            return [
                c.args
                for c in self.callbacks
                if c.name == name and (where is None or where(*c.args))
            ]

    def errors(self, req_id: int | None = None) -> list[tuple[int, int, str]]:
        """``(reqId, code, message)`` of every ``error`` callback (for ``req_id`` if given)."""
        return [
            (rid, code, text)
            for rid, _time, code, text, _json in self.named("error")
            if req_id is None or rid == req_id
        ]

    def error_codes(self, req_id: int | None = None) -> list[int]:
        return [code for _, code, _ in self.errors(req_id)]

    def wait_until(
        self, done: Callable[[], bool], timeout: float = TIMEOUT, what: str = ""
    ) -> None:
        """Block until ``done()`` holds; ``TimeoutError`` naming ``what`` after ``timeout`` s."""
        end = time.monotonic() + timeout
        with self._changed:
            while not done():
                left = end - time.monotonic()
                if left <= 0:
                    seen = sorted({c.name for c in self.callbacks})
                    raise TimeoutError(
                        f"ibapi: no {what or 'expected callbacks'} within {timeout:.1f} s; "
                        f"errors so far {self.errors()}; callbacks seen {seen}"
                    )
                self._changed.wait(min(left, 0.1))

    def wait_for(
        self,
        name: str,
        where: Callable[..., bool] | None = None,
        timeout: float = TIMEOUT,
    ) -> tuple[Any, ...]:
        """The arguments of the first ``name`` callback ``where`` accepts, waiting for it."""
        self.wait_until(lambda: bool(self.named(name, where)), timeout, what=name)
        return self.named(name, where)[0]

    def take_order_id(self) -> int:
        """The next order id, counted up from ``nextValidId`` as IB asks."""
        order_id = self.next_order_id
        self.next_order_id += 1
        return order_id

    # ------------------------------------------------------------------ EWrapper callbacks
    def error(
        self,
        reqId: int,
        errorTime: int,
        errorCode: int,
        errorString: str,
        advancedOrderRejectJson: str = "",
    ) -> None:
        self._record("error", reqId, errorTime, errorCode, errorString, advancedOrderRejectJson)

    def nextValidId(self, orderId: int) -> None:
        self.next_order_id = max(self.next_order_id, orderId)
        self._record("nextValidId", orderId)

    def managedAccounts(self, accountsList: str) -> None:
        self._record("managedAccounts", accountsList)

    def currentTime(self, time: int) -> None:
        self._record("currentTime", time)

    def contractDetails(self, reqId: int, contractDetails: ContractDetails) -> None:
        self._record("contractDetails", reqId, contractDetails)

    def contractDetailsEnd(self, reqId: int) -> None:
        self._record("contractDetailsEnd", reqId)

    def historicalData(self, reqId: int, bar: BarData) -> None:
        self._record("historicalData", reqId, bar)

    def historicalDataEnd(self, reqId: int, start: str, end: str) -> None:
        self._record("historicalDataEnd", reqId, start, end)

    def marketDataType(self, reqId: int, marketDataType: int) -> None:
        self._record("marketDataType", reqId, marketDataType)

    def tickPrice(self, reqId: int, tickType: int, price: float, attrib: TickAttrib) -> None:
        self._record("tickPrice", reqId, tickType, price, attrib)

    def tickSize(self, reqId: int, tickType: int, size: Decimal) -> None:
        self._record("tickSize", reqId, tickType, size)

    def tickString(self, reqId: int, tickType: int, value: str) -> None:
        self._record("tickString", reqId, tickType, value)

    def openOrder(
        self, orderId: int, contract: Contract, order: Order, orderState: OrderState
    ) -> None:
        self._record("openOrder", orderId, contract, order, orderState)

    def openOrderEnd(self) -> None:
        self._record("openOrderEnd")

    def orderStatus(
        self,
        orderId: int,
        status: str,
        filled: Decimal,
        remaining: Decimal,
        avgFillPrice: float,
        permId: int,
        parentId: int,
        lastFillPrice: float,
        clientId: int,
        whyHeld: str,
        mktCapPrice: float,
    ) -> None:
        self._record("orderStatus", orderId, status, filled, remaining, avgFillPrice, permId)

    def execDetails(self, reqId: int, contract: Contract, execution: Execution) -> None:
        self._record("execDetails", reqId, contract, execution)

    def execDetailsEnd(self, reqId: int) -> None:
        self._record("execDetailsEnd", reqId)

    def commissionAndFeesReport(self, commissionAndFeesReport: CommissionAndFeesReport) -> None:
        self._record("commissionAndFeesReport", commissionAndFeesReport)

    def connectionClosed(self) -> None:
        self._record("connectionClosed")


__all__ = ["TIMEOUT", "Callback", "IbapiClient", "fx_pair", "order", "stock"]
