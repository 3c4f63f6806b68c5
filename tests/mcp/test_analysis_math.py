"""The analysis formulas against fixed inputs and independent implementations."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest

from ibkr_assets.broker.models import Bar
from mcp_server.analysis import (
    annualised_volatility,
    bars_frame,
    beta,
    concentration,
    fixed_fractional_shares,
    max_drawdown,
)


def test_volatility_matches_hand_computation():
    close = pd.Series([100.0, 101.0, 99.0, 102.0, 103.0])
    r = [np.log(101 / 100), np.log(99 / 101), np.log(102 / 99), np.log(103 / 102)]
    mean = sum(r) / 4
    expected = (sum((x - mean) ** 2 for x in r) / 3) ** 0.5 * 252**0.5
    np.testing.assert_allclose(annualised_volatility(close), expected, rtol=1e-12)


def test_beta_recovers_a_known_slope():
    rng = np.random.default_rng(3)
    market = rng.normal(0, 0.01, 400)
    stock = 1.7 * market + rng.normal(0, 0.002, 400)
    idx = pd.date_range("2025-01-01", periods=401, freq="B")
    m = pd.Series(100 * np.cumprod(np.r_[1.0, 1 + market]), index=idx)
    s = pd.Series(50 * np.cumprod(np.r_[1.0, 1 + stock]), index=idx)
    # independent: least-squares slope of simple returns
    slope = np.polyfit(m.pct_change().dropna(), s.pct_change().dropna(), 1)[0]
    np.testing.assert_allclose(beta(s, m), slope, rtol=1e-10)
    np.testing.assert_allclose(beta(s, m), 1.7, atol=0.05)
    # only common dates count
    assert beta(s.iloc[:2], m) != beta(s.iloc[:2], m)  # NaN with too few dates


def test_max_drawdown():
    close = pd.Series([100.0, 120.0, 90.0, 130.0, 117.0])
    np.testing.assert_allclose(max_drawdown(close), 90 / 120 - 1)
    assert max_drawdown(pd.Series([1.0, 2.0, 3.0])) == 0.0


def test_concentration_and_hhi():
    largest, top5, hhi = concentration(np.array([50.0, -30.0, 20.0]))
    np.testing.assert_allclose([largest, top5, hhi], [0.5, 1.0, 0.25 + 0.09 + 0.04])
    assert concentration(np.array([])) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("budget", "stop", "price", "funds", "lot", "expected"),
    [
        (5_000, 4.0, 100.0, 1e6, 1, 1250),  # risk-limited
        (5_000, 4.0, 100.0, 50_000, 1, 500),  # funds-limited
        (5_000, 4.0, 100.0, 1e6, 100, 1200),  # round lots
        (5_000, 0.0, 100.0, 1e6, 1, 0),
        (5_000, 4.0, 100.0, -10.0, 1, 0),
    ],
)
def test_fixed_fractional_shares(budget, stop, price, funds, lot, expected):
    assert fixed_fractional_shares(budget, stop, price, funds, lot) == expected


def test_bars_frame_orders_and_dedupes():
    t = datetime(2026, 1, 5, 21, tzinfo=UTC)
    bars = [
        Bar(time=t, open=2, high=3, low=1, close=2.5, volume=10, session=date(2026, 1, 6)),
        Bar(time=t, open=1, high=2, low=0.5, close=1.5, volume=5, session=date(2026, 1, 5)),
    ]
    frame = bars_frame(bars)
    assert list(frame["close"]) == [1.5, 2.5]
    assert frame.index.is_monotonic_increasing
