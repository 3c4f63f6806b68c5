"""Foreign-exchange tools: a conversion quote, and the preview of a conversion order.

``fx_quote`` is IB's exchange rate (Client Portal ``/iserver/exchangerate``; over TWS the
IDEALPRO pair's midpoint) and what an amount would become at it, before spread and commission.

A conversion is an order on the currency pair IB lists on IDEALPRO (EUR.USD, USD.JPY, ...; secType
CASH), sized in whole units of the pair's base currency: converting EUR into USD sells EUR.USD,
converting USD into EUR buys it. ``preview_fx_conversion`` works that order out and hands it to
``preview_order``, so it passes the order guard and IB's what-if like any other order and gets a
confirmation token; ``place_order`` sends it with that token and a reason, as for any order.
There is no second way for an order to reach IB.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import AfterValidator, Field

from ibkr_assets.broker import GuardedBroker
from ibkr_assets.broker.fx import listed_pair
from ibkr_assets.broker.models import Contract, FxRate
from mcp_server.context import add_tool, call_broker
from mcp_server.portfolio import AccountId, account_for
from mcp_server.trading import OrderRequest, Preview, preview_order

if TYPE_CHECKING:
    from mcp_server.app import IBKRServer

CATEGORY = "fx"

Currency = Annotated[
    str,
    Field(pattern=r"^[A-Za-z]{3}$", description="ISO 4217 currency code, e.g. USD, EUR, JPY"),
    AfterValidator(str.upper),
]
Amount = Annotated[
    float, Field(gt=0, allow_inf_nan=False, description="how much of from_currency to convert")
]


class FxQuote(FxRate):
    """IB's rate between two currencies and what an amount becomes at it."""

    amount: float = Field(description="in source")
    converted: float = Field(description="amount x rate, in target, before spread and commission")

    @classmethod
    def of(cls, rate: FxRate, amount: float) -> FxQuote:
        """The quote of ``amount`` at ``rate``."""
        return cls(**dict(rate), amount=amount, converted=amount * rate.rate)


class FxPreview(Preview):
    """A conversion order checked like any order: the quote it was sized from, the pair it
    trades, and the order and token ``place_order`` takes."""

    quote: FxQuote
    pair: Contract = Field(description="the IDEALPRO pair the order trades (secType CASH)")


def _check_pair(source: str, target: str) -> None:
    if source == target:
        raise ToolError(f"from_currency and to_currency are both {source}: nothing to convert")


def _pair(b: GuardedBroker, source: str, target: str) -> tuple[Contract, bool]:
    """IB's IDEALPRO pair between two currencies, and whether ``source`` is its base currency."""
    listed = listed_pair(b, source, target)
    if listed is None:
        raise ToolError(
            f"IB lists no IDEALPRO pair between {source} and {target} ({source}.{target} nor "
            f"{target}.{source}); convert through USD in two steps"
        )
    return listed


async def fx_quote(
    ctx: Context, from_currency: Currency, to_currency: Currency, amount: Amount = 1.0
) -> FxQuote:
    """IB's exchange rate from one currency to another and what ``amount`` would become.

    Examples:
        fx_quote(from_currency="USD", to_currency="EUR", amount=10000)
          -> {"rate": 0.9132, "converted": 9132.4, ...}
    """
    _check_pair(from_currency, to_currency)
    rate = await call_broker(ctx, lambda b: b.exchange_rate(from_currency, to_currency))
    return FxQuote.of(rate, amount)


async def preview_fx_conversion(
    ctx: Context,
    from_currency: Currency,
    to_currency: Currency,
    amount: Amount,
    account_id: AccountId = None,
) -> FxPreview:
    """Work out the market order on the IDEALPRO pair that converts ``amount`` of from_currency
    at IB's rate (rounded down to whole units of the pair's base currency; the spread and
    commission come on top), check it like preview_order (every limit of the order guard, IB's
    what-if) and get its confirmation token. Send it with place_order, passing the returned
    ``order`` unchanged, the token and a reason.

    Examples:
        preview_fx_conversion(from_currency="USD", to_currency="EUR", amount=10000)
          -> {"order": {"symbol": "12087792", "action": "BUY", "quantity": 9132, "sec_type":
              "CASH", ...}, "pair": {"symbol": "EUR", "currency": "USD", ...},
              "confirmation_token": ...}
    """
    _check_pair(from_currency, to_currency)

    def size(b: GuardedBroker) -> tuple[FxRate, Contract, OrderRequest]:
        rate = b.exchange_rate(from_currency, to_currency)
        pair, source_is_base = _pair(b, from_currency, to_currency)
        base_units = math.floor(amount if source_is_base else amount * rate.rate)
        if base_units < 1:
            raise ToolError(
                f"{amount:g} {from_currency} is less than one {pair.symbol}, the smallest "
                f"{pair.symbol}.{pair.currency} order"
            )
        request = OrderRequest(
            symbol=str(pair.conid),
            action="SELL" if source_is_base else "BUY",
            quantity=base_units,
            order_type="MKT",
            sec_type="CASH",
            account_id=account_for(ctx, account_id),
        )
        return rate, pair, request

    rate, pair, request = await call_broker(ctx, size)
    checked = await preview_order(ctx, request)
    return FxPreview(**dict(checked), quote=FxQuote.of(rate, amount), pair=pair)


def register(server: IBKRServer) -> None:
    """Add this category's tools (the conversion is sent with trading's place_order)."""
    add_tool(server, fx_quote, CATEGORY)
    add_tool(server, preview_fx_conversion, CATEGORY)
