"""Benchmark the simulated market's hot paths, each as a ratio against a named baseline.

- panel build (every stock and macro instrument, 2019-2028) vs drawing one standard-normal
  array of the same shape with numpy (the floor for any vectorised simulation);
- ``snapshots`` for the 700-stock universe vs 700 single ``snapshot`` calls;
- ``daily_bars`` for one year of one symbol vs building an equally sized DataFrame.

Run: ``.venv/bin/python bench/sim_market.py``
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd

from ibkr_sim.market import SimMarket
from ibkr_sim.market.calendar import schedule
from ibkr_sim.market.paths import panel


def _best(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    schedule()
    m = SimMarket(seed=7, n_stocks=700)
    cold = _best(lambda: panel(m.seed), repeat=1)
    rebuild = _best(lambda: panel.__wrapped__(11), repeat=3)
    shape = panel(m.seed).close.shape
    draw = _best(lambda: np.random.default_rng(1).standard_normal(shape))
    print(f"panel {shape}: cold {cold:.3f} s, rebuild {rebuild:.3f} s")
    print(f"  baseline one normal draw of that shape {draw:.4f} s -> ratio {rebuild / draw:.1f}x")

    ids = [s.conid for s in m.universe.stocks]
    at = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
    m.snapshots(ids, at)
    bulk = _best(lambda: m.snapshots(ids, at + timedelta(seconds=1)))
    single = _best(lambda: [m.snapshot(c, at + timedelta(seconds=1)) for c in ids], repeat=2)
    print(f"snapshots(700) {1e3 * bulk:.2f} ms vs 700 x snapshot {1e3 * single:.1f} ms")
    print(f"  -> bulk is {single / bulk:.1f}x faster")

    aapl = ids[0]
    bars = _best(lambda: m.daily_bars(aapl, date(2025, 11, 20), date(2026, 11, 20)), repeat=50)
    cols = {k: np.zeros(252) for k in ("open", "high", "low", "close", "volume")}
    frame = _best(lambda: pd.DataFrame(cols), repeat=50)
    print(f"daily_bars 1 y {1e6 * bars:.0f} us vs plain DataFrame(252 x 5) {1e6 * frame:.0f} us")
    print(f"  -> ratio {bars / frame:.2f}x")


if __name__ == "__main__":
    main()
