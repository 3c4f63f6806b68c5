import math

import numpy as np
import pandas as pd
import pytest

from ibkr_assets.quant.performance import (
    annualised_volatility,
    equity_curve,
    hit_rate,
    max_drawdown,
    sharpe_ratio,
    sortino_ratio,
    summarise,
    turnover,
)

IDX = pd.bdate_range("2026-01-05", periods=6)


def test_known_sharpe_and_sortino():
    r = pd.Series([0.02, 0.0, 0.02, 0.0])
    # mean 0.01, sample std sqrt(4e-4 / 3)
    assert sharpe_ratio(r) == pytest.approx(0.01 / math.sqrt(4e-4 / 3) * math.sqrt(252))
    r2 = pd.Series([0.03, -0.01, 0.02, -0.02])
    # mean 0.005, downside deviation sqrt((0.0001 + 0.0004) / 4)
    assert sortino_ratio(r2) == pytest.approx(0.005 / math.sqrt(0.0005 / 4) * math.sqrt(252))
    assert sortino_ratio(r) == math.inf
    assert math.isnan(sharpe_ratio(pd.Series([0.01, 0.01])))
    assert hit_rate(pd.Series([0.01, 0.0, -0.02, 0.03])) == pytest.approx(2 / 3)


def test_annualised_volatility_by_hand():
    r = [0.01, -0.02, 0.015, 0.0]
    mean = sum(r) / 4
    by_hand = math.sqrt(sum((x - mean) ** 2 for x in r) / 3) * math.sqrt(252)
    assert annualised_volatility(pd.Series(r)) == pytest.approx(by_hand, rel=1e-12)
    assert annualised_volatility(np.array(r), periods_per_year=52) == pytest.approx(
        by_hand / math.sqrt(252) * math.sqrt(52), rel=1e-12
    )
    assert math.isnan(annualised_volatility(pd.Series([0.01])))
    with pytest.raises(ValueError, match=r"NaN or infinite returns at positions \[1\]"):
        annualised_volatility(pd.Series([0.01, np.nan, 0.02]))


def test_known_drawdown_and_duration():
    equity = pd.Series([1.0, 1.1, 0.99, 0.88, 1.0, 1.12], index=IDX)
    dd = max_drawdown(equity)
    assert dd.max_drawdown == pytest.approx(0.2)
    assert (dd.peak, dd.trough, dd.recovery) == (IDX[1], IDX[3], IDX[5])
    assert dd.duration == 4
    open_dd = max_drawdown(equity.iloc[:5])
    assert open_dd.recovery is None and open_dd.duration == 3
    assert max_drawdown(pd.Series([1.0, 1.1, 1.2])).max_drawdown == 0.0
    # a price path: a positive fraction of the running peak (120 -> 90 is 25%)
    prices = pd.Series([100.0, 120.0, 90.0, 130.0, 117.0])
    assert max_drawdown(prices).max_drawdown == pytest.approx(1 - 90 / 120)


def test_equity_curve_costs_lower_returns():
    r = pd.Series([0.1, -0.1, 0.1, -0.18181818181818182, 0.12], index=IDX[1:])
    t = pd.Series([1.0, 0.0, 0.5, 0.0, 0.2], index=IDX[1:])
    free = equity_curve(r)
    np.testing.assert_allclose(free["equity"], [1.1, 0.99, 1.089, 0.891, 0.99792])
    np.testing.assert_allclose(free["drawdown"].iloc[3], 1 - 0.891 / 1.1)
    costly = equity_curve(r, t, cost_per_turnover=0.001)
    np.testing.assert_allclose(costly["cost"], [0.001, 0.0, 0.0005, 0.0, 0.0002])
    np.testing.assert_allclose(costly["net_return"], r - costly["cost"])
    assert (costly["equity"] < free["equity"]).all()
    with pytest.raises(ValueError, match="NaN or infinite returns"):
        equity_curve(r.replace(0.12, np.nan))


def test_turnover_and_summary():
    w = pd.DataFrame({"A": [0.5, 0.5, 0.2], "B": [0.0, 0.3, 0.3]}, index=IDX[:3])
    np.testing.assert_allclose(turnover(w), [0.5, 0.3, 0.3])
    np.testing.assert_allclose(turnover(w, pd.Series({"A": 0.5})), [0.0, 0.3, 0.3])
    r = pd.Series([0.01, -0.02, 0.015], index=IDX[:3])
    s = summarise(r, turnover(w), cost_per_turnover=0.001)
    net = r - 0.001 * np.array([0.5, 0.3, 0.3])
    assert s.periods == 3
    assert s.total_return == pytest.approx(np.prod(1 + net) - 1)
    assert s.sharpe == pytest.approx(net.mean() / net.std(ddof=1) * math.sqrt(252))
    assert s.annual_volatility == pytest.approx(net.std(ddof=1) * math.sqrt(252))
    assert s.max_drawdown == pytest.approx(
        1 - (1 + net.iloc[0]) * (1 + net.iloc[1]) / (1 + net.iloc[0])
    )
    assert s.total_cost == pytest.approx(0.0011)
    assert s.average_turnover == pytest.approx((0.3 + 0.3) / 2 / 2)  # one side, not day one
    assert s.hit_rate == pytest.approx(2 / 3)
    first_day_loss = summarise(pd.Series([-0.1, 0.05]))
    assert first_day_loss.max_drawdown == pytest.approx(0.1)
