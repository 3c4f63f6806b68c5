"""Reference & contract tools: find instruments, their details, trading hours and option chains.

IB identifies every instrument by a ``conId``; these tools turn a symbol into that contract
(IB reqContractDetails / reqMatchingSymbols) and report classification, tick and lot size, the
exchange's trading sessions, and the listed option expiries and strikes (IB reqSecDefOptParams).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from ibkr_assets.broker.models import Contract, ContractDetails, OptionChain, TradingSession
from mcp_server.context import add_tool, call_broker, resolve

if TYPE_CHECKING:
    from mcp_server.app import IBKRServer

CATEGORY = "reference"

Symbol = Annotated[
    str,
    Field(
        min_length=1,
        max_length=32,
        description="ticker (AAPL), FX pair (EUR.USD with sec_type CASH) or a numeric conId",
    ),
]
SecTypeParam = Annotated[
    str, Field(pattern=r"^(STK|ETF|IND|CASH|FUT|OPT|CMDTY|BOND)$", description="IB secType")
]


class ContractList(BaseModel):
    """Contracts matching a search."""

    contracts: list[Contract]


class TradingHours(BaseModel):
    """When an instrument trades, and whether it trades right now."""

    symbol: str
    time_zone: str
    now: datetime
    open_now: bool
    sessions: list[TradingSession] = Field(description="the next sessions, UTC")


async def search_contracts(
    ctx: Context,
    text: Annotated[str, Field(min_length=1, max_length=64, description="symbol or name")],
    limit: Annotated[int, Field(ge=1, le=50, description="max results")] = 10,
) -> ContractList:
    """Search instruments by symbol or company name (IB reqMatchingSymbols).

    Examples:
        search_contracts(text="apple") -> AAPL first
    """
    found = await call_broker(ctx, lambda b: b.search(text, limit=limit))
    return ContractList(contracts=found)


async def resolve_contract(
    ctx: Context,
    symbol: Symbol,
    sec_type: SecTypeParam = "STK",
    currency: Annotated[str, Field(min_length=3, max_length=3)] = "USD",
) -> Contract:
    """The one IB contract (conId, exchange, currency) for a symbol.

    Examples:
        resolve_contract(symbol="MSFT") ; resolve_contract(symbol="EUR.USD", sec_type="CASH")
    """
    return await call_broker(ctx, resolve, symbol, sec_type, currency)


async def contract_details(
    ctx: Context, symbol: Symbol, sec_type: SecTypeParam = "STK"
) -> ContractDetails:
    """Sector, industry, tick and lot size, average volume, market cap and trading hours.

    Examples:
        contract_details(symbol="AAPL")
    """
    return await call_broker(ctx, lambda b: b.contract_details(resolve(b, symbol, sec_type)))


async def trading_hours(
    ctx: Context, symbol: Symbol, sec_type: SecTypeParam = "STK"
) -> TradingHours:
    """The exchange's next trading sessions for an instrument and whether it is open now.

    Examples:
        trading_hours(symbol="SPY")
    """

    def run(b) -> TradingHours:
        d = b.contract_details(resolve(b, symbol, sec_type))
        now = b.now()
        return TradingHours(
            symbol=d.contract.symbol,
            time_zone=d.time_zone,
            now=now,
            open_now=any(s.start <= now < s.end for s in d.liquid_hours),
            sessions=d.liquid_hours,
        )

    return await call_broker(ctx, run)


async def option_chain(ctx: Context, symbol: Symbol) -> OptionChain:
    """Listed option expiries (YYYYMMDD) and strikes of a stock (IB reqSecDefOptParams).

    Examples:
        option_chain(symbol="AAPL") -> expirations ["20261218", ...], strikes [...]
    """
    return await call_broker(ctx, lambda b: b.option_chain(resolve(b, symbol)))


def register(server: IBKRServer) -> None:
    """Add this category's tools to the server."""
    for fn in (search_contracts, resolve_contract, contract_details, trading_hours, option_chain):
        add_tool(server, fn, CATEGORY)
