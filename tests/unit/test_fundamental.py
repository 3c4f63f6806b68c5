"""Piotroski F-score against a hand-worked example; forward P/E and revenue growth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ibkr_assets.quant.fundamental import (
    CRITERIA,
    FEATURE_COLUMNS,
    forward_pe,
    fundamental_features,
    piotroski_fscore,
    statement_history,
    statement_metrics,
)

QUARTER_ENDS = pd.to_datetime(
    ["2023-03-31", "2023-06-30", "2023-09-30", "2023-12-31",
     "2024-03-31", "2024-06-30", "2024-09-30", "2024-12-31"]
)  # fmt: skip


def _hand_example() -> pd.DataFrame:
    """Eight quarters of 'HAND'. Flows per quarter: 2023 revenue 100, gross profit 40, net
    income 5, CFO 6; 2024 revenue 125, gross profit 55, net income 10, CFO 15. Stocks at
    2023Q4 and 2024Q4 are what the criteria compare; the other quarters are noise."""
    y23, y24 = [0, 1, 2, 3], [4, 5, 6, 7]
    revenue = np.where(np.isin(range(8), y23), 100.0, 125.0)
    rows = {
        "symbol": "HAND",
        "period_end": QUARTER_ENDS,
        "report_date": QUARTER_ENDS + pd.Timedelta(days=30),
        "revenue": revenue,
        "gross_profit": np.where(np.isin(range(8), y24), 55.0, 40.0),
        "net_income": np.where(np.isin(range(8), y24), 10.0, 5.0),
        "operating_cash_flow": np.where(np.isin(range(8), y24), 15.0, 6.0),
        "total_assets": [900.0, 950.0, 980.0, 1000.0, 1050.0, 1100.0, 1150.0, 1200.0],
        "long_term_debt": [240.0, 240.0, 250.0, 250.0, 300.0, 310.0, 320.0, 330.0],
        "current_assets": [250.0, 250.0, 255.0, 260.0, 270.0, 280.0, 290.0, 300.0],
        "current_liabilities": [200.0] * 8,
        "shares_outstanding": [100.0, 100.0, 100.0, 100.0, 101.0, 102.0, 104.0, 105.0],
    }
    return pd.DataFrame(rows)


def test_piotroski_hand_worked_example() -> None:
    statements = pd.concat([_hand_example(), _hand_example().iloc[1:].assign(symbol="SHORT")])
    scores = piotroski_fscore(statements)
    hand = scores.loc["HAND"]
    # Average assets: current (1200 + 1000) / 2 = 1100; a year earlier 2022Q4 is unknown, so
    # the year-earlier ratios use 2023Q4 assets alone = 1000.
    # 1 ROA = TTM NI 4*10 = 40 / 1100 = 0.0364 > 0                        -> 1
    # 2 CFO = 4*15 = 60 > 0                                                -> 1
    # 3 ROA 0.0364 vs a year earlier 4*5 = 20 / 1000 = 0.0200 -> higher   -> 1
    # 4 CFO/assets 60 / 1100 = 0.0545 > ROA 0.0364                        -> 1
    # 5 leverage 330 / 1100 = 0.300 vs 250 / 1000 = 0.250 -> rose         -> 0
    # 6 current ratio 300 / 200 = 1.50 vs 260 / 200 = 1.30 -> rose        -> 1
    # 7 shares 105 vs 100 -> new shares issued                            -> 0
    # 8 gross margin 4*55 / 4*125 = 220 / 500 = 0.44 vs 160 / 400 = 0.40 -> 1
    # 9 asset turnover 500 / 1100 = 0.4545 vs 400 / 1000 = 0.40          -> 1
    expected = [1, 1, 1, 1, 0, 1, 0, 1, 1]
    np.testing.assert_array_equal(hand[list(CRITERIA)].to_numpy(dtype=float), expected)
    assert hand["piotroski"] == 7 and hand["piotroski_available"] == 9
    # Seven quarters: one TTM window, so no score; the level tests (1, 2, 4) and the balance-sheet
    # comparisons with 2023Q4 (5, 6, 7) have inputs, the TTM-on-TTM ones (3, 8, 9) do not.
    short = scores.loc["SHORT"]
    assert np.isnan(short["piotroski"]) and short["piotroski_available"] == 6
    assert short[["f_roa", "f_cfo", "f_accrual"]].tolist() == [1.0, 1.0, 1.0]
    assert short[["f_delta_roa", "f_delta_margin", "f_delta_turnover"]].isna().all()


def test_only_reports_known_as_of_the_date_are_used() -> None:
    statements = _hand_example()
    before_last = QUARTER_ENDS[-1] + pd.Timedelta(days=29)
    assert np.isnan(piotroski_fscore(statements, as_of=before_last).loc["HAND", "piotroski"])
    on_report = piotroski_fscore(statements, as_of=QUARTER_ENDS[-1] + pd.Timedelta(days=30))
    assert on_report.loc["HAND", "piotroski"] == 7
    aware = pd.Timestamp("2025-01-30 09:00", tz="America/New_York")  # the report day
    assert piotroski_fscore(statements, as_of=aware).loc["HAND", "piotroski"] == 7
    # A quarter gap (a missing filing) breaks the TTM window instead of summing 5 quarters.
    gapped = statements.drop(index=5)
    assert np.isnan(piotroski_fscore(gapped).loc["HAND", "f_roa"])


def test_restatement_counts_only_once_it_is_reported() -> None:
    original = _hand_example()
    restated = original.tail(1).assign(
        report_date=QUARTER_ENDS[-1] + pd.Timedelta(days=90), net_income=-100.0
    )
    statements = pd.concat([original, restated], ignore_index=True)
    before = piotroski_fscore(statements, as_of=QUARTER_ENDS[-1] + pd.Timedelta(days=60))
    after = piotroski_fscore(statements, as_of=QUARTER_ENDS[-1] + pd.Timedelta(days=90))
    assert before.loc["HAND", "f_roa"] == 1.0 and before.loc["HAND", "piotroski"] == 7
    # Restated TTM net income 10 + 10 + 10 - 100 = -70: ROA < 0, ROA fell, and CFO 60 > -70.
    assert after.loc["HAND", ["f_roa", "f_delta_roa", "f_accrual"]].tolist() == [0.0, 0.0, 1.0]
    assert after.loc["HAND", "piotroski"] == 5


def test_forward_pe_relative_to_sector() -> None:
    idx = ["A", "B", "C", "D", "E"]
    price = pd.Series([100.0, 200.0, 300.0, 50.0, 40.0], index=idx)
    eps = pd.Series([10.0, 10.0, 10.0, -2.0, 4.0], index=idx)
    sector = pd.Series(["Tech", "Tech", "Tech", "Tech", "Energy"], index=idx)
    out = forward_pe(price, eps, sector)
    np.testing.assert_allclose(out["forward_pe"], [10, 20, 30, np.nan, 10])
    np.testing.assert_allclose(out["forward_pe_sector_median"], [20, 20, 20, 20, 10])
    np.testing.assert_allclose(out["forward_pe_rel_sector"], [-0.5, 0, 0.5, np.nan, 0])
    np.testing.assert_allclose(out["forward_earnings_yield"], [0.1, 0.05, 1 / 30, -0.04, 0.1])


def test_fundamental_features_row_per_symbol() -> None:
    symbols = ["HAND", "NODATA"]
    price = pd.Series([100.0, 50.0], index=symbols)
    out = fundamental_features(
        statement_metrics(_hand_example()),
        forward_eps=pd.Series([5.0, 2.0], index=symbols),
        price=price,
        sector=pd.Series(["Tech", "Tech"], index=symbols),
        symbols=symbols,
    )
    assert list(out.columns) == list(FEATURE_COLUMNS) and list(out.index) == symbols
    # TTM revenue 500 vs 400: +25% -> above the 15% screen.
    assert out.loc["HAND", "revenue_growth_yoy"] == pytest.approx(0.25)
    assert out.loc["HAND", "revenue_growth_flag"] == 1.0
    assert (
        np.isnan(out.loc["NODATA", "piotroski"]) and out.loc["NODATA", "piotroski_available"] == 0
    )
    assert out.loc["NODATA", "forward_pe"] == 25.0


def test_missing_column_is_named() -> None:
    with pytest.raises(ValueError, match="long_term_debt"):
        piotroski_fscore(_hand_example().drop(columns="long_term_debt"))


def test_statement_history_is_the_metrics_after_each_filing() -> None:
    """The precomputed history a replay reads equals statement_metrics recomputed on every
    day, restatements, a second name with a gap (filed in order: read in one pass) and a third
    filed out of order included."""
    hand = _hand_example()
    restated = hand.tail(1).assign(
        report_date=QUARTER_ENDS[-1] + pd.Timedelta(days=90), net_income=-100.0
    )
    gapped = hand.drop(index=5).assign(
        symbol="GAP", report_date=hand["report_date"] + pd.Timedelta(days=3)
    )
    # a third name whose third quarter was filed after its fifth (out of order)
    late = hand.assign(symbol="LATE")
    late.loc[2, "report_date"] = late.loc[4, "report_date"] + pd.Timedelta(days=1)
    statements = pd.concat([hand, restated, gapped, late], ignore_index=True)
    history = statement_history(statements)
    assert len(history) == statements[["symbol", "report_date"]].drop_duplicates().shape[0]
    for day in pd.date_range(QUARTER_ENDS[0], QUARTER_ENDS[-1] + pd.Timedelta(days=120), freq="5D"):
        expected = statement_metrics(statements, as_of=day)
        known = history.loc[history["known_from"] <= day].groupby("symbol").tail(1)
        got = known.drop(columns="known_from").set_index("symbol")
        pd.testing.assert_frame_equal(got, expected, check_names=False, check_exact=True)
