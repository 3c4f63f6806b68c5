import numpy as np
import pandas as pd
import pytest
from sklearn.covariance import LedoitWolf, ledoit_wolf

from ibkr_assets.quant.risk_model import build_risk_model, daily_returns, ledoit_wolf_shrinkage


def _panel(n_sessions: int = 300, n_symbols: int = 5, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rets = rng.normal(0.0005, 0.01, size=(n_sessions, n_symbols))
    closes = 100 * np.cumprod(1 + rets, axis=0)
    idx = pd.bdate_range("2025-01-01", periods=n_sessions)
    return pd.DataFrame(closes, index=idx, columns=[f"S{i}" for i in range(n_symbols)])


def test_daily_returns_match_numpy():
    closes = _panel(10, 3)
    expected = closes.to_numpy()[1:] / closes.to_numpy()[:-1] - 1
    np.testing.assert_allclose(daily_returns(closes).to_numpy(), expected, rtol=1e-12)


def test_cov_matches_sklearn_on_demeaned_returns_and_is_annualised():
    closes = _panel()
    model = build_risk_model(closes, scenario_sessions=200)
    r = daily_returns(closes).iloc[-200:].to_numpy()
    expected, shrink = ledoit_wolf(r - r.mean(axis=0), assume_centered=True)
    np.testing.assert_allclose(model.cov.to_numpy(), expected * 252, rtol=1e-10)
    np.testing.assert_allclose(model.daily_cov().to_numpy(), expected, rtol=1e-10)
    # The same as sklearn's own centring.
    np.testing.assert_allclose(LedoitWolf().fit(r).covariance_ * 252, model.cov, rtol=1e-10)
    assert model.shrinkage == pytest.approx(shrink)
    assert model.scenarios.shape == (200, 5)
    np.testing.assert_allclose(model.scenarios.to_numpy(), r, rtol=1e-12)
    np.testing.assert_allclose(model.mean.to_numpy(), r.mean(axis=0) * 252, rtol=1e-10)
    # One-day volatility: the daily covariance's diagonal, square-rooted, by symbol.
    np.testing.assert_allclose(model.daily_volatility(), np.sqrt(np.diag(expected)), rtol=1e-10)
    assert list(model.daily_volatility().index) == model.symbols
    # Shrinkage moves the matrix between the sample covariance and the identity target.
    sample = np.cov(r, rowvar=False, bias=True)
    assert 0 < model.shrinkage < 1
    assert not np.allclose(expected, sample)


def test_short_history_symbol_dropped_with_reason_and_gaps_filled():
    closes = _panel(300, 4)
    closes.loc[closes.index[:280], "S3"] = np.nan  # listed 20 sessions ago
    closes.loc[closes.index[150], "S1"] = np.nan  # one missing close -> two missing returns
    model = build_risk_model(closes, scenario_sessions=250, min_history=60)
    assert model.symbols == ["S0", "S1", "S2"]
    assert "S3" in model.dropped and "19 valid daily returns" in model.dropped["S3"]
    assert not model.scenarios.isna().any().any()
    r1 = daily_returns(closes)["S1"].iloc[-250:]
    filled = model.scenarios["S1"]
    assert r1.isna().sum() == 2
    np.testing.assert_allclose(filled[r1.isna()].to_numpy(), r1.mean(), rtol=1e-12)
    sub = model.subset(["S2", "S0"])
    assert list(sub.cov.index) == ["S2", "S0"]
    with pytest.raises(KeyError, match="S3"):
        model.subset(["S3"])


def test_bad_inputs_name_the_problem():
    closes = _panel(100, 3)
    closes.iloc[5, 1] = -1.0
    with pytest.raises(ValueError, match="non-positive close prices for \\['S1'\\]"):
        build_risk_model(closes)
    with pytest.raises(ValueError, match="no symbol has 60 valid returns"):
        build_risk_model(_panel(30, 3))


@pytest.mark.parametrize(("sessions", "names"), [(120, 300), (300, 20)])
def test_the_factor_form_is_sklearn_s_ledoit_wolf_without_an_n_by_n_product(sessions, names):
    """More names than sessions (the shrinkage's Frobenius norm from the sessions' Gram
    matrix) and fewer: the same shrinkage and target as scikit-learn, and the loadings and
    ridge rebuild its matrix; a block of names is the block of the matrix."""
    closes = _panel(sessions + 1, names, seed=3)
    model = build_risk_model(closes, scenario_sessions=sessions)
    r = daily_returns(closes).to_numpy()
    x = r - r.mean(axis=0)
    expected, shrink = ledoit_wolf(x, assume_centered=True)
    assert ledoit_wolf_shrinkage(x) == pytest.approx((shrink, np.trace(expected) / names))
    assert model.shrinkage == pytest.approx(shrink, rel=1e-12)
    loadings = model.loadings
    assert loadings.shape == (sessions, names)
    rebuilt = loadings.T @ loadings + model.ridge * np.eye(names)
    np.testing.assert_allclose(rebuilt, expected, rtol=1e-10, atol=1e-16)
    picked = ["S7", "S2", "S11"]
    block = model.daily_cov(picked)
    assert list(block.index) == picked and list(block.columns) == picked
    np.testing.assert_allclose(block, model.daily_cov().loc[picked, picked], rtol=1e-12)
    np.testing.assert_allclose(model.subset(picked).daily_cov(), block, rtol=1e-12)
    np.testing.assert_allclose(model.daily_volatility(), np.sqrt(np.diag(expected)), rtol=1e-10)
    with pytest.raises(KeyError, match="ZZZ"):
        model.daily_cov(["S1", "ZZZ"])
