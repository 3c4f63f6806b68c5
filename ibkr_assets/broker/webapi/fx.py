"""Foreign exchange through the Web API: ``/iserver/exchangerate`` for a rate,
``/iserver/currency/pairs`` to find an IDEALPRO pair's conid (IBKR's secdef search finds stocks,
indices and bonds, not currency pairs). A conversion is an order on the pair, which
:mod:`.orders` sends as IBKR's currency-conversion order (``isCcyConv``).
"""

from __future__ import annotations

from ibkr_assets.broker.errors import ContractNotFound
from ibkr_assets.broker.models import Contract, FxRate, currency_code
from ibkr_assets.broker.webapi.contracts import Contracts
from ibkr_assets.broker.webapi.session import Session
from ibkr_spec.errors import NO_SECURITY_DEFINITION


class Fx:
    """Exchange rates and currency pairs over one :class:`Session`."""

    def __init__(self, session: Session, contracts: Contracts) -> None:
        self._s = session
        self._contracts = contracts

    def rate(self, source: str, target: str) -> FxRate:
        """Units of ``target`` per unit of ``source`` now (IBKR: target divided by source);
        InvalidRequest (IBKR's 400) for a currency it does not convert."""
        source, target = currency_code(source), currency_code(target)
        self._s.iserver_accounts()
        body = self._s.get("/iserver/exchangerate", source=source, target=target)
        return FxRate(source=source, target=target, rate=float(body["rate"]), time=self._s.now())

    def pair(self, base: str, quote: str) -> Contract:
        """The IDEALPRO pair ``base.quote`` (EUR.USD: base EUR, quoted in USD)."""
        base, quote = currency_code(base), currency_code(quote)
        body = self._s.get("/iserver/currency/pairs", currency=quote)
        wanted = f"{base}.{quote}"
        for row in (body or {}).get(quote) or []:
            if row.get("symbol") == wanted:
                return self._contracts.contract(int(row["conid"]))
        raise ContractNotFound(
            f"{wanted} (CASH IDEALPRO): IB lists no such currency pair", code=NO_SECURITY_DEFINITION
        )


__all__ = ["Fx"]
