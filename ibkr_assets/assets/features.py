"""Stage 2 — ``feature_matrix``: one row per symbol, everything known at the run time
(14:00 Bucharest, before the open).

A thin wrapper over :func:`ibkr_assets.quant.features.build_feature_matrix`: it scores the
headlines with the configured sentiment model, assembles the matrix from the ingest assets as
of the partition's run time, saves it as ``features/YYYY-MM-DD.parquet`` and as the DuckDB
table ``features.feature_matrix``, and validates it with Great Expectations
(:mod:`ibkr_assets.checks.data_quality`). The checks are blocking: a matrix with a null
price, a negative volume, a duplicate or stale symbol, or too little of the universe stops the
stages downstream, and the failed check names the expectation and the symbols.

Units: ``adv`` in the matrix is average daily *dollar* volume (20 sessions of close x volume);
the universe's ``adv`` (IB's average volume, shares) becomes ``avg_volume``.
"""

import dagster as dg
import pandas as pd

from ibkr_assets.assets.catalog import Table, daily_asset_kwargs
from ibkr_assets.assets.market_data import MISSING_DATA, value_counts
from ibkr_assets.assets.materialization import frame_metadata
from ibkr_assets.assets.partition import session_of, with_partition, without_partition
from ibkr_assets.checks.data_quality import check_results, check_specs, validate_feature_matrix
from ibkr_assets.config import PipelineConfig
from ibkr_assets.partitions import previous_sessions
from ibkr_assets.quant.features import FeatureInputs, build_feature_matrix
from ibkr_assets.quant.sentiment import score_headlines
from ibkr_assets.resources.sentiment import SentimentResource
from ibkr_assets.resources.storage import StorageResource

#: Columns that must be filled for every symbol.
REQUIRED_COLUMNS = (
    "symbol",
    "conid",
    "sector",
    "lot_size",
    "adv",
    "price",
    "close",
    "last_session",
    "ma_signal",
    "atr",
    "rsi",
    "vol_20d",
)
#: Prices and volumes: strictly positive.
POSITIVE_COLUMNS = ("price", "close", "adv", "sma_fast", "atr")
#: The matrix :func:`build_feature_matrix` assembles (see :mod:`ibkr_assets.quant.features`);
#: ``piotroski`` criteria f_* are 1 (passed) or 0, as in Piotroski (2000).
FEATURE_MATRIX = Table(
    {
        "symbol": ("string", "ticker symbol"),
        "conid": ("int64", "IB contract id (conId)"),
        "sector": ("string", "sector (IB industry)"),
        "industry": ("string", "industry (IB category)"),
        "lot_size": ("int64", "round lot, shares (1 when IB gives none)"),
        "adv": ("float64", "average daily dollar volume of 20 sessions (close x volume), USD"),
        "avg_volume": ("float64", "average daily volume as IB reports it, shares"),
        "avg_volume_source": (
            "string",
            "where avg_volume comes from: ib (tick 165 avVolume) or daily_bars; empty when unknown",
        ),
        "price": ("float64", "decision price, USD per share: mid, else last, else a close"),
        "price_source": ("string", "which price: mid, last, prev_close or bar_close"),
        "bid": ("float64", "best bid, USD per share"),
        "ask": ("float64", "best ask, USD per share"),
        "spread": ("float64", "ask - bid of a two-sided quote, USD per share"),
        "spread_bps": ("float64", "spread / mid, basis points"),
        "market_data_type": (
            "string",
            "IB's market-data type of the quote: live, frozen, delayed (15-20 minutes) or "
            "delayed-frozen; empty without a quote",
        ),
        "last_session": ("datetime64[ns]", "session of the symbol's latest daily bar"),
        "close": ("float64", "latest daily close, USD per share"),
        "sma_fast": ("float64", "20-session simple moving average of the close, USD per share"),
        "sma_slow": ("float64", "50-session simple moving average of the close, USD per share"),
        "ma_signal": ("float64", "(SMA20 - SMA50) / SMA50, fraction"),
        "ma_cross": ("float64", "+1 fast SMA crossed above the slow in 5 sessions, -1 below, 0"),
        "atr": ("float64", "Wilder's 14-session average true range, USD per share"),
        "atr_pct": ("float64", "ATR / close, fraction"),
        "atr_breakout": ("float64", "+1 close above the prior 20-session high + 0.5 ATR, -1 below"),
        "breakout_distance": ("float64", "close beyond the prior 20-session channel, ATRs"),
        "rsi": ("float64", "Wilder's 14-session relative strength index, 0-100"),
        "rsi_signal": ("float64", "mean reversion in [-1, 1]: + below RSI 30, - above RSI 70"),
        "macd_hist_pct": ("float64", "MACD(12, 26, 9) histogram / close, fraction"),
        "mom_12_1": ("float64", "return from 252 to 21 sessions ago, fraction"),
        "vol_20d": ("float64", "annualised volatility of 20 daily log returns, fraction"),
        "adv_20d": ("float64", "average daily dollar volume of 20 sessions, USD"),
        "n_bars": ("int64", "daily bars behind the technical features"),
        "f_roa": ("float64", "Piotroski 1: ROA (TTM net income / average assets) > 0"),
        "f_cfo": ("float64", "Piotroski 2: TTM operating cash flow > 0"),
        "f_delta_roa": ("float64", "Piotroski 3: ROA higher than a year earlier"),
        "f_accrual": ("float64", "Piotroski 4: operating cash flow / average assets > ROA"),
        "f_delta_leverage": (
            "float64",
            "Piotroski 5: long-term debt / assets lower than a year ago",
        ),
        "f_delta_liquidity": ("float64", "Piotroski 6: current ratio higher than a year earlier"),
        "f_no_new_shares": ("float64", "Piotroski 7: shares outstanding not above a year earlier"),
        "f_delta_margin": ("float64", "Piotroski 8: TTM gross margin higher than a year earlier"),
        "f_delta_turnover": ("float64", "Piotroski 9: asset turnover higher than a year earlier"),
        "piotroski": ("float64", "Piotroski F-score, criteria passed 0-9 (NaN: < 8 quarters)"),
        "piotroski_available": ("int64", "criteria whose inputs were present, 0-9"),
        "revenue_growth_yoy": ("float64", "TTM revenue / TTM revenue a year earlier - 1, fraction"),
        "revenue_growth_flag": ("float64", "1 when revenue grew more than 15% a year, else 0"),
        "forward_pe": ("float64", "price / forward EPS (positive EPS only), ratio"),
        "forward_pe_sector_median": ("float64", "median forward P/E of the sector, ratio"),
        "forward_pe_rel_sector": ("float64", "forward P/E / sector median - 1 (< 0: cheap)"),
        "forward_earnings_yield": ("float64", "forward EPS / price, fraction"),
        "forward_eps": ("float64", "consensus forward earnings per share, USD per share"),
        "polarity_24h": ("float64", "mean headline polarity of the last 24 hours, -1 to 1"),
        "headlines_24h": ("int64", "headlines of the last 24 hours"),
        "polarity_hist_mean": ("float64", "mean daily polarity of the days before, -1 to 1"),
        "polarity_hist_std": ("float64", "standard deviation of that daily polarity"),
        "polarity_hist_days": ("int64", "days with news in the baseline window"),
        "sentiment_z": ("float64", "last 24 h's polarity against the symbol's own baseline, SDs"),
        "social_posts": (
            "float64",
            "posts naming the symbol on the last session (Reddit); NaN: not counted",
        ),
        "social_mentions": (
            "float64",
            "messages naming the symbol on the last session (StockTwits); NaN: not counted",
        ),
        "social_spike_z": (
            "float64",
            "robust z of log(1 + posts) against the 60 sessions before (r/wallstreetbets spike)",
        ),
        "social_volume_z": (
            "float64",
            "robust z of log(1 + messages) against the 60 sessions before (mention anomaly)",
        ),
        "as_of": (
            "datetime64[us, America/New_York]",
            "decision time: 14:00 Europe/Bucharest (07:00 New York)",
        ),
    }
)


@dg.asset(
    **daily_asset_kwargs(
        "features",
        FEATURE_MATRIX,
        stage="2-features",
        kinds={"talib", "great_expectations", "parquet"},
    ),
    check_specs=check_specs("feature_matrix"),
)
def feature_matrix(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    pipeline: PipelineConfig,
    sentiment: SentimentResource,
    universe: pd.DataFrame,
    quotes: pd.DataFrame,
    daily_bars: pd.DataFrame,
    fundamentals: pd.DataFrame,
    headlines: pd.DataFrame,
    headline_history: pd.DataFrame,
    social_chatter: pd.DataFrame,
):
    """Technical, fundamental and sentiment features of every universe symbol, as of the run."""
    key, session, at = session_of(context)
    uni = without_partition(universe)
    statements = without_partition(fundamentals)
    news = pd.concat(
        [without_partition(headline_history), without_partition(headlines)], ignore_index=True
    )
    scorer = sentiment.scorer()
    scored = score_headlines(news, scorer) if len(news) else None
    inputs = FeatureInputs(
        quotes=without_partition(quotes),
        fundamentals_long=statements,
        forward_eps=statements.drop_duplicates("symbol").loc[:, ["symbol", "forward_eps"]],
        headlines_scored=scored,
        universe=uni,
        social=without_partition(social_chatter),
    )
    matrix = build_feature_matrix(
        without_partition(daily_bars),
        inputs,
        at,
        sentiment_history_days=pipeline.headline_history_days,
    )
    path = storage.write_parquet(storage.features_path(key), matrix)
    outcomes = validate_feature_matrix(
        matrix,
        universe_symbols=uni["symbol"].astype(str).tolist(),
        session=session,
        previous_session=previous_sessions(session, 1)[0],
        required_columns=REQUIRED_COLUMNS,
        positive_columns=POSITIVE_COLUMNS,
        min_coverage=pipeline.min_universe_coverage,
    )
    missing = sorted(set(uni["symbol"].astype(str)) - set(matrix["symbol"]))
    absent = (
        f"feature_matrix {key}: {len(missing)} of {len(uni)} universe symbols have no row, for "
        f"want of daily bars ({', '.join(missing[:50])}{' ...' if len(missing) > 50 else ''})"
    )
    meta = frame_metadata(
        matrix.loc[:, ["symbol", "sector", "price", "rsi", "mom_12_1", "piotroski", "sentiment_z"]],
        columns=len(matrix.columns),
        universe=len(uni),
        coverage=len(matrix) / len(uni) if len(uni) else 0.0,
        missing_symbols=", ".join(missing[:50]) or "(none)",
        sentiment_scorer=scorer.name,
        headlines_scored=len(news),
        null_cells=int(matrix.isna().sum().sum()),
        market_data_types=value_counts(matrix, "market_data_type"),
        avg_volume_sources=value_counts(matrix, "avg_volume_source"),
        path=dg.MetadataValue.path(str(path)),
        # one line for the run's summary; the coverage check decides whether it is too much
        **{MISSING_DATA: absent if missing else None},
    )
    yield dg.Output(with_partition(matrix, key), metadata=meta)
    yield from check_results(outcomes, asset="feature_matrix")
