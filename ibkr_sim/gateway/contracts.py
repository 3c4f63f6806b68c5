"""Contracts on the wire: reading a client's contract and writing IB's contract layouts.

A client names a contract with the twelve TWS fields ``conId, symbol, secType,
lastTradeDateOrContractMonth, strike, right, multiplier, exchange, primaryExchange, currency,
localSymbol, tradingClass``. A non-zero conId wins (as in TWS); otherwise the symbol, security
type and currency are resolved in the simulated universe, options through the option chain of
their underlying. Unknown contracts raise ``IBError(200)``, which the session sends as IB's
error 200 for the request's reqId.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from ibkr_sim.gateway.wire import Reader
from ibkr_spec.errors import NO_SECURITY_DEFINITION, IBError

if TYPE_CHECKING:
    from ibkr_sim.market import SimMarket
    from ibkr_sim.universe import Instrument

NEW_YORK = ZoneInfo("America/New_York")
IB_TIMEZONE = "US/Eastern"
ORDER_TYPES = (
    "ACTIVETIM,AD,ADJUST,ALERT,ALGO,ALLOC,AON,AVGCOST,BASKET,DAY,GTC,IOC,LIT,LMT,MKT,MOC,MTL,"
    "STP,STPLMT,TRAIL,WHATIF"
)


@dataclass(frozen=True)
class ContractRequest:
    """The twelve contract fields a client sends."""

    conid: int
    symbol: str
    sec_type: str
    last_trade_date: str
    strike: float
    right: str
    multiplier: str
    exchange: str
    primary_exchange: str
    currency: str
    local_symbol: str
    trading_class: str

    def describe(self) -> str:
        parts = [self.symbol or self.local_symbol, self.sec_type, self.exchange, self.currency]
        text = " ".join(p for p in parts if p)
        return f"conId {self.conid}" if self.conid and not text else text


def read_contract(r: Reader, with_primary: bool = True) -> ContractRequest:
    """Read the contract fields (``with_primary=False`` for layouts without primaryExchange)."""
    return ContractRequest(
        conid=r.int(),
        symbol=r.str(),
        sec_type=r.str(),
        last_trade_date=r.str(),
        strike=r.float(),
        right=r.str(),
        multiplier=r.str(),
        exchange=r.str(),
        primary_exchange=r.str() if with_primary else "",
        currency=r.str(),
        local_symbol=r.str(),
        trading_class=r.str(),
    )


def resolve(market: SimMarket, req: ContractRequest) -> Instrument:
    """The simulated instrument a client contract names; ``IBError(200)`` if none."""
    universe = market.universe
    if req.conid:
        return universe.by_conid(req.conid)
    sec_type = req.sec_type.upper() or None
    symbol = req.symbol or req.local_symbol
    if not symbol:
        raise IBError(NO_SECURITY_DEFINITION, "No security definition: the contract has no symbol")
    if sec_type in ("OPT", "FOP"):
        if not (req.last_trade_date and req.strike and req.right):
            raise IBError(
                NO_SECURITY_DEFINITION,
                f"No security definition has been found for the request: option on {symbol} "
                "needs lastTradeDateOrContractMonth, strike and right",
            )
        underlying = universe.lookup(symbol, None, req.currency or None)
        right = {"CALL": "C", "PUT": "P"}.get(req.right.upper(), req.right.upper())
        return market.option(underlying.conid, req.last_trade_date, req.strike, right)
    if sec_type == "CASH" and req.local_symbol and "." in req.local_symbol:
        return universe.lookup(req.local_symbol, "CASH")
    if sec_type == "CASH" and not req.currency:
        return universe.lookup(symbol, "CASH")
    return universe.lookup(symbol, sec_type, req.currency or None)


def multiplier_text(inst: Instrument) -> str:
    if inst.sec_type in ("STK", "CASH", "IND"):
        return ""
    m = inst.multiplier
    return str(int(m)) if float(m).is_integer() else repr(m)


def trading_class(inst: Instrument) -> str:
    if inst.sec_type == "STK":
        return "NMS"
    if inst.sec_type == "CASH":
        return f"{inst.symbol}.{inst.currency}"
    return inst.symbol


def market_name(inst: Instrument) -> str:
    return "NMS" if inst.sec_type == "STK" else trading_class(inst)


def contract_fields(inst: Instrument, exchange: str | None = None) -> list[object]:
    """conId symbol secType lastTradeDate strike right multiplier exchange currency localSymbol
    tradingClass (the layout of execDetails, position and openOrder)."""
    return [
        inst.conid,
        inst.symbol,
        inst.sec_type,
        inst.last_trade_date,
        inst.strike,
        inst.right,
        multiplier_text(inst),
        inst.exchange if exchange is None else exchange,
        inst.currency,
        inst.local_symbol,
        trading_class(inst),
    ]


def portfolio_contract_fields(inst: Instrument) -> list[object]:
    """The updatePortfolio layout: primaryExchange where the others have exchange."""
    fields = contract_fields(inst)
    fields[7] = inst.primary_exchange
    return fields


def scanner_contract_fields(inst: Instrument) -> list[object]:
    """The scannerData layout: no multiplier, SMART for stocks, marketName before tradingClass."""
    fields = contract_fields(inst, exchange="SMART" if inst.sec_type == "STK" else None)
    return [*fields[:6], *fields[7:10], market_name(inst), fields[10]]


def resolve_all(market: SimMarket, req: ContractRequest, today: date) -> list[Instrument]:
    """Every instrument a request matches: an option request without strike or right lists
    the chain (filtered by expiry prefix, strike and right), as TWS does; else one contract."""
    if req.sec_type.upper() != "OPT" or req.conid or (req.strike and req.right):
        return [resolve(market, req)]
    symbol = req.symbol or req.local_symbol
    underlying = market.universe.lookup(symbol, None, req.currency or None)
    expiries, strikes = market.option_chain(underlying.conid, today)
    right = {"CALL": "C", "PUT": "P"}.get(req.right.upper(), req.right.upper())
    found = [
        market.option(underlying.conid, expiry, strike, r)
        for expiry in expiries
        if expiry.startswith(req.last_trade_date)
        for strike in strikes
        if not req.strike or abs(strike - req.strike) < 1e-9
        for r in ("C", "P")
        if not right or r == right
    ]
    if not found:
        raise IBError(
            NO_SECURITY_DEFINITION,
            f"No security definition has been found for the request: {symbol} OPT "
            f"{req.last_trade_date} {req.strike or ''} {req.right}".strip(),
        )
    return found


#: (market, security type, first day) -> IB's trading-hours text of the week from that day. The
#: simulated market's hours depend on the security type alone (``SimMarket.trading_hours``: the
#: exchange calendar, IDEALPRO's day for FX), so one text serves every stock: a universe of 700
#: names costs 7 calendar look-ups, not 4,900 (85% of a contract-details answer, cProfile).
_HOURS: dict[tuple[SimMarket, str, date], str] = {}


def _hours(market: SimMarket, inst: Instrument, today: date) -> str:
    key = (market, inst.sec_type, today)
    text = _HOURS.get(key)
    if text is not None:
        return text
    parts: list[str] = []
    for offset in range(7):
        day = today + timedelta(days=offset)
        spans = market.trading_hours(inst.conid, day)
        if not spans:
            parts.append(f"{day:%Y%m%d}:CLOSED")
            continue
        for start, end in spans:
            a, b = start.astimezone(NEW_YORK), end.astimezone(NEW_YORK)
            parts.append(f"{a:%Y%m%d:%H%M}-{b:%Y%m%d:%H%M}")
    if len(_HOURS) >= 1024:
        _HOURS.clear()
    text = _HOURS[key] = ";".join(parts)
    return text


def contract_details_fields(
    market: SimMarket, inst: Instrument, req_id: int, today: date
) -> list[object]:
    """Message 10 (contractDetails) for server version >= 164."""
    under = market.universe.by_conid(inst.underlying_conid) if inst.underlying_conid else None
    hours = _hours(market, under or inst, today)
    valid = "SMART,NYSE,NASDAQ,ARCA,BATS,IEX" if inst.sec_type == "STK" else inst.exchange
    return [
        10,
        req_id,
        inst.symbol,
        inst.sec_type,
        inst.last_trade_date,
        inst.strike,
        inst.right,
        inst.exchange,
        inst.currency,
        inst.local_symbol,
        market_name(inst),
        trading_class(inst),
        inst.conid,
        inst.min_tick,
        multiplier_text(inst),
        ORDER_TYPES,
        valid,
        1,  # priceMagnifier
        inst.underlying_conid,
        inst.name,
        inst.primary_exchange,
        inst.last_trade_date[:6],  # contractMonth
        inst.sector,  # IB's "industry" is the broad sector
        inst.industry,  # IB's "category"
        "",  # subcategory
        IB_TIMEZONE,
        hours,
        hours,  # liquidHours: regular session only in the simulation
        "",  # evRule
        "",  # evMultiplier
        0,  # secIdList
        1,  # aggGroup
        under.symbol if under else "",
        under.sec_type if under else "",
        "26" if inst.sec_type == "STK" else "",  # marketRuleIds
        inst.last_trade_date,  # realExpirationDate
        ("ETF" if inst.is_etf else "COMMON") if inst.sec_type == "STK" else "",
        inst.lot_size if inst.sec_type == "CASH" else 1,  # minSize
        1,  # sizeIncrement
        inst.lot_size if inst.sec_type == "STK" else 1,  # suggestedSizeIncrement
    ]
