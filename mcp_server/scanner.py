"""Scanner tools: IB market scanners (TOP_PERC_GAIN, TOP_PERC_LOSE, MOST_ACTIVE, ...).

A scanner ranks instruments of a ``location`` (IB locationCode, e.g. STK.US.MAJOR) by its
``code`` (IB scanCode), optionally filtered by price, volume and market cap
(IB ScannerSubscription abovePrice, belowPrice, aboveVolume, marketCapAbove, marketCapBelow).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from ibkr_assets.broker.models import ScanFilter, ScannerRow
from mcp_server.context import add_tool, call_broker

if TYPE_CHECKING:
    from mcp_server.app import IBKRServer

CATEGORY = "scanner"

Location = Annotated[
    str, Field(pattern=r"^[A-Z]+(\.[A-Z]+)*$", description="IB locationCode, e.g. STK.US.MAJOR")
]
Limit = Annotated[int, Field(ge=1, le=50, description="rows")]


class ScanResult(BaseModel):
    """Ranked rows of one scanner run."""

    code: str
    location: str
    rows: list[ScannerRow]


class ScannerCodes(BaseModel):
    """Scanner codes the connected backend can run."""

    codes: list[str]


async def _scan(
    ctx: Context, code: str, location: str, filters: ScanFilter | None, limit: int
) -> ScanResult:
    rows = await call_broker(
        ctx, lambda b: b.scan(code, location=location, filters=filters, limit=limit)
    )
    return ScanResult(code=code, location=location, rows=rows)


def _preset(name: str, code: str, what: str) -> Callable[..., Awaitable[ScanResult]]:
    """A tool ``name`` that runs IB's scanner ``code`` (described by ``what``) with only a row
    limit and a location."""

    async def tool(
        ctx: Context, limit: Limit = 10, location: Location = "STK.US.MAJOR"
    ) -> ScanResult:
        return await _scan(ctx, code, location, None, limit)

    tool.__name__ = tool.__qualname__ = name
    tool.__doc__ = f"""{what} (IB {code}).

    Examples:
        {name}(limit=5)
    """
    return tool


top_gainers = _preset("top_gainers", "TOP_PERC_GAIN", "Biggest % gainers since the previous close")
top_losers = _preset("top_losers", "TOP_PERC_LOSE", "Biggest % losers since the previous close")
most_active = _preset("most_active", "MOST_ACTIVE", "Most traded by volume today")


async def run_scanner(
    ctx: Context,
    code: Annotated[str, Field(pattern=r"^[A-Z_0-9]+$", description="IB scanCode")],
    location: Location = "STK.US.MAJOR",
    filters: ScanFilter | None = None,
    limit: Limit = 25,
) -> ScanResult:
    """Run any scanner code with a location, filters and a row limit.

    Examples:
        run_scanner(code="HOT_BY_VOLUME", filters={"above_price": 5, "above_volume": 100000})
    """
    return await _scan(ctx, code, location, filters, limit)


async def scanner_codes(ctx: Context) -> ScannerCodes:
    """Scanner codes available on this connection.

    Examples:
        scanner_codes() -> {"codes": ["HOT_BY_VOLUME", "MOST_ACTIVE", ...]}
    """
    return ScannerCodes(codes=await call_broker(ctx, lambda b: b.scanner_codes()))


def register(server: IBKRServer) -> None:
    """Add this category's tools to the server."""
    for fn in (top_gainers, top_losers, most_active, run_scanner, scanner_codes):
        add_tool(server, fn, CATEGORY)
