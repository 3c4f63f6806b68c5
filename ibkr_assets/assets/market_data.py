"""What the ingest assets and the weekly replay ask the broker for, and the tables its answers fill.

Each function takes a :class:`~ibkr_assets.broker.Broker` (pinned to the as-of time of the run
or replay) and returns typed frames plus the error of every symbol (scanner, gauge) the broker
could not serve, by name, so the caller names it in a warning and in the asset's metadata. A
lost connection or a pacing violation is the step's error rather than a symbol's: it is raised
again (:func:`request_error`) so the step fails, and its retry policy runs it again when
:func:`is_transient` says another attempt can help.

Daily bars go through the DuckDB cache of the storage resource (``cache.daily_bars``): the
cached bars are read once, only the missing sessions are requested, and those are added.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import date, datetime
from itertools import pairwise
from typing import TypeVar

import numpy as np
import pandas as pd

from ibkr_assets.assets.catalog import Table
from ibkr_assets.broker import Broker
from ibkr_assets.broker.batch import CONNECTION_ERRORS
from ibkr_assets.broker.errors import (
    BrokerError,
    DuplicateClientId,
    InvalidRequest,
    NotConnected,
)
from ibkr_assets.broker.models import MARKET_DATA_TYPE_NAMES, Contract
from ibkr_assets.config import PipelineConfig
from ibkr_assets.resources.storage import StorageResource
from ibkr_spec.errors import COULD_NOT_CONNECT

T = TypeVar("T")

#: The errors of a step rather than of one symbol: the connection dropped or IB did not answer
#: in time (NotConnected), or IB asked for slower requests (PacingViolation).
STEP_ERRORS: tuple[type[BrokerError], ...] = CONNECTION_ERRORS
#: The metadata key of a materialisation's one line naming the data it lacks (what could not
#: be fetched, the symbols absent from the feature matrix): the run's summary prints it.
MISSING_DATA = "missing_data"

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
        "avg_volume_source": (
            "string",
            "where adv comes from: ib (IB's tick 165 avVolume) or daily_bars (mean of the last "
            "complete sessions); empty when unknown",
        ),
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
        "market_data_type": (
            "string",
            "IB's market-data type the quote was served with: live, frozen, delayed (15-20 "
            "minutes) or delayed-frozen",
        ),
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
HEADLINES = Table(
    {
        "symbol": ("string", "ticker symbol the news is about"),
        "time": ("datetime64[ns, UTC]", "publication time, UTC"),
        "headline": ("string", "the headline's text"),
        "provider_code": ("string", "IB news provider code (providerCode), e.g. BRFG"),
        "article_id": ("string", "IB article id (articleId, for reqNewsArticle)"),
    }
)
#: IB's historicalNews returns at most 300 headlines per request.
IB_MAX_NEWS = 300
#: IB's snapshot requests of the quotes: this many contracts at a time.
QUOTE_CHUNK = 100
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


def request_error(exc: BrokerError) -> str:
    """The error of one symbol's (scanner's, gauge's) request, to record in the metadata; one of
    :data:`STEP_ERRORS` is the step's error rather than the symbol's and is raised again, so the
    step fails (and its retry policy runs it again when :func:`is_transient`)."""
    if isinstance(exc, STEP_ERRORS):
        raise exc
    return str(exc)


def is_transient(exc: BaseException) -> bool:
    """True when another attempt of a step may succeed: one of :data:`STEP_ERRORS`, except a
    client id in use (326: another client holds it until someone stops that client) and IB
    still unreachable after the backend's own reconnecting (502, after
    ``IBKR_RECONNECT_SECONDS`` of attempts with backoff: retrying the step would only postpone
    the run's failure)."""
    if isinstance(exc, DuplicateClientId):
        return False
    if isinstance(exc, NotConnected) and exc.code == COULD_NOT_CONNECT:
        return False
    return isinstance(exc, STEP_ERRORS)


def ib_duration(first: date, as_of: datetime) -> str:
    """The shortest IB duration string ("N D" up to a year, else "N Y") reaching back to
    ``first`` from ``as_of``."""
    days = (as_of.date() - first).days + 1
    return f"{days} D" if days <= 365 else f"{math.ceil(days / 365)} Y"


def request_workers(broker: Broker, config: PipelineConfig) -> int:
    """How many history (and news) requests to keep in flight, each on its own thread: the
    configured ``request_workers``, at most the backend's ``history_concurrency`` (IB's 50
    open requests, the Web API's 5 concurrent, one for the in-process simulator)."""
    return min(config.request_workers, broker.history_concurrency)


def fetch_each(
    fetch: Callable[[Contract], T],
    contracts: Sequence[Contract],
    workers: int,
    keep: Callable[[dict[str, T]], None] | None = None,
) -> tuple[dict[str, T], dict[str, str]]:
    """``fetch(contract)`` for every contract, ``workers`` at a time (the broker paces its own
    requests); returns the results and the error of each symbol that failed, by symbol.

    A step error (:data:`STEP_ERRORS`: the connection lost, IB's pacing) stops it: the requests
    not yet sent are not sent, ``keep`` (when given) receives the results fetched so far, and
    the error is raised again, for the step's retry policy."""

    def one(contract: Contract) -> tuple[str, T | None, BrokerError | None]:
        try:
            return contract.symbol, fetch(contract), None
        except BrokerError as exc:
            return contract.symbol, None, exc

    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(one, c) for c in contracts]
            for future in as_completed(futures):
                if isinstance(future.result()[2], STEP_ERRORS):
                    pool.shutdown(cancel_futures=True)  # waits for the requests in flight
                    break
        outcomes = [f.result() for f in futures if not f.cancelled()]
    else:
        outcomes = []
        for contract in contracts:
            outcomes.append(one(contract))
            if isinstance(outcomes[-1][2], STEP_ERRORS):
                break
    results = {s: r for s, r, e in outcomes if e is None}
    step = next((e for _, _, e in outcomes if isinstance(e, STEP_ERRORS)), None)
    if step is not None:
        if keep is not None:
            keep(results)  # type: ignore[arg-type]
        raise step
    return results, {s: str(e) for s, _, e in outcomes if e is not None}  # type: ignore[return-value]


def _empty(table: Table) -> pd.DataFrame:
    """A frame of ``table``'s columns and dtypes without rows."""
    return pd.DataFrame(columns=table.names).astype(table.dtypes)


def universe_contracts(universe: pd.DataFrame) -> list[Contract]:
    """The contracts of a :data:`UNIVERSE` frame's rows."""
    return [
        Contract(conid=int(r.conid), symbol=str(r.symbol), sec_type=str(r.sec_type))  # type: ignore[arg-type]
        for r in universe.itertuples()
    ]


# -- scanners and the universe ----------------------------------------------------------------


def scanner_frame(
    broker: Broker, codes: Sequence[str], location: str, limit: int
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The hits of IB's market scanners ``codes`` (:data:`TOP_MOVERS`), and the error of each
    scanner that failed."""
    rows, failed = [], {}
    for code in codes:
        try:
            hits = broker.scan(code, location=location, limit=limit)
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
    return pd.DataFrame(rows, columns=TOP_MOVERS.names).astype(TOP_MOVERS.dtypes), failed


def universe_frame(broker: Broker, reasons: dict[str, str]) -> tuple[pd.DataFrame, dict[str, str]]:
    """One row per symbol of ``reasons`` the broker knows (:data:`UNIVERSE`), and the error of
    each one it does not. The symbols are resolved and described together
    (``resolve_many``, ``contract_details_many`` without trading hours), so a backend that
    can ask for many at once (webapi) does."""
    contracts: list[tuple[str, Contract]] = []
    unknown: dict[str, str] = {}
    for symbol, found in broker.resolve_many(list(reasons)).items():
        if isinstance(found, BrokerError):
            unknown[symbol] = request_error(found)
        else:
            contracts.append((symbol, found))
    described = broker.contract_details_many([c for _, c in contracts], hours=False)
    rows = []
    for (symbol, c), d in zip(contracts, described, strict=True):
        if isinstance(d, BrokerError):
            unknown[c.symbol] = request_error(d)
            continue
        adv = float(d.avg_daily_volume) if d.avg_daily_volume else float("nan")
        source = d.avg_volume_source if d.avg_daily_volume else None
        rows.append(
            (
                c.symbol,
                c.conid,
                c.sec_type,
                d.sector,
                d.industry,
                d.lot_size,
                adv,
                source,
                reasons[symbol],
            )
        )
    return pd.DataFrame(rows, columns=UNIVERSE.names).astype(UNIVERSE.dtypes), unknown


# -- quotes -----------------------------------------------------------------------------------


def value_counts(frame: pd.DataFrame, column: str) -> dict[str, int]:
    """How many rows of ``frame`` hold each value of ``column`` (most frequent first, empty
    cells left out), for an asset's metadata: e.g. the market-data types of the quotes,
    ``{"delayed": 693}``."""
    return {str(k): int(n) for k, n in frame[column].value_counts().items()}


def quote_frame(
    broker: Broker, contracts: Sequence[Contract]
) -> tuple[pd.DataFrame, dict[str, str]]:
    """A bulk snapshot of ``contracts`` (:data:`QUOTES`), and the error of each symbol the
    broker could not quote: :data:`QUOTE_CHUNK` per request, or all in one from a backend
    answering in-process (``market_data_in_process``: a request costs it no I/O, and a replay
    asks for 700 names on each of 127 sessions); a chunk that fails is asked one by one."""
    parts, missing = [], {}
    size = max(len(contracts), 1) if broker.market_data_in_process else QUOTE_CHUNK
    for start in range(0, len(contracts), size):
        chunk = contracts[start : start + size]
        try:
            parts.append(broker.quotes_frame(chunk))
        except BrokerError as exc:  # one bad instrument: ask one by one to find it
            request_error(exc)
            for c in chunk:
                try:
                    parts.append(broker.quotes_frame([c]))
                except BrokerError as exc:
                    missing[c.symbol] = request_error(exc)
    if not parts:
        return _empty(QUOTES), missing
    got = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    bid, ask = got["bid"].to_numpy(), got["ask"].to_numpy()
    two_sided = (bid > 0) & (ask > 0)  # NaN compares False: no two-sided market
    types, which = np.unique(got["market_data_type"].to_numpy(), return_inverse=True)
    names = [MARKET_DATA_TYPE_NAMES.get(t, str(t)) for t in types.tolist()]
    frame = got.assign(
        mid=np.where(two_sided, (bid + ask) / 2.0, np.nan),
        spread=np.where(two_sided, ask - bid, np.nan),
        market_data_type=np.array(names, dtype=object)[which.reshape(-1)],
    )
    return _typed(frame[QUOTES.names], QUOTES), missing


def _typed(frame: pd.DataFrame, table: Table) -> pd.DataFrame:
    """``frame`` (``table``'s columns) with ``table``'s dtypes, casting only the columns that
    differ (a replay frames 127 sessions' quotes: casting every column each time costs more
    than the quotes do)."""
    dtypes = table.dtypes
    differ = {c: t for c, t in dtypes.items() if frame[c].dtype != pd.api.types.pandas_dtype(t)}
    return frame.astype(differ) if differ else frame


# -- daily bars (incremental) -----------------------------------------------------------------


def bars_frame(symbol: str, frame: pd.DataFrame, before: date) -> pd.DataFrame:
    """``symbol``'s bars (a bar frame, ``Broker.history_frame``) of the sessions before
    ``before`` (:data:`BARS`)."""
    day = _bar_days(frame)
    keep = (day < pd.Timestamp(before)).to_numpy()
    return _bars_table(symbol, frame.loc[keep], day[keep])


def _bar_days(frame: pd.DataFrame) -> pd.Series:
    """Each bar's session (its UTC date where the frame has none), datetime64[ns]."""
    utc_day = frame["time"].dt.tz_convert(None).dt.normalize()
    return frame["session"].fillna(utc_day).astype("datetime64[ns]")


def _bars_table(symbol: str | np.ndarray, frame: pd.DataFrame, day: pd.Series) -> pd.DataFrame:
    """A bar frame's rows as :data:`BARS` rows of ``symbol`` (one, or one a row), sessions
    ``day``."""
    symbols = np.full(len(frame), symbol, dtype=object) if isinstance(symbol, str) else symbol
    table = {
        "symbol": symbols,
        "session": day.to_numpy(),
        **{c: frame[c].to_numpy() for c in ("open", "high", "low", "close", "volume")},
    }
    return pd.DataFrame(table, columns=BARS.names).astype(BARS.dtypes)


def cached_bars(
    storage: StorageResource,
    broker: Broker,
    contracts: Sequence[Contract],
    needed: Sequence[date],
    at: datetime,
    session: date,
    workers: int,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str], int]:
    """Daily bars of ``contracts`` for the ``needed`` sessions (all before ``session``): the
    ones in the DuckDB cache, plus those fetched from the broker (as of ``at``) and added to
    it; a bar of a session not closed by ``at`` (IB's day so far) is used but not cached.
    Returns the bars (by symbol and session), the newly fetched ones, the symbols whose
    request failed (with the error) and the number of history requests."""
    symbols = [c.symbol for c in contracts]
    cached = storage.cached_bars(symbols, needed[0], needed[-1]).astype(BARS.dtypes)
    wanted = pd.DatetimeIndex(sorted(set(needed))).as_unit("ns")
    have = cached.groupby(cached["symbol"].astype(str), sort=False)["session"]
    present = {symbol: pd.DatetimeIndex(days) for symbol, days in have}
    missing: dict[str, pd.DatetimeIndex] = {}
    for symbol in symbols:
        lacking = wanted.difference(present[symbol]) if symbol in present else wanted
        if len(lacking):
            missing[symbol] = lacking
    to_fetch = [c for c in contracts if c.symbol in missing]
    before = pd.Timestamp(session)

    def new_bars(
        frame: pd.DataFrame, symbols: Sequence[str], lengths: Sequence[int]
    ) -> pd.DataFrame:
        """The bars of ``frame`` (IB's bars of ``symbols``, ``lengths`` rows each, one after
        the other) of the sessions the cache lacks (all before ``session``), as :data:`BARS`."""
        if not len(frame):
            return _empty(BARS)
        day = _bar_days(frame).to_numpy()
        keep = day < before.to_datetime64()
        # a symbol lacking every wanted session (a cold cache: all of them) keeps the bars of
        # the wanted sessions, tested at once; any other its own lacking sessions
        lacks_all = [len(missing[symbol]) == len(wanted) for symbol in symbols]
        keep &= np.isin(day, wanted.to_numpy()) | ~np.repeat(lacks_all, lengths)
        ends = np.cumsum(lengths).tolist()
        for symbol, end, n, every in zip(symbols, ends, lengths, lacks_all, strict=True):
            if not every:
                rows = slice(end - n, end)
                keep[rows] &= np.isin(day[rows], missing[symbol].to_numpy())
        names = np.repeat(np.array(list(symbols), dtype=object), lengths)
        return _bars_table(names[keep], frame.loc[keep], pd.Series(day[keep]))

    def each_new_bars(got: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
        """:func:`new_bars` of ``got`` (symbol -> IB's bar frame), concatenated once (a replay
        reads 700 symbols)."""
        if not got:
            return _empty(BARS)
        frame = pd.concat(list(got.values()), ignore_index=True)
        return new_bars(frame, list(got), [len(f) for f in got.values()])

    if broker.market_data_in_process:  # no I/O: every symbol of a duration in one request
        fetched, failed = _history_together(broker, to_fetch, missing, at, new_bars, storage)
        storage.cache_bars(fetched, at)
        return _with_cached(cached, fetched), fetched, failed, len(to_fetch)
    # bars fetched before a lost connection are cached all the same: the retry asks for the rest
    results, failed = fetch_each(
        lambda c: broker.history_frame(
            c,
            duration=ib_duration(missing[c.symbol][0].date(), at),
            bar_size="1 day",
            end=at,
        ),
        to_fetch,
        workers,
        keep=lambda got: storage.cache_bars(each_new_bars(got), at),
    )
    fetched = each_new_bars(results)
    storage.cache_bars(fetched, at)
    return _with_cached(cached, fetched), fetched, failed, len(to_fetch)


def _with_cached(cached: pd.DataFrame, fetched: pd.DataFrame) -> pd.DataFrame:
    """The cached bars and the ones just fetched, by symbol and session (:data:`BARS`)."""
    if fetched.empty:  # the cache had them all, in order
        return cached
    bars = pd.concat([cached, fetched], ignore_index=True).sort_values(["symbol", "session"])
    return bars.reset_index(drop=True).astype(BARS.dtypes)


def _history_together(
    broker: Broker,
    contracts: Sequence[Contract],
    missing: Mapping[str, pd.DatetimeIndex],
    at: datetime,
    new_bars: Callable[[pd.DataFrame, Sequence[str], Sequence[int]], pd.DataFrame],
    storage: StorageResource,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """:func:`cached_bars`'s requests as one ``Broker.history_frames`` per duration (a replay's
    700 symbols lack the same sessions: one request): the new bars (``new_bars`` of each
    answer) and the error of each symbol that failed. A step error is raised again once the
    bars of the durations answered before it are cached."""
    symbol_of = {c.conid: c.symbol for c in contracts}
    by_duration: dict[str, list[Contract]] = {}
    for c in contracts:
        by_duration.setdefault(ib_duration(missing[c.symbol][0].date(), at), []).append(c)
    parts: list[pd.DataFrame] = []
    failed: dict[str, str] = {}
    try:
        for duration, group in by_duration.items():
            frame, errors = broker.history_frames(group, duration, "1 day", end=at)
            failed |= {symbol_of[conid]: request_error(exc) for conid, exc in errors.items()}
            conids = frame["conid"].to_numpy()
            starts = np.flatnonzero(np.r_[True, conids[1:] != conids[:-1]]) if len(conids) else []
            lengths = np.diff(np.r_[starts, len(conids)]).tolist()
            parts.append(new_bars(frame, [symbol_of[k] for k in conids[starts].tolist()], lengths))
    except STEP_ERRORS:
        storage.cache_bars(_concat(parts, BARS), at)
        raise
    return _concat(parts, BARS), failed


def _concat(parts: list[pd.DataFrame], table: Table) -> pd.DataFrame:
    """``parts`` in one frame of ``table`` (its empty frame for none)."""
    return pd.concat(parts, ignore_index=True) if parts else _empty(table)


# -- news and macro ---------------------------------------------------------------------------


def _ns(times: pd.Series) -> np.ndarray:
    """UTC nanoseconds of a column of instants (datetime64, timezone-aware or naive UTC)."""
    return times.array.as_unit("ns").asi8


def _pages(
    broker: Broker,
    contract: Contract,
    start: datetime,
    end: datetime,
    page: pd.DataFrame | None = None,
) -> list[pd.DataFrame]:
    """The answers (``Broker.news_frames`` frames) of the requests for ``contract``'s headlines
    of ``[start, end)``, in as few requests as IB's cap allows: IB answers a news request with
    its newest :data:`IB_MAX_NEWS` headlines, so a full answer is followed by a request ending
    at the oldest headline it held (the headlines of that instant come again: the caller keeps
    each once). ``page``: the first answer, when it was asked with other contracts."""
    pages = []
    stop = end
    while True:
        if page is None:
            page, errors = broker.news_frames([contract], start=start, end=stop, limit=IB_MAX_NEWS)
            if errors:
                raise errors[contract.conid]
        pages.append(page)
        if len(page) < IB_MAX_NEWS:
            return pages
        oldest = page["time"].min()
        if oldest >= pd.Timestamp(stop):
            raise InvalidRequest(
                f"{contract.symbol} has more than {IB_MAX_NEWS} headlines at {oldest}: IB "
                "cannot be asked for the older ones; ask for a shorter span"
            )
        stop, page = oldest.to_pydatetime(), None


def _answers_together(
    broker: Broker, contracts: Sequence[Contract], runs: Sequence[tuple[datetime, datetime]]
) -> tuple[list[tuple[int, pd.DataFrame]], dict[str, str]]:
    """:func:`headline_frame`'s requests to a backend answering in-process: every contract's
    first page of a run in one ``news_frames`` call, then the further pages of those that
    filled theirs; the answers as (run, frame), and the error of each symbol that failed."""
    symbol_of = {c.conid: c.symbol for c in contracts}
    parts: list[tuple[int, pd.DataFrame]] = []
    failed: dict[str, str] = {}
    for run, (start, end) in enumerate(runs):
        first, errors = broker.news_frames(contracts, start=start, end=end, limit=IB_MAX_NEWS)
        for conid, exc in errors.items():
            failed.setdefault(symbol_of[conid], request_error(exc))
        parts.append((run, first))
        counts = first["conid"].value_counts()
        for c in contracts:
            if counts.get(c.conid, 0) < IB_MAX_NEWS:
                continue
            page = first.loc[(first["conid"] == c.conid).to_numpy()]
            try:
                parts += [(run, p) for p in _pages(broker, c, start, end, page)[1:]]
            except BrokerError as exc:
                failed.setdefault(c.symbol, request_error(exc))
    return parts, failed


def headline_frame(
    broker: Broker,
    contracts: Sequence[Contract],
    spans: Sequence[tuple[datetime, datetime]],
    workers: int,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Every headline about ``contracts`` published in each ``(start, end)`` span (end
    excluded; :data:`HEADLINES`), span after span, each newest first, each headline once; and
    the error of each symbol that failed. The spans must be disjoint and in time order; those
    that follow one another are asked together (:func:`_pages`), so a symbol takes one request
    per :data:`IB_MAX_NEWS` headlines rather than one per span. A backend answering in-process
    (``market_data_in_process``) is asked for every symbol at once, any other one symbol per
    request, ``workers`` at a time; the answers are cut once, for every symbol (pandas costs
    more per small frame than the headlines do)."""
    if any(end > start for (_, end), (start, _) in pairwise(spans)):
        raise ValueError(f"news spans must be disjoint and in time order, got {spans}")
    runs: list[tuple[datetime, datetime]] = []
    for start, end in spans:
        if runs and runs[-1][1] == start:
            runs[-1] = (runs[-1][0], end)
        else:
            runs.append((start, end))
    if broker.market_data_in_process:
        parts, failed = _answers_together(broker, contracts, runs)
    else:
        results, failed = fetch_each(
            lambda c: [_pages(broker, c, start, end) for start, end in runs], contracts, workers
        )
        parts = [
            (run, p) for per_run in results.values() for run, ps in enumerate(per_run) for p in ps
        ]
    return _headline_rows(contracts, spans, runs, parts, failed), failed


def _headline_rows(
    contracts: Sequence[Contract],
    spans: Sequence[tuple[datetime, datetime]],
    runs: Sequence[tuple[datetime, datetime]],
    parts: Sequence[tuple[int, pd.DataFrame]],
    failed: Mapping[str, str],
) -> pd.DataFrame:
    """:func:`headline_frame`'s rows from the answers ``parts`` ((run, frame), each symbol's
    in the order asked): those of each run's window, each once per symbol and run (the first
    time it came), symbol after symbol (those not ``failed``), span after span."""
    if not parts:
        return _empty(HEADLINES)
    found = pd.concat([p for _, p in parts], ignore_index=True) if len(parts) > 1 else parts[0][1]
    run = np.repeat(np.array([r for r, _ in parts], dtype=np.intp), [len(p) for _, p in parts])
    position = {c.conid: k for k, c in reversed(list(enumerate(contracts)))}
    symbol = found["conid"].map(position).to_numpy(dtype=np.intp)
    times = _ns(found["time"])
    bounds = np.array([[pd.Timestamp(t).value for t in run_] for run_ in runs], dtype=np.int64)
    inside = (times >= bounds[run, 0]) & (times < bounds[run, 1])
    bad = np.array([c.symbol in failed for c in contracts], dtype=bool)
    rows = np.argsort(symbol, kind="stable")  # symbol after symbol, as answered
    rows = rows[inside[rows] & ~bad[symbol[rows]]]
    keys = pd.DataFrame(
        {
            "symbol": symbol[rows],
            "run": run[rows],
            "provider": found["provider_code"].to_numpy()[rows],
            "article": found["article_id"].to_numpy()[rows],
        }
    )
    rows = rows[~keys.duplicated().to_numpy()]
    if not len(rows):
        return _empty(HEADLINES)
    # each headline's span: the last one starting at or before it (sorted stably)
    starts = np.array([pd.Timestamp(start).value for start, _ in spans], dtype=np.int64)
    span = np.searchsorted(starts, times[rows], side="right") - 1
    rows = rows[np.lexsort((span, symbol[rows]))]
    frame = found.take(rows).reset_index(drop=True)
    frame["symbol"] = np.array([c.symbol for c in contracts], dtype=object)[symbol[rows]]
    frame = frame.assign(time=pd.to_datetime(frame["time"], utc=True))
    return frame[HEADLINES.names].astype(HEADLINES.dtypes)


def macro_history(
    broker: Broker, first: date, at: datetime, session: date
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Daily closes of the :data:`MACRO_INSTRUMENTS` (our units) from ``first`` to the session
    before ``session``, index ``session``; and the error of each gauge that failed."""
    closes, failed = {}, {}
    for column, (symbol, sec_type, currency, what, scale) in MACRO_INSTRUMENTS.items():
        try:
            contract = broker.resolve(symbol, sec_type=sec_type, currency=currency)
            bars = broker.history_frame(
                contract,
                duration=ib_duration(first, at),
                bar_size="1 day",
                what_to_show=what,
                end=at,
            )
        except BrokerError as exc:
            failed[column] = request_error(exc)
            continue
        frame = bars_frame(symbol, bars, before=session)
        closes[column] = frame.set_index("session")["close"] * scale
    history = pd.DataFrame(closes).sort_index()
    history = history.loc[history.index >= pd.Timestamp(first)]
    history.index.name = "session"
    return history, failed


def named_failures(what: str, failed: Mapping[str, str], limit: int = 50) -> str:
    """One line naming each of ``failed`` (name -> error) for a warning: ``what: N failed
    (A: error; B: error ...)``; names failing for the same reason share it (``A, B, C and 697
    more: news is not available on the webapi backend ...``), so one cause reads once."""
    by_error: dict[str, list[str]] = {}
    for name, error in failed.items():
        by_error.setdefault(error, []).append(name)
    parts = []
    for error, names in by_error.items():
        listed = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        parts.append(f"{listed}: {error}")
    shown = "; ".join(parts[:limit])
    more = f"; ... and {len(parts) - limit} more" if len(parts) > limit else ""
    return f"{what}: {len(failed)} could not be fetched ({shown}{more})"
