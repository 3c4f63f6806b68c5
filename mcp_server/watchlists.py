"""Watchlist tools: list, create, add or remove contracts, delete.

Watchlists are the named lists of contracts IB keeps for the user (Client Portal
``/iserver/watchlist``); IB offers them only through the Client Portal Web API, so on the
``tws`` backend these tools answer that watchlists are not available there
(:class:`~mcp_server.context.NotAvailable`). IB replaces a list's contracts as a whole, so adding
or removing reads the list, changes it and saves it under the same id. A list is named by its id
or its exact name; IB's own lists (``read_only``, e.g. "Holdings") cannot change. Watchlists
neither trade nor change the account, so read-only mode and the kill switch leave them alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from ibkr_assets.broker import GuardedBroker
from ibkr_assets.broker.models import Contract, Watchlist
from mcp_server.context import add_tool, call_broker, resolve
from mcp_server.reference import SecTypeParam, Symbol

if TYPE_CHECKING:
    from mcp_server.app import IBKRServer

CATEGORY = "watchlists"

Name = Annotated[str, Field(min_length=1, max_length=64, description="the watchlist's name")]
WatchlistRef = Annotated[
    str, Field(min_length=1, max_length=64, description="the watchlist's id or exact name")
]
Symbols = Annotated[
    list[Symbol],
    Field(max_length=100, description="tickers, FX pairs or numeric conIds, all of sec_type"),
]
Changed = Annotated[Symbols, Field(min_length=1)]


class WatchlistList(BaseModel):
    """The user's watchlists with their contracts."""

    watchlists: list[Watchlist]


class WatchlistDeleted(BaseModel):
    """A watchlist IB no longer keeps."""

    watchlist_id: str
    name: str
    deleted: bool = True


def _find(b: GuardedBroker, ref: str) -> Watchlist:
    """The watchlist whose id, else whose exact name, is ``ref``."""
    lists = b.watchlists()
    found = next((w for w in lists if w.watchlist_id == ref), None)
    named = [w for w in lists if w.name == ref]
    if found is None and len(named) > 1:
        ids = ", ".join(w.watchlist_id for w in named)
        raise ToolError(f"{len(named)} watchlists are named {ref!r} (ids {ids}): pass the id")
    found = found or (named[0] if named else None)
    if found is None:
        known = ", ".join(f"{w.name!r} ({w.watchlist_id})" for w in lists) or "none"
        raise ToolError(f"no watchlist with id or name {ref!r} (known: {known})")
    return found


def _contracts(b: GuardedBroker, symbols: list[str], sec_type: str) -> list[Contract]:
    """The contracts of ``symbols``, each once, in the order given."""
    found: dict[int, Contract] = {}
    for symbol in symbols:
        c = resolve(b, symbol, sec_type)
        found.setdefault(c.conid, c)
    return list(found.values())


async def list_watchlists(ctx: Context) -> WatchlistList:
    """The user's watchlists (IB Client Portal) with their contracts.

    Examples:
        list_watchlists() -> {"watchlists": [{"watchlist_id": "1001", "name": "Tech",
                              "contracts": [{"symbol": "AAPL", ...}], "read_only": false}]}
    """
    return WatchlistList(watchlists=await call_broker(ctx, lambda b: b.watchlists()))


async def create_watchlist(
    ctx: Context, name: Name, symbols: Symbols, sec_type: SecTypeParam = "STK"
) -> Watchlist:
    """Create a watchlist holding these contracts (an empty list is allowed).

    Examples:
        create_watchlist(name="Tech", symbols=["AAPL", "MSFT", "NVDA"])
    """
    return await call_broker(
        ctx, lambda b: b.save_watchlist(name, _contracts(b, symbols, sec_type))
    )


async def add_to_watchlist(
    ctx: Context,
    watchlist: WatchlistRef,
    symbols: Changed,
    sec_type: SecTypeParam = "STK",
) -> Watchlist:
    """Add contracts to a watchlist (those already on it stay once, in place).

    Examples:
        add_to_watchlist(watchlist="Tech", symbols=["AMD"])
    """

    def run(b: GuardedBroker) -> Watchlist:
        current = _find(b, watchlist)
        merged = {c.conid: c for c in current.contracts}
        for c in _contracts(b, symbols, sec_type):
            merged.setdefault(c.conid, c)
        return b.save_watchlist(current.name, list(merged.values()), current.watchlist_id)

    return await call_broker(ctx, run)


async def remove_from_watchlist(
    ctx: Context,
    watchlist: WatchlistRef,
    symbols: Changed,
    sec_type: SecTypeParam = "STK",
) -> Watchlist:
    """Remove contracts from a watchlist. Refused, with nothing changed, when one of them is
    not on it.

    Examples:
        remove_from_watchlist(watchlist="Tech", symbols=["NVDA"])
    """

    def run(b: GuardedBroker) -> Watchlist:
        current = _find(b, watchlist)
        gone = {c.conid: c for c in _contracts(b, symbols, sec_type)}
        held = {c.conid for c in current.contracts}
        missing = [c.symbol for conid, c in gone.items() if conid not in held]
        if missing:
            raise ToolError(
                f"not on watchlist {current.name!r}: {', '.join(missing)}; nothing was removed"
            )
        kept = [c for c in current.contracts if c.conid not in gone]
        return b.save_watchlist(current.name, kept, current.watchlist_id)

    return await call_broker(ctx, run)


async def delete_watchlist(ctx: Context, watchlist: WatchlistRef) -> WatchlistDeleted:
    """Delete a watchlist by id or exact name.

    Examples:
        delete_watchlist(watchlist="Tech")
    """

    def run(b: GuardedBroker) -> WatchlistDeleted:
        current = _find(b, watchlist)
        b.delete_watchlist(current.watchlist_id)
        return WatchlistDeleted(watchlist_id=current.watchlist_id, name=current.name)

    return await call_broker(ctx, run)


def register(server: IBKRServer) -> None:
    """Add this category's tools to the server."""
    add_tool(server, list_watchlists, CATEGORY)
    add_tool(server, create_watchlist, CATEGORY, read_only=False)
    add_tool(server, add_to_watchlist, CATEGORY, read_only=False)
    add_tool(server, remove_from_watchlist, CATEGORY, read_only=False, destructive=True)
    add_tool(server, delete_watchlist, CATEGORY, read_only=False, destructive=True)
