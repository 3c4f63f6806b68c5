"""The feature matrix: one row per symbol, point in time (no look-ahead)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import numpy as np
import pandas as pd
import pytest

from ibkr_assets.quant.features import (
    IDENTITY_COLUMNS,
    QUOTE_GRACE,
    FeatureInputs,
    as_of_timestamp,
    build_feature_matrix,
)
from ibkr_assets.quant.fundamental import FEATURE_COLUMNS as FUNDAMENTAL_COLUMNS
from ibkr_assets.quant.fundamental import STATEMENT_COLUMNS
from ibkr_assets.quant.sentiment import SENTIMENT_COLUMNS
from ibkr_assets.quant.technical import FEATURE_COLUMNS as TECHNICAL_COLUMNS

SYMBOLS = ["AAA", "BBB", "CCC"]
AS_OF = pd.Timestamp("2025-06-02 08:00", tz="America/New_York")  # a Monday, before the open
SESSIONS = pd.bdate_range(end="2025-05-30", periods=300)  # up to the previous Friday


def _inputs(seed: int = 0) -> tuple[pd.DataFrame, FeatureInputs]:
    """Daily bars and the other inputs of three symbols (and a universe name without bars)."""
    rng = np.random.default_rng(seed)
    bars = []
    for i, symbol in enumerate(SYMBOLS):
        close = 50 * (i + 1) * np.exp(np.cumsum(0.01 * rng.standard_normal(len(SESSIONS))))
        bars.append(
            pd.DataFrame(
                {
                    "symbol": symbol,
                    "session": SESSIONS,
                    "open": close,
                    "high": close * 1.01,
                    "low": close * 0.99,
                    "close": close,
                    "volume": 1e6,
                }
            )
        )
    ends = pd.date_range("2023-03-31", "2025-03-31", freq="QE")
    statements = pd.concat(
        [
            pd.DataFrame(
                {
                    "symbol": s,
                    "period_end": ends,
                    "report_date": ends + pd.Timedelta(days=35),
                    **{
                        c: rng.uniform(50, 150, len(ends))
                        for c in STATEMENT_COLUMNS
                        if c not in ("symbol", "period_end", "report_date")
                    },
                }
            )
            for s in SYMBOLS
        ]
    )
    headlines = pd.DataFrame(
        {
            "symbol": ["AAA", "AAA", "BBB", "AAA"],
            "time": pd.to_datetime(
                ["2025-05-20 10:00", "2025-06-01 20:00", "2025-06-02 07:00", "2025-05-22 10:00"]
            ).tz_localize("UTC"),
            "headline": ["x", "y", "z", "w"],
            "polarity": [0.1, 0.8, -0.6, 0.2],
        }
    )
    quotes = pd.DataFrame(
        {
            "symbol": SYMBOLS,
            "bid": [49.9, 0.0, 149.0],
            "ask": [50.1, 0.0, 151.0],
            "last": [50.0, 101.0, 150.0],
            "close": [50.0, 100.0, 149.5],
            "time": AS_OF - pd.Timedelta(minutes=1),
            "market_data_type": ["delayed", "live", "delayed"],
        }
    )
    universe = pd.DataFrame(
        {
            "symbol": [*SYMBOLS, "NOBARS"],
            "conid": [1, 2, 3, 4],
            "sector": ["Tech", "Tech", "Energy", "Tech"],
            "industry": ["Software", "Hardware", "Oil", "Software"],
            "lot_size": [1, 1, 100, 1],
            "adv": [5e7, np.nan, 2e7, 1e6],
            "avg_volume_source": pd.array(["ib", None, "daily_bars", "ib"], dtype="string"),
        }
    )
    return pd.concat(bars, ignore_index=True), FeatureInputs(
        quotes=quotes,
        fundamentals_long=statements,
        forward_eps=pd.DataFrame({"symbol": SYMBOLS, "forward_eps": [2.5, 5.0, -1.0]}),
        headlines_scored=headlines,
        universe=universe,
    )


def _future_rows(bars: pd.DataFrame, inputs: FeatureInputs) -> tuple[pd.DataFrame, FeatureInputs]:
    """Everything a trader at AS_OF could not know: today's and later bars, a statement
    reported today, headlines and a quote after AS_OF."""
    late = (
        bars.groupby("symbol")
        .tail(3)
        .assign(
            session=lambda f: f["session"] + pd.Timedelta(days=5),  # Jun 2-4: closes after AS_OF
            close=1e6,
            high=2e6,
        )
    )
    statements = inputs.fundamentals_long
    new_q = (
        statements.groupby("symbol")
        .tail(1)
        .assign(
            period_end=pd.Timestamp("2025-06-30"),
            report_date=pd.Timestamp("2025-06-02"),
            revenue=1e9,
        )
    )
    news = pd.DataFrame(
        {
            "symbol": ["AAA", "CCC"],
            "time": [AS_OF + pd.Timedelta(minutes=1), AS_OF + pd.Timedelta(days=2)],
            "headline": ["late", "later"],
            "polarity": [-1.0, 1.0],
        }
    )
    quote = inputs.quotes.assign(
        time=AS_OF + pd.Timedelta(hours=2), bid=1.0, ask=2.0, market_data_type="frozen"
    )
    return pd.concat([bars, late], ignore_index=True), replace(
        inputs,
        fundamentals_long=pd.concat([statements, new_q], ignore_index=True),
        headlines_scored=pd.concat([inputs.headlines_scored, news], ignore_index=True),
        quotes=pd.concat([inputs.quotes, quote], ignore_index=True),
    )


def test_one_row_per_symbol_with_every_block() -> None:
    bars_long, inputs = _inputs()
    out = build_feature_matrix(bars_long, inputs, AS_OF)
    assert list(out["symbol"]) == SYMBOLS  # NOBARS has no bars: left out
    for column in (*IDENTITY_COLUMNS, *TECHNICAL_COLUMNS, *FUNDAMENTAL_COLUMNS, *SENTIMENT_COLUMNS):
        assert column in out.columns, column
    row = out.set_index("symbol")
    assert (row["last_session"] == SESSIONS[-1]).all()
    np.testing.assert_allclose(row["price"], [50.0, 101.0, 150.0])
    assert list(row["price_source"]) == ["mid", "last", "mid"]
    np.testing.assert_allclose(row.loc["AAA", "spread_bps"], 1e4 * 0.2 / 50.0)
    # ADV in dollars from the bars (one unit for every name); IB's share volume kept apart.
    bars = bars_long.query("symbol == 'BBB'").tail(20)
    np.testing.assert_allclose(row.loc["BBB", "adv"], (bars["close"] * bars["volume"]).mean())
    assert row.loc["AAA", "avg_volume"] == 5e7 and np.isnan(row.loc["BBB", "avg_volume"])
    assert row.loc["CCC", "lot_size"] == 100
    # where each number came from: IB's market-data type of the quote, the source of avg_volume
    assert row["market_data_type"].tolist() == ["delayed", "live", "delayed"]
    assert row["avg_volume_source"].tolist() == ["ib", pd.NA, "daily_bars"]
    assert str(row["market_data_type"].dtype) == str(row["avg_volume_source"].dtype) == "string"
    np.testing.assert_allclose(row.loc["AAA", "forward_pe"], 50.0 / 2.5)
    assert np.isnan(row.loc["CCC", "forward_pe"])  # negative EPS
    assert row["piotroski"].between(0, 9).all()
    # AAA: one headline in the 24 h before AS_OF; the others are history.
    assert row.loc["AAA", "headlines_24h"] == 1 and row.loc["AAA", "polarity_hist_days"] == 2
    assert row.loc["CCC", "sentiment_z"] == 0.0


def test_no_look_ahead_future_rows_change_nothing() -> None:
    bars, inputs = _inputs()
    base = build_feature_matrix(bars, inputs, AS_OF)
    with_future = build_feature_matrix(*_future_rows(bars, inputs), AS_OF)
    pd.testing.assert_frame_equal(base, with_future)
    # ...and the future rows do matter once they are in the past.
    later = build_feature_matrix(*_future_rows(bars, inputs), AS_OF + pd.Timedelta(days=3))
    assert (later["last_session"] > base["last_session"]).all()


def test_the_runs_own_quotes_count_a_later_days_do_not() -> None:
    """The run deciding at AS_OF takes its quotes minutes after it starts: those are its own
    (within QUOTE_GRACE); a quote of the next day is look-ahead and left out."""
    bars, inputs = _inputs()
    minutes_later = inputs.quotes.assign(time=AS_OF + pd.Timedelta(minutes=8))
    out = build_feature_matrix(bars, replace(inputs, quotes=minutes_later), AS_OF)
    assert list(out["price_source"]) == ["mid", "last", "mid"]
    next_day = inputs.quotes.assign(time=AS_OF + QUOTE_GRACE + pd.Timedelta(seconds=1))
    out = build_feature_matrix(bars, replace(inputs, quotes=next_day), AS_OF)
    assert set(out["price_source"]) == {"bar_close"}


def test_quotes_and_a_universe_that_do_not_say_leave_the_sources_empty() -> None:
    """Quotes without a market-data type (a hand-made frame, an old staging file) and a
    universe without avg_volume_source: the columns are there, empty, not made up."""
    bars, inputs = _inputs()
    bare = replace(
        inputs,
        quotes=inputs.quotes.drop(columns="market_data_type"),
        universe=inputs.universe.drop(columns="avg_volume_source"),
    )
    out = build_feature_matrix(bars, bare, AS_OF)
    assert out["market_data_type"].isna().all() and out["avg_volume_source"].isna().all()
    assert str(out["market_data_type"].dtype) == "string"
    # a symbol without a quote has no market-data type either
    one = build_feature_matrix(bars, replace(inputs, quotes=inputs.quotes.iloc[:1]), AS_OF)
    assert one["market_data_type"].tolist() == ["delayed", pd.NA, pd.NA]


def test_as_of_dates_and_bad_input() -> None:
    assert as_of_timestamp(date(2025, 5, 30)) == pd.Timestamp(
        "2025-05-30 23:59:59.999999", tz="America/New_York"
    )
    bars, inputs = _inputs()
    # A bare date includes that day's bar (known at its 16:00 close).
    friday = build_feature_matrix(bars, inputs, date(2025, 5, 30))
    assert (friday["last_session"] == SESSIONS[-1]).all()
    friday_noon = build_feature_matrix(bars, inputs, pd.Timestamp("2025-05-30 12:00"))
    assert (friday_noon["last_session"] == SESSIONS[-2]).all()
    with pytest.raises(ValueError, match="close"):
        build_feature_matrix(bars.drop(columns="close"), inputs, AS_OF)
    no_news = build_feature_matrix(bars, replace(inputs, headlines_scored=None), AS_OF)
    assert (no_news["sentiment_z"] == 0).all() and (no_news["headlines_24h"] == 0).all()
