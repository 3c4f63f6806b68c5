"""The order guard's persisted state (:mod:`ibkr_assets.broker.guard`) on the in-process
simulator: rate and daily limits per sender that survive restarts and hold across processes
and UTC midnight, and exactly-once placement by order_ref (threads, two brokers, modifies).
Every test checks what reached the paper account, not only the refusal.

The simulator's clock is pinned inside a NYSE session, so its quotes are always "now".
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ibkr_assets.broker import OrderLimits
from ibkr_assets.broker.guard import OrderGuard
from ibkr_assets.broker.guarded import GuardedBroker
from ibkr_assets.broker.models import OrderStatus
from tests.order_guard_sim import (
    SESSION,
    _aapl,
    _buy,
    _held,
    _limits,
    _open,
    _quote,
    _refused,
    _resting_stop,
)


def _with_clock(b: GuardedBroker, clock: Callable[[], float]) -> GuardedBroker:
    """The same backend and limits behind a guard whose rate limits read ``clock`` (epoch s)."""
    return GuardedBroker(b.inner, OrderGuard(b.guard.settings, b.guard.limits, wall_clock=clock))


# -- rate and daily limits, persisted -----------------------------------------------------------
def test_orders_per_day_survive_a_restart(data_dir):
    first = _open(data_dir, limits=_limits(orders_per_day=2))
    first.place(_buy(_aapl(first), 1, "d1", order_type="MKT"))
    first.place(_buy(_aapl(first), 1, "d2", order_type="MKT"))
    first.close()
    restarted = _open(data_dir, limits=_limits(orders_per_day=2))
    text = _refused(
        lambda: restarted.place(_buy(_aapl(restarted), 1, "d3", order_type="MKT")),
        "orders_per_day",
    )
    assert "IBKR_PIPELINE_ORDERS_PER_DAY" in text and "2 orders from pipeline" in text
    assert sorted(e.order_ref for e in restarted.inner.executions()) == ["d1", "d2"]


_CHILD = """
import sys
from datetime import datetime
from ibkr_assets.broker import BrokerSettings, OrderLimits, OrderRefused, connect
from ibkr_assets.broker.models import Order

data_dir, sim_now, limits, ref = sys.argv[1:5]
settings = BrokerSettings(
    backend="sim", data_dir=data_dir, sim_now=datetime.fromisoformat(sim_now), sim_symbols=120
)
b = connect(settings, OrderLimits.model_validate_json(limits))
order = Order(contract=b.resolve("AAPL"), action="BUY", quantity=1, order_type="MKT", order_ref=ref)
try:
    b.place(order)
except OrderRefused as exc:
    print("refused", exc.limit)
else:
    print("placed")
"""


def _place_in_another_process(data_dir: Path, limits: OrderLimits, ref: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IBKR_")}
    args = [data_dir, SESSION.isoformat(), limits.model_dump_json(), ref]
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    )
    return done.stdout.strip()


def test_orders_per_day_hold_across_processes(data_dir):
    limits = _limits(orders_per_day=2)
    b = _open(data_dir, limits=limits)
    b.place(_buy(_aapl(b), 1, "p1", order_type="MKT"))
    assert _place_in_another_process(data_dir, limits, "p2") == "placed"
    assert _place_in_another_process(data_dir, limits, "p3") == "refused orders_per_day"
    _refused(lambda: b.place(_buy(_aapl(b), 1, "p4", order_type="MKT")), "orders_per_day")
    assert sorted(e.order_ref for e in b.inner.executions()) == ["p1", "p2"]
    assert _held(b) == {("AAPL", "STK"): 2}


class _Clock:
    """A settable wall clock, seconds since the epoch."""

    def __init__(self, at: datetime) -> None:
        self.t = at.timestamp()

    def __call__(self) -> float:
        return self.t


def test_orders_per_minute_with_a_fake_clock(data_dir):
    clock = _Clock(datetime(2026, 11, 20, 15, 0, tzinfo=UTC))
    b = _with_clock(_open(data_dir, limits=_limits(orders_per_minute=2)), clock)
    b.place(_buy(_aapl(b), 1, "m1", order_type="MKT"))
    clock.t += 20
    b.place(_buy(_aapl(b), 1, "m2", order_type="MKT"))
    clock.t += 20
    text = _refused(lambda: b.place(_buy(_aapl(b), 1, "m3", order_type="MKT")), "orders_per_minute")
    assert "IBKR_PIPELINE_ORDERS_PER_MINUTE" in text
    clock.t += 21  # 61 s after the first order: one slot is free again
    b.place(_buy(_aapl(b), 1, "m4", order_type="MKT"))
    assert sorted(e.order_ref for e in b.inner.executions()) == ["m1", "m2", "m4"]


def test_orders_per_minute_count_across_utc_midnight(data_dir):
    clock = _Clock(datetime(2026, 11, 20, 23, 59, 50, tzinfo=UTC))
    b = _with_clock(_open(data_dir, limits=_limits(orders_per_minute=1)), clock)
    b.place(_buy(_aapl(b), 1, "late", order_type="MKT"))
    clock.t += 30  # 00:00:20 UTC the next day, 30 s later
    _refused(lambda: b.place(_buy(_aapl(b), 1, "early", order_type="MKT")), "orders_per_minute")
    assert [e.order_ref for e in b.inner.executions()] == ["late"]


def test_orders_per_day_reset_on_the_next_utc_day(data_dir):
    clock = _Clock(datetime(2026, 11, 20, 12, 0, tzinfo=UTC))
    b = _with_clock(_open(data_dir, limits=_limits(orders_per_day=1)), clock)
    b.place(_buy(_aapl(b), 1, "day1", order_type="MKT"))
    _refused(lambda: b.place(_buy(_aapl(b), 1, "day1b", order_type="MKT")), "orders_per_day")
    clock.t += 86_400
    b.place(_buy(_aapl(b), 1, "day2", order_type="MKT"))
    assert sorted(e.order_ref for e in b.inner.executions()) == ["day1", "day2"]


def test_daily_value_limit(data_dir):
    b = _open(data_dir, limits=_limits(max_daily_notional=1_200.0))
    aapl = _aapl(b)
    ask = _quote(b, aapl).ask  # about $466: two fit in $1,200, a third does not
    b.place(_buy(aapl, 1, "v1", order_type="MKT"))
    b.place(_buy(aapl, 1, "v2", order_type="MKT"))
    text = _refused(lambda: b.place(_buy(aapl, 1, "v3", order_type="MKT")), "max_daily_notional")
    assert f"{2 * ask:,.2f} sent today plus this order's {ask:,.2f}" in text
    assert f"by {3 * ask - 1_200:,.2f} (IBKR_PIPELINE_MAX_DAILY_NOTIONAL)" in text
    assert _held(b) == {("AAPL", "STK"): 2}


def test_limits_are_counted_per_sender(data_dir):
    pipeline = _open(data_dir, limits=_limits(orders_per_day=1))
    pipeline.place(_buy(_aapl(pipeline), 1, "pipe", order_type="MKT"))
    mcp = _open(data_dir, limits=_limits(principal="mcp", orders_per_day=1))
    mcp.place(_buy(_aapl(mcp), 1, "mcp", order_type="MKT"))
    _refused(
        lambda: pipeline.place(_buy(_aapl(pipeline), 1, "p2", order_type="MKT")), "orders_per_day"
    )
    assert sorted(e.order_ref for e in mcp.inner.executions()) == ["mcp", "pipe"]


def test_a_refused_order_does_not_count(data_dir):
    b = _open(data_dir, limits=_limits(orders_per_day=1, max_quantity=5))
    _refused(lambda: b.place(_buy(_aapl(b), 6, "big", order_type="MKT")), "max_quantity")
    b.place(_buy(_aapl(b), 1, "ok", order_type="MKT"))
    assert [e.order_ref for e in b.inner.executions()] == ["ok"]


# -- exactly once -------------------------------------------------------------------------------
def test_the_same_order_ref_twice_returns_the_first_order(data_dir):
    b = _open(data_dir)
    first = b.place(_buy(_aapl(b), 1, "once", order_type="MKT"))
    again = b.place(_buy(_aapl(b), 5, "once", order_type="MKT"))  # a retry, even a changed one
    assert again.order_id == first.order_id
    assert [e.order_ref for e in b.inner.executions()] == ["once"]
    assert _held(b) == {("AAPL", "STK"): 1}


@pytest.mark.parametrize("brokers", ["one broker", "two brokers"])
def test_two_threads_placing_the_same_order_ref_send_one_order(data_dir, brokers):
    first = _open(data_dir)
    second = first if brokers == "one broker" else _open(data_dir)  # two brokers: the flock
    order = _buy(_aapl(first), 1, "twin", order_type="MKT")
    start = threading.Barrier(2)
    placed: list[OrderStatus] = []

    def place(b: GuardedBroker) -> None:
        start.wait()
        placed.append(b.place(order))

    threads = [threading.Thread(target=place, args=(b,)) for b in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(placed) == 2 and placed[0].order_id == placed[1].order_id
    assert [e.order_ref for e in first.inner.executions()] == ["twin"]
    assert _held(first) == {("AAPL", "STK"): 1}


def test_a_modify_is_checked_as_a_new_order(data_dir):
    b = _open(data_dir)  # max_notional $50,000
    resting = _resting_stop(b)
    text = _refused(lambda: b.modify(resting.order_id, quantity=1000), "max_notional")
    assert f"order value {1000 * resting.stop_price:,.2f}" in text
    [still] = b.inner.open_orders()
    assert (still.order_id, still.quantity, still.filled) == (resting.order_id, 1, 0)
    assert b.inner.executions() == []


def test_a_modify_counts_against_the_rate_limits(data_dir):
    b = _open(data_dir, limits=_limits(orders_per_day=2))
    resting = _resting_stop(b)
    new_stop = round(resting.stop_price * 1.01, 2)
    b.modify(resting.order_id, stop_price=new_stop)
    _refused(lambda: b.place(_buy(_aapl(b), 1, "third", order_type="MKT")), "orders_per_day")
    [still] = b.inner.open_orders()
    assert (still.order_id, still.stop_price) == (resting.order_id, new_stop)
    assert b.inner.executions() == []
