"""Typed results of the Broker protocol.

Every backend returns these models, so the pipeline, the MCP server and the tests never see a
transport's own objects. Conventions, which hold for every field below:

* Prices are per unit of the instrument, in the instrument's ``currency`` (for options: per share,
  multiply by ``multiplier`` for the contract value).
* Quantities are in shares / contracts / units of base currency (FX), signed where a position can
  be short (``Position.quantity``) and positive where a side says the direction (``Order``).
* Money amounts on accounts are in the account's ``currency`` (its base currency) unless the model
  has its own ``currency`` field.
* Times are timezone-aware UTC ``datetime``; daily bars carry the session ``date``.

Field names are Pythonic; where IB's API spells a field differently the IB name is given in the
field description so a user can search for it (``conId``, ``auxPrice``, ``orderRef``...).

The checks every backend applies to a request's arguments (an option's expiry, strike and right, a
modify's quantity, a history request's duration and bar size) live here too, so that every backend
accepts and refuses the same requests with the same message.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Any, Literal, cast, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from ibkr_assets.broker.errors import InvalidOrder, InvalidRequest
from ibkr_spec import historical

SecType = Literal["STK", "ETF", "IND", "CASH", "FUT", "OPT", "CMDTY", "BOND"]
Action = Literal["BUY", "SELL"]
OrderType = Literal["MKT", "LMT", "STP", "STP LMT"]
TimeInForce = Literal["DAY", "GTC"]
WhatToShow = Literal["TRADES", "MIDPOINT", "BID", "ASK"]
OrderStatusCode = Literal[
    "PendingSubmit",
    "PreSubmitted",
    "Submitted",
    "PendingCancel",
    "Cancelled",
    "ApiCancelled",
    "Filled",
    "Inactive",
]
#: Every status IB reports for an order.
ORDER_STATUSES: frozenset[str] = frozenset(get_args(OrderStatusCode))
#: Statuses after which an order can no longer fill.
DONE_STATUSES: frozenset[str] = frozenset({"Filled", "Cancelled", "ApiCancelled", "Inactive"})


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Contract(_Model):
    """One tradable (or quotable) instrument, identified by IB's ``conId``."""

    conid: int = Field(description="IB contract id (conId)")
    symbol: str
    sec_type: SecType = Field(description="IB secType; ETFs are reported by IB as STK")
    exchange: str = Field("SMART", description="routing exchange (IB exchange)")
    primary_exchange: str = Field("", description="listing exchange (IB primaryExchange)")
    currency: str = "USD"
    local_symbol: str = ""
    name: str = Field("", description="company or instrument name (IB longName)")
    multiplier: float = Field(1.0, description="contract value per unit of price (100 for options)")
    last_trade_date: str = Field("", description="IB lastTradeDateOrContractMonth, YYYYMMDD")
    strike: float = 0.0
    right: Literal["", "C", "P"] = ""
    trading_class: str = ""


class TradingSession(_Model):
    """One trading window of an instrument, in UTC."""

    start: datetime
    end: datetime


class ContractDetails(_Model):
    """Reference data for a contract: classification, tick/lot size, and trading hours."""

    contract: Contract
    sector: str = Field("", description="GICS sector (IB industry)")
    industry: str = Field("", description="GICS industry (IB category)")
    min_tick: float = 0.01
    lot_size: int = Field(1, description="round lot in shares (IB sizeIncrement / minSize)")
    time_zone: str = Field("America/New_York", description="IB timeZoneId")
    trading_hours: list[TradingSession] = Field(default_factory=list, description="incl. ext hours")
    liquid_hours: list[TradingSession] = Field(default_factory=list, description="regular hours")
    avg_daily_volume: float | None = Field(None, description="shares per day, when known")
    avg_volume_source: Literal["ib", "daily_bars"] | None = Field(
        None,
        description="where avg_daily_volume comes from: ib = IB's average volume (generic tick "
        "165, tick 21 avVolume); daily_bars = the mean volume of the last complete sessions",
    )
    market_cap: float | None = Field(None, description="USD, when known")


#: IB's market-data types that are delayed 15-20 minutes: 3 delayed, 4 delayed-frozen [MDTYPE].
DELAYED_DATA_TYPES = frozenset({3, 4})
#: IB's market-data types by code, named as ``IBKR_MARKET_DATA_TYPE`` names them [MDTYPE].
MARKET_DATA_TYPE_NAMES = {1: "live", 2: "frozen", 3: "delayed", 4: "delayed-frozen"}


class Quote(_Model):
    """A snapshot of top-of-book and the session's trading so far."""

    contract: Contract
    time: datetime
    bid: float | None = None
    ask: float | None = None
    last: float | None = None
    bid_size: float | None = None
    ask_size: float | None = None
    last_size: float | None = None
    volume: float | None = Field(None, description="shares traded today")
    open: float | None = None
    high: float | None = None
    low: float | None = None
    close: float | None = Field(None, description="previous session's close (IB tick 9)")
    market_data_type: int = Field(
        1,
        description="IB's marketDataType the quote was served with: 1 live, 2 frozen, 3 delayed "
        "(15-20 minutes), 4 delayed-frozen",
    )

    @property
    def mid(self) -> float | None:
        """Mid price, or None without a two-sided market."""
        if self.bid is None or self.ask is None or self.bid <= 0 or self.ask <= 0:
            return None
        return (self.bid + self.ask) / 2.0

    @property
    def spread(self) -> float | None:
        """Ask minus bid in price units, or None without a two-sided market."""
        if self.mid is None:
            return None
        return self.ask - self.bid  # type: ignore[operator]

    @property
    def price(self) -> float | None:
        """The best single price: last trade, else mid, else previous close."""
        for p in (self.last, self.mid, self.close):
            if p is not None and math.isfinite(p) and p > 0:
                return p
        return None


class Bar(_Model):
    """One OHLCV bar. Daily bars have ``time`` at the session's close (UTC) and ``session`` set;
    the bar of a session still open at the request's end is IB's bar so far, stamped with that
    end instead (:func:`bars_as_of`), so no bar is later than the instant it describes."""

    time: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float = Field(description="shares (TRADES); -1 for MIDPOINT/BID/ASK, as IB reports")
    wap: float | None = Field(None, description="volume-weighted average price (IB average)")
    bar_count: int | None = None
    session: date | None = Field(None, description="the trading session the bar belongs to")


_BAR_SERIES = TypeAdapter(list[Bar])


def bar_series(records: list[dict[str, Any]]) -> list[Bar]:
    """Bars from plain field dicts, validated in one call to pydantic's core: a year of 700
    symbols is 175,000 bars, and this is about 3x faster than building them one by one."""
    return _BAR_SERIES.validate_python(records)


def bars_as_of(bars: list[Bar], at: datetime) -> list[Bar]:
    """``bars`` as known at ``at``, the end of the request that returned them: while a session is
    open IB answers a request for daily (weekly, monthly) bars with the day so far as the last
    bar, dated with the session; that bar is stamped ``at`` rather than the session's close, so
    it reads as what it is, a bar still forming (its ``time`` before its session's close)."""
    if bars and bars[-1].time > at:
        return [*bars[:-1], bars[-1].model_copy(update={"time": at})]
    return bars


#: The columns of a bar frame (:func:`~.frames.frame_of_bars`, ``Broker.history_frame``): a
#: :class:`Bar`'s fields ``time`` (datetime64[ns, UTC]), ``open``, ``high``, ``low``, ``close``
#: (float64, the instrument's currency per unit), ``volume`` (float64 shares; -1 for
#: MIDPOINT/BID/ASK) and ``session`` (datetime64[ns], the session's date; NaT for intraday bars).
BAR_COLUMNS = ("time", "open", "high", "low", "close", "volume", "session")
#: The columns of a headline frame (:func:`~.frames.frame_of_headlines`, ``Broker.news_frame``):
#: ``time`` (datetime64[ns, UTC]), ``provider_code``, ``article_id`` and ``headline`` (string).
HEADLINE_COLUMNS = ("time", "provider_code", "article_id", "headline")


#: The columns of a quote frame (:func:`~.frames.frame_of_quotes`, ``Broker.quotes_frame``): the
#: contract's ``conid`` (int64) and ``symbol`` (string), then a :class:`Quote`'s fields:
#: ``time`` (datetime64[ns, UTC]), prices and sizes (float64, NaN where the quote has none) and
#: ``market_data_type`` (int64).
QUOTE_COLUMNS = (
    "conid",
    "symbol",
    "time",
    "bid",
    "ask",
    "last",
    "bid_size",
    "ask_size",
    "last_size",
    "volume",
    "open",
    "high",
    "low",
    "close",
    "market_data_type",
)


class DepthLevel(_Model):
    """One level of a level-2 book."""

    side: Literal["BID", "ASK"]
    position: int = Field(description="0 = best")
    price: float
    size: float
    market_maker: str = ""


class OrderBook(_Model):
    """Level-2 market depth: bids best-first, asks best-first."""

    contract: Contract
    time: datetime
    bids: list[DepthLevel]
    asks: list[DepthLevel]


class Account(_Model):
    """An account this login manages."""

    account_id: str
    is_paper: bool = Field(description="paper accounts start with 'D' (DU...) at IB")
    is_primary: bool = False
    currency: str = Field("USD", description="base currency")
    alias: str = ""


class AccountSummary(_Model):
    """The account-level numbers a trader watches, in the base ``currency``."""

    account_id: str
    currency: str = "USD"
    net_liquidation: float = Field(description="NetLiquidation")
    total_cash: float = Field(description="TotalCashValue, all currencies converted to base")
    settled_cash: float | None = Field(None, description="SettledCash")
    gross_position_value: float = Field(description="GrossPositionValue (sum of |market value|)")
    equity_with_loan: float = Field(description="EquityWithLoanValue")
    init_margin_req: float = Field(description="InitMarginReq (Reg-T)")
    maint_margin_req: float = Field(description="MaintMarginReq")
    available_funds: float = Field(description="AvailableFunds = EWL - initial margin")
    excess_liquidity: float = Field(description="ExcessLiquidity = EWL - maintenance margin")
    buying_power: float = Field(description="BuyingPower (Reg-T: 2x available funds for margin)")
    cushion: float = Field(description="excess liquidity / net liquidation")
    leverage: float = Field(description="gross position value / net liquidation")
    time: datetime


class Position(_Model):
    """A holding: signed quantity, IB average cost, and its current marking."""

    account_id: str
    contract: Contract
    quantity: float = Field(description="signed; negative = short")
    avg_cost: float = Field(description="average cost per unit incl. commissions (IB avgCost)")
    market_price: float | None = None
    market_value: float | None = Field(None, description="quantity * price * multiplier")
    unrealized_pnl: float | None = None
    realized_pnl: float | None = None
    currency: str = "USD"


class PnL(_Model):
    """Profit and loss of an account (or, with ``conid``, of one position) in base currency."""

    account_id: str
    daily: float = Field(description="since the previous session's close (IB dailyPnL)")
    unrealized: float
    realized: float = Field(description="realised today")
    conid: int | None = None
    currency: str = "USD"


class CashBalance(_Model):
    """One currency line of the cash ledger."""

    account_id: str
    currency: str
    cash: float = Field(description="in this currency")
    fx_rate: float = Field(description="units of base currency per unit of this currency")
    value_in_base: float
    base_currency: str = "USD"


class Order(_Model):
    """An order to send (or to what-if). Validated on construction: a bad order never exists.

    ``stop_price`` is IB's ``auxPrice``; ``order_ref`` is IB's ``orderRef`` and is how the pipeline
    recognises an order it already sent (idempotency across reruns).
    """

    contract: Contract
    action: Action
    quantity: float = Field(description="positive; the side is in `action`")
    order_type: OrderType = "MKT"
    limit_price: float | None = Field(None, description="IB lmtPrice")
    stop_price: float | None = Field(None, description="IB auxPrice")
    tif: TimeInForce = "DAY"
    account_id: str | None = Field(None, description="None = the primary account")
    order_ref: str = ""
    outside_rth: bool = False
    parent_id: int | None = Field(None, description="for bracket children")
    transmit: bool = True

    @model_validator(mode="after")
    def _check(self) -> Order:
        sym = self.contract.symbol
        if not (isinstance(self.quantity, int | float) and math.isfinite(self.quantity)):
            raise InvalidOrder(f"{sym}: quantity {self.quantity!r} is not a finite number")
        if self.quantity <= 0:
            raise InvalidOrder(
                f"{sym}: quantity must be positive (got {self.quantity}); the side goes in action"
            )
        for name in ("limit_price", "stop_price"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value <= 0):
                raise InvalidOrder(f"{sym}: {name} must be a positive finite price (got {value})")
        needs_limit = self.order_type in ("LMT", "STP LMT")
        needs_stop = self.order_type in ("STP", "STP LMT")
        if needs_limit and self.limit_price is None:
            raise InvalidOrder(f"{sym}: a {self.order_type} order needs a limit_price")
        if needs_stop and self.stop_price is None:
            raise InvalidOrder(f"{sym}: a {self.order_type} order needs a stop_price (auxPrice)")
        if not needs_limit and self.limit_price is not None:
            raise InvalidOrder(f"{sym}: a {self.order_type} order takes no limit_price")
        if not needs_stop and self.stop_price is not None:
            raise InvalidOrder(f"{sym}: a {self.order_type} order takes no stop_price")
        return self

    @property
    def signed_quantity(self) -> float:
        """Quantity with the sign of the side: + for BUY, - for SELL."""
        return self.quantity if self.action == "BUY" else -self.quantity


class OrderStatus(_Model):
    """A placed order and where it is in IB's lifecycle
    (PendingSubmit -> PreSubmitted -> Submitted -> Filled | Cancelled | Inactive)."""

    order_id: int = Field(description="IB orderId (per client session)")
    perm_id: int = Field(0, description="IB permId (stable across sessions)")
    client_id: int = 0
    account_id: str
    contract: Contract
    action: Action
    quantity: float
    order_type: OrderType
    limit_price: float | None = None
    stop_price: float | None = None
    tif: TimeInForce = "DAY"
    order_ref: str = ""
    parent_id: int | None = None
    status: OrderStatusCode
    filled: float = 0.0
    remaining: float
    avg_fill_price: float | None = None
    message: str = Field("", description="why Inactive/Cancelled, IB's warning text")
    time: datetime

    @property
    def is_done(self) -> bool:
        """True once the order can no longer fill."""
        return self.status in DONE_STATUSES


class Execution(_Model):
    """One fill, with its commission report."""

    exec_id: str
    order_id: int
    perm_id: int = 0
    order_ref: str = ""
    account_id: str
    contract: Contract
    side: Literal["BOT", "SLD"]
    shares: float = Field(description="positive")
    price: float
    time: datetime
    exchange: str = "SIM"
    commission: float = Field(description="in commission_currency")
    commission_currency: str = "USD"
    realized_pnl: float | None = Field(None, description="on closing fills, net of commission")


class WhatIfResult(_Model):
    """What an order would do to the account, without placing it (IB whatIf).

    Margins are in the account's base currency; ``*_after`` is the level with the order filled.
    ``accepted`` is False when IB would reject it (e.g. beyond buying power); ``warning`` says why.
    """

    order: Order
    account_id: str
    currency: str = "USD"
    init_margin_before: float
    init_margin_after: float
    maint_margin_before: float
    maint_margin_after: float
    equity_with_loan_before: float
    equity_with_loan_after: float
    commission: float = Field(description="estimated commission (IB commission)")
    min_commission: float | None = None
    max_commission: float | None = None
    commission_currency: str = "USD"
    accepted: bool = True
    warning: str = ""

    @property
    def init_margin_change(self) -> float:
        """Change in initial margin requirement (IB initMarginChange)."""
        return self.init_margin_after - self.init_margin_before

    @property
    def maint_margin_change(self) -> float:
        """Change in maintenance margin requirement (IB maintMarginChange)."""
        return self.maint_margin_after - self.maint_margin_before

    @property
    def excess_liquidity_after(self) -> float:
        """Equity with loan minus maintenance margin once the order fills; < 0 = margin call."""
        return self.equity_with_loan_after - self.maint_margin_after


AlertCondition = Literal[">=", "<="]


class PriceAlert(_Model):
    """A price alert kept by IB: it triggers once the contract's last price crosses ``price``
    (IB Client Portal ``/iserver/account/{accountId}/alert``; the TWS API has no alerts)."""

    alert_id: int = Field(description="IB order_id of the alert")
    account_id: str
    name: str = Field(description="IB alertName")
    contract: Contract
    condition: AlertCondition = Field(description="last price >= or <= price (IB operator)")
    price: float = Field(description="threshold, in the contract's currency (IB value)")
    active: bool = Field(True, description="IB alert_active")
    triggered: bool = Field(False, description="IB alert_triggered")
    message: str = Field("", description="IB alertMessage, shown when it triggers")
    created: datetime | None = None


class Watchlist(_Model):
    """A named list of contracts kept by IB (Client Portal ``/iserver/watchlist``)."""

    watchlist_id: str = Field(description="IB watchlist id")
    name: str
    contracts: list[Contract] = Field(default_factory=list)
    read_only: bool = Field(False, description="IB's own lists (e.g. 'Holdings') cannot change")


class FxRate(_Model):
    """What one unit of ``source`` currency is worth in ``target`` currency (IB
    ``/iserver/exchangerate``; over TWS the IDEALPRO pair's midpoint)."""

    source: str = Field(description="ISO 4217 code converted from")
    target: str = Field(description="ISO 4217 code converted to")
    rate: float = Field(description="units of target per unit of source")
    time: datetime


class ScanFilter(_Model):
    """Filters of a market scanner subscription (IB ScannerSubscription fields)."""

    above_price: float | None = Field(None, description="IB abovePrice")
    below_price: float | None = Field(None, description="IB belowPrice")
    above_volume: float | None = Field(None, description="IB aboveVolume, shares")
    market_cap_above: float | None = Field(None, description="IB marketCapAbove, USD")
    market_cap_below: float | None = Field(None, description="IB marketCapBelow, USD")


class ScannerRow(_Model):
    """One row of a scanner result."""

    rank: int = Field(description="0 = the best match (IB rank)")
    contract: Contract
    last: float | None = None
    change_pct: float | None = Field(None, description="% change vs previous close")
    volume: float | None = Field(None, description="shares today")
    avg_volume: float | None = Field(None, description="average daily volume, shares")


class NewsHeadline(_Model):
    """A dated headline for an instrument (IB historicalNews)."""

    time: datetime
    provider_code: str
    article_id: str
    headline: str
    conid: int
    symbol: str


class OptionChain(_Model):
    """Listed option expiries and strikes of an underlying (IB secDefOptParams)."""

    underlying: Contract
    exchange: str
    trading_class: str
    multiplier: float
    expirations: list[str] = Field(description="YYYYMMDD, ascending")
    strikes: list[float] = Field(description="ascending")


def option_spec(expiry: str, strike: float, right: str) -> tuple[str, float, str]:
    """How a trader names one option, checked and in IB's spelling: expiry ``YYYYMMDD``, a
    positive strike, right ``C`` or ``P`` (``CALL`` / ``PUT`` accepted). Raises InvalidRequest."""
    try:
        datetime.strptime(str(expiry), "%Y%m%d")
    except ValueError:
        raise InvalidRequest(f"option expiry must be YYYYMMDD, got {expiry!r}") from None
    if not (isinstance(strike, int | float) and math.isfinite(strike) and strike > 0):
        raise InvalidRequest(f"option strike must be a positive number, got {strike!r}")
    side = {"C": "C", "CALL": "C", "P": "P", "PUT": "P"}.get(str(right).upper())
    if side is None:
        raise InvalidRequest(f"option right must be C or P, got {right!r}")
    return str(expiry), float(strike), side


def alert_spec(
    contract: Contract, condition: str, price: float, name: str = ""
) -> tuple[AlertCondition, float, str]:
    """A price alert as a trader names it, checked: condition ``>=`` or ``<=``, a positive price
    in the contract's currency, the name (default ``"AAPL >= 200"``). Raises InvalidRequest."""
    if condition not in get_args(AlertCondition):
        raise InvalidRequest(
            f"{contract.symbol}: alert condition must be '>=' or '<=' (the last price against "
            f"the threshold), got {condition!r}"
        )
    if not (isinstance(price, int | float) and math.isfinite(price) and price > 0):
        raise InvalidRequest(f"{contract.symbol}: alert price must be positive, got {price!r}")
    label = name.strip() or f"{contract.symbol} {condition} {price:g}"
    return cast(AlertCondition, condition), float(price), label


def currency_code(text: str) -> str:
    """An ISO 4217 currency code in IB's spelling (``"eur"`` -> ``"EUR"``). Raises
    InvalidRequest."""
    code = str(text).strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise InvalidRequest(f"currency must be a 3-letter ISO code such as USD, got {text!r}")
    return code


def modified_quantity(order_id: int, quantity: float | None) -> float | None:
    """The new quantity of a modify of order ``order_id``, checked: None (unchanged) or positive
    (shares / contracts). Raises InvalidRequest."""
    if quantity is not None and not quantity > 0:
        raise InvalidRequest(f"order {order_id}: quantity must be positive (got {quantity})")
    return quantity


def history_spec(
    symbol: str, duration: str, bar_size: str, what_to_show: str
) -> tuple[historical.Duration, historical.BarSize]:
    """A historical-data request's duration and bar size in IB's grammar (``"1 Y"``, ``"1 day"``),
    with a ``what_to_show`` the backends serve. Raises InvalidRequest naming ``symbol``."""
    try:
        span, size = historical.parse_duration(duration), historical.parse_bar_size(bar_size)
    except ValueError as exc:  # ibkr_spec's SpecError: IB error 321, also a ValueError
        raise InvalidRequest(f"{symbol}: {exc}") from None
    if what_to_show not in get_args(WhatToShow):
        raise InvalidRequest(f"{symbol}: whatToShow {what_to_show!r} is not supported")
    return span, size
