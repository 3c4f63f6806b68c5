"""The in-process simulator behind the order guard, and the helpers the order-guard tests share
(tests/unit/test_order_guard*.py): a broker on a data directory with roomy limits, orders,
quotes, and what reached the paper account."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ibkr_assets.broker import BrokerSettings, OrderLimits, OrderRefused, connect
from ibkr_assets.broker.guarded import GuardedBroker
from ibkr_assets.broker.models import Contract, Order, OrderStatus, Quote

#: Friday 20 Nov 2026, 10:30 New York: the NYSE is open and the simulator's quotes are live.
SESSION = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)


def _limits(**changes: Any) -> OrderLimits:
    """The pipeline's limits, roomy except where a test narrows one (USD, shares, orders)."""
    base: dict[str, Any] = {
        "principal": "pipeline",
        "setting_prefix": "IBKR_PIPELINE_",
        "max_quantity": 10_000,
        "max_notional": 50_000.0,
        "max_nlv_share": 0.10,
        "orders_per_minute": 1_000,
        "orders_per_day": 10_000,
        "max_daily_notional": 10_000_000.0,
    }
    return OrderLimits(**{**base, **changes})


def _settings(data_dir: Path, **changes: Any) -> BrokerSettings:
    """The sim on ``data_dir``, guard switches off unless a test turns one on (the environment
    of whoever runs the tests never decides them)."""
    base: dict[str, Any] = {
        "backend": "sim",
        "data_dir": data_dir,
        "sim_now": SESSION,
        "sim_symbols": 120,
        "readonly": False,
        "kill_switch": False,
        "allow_live": False,
        "allow_symbols": [],
    }
    return BrokerSettings(**{**base, **changes})


def _open(data_dir: Path, limits: OrderLimits | None = None, **changes: Any) -> GuardedBroker:
    return connect(_settings(data_dir, **changes), limits or _limits())


def _held(b: GuardedBroker, account: str | None = None) -> dict[tuple[str, str], float]:
    """Positions in the paper account: (symbol, secType) -> signed quantity."""
    return {
        (p.contract.symbol, p.contract.sec_type): p.quantity for p in b.inner.positions(account)
    }


def _nothing_reached(b: GuardedBroker, account: str | None = None) -> None:
    """No open order, no fill, no position in the account (None = the primary)."""
    assert b.inner.open_orders(account) == []
    assert b.inner.executions(account) == []
    assert _held(b, account) == {}


def _quote(b: GuardedBroker, contract: Contract) -> Quote:
    return b.inner.quotes([contract])[0]


def _aapl(b: GuardedBroker) -> Contract:
    return b.resolve("AAPL")


def _aapl_call(b: GuardedBroker) -> Contract:
    """An AAPL call near the money, first listed expiry (multiplier 100)."""
    aapl = _aapl(b)
    chain = b.option_chain(aapl)
    mid = _quote(b, aapl).mid
    strike = min(chain.strikes, key=lambda k: abs(k - mid))
    return b.option_contract(aapl, chain.expirations[0], strike, "C")


def _buy(contract: Contract, quantity: float = 1, ref: str = "", **kw: Any) -> Order:
    return Order(contract=contract, action="BUY", quantity=quantity, order_ref=ref, **kw)


def _sell(contract: Contract, quantity: float = 1, ref: str = "", **kw: Any) -> Order:
    return Order(contract=contract, action="SELL", quantity=quantity, order_ref=ref, **kw)


def _resting_stop(b: GuardedBroker, ref: str = "resting") -> OrderStatus:
    """A 1-share AAPL buy stop 5% above the ask: open, not triggered."""
    aapl = _aapl(b)
    stop = round(_quote(b, aapl).ask * 1.05, 2)
    status = b.place(_buy(aapl, 1, ref, order_type="STP", stop_price=stop))
    assert [o.order_id for o in b.inner.open_orders()] == [status.order_id]
    return status


def _refused(call: Callable[[], object], limit: str) -> str:
    """Run ``call``, expect the guard to refuse it on ``limit``; the refusal's text."""
    with pytest.raises(OrderRefused) as caught:
        call()
    assert caught.value.limit == limit, str(caught.value)
    return str(caught.value)
