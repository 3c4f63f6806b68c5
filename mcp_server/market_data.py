"""Market-data tools: snapshot quotes, historical bars, level-2 depth and news headlines.

Quotes are IB snapshots (bid/ask/last/volume and the previous close, IB tick 9); bars follow IB's
reqHistoricalData grammar: ``duration`` like "30 D", "6 M", "1 Y" and ``bar_size`` like "1 min",
"1 hour", "1 day"; ``what_to_show`` TRADES, MIDPOINT, BID or ASK. One request reaches back at most
as far as IB serves for its bar size (``ibkr_spec.historical.MAX_DURATION``: 1 D of 1-minute bars,
1 M of hourly bars, 7 Y of daily bars...), so an answer stays a few thousand bars.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from ibkr_assets.broker.models import Bar, Contract, NewsHeadline, OrderBook, Quote, WhatToShow
from ibkr_spec import historical  # IB's duration / bar-size rules, shared with the backends
from ibkr_spec.errors import SpecError
from mcp_server.context import add_tool, call_broker, read_market_data, resolve
from mcp_server.reference import SecTypeParam, Symbol

if TYPE_CHECKING:
    from mcp_server.app import IBKRServer

CATEGORY = "market_data"


class QuoteRow(BaseModel):
    """A snapshot with the derived mid, spread and best single price."""

    quote: Quote
    mid: float | None
    spread: float | None
    price: float | None = Field(description="last, else mid, else previous close")
    change_pct: float | None = Field(description="% change of price vs previous close")


class QuoteList(BaseModel):
    """Snapshot quotes, in the order asked."""

    quotes: list[QuoteRow]


class BarSeries(BaseModel):
    """Historical OHLCV bars of one instrument, oldest first."""

    contract: Contract
    duration: str
    bar_size: str
    what_to_show: str
    bars: list[Bar]


class Headlines(BaseModel):
    """Recent headlines for one instrument, newest first."""

    contract: Contract
    headlines: list[NewsHeadline]


def quote_row(q: Quote) -> QuoteRow:
    """A quote with its derived fields."""
    price = q.price
    change = (price / q.close - 1.0) * 100.0 if price and q.close else None
    return QuoteRow(quote=q, mid=q.mid, spread=q.spread, price=price, change_pct=change)


async def quotes(
    ctx: Context,
    symbols: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=32)]],
        Field(
            min_length=1,
            max_length=100,
            description='tickers, numeric conIds, or options written "AAPL 20261218 200 C"',
        ),
    ],
    sec_type: SecTypeParam = "STK",
) -> QuoteList:
    """Bulk snapshot quotes: bid, ask, last, volume, day range and previous close.

    Examples:
        quotes(symbols=["AAPL", "MSFT", "SPY"]) ; quotes(symbols=["EUR.USD"], sec_type="CASH")
        quotes(symbols=["AAPL 20261218 200 C"])  (an option: symbol, expiry, strike, C or P)
    """

    def run(b) -> QuoteList:
        contracts = [resolve(b, s, sec_type) for s in symbols]
        return QuoteList(quotes=[quote_row(q) for q in b.quotes(contracts)])

    return await read_market_data(ctx, run)


async def history(
    ctx: Context,
    symbol: Symbol,
    duration: Annotated[
        str,
        Field(
            pattern=r"^\d{1,6} [SDWMY]$",
            description='IB duration: "30 D", "6 M", "1 Y"; at most 1 D of 1 min bars, 1 W of '
            "5 mins, 1 M of 1 hour, 7 Y of 1 day",
        ),
    ] = "6 M",
    bar_size: Annotated[
        str, Field(max_length=10, description='IB bar size: "1 min", "1 hour", "1 day"')
    ] = "1 day",
    what_to_show: WhatToShow = "TRADES",
    sec_type: SecTypeParam = "STK",
) -> BarSeries:
    """Historical OHLCV bars (IB reqHistoricalData), oldest first. How far back one request
    reaches depends on the bar size, as at IB (1 D of 1 min bars, 1 M of 1 hour, 7 Y of 1 day).

    Examples:
        history(symbol="AAPL", duration="30 D", bar_size="1 day")
        history(symbol="SPY", duration="1 D", bar_size="5 mins")
    """
    try:
        historical.check_span(duration, bar_size)
    except SpecError as exc:
        raise ToolError(exc.message) from None

    def run(b) -> BarSeries:
        c = resolve(b, symbol, sec_type)
        bars = b.history(c, duration=duration, bar_size=bar_size, what_to_show=what_to_show)
        return BarSeries(
            contract=c, duration=duration, bar_size=bar_size, what_to_show=what_to_show, bars=bars
        )

    return await call_broker(ctx, run)


async def order_book(
    ctx: Context,
    symbol: Symbol,
    rows: Annotated[int, Field(ge=1, le=20, description="levels per side")] = 5,
) -> OrderBook:
    """Level-2 market depth: bids and asks, best first (IB reqMktDepth).

    Examples:
        order_book(symbol="AAPL", rows=5)
    """
    return await call_broker(ctx, lambda b: b.depth(resolve(b, symbol), rows=rows))


async def news(
    ctx: Context,
    symbol: Symbol,
    days: Annotated[int, Field(ge=1, le=90, description="look back this many days")] = 7,
    limit: Annotated[int, Field(ge=1, le=200)] = 20,
) -> Headlines:
    """Recent news headlines for a symbol, newest first (IB reqHistoricalNews).

    Examples:
        news(symbol="TSLA", days=3)
    """

    def run(b) -> Headlines:
        c = resolve(b, symbol)
        end = b.now()
        items = b.news(c, start=end - timedelta(days=days), end=end, limit=limit)
        return Headlines(contract=c, headlines=items)

    return await call_broker(ctx, run)


def register(server: IBKRServer) -> None:
    """Add this category's tools to the server."""
    for fn in (quotes, history, order_book, news):
        add_tool(server, fn, CATEGORY)
