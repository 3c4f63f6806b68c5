"""IB's historical-data pacing (error 162), kept client-side by the tws backend: no identical
request within 15 s, at most 5 requests for one contract and tick type in 2 s, at most 60 requests
for small bars (<= 30 s) in 10 minutes.

Identical requests within 15 s share one answer, a repeat after a failure waits out the 15 s, and
a request waits for its slot in the per-contract and small-bar windows. The windows are sliding
(IB counts the requests of the last N seconds), so a token or leaky bucket, which lets a request
through as soon as some capacity has drained, would not keep them.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ibkr_assets.broker.models import Contract
from ibkr_assets.broker.tws.history import BarColumns

#: The windows are measured when a request is queued, IB measures when it arrives; the margin
#: (seconds) covers the time a request may wait in ib_async's message throttle.
IDENTICAL_SECONDS = 15.0
_SAME_CONTRACT_MAX, _SAME_CONTRACT_SECONDS = 5, 2.0
_SMALL_BAR_MAX, SMALL_BAR_SECONDS, SMALL_BAR_SIZE = 60, 600.0, 30
_WINDOW_MARGIN = 1.0


@dataclass(frozen=True)
class HistoryRequest:
    """One historical-data request; ``key`` is what IB compares for "identical"."""

    contract: Contract
    duration: str
    bar_size: str
    what_to_show: str
    end: datetime | None
    use_rth: bool
    small: bool  # bars of 30 s or less (IB's 60-per-10-minutes limit)

    @property
    def key(self) -> tuple[Any, ...]:
        return (
            self.contract.conid,
            self.duration,
            self.bar_size,
            self.what_to_show,
            self.end,
            self.use_rth,
        )


class _Window:
    """At most ``limit`` requests in any ``seconds`` (plus a margin); ``slot`` waits for room.

    Used only on the backend's event loop, so it needs no lock.
    """

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds + _WINDOW_MARGIN
        self._sent: deque[float] = deque()

    async def slot(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            while self._sent and now - self._sent[0] >= self.seconds:
                self._sent.popleft()
            if len(self._sent) < self.limit:
                self._sent.append(now)
                return
            await asyncio.sleep(self._sent[0] + self.seconds - now)


class HistoryPacer:
    """The historical-data requests of one connection, kept inside IB's pacing.

    Used on the backend's event loop only, so it needs no lock beyond its per-request ones.
    """

    def __init__(self) -> None:
        self._keys: defaultdict[tuple[Any, ...], asyncio.Lock] = defaultdict(asyncio.Lock)
        self._memo: dict[tuple[Any, ...], tuple[float, BarColumns]] = {}
        self._sent: dict[tuple[Any, ...], float] = {}
        self._order: deque[tuple[float, tuple[Any, ...]]] = deque()  # (sent, key), in order
        self._per_contract: defaultdict[tuple[Any, ...], _Window] = defaultdict(
            lambda: _Window(_SAME_CONTRACT_MAX, _SAME_CONTRACT_SECONDS)
        )
        self._small_bars = _Window(_SMALL_BAR_MAX, SMALL_BAR_SECONDS)

    async def paced(
        self, r: HistoryRequest, fetch: Callable[[HistoryRequest], Awaitable[BarColumns]]
    ) -> BarColumns:
        """``fetch(r)`` once its pacing allows, or the answer to an identical request sent
        within 15 s."""
        loop = asyncio.get_running_loop()
        async with self._keys[r.key]:
            memo = self._memo.get(r.key)
            if memo and loop.time() - memo[0] < IDENTICAL_SECONDS:
                return memo[1]  # never modified: shared as it is
            last = self._sent.get(r.key)
            if last is not None:
                await asyncio.sleep(last + IDENTICAL_SECONDS + _WINDOW_MARGIN - loop.time())
            await self._per_contract[(r.contract.conid, r.what_to_show)].slot()
            if r.small:
                await self._small_bars.slot()
            self._sent[r.key] = loop.time()
            self._order.append((loop.time(), r.key))
            bars = await fetch(r)
            self._memo[r.key] = (loop.time(), bars)
        self._forget_old_requests(loop.time())
        return bars

    def _forget_old_requests(self, now: float) -> None:
        """Drop what is kept of requests older than IB's 15 s: it can no longer matter."""
        order = self._order
        while order and now - order[0][0] > IDENTICAL_SECONDS + _WINDOW_MARGIN:
            _, key = order.popleft()
            sent = self._sent.get(key)
            if sent is not None and now - sent > IDENTICAL_SECONDS + _WINDOW_MARGIN:
                self._sent.pop(key)
                self._memo.pop(key, None)
                lock = self._keys.get(key)
                if lock is not None and not lock.locked():
                    del self._keys[key]
