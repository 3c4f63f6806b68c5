"""Confirmation tokens and the audit log on their own (the limits are the order guard's:
tests/unit/test_order_guard*.py)."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from mcp_server.safety import AuditLog, ConfirmationStore, TradingRefused


class _Order(BaseModel):
    symbol: str
    quantity: float


class _Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def _store(tmp_path) -> tuple[ConfirmationStore, _Clock]:
    clock = _Clock()
    return ConfirmationStore(tmp_path / "confirmations.sqlite", 120.0, clock=clock), clock


def test_token_is_bound_to_the_order_and_answers_retries_with_the_first_result(tmp_path):
    store, _ = _store(tmp_path)
    order = _Order(symbol="AAPL", quantity=10)
    token, ttl = store.issue(order)
    assert ttl == 120.0
    with pytest.raises(TradingRefused, match="different request"):
        store.check(token, _Order(symbol="AAPL", quantity=11))
    redemption = store.check(token, order)  # the mismatch did not burn it
    assert redemption.result is None
    store.spend(redemption, {"orders": [{"order_id": 7}]})
    assert store.check(token, order).result == {"orders": [{"order_id": 7}]}


def test_tokens_survive_a_restart_but_not_their_ttl(tmp_path):
    store, clock = _store(tmp_path)
    order = _Order(symbol="AAPL", quantity=10)
    token, _ = store.issue(order)
    reopened = ConfirmationStore(store.path, 120.0, clock=clock)  # another process
    assert reopened.check(token, order).result is None
    clock.t += 121
    with pytest.raises(TradingRefused, match="expired"):
        reopened.check(token, order)
    with pytest.raises(TradingRefused, match="unknown confirmation token"):
        reopened.check("never-issued-token", order)


def test_the_token_itself_is_never_stored(tmp_path):
    store, _ = _store(tmp_path)
    token, _ = store.issue(_Order(symbol="AAPL", quantity=1))
    assert token.encode() not in store.path.read_bytes()


def test_audit_log_appends_json_lines(tmp_path):
    log = AuditLog(tmp_path / "decision_log" / "mcp_orders.jsonl")
    log.append("place", "alice", "rebalance", {"symbol": "AAPL"})
    log.append("cancel", "alice", "changed mind", {"order_id": 3})
    lines = [json.loads(x) for x in log.path.read_text().splitlines()]
    assert [x["action"] for x in lines] == ["place", "cancel"]
    assert lines[0]["who"] == "alice" and lines[0]["why"] == "rebalance"
