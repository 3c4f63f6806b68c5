"""IBKR's Web API pacing: a global request rate and per-endpoint limits, answered with 429, and
IBKR's penalty box for a client that keeps breaking them.

webapi.md, "Rate limits": "global limit of 10 total requests per second" for the CP Gateway, and
a per-endpoint table [V1DOC] [NEWDOC]; going over returns 429 Too Many Requests. History allows
5 concurrent requests. The limits are IBKR's published ones in :mod:`ibkr_spec.webapi`, the
table the webapi backend paces itself by. Every window is a sliding one over a monotonic clock
(seconds).

**Penalty box.** "Violator IP addresses are put in a penalty box for 15 minutes" [V1DOC], "may be
put in a penalty box for 10 minutes" [NEWDOC]: with the realism profile's
``penalty_box_seconds`` set (``ib-paper``), a client refused ``penalty_box_after`` times within
:data:`STRIKE_WINDOW` seconds gets 429 for every request, whatever the endpoint, until the box
ends (one client per gateway: loopback is one IP address). Requests refused by the box do not
lengthen it (IBKR documents no such rule).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from ibkr_spec.webapi import ENDPOINT_LIMITS, GLOBAL_LIMIT, HISTORY_CONCURRENCY, HISTORY_PATH

#: seconds within which refused requests count toward the penalty box
STRIKE_WINDOW = 60.0


class RateLimiter:
    """Admits or refuses each request; ``enabled=False`` admits everything (tests of other
    behaviour that send bursts). ``penalty_seconds`` (None: no penalty box) and
    ``penalty_after`` are the profile's ``penalty_box_seconds`` / ``penalty_box_after``."""

    def __init__(
        self,
        enabled: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
        penalty_seconds: float | None = None,
        penalty_after: int = 5,
    ) -> None:
        self.enabled = enabled
        self.penalty_seconds = penalty_seconds
        self.penalty_after = penalty_after
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], deque[float]] = {}
        self._history_running = 0
        self._strikes: deque[float] = deque()
        self._boxed_until = 0.0

    def _over(self, key: tuple[str, str], limit: tuple[int, float], now: float) -> bool:
        count, seconds = limit
        seen = self._seen.setdefault(key, deque())
        while seen and now - seen[0] >= seconds:
            seen.popleft()
        if len(seen) >= count:
            return True
        seen.append(now)
        return False

    def _strike(self, now: float, text: str) -> str:
        """Count a refusal toward the penalty box (under the lock); ``text`` back."""
        if self.penalty_seconds is None:
            return text
        self._strikes.append(now)
        while self._strikes and now - self._strikes[0] >= STRIKE_WINDOW:
            self._strikes.popleft()
        if len(self._strikes) >= self.penalty_after:
            self._boxed_until = now + self.penalty_seconds
            self._strikes.clear()
            return (
                f"{text}; {self.penalty_after} requests refused within {STRIKE_WINDOW:g} s: this "
                f"client is in IBKR's penalty box for {self.penalty_seconds:g} s"
            )
        return text

    def admit(self, method: str, path: str) -> str:
        """'' when the request may run, else the 429 error text naming the limit."""
        if not self.enabled:
            return ""
        with self._lock:
            now = self._monotonic()
            if now < self._boxed_until:
                return (
                    "Too many requests: this client broke IBKR's rate limits repeatedly and is in "
                    f"the penalty box for another {self._boxed_until - now:.0f} s; send nothing "
                    "until then"
                )
            limit = ENDPOINT_LIMITS.get((method, path))
            if limit is not None and self._over((method, path), limit, now):
                count, seconds = limit
                text = f"Too many requests: {method} {path} allows {count} per {seconds:g} s"
                return self._strike(now, text)
            if self._over(("*", "*"), GLOBAL_LIMIT, now):
                text = "Too many requests: the gateway allows 10 requests per second"
                return self._strike(now, text)
            return ""

    def enter_history(self) -> str:
        """Start a history request: '' or the 429 text when 5 are already running."""
        with self._lock:
            if self.enabled and self._history_running >= HISTORY_CONCURRENCY:
                text = (
                    f"Too many requests: {HISTORY_PATH} allows {HISTORY_CONCURRENCY} "
                    "concurrent requests"
                )
                return self._strike(self._monotonic(), text)
            self._history_running += 1
            return ""

    def leave_history(self) -> None:
        """A history request admitted by :meth:`enter_history` finished."""
        with self._lock:
            self._history_running -= 1


__all__ = ["ENDPOINT_LIMITS", "GLOBAL_LIMIT", "HISTORY_CONCURRENCY", "STRIKE_WINDOW", "RateLimiter"]
