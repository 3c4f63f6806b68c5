"""The daily bars kept in the warehouse and fetched incrementally.

A symbol's daily bars (:data:`~ibkr_assets.assets.market_data.BARS`) go through the DuckDB cache
of the storage resource (``cache.daily_bars``): the cached bars are read once, only the missing
sessions are requested from the broker, and those are added to the cache.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime

import numpy as np
import pandas as pd

from ibkr_assets.assets.catalog import Table
from ibkr_assets.assets.market_data import (
    BARS,
    STEP_ERRORS,
    empty_frame,
    fetch_each,
    ib_duration,
    request_error,
)
from ibkr_assets.broker import Broker
from ibkr_assets.broker.models import Contract
from ibkr_assets.resources.storage import StorageResource

#: a bar's prices (USD per share) and volume (shares), float64 in :data:`BARS`
_NUMBERS = ("open", "high", "low", "close", "volume")
#: contracts a backend with ``history_together`` over a connection is asked for in one call:
#: the calls answered before a lost connection are cached, the one in flight is fetched again
HISTORY_BATCH = 100


def bars_frame(symbol: str, frame: pd.DataFrame, before: date) -> pd.DataFrame:
    """``symbol``'s bars (a bar frame, ``Broker.history_frame``) of the sessions before
    ``before`` (:data:`BARS`)."""
    day = _bar_days(frame)
    keep = day < np.datetime64(before, "ns")
    numbers = {c: frame[c].to_numpy()[keep] for c in _NUMBERS}
    return _bars_table([symbol], np.zeros(int(keep.sum()), np.intp), day[keep], numbers)


def _bar_days(frame: pd.DataFrame) -> np.ndarray:
    """Each bar's session (its UTC date where the frame has none), datetime64[ns]."""
    day = frame["session"].to_numpy(dtype="datetime64[ns]")
    undated = np.isnat(day)
    if undated.any():  # intraday bars
        utc = frame["time"].to_numpy(dtype="datetime64[ns]")[undated]
        day = day.copy()
        day[undated] = utc.astype("datetime64[D]")
    return day


def _bars_table(
    symbols: Sequence[str], which: np.ndarray, day: np.ndarray, numbers: Mapping[str, np.ndarray]
) -> pd.DataFrame:
    """:data:`BARS` rows: row i is ``symbols[which[i]]``'s bar of the session ``day[i]``, its
    ``numbers`` (:data:`_NUMBERS`) the i-th of each."""
    table = {
        # a string array of the names taken by position: no string of a row read again
        "symbol": pd.array(list(symbols), dtype=BARS.dtypes["symbol"]).take(which),
        "session": day,
        **{c: numbers[c] for c in _NUMBERS},
    }
    return pd.DataFrame(table).astype(BARS.dtypes, copy=False)


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
    request failed (with the error) and the number of history requests. ``workers``: the
    threads asking a backend without ``history_together`` one contract each."""
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
            return empty_frame(BARS)
        day = _bar_days(frame)
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
        numbers = {c: frame[c].to_numpy()[keep] for c in _NUMBERS}
        which = np.repeat(np.arange(len(symbols)), lengths)[keep]
        return _bars_table(symbols, which, day[keep], numbers)

    def each_new_bars(got: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
        """:func:`new_bars` of ``got`` (symbol -> IB's bar frame), concatenated once (a replay
        reads 700 symbols)."""
        if not got:
            return empty_frame(BARS)
        frame = pd.concat(list(got.values()), ignore_index=True)
        return new_bars(frame, list(got), [len(f) for f in got.values()])

    if broker.history_together:
        fetched, failed = _history_together(
            broker, _batches(broker, to_fetch, missing, at), at, new_bars, storage
        )
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


def _batches(
    broker: Broker,
    contracts: Sequence[Contract],
    missing: Mapping[str, pd.DatetimeIndex],
    at: datetime,
) -> list[tuple[str, list[Contract]]]:
    """The ``history_frames`` calls of :func:`cached_bars` (duration, contracts): an in-process
    backend's one per duration (no I/O: a replay's 700 symbols lack the same sessions, one
    call); any other's one per run of contracts of one duration, in their order, at most
    :data:`HISTORY_BATCH` a call (a lost connection loses only the call in flight)."""
    durations = [ib_duration(missing[c.symbol][0].date(), at) for c in contracts]
    if broker.market_data_in_process:
        by_duration: dict[str, list[Contract]] = {}
        for duration, c in zip(durations, contracts, strict=True):
            by_duration.setdefault(duration, []).append(c)
        return list(by_duration.items())
    batches: list[tuple[str, list[Contract]]] = []
    for duration, c in zip(durations, contracts, strict=True):
        if batches and batches[-1][0] == duration and len(batches[-1][1]) < HISTORY_BATCH:
            batches[-1][1].append(c)
        else:
            batches.append((duration, [c]))
    return batches


def _history_together(
    broker: Broker,
    batches: Sequence[tuple[str, Sequence[Contract]]],
    at: datetime,
    new_bars: Callable[[pd.DataFrame, Sequence[str], Sequence[int]], pd.DataFrame],
    storage: StorageResource,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """:func:`cached_bars`'s requests as one ``Broker.history_frames`` per batch (duration,
    contracts): the new bars (``new_bars`` of each answer) and the error of each symbol that
    failed. A step error is raised again once the bars of the batches answered before it are
    cached."""
    symbol_of = {c.conid: c.symbol for _, group in batches for c in group}
    parts: list[pd.DataFrame] = []
    failed: dict[str, str] = {}
    try:
        for duration, group in batches:
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
    return pd.concat(parts, ignore_index=True) if parts else empty_frame(table)
