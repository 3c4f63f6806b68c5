"""The gateway's headline store: each stock's headlines of a window, drawn a block at a time.

A client asks for headlines one contract at a time (``reqHistoricalNews`` takes one conId) and,
collecting a universe's news, asks every stock for the same window. Drawing a stock's news on
its own costs numpy's per-call overhead every time; drawing a block of stocks together
(:meth:`~ibkr_sim.market.SimMarket.news_columns_many`, the same headlines as one by one) costs
about a seventh per stock at blocks of 50-100 (measured on seed 7, 700 stocks, a 31-day
window: 0.36 s one by one, 0.056 s in blocks of 50, 0.047 s in blocks of 100). So the first
request of a window draws its stock's block, and the block's other stocks' requests of the same
window are served from it, as a real gateway serves from IB's store. The store keeps the last
:data:`KEPT_BLOCKS` blocks drawn.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime

from ibkr_sim.market import SimMarket
from ibkr_sim.market.news import NewsColumns

#: stocks drawn together (in universe order, as a client collecting a universe asks them)
BLOCK = 64
#: blocks kept (of any windows): a 5,000-stock world's whole window (79 blocks) and then some;
#: a block of a 31-day window holds about 700 headlines (tens of kilobytes; 7,504 headlines of
#: 700 stocks measured, seed 7, 2024-06-03)
KEPT_BLOCKS = 256


class NewsStore:
    """Headlines of recent windows, a block of stocks at a time (see the module)."""

    def __init__(self) -> None:
        self._blocks: OrderedDict[tuple[int, datetime, datetime], dict[int, NewsColumns]] = (
            OrderedDict()
        )
        self._position: dict[int, int] | None = None
        self._stocks: list[int] = []

    def columns(self, market: SimMarket, conid: int, start: datetime, end: datetime) -> NewsColumns:
        """``conid``'s headlines with ``start <= time <= end``, oldest first (what
        :meth:`SimMarket.news_columns` answers): from its block's draw of this window, drawn
        now when the store has none."""
        if self._position is None:
            self._stocks = [inst.conid for inst in market.universe.stocks]
            self._position = {c: k for k, c in enumerate(self._stocks)}
        position = self._position.get(conid)
        if position is None:  # not a stock of the universe: nothing to share
            return market.news_columns(conid, start, end)
        key = (position // BLOCK, start, end)
        block = self._blocks.get(key)
        if block is None:
            conids = self._stocks[key[0] * BLOCK : (key[0] + 1) * BLOCK]
            drawn = market.news_columns_many(conids, start, end)
            block = dict(zip(conids, drawn, strict=True))
            self._blocks[key] = block
            if len(self._blocks) > KEPT_BLOCKS:
                self._blocks.popitem(last=False)
        else:
            self._blocks.move_to_end(key)
        return block[conid]
