"""The tws backend's reference data: contracts to and from ib_async's, contract details with
trading hours, symbol search and option chains."""

from __future__ import annotations

import functools
import time

import ib_async

from ibkr_assets.broker.errors import ContractNotFound, InvalidRequest
from ibkr_assets.broker.models import Contract, ContractDetails, OptionChain, TradingSession
from ibkr_assets.broker.timeutil import parse_ib_hours
from ibkr_assets.broker.tws.connection import Connection
from ibkr_spec.errors import NO_SECURITY_DEFINITION


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


@functools.lru_cache(maxsize=64)
def _sessions(hours: str, tz: str) -> tuple[TradingSession, ...]:
    """IB's ``tradingHours`` / ``liquidHours`` text as (frozen) sessions, parsed once per text:
    every contract of a kind carries the same text on a day, and parsing it is most of the cost
    of a contract's details (the 2,106 details of a 700-stock daily job through the simulated
    gateway: 0.69 s CPU of strptime and models, session 18)."""
    return tuple(TradingSession(start=s, end=e) for s, e in parse_ib_hours(hours, tz))


def _details_model(d: ib_async.ContractDetails) -> ContractDetails:
    assert d.contract is not None
    tz = d.timeZoneId or "America/New_York"
    trading = list(_sessions(d.tradingHours, tz))
    liquid = list(_sessions(d.liquidHours, tz))
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


#: seconds a contract's details are reused: reference data, but its trading hours move on daily
DETAILS_SECONDS = 3600.0


class Contracts:
    """Contract look-ups, run on the connection's loop. The details of a contract found are kept
    for :data:`DETAILS_SECONDS`, so the details of a contract just resolved (the universe step
    does both for every symbol) cost no second request."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._ib = conn.ib
        self._known: dict[int, tuple[float, ContractDetails]] = {}  # conId -> (monotonic, details)

    async def details(self, query: ib_async.Contract, label: str) -> ContractDetails:
        """The one contract ``query`` describes (``label`` names it in errors)."""
        known = self._known.get(query.conId)
        if known is not None and time.monotonic() - known[0] < DETAILS_SECONDS:
            return known[1]
        details = await self._request_details(query, label)
        self._known[details.contract.conid] = (time.monotonic(), details)
        return details

    async def _request_details(self, query: ib_async.Contract, label: str) -> ContractDetails:
        try:
            found = await self._conn.wait(
                self._ib.reqContractDetailsAsync(query), f"details of {label}"
            )
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

    async def search(self, text: str, limit: int) -> list[Contract]:
        found = await self._conn.wait(
            self._ib.reqMatchingSymbolsAsync(text), f"symbols like {text!r}"
        )
        return [from_ib_contract(d.contract) for d in (found or [])[:limit] if d.contract]

    async def option_chain(self, underlying: Contract) -> OptionChain:
        chains = await self._conn.wait(
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
