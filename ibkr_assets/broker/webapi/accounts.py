"""Accounts through the Web API: ``/iserver/accounts`` (the login's accounts), then the
``/portfolio`` endpoints, which IBKR answers only after ``/portfolio/accounts`` was asked:
``/portfolio/{acct}/summary`` (lower-case keys, each ``{amount, timestamp, ...}``), ``/ledger``
(cash by currency, with ``BASE``) and ``/positions/{page}`` (100 a page, from page 0).

P&L comes from ``/iserver/account/pnl/partitioned`` (one row per account, ``<account>.Core``:
``dpl`` daily, ``upl`` unrealized; IBKR: 1 request per 5 s, and the session's first answer is
empty, so it is asked once more), with the day's realized P&L from the ledger's ``BASE``
``realizedpnl`` (the partitioned answer names none)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from ibkr_assets.broker.errors import AccountNotFound, BrokerError
from ibkr_assets.broker.models import Account, AccountSummary, CashBalance, PnL, Position
from ibkr_assets.broker.webapi.contracts import Contracts
from ibkr_assets.broker.webapi.session import Session

#: positions per page of /portfolio/{acct}/positions/{page}
PAGE_SIZE = 100


class Accounts:
    """The login's accounts and their numbers over one :class:`Session`."""

    def __init__(self, session: Session, contracts: Contracts, chosen: str | None) -> None:
        self._s = session
        self._contracts = contracts
        self._chosen = chosen
        self._lock = threading.Lock()
        self._portfolio: dict[str, dict[str, Any]] | None = None

    def ids(self) -> list[str]:
        """The login's account ids, as ``/iserver/accounts`` lists them."""
        return [str(a) for a in self._s.iserver_accounts()["accounts"]]

    def primary(self) -> str:
        """``IBKR_ACCOUNT`` when the login has it, else the login's first account."""
        ids = self.ids()
        return self._chosen if self._chosen in ids else ids[0]

    def account(self, account_id: str | None) -> str:
        """``account_id`` checked against the login's accounts (None: the primary)."""
        if account_id is None:
            return self.primary()
        ids = self.ids()
        if account_id not in ids:
            raise AccountNotFound(
                f"account {account_id} is not one of this login's accounts ({', '.join(ids)})"
            )
        return account_id

    def _portfolio_accounts(self) -> dict[str, dict[str, Any]]:
        """``/portfolio/accounts`` by id, asked once (IBKR: before any other /portfolio call;
        1 request per 5 s)."""
        with self._lock:
            if self._portfolio is not None:
                return self._portfolio
        rows = self._s.get("/portfolio/accounts")
        found = {str(r.get("accountId") or r.get("id")): r for r in rows or []}
        with self._lock:
            self._portfolio = found
        return found

    def accounts(self) -> list[Account]:
        """The login's accounts; paper ones start with "D" at IB."""
        body = self._s.iserver_accounts()
        primary = self.primary()
        portfolio = self._portfolio_accounts()
        aliases = body.get("aliases") or {}
        return [
            Account(
                account_id=a,
                is_paper=a.startswith("D"),
                is_primary=a == primary,
                currency=str(portfolio.get(a, {}).get("currency") or "USD"),
                alias=str(aliases.get(a) or "") if aliases.get(a) != a else "",
            )
            for a in self.ids()
        ]

    def _summary(self, account: str) -> dict[str, Any]:
        self._portfolio_accounts()
        body = self._s.get(f"/portfolio/{account}/summary")
        if not isinstance(body, dict) or "netliquidation" not in body:
            raise BrokerError(f"account {account}: the gateway answered no summary: {body!r}")
        stamp = body["netliquidation"].get("timestamp")
        self._s.observe_time(stamp)
        return body

    def summary(self, account_id: str | None) -> AccountSummary:
        """Net liquidation, cash, margin and buying power, in the account's base currency."""
        account = self.account(account_id)
        body = self._summary(account)

        def amount(key: str) -> float:
            entry = body.get(key) or {}
            return float(entry.get("amount") or 0.0)

        nlv, gross = amount("netliquidation"), amount("grosspositionvalue")
        settled = body.get("settledcash")
        stamp = body["netliquidation"].get("timestamp")
        currency = self._portfolio_accounts().get(account, {}).get("currency") or "USD"
        return AccountSummary(
            account_id=account,
            currency=str(currency),
            net_liquidation=nlv,
            total_cash=amount("totalcashvalue"),
            settled_cash=None if not settled or settled.get("isNull") else amount("settledcash"),
            gross_position_value=gross,
            equity_with_loan=amount("equitywithloanvalue"),
            init_margin_req=amount("initmarginreq"),
            maint_margin_req=amount("maintmarginreq"),
            available_funds=amount("availablefunds"),
            excess_liquidity=amount("excessliquidity"),
            buying_power=amount("buyingpower"),
            cushion=amount("cushion"),
            leverage=gross / nlv if nlv else 0.0,
            time=datetime.fromtimestamp(stamp / 1000, UTC) if stamp else self._s.now(),
        )

    def server_now(self) -> datetime:
        """The gateway's time, learned from the primary account's summary stamp when no answer
        has shown it yet (the Web API has no clock endpoint)."""
        if not self._s.knows_time:
            self._summary(self.primary())
        return self._s.now()

    def positions(self, account_id: str | None) -> list[Position]:
        """Every holding, page after page."""
        account = self.account(account_id)
        self._portfolio_accounts()
        out: list[Position] = []
        page = 0
        while True:
            rows = self._s.get(f"/portfolio/{account}/positions/{page}") or []
            for r in rows:
                if not r.get("position"):
                    continue
                out.append(
                    Position(
                        account_id=account,
                        contract=self._contracts.contract(int(r["conid"])),
                        quantity=float(r["position"]),
                        avg_cost=float(r.get("avgCost") or 0.0),
                        market_price=_float(r.get("mktPrice")),
                        market_value=_float(r.get("mktValue")),
                        unrealized_pnl=_float(r.get("unrealizedPnl")),
                        realized_pnl=_float(r.get("realizedPnl")),
                        currency=str(r.get("currency") or "USD"),
                    )
                )
            if len(rows) < PAGE_SIZE:
                return out
            page += 1

    def _ledger(self, account: str) -> dict[str, dict[str, Any]]:
        """``/portfolio/{account}/ledger``: cash and P&L by currency, and their ``BASE`` total."""
        self._portfolio_accounts()
        return self._s.get(f"/portfolio/{account}/ledger") or {}

    def pnl(self, account_id: str | None) -> PnL:
        """Daily, unrealized and today's realized P&L, in the account's base currency."""
        account = self.account(account_id)
        row: dict[str, Any] | None = None
        for _ in range(2):  # IBKR's first answer of a session is {"upnl": {}}
            body = self._s.get("/iserver/account/pnl/partitioned") or {}
            row = (body.get("upnl") or {}).get(f"{account}.Core")
            if row:
                break
        if not row:
            raise BrokerError(
                f"account {account}: /iserver/account/pnl/partitioned answered no row for it "
                "twice; ask again in a few seconds"
            )
        base = self._ledger(account).get("BASE") or {}
        return PnL(
            account_id=account,
            daily=float(row.get("dpl") or 0.0),
            unrealized=float(row.get("upl") or 0.0),
            realized=float(base.get("realizedpnl") or 0.0),
            currency=str(base.get("currency") or "USD"),
        )

    def cash(self, account_id: str | None) -> list[CashBalance]:
        """The ledger's currencies (not its ``BASE`` total), with their rates to base."""
        account = self.account(account_id)
        ledger = self._ledger(account)
        base = str((ledger.get("BASE") or {}).get("currency") or "USD")
        out = []
        for key, row in sorted(ledger.items()):
            if key == "BASE":
                continue
            cash, rate = float(row.get("cashbalance") or 0.0), float(row.get("exchangerate") or 0)
            out.append(
                CashBalance(
                    account_id=account,
                    currency=str(row.get("currency") or key),
                    cash=cash,
                    fx_rate=rate,
                    value_in_base=cash * rate,
                    base_currency=base,
                )
            )
        return out


def _float(value: object) -> float | None:
    return None if value is None else float(str(value))
