"""Contracts through the Web API: ``/iserver/secdef/search`` finds a symbol's conid,
``/iserver/contract/{conid}/info`` describes it, ``/trsrv/secdef`` adds its listing exchange and
price increment, ``/trsrv/secdef/schedule`` its trading hours; option chains come from
``/iserver/secdef/strikes`` and options from ``/iserver/secdef/info``. Conids are fixed for the
life of an instrument, so each contract's info and definition are asked once and kept; the
listing exchange a search row names (its ``description``) is kept too, so a contract resolved by
symbol costs no ``/trsrv/secdef`` request.

**Many stocks at once** (``resolve_many``, ``details_many``): ``/trsrv/stocks`` names the conids
of many symbols in one request (:data:`STOCKS_PER_REQUEST` a request: IBKR names no limit, this
keeps the URL near 1 KB) and ``/trsrv/secdef`` describes up to 200 conids in one (listing
exchange, tick, IBKR's sector and group, currency), so 700 stocks cost 4 + 4 requests instead of
several each. A stock's contract is then built from its ``/trsrv/secdef`` row
(:func:`secdef_contract`: no trading class, the name as ``/trsrv`` writes it); a symbol that is
not upper-case letters only (``BRK B``: IBKR's ``/trsrv/stocks`` takes capital letters) and other
types are resolved one by one. Classification (sector = IBKR's ``sector``, industry = its
``group``, as TWS's industry and category) and tick always come from ``/trsrv/secdef``.

**Futures** (``/trsrv/futures?symbols=CL``): IBKR lists a symbol's non-expired futures; the front
month is the one expiring first whose last trading day (``ltd``) is not past.

**Options.** IBKR answers strikes (and, per its docs, option info) only for an underlying that
``/iserver/secdef/search`` returned by symbol in the same brokerage session, so each chain or
option look-up searches the underlying first; the search row lists the chain's months
(``sections``, ``MAR26``) and expiries (``opt``, ``YYYYMMDD;...``).

**Schedule.** IBKR answers weekday templates (``20000101`` = any Saturday ... ``20000107`` = any
Friday) and dated exceptions, times ``HHMM`` in the answer's ``timezone``; a window closing at or
before its opening opened the day before. A day's liquid (regular) hours are its ``sessions``, or
its trading windows marked ``prop: "LIQUID"`` when the whole day is liquid; a day without liquid
hours is closed (weekends, holidays). The schedule is asked per contract, once per gateway day:
IBKR's request names a contract (``assetClass`` and ``symbol`` required) and its answer is "the
trading schedule ... for the requested contract"; no source says contracts of one exchange share
it (futures of one exchange do not). The spec's schema spells the windows ``tradingTimes``, its
example ``tradingtimes``: both are read.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from ibkr_assets.broker import models
from ibkr_assets.broker.batch import each
from ibkr_assets.broker.errors import BrokerError, ContractNotFound, InvalidRequest
from ibkr_assets.broker.models import (
    Contract,
    ContractDetails,
    OptionChain,
    SecType,
    TradingSession,
)
from ibkr_assets.broker.webapi.session import Session
from ibkr_spec.errors import NO_SECURITY_DEFINITION
from ibkr_spec.webapi import SECDEF_MAX_CONIDS

#: secdef/search's secType for the broker's (IBKR searches STK, IND, BOND; ETFs are STK)
SEARCH_TYPES = {"STK": "STK", "ETF": "STK", "IND": "IND", "BOND": "BOND"}
#: /trsrv/secdef/schedule's assetClass for the broker's secType (options: the underlying's hours)
SCHEDULE_CLASSES = {"STK": "STK", "ETF": "STK", "OPT": "OPT", "FUT": "FUT", "BOND": "BND"}
#: days of trading hours contract_details reports, from today (as the other backends)
HOURS_DAYS = 8
#: IBKR's routing exchange, never a listing one
SMART = "SMART"
#: IBKR's schedule template dates: 20000101 stands for any Saturday (weekday() 5)
TEMPLATE_SATURDAY = date(2000, 1, 1)
#: the secTypes /trsrv/stocks and /trsrv/secdef serve in batches (IBKR's STK, ETFs included)
STOCK_TYPES = ("STK", "ETF")
#: symbols of one /trsrv/stocks request (IBKR names no limit; see the module docstring)
STOCKS_PER_REQUEST = 200
#: what /trsrv/stocks takes: "Symbols must contain only capitalized letters" (IBKR's spec)
STOCKS_SYMBOL = re.compile(r"[A-Z]+")
#: the time zone of a ContractDetails without trading hours
DEFAULT_ZONE = "America/New_York"
Hours = tuple[str, list[TradingSession], list[TradingSession]]


class Contracts:
    """Resolves and describes contracts; thread-safe, each conid's info and definition asked
    once."""

    def __init__(self, session: Session) -> None:
        self._s = session
        self._lock = threading.Lock()
        self._info: dict[int, dict[str, Any]] = {}
        self._secdef: dict[int, dict[str, Any]] = {}
        self._listing: dict[int, str] = {}
        self._conids: dict[tuple[str, str], int] = {}
        self._hours: dict[tuple[int, date], Hours] = {}

    def info(self, conid: int) -> dict[str, Any]:
        """``/iserver/contract/{conid}/info``, kept; ContractNotFound for a conid IBKR lacks."""
        with self._lock:
            cached = self._info.get(conid)
        if cached is not None:
            return cached
        try:
            body = self._s.get(f"/iserver/contract/{conid}/info")
        except InvalidRequest as exc:
            raise ContractNotFound(
                f"conId {conid}: no contract with that id ({exc.message})",
                code=NO_SECURITY_DEFINITION,
            ) from None
        if not isinstance(body, dict) or "con_id" not in body:
            raise ContractNotFound(f"conId {conid}: the gateway answered no contract: {body!r}")
        with self._lock:
            self._info[conid] = body
        return body

    def secdef(self, conid: int) -> dict[str, Any]:
        """``/trsrv/secdef`` of one conid (listing exchange, price increments), kept."""
        row = self.secdefs([conid]).get(conid)
        if row is None:
            raise ContractNotFound(f"conId {conid}: the gateway has no security definition")
        return row

    def secdefs(self, conids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """``/trsrv/secdef`` rows of ``conids`` (:data:`SECDEF_MAX_CONIDS` a request), kept;
        a conid the gateway does not know is left out."""
        with self._lock:
            missing = list(dict.fromkeys(c for c in conids if c not in self._secdef))
        for i in range(0, len(missing), SECDEF_MAX_CONIDS):
            for row in self._secdef_rows(missing[i : i + SECDEF_MAX_CONIDS]):
                conid = int(row.get("conid", -1))
                self.note_listing(conid, row.get("listingExchange"))
                with self._lock:
                    self._secdef[conid] = row
        with self._lock:
            return {c: self._secdef[c] for c in conids if c in self._secdef}

    def _secdef_rows(self, conids: list[int]) -> list[dict[str, Any]]:
        """One ``/trsrv/secdef`` request; when the gateway refuses it (400: a conid it does not
        know), each half asked on its own, so one bad conid costs about 2 log2(n) requests."""
        try:
            body = self._s.get("/trsrv/secdef", conids=",".join(map(str, conids)))
        except InvalidRequest:
            if len(conids) == 1:
                return []
            half = len(conids) // 2
            return self._secdef_rows(conids[:half]) + self._secdef_rows(conids[half:])
        wanted = set(conids)
        return [r for r in (body or {}).get("secdef") or [] if int(r.get("conid", -1)) in wanted]

    def note_listing(self, conid: int, exchange: object) -> None:
        """Keep ``conid``'s listing exchange as an answer named it (SMART, a router, is none)."""
        text = str(exchange or "")
        with self._lock:
            self._listing[conid] = "" if text == SMART else text

    def _primary_exchange(self, conid: int) -> str:
        with self._lock:
            known = self._listing.get(conid)
        if known is None:
            self.secdef(conid)
            with self._lock:
                known = self._listing[conid]
        return known

    def contract(self, conid: int) -> Contract:
        """The contract with IB id ``conid``."""
        info = self.info(conid)
        return to_contract(info, self._primary_exchange(conid))

    def _search(self, symbol: str, sec_type: str | None = None) -> list[dict[str, Any]]:
        """``/iserver/secdef/search`` by symbol; keeps each row's listing exchange."""
        params = {"symbol": symbol} | ({"secType": sec_type} if sec_type else {})
        rows = [r for r in self._s.get("/iserver/secdef/search", **params) or []]
        for r in rows:
            if str(r.get("conid", "")).isdigit() and r.get("description"):
                self.note_listing(int(r["conid"]), r["description"])
        return rows

    def resolve(self, symbol: str, sec_type: str, currency: str) -> Contract:
        """The one contract of ``symbol`` (its first search match of that type and currency)."""
        symbol = symbol.upper()
        key = (symbol, sec_type)
        with self._lock:
            conid = self._conids.get(key)
        label = f"{symbol} ({sec_type} {currency})"
        if conid is None:
            search_type = SEARCH_TYPES.get(sec_type)
            if search_type is None:
                raise InvalidRequest(
                    f"{label}: the webapi backend resolves STK, ETF, IND and BOND by symbol; "
                    "resolve other types by conId"
                )
            rows = self._search(symbol, search_type)
            conids = [int(r["conid"]) for r in rows if r.get("symbol") == symbol]
            if not conids:
                raise ContractNotFound(f"{label}: no security definition found")
            conid = conids[0]
            with self._lock:
                self._conids[key] = conid
        found = self.contract(conid)
        if found.currency != currency:
            raise ContractNotFound(f"{label}: {symbol} trades in {found.currency}")
        return found

    def resolve_many(
        self, symbols: Sequence[str], sec_type: str, currency: str
    ) -> dict[str, Contract | BrokerError]:
        """Each stock's contract, keyed by the symbol as given (see the module docstring):
        ``/trsrv/stocks`` for the conids, ``/trsrv/secdef`` for the rest."""
        wanted = {s: s.upper() for s in symbols}
        batched = [u for u in dict.fromkeys(wanted.values()) if STOCKS_SYMBOL.fullmatch(u)]
        with self._lock:
            batched = [u for u in batched if (u, sec_type) not in self._conids]
        candidates: dict[str, list[int]] = {}
        for i in range(0, len(batched), STOCKS_PER_REQUEST):
            chunk = batched[i : i + STOCKS_PER_REQUEST]
            body = self._s.get("/trsrv/stocks", symbols=",".join(chunk)) or {}
            for symbol in chunk:
                candidates[symbol] = [
                    int(c["conid"])
                    for entry in body.get(symbol) or []
                    if entry.get("assetClass") == "STK"
                    for c in entry.get("contracts") or []
                    if c.get("isUS") or currency != "USD"
                ]
        with self._lock:  # symbols resolved before: their definitions in the same batch
            known = [self._conids.get((u, sec_type)) for u in wanted.values()]
        asked = [c for conids in candidates.values() for c in conids]
        rows = self.secdefs(asked + [c for c in known if c is not None])
        for symbol, conids in candidates.items():
            match = [c for c in conids if c in rows and rows[c].get("currency") == currency]
            if match:
                with self._lock:
                    self._conids[(symbol, sec_type)] = match[0]

        def one(symbol: str) -> Contract:
            with self._lock:
                conid = self._conids.get((symbol, sec_type))
            if symbol in candidates and conid is None:
                raise ContractNotFound(
                    f"{symbol} ({sec_type} {currency}): no security definition found",
                    code=NO_SECURITY_DEFINITION,
                )
            if conid is None:  # not asked in the batch
                return self.resolve(symbol, sec_type, currency)
            row = self.secdefs([conid]).get(conid)
            return secdef_contract(row) if row else self.contract(conid)

        found = each(wanted.values(), one)
        return dict(zip(wanted, found, strict=True))

    def future(self, symbol: str, currency: str, today: date) -> Contract:
        """The front month of future ``symbol`` on ``today`` (``/trsrv/futures``, see the
        module docstring)."""
        symbol = symbol.upper()
        label = f"{symbol} (FUT {currency})"
        body = self._s.get("/trsrv/futures", symbols=symbol) or {}
        live = [r for r in body.get(symbol) or [] if int(r.get("ltd") or 0) >= _yyyymmdd(today)]
        if not live:
            raise ContractNotFound(
                f"{label}: the gateway lists no future of {symbol} that has not expired",
                code=NO_SECURITY_DEFINITION,
            )
        front = min(live, key=lambda r: int(r.get("expirationDate") or r["ltd"]))
        found = self.contract(int(front["conid"]))
        if found.currency != currency:
            raise ContractNotFound(f"{label}: {symbol} trades in {found.currency}")
        return found

    def search(self, text: str, limit: int) -> list[Contract]:
        """Contracts whose symbol starts with ``text`` (IBKR's secdef search), at most ``limit``."""
        rows = self._search(text.strip())
        conids = [int(r["conid"]) for r in rows if str(r.get("conid", "")).isdigit()]
        return [self.contract(c) for c in conids[:limit]]

    def details(self, contract: Contract, today: date | None) -> ContractDetails:
        """Classification, tick and (unless ``today`` is None) the trading hours of
        :data:`HOURS_DAYS` days from ``today`` (the gateway's date) of ``contract``."""
        found = self.contract(contract.conid)
        return self._details(found, self.secdef(contract.conid), today)

    def details_many(
        self, contracts: Sequence[Contract], today: date | None
    ) -> list[ContractDetails | BrokerError]:
        """:meth:`details` of each contract, a contract's error in its place; the stocks'
        definitions asked in batches (see the module docstring)."""
        rows = self.secdefs([c.conid for c in contracts if c.sec_type in STOCK_TYPES])

        def one(contract: Contract) -> ContractDetails:
            row = rows.get(contract.conid) if contract.sec_type in STOCK_TYPES else None
            if row is None or row.get("assetClass") != "STK":
                return self.details(contract, today)
            return self._details(secdef_contract(row), row, today)

        return each(contracts, one)

    def _details(self, found: Contract, row: dict[str, Any], today: date | None) -> ContractDetails:
        rules = row.get("incrementRules") or []
        tick = float(rules[0].get("increment") or 0.0) if rules else 0.0
        zone, trading, liquid = DEFAULT_ZONE, [], []
        if today is not None:
            zone, trading, liquid = self.trading_hours(found, today)
        return ContractDetails(
            contract=found,
            sector=str(row.get("sector") or ""),
            industry=str(row.get("group") or ""),
            min_tick=tick or 0.01,
            time_zone=zone,
            trading_hours=trading,
            liquid_hours=liquid,
        )

    def trading_hours(self, found: Contract, today: date) -> Hours:
        """(time zone, trading hours, liquid hours) of :data:`HOURS_DAYS` days from ``today``
        (``/trsrv/secdef/schedule``, asked once per contract and day)."""
        key = (found.conid, today)
        with self._lock:
            known = self._hours.get(key)
        if known is not None:
            return known
        zone, trading, liquid = DEFAULT_ZONE, [], []
        asset_class = SCHEDULE_CLASSES.get(found.sec_type)
        if asset_class is not None:
            params = {"assetClass": asset_class, "symbol": found.symbol}
            if found.primary_exchange:
                params["exchange"] = found.primary_exchange
            venues = self._s.get("/trsrv/secdef/schedule", **params) or []
            if venues:
                zone = str(venues[0].get("timezone") or zone)
                trading, liquid = hours(venues[0].get("schedules") or [], zone, today)
        with self._lock:
            self._hours[key] = (zone, trading, liquid)
        return zone, trading, liquid

    # -- options -----------------------------------------------------------------------------
    def _underlying_row(self, underlying: Contract) -> dict[str, Any]:
        """The underlying's search row (IBKR's prerequisite for strikes and option info)."""
        rows = self._search(underlying.symbol, SEARCH_TYPES.get(underlying.sec_type))
        for r in rows:
            if str(r.get("conid")) == str(underlying.conid):
                return r
        raise ContractNotFound(
            f"{underlying.symbol} (conId {underlying.conid}): the gateway's search for "
            f"{underlying.symbol} did not return it, so it lists no options for it"
        )

    def option_chain(self, underlying: Contract) -> OptionChain:
        """Expiries (the search row's ``opt``) and strikes (``/iserver/secdef/strikes`` of each
        month the row lists) of ``underlying``'s options."""
        row = self._underlying_row(underlying)
        sections = [s for s in row.get("sections") or [] if s.get("secType") == "OPT"]
        months = [m for s in sections for m in str(s.get("months") or "").split(";") if m]
        if not months:
            raise ContractNotFound(
                f"{underlying.symbol} has no listed options", code=NO_SECURITY_DEFINITION
            )
        strikes: set[float] = set()
        for month in months:
            body = self._s.get(
                "/iserver/secdef/strikes",
                conid=underlying.conid,
                sectype="OPT",
                month=month,
                exchange=SMART,
            )
            strikes.update(float(x) for side in ("call", "put") for x in body.get(side) or [])
        return OptionChain(
            underlying=underlying,
            exchange=SMART,
            trading_class=underlying.symbol,
            multiplier=100.0,
            expirations=sorted(e for e in str(row.get("opt") or "").split(";") if e),
            strikes=sorted(strikes),
        )

    def option_contract(
        self, underlying: Contract, expiry: str, strike: float, right: str
    ) -> Contract:
        """The listed option (``/iserver/secdef/info`` of its month, strike and right)."""
        expiry, strike, right = models.option_spec(expiry, strike, right)
        label = f"{underlying.symbol} {expiry} {strike:g} {right}"
        self._underlying_row(underlying)
        month = datetime.strptime(expiry, "%Y%m%d").strftime("%b%y").upper()
        try:
            rows = self._s.get(
                "/iserver/secdef/info",
                conid=underlying.conid,
                sectype="OPT",
                month=month,
                strike=f"{strike:g}",
                right=right,
                exchange=SMART,
            )
        except InvalidRequest as exc:  # a month IBKR does not list
            raise ContractNotFound(
                f"no {label} option listed: {exc.message}", code=NO_SECURITY_DEFINITION
            ) from None
        found = [r for r in rows or [] if str(r.get("maturityDate")) == expiry]
        if not found:
            raise ContractNotFound(f"no {label} option listed", code=NO_SECURITY_DEFINITION)
        conid = int(found[0]["conid"])
        self.note_listing(conid, found[0].get("listingExchange"))
        return self.contract(conid)


def _windows(entry: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(trading windows, liquid windows) of one schedule entry (see the module docstring)."""
    times = list(entry.get("tradingtimes") or entry.get("tradingTimes") or [])
    liquid = list(entry.get("sessions") or []) or [t for t in times if t.get("prop") == "LIQUID"]
    return (times, liquid) if liquid else ([], [])


def _span(day: date, window: dict[str, Any], zone: ZoneInfo) -> TradingSession:
    opening, closing = str(window["openingTime"]), str(window["closingTime"])
    start = datetime.combine(day, time(int(opening[:2]), int(opening[2:])), zone)
    end = datetime.combine(day, time(int(closing[:2]), int(closing[2:])), zone)
    if end <= start:
        start -= timedelta(days=1)
    return TradingSession(start=start.astimezone(UTC), end=end.astimezone(UTC))


def hours(
    entries: list[dict[str, Any]], zone_name: str, today: date
) -> tuple[list[TradingSession], list[TradingSession]]:
    """(trading hours, liquid hours) of the :data:`HOURS_DAYS` days from ``today`` in a
    ``/trsrv/secdef/schedule`` venue's ``schedules`` (each day its dated entry, else its
    weekday's template)."""
    zone = ZoneInfo(zone_name)
    by_date = {str(e.get("tradingScheduleDate")): e for e in entries}
    trading: list[TradingSession] = []
    liquid: list[TradingSession] = []
    for offset in range(HOURS_DAYS):
        day = today + timedelta(days=offset)
        template = TEMPLATE_SATURDAY + timedelta(days=(day.weekday() - 5) % 7)
        entry = by_date.get(f"{day:%Y%m%d}") or by_date.get(f"{template:%Y%m%d}")
        if entry is None:
            continue
        times, liquid_times = _windows(entry)
        trading += [_span(day, w, zone) for w in times]
        liquid += [_span(day, w, zone) for w in liquid_times]
    return trading, liquid


def to_contract(info: dict[str, Any], primary_exchange: str = "") -> Contract:
    """A contract from IBKR's ``/iserver/contract/{conid}/info`` answer and its listing
    exchange."""
    sec_type = str(info.get("instrument_type") or "STK")
    right = {"CALL": "C", "PUT": "P"}.get(str(info.get("right", "")).upper(), "")
    multiplier = str(info.get("multiplier") or "")
    return Contract(
        conid=int(info["con_id"]),
        symbol=str(info.get("symbol", "")),
        sec_type=cast(SecType, sec_type),
        exchange=str(info.get("exchange") or SMART),
        primary_exchange=primary_exchange,
        currency=str(info.get("currency") or "USD"),
        local_symbol=str(info.get("local_symbol") or ""),
        name=str(info.get("company_name") or ""),
        multiplier=float(multiplier) if multiplier else 1.0,
        last_trade_date=str(info.get("maturity_date") or "") if sec_type == "OPT" else "",
        strike=float(info.get("strike") or 0.0),
        right=cast("Any", right),
        trading_class=str(info.get("trading_class") or ""),
    )


def _yyyymmdd(day: date) -> int:
    return int(f"{day:%Y%m%d}")


def secdef_contract(row: dict[str, Any]) -> Contract:
    """A stock's contract from its ``/trsrv/secdef`` row (IBKR's STK: ETFs too): listing
    exchange, currency and name as the row gives them, no trading class."""
    symbol = str(row.get("ticker") or "")
    listing = str(row.get("listingExchange") or "")
    return Contract(
        conid=int(row["conid"]),
        symbol=symbol,
        sec_type="STK",
        exchange=SMART,
        primary_exchange="" if listing == SMART else listing,
        currency=str(row.get("currency") or "USD"),
        local_symbol=symbol,
        name=str(row.get("name") or ""),
    )
