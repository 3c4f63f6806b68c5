"""The trading guard: what stands between an AI assistant and an order at IB.

An order reaches the broker through MCP only along one path:

1. ``preview_order`` runs IB's what-if (margin, commission, share of net liquidation), checks the
   per-order caps and returns a **confirmation token** bound to that exact order (a SHA-256 of its
   canonical JSON) that expires after ``IBKR_MCP_TOKEN_TTL_S`` (120 s);
2. ``place_order`` must present that token with the very same order; the token is single-use.

Around that path: per-order caps on quantity, notional and share of net liquidation (a market order
is valued at the current ask for a buy, the bid for a sell), an optional symbol allow-list, rate
limits per minute and per UTC day, a kill switch (``IBKR_MCP_KILL_SWITCH=on`` or the file
``<IBKR_DATA_DIR>/KILL`` existing) that makes every trading tool refuse at once, and refusal of a
live (non-paper) account unless ``IBKR_MCP_ALLOW_LIVE=on``. Every order placed, modified or
cancelled through MCP is appended to ``<IBKR_DATA_DIR>/decision_log/mcp_orders.jsonl`` with who,
what and why.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel

from mcp_server.config import MCPSettings


class TradingRefused(ToolError):
    """The trading guard refused the request; nothing was sent to the broker."""


def order_fingerprint(order: BaseModel) -> str:
    """SHA-256 of the order's canonical JSON: the identity a confirmation token is bound to."""
    canonical = json.dumps(order.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class _Pending:
    fingerprint: str
    expires: float  # monotonic seconds


class TradingGuard:
    """Caps, tokens, rate limits, kill switch and audit log of the MCP trading tools.

    Thread-safe; one per server. ``clock`` is monotonic seconds (tests pass a fake one).
    """

    def __init__(self, settings: MCPSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        self._minute: deque[float] = deque()
        self._day: tuple[str, int] = ("", 0)

    # -- switches ----------------------------------------------------------------------------
    def kill_switch_engaged(self) -> bool:
        """True when the kill-switch setting is on or the kill file exists."""
        return self.settings.kill_switch or self.settings.kill_file.exists()

    def check_kill_switch(self) -> None:
        """Refuse if the kill switch is engaged."""
        if self.kill_switch_engaged():
            raise TradingRefused(
                "trading is halted by the kill switch (IBKR_MCP_KILL_SWITCH or the file "
                f"{self.settings.kill_file}); remove it to trade again"
            )

    def check_account(self, account_id: str, is_paper: bool) -> None:
        """Refuse a live account unless IBKR_MCP_ALLOW_LIVE is on."""
        if not is_paper and not self.settings.allow_live:
            raise TradingRefused(
                f"account {account_id} is a live (non-paper) account; orders through MCP need "
                "IBKR_MCP_ALLOW_LIVE=on"
            )

    # -- caps --------------------------------------------------------------------------------
    def check_caps(
        self, symbol: str, quantity: float, price: float, multiplier: float, net_liq: float
    ) -> float:
        """Check the per-order caps; return the order's notional (quantity x price x multiplier)."""
        s = self.settings
        if s.allow_symbols and symbol.upper() not in s.allow_symbols:
            raise TradingRefused(
                f"{symbol} is not on the allow-list IBKR_MCP_ALLOW_SYMBOLS "
                f"({', '.join(s.allow_symbols)})"
            )
        if quantity > s.max_quantity:
            raise TradingRefused(
                f"{symbol}: quantity {quantity:g} exceeds the cap of {s.max_quantity:g} per order "
                "(IBKR_MCP_MAX_QUANTITY)"
            )
        notional = abs(quantity) * price * multiplier
        if notional > s.max_notional:
            raise TradingRefused(
                f"{symbol}: order value {notional:,.2f} exceeds the cap of {s.max_notional:,.2f} "
                "(IBKR_MCP_MAX_NOTIONAL)"
            )
        if net_liq <= 0:
            raise TradingRefused(f"net liquidation is {net_liq:,.2f}; no order can be sized")
        share = notional / net_liq
        if share > s.max_nlv_share:
            raise TradingRefused(
                f"{symbol}: order value is {share:.1%} of net liquidation, above the cap of "
                f"{s.max_nlv_share:.1%} (IBKR_MCP_MAX_NLV_SHARE)"
            )
        return notional

    # -- confirmation tokens -----------------------------------------------------------------
    def issue_token(self, order: BaseModel) -> tuple[str, float]:
        """A fresh single-use token bound to ``order``; returns (token, seconds to live)."""
        token = secrets.token_urlsafe(18)
        ttl = self.settings.token_ttl_s
        with self._lock:
            now = self._clock()
            self._pending = {k: p for k, p in self._pending.items() if p.expires > now}
            self._pending[token] = _Pending(order_fingerprint(order), now + ttl)
        return token, ttl

    def redeem_token(self, token: str, order: BaseModel) -> None:
        """Consume ``token`` if it was issued for exactly this order and has not expired."""
        with self._lock:
            pending = self._pending.get(token)
            if pending is None:
                raise TradingRefused(
                    "unknown or already used confirmation token: call preview_order first and "
                    "pass the token it returns"
                )
            if pending.expires <= self._clock():
                del self._pending[token]
                raise TradingRefused(
                    f"the confirmation token has expired (valid {self.settings.token_ttl_s:g} s); "
                    "call preview_order again"
                )
            if pending.fingerprint != order_fingerprint(order):
                raise TradingRefused(
                    "the confirmation token was issued for a different order; preview this exact "
                    "order (same symbol, side, quantity, type, prices, account) first"
                )
            del self._pending[token]

    # -- rate limits -------------------------------------------------------------------------
    def take_rate_slot(self) -> None:
        """Count one order against the per-minute and per-day limits, or refuse."""
        s = self.settings
        with self._lock:
            now = self._clock()
            while self._minute and self._minute[0] <= now - 60.0:
                self._minute.popleft()
            today = datetime.now(UTC).date().isoformat()
            day, count = self._day if self._day[0] == today else (today, 0)
            if len(self._minute) >= s.orders_per_minute:
                raise TradingRefused(
                    f"rate limit: {s.orders_per_minute} orders per minute "
                    "(IBKR_MCP_ORDERS_PER_MINUTE); wait and retry"
                )
            if count >= s.orders_per_day:
                raise TradingRefused(
                    f"rate limit: {s.orders_per_day} orders per day (IBKR_MCP_ORDERS_PER_DAY)"
                )
            self._minute.append(now)
            self._day = (day, count + 1)

    # -- audit -------------------------------------------------------------------------------
    def audit(self, action: str, who: str, why: str, what: dict[str, Any]) -> None:
        """Append one line to the MCP order log (who / what / why / when)."""
        path = self.settings.audit_path
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {
            "time": datetime.now(UTC).isoformat(),
            "action": action,
            "who": who,
            "why": why,
            "what": what,
        }
        line = json.dumps(entry, sort_keys=True, default=str)
        with self._lock, path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
