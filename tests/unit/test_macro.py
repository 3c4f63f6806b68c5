"""Macro regime features on fixed synthetic gauges."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ibkr_assets.quant.macro import (
    FEATURE_COLUMNS,
    REGIME_LABELS,
    latest_regime,
    macro_features,
    window_regimes,
)


def _history(n: int = 120, *, crash: bool = False) -> pd.DataFrame:
    sessions = pd.bdate_range("2025-01-02", periods=n, name="session")
    t = np.arange(n, dtype="float64")
    spy = 500 * 1.002**t
    qqq = 400 * 1.003**t
    vix = 15 + np.sin(t / 5)
    if crash:
        spy[-20:] = spy[-21] * np.linspace(1.0, 0.85, 20)
        qqq[-20:] = qqq[-21] * np.linspace(1.0, 0.80, 20)
        vix[-10:] = 40.0
    return pd.DataFrame(
        {
            "ten_year_yield": 4.0 + 0.001 * t,
            "eurusd": np.full(n, 1.08),
            "crude": np.full(n, 75.0),
            "vix": vix,
            "spy": spy,
            "qqq": qqq,
        },
        index=sessions,
    )


def test_features_match_hand_computation() -> None:
    history = _history()
    features = macro_features(history)
    assert list(features.columns) == list(FEATURE_COLUMNS)
    last = features.iloc[-1]
    spy = history["spy"]
    np.testing.assert_allclose(last["spy_trend"], spy.iloc[-1] / spy.iloc[-50:].mean() - 1)
    qqq = history["qqq"]
    rs = qqq.iloc[-1] / qqq.iloc[-21] - spy.iloc[-1] / spy.iloc[-21]
    np.testing.assert_allclose(last["qqq_spy_rs"], rs)
    np.testing.assert_allclose(last["ten_year_chg_20d"], 0.020, atol=1e-12)
    vix = history["vix"].iloc[-60:]
    np.testing.assert_allclose(last["vix_z"], (vix.iloc[-1] - vix.mean()) / vix.std())
    # Score = weighted mean of the tanh-mapped components (all six present).
    comps = {
        0.30: -np.tanh(last["vix_z"]),
        0.25: np.tanh(last["spy_trend"] / 0.03),
        0.15: np.tanh(rs / 0.03) + -np.tanh(0.020 / 0.25),
        0.10: -np.tanh(0.0),
        0.05: np.tanh(0.0),
    }
    expected = sum(w * v for w, v in comps.items())
    np.testing.assert_allclose(last["risk_score"], expected)
    np.testing.assert_allclose(last["equity_exposure"], 0.75 + 0.25 * expected)


def test_uptrend_is_risk_on_and_crash_is_risk_off() -> None:
    calm = latest_regime(macro_features(_history()))
    crash = latest_regime(macro_features(_history(crash=True)))
    assert calm.label == REGIME_LABELS[1]
    assert crash.label == REGIME_LABELS[-1]
    assert 0.5 <= crash.equity_exposure < calm.equity_exposure <= 1.0
    assert -1.0 <= crash.macro_adjustment < 0 < calm.macro_adjustment <= 1.0


def test_missing_gauges_are_left_out_not_fatal() -> None:
    history = _history()[["spy", "vix"]]
    features = macro_features(history)
    assert features["crude_chg_20d"].isna().all()
    assert features["risk_score"].iloc[-1] == pytest.approx(
        (
            0.30 * -np.tanh(features["vix_z"].iloc[-1])
            + 0.25 * np.tanh(features["spy_trend"].iloc[-1] / 0.03)
        )
        / 0.55
    )
    # Early sessions without enough history have no score, and no regime.
    assert np.isnan(features["risk_score"].iloc[0]) and np.isnan(features["regime"].iloc[0])
    empty = latest_regime(macro_features(history.iloc[:5]))
    assert (empty.label, empty.equity_exposure, empty.macro_adjustment) == ("neutral", 1.0, 0.0)


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="gold"):
        macro_features(_history().assign(gold=1.0))
    with pytest.raises(ValueError, match="sorted"):
        macro_features(_history().iloc[::-1])


def test_window_regimes_are_each_windows_own() -> None:
    """Every window's regime equals the regime computed on that window alone: long windows
    (read from the whole history's features), short ones and ones whose last scored row sits
    near their start (computed alone), with gaps in the gauges."""
    history = _history(300, crash=True)
    rng = np.random.default_rng(7)
    history.loc[history.index[rng.choice(300, 40, replace=False)], "vix"] = np.nan
    history.loc[history.index[200:290], ["vix", "spy", "qqq", "crude", "eurusd"]] = np.nan
    history.loc[history.index[200:290], "ten_year_yield"] = np.nan
    sessions = history.index
    windows = [(sessions[max(0, e - 120)], sessions[e]) for e in range(1, 300, 7)]
    windows += [(sessions[150], sessions[299]), (sessions[0], sessions[299] + pd.Timedelta(days=1))]
    got = window_regimes(history, windows)
    for (first, end), regime in zip(windows, got, strict=True):
        alone = history.loc[(sessions >= first) & (sessions < end)]
        want = latest_regime(macro_features(alone))
        assert regime.session == want.session and regime.label == want.label
        np.testing.assert_allclose(
            [regime.risk_score, regime.equity_exposure, regime.macro_adjustment],
            [want.risk_score, want.equity_exposure, want.macro_adjustment],
            rtol=1e-12,
            atol=1e-14,
        )
    # the window (sessions[150], sessions[299]): last scored row 199, 49 rows in: computed alone
    assert got[-2].session == sessions[199]
