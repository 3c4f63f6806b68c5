"""Stage 2 — ``feature_matrix``: one row per symbol, everything known at 08:00 New York.

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

from ibkr_assets.assets._common import (
    daily_asset_kwargs,
    frame_metadata,
    session_of,
    with_partition,
    without_partition,
)
from ibkr_assets.checks.data_quality import check_results, check_specs, validate_feature_matrix
from ibkr_assets.config import PipelineConfig
from ibkr_assets.partitions import previous_sessions
from ibkr_assets.quant.features import build_feature_matrix
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


@dg.asset(**daily_asset_kwargs("features"), check_specs=check_specs("feature_matrix"))
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
    matrix = build_feature_matrix(
        bars_long=without_partition(daily_bars),
        quotes=without_partition(quotes),
        fundamentals_long=statements,
        forward_eps=statements.drop_duplicates("symbol").loc[:, ["symbol", "forward_eps"]],
        headlines_scored=scored,
        universe=uni,
        as_of=at,
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
    meta = frame_metadata(
        matrix.loc[:, ["symbol", "sector", "price", "rsi", "mom_12_1", "piotroski", "sentiment_z"]],
        columns=len(matrix.columns),
        universe=len(uni),
        coverage=len(matrix) / len(uni) if len(uni) else 0.0,
        missing_symbols=", ".join(missing[:50]) or "(none)",
        sentiment_scorer=scorer.name,
        headlines_scored=len(news),
        null_cells=int(matrix.isna().sum().sum()),
        path=dg.MetadataValue.path(str(path)),
    )
    yield dg.Output(with_partition(matrix, key), metadata=meta)
    yield from check_results(outcomes, asset="feature_matrix")
