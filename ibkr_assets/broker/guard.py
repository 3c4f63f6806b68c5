"""The order guard: the one gate every order passes, whoever sends it, before it reaches IB.

:func:`ibkr_assets.broker.connect` wraps every backend in a :class:`GuardedBroker`, so the
pipeline's submission, the MCP tools and anything added later send orders through
:meth:`OrderGuard.assess` and the account's order lock. In the order the checks run:

1. **read-only** (``IBKR_READONLY``): nothing is sent, not even a cancel;
2. **kill switch** (``IBKR_KILL_SWITCH`` or the file ``<data root>/KILL``): no new or modified
   order; cancels still go through, so a halted book can be flattened by hand;
3. **live account**: refused unless ``IBKR_ALLOW_LIVE`` and the sender's own opt-in are both on;
4. **allow-list** (``IBKR_ALLOW_SYMBOLS``) by the *resolved* contract: ``AAPL`` allows AAPL's
   stock (as does ``AAPL:STK``), ``AAPL:OPT`` its options, so an option never passes on its
   underlying's entry;
5. **quote**: a marketable order (market, a limit through the touch, a stop already triggered)
   needs a quote at most ``IBKR_MAX_QUOTE_AGE_S`` old (live data if ``IBKR_REQUIRE_LIVE_QUOTES``);
   a limit or stop price further than ``IBKR_MAX_PRICE_DISTANCE`` from the quote's midpoint is
   refused;
6. **caps valued at the market**: the order is valued at the higher of its own prices and the
   market it would meet (the ask for a buy, the bid for a sell, else the last price), times the
   multiplier, in the account's base currency, so a buy stop at $1 or a sell limit at $0.01 is
   valued at what it would really cost; an instrument with no quote at all is refused, since
   neither its value nor its prices can be checked; per-order quantity, value and share of net
   liquidation;
7. **rate and daily limits**, counted per account, sender and UTC day in
   ``<data root>/guard/orders.sqlite``, shared by every process and kept across restarts:
   orders per minute, orders per day and value sent per day.

:class:`~ibkr_assets.broker.guarded.GuardedBroker` puts a backend behind the guard.
Placement is **exactly once**: under an exclusive lock per account (``<data root>/guard/
<account>.lock``, an ``flock`` every process on the data root takes), the guard looks the
order's ``order_ref`` up among the broker's open orders, completed orders and executions and
returns the order IB already has instead of sending a second one. Callers that reconcile a whole
ticket first (the pipeline) hold the same lock across reconciliation and placement with
:meth:`GuardedBroker.account_lock`.

A modify is a new order for the guard: the order as it would stand after the change passes every
check again and counts against the rate limits. A refusal raises :class:`OrderRefused` naming the
limit, its setting and by how much it was exceeded; nothing reaches the broker.
"""

from __future__ import annotations

import fcntl
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ibkr_assets.broker.errors import MarketDataUnavailable, OrderRefused
from ibkr_assets.broker.fx import pair_rate
from ibkr_assets.broker.models import DELAYED_DATA_TYPES, Contract, Order, Quote
from ibkr_assets.broker.protocol import Broker
from ibkr_assets.broker.settings import BrokerSettings, OrderLimits

_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders_sent (
    account TEXT NOT NULL,
    principal TEXT NOT NULL,
    day TEXT NOT NULL,            -- UTC date the order was sent
    sent_at REAL NOT NULL,        -- wall-clock seconds since the epoch
    notional REAL NOT NULL,       -- order value at the market, base currency
    order_ref TEXT NOT NULL,
    what TEXT NOT NULL            -- 'BUY 10 AAPL LMT 180' for the audit
);
CREATE INDEX IF NOT EXISTS orders_sent_time ON orders_sent (account, principal, sent_at);
"""


@dataclass(frozen=True)
class Assessment:
    """What the guard found for one order that passed every check.

    ``reference_price`` is the per-unit price the caps use (the higher of the order's own prices
    and the market it would meet); ``notional`` = quantity x reference price x multiplier.
    """

    order: Order
    account_id: str
    contract: Contract
    quote: Quote | None
    reference_price: float
    notional: float
    net_liquidation: float
    marketable: bool

    @property
    def share_of_net_liquidation(self) -> float:
        """Order value / net liquidation."""
        return self.notional / self.net_liquidation


class _AccountLock:
    """An exclusive lock per account shared by threads (an RLock) and processes (``flock``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._thread_lock:
            if self._depth == 0:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
                    os.close(self._fd)
                    self._fd = None


class OrderGuard:
    """The limits of one sender (``limits.principal``) on the accounts of one data root.

    ``wall_clock`` (seconds since the epoch) drives the rate limits; tests pass a fake one.
    Thread-safe; processes coordinate through the files under ``<data root>/guard``.
    """

    def __init__(
        self,
        settings: BrokerSettings,
        limits: OrderLimits,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.limits = limits
        self._wall_clock = wall_clock
        self._root = Path(settings.data_dir) / "guard"
        self._locks: dict[str, _AccountLock] = {}
        self._locks_guard = threading.Lock()

    # -- switches ----------------------------------------------------------------------------
    def halt_reason(self) -> str | None:
        """Why no new order may be sent right now (read-only or kill switch), or None."""
        if self.settings.readonly:
            return "read-only mode (IBKR_READONLY=true): no order can be sent"
        if self.settings.kill_switch:
            return "the kill switch is on (IBKR_KILL_SWITCH); turn it off to trade again"
        if self.settings.kill_file.exists():
            return (
                f"the kill switch is on (the file {self.settings.kill_file} exists); remove it "
                "to trade again"
            )
        return None

    def check_cancel(self) -> None:
        """A cancel is refused only in read-only mode; the kill switch never blocks it."""
        if self.settings.readonly:
            raise OrderRefused(
                "read-only mode (IBKR_READONLY=true): no order can be sent or cancelled",
                "readonly",
            )

    # -- the checks --------------------------------------------------------------------------
    def assess(self, broker: Broker, order: Order, *, count_daily: bool = True) -> Assessment:
        """Every check but placement; raises OrderRefused naming the first limit broken.

        ``count_daily=False`` leaves the order out of the daily value limit (a bracket's exits,
        which only close what their parent opened)."""
        halted = self.halt_reason()
        if halted:
            raise OrderRefused(halted, "readonly" if self.settings.readonly else "kill_switch")
        account = self.account_for(broker, order.account_id)
        contract = self._resolved(broker, order.contract)
        self._check_allowed(contract)
        order = order.model_copy(update={"contract": contract, "account_id": account})
        quote = self._quote(broker, contract)
        if quote is None or _midpoint(quote) is None:
            raise OrderRefused(
                f"{contract.symbol}: no quote, so the order cannot be valued at the market nor its "
                "prices checked against it; wait for market data",
                "quote",
            )
        self._check_prices(order, quote)
        marketable = is_marketable(order, quote)
        if marketable:
            self._check_fresh(broker, order, quote)
        price = reference_price(order, quote)
        assert price is not None  # the quote has a midpoint
        summary = broker.account_summary(account)
        rate = self._to_base(broker, account, contract.currency, summary.currency)
        notional = order.quantity * price * contract.multiplier * rate
        net_liq = summary.net_liquidation
        self._check_caps(order, notional, net_liq)
        self._check_rates(account, notional if count_daily else 0.0)
        return Assessment(order, account, contract, quote, price, notional, net_liq, marketable)

    def account_for(self, broker: Broker, wanted: str | None) -> str:
        """The account an order for ``wanted`` goes to (None = the configured, else primary),
        refused when it is not managed here or is live without both opt-ins."""
        accounts = broker.accounts()
        wanted = wanted or self.settings.account
        acct = next(
            (a for a in accounts if (a.account_id == wanted if wanted else a.is_primary)), None
        )
        if acct is None:
            known = ", ".join(a.account_id for a in accounts)
            raise OrderRefused(
                f"account {wanted!r} is not managed here (known: {known})", "account"
            )
        if not acct.is_paper:
            if not self.settings.allow_live:
                raise OrderRefused(
                    f"account {acct.account_id} is a live (non-paper) account; orders need "
                    "IBKR_ALLOW_LIVE=true",
                    "allow_live",
                )
            if not self.limits.allow_live:
                raise OrderRefused(
                    f"account {acct.account_id} is a live (non-paper) account; orders from "
                    f"{self.limits.principal} need {self.limits.setting_prefix}ALLOW_LIVE=on",
                    "allow_live",
                )
        return acct.account_id

    @staticmethod
    def _to_base(broker: Broker, account: str, currency: str, base: str) -> float:
        """Units of the account's base currency per unit of ``currency``: the cash ledger's
        rate where the account holds that currency, else the FX pair's quote."""
        if currency == base:
            return 1.0
        for line in broker.cash_balances(account):
            if line.currency == currency and line.fx_rate > 0:
                return line.fx_rate
        rate = pair_rate(broker, currency, base)
        if rate:
            return rate
        raise OrderRefused(
            f"no {base}/{currency} rate to value the order in the account's base currency",
            "quote",
        )

    @staticmethod
    def _resolved(broker: Broker, contract: Contract) -> Contract:
        """The contract as IB defines it: an order's own symbol, type or multiplier is never
        trusted for the allow-list or the caps."""
        if contract.conid:
            return broker.resolve(contract.conid)
        return broker.resolve(
            contract.symbol, contract.sec_type, contract.exchange, contract.currency
        )

    def _check_allowed(self, contract: Contract) -> None:
        allowed = self.settings.allow_symbols
        if not allowed:
            return
        entry = f"{contract.symbol}:{contract.sec_type}".upper()
        names = {entry}
        if contract.sec_type in ("STK", "ETF"):  # a bare symbol names the stock
            entry = contract.symbol.upper()
            names.add(entry)
        if not names & set(allowed):
            raise OrderRefused(
                f"{entry} ({contract.sec_type} conId {contract.conid}) is not on the allow-list "
                f"IBKR_ALLOW_SYMBOLS ({', '.join(allowed)})",
                "allow_symbols",
            )

    @staticmethod
    def _quote(broker: Broker, contract: Contract) -> Quote | None:
        try:
            return broker.quotes([contract])[0]
        except MarketDataUnavailable:
            return None

    def _check_prices(self, order: Order, quote: Quote | None) -> None:
        """A limit or stop price far from the market is a fat finger, or a way round the caps."""
        mid = _midpoint(quote)
        if mid is None:
            return
        limit = self.settings.max_price_distance
        for name in ("limit_price", "stop_price"):
            price = getattr(order, name)
            if price is None:
                continue
            distance = abs(price / mid - 1.0)
            if distance > limit:
                raise OrderRefused(
                    f"{order.contract.symbol}: {name} {price:,.4g} is {distance:.1%} from the "
                    f"quote's midpoint {mid:,.4g}, beyond the limit of {limit:.0%} "
                    "(IBKR_MAX_PRICE_DISTANCE)",
                    "max_price_distance",
                )

    def _check_fresh(self, broker: Broker, order: Order, quote: Quote | None) -> None:
        sym = order.contract.symbol
        if quote is None or _side_price(order, quote) is None:
            raise OrderRefused(
                f"{sym}: no quote for a marketable {order.order_type} order; it would fill at "
                "an unknown price",
                "quote",
            )
        age = (broker.now() - quote.time).total_seconds()
        # IB serves delayed data (types 3, 4) 15-20 minutes late: it is judged against its own
        # bound, so a paper account without a subscription can trade on it unless live data is
        # required (below). [MDTYPE, DELAYED in shared/ibkr-behaviour/tws.md]
        delayed = quote.market_data_type in DELAYED_DATA_TYPES
        limit = self.settings.max_delayed_quote_age_s if delayed else self.settings.max_quote_age_s
        if age > limit:
            setting = "IBKR_MAX_DELAYED_QUOTE_AGE_S" if delayed else "IBKR_MAX_QUOTE_AGE_S"
            raise OrderRefused(
                f"{sym}: the {'delayed ' if delayed else ''}quote is {age:,.0f} s old, older than "
                f"the {limit:g} s a marketable order needs ({setting})",
                "max_delayed_quote_age_s" if delayed else "max_quote_age_s",
            )
        if self.settings.require_live_quotes and quote.market_data_type != 1:
            raise OrderRefused(
                f"{sym}: market data is delayed (type {quote.market_data_type}) and a marketable "
                "order needs live data (IBKR_REQUIRE_LIVE_QUOTES)",
                "require_live_quotes",
            )

    def _check_caps(self, order: Order, notional: float, net_liq: float) -> None:
        lim, sym, pre = self.limits, order.contract.symbol, self.limits.setting_prefix
        # a currency order's quantity is units of money, capped by its value alone
        if order.contract.sec_type != "CASH" and order.quantity > lim.max_quantity:
            raise OrderRefused(
                f"{sym}: quantity {order.quantity:,g} exceeds the cap of {lim.max_quantity:,g} "
                f"per order by {order.quantity - lim.max_quantity:,g} ({pre}MAX_QUANTITY)",
                "max_quantity",
            )
        if notional > lim.max_notional:
            raise OrderRefused(
                f"{sym}: order value {notional:,.2f} at the market exceeds the cap of "
                f"{lim.max_notional:,.2f} by {notional - lim.max_notional:,.2f} "
                f"({pre}MAX_NOTIONAL)",
                "max_notional",
            )
        if net_liq <= 0:
            raise OrderRefused(
                f"net liquidation is {net_liq:,.2f}; no order can be sized", "max_nlv_share"
            )
        share = notional / net_liq
        if share > lim.max_nlv_share:
            raise OrderRefused(
                f"{sym}: order value {notional:,.2f} is {share:.2%} of net liquidation, above the "
                f"cap of {lim.max_nlv_share:.2%} by {share - lim.max_nlv_share:.2%} "
                f"({pre}MAX_NLV_SHARE)",
                "max_nlv_share",
            )

    # -- persisted counters ------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        self._root.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self._root / "orders.sqlite", timeout=30)
        con.executescript(_SCHEMA)
        return con

    def _check_rates(self, account: str, notional: float) -> None:
        lim, pre = self.limits, self.limits.setting_prefix
        now = self._wall_clock()
        day = datetime.fromtimestamp(now, UTC).date().isoformat()
        with closing(self._db()) as con:
            minute, today, value = con.execute(
                "SELECT COUNT(*) FILTER (WHERE sent_at > ?), COUNT(*) FILTER (WHERE day = ?), "
                "COALESCE(SUM(notional) FILTER (WHERE day = ?), 0) "
                "FROM orders_sent WHERE account = ? AND principal = ? AND sent_at > ?",
                (now - 60.0, day, day, account, lim.principal, now - 2 * 86_400.0),
            ).fetchone()
        if minute >= lim.orders_per_minute:
            raise OrderRefused(
                f"rate limit: {minute} orders from {lim.principal} on {account} in the last "
                f"minute, the limit is {lim.orders_per_minute} ({pre}ORDERS_PER_MINUTE); wait "
                "and retry",
                "orders_per_minute",
            )
        if today >= lim.orders_per_day:
            raise OrderRefused(
                f"rate limit: {today} orders from {lim.principal} on {account} today (UTC), the "
                f"limit is {lim.orders_per_day} ({pre}ORDERS_PER_DAY)",
                "orders_per_day",
            )
        if value + notional > lim.max_daily_notional:
            raise OrderRefused(
                f"daily value limit: {value:,.2f} sent today plus this order's {notional:,.2f} "
                f"exceeds {lim.max_daily_notional:,.2f} by "
                f"{value + notional - lim.max_daily_notional:,.2f} ({pre}MAX_DAILY_NOTIONAL)",
                "max_daily_notional",
            )

    def record(self, assessment: Assessment, counted_notional: float) -> None:
        """Count a sent order against the sender's limits on its account."""
        o = assessment.order
        price = o.limit_price or o.stop_price
        what = f"{o.action} {o.quantity:g} {o.contract.symbol} {o.order_type}" + (
            f" {price:g}" if price else ""
        )
        now = self._wall_clock()
        with closing(self._db()) as con, con:
            con.execute(
                "INSERT INTO orders_sent VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    assessment.account_id,
                    self.limits.principal,
                    datetime.fromtimestamp(now, UTC).date().isoformat(),
                    now,
                    counted_notional,
                    o.order_ref,
                    what,
                ),
            )

    # -- the account lock --------------------------------------------------------------------
    def account_lock(self, account_id: str) -> _AccountLock:
        """The exclusive lock of an account's order flow (threads and processes)."""
        safe = "".join(ch if ch.isalnum() else "_" for ch in account_id)
        with self._locks_guard:
            lock = self._locks.get(safe)
            if lock is None:
                lock = self._locks[safe] = _AccountLock(self._root / f"{safe}.lock")
            return lock


def _midpoint(quote: Quote | None) -> float | None:
    if quote is None:
        return None
    return quote.mid or quote.price


def _side_price(order: Order, quote: Quote) -> float | None:
    """The price the order would meet: the ask for a buy, the bid for a sell, else the last."""
    side = quote.ask if order.action == "BUY" else quote.bid
    if side is not None and math.isfinite(side) and side > 0:
        return side
    return quote.price


def is_marketable(order: Order, quote: Quote | None) -> bool:
    """Would the order trade at once: a market order, a limit through the touch, or a stop
    already triggered. Without a quote only a market order is known to be marketable."""
    if order.order_type == "MKT":
        return True
    side = _side_price(order, quote) if quote is not None else None
    if side is None:
        return False
    buy = order.action == "BUY"
    if order.stop_price is not None:
        triggered = side >= order.stop_price if buy else side <= order.stop_price
        if not triggered:
            return False
        if order.order_type == "STP":
            return True
    limit = order.limit_price
    return limit is not None and (limit >= side if buy else limit <= side)


def reference_price(order: Order, quote: Quote | None) -> float | None:
    """The per-unit price the caps use: the higher of the order's own limit and stop prices and
    the market it would meet (ask for a buy, bid for a sell, else last). None when neither the
    order nor the market gives a price."""
    prices = [p for p in (order.limit_price, order.stop_price) if p is not None]
    if quote is not None and (side := _side_price(order, quote)) is not None:
        prices.append(side)
    return max(prices) if prices else None


__all__ = [
    "Assessment",
    "OrderGuard",
    "is_marketable",
    "reference_price",
]
