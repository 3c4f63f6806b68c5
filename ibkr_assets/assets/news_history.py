"""The news headlines and macro gauges' history the broker is asked for.

Every headline about a set of contracts over spans of time (paged through IB's cap of
:data:`~ibkr_assets.assets.market_data.IB_MAX_NEWS` headlines an answer), and the daily closes
of the :data:`~ibkr_assets.assets.market_data.MACRO_INSTRUMENTS`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from itertools import pairwise

import numpy as np
import pandas as pd

from ibkr_assets.assets.bar_cache import bars_frame
from ibkr_assets.assets.market_data import (
    HEADLINES,
    IB_MAX_NEWS,
    MACRO_INSTRUMENTS,
    empty_frame,
    fetch_each,
    ib_duration,
    request_error,
)
from ibkr_assets.broker import Broker
from ibkr_assets.broker.errors import BrokerError, InvalidRequest
from ibkr_assets.broker.frames import frame_of_headlines
from ibkr_assets.broker.models import Contract, NewsHeadline


def _ns(times: pd.Series) -> np.ndarray:
    """UTC nanoseconds of a column of instants (datetime64, timezone-aware or naive UTC)."""
    return times.array.as_unit("ns").asi8


def _older_than(contract: Contract, oldest: datetime, stop: datetime) -> datetime:
    """The end of the request after a full answer (IB's cap) ending at ``stop``: its oldest
    headline's instant (the headlines of that instant come again: the caller keeps each once);
    ``InvalidRequest`` when the whole answer is of that instant ``stop``."""
    if oldest >= stop:
        raise InvalidRequest(
            f"{contract.symbol} has more than {IB_MAX_NEWS} headlines at "
            f"{pd.Timestamp(oldest)}: IB cannot be asked for the older ones; ask for a shorter span"
        )
    return oldest


def _pages(
    broker: Broker, contract: Contract, start: datetime, stop: datetime
) -> list[list[NewsHeadline]]:
    """The answers (``Broker.news``) of the requests for ``contract``'s headlines of ``[start,
    stop)``, in as few requests as IB's cap allows: IB answers a news request with its newest
    :data:`IB_MAX_NEWS` headlines, so a full answer is followed by a request ending at the
    oldest headline it held (:func:`_older_than`)."""
    pages = []
    while True:
        page = broker.news(contract, start=start, end=stop, limit=IB_MAX_NEWS)
        pages.append(page)
        if len(page) < IB_MAX_NEWS:
            return pages
        stop = _older_than(contract, min(h.time for h in page), stop)


def _answers_together(
    broker: Broker, contracts: Sequence[Contract], runs: Sequence[tuple[datetime, datetime]]
) -> tuple[pd.DataFrame, np.ndarray, dict[str, str]]:
    """:func:`headline_frame`'s requests to a backend answering in-process: every contract's
    first page of a run in one ``news_frames`` call, then the further pages (:func:`_pages`) of
    those that filled theirs; the answers in one frame, each row's run, and the error of each
    symbol that failed."""
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
            oldest = first.loc[(first["conid"] == c.conid).to_numpy(), "time"].min()
            try:
                stop = _older_than(c, oldest.to_pydatetime(), end)
                parts += [(run, _frame(c, p)) for p in _pages(broker, c, start, stop)]
            except BrokerError as exc:
                failed.setdefault(c.symbol, request_error(exc))
    found = pd.concat([p for _, p in parts], ignore_index=True) if len(parts) > 1 else parts[0][1]
    run_of = np.repeat(np.array([r for r, _ in parts], dtype=np.intp), [len(p) for _, p in parts])
    return found, run_of, failed


def _frame(contract: Contract, page: Sequence[NewsHeadline]) -> pd.DataFrame:
    """A ``Broker.news`` answer as a ``news_frames`` frame (``conid`` column first)."""
    frame = frame_of_headlines(page)
    frame.insert(0, "conid", np.full(len(page), contract.conid, dtype=np.int64))
    return frame


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
    request (``Broker.news``), ``workers`` at a time; the answers are framed and cut once, for
    every symbol (pandas costs more per small frame than the headlines do)."""
    if any(end > start for (_, end), (start, _) in pairwise(spans)):
        raise ValueError(f"news spans must be disjoint and in time order, got {spans}")
    runs: list[tuple[datetime, datetime]] = []
    for start, end in spans:
        if runs and runs[-1][1] == start:
            runs[-1] = (runs[-1][0], end)
        else:
            runs.append((start, end))
    if not contracts or not runs:
        return empty_frame(HEADLINES), {}
    if broker.market_data_in_process:
        found, run, failed = _answers_together(broker, contracts, runs)
    else:
        results, failed = fetch_each(
            lambda c: [_pages(broker, c, start, end) for start, end in runs], contracts, workers
        )
        conid_of = {c.symbol: c.conid for c in contracts}
        pages = [
            (conid_of[symbol], k, page)
            for symbol, per_run in results.items()
            for k, ps in enumerate(per_run)
            for page in ps
        ]
        found = frame_of_headlines([h for _, _, page in pages for h in page])
        sizes = [len(page) for _, _, page in pages]
        found.insert(0, "conid", np.repeat(np.array([c for c, _, _ in pages], np.int64), sizes))
        run = np.repeat(np.array([k for _, k, _ in pages], dtype=np.intp), sizes)
    return _headline_rows(contracts, spans, runs, found, run, failed), failed


def _headline_rows(
    contracts: Sequence[Contract],
    spans: Sequence[tuple[datetime, datetime]],
    runs: Sequence[tuple[datetime, datetime]],
    found: pd.DataFrame,
    run: np.ndarray,
    failed: Mapping[str, str],
) -> pd.DataFrame:
    """:func:`headline_frame`'s rows from the answers ``found`` (a ``news_frames`` frame, each
    symbol's rows in the order asked; ``run[i]``: row i's run): those of each run's window,
    each once per symbol and run (the first time it came), symbol after symbol (those not
    ``failed``), span after span."""
    if found.empty:
        return empty_frame(HEADLINES)
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
        return empty_frame(HEADLINES)
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
