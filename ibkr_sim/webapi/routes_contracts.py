"""Contracts: ``/iserver/secdef/search``, ``/iserver/contract/{conid}/info``, ``/trsrv/stocks``,
``/trsrv/futures``, from the simulated universe (conids are the TWS gateway's, fixed for the life
of an instrument).

A conid the universe does not know answers 400 ``{"error": ..., "statusCode": 400}`` (webapi.md,
"Error responses": 400 for a bad conid or parameters).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ibkr_sim.universe import Instrument
from ibkr_sim.webapi.state import WebApiState, bad_request, json_body, ok, web_state
from ibkr_spec.errors import IBError

NEW_YORK = ZoneInfo("America/New_York")
#: results of one /iserver/secdef/search
SEARCH_LIMIT = 10
SEARCH_SEC_TYPES = ("STK", "IND", "BOND", "FUT", "CASH")


def instrument(st: WebApiState, raw: object) -> Instrument | JSONResponse:
    """The instrument with conid ``raw``, or IBKR's 400 naming it."""
    try:
        return st.world.market.universe.by_conid(int(str(raw)))
    except (ValueError, IBError):
        return bad_request(f"Invalid conid: {raw!r} is not a contract id the gateway knows")


def instruments_of(
    st: WebApiState, request: Request, limit: int, example: str
) -> list[Instrument] | JSONResponse:
    """The instruments of the request's ``conids`` query (comma-separated, at most ``limit``), or
    IBKR's 400 naming what was wrong (none given: ``example`` shows the form; too many; one
    unknown)."""
    raw = [c.strip() for c in request.query_params.get("conids", "").split(",") if c.strip()]
    if not raw:
        return bad_request(f"conids is required, e.g. {example}")
    if len(raw) > limit:
        return bad_request(f"{len(raw)} conids asked; at most {limit} per request")
    found = []
    for conid in raw:
        inst = instrument(st, conid)
        if isinstance(inst, JSONResponse):
            return inst
        found.append(inst)
    return found


def month_code(expiry: str) -> str:
    """``20260320`` -> ``MAR26``: the months IBKR lists in search sections and takes in
    strikes and info requests."""
    return datetime.strptime(expiry, "%Y%m%d").strftime("%b%y").upper()


def _search_row(st: WebApiState, inst: Instrument) -> dict[str, Any]:
    listing = inst.primary_exchange or inst.exchange
    sections: list[dict[str, Any]] = [{"secType": inst.sec_type}]
    opt = None
    if inst.sec_type == "STK":
        expiries, _ = st.world.market.option_chain(inst.conid, st.world.now().date())
        opt = ";".join(expiries)
        months = ";".join(dict.fromkeys(month_code(e) for e in expiries))
        sections.append({"secType": "OPT", "months": months, "exchange": "SMART;CBOE;ISE"})
    return {
        "conid": str(inst.conid),
        "companyHeader": f"{inst.name} - {listing}",
        "companyName": inst.name,
        "symbol": inst.symbol,
        "description": listing,
        "restricted": None,
        "fop": None,
        "opt": opt,
        "war": None,
        "sections": sections,
    }


async def secdef_search(request: Request) -> JSONResponse:
    """``GET|POST /iserver/secdef/search?symbol=&secType=&name=``: contracts by symbol (or name
    with ``name=true``), stocks first; an empty list when nothing matches."""
    st = web_state(request)
    params: dict[str, Any] = dict(request.query_params)
    if request.method == "POST":
        body = await json_body(request)
        if body is None:
            return bad_request("the search body must be a JSON object with a 'symbol'")
        params.update(body)
    symbol = str(params.get("symbol", "")).strip()
    if not symbol:
        return bad_request("symbol is required, e.g. /iserver/secdef/search?symbol=AAPL")
    sec_type = str(params.get("secType", "") or "").upper()
    if sec_type and sec_type not in SEARCH_SEC_TYPES:
        return bad_request(f"secType {sec_type!r} is not one of {', '.join(SEARCH_SEC_TYPES)}")
    by_name = str(params.get("name", "false")).lower() == "true"
    found = st.world.market.universe.search(symbol, limit=SEARCH_LIMIT * 3)
    if not by_name:
        found = [i for i in found if i.symbol.startswith(symbol.upper())]
    if sec_type:
        found = [i for i in found if i.sec_type == sec_type]
    found = found[:SEARCH_LIMIT]
    if not by_name:  # IBKR: strikes stay empty after a search by name
        with st.lock:
            st.searched.update((st.session.session_id, i.conid) for i in found)
    return ok([_search_row(st, i) for i in found])


async def contract_info(request: Request) -> JSONResponse:
    """``GET /iserver/contract/{conid}/info``: the contract's details."""
    st = web_state(request)
    inst = instrument(st, request.path_params["conid"])
    if isinstance(inst, JSONResponse):
        return inst
    listing = inst.primary_exchange or inst.exchange
    body: dict[str, Any] = {
        "cfi_code": "",
        "symbol": inst.symbol,
        "cusip": None,
        "expiry_full": inst.last_trade_date,
        "con_id": inst.conid,
        "maturity_date": inst.last_trade_date,
        "industry": inst.industry,
        "instrument_type": inst.sec_type,
        "trading_class": inst.symbol if inst.sec_type != "CASH" else inst.local_symbol,
        "valid_exchanges": "SMART," + listing if listing != "SMART" else "SMART",
        "allow_sell_long": False,
        "is_zero_commission_security": False,
        "local_symbol": inst.local_symbol,
        "contract_clarification_type": None,
        "classifier": None,
        "currency": inst.currency,
        "text": None,
        "underlying_con_id": inst.underlying_conid,
        "r_t_h": True,
        "multiplier": f"{inst.multiplier:g}" if inst.multiplier != 1 else "",
        "underlying_issuer": None,
        "contract_month": inst.last_trade_date[:6],
        "company_name": inst.name,
        "smart_available": True,
        "exchange": "SMART",
        "category": inst.sector,
    }
    if inst.sec_type == "OPT":
        body["right"] = "CALL" if inst.right == "C" else "PUT"
        body["strike"] = f"{inst.strike:g}"
    # the spec types these as strings without nullable: send them only when known
    return ok({k: v for k, v in body.items() if v is not None})


def _by_symbol(st: WebApiState, sec_type: str) -> dict[str, list[Instrument]]:
    """The universe's instruments of ``sec_type`` by symbol."""
    out: dict[str, list[Instrument]] = {}
    for inst in st.world.market.universe.all():
        if inst.sec_type == sec_type:
            out.setdefault(inst.symbol, []).append(inst)
    return out


def _symbols(request: Request, example: str) -> list[str] | JSONResponse:
    """The request's comma-separated ``symbols``, or IBKR's 400 when there are none."""
    text = request.query_params.get("symbols", "")
    symbols = [s.strip() for s in text.split(",") if s.strip()]
    if not symbols:
        return bad_request(f"symbols is required, e.g. {request.url.path}?symbols={example}")
    return symbols


async def trsrv_stocks(request: Request) -> JSONResponse:
    """``GET /trsrv/stocks?symbols=AAPL,IBKR``: stocks (ETFs included, IBKR's STK) by upper-case
    symbol, as many symbols as the request names; an unknown symbol maps to an empty list."""
    st = web_state(request)
    symbols = _symbols(request, "AAPL,IBKR")
    if isinstance(symbols, JSONResponse):
        return symbols
    stocks = _by_symbol(st, "STK")
    out: dict[str, list[dict[str, Any]]] = {}
    for symbol in symbols:
        out[symbol] = [
            {
                "name": inst.name.upper(),
                "chineseName": "",
                "assetClass": "STK",
                "contracts": [
                    {
                        "conid": inst.conid,
                        "exchange": inst.primary_exchange,
                        "isUS": inst.currency == "USD",
                    }
                ],
            }
            for inst in stocks.get(symbol, [])
        ]
    return ok(out)


def front_month_ltd(today: date) -> date:
    """The last trading day of NYMEX crude's (CL) front month on ``today``: trading ends 3
    business days before the 25th of the month before the contract month, 4 when the 25th is
    not a business day (CME, "Light Sweet Crude Oil Futures - Contract Specs"); business days
    are weekdays here (exchange holidays are not modelled)."""
    year, month = today.year, today.month
    while True:
        the_25th = date(year, month, 25)
        back = 3 if the_25th.weekday() < 5 else 4
        ltd = the_25th
        while back:
            ltd -= timedelta(days=1)
            back -= ltd.weekday() < 5
        if ltd >= today:
            return ltd
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


async def trsrv_futures(request: Request) -> JSONResponse:
    """``GET /trsrv/futures?symbols=CL[&exchange=NYMEX]``: the non-expired futures of each
    symbol (IBKR's ``{"ES": [{symbol, conid, underlyingConid, expirationDate, ltd,
    shortFuturesCutOff, longFuturesCutOff}]}``, dates ``YYYYMMDD`` integers). The simulated
    universe lists one contract per future, its continuous front month, dated with the front
    month's last trading day (:func:`front_month_ltd`); no underlying index is listed
    (``underlyingConid`` 0). An unknown symbol maps to an empty list (IBKR's answer unknown)."""
    st = web_state(request)
    symbols = _symbols(request, "ES,MES")
    if isinstance(symbols, JSONResponse):
        return symbols
    wanted = request.query_params.get("exchange", "").strip().upper()
    futures = _by_symbol(st, "FUT")
    ltd = int(f"{front_month_ltd(st.world.now().astimezone(NEW_YORK).date()):%Y%m%d}")
    out: dict[str, list[dict[str, Any]]] = {}
    for symbol in symbols:
        out[symbol] = [
            {
                "symbol": inst.symbol,
                "conid": inst.conid,
                "underlyingConid": 0,
                "expirationDate": ltd,
                "ltd": ltd,
                "shortFuturesCutOff": ltd,
                "longFuturesCutOff": ltd,
            }
            for inst in futures.get(symbol.upper(), [])
            if not wanted or inst.primary_exchange == wanted
        ]
    return ok(out)


ROUTES = [
    Route("/iserver/secdef/search", secdef_search, methods=["GET", "POST"]),
    Route("/iserver/contract/{conid}/info", contract_info, methods=["GET"]),
    Route("/trsrv/stocks", trsrv_stocks, methods=["GET"]),
    Route("/trsrv/futures", trsrv_futures, methods=["GET"]),
]

__all__ = ["ROUTES", "instrument", "month_code"]
