"""The webapi backend's pacing: every request waits for room under IBKR's Web API limits
(:mod:`ibkr_spec.webapi`: 10 requests/s through the gateway, the per-endpoint table, 5 history
requests at once) instead of meeting a 429 and the penalty box that follows repeated ones.

The gateway counts the requests of the last N seconds (sliding windows), measured when a request
arrives; the windows here are measured when a request leaves, so each is widened by
:data:`MARGIN` seconds to absorb the network's jitter.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ibkr_spec.webapi import ENDPOINT_LIMITS, GLOBAL_LIMIT, HISTORY_CONCURRENCY, HISTORY_PATH

#: seconds added to every window (requests leave here, the gateway counts them on arrival)
MARGIN = 0.05
_GLOBAL = ("*", "*")


class Pacer:
    """Admits requests under IBKR's limits, making each caller wait for its turn; thread-safe.
    ``enabled=False`` admits every request at once (a gateway without limits)."""

    def __init__(self, enabled: bool = True, monotonic: Callable[[], float] = time.monotonic):
        self.enabled = enabled
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._sent: dict[tuple[str, str], deque[float]] = {}
        self._history = threading.BoundedSemaphore(HISTORY_CONCURRENCY)

    def _wait_for(self, key: tuple[str, str], limit: tuple[int, float], now: float) -> float:
        """Seconds until ``key``'s window has room (0: now), its expired sends dropped."""
        count, seconds = limit
        sent = self._sent.setdefault(key, deque())
        while sent and now - sent[0] >= seconds + MARGIN:
            sent.popleft()
        return 0.0 if len(sent) < count else sent[0] + seconds + MARGIN - now

    @contextmanager
    def admit(self, method: str, path: str) -> Iterator[None]:
        """Hold the request ``method path`` until every limit it falls under has room (and, for
        history, one of the 5 slots is free) and count it as sent."""
        if not self.enabled:
            yield
            return
        history = method == "GET" and path == HISTORY_PATH
        if history:
            self._history.acquire()
        try:
            self._take(method, path)
            yield
        finally:
            if history:
                self._history.release()

    def _take(self, method: str, path: str) -> None:
        own = ENDPOINT_LIMITS.get((method, path))
        while True:
            with self._lock:
                now = self._monotonic()
                wait = self._wait_for(_GLOBAL, GLOBAL_LIMIT, now)
                if own is not None:
                    wait = max(wait, self._wait_for((method, path), own, now))
                if wait <= 0:
                    self._sent[_GLOBAL].append(now)
                    if own is not None:
                        self._sent[(method, path)].append(now)
                    return
            time.sleep(wait)
