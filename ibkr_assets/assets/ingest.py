"""Stage 1 — ingest: what the market looked like at the run time (14:00 Bucharest) on the session.

Each asset asks the broker (the ``ib`` resource, pinned to the partition's as-of time for a
backfill), keeps only data dated before that instant, writes the raw payload to
``staging/YYYY-MM-DD/<asset>.json|parquet`` and returns a DataFrame that the DuckDB IO manager
stores in schema ``ingest``:

* ``top_movers`` — IB scanners (TOP_PERC_GAIN, TOP_PERC_LOSE, HOT_BY_VOLUME);
* ``universe`` — the watch-list, plus holdings, plus movers that moved more than 5% on volume
  above 2x their average daily volume (the "fast lane");
* ``quotes`` — one bulk snapshot;
* ``daily_bars`` — 600 sessions of daily OHLCV per symbol, cached in DuckDB (``cache.daily_bars``)
  so only the bars not yet seen are fetched;
* ``fundamentals`` — quarterly statements filed before the session and forward EPS;
* ``headlines`` — the last 24 hours of news per symbol, and ``headline_history`` the weeks
  before (each symbol's own sentiment baseline);
* ``macro_gauges`` — 10-year yield, EURUSD, crude, VIX, SPY and QQQ with the regime features;
* ``social_chatter`` — per symbol and session, posts (Reddit) and messages (StockTwits) naming
  it, the sessions before the run (:mod:`ibkr_assets.resources.social`; a source that fails is
  named in the metadata and its counts are NaN, never 0).

A symbol the broker does not know, a missing statement or an empty news day is recorded in the
metadata (and in the one line under ``missing_data`` the run's summary prints) and left to the
data-quality checks; it does not fail the run. A watch-list none of whose symbols IB knows does:
there would be nothing to trade but the day's movers.

Retries: the run connects to IB when it starts (the ``ib`` resource), so an unreachable IB fails
the run before any asset. After that, a transient error (the connection dropped, IB did not
answer in time, a pacing violation: :func:`~ibkr_assets.assets.market_data.is_transient`) fails
the step and the one :data:`INGEST_RETRY` policy runs it again with backoff and jitter; any other
error fails the step at once, without retries (:func:`transient_retries_only`): bad input, a
client id in use (326), a damaged warehouse, or IB still unreachable after the backend's own
reconnecting for ``IBKR_RECONNECT_SECONDS``. Nothing in an asset loops on its own. A failed
step fails only its asset and those downstream of it; the other ingest assets still run, and a
rerun of the session fetches what is missing (daily bars already cached are not fetched again).

Every asset is built by one factory (:func:`ingest_asset`): its body asks
:mod:`~ibkr_assets.assets.market_data` (or the fundamentals resource) and returns what it read
as :class:`Fetched`; the factory stages the payload, names every symbol (scanner, gauge) that
could not be fetched in a warning and in the metadata, and adds the partition column.
"""

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar, cast

import dagster as dg
import pandas as pd

from ibkr_assets.assets.bar_cache import cached_bars
from ibkr_assets.assets.catalog import IB, IB_NEWS, Table, daily_asset_kwargs
from ibkr_assets.assets.market_data import (
    BARS,
    HEADLINES,
    MISSING_DATA,
    QUOTES,
    TOP_MOVERS,
    UNIVERSE,
    is_transient,
    named_failures,
    quote_frame,
    request_workers,
    scanner_frame,
    universe_contracts,
    universe_frame,
    value_counts,
)
from ibkr_assets.assets.materialization import frame_metadata, listing
from ibkr_assets.assets.news_history import headline_frame, macro_history
from ibkr_assets.assets.partition import session_of, with_partition
from ibkr_assets.config import PipelineConfig, watchlist_symbols
from ibkr_assets.errors import ConfigurationError
from ibkr_assets.partitions import DAILY_PARTITIONS, previous_sessions
from ibkr_assets.quant.macro import FEATURE_COLUMNS as MACRO_FEATURES
from ibkr_assets.quant.macro import latest_regime, macro_features
from ibkr_assets.quant.movers import select_movers
from ibkr_assets.quant.sentiment import split_headlines
from ibkr_assets.resources import fundamentals_source, social_source
from ibkr_assets.resources.fundamentals import FundamentalsResource
from ibkr_assets.resources.ib import IBResource
from ibkr_assets.resources.social import SocialResource
from ibkr_assets.resources.storage import StorageResource

F = TypeVar("F", bound=Callable[..., Any])
#: The ingest assets' one retry policy: up to 3 more attempts, about 10 s, 20 s and 40 s later
#: (exponential backoff, ±jitter so that retried steps do not reconnect in step).
INGEST_RETRY = dg.RetryPolicy(
    max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
GROUP = "ingest"
#: How a payload is staged: ``staging/YYYY-MM-DD/<output>.json`` (records) or ``.parquet``.
JSON, PARQUET = "json", "parquet"

#: What the fundamentals resource returns: quarterly statements (flows over the quarter,
#: balances at its end) with the symbol's forward EPS.
FUNDAMENTALS = Table(
    {
        "symbol": ("string", "ticker symbol"),
        "period_end": ("datetime64[ns]", "last day of the fiscal quarter"),
        "report_date": ("datetime64[ns]", "day the statement was published"),
        "revenue": ("float64", "revenue of the quarter, USD"),
        "gross_profit": ("float64", "gross profit of the quarter, USD"),
        "net_income": ("float64", "net income of the quarter, USD"),
        "total_assets": ("float64", "total assets at the quarter's end, USD"),
        "operating_cash_flow": ("float64", "operating cash flow of the quarter, USD"),
        "long_term_debt": ("float64", "long-term debt at the quarter's end, USD"),
        "current_assets": ("float64", "current assets at the quarter's end, USD"),
        "current_liabilities": ("float64", "current liabilities at the quarter's end, USD"),
        "shares_outstanding": ("float64", "shares outstanding at the quarter's end, shares"),
        "forward_eps": ("float64", "consensus forward earnings per share, USD per share"),
    }
)
SOCIAL = Table(
    {
        "symbol": ("string", "ticker symbol"),
        "session": (
            "datetime64[ns]",
            "NYSE session: its window runs from the previous session's close (16:00 New York) to "
            "its own, when the counts are known",
        ),
        "posts": ("float64", "posts naming the symbol (Reddit); NaN: not counted"),
        "mentions": ("float64", "messages naming the symbol (StockTwits); NaN: not counted"),
    }
)
MACRO = Table(
    {
        "session": ("datetime64[ns]", "the NYSE session of the closes (date)"),
        "ten_year_yield": ("float64", "US 10-year Treasury yield, percent (IB's TNX / 10)"),
        "eurusd": ("float64", "EUR.USD close, USD per euro"),
        "crude": ("float64", "WTI crude oil front future close, USD per barrel"),
        "vix": ("float64", "CBOE volatility index close, index points"),
        "spy": ("float64", "SPY (S&P 500 ETF) close, USD per share"),
        "qqq": ("float64", "QQQ (Nasdaq-100 ETF) close, USD per share"),
    }
) + Table(
    dict(
        zip(
            MACRO_FEATURES,
            [
                ("float64", "VIX level, index points"),
                ("float64", "VIX against its trailing 60-session mean, in standard deviations"),
                ("float64", "SPY close / its 50-session average - 1, fraction"),
                ("float64", "20-session return of QQQ minus that of SPY, fraction"),
                ("float64", "20-session return of crude oil, fraction"),
                ("float64", "20-session return of EUR.USD, fraction"),
                ("float64", "10-year Treasury yield, percent"),
                ("float64", "20-session change of the 10-year yield, percentage points"),
                ("float64", "risk appetite in [-1, 1]: weighted tanh of the components"),
                ("float64", "+1 risk-on (score > 0.25), -1 risk-off (< -0.25), 0 neutral"),
                ("float64", "gross-exposure multiplier 0.75 + 0.25 x risk_score, in [0.5, 1]"),
                ("float64", "the environment term added to every alpha score (= risk_score)"),
            ],
            strict=True,
        )
    )
)


def transient_retries_only(compute: F) -> F:
    """Let :data:`INGEST_RETRY` retry ``compute`` (an asset's function) only for transient
    errors (:func:`~ibkr_assets.assets.market_data.is_transient`): any other error fails the
    step at once, as a ``dg.Failure`` that bypasses the retry policy, with the original error
    as its cause."""

    @functools.wraps(compute)
    def attempt(*args: Any, **kwargs: Any) -> Any:
        try:
            return compute(*args, **kwargs)
        except dg.Failure:
            raise
        except Exception as exc:  # not hidden: the step fails, with exc as the cause
            if is_transient(exc):
                raise
            description = f"{type(exc).__name__}: {exc}"
            raise dg.Failure(description=description, allow_retries=False) from exc

    return cast(F, attempt)


@dataclass(frozen=True)
class Fetched:
    """What an ingest asset read for one output: the table; what could not be fetched (symbol,
    scanner or gauge -> IB's error); the materialisation's metadata besides row count and
    preview; the payload to stage when it is not the table (daily_bars: the bars fetched
    today); the rows to preview when not the first ten (macro_gauges: the latest first)."""

    frame: pd.DataFrame
    failed: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    staged: pd.DataFrame | None = None
    preview: pd.DataFrame | None = None


@dataclass(frozen=True)
class Out:
    """How the factory stores one output: its staging format and the metadata key that lists
    what could not be fetched."""

    staging: str = JSON
    failed_key: str = "failed_symbols"


def _output(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    name: str,
    out: Out,
    got: Fetched,
    output_name: str = "result",
) -> dg.Output:
    """The output ``output_name`` of the asset ``name``: ``got`` staged, its failures named in a
    warning and in the metadata, the partition column added."""
    key = context.partition_key
    staged = got.frame if got.staged is None else got.staged
    path = storage.staging_path(key, name, out.staging)
    if out.staging == PARQUET:
        storage.write_parquet(path, staged)
    else:
        storage.write_frame_json(path, staged)
    meta = frame_metadata(got.frame if got.preview is None else got.preview, **got.metadata)
    meta["dagster/row_count"] = len(got.frame)
    if got.failed:
        line = named_failures(f"{name} {key}", got.failed)
        context.log.warning(line)
        meta[out.failed_key] = listing(dict(got.failed))
        meta[MISSING_DATA] = line
    return dg.Output(with_partition(got.frame, key), output_name=output_name, metadata=meta)


def ingest_asset(
    table: Table,
    out: Out = Out(),
    *,
    source: str = IB,
    outs: Mapping[str, tuple[str, Out]] | None = None,
) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """The factory of the ingest assets: an asset of the daily partitions storing ``table``
    (read from ``source`` through IB's API) as ``out`` says, with :data:`INGEST_RETRY` for
    transient errors only, whose body returns a :class:`Fetched` — or, given ``outs`` (output
    name -> description and :class:`Out`: one multi-asset), output name -> Fetched."""
    catalog = daily_asset_kwargs(GROUP, table, stage="1-ingest", source=source, kinds={"ib"})

    def build(body: Callable[..., Any]) -> dg.AssetsDefinition:
        @functools.wraps(body)
        def compute(context: dg.AssetExecutionContext, **kwargs: Any) -> Any:
            got = body(context, **kwargs)
            if outs is None:
                return _output(context, kwargs["storage"], body.__name__, out, got)
            storage = kwargs["storage"]
            return tuple(_output(context, storage, n, o, got[n], n) for n, (_, o) in outs.items())

        # the body's inputs and resources, and the output Dagster stores (not Fetched)
        returns = dg.Output[pd.DataFrame] if outs is None else inspect.Signature.empty
        compute.__signature__ = inspect.signature(body).replace(return_annotation=returns)  # type: ignore[attr-defined]
        if outs is None:
            decorate = dg.asset(**catalog, retry_policy=INGEST_RETRY)
        else:
            shared = {k: catalog[k] for k in ("metadata", "kinds", "owners", "tags")}
            decorate = dg.multi_asset(
                outs={n: dg.AssetOut(description=d, **shared) for n, (d, _) in outs.items()},
                partitions_def=DAILY_PARTITIONS,
                group_name=GROUP,
                retry_policy=INGEST_RETRY,
            )
        return decorate(transient_retries_only(compute))

    return build


# -- the assets -------------------------------------------------------------------------------


@ingest_asset(TOP_MOVERS, Out(failed_key="failed_scanners"))
def top_movers(
    context: dg.AssetExecutionContext,
    ib: IBResource,
    storage: StorageResource,
    pipeline: PipelineConfig,
) -> Fetched:
    """The day's biggest gainers, losers and volume surprises from IB's market scanners."""
    broker = ib.broker_at(session_of(context)[2])
    codes = pipeline.scanner_codes
    frame, failed = scanner_frame(broker, codes, pipeline.scanner_location, pipeline.scanner_limit)
    return Fetched(frame, failed, {"scanners": ", ".join(codes)})


@ingest_asset(UNIVERSE, Out(failed_key="unknown_symbol_list"))
def universe(
    context: dg.AssetExecutionContext,
    ib: IBResource,
    storage: StorageResource,
    pipeline: PipelineConfig,
    top_movers: pd.DataFrame,
) -> Fetched:
    """The symbols the desk trades today: watch-list, holdings and heavy-volume movers."""
    broker = ib.broker_at(session_of(context)[2])
    reasons: dict[str, str] = dict.fromkeys(watchlist_symbols(pipeline, broker), "watchlist")
    for pos in broker.positions():
        if pos.contract.sec_type in ("STK", "ETF"):
            reasons.setdefault(pos.contract.symbol, "holding")
    movers = select_movers(
        top_movers, pipeline.mover_min_change_pct, pipeline.mover_min_volume_ratio
    )
    for symbol in movers:
        reasons.setdefault(symbol, "mover")
    frame, unknown = universe_frame(broker, reasons)
    counts = frame["reason"].value_counts()
    wanted = [s for s, why in reasons.items() if why == "watchlist"]
    if wanted and not counts.get("watchlist", 0):
        errors = "; ".join(f"{s}: {unknown.get(s, 'unknown')}" for s in wanted[:50])
        raise ConfigurationError(
            f"IB knows none of the {len(wanted)} watch-list symbol(s) ({errors}); fix "
            'IBKR_WATCHLIST (a JSON list of IB symbols such as ["AAPL","MSFT"]): without them '
            "the day would trade nothing but the movers"
        )
    meta = {
        "watchlist": int(counts.get("watchlist", 0)),
        "holdings": int(counts.get("holding", 0)),
        "movers_added": int(counts.get("mover", 0)),
        "movers": ", ".join(movers) or "(none)",
        "unknown_symbols": len(unknown),
        "avg_volume_sources": value_counts(frame, "avg_volume_source"),
    }
    return Fetched(frame, unknown, meta)


@ingest_asset(QUOTES, Out(failed_key="missing_symbols"))
def quotes(
    context: dg.AssetExecutionContext,
    ib: IBResource,
    storage: StorageResource,
    universe: pd.DataFrame,
) -> Fetched:
    """A pre-open snapshot of every universe symbol: bid, ask, last, previous close, volume."""
    broker = ib.broker_at(session_of(context)[2])
    frame, missing = quote_frame(broker, universe_contracts(universe))
    rel_spread = (frame["spread"] / frame["mid"]).median() * 1e4
    meta = {
        "median_spread_bps": float(rel_spread),
        "missing": len(missing),
        "market_data_types": value_counts(frame, "market_data_type"),
    }
    return Fetched(frame, missing, meta)


@ingest_asset(BARS, Out(PARQUET))
def daily_bars(
    context: dg.AssetExecutionContext,
    ib: IBResource,
    storage: StorageResource,
    pipeline: PipelineConfig,
    universe: pd.DataFrame,
) -> Fetched:
    """Daily OHLCV for the last 600 sessions before today; only bars not cached are fetched."""
    _, session, at = session_of(context)
    broker = ib.broker_at(at)
    needed = previous_sessions(session, pipeline.history_sessions)
    workers = request_workers(broker, pipeline)
    contracts = universe_contracts(universe)
    bars, fetched, failed, requests = cached_bars(
        storage, broker, contracts, needed, at, session, workers
    )
    meta = {
        "bars_fetched": len(fetched),
        "bars_cached": len(bars) - len(fetched),
        "symbols_fetched": requests,
        "history_requests_failed": len(failed),
        "first_session": needed[0].isoformat(),
        "last_session": needed[-1].isoformat(),
    }
    return Fetched(bars, failed, meta, staged=fetched)


@ingest_asset(FUNDAMENTALS, Out(PARQUET, "missing_symbols"), source=fundamentals_source())
def fundamentals(
    context: dg.AssetExecutionContext,
    ib: IBResource,
    storage: StorageResource,
    fundamentals: FundamentalsResource,
    universe: pd.DataFrame,
) -> Fetched:
    """Quarterly statements filed before the session, with each symbol's forward EPS."""
    key, session, at = session_of(context)
    stocks = universe.loc[universe["sec_type"] == "STK", "symbol"].astype(str).tolist()
    data = fundamentals.fetch(ib.broker_at(at), stocks, as_of=session)
    frame = data.statements.merge(data.forward_eps, on="symbol", how="left")
    storage.write_json(storage.staging_path(key, "fundamentals_missing"), data.missing)
    meta = {
        "symbols_with_statements": int(frame["symbol"].nunique()),
        "symbols_missing": len(data.missing),
        "source": type(fundamentals).__name__,
    }
    return Fetched(frame, data.missing, meta)


@ingest_asset(
    HEADLINES,
    source=IB_NEWS,
    outs={
        "headlines": ("Every headline of the last 24 hours before the run, per symbol.", Out()),
        "headline_history": (
            "The headlines of the weeks before: each symbol's own baseline.",
            Out(PARQUET),
        ),
    },
)
def headlines(
    context: dg.AssetExecutionContext,
    ib: IBResource,
    storage: StorageResource,
    pipeline: PipelineConfig,
    universe: pd.DataFrame,
) -> dict[str, Fetched]:
    """News per universe symbol: the last 24 hours (``headlines``) and the
    ``headline_history_days`` before them (``headline_history``, the sentiment baseline)."""
    _, _, at = session_of(context)
    broker = ib.broker_at(at)
    start = at - timedelta(hours=pipeline.headline_hours)
    history_start = start - timedelta(days=pipeline.headline_history_days)
    news, failed = headline_frame(
        broker,
        universe_contracts(universe),
        [(history_start, at)],
        request_workers(broker, pipeline),
    )
    recent, history = split_headlines(
        news, at, pipeline.headline_hours, pipeline.headlines_per_symbol
    )
    with_news = int(recent["symbol"].nunique())
    meta = {
        "symbols_with_news": with_news,
        "symbols_without_news": len(universe) - with_news - len(failed),
        "window_start": start.isoformat(),
        "window_end": at.isoformat(),
    }
    history_meta = {"window_start": history_start.isoformat()}
    return {
        "headlines": Fetched(recent, failed, meta),
        "headline_history": Fetched(history.reset_index(drop=True), {}, history_meta),
    }


@ingest_asset(MACRO, Out(PARQUET, "failed_gauges"))
def macro_gauges(
    context: dg.AssetExecutionContext,
    ib: IBResource,
    storage: StorageResource,
    pipeline: PipelineConfig,
) -> Fetched:
    """Rates, dollar, oil, volatility and the index ETFs, with risk-on/off and curve features."""
    _, session, at = session_of(context)
    first = previous_sessions(session, pipeline.macro_sessions)[0]
    history, failed = macro_history(ib.broker_at(at), first, at, session)
    features = macro_features(history)
    frame = history.join(features).reset_index()
    regime = latest_regime(features)
    meta = {
        "regime": regime.label,
        "risk_score": regime.risk_score,
        "equity_exposure": regime.equity_exposure,
        "regime_session": str(regime.session.date()) if pd.notna(regime.session) else None,
        **{f"latest_{c}": float(history[c].iloc[-1]) for c in history.columns if len(history)},
    }
    return Fetched(frame, failed, meta, preview=frame.tail(10).iloc[::-1])


@ingest_asset(SOCIAL, Out(PARQUET, "not_counted"), source=social_source())
def social_chatter(
    context: dg.AssetExecutionContext,
    ib: IBResource,
    storage: StorageResource,
    social: SocialResource,
    universe: pd.DataFrame,
) -> Fetched:
    """Posts and messages naming each universe symbol, per session, over the sessions before
    the run: the day's chatter and its trailing history (the feature matrix's spike scores)."""
    _, session, at = session_of(context)
    sessions = previous_sessions(session, social.history_sessions + 1)
    symbols = universe["symbol"].astype(str).tolist()
    got = social.fetch(ib.broker_at(at), symbols, sessions)
    last = got.counts.loc[got.counts["session"] == pd.Timestamp(sessions[-1])]
    meta = {
        "source": social.source,
        "requests": got.requests,
        "sessions": len(sessions) - 1,
        "last_session": sessions[-1].isoformat(),
        "symbols_counted": int(last[["posts", "mentions"]].notna().any(axis=1).sum()),
        "failed_source": ", ".join(k for k in got.failed if " " not in k) or None,
    }
    return Fetched(got.counts.astype(SOCIAL.dtypes), got.failed, meta)
