"""The feature matrix: one row per symbol with everything the scores and the optimiser need,
as a trader could have known it at the decision time ``as_of``.

Point-in-time rule (no look-ahead), applied here to every input:

* a daily bar is known at its session's close, 16:00 New York: it is used when
  ``session 16:00 America/New_York <= as_of``;
* a quarterly statement is used from the day after its ``report_date`` (releases often come
  after the close), i.e. when ``report_date + 1 day <= as_of``;
* a headline is used when ``time <= as_of``; the sentiment window is the 24 h before ``as_of``;
* a session's social-chatter counts are used once that session has closed (16:00 New York), like
  its bar;
* a quote is used when its ``time <= as_of + QUOTE_GRACE`` (without a time it is taken as the
  as-of snapshot): the run that decides at ``as_of`` takes its quotes minutes after it starts, and
  the orders it sends meet the market of then, so quotes of the run's first hour inform the
  decision; quotes of a later day (a backfill asking IB today for an earlier session) never do.

``as_of`` is a timestamp (naive = New York time) or a date, meaning the end of that day.
Timestamps in the data (headline and quote times) without a zone are taken as UTC, as IB sends
them. The daily job runs at 14:00 Bucharest (07:00 New York), so its matrix holds bars up to
the previous session.

Columns: identity and trading (``symbol``, ``conid``, ``sector``, ``industry``, ``lot_size``,
``adv``, ``avg_volume`` with ``avg_volume_source``, ``price`` with ``price_source``, ``bid``,
``ask``, ``spread``, ``spread_bps``, ``market_data_type``, ``last_session``), then the technical
(:mod:`.technical`), fundamental (:mod:`.fundamental`, with ``forward_eps``) and sentiment
(:mod:`.sentiment`) features, the social-chatter scores (:mod:`.social`: NaN without chatter),
and ``as_of``.
Rows are the universe symbols that have at least one bar by ``as_of``; a universe symbol
without bars is left out (the coverage check on the matrix counts it).

``price`` is the quote mid when bid and ask are both positive and not crossed, else the last
trade, else the quote's previous close, else the last bar's close. ``adv`` is the average daily
*dollar* volume of the last 20 sessions (close x volume, from the bars); ``avg_volume`` is the
universe's ``adv`` (shares), NaN when absent, with ``avg_volume_source`` saying where it came
from (``ib``: IB's tick 165; ``daily_bars``: the mean of the last complete sessions), empty when
the universe does not say. ``market_data_type`` is the quote's (``live``, ``frozen``,
``delayed``, ``delayed-frozen``), empty without a quote or when the quotes do not say.
``lot_size`` is 1 when the universe has none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import pandas as pd

from ibkr_assets.quant.frames import require_columns
from ibkr_assets.quant.fundamental import (
    fundamental_columns,
    statement_metrics,
    statement_signals,
)
from ibkr_assets.quant.market_clock import MARKET_TZ, SESSION_CLOSE
from ibkr_assets.quant.sentiment import SENTIMENT_COLUMNS, headline_polarity_zscore
from ibkr_assets.quant.social import social_features
from ibkr_assets.quant.technical import TechnicalParams, technical_features

#: how long after ``as_of`` a quote still counts as the decision's own (the run takes its quotes
#: after it starts: the universe and ingest steps take minutes, more under IBKR's Web API limits)
QUOTE_GRACE = pd.Timedelta(hours=1)
IDENTITY_COLUMNS = (
    "symbol",
    "conid",
    "sector",
    "industry",
    "lot_size",
    "adv",
    "avg_volume",
    "avg_volume_source",
    "price",
    "price_source",
    "bid",
    "ask",
    "spread",
    "spread_bps",
    "market_data_type",
    "last_session",
)


def as_of_timestamp(as_of: date | datetime | pd.Timestamp | str) -> pd.Timestamp:
    """``as_of`` as a New York timestamp (a bare date -> the last instant of that day)."""
    if isinstance(as_of, date) and not isinstance(as_of, datetime):
        ts = pd.Timestamp(as_of) + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
    else:
        ts = pd.Timestamp(as_of)
    if pd.isna(ts):
        raise ValueError(f"as_of {as_of!r} is not a time")
    return ts.tz_localize(MARKET_TZ) if ts.tz is None else ts.tz_convert(MARKET_TZ)


def _report_dates(values: pd.Series) -> pd.Series:
    """Report dates (calendar days) as New York midnights."""
    out = pd.to_datetime(values, cache=False)
    if out.dt.tz is not None:
        out = out.dt.tz_convert(MARKET_TZ).dt.tz_localize(None)
    return out.dt.normalize().dt.tz_localize(MARKET_TZ)


def _known_bars(bars_long: pd.DataFrame, at: pd.Timestamp) -> pd.DataFrame:
    sessions = pd.to_datetime(bars_long["session"], cache=False)
    if sessions.dt.tz is not None:
        sessions = sessions.dt.tz_convert(MARKET_TZ).dt.tz_localize(None)
    known_at = (sessions.dt.normalize() + SESSION_CLOSE).dt.tz_localize(MARKET_TZ)
    return bars_long.loc[(known_at <= at).to_numpy()]


def _prices(quotes: pd.DataFrame, at: pd.Timestamp, index: pd.Index) -> pd.DataFrame:
    require_columns(quotes, "quotes", ("symbol", "bid", "ask", "last", "close"))
    q = quotes
    if "time" in q.columns and q["time"].notna().any():
        q = q.loc[
            (pd.to_datetime(q["time"], utc=True, cache=False) <= at + QUOTE_GRACE).to_numpy()
            | q["time"].isna().to_numpy()
        ]
    # each symbol of ``index``: its last quote's row (-1: none)
    wanted = index.get_indexer(pd.Index(q["symbol"].astype(str).to_numpy(), dtype=object))
    take = np.full(len(index), -1, dtype="int64")
    np.maximum.at(take, wanted[wanted >= 0], np.flatnonzero(wanted >= 0))

    def column(name: str) -> np.ndarray:
        values = pd.to_numeric(q[name], errors="coerce").to_numpy("float64", na_value=np.nan)
        return np.append(values, np.nan)[take]  # -1: the NaN appended

    bid, ask, last, close = (column(c) for c in ("bid", "ask", "last", "close"))
    two_sided = (bid > 0) & (ask > 0) & (ask >= bid)
    mid = np.where(two_sided, (bid + ask) / 2, np.nan)
    price = np.where(np.isnan(mid), np.where(last > 0, last, np.nan), mid)
    price = np.where(np.isnan(price), np.where(close > 0, close, np.nan), price)
    source = np.select(
        [~np.isnan(mid), last > 0, close > 0], ["mid", "last", "prev_close"], default="bar_close"
    )
    spread = np.where(two_sided, ask - bid, np.nan)
    data_type = (
        q["market_data_type"].astype("string").array.take(take, allow_fill=True)
        if "market_data_type" in q.columns
        else pd.NA
    )
    return pd.DataFrame(
        {
            "price": price,
            "price_source": source,
            "bid": np.where(bid > 0, bid, np.nan),
            "ask": np.where(ask > 0, ask, np.nan),
            "spread": spread,
            "spread_bps": 1e4 * spread / mid,
            "market_data_type": pd.Series(data_type, index=index, dtype="string"),
        },
        index=index,
    )


def _last_known(values: pd.Series, index: pd.Index) -> pd.Series:
    """Each label of ``index``: the last number of ``values`` (by label; not a number: NaN)
    under it that is not NaN, NaN without one."""
    numbers = pd.to_numeric(values, errors="coerce").to_numpy("float64", na_value=np.nan)
    wanted = index.get_indexer(values.index)
    kept = np.flatnonzero((wanted >= 0) & ~np.isnan(numbers))
    last = np.full(len(index), -1, dtype="int64")
    np.maximum.at(last, wanted[kept], kept)
    return pd.Series(np.append(numbers, np.nan)[last], index=index)  # -1: the NaN appended


def _statement_metrics_known(inputs: FeatureInputs, at: pd.Timestamp) -> pd.DataFrame:
    """The statements' metrics (:func:`~ibkr_assets.quant.fundamental.statement_metrics`) from
    the filings known at ``at``: each symbol's last row of ``inputs.statement_history`` known by
    then (:func:`statement_rows_known`), or computed from the known rows of
    ``inputs.fundamentals_long``."""
    history = inputs.statement_history
    if history is None:
        statements = inputs.fundamentals_long
        require_columns(statements, "fundamentals_long", ("symbol", "report_date"))
        known = _report_dates(statements["report_date"]) + pd.Timedelta(days=1) <= at
        return statement_metrics(statements.loc[known.to_numpy()])
    symbols = sorted(set(history["symbol"].astype(str)))
    rows = statement_rows_known(history, [at], symbols)[0]
    latest = history.iloc[rows[rows >= 0]]
    return latest.drop(columns="known_from").set_index("symbol")


def statement_rows_known(
    history: pd.DataFrame, times: Sequence[pd.Timestamp], symbols: Sequence[str]
) -> np.ndarray:
    """Which row of a statement history (:func:`~ibkr_assets.quant.fundamental.statement_history`:
    ``symbol``, ``known_from`` report dates, the metrics) holds each symbol's metrics at each
    of ``times`` (naive: New York time): ``times`` x ``symbols`` positions in ``history``, -1
    where no filing of the symbol is known yet. A filing is known from the day after its report
    date (the module docstring's rule); of several, the last in the history's order counts."""
    require_columns(history, "statement_history", ("symbol", "known_from"))
    known = (_report_dates(history["known_from"]) + pd.Timedelta(days=1)).array.asi8
    names = history["symbol"].astype(str).to_numpy()
    order = np.lexsort((np.arange(len(history)), known, names))
    names, known = names[order], known[order]
    at = np.array([as_of_timestamp(t).value for t in times], dtype="int64")
    out = np.full((len(at), len(symbols)), -1, dtype="int64")
    if not len(names):
        return out
    starts = np.flatnonzero(np.r_[True, names[1:] != names[:-1]])
    column = pd.Index(names[starts]).get_indexer(pd.Index(list(symbols), dtype=object))
    has = column >= 0
    for k, t in enumerate(at):
        # each symbol's filings known by t are a prefix of its rows (sorted by known time)
        count = np.add.reduceat((known <= t).astype("int64"), starts)
        last = np.where(count > 0, order[starts + np.maximum(count, 1) - 1], -1)
        out[k, has] = last[column[has]]
    return out


@dataclass(frozen=True)
class KnownParts:
    """The parts of a day's matrix that do not depend on its pre-open quotes, taken from panels
    a replay computes once for all its sessions: ``statements``, the statements' signals
    (:func:`~ibkr_assets.quant.fundamental.statement_signals`) of each symbol's filings known at
    the day's ``as_of`` (index ``symbol``; a symbol without a known filing left out), and
    ``sentiment``, the :data:`~ibkr_assets.quant.sentiment.SENTIMENT_COLUMNS` of every symbol
    of the matrix (index ``symbol``) from
    :func:`~ibkr_assets.quant.sentiment.polarity_zscore_panel`, the panel the one-day
    :func:`~ibkr_assets.quant.sentiment.headline_polarity_zscore` reads; ``social``, the
    :data:`~ibkr_assets.quant.social.SOCIAL_COLUMNS` of every symbol of the matrix in its order
    (:func:`~ibkr_assets.quant.social.known_rows`), None: from ``FeatureInputs.social``."""

    statements: pd.DataFrame
    sentiment: pd.DataFrame
    social: pd.DataFrame | None = None


@dataclass(frozen=True)
class FeatureInputs:
    """The frames the matrix is assembled from besides the daily bars, as the pipeline's ingest
    stage stores them (docs/architecture.md, "Pipeline stages"): the quote snapshot, long
    quarterly statements, forward EPS (``symbol``/``forward_eps`` frame or a Series by symbol),
    headlines with ``polarity`` (or None), the universe and the social-chatter counts (columns
    ``symbol``, ``session``, ``posts``, ``mentions``; None: the scores are NaN). Rows dated
    after the matrix's ``as_of`` are dropped where they are read, so passing extra history is
    safe. ``statement_history``: the statements' metrics after each filing
    (:func:`~ibkr_assets.quant.fundamental.statement_history` of ``fundamentals_long``), given by
    a replay that assembles many days from the same statements; None: computed from
    ``fundamentals_long`` for the day. ``known``: the day's statement signals and sentiment
    computed beforehand (:class:`KnownParts`); ``fundamentals_long`` and ``headlines_scored``
    are then not read."""

    quotes: pd.DataFrame
    fundamentals_long: pd.DataFrame
    forward_eps: pd.DataFrame | pd.Series
    headlines_scored: pd.DataFrame | None
    universe: pd.DataFrame
    social: pd.DataFrame | None = None
    statement_history: pd.DataFrame | None = None
    known: KnownParts | None = None


def build_feature_matrix(
    bars_long: pd.DataFrame,
    inputs: FeatureInputs,
    as_of: date | datetime | pd.Timestamp | str,
    technical_params: TechnicalParams | None = None,
    growth_threshold: float = 0.15,
    sentiment_history_days: int = 60,
) -> pd.DataFrame:
    """One row per symbol (column ``symbol``, sorted) with every feature known at ``as_of``:
    the technical features of the long daily bars known by then, with the other ``inputs``
    (:func:`assemble_feature_matrix`)."""
    at = as_of_timestamp(as_of)
    require_columns(inputs.universe, "universe", ("symbol", "sector"))
    require_columns(bars_long, "bars_long", ("symbol", "session", "high", "low", "close", "volume"))
    symbols = inputs.universe["symbol"].astype(str)
    bars = _known_bars(bars_long, at)
    bars = bars.loc[bars["symbol"].astype(str).isin(symbols).to_numpy()]
    return assemble_feature_matrix(
        technical_features(bars, technical_params),
        inputs,
        at,
        growth_threshold=growth_threshold,
        sentiment_history_days=sentiment_history_days,
    )


def assemble_feature_matrix(
    technical: pd.DataFrame,
    inputs: FeatureInputs,
    as_of: date | datetime | pd.Timestamp | str,
    growth_threshold: float = 0.15,
    sentiment_history_days: int = 60,
) -> pd.DataFrame:
    """The feature matrix from already computed technical features (one row per universe
    symbol with bars, from :func:`~ibkr_assets.quant.technical.technical_features` or, in a
    backtest, :func:`~ibkr_assets.quant.technical.technical_history`) and the other
    ``inputs``; :func:`build_feature_matrix` calls it."""
    at = as_of_timestamp(as_of)
    universe = inputs.universe
    uni = universe.assign(symbol=universe["symbol"].astype(str)).drop_duplicates("symbol")
    symbols = technical.index.astype(str)
    uni = uni.set_index("symbol").reindex(
        index=symbols,
        columns=["conid", "sector", "industry", "lot_size", "adv", "avg_volume_source"],
    )

    prices = _prices(inputs.quotes, at, symbols)
    fallback = prices["price"].isna()
    prices = prices.assign(
        price=prices["price"].fillna(technical["close"]),
        price_source=np.where(fallback, "bar_close", prices["price_source"]),
    )

    known = inputs.known
    signals = (
        statement_signals(_statement_metrics_known(inputs, at), growth_threshold)
        if known is None
        else known.statements
    )
    forward_eps = inputs.forward_eps
    eps = (
        forward_eps.set_index(forward_eps["symbol"].astype(str))["forward_eps"]
        if isinstance(forward_eps, pd.DataFrame)
        else forward_eps
    )
    eps = _last_known(eps, symbols)
    fundamental = fundamental_columns(
        signals,
        forward_eps=eps,
        price=prices["price"],
        sector=uni["sector"],
        symbols=list(symbols),
    )

    if known is not None:
        sentiment = known.sentiment
    elif inputs.headlines_scored is None or inputs.headlines_scored.empty:
        sentiment = pd.DataFrame({c: 0.0 for c in SENTIMENT_COLUMNS}, index=symbols).assign(
            polarity_24h=np.nan, polarity_hist_mean=np.nan, polarity_hist_std=np.nan
        )
        sentiment = sentiment.astype({"headlines_24h": "int64", "polarity_hist_days": "int64"})
    else:
        sentiment = headline_polarity_zscore(
            inputs.headlines_scored, at, symbols=list(symbols), history_days=sentiment_history_days
        )

    chatter = inputs.social
    social = (
        known.social
        if known is not None and known.social is not None
        else social_features(
            pd.DataFrame(columns=["symbol", "session", "posts", "mentions"])
            if chatter is None
            else _known_bars(chatter, at),
            list(symbols),
        )
    )

    identity = pd.DataFrame(
        {
            "conid": uni["conid"],
            "sector": uni["sector"].astype("string"),
            "industry": uni["industry"].astype("string"),
            "lot_size": pd.to_numeric(uni["lot_size"], errors="coerce").fillna(1).astype("int64"),
            "adv": technical["adv_20d"],
            "avg_volume": pd.to_numeric(uni["adv"], errors="coerce"),
            "avg_volume_source": uni["avg_volume_source"].astype("string"),
        },
        index=symbols,
    ).join(prices.assign(last_session=technical["last_session"]))
    out = pd.concat(
        [
            identity,
            technical.drop(columns=["last_session"]),
            fundamental,
            eps.rename("forward_eps"),
            sentiment.loc[:, list(SENTIMENT_COLUMNS)],
            social.set_axis(symbols),
        ],
        axis=1,
    )
    out.index.name = "symbol"
    out = out.reset_index().assign(as_of=at)
    if out["symbol"].is_monotonic_increasing:  # the technical features' order, as a rule
        return out
    return out.sort_values("symbol", ignore_index=True)
