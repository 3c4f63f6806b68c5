"""The ``sim`` backend: the Broker protocol over the simulated IB world, in-process.

The fastest backend and the default: no socket, no gateway. It answers from
:class:`ibkr_sim.market.SimMarket` (deterministic prices, fundamentals, news, scanners) and trades
on :class:`ibkr_sim.exchange.PaperExchange`, whose state lives in one SQLite file under the data
root so that every process pointed at the same ``IBKR_DATA_DIR`` (the pipeline, the MCP server)
sees one paper account.

The clock is the wall clock unless ``IBKR_SIM_NOW`` pins it (backfills, tests); a pinned clock
stands still, so a backfill sees the market exactly as it was at that instant.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from ibkr_assets.broker.errors import (
    AccountNotFound,
    BrokerError,
    InvalidRequest,
    NotConnected,
    error_from_ib,
)
from ibkr_assets.broker.guarded import GuardedBroker
from ibkr_assets.broker.models import (
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
from ibkr_assets.broker.protocol import Broker
from ibkr_assets.broker.settings import BrokerSettings
from ibkr_sim.exchange import OrderRequest, PaperExchange
from ibkr_sim.market import SimMarket
from ibkr_sim.universe import Instrument, Universe
from ibkr_spec import historical
from ibkr_spec.errors import IBError

_SEC_TYPES = {"STK", "ETF", "IND", "CASH", "FUT", "OPT", "CMDTY", "BOND"}


@functools.lru_cache(maxsize=4)
def shared_market(seed: int, n_stocks: int) -> SimMarket:
    """One market per (seed, size) per process: building the price panel is the costly part."""
    return SimMarket(seed=seed, n_stocks=n_stocks)


@contextmanager
def _ib_errors() -> Iterator[None]:
    """Turn the simulator's IB-coded errors into the typed broker errors."""
    try:
        yield
    except IBError as exc:
        raise error_from_ib(exc.code, exc.message) from None


def to_contract(inst: Instrument) -> Contract:
    """The broker model of a simulated instrument."""
    return Contract(
        conid=inst.conid,
        symbol=inst.symbol,
        sec_type=inst.sec_type,  # type: ignore[arg-type]
        exchange=inst.exchange,
        primary_exchange=inst.primary_exchange,
        currency=inst.currency,
        local_symbol=inst.symbol,
        name=inst.name,
        multiplier=inst.multiplier,
        last_trade_date=inst.last_trade_date,
        strike=inst.strike,
        right=inst.right,  # type: ignore[arg-type]
    )


class SimBroker:
    """The Broker protocol served by the simulated market and paper exchange, in-process."""

    name = "sim"

    def __init__(
        self,
        market: SimMarket,
        exchange: PaperExchange,
        clock: Callable[[], datetime] | None = None,
        account: str | None = None,
    ) -> None:
        self.market = market
        self.exchange = exchange
        self._clock = clock or (lambda: datetime.now(UTC))
        self._default_account = account
        self._lock = threading.RLock()
        self._closed = False

    @classmethod
    def from_settings(cls, settings: BrokerSettings) -> SimBroker:
        """Open the simulated world the settings describe (seed, size, data root, clock)."""
        market = shared_market(settings.sim_seed, settings.sim_symbols)
        pinned = settings.sim_now
        if pinned is not None and pinned.tzinfo is None:
            pinned = pinned.replace(tzinfo=UTC)
        clock = (lambda: pinned) if pinned is not None else None
        state = Path(settings.data_dir) / "sim" / "paper.sqlite"
        exchange = PaperExchange(market, state, clock=clock)
        return cls(market, exchange, clock=clock, account=settings.account)

    def pinned(self, at: datetime) -> SimBroker:
        """The same market and paper account seen at a fixed instant (a backfill's as-of time):
        quotes, bars, news and fills are those of ``at``."""
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
        exchange = PaperExchange(self.market, self.exchange.state_path, clock=lambda: at)
        return SimBroker(self.market, exchange, clock=lambda: at, account=self._default_account)

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        self._closed = True

    def now(self) -> datetime:
        return self._clock()

    def _check_open(self) -> None:
        if self._closed:
            raise NotConnected("the sim broker was closed")

    # -- reference ---------------------------------------------------------------------------
    def resolve(
        self,
        symbol: str | int,
        sec_type: str = "STK",
        exchange: str = "SMART",
        currency: str = "USD",
    ) -> Contract:
        self._check_open()
        with _ib_errors():
            if isinstance(symbol, int):
                return to_contract(self.market.universe.by_conid(symbol))
            if sec_type not in _SEC_TYPES:
                raise InvalidRequest(f"unknown secType {sec_type!r} for {symbol}")
            kind = "STK" if sec_type == "ETF" else sec_type
            return to_contract(self.market.universe.lookup(symbol.upper(), kind, currency))

    def search(self, text: str, limit: int = 10) -> list[Contract]:
        self._check_open()
        return [to_contract(i) for i in self.market.universe.search(text, limit=limit)]

    def _instrument(self, contract: Contract) -> Instrument:
        with _ib_errors():
            return self.market.universe.by_conid(contract.conid)

    def contract_details(self, contract: Contract) -> ContractDetails:
        self._check_open()
        inst = self._instrument(contract)
        today = self.now().date()
        with _ib_errors():
            hours = [
                TradingSession(start=start, end=end)
                for day in self.market.sessions(today, today + timedelta(days=7))
                for start, end in self.market.trading_hours(inst.conid, day)
            ]
        price = self.market.snapshot(inst.conid, self.now()).last
        return ContractDetails(
            contract=to_contract(inst),
            sector=inst.sector,
            industry=inst.industry,
            min_tick=inst.min_tick,
            lot_size=inst.lot_size,
            trading_hours=hours,
            liquid_hours=hours,
            avg_daily_volume=inst.adv or None,
            market_cap=(inst.shares_outstanding * price) if inst.shares_outstanding else None,
        )

    def option_chain(self, underlying: Contract) -> OptionChain:
        self._check_open()
        inst = self._instrument(underlying)
        with _ib_errors():
            expiries, strikes = self.market.option_chain(inst.conid, self.now().date())
        return OptionChain(
            underlying=to_contract(inst),
            exchange="SMART",
            trading_class=inst.symbol,
            multiplier=100.0,
            expirations=list(expiries),
            strikes=list(strikes),
        )

    def option_contract(
        self, underlying: Contract, expiry: str, strike: float, right: str
    ) -> Contract:
        self._check_open()
        expiry, strike, right = option_spec(expiry, strike, right)
        inst = self._instrument(underlying)
        with _ib_errors():
            return to_contract(self.market.option(inst.conid, expiry, strike, right))

    # -- accounts ----------------------------------------------------------------------------
    def accounts(self) -> list[Account]:
        self._check_open()
        return [
            Account(
                account_id=a.account_id,
                is_paper=a.account_id.startswith("D"),
                is_primary=a.is_primary,
                currency=a.base_currency,
                alias=a.alias,
            )
            for a in self.exchange.accounts()
        ]

    def _account(self, account_id: str | None) -> str:
        wanted = account_id or self._default_account
        accounts = self.exchange.accounts()
        if wanted is None:
            return next(a.account_id for a in accounts if a.is_primary)
        if wanted not in {a.account_id for a in accounts}:
            known = ", ".join(a.account_id for a in accounts)
            raise AccountNotFound(f"account {wanted!r} is not managed here (known: {known})")
        return wanted

    def account_summary(self, account_id: str | None = None) -> AccountSummary:
        self._check_open()
        account = self._account(account_id)
        with _ib_errors():
            n = self.exchange.summary(account)
        net_liq = n.net_liquidation
        return AccountSummary(
            account_id=account,
            currency=n.currency,
            net_liquidation=net_liq,
            total_cash=n.total_cash,
            settled_cash=n.settled_cash,
            gross_position_value=n.gross_position_value,
            equity_with_loan=n.equity_with_loan,
            init_margin_req=n.init_margin,
            maint_margin_req=n.maint_margin,
            available_funds=n.available_funds,
            excess_liquidity=n.excess_liquidity,
            buying_power=n.buying_power,
            cushion=n.excess_liquidity / net_liq if net_liq else 0.0,
            leverage=n.gross_position_value / net_liq if net_liq else 0.0,
            time=self.now(),
        )

    def positions(self, account_id: str | None = None) -> list[Position]:
        self._check_open()
        account = self._account(account_id)
        with _ib_errors():
            rows = self.exchange.positions(account)
            return [
                Position(
                    account_id=account,
                    contract=to_contract(self.market.universe.by_conid(p.conid)),
                    quantity=p.quantity,
                    avg_cost=p.avg_cost,
                    market_price=p.market_price,
                    market_value=p.market_value,
                    unrealized_pnl=p.unrealized_pnl,
                    realized_pnl=p.realized_pnl,
                    currency=self.market.universe.by_conid(p.conid).currency,
                )
                for p in rows
                if p.quantity != 0
            ]

    def pnl(self, account_id: str | None = None) -> PnL:
        self._check_open()
        account = self._account(account_id)
        with _ib_errors():
            p = self.exchange.pnl(account)
        return PnL(account_id=account, daily=p.daily, unrealized=p.unrealized, realized=p.realized)

    def cash_balances(self, account_id: str | None = None) -> list[CashBalance]:
        self._check_open()
        account = self._account(account_id)
        now = self.now()
        lines = []
        with _ib_errors():
            for currency, amount in sorted(self.exchange.cash(account).items()):
                rate = self.market.fx_rate(currency, now)
                lines.append(
                    CashBalance(
                        account_id=account,
                        currency=currency,
                        cash=amount,
                        fx_rate=rate,
                        value_in_base=amount * rate,
                    )
                )
        return lines

    # -- market data -------------------------------------------------------------------------
    def quotes(self, contracts: Sequence[Contract]) -> list[Quote]:
        self._check_open()
        if not contracts:
            return []
        now = self.now()
        with _ib_errors():
            snaps = self.market.snapshots([c.conid for c in contracts], now)
        return [
            Quote(
                contract=c,
                time=s.time,
                bid=s.bid,
                ask=s.ask,
                last=s.last,
                bid_size=s.bid_size,
                ask_size=s.ask_size,
                last_size=s.last_size,
                volume=s.volume,
                open=s.open,
                high=s.high,
                low=s.low,
                close=s.prev_close,
            )
            for c, s in zip(contracts, snaps, strict=True)
        ]

    def history(
        self,
        contract: Contract,
        duration: str = "1 Y",
        bar_size: str = "1 day",
        what_to_show: str = "TRADES",
        end: datetime | None = None,
        use_rth: bool = True,
    ) -> list[Bar]:
        self._check_open()
        inst = self._instrument(contract)
        end = min(end or self.now(), self.now())
        try:
            span = historical.parse_duration(duration)
            size = historical.parse_bar_size(bar_size)
        except (IBError, ValueError) as exc:
            raise InvalidRequest(f"{contract.symbol}: {exc}") from None
        if what_to_show not in ("TRADES", "MIDPOINT", "BID", "ASK"):
            raise InvalidRequest(f"{contract.symbol}: whatToShow {what_to_show!r} is not supported")
        start = historical.start_of(end, span)
        with _ib_errors():
            frame = self.market.history(
                inst.conid, start=start, end=end, bar_size=size, what_to_show=what_to_show
            )
        return _bars(frame, what_to_show, size.is_daily)

    def depth(self, contract: Contract, rows: int = 5) -> OrderBook:
        self._check_open()
        inst = self._instrument(contract)
        now = self.now()
        with _ib_errors():
            bids, asks = self.market.depth(inst.conid, now, rows=rows)
        return OrderBook(
            contract=contract,
            time=now,
            bids=[
                DepthLevel(side="BID", position=i, price=p, size=s, market_maker=mm)
                for i, (p, s, mm) in enumerate(bids)
            ],
            asks=[
                DepthLevel(side="ASK", position=i, price=p, size=s, market_maker=mm)
                for i, (p, s, mm) in enumerate(asks)
            ],
        )

    def news(
        self,
        contract: Contract,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 50,
    ) -> list[NewsHeadline]:
        self._check_open()
        inst = self._instrument(contract)
        end = min(end or self.now(), self.now())
        start = start or end - timedelta(days=1)
        with _ib_errors():
            items = self.market.news(inst.conid, start, end)
        items = sorted(items, key=lambda h: h.time, reverse=True)[:limit]
        return [
            NewsHeadline(
                time=h.time,
                provider_code=h.provider_code,
                article_id=h.article_id,
                headline=h.headline,
                conid=h.conid,
                symbol=h.symbol,
            )
            for h in items
        ]

    # -- trading -----------------------------------------------------------------------------
    def _request(self, order: Order) -> OrderRequest:
        self._instrument(order.contract)
        return OrderRequest(
            conid=order.contract.conid,
            action=order.action,
            quantity=order.quantity,
            order_type=order.order_type,
            limit_price=order.limit_price,
            stop_price=order.stop_price,
            tif=order.tif,
            order_ref=order.order_ref,
            outside_rth=order.outside_rth,
            parent_id=order.parent_id,
        )

    def what_if(self, order: Order) -> WhatIfResult:
        self._check_open()
        account = self._account(order.account_id)
        with _ib_errors():
            w = self.exchange.what_if(account, self._request(order))
        return WhatIfResult(
            order=order,
            account_id=account,
            init_margin_before=w.init_margin_before,
            init_margin_after=w.init_margin_after,
            maint_margin_before=w.maint_margin_before,
            maint_margin_after=w.maint_margin_after,
            equity_with_loan_before=w.equity_with_loan_before,
            equity_with_loan_after=w.equity_with_loan_after,
            commission=w.commission,
            min_commission=w.min_commission,
            max_commission=w.max_commission,
            accepted=w.accepted,
            warning=w.warning,
        )

    def place(self, order: Order) -> OrderStatus:
        self._check_open()
        account = self._account(order.account_id)
        with self._lock, _ib_errors():
            info = self.exchange.place(account, self._request(order))
        return self._status(info)

    def cancel(self, order_id: int) -> OrderStatus:
        self._check_open()
        with self._lock, _ib_errors():
            return self._status(self.exchange.cancel(order_id))

    def modify(
        self,
        order_id: int,
        quantity: float | None = None,
        limit_price: float | None = None,
        stop_price: float | None = None,
    ) -> OrderStatus:
        self._check_open()
        if quantity is not None and not quantity > 0:
            raise InvalidRequest(f"order {order_id}: quantity must be positive (got {quantity})")
        with self._lock, _ib_errors():
            info = self.exchange.modify(
                order_id, quantity=quantity, limit_price=limit_price, stop_price=stop_price
            )
        return self._status(info)

    def open_orders(self, account_id: str | None = None) -> list[OrderStatus]:
        self._check_open()
        with _ib_errors():
            return [self._status(o) for o in self.exchange.open_orders(self._account(account_id))]

    def completed_orders(self, account_id: str | None = None) -> list[OrderStatus]:
        self._check_open()
        account = self._account(account_id)
        with _ib_errors():
            return [self._status(o) for o in self.exchange.completed_orders(account)]

    def executions(
        self, account_id: str | None = None, since: datetime | None = None
    ) -> list[Execution]:
        self._check_open()
        account = self._account(account_id)
        with _ib_errors():
            rows = self.exchange.executions(account, since=since)
            return [
                Execution(
                    exec_id=e.exec_id,
                    order_id=e.order_id,
                    perm_id=e.perm_id,
                    order_ref=e.order_ref,
                    account_id=e.account_id,
                    contract=to_contract(self.market.universe.by_conid(e.conid)),
                    side=e.side,
                    shares=e.shares,
                    price=e.price,
                    time=e.time,
                    commission=e.commission,
                    commission_currency=e.commission_currency,
                    realized_pnl=e.realized_pnl,
                )
                for e in rows
            ]

    def _status(self, o) -> OrderStatus:
        return OrderStatus(
            order_id=o.order_id,
            perm_id=o.perm_id,
            client_id=o.client_id,
            account_id=o.account_id,
            contract=to_contract(self.market.universe.by_conid(o.conid)),
            action=o.action,
            quantity=o.quantity,
            order_type=o.order_type,
            limit_price=o.limit_price,
            stop_price=o.stop_price,
            tif=o.tif,
            order_ref=o.order_ref,
            parent_id=o.parent_id,
            status=o.status,
            filled=o.filled,
            remaining=o.remaining,
            avg_fill_price=o.avg_fill_price,
            message=o.message,
            time=o.time,
        )

    # -- scanner -----------------------------------------------------------------------------
    def scan(
        self,
        code: str,
        location: str = "STK.US.MAJOR",
        filters: ScanFilter | None = None,
        limit: int = 50,
    ) -> list[ScannerRow]:
        self._check_open()
        f = filters or ScanFilter()
        with _ib_errors():
            rows = self.market.scan(
                code,
                self.now(),
                location=location,
                above_price=f.above_price,
                below_price=f.below_price,
                above_volume=f.above_volume,
                market_cap_above=f.market_cap_above,
                market_cap_below=f.market_cap_below,
                limit=limit,
            )
            return [
                ScannerRow(
                    rank=r.rank,
                    contract=to_contract(self.market.universe.by_conid(r.conid)),
                    last=r.last,
                    change_pct=r.change_pct,
                    volume=r.volume,
                    avg_volume=r.avg_volume,
                )
                for r in rows
            ]

    def scanner_codes(self) -> list[str]:
        return list(self.market.SCANNER_CODES)


def _bars(frame: pd.DataFrame, what_to_show: str, daily: bool) -> list[Bar]:
    """The simulator's OHLCV frame (index: bar time, UTC) as Bars, built column-wise."""
    times = frame.index.to_pydatetime()
    n = len(times)
    columns = {
        "time": times,
        "open": frame["open"].to_numpy(float).tolist(),
        "high": frame["high"].to_numpy(float).tolist(),
        "low": frame["low"].to_numpy(float).tolist(),
        "close": frame["close"].to_numpy(float).tolist(),
        "volume": frame["volume"].to_numpy(float).tolist()
        if what_to_show == "TRADES"
        else [-1.0] * n,
        "session": [t.date() for t in times] if daily else [None] * n,
    }
    rows = zip(*columns.values(), strict=True)
    return bar_series([dict(zip(columns, row, strict=True)) for row in rows])


# -- what only the simulated world can answer (the pipeline reaches it through these) ---------
def _sim_backend(broker: Broker) -> SimBroker | None:
    """The sim backend behind ``broker`` (bare or behind the order guard), else None."""
    inner = broker.inner if isinstance(broker, GuardedBroker) else broker
    return inner if isinstance(inner, SimBroker) else None


def listed_stocks(broker: Broker) -> list[str]:
    """Tickers of every stock the sim backend's market lists, in universe order: the default
    watch-list when none is configured. IB itself has no such list, so any other backend is a
    ``TypeError`` naming it."""
    sim = _sim_backend(broker)
    if sim is None:
        raise TypeError(f"the {broker.name!r} backend cannot list its stocks; only 'sim' can")
    return _tickers(sim.market.universe)


def simulated_stocks(seed: int, n_stocks: int) -> list[str]:
    """Tickers of the stocks the simulated world of ``seed`` and ``n_stocks`` lists (what the
    simulated gateway serves), in universe order, without drawing its prices."""
    return _tickers(Universe(seed, n_stocks))


def _tickers(universe: Universe) -> list[str]:
    return [inst.symbol for inst in universe.stocks]


def simulated_market(broker: Broker, seed: int, n_stocks: int) -> SimMarket:
    """The simulated market behind ``broker``: the sim backend's own, else (the ``tws`` backend
    against the simulated gateway) the same deterministic market rebuilt from ``seed`` and
    ``n_stocks`` (``IBKR_SIM_SEED``, ``IBKR_SIM_SYMBOLS``)."""
    sim = _sim_backend(broker)
    return sim.market if sim is not None else shared_market(seed, n_stocks)


__all__ = [
    "BrokerError",
    "SimBroker",
    "listed_stocks",
    "shared_market",
    "simulated_market",
    "simulated_stocks",
    "to_contract",
]
