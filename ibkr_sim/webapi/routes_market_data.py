"""Market data: ``/iserver/marketdata/snapshot`` and ``/iserver/marketdata/history``.

**Snapshot** (webapi.md, "Market data snapshot"): the first request for a conid opens its stream
and answers only ``conid`` / ``conidEx`` (the pre-flight); later requests carry the asked fields,
every value a string. Field 6509 says what is served, from the realism profile's entitlements:
``R`` real time, ``D`` delayed (quotes 15 minutes old, as the TWS gateway serves them), ``Z`` /
``Y`` frozen / frozen delayed while the market is closed (field 31 then carries the ``C`` prefix
of a closing price), ``N`` not subscribed (no prices); then ``p`` (consolidated) and ``B``.
At most 100 conids and 50 fields per request.

**History**: IBKR's ``bar`` / ``period`` grammar mapped onto the TWS gateway's history (the same
bars, gaps and HMDS errors); at most 1000 points, ``t`` in epoch ms, ``v`` in hundreds of shares
(``volumeFactor`` 100), ``priceFactor`` for the ``high`` / ``low`` summaries.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast
from zoneinfo import ZoneInfo

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ibkr_sim.gateway.market_data import DELAY, history_bars
from ibkr_sim.universe import Instrument
from ibkr_sim.webapi.routes_contracts import instrument, instruments_of
from ibkr_sim.webapi.state import WebApiState, bad_request, error, ok, web_state
from ibkr_spec.errors import IBError

if TYPE_CHECKING:
    from ibkr_sim.gateway.session import Session

NEW_YORK = ZoneInfo("America/New_York")
MAX_CONIDS = 100
MAX_FIELDS = 50
MAX_POINTS = 1000
SERVER_ID = "q0"
VOLUME_FACTOR = 100
#: IBKR ``bar`` -> the TWS bar size
BARS = {
    **{f"{n}min": ("1 min" if n == 1 else f"{n} mins") for n in (1, 2, 3, 5, 10, 15, 30)},
    **{f"{n}h": ("1 hour" if n == 1 else f"{n} hours") for n in (1, 2, 3, 4, 8)},
    "1d": "1 day",
    "1w": "1 week",
    "1m": "1 month",
}
#: IBKR ``bar`` -> ``barLength`` (seconds; a month counted as 30 days)
BAR_SECONDS = {
    **{f"{n}min": 60 * n for n in (1, 2, 3, 5, 10, 15, 30)},
    **{f"{n}h": 3600 * n for n in (1, 2, 3, 4, 8)},
    "1d": 86_400,
    "1w": 7 * 86_400,
    "1m": 30 * 86_400,
}
_PERIOD_RE = re.compile(r"^(\d+)(min|h|d|w|m|y)$")
#: IBKR ``period`` unit -> (largest count, TWS duration unit, seconds per unit or 0)
PERIOD_UNITS = {
    "min": (30, "S", 60),
    "h": (8, "S", 3600),
    "d": (1000, "D", 0),
    "w": (792, "W", 0),
    "m": (182, "M", 0),
    "y": (15, "Y", 0),
}
SOURCES = {"trades": "TRADES", "last": "TRADES", "midpoint": "MIDPOINT"}


# -- snapshot ----------------------------------------------------------------------------------
def availability(st: WebApiState, inst: Instrument, now: datetime) -> str:
    """Field 6509 for ``inst`` now (see the module docstring)."""
    profile = st.world.profile
    hours = st.world.market.trading_hours(inst.conid, now.astimezone(NEW_YORK).date())
    closed = not any(start <= now < end for start, end in hours)
    if profile.has_live_data(st.accounts()[0], inst.sec_type):
        first = "Z" if closed else "R"
    elif profile.delayed_data:
        first = "Y" if closed else "D"
    else:
        first = "N"
    return f"{first}pB"


def _num(value: float, tick: float) -> str:
    """A price as IBKR's snapshot writes it: to the instrument's price increment (two decimals
    for a stock's cent, five for EUR.USD's half pip)."""
    decimals = max(2, -Decimal(str(tick)).normalize().as_tuple().exponent)
    return f"{value:.{decimals}f}"


def _size(value: float) -> str:
    return f"{value:,.0f}"


def snapshot_fields(st: WebApiState, inst: Instrument, now: datetime) -> dict[str, str]:
    """Every field id the simulator serves for ``inst`` now, as IBKR formats them."""
    served = availability(st, inst, now)
    fields: dict[str, str] = {
        "55": inst.symbol,
        "6004": inst.primary_exchange or inst.exchange,
        "6008": str(inst.conid),
        "6070": inst.sec_type,
        "6119": SERVER_ID,
        "6509": served,
        "7051": inst.name,
        "7219": inst.local_symbol,
        "7220": inst.local_symbol,
        "7221": inst.primary_exchange or inst.exchange,
        "7280": inst.industry,
        "7281": inst.sector,
        "7184": "1",
        "7768": "1",
    }
    if served[0] == "N":
        return fields
    at = now - DELAY if served[0] in "DY" else now
    q = st.world.market.snapshot(inst.conid, at)
    closed = served[0] in "ZY"
    change = q.last - q.prev_close
    mark = q.ask if q.ask < q.last else q.bid if q.bid > q.last else q.last
    fields.update(
        {
            "31": ("C" if closed else "") + _num(q.last, inst.min_tick),
            "84": _num(q.bid, inst.min_tick),
            "86": _num(q.ask, inst.min_tick),
            "88": _size(q.bid_size),
            "85": _size(q.ask_size),
            "7059": _size(q.last_size),
            "87": _size(q.volume),
            "7762": f"{q.volume:.0f}",
            "70": _num(q.high, inst.min_tick),
            "71": _num(q.low, inst.min_tick),
            "7295": _num(q.open, inst.min_tick),
            "7741": _num(q.prev_close, inst.min_tick),
            "82": ("+" if change > 0 else "") + _num(change, inst.min_tick),
            "83": f"{100 * change / q.prev_close:.2f}" if q.prev_close else "0.00",
            "7635": _num(mark, inst.min_tick),
            "7282": _size(inst.adv),
        }
    )
    return fields


async def snapshot(request: Request) -> JSONResponse:
    """``GET /iserver/marketdata/snapshot?conids=&fields=`` (see the module docstring)."""
    st = web_state(request)
    instruments = instruments_of(st, request, MAX_CONIDS, "?conids=265598&fields=31,84,86")
    if isinstance(instruments, JSONResponse):
        return instruments
    fields = [f.strip() for f in request.query_params.get("fields", "").split(",") if f.strip()]
    if len(fields) > MAX_FIELDS:
        return bad_request(f"{len(fields)} fields asked; a snapshot takes at most {MAX_FIELDS}")
    now = st.world.now()
    out: list[dict[str, Any]] = []
    for inst in instruments:
        row: dict[str, Any] = {"conid": inst.conid, "conidEx": str(inst.conid)}
        with st.lock:
            preflight = inst.conid not in st.streams
            st.streams.add(inst.conid)
        if not preflight:
            values = snapshot_fields(st, inst, now)
            row.update({"_updated": int(now.timestamp() * 1000), "server_id": SERVER_ID})
            row.update({f: values[f] for f in fields if f in values})
            row["6119"], row["6509"] = values["6119"], values["6509"]
        out.append(row)
    return ok(out)


# -- history -----------------------------------------------------------------------------------
def tws_duration(period: str) -> str:
    """IBKR's ``period`` (``30min``, ``8h``, ``5d``, ``2w``, ``6m``, ``1y``) as a TWS duration;
    ``ValueError`` naming the grammar for anything else."""
    m = _PERIOD_RE.match(period)
    if m is None or m.group(2) not in PERIOD_UNITS or int(m.group(1)) < 1:
        raise ValueError(
            f"period {period!r} must be {{1-30}}min, {{1-8}}h, {{1-1000}}d, {{1-792}}w, "
            "{1-182}m or {1-15}y"
        )
    count, unit = int(m.group(1)), m.group(2)
    top, tws_unit, seconds = PERIOD_UNITS[unit]
    if count > top:
        raise ValueError(f"period {period!r}: at most {top}{unit}")
    return f"{count * seconds} S" if seconds else f"{count} {tws_unit}"


def _start_time(text: str | None, now: datetime) -> datetime:
    if not text:
        return now
    try:
        return datetime.strptime(text, "%Y%m%d-%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"startTime {text!r} must be YYYYMMDD-hh:mm:ss (UTC)") from None


def _history(st: WebApiState, request: Request) -> JSONResponse:
    q = request.query_params
    inst = instrument(st, q.get("conid", ""))
    if isinstance(inst, JSONResponse):
        return inst
    bar = q.get("bar", "")
    if bar not in BARS:
        return bad_request(f"bar {bar!r} must be one of {', '.join(BARS)}")
    period = q.get("period", "1w")
    source = q.get("source", "trades").lower()
    if source not in SOURCES:
        return bad_request(f"source {q.get('source')!r} must be Trades, Last or Midpoint")
    try:
        duration = tws_duration(period)
        end = _start_time(q.get("startTime"), st.world.now())
    except ValueError as exc:
        return bad_request(str(exc))
    try:
        # the TWS gateway's helper reads only ``.state`` (the world) of the session it is given
        _, frame, _ = history_bars(
            cast("Session", st), inst, end, duration, BARS[bar], SOURCES[source]
        )
    except IBError as exc:
        return error(exc.message, 500)
    frame = frame.iloc[-MAX_POINTS:]
    factor = round(1 / inst.min_tick) if inst.min_tick < 1 else 1
    data = [
        {
            "o": float(r.open),
            "c": float(r.close),
            "h": float(r.high),
            "l": float(r.low),
            "v": max(float(r.volume), 0.0) / VOLUME_FACTOR,
            "t": int(ts.timestamp() * 1000),
        }
        for ts, r in zip(frame.index, frame.itertuples(), strict=True)
    ]
    hi = max(frame["high"]) if len(frame) else 0.0
    lo = min(frame["low"]) if len(frame) else 0.0
    first = frame.index[0] if len(frame) else end
    minutes = int((end - first).total_seconds() // 60)
    return ok(
        {
            "serverId": "20477",
            "symbol": inst.symbol,
            "text": inst.name,
            "priceFactor": factor,
            "startTime": first.astimezone(UTC).strftime("%Y%m%d-%H:%M:%S"),
            "high": f"{round(hi * factor)}/{max(frame['volume'].sum(), 0) / VOLUME_FACTOR:.2f}"
            f"/{minutes}",
            "low": f"{round(lo * factor)}/0/0",
            "timePeriod": period,
            "barLength": BAR_SECONDS[bar],
            "mdAvailability": "S",
            "mktDataDelay": 0,
            "outsideRth": q.get("outsideRth", "false").lower() == "true",
            "tradingDayDuration": 390,
            "volumeFactor": VOLUME_FACTOR,
            "priceDisplayRule": 1,
            "priceDisplayValue": str(len(f"{inst.min_tick:g}".partition(".")[2])),
            "negativeCapable": False,
            "messageVersion": 2,
            "direction": -1,
            "data": data,
            "points": len(data),
            "travelTime": 1,
        }
    )


async def history(request: Request) -> JSONResponse:
    """``GET /iserver/marketdata/history?conid=&bar=&period=&startTime=&source=``: at most 5 at
    once (429 beyond), run off the event loop so they can overlap."""
    st = web_state(request)
    refused = st.limits.enter_history()
    if refused:
        return error(refused, 429)
    try:
        return await run_in_threadpool(_history, st, request)
    finally:
        st.limits.leave_history()


ROUTES = [
    Route("/iserver/marketdata/snapshot", snapshot, methods=["GET"]),
    Route("/iserver/marketdata/history", history, methods=["GET"]),
]

__all__ = ["ROUTES", "availability", "snapshot_fields", "tws_duration"]
