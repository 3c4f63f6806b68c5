"""What the order-submission fault tests (tests/faults/test_*submission_faults.py) share: the
simulated paper account read through a separate connection (each order once at IB, at most one
order's fills), the orders' refs, and a driver process ``kill -9``-ed at its kill point.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from ibkr_assets.broker import Broker, BrokerSettings, connect

#: Friday 2026-11-20, 10:30 New York: the market is open, market orders fill.
OPEN = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
PREFIX = "faults:2026-11-20:"
SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META"]
SIM_SYMBOLS = 60


# -- reading the paper account through a separate connection ------------------------------------
def _account(data_dir: Path, now: datetime = OPEN, symbols: int = SIM_SYMBOLS) -> Broker:
    """An unguarded reader of the simulated paper account on ``data_dir``."""
    settings = BrokerSettings(backend="sim", data_dir=data_dir, sim_now=now, sim_symbols=symbols)
    return connect(settings).inner


def _orders_at_ib(account: Broker) -> Counter[str]:
    """How many orders IB lists under each order_ref (open and completed, every account)."""
    refs: Counter[str] = Counter()
    for a in account.accounts():
        refs.update(s.order_ref for s in account.open_orders(a.account_id))
        refs.update(s.order_ref for s in account.completed_orders(a.account_id))
    return refs


def _assert_once(account: Broker, refs: list[str]) -> None:
    """Each of ``refs`` is one order at IB, with at most one order's fills; nothing else is."""
    listed = _orders_at_ib(account)
    assert listed == Counter(refs), f"orders at IB by ref: {dict(listed)}"
    fills: Counter[str] = Counter()
    for a in account.accounts():
        fills.update({e.order_ref for e in account.executions(a.account_id)})
    assert set(fills) <= set(refs) and max(fills.values(), default=1) == 1


def _kill_at_its_point(script: str, args: list[str], env: dict[str, str]) -> None:
    """Run ``script`` in a driver process and ``kill -9`` it once it prints its kill point."""
    driver = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        line = driver.stdout.readline() if driver.stdout else ""
        assert line.strip() == "KILL-POINT", f"the driver ended before its kill point: {line!r}"
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=10)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert driver.returncode == -signal.SIGKILL
