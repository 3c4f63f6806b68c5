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
- ``/logout`` ends both tiers.

Times are seconds of a monotonic clock (injectable for tests).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

#: seconds without a request after which the brokerage session ends ("approximately 6 minutes")
DEFAULT_TIMEOUT = 360.0
#: what /tickle reports as ``ssoExpires`` (ms until the SSO session expires) right after login
SSO_LIFETIME_MS = 24 * 3_600_000
SERVER_INFO = {"serverName": "JifN19053", "serverVersion": "Build 10.25.0p, Dec 5, 2023 5:48:12 PM"}
USER_ID = 1234567


class AuthSession:
    """The login state of the gateway (one user, as a real gateway serves one login)."""

    def __init__(
        self,
        timeout: float = DEFAULT_TIMEOUT,
        authenticated: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"session timeout must be positive seconds, got {timeout}")
        self.timeout = timeout
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self.logged_in = False
        self.brokerage = False
        self.session_id = ""
        self._login_at = 0.0
        self._last_seen = 0.0
        if authenticated:
            self.login()

    # -- transitions ------------------------------------------------------------------------
    def login(self) -> None:
        """The browser login: SSO session and brokerage session open."""
        with self._lock:
            now = self._monotonic()
            self.logged_in = self.brokerage = True
            self.session_id = secrets.token_hex(16)
            self._login_at = self._last_seen = now

    def logout(self) -> None:
        """``POST /logout``: both tiers end."""
        with self._lock:
            self.logged_in = self.brokerage = False

    def reauthenticate(self) -> bool:
        """Open a new brokerage session on the SSO session; False when not logged in."""
        with self._lock:
            if not self.logged_in:
                return False
            self.brokerage = True
            self._last_seen = self._monotonic()
            return True

    def touch(self) -> None:
        """A request arrived: end the brokerage session if it had timed out, else keep it."""
        with self._lock:
            now = self._monotonic()
            if self.brokerage and now - self._last_seen > self.timeout:
                self.brokerage = False
            self._last_seen = now

    # -- answers ----------------------------------------------------------------------------
    def auth_status(self) -> dict[str, Any]:
        """The ``/iserver/auth/status`` body (``authStatus`` inside ``/tickle``)."""
        return {
            "authenticated": self.brokerage,
            "competing": False,
            "connected": self.logged_in,
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


__all__ = ["DEFAULT_TIMEOUT", "SERVER_INFO", "USER_ID", "AuthSession"]
