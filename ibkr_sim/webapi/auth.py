"""The Client Portal gateway's session: the SSO login, the brokerage session on top, its timeout.

Two tiers, as IBKR describes them (webapi.md, "Session lifecycle"): the outer SSO session opens at
login (in the real gateway a browser login with 2FA; here ``POST /v1/api/sim/login`` or
``ibkr-sim webapi --authenticated``) and reaches the non-``/iserver`` endpoints; the brokerage
session the gateway opens on top of it is needed by every ``/iserver`` endpoint.

- Before login every endpoint answers 401 (IBeam: "401 means the gateway is up with no session").
- The brokerage session times out "after approximately 6 minutes without sending new requests or
  maintaining the /tickle endpoint" [V1DOC]: any request keeps it alive; once timed out,
  ``/iserver/auth/status`` shows ``connected: true, authenticated: false``, ``/iserver`` endpoints
  answer 401, and ``/iserver/reauthenticate`` or ``/iserver/auth/ssodh/init`` open a new one.
- IBKR's nightly reset (the realism profile's ``server_reset``, New York time; webapi.md, "Daily
  reset"): a brokerage session opened before it ends at it; for ``server_reset_seconds`` of the
  gateway clock every gated ``/iserver`` endpoint answers 503 ("IBKR backends not ready" [IBEAM])
  and ``/iserver/auth/status`` shows ``connected: false``, no brokerage session can open; after
  it the ``/iserver`` endpoints answer 401 until ``/iserver/reauthenticate`` or
  ``/iserver/auth/ssodh/init``. The SSO session and the non-``/iserver`` endpoints live on.
- ``/logout`` ends both tiers.

The timeout counts seconds of a monotonic clock (injectable for tests); the nightly reset follows
the gateway clock (the simulated world's, ``ibkr-sim webapi --now``).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from typing import Any
from zoneinfo import ZoneInfo

#: seconds without a request after which the brokerage session ends ("approximately 6 minutes")
DEFAULT_TIMEOUT = 360.0
#: what /tickle reports as ``ssoExpires`` (ms until the SSO session expires) right after login
SSO_LIFETIME_MS = 24 * 3_600_000
SERVER_INFO = {"serverName": "JifN19053", "serverVersion": "Build 10.25.0p, Dec 5, 2023 5:48:12 PM"}
USER_ID = 1234567
NEW_YORK = ZoneInfo("America/New_York")


class AuthSession:
    """The login state of the gateway (one user, as a real gateway serves one login).

    ``clock`` is the gateway clock (UTC; default: real time), ``reset`` / ``reset_seconds`` the
    profile's ``server_reset`` / ``server_reset_seconds`` (see the module docstring)."""

    def __init__(
        self,
        timeout: float = DEFAULT_TIMEOUT,
        authenticated: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], datetime] | None = None,
        reset: clock_time | None = None,
        reset_seconds: float = 60.0,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"session timeout must be positive seconds, got {timeout}")
        self.timeout = timeout
        self.reset = reset
        self.reset_seconds = reset_seconds
        self._monotonic = monotonic
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self.logged_in = False
        self.brokerage = False
        #: why the brokerage session is not open ('' while open, or when nobody said)
        self.ended = ""
        self.session_id = ""
        self._login_at = 0.0
        self._last_seen = 0.0
        self._opened_at = self._clock()  # gateway clock when the brokerage session opened
        if authenticated:
            self.login()

    # -- IBKR's nightly reset -----------------------------------------------------------------
    def last_reset(self, now: datetime) -> datetime | None:
        """The latest nightly reset at or before gateway-clock ``now`` (None without one)."""
        if self.reset is None:
            return None
        day = now.astimezone(NEW_YORK).date()
        at = datetime.combine(day, self.reset, NEW_YORK)
        if at > now:
            at = datetime.combine(day - timedelta(days=1), self.reset, NEW_YORK)
        return at

    def _resetting(self, now: datetime) -> datetime | None:
        """The reset ``now`` falls in the outage of, else None."""
        at = self.last_reset(now)
        if at is not None and now < at + timedelta(seconds=self.reset_seconds):
            return at
        return None

    def _open_brokerage(self) -> bool:
        """Open the brokerage session (under the lock) unless a reset is under way."""
        now = self._clock()
        reset = self._resetting(now)
        if reset is not None:
            if self.brokerage or not self.ended:
                self.brokerage, self.ended = False, _reset_text(reset)
            return False
        self.brokerage, self.ended, self._opened_at = True, "", now
        self._last_seen = self._monotonic()
        return True

    # -- transitions ------------------------------------------------------------------------
    def login(self) -> None:
        """The browser login: SSO session and brokerage session (unless a reset is under way)."""
        with self._lock:
            self.logged_in = True
            self.session_id = secrets.token_hex(16)
            self._login_at = self._last_seen = self._monotonic()
            self._open_brokerage()

    def logout(self) -> None:
        """``POST /logout``: both tiers end."""
        with self._lock:
            self.logged_in = self.brokerage = False
            self.ended = "logged out"

    def reauthenticate(self) -> bool:
        """Open a new brokerage session on the SSO session; False when not logged in or while
        IBKR's nightly reset is under way."""
        with self._lock:
            if not self.logged_in:
                return False
            return self._open_brokerage()

    def touch(self) -> None:
        """A request arrived: end the brokerage session if it timed out or a nightly reset
        passed since it opened, else keep it alive."""
        with self._lock:
            now = self._monotonic()
            if self.brokerage and now - self._last_seen > self.timeout:
                self.brokerage = False
                self.ended = f"it timed out ({self.timeout:g} s without a request or /tickle)"
            reset = self.last_reset(self._clock())
            if self.brokerage and reset is not None and self._opened_at < reset:
                self.brokerage, self.ended = False, _reset_text(reset)
            self._last_seen = now

    def refusal(self, iserver: bool) -> tuple[str, int] | None:
        """Why a request is refused, as (error text, HTTP status), after :meth:`touch`; None when
        it may run. ``iserver``: the path needs the brokerage session."""
        self.touch()
        if not self.logged_in:
            return "not authenticated: log in first (simulator: POST /v1/api/sim/login)", 401
        if not iserver:
            return None
        with self._lock:
            reset = self._resetting(self._clock())
            if reset is not None:
                return (
                    "Service Unavailable: /iserver is down for IBKR's nightly reset (from "
                    f"{reset.astimezone(NEW_YORK):%H:%M} New York for {self.reset_seconds:g} s); "
                    "try again after it, then reauthenticate",
                    503,
                )
            if not self.brokerage:
                why = f" ({self.ended})" if self.ended else ""
                return (
                    f"no brokerage session{why}: call /iserver/reauthenticate or "
                    "/iserver/auth/ssodh/init",
                    401,
                )
        return None

    # -- answers ----------------------------------------------------------------------------
    def auth_status(self) -> dict[str, Any]:
        """The ``/iserver/auth/status`` body (``authStatus`` inside ``/tickle``): not connected
        to IBKR's backend while a nightly reset is under way."""
        resetting = self._resetting(self._clock()) is not None
        return {
            "authenticated": self.brokerage,
            "competing": False,
            "connected": self.logged_in and not resetting,
            "established": self.brokerage,
            "fail": "",
            "message": "",
            "MAC": "98:F2:B3:23:BF:A0",
            "serverInfo": dict(SERVER_INFO),
            "hardware_info": "0a1b2c3d|98:F2:B3:23:BF:A0",
        }

    def tickle(self) -> dict[str, Any]:
        """The ``/tickle`` body (IBKR's successful tickle response)."""
        elapsed_ms = int((self._monotonic() - self._login_at) * 1000)
        return {
            "session": self.session_id,
            "ssoExpires": max(0, SSO_LIFETIME_MS - elapsed_ms),
            "collission": False,
            "userId": USER_ID,
            "hmds": {"error": "no bridge"},
            "iserver": {"authStatus": self.auth_status()},
        }


def _reset_text(at: datetime) -> str:
    """Why a brokerage session ended at the nightly reset ``at``."""
    return f"IBKR's nightly reset at {at.astimezone(NEW_YORK):%H:%M} New York"


__all__ = ["DEFAULT_TIMEOUT", "SERVER_INFO", "USER_ID", "AuthSession"]
