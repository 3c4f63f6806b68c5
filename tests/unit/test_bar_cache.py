"""A broker's bar frame read as the warehouse's daily bars (assets/bar_cache.py ``bars_frame``):
each bar's session, its UTC date where the broker gives none, and only the sessions before
the day asked."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from ibkr_assets.assets.bar_cache import bars_frame
from ibkr_assets.assets.market_data import BARS
from ibkr_assets.broker.frames import bar_frame


def test_bars_before_the_day_with_their_sessions_or_utc_dates() -> None:
    times = pd.DatetimeIndex(["2024-05-31 20:00", "2024-06-01 01:30", "2024-06-03 20:00"], tz="UTC")
    sessions = np.array(["2024-05-31", "NaT", "2024-06-03"], dtype="datetime64[ns]")
    prices = [np.array([1.0, 2.0, 3.0]) + k for k in range(4)]
    frame = bar_frame(times, prices, [100.0, 200.0, 300.0], sessions)
    bars = bars_frame("AAPL", frame, before=date(2024, 6, 3))
    assert dict(bars.dtypes.astype(str)) == BARS.dtypes
    assert bars["symbol"].tolist() == ["AAPL", "AAPL"]
    assert bars["session"].tolist() == [pd.Timestamp("2024-05-31"), pd.Timestamp("2024-06-01")]
    assert bars["close"].tolist() == [4.0, 5.0] and bars["volume"].tolist() == [100.0, 200.0]
    assert bars_frame("AAPL", frame, before=date(2024, 5, 31)).empty
