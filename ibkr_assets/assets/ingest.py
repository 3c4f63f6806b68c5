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
* ``macro_gauges`` — 10-year yield, EURUSD, crude, VIX, SPY and QQQ with the regime features.

A symbol the broker does not know, a missing statement or an empty news day is recorded in the
metadata and left to the data-quality checks; it does not fail the run.

Retries: the run connects to IB when it starts (the ``ib`` resource), so an unreachable IB fails
the run before any asset. After that, a transient error (the connection dropped, IB did not
answer in time, a pacing violation) fails the step and the one :data:`INGEST_RETRY` policy runs
it again with backoff and jitter; any other error fails the step at once, without retries
(:func:`transient_retries_only`). Nothing in an asset loops on its own.
"""

import functools
import inspect
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from typing import Any, TypeVar, cast

import dagster as dg
import pandas as pd

from ibkr_assets.assets.catalog import IB, IB_NEWS, Table, daily_asset_kwargs
from ibkr_assets.assets.materialization import frame_metadata, listing
from ibkr_assets.assets.partition import session_of, with_partition
from ibkr_assets.broker import Broker
from ibkr_assets.broker.errors import BrokerError, NotConnected, PacingViolation
from ibkr_assets.broker.models import Bar, Contract, Quote
from ibkr_assets.config import PipelineConfig, watchlist_symbols
from ibkr_assets.partitions import DAILY_PARTITIONS, previous_sessions
from ibkr_assets.quant.macro import FEATURE_COLUMNS as MACRO_FEATURES
from ibkr_assets.quant.macro import latest_regime, macro_features
from ibkr_assets.quant.sentiment import split_headlines
from ibkr_assets.resources import fundamentals_source
from ibkr_assets.resources.fundamentals import FundamentalsResource
from ibkr_assets.resources.ib import IBResource
from ibkr_assets.resources.storage import StorageResource

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
#: Errors worth another attempt of a step: the connection dropped or IB did not answer in time
#: (NotConnected), or IB asked for slower requests (PacingViolation).
TRANSIENT_ERRORS: tuple[type[BrokerError], ...] = (NotConnected, PacingViolation)
#: The ingest assets' one retry policy: up to 3 more attempts, about 10 s, 20 s and 40 s later
#: (exponential backoff, ±jitter so that retried steps do not reconnect in step).
INGEST_RETRY = dg.RetryPolicy(
    max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
GROUP = "ingest"


def ingest_asset(table: Table, source: str = IB) -> dict[str, Any]:
    """The decorator arguments of an ingest asset storing ``table``, read from ``source``
    through IB's API: the daily partitions, the catalog entry, and :data:`INGEST_RETRY`."""
    catalog = daily_asset_kwargs(GROUP, table, stage="1-ingest", source=source, kinds={"ib"})
    return {**catalog, "retry_policy": INGEST_RETRY}


TOP_MOVERS = Table(
    {
        "scanner": ("string", "IB scanner code (TOP_PERC_GAIN, TOP_PERC_LOSE, HOT_BY_VOLUME)"),
        "rank": ("int64", "IB's rank in the scanner's list, 0 = first"),
        "symbol": ("string", "ticker symbol"),
        "conid": ("int64", "IB contract id (conId)"),
        "change_pct": ("float64", "change against the previous close, percent"),
        "volume": ("float64", "volume of the session so far, shares"),
        "avg_volume": ("float64", "average daily volume, shares"),
    }
)
UNIVERSE = Table(
    {
        "symbol": ("string", "ticker symbol"),
        "conid": ("int64", "IB contract id (conId)"),
        "sec_type": ("string", "IB security type (secType): STK or ETF"),
        "sector": ("string", "sector (IB industry)"),
        "industry": ("string", "industry (IB category)"),
        "lot_size": ("int64", "round lot, shares (IB sizeIncrement / minSize)"),
        "adv": ("float64", "average daily volume as IB reports it, shares"),
        "reason": ("string", "why the symbol is traded today: watchlist, holding or mover"),
    }
)
QUOTES = Table(
    {
        "symbol": ("string", "ticker symbol"),
        "conid": ("int64", "IB contract id (conId)"),
        "bid": ("float64", "best bid, USD per share"),
        "ask": ("float64", "best ask, USD per share"),
        "last": ("float64", "last trade, USD per share"),
        "close": ("float64", "previous session's close, USD per share (IB tick 9)"),
        "volume": ("float64", "volume of the session so far, shares"),
        "mid": ("float64", "(bid + ask) / 2, USD per share"),
        "spread": ("float64", "ask - bid, USD per share"),
        "time": ("datetime64[ns, UTC]", "time of the snapshot, UTC"),
    }
)
BARS = Table(
    {
        "symbol": ("string", "ticker symbol"),
        "session": ("datetime64[ns]", "the NYSE session of the bar (date)"),
        "open": ("float64", "opening price, USD per share"),
        "high": ("float64", "highest price, USD per share"),
        "low": ("float64", "lowest price, USD per share"),
        "close": ("float64", "closing price, USD per share"),
        "volume": ("float64", "volume traded in the session, shares"),
    }
)
BAR_COLUMNS = BARS.names
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
HEADLINES = Table(
    {
        "symbol": ("string", "ticker symbol the news is about"),
        "time": ("datetime64[ns, UTC]", "publication time, UTC"),
        "headline": ("string", "the headline's text"),
        "provider_code": ("string", "IB news provider code (providerCode), e.g. BRFG"),
        "article_id": ("string", "IB article id (articleId, for reqNewsArticle)"),
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
#: The macro gauges: column -> (symbol, secType, currency, whatToShow, scale to our units).
#: IB quotes TNX as the 10-year yield times ten; the gauge is in percent.
MACRO_INSTRUMENTS: dict[str, tuple[str, str, str, str, float]] = {
    "ten_year_yield": ("TNX", "IND", "USD", "TRADES", 0.1),
    "eurusd": ("EUR", "CASH", "USD", "MIDPOINT", 1.0),
    "crude": ("CL", "FUT", "USD", "TRADES", 1.0),
    "vix": ("VIX", "IND", "USD", "TRADES", 1.0),
    "spy": ("SPY", "STK", "USD", "TRADES", 1.0),
    "qqq": ("QQQ", "STK", "USD", "TRADES", 1.0),
}


def transient_retries_only(compute: F) -> F:
    """Let :data:`INGEST_RETRY` retry ``compute`` (an asset's function, plain or generator) only
    for :data:`TRANSIENT_ERRORS`: any other error fails the step at once, as a ``dg.Failure``
    that bypasses the retry policy, with the original error as its cause."""

    def permanent(exc: Exception) -> dg.Failure:
        return dg.Failure(description=f"{type(exc).__name__}: {exc}", allow_retries=False)

    if inspect.isgeneratorfunction(compute):

        @functools.wraps(compute)
        def generator(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from compute(*args, **kwargs)
            except (*TRANSIENT_ERRORS, dg.Failure):
                raise
            except Exception as exc:
                raise permanent(exc) from exc

        return cast(F, generator)

    @functools.wraps(compute)
    def plain(*args: Any, **kwargs: Any) -> Any:
        try:
            return compute(*args, **kwargs)
        except (*TRANSIENT_ERRORS, dg.Failure):
            raise
        except Exception as exc:
            raise permanent(exc) from exc

    return cast(F, plain)


def request_error(exc: BrokerError) -> str:
    """The error of one symbol's (scanner's, gauge's) request, to record in the metadata; a lost
    connection is the step's error rather than the symbol's and is raised again, so the step
    fails and :data:`INGEST_RETRY` runs it again."""
    if isinstance(exc, NotConnected):
        raise exc
    return str(exc)


def ib_duration(first: date, as_of: datetime) -> str:
    """The shortest IB duration string ("N D" up to a year, else "N Y") reaching back to
    ``first`` from ``as_of``."""
    days = (as_of.date() - first).days + 1
    return f"{days} D" if days <= 365 else f"{math.ceil(days / 365)} Y"


def _bars_frame(symbol: str, bars: Sequence[Bar], before: date) -> pd.DataFrame:
    rows = [
        (symbol, b.session or b.time.date(), b.open, b.high, b.low, b.close, b.volume)
        for b in bars
        if (b.session or b.time.date()) < before
    ]
    return pd.DataFrame(rows, columns=BARS.names).astype(BARS.dtypes)


def fetch_each(
    fetch: Callable[[Contract], T], contracts: Sequence[Contract], workers: int
) -> tuple[dict[str, T], dict[str, str]]:
    """``fetch(contract)`` for every contract, ``workers`` at a time (the broker paces its own
    requests); returns the results and the error of each symbol that failed, by symbol."""

    def one(contract: Contract) -> tuple[str, T | None, str | None]:
        try:
            return contract.symbol, fetch(contract), None
        except BrokerError as exc:
            return contract.symbol, None, request_error(exc)

    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            outcomes = list(pool.map(one, contracts))
    else:
        outcomes = [one(c) for c in contracts]
    results = {s: r for s, r, e in outcomes if e is None}
    failed = {s: e for s, _, e in outcomes if e is not None}
    return results, failed  # type: ignore[return-value]


def _workers(broker: Broker, config: PipelineConfig) -> int:
    # the in-process simulator is CPU-bound under the GIL: threads would only add overhead
    return 1 if broker.name == "sim" else config.request_workers


def _resolve_all(broker: Broker, symbols: Sequence[str]) -> tuple[list[Contract], dict[str, str]]:
    contracts, unknown = [], {}
    for symbol in symbols:
        try:
            contracts.append(broker.resolve(symbol))
        except BrokerError as exc:
            unknown[symbol] = request_error(exc)
    return contracts, unknown


def _universe_contracts(universe: pd.DataFrame) -> list[Contract]:
    return [
        Contract(conid=int(r.conid), symbol=str(r.symbol), sec_type=str(r.sec_type))  # type: ignore[arg-type]
        for r in universe.itertuples()
    ]


# -- top movers and universe ------------------------------------------------------------------


@dg.asset(**ingest_asset(TOP_MOVERS))
@transient_retries_only
def top_movers(
    context: dg.AssetExecutionContext,
    ib: IBResource,
    storage: StorageResource,
    pipeline: PipelineConfig,
) -> dg.Output[pd.DataFrame]:
    """The day's biggest gainers, losers and volume surprises from IB's market scanners."""
    key, _, at = session_of(context)
    broker = ib.broker_at(at)
    rows, failed = [], {}
    for code in pipeline.scanner_codes:
        try:
            hits = broker.scan(
                code, location=pipeline.scanner_location, limit=pipeline.scanner_limit
            )
        except BrokerError as exc:
            failed[code] = request_error(exc)
            continue
        rows += [
            (
                code,
                h.rank,
                h.contract.symbol,
                h.contract.conid,
                h.change_pct,
                h.volume,
                h.avg_volume,
            )
            for h in hits
        ]
    frame = pd.DataFrame(rows, columns=TOP_MOVERS.names).astype(TOP_MOVERS.dtypes)
    storage.write_frame_json(storage.staging_path(key, "top_movers"), frame)
    meta = frame_metadata(frame, scanners=", ".join(pipeline.scanner_codes))
    if failed:
        meta["failed_scanners"] = listing(failed)
    return dg.Output(with_partition(frame, key), metadata=meta)


def select_movers(
    movers: pd.DataFrame, min_change_pct: float, min_volume_ratio: float
) -> list[str]:
    """Symbols whose |% change| exceeds ``min_change_pct`` on volume above ``min_volume_ratio``
    times their average daily volume."""
    ratio = movers["volume"] / movers["avg_volume"].where(movers["avg_volume"] > 0)
    hot = movers.loc[(movers["change_pct"].abs() > min_change_pct) & (ratio > min_volume_ratio)]
    return list(dict.fromkeys(hot["symbol"].astype(str)))


def universe_frame(broker: Broker, reasons: dict[str, str]) -> tuple[pd.DataFrame, dict[str, str]]:
    """One row per symbol of ``reasons`` the broker knows (symbol, conid, sec_type, sector,
    industry, lot_size, adv in shares, reason), and the error of each one it does not."""
    contracts, unknown = _resolve_all(broker, list(reasons))
    rows = []
    for c in contracts:
        try:
            d = broker.contract_details(c)
        except BrokerError as exc:
            unknown[c.symbol] = request_error(exc)
            continue
        adv = float(d.avg_daily_volume) if d.avg_daily_volume else float("nan")
        rows.append(
            (
                c.symbol,
                c.conid,
                c.sec_type,
                d.sector,
                d.industry,
                d.lot_size,
                adv,
                reasons[c.symbol],
            )
        )
    return pd.DataFrame(rows, columns=UNIVERSE.names).astype(UNIVERSE.dtypes), unknown


@dg.asset(**ingest_asset(UNIVERSE))
@transient_retries_only
def universe(
    context: dg.AssetExecutionContext,
    ib: IBResource,
    storage: StorageResource,
    pipeline: PipelineConfig,
    top_movers: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    """The symbols the desk trades today: watch-list, holdings and heavy-volume movers."""
    key, _, at = session_of(context)
    broker = ib.broker_at(at)
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
    storage.write_frame_json(storage.staging_path(key, "universe"), frame)
    counts = frame["reason"].value_counts()
    meta = frame_metadata(
        frame,
        watchlist=int(counts.get("watchlist", 0)),
        holdings=int(counts.get("holding", 0)),
        movers_added=int(counts.get("mover", 0)),
        movers=", ".join(movers) or "(none)",
        unknown_symbols=len(unknown),
    )
    if unknown:
        meta["unknown_symbol_list"] = listing(unknown)
    return dg.Output(with_partition(frame, key), metadata=meta)


# -- quotes -----------------------------------------------------------------------------------


def _quote_rows(quotes: Sequence[Quote]) -> list[tuple]:
    return [
        (
            q.contract.symbol,
            q.contract.conid,
            q.bid,
            q.ask,
            q.last,
            q.close,
            q.volume,
            q.mid,
            q.spread,
            q.time,
        )
        for q in quotes
    ]


def quote_frame(
    broker: Broker, contracts: Sequence[Contract]
) -> tuple[pd.DataFrame, dict[str, str]]:
    """A bulk snapshot of ``contracts`` (100 per request), and the error of each symbol the
    broker could not quote."""
    rows, missing = [], {}
    for start in range(0, len(contracts), 100):
        chunk = contracts[start : start + 100]
        try:
            rows += _quote_rows(broker.quotes(chunk))
        except BrokerError as exc:  # one bad instrument: ask one by one to find it
            request_error(exc)
            for c in chunk:
                try:
                    rows += _quote_rows(broker.quotes([c]))
                except BrokerError as exc:
                    missing[c.symbol] = request_error(exc)
    frame = pd.DataFrame(rows, columns=QUOTES.names)
    frame = frame.assign(time=pd.to_datetime(frame["time"], utc=True)).astype(QUOTES.dtypes)
    return frame, missing


@dg.asset(**ingest_asset(QUOTES))
@transient_retries_only
def quotes(
    context: dg.AssetExecutionContext,
    ib: IBResource,
    storage: StorageResource,
    universe: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    """A pre-open snapshot of every universe symbol: bid, ask, last, previous close, volume."""
    key, _, at = session_of(context)
    broker = ib.broker_at(at)
    frame, missing = quote_frame(broker, _universe_contracts(universe))
    storage.write_frame_json(storage.staging_path(key, "quotes"), frame)
    rel_spread = (frame["spread"] / frame["mid"]).median() * 1e4
    meta = frame_metadata(frame, median_spread_bps=float(rel_spread), missing=len(missing))
    if missing:
        meta["missing_symbols"] = listing(missing)
    return dg.Output(with_partition(frame, key), metadata=meta)


# -- daily bars (incremental) -----------------------------------------------------------------

_CACHE_DDL = """
create schema if not exists cache;
create table if not exists cache.daily_bars (
    symbol varchar, session date, open double, high double, low double, close double,
    volume double, primary key (symbol, session)
)
"""


def _cached_sessions(
    storage: StorageResource, symbols: Sequence[str], first: date, last: date
) -> pd.DataFrame:
    with storage.warehouse() as conn:
        conn.execute(_CACHE_DDL)
        return conn.execute(
            "select symbol, session from cache.daily_bars "
            "where session between ? and ? and symbol in (select unnest(?))",
            [first, last, list(symbols)],
        ).df()


def _store_bars(storage: StorageResource, frame: pd.DataFrame) -> None:
    if frame.empty:
        return
    with storage.warehouse() as conn:
        conn.execute(_CACHE_DDL)
        conn.register("new_bars", frame.assign(session=frame["session"].dt.date))
        conn.execute("insert or replace into cache.daily_bars select * from new_bars")


def _load_bars(
    storage: StorageResource, symbols: Sequence[str], first: date, last: date
) -> pd.DataFrame:
    with storage.warehouse() as conn:
        frame = conn.execute(
            "select symbol, session, open, high, low, close, volume from cache.daily_bars "
            "where session between ? and ? and symbol in (select unnest(?)) "
            "order by symbol, session",
            [first, last, list(symbols)],
        ).df()
    return frame.astype(BARS.dtypes)


def cached_bars(
    storage: StorageResource,
    broker: Broker,
    universe: pd.DataFrame,
    needed: Sequence[date],
    at: datetime,
    session: date,
    workers: int,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str], int]:
    """Daily bars of the universe for the ``needed`` sessions (all before ``session``): the
    ones in the DuckDB cache, plus those fetched from the broker (as of ``at``) and added to
    it. Returns the bars, the newly fetched ones, the symbols whose request failed (with the
    error) and the number of history requests."""
    first, last = needed[0], needed[-1]
    symbols = universe["symbol"].astype(str).tolist()
    cached = _cached_sessions(storage, symbols, first, last)
    wanted = pd.MultiIndex.from_product(
        [symbols, pd.DatetimeIndex(needed)], names=["symbol", "session"]
    )
    present = pd.MultiIndex.from_arrays(
        [cached["symbol"].astype(str), pd.DatetimeIndex(cached["session"])]
    )
    absent = wanted.difference(present).to_frame(index=False)
    missing: dict[str, list[date]] = {
        str(symbol): sorted(sessions.dt.date)
        for symbol, sessions in absent.groupby("symbol")["session"]
    }
    to_fetch = [c for c in _universe_contracts(universe) if missing.get(c.symbol)]
    requests = len(to_fetch)
    results, failed = fetch_each(
        lambda c: broker.history(
            c, duration=ib_duration(missing[c.symbol][0], at), bar_size="1 day", end=at
        ),
        to_fetch,
        workers,
    )
    fetched_frames = []
    for symbol, got_bars in results.items():
        frame = _bars_frame(symbol, got_bars, before=session)
        fetched_frames.append(frame.loc[frame["session"].isin(pd.DatetimeIndex(missing[symbol]))])
    fetched = (
        pd.concat(fetched_frames, ignore_index=True)
        if fetched_frames
        else _bars_frame("", [], before=session)
    )
    _store_bars(storage, fetched)
    return _load_bars(storage, symbols, first, last), fetched, failed, requests


@dg.asset(**ingest_asset(BARS))
@transient_retries_only
def daily_bars(
    context: dg.AssetExecutionContext,
    ib: IBResource,
    storage: StorageResource,
    pipeline: PipelineConfig,
    universe: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    """Daily OHLCV for the last 600 sessions before today; only bars not cached are fetched."""
    key, session, at = session_of(context)
    broker = ib.broker_at(at)
    needed = previous_sessions(session, pipeline.history_sessions)
    first, last = needed[0], needed[-1]
    bars, fetched, failed, requests = cached_bars(
        storage, broker, universe, needed, at, session, _workers(broker, pipeline)
    )
    storage.write_parquet(storage.staging_path(key, "daily_bars", "parquet"), fetched)
    meta = frame_metadata(
        bars,
        bars_fetched=len(fetched),
        bars_cached=len(bars) - len(fetched),
        symbols_fetched=requests,
        history_requests_failed=len(failed),
        first_session=first.isoformat(),
        last_session=last.isoformat(),
    )
    if failed:
        meta["failed_symbols"] = listing(failed)
    return dg.Output(with_partition(bars, key), metadata=meta)


# -- fundamentals, headlines, macro -----------------------------------------------------------


@dg.asset(**ingest_asset(FUNDAMENTALS, source=fundamentals_source()))
@transient_retries_only
def fundamentals(
    context: dg.AssetExecutionContext,
    ib: IBResource,
    storage: StorageResource,
    fundamentals: FundamentalsResource,
    universe: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    """Quarterly statements filed before the session, with each symbol's forward EPS."""
    key, session, at = session_of(context)
    broker = ib.broker_at(at)
    stocks = universe.loc[universe["sec_type"] == "STK", "symbol"].astype(str).tolist()
    data = fundamentals.fetch(broker, stocks, as_of=session)
    frame = data.statements.merge(data.forward_eps, on="symbol", how="left")
    storage.write_parquet(storage.staging_path(key, "fundamentals", "parquet"), frame)
    storage.write_json(storage.staging_path(key, "fundamentals_missing"), data.missing)
    meta = frame_metadata(
        frame,
        symbols_with_statements=int(frame["symbol"].nunique()),
        symbols_missing=len(data.missing),
        source=type(fundamentals).__name__,
    )
    if data.missing:
        meta["missing_symbols"] = listing(data.missing)
    return dg.Output(with_partition(frame, key), metadata=meta)


#: IB's historicalNews returns at most 300 headlines per request.
IB_MAX_NEWS = 300
HEADLINE_COLUMNS = HEADLINES.dtypes
#: The catalog entry both news assets share (the multi-asset takes it per output).
NEWS = ingest_asset(HEADLINES, source=IB_NEWS)


def _headline_frame(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(HEADLINE_COLUMNS))
    return frame.assign(time=pd.to_datetime(frame["time"], utc=True)).astype(HEADLINE_COLUMNS)


@dg.multi_asset(
    outs={
        name: dg.AssetOut(
            description=description,
            **{k: NEWS[k] for k in ("metadata", "kinds", "owners", "tags")},
        )
        for name, description in (
            ("headlines", "Every headline of the last 24 hours before the run, per symbol."),
            ("headline_history", "The headlines of the weeks before: each symbol's own baseline."),
        )
    },
    partitions_def=DAILY_PARTITIONS,
    group_name=GROUP,
    retry_policy=INGEST_RETRY,
)
@transient_retries_only
def headlines(
    context: dg.AssetExecutionContext,
    ib: IBResource,
    storage: StorageResource,
    pipeline: PipelineConfig,
    universe: pd.DataFrame,
):
    """News per universe symbol: the last 24 hours (``headlines``) and the
    ``headline_history_days`` before them (``headline_history``, the sentiment baseline)."""
    key, _, at = session_of(context)
    broker = ib.broker_at(at)
    start = at - timedelta(hours=pipeline.headline_hours)
    history_start = start - timedelta(days=pipeline.headline_history_days)
    results, failed = fetch_each(
        lambda c: broker.news(c, start=history_start, end=at, limit=IB_MAX_NEWS),
        _universe_contracts(universe),
        _workers(broker, pipeline),
    )
    rows = [
        (symbol, h.time, h.headline, h.provider_code, h.article_id)
        for symbol, items in results.items()
        for h in items
        if history_start <= h.time < at
    ]
    recent, history = split_headlines(
        _headline_frame(rows), at, pipeline.headline_hours, pipeline.headlines_per_symbol
    )
    storage.write_frame_json(storage.staging_path(key, "headlines"), recent)
    storage.write_parquet(storage.staging_path(key, "headline_history", "parquet"), history)
    with_news = int(recent["symbol"].nunique())
    meta = frame_metadata(
        recent,
        symbols_with_news=with_news,
        symbols_without_news=len(universe) - with_news - len(failed),
        window_start=start.isoformat(),
        window_end=at.isoformat(),
    )
    if failed:
        meta["failed_symbols"] = listing(failed)
    yield dg.Output(with_partition(recent, key), output_name="headlines", metadata=meta)
    yield dg.Output(
        with_partition(history.reset_index(drop=True), key),
        output_name="headline_history",
        metadata=frame_metadata(history, window_start=history_start.isoformat()),
    )


def macro_history(
    broker: Broker, first: date, at: datetime, session: date
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Daily closes of the :data:`MACRO_INSTRUMENTS` (our units) from ``first`` to the session
    before ``session``, index ``session``; and the error of each gauge that failed."""
    closes, failed = {}, {}
    for column, (symbol, sec_type, currency, what, scale) in MACRO_INSTRUMENTS.items():
        try:
            contract = broker.resolve(symbol, sec_type=sec_type, currency=currency)
            bars = broker.history(
                contract,
                duration=ib_duration(first, at),
                bar_size="1 day",
                what_to_show=what,
                end=at,
            )
        except BrokerError as exc:
            failed[column] = request_error(exc)
            continue
        frame = _bars_frame(symbol, bars, before=session)
        closes[column] = frame.set_index("session")["close"] * scale
    history = pd.DataFrame(closes).sort_index()
    history = history.loc[history.index >= pd.Timestamp(first)]
    history.index.name = "session"
    return history, failed


@dg.asset(**ingest_asset(MACRO))
@transient_retries_only
def macro_gauges(
    context: dg.AssetExecutionContext,
    ib: IBResource,
    storage: StorageResource,
    pipeline: PipelineConfig,
) -> dg.Output[pd.DataFrame]:
    """Rates, dollar, oil, volatility and the index ETFs, with risk-on/off and curve features."""
    key, session, at = session_of(context)
    broker = ib.broker_at(at)
    first = previous_sessions(session, pipeline.macro_sessions)[0]
    history, failed = macro_history(broker, first, at, session)
    features = macro_features(history)
    frame = history.join(features).reset_index()
    storage.write_parquet(storage.staging_path(key, "macro_gauges", "parquet"), frame)
    regime = latest_regime(features)
    meta = frame_metadata(
        frame.tail(10).iloc[::-1],
        regime=regime.label,
        risk_score=regime.risk_score,
        equity_exposure=regime.equity_exposure,
        regime_session=str(regime.session.date()) if pd.notna(regime.session) else None,
        **{f"latest_{c}": float(history[c].iloc[-1]) for c in history.columns if len(history)},
    )
    meta["dagster/row_count"] = len(frame)
    if failed:
        meta["failed_gauges"] = listing(failed)
    return dg.Output(with_partition(frame, key), metadata=meta)
