"""Market scanners: ``GET /iserver/scanner/params`` and ``POST /iserver/scanner/run``, the same
scanner codes, locations, filters and rankings as the TWS gateway's (``SimMarket.scan``).

A run answers at most 50 contracts, best first, each with its rank as ``server_id`` and the
ranked value as ``scan_data`` (IBKR's column for the scan, e.g. ``"221.521K"`` trades); the
first contract names the column. A bad code, location or filter answers 400 naming it.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ibkr_sim.market.scanner import FILTERS, LOCATIONS, ScanResult
from ibkr_sim.webapi.state import bad_request, json_body, ok, web_state
from ibkr_spec.errors import IBError

#: the simulated scanners scan US stocks only
INSTRUMENT = "STK"
#: each scan's column: (IBKR's column name, the row's value as IBKR shows it)
COLUMNS = {
    "TOP_PERC_GAIN": "Chg%",
    "TOP_PERC_LOSE": "Chg%",
    "MOST_ACTIVE": "Volume",
    "HOT_BY_VOLUME": "Volume",
}


def _display(code: str) -> str:
    """``TOP_PERC_GAIN`` -> ``Top Perc Gain`` (as the TWS gateway's parameters name them)."""
    return code.replace("_", " ").title()


def _volume(shares: float) -> str:
    """``221521`` -> ``221.521K`` (IBKR's compact volume)."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if shares >= size:
            return f"{shares / size:.3f}{unit}"
    return f"{shares:.0f}"


def _scan_data(code: str, row: ScanResult) -> str:
    if COLUMNS.get(code) == "Chg%":
        return f"{row.change_pct:+.2f}%"
    return _volume(row.volume)


async def scanner_params(request: Request) -> JSONResponse:
    """``GET /iserver/scanner/params``: the scan types, instrument, locations and filters."""
    codes = web_state(request).world.market.SCANNER_CODES
    return ok(
        {
            "scan_type_list": [
                {"code": c, "display_name": _display(c), "instruments": [INSTRUMENT]} for c in codes
            ],
            "instrument_list": [
                {"type": INSTRUMENT, "display_name": "US Stocks", "filters": list(FILTERS)}
            ],
            "location_tree": [
                {
                    "type": INSTRUMENT,
                    "display_name": "US Stocks",
                    "locations": [
                        {"type": loc, "display_name": loc, "locations": []} for loc in LOCATIONS
                    ],
                }
            ],
            "filter_list": [
                {"code": f, "group": f, "display_name": f, "type": "non-range"} for f in FILTERS
            ],
        }
    )


def _filters(raw: object) -> dict[str, float] | str:
    """The run's ``filter`` list as ``SimMarket.scan`` keywords, or what is wrong with it."""
    if raw is None:
        return {}
    if not isinstance(raw, list):
        return "filter must be a list of {code, value}"
    out: dict[str, float] = {}
    for item in raw:
        code = item.get("code") if isinstance(item, dict) else None
        if code not in FILTERS:
            return f"filter code {code!r} is not one of {', '.join(FILTERS)}"
        try:
            out[FILTERS[code]] = float(item.get("value"))
        except (TypeError, ValueError):
            return f"filter {code}: value {item.get('value')!r} must be a number"
    return out


async def scanner_run(request: Request) -> JSONResponse:
    """``POST /iserver/scanner/run {"instrument","location","type","filter"}``: the scan's
    contracts, best first (at most 50)."""
    st = web_state(request)
    body = await json_body(request)
    if body is None:
        return bad_request("the scanner body must be a JSON object with instrument and type")
    instrument = str(body.get("instrument") or "")
    if instrument != INSTRUMENT:
        return bad_request(f"instrument {instrument!r}: the simulated scanners scan {INSTRUMENT}")
    code = str(body.get("type") or "")
    kwargs = _filters(body.get("filter"))
    if isinstance(kwargs, str):
        return bad_request(kwargs)
    market = st.world.market
    try:
        rows = market.scan(
            code, st.world.now(), location=str(body.get("location") or "STK.US.MAJOR"), **kwargs
        )
    except IBError as exc:
        return bad_request(exc.message)
    contracts: list[dict[str, Any]] = []
    for row in rows:
        inst = market.universe.by_conid(row.conid)
        contracts.append(
            {
                "server_id": str(row.rank),
                "symbol": inst.symbol,
                "con_id": inst.conid,
                "conidex": str(inst.conid),
                "company_name": inst.name.upper(),
                "contract_description_1": inst.symbol,
                "listing_exchange": inst.primary_exchange or inst.exchange,
                "sec_type": inst.sec_type,
                "scan_data": _scan_data(code, row),
                "available_chart_periods": "#R|1",
            }
        )
    column = COLUMNS.get(code, "")
    if contracts:
        contracts[0]["column_name"] = column
    return ok({"contracts": contracts, "scan_data_column_name": column})


ROUTES = [
    Route("/iserver/scanner/params", scanner_params, methods=["GET"]),
    Route("/iserver/scanner/run", scanner_run, methods=["POST"]),
]

__all__ = ["ROUTES"]
