"""Contracts through the Web API: ``/iserver/secdef/search`` finds a symbol's conid,
``/iserver/contract/{conid}/info`` describes it. Conids are fixed for the life of an instrument,
so each contract's info is asked once and kept.

The info names no listing exchange, so ``primary_exchange`` is left empty (``/trsrv/secdef``
has it; next step). Trading hours come from ``/trsrv/secdef/schedule``, which the simulated
gateway does not serve yet: contract_details then has no sessions.
"""

from __future__ import annotations

import threading
from typing import Any, cast

from ibkr_assets.broker.errors import ContractNotFound, InvalidRequest
from ibkr_assets.broker.models import Contract, ContractDetails, SecType
from ibkr_assets.broker.webapi.session import Session
from ibkr_spec.errors import NO_SECURITY_DEFINITION

#: secdef/search's secType for the broker's (IBKR searches STK, IND, BOND; ETFs are STK)
SEARCH_TYPES = {"STK": "STK", "ETF": "STK", "IND": "IND", "BOND": "BOND"}


class Contracts:
    """Resolves and describes contracts; thread-safe, each conid's info asked once."""

    def __init__(self, session: Session) -> None:
        self._s = session
        self._lock = threading.Lock()
        self._info: dict[int, dict[str, Any]] = {}
        self._conids: dict[tuple[str, str], int] = {}

    def info(self, conid: int) -> dict[str, Any]:
        """``/iserver/contract/{conid}/info``, kept; ContractNotFound for a conid IBKR lacks."""
        with self._lock:
            cached = self._info.get(conid)
        if cached is not None:
            return cached
        try:
            body = self._s.get(f"/iserver/contract/{conid}/info")
        except InvalidRequest as exc:
            raise ContractNotFound(
                f"conId {conid}: no contract with that id ({exc.message})",
                code=NO_SECURITY_DEFINITION,
            ) from None
        if not isinstance(body, dict) or "con_id" not in body:
            raise ContractNotFound(f"conId {conid}: the gateway answered no contract: {body!r}")
        with self._lock:
            self._info[conid] = body
        return body

    def contract(self, conid: int) -> Contract:
        """The contract with IB id ``conid``."""
        return to_contract(self.info(conid))

    def resolve(self, symbol: str, sec_type: str, currency: str) -> Contract:
        """The one contract of ``symbol`` (its first search match of that type and currency)."""
        symbol = symbol.upper()
        key = (symbol, sec_type)
        with self._lock:
            conid = self._conids.get(key)
        label = f"{symbol} ({sec_type} {currency})"
        if conid is None:
            search_type = SEARCH_TYPES.get(sec_type)
            if search_type is None:
                raise InvalidRequest(
                    f"{label}: the webapi backend resolves STK, ETF, IND and BOND by symbol; "
                    "resolve other types by conId"
                )
            rows = self._s.get("/iserver/secdef/search", symbol=symbol, secType=search_type)
            conids = [int(r["conid"]) for r in rows or [] if r.get("symbol") == symbol]
            if not conids:
                raise ContractNotFound(f"{label}: no security definition found")
            conid = conids[0]
            with self._lock:
                self._conids[key] = conid
        found = self.contract(conid)
        if found.currency != currency:
            raise ContractNotFound(f"{label}: {symbol} trades in {found.currency}")
        return found

    def search(self, text: str, limit: int) -> list[Contract]:
        """Contracts whose symbol starts with ``text`` (IBKR's secdef search), at most ``limit``."""
        rows = self._s.get("/iserver/secdef/search", symbol=text.strip())
        conids = [int(r["conid"]) for r in rows or [] if str(r.get("conid", "")).isdigit()]
        return [self.contract(c) for c in conids[:limit]]

    def details(self, contract: Contract) -> ContractDetails:
        """Classification and tick of ``contract`` from its info."""
        info = self.info(contract.conid)
        return ContractDetails(
            contract=to_contract(info),
            sector=str(info.get("category") or ""),
            industry=str(info.get("industry") or ""),
        )


def to_contract(info: dict[str, Any]) -> Contract:
    """A contract from IBKR's ``/iserver/contract/{conid}/info`` answer."""
    sec_type = str(info.get("instrument_type") or "STK")
    right = {"CALL": "C", "PUT": "P"}.get(str(info.get("right", "")).upper(), "")
    multiplier = str(info.get("multiplier") or "")
    return Contract(
        conid=int(info["con_id"]),
        symbol=str(info.get("symbol", "")),
        sec_type=cast(SecType, sec_type),
        exchange=str(info.get("exchange") or "SMART"),
        currency=str(info.get("currency") or "USD"),
        local_symbol=str(info.get("local_symbol") or ""),
        name=str(info.get("company_name") or ""),
        multiplier=float(multiplier) if multiplier else 1.0,
        last_trade_date=str(info.get("maturity_date") or "") if sec_type == "OPT" else "",
        strike=float(info.get("strike") or 0.0),
        right=cast("Any", right),
        trading_class=str(info.get("trading_class") or ""),
    )
