"""Great Expectations checks on the feature matrix: a clean frame passes; an injected NaN, a
negative price, a duplicate, a stale symbol or a thin universe fails and is named."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from ibkr_assets.checks.data_quality import (
    COVERAGE,
    FRESH,
    NO_NULLS,
    POSITIVE,
    UNIQUE,
    check_results,
    check_specs,
    validate_feature_matrix,
)

SESSION, PREVIOUS = date(2024, 4, 1), date(2024, 3, 28)
SYMBOLS = [f"S{i:02d}" for i in range(40)]


def _clean() -> pd.DataFrame:
    n = len(SYMBOLS)
    return pd.DataFrame(
        {
            "symbol": SYMBOLS,
            "price": np.linspace(10, 50, n),
            "adv": np.linspace(1e5, 1e6, n),
            "rsi_14": np.linspace(20, 80, n),
            "last_session": pd.Timestamp(PREVIOUS),
        }
    )


def _validate(frame: pd.DataFrame, universe: list[str] = SYMBOLS) -> dict:
    outcomes = validate_feature_matrix(
        frame, universe, SESSION, PREVIOUS, ["price", "adv", "rsi_14"], ["price", "adv"], 0.95
    )
    return {r.check_name: r for r in check_results(outcomes)}


def test_clean_matrix_passes_every_check() -> None:
    specs = check_specs("feature_matrix")
    assert {s.name for s in specs} == {NO_NULLS, POSITIVE, UNIQUE, FRESH, COVERAGE}
    assert all(s.blocking for s in specs), "a failed data check stops the downstream stages"
    results = _validate(_clean())
    assert set(results) == {NO_NULLS, POSITIVE, UNIQUE, FRESH, COVERAGE}
    assert all(r.passed for r in results.values()), {k: r.description for k, r in results.items()}


def test_injected_nan_and_negative_price_are_named() -> None:
    frame = _clean()
    frame.loc[3, "rsi_14"] = np.nan
    frame.loc[7, "price"] = -12.5
    results = _validate(frame)
    nulls, positive = results[NO_NULLS], results[POSITIVE]
    assert not nulls.passed and not positive.passed
    assert "expect_column_values_to_not_be_null(rsi_14)" in nulls.description
    assert "S03" in nulls.description and nulls.metadata["offending_symbols"].value == "S03"
    assert "expect_column_values_to_be_between(price)" in positive.description
    assert "S07" in positive.description and "S03" not in positive.description
    assert results[UNIQUE].passed and results[FRESH].passed and results[COVERAGE].passed


def test_duplicates_stale_rows_and_thin_universe_fail() -> None:
    frame = pd.concat([_clean(), _clean().iloc[[5]]], ignore_index=True)
    frame.loc[0, "last_session"] = pd.Timestamp("2024-03-27")  # stale
    frame.loc[1, "last_session"] = pd.Timestamp("2024-04-01")  # look-ahead
    results = _validate(frame, universe=[*SYMBOLS, "GONE1", "GONE2", "GONE3"])
    assert not results[UNIQUE].passed and "S05" in results[UNIQUE].description
    assert not results[FRESH].passed
    assert results[FRESH].metadata["offending_symbols"].value == "S00, S01"
    # 40 of 43 present = 93% < 95%
    assert not results[COVERAGE].passed
    assert "GONE1, GONE2, GONE3" in results[COVERAGE].metadata["offending_symbols"].value
    assert _validate(_clean(), universe=[*SYMBOLS, "GONE1"])[COVERAGE].passed, "40/41 = 97.6%"


def test_missing_required_column_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"lacks required column\(s\): \['rsi_14'\]"):
        _validate(_clean().drop(columns="rsi_14"))
