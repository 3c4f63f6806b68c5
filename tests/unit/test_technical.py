"""Technical features against direct TA-Lib calls on fixed bars."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib

from ibkr_assets.quant.technical import (
    FEATURE_COLUMNS,
    TechnicalParams,
    block_indicators,
    indicator_arrays,
    technical_features,
    technical_indicators,
)


def _bars(symbol: str, n: int, seed: int, drift: float = 0.0005) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(drift + 0.015 * rng.standard_normal(n)))
    open_ = close * np.exp(0.003 * rng.standard_normal(n))
    high = np.maximum(open_, close) * (1 + 0.01 * rng.random(n))
    low = np.minimum(open_, close) * (1 - 0.01 * rng.random(n))
    return pd.DataFrame(
        {
            "symbol": symbol,
            "session": pd.bdate_range("2024-01-02", periods=n),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.integers(100_000, 1_000_000, n).astype("float64"),
        }
    )


@pytest.fixture(scope="module")
def long_bars() -> pd.DataFrame:
    frame = pd.concat([_bars("AAA", 300, 1), _bars("BBB", 300, 2, -0.001), _bars("CCC", 60, 3)])
    return frame.sample(frac=1.0, random_state=0)  # order must not matter


def test_features_equal_direct_talib(long_bars: pd.DataFrame) -> None:
    features = technical_features(long_bars)
    assert list(features.index) == ["AAA", "BBB", "CCC"]
    for symbol in ("AAA", "BBB"):
        bars = long_bars.loc[long_bars["symbol"] == symbol].sort_values("session")
        h, lo, c, v = (bars[k].to_numpy() for k in ("high", "low", "close", "volume"))
        row = features.loc[symbol]
        fast, slow = talib.SMA(c, 20)[-1], talib.SMA(c, 50)[-1]
        atr = talib.ATR(h, lo, c, 14)[-1]
        rsi = talib.RSI(c, 14)[-1]
        hist = talib.MACD(c, 12, 26, 9)[2][-1]
        np.testing.assert_allclose(row["sma_fast"], fast, rtol=1e-12)
        np.testing.assert_allclose(row["ma_signal"], (fast - slow) / slow, rtol=1e-12)
        np.testing.assert_allclose(row["atr"], atr, rtol=1e-12)
        np.testing.assert_allclose(row["atr_pct"], atr / c[-1], rtol=1e-12)
        np.testing.assert_allclose(row["rsi"], rsi, rtol=1e-12)
        np.testing.assert_allclose(row["macd_hist_pct"], hist / c[-1], rtol=1e-12)
        np.testing.assert_allclose(row["mom_12_1"], c[-22] / c[-253] - 1, rtol=1e-12)
        # Realised vol against numpy's sample standard deviation.
        log_ret = np.diff(np.log(c))[-20:]
        np.testing.assert_allclose(row["vol_20d"], log_ret.std(ddof=1) * np.sqrt(252), rtol=1e-9)
        np.testing.assert_allclose(row["adv_20d"], (c * v)[-20:].mean(), rtol=1e-9)
        prior_high, prior_low = h[-21:-1].max(), lo[-21:-1].min()
        expected = float(c[-1] > prior_high + 0.5 * atr) - float(c[-1] < prior_low - 0.5 * atr)
        assert row["atr_breakout"] == expected
        assert row["last_session"] == bars["session"].iloc[-1]
        assert row["n_bars"] == 300
    # 60 bars: SMA50/RSI/ATR defined, 12-1 momentum needs 253 bars.
    short = features.loc["CCC"]
    assert np.isnan(short["mom_12_1"]) and not np.isnan(short["ma_signal"])
    assert list(features.columns) == [*FEATURE_COLUMNS, "last_session", "n_bars"]


def test_rsi_signal_and_breakout_on_constructed_paths() -> None:
    n = 120
    flat = 100 + 0.5 * np.sin(np.arange(n))
    rally = np.r_[flat[:-1], 110.0]  # last close far above the channel
    slide = np.r_[flat[:-15], 100 - np.arange(1, 16) * 1.5]  # steady fall: RSI very low
    for path, breakout in ((rally, 1.0), (slide, -1.0)):
        bars = pd.DataFrame({"high": path + 0.3, "low": path - 0.3, "close": path, "volume": 1e6})
        series = technical_indicators(bars)
        last = series.iloc[-1]
        assert last["atr_breakout"] == breakout
        rsi = talib.RSI(path, 14)[-1]
        if rsi > 70:
            np.testing.assert_allclose(last["rsi_signal"], -(rsi - 70) / 30)
        else:
            assert rsi < 30
            np.testing.assert_allclose(last["rsi_signal"], (30 - rsi) / 30)
        assert -1 <= last["rsi_signal"] <= 1
    assert (
        technical_indicators(
            pd.DataFrame({"high": flat + 0.3, "low": flat - 0.3, "close": flat, "volume": 1.0})
        ).iloc[-1]["atr_breakout"]
        == 0.0
    )


def test_cross_flag_marks_recent_crosses_only() -> None:
    # Falls for 60 sessions, then rises: the 5/10 averages cross upward once.
    close = np.r_[np.linspace(120, 100, 60), np.linspace(100, 130, 40)]
    bars = pd.DataFrame({"high": close + 1, "low": close - 1, "close": close, "volume": 1.0})
    params = TechnicalParams(sma_fast=5, sma_slow=10, cross_lookback=3)
    series = technical_indicators(bars, params)
    spread = talib.SMA(close, 5) - talib.SMA(close, 10)
    t_cross = int(np.flatnonzero((spread[1:] > 0) & (spread[:-1] <= 0))[0]) + 1
    flags = series["ma_cross"].to_numpy()
    assert (flags[t_cross : t_cross + 3] == 1).all()
    assert (flags[t_cross + 3 :] == 0).all() and (flags[10:t_cross] == 0).all()
    assert np.isnan(flags[:9]).all()


def test_bars_with_missing_prices_are_skipped() -> None:
    clean = _bars("AAA", 120, 4)
    broken = clean.copy()
    broken.loc[50, "close"] = np.nan  # one bad print mid-history
    broken.loc[60, "low"] = 0.0
    expected = technical_features(clean.drop(index=[50, 60]))
    got = technical_features(broken)
    pd.testing.assert_frame_equal(got, expected)
    assert np.isfinite(got.loc["AAA", ["atr", "rsi", "macd_hist_pct"]].to_numpy(float)).all()
    assert got.loc["AAA", "n_bars"] == 118


def test_bad_bars_are_named() -> None:
    with pytest.raises(ValueError, match="volume"):
        technical_features(_bars("AAA", 30, 1).drop(columns="volume"))
    twice = pd.concat([_bars("AAA", 30, 1), _bars("AAA", 30, 1).tail(1)])
    with pytest.raises(ValueError, match="duplicate bars for \\['AAA'\\]"):
        technical_features(twice)
    empty = technical_features(_bars("AAA", 30, 1).iloc[:0])
    assert empty.empty and list(empty.columns)[-2:] == ["last_session", "n_bars"]


def test_blocks_side_by_side_are_each_block_computed_alone() -> None:
    """Symbols' bars one after the other (a long history, a short one, one bar, a history that
    starts with a spike) give, block by block, bit for bit what each block gives alone: no
    look-back (lagged values, moving windows, TA-Lib's recursive averages) reads across a
    block's start."""
    blocks = [_bars("AAA", 300, 1), _bars("BBB", 40, 2), _bars("CCC", 1, 3), _bars("DDD", 80, 4)]
    blocks[3].loc[0, ["high", "close"]] = 500.0  # would show in the next block if it leaked
    columns = [pd.concat(blocks)[c].to_numpy() for c in ("high", "low", "close", "volume")]
    starts = np.cumsum([0, *(len(b) for b in blocks[:-1])])
    together = block_indicators(*columns, starts, TechnicalParams(mom_lookback=30, mom_skip=5))
    for block, a in zip(blocks, starts, strict=True):
        alone = indicator_arrays(
            *(block[c].to_numpy() for c in ("high", "low", "close", "volume")),
            TechnicalParams(mom_lookback=30, mom_skip=5),
        )
        for name in FEATURE_COLUMNS:
            mine = together[name][a : a + len(block)]
            assert mine.tobytes() == alone[name].tobytes(), (block["symbol"].iloc[0], name)
