"""Alpha scores: normalisation, evidence weights and blocks, macro reported only, drivers,
bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ibkr_assets.quant.alpha import (
    OUTPUT_COLUMNS,
    SIGNAL_BLOCKS,
    SIGNALS,
    TOP_DRIVERS,
    compute_alpha_scores,
    normalise,
    signal_matrix,
)

COLUMNS = list(SIGNALS)
#: evidence-style weights: signed, absolute values summing to 1
WEIGHTS = {"mom_12_1": 0.3, "rsi_signal": -0.2, "piotroski": 0.3, "sentiment_z": 0.2}


def _features(n: int = 50, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.standard_normal((n, len(COLUMNS))), columns=COLUMNS)
    return frame.assign(
        symbol=[f"S{i:02d}" for i in range(n)],
        piotroski=rng.integers(0, 10, n).astype(float),
        ma_cross=rng.choice([-1.0, 0.0, 0.0, 0.0, 1.0], n),
    )


def test_normalise_robust_zscore_by_hand() -> None:
    x = pd.Series([1.0, 2.0, 3.0, 4.0, 1000.0, np.nan])
    # median 3, |x - 3| = 2 1 0 1 997 -> MAD 1 -> scale 1.4826
    expected = np.tanh((np.array([1, 2, 3, 4, 1000]) - 3) / 1.4826 / 2)
    np.testing.assert_allclose(normalise(x), [*expected, 0.0])
    # The outlier is capped at 1 and does not squeeze the others (a plain z-score would).
    assert normalise(x)[4] <= 1.0 and normalise(x)[3] - normalise(x)[1] > 0.5
    np.testing.assert_allclose(normalise(x, "rank"), [-1, -0.5, 0, 0.5, 1, 0])
    # Mostly-zero flags fall back to the standard deviation; constants are neutral.
    flags = pd.Series([0.0, 0.0, 0.0, 1.0, -1.0])
    np.testing.assert_allclose(normalise(flags), np.tanh(flags / flags.std() / 2))
    assert (normalise(pd.Series([5.0] * 4)) == 0).all()
    with pytest.raises(ValueError, match="median"):
        normalise(x, "median")  # type: ignore[arg-type]


def test_score_is_the_weighted_sum_and_blocks_add_up_to_it() -> None:
    features = _features()
    out = compute_alpha_scores(features, WEIGHTS)
    assert list(out.columns) == list(OUTPUT_COLUMNS)
    assert list(out["symbol"]) == list(features["symbol"])
    tech = 0.3 * normalise(features["mom_12_1"]) - 0.2 * normalise(features["rsi_signal"])
    np.testing.assert_allclose(out["technical"], tech)
    np.testing.assert_allclose(out["fundamental"], 0.3 * normalise(features["piotroski"]))
    # The headline z-score is already standardised: tanh(z / 2), no cross-sectional step.
    np.testing.assert_allclose(out["sentiment"], 0.2 * np.tanh(features["sentiment_z"] / 2))
    np.testing.assert_allclose(
        out["alpha_score"], out["technical"] + out["fundamental"] + out["sentiment"]
    )
    for col in ("alpha_score", "technical", "fundamental", "sentiment"):
        assert out[col].between(-1, 1).all()
    # without evidence (no weights) every score and expected return is 0
    flat = compute_alpha_scores(features, {})
    assert (flat["alpha_score"] == 0).all() and (flat["expected_return"] == 0).all()
    assert set(signal_matrix(features).columns) == {c for b in SIGNAL_BLOCKS.values() for c in b}


def test_the_evidence_sign_decides_which_names_score_higher() -> None:
    features = _features().assign(forward_pe_rel_sector=0.0)
    features.loc[0, "forward_pe_rel_sector"] = -0.4  # cheap
    features.loc[1, "forward_pe_rel_sector"] = 0.6  # dear
    cheap_is_good = compute_alpha_scores(features, {"forward_pe_rel_sector": -1.0})
    out = cheap_is_good.set_index("symbol")
    assert out.loc["S00", "fundamental"] > 0 > out.loc["S01", "fundamental"]
    dear_is_good = compute_alpha_scores(features, {"forward_pe_rel_sector": 1.0})
    np.testing.assert_allclose(dear_is_good["alpha_score"], -cheap_is_good["alpha_score"])


def test_macro_is_reported_and_moves_nothing() -> None:
    features = _features()
    neutral = compute_alpha_scores(features, WEIGHTS, 0.02, macro_adjustment=0.0)
    risk_off = compute_alpha_scores(features, WEIGHTS, 0.02, macro_adjustment=-1.0)
    np.testing.assert_allclose(risk_off["alpha_score"], neutral["alpha_score"])
    np.testing.assert_allclose(risk_off["expected_return"], neutral["expected_return"])
    assert (risk_off["macro"] == -1.0).all()
    nan = compute_alpha_scores(features, WEIGHTS, macro_adjustment=float("nan"))
    assert (nan["macro"] == 0).all()
    with pytest.raises(ValueError, match="outside"):
        compute_alpha_scores(features, WEIGHTS, macro_adjustment=2.0)


def test_top_drivers_name_the_largest_contributions() -> None:
    # Constant fundamentals and sentiment contribute nothing (and are left out of the drivers).
    features = _features(n=20).assign(
        sentiment_z=0.0, piotroski=5.0, forward_pe_rel_sector=0.1, revenue_growth_flag=1.0
    )
    features.loc[3, "mom_12_1"] = 50.0  # huge momentum -> tanh near 1
    weights = {c: 0.1 for c in ("ma_signal", "ma_cross", "atr_breakout", "macd_hist_pct")}
    weights |= {"mom_12_1": 0.2, "vol_20d": -0.1, "piotroski": 0.1, "sentiment_z": 0.1}
    out = compute_alpha_scores(features, weights).set_index("symbol")
    drivers = out.loc["S03", "top_drivers"].split("; ")
    assert len(drivers) == TOP_DRIVERS == 5
    name, value = drivers[0].split(" ")
    assert name == "mom_12_1"
    median = features["mom_12_1"].median()
    scale = 1.4826 * (features["mom_12_1"] - median).abs().median()
    np.testing.assert_allclose(float(value), 0.2 * np.tanh((50.0 - median) / scale / 2), atol=5e-4)
    assert not any(d.startswith(("sentiment", "piotroski")) for d in drivers)
    values = [abs(float(d.split(" ")[1])) for d in drivers]
    assert values == sorted(values, reverse=True)


def test_mostly_zero_headline_scores_do_not_blow_up() -> None:
    # 45 names without news (z = 0) and five with a modest z of 1: each maps to tanh(0.5),
    # where a second cross-sectional standardisation would push them to ~1.
    features = _features().assign(sentiment_z=0.0)
    features.loc[:4, "sentiment_z"] = 1.0
    out = compute_alpha_scores(features, {"sentiment_z": 1.0})
    np.testing.assert_allclose(out["sentiment"][:5], np.tanh(0.5))
    assert (out["sentiment"][5:] == 0).all()
    assert normalise(features["sentiment_z"])[0] > 0.9


def test_nan_signals_are_neutral_and_bad_input_is_named() -> None:
    features = _features().assign(sentiment_z=np.nan)
    out = compute_alpha_scores(features, WEIGHTS)
    assert (out["sentiment"] == 0).all() and out["alpha_score"].notna().all()
    with pytest.raises(ValueError, match="piotroski"):
        compute_alpha_scores(features.drop(columns="piotroski"), WEIGHTS)
    # A signal without weight need not be present.
    compute_alpha_scores(features.drop(columns="piotroski"), {"mom_12_1": 1.0})
    with pytest.raises(ValueError, match="duplicate symbols"):
        compute_alpha_scores(pd.concat([features, features.head(1)]), WEIGHTS)
    with pytest.raises(ValueError, match="unknown signal"):
        compute_alpha_scores(features, {"alpha_decay": 0.5})
    with pytest.raises(ValueError, match="above 1"):
        compute_alpha_scores(features, {"mom_12_1": 0.8, "piotroski": -0.5})
