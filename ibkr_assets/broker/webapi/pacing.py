"""The webapi backend's pacing: every request waits for room under IBKR's Web API limits
(:mod:`ibkr_spec.webapi`: 10 requests/s through the gateway, the per-endpoint table, 5 history
requests at once) instead of meeting a 429 and the penalty box that follows repeated ones.

The gateway counts the requests of the last N seconds (sliding windows) by when each *arrives*,
which the client cannot see: a request may wait in the connection pool, a TLS handshake or the
interpreter's lock after it leaves the pacer. What the client does know is that a request arrived
before its answer came back, and that a request it sends now arrives after now. So each request
holds its place in a window from the moment it is admitted: while it is in flight it counts as
arriving at any moment (it stays in every window), and once answered it counts as having arrived
at the answer's time, the latest it can have. A new request is admitted when fewer than the
limit's count of requests may have arrived within the last N seconds: the gateway then cannot
count more, whatever the delays on the way. The price is one round trip per window (a request
leaves the window N seconds after its answer, not after its arrival), against a penalty box of
10-15 minutes for a 429 too many. Thread-safe: the ingest's request workers share one pacer.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ibkr_spec.webapi import ENDPOINT_LIMITS, GLOBAL_LIMIT, HISTORY_CONCURRENCY, HISTORY_PATH

#: seconds added to every window: the resolution of the two clocks that measure it
MARGIN = 0.005
_GLOBAL = ("*", "*")


class _Sent:
    """One admitted request: ``answered`` is the monotonic time its answer came back (the
    latest it can have arrived), None while it is in flight."""

    __slots__ = ("answered",)

    def __init__(self) -> None:
        self.answered: float | None = None


class Pacer:
    """Admits requests under IBKR's limits, making each caller wait for its turn; thread-safe.
    ``enabled=False`` admits every request at once (a gateway without limits)."""

    def __init__(self, enabled: bool = True, monotonic: Callable[[], float] = time.monotonic):
        self.enabled = enabled
        self._monotonic = monotonic
        self._changed = threading.Condition()
        self._windows: dict[tuple[str, str], list[_Sent]] = {}
        self._history = threading.BoundedSemaphore(HISTORY_CONCURRENCY)

    @contextmanager
    def admit(self, method: str, path: str) -> Iterator[None]:
        """Hold the request ``method path`` until every limit it falls under has room (and, for
        history, one of the 5 slots is free); the block sends it and receives the answer."""
        if not self.enabled:
            yield
            return
        history = method == "GET" and path == HISTORY_PATH
        if history:
            self._history.acquire()
        try:
            sent = self._take(method, path)
            try:
                yield
            finally:
                with self._changed:
                    sent.answered = self._monotonic()
                    self._changed.notify_all()
        finally:
            if history:
                self._history.release()

    def _wait_for(self, key: tuple[str, str], limit: tuple[int, float], now: float) -> float:
        """Seconds until ``key``'s window has room: 0 now, ``inf`` not before a request in
        flight is answered; requests that can no longer be in the gateway's window dropped."""
        count, seconds = limit
        window = self._windows.setdefault(key, [])
        window[:] = [s for s in window if s.answered is None or now - s.answered < seconds + MARGIN]
        if len(window) < count:
            return 0.0
        answered = [s.answered for s in window if s.answered is not None]
        return min(answered) + seconds + MARGIN - now if answered else math.inf

    def _take(self, method: str, path: str) -> _Sent:
        limits = [(_GLOBAL, GLOBAL_LIMIT)]
        own = ENDPOINT_LIMITS.get((method, path))
        if own is not None:
            limits.append(((method, path), own))
        with self._changed:
            while True:
                now = self._monotonic()
                wait = max(self._wait_for(key, limit, now) for key, limit in limits)
                if wait <= 0:
                    sent = _Sent()
                    for key, _ in limits:
                        self._windows[key].append(sent)
                    return sent
                self._changed.wait(None if math.isinf(wait) else wait)
