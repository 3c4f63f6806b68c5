"""The webapi backend's Broker: the synchronous protocol methods over the Client Portal
gateway's session. Methods IBKR's Web API cannot serve (depth, news) raise NotSupported naming
the tws backend."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from ibkr_assets.broker import models
from ibkr_assets.broker.batch import resolve_each
from ibkr_assets.broker.errors import BrokerError, NotSupported
from ibkr_assets.broker.frames import FramesFromRequests
from ibkr_assets.broker.order_change import OrderChange
from ibkr_assets.broker.settings import BrokerSettings
from ibkr_assets.broker.timeutil import NEW_YORK
from ibkr_assets.broker.webapi.accounts import Accounts
from ibkr_assets.broker.webapi.contracts import STOCK_TYPES, Contracts
from ibkr_assets.broker.webapi.fx import Fx
from ibkr_assets.broker.webapi.lists import Lists
from ibkr_assets.broker.webapi.market_data import MarketData, Scanner
from ibkr_assets.broker.webapi.orders import Orders
from ibkr_assets.broker.webapi.session import Session
from ibkr_spec.webapi import HISTORY_CONCURRENCY


def _ib_volume(
    details: models.ContractDetails, volumes: dict[int, float | None]
) -> models.ContractDetails:
    """``details`` with IBKR's average volume of its conid (snapshot field 7282)."""
    volume = volumes.get(details.contract.conid)
    return details.model_copy(
        update={"avg_daily_volume": volume, "avg_volume_source": "ib" if volume else None}
    )


class WebApiBroker(FramesFromRequests):
    """The Broker protocol over IBKR's Client Portal Web API (a gateway, or ibkr-sim webapi)."""

    name = "webapi"
    #: IBKR: 5 concurrent /iserver/marketdata/history requests (the pacer holds them to it)
    history_concurrency = HISTORY_CONCURRENCY
    market_data_in_process = False  # every read is an HTTPS request to the gateway
    history_together = False  # history_frames: one request per contract, as history_frame

    def __init__(self, settings: BrokerSettings) -> None:
        self.settings = settings
        self.session = Session(settings)
        self._contracts = Contracts(self.session)
        self._accounts = Accounts(self.session, self._contracts, settings.account)
        self._market = MarketData(self.session, settings.timeout, self.now)
        self._orders = Orders(self.session, self._accounts, self._contracts)
        self._lists = Lists(self.session, self._accounts, self._contracts)
        self._fx = Fx(self.session, self._contracts)
        self._scanner = Scanner(self.session, self._contracts, self._market)

    @classmethod
    def from_settings(cls, settings: BrokerSettings) -> WebApiBroker:
        """Open the gateway at ``IBKR_WEBAPI_URL`` (logged in at the gateway beforehand)."""
        return cls(settings)

    def close(self) -> None:
        self.session.close()

    def now(self) -> datetime:
        return self._accounts.server_now()

    # -- reference ---------------------------------------------------------------------------
    def resolve(
        self,
        symbol: str | int,
        sec_type: str = "STK",
        exchange: str = "SMART",
        currency: str = "USD",
    ) -> models.Contract:
        if isinstance(symbol, int):
            return self._contracts.contract(symbol)
        if sec_type == "CASH":  # IBKR finds pairs through /iserver/currency/pairs
            return self._fx.pair(symbol, currency)
        if sec_type == "FUT":  # the front month, through /trsrv/futures
            return self._contracts.future(symbol, currency, self._today())
        return self._contracts.resolve(symbol, sec_type, currency)

    def _today(self) -> date:
        """The gateway's date in New York (IBKR's schedules and expiries)."""
        return self.now().astimezone(NEW_YORK).date()

    def search(self, text: str, limit: int = 10) -> list[models.Contract]:
        return self._contracts.search(text, limit)

    def contract_details(self, contract: models.Contract) -> models.ContractDetails:
        details = self._contracts.details(contract, self._today())
        return _ib_volume(details, self._market.avg_volumes([details.contract.conid]))

    def resolve_many(
        self, symbols: Sequence[str], sec_type: str = "STK", currency: str = "USD"
    ) -> dict[str, models.Contract | BrokerError]:
        if sec_type in STOCK_TYPES:  # /trsrv/stocks and /trsrv/secdef, many at once
            return self._contracts.resolve_many(symbols, sec_type, currency)
        return resolve_each(self, symbols, sec_type, currency)

    def contract_details_many(
        self, contracts: Sequence[models.Contract], hours: bool = True
    ) -> list[models.ContractDetails | BrokerError]:
        found = self._contracts.details_many(contracts, self._today() if hours else None)
        volumes = self._market.avg_volumes(
            [d.contract.conid for d in found if not isinstance(d, BrokerError)]
        )
        return [d if isinstance(d, BrokerError) else _ib_volume(d, volumes) for d in found]

    def option_chain(self, underlying: models.Contract) -> models.OptionChain:
        return self._contracts.option_chain(underlying)

    def option_contract(
        self, underlying: models.Contract, expiry: str, strike: float, right: str
    ) -> models.Contract:
        return self._contracts.option_contract(underlying, expiry, strike, right)

    # -- accounts ----------------------------------------------------------------------------
    def accounts(self) -> list[models.Account]:
        return self._accounts.accounts()

    def account_summary(self, account_id: str | None = None) -> models.AccountSummary:
        return self._accounts.summary(account_id)

    def positions(self, account_id: str | None = None) -> list[models.Position]:
        return self._accounts.positions(account_id)

    def pnl(self, account_id: str | None = None) -> models.PnL:
        return self._accounts.pnl(account_id)

    def cash_balances(self, account_id: str | None = None) -> list[models.CashBalance]:
        return self._accounts.cash(account_id)

    # -- market data -------------------------------------------------------------------------
    def quotes(self, contracts: Sequence[models.Contract]) -> list[models.Quote]:
        return self._market.quotes(list(contracts))

    def history(
        self,
        contract: models.Contract,
        duration: str = "1 Y",
        bar_size: str = "1 day",
        what_to_show: str = "TRADES",
        end: datetime | None = None,
        use_rth: bool = True,
    ) -> list[models.Bar]:
        return self._market.history(contract, duration, bar_size, what_to_show, end, use_rth)

    def depth(self, contract: models.Contract, rows: int = 5) -> models.OrderBook:
        raise NotSupported(
            "depth is not available on the webapi backend: IBKR's Web API streams the order "
            "book only on its websocket (sbd topic), it has no REST endpoint; use "
            "IBKR_BACKEND=tws"
        )

    def news(
        self,
        contract: models.Contract,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 50,
    ) -> list[models.NewsHeadline]:
        raise NotSupported(
            "news is not available on the webapi backend: IBKR's Web API has no "
            "historical-news endpoint; use IBKR_BACKEND=tws"
        )

    # -- trading -----------------------------------------------------------------------------
    def what_if(self, order: models.Order) -> models.WhatIfResult:
        return self._orders.what_if(order)

    def place(self, order: models.Order) -> models.OrderStatus:
        return self._orders.place(order)

    def cancel(self, order_id: int) -> models.OrderStatus:
        return self._orders.cancel(order_id)

    def modify(
        self,
        order_id: int,
        quantity: float | None = None,
        limit_price: float | None = None,
        stop_price: float | None = None,
    ) -> models.OrderStatus:
        return self._orders.modify(OrderChange(order_id, quantity, limit_price, stop_price))

    def open_orders(self, account_id: str | None = None) -> list[models.OrderStatus]:
        return self._orders.orders(account_id, done=False)

    def completed_orders(self, account_id: str | None = None) -> list[models.OrderStatus]:
        return self._orders.orders(account_id, done=True)

    def executions(
        self, account_id: str | None = None, since: datetime | None = None
    ) -> list[models.Execution]:
        return self._orders.executions(account_id, since)

    # -- scanner -----------------------------------------------------------------------------
    def scan(
        self,
        code: str,
        location: str = "STK.US.MAJOR",
        filters: models.ScanFilter | None = None,
        limit: int = 50,
    ) -> list[models.ScannerRow]:
        return self._scanner.scan(code, location, filters or models.ScanFilter(), limit)

    def scanner_codes(self) -> list[str]:
        return self._scanner.codes()

    # -- alerts and watchlists ----------------------------------------------------------------
    def alerts(self, account_id: str | None = None) -> list[models.PriceAlert]:
        return self._lists.alerts(account_id)

    def create_alert(
        self,
        contract: models.Contract,
        condition: str,
        price: float,
        name: str = "",
        account_id: str | None = None,
    ) -> models.PriceAlert:
        return self._lists.create_alert(contract, condition, price, name, account_id)

    def delete_alert(self, alert_id: int, account_id: str | None = None) -> None:
        self._lists.delete_alert(alert_id, account_id)

    def watchlists(self) -> list[models.Watchlist]:
        return self._lists.watchlists()

    def save_watchlist(
        self, name: str, contracts: Sequence[models.Contract], watchlist_id: str | None = None
    ) -> models.Watchlist:
        return self._lists.save_watchlist(name, contracts, watchlist_id)

    def delete_watchlist(self, watchlist_id: str) -> None:
        self._lists.delete_watchlist(watchlist_id)

    def order_status(self, order_id: int) -> models.OrderStatus:
        return self._orders.status(order_id)

    def exchange_rate(self, source: str, target: str) -> models.FxRate:
        return self._fx.rate(source, target)
