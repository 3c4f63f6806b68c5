"""The day's movers: which scanner hits join the universe (:func:`select_movers`, the
``universe`` asset's rule), and the pre-open scan rebuilt from daily bars for a replayed
session (:func:`scan_previous_session`).

Before the open (the daily job runs at 07:00 New York) IB's scanners — and the simulated
ones, ``ibkr_sim/market/scanner.py`` — rank the last completed session: its change against the
close before it, its volume against the average daily volume. A replay rebuilds that list from
the two previous sessions' daily bars, so the same rule picks the same names the live job would
have added.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

#: The scanner codes :func:`scan_previous_session` can rebuild from daily bars.
DAILY_SCANNERS = ("TOP_PERC_GAIN", "TOP_PERC_LOSE", "MOST_ACTIVE", "HOT_BY_VOLUME")


def select_movers(
    movers: pd.DataFrame, min_change_pct: float, min_volume_ratio: float
) -> list[str]:
    """Symbols whose |% change| exceeds ``min_change_pct`` on volume above ``min_volume_ratio``
    times their average daily volume (``movers``: the ``top_movers`` columns symbol,
    change_pct, volume, avg_volume), in the order of the hits."""
    ratio = movers["volume"] / movers["avg_volume"].where(movers["avg_volume"] > 0)
    hot = movers.loc[(movers["change_pct"].abs() > min_change_pct) & (ratio > min_volume_ratio)]
    return list(dict.fromkeys(hot["symbol"].astype(str)))


def scan_previous_session(
    close: pd.Series,
    previous_close: pd.Series,
    volume: pd.Series,
    avg_volume: pd.Series,
    codes: Sequence[str],
    limit: int,
) -> pd.DataFrame:
    """The pre-open scanner lists of a session, from the last completed session's ``close``
    and ``volume`` (shares), the ``previous_close`` before it and each name's ``avg_volume``
    (shares), all indexed by symbol: per code of ``codes`` the first ``limit`` names ranked as
    the scanner ranks them (gainers by change, losers by fall, most active by volume, hot by
    volume over average volume; ties in symbol order). Columns: scanner, rank, symbol,
    change_pct, volume, avg_volume."""
    unknown = [c for c in codes if c not in DAILY_SCANNERS]
    if unknown:
        raise ValueError(f"scanner codes {unknown} cannot be rebuilt; known: {DAILY_SCANNERS}")
    frame = pd.DataFrame(
        {
            "change_pct": (close / previous_close - 1.0) * 100.0,
            "volume": volume,
            "avg_volume": avg_volume,
        }
    ).dropna(subset=["change_pct", "volume"])
    frame = frame.sort_index()
    ratio = frame["volume"] / frame["avg_volume"].where(frame["avg_volume"] > 0)
    keys = {
        "TOP_PERC_GAIN": (frame["change_pct"] > 0, -frame["change_pct"]),
        "TOP_PERC_LOSE": (frame["change_pct"] < 0, frame["change_pct"]),
        "MOST_ACTIVE": (pd.Series(True, index=frame.index), -frame["volume"]),
        "HOT_BY_VOLUME": (ratio.notna(), -ratio),
    }
    lists = []
    for code in codes:
        keep, key = keys[code]
        picked = key[keep.to_numpy()].sort_values(kind="stable").index[:limit]
        lists.append(
            frame.loc[picked].assign(scanner=code, rank=np.arange(len(picked)), symbol=picked)
        )
    columns = ["scanner", "rank", "symbol", "change_pct", "volume", "avg_volume"]
    if not lists:
        return pd.DataFrame(columns=columns)
    return pd.concat(lists, ignore_index=True).loc[:, columns]


def replay_movers(
    bars: pd.DataFrame,
    sessions: Sequence[pd.Timestamp],
    avg_volume: pd.Series,
    codes: Sequence[str],
    limit: int,
    min_change_pct: float,
    min_volume_ratio: float,
) -> dict[pd.Timestamp, list[str]]:
    """Each of ``sessions``' movers as the daily job's universe adds them: the pre-open scans
    (:func:`scan_previous_session`) of the session before it, from the long daily ``bars``
    (symbol, session, close, volume), with ``avg_volume`` by symbol (shares), picked by
    :func:`select_movers`. A session without two earlier sessions of bars has none."""
    closes = bars.pivot_table(index="session", columns="symbol", values="close").sort_index()
    volumes = bars.pivot_table(index="session", columns="symbol", values="volume")
    volumes = volumes.reindex(index=closes.index, columns=closes.columns)
    out: dict[pd.Timestamp, list[str]] = {}
    for day in sessions:
        k = int(closes.index.searchsorted(pd.Timestamp(day)))  # sessions before: [0, k)
        if k < 2:
            out[pd.Timestamp(day)] = []
            continue
        hits = scan_previous_session(
            closes.iloc[k - 1], closes.iloc[k - 2], volumes.iloc[k - 1], avg_volume, codes, limit
        )
        out[pd.Timestamp(day)] = select_movers(hits, min_change_pct, min_volume_ratio)
    return out
