"""IBKR's Web API pacing: a global request rate and per-endpoint limits, answered with 429.

webapi.md, "Rate limits": "global limit of 10 total requests per second" for the CP Gateway, and
a per-endpoint table [V1DOC] [NEWDOC]; going over returns 429 Too Many Requests. History allows
5 concurrent requests. The limits are IBKR's published ones in :mod:`ibkr_spec.webapi`, the
table the webapi backend paces itself by. Every window is a sliding one over a monotonic clock
(seconds). The penalty box (10-15 min for repeat violators, UNCERTAIN which) is not modelled yet.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from ibkr_spec.webapi import ENDPOINT_LIMITS, GLOBAL_LIMIT, HISTORY_CONCURRENCY, HISTORY_PATH


class RateLimiter:
    """Admits or refuses each request; ``enabled=False`` admits everything (tests of other
    behaviour that send bursts)."""

    def __init__(self, enabled: bool = True, monotonic: Callable[[], float] = time.monotonic):
        self.enabled = enabled
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], deque[float]] = {}
        self._history_running = 0

    def _over(self, key: tuple[str, str], limit: tuple[int, float], now: float) -> bool:
        count, seconds = limit
        seen = self._seen.setdefault(key, deque())
        while seen and now - seen[0] >= seconds:
            seen.popleft()
        if len(seen) >= count:
            return True
        seen.append(now)
        return False

    def admit(self, method: str, path: str) -> str:
        """'' when the request may run, else the 429 error text naming the limit."""
        if not self.enabled:
            return ""
        with self._lock:
            now = self._monotonic()
            limit = ENDPOINT_LIMITS.get((method, path))
            if limit is not None and self._over((method, path), limit, now):
                count, seconds = limit
                return f"Too many requests: {method} {path} allows {count} per {seconds:g} s"
            if self._over(("*", "*"), GLOBAL_LIMIT, now):
                return "Too many requests: the gateway allows 10 requests per second"
            return ""

    def enter_history(self) -> str:
        """Start a history request: '' or the 429 text when 5 are already running."""
        with self._lock:
            if self.enabled and self._history_running >= HISTORY_CONCURRENCY:
                return (
                    f"Too many requests: {HISTORY_PATH} allows {HISTORY_CONCURRENCY} "
                    "concurrent requests"
                )
            self._history_running += 1
            return ""

    def leave_history(self) -> None:
        """A history request admitted by :meth:`enter_history` finished."""
        with self._lock:
            self._history_running -= 1


__all__ = ["ENDPOINT_LIMITS", "GLOBAL_LIMIT", "HISTORY_CONCURRENCY", "RateLimiter"]
