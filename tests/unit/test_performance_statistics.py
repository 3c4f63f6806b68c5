"""The backtest's statistics against fixed inputs and independent implementations: one-side
turnover, buy-and-hold benchmarks, beta (numpy's least squares), the excess return's t-statistic
(scipy's one-sample t-test), the stationary bootstrap's interval (Lo's 2002 asymptotic standard
error) and the deflated Sharpe ratio (Bailey & López de Prado 2014's own numerical example)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ibkr_assets.quant.performance import (
    average_one_way_turnover,
    beta,
    buy_and_hold_returns,
    deflated_sharpe_ratio,
    excess_return,
    expected_max_sharpe,
    probabilistic_sharpe_ratio,
    sharpe_interval,
    sharpe_ratio,
    stationary_bootstrap_indices,
)

IDX = pd.bdate_range("2026-01-05", periods=4)


def test_turnover_is_one_side_without_the_first_day():
    # day one invests the cash (both sides 1.0); then 0.2 and 0.4 traded both sides
    assert average_one_way_turnover(pd.Series([1.0, 0.2, 0.4])) == pytest.approx(0.15)
    assert math.isnan(average_one_way_turnover(pd.Series([1.0])))
    with pytest.raises(ValueError, match="negative turnover"):
        average_one_way_turnover(pd.Series([1.0, -0.1]))


def test_buy_and_hold_drifts_and_fills_gaps():
    closes = pd.DataFrame(
        {"A": [10.0, 11.0, 12.1, np.nan], "B": [20.0, 18.0, 18.0, 19.8]}, index=IDX
    )
    r = buy_and_hold_returns(closes)
    # half in each at the first close: value 1, (1.1 + 0.9)/2, (1.21 + 0.9)/2, (1.21 + 0.99)/2
    value = np.array([1.0, 1.0, 1.055, 1.1])
    np.testing.assert_allclose(r.to_numpy(), value[1:] / value[:-1] - 1, rtol=1e-12)
    assert list(r.index) == list(IDX[1:])
    with pytest.raises(ValueError, match=r"no positive first close for \['C'\]"):
        buy_and_hold_returns(closes.assign(C=[np.nan, 1.0, 1.0, 1.0]))


@pytest.fixture
def paired() -> tuple[pd.Series, pd.Series]:
    """250 sessions of a strategy with a 0.6 beta and a small edge over its benchmark."""
    rng = np.random.default_rng(3)
    idx = pd.bdate_range("2025-01-02", periods=250)
    market = pd.Series(rng.normal(0.0004, 0.011, len(idx)), index=idx)
    own = pd.Series(0.6 * market + rng.normal(0.0006, 0.006, len(idx)), index=idx)
    return own, market


def test_beta_and_excess_return_against_numpy_and_scipy(paired):
    own, market = paired
    assert beta(own, market) == pytest.approx(np.polyfit(market, own, 1)[0], rel=1e-10)
    # only the dates both have count
    assert beta(own, market.iloc[10:]) == pytest.approx(
        np.polyfit(market.iloc[10:], own.iloc[10:], 1)[0], rel=1e-10
    )
    e = excess_return(own, market)
    d = own - market
    assert e.annualised == pytest.approx(d.mean() * 252, rel=1e-12)
    assert e.t_stat == pytest.approx(stats.ttest_1samp(d, 0.0).statistic, rel=1e-10)
    assert e.periods == 250
    assert math.isnan(beta(own.iloc[:2], market.iloc[:2]))


def test_stationary_bootstrap_draws_blocks():
    rng = np.random.default_rng(1)
    # an enormous mean block: every resample is one block, a circular run of the series
    runs = stationary_bootstrap_indices(50, 20, 1e12, rng)
    np.testing.assert_array_equal((runs[:, 1:] - runs[:, :-1]) % 50, 1)
    # mean block 4: about a quarter of the positions start a new block (or jump by chance)
    index = stationary_bootstrap_indices(400, 500, 4.0, np.random.default_rng(2))
    jumps = ((index[:, 1:] - index[:, :-1]) % 400 != 1).mean()
    assert jumps == pytest.approx(0.25 * (1 - 1 / 400), abs=0.01)
    with pytest.raises(ValueError, match="mean_block must be >= 1"):
        stationary_bootstrap_indices(10, 10, 0.5, rng)


def test_sharpe_interval_is_seeded_and_as_wide_as_the_theory_says():
    rng = np.random.default_rng(7)
    r = pd.Series(rng.normal(0.0008, 0.01, 1000))
    a = sharpe_interval(r, seed=5)
    assert a == sharpe_interval(r, seed=5), "seeded: a rerun gives the same interval"
    assert a != sharpe_interval(r, seed=6)
    assert "stationary bootstrap" in a.method and "seed 5" in a.method
    point = sharpe_ratio(r)
    assert a.low < point < a.high
    # Lo (2002): the annualised Sharpe's standard error for i.i.d. normal returns
    daily = point / math.sqrt(252)
    se = math.sqrt((1 + daily**2 / 2) / len(r)) * math.sqrt(252)
    assert a.high - a.low == pytest.approx(2 * 1.959964 * se, rel=0.15)
    short = sharpe_interval(pd.Series([0.01, 0.02]))
    assert math.isnan(short.low) and math.isnan(short.high)


def test_deflated_sharpe_reproduces_bailey_and_lopez_de_prado():
    # their 2014 example: 100 trials with an annualised Sharpe variance of 1/2, a best
    # annualised Sharpe of 2.5 over 1,250 daily returns (250 a year), skewness -3, kurtosis 10
    sr0 = expected_max_sharpe(100, 0.5 / 250)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    dsr = probabilistic_sharpe_ratio(2.5 / math.sqrt(250), 1250, -3.0, 10.0, sr0)
    assert dsr == pytest.approx(0.9004, abs=5e-4)
    assert expected_max_sharpe(1, 0.5) == 0.0


def test_deflated_sharpe_of_returns_by_hand():
    rng = np.random.default_rng(9)
    r = pd.Series(rng.standard_t(5, 300) * 0.01 + 0.001)
    x = r.to_numpy()
    sr = x.mean() / x.std(ddof=1)
    g3, g4 = stats.skew(x), stats.kurtosis(x, fisher=False)
    spread = 1 - g3 * sr + (g4 - 1) / 4 * sr**2
    # one try: the probability the true Sharpe is above 0
    psr = stats.norm.cdf(sr * math.sqrt(299) / math.sqrt(spread))
    assert deflated_sharpe_ratio(r) == pytest.approx(psr, rel=1e-12)
    # five tries whose annualised Sharpes are given: their variance sets the bar
    tries = [0.5, 1.0, 1.5, 2.0, 2.5]
    v = np.var(np.array(tries) / math.sqrt(252), ddof=1)
    bar = math.sqrt(v) * (
        (1 - np.euler_gamma) * stats.norm.ppf(1 - 1 / 5)
        + np.euler_gamma * stats.norm.ppf(1 - 1 / (5 * math.e))
    )
    want = stats.norm.cdf((sr - bar) * math.sqrt(299) / math.sqrt(spread))
    assert deflated_sharpe_ratio(r, 5, tries) == pytest.approx(want, rel=1e-12)
    # more tries, a higher bar, a lower probability
    assert deflated_sharpe_ratio(r, 50) < deflated_sharpe_ratio(r, 5) < deflated_sharpe_ratio(r)
    assert math.isnan(deflated_sharpe_ratio(pd.Series([0.01, 0.01, 0.01])))
