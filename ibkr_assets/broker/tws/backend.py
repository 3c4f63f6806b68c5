"""The tws backend's Broker: the synchronous protocol methods, each checking its arguments and
running its request on the connection's loop. It speaks the protocol's whole vocabulary, so it
names the models through their module (``models.Quote``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import ib_async
import pandas as pd

from ibkr_assets.broker import models
from ibkr_assets.broker.batch import without_hours
from ibkr_assets.broker.errors import BrokerError, InvalidRequest, NotSupported
from ibkr_assets.broker.frames import FramesFromRequests
from ibkr_assets.broker.fx import pair_rate
from ibkr_assets.broker.order_change import OrderChange
from ibkr_assets.broker.settings import BrokerSettings
from ibkr_assets.broker.tws.accounts import Accounts
from ibkr_assets.broker.tws.batch import gather_each
from ibkr_assets.broker.tws.connection import Connection
from ibkr_assets.broker.tws.contracts import Contracts, to_ib_contract
from ibkr_assets.broker.tws.history import BarColumns, columns_frame
from ibkr_assets.broker.tws.market_data import AVG_VOLUME_SECONDS, MarketData
from ibkr_assets.broker.tws.orders import Orders
from ibkr_assets.broker.tws.pacing import (
    IDENTICAL_SECONDS,
    SMALL_BAR_SECONDS,
    SMALL_BAR_SIZE,
    HistoryRequest,
)


def _web_api_only(feature: str) -> NotSupported:
    """IB offers ``feature`` through the Client Portal Web API, not the TWS API."""
    return NotSupported(
        f"{feature} are not available on the tws backend: IB's TWS API has no {feature} "
        "(they live in the Client Portal Web API). Use IBKR_BACKEND=webapi, or TWS's own window."
    )


def _query(
    symbol: str | int, sec_type: str, exchange: str, currency: str
) -> tuple[ib_async.Contract, str]:
    """The contract ``resolve`` asks IB's details of (a conId alone, or symbol, type, exchange
    and currency), and its label for errors."""
    if isinstance(symbol, int):
        return ib_async.Contract(conId=symbol), f"conId {symbol}"
    query = ib_async.Contract(
        symbol=symbol.upper(),
        secType="STK" if sec_type == "ETF" else sec_type,
        exchange=exchange,
        currency=currency,
    )
    return query, f"{symbol} ({sec_type} {exchange} {currency})"


class TwsBroker(FramesFromRequests):
    """The Broker protocol over ib_async (TWS / IB Gateway / the simulated gateway).

    ``pacing_violations`` lists every pacing error IB sent this connection (code, message);
    ``connection`` is the connection itself (its market-data type, message bucket and streaming
    subscriptions), for diagnostics.
    """

    name = "tws"
    #: IB: "the maximum number of simultaneous open historical data requests from the API is 50"
    #: (TWS API, Historical Data Limitations); its pacing rules are kept by tws/pacing.py
    history_concurrency = 50
    market_data_in_process = False  # every read is a request to TWS / IB Gateway
    history_together = True  # history_frames: every request in flight on the connection's loop

    def __init__(self, settings: BrokerSettings) -> None:
        self.settings = settings
        self._conn = self.connection = Connection(settings)
        self._call = self._conn.call  # orders: sent once
        self._read = self._conn.read  # reads: sent again if the connection drops meanwhile
        self.pacing_violations = self._conn.pacing_violations
        self._contracts = Contracts(self._conn)
        self._accounts = Accounts(self._conn)
        self._market = MarketData(self._conn)
        self._orders = Orders(self._conn, self._accounts)

    @classmethod
    def from_settings(cls, settings: BrokerSettings) -> TwsBroker:
        """Connect to the TWS / IB Gateway the settings name (host, port, clientId)."""
        return cls(settings)

    def close(self) -> None:
        self._conn.close()

    def now(self) -> datetime:
        return self._read(lambda: self._conn.now())

    # -- reference ---------------------------------------------------------------------------
    def resolve(
        self,
        symbol: str | int,
        sec_type: str = "STK",
        exchange: str = "SMART",
        currency: str = "USD",
    ) -> models.Contract:
        query, label = _query(symbol, sec_type, exchange, currency)
        return self._read(lambda: self._contracts.details(query, label)).contract

    def search(self, text: str, limit: int = 10) -> list[models.Contract]:
        return self._read(lambda: self._contracts.search(text, limit))

    def contract_details(self, contract: models.Contract) -> models.ContractDetails:
        return self._read(lambda: self._details_and_volume(contract))

    def resolve_many(
        self, symbols: Sequence[str], sec_type: str = "STK", currency: str = "USD"
    ) -> dict[str, models.Contract | BrokerError]:
        """Every symbol's contract details requested at once (:mod:`.batch`)."""
        queries = [_query(s, sec_type, "SMART", currency) for s in symbols]

        async def resolve(query: tuple[ib_async.Contract, str]) -> models.Contract:
            return (await self._contracts.details(*query)).contract

        found = self._read(
            lambda: gather_each(queries, resolve), timeout=self._batch_seconds(len(symbols))
        )
        return dict(zip(symbols, found, strict=True))

    def contract_details_many(
        self, contracts: Sequence[models.Contract], hours: bool = True
    ) -> list[models.ContractDetails | BrokerError]:
        """Every contract's details and average volume requested at once (:mod:`.batch`); an
        average volume holds a market-data line for up to ``AVG_VOLUME_SECONDS``."""
        waves = -(-len(contracts) // self.settings.max_market_data_lines)
        timeout = self._batch_seconds(3 * len(contracts)) + waves * AVG_VOLUME_SECONDS

        async def describe(contract: models.Contract) -> models.ContractDetails:
            return without_hours(await self._details_and_volume(contract), hours)

        return self._read(lambda: gather_each(contracts, describe), timeout=timeout)

    def _batch_seconds(self, messages: int) -> float:
        """Seconds to allow a call sending ``messages`` requests at once: the settings' answer
        time, plus their sending at IB's message rate when pacing is on (else 500 a second)."""
        s = self.settings
        paced_rate = s.max_msg_rate if s.pacing and s.max_msg_rate else 500  # messages/s
        return s.timeout * 3 + messages / paced_rate

    async def _details_and_volume(self, contract: models.Contract) -> models.ContractDetails:
        """IB's contract details with its average daily volume, which IB sends as a market-data
        tick, not with the details (see :meth:`MarketData.avg_volume`)."""
        details = await self._contracts.details(to_ib_contract(contract), contract.symbol)
        volume, source = await self._market.avg_volume(details.contract)
        return details.model_copy(update={"avg_daily_volume": volume, "avg_volume_source": source})

    def option_chain(self, underlying: models.Contract) -> models.OptionChain:
        return self._read(lambda: self._contracts.option_chain(underlying))

    def option_contract(
        self, underlying: models.Contract, expiry: str, strike: float, right: str
    ) -> models.Contract:
        expiry, strike, right = models.option_spec(expiry, strike, right)
        query = ib_async.Option(
            symbol=underlying.symbol,
            lastTradeDateOrContractMonth=expiry,
            strike=strike,
            right=right,
            exchange="SMART",
            currency=underlying.currency,
        )
        label = f"{underlying.symbol} {expiry} {strike:g} {right}"
        return self._read(lambda: self._contracts.details(query, label)).contract

    # -- accounts ----------------------------------------------------------------------------
    def accounts(self) -> list[models.Account]:
        managed = self._read(lambda: self._accounts.managed())
        primary = self.settings.account if self.settings.account in managed else managed[0]
        return [
            models.Account(account_id=a, is_paper=a.startswith("D"), is_primary=a == primary)
            for a in managed
        ]

    def account_summary(self, account_id: str | None = None) -> models.AccountSummary:
        return self._read(lambda: self._accounts.summary(account_id))

    def positions(self, account_id: str | None = None) -> list[models.Position]:
        return self._read(lambda: self._accounts.positions(account_id))

    def pnl(self, account_id: str | None = None) -> models.PnL:
        return self._read(lambda: self._accounts.pnl(account_id))

    def cash_balances(self, account_id: str | None = None) -> list[models.CashBalance]:
        return self._read(lambda: self._accounts.cash(account_id))

    # -- market data -------------------------------------------------------------------------
    def quotes(self, contracts: Sequence[models.Contract]) -> list[models.Quote]:
        if not contracts:
            return []
        timeout = self._batch_seconds(len(contracts))
        return self._read(lambda: self._market.quotes(list(contracts)), timeout=timeout)

    def history(
        self,
        contract: models.Contract,
        duration: str = "1 Y",
        bar_size: str = "1 day",
        what_to_show: str = "TRADES",
        end: datetime | None = None,
        use_rth: bool = True,
    ) -> list[models.Bar]:
        return self._bars(contract, duration, bar_size, what_to_show, end, use_rth).bars()

    def history_frame(
        self,
        contract: models.Contract,
        duration: str = "1 Y",
        bar_size: str = "1 day",
        what_to_show: str = "TRADES",
        end: datetime | None = None,
        use_rth: bool = True,
    ) -> pd.DataFrame:
        """The bars as a frame straight from their columns (no model per bar)."""
        return self._bars(contract, duration, bar_size, what_to_show, end, use_rth).frame()

    def history_frames(
        self,
        contracts: Sequence[models.Contract],
        duration: str = "1 Y",
        bar_size: str = "1 day",
        what_to_show: str = "TRADES",
        end: datetime | None = None,
        use_rth: bool = True,
    ) -> tuple[pd.DataFrame, dict[int, BrokerError]]:
        """Every contract's request in flight together on the connection's loop (at most
        ``max_historical_requests``, each paced as :meth:`history_frame`'s), the answers' columns
        in one frame: no frame, nor hand-off between threads, per contract."""
        asks: list[HistoryRequest | BrokerError] = []
        for contract in contracts:
            try:
                asks.append(self._request(contract, duration, bar_size, what_to_show, end, use_rth))
            except InvalidRequest as exc:
                asks.append(exc)
        requests = [a for a in asks if isinstance(a, HistoryRequest)]
        answers: list[BarColumns | BrokerError] = []
        if requests:
            # each wave of requests in flight gets one request's time (seconds)
            waves = -(-len(requests) // self.settings.max_historical_requests)
            timeout = self._batch_seconds(len(requests)) + waves * self._seconds(requests[0])
            answers = self._read(lambda: gather_each(requests, self._market.history), timeout)
        answered = iter(answers)
        outcomes = [a if isinstance(a, BrokerError) else next(answered) for a in asks]
        got: list[tuple[int, BarColumns]] = []
        failed: dict[int, BrokerError] = {}
        for contract, outcome in zip(contracts, outcomes, strict=True):
            if isinstance(outcome, BrokerError):
                failed[contract.conid] = outcome
            else:
                got.append((contract.conid, outcome))
        return columns_frame(got), failed

    def _bars(
        self,
        contract: models.Contract,
        duration: str,
        bar_size: str,
        what_to_show: str,
        end: datetime | None,
        use_rth: bool,
    ) -> BarColumns:
        request = self._request(contract, duration, bar_size, what_to_show, end, use_rth)
        return self._read(lambda: self._market.history(request), timeout=self._seconds(request))

    @staticmethod
    def _request(
        contract: models.Contract,
        duration: str,
        bar_size: str,
        what_to_show: str,
        end: datetime | None,
        use_rth: bool,
    ) -> HistoryRequest:
        """The historical request, its spec checked (InvalidRequest naming the symbol)."""
        _, size = models.history_spec(contract.symbol, duration, bar_size, what_to_show)
        small = 0 < size.seconds <= SMALL_BAR_SIZE
        return HistoryRequest(contract, duration, bar_size, what_to_show, end, use_rth, small)

    def _seconds(self, request: HistoryRequest) -> float:
        """Seconds to allow ``request``: its answer, after waiting for its pacing slot (up to
        10 minutes for small bars)."""
        pacing = SMALL_BAR_SECONDS if request.small else IDENTICAL_SECONDS
        return self.settings.timeout * 3 + pacing

    def depth(self, contract: models.Contract, rows: int = 5) -> models.OrderBook:
        return self._read(lambda: self._market.depth(contract, rows))

    def news(
        self,
        contract: models.Contract,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 50,
    ) -> list[models.NewsHeadline]:
        return self._read(lambda: self._market.news(contract, start, end, limit))

    # -- trading -----------------------------------------------------------------------------
    def what_if(self, order: models.Order) -> models.WhatIfResult:
        return self._call(self._orders.what_if(order))

    def place(self, order: models.Order) -> models.OrderStatus:
        return self._call(self._orders.place(order))

    def cancel(self, order_id: int) -> models.OrderStatus:
        return self._call(self._orders.cancel(order_id))

    def modify(
        self,
        order_id: int,
        quantity: float | None = None,
        limit_price: float | None = None,
        stop_price: float | None = None,
    ) -> models.OrderStatus:
        change = OrderChange(order_id, quantity, limit_price, stop_price)
        return self._call(self._orders.modify(change))

    def open_orders(self, account_id: str | None = None) -> list[models.OrderStatus]:
        return self._read(lambda: self._orders.open_orders(account_id))

    def completed_orders(self, account_id: str | None = None) -> list[models.OrderStatus]:
        return self._read(lambda: self._orders.completed(account_id))

    def executions(
        self, account_id: str | None = None, since: datetime | None = None
    ) -> list[models.Execution]:
        return self._read(lambda: self._orders.executions(account_id, since))

    # -- scanner -----------------------------------------------------------------------------
    def scan(
        self,
        code: str,
        location: str = "STK.US.MAJOR",
        filters: models.ScanFilter | None = None,
        limit: int = 50,
    ) -> list[models.ScannerRow]:
        return self._read(
            lambda: self._market.scan(code, location, filters or models.ScanFilter(), limit)
        )

    def scanner_codes(self) -> list[str]:
        return self._read(lambda: self._market.scanner_codes())

    # -- alerts and watchlists: the TWS API has neither ---------------------------------------
    def alerts(self, account_id: str | None = None) -> list[models.PriceAlert]:
        raise _web_api_only("price alerts")

    def create_alert(
        self,
        contract: models.Contract,
        condition: str,
        price: float,
        name: str = "",
        account_id: str | None = None,
    ) -> models.PriceAlert:
        raise _web_api_only("price alerts")

    def delete_alert(self, alert_id: int, account_id: str | None = None) -> None:
        raise _web_api_only("price alerts")

    def watchlists(self) -> list[models.Watchlist]:
        raise _web_api_only("watchlists")

    def save_watchlist(
        self, name: str, contracts: Sequence[models.Contract], watchlist_id: str | None = None
    ) -> models.Watchlist:
        raise _web_api_only("watchlists")

    def delete_watchlist(self, watchlist_id: str) -> None:
        raise _web_api_only("watchlists")

    def order_status(self, order_id: int) -> models.OrderStatus:
        return self._read(lambda: self._orders.status(order_id))

    def exchange_rate(self, source: str, target: str) -> models.FxRate:
        """The IDEALPRO pair's midpoint (the TWS API has no exchange-rate request)."""
        source, target = models.currency_code(source), models.currency_code(target)
        rate = pair_rate(self, source, target)
        if rate is None:
            raise InvalidRequest(
                f"no exchange rate {source}->{target}: IB lists no quoted IDEALPRO pair "
                f"{source}.{target} or {target}.{source}"
            )
        return models.FxRate(source=source, target=target, rate=rate, time=self.now())
