"""IB's FX pairs: which IDEALPRO pair converts one currency into another, and the rate it quotes.

Read by a backend without IBKR's exchange-rate endpoint (the TWS API), by the order guard (valuing
an order in the account's base currency) and by the MCP server's conversion tools.

IB lists each pair once, on IDEALPRO, in market convention (EUR.USD, USD.JPY, never USD.EUR): the
currency earlier in :data:`MARKET_CONVENTION` is the pair's base. That way round is asked first,
the other only when IB does not list it; a rate either way round is the pair's quote midpoint (its
last price when it has no bid and ask), inverted when the pair is quoted the other way.
"""

from __future__ import annotations

from ibkr_assets.broker.errors import ContractNotFound, MarketDataUnavailable
from ibkr_assets.broker.models import Contract
from ibkr_assets.broker.protocol import Broker

#: the market's priority of base currencies (EUR.GBP, GBP.USD, USD.JPY...); others rank after
MARKET_CONVENTION = ("EUR", "GBP", "AUD", "NZD", "USD", "CAD", "CHF", "NOK", "SEK", "JPY")


def _rank(currency: str) -> int:
    return (
        MARKET_CONVENTION.index(currency)
        if currency in MARKET_CONVENTION
        else len(MARKET_CONVENTION)
    )


def listed_pair(broker: Broker, source: str, target: str) -> tuple[Contract, bool] | None:
    """IB's IDEALPRO pair between ``source`` and ``target`` and whether ``source`` is its base
    currency (selling the pair converts source into target); None when IB lists neither way."""
    ways = sorted(((source, target), (target, source)), key=lambda way: _rank(way[0]))
    for base, quoted in ways:
        try:
            return broker.resolve(base, "CASH", "IDEALPRO", quoted), base == source
        except ContractNotFound:  # not this way round: the other
            continue
    return None


def pair_rate(broker: Broker, source: str, target: str) -> float | None:
    """Units of ``target`` per unit of ``source`` at the IDEALPRO pair's midpoint now (1.0 for a
    currency to itself); None when IB lists no pair between them or it has no quote."""
    if source == target:
        return 1.0
    listed = listed_pair(broker, source, target)
    if listed is None:
        return None
    pair, source_is_base = listed
    try:
        quote = broker.quotes([pair])[0]
    except MarketDataUnavailable:
        return None
    mid = quote.mid or quote.price
    if not mid:
        return None
    return mid if source_is_base else 1.0 / mid


__all__ = ["MARKET_CONVENTION", "listed_pair", "pair_rate"]
