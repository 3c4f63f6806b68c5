"""Reference data beyond a contract's info: ``/trsrv/secdef`` (listing exchange, tick),
``/trsrv/secdef/schedule`` (trading hours), and option chains through ``/iserver/secdef/strikes``
and ``/iserver/secdef/info``.

Every number comes from the simulated market the TWS-protocol gateway serves: hours from
``SimMarket.trading_hours`` (the NYSE calendar, early closes and holidays included), chains from
``SimMarket.option_chain`` (monthly expiries, the strikes listed), options from
``SimMarket.option``.

**Schedule.** IBKR answers a month of the contract's schedule as weekday templates (dates
``20000101`` = any Saturday ... ``20000107`` = any Friday) plus the dates that differ from their
weekday's template (holidays, early closes); times are ``HHMM`` in the answer's ``timezone``; a
window whose closing time is not after its opening time opened the day before (FX: 17:15 to
17:00). The simulated market trades regular hours only, so each open day is one ``tradingtimes``
window marked ``prop: "LIQUID"`` (the whole day liquid, so no separate ``sessions``); a closed
day is one window without ``LIQUID`` (as the spec's example shows weekends and holidays), here
``0000``-``0000``. The spec's schema spells the key ``tradingTimes``, its example (IBKR's own
answer) ``tradingtimes``: the simulator sends the example's.

**Strikes.** IBKR answers empty ``call`` / ``put`` lists unless ``/iserver/secdef/search``
returned the underlying (searched by symbol, not by name) in the same session (webapi.md,
"Prerequisite calls"). A month outside the chain answers 400 naming the chain's months (IBKR's
answer unknown).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ibkr_sim.universe import Instrument
from ibkr_sim.webapi.routes_contracts import instrument, instruments_of, month_code
from ibkr_sim.webapi.state import WebApiState, bad_request, ok, web_state
from ibkr_spec.errors import IBError
from ibkr_spec.webapi import SECDEF_MAX_CONIDS

NEW_YORK = ZoneInfo("America/New_York")
#: days of schedule one /trsrv/secdef/schedule answer covers ("up to a month")
SCHEDULE_DAYS = 31
#: the schedule's assetClass -> the simulated universe's secType (OPT: the underlying's hours)
SCHEDULE_CLASSES = {"STK": "STK", "OPT": "STK", "FUT": "FUT", "BND": "BOND", "SWP": "CASH"}
#: 20000101 stands for any Saturday: weekday() 5
TEMPLATE_SATURDAY = date(2000, 1, 1)


def _listing(inst: Instrument) -> str:
    """The listing exchange the gateway names everywhere (search rows, orders, positions)."""
    return inst.primary_exchange or inst.exchange


# -- /trsrv/secdef -------------------------------------------------------------------------------
def _secdef_row(inst: Instrument) -> dict[str, Any]:
    is_option = inst.sec_type == "OPT"
    return {
        "conid": inst.conid,
        "currency": inst.currency,
        "assetClass": inst.sec_type,
        "ticker": inst.symbol,
        "fullName": inst.local_symbol if is_option else inst.symbol,
        "name": inst.name.upper(),
        "listingExchange": _listing(inst),
        "allExchanges": "SMART," + _listing(inst),
        "countryCode": "US" if inst.currency == "USD" else "",
        "isUS": inst.currency == "USD",
        "hasOptions": inst.sec_type == "STK",
        "isEventContract": False,
        "incrementRules": [{"lowerEdge": 0.0, "increment": inst.min_tick}],
        "multiplier": inst.multiplier if inst.multiplier != 1 else 0.0,
        "strike": f"{inst.strike:g}",
        "putOrCall": inst.right or None,
        "expiry": inst.last_trade_date or None,
        "lastTradingDay": inst.last_trade_date or None,
        "undConid": inst.underlying_conid,
        "group": inst.industry,
        "sector": inst.sector,
        "sectorGroup": inst.industry,
        "type": "ETF" if inst.is_etf else "COMMON" if inst.sec_type == "STK" else inst.sec_type,
        "time": 0,
    }


async def trsrv_secdef(request: Request) -> JSONResponse:
    """``GET /trsrv/secdef?conids=265598,8314``: security definitions, at most 200 conids."""
    found = instruments_of(
        web_state(request), request, SECDEF_MAX_CONIDS, "/trsrv/secdef?conids=265598,8314"
    )
    if isinstance(found, JSONResponse):
        return found
    return ok({"secdef": [_secdef_row(inst) for inst in found]})


# -- /trsrv/secdef/schedule ------------------------------------------------------------------------
Windows = tuple[tuple[str, str], ...]
#: an underlying with (some of) its option chain: (underlying, expiries YYYYMMDD, strikes)
Chain = tuple[Instrument, list[str], list[float]]


def _windows(st: WebApiState, conid: int, day: date) -> Windows:
    """The day's trading windows as (opening, closing) ``HHMM`` in New York time."""
    return tuple(
        (f"{a.astimezone(NEW_YORK):%H%M}", f"{b.astimezone(NEW_YORK):%H%M}")
        for a, b in st.world.market.trading_hours(conid, day)
    )


def _schedule_entry(key: str, windows: Windows) -> dict[str, Any]:
    times = [
        {"cancelDayOrders": "Y", "openingTime": a, "closingTime": b, "prop": "LIQUID"}
        for a, b in windows
    ] or [{"cancelDayOrders": "Y", "openingTime": "0000", "closingTime": "0000"}]
    return {
        "clearingCycleEndTime": "1700" if windows else "0000",
        "sessions": [],
        "tradingScheduleDate": key,
        "tradingtimes": times,
    }


def schedule(st: WebApiState, conid: int, today: date) -> list[dict[str, Any]]:
    """The schedule entries of ``conid`` for :data:`SCHEDULE_DAYS` days from ``today``: each
    weekday's template (its most common windows in the period), then the dates that differ."""
    days = [today + timedelta(days=i) for i in range(SCHEDULE_DAYS)]
    windows = {d: _windows(st, conid, d) for d in days}
    usual: dict[int, Windows] = {}
    for weekday in range(7):
        counts = Counter(w for d, w in windows.items() if d.weekday() == weekday)
        usual[weekday] = counts.most_common(1)[0][0]
    entries = []
    for weekday in (5, 6, 0, 1, 2, 3, 4):
        template = TEMPLATE_SATURDAY + timedelta(days=(weekday - 5) % 7)
        entries.append(_schedule_entry(f"{template:%Y%m%d}", usual[weekday]))
    entries += [
        _schedule_entry(f"{d:%Y%m%d}", w) for d, w in windows.items() if w != usual[d.weekday()]
    ]
    return entries


async def trading_schedule(request: Request) -> JSONResponse:
    """``GET /trsrv/secdef/schedule?assetClass=STK&symbol=AAPL&exchange=NASDAQ``: a month of
    the contract's trading hours on its listing exchange (see the module docstring)."""
    st = web_state(request)
    params = request.query_params
    asset_class = params.get("assetClass", "").upper()
    symbol = params.get("symbol", "").strip().upper()
    if asset_class not in SCHEDULE_CLASSES or not symbol:
        return bad_request(
            "assetClass and symbol are required, e.g. ?assetClass=STK&symbol=AAPL; assetClass "
            f"is one of {', '.join(SCHEDULE_CLASSES)}"
        )
    wanted = params.get("exchange", "").strip().upper()
    try:
        inst = st.world.market.universe.lookup(symbol, SCHEDULE_CLASSES[asset_class])
    except IBError:
        return bad_request(f"no {asset_class} contract with symbol {symbol}")
    if wanted and wanted != _listing(inst):
        return bad_request(f"{symbol} is listed on {_listing(inst)}, not {wanted}")
    entries = schedule(st, inst.conid, st.world.now().astimezone(NEW_YORK).date())
    return ok(
        [
            {
                "id": f"p{inst.conid}",
                "tradeVenueId": f"v{inst.conid}",
                "exchange": _listing(inst),
                "description": _listing(inst),
                "timezone": "America/New_York",
                "schedules": entries,
            }
        ]
    )


# -- option chains -----------------------------------------------------------------------------
def _chain_month(st: WebApiState, params: Mapping[str, str]) -> Chain | JSONResponse:
    """The underlying ``conid`` of a strikes or info request, its chain's expiries in ``month``
    (``MAR26``) and its strikes; or IBKR's 400 for a sectype other than OPT, a conid without
    options, or a month outside the chain (naming the chain's months)."""
    sec_type = params.get("sectype", "")
    if sec_type.upper() != "OPT":
        return bad_request(f"sectype {sec_type!r}: the simulated gateway lists options (OPT) only")
    inst = instrument(st, params.get("conid", ""))
    if isinstance(inst, JSONResponse):
        return inst
    try:
        expiries, strikes = st.world.market.option_chain(inst.conid, st.world.now().date())
    except IBError as exc:
        return bad_request(f"conid {inst.conid} ({inst.symbol}) has no options: {exc.message}")
    month = params.get("month", "").upper()
    found = [e for e in expiries if month_code(e) == month]
    if not found:
        months = ";".join(dict.fromkeys(month_code(e) for e in expiries))
        return bad_request(f"month {month!r} is not one of this chain's months ({months})")
    return inst, found, strikes


async def strikes(request: Request) -> JSONResponse:
    """``GET /iserver/secdef/strikes?conid=&sectype=OPT&month=MAR26&exchange=SMART``: the strikes
    of the month's calls and puts (empty before a search for the underlying, see above)."""
    st = web_state(request)
    found = _chain_month(st, request.query_params)
    if isinstance(found, JSONResponse):
        return found
    inst, _, listed = found
    with st.lock:
        searched = (st.session.session_id, inst.conid) in st.searched
    shown = list(listed) if searched else []
    return ok({"call": shown, "put": list(shown)})


def _option_row(inst: Instrument) -> dict[str, Any]:
    expiry = datetime.strptime(inst.last_trade_date, "%Y%m%d")
    kind = "Call" if inst.right == "C" else "Put"
    return {
        "conid": inst.conid,
        "ticker": inst.symbol,
        "secType": "OPT",
        "exchange": "SMART",
        "listingExchange": _listing(inst),
        "right": inst.right,
        "strike": inst.strike,
        "currency": inst.currency,
        "maturityDate": inst.last_trade_date,
        "multiplier": f"{inst.multiplier:g}",
        "tradingClass": inst.symbol,
        "validExchanges": "SMART,CBOE,ISE",
        "coupon": "No Coupon",
        "desc1": inst.symbol,
        "desc2": f"{expiry:%b %d}".upper() + f" '{expiry:%y} {inst.strike:g} {kind}",
        "showPrips": False,
    }


async def secdef_info(request: Request) -> JSONResponse:
    """``GET /iserver/secdef/info?conid=&sectype=OPT&month=&strike=&right=C``: the options of the
    month at that strike and right (empty when none is listed there); without ``sectype=OPT``
    the contract ``conid`` itself (one object, as IBKR's stock example)."""
    st = web_state(request)
    params = request.query_params
    if params.get("sectype", "").upper() in ("", "STK", "ETF", "IND"):
        inst = instrument(st, params.get("conid", ""))
        if isinstance(inst, JSONResponse):
            return inst
        return ok(
            {
                "conid": inst.conid,
                "ticker": inst.symbol,
                "secType": inst.sec_type,
                "exchange": "SMART",
                "listingExchange": _listing(inst),
                "companyName": inst.name,
                "currency": inst.currency,
                "strike": 0.0,
                "maturityDate": None,
                "priceRendering": None,
                "validExchanges": "SMART," + _listing(inst),
            }
        )
    found = _chain_month(st, params)
    if isinstance(found, JSONResponse):
        return found
    under, in_month, _ = found
    right = params.get("right", "").upper()
    raw_strike = params.get("strike", "")
    try:
        strike = float(raw_strike)
    except ValueError:
        return bad_request(f"strike {raw_strike!r} must be a number, e.g. strike=200")
    if right not in ("C", "P"):
        return bad_request(f"right {right!r} must be C or P")
    rows = []
    for expiry in in_month:
        try:
            rows.append(_option_row(st.world.market.option(under.conid, expiry, strike, right)))
        except IBError:
            continue  # no option listed at that strike: IBKR answers fewer (or no) records
    return ok(rows)


ROUTES = [
    Route("/trsrv/secdef", trsrv_secdef, methods=["GET"]),
    Route("/trsrv/secdef/schedule", trading_schedule, methods=["GET"]),
    Route("/iserver/secdef/strikes", strikes, methods=["GET"]),
    Route("/iserver/secdef/info", secdef_info, methods=["GET"]),
]

__all__ = ["ROUTES", "schedule"]
