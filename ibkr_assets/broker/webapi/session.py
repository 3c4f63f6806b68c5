"""The webapi backend's link to the Client Portal gateway: one HTTPS client, the brokerage
session kept alive and reopened, every request paced, IBKR's HTTP errors as the broker's.

* **TLS.** The gateway's certificate is verified by default (``IBKR_WEBAPI_VERIFY``); IBKR's own
  gateway and ``ibkr-sim webapi`` serve a self-signed one, trusted with ``IBKR_WEBAPI_CA_FILE``.
* **Session.** Opening checks ``/iserver/auth/status`` and opens the brokerage session
  (``/iserver/auth/ssodh/init``) when only the SSO login is there; the login itself is a browser
  step at the gateway (username, password, 2FA) a program cannot do, so without it the backend
  fails naming the gateway's login page. A daemon thread tickles every :data:`TICKLE_SECONDS`
  (IBKR: at least every 5 minutes, about every 60 s) and reopens a brokerage session the tickle
  reports lost. A 401 on a request (a timed-out session, IBKR's nightly reset) reopens the
  session once and sends the request again: the gateway refused it before doing anything, so an
  order is not sent twice. During the reset itself ``/iserver`` answers 503 (GatewayError).
* **Priming.** ``/iserver/accounts`` is asked once per brokerage session, before the endpoints
  IBKR says need it (snapshot, orders, modify, cancel, live orders).
* **Errors.** An unreachable gateway -> NotConnected; 401 after reopening -> NotConnected naming
  the login; 429 -> PacingViolation; 400 -> InvalidRequest; 500 / 503 -> BrokerError with the
  gateway's text. Business errors come as HTTP 200 ``{"error": text}``; the modules that know
  what was asked read them (:func:`error_text`).
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from ibkr_assets.broker.errors import BrokerError, InvalidRequest, NotConnected, PacingViolation
from ibkr_assets.broker.settings import BrokerSettings
from ibkr_assets.broker.webapi.pacing import Pacer

log = logging.getLogger(__name__)

#: seconds between tickles (IBKR: the session ends after about 5-6 minutes without a request)
TICKLE_SECONDS = 60.0
SSODH_INIT = {"publish": True, "compete": True}


class GatewayError(BrokerError):
    """The gateway answered HTTP 500 or 503 (``status``) with ``text``: a server-side error,
    IBKR's answer for some bad requests (a wrong account, an HMDS error) too."""

    def __init__(self, message: str, status: int, text: str) -> None:
        self.status = status
        self.text = text
        super().__init__(message)


def error_text(body: object) -> str | None:
    """The gateway's ``{"error": text}``, else None."""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"]
    return None


def _verify(settings: BrokerSettings) -> ssl.SSLContext | bool:
    if settings.webapi_ca_file is not None:
        if not Path(settings.webapi_ca_file).is_file():
            raise NotConnected(
                f"IBKR_WEBAPI_CA_FILE {settings.webapi_ca_file} is not a file; point it at the "
                "gateway's certificate (PEM)"
            )
        return ssl.create_default_context(cafile=settings.webapi_ca_file)
    return settings.webapi_verify


class Session:
    """The HTTPS client of one gateway and its brokerage session (see the module docstring).

    ``too_many_requests`` counts the gateway's 429 answers on this session (each one a request
    the pacing let through too early, and a step toward IBKR's penalty box).
    """

    def __init__(self, settings: BrokerSettings) -> None:
        self.url = settings.webapi_url.rstrip("/")
        self.pacer = Pacer(enabled=settings.pacing)
        self._http = httpx.Client(
            base_url=self.url, verify=_verify(settings), timeout=settings.timeout
        )
        self._lock = threading.Lock()
        self._accounts: dict[str, Any] | None = None
        self._closed = threading.Event()
        self._offset: float | None = None  # the gateway's clock minus ours, seconds
        self.too_many_requests = 0
        self._count_lock = threading.Lock()  # not _lock: reauthenticate() answers under it
        try:
            self._open()
        except BrokerError:
            self._http.close()
            raise
        self._tickler = threading.Thread(
            target=self._tickle_loop, name="webapi-tickle", daemon=True
        )
        self._tickler.start()

    # -- requests ----------------------------------------------------------------------------
    def get(self, path: str, **params: Any) -> Any:
        """``GET path?params``: the JSON answer (see :meth:`request`)."""
        return self.request("GET", path, params=params or None)

    def post(self, path: str, body: Any = None) -> Any:
        """``POST path`` with a JSON body (``{}`` when None: the gateway wants a Content-Length)."""
        return self.request("POST", path, json={} if body is None else body)

    def request(
        self, method: str, path: str, params: dict[str, Any] | None = None, json: Any = None
    ) -> Any:
        """Send one request, paced, reopening the brokerage session once on a 401 (primed
        again before an ``/iserver`` request is resent: the caller primed the lost session); the
        JSON answer of a 200, else the broker error the status means."""
        response = self._send(method, path, params, json)
        if response.status_code == 401:
            self.reauthenticate()
            if path.startswith("/iserver/") and path != "/iserver/accounts":
                self.iserver_accounts()
            response = self._send(method, path, params, json)
        return self._answer(method, path, response)

    def _send(
        self, method: str, path: str, params: dict[str, Any] | None, json: Any
    ) -> httpx.Response:
        if self._closed.is_set():
            raise NotConnected("the webapi backend is closed; connect() again")
        with self.pacer.admit(method, path):
            try:
                return self._http.request(method, path, params=params, json=json)
            except httpx.TimeoutException as exc:
                raise NotConnected(
                    f"the Client Portal gateway at {self.url} did not answer {method} {path} "
                    f"in time ({exc.__class__.__name__}); IBKR_TIMEOUT sets the wait"
                ) from None
            except httpx.TransportError as exc:
                raise NotConnected(
                    f"the Client Portal gateway at {self.url} is unreachable ({exc}); start it "
                    "(or ibkr-sim webapi) and check IBKR_WEBAPI_URL"
                ) from None

    def _answer(self, method: str, path: str, response: httpx.Response) -> Any:
        try:
            body = response.json()
        except ValueError:
            body = response.text
        status = response.status_code
        if status == 200:
            return body
        text = error_text(body) or (body if isinstance(body, str) else str(body))
        where = f"{method} {path}"
        if status == 401:
            raise NotConnected(self._login_hint(f"{where} answered 401 ({text})"))
        if status == 429:
            with self._count_lock:
                self.too_many_requests += 1
            raise PacingViolation(f"{where}: the gateway refused it as too many requests: {text}")
        if status == 400:
            raise InvalidRequest(f"{where}: {text}")
        raise GatewayError(f"{where}: the gateway answered HTTP {status}: {text}", status, text)

    # -- the gateway's clock -----------------------------------------------------------------
    def observe_time(self, server_ms: object) -> None:
        """Learn the gateway's clock from a time it stamped an answer with (epoch ms)."""
        if isinstance(server_ms, int | float) and server_ms > 0:
            self._offset = server_ms / 1000 - time.time()

    @property
    def knows_time(self) -> bool:
        """True once an answer has shown the gateway's clock."""
        return self._offset is not None

    def now(self) -> datetime:
        """The gateway's time (UTC): our clock plus the offset its stamps showed (0 before)."""
        return datetime.fromtimestamp(time.time() + (self._offset or 0.0), UTC)

    # -- the brokerage session ---------------------------------------------------------------
    def _login_hint(self, what: str) -> str:
        parts = urlsplit(self.url)
        return (
            f"{what}: the gateway has no logged-in session; log in at "
            f"{parts.scheme}://{parts.netloc} in a browser (username, password, 2FA; "
            "ibkr-sim webapi: POST /v1/api/sim/login)"
        )

    def _status(self) -> dict[str, Any]:
        response = self._send("POST", "/iserver/auth/status", None, {})
        if response.status_code == 401:
            raise NotConnected(self._login_hint(f"{self.url}/iserver/auth/status answered 401"))
        body = self._answer("POST", "/iserver/auth/status", response)
        return body if isinstance(body, dict) else {}

    def _open(self) -> None:
        """Check the login and open the brokerage session if it is not open yet."""
        if not self._status().get("authenticated"):
            self.reauthenticate()

    def reauthenticate(self) -> None:
        """Open a new brokerage session on the SSO login (``/iserver/auth/ssodh/init``); the
        next request primes it again. NotConnected when the gateway has no login."""
        with self._lock:
            self._accounts = None
            response = self._send("POST", "/iserver/auth/ssodh/init", None, SSODH_INIT)
            if response.status_code == 401:
                raise NotConnected(self._login_hint("opening a brokerage session"))
            self._answer("POST", "/iserver/auth/ssodh/init", response)
            status = self._status()
        if not status.get("authenticated"):
            reason = status.get("fail") or status.get("message") or "no reason given"
            competing = (
                " (another session is logged in: competing)" if status.get("competing") else ""
            )
            raise NotConnected(
                f"the gateway at {self.url} did not open a brokerage session{competing}: {reason}"
            )
        log.info("webapi: brokerage session opened at %s", self.url)

    def iserver_accounts(self) -> dict[str, Any]:
        """``/iserver/accounts``, asked once per brokerage session (IBKR's priming call)."""
        with self._lock:
            cached = self._accounts
        if cached is not None:
            return cached
        body = self.get("/iserver/accounts")
        if not isinstance(body, dict) or not body.get("accounts"):
            raise BrokerError(f"/iserver/accounts answered no accounts: {body!r}")
        with self._lock:
            self._accounts = body
        return body

    def _tickle_loop(self) -> None:
        while not self._closed.wait(TICKLE_SECONDS):
            try:
                self.tickle()
            except BrokerError as exc:
                log.warning("webapi: keeping the session alive failed: %s", exc)

    def tickle(self) -> None:
        """``POST /tickle``; reopen the brokerage session when the tickle says it is gone."""
        body = self.post("/tickle")
        auth = body.get("iserver", {}).get("authStatus", {}) if isinstance(body, dict) else {}
        if not auth.get("authenticated"):
            self.reauthenticate()

    def close(self) -> None:
        """Stop tickling and close the HTTP client (the gateway's login stays). Idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._http.close()
