"""Confirmation tokens and the audit log of the MCP trading tools.

The limits themselves (read-only, kill switch, live accounts, allow-list, caps valued at the
market, rate limits, price distance, quote freshness, exactly-once placement) are the order
guard's, in the broker layer (:mod:`ibkr_assets.broker.guard`), which every order passes
whatever sent it. What only an assistant needs is here:

* **Confirmation tokens.** ``preview_order`` (or ``preview_modify``) runs the guard's checks and
  IB's what-if and, only when both pass, issues a token bound to that exact request (the SHA-256
  of its canonical JSON) that expires after ``IBKR_MCP_TOKEN_TTL_S`` (120 s). ``place_order`` /
  ``modify_order`` must present it with the very same request. A token is spent only when the
  order reaches the broker: a refusal after preview (rate limit, kill switch, a moved market)
  leaves it usable until it expires, and confirming the same token again answers with the order
  it already sent, never a second one. Tokens are kept (hashed) in
  ``<IBKR_DATA_DIR>/mcp/confirmations.sqlite``, so a preview in one ``ibkr-mcp call`` process
  can be confirmed by the next.
* **The audit log.** Every order placed, modified or cancelled through MCP is appended to
  ``<IBKR_DATA_DIR>/decision_log/mcp_orders.jsonl`` with who, what and why.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel

_SCHEMA = """
CREATE TABLE IF NOT EXISTS confirmations (
    token_sha256 TEXT PRIMARY KEY,   -- the token itself is never stored
    fingerprint TEXT NOT NULL,       -- sha256 of the request it confirms
    expires_at REAL NOT NULL,        -- wall-clock seconds since the epoch
    result TEXT                      -- JSON of what was sent, once it was
);
"""


class TradingRefused(ToolError):
    """A trading tool refused the request; nothing was sent to the broker."""


def request_fingerprint(request: BaseModel) -> str:
    """SHA-256 of a request's canonical JSON: the identity a confirmation token is bound to."""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def token_digest(token: str) -> str:
    """SHA-256 of a token: how it is stored and how it names the orders it sends."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Redemption:
    """A token that matches its request: ``result`` is set when it was already used."""

    digest: str
    result: dict[str, Any] | None


class ConfirmationStore:
    """Single-use, expiring confirmation tokens bound to one request each, on disk.

    ``clock`` is wall-clock seconds since the epoch (tests pass a fake one).
    """

    def __init__(self, path: Path, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()

    def _db(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=30)
        con.executescript(_SCHEMA)
        return con

    def issue(self, request: BaseModel) -> tuple[str, float]:
        """A fresh token bound to ``request``; returns (token, seconds to live)."""
        token = secrets.token_urlsafe(24)
        now = self._clock()
        with self._lock, closing(self._db()) as con, con:
            # Forget tokens that expired unused a day ago; used ones keep answering retries.
            con.execute(
                "DELETE FROM confirmations WHERE expires_at < ? AND result IS NULL",
                (now - 86_400,),
            )
            con.execute(
                "INSERT INTO confirmations VALUES (?, ?, ?, NULL)",
                (token_digest(token), request_fingerprint(request), now + self.ttl_s),
            )
        return token, self.ttl_s

    def check(self, token: str, request: BaseModel) -> Redemption:
        """The token's state if it was issued for exactly this request: its earlier result when
        it was used (a retry), else usable if it has not expired. Raises TradingRefused."""
        digest = token_digest(token)
        with self._lock, closing(self._db()) as con:
            row = con.execute(
                "SELECT fingerprint, expires_at, result FROM confirmations WHERE token_sha256 = ?",
                (digest,),
            ).fetchone()
        if row is None:
            raise TradingRefused(
                "unknown confirmation token: call preview_order (or preview_modify) first and "
                "pass the confirmation_token it returns"
            )
        fingerprint, expires_at, result = row
        if fingerprint != request_fingerprint(request):
            raise TradingRefused(
                "the confirmation token was issued for a different request; preview this exact "
                "order (same symbol, side, quantity, type, prices, account) first"
            )
        if result is not None:
            return Redemption(digest, json.loads(result))
        if expires_at <= self._clock():
            raise TradingRefused(
                f"the confirmation token has expired (valid {self.ttl_s:g} s); preview again"
            )
        return Redemption(digest, None)

    def spend(self, redemption: Redemption, result: dict[str, Any]) -> None:
        """Record what the token sent; later confirmations answer with it."""
        with self._lock, closing(self._db()) as con, con:
            con.execute(
                "UPDATE confirmations SET result = ? WHERE token_sha256 = ?",
                (json.dumps(result, default=str), redemption.digest),
            )


class AuditLog:
    """The MCP order log: one JSON line per order action (who / what / why / when)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, action: str, who: str, why: str, what: dict[str, Any]) -> None:
        """Append one line."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        entry = {
            "time": datetime.now(UTC).isoformat(),
            "action": action,
            "who": who,
            "why": why,
            "what": what,
        }
        line = json.dumps(entry, sort_keys=True, default=str)
        with self._lock, self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
