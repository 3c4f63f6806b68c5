"""Submitting a batch of orders (:mod:`ibkr_assets.broker.submission`) on the in-process
simulator: the account's orders are read once per batch, under the account's order lock, and that
snapshot keeps every order sent at most once — also an order the batch itself placed a moment
ago. Each test checks the executions that reached the paper account."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ibkr_assets.broker import BrokerSettings, connect
from ibkr_assets.broker.guarded import GuardedBroker
from ibkr_assets.broker.models import Order
from ibkr_assets.broker.submission import submit_orders

#: Friday 20 Nov 2026, 10:30 New York: the NYSE is open and the simulator's quotes are live.
SESSION = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
PREFIX = "test:2026-11-20:"
READS = ("open_orders", "completed_orders", "executions")


def _broker(data_dir: Path) -> GuardedBroker:
    """The guarded sim on ``data_dir``, with the pipeline's limits."""
    return connect(
        BrokerSettings(backend="sim", data_dir=data_dir, sim_now=SESSION, sim_symbols=120)
    )


def _buy(broker: GuardedBroker, symbol: str, quantity: int = 2) -> Order:
    return Order(
        contract=broker.resolve(symbol),
        action="BUY",
        quantity=quantity,
        order_ref=f"{PREFIX}{symbol}:BUY:{quantity}",
    )


def _count_reads(broker: GuardedBroker, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How often the backend is asked for the account's orders and fills."""
    calls: Counter[str] = Counter()
    for name in READS:
        read = getattr(broker.inner, name)

        def counted(*args, _read=read, _name=name, **kwargs):
            calls[_name] += 1
            return _read(*args, **kwargs)

        monkeypatch.setattr(broker.inner, name, counted)
    return calls


def test_a_batch_reads_the_accounts_orders_once(tmp_path: Path, monkeypatch) -> None:
    broker = _broker(tmp_path)
    orders = [_buy(broker, s) for s in ("AAPL", "MSFT", "NVDA", "AMZN")]
    calls = _count_reads(broker, monkeypatch)
    sent = submit_orders(broker, orders, PREFIX)
    assert [s.outcome for s in sent] == ["placed"] * 4
    assert calls == Counter(dict.fromkeys(READS, 1))
    again = submit_orders(broker, orders, PREFIX)
    assert {s.outcome for s in again} == {"already_sent"}
    assert calls == Counter(dict.fromkeys(READS, 2))
    assert len(broker.inner.executions()) == 4


def test_an_order_the_batch_placed_is_not_sent_again(tmp_path: Path) -> None:
    broker = _broker(tmp_path)
    order, resized = _buy(broker, "AAPL"), _buy(broker, "AAPL", quantity=3)
    sent = submit_orders(broker, [order, order, resized], PREFIX)
    assert [s.outcome for s in sent] == ["placed", "already_sent", "same_side_sent"]
    assert sent[1].order_id == sent[2].order_id == sent[0].order_id
    assert len(broker.inner.executions()) == 1


def test_a_snapshot_is_refused_once_its_lock_is_released(tmp_path: Path) -> None:
    broker = _broker(tmp_path)
    with broker.account_lock() as known:
        pass
    with pytest.raises(ValueError, match="after its lock was released"):
        broker.place(_buy(broker, "AAPL"), known)
    assert broker.inner.executions() == []
