"""The Broker protocol: one typed interface over every way of reaching IB.

Backends: ``sim`` (in-process simulator), ``tws`` (ib_async against TWS / IB Gateway or the
simulated gateway), ``webapi`` (Client Portal Web API). All methods are synchronous and safe to
call from several threads; async callers (the MCP server) run them in a worker thread. Every
method returns the models of :mod:`ibkr_assets.broker.models` (the ``*_frame`` calls: the same
data as a DataFrame, for a pipeline reading hundreds of thousands of bars or headlines) and raises
only the errors of :mod:`ibkr_assets.broker.errors`.

``account_id=None`` always means the primary account.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

import pandas as pd

from ibkr_assets.broker.errors import BrokerError
from ibkr_assets.broker.models import (
    Account,
    AccountSummary,
    Bar,
    CashBalance,
    Contract,
    ContractDetails,
    Execution,
    FxRate,
    NewsHeadline,
    OptionChain,
    Order,
    OrderBook,
    OrderStatus,
    PnL,
    Position,
    PriceAlert,
    Quote,
    ScanFilter,
    ScannerRow,
    Watchlist,
    WhatIfResult,
)


@runtime_checkable
class Broker(Protocol):
    """What the pipeline and the MCP server need from IB."""

    name: str  # "sim" | "tws" | "webapi"
    #: How many ``history`` requests the backend runs at once (IB's or IBKR's limit, or 1 where
    #: threads would only add overhead); a caller fetching many contracts keeps at most this
    #: many requests in flight, and the backend holds its pacing across those threads.
    history_concurrency: int
    #: Quotes and contract lookups are answered from this process's memory without waiting on
    #: I/O (the simulator): an async caller may call them on its event loop, where a hop to a
    #: worker thread costs more than the answer. False where they wait on IB (TWS, Client
    #: Portal): call them from a worker thread, never on an event loop.
    market_data_in_process: bool
    #: ``history_frames`` runs its contracts' requests together inside the backend (the
    #: simulator: one slice of its arrays; tws: all in flight on its event loop, IB's limits
    #: kept), cheaper than one ``history_frame`` per contract from the caller's threads. False
    #: where it is one ``history_frame`` per contract anyway (Client Portal).
    history_together: bool

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Release the connection. Idempotent."""
        ...

    def now(self) -> datetime:
        """The broker's current time (UTC). The simulator's clock may be pinned for backfills."""
        ...

    # -- reference ---------------------------------------------------------------------------
    def resolve(
        self,
        symbol: str | int,
        sec_type: str = "STK",
        exchange: str = "SMART",
        currency: str = "USD",
    ) -> Contract:
        """The one contract for a symbol (or a conId). Raises ContractNotFound."""
        ...

    def search(self, text: str, limit: int = 10) -> list[Contract]:
        """Contracts whose symbol or name matches ``text`` (IB reqMatchingSymbols)."""
        ...

    def contract_details(self, contract: Contract) -> ContractDetails:
        """Classification, tick and lot size, and trading hours of a contract."""
        ...

    def resolve_many(
        self, symbols: Sequence[str], sec_type: str = "STK", currency: str = "USD"
    ) -> dict[str, Contract | BrokerError]:
        """The contract of each symbol as :meth:`resolve` finds it (on SMART), keyed by the
        symbol as given; a symbol IB does not know maps to its error (ContractNotFound). A
        backend may ask for many symbols at once (webapi: ``/trsrv/stocks`` and
        ``/trsrv/secdef``). Raises the errors of the connection (NotConnected, PacingViolation)."""
        ...

    def contract_details_many(
        self, contracts: Sequence[Contract], hours: bool = True
    ) -> list[ContractDetails | BrokerError]:
        """:meth:`contract_details` of each contract, in the order given, a contract's error in
        its place; with ``hours=False`` the trading and liquid hours are left empty (on the
        webapi backend they cost a request per contract). Raises the errors of the connection
        (NotConnected, PacingViolation)."""
        ...

    def option_chain(self, underlying: Contract) -> OptionChain:
        """Listed expiries and strikes of an underlying's options (IB reqSecDefOptParams)."""
        ...

    def option_contract(
        self, underlying: Contract, expiry: str, strike: float, right: str
    ) -> Contract:
        """The one listed option on ``underlying`` expiring ``expiry`` (YYYYMMDD) at ``strike``,
        a call (``right`` "C") or a put ("P"). Raises ContractNotFound when no such option is
        listed, InvalidRequest for a malformed expiry or right."""
        ...

    # -- accounts ----------------------------------------------------------------------------
    def accounts(self) -> list[Account]:
        """Managed accounts; exactly one has ``is_primary``."""
        ...

    def account_summary(self, account_id: str | None = None) -> AccountSummary:
        """Net liquidation, cash, margin and buying power of an account."""
        ...

    def positions(self, account_id: str | None = None) -> list[Position]:
        """Current holdings, marked to market."""
        ...

    def pnl(self, account_id: str | None = None) -> PnL:
        """Daily, unrealised and realised P&L of an account."""
        ...

    def cash_balances(self, account_id: str | None = None) -> list[CashBalance]:
        """The cash ledger, one line per currency, with FX rates to base."""
        ...

    # -- market data -------------------------------------------------------------------------
    def quotes(self, contracts: Sequence[Contract]) -> list[Quote]:
        """Snapshot quotes, in the order given. Raises MarketDataUnavailable for an instrument
        with no quote at all."""
        ...

    def quotes_frame(self, contracts: Sequence[Contract]) -> pd.DataFrame:
        """:meth:`quotes` as one frame, in the order given (columns
        :data:`~ibkr_assets.broker.models.QUOTE_COLUMNS`), the same request and errors: the sim
        backend builds it from its arrays, the others convert :meth:`quotes`'s quotes
        (:func:`~ibkr_assets.broker.frames.frame_of_quotes`)."""
        ...

    def history(
        self,
        contract: Contract,
        duration: str = "1 Y",
        bar_size: str = "1 day",
        what_to_show: str = "TRADES",
        end: datetime | None = None,
        use_rth: bool = True,
    ) -> list[Bar]:
        """Historical bars ending at ``end`` (None = now), IB's durations ("30 D", "1 Y") and
        bar sizes ("1 min", "1 hour", "1 day"). Raises InvalidRequest for a bad spec."""
        ...

    def history_frame(
        self,
        contract: Contract,
        duration: str = "1 Y",
        bar_size: str = "1 day",
        what_to_show: str = "TRADES",
        end: datetime | None = None,
        use_rth: bool = True,
    ) -> pd.DataFrame:
        """:meth:`history`'s bars as one frame, oldest first (columns
        :data:`~ibkr_assets.broker.models.BAR_COLUMNS`), the same request and errors: the sim
        backend builds it from its arrays, the others convert :meth:`history`'s bars
        (:func:`~ibkr_assets.broker.frames.frame_of_bars`)."""
        ...

    def history_frames(
        self,
        contracts: Sequence[Contract],
        duration: str = "1 Y",
        bar_size: str = "1 day",
        what_to_show: str = "TRADES",
        end: datetime | None = None,
        use_rth: bool = True,
    ) -> tuple[pd.DataFrame, dict[int, BrokerError]]:
        """:meth:`history_frame` of each of ``contracts`` (the same request for each) in one
        frame, a ``conid`` column (int64) first, the contracts in the order given; and the error
        of each contract whose request failed, by conid (a connection or pacing error is
        raised). The sim backend answers daily bars from one slice of its arrays; tws and
        webapi send one request per contract, each paced as :meth:`history_frame`'s (tws: all
        in flight together on its event loop)."""
        ...

    def depth(self, contract: Contract, rows: int = 5) -> OrderBook:
        """Level-2 order book, ``rows`` levels a side."""
        ...

    def news(
        self,
        contract: Contract,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 50,
    ) -> list[NewsHeadline]:
        """Headlines for an instrument between ``start`` and ``end``, newest first."""
        ...

    def news_frame(
        self,
        contract: Contract,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 50,
    ) -> pd.DataFrame:
        """:meth:`news`'s headlines as one frame, newest first (columns
        :data:`~ibkr_assets.broker.models.HEADLINE_COLUMNS`), the same request and errors: the
        sim backend builds it from its arrays, the others convert :meth:`news`'s headlines
        (:func:`~ibkr_assets.broker.frames.frame_of_headlines`)."""
        ...

    def news_frames(
        self,
        contracts: Sequence[Contract],
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 50,
    ) -> tuple[pd.DataFrame, dict[int, BrokerError]]:
        """:meth:`news_frame` of each of ``contracts`` (the same request for each) in one
        frame, a ``conid`` column (int64) first, the contracts in the order given; and the error
        of each contract whose request failed, by conid (a connection or pacing error is
        raised). The sim backend frames every contract's headlines once; tws and webapi send
        one request per contract, each paced as :meth:`news_frame`'s."""
        ...

    # -- trading -----------------------------------------------------------------------------
    def what_if(self, order: Order) -> WhatIfResult:
        """Margin and commission impact of an order, without placing it."""
        ...

    def place(self, order: Order) -> OrderStatus:
        """Send an order. Raises InvalidOrder / OrderRejected; the account is then unchanged."""
        ...

    def cancel(self, order_id: int) -> OrderStatus:
        """Cancel an open order. Raises OrderNotFound."""
        ...

    def modify(
        self,
        order_id: int,
        quantity: float | None = None,
        limit_price: float | None = None,
        stop_price: float | None = None,
    ) -> OrderStatus:
        """Change an open order's quantity or prices (IB: placeOrder with the same orderId)."""
        ...

    def open_orders(self, account_id: str | None = None) -> list[OrderStatus]:
        """Orders that can still fill."""
        ...

    def completed_orders(self, account_id: str | None = None) -> list[OrderStatus]:
        """Orders that are done today (filled, cancelled, inactive)."""
        ...

    def order_status(self, order_id: int) -> OrderStatus:
        """Today's order with IB ``orderId`` ``order_id``, open or done, in any managed account.
        Raises OrderNotFound."""
        ...

    def executions(
        self, account_id: str | None = None, since: datetime | None = None
    ) -> list[Execution]:
        """Fills with their commissions."""
        ...

    # -- scanner -----------------------------------------------------------------------------
    def scan(
        self,
        code: str,
        location: str = "STK.US.MAJOR",
        filters: ScanFilter | None = None,
        limit: int = 50,
    ) -> list[ScannerRow]:
        """A market scanner (TOP_PERC_GAIN, TOP_PERC_LOSE, MOST_ACTIVE, HOT_BY_VOLUME...)."""
        ...

    def scanner_codes(self) -> list[str]:
        """Scanner codes this backend can run."""
        ...

    # -- alerts and watchlists (IB: Client Portal Web API only; the TWS API has neither) -----
    def alerts(self, account_id: str | None = None) -> list[PriceAlert]:
        """The account's price alerts, active or not. Raises NotSupported on ``tws``."""
        ...

    def create_alert(
        self,
        contract: Contract,
        condition: str,
        price: float,
        name: str = "",
        account_id: str | None = None,
    ) -> PriceAlert:
        """A new active alert: triggers once ``contract``'s last price is ``condition`` (">=" or
        "<=") ``price`` (in the contract's currency). Raises InvalidRequest for a bad condition or
        price, NotSupported on ``tws``."""
        ...

    def delete_alert(self, alert_id: int, account_id: str | None = None) -> None:
        """Remove an alert. Raises OrderNotFound for an unknown id, NotSupported on ``tws``."""
        ...

    def watchlists(self) -> list[Watchlist]:
        """The user's watchlists with their contracts. Raises NotSupported on ``tws``."""
        ...

    def save_watchlist(
        self, name: str, contracts: Sequence[Contract], watchlist_id: str | None = None
    ) -> Watchlist:
        """Create a watchlist, or replace the contracts of ``watchlist_id`` (IB: POST
        /iserver/watchlist with the same id). Raises InvalidRequest for an empty name or a
        read-only list, NotSupported on ``tws``."""
        ...

    def delete_watchlist(self, watchlist_id: str) -> None:
        """Remove a watchlist. Raises InvalidRequest for an unknown or read-only one,
        NotSupported on ``tws``."""
        ...

    # -- foreign exchange --------------------------------------------------------------------
    def exchange_rate(self, source: str, target: str) -> FxRate:
        """What one unit of ``source`` is worth in ``target`` now. Raises InvalidRequest for a
        currency IB does not convert. A conversion itself is an Order on the IDEALPRO pair
        (``resolve(base, "CASH", "IDEALPRO", quote)``), placed through the order guard."""
        ...
