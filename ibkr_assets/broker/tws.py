"""The ``tws`` backend: the Broker protocol on ib_async, against TWS, IB Gateway or the simulated
gateway (``ibkr-sim gateway``), which speak the same socket protocol.

How it behaves, for a trader who has fought IB's API before:

* **One event loop, many threads.** ib_async is asyncio; the protocol is synchronous and called
  from Dagster ops and the MCP server's worker threads. The backend runs ib_async on its own loop
  in a daemon thread and every call is submitted to it, so callers never share a loop.
  Everything that touches ib_async (its futures, its wrapper) runs as one ``async def`` on that
  loop; requests ib_async keys by name rather than by reqId (current time, open and completed
  orders, account updates, news providers, scanner parameters) are sent one at a time, since a
  second one in flight would orphan the first.
* **Pacing.** IB allows 50 messages per second per client (error 100), 100 simultaneous
  market-data lines (error 101), 3 depth subscriptions (error 309) and 50 simultaneous historical
  requests; for historical data it refuses an identical request within 15 s, a sixth request for
  one contract and tick type within 2 s, and more than 60 requests for bars of 30 s or less in
  10 minutes (error 162). ib_async's own throttle is set to ``max_msg_rate`` (45/s by default),
  snapshots, depth and historical requests go through semaphores below IB's limits, identical
  historical requests within 15 s are answered from memory, and the two historical windows are
  kept client-side (a request waits for its slot). A 700-symbol ingest therefore never trips a
  pacing violation. ``IBKR_PACING=false`` turns the client-side pacing off, for a gateway that
  does not enforce it (``ibkr-sim gateway --pacing off``).
* **Connection.** Connects once, with retry and exponential backoff; after a dropped connection
  the next call reconnects (same clientId) and restores the market-data type. Nothing else needs
  restoring: the backend keeps no standing subscriptions.
* **Errors.** ib_async is told to raise request errors; IB's codes become the typed errors of
  :mod:`ibkr_assets.broker.errors` (200 -> ContractNotFound, 162 pacing -> PacingViolation...).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time as _time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import ib_async
from ib_async import IB, ExecutionFilter, ScannerSubscription
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from ibkr_assets.broker.errors import (
    AccountNotFound,
    BrokerError,
    ContractNotFound,
    InvalidRequest,
    MarketDataUnavailable,
    NotConnected,
    OrderNotFound,
    OrderRejected,
    error_from_ib,
)
from ibkr_assets.broker.models import (
    DONE_STATUSES,
    Account,
    AccountSummary,
    Bar,
    CashBalance,
    Contract,
    ContractDetails,
    DepthLevel,
    Execution,
    NewsHeadline,
    OptionChain,
    Order,
    OrderBook,
    OrderStatus,
    PnL,
    Position,
    Quote,
    ScanFilter,
    ScannerRow,
    TradingSession,
    WhatIfResult,
    bar_series,
    option_spec,
)
from ibkr_assets.broker.settings import BrokerSettings
from ibkr_assets.broker.timeutil import parse_ib_hours, session_close_utc
from ibkr_spec import historical
from ibkr_spec.errors import COULD_NOT_CONNECT, NO_SECURITY_DEFINITION, is_pacing

T = TypeVar("T")
log = logging.getLogger(__name__)


class _FailedAttemptFilter(logging.Filter):
    """ib_async logs every failed connection attempt at ERROR ("API connection failed: ...",
    "Make sure API port on TWS/IBG is open"); the backend reports all its attempts once, in the
    NotConnected it raises, so these lines would only repeat it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("API connection failed", "Make sure API port"))


logging.getLogger("ib_async.client").addFilter(_FailedAttemptFilter())

#: IB's "no value" for doubles, and ib_async's.
_UNSET = 1.7976931348623157e308
#: IB's historical-data pacing (error 162): no identical request within 15 s, at most 5 requests
#: for one contract and tick type in 2 s, at most 60 requests for small bars (<= 30 s) in 10 min.
#: The windows are measured when a request is queued, IB measures when it arrives; the margin
#: covers the time a request may wait in ib_async's message throttle.
_IDENTICAL_SECONDS = 15.0
_SAME_CONTRACT_MAX, _SAME_CONTRACT_SECONDS = 5, 2.0
_SMALL_BAR_MAX, _SMALL_BAR_SECONDS, _SMALL_BAR_SIZE = 60, 600.0, 30
_WINDOW_MARGIN = 1.0
#: IB allows 3 simultaneous market-depth subscriptions (error 309).
_DEPTH_SUBSCRIPTIONS = 3
_ACCOUNT_TAGS = (
    "NetLiquidation,TotalCashValue,SettledCash,GrossPositionValue,EquityWithLoanValue,"
    "InitMarginReq,MaintMarginReq,AvailableFunds,ExcessLiquidity,BuyingPower,Cushion,Leverage"
)
#: How long a market order may take to fill during regular hours before place() returns it open.
_FILL_WAIT = 3.0
_ACK_STATUSES = {"PreSubmitted", "Submitted"} | set(DONE_STATUSES)


def _num(value: Any) -> float | None:
    """IB's optional number: None for unset, NaN, IB's max-double or an empty string."""
    if value is None or value == "":
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    if math.isnan(x) or abs(x) >= _UNSET:
        return None
    return x


def to_ib_contract(c: Contract) -> ib_async.Contract:
    """Our contract as ib_async's (conId is enough for IB; the rest helps logs and routing)."""
    return ib_async.Contract(
        conId=c.conid,
        symbol=c.symbol,
        secType="STK" if c.sec_type == "ETF" else c.sec_type,
        exchange=c.exchange or "SMART",
        primaryExchange=c.primary_exchange,
        currency=c.currency,
        lastTradeDateOrContractMonth=c.last_trade_date,
        strike=c.strike,
        right=c.right,
        multiplier="" if c.multiplier == 1.0 else f"{c.multiplier:g}",
        tradingClass=c.trading_class,
    )


def from_ib_contract(c: ib_async.Contract, name: str = "") -> Contract:
    """ib_async's contract as ours."""
    return Contract(
        conid=c.conId,
        symbol=c.symbol,
        sec_type=c.secType or "STK",  # type: ignore[arg-type]
        exchange=c.exchange or "SMART",
        primary_exchange=c.primaryExchange,
        currency=c.currency or "USD",
        local_symbol=c.localSymbol or c.symbol,
        name=name,
        multiplier=float(c.multiplier) if c.multiplier else 1.0,
        last_trade_date=c.lastTradeDateOrContractMonth,
        strike=c.strike or 0.0,
        right=(c.right or "")[:1],  # type: ignore[arg-type]
        trading_class=c.tradingClass,
    )


def to_ib_order(o: Order, account: str) -> ib_async.Order:
    """Our validated order as ib_async's."""
    return ib_async.Order(
        action=o.action,
        totalQuantity=o.quantity,
        orderType=o.order_type,
        lmtPrice=o.limit_price if o.limit_price is not None else _UNSET,
        auxPrice=o.stop_price if o.stop_price is not None else _UNSET,
        tif=o.tif,
        account=account,
        orderRef=o.order_ref,
        outsideRth=o.outside_rth,
        parentId=o.parent_id or 0,
        transmit=o.transmit,
    )


@dataclass(frozen=True)
class _HistoryRequest:
    """One historical-data request; ``key`` is what IB compares for "identical"."""

    contract: Contract
    duration: str
    bar_size: str
    what_to_show: str
    end: datetime | None
    use_rth: bool
    small: bool  # bars of 30 s or less (IB's 60-per-10-minutes limit)

    @property
    def key(self) -> tuple[Any, ...]:
        return (
            self.contract.conid,
            self.duration,
            self.bar_size,
            self.what_to_show,
            self.end,
            self.use_rth,
        )


class _Loop:
    """An asyncio loop in a daemon thread; ``run`` submits a coroutine and waits for its result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="ib_async-loop", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise NotConnected(f"IB did not answer within {timeout:.0f} s") from None

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)


class _Window:
    """At most ``limit`` requests in any ``seconds`` (plus a margin); ``slot`` waits for room.

    Used only on the backend's event loop, so it needs no lock.
    """

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds + _WINDOW_MARGIN
        self._sent: deque[float] = deque()

    async def slot(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            while self._sent and now - self._sent[0] >= self.seconds:
                self._sent.popleft()
            if len(self._sent) < self.limit:
                self._sent.append(now)
                return
            await asyncio.sleep(self._sent[0] + self.seconds - now)


class TwsBroker:
    """The Broker protocol over ib_async (TWS / IB Gateway / the simulated gateway)."""

    name = "tws"

    def __init__(self, settings: BrokerSettings) -> None:
        self.settings = settings
        self._closed = False
        self._loop = _Loop()
        self._ib: IB = self._loop.run(self._make_ib(), timeout=10)
        try:
            self._loop.run(self._connect(), timeout=self._connect_budget())
        except BaseException:
            self._loop.stop()
            raise

    @classmethod
    def from_settings(cls, settings: BrokerSettings) -> TwsBroker:
        """Connect to the TWS / IB Gateway the settings name (host, port, clientId)."""
        return cls(settings)

    # -- plumbing ----------------------------------------------------------------------------
    async def _make_ib(self) -> IB:
        """ib_async's client and every asyncio primitive, created on the backend's loop."""
        s = self.settings
        ib = IB()
        ib.RaiseRequestErrors = True
        ib.errorEvent += self._on_error
        ib.client.MaxRequests = s.max_msg_rate if s.pacing else 0
        ib.client.RequestsInterval = 1
        self._lines = asyncio.Semaphore(s.max_market_data_lines)
        self._depth_slots = asyncio.Semaphore(_DEPTH_SUBSCRIPTIONS)
        self._hist = asyncio.Semaphore(s.max_historical_requests)
        self._reconnect = asyncio.Lock()
        # requests ib_async files under a fixed name: one in flight per name
        self._named: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._hist_keys: defaultdict[tuple[Any, ...], asyncio.Lock] = defaultdict(asyncio.Lock)
        self._hist_memo: dict[tuple[Any, ...], tuple[float, list[Bar]]] = {}
        self._hist_sent: dict[tuple[Any, ...], float] = {}
        self._hist_order: deque[tuple[float, tuple[Any, ...]]] = deque()  # (sent, key), in order
        self._per_contract: defaultdict[tuple[Any, ...], _Window] = defaultdict(
            lambda: _Window(_SAME_CONTRACT_MAX, _SAME_CONTRACT_SECONDS)
        )
        self._small_bars = _Window(_SMALL_BAR_MAX, _SMALL_BAR_SECONDS)
        self._order_ids: dict[int, int] = {}  # permId -> orderId of the orders this client sent
        self._news_codes: str | None = None
        self._scan_codes: list[str] | None = None
        self.pacing_violations: list[tuple[int, str]] = []
        return ib

    def _on_error(self, req_id: int, code: int, message: str, contract: Any) -> None:
        """Keep every pacing error IB sent this connection (the backend should cause none)."""
        if is_pacing(code, message):
            log.warning("IB pacing error %d (reqId %d): %s", code, req_id, message)
            self.pacing_violations.append((code, message))

    def _connect_budget(self) -> float:
        """Seconds all connection attempts and their backoff may take."""
        s = self.settings
        return s.connect_attempts * (s.timeout + 8.0) + 5.0

    async def _connect(self) -> None:
        s = self.settings
        retrying = AsyncRetrying(
            stop=stop_after_attempt(s.connect_attempts),
            wait=wait_exponential(multiplier=0.5, max=8),
            retry=retry_if_exception_type((ConnectionError, OSError, TimeoutError)),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self._ib.connectAsync(
                        s.host,
                        s.port,
                        clientId=s.client_id,
                        timeout=s.timeout,
                        readonly=s.readonly,
                        account=s.account or "",
                    )
        except (ConnectionError, OSError, TimeoutError) as exc:
            raise NotConnected(
                f"cannot reach TWS / IB Gateway at {s.host}:{s.port} (clientId {s.client_id}) "
                f"after {s.connect_attempts} attempts: {exc or type(exc).__name__}",
                code=COULD_NOT_CONNECT,
            ) from None
        self._ib.reqMarketDataType(1)

    async def _ensure(self) -> None:
        """Reconnect (once, whoever asks first) if the connection dropped."""
        if self._ib.isConnected():
            return
        async with self._reconnect:
            if not self._ib.isConnected():
                self._ib.disconnect()
                await self._connect()

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run one of this class's ``async def`` methods on the backend's loop and wait for it.

        ``coro`` must come from an ``async def``: its body, and so every ib_async call it makes,
        then runs on the loop thread, never on the caller's.
        """
        if self._closed:
            coro.close()
            raise NotConnected("the tws broker was closed")
        budget = (timeout or self.settings.timeout * 3) + (
            0.0 if self._ib.isConnected() else self._connect_budget()
        )
        return self._loop.run(self._guarded(coro), budget)

    async def _guarded(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            await self._ensure()
            return await coro
        except ib_async.RequestError as exc:
            raise error_from_ib(exc.code, exc.message) from None
        except ConnectionError as exc:
            raise NotConnected(f"connection to IB lost: {exc}") from None
        finally:
            coro.close()  # never awaited when the connection could not be restored

    async def _wait(self, awaitable: Awaitable[T], what: str) -> T:
        try:
            return await asyncio.wait_for(awaitable, self.settings.timeout)
        except TimeoutError:
            raise NotConnected(
                f"IB did not answer {what} within {self.settings.timeout:.0f} s"
            ) from None

    async def _named_request(self, name: str, send: Callable[[], Awaitable[T]], what: str) -> T:
        """A request ib_async keys by ``name`` (not by reqId): one in flight at a time."""
        async with self._named[name]:
            return await self._wait(send(), what)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._loop.run(self._disconnect(), timeout=5)
        finally:
            self._loop.stop()

    async def _disconnect(self) -> None:
        self._ib.disconnect()

    def now(self) -> datetime:
        return self._call(self._now())

    async def _now(self) -> datetime:
        t = await self._named_request(
            "currentTime", self._ib.reqCurrentTimeAsync, "the current time"
        )
        return t.astimezone(UTC)

    # -- reference ---------------------------------------------------------------------------
    def resolve(
        self,
        symbol: str | int,
        sec_type: str = "STK",
        exchange: str = "SMART",
        currency: str = "USD",
    ) -> Contract:
        if isinstance(symbol, int):
            query = ib_async.Contract(conId=symbol)
            label = f"conId {symbol}"
        else:
            query = ib_async.Contract(
                symbol=symbol.upper(),
                secType="STK" if sec_type == "ETF" else sec_type,
                exchange=exchange,
                currency=currency,
            )
            label = f"{symbol} ({sec_type} {exchange} {currency})"
        return self._call(self._details(query, label)).contract

    async def _details(self, query: ib_async.Contract, label: str) -> ContractDetails:
        try:
            found = await self._wait(self._ib.reqContractDetailsAsync(query), f"details of {label}")
        except ib_async.RequestError as exc:
            if exc.code == NO_SECURITY_DEFINITION:
                raise ContractNotFound(f"no security definition for {label}") from None
            raise
        if not found:
            raise ContractNotFound(f"no security definition for {label}")
        if len(found) > 1:
            raise InvalidRequest(
                f"{label} is ambiguous ({len(found)} contracts); give a conId or exchange"
            )
        return _details_model(found[0])

    def search(self, text: str, limit: int = 10) -> list[Contract]:
        return self._call(self._search(text, limit))

    async def _search(self, text: str, limit: int) -> list[Contract]:
        found = await self._wait(self._ib.reqMatchingSymbolsAsync(text), f"symbols like {text!r}")
        return [from_ib_contract(d.contract) for d in (found or [])[:limit] if d.contract]

    def contract_details(self, contract: Contract) -> ContractDetails:
        return self._call(self._details(to_ib_contract(contract), contract.symbol))

    def option_chain(self, underlying: Contract) -> OptionChain:
        return self._call(self._option_chain(underlying))

    async def _option_chain(self, underlying: Contract) -> OptionChain:
        chains = await self._wait(
            self._ib.reqSecDefOptParamsAsync(
                underlying.symbol, "", underlying.sec_type, underlying.conid
            ),
            f"option chain of {underlying.symbol}",
        )
        if not chains:
            raise ContractNotFound(f"{underlying.symbol} has no listed options")
        chain = next((c for c in chains if c.exchange == "SMART"), chains[0])
        return OptionChain(
            underlying=underlying,
            exchange=chain.exchange,
            trading_class=chain.tradingClass,
            multiplier=float(chain.multiplier or 100),
            expirations=sorted(chain.expirations),
            strikes=sorted(chain.strikes),
        )

    def option_contract(
        self, underlying: Contract, expiry: str, strike: float, right: str
    ) -> Contract:
        expiry, strike, right = option_spec(expiry, strike, right)
        query = ib_async.Option(
            symbol=underlying.symbol,
            lastTradeDateOrContractMonth=expiry,
            strike=strike,
            right=right,
            exchange="SMART",
            currency=underlying.currency,
        )
        label = f"{underlying.symbol} {expiry} {strike:g} {right}"
        return self._call(self._details(query, label)).contract

    # -- accounts ----------------------------------------------------------------------------
    def accounts(self) -> list[Account]:
        managed = self._call(self._managed())
        primary = self.settings.account if self.settings.account in managed else managed[0]
        return [
            Account(account_id=a, is_paper=a.startswith("D"), is_primary=a == primary)
            for a in managed
        ]

    async def _managed(self) -> list[str]:
        managed = self._ib.managedAccounts()
        if not managed:
            raise NotConnected("IB reported no managed accounts")
        return managed

    async def _account(self, account_id: str | None) -> str:
        managed = await self._managed()
        wanted = account_id or self.settings.account
        if wanted is None:
            return managed[0]
        if wanted not in managed:
            raise AccountNotFound(
                f"account {wanted!r} is not managed by this login (known: {', '.join(managed)})"
            )
        return wanted

    def account_summary(self, account_id: str | None = None) -> AccountSummary:
        return self._call(self._summary(account_id))

    async def _summary(self, account_id: str | None) -> AccountSummary:
        account = await self._account(account_id)
        values = await self._fresh_summary(account)

        def tag(name: str, default: float | None = 0.0) -> float | None:
            return values.get(name, default)

        net_liq = tag("NetLiquidation") or 0.0
        gross = tag("GrossPositionValue") or 0.0
        excess = tag("ExcessLiquidity") or 0.0
        return AccountSummary(
            account_id=account,
            currency=values.get("_currency", "USD"),  # type: ignore[arg-type]
            net_liquidation=net_liq,
            total_cash=tag("TotalCashValue") or 0.0,
            settled_cash=tag("SettledCash", None),
            gross_position_value=gross,
            equity_with_loan=tag("EquityWithLoanValue") or 0.0,
            init_margin_req=tag("InitMarginReq") or 0.0,
            maint_margin_req=tag("MaintMarginReq") or 0.0,
            available_funds=tag("AvailableFunds") or 0.0,
            excess_liquidity=excess,
            buying_power=tag("BuyingPower") or 0.0,
            cushion=excess / net_liq if net_liq else 0.0,
            leverage=gross / net_liq if net_liq else 0.0,
            time=datetime.now(UTC),
        )

    async def _fresh_summary(self, account: str) -> dict[str, Any]:
        """A fresh account-summary snapshot (ib_async would otherwise keep the first one)."""
        ib = self._ib
        req_id = ib.client.getReqId()
        future = ib.wrapper.startReq(req_id)
        ib.client.reqAccountSummary(req_id, "All", _ACCOUNT_TAGS)
        try:
            await self._wait(future, f"the account summary of {account}")
        finally:
            ib.client.cancelAccountSummary(req_id)
        values: dict[str, Any] = {}
        for v in ib.wrapper.acctSummary.values():
            if v.account == account and _num(v.value) is not None:
                values[v.tag] = float(v.value)
                if v.tag == "NetLiquidation" and v.currency:
                    values["_currency"] = v.currency
        if "NetLiquidation" not in values:
            raise AccountNotFound(f"IB sent no account summary for {account}")
        return values

    async def _account_updates(self, account: str) -> None:
        """Re-subscribe account updates: IB then sends the full portfolio and account values."""
        await self._wait(self._ib.reqAccountUpdatesAsync(account), f"account updates of {account}")

    async def _account_values(
        self, account: str
    ) -> tuple[list[ib_async.PortfolioItem], list[ib_async.AccountValue]]:
        """The portfolio and account values of ``account``, fresh from IB (one account at a
        time: ib_async files account updates under one name)."""
        async with self._named["accountValues"]:
            await self._account_updates(account)
            return self._ib.portfolio(account), self._ib.accountValues(account)

    def positions(self, account_id: str | None = None) -> list[Position]:
        return self._call(self._positions(account_id))

    async def _positions(self, account_id: str | None) -> list[Position]:
        account = await self._account(account_id)
        portfolio, _ = await self._account_values(account)
        return [
            Position(
                account_id=account,
                contract=from_ib_contract(p.contract),
                quantity=p.position,
                avg_cost=p.averageCost,
                market_price=_num(p.marketPrice),
                market_value=_num(p.marketValue),
                unrealized_pnl=_num(p.unrealizedPNL),
                realized_pnl=_num(p.realizedPNL),
                currency=p.contract.currency or "USD",
            )
            for p in portfolio
            if p.position
        ]

    def pnl(self, account_id: str | None = None) -> PnL:
        return self._call(self._pnl(account_id))

    async def _pnl(self, account_id: str | None) -> PnL:
        account = await self._account(account_id)
        ib = self._ib
        async with self._named[f"pnl {account}"]:  # ib_async allows one subscription per account
            stream = ib.reqPnL(account)
            try:
                deadline = _time.monotonic() + self.settings.timeout
                while _num(stream.dailyPnL) is None and _time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
            finally:
                ib.cancelPnL(account)
        if _num(stream.dailyPnL) is None:
            raise NotConnected(f"IB sent no P&L for {account}")
        return PnL(
            account_id=account,
            daily=_num(stream.dailyPnL) or 0.0,
            unrealized=_num(stream.unrealizedPnL) or 0.0,
            realized=_num(stream.realizedPnL) or 0.0,
        )

    def cash_balances(self, account_id: str | None = None) -> list[CashBalance]:
        return self._call(self._cash(account_id))

    async def _cash(self, account_id: str | None) -> list[CashBalance]:
        account = await self._account(account_id)
        _, account_values = await self._account_values(account)
        values = [v for v in account_values if v.currency not in ("", "BASE")]
        rates = {v.currency: float(v.value) for v in values if v.tag == "ExchangeRate"}
        base = next((v.currency for v in values if v.tag == "NetLiquidation"), "USD")
        return [
            CashBalance(
                account_id=account,
                currency=v.currency,
                cash=float(v.value),
                fx_rate=rates.get(v.currency, 1.0),
                value_in_base=float(v.value) * rates.get(v.currency, 1.0),
                base_currency=base,
            )
            for v in sorted(values, key=lambda v: v.currency)
            if v.tag == "CashBalance" and float(v.value) != 0.0
        ]

    # -- market data -------------------------------------------------------------------------
    def quotes(self, contracts: Sequence[Contract]) -> list[Quote]:
        if not contracts:
            return []
        s = self.settings
        paced_rate = s.max_msg_rate if s.pacing and s.max_msg_rate else 500  # messages/s
        timeout = s.timeout * 3 + len(contracts) / paced_rate
        return self._call(self._quotes(list(contracts)), timeout=timeout)

    async def _quotes(self, contracts: list[Contract]) -> list[Quote]:
        return list(await asyncio.gather(*(self._quote(c) for c in contracts)))

    async def _quote(self, contract: Contract) -> Quote:
        async with self._lines:
            (t,) = await self._wait(
                self._ib.reqTickersAsync(to_ib_contract(contract)), f"a quote for {contract.symbol}"
            )
        quote = Quote(
            contract=contract,
            time=(t.time or datetime.now(UTC)).astimezone(UTC),
            bid=_positive(t.bid),
            ask=_positive(t.ask),
            last=_positive(t.last),
            bid_size=_num(t.bidSize),
            ask_size=_num(t.askSize),
            last_size=_num(t.lastSize),
            volume=_num(t.volume),
            open=_positive(t.open),
            high=_positive(t.high),
            low=_positive(t.low),
            close=_positive(t.close),
            market_data_type=t.marketDataType or 1,
        )
        if quote.price is None:
            raise MarketDataUnavailable(f"no quote at all for {contract.symbol}")
        return quote

    def history(
        self,
        contract: Contract,
        duration: str = "1 Y",
        bar_size: str = "1 day",
        what_to_show: str = "TRADES",
        end: datetime | None = None,
        use_rth: bool = True,
    ) -> list[Bar]:
        try:
            historical.parse_duration(duration)
            size = historical.parse_bar_size(bar_size)
        except ValueError as exc:
            raise InvalidRequest(f"{contract.symbol}: {exc}") from None
        if what_to_show not in ("TRADES", "MIDPOINT", "BID", "ASK"):
            raise InvalidRequest(f"{contract.symbol}: whatToShow {what_to_show!r} is not supported")
        small = 0 < size.seconds <= _SMALL_BAR_SIZE
        # a request may wait for its pacing slot: up to 10 minutes for small bars
        timeout = self.settings.timeout * 3 + (_SMALL_BAR_SECONDS if small else _IDENTICAL_SECONDS)
        request = _HistoryRequest(contract, duration, bar_size, what_to_show, end, use_rth, small)
        return self._call(self._history(request), timeout=timeout)

    async def _history(self, r: _HistoryRequest) -> list[Bar]:
        """IB's historical pacing kept client-side: identical requests within 15 s share one
        answer, a repeat after a failure waits out the 15 s, and a request waits for its slot in
        the per-contract and small-bar windows."""
        if not self.settings.pacing:
            return await self._fetch_history(r)
        loop = asyncio.get_running_loop()
        async with self._hist_keys[r.key]:
            memo = self._hist_memo.get(r.key)
            if memo and loop.time() - memo[0] < _IDENTICAL_SECONDS:
                return list(memo[1])
            last = self._hist_sent.get(r.key)
            if last is not None:
                await asyncio.sleep(last + _IDENTICAL_SECONDS + _WINDOW_MARGIN - loop.time())
            await self._per_contract[(r.contract.conid, r.what_to_show)].slot()
            if r.small:
                await self._small_bars.slot()
            self._hist_sent[r.key] = loop.time()
            self._hist_order.append((loop.time(), r.key))
            bars = await self._fetch_history(r)
            self._hist_memo[r.key] = (loop.time(), bars)
        self._forget_old_requests(loop.time())
        return list(bars)

    def _forget_old_requests(self, now: float) -> None:
        """Drop what is kept of requests older than IB's 15 s: it can no longer matter."""
        order = self._hist_order
        while order and now - order[0][0] > _IDENTICAL_SECONDS + _WINDOW_MARGIN:
            _, key = order.popleft()
            sent = self._hist_sent.get(key)
            if sent is not None and now - sent > _IDENTICAL_SECONDS + _WINDOW_MARGIN:
                self._hist_sent.pop(key)
                self._hist_memo.pop(key, None)
                lock = self._hist_keys.get(key)
                if lock is not None and not lock.locked():
                    del self._hist_keys[key]

    async def _fetch_history(self, r: _HistoryRequest) -> list[Bar]:
        timeout = self.settings.timeout * 3
        async with self._hist:
            started = _time.monotonic()
            data = await self._ib.reqHistoricalDataAsync(
                to_ib_contract(r.contract),
                endDateTime=r.end.astimezone(UTC) if r.end else "",
                durationStr=r.duration,
                barSizeSetting=r.bar_size,
                whatToShow=r.what_to_show,
                useRTH=r.use_rth,
                formatDate=2,
                timeout=timeout,
            )
        if not data and _time.monotonic() - started >= timeout:
            # ib_async answers a timed-out request with no bars; say what happened instead
            raise NotConnected(
                f"IB sent no {r.bar_size} bars for {r.contract.symbol} within {timeout:.0f} s"
            )
        return bar_series([_bar_fields(b, r.what_to_show) for b in data])

    def depth(self, contract: Contract, rows: int = 5) -> OrderBook:
        return self._call(self._depth(contract, rows))

    async def _depth(self, contract: Contract, rows: int) -> OrderBook:
        ib = self._ib
        async with self._depth_slots, self._lines:
            ticker = ib.reqMktDepth(to_ib_contract(contract), numRows=rows)
            try:
                deadline = _time.monotonic() + self.settings.timeout
                while (len(ticker.domBids) < rows or len(ticker.domAsks) < rows) and (
                    _time.monotonic() < deadline
                ):
                    await asyncio.sleep(0.01)
                # cancelling clears the ticker's book: keep a copy
                bids, asks = list(ticker.domBids[:rows]), list(ticker.domAsks[:rows])
            finally:
                ib.cancelMktDepth(ticker.contract)
        if not bids or not asks:
            raise MarketDataUnavailable(f"no market depth for {contract.symbol}")
        return OrderBook(
            contract=contract,
            time=datetime.now(UTC),
            bids=[
                DepthLevel(
                    side="BID", position=i, price=d.price, size=d.size, market_maker=d.marketMaker
                )
                for i, d in enumerate(bids)
            ],
            asks=[
                DepthLevel(
                    side="ASK", position=i, price=d.price, size=d.size, market_maker=d.marketMaker
                )
                for i, d in enumerate(asks)
            ],
        )

    def news(
        self,
        contract: Contract,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 50,
    ) -> list[NewsHeadline]:
        return self._call(self._news(contract, start, end, limit))

    async def _news(
        self, contract: Contract, start: datetime | None, end: datetime | None, limit: int
    ) -> list[NewsHeadline]:
        end = end or await self._now()
        start = start or end - timedelta(days=1)
        if self._news_codes is None:
            providers = await self._named_request(
                "newsProviders", self._ib.reqNewsProvidersAsync, "news providers"
            )
            self._news_codes = "+".join(p.code for p in providers)
        codes = self._news_codes
        ib, client = self._ib, self._ib.client
        # reqHistoricalNewsAsync in ib_async waits 4 s at most; a full page can take longer.
        req_id = client.getReqId()
        future = ib.wrapper.startReq(req_id)
        client.reqHistoricalNews(
            req_id,
            contract.conid,
            codes,
            ib_async.util.formatIBDatetime(start.astimezone(UTC)),
            ib_async.util.formatIBDatetime(end.astimezone(UTC)),
            limit,
            [],
        )
        items = await self._wait(future, f"headlines of {contract.symbol}")
        heads = [
            NewsHeadline(
                time=h.time.astimezone(UTC) if h.time.tzinfo else h.time.replace(tzinfo=UTC),
                provider_code=h.providerCode,
                article_id=h.articleId,
                headline=h.headline,
                conid=contract.conid,
                symbol=contract.symbol,
            )
            for h in items or []
        ]
        return sorted(heads, key=lambda h: h.time, reverse=True)[:limit]

    # -- trading -----------------------------------------------------------------------------
    def what_if(self, order: Order) -> WhatIfResult:
        return self._call(self._what_if(order))

    async def _what_if(self, order: Order) -> WhatIfResult:
        account = await self._account(order.account_id)
        try:
            state = await self._wait(
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
            return _num(x) or 0.0

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
            min_commission=_num(state.minCommission),
            max_commission=_num(state.maxCommission),
            commission_currency=state.commissionCurrency or "USD",
            accepted=accepted,
            warning=warning,
        )

    def place(self, order: Order) -> OrderStatus:
        return self._call(self._place(order))

    async def _place(self, order: Order) -> OrderStatus:
        account = await self._account(order.account_id)
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
        """Wait for IB to acknowledge an order and, for a market order, briefly for its fill."""
        deadline = _time.monotonic() + self.settings.timeout
        while trade.orderStatus.status not in _ACK_STATUSES:
            if _time.monotonic() > deadline:
                raise NotConnected(f"IB did not acknowledge order {trade.order.orderId} in time")
            await asyncio.sleep(0.005)
        fill_deadline = _time.monotonic() + (_FILL_WAIT if wait_fill else 0.0)
        while not trade.isDone() and _time.monotonic() < fill_deadline:
            await asyncio.sleep(0.005)

    def _remember(self, trade: ib_async.Trade) -> None:
        """Note an order's permId: completed-order messages carry the permId, not the orderId."""
        perm_id = trade.order.permId or trade.orderStatus.permId
        if perm_id and trade.order.orderId:
            self._order_ids[perm_id] = trade.order.orderId

    async def _all_open(self) -> list[ib_async.Trade]:
        trades = await self._named_request(
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

    def cancel(self, order_id: int) -> OrderStatus:
        return self._call(self._cancel(order_id))

    async def _cancel(self, order_id: int) -> OrderStatus:
        trade = await self._find_open(order_id)
        self._ib.cancelOrder(trade.order)
        deadline = _time.monotonic() + self.settings.timeout
        while not trade.isDone() and _time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        return _status_model(trade, from_ib_contract(trade.contract))

    def modify(
        self,
        order_id: int,
        quantity: float | None = None,
        limit_price: float | None = None,
        stop_price: float | None = None,
    ) -> OrderStatus:
        if quantity is not None and not quantity > 0:
            raise InvalidRequest(f"order {order_id}: quantity must be positive (got {quantity})")
        return self._call(self._modify(order_id, quantity, limit_price, stop_price))

    async def _modify(
        self,
        order_id: int,
        quantity: float | None,
        limit_price: float | None,
        stop_price: float | None,
    ) -> OrderStatus:
        trade = await self._find_open(order_id)
        o = trade.order
        if quantity is not None:
            o.totalQuantity = quantity
        if limit_price is not None:
            o.lmtPrice = limit_price
        if stop_price is not None:
            o.auxPrice = stop_price
        before = len(trade.log)
        self._ib.placeOrder(trade.contract, o)
        deadline = _time.monotonic() + self.settings.timeout
        while len(trade.log) == before and _time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        return _status_model(trade, from_ib_contract(trade.contract))

    def open_orders(self, account_id: str | None = None) -> list[OrderStatus]:
        return self._call(self._open_orders(account_id))

    async def _open_orders(self, account_id: str | None) -> list[OrderStatus]:
        account = await self._account(account_id)
        trades = await self._all_open()
        return [
            _status_model(t, from_ib_contract(t.contract))
            for t in trades
            if t.order.account == account and not t.isDone()
        ]

    def completed_orders(self, account_id: str | None = None) -> list[OrderStatus]:
        return self._call(self._completed(account_id))

    async def _completed(self, account_id: str | None) -> list[OrderStatus]:
        account = await self._account(account_id)
        for trade in self._ib.trades():
            self._remember(trade)
        trades = await self._named_request(
            "completedOrders", lambda: self._ib.reqCompletedOrdersAsync(False), "completed orders"
        )
        return [
            _completed_model(t, self._order_ids.get(t.order.permId, t.order.orderId))
            for t in trades
            if t.order.account == account
        ]

    def executions(
        self, account_id: str | None = None, since: datetime | None = None
    ) -> list[Execution]:
        return self._call(self._executions(account_id, since))

    async def _executions(self, account_id: str | None, since: datetime | None) -> list[Execution]:
        account = await self._account(account_id)
        flt = ExecutionFilter(acctCode=account)
        if since is not None:
            flt.time = since.astimezone(UTC).strftime("%Y%m%d-%H:%M:%S")
        answered = await self._wait(self._ib.reqExecutionsAsync(flt), "executions")
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
                commission=_num(f.commissionReport.commission) or 0.0,
                commission_currency=f.commissionReport.currency or "USD",
                realized_pnl=_num(f.commissionReport.realizedPNL),
            )
            for f in fills
            if f.execution.acctNumber == account
        ]

    # -- scanner -----------------------------------------------------------------------------
    def scan(
        self,
        code: str,
        location: str = "STK.US.MAJOR",
        filters: ScanFilter | None = None,
        limit: int = 50,
    ) -> list[ScannerRow]:
        return self._call(self._scan(code, location, filters or ScanFilter(), limit))

    async def _scan(self, code: str, location: str, f: ScanFilter, limit: int) -> list[ScannerRow]:
        if code not in await self._scanner_codes():
            raise InvalidRequest(f"unknown scanner code {code!r}")
        sub = ScannerSubscription(
            instrument="STK",
            locationCode=location,
            scanCode=code,
            numberOfRows=limit,
            abovePrice=f.above_price if f.above_price is not None else _UNSET,
            belowPrice=f.below_price if f.below_price is not None else _UNSET,
            aboveVolume=int(f.above_volume) if f.above_volume is not None else 2**31 - 1,
            marketCapAbove=f.market_cap_above if f.market_cap_above is not None else _UNSET,
            marketCapBelow=f.market_cap_below if f.market_cap_below is not None else _UNSET,
        )
        rows = await self._wait(self._ib.reqScannerDataAsync(sub), f"scanner {code}")
        contracts = [from_ib_contract(r.contractDetails.contract) for r in rows]
        # IB's scanner returns ranks and contracts only; a snapshot adds the numbers a trader reads.
        quotes = await self._quotes(contracts) if contracts else []
        return [
            ScannerRow(
                rank=r.rank,
                contract=c,
                last=q.last,
                change_pct=(q.last / q.close - 1.0) * 100.0 if q.last and q.close else None,
                volume=q.volume,
            )
            for r, c, q in zip(rows, contracts, quotes, strict=True)
        ]

    def scanner_codes(self) -> list[str]:
        return self._call(self._scanner_codes())

    async def _scanner_codes(self) -> list[str]:
        if self._scan_codes is None:
            xml = await self._named_request(
                "scannerParams", self._ib.reqScannerParametersAsync, "scanner parameters"
            )
            self._scan_codes = _scan_codes(xml)
        return list(self._scan_codes)


# -- conversions -----------------------------------------------------------------------------


def _positive(x: Any) -> float | None:
    v = _num(x)
    return v if v is not None and v > 0 else None


def _details_model(d: ib_async.ContractDetails) -> ContractDetails:
    assert d.contract is not None
    tz = d.timeZoneId or "America/New_York"
    trading = [TradingSession(start=s, end=e) for s, e in parse_ib_hours(d.tradingHours, tz)]
    liquid = [TradingSession(start=s, end=e) for s, e in parse_ib_hours(d.liquidHours, tz)]
    lot = d.sizeIncrement if d.sizeIncrement and d.sizeIncrement > 1 else d.minSize
    return ContractDetails(
        contract=from_ib_contract(d.contract, name=d.longName),
        sector=d.industry,
        industry=d.category,
        min_tick=d.minTick or 0.01,
        lot_size=max(1, int(lot or 1)),
        time_zone=tz,
        trading_hours=trading,
        liquid_hours=liquid,
    )


def _bar_fields(b: ib_async.BarData, what_to_show: str) -> dict[str, Any]:
    if isinstance(b.date, datetime):
        stamp, session = b.date.astimezone(UTC), None
    else:
        stamp, session = session_close_utc(b.date), b.date
    return {
        "time": stamp,
        "open": b.open,
        "high": b.high,
        "low": b.low,
        "close": b.close,
        "volume": float(b.volume) if what_to_show == "TRADES" else -1.0,
        "wap": _num(b.average),
        "bar_count": b.barCount or None,
        "session": session,
    }


def _last_error_code(trade: ib_async.Trade) -> int | None:
    codes = [e.errorCode for e in trade.log if e.errorCode]
    return codes[-1] if codes else None


def _status_model(trade: ib_async.Trade, contract: Contract) -> OrderStatus:
    o, s = trade.order, trade.orderStatus
    messages = [e.message for e in trade.log if e.message]
    status = s.status if s.status in _KNOWN_STATUSES else "PendingSubmit"
    return OrderStatus(
        order_id=o.orderId,
        perm_id=o.permId or s.permId,
        client_id=o.clientId,
        account_id=o.account,
        contract=contract,
        action=o.action,  # type: ignore[arg-type]
        quantity=float(o.totalQuantity),
        order_type=o.orderType,  # type: ignore[arg-type]
        limit_price=_num(o.lmtPrice) if o.orderType in ("LMT", "STP LMT") else None,
        stop_price=_num(o.auxPrice) if o.orderType in ("STP", "STP LMT") else None,
        tif=o.tif or "DAY",  # type: ignore[arg-type]
        order_ref=o.orderRef,
        parent_id=o.parentId or None,
        status=status,  # type: ignore[arg-type]
        filled=float(s.filled),
        remaining=float(s.remaining) if s.status else float(o.totalQuantity),
        avg_fill_price=_num(s.avgFillPrice) or None,
        message=messages[-1] if messages else "",
        time=(trade.log[-1].time if trade.log else datetime.now(UTC)).astimezone(UTC),
    )


def _completed_model(trade: ib_async.Trade, order_id: int) -> OrderStatus:
    """A completed order (IB's completedOrder message: permId, no orderId) as ours."""
    status = _status_model(trade, from_ib_contract(trade.contract))
    filled = float(trade.order.filledQuantity) if _num(trade.order.filledQuantity) else 0.0
    return status.model_copy(
        update={
            "order_id": order_id,
            "filled": max(status.filled, filled),
            "remaining": max(status.quantity - max(status.filled, filled), 0.0),
        }
    )


_KNOWN_STATUSES = {
    "PendingSubmit",
    "PreSubmitted",
    "Submitted",
    "PendingCancel",
    "Cancelled",
    "ApiCancelled",
    "Filled",
    "Inactive",
}


def _scan_codes(xml: str) -> list[str]:
    """The scan codes listed in IB's scanner-parameters XML."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise BrokerError(f"IB sent unreadable scanner parameters: {exc}") from None
    return sorted({el.text.strip() for el in root.iter("scanCode") if el.text})


__all__ = ["TwsBroker", "from_ib_contract", "to_ib_contract", "to_ib_order"]
