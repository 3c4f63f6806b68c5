"""Helpers for the tests of the simulator's own classes used directly, without a broker
(:class:`ibkr_sim.market.SimMarket`, :class:`ibkr_sim.exchange.PaperExchange`): instants around a
session, the paper accounts, a settable clock. Their fixtures are in tests/unit/conftest.py.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from ibkr_sim.exchange import PaperExchange
from ibkr_sim.market import SimMarket

#: Friday 2026-11-20, 10:30 in New York: the market is open.
OPEN = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
PRE_OPEN = datetime(2026, 11, 20, 13, 0, tzinfo=UTC)  # 08:00 New York
AFTER_CLOSE = datetime(2026, 11, 20, 22, 0, tzinfo=UTC)
DAY = date(2026, 11, 20)
PRIMARY, SECOND = "DU1234567", "DU7654321"


class Clock:
    """A settable clock for the exchange."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def _conid(market: SimMarket, symbol: str, sec_type: str | None = None) -> int:
    return market.universe.lookup(symbol, sec_type).conid


def _state(ex: PaperExchange, account: str) -> tuple:
    return (
        ex.summary(account),
        ex.positions(account),
        ex.cash(account),
        ex.open_orders(account),
        ex.executions(account),
    )
