"""Portfolio & account tools: accounts, summary, positions, P&L and the cash ledger.

Numbers are IB's account values (NetLiquidation, AvailableFunds, ExcessLiquidity, ...) in the
account's base currency. ``account_id`` may be omitted: the account chosen with
``select_account``, else the primary account, is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from ibkr_assets.broker.models import Account, AccountSummary, CashBalance, PnL, Position
from mcp_server.context import add_tool, call_broker, require_session, session_key, state

if TYPE_CHECKING:
    from mcp_server.app import IBKRServer

CATEGORY = "portfolio"

AccountId = Annotated[
    str | None,
    Field(max_length=32, description="IB account id (DU...); omit for the selected/primary one"),
]


class AccountList(BaseModel):
    """Managed accounts and which one the tools use by default."""

    accounts: list[Account]
    selected: str


class PositionList(BaseModel):
    """Holdings of one account, marked to market."""

    account_id: str
    positions: list[Position]
    total_market_value: float


class CashLedger(BaseModel):
    """Cash per currency and its value in the base currency."""

    account_id: str
    balances: list[CashBalance]
    total_in_base: float


def account_for(ctx: Context, account_id: str | None) -> str | None:
    """The account a tool should use: the argument, else the one this MCP session selected,
    else (None) the primary."""
    return account_id or state(ctx).selected_account(session_key(ctx))


async def list_accounts(ctx: Context) -> AccountList:
    """Accounts this login manages (paper accounts start with D) and the one in use.

    Examples:
        list_accounts() -> {"accounts": [{"account_id": "DU111111", "is_primary": true}], ...}
    """
    accounts = await call_broker(ctx, lambda b: b.accounts())
    primary = next(a.account_id for a in accounts if a.is_primary)
    return AccountList(accounts=accounts, selected=account_for(ctx, None) or primary)


async def select_account(
    ctx: Context, account_id: Annotated[str, Field(min_length=1, max_length=32)]
) -> AccountList:
    """Use this account by default in every later tool call of this MCP session; other
    sessions keep their own. Stateless requests (MCP 2026-07-28, plain HTTP) have no session:
    pass account_id to each tool there.

    Examples:
        select_account(account_id="DU222222")
    """
    session = require_session(ctx)
    accounts = await call_broker(ctx, lambda b: b.accounts())
    known = [a.account_id for a in accounts]
    if account_id not in known:
        raise ToolError(f"account {account_id!r} is not managed here (known: {', '.join(known)})")
    state(ctx).select_account(session, account_id)
    return AccountList(accounts=accounts, selected=account_id)


async def account_summary(ctx: Context, account_id: AccountId = None) -> AccountSummary:
    """Net liquidation, cash, margin requirements, available funds, cushion and leverage.

    Examples:
        account_summary() -> {"net_liquidation": 1000000.0, "cushion": 1.0, ...}
    """
    acct = account_for(ctx, account_id)
    return await call_broker(ctx, lambda b: b.account_summary(acct))


async def positions(ctx: Context, account_id: AccountId = None) -> PositionList:
    """Current holdings with average cost, market value and unrealised P&L.

    Examples:
        positions()
    """
    acct = account_for(ctx, account_id)

    def run(b) -> PositionList:
        rows = b.positions(acct)
        account = acct or b.account_summary(acct).account_id
        total = sum(p.market_value or 0.0 for p in rows)
        return PositionList(account_id=account, positions=rows, total_market_value=total)

    return await call_broker(ctx, run)


async def pnl(ctx: Context, account_id: AccountId = None) -> PnL:
    """Daily, unrealised and realised P&L of the account.

    Examples:
        pnl() -> {"daily": 120.5, "unrealized": 800.0, "realized": 0.0, ...}
    """
    acct = account_for(ctx, account_id)
    return await call_broker(ctx, lambda b: b.pnl(acct))


async def cash_balances(ctx: Context, account_id: AccountId = None) -> CashLedger:
    """The cash ledger: one line per currency with its FX rate to the base currency.

    Examples:
        cash_balances() -> {"balances": [{"currency": "USD", "cash": 1000000.0, ...}], ...}
    """
    acct = account_for(ctx, account_id)

    def run(b) -> CashLedger:
        lines = b.cash_balances(acct)
        account = lines[0].account_id if lines else (acct or "")
        return CashLedger(
            account_id=account,
            balances=lines,
            total_in_base=sum(c.value_in_base for c in lines),
        )

    return await call_broker(ctx, run)


def register(server: IBKRServer) -> None:
    """Add this category's tools to the server."""
    for fn in (list_accounts, account_summary, positions, pnl, cash_balances):
        add_tool(server, fn, CATEGORY)
    add_tool(server, select_account, CATEGORY, read_only=False, open_world=False)
