"""The tws backend's accounts: managed accounts, account summary, positions, P&L and the cash
ledger. Account updates and P&L are requests ib_async files under one name, so they go one
account at a time."""

from __future__ import annotations

import asyncio
import time as _time
from datetime import UTC, datetime
from typing import Any

import ib_async

from ibkr_assets.broker.errors import AccountNotFound, NotConnected
from ibkr_assets.broker.models import AccountSummary, CashBalance, PnL, Position
from ibkr_assets.broker.tws.connection import Connection
from ibkr_assets.broker.tws.contracts import from_ib_contract
from ibkr_assets.broker.tws.wire import num

_ACCOUNT_TAGS = (
    "NetLiquidation,TotalCashValue,SettledCash,GrossPositionValue,EquityWithLoanValue,"
    "InitMarginReq,MaintMarginReq,AvailableFunds,ExcessLiquidity,BuyingPower,Cushion,Leverage"
)


class Accounts:
    """Account requests, run on the connection's loop."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._ib = conn.ib

    async def managed(self) -> list[str]:
        """The accounts this login manages."""
        managed = self._ib.managedAccounts()
        if not managed:
            raise NotConnected("IB reported no managed accounts")
        return managed

    async def account(self, account_id: str | None) -> str:
        """``account_id``, else the settings' account, else the first managed one; raises
        AccountNotFound for an account this login does not manage."""
        managed = await self.managed()
        wanted = account_id or self._conn.settings.account
        if wanted is None:
            return managed[0]
        if wanted not in managed:
            raise AccountNotFound(
                f"account {wanted!r} is not managed by this login (known: {', '.join(managed)})"
            )
        return wanted

    async def summary(self, account_id: str | None) -> AccountSummary:
        account = await self.account(account_id)
        values = await self._fresh_summary(account)

        def tag(name: str, default: float | None = 0.0) -> float | None:
            return values.get(name, default)

        net_liq = tag("NetLiquidation") or 0.0
        gross = tag("GrossPositionValue") or 0.0
        excess = tag("ExcessLiquidity") or 0.0
        return AccountSummary(
            account_id=account,
            currency=values.get("_currency", "USD"),  # type: ignore[arg-type]
            net_liquidation=net_liq,
            total_cash=tag("TotalCashValue") or 0.0,
            settled_cash=tag("SettledCash", None),
            gross_position_value=gross,
            equity_with_loan=tag("EquityWithLoanValue") or 0.0,
            init_margin_req=tag("InitMarginReq") or 0.0,
            maint_margin_req=tag("MaintMarginReq") or 0.0,
            available_funds=tag("AvailableFunds") or 0.0,
            excess_liquidity=excess,
            buying_power=tag("BuyingPower") or 0.0,
            cushion=excess / net_liq if net_liq else 0.0,
            leverage=gross / net_liq if net_liq else 0.0,
            time=datetime.now(UTC),
        )

    async def _fresh_summary(self, account: str) -> dict[str, Any]:
        """A fresh account-summary snapshot (ib_async would otherwise keep the first one)."""
        ib = self._ib
        req_id = ib.client.getReqId()
        future = ib.wrapper.startReq(req_id)
        ib.client.reqAccountSummary(req_id, "All", _ACCOUNT_TAGS)
        try:
            await self._conn.wait(future, f"the account summary of {account}")
        finally:
            ib.client.cancelAccountSummary(req_id)
        values: dict[str, Any] = {}
        for v in ib.wrapper.acctSummary.values():
            if v.account == account and num(v.value) is not None:
                values[v.tag] = float(v.value)
                if v.tag == "NetLiquidation" and v.currency:
                    values["_currency"] = v.currency
        if "NetLiquidation" not in values:
            raise AccountNotFound(f"IB sent no account summary for {account}")
        return values

    async def _account_updates(self, account: str) -> None:
        """Re-subscribe account updates: IB then sends the full portfolio and account values."""
        await self._conn.wait(
            self._ib.reqAccountUpdatesAsync(account), f"account updates of {account}"
        )

    async def _account_values(
        self, account: str
    ) -> tuple[list[ib_async.PortfolioItem], list[ib_async.AccountValue]]:
        """The portfolio and account values of ``account``, fresh from IB (one account at a
        time: ib_async files account updates under one name)."""
        async with self._conn.named_lock("accountValues"):
            await self._account_updates(account)
            return self._ib.portfolio(account), self._ib.accountValues(account)

    async def positions(self, account_id: str | None) -> list[Position]:
        account = await self.account(account_id)
        portfolio, _ = await self._account_values(account)
        return [
            Position(
                account_id=account,
                contract=from_ib_contract(p.contract),
                quantity=p.position,
                avg_cost=p.averageCost,
                market_price=num(p.marketPrice),
                market_value=num(p.marketValue),
                unrealized_pnl=num(p.unrealizedPNL),
                realized_pnl=num(p.realizedPNL),
                currency=p.contract.currency or "USD",
            )
            for p in portfolio
            if p.position
        ]

    async def pnl(self, account_id: str | None) -> PnL:
        account = await self.account(account_id)
        ib = self._ib
        # ib_async allows one subscription per account
        async with self._conn.named_lock(f"pnl {account}"):
            stream = ib.reqPnL(account)
            try:
                deadline = _time.monotonic() + self._conn.settings.timeout
                while num(stream.dailyPnL) is None and _time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
            finally:
                ib.cancelPnL(account)
        if num(stream.dailyPnL) is None:
            raise NotConnected(f"IB sent no P&L for {account}")
        return PnL(
            account_id=account,
            daily=num(stream.dailyPnL) or 0.0,
            unrealized=num(stream.unrealizedPnL) or 0.0,
            realized=num(stream.realizedPnL) or 0.0,
        )

    async def cash(self, account_id: str | None) -> list[CashBalance]:
        account = await self.account(account_id)
        _, account_values = await self._account_values(account)
        values = [v for v in account_values if v.currency not in ("", "BASE")]
        rates = {v.currency: float(v.value) for v in values if v.tag == "ExchangeRate"}
        base = next((v.currency for v in values if v.tag == "NetLiquidation"), "USD")
        return [
            CashBalance(
                account_id=account,
                currency=v.currency,
                cash=float(v.value),
                fx_rate=rates.get(v.currency, 1.0),
                value_in_base=float(v.value) * rates.get(v.currency, 1.0),
                base_currency=base,
            )
            for v in sorted(values, key=lambda v: v.currency)
            if v.tag == "CashBalance" and float(v.value) != 0.0
        ]
