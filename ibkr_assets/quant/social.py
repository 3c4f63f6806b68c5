"""Social-chatter features: how unusual a stock's chatter was on the last session, against its own
trailing level.

* ``social_spike_z`` — the session's Reddit posts naming the stock (r/wallstreetbets by
  default) against its trailing ``window`` sessions: the seed's "r/wallstreetbets post spike";
* ``social_volume_z`` — the same for its X/StockTwits message count: the "Twitter volume
  anomaly".

Both are robust z-scores of ``log(1 + count)``: (today - trailing median) / (1.4826 x trailing
median absolute deviation; :func:`robust_zscores`), the scale floored at :data:`MIN_SCALE` and
the score clipped to +-:data:`CLIP`. Logs because chatter counts are heavily skewed (a meme day
brings tens of times the usual posts); median and MAD because one earlier spike must not hide
the next (Rousseeuw & Croux 1993: 1.4826 x MAD estimates a normal's standard deviation). The
floor is a modelling choice: a stock named in no post for weeks and in one today scores
log(2) / 0.5 = 1.4, not infinity. Da, Engelberg & Gao (2011) measure abnormal attention the
same way, as today's search volume against its trailing median (of 8 weeks).

A count is NaN when its source did not answer (never 0); a score is NaN when today's count is
NaN or fewer than ``min_history`` of the trailing sessions have one. NaN is neutral downstream.

A score looks back :func:`lookback` sessions (121 with the default window: the session, the 60
before it and the 60 before those, which the MAD's own medians read). :func:`social_panel`
scores every session of a history at once (the backtest's replay, which reads the day's row
with :func:`known_row`); :func:`social_features` is its last row, so a replay and the daily
job give the same scores whenever the job's chatter reaches that far back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ibkr_assets.quant.frames import require_columns
from ibkr_assets.quant.market_clock import MARKET_TZ, SESSION_CLOSE

#: The columns :func:`social_features` adds to the feature matrix.
SOCIAL_COLUMNS = ("social_posts", "social_mentions", "social_spike_z", "social_volume_z")
#: Floor of the robust scale, in log(1 + count) units (see the module docstring).
MIN_SCALE = 0.5
#: Scores are clipped to +-CLIP standard deviations.
CLIP = 5.0
#: The trailing sessions a score is measured against, and the fewest it needs known.
WINDOW, MIN_HISTORY = 60, 20


def lookback(window: int = WINDOW) -> int:
    """Sessions a score reads: the session, the ``window`` before it and the ``window`` before
    those (the trailing medians its scale is the median of)."""
    return 2 * window + 1


def robust_zscores(
    counts: pd.DataFrame, window: int = WINDOW, min_history: int = MIN_HISTORY
) -> pd.DataFrame:
    """Sessions x symbols counts (NaN = unknown) -> each session's robust z-score of
    ``L = log(1 + count)`` against the ``window`` sessions before it: ``(L[t] - m[t]) /
    max(1.4826 x s[t], MIN_SCALE)``, clipped to +-CLIP, where ``m[t]`` is the median of ``L``
    over those sessions and ``s[t]`` the median, over the same sessions, of each one's absolute
    deviation from its own trailing median (a rolling form of the MAD, so the whole history is
    two rolling medians). NaN where fewer than ``min_history`` earlier values are known: a
    score needs about ``2 x min_history`` sessions of history."""
    if window < min_history or min_history < 1:
        raise ValueError(f"need 1 <= min_history ({min_history}) <= window ({window})")
    logs = np.log1p(counts.to_numpy("float64"))
    median = _trailing_median(logs, window, min_history)
    spread = _trailing_median(np.abs(logs - median), window, min_history)
    z = (logs - median) / np.maximum(1.4826 * spread, MIN_SCALE)
    return pd.DataFrame(z, index=counts.index, columns=counts.columns).clip(-CLIP, CLIP)


def _trailing_median(values: np.ndarray, window: int, min_history: int) -> np.ndarray:
    """Sessions x symbols ``values`` -> each one's median over the ``window`` rows before it
    (NaN ignored; NaN with fewer than ``min_history`` known): pandas' rolling median of every
    column in one call, the columns laid end to end with ``window`` NaN rows before each, so
    no window reaches into the previous column (one C loop instead of one call per column)."""
    sessions, symbols = values.shape
    padded = np.full((symbols, window + 1 + sessions), np.nan)
    padded[:, window + 1 :] = values.T  # shifted one session: the window is before the row
    medians = pd.Series(padded.ravel()).rolling(window, min_periods=min_history).median()
    return medians.to_numpy().reshape(symbols, -1)[:, window : window + sessions].T


def social_panel(
    chatter: pd.DataFrame,
    symbols: Sequence[str],
    window: int = WINDOW,
    min_history: int = MIN_HISTORY,
) -> dict[str, pd.DataFrame]:
    """Every session's :data:`SOCIAL_COLUMNS`: column -> a sessions x ``symbols`` frame (index
    the sorted sessions of ``chatter``, NaN where a symbol has no count), each session's counts
    and their robust z-scores against the sessions before it (:func:`robust_zscores`).

    ``chatter`` has columns ``symbol``, ``session``, ``posts`` and ``mentions`` (NaN where the
    source did not count)."""
    require_columns(chatter, "chatter", ("symbol", "session", "posts", "mentions"))
    columns = pd.Index([str(s) for s in symbols], name="symbol")
    frame = chatter.assign(
        symbol=chatter["symbol"].astype(str), session=pd.to_datetime(chatter["session"])
    )
    sessions = pd.DatetimeIndex(sorted(frame["session"].unique()), name="session")
    row = sessions.get_indexer(frame["session"])
    column = columns.get_indexer(frame["symbol"])
    cell = np.where(column >= 0, row * len(columns) + column, -1)
    out: dict[str, pd.DataFrame] = {}
    for count, level, score in (
        ("posts", "social_posts", "social_spike_z"),
        ("mentions", "social_mentions", "social_volume_z"),
    ):
        # each cell's last known count (as a pivot's "last": NaN rows skipped)
        values = pd.to_numeric(frame[count], errors="coerce").to_numpy("float64", na_value=np.nan)
        kept = np.flatnonzero((cell >= 0) & ~np.isnan(values))
        last = np.full(len(sessions) * len(columns), -1, dtype="int64")
        np.maximum.at(last, cell[kept], kept)
        filled = np.where(last >= 0, values[np.maximum(last, 0)], np.nan)
        wide = pd.DataFrame(
            filled.reshape(len(sessions), len(columns)), index=sessions, columns=columns
        )
        out[level] = wide
        out[score] = robust_zscores(wide, window, min_history)
    return out


def known_row(
    panel: Mapping[str, pd.DataFrame], at: pd.Timestamp, symbols: Sequence[str]
) -> pd.DataFrame:
    """One row per symbol of ``symbols`` (index ``symbol``): the :data:`SOCIAL_COLUMNS` of the
    last session of ``panel`` (:func:`social_panel`) closed by ``at`` (naive: New York time),
    all NaN when none was: :func:`known_rows` of the one time."""
    index = pd.Index([str(s) for s in symbols], name="symbol")
    rows = known_rows(panel, [at], list(index))
    return pd.DataFrame({c: rows[c][0] for c in SOCIAL_COLUMNS}, index=index)


def known_rows(
    panel: Mapping[str, pd.DataFrame], times: Sequence[pd.Timestamp], symbols: Sequence[str]
) -> dict[str, np.ndarray]:
    """Per column of ``panel`` (:func:`social_panel`): a ``times`` x ``symbols`` array of the
    last session closed by each time (naive: New York time), NaN where none was or a symbol
    is not in the panel."""
    sessions = next(iter(panel.values())).index
    closes = (sessions + SESSION_CLOSE).tz_localize(MARKET_TZ).asi8
    when = [pd.Timestamp(t) for t in times]
    at = [t.tz_localize(MARKET_TZ) if t.tz is None else t.tz_convert(MARKET_TZ) for t in when]
    i = np.searchsorted(closes, np.array([t.value for t in at], dtype="int64"), side="right") - 1
    out = {}
    for column, frame in panel.items():
        wide = frame.reindex(columns=pd.Index([str(s) for s in symbols])).to_numpy("float64")
        wide = np.vstack([wide, np.full((1, wide.shape[1]), np.nan)])
        out[column] = wide[np.where(i >= 0, i, len(wide) - 1)]
    return out


def social_features(
    chatter: pd.DataFrame,
    symbols: Sequence[str],
    window: int = WINDOW,
    min_history: int = MIN_HISTORY,
) -> pd.DataFrame:
    """One row per symbol of ``symbols``: the last session's counts (``social_posts``,
    ``social_mentions``) and their robust z-scores (``social_spike_z``, ``social_volume_z``):
    the last row of :func:`social_panel` over the last :func:`lookback` sessions.

    ``chatter`` has columns ``symbol``, ``session``, ``posts`` and ``mentions`` (NaN where the
    source did not count), every row known at the decision time (the caller drops later ones);
    its last session is "today" for every symbol, so a symbol without a count then gets NaN."""
    require_columns(chatter, "chatter", ("symbol", "session", "posts", "mentions"))
    index = pd.Index(list(symbols), name="symbol", dtype="string")
    out = pd.DataFrame(np.nan, index=index, columns=list(SOCIAL_COLUMNS))
    if chatter.empty:
        return out
    days = pd.to_datetime(chatter["session"])
    first = pd.DatetimeIndex(days.unique()).sort_values()[-lookback(window) :][0]
    panel = social_panel(chatter.loc[(days >= first).to_numpy()], symbols, window, min_history)
    for column in SOCIAL_COLUMNS:
        out[column] = panel[column].iloc[-1].to_numpy()
    return out
