"""One stock's risk, trend and position size against fixed inputs and independent
implementations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ibkr_assets.quant.stock_risk import (
    beta,
    fixed_fractional_size,
    log_returns,
    trailing_return,
    trend,
)


def test_log_returns_by_hand_and_bad_prices_named():
    np.testing.assert_allclose(
        log_returns(pd.Series([100.0, 101.0, 99.0])),
        [math.log(101 / 100), math.log(99 / 101)],
        rtol=1e-12,
    )
    with pytest.raises(ValueError, match=r"positive finite.*\[2\]"):
        log_returns(np.array([1.0, 2.0, 0.0]))


def test_beta_is_the_least_squares_slope_on_common_dates():
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
    # only the dates both have count: the benchmark's extra dates change nothing
    extra = pd.concat([m, pd.Series([1.0], index=[pd.Timestamp("2030-01-01")])])
    np.testing.assert_allclose(beta(s, extra), slope, rtol=1e-10)
    assert math.isnan(beta(s.iloc[:3], m))  # two common returns are too few
    flat = pd.Series(100.0, index=idx)
    assert math.isnan(beta(s, flat))


def test_trailing_return_counts_sessions_and_starts_at_the_first_price():
    p = pd.Series(np.arange(100.0, 130.0))  # 30 prices: 100 .. 129
    assert trailing_return(p, 21) == pytest.approx(129 / 108 - 1)
    assert trailing_return(p, 63) == pytest.approx(129 / 100 - 1)  # fewer: from the first
    assert trailing_return(p, 29) == pytest.approx(129 / 100 - 1)
    with pytest.raises(ValueError, match="periods must be >= 1"):
        trailing_return(p, 0)


@pytest.mark.parametrize(
    ("closes", "label", "slow"),
    [
        (np.linspace(50, 150, 250), "up", True),
        (np.linspace(150, 50, 250), "down", True),
        # rising for 230 sessions then a drop below SMA50 but not below SMA200
        (np.r_[np.linspace(50, 150, 230), np.full(20, 110.0)], "sideways", True),
        (np.linspace(50, 60, 40), "up", False),  # no SMA200: price vs SMA50 only
        (np.linspace(60, 50, 40), "down", False),
    ],
)
def test_trend(closes, label, slow):
    t = trend(pd.Series(closes))
    assert t.label == label
    assert t.sma_fast == pytest.approx(closes[-50:].mean())
    if slow:
        assert t.sma_slow == pytest.approx(closes[-200:].mean())
    else:
        assert t.sma_slow is None


@pytest.mark.parametrize(
    ("budget", "stop", "price", "funds", "lot", "shares", "limited_by"),
    [
        (5_000, 4.0, 100.0, 1e6, 1, 1250, "risk"),
        (5_000, 4.0, 100.0, 50_000, 1, 500, "available_funds"),
        (5_000, 4.0, 100.0, 1e6, 100, 1200, "risk"),  # round lots, down
        (5_000, 4.0, 100.0, -10.0, 1, 0, "available_funds"),  # negative funds buy nothing
    ],
)
def test_fixed_fractional_size(budget, stop, price, funds, lot, shares, limited_by):
    size = fixed_fractional_size(budget, stop, price, funds, lot)
    assert (size.shares, size.limited_by) == (shares, limited_by)
    assert size.shares * stop <= budget  # the loss at the stop never exceeds the budget


@pytest.mark.parametrize(
    ("stop", "price", "lot", "message"),
    [
        (0.0, 100.0, 1, "stop distance"),
        (float("nan"), 100.0, 1, "stop distance"),
        (4.0, 0.0, 1, "price"),
        (4.0, 100.0, 0, "lot"),
    ],
)
def test_fixed_fractional_size_refuses_what_cannot_size(stop, price, lot, message):
    with pytest.raises(ValueError, match=message):
        fixed_fractional_size(5_000, stop, price, 1e6, lot)
