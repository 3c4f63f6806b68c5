"""Stage 1 — ingest: what the market looked like at 08:00 New York on the session.

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
"""

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from typing import TypeVar

import dagster as dg
import pandas as pd

from ibkr_assets.assets._common import (
    daily_asset_kwargs,
    frame_metadata,
    listing,
    session_of,
    with_partition,
)
from ibkr_assets.broker import Broker
from ibkr_assets.broker.errors import BrokerError
from ibkr_assets.broker.models import Bar, Contract, Quote
from ibkr_assets.config import PipelineConfig, watchlist_symbols
from ibkr_assets.partitions import previous_sessions
from ibkr_assets.quant.macro import latest_regime, macro_features
from ibkr_assets.quant.sentiment import split_headlines
from ibkr_assets.resources.fundamentals import FundamentalsResource
from ibkr_assets.resources.ib import IBResource
from ibkr_assets.resources.storage import StorageResource

T = TypeVar("T")
INGEST = daily_asset_kwargs("ingest")
BAR_COLUMNS = ["symbol", "session", "open", "high", "low", "close", "volume"]
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
    frame = pd.DataFrame(rows, columns=BAR_COLUMNS)
    return frame.astype(
        {"symbol": "string", "session": "datetime64[ns]"}
        | dict.fromkeys(["open", "high", "low", "close", "volume"], "float64")
    )


def fetch_each(
    fetch: Callable[[Contract], T], contracts: Sequence[Contract], workers: int
) -> tuple[dict[str, T], dict[str, str]]:
    """``fetch(contract)`` for every contract, ``workers`` at a time (the broker paces its own
    requests); returns the results and the error of each symbol that failed, by symbol."""

    def one(contract: Contract) -> tuple[str, T | None, str | None]:
        try:
            return contract.symbol, fetch(contract), None
        except BrokerError as exc:
            return contract.symbol, None, str(exc)

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
            unknown[symbol] = str(exc)
    return contracts, unknown


def _universe_contracts(universe: pd.DataFrame) -> list[Contract]:
    return [
        Contract(conid=int(r.conid), symbol=str(r.symbol), sec_type=str(r.sec_type))  # type: ignore[arg-type]
        for r in universe.itertuples()
    ]


# -- top movers and universe ------------------------------------------------------------------


@dg.asset(**INGEST)
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
            failed[code] = str(exc)
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
    frame = pd.DataFrame(
        rows,
        columns=["scanner", "rank", "symbol", "conid", "change_pct", "volume", "avg_volume"],
    ).astype({"scanner": "string", "rank": "int64", "symbol": "string", "conid": "int64"})
    frame = frame.astype(dict.fromkeys(["change_pct", "volume", "avg_volume"], "float64"))
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
            unknown[c.symbol] = str(exc)
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
    columns = ["symbol", "conid", "sec_type", "sector", "industry", "lot_size", "adv", "reason"]
    frame = pd.DataFrame(rows, columns=columns).astype(
        {
            "symbol": "string",
            "conid": "int64",
            "sec_type": "string",
            "sector": "string",
            "industry": "string",
            "lot_size": "int64",
            "adv": "float64",
            "reason": "string",
        }
    )
    return frame, unknown


@dg.asset(**INGEST)
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
        except BrokerError:  # one bad instrument: ask one by one to find it
            for c in chunk:
                try:
                    rows += _quote_rows(broker.quotes([c]))
                except BrokerError as exc:
                    missing[c.symbol] = str(exc)
    columns = ["symbol", "conid", "bid", "ask", "last", "close", "volume", "mid", "spread", "time"]
    frame = pd.DataFrame(rows, columns=columns)
    frame = frame.astype(
        {"symbol": "string", "conid": "int64"}
        | dict.fromkeys(["bid", "ask", "last", "close", "volume", "mid", "spread"], "float64")
    ).assign(time=pd.to_datetime(frame["time"], utc=True))
    return frame, missing


@dg.asset(**INGEST)
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
    return frame.astype({"symbol": "string", "session": "datetime64[ns]"})


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


@dg.asset(**INGEST)
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


@dg.asset(**INGEST)
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
HEADLINE_COLUMNS = {
    "symbol": "string",
    "time": "datetime64[ns, UTC]",
    "headline": "string",
    "provider_code": "string",
    "article_id": "string",
}


def _headline_frame(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(HEADLINE_COLUMNS))
    return frame.assign(time=pd.to_datetime(frame["time"], utc=True)).astype(HEADLINE_COLUMNS)


@dg.multi_asset(
    outs={
        "headlines": dg.AssetOut(
            description="Every headline of the last 24 hours before the run, per symbol.",
            metadata=INGEST["metadata"],
            kinds=INGEST["kinds"],
        ),
        "headline_history": dg.AssetOut(
            description="The headlines of the weeks before that: each symbol's own baseline.",
            metadata=INGEST["metadata"],
            kinds=INGEST["kinds"],
        ),
    },
    partitions_def=INGEST["partitions_def"],
    group_name=INGEST["group_name"],
)
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
            failed[column] = str(exc)
            continue
        frame = _bars_frame(symbol, bars, before=session)
        closes[column] = frame.set_index("session")["close"] * scale
    history = pd.DataFrame(closes).sort_index()
    history = history.loc[history.index >= pd.Timestamp(first)]
    history.index.name = "session"
    return history, failed


@dg.asset(**INGEST)
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
