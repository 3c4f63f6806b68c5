"""Exchange rates from IB's FX pairs: what a backend without IBKR's exchange-rate endpoint (the
TWS API) and the order guard (valuing an order in the account's base currency) both read.

IB lists each pair once, on IDEALPRO, in market convention (EUR.USD, USD.JPY); a rate either way
round is that pair's quote midpoint (its last price when it has no bid and ask), inverted when
the pair is quoted the other way.
"""

from __future__ import annotations

from ibkr_assets.broker.errors import ContractNotFound, MarketDataUnavailable
from ibkr_assets.broker.protocol import Broker


def pair_rate(broker: Broker, source: str, target: str) -> float | None:
    """Units of ``target`` per unit of ``source`` at the IDEALPRO pair's midpoint now (1.0 for a
    currency to itself); None when neither ``target.source`` nor ``source.target`` is listed
    and quoted."""
    if source == target:
        return 1.0
    for symbol, quoted, invert in ((target, source, True), (source, target, False)):
        try:
            pair = broker.resolve(symbol, "CASH", "IDEALPRO", quoted)
            quote = broker.quotes([pair])[0]
        except (ContractNotFound, MarketDataUnavailable):  # not this way round: the other
            continue
        mid = quote.mid or quote.price
        if mid:
            return 1.0 / mid if invert else mid
    return None


__all__ = ["pair_rate"]
