"""Everything the weekly replay reads, fetched once for the whole window.

The same requests as the ingest assets (:mod:`~ibkr_assets.assets.market_data`), made once for
the window rather than once a session: the universe's reference data; the daily bars through
the daily job's DuckDB cache (only bars it has not seen are requested); each session's pre-open
snapshot from a broker that can be pinned to the past — the simulator; any other broker's
pre-open price is the previous close; statements and forward EPS; the news of the window in
chunks of :data:`NEWS_CHUNK_DAYS`, scored once; the macro gauges; the social chatter of every
session from a score's lookback (:func:`~ibkr_assets.quant.social.lookback`, 121 sessions) before
the first evidence session (a real source that cannot reach that far leaves the older sessions
NaN, so the social signals have no IC there and no weight from them). The replay
(:mod:`ibkr_assets.quant.backtest`) then cuts it to what was known at each session's run time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise

import numpy as np
import pandas as pd

from ibkr_assets.assets.bar_cache import cached_bars
from ibkr_assets.assets.market_data import (
    QUOTES,
    broker_quotes,
    empty_frame,
    quotes_table,
    universe_contracts,
    universe_frame,
)
from ibkr_assets.assets.news_history import headline_frame, macro_history
from ibkr_assets.broker import Broker
from ibkr_assets.partitions import NEW_YORK, as_of, previous_sessions, sessions_between
from ibkr_assets.quant.backtest import ReplayData, ReplaySettings
from ibkr_assets.quant.sentiment import SentimentScorer, score_headlines
from ibkr_assets.quant.social import lookback
from ibkr_assets.resources.fundamentals import FundamentalsResource
from ibkr_assets.resources.social import SocialResource
from ibkr_assets.resources.storage import StorageResource

#: A session's bars are final one hour after the close.
CLOSE_NY = time(17, 0)
#: The window's news is framed span after span of this many days (the frame's row order);
#: :func:`~ibkr_assets.assets.news_history.headline_frame` asks for adjacent spans together, in
#: pages of IB's 300 headlines per request.
NEWS_CHUNK_DAYS = 30
#: phase ("load" | "replay" | "calibrate"), done, total
Progress = Callable[[str, int, int], None]
#: The loading steps :func:`load_replay_data` reports to its ``progress``.
LOAD_STEPS = 8


def closed_at(session: date) -> datetime:
    """When a session's daily bar is final (17:00 New York), in UTC."""
    return datetime.combine(session, CLOSE_NY, tzinfo=NEW_YORK).astimezone(UTC)


def preopen_quotes(
    broker: Broker, universe: pd.DataFrame, sessions: Sequence[date], bars: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Each session's run-time (14:00 Bucharest) snapshot from a broker pinned to that time,
    and the first quote each symbol missed; a broker that cannot look back gives the previous
    close as the only price."""
    pinned = getattr(broker, "pinned", None)
    frames, missing = [], {}
    if callable(pinned):  # the answers tabled once for every session (pandas costs per frame)
        contracts = universe_contracts(universe)
        days = []
        for day in sessions:
            got, failed = broker_quotes(pinned(as_of(day.isoformat())), contracts)
            if got is not None:
                frames.append(got)
                days.append(pd.Timestamp(day))
            for symbol, error in failed.items():
                missing.setdefault(symbol, f"no quote on {day}: {error}")
        if not frames:
            return empty_frame(QUOTES).assign(session=pd.DatetimeIndex([])), missing
        table = quotes_table(pd.concat(frames, ignore_index=True))
        rows = [len(f) for f in frames]
        session = pd.DatetimeIndex(days).as_unit(days[0].unit)  # a date's: seconds
        return table.assign(session=session.repeat(rows)), missing
    closes = bars.pivot_table(index="session", columns="symbol", values="close").sort_index()
    previous = closes.shift(1).ffill()
    conids = universe.set_index("symbol")["conid"]
    for day in sessions:
        close = previous.loc[pd.Timestamp(day)]
        frames.append(
            pd.DataFrame(
                {
                    "symbol": close.index.astype("string"),
                    "conid": conids.reindex(close.index).to_numpy(),
                    **dict.fromkeys(("bid", "ask", "last"), np.nan),
                    "close": close.to_numpy(),
                    **dict.fromkeys(("volume", "mid", "spread"), np.nan),
                    "time": pd.Timestamp(as_of(day.isoformat())),
                    "session": pd.Timestamp(day),
                }
            )
        )
    return pd.concat(frames, ignore_index=True), missing


def load_replay_data(
    broker: Broker,
    storage: StorageResource,
    fundamentals: FundamentalsResource,
    scorer: SentimentScorer,
    settings: ReplaySettings,
    symbols: Sequence[str],
    sessions: Sequence[date],
    request_workers: int = 1,
    progress: Progress | None = None,
    movers_from: Sequence[str] = (),
    social: SocialResource | None = None,
) -> tuple[ReplayData, dict[str, str]]:
    """Everything the replay of ``sessions`` reads for the watch-list ``symbols`` and the
    names ``movers_from`` its scanners could add (loaded alike; the replay adds one only on the
    sessions it is a mover), fetched once (see the module docstring), and what could not be
    fetched: each symbol (or macro gauge) with the reason, a social source's failures as
    ``social <source>[ <symbol>]``. Without ``social`` the replay has no chatter (its social
    scores are NaN)."""
    if not sessions:
        raise ValueError("no sessions to replay")
    end = closed_at(sessions[-1])
    pinned = getattr(broker, "pinned", None)
    view = pinned(end) if callable(pinned) else broker

    def step(k: int) -> None:
        if progress is not None:
            progress("load", k, LOAD_STEPS)

    reasons = dict.fromkeys(movers_from, "mover") | dict.fromkeys(symbols, "watchlist")
    universe, problems = universe_frame(view, reasons)
    candidates = set(movers_from) - set(symbols)
    contracts = universe_contracts(universe)
    step(1)
    first_bar = previous_sessions(sessions[0], settings.history_sessions)[0]
    # the signals' evidence is measured over a warm-up before the first replayed session
    warmup = previous_sessions(sessions[0], settings.evidence.sessions)
    first_macro = previous_sessions(sessions[0], settings.macro_sessions)[0]
    after = sessions[-1] + timedelta(days=1)
    needed = sessions_between(first_bar, sessions[-1])
    bars, _, failed, _ = cached_bars(storage, view, contracts, needed, end, after, request_workers)
    problems |= failed
    step(2)
    quotes, failed = preopen_quotes(broker, universe, sessions, bars)
    problems |= {s: e for s, e in failed.items() if s not in problems}
    step(3)
    stocks = universe.loc[universe["sec_type"] == "STK", "symbol"].astype(str).tolist()
    statements = fundamentals.fetch(view, stocks, as_of=after)
    problems |= statements.missing
    eps = fundamentals.forward_eps_history(view, stocks, sessions)
    step(4)
    news_start = pd.Timestamp(as_of(warmup[0].isoformat())) - pd.Timedelta(
        hours=settings.headline_hours, days=settings.headline_history_days
    )
    edges = [*pd.date_range(news_start, end, freq=f"{NEWS_CHUNK_DAYS}D"), pd.Timestamp(end)]
    spans = [(a, b) for a, b in pairwise(edges) if a < b]
    headlines, failed = headline_frame(view, contracts, spans, request_workers)
    problems |= failed
    step(5)
    headlines = (
        score_headlines(headlines, scorer) if len(headlines) else headlines.assign(polarity=0.0)
    )
    step(6)
    macro, failed = macro_history(view, first_macro, end, after)
    problems |= {f"macro {gauge}": error for gauge, error in failed.items()}
    step(7)
    chatter = None
    if social is not None:  # the sessions before the last whose chatter a decision reads
        first_chatter = previous_sessions(warmup[0], lookback() + 1)[0]  # + the first's opener
        counted = social.fetch(
            view,
            universe["symbol"].astype(str).tolist(),
            sessions_between(first_chatter, previous_sessions(sessions[-1], 1)[0]),
        )
        chatter = counted.counts
        problems |= {f"social {key}": error for key, error in counted.failed.items()}
    step(8)
    data = ReplayData(
        universe=universe.drop(columns="reason"),
        bars=bars,
        quotes=quotes,
        statements=statements.statements,
        forward_eps=eps,
        headlines=headlines,
        macro=macro,
        sessions=list(sessions),
        decision_times=[pd.Timestamp(as_of(s.isoformat())) for s in sessions],
        calendar=sessions_between(min(first_bar, first_macro), sessions[-1]),
        warmup=warmup,
        warmup_times=[pd.Timestamp(as_of(s.isoformat())) for s in warmup],
        watchlist=[str(s) for s in symbols] if candidates else None,
        social=chatter,
    )
    return data, problems
