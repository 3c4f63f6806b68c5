"""Bars of the simulated market: daily bars from the panel, intraday bars from the session paths.

Daily bars are rows of the daily panel; weekly and monthly bars aggregate them (New York weeks
ending Friday, calendar months). Intraday bars of whole minutes are exact along the minute path
(open, running extremes, close, volume traded in the bar); sub-minute bars are interpolated along
it. ``history`` answers the way ``reqHistoricalData`` does: bars ending in (start, end], only
completed ones, BID/ASK shifted by half the typical spread, MIDPOINT equal to TRADES.
``session_history`` answers a request for bars of a day or longer as IB counts it, in trading
sessions (:func:`ibkr_spec.historical.session_window`), with the day so far as the last bar
while a session is open.
"""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pandas as pd

from ibkr_sim.market.calendar import (
    NEW_YORK,
    close_index,
    schedule,
    session_index,
    session_slice,
    to_ns,
)
from ibkr_sim.market.edge import Edge
from ibkr_sim.market.intraday import intraday
from ibkr_sim.market.paths import on_tick, panel
from ibkr_sim.market.quotes import spread, state
from ibkr_spec.errors import INVALID_REQUEST, IBError
from ibkr_spec.historical import BarSize, Duration, session_window

_BAR_COLUMNS = ("open", "high", "low", "close", "volume")


def _panel_bars(
    seed: int, edge: Edge, col: int, rows: slice, index: pd.DatetimeIndex
) -> pd.DataFrame:
    """Daily OHLCV of one panel column over a range of sessions, float64."""
    p = panel(seed, edge)
    return pd.DataFrame({name: getattr(p, name)[rows, col] for name in _BAR_COLUMNS}, index=index)


def daily_bars(seed: int, edge: Edge, col: int, start: date, end: date) -> pd.DataFrame:
    """Daily OHLCV of one panel column for sessions in [start, end]; index ``session``."""
    sl = session_slice(start, end)
    index = pd.DatetimeIndex(schedule()[0][sl].astype("datetime64[ns]"), name="session")
    return _panel_bars(seed, edge, col, sl, index)


def daily_close_panel(
    seed: int, edge: Edge, cols: list[int], conids: list[int], start: date, end: date
) -> pd.DataFrame:
    """Closes, sessions x ``conids`` (held in panel columns ``cols``), in one slice."""
    sl = session_slice(start, end)
    index = pd.DatetimeIndex(schedule()[0][sl].astype("datetime64[ns]"), name="session")
    return pd.DataFrame(panel(seed, edge).close[sl][:, cols], index=index, columns=list(conids))


def intraday_bars(seed: int, edge: Edge, col: int, session: date, minutes: int) -> pd.DataFrame:
    """Bars of ``minutes`` (1..390) within one session; index UTC bar start; o h l c volume."""
    if not 1 <= minutes <= 390:
        raise IBError(INVALID_REQUEST, f"intraday bar length must be 1..390 minutes, got {minutes}")
    return session_bars(seed, edge, col, session_index(session), 60 * minutes)


def session_bars(seed: int, edge: Edge, col: int, j: int, seconds: int) -> pd.DataFrame:
    """One session's bars of ``seconds``: exact from the minute path for whole minutes,
    interpolated along it below a minute (the sub-bars stay within their minute's range)."""
    day = intraday(seed, edge, j)
    n = day.minutes
    path, cum = day.path[col], day.cum_volume[col]
    if seconds % 60 == 0:
        step = seconds // 60
        starts = np.arange(0, n, step)
        ends = np.minimum(starts + step, n)
        high = np.maximum(np.maximum.reduceat(path[:-1], starts), path[ends])
        low = np.minimum(np.minimum.reduceat(path[:-1], starts), path[ends])
        opens, closes = path[starts], path[ends]
        volume = np.round(cum[ends] - cum[starts], 0)
        offsets = starts * 60
    else:
        offsets = np.arange(0, n * 60, seconds)
        grid = np.arange(n + 1)
        edges = np.append(offsets, n * 60) / 60.0
        tick = float(panel(seed, edge).tick[col])
        prices = on_tick(np.interp(edges, grid, path), np.array(tick))
        opens, closes = prices[:-1], prices[1:]
        high, low = np.maximum(opens, closes), np.minimum(opens, closes)
        volume = np.round(np.diff(np.interp(edges, grid, cum)), 0)
    index = pd.DatetimeIndex(
        pd.to_datetime(schedule()[1][j] + offsets * 1_000_000_000, utc=True), name="time"
    )
    return pd.DataFrame(
        {"open": opens, "high": high, "low": low, "close": closes, "volume": volume},
        index=index,
    )


def history(
    seed: int,
    edge: Edge,
    col: int,
    start: datetime,
    end: datetime,
    bar_size: BarSize,
    what_to_show: str,
) -> pd.DataFrame:
    """Bars of one panel column ending in (start, end], as ``reqHistoricalData`` returns them.

    Daily/weekly/monthly bars are indexed by the UTC close of their last session; intraday
    bars by their UTC start, only completed bars; sub-minute bars are interpolated along the
    minute path. BID/ASK shift prices by half the typical spread; MIDPOINT equals TRADES.
    """
    start_ns, end_ns = to_ns(start), to_ns(end)
    _, opens, closes = schedule()
    if bar_size.is_daily:
        lo = int(np.searchsorted(closes, start_ns, "right"))
        hi = int(np.searchsorted(closes, end_ns, "right"))
        frame = _aggregate(
            _panel_bars(seed, edge, col, slice(lo, hi), close_index()[lo:hi]), bar_size
        )
    else:
        lo = int(np.searchsorted(closes, start_ns, "right"))
        hi = int(np.searchsorted(opens, end_ns, "left"))
        parts = [session_bars(seed, edge, col, j, bar_size.seconds) for j in range(lo, hi)]
        if not parts:
            empty = pd.DatetimeIndex([], tz="UTC", name="time")
            return pd.DataFrame({c: [] for c in _BAR_COLUMNS}, index=empty, dtype="float64")
        frame = pd.concat(parts)
        bar_end = frame.index.asi8 + bar_size.seconds * 1_000_000_000
        frame = frame.loc[
            (frame.index.asi8 >= start_ns)
            & (bar_end <= np.minimum(end_ns, closes[np.searchsorted(closes, frame.index.asi8)]))
        ]
    return _quoted(seed, edge, col, frame, what_to_show)


def session_history(
    seed: int,
    edge: Edge,
    col: int,
    end: datetime,
    duration: Duration,
    bar_size: BarSize,
    what_to_show: str,
) -> tuple[datetime | None, pd.DataFrame]:
    """(start, bars) of a request for bars of a day or longer reaching back ``duration`` from
    ``end``, counted in trading sessions as IB counts them (see
    :func:`ibkr_spec.historical.session_window`); while a session is open at ``end`` its bar so
    far (open, running high and low, last, volume traded) is the last one, stamped with the
    session's close like every daily bar. ``start`` is the first session's open (None: no bar).
    The bars of :func:`session_history_arrays` as a frame indexed by ``time`` (UTC)."""
    start, times, ohlcv = session_history_arrays(
        seed, edge, col, end, duration, bar_size, what_to_show
    )
    index = pd.DatetimeIndex(times.view("datetime64[ns]"), name="time").tz_localize("UTC")
    return start, pd.DataFrame(dict(zip(_BAR_COLUMNS, ohlcv, strict=True)), index=index)


def session_history_arrays(
    seed: int,
    edge: Edge,
    col: int,
    end: datetime,
    duration: Duration,
    bar_size: BarSize,
    what_to_show: str,
) -> tuple[datetime | None, np.ndarray, np.ndarray]:
    """The bars of :func:`session_history` as arrays, without a frame for daily bars (the
    gateway answers one request a stock: 700 for the daily job): (start, the bars' UTC close
    in ns (bars,) int64, open/high/low/close/volume (5, bars) float64)."""
    start, times, columns = daily_session_history(seed, edge, np.array([col]), end, duration)
    ohlcv = np.vstack([columns[name][:, 0] for name in _BAR_COLUMNS])
    if start is None:
        return None, times, ohlcv
    if bar_size.text != "1 day":  # weekly / monthly: grouped by New York week or month
        index = pd.DatetimeIndex(times.view("datetime64[ns]"), name="time").tz_localize("UTC")
        frame = _aggregate(
            pd.DataFrame(dict(zip(_BAR_COLUMNS, ohlcv, strict=True)), index=index), bar_size
        )
        times = frame.index.as_unit("ns").asi8
        ohlcv = np.vstack([frame[name].to_numpy(np.float64) for name in _BAR_COLUMNS])
    shift = _quote_shift(seed, edge, col, ohlcv[3], what_to_show)
    if shift is not None:
        ohlcv = np.vstack([ohlcv[:4] + shift, ohlcv[4:]])
    return start, times, ohlcv


def daily_session_history(
    seed: int, edge: Edge, cols: np.ndarray, end: datetime, duration: Duration
) -> tuple[datetime | None, np.ndarray, dict[str, np.ndarray]]:
    """The daily TRADES bars of :func:`session_history` for many panel columns ``cols`` at
    once: (start, the bars' UTC close in ns (sessions,), OHLCV (sessions, len(cols)) float64
    arrays); start None and no rows when the window holds no session."""
    days, opens, closes = schedule()
    window = session_window(end, duration, days, opens, closes)
    if window.empty:
        return None, np.empty(0, np.int64), {c: np.empty((0, len(cols))) for c in _BAR_COLUMNS}
    done = window.last if window.in_progress else window.last + 1
    p = panel(seed, edge)
    columns = {
        name: getattr(p, name)[window.first : done][:, cols].astype(np.float64, copy=False)
        for name in _BAR_COLUMNS
    }
    if window.in_progress:  # the day so far
        now = state(seed, edge, cols, end)
        today = {"open": "open", "high": "high", "low": "low", "close": "last", "volume": "volume"}
        columns = {
            name: np.vstack([v, np.asarray(now[today[name]], dtype=np.float64)[None, :]])
            for name, v in columns.items()
        }
    times = close_index()[window.first : window.last + 1].as_unit("ns").asi8
    start = pd.Timestamp(int(opens[window.first]), tz="UTC").to_pydatetime()
    return start, times, columns


def _aggregate(frame: pd.DataFrame, bar_size: BarSize) -> pd.DataFrame:
    """Daily bars as weekly (New York weeks ending Friday) or monthly bars, each stamped with
    the close of its last session; daily bars unchanged."""
    if bar_size.text == "1 day" or not len(frame):
        return frame
    periods = (
        frame.index.tz_convert(NEW_YORK)
        .tz_localize(None)
        .to_period("W-FRI" if bar_size.text == "1 week" else "M")
    )
    grouped = frame.assign(_last=frame.index).groupby(periods.values)
    return grouped.agg(
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", "sum"),
        time=("_last", "last"),
    ).set_index("time")


def _quoted(
    seed: int, edge: Edge, col: int, frame: pd.DataFrame, what_to_show: str
) -> pd.DataFrame:
    """BID / ASK bars: trade prices shifted by half the typical spread; others unchanged."""
    shift = _quote_shift(seed, edge, col, frame["close"].to_numpy(), what_to_show)
    if shift is None:
        return frame
    return frame.assign(**{c: frame[c] + shift for c in ("open", "high", "low", "close")})


def _quote_shift(
    seed: int, edge: Edge, col: int, close: np.ndarray, what_to_show: str
) -> np.ndarray | None:
    """What BID / ASK bars add to the trade prices of bars closing at ``close`` (USD): minus
    or plus half the typical spread; None for other kinds (or no bars), which are unchanged."""
    if what_to_show not in ("BID", "ASK") or not len(close):
        return None
    half = 0.5 * spread(seed, edge, np.full(len(close), col), close, 1.0)
    return -half if what_to_show == "BID" else half
