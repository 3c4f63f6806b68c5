"""What the ingest assets and the weekly replay ask the broker for, and the tables its answers fill.

Each function takes a :class:`~ibkr_assets.broker.Broker` (pinned to the as-of time of the run
or replay) and returns typed frames plus the error of every symbol (scanner, gauge) the broker
could not serve, by name, so the caller names it in a warning and in the asset's metadata. A
lost connection or a pacing violation is the step's error rather than a symbol's: it is raised
again (:func:`request_error`) so the step fails, and its retry policy runs it again when
:func:`is_transient` says another attempt can help.

The daily bars and their cache are :mod:`ibkr_assets.assets.bar_cache`; the headlines and the
macro gauges :mod:`ibkr_assets.assets.news_history`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import date, datetime
from typing import TypeVar

import numpy as np
import pandas as pd

from ibkr_assets.assets.catalog import Table
from ibkr_assets.broker import Broker
from ibkr_assets.broker.batch import CONNECTION_ERRORS
from ibkr_assets.broker.errors import (
    BrokerError,
    DuplicateClientId,
    NotConnected,
)
from ibkr_assets.broker.models import MARKET_DATA_TYPE_NAMES, Contract
from ibkr_assets.config import PipelineConfig
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


def empty_frame(table: Table) -> pd.DataFrame:
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
    got, missing = broker_quotes(broker, contracts)
    return (quotes_table(got) if got is not None else empty_frame(QUOTES)), missing


def broker_quotes(
    broker: Broker, contracts: Sequence[Contract]
) -> tuple[pd.DataFrame | None, dict[str, str]]:
    """:func:`quote_frame`'s answers as the broker gives them (``Broker.quotes_frame``'s
    columns; None when none came) and the error of each symbol it could not quote; a replay
    tables many snapshots' answers at once (:func:`quotes_table`)."""
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
        return None, missing
    return (pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]), missing


def quotes_table(got: pd.DataFrame) -> pd.DataFrame:
    """Broker quote frames (``Broker.quotes_frame``'s columns) as :data:`QUOTES`: mid and
    spread where the market is two-sided, the market-data type by name."""
    bid, ask = got["bid"].to_numpy(), got["ask"].to_numpy()
    two_sided = (bid > 0) & (ask > 0)  # NaN compares False: no two-sided market
    types, which = np.unique(got["market_data_type"].to_numpy(), return_inverse=True)
    names = [MARKET_DATA_TYPE_NAMES.get(t, str(t)) for t in types.tolist()]
    frame = got.assign(
        mid=np.where(two_sided, (bid + ask) / 2.0, np.nan),
        spread=np.where(two_sided, ask - bid, np.nan),
        market_data_type=np.array(names, dtype=object)[which.reshape(-1)],
    )
    return _typed(frame[QUOTES.names], QUOTES)


def _typed(frame: pd.DataFrame, table: Table) -> pd.DataFrame:
    """``frame`` (``table``'s columns) with ``table``'s dtypes, casting only the columns that
    differ (a replay frames 127 sessions' quotes: casting every column each time costs more
    than the quotes do)."""
    dtypes = table.dtypes
    differ = {c: t for c, t in dtypes.items() if frame[c].dtype != pd.api.types.pandas_dtype(t)}
    return frame.astype(differ) if differ else frame


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
