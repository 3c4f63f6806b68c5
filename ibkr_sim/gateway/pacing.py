"""IB's pacing limits, emulated when the gateway runs with ``--pacing ib``.

The limits a TWS / IB Gateway enforces on an API client (TWS API documentation, "Pacing
Violations" and "Historical Data Limitations"):

* at most 50 messages per second from one client; beyond that the request is refused with
  error 100 ("Max rate of messages per second has been exceeded");
* at most 100 concurrent market-data lines (streaming ``reqMktData`` and ``reqMktDepth``
  subscriptions) for the login; one more gets error 101 ("Max number of tickers has been
  reached");
* historical data: no identical request within 15 seconds, no six or more requests for the same
  contract, exchange and tick type within 2 seconds, and no more than 60 requests in any
  10-minute window for bars of 30 seconds or less; a violation gets error 162
  ("Historical Market Data Service error message: Pacing violation");
* at most 10 simultaneous scanner subscriptions (error 420) and 3 market-depth subscriptions
  (error 309).

With pacing off every check passes. Time is the monotonic clock of the gateway process.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ibkr_spec.errors import HISTORICAL_DATA_ERROR, MAX_DEPTH, MAX_RATE, MAX_SCANNERS, MAX_TICKERS

MESSAGES_PER_SECOND = 50
MARKET_DATA_LINES = 100
SCANNER_SUBSCRIPTIONS = 10
DEPTH_SUBSCRIPTIONS = 3
IDENTICAL_WINDOW = 15.0
SAME_CONTRACT_WINDOW, SAME_CONTRACT_MAX = 2.0, 5
SMALL_BAR_WINDOW, SMALL_BAR_MAX, SMALL_BAR_SECONDS = 600.0, 60, 30


class Pacer:
    """Keeps the counters behind IB's limits; every ``allow_*`` returns False after replying."""

    def __init__(self, enabled: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = enabled
        self.clock = clock
        self._buckets: dict[Any, tuple[float, float]] = {}  # session -> (tokens, time)
        self._identical: dict[tuple[Any, ...], float] = {}
        self._per_contract: dict[tuple[Any, ...], deque[float]] = {}
        self._small_bars: deque[float] = deque()

    def forget(self, session: Any) -> None:
        self._buckets.pop(session, None)

    def allow_message(self, session: Any, arrived: float | None = None) -> bool:
        """Count one message, timed by its arrival (``arrived``, monotonic) when known.

        A token bucket of 50 refilled at 50 per second: a client that keeps to 50 messages in
        any second never trips it, whatever the jitter between its bursts.
        """
        if not self.enabled:
            return True
        now = self.clock() if arrived is None else arrived
        tokens, last = self._buckets.get(session, (float(MESSAGES_PER_SECOND), now))
        tokens = min(float(MESSAGES_PER_SECOND), tokens + (now - last) * MESSAGES_PER_SECOND)
        if tokens < 1.0:
            self._buckets[session] = (tokens, max(now, last))
            session.error(
                -1,
                MAX_RATE,
                f"Max rate of messages per second has been exceeded:max={MESSAGES_PER_SECOND}",
            )
            return False
        self._buckets[session] = (tokens - 1.0, max(now, last))
        return True

    def _allow_count(
        self, session: Any, req_id: int, active: int, limit: int, code: int, message: str
    ) -> bool:
        """Allow one more of ``active`` subscriptions up to ``limit``; else reply ``code``."""
        if not self.enabled or active < limit:
            return True
        session.error(req_id, code, message)
        return False

    def allow_market_data_line(self, session: Any, req_id: int, lines_in_use: int) -> bool:
        """One more streaming market-data line (error 101 beyond 100)."""
        message = f"Max number of tickers has been reached: {MARKET_DATA_LINES} market data lines"
        return self._allow_count(
            session, req_id, lines_in_use, MARKET_DATA_LINES, MAX_TICKERS, message
        )

    def allow_depth(self, session: Any, req_id: int, active: int) -> bool:
        """One more market-depth subscription (error 309 beyond 3)."""
        message = f"Max number ({DEPTH_SUBSCRIPTIONS}) of market depth requests has been reached"
        return self._allow_count(session, req_id, active, DEPTH_SUBSCRIPTIONS, MAX_DEPTH, message)

    def allow_scanner(self, session: Any, req_id: int, active: int) -> bool:
        """One more scanner subscription (error 420 beyond 10)."""
        message = (
            f"Invalid Real-time Query: max number of scanner subscriptions "
            f"({SCANNER_SUBSCRIPTIONS}) reached"
        )
        return self._allow_count(
            session, req_id, active, SCANNER_SUBSCRIPTIONS, MAX_SCANNERS, message
        )

    def allow_historical(
        self, session: Any, req_id: int, request: tuple[Any, ...], bar_seconds: int
    ) -> bool:
        """``request`` = (conid, exchange, whatToShow, end, duration, barSize, useRTH)."""
        if not self.enabled:
            return True
        now = self.clock()
        reason = ""
        last = self._identical.get(request)
        if last is not None and now - last < IDENTICAL_WINDOW:
            reason = f"identical request within {IDENTICAL_WINDOW:.0f} seconds"
        key = request[:3]
        recent = self._per_contract.setdefault(key, deque())
        while recent and now - recent[0] >= SAME_CONTRACT_WINDOW:
            recent.popleft()
        if not reason and len(recent) >= SAME_CONTRACT_MAX:
            reason = (
                f"{SAME_CONTRACT_MAX + 1} or more requests for the same contract within "
                f"{SAME_CONTRACT_WINDOW:.0f} seconds"
            )
        small = 0 < bar_seconds <= SMALL_BAR_SECONDS
        while self._small_bars and now - self._small_bars[0] >= SMALL_BAR_WINDOW:
            self._small_bars.popleft()
        if not reason and small and len(self._small_bars) >= SMALL_BAR_MAX:
            reason = f"more than {SMALL_BAR_MAX} small-bar requests within 10 minutes"
        if reason:
            session.error(
                req_id,
                HISTORICAL_DATA_ERROR,
                f"Historical Market Data Service error message:Pacing violation ({reason})",
            )
            return False
        self._identical[request] = now
        recent.append(now)
        if small:
            self._small_bars.append(now)
        return True
