"""Foreign exchange (IBKR's spec, "Trading Contracts"; webapi.md, "FX"):

- ``GET /iserver/exchangerate?source=USD&target=EUR``: ``{"rate": r}``, units of ``target`` per
  unit of ``source`` ("target divided by source"), at the pairs' last prices now (the rates the
  paper accounts are valued at, :func:`ibkr_sim.exchange.accounts.fx_rates`);
- ``GET /iserver/currency/pairs?currency=USD``: ``{"USD": [{"symbol": "EUR.USD", "conid",
  "ccyPair": "EUR"}, ...]}``, the IDEALPRO pairs the currency is either side of.

A conversion itself is an order on a pair (``isCcyConv``, :mod:`.order_form`).

**Errors**: a missing or malformed currency, or one no listed pair converts: 400.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ibkr_sim.exchange.accounts import fx_rates
from ibkr_sim.webapi.state import bad_request, ok, web_state
from ibkr_spec.errors import IBError


def _currency(request: Request, name: str) -> str | None:
    text = request.query_params.get(name, "").strip().upper()
    return text if len(text) == 3 and text.isalpha() else None


async def exchange_rate(request: Request) -> JSONResponse:
    """``GET /iserver/exchangerate?source=&target=``."""
    st = web_state(request)
    source, target = _currency(request, "source"), _currency(request, "target")
    if source is None or target is None:
        return bad_request(
            "source and target must be ISO currency codes, e.g. "
            "/iserver/exchangerate?source=USD&target=EUR"
        )
    try:
        rate = fx_rates(st.world.market, st.world.now(), target)(source)
    except IBError as exc:
        return bad_request(f"no exchange rate {source}->{target}: {exc.message}")
    return ok({"rate": rate})


async def currency_pairs(request: Request) -> JSONResponse:
    """``GET /iserver/currency/pairs?currency=``."""
    st = web_state(request)
    currency = _currency(request, "currency")
    if currency is None:
        return bad_request(
            "currency must be an ISO code, e.g. /iserver/currency/pairs?currency=USD"
        )
    pairs = [
        {
            "symbol": inst.local_symbol,
            "conid": inst.conid,
            "ccyPair": inst.currency if inst.symbol == currency else inst.symbol,
        }
        for inst in st.world.market.universe.others
        if inst.sec_type == "CASH" and currency in (inst.symbol, inst.currency)
    ]
    return ok({currency: pairs})


ROUTES = [
    Route("/iserver/exchangerate", exchange_rate, methods=["GET"]),
    Route("/iserver/currency/pairs", currency_pairs, methods=["GET"]),
]

__all__ = ["ROUTES"]
