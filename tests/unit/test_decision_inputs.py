"""The decision's per-name inputs read by position: each symbol's first row, NaN where none."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ibkr_assets.quant.compliance import LIQUIDITY, SECTOR_EXPOSURE, ComplianceLimits
from ibkr_assets.quant.decision import by_symbol, compliance_checks, cost_inputs, first_rows
from ibkr_assets.quant.risk_model import build_risk_model


def test_first_rows_finds_each_names_first_row_and_minus_one_without() -> None:
    symbols = pd.Series(["B", "A", "B", "C"], dtype="string")
    rows = first_rows(symbols, pd.Index(["A", "B", "Z", "B"], dtype="object"))
    assert rows.tolist() == [1, 0, -1, 0]
    assert first_rows(pd.Series([], dtype="string"), pd.Index(["A"])).tolist() == [-1]


def _model() -> object:
    rng = np.random.default_rng(3)
    closes = pd.DataFrame(
        100 * np.exp(np.cumsum(rng.normal(0, 0.01, (80, 3)), axis=0)),
        index=pd.bdate_range("2024-01-01", periods=80),
        columns=["A", "B", "C"],
    )
    return build_risk_model(closes)


def test_cost_inputs_take_the_first_quote_and_feature_row_and_leave_the_unknown_nan() -> None:
    quotes = pd.DataFrame(
        {
            "symbol": ["A", "B", "A"],
            "last": [np.nan, 20.0, 99.0],
            "close": [10.0, 19.0, 98.0],
            "bid": [9.9, 19.9, 1.0],
            "ask": [10.1, 20.3, 2.0],
        }
    )
    features = pd.DataFrame({"symbol": ["B", "A", "B"], "adv": [2e6, 1e6, 5.0]})
    got = cost_inputs(["A", "B", "C"], quotes, features, _model())
    assert got.loc["A", "price"] == 10.0  # no last trade: the previous close
    assert got.loc["B", "price"] == 20.0
    assert math.isclose(got.loc["B", "half_spread"], 0.2) and got.loc["B", "adv"] == 2e6
    assert got.loc["A", "adv"] == 1e6
    assert got.loc["C", ["price", "half_spread", "adv"]].isna().all()
    assert got["vol"].notna().all()


def test_the_gate_reads_each_symbols_first_sector_and_adv() -> None:
    universe = pd.DataFrame({"symbol": ["A", "B", "C", "A"], "sector": ["X", "X", "Y", "Y"]})
    features = pd.DataFrame({"symbol": ["A", "B", "C", "B"], "adv": [1e5, 1e9, 1e9, 1.0]})
    weights = pd.Series({"A": 0.3, "B": 0.3, "C": 0.1})
    limits = ComplianceLimits(sector_max=0.5, liquidity_max_adv=0.1)
    checks = {
        c.name: c
        for c in compliance_checks(
            weights, pd.Series(dtype="float64"), _model(), limits, universe, features, 1e6
        )
    }
    assert checks[SECTOR_EXPOSURE].offenders == ["X"] and checks[SECTOR_EXPOSURE].value == 0.6
    assert checks[LIQUIDITY].offenders == ["A"]  # $300k against A's first ADV, $100k
    assert checks[LIQUIDITY].value == 3.0


def test_by_symbol_is_each_symbols_first_row_as_drop_duplicates_gives() -> None:
    frame = pd.DataFrame(
        {
            "symbol": pd.array(["B", "A", "B", "C"], dtype="string"),
            "lot_size": [1, 100, 5, 10],
            "sector": pd.array(["X", "Y", "Z", None], dtype="string"),
        }
    )
    for column in ("lot_size", "sector"):
        expected = frame.drop_duplicates("symbol").set_index("symbol")[column]
        pd.testing.assert_series_equal(by_symbol(frame, column), expected, check_exact=True)
    assert by_symbol(frame, "lot_size").to_dict() == {"B": 1, "A": 100, "C": 10}
