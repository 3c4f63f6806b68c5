"""HTTP security of the tool server: bearer token and Host/Origin validation.

* The server binds 127.0.0.1 by default. Listening on any other address requires a bearer token
  (the secret ``IBKR_MCP_TOKEN``: the variable, the file ``IBKR_MCP_TOKEN_FILE`` names, or Vault;
  see :mod:`ibkr_assets.settings.secret`); every request must then carry
  ``Authorization: Bearer <token>``, compared in constant time. A token set when the server
  starts is read again at each request, so a rotated token file takes effect at once; a token
  that can no longer be read refuses every request (503) until it can. The token is never logged
  or echoed in an error.
* Host and Origin headers are checked on every route (MCP and plain HTTP): the Host against
  loopback names and the bind address, the Origin against the server's own origin (its scheme,
  a loopback name or the bind address, and its port), plus ``IBKR_MCP_ALLOWED_HOSTS`` /
  ``IBKR_MCP_ALLOWED_ORIGINS``. A page on another site cannot reach the server through DNS
  rebinding (MCP spec, "Security Warning"), nor can a page served by another local port.
* Off loopback the token travels with every request: serve HTTPS there with
  ``IBKR_MCP_TLS_CERT`` / ``IBKR_MCP_TLS_KEY`` (see :func:`uvicorn_tls`).
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import TYPE_CHECKING

import anyio
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_server.config import LOOPBACK_HOSTS

if TYPE_CHECKING:  # the settings tree imports Dagster; the CLI's client commands need none of it
    from ibkr_assets.settings import MCPSettings

logger = logging.getLogger("mcp_server.security")


class InsecureBinding(ValueError):
    """Asked to listen off loopback without a bearer token."""


def transport_security(settings: MCPSettings, host: str, port: int) -> TransportSecuritySettings:
    """Allowed Host and Origin values for a server bound to ``host``:``port``."""
    names = ["127.0.0.1", "localhost", "[::1]"]
    if host not in LOOPBACK_HOSTS and host not in ("0.0.0.0", "::"):
        names.append(f"[{host}]" if ":" in host else host)
    scheme = "https" if settings.tls else "http"
    origins = [f"{scheme}://{n}:{port}" for n in names]
    if port == {"http": 80, "https": 443}[scheme]:  # browsers leave the default port out
        origins += [f"{scheme}://{n}" for n in names]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"{n}:*" for n in names] + settings.allowed_hosts,
        allowed_origins=origins + settings.allowed_origins,
    )


def uvicorn_tls(settings: MCPSettings) -> dict[str, str]:
    """uvicorn's ``ssl_certfile`` / ``ssl_keyfile`` from the TLS settings (empty without TLS)."""
    if settings.tls_cert is None or settings.tls_key is None:
        return {}
    return {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)}


def require_token_off_loopback(host: str) -> bool:
    """Refuse to listen anywhere but loopback without IBKR_MCP_TOKEN; True when a token is set.
    Raises :class:`~ibkr_assets.settings.SecretError` when it is set but unusable."""
    from ibkr_assets.settings.secret import MCP_TOKEN

    token = MCP_TOKEN.read() is not None
    if host not in LOOPBACK_HOSTS and not token:
        raise InsecureBinding(
            f"refusing to listen on {host}: set IBKR_MCP_TOKEN (a bearer token clients must send) "
            "or IBKR_MCP_TOKEN_FILE, or bind 127.0.0.1"
        )
    return token


def _matches(value: str, allowed: list[str]) -> bool:
    for pattern in allowed:
        if value == pattern:
            return True
        if pattern.endswith(":*") and value.startswith(pattern[:-1]):
            return True
        if pattern.endswith(":*") and value == pattern[:-2]:
            return True
    return False


async def _reject(send: Send, status: int, message: str, extra: list | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send(
        {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
    )
    await send({"type": "http.response.body", "body": body})


class SecurityMiddleware:
    """ASGI middleware: Host/Origin validation, then the bearer token when ``token`` (a token was
    set when the server started), read again at each request."""

    def __init__(
        self, app: ASGIApp, settings: MCPSettings, host: str, port: int, token: bool
    ) -> None:
        self.app = app
        self.security = transport_security(settings, host, port)
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if not _matches(host, self.security.allowed_hosts):
            await _reject(send, 421, "Host header not allowed (see IBKR_MCP_ALLOWED_HOSTS)")
            return
        origin = headers.get("origin")
        if origin and not _matches(origin, self.security.allowed_origins):
            own = self.security.allowed_origins[0]
            await _reject(
                send,
                403,
                f"Origin {origin!r} not allowed: only the server's own origin ({own}) and "
                "IBKR_MCP_ALLOWED_ORIGINS",
            )
            return
        if self.token:
            from ibkr_assets.settings.secret import MCP_TOKEN, SecretError

            try:  # a file read, or an HTTP request to Vault: off the event loop
                token = await anyio.to_thread.run_sync(MCP_TOKEN.required)
            except SecretError as exc:
                logger.error("refusing a request: %s", exc)
                await _reject(send, 503, "the server cannot read its bearer token; see its log")
                return
            auth = headers.get("authorization", "")
            scheme, _, given = auth.partition(" ")
            expected = token.get_secret_value().encode()
            ok = scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), expected)
            if not ok:
                await _reject(
                    send,
                    401,
                    "missing or invalid bearer token",
                    [(b"www-authenticate", b'Bearer realm="ibkr-mcp"')],
                )
                return
        await self.app(scope, receive, send)
