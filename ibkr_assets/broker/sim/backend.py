"""The sim backend's Broker: the protocol answered by the simulated market and traded on the paper
exchange, in-process. It speaks the protocol's whole vocabulary, so it names the models through
their module (``models.Quote``)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import get_args

from ibkr_assets.broker import models
from ibkr_assets.broker.batch import details_each, resolve_each
from ibkr_assets.broker.errors import AccountNotFound, BrokerError, InvalidRequest, NotConnected
from ibkr_assets.broker.order_change import OrderChange
from ibkr_assets.broker.settings import BrokerSettings
from ibkr_assets.broker.sim.convert import (
    bars,
    copied,
    copied_all,
    ib_errors,
    to_alert,
    to_contract,
    to_watchlist,
)
from ibkr_assets.broker.sim.frames import SimFrames
from ibkr_sim.exchange import OrderInfo, OrderRequest, PaperExchange
from ibkr_sim.exchange.accounts import fx_rates
from ibkr_sim.market import Edge, SimMarket
from ibkr_sim.universe import Instrument
from ibkr_spec.errors import IBError
from ibkr_spec.lots import round_lot

_SEC_TYPES = frozenset(get_args(models.SecType))


@functools.lru_cache(maxsize=4)
def shared_market(seed: int, n_stocks: int, edge: str = "default") -> SimMarket:
    """One market per (seed, size, edge name: ``default`` or ``none``) per process: building the
    price panel is the costly part."""
    return SimMarket(seed=seed, n_stocks=n_stocks, edge=Edge.named(edge))


class SimBroker(SimFrames):
    """The Broker protocol served by the simulated market and paper exchange, in-process."""

    name = "sim"
    #: one at a time: in-process and CPU-bound under the GIL, threads would only add overhead
    history_concurrency = 1
    #: quotes and lookups are numpy over the in-memory market: no I/O, no waiting
    market_data_in_process = True
    history_together = True  # daily bars of many contracts: one slice of the panel

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
        """Open the simulated world the settings describe (seed, size, edge, data root, clock)."""
        market = shared_market(settings.sim_seed, settings.sim_symbols, settings.sim_edge)
        pinned = settings.sim_clock
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
    ) -> models.Contract:
        self._check_open()
        with ib_errors():
            if isinstance(symbol, int):
                return to_contract(self.market.universe.by_conid(symbol))
            if sec_type not in _SEC_TYPES:
                raise InvalidRequest(f"unknown secType {sec_type!r} for {symbol}")
            kind = "STK" if sec_type == "ETF" else sec_type
            return to_contract(self.market.universe.lookup(symbol.upper(), kind, currency))

    def search(self, text: str, limit: int = 10) -> list[models.Contract]:
        self._check_open()
        return [to_contract(i) for i in self.market.universe.search(text, limit=limit)]

    def _instrument(self, contract: models.Contract) -> Instrument:
        with ib_errors():
            return self.market.universe.by_conid(contract.conid)

    def contract_details(self, contract: models.Contract) -> models.ContractDetails:
        self._check_open()
        return self._details([self._instrument(contract)], hours=True)[0]

    def _details(self, insts: Sequence[Instrument], hours: bool) -> list[models.ContractDetails]:
        """The details of ``insts``, their snapshots taken together; trading hours (the next
        seven days') only with ``hours``."""
        now = self.now()
        with ib_errors():
            snaps = self.market.snapshots([i.conid for i in insts], now)
        out = []
        for inst, snap in zip(insts, snaps, strict=True):
            lot = round_lot(snap.prev_close) if inst.sec_type == "STK" else inst.lot_size
            sessions = []
            if hours:
                with ib_errors():
                    sessions = [
                        models.TradingSession(start=start, end=end)
                        for day in self.market.sessions(now.date(), now.date() + timedelta(days=7))
                        for start, end in self.market.trading_hours(inst.conid, day)
                    ]
            out.append(
                copied(
                    models.ContractDetails,
                    inst,
                    contract=to_contract(inst),
                    lot_size=lot,
                    trading_hours=sessions,
                    liquid_hours=sessions,
                    avg_daily_volume=inst.adv or None,
                    avg_volume_source="ib" if inst.adv else None,
                    market_cap=(inst.shares_outstanding * snap.last)
                    if inst.shares_outstanding
                    else None,
                )
            )
        return out

    def resolve_many(
        self, symbols: Sequence[str], sec_type: str = "STK", currency: str = "USD"
    ) -> dict[str, models.Contract | BrokerError]:
        return resolve_each(self, symbols, sec_type, currency)

    def contract_details_many(
        self, contracts: Sequence[models.Contract], hours: bool = True
    ) -> list[models.ContractDetails | BrokerError]:
        """Every contract's details, their snapshots taken together; when one cannot be
        described, one request per contract, each failure's error in its place."""
        self._check_open()
        try:
            return list(self._details([self._instrument(c) for c in contracts], hours))
        except BrokerError:
            return details_each(self, contracts, hours)

    def option_chain(self, underlying: models.Contract) -> models.OptionChain:
        self._check_open()
        inst = self._instrument(underlying)
        with ib_errors():
            expiries, strikes = self.market.option_chain(inst.conid, self.now().date())
        return models.OptionChain(
            underlying=to_contract(inst),
            exchange="SMART",
            trading_class=inst.symbol,
            multiplier=100.0,
            expirations=list(expiries),
            strikes=list(strikes),
        )

    def option_contract(
        self, underlying: models.Contract, expiry: str, strike: float, right: str
    ) -> models.Contract:
        self._check_open()
        expiry, strike, right = models.option_spec(expiry, strike, right)
        inst = self._instrument(underlying)
        with ib_errors():
            return to_contract(self.market.option(inst.conid, expiry, strike, right))

    # -- accounts ----------------------------------------------------------------------------
    def accounts(self) -> list[models.Account]:
        self._check_open()
        return [
            models.Account(
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

    def account_summary(self, account_id: str | None = None) -> models.AccountSummary:
        self._check_open()
        account = self._account(account_id)
        with ib_errors():
            n = self.exchange.summary(account)
        net_liq = n.net_liquidation
        return copied(
            models.AccountSummary,
            n,
            account_id=account,
            init_margin_req=n.init_margin,
            maint_margin_req=n.maint_margin,
            cushion=n.excess_liquidity / net_liq if net_liq else 0.0,
            leverage=n.gross_position_value / net_liq if net_liq else 0.0,
            time=self.now(),
        )

    def positions(self, account_id: str | None = None) -> list[models.Position]:
        self._check_open()
        account = self._account(account_id)
        with ib_errors():
            rows = self.exchange.positions(account)
            return [
                copied(models.Position, p, account_id=account, contract=self._contract(p.conid))
                for p in rows
                if p.quantity != 0
            ]

    def pnl(self, account_id: str | None = None) -> models.PnL:
        self._check_open()
        account = self._account(account_id)
        with ib_errors():
            p = self.exchange.pnl(account)
        return copied(models.PnL, p, account_id=account)

    def cash_balances(self, account_id: str | None = None) -> list[models.CashBalance]:
        self._check_open()
        account = self._account(account_id)
        now = self.now()
        lines = []
        with ib_errors():
            for currency, amount in sorted(self.exchange.cash(account).items()):
                rate = self.market.fx_rate(currency, now)
                lines.append(
                    models.CashBalance(
                        account_id=account,
                        currency=currency,
                        cash=amount,
                        fx_rate=rate,
                        value_in_base=amount * rate,
                    )
                )
        return lines

    # -- market data -------------------------------------------------------------------------
    def quotes(self, contracts: Sequence[models.Contract]) -> list[models.Quote]:
        self._check_open()
        if not contracts:
            return []
        now = self.now()
        with ib_errors():
            snaps = self.market.snapshots([c.conid for c in contracts], now)
        closes = [s.prev_close for s in snaps]
        return copied_all(models.Quote, snaps, contract=contracts, close=closes)

    def history(
        self,
        contract: models.Contract,
        duration: str = "1 Y",
        bar_size: str = "1 day",
        what_to_show: str = "TRADES",
        end: datetime | None = None,
        use_rth: bool = True,
    ) -> list[models.Bar]:
        frame, daily, end = self._history(contract, duration, bar_size, what_to_show, end)
        return models.bars_as_of(bars(frame, what_to_show, daily), end)

    def depth(self, contract: models.Contract, rows: int = 5) -> models.OrderBook:
        self._check_open()
        inst = self._instrument(contract)
        now = self.now()
        with ib_errors():
            bids, asks = self.market.depth(inst.conid, now, rows=rows)
        return models.OrderBook(
            contract=contract,
            time=now,
            bids=[
                models.DepthLevel(side="BID", position=i, price=p, size=s, market_maker=mm)
                for i, (p, s, mm) in enumerate(bids)
            ],
            asks=[
                models.DepthLevel(side="ASK", position=i, price=p, size=s, market_maker=mm)
                for i, (p, s, mm) in enumerate(asks)
            ],
        )

    def news(
        self,
        contract: models.Contract,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 50,
    ) -> list[models.NewsHeadline]:
        found = self._news(contract, start, end, limit)
        inst = self._instrument(contract)  # the headlines name the simulator's instrument
        return [
            models.NewsHeadline(
                time=t.to_pydatetime(),
                provider_code=p,
                article_id=a,
                headline=h,
                conid=inst.conid,
                symbol=inst.symbol,
            )
            for t, p, a, h in zip(*(found[c] for c in models.HEADLINE_COLUMNS), strict=True)
        ]

    # -- trading -----------------------------------------------------------------------------
    def _request(self, order: models.Order) -> OrderRequest:
        self._instrument(order.contract)
        return copied(OrderRequest, order, conid=order.contract.conid)

    def what_if(self, order: models.Order) -> models.WhatIfResult:
        self._check_open()
        account = self._account(order.account_id)
        with ib_errors():
            w = self.exchange.what_if(account, self._request(order))
        # the result's currency stays the model's default (USD), as the tws backend reports it
        return copied(models.WhatIfResult, w, skip={"currency"}, order=order, account_id=account)

    def place(self, order: models.Order) -> models.OrderStatus:
        self._check_open()
        account = self._account(order.account_id)
        with self._lock, ib_errors():
            info = self.exchange.place(account, self._request(order))
        return self._status(info)

    def cancel(self, order_id: int) -> models.OrderStatus:
        self._check_open()
        with self._lock, ib_errors():
            return self._status(self.exchange.cancel(order_id))

    def modify(
        self,
        order_id: int,
        quantity: float | None = None,
        limit_price: float | None = None,
        stop_price: float | None = None,
    ) -> models.OrderStatus:
        self._check_open()
        change = OrderChange(order_id, quantity, limit_price, stop_price)
        with self._lock, ib_errors():
            info = self.exchange.modify(order_id, **change.updates())
        return self._status(info)

    def open_orders(self, account_id: str | None = None) -> list[models.OrderStatus]:
        self._check_open()
        with ib_errors():
            return [self._status(o) for o in self.exchange.open_orders(self._account(account_id))]

    def completed_orders(self, account_id: str | None = None) -> list[models.OrderStatus]:
        self._check_open()
        account = self._account(account_id)
        with ib_errors():
            return [self._status(o) for o in self.exchange.completed_orders(account)]

    def executions(
        self, account_id: str | None = None, since: datetime | None = None
    ) -> list[models.Execution]:
        self._check_open()
        account = self._account(account_id)
        with ib_errors():
            rows = self.exchange.executions(account, since=since)
            # the fill's venue is not reported: the execution keeps the model's exchange ("SIM")
            return [
                copied(models.Execution, e, skip={"exchange"}, contract=self._contract(e.conid))
                for e in rows
            ]

    def _status(self, o: OrderInfo) -> models.OrderStatus:
        return copied(models.OrderStatus, o, contract=self._contract(o.conid))

    def _contract(self, conid: int) -> models.Contract:
        return to_contract(self.market.universe.by_conid(conid))

    # -- scanner -----------------------------------------------------------------------------
    def scan(
        self,
        code: str,
        location: str = "STK.US.MAJOR",
        filters: models.ScanFilter | None = None,
        limit: int = 50,
    ) -> list[models.ScannerRow]:
        self._check_open()
        f = filters or models.ScanFilter()
        with ib_errors():
            rows = self.market.scan(
                code, self.now(), location=location, limit=limit, **f.model_dump()
            )
            return [copied(models.ScannerRow, r, contract=self._contract(r.conid)) for r in rows]

    def scanner_codes(self) -> list[str]:
        return list(self.market.SCANNER_CODES)

    # -- alerts and watchlists (the paper exchange's, in paper.sqlite) -----------------------
    def alerts(self, account_id: str | None = None) -> list[models.PriceAlert]:
        self._check_open()
        account = self._account(account_id)
        with ib_errors():
            return [to_alert(a, self.market.universe) for a in self.exchange.alerts.alerts(account)]

    def create_alert(
        self,
        contract: models.Contract,
        condition: str,
        price: float,
        name: str = "",
        account_id: str | None = None,
    ) -> models.PriceAlert:
        self._check_open()
        operator, threshold, label = models.alert_spec(contract, condition, price, name)
        account = self._account(account_id)
        inst = self._instrument(contract)
        with ib_errors():
            made = self.exchange.alerts.create(account, inst.conid, operator, threshold, label)
            return to_alert(made, self.market.universe)

    def delete_alert(self, alert_id: int, account_id: str | None = None) -> None:
        self._check_open()
        account = self._account(account_id)
        with ib_errors():
            self.exchange.alerts.delete(account, alert_id)

    def watchlists(self) -> list[models.Watchlist]:
        self._check_open()
        universe = self.market.universe
        return [to_watchlist(w, universe) for w in self.exchange.watchlists.watchlists()]

    def save_watchlist(
        self, name: str, contracts: Sequence[models.Contract], watchlist_id: str | None = None
    ) -> models.Watchlist:
        self._check_open()
        conids = [self._instrument(c).conid for c in contracts]
        with ib_errors():
            saved = self.exchange.watchlists.save(name, conids, watchlist_id)
        return to_watchlist(saved, self.market.universe)

    def delete_watchlist(self, watchlist_id: str) -> None:
        self._check_open()
        with ib_errors():
            self.exchange.watchlists.delete(watchlist_id)

    def order_status(self, order_id: int) -> models.OrderStatus:
        self._check_open()
        with ib_errors():
            return self._status(self.exchange.order(order_id))

    def exchange_rate(self, source: str, target: str) -> models.FxRate:
        """At the pairs' last prices: the rates the paper accounts are valued at."""
        self._check_open()
        source, target = models.currency_code(source), models.currency_code(target)
        now = self.now()
        try:
            rate = fx_rates(self.market, now, target)(source)
        except IBError as exc:
            raise InvalidRequest(f"no exchange rate {source}->{target}: {exc.message}") from None
        return models.FxRate(source=source, target=target, rate=rate, time=now)
