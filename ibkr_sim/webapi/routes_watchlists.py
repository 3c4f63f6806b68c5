"""Watchlists (IBKR's spec, "Trading Watchlists"; webapi.md, "Watchlists"), kept by the paper
exchange (:mod:`ibkr_sim.exchange.watchlists`, with IB's read-only "Holdings" list):

- ``GET /iserver/watchlists[?SC=USER_WATCHLIST]``: ``{"data": {"user_lists": [...],
  "system_lists": [...]}, "action": "content", "MID": n}``; IB's own lists (``system_lists``,
  IBKR's documentation) only without ``SC=USER_WATCHLIST``;
- ``POST /iserver/watchlist`` ``{"id": "1234", "name", "rows": [{"C": "8314"}, {"H": ""}]}``:
  create, or replace the list with that id; answers the list with ``instruments`` always empty
  (the spec: read it back through GET); ``H`` rows (blank separators) are not kept;
- ``GET /iserver/watchlist?id=``: the list with its instruments;
- ``DELETE /iserver/watchlist?id=``: ``{"data": {"deleted": id}, "action": "context", "MID"}``.

``MID`` counts the watchlist requests of this gateway (IBKR: visits during the session).
``modified`` and ``hash`` are the list's last change in epoch milliseconds.

**Errors** (400 ``{"error", "statusCode"}``): a missing id, name or rows, an id that is not
digits, duplicate or unknown conids (nothing saved), IB's read-only list, an unknown id.
"""

from __future__ import annotations

import itertools
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ibkr_sim.exchange.watchlists import WatchlistInfo
from ibkr_sim.webapi.state import WebApiState, bad_request, json_body, ok, web_state
from ibkr_spec.errors import IBError

USER_ONLY = "USER_WATCHLIST"


def _mid(request: Request) -> str:
    """The next ``MID`` of this gateway (a counter kept on the app)."""
    app_state = request.app.state
    if not hasattr(app_state, "watchlist_mid"):
        app_state.watchlist_mid = itertools.count(1)
    return str(next(app_state.watchlist_mid))


def _ms(w: WatchlistInfo) -> int:
    return round(w.modified.timestamp() * 1000)


def _entry(w: WatchlistInfo) -> dict[str, Any]:
    return {
        "id": w.watchlist_id,
        "name": w.name,
        "modified": _ms(w),
        "read_only": w.read_only,
        "is_open": False,
        "type": "watchlist",
    }


def _instrument(st: WebApiState, conid: int) -> dict[str, Any]:
    inst = st.world.market.universe.by_conid(conid)
    kind = inst.sec_type
    return {
        "C": str(conid),
        "conid": conid,
        "ticker": inst.symbol,
        "name": inst.name.upper(),
        "fullName": inst.local_symbol,
        "assetClass": kind,
        "ST": kind,
        "chineseName": "",
    }


def _listed(st: WebApiState, w: WatchlistInfo, with_rows: bool) -> dict[str, Any]:
    return {
        "id": w.watchlist_id,
        "hash": str(_ms(w)),
        "name": w.name,
        "readOnly": w.read_only,
        "instruments": [_instrument(st, c) for c in w.conids] if with_rows else [],
    }


async def all_watchlists(request: Request) -> JSONResponse:
    """``GET /iserver/watchlists[?SC=USER_WATCHLIST]``."""
    st = web_state(request)
    lists = st.world.exchange.watchlists.watchlists()
    data: dict[str, Any] = {
        "scanners_only": False,
        "show_scanners": False,
        "bulk_delete": False,
        "user_lists": [_entry(w) for w in lists if not w.read_only],
    }
    if request.query_params.get("SC") != USER_ONLY:
        data["system_lists"] = [_entry(w) for w in lists if w.read_only]
    return ok({"data": data, "action": "content", "MID": _mid(request)})


def _rows(body: dict[str, Any]) -> list[int]:
    """The conids of the body's ``rows`` (``C`` rows; ``H`` separators skipped)."""
    rows = body.get("rows")
    if not isinstance(rows, list):
        raise ValueError('rows must be a list like [{"C": "8314"}]')
    conids: list[int] = []
    for row in rows:
        if not isinstance(row, dict) or not ("C" in row or "H" in row):
            raise ValueError(f'row {row!r} must be {{"C": conid}} or {{"H": ""}}')
        if "C" not in row:
            continue
        try:
            conids.append(int(str(row["C"])))
        except ValueError:
            raise ValueError(f"row conid {row['C']!r} is not a conid") from None
    if len(set(conids)) != len(conids):
        raise ValueError("rows must be unique: a conid appears twice")
    return conids


async def save_watchlist(request: Request) -> JSONResponse:
    """``POST /iserver/watchlist``: create or replace a list."""
    st = web_state(request)
    body = await json_body(request)
    if body is None or not all(k in body for k in ("id", "name", "rows")):
        return bad_request('the body must be {"id": "1234", "name": "...", "rows": [...]}')
    try:
        conids = _rows(body)
        saved = st.world.exchange.watchlists.save(str(body["name"]), conids, str(body["id"]))
    except ValueError as exc:
        return bad_request(str(exc))
    except IBError as exc:
        return bad_request(exc.message)
    return ok(_listed(st, saved, with_rows=False))


def _wanted(request: Request) -> str | JSONResponse:
    wanted = request.query_params.get("id", "").strip()
    return wanted or bad_request("id is required, e.g. /iserver/watchlist?id=1234")


async def one_watchlist(request: Request) -> JSONResponse:
    """``GET /iserver/watchlist?id=``."""
    st = web_state(request)
    wanted = _wanted(request)
    if isinstance(wanted, JSONResponse):
        return wanted
    try:
        found = st.world.exchange.watchlists.watchlist(wanted)
    except IBError as exc:
        return bad_request(exc.message)
    return ok(_listed(st, found, with_rows=True))


async def delete_watchlist(request: Request) -> JSONResponse:
    """``DELETE /iserver/watchlist?id=``."""
    st = web_state(request)
    wanted = _wanted(request)
    if isinstance(wanted, JSONResponse):
        return wanted
    try:
        st.world.exchange.watchlists.delete(wanted)
    except IBError as exc:
        return bad_request(exc.message)
    return ok({"data": {"deleted": wanted}, "action": "context", "MID": _mid(request)})


ROUTES = [
    Route("/iserver/watchlists", all_watchlists, methods=["GET"]),
    Route("/iserver/watchlist", one_watchlist, methods=["GET"]),
    Route("/iserver/watchlist", save_watchlist, methods=["POST"]),
    Route("/iserver/watchlist", delete_watchlist, methods=["DELETE"]),
]

__all__ = ["ROUTES"]
