"""An IBKR order object as the paper exchange's order, and the reply questions it meets.

**Reply questions** (webapi.md, "Orders"): before an order reaches the exchange the gateway may
ask, one question at a time (see :mod:`ibkr_sim.webapi.routes_orders` for the flow). Asked here,
from the realism profile:

- ``o354`` no market data: the account has no real-time subscription for the contract;
- ``o163`` price cap: a limit price more than :data:`PRICE_CAP_PERCENT` away from the last price
  (asked only where the profile models TWS's precautions, as it does o383 / o451);
- ``o383`` size above the profile's Size Limit, ``o451`` value above its Total Value Limit.

Questions suppressed through ``/iserver/questions/suppress`` are not asked.

**Currency conversion** (webapi.md, "FX"): ``isCcyConv: true`` marks an order on an IDEALPRO
pair (secType CASH) as a conversion, which IB books as cash in the two currencies, never as a
virtual FX position - as the paper exchange books every FX fill. Its size is ``quantity`` in the
base currency (EUR of EUR.USD), or ``fxQty``, the cash to convert in the quote currency (USD of
EUR.USD; IBKR's ``totalCashSize`` / ``cashCcy``), turned into a base quantity at the limit price,
else at the ask for a buy and the bid for a sell now, to 2 decimals.

**Brackets** (webapi.md, "Brackets"): the children of a bracket name their parent by
``parentId``, the parent's ``cOID`` (:func:`parent_ref`); the routes place them (see
:mod:`ibkr_sim.webapi.routes_orders`). OCA groups of independent orders (``isSingleGroup``) are not
simulated: such an order is refused.

**Errors**: a malformed order (missing or bad fields, an unsupported type or time in force,
``isCcyConv`` on anything but a currency pair, ``fxQty`` without it or with ``quantity``) is a
``ValueError`` naming what is wrong, a conid the gateway does not know a ``LookupError`` (both
answered 400 by the routes).
"""

from __future__ import annotations

import math
from typing import Any

from starlette.responses import JSONResponse

from ibkr_sim.exchange import OrderRequest, order_problem
from ibkr_sim.gateway.precautions import precaution_breaches
from ibkr_sim.universe import Instrument
from ibkr_sim.webapi.routes_contracts import instrument
from ibkr_sim.webapi.state import WebApiState

#: TWS precaution "Percentage" price cap for limit orders, in percent of the last price
#: (UNCERTAIN: IBKR's default depends on the preset; ours)
PRICE_CAP_PERCENT = 3.0
#: IBKR orderType -> the exchange's
ORDER_TYPES = {"MKT": "MKT", "LMT": "LMT", "STP": "STP", "STOP_LIMIT": "STP LMT"}
TIFS = ("DAY", "GTC")


def _number(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{name} {value!r} must be a number")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name} {value!r} must be a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} {value!r} must be a finite number")
    return number


def parse_order(st: WebApiState, body: dict[str, Any]) -> tuple[OrderRequest, Instrument]:
    """The exchange's order and its contract from an IBKR order object; ``ValueError`` naming
    what is missing or wrong (answered 400), ``LookupError`` for an unknown conid (400)."""
    needed = ("conid", "orderType", "side", "tif", "fxQty" if "fxQty" in body else "quantity")
    missing = [f for f in needed if f not in body]
    if missing and not (missing == ["conid"] and "conidex" in body):
        raise ValueError(f"order is missing {', '.join(missing)} (IBKR requires all five)")
    raw_conid = body.get("conid", str(body.get("conidex", "")).partition("@")[0])
    inst = instrument(st, raw_conid)
    if isinstance(inst, JSONResponse):
        raise LookupError(f"Invalid conid: {raw_conid!r} is not a contract id the gateway knows")
    order_type = ORDER_TYPES.get(str(body["orderType"]).upper())
    if order_type is None:
        raise ValueError(
            f"orderType {body['orderType']!r}: the simulated gateway serves "
            f"{', '.join(ORDER_TYPES)}"
        )
    tif = str(body["tif"]).upper()
    if tif not in TIFS:
        raise ValueError(f"tif {body['tif']!r}: the simulated gateway serves DAY and GTC")
    price, aux = _number(body, "price"), _number(body, "auxPrice")
    limit = price if order_type in ("LMT", "STP LMT") else None
    quantity = _quantity(st, body, inst, limit)
    stop = price if order_type == "STP" else aux if order_type == "STP LMT" else None
    outside = body.get("outsideRTH", body.get("outsideRth", False))
    req = OrderRequest(
        conid=inst.conid,
        action=str(body["side"]).upper(),
        quantity=quantity if quantity is not None else 0.0,
        order_type=order_type,
        limit_price=limit,
        stop_price=stop,
        tif=tif,
        order_ref=str(body.get("cOID", "") or ""),
        outside_rth=bool(outside),
    )
    problem = order_problem(req)
    if problem:
        raise ValueError(problem)
    for name, value in (("price", price), ("auxPrice", aux)):
        needed = (name == "price" and order_type in ("LMT", "STP LMT", "STP")) or (
            name == "auxPrice" and order_type == "STP LMT"
        )
        if needed and value is None:
            raise ValueError(f"a {body['orderType']} order needs {name}")
    return req, inst


def parent_ref(body: dict[str, Any]) -> str | None:
    """The ``cOID`` a bracket child names its parent by (``parentId``), None for any other
    order; ``ValueError`` for an empty or non-text one, or for ``isSingleGroup`` (OCA groups of
    independent orders are not simulated)."""
    if body.get("isSingleGroup"):
        raise ValueError(
            "isSingleGroup: OCA groups are not simulated; a bracket's children name their "
            "parent by parentId"
        )
    raw = body.get("parentId")
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int) or str(raw) == "":
        raise ValueError(f"parentId {raw!r} must be the parent order's cOID (a non-empty string)")
    return str(raw)


def _quantity(
    st: WebApiState, body: dict[str, Any], inst: Instrument, limit: float | None
) -> float | None:
    """The order's quantity in the instrument's units: ``quantity``, or for a currency
    conversion ``fxQty`` (quote-currency cash) at its price (see the module docstring)."""
    conversion = body.get("isCcyConv", False)
    if not isinstance(conversion, bool):
        raise ValueError(f"isCcyConv {conversion!r} must be true or false")
    if conversion and inst.sec_type != "CASH":
        raise ValueError(
            f"isCcyConv is for currency pairs (secType CASH); conid {inst.conid} is "
            f"{inst.symbol} ({inst.sec_type})"
        )
    cash = _number(body, "fxQty")
    if cash is None:
        return _number(body, "quantity")
    if not conversion:
        raise ValueError("fxQty is the cash of a currency conversion: send it with isCcyConv true")
    if "quantity" in body:
        raise ValueError("a conversion is sized by quantity or by fxQty, not both")
    if cash <= 0:
        raise ValueError(f"fxQty {cash:g} must be positive")
    quote = st.world.market.snapshot(inst.conid, st.world.now())
    side = str(body.get("side", "")).upper()
    price = limit or (quote.ask if side == "BUY" else quote.bid)
    return round(cash / price, 2)


def _describe(req: OrderRequest, inst: Instrument) -> str:
    price = req.limit_price or req.stop_price
    tail = f" {req.order_type} {price:.2f}" if price is not None else ""
    return f'"{req.action} {req.quantity:.10g} {inst.symbol}{tail}"'


def questions(st: WebApiState, account: str, req: OrderRequest, inst: Instrument) -> list:
    """The reply questions ``req`` meets, as (message id, text), suppressed ones left out (see
    the module docstring)."""
    profile = st.world.profile
    asked: list[tuple[str, str]] = []
    if not profile.has_live_data(account, inst.sec_type):
        asked.append(
            (
                "o354",
                "You are submitting an order without market data. We strongly recommend against "
                "this as it may result in erroneous and unexpected trades. Are you sure you want "
                "to submit this order?",
            )
        )
    precautions = profile.max_order_size is not None or profile.max_order_value is not None
    quote = st.world.market.snapshot(inst.conid, st.world.now())
    described = _describe(req, inst)
    if precautions and req.limit_price is not None and quote.last > 0:
        away = abs(req.limit_price / quote.last - 1) * 100
        if away > PRICE_CAP_PERCENT:
            asked.append(
                (
                    "o163",
                    f"The following order {described} price exceeds the Percentage constraint "
                    f"of {PRICE_CAP_PERCENT:g}%. Are you sure you want to submit this order?",
                )
            )

    def market_price() -> float:
        return quote.ask if req.action == "BUY" else quote.bid

    breaches = precaution_breaches(profile, req, inst, described, market_price)
    for kind, mid in (("size", "o383"), ("value", "o451")):
        if kind in breaches:
            asked.append((mid, f"{breaches[kind]} Are you sure you want to submit this order?"))
    return [(mid, text) for mid, text in asked if mid not in st.suppressed]


__all__ = ["ORDER_TYPES", "PRICE_CAP_PERCENT", "TIFS", "parent_ref", "parse_order", "questions"]
