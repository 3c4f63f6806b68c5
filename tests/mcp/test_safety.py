"""The trading guard on its own: tokens, caps, rate limits, kill switch, audit log."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from mcp_server.config import MCPSettings
from mcp_server.safety import TradingGuard, TradingRefused, order_fingerprint


class _Order(BaseModel):
    symbol: str
    quantity: float


class _Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _guard(tmp_path, **kw) -> tuple[TradingGuard, _Clock]:
    clock = _Clock()
    return TradingGuard(MCPSettings(data_dir=tmp_path, **kw), clock=clock), clock


def test_token_is_single_use_and_bound_to_the_order(tmp_path):
    guard, _ = _guard(tmp_path)
    order = _Order(symbol="AAPL", quantity=10)
    token, ttl = guard.issue_token(order)
    assert ttl == 120
    with pytest.raises(TradingRefused, match="different order"):
        guard.redeem_token(token, _Order(symbol="AAPL", quantity=11))
    guard.redeem_token(token, order)  # the mismatch did not burn it; the exact order works
    with pytest.raises(TradingRefused, match="unknown or already used"):
        guard.redeem_token(token, order)


def test_token_expires_after_ttl(tmp_path):
    guard, clock = _guard(tmp_path)
    order = _Order(symbol="AAPL", quantity=10)
    token, _ = guard.issue_token(order)
    clock.t += 119.9
    fresh, _ = guard.issue_token(order)
    guard.redeem_token(fresh, order)
    clock.t += 0.2  # 120.1 s after the first token
    with pytest.raises(TradingRefused, match="expired"):
        guard.redeem_token(token, order)


def test_fingerprint_is_canonical():
    a = order_fingerprint(_Order(symbol="AAPL", quantity=10))
    assert a == order_fingerprint(_Order(quantity=10.0, symbol="AAPL"))
    assert a != order_fingerprint(_Order(symbol="AAPL", quantity=10.5))


@pytest.mark.parametrize(
    ("kw", "args", "message"),
    [
        ({"max_quantity": 100}, ("AAPL", 101, 10.0, 1.0, 1e6), "quantity 101 exceeds"),
        ({"max_notional": 5_000}, ("AAPL", 50, 101.0, 1.0, 1e6), "order value 5,050.00"),
        ({"max_nlv_share": 0.05}, ("AAPL", 60, 100.0, 1.0, 100_000), "6.0% of net liquidation"),
        ({"allow_symbols": ["MSFT"]}, ("AAPL", 1, 100.0, 1.0, 1e6), "not on the allow-list"),
        ({"max_notional": 9_000}, ("AAPL", 1, 100.0, 100.0, 1e6), "10,000.00"),  # option x100
    ],
)
def test_caps_refuse_with_the_limit_named(tmp_path, kw, args, message):
    guard, _ = _guard(tmp_path, **kw)
    with pytest.raises(TradingRefused, match=message):
        guard.check_caps(*args)


def test_caps_return_notional_within_limits(tmp_path):
    guard, _ = _guard(tmp_path, max_notional=50_000, max_nlv_share=0.1)
    assert guard.check_caps("AAPL", 20, 150.0, 1.0, 1_000_000) == pytest.approx(3_000.0)


def test_rate_limit_per_minute_then_window_slides(tmp_path):
    guard, clock = _guard(tmp_path, orders_per_minute=2, orders_per_day=10)
    guard.take_rate_slot()
    guard.take_rate_slot()
    with pytest.raises(TradingRefused, match="2 orders per minute"):
        guard.take_rate_slot()
    clock.t += 60.1
    guard.take_rate_slot()


def test_rate_limit_per_day(tmp_path):
    guard, clock = _guard(tmp_path, orders_per_minute=100, orders_per_day=3)
    for _ in range(3):
        guard.take_rate_slot()
        clock.t += 61
    with pytest.raises(TradingRefused, match="3 orders per day"):
        guard.take_rate_slot()


def test_kill_switch_by_setting_and_by_file(tmp_path):
    guard, _ = _guard(tmp_path)
    guard.check_kill_switch()
    (tmp_path / "KILL").write_text("stop")
    with pytest.raises(TradingRefused, match="kill switch"):
        guard.check_kill_switch()
    (tmp_path / "KILL").unlink()
    on, _ = _guard(tmp_path, kill_switch=True)
    with pytest.raises(TradingRefused, match="kill switch"):
        on.check_kill_switch()


def test_live_account_refused_unless_allowed(tmp_path):
    guard, _ = _guard(tmp_path)
    guard.check_account("DU1", is_paper=True)
    with pytest.raises(TradingRefused, match="U1234 is a live"):
        guard.check_account("U1234", is_paper=False)
    allowed, _ = _guard(tmp_path, allow_live=True)
    allowed.check_account("U1234", is_paper=False)


def test_audit_appends_who_what_why(tmp_path):
    guard, _ = _guard(tmp_path, user="alice")
    guard.audit("place", "alice", "rebalance", {"symbol": "AAPL"})
    guard.audit("cancel", "alice", "changed mind", {"order_id": 3})
    lines = (tmp_path / "decision_log" / "mcp_orders.jsonl").read_text().splitlines()
    rows = [json.loads(x) for x in lines]
    assert [r["action"] for r in rows] == ["place", "cancel"]
    assert rows[0]["who"] == "alice" and rows[0]["why"] == "rebalance"
    assert rows[0]["what"] == {"symbol": "AAPL"}


def test_blank_token_counts_as_no_token(tmp_path, monkeypatch):
    monkeypatch.setenv("IBKR_MCP_TOKEN", "   ")
    assert MCPSettings(data_dir=tmp_path).token is None
