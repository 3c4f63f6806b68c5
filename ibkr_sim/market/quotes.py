"""Quotes of the simulated market: top of book at any instant and a level-2 book around it.

During a session the last price moves along the session's intraday path
(:func:`ibkr_sim.market.intraday.intraday`), interpolated between minute marks, with the running
high and low and the volume traded so far. Before the open a snapshot shows the previous close with
volume 0; after the close, the day's close. The spread widens for less liquid names (about 1 bp
for mega caps, tens of bp for thin names, at least one tick), 3x before the open and 2x after
the close. Sizes and the depth ladder's market makers are hashed from the seed, the contract and
the minute, so a quote is the same in every process. A stock's sizes are whole round lots of its
price tier at the previous close (:func:`ibkr_spec.lots.round_lot`: 100 shares up to $250, 40 up
to $1,000, 10 up to $10,000, else 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from ibkr_sim.market.calendar import to_ns, when
from ibkr_sim.market.edge import Edge
from ibkr_sim.market.intraday import intraday
from ibkr_sim.market.paths import on_tick, panel
from ibkr_sim.universe import Instrument, stable_int
from ibkr_spec.lots import round_lot

_MARKET_MAKERS = ("NSDQ", "ARCA", "EDGX", "BATS", "IEX", "NYSE", "DRCTEDGE", "MEMX")


@dataclass(frozen=True)
class Snapshot:
    """A top-of-book quote as IB's snapshot market data would report it (prices in currency)."""

    conid: int
    time: datetime
    bid: float
    ask: float
    last: float
    bid_size: float
    ask_size: float
    last_size: float
    volume: float  # today so far (shares; 0 before the open)
    open: float
    high: float
    low: float
    prev_close: float


def _prev_close(seed: int, edge: Edge, j: int, cols: np.ndarray) -> np.ndarray:
    p = panel(seed, edge)
    return p.close[j - 1, cols] if j > 0 else p.start_price[cols]


def spread(seed: int, edge: Edge, cols: np.ndarray, price: np.ndarray, widen: float) -> np.ndarray:
    """Quoted spread: ~1 bp for mega caps, tens of bp for thin names; at least one tick."""
    p = panel(seed, edge)
    return _spread(p.tick[cols], p.adv[cols], price, widen)


def _spread(tick: np.ndarray, adv: np.ndarray, price: np.ndarray, widen: float) -> np.ndarray:
    """:func:`spread` of columns with ticks ``tick`` and average daily volumes ``adv``."""
    bps = 1.0 + 5.0e4 / np.sqrt(np.maximum(adv * price, 1.0))
    bps = np.where(adv > 0, np.minimum(np.maximum(bps, 1.0), 50.0), 0.5)  # FX, indices: tight
    return np.maximum((price * bps * widen / 1e4 / tick).round(), 1.0) * tick


def state(seed: int, edge: Edge, cols: np.ndarray, at: datetime) -> dict[str, np.ndarray]:
    """Last/open/high/low/volume/prev_close for panel columns at an instant (vectorised)."""
    p = panel(seed, edge)
    kind, j, minutes = when(at)
    if kind == "open":
        day = intraday(seed, edge, j)
        k = min(int(minutes), day.minutes - 1)
        f = min(minutes - k, 1.0)
        # minutes k and k + 1 of the asked columns' paths only (not their whole rows)
        before, after = day.path[cols, k], day.path[cols, k + 1]
        last = on_tick(before + f * (after - before), p.tick[cols])
        last = np.minimum(np.maximum(last, p.low[j, cols]), p.high[j, cols])
        before, after = day.cum_volume[cols, k], day.cum_volume[cols, k + 1]
        volume = (before + f * (after - before)).round(-2)
        return {
            "last": last,
            "open": p.open[j, cols],
            "high": np.maximum(day.run_high[cols, k], last),
            "low": np.minimum(day.run_low[cols, k], last),
            "volume": volume,
            "prev_close": _prev_close(seed, edge, j, cols),
            "widen": np.array(1.0),
            "elapsed": np.array(max(minutes, 1.0) / day.minutes),
            "session": np.array(j),
        }
    if kind == "pre":
        prev = _prev_close(seed, edge, j, cols)
        return {
            "last": prev,
            "open": prev,
            "high": prev,
            "low": prev,
            "volume": np.zeros(len(cols)),
            "prev_close": prev,
            "widen": np.array(3.0),
            "elapsed": np.array(0.0),
            "session": np.array(j),
        }
    return {
        "last": p.close[j, cols],
        "open": p.open[j, cols],
        "high": p.high[j, cols],
        "low": p.low[j, cols],
        "volume": p.volume[j, cols],
        "prev_close": _prev_close(seed, edge, j, cols),
        "widen": np.array(2.0),
        "elapsed": np.array(1.0),
        "session": np.array(j),
    }


#: the columns of :func:`panel_snapshot_columns`: a :class:`Snapshot`'s fields but conid and time
SNAPSHOT_COLUMNS = (
    "bid",
    "ask",
    "last",
    "bid_size",
    "ask_size",
    "last_size",
    "volume",
    "open",
    "high",
    "low",
    "prev_close",
)


def panel_snapshot_columns(
    seed: int, edge: Edge, cols: np.ndarray, at: datetime
) -> dict[str, np.ndarray]:
    """The snapshots of panel columns ``cols`` at ``at`` as float64 arrays, one per field of
    :data:`SNAPSHOT_COLUMNS` (what :func:`panel_snapshots` makes objects of); to be read, not
    written (before the open, open, high, low and previous close are one array)."""
    p = panel(seed, edge)
    st = state(seed, edge, cols, at)
    last, tick, adv = st["last"], p.tick[cols], p.adv[cols]
    quoted = _spread(tick, adv, last, float(st["widen"]))
    bid = np.maximum(np.floor((last - quoted / 2.0) / tick + 1e-9) * tick, tick)
    ask = np.maximum(bid + quoted, np.ceil(last / tick - 1e-9) * tick)
    ask = np.where(ask <= bid, bid + tick, ask)
    minute = to_ns(at) // 60_000_000_000
    h = (cols * 2654435761 + minute * 40503 + seed * 977) % 4294967296
    depth_scale = np.minimum(np.maximum(adv / 2e5, 3), 80).astype(np.int64)
    traded = zip(st["prev_close"].tolist(), (adv > 0).tolist(), strict=True)
    # stocks and ETFs trade in round lots; FX and indices (no volume) quote no size
    lot = np.array([round_lot(pc) if t else 0 for pc, t in traded], dtype=np.float64)
    return {
        "bid": bid.round(8),
        "ask": ask.round(8),
        "last": last.round(8),
        "bid_size": lot * (1 + h % depth_scale),
        "ask_size": lot * (1 + (h >> 8) % depth_scale),
        "last_size": lot * (1 + (h >> 16) % 5),
        **{name: st[name] for name in ("volume", "open", "high", "low", "prev_close")},
    }


def panel_snapshots(
    seed: int, edge: Edge, conids: list[int], cols: np.ndarray, at: datetime
) -> list[Snapshot]:
    """Snapshots of contracts with a panel column (``cols[k]`` holds ``conids[k]``)."""
    columns = panel_snapshot_columns(seed, edge, cols, at)
    when_utc = at.astimezone(UTC)
    rows = zip(conids, *(columns[name].tolist() for name in SNAPSHOT_COLUMNS), strict=True)
    return [Snapshot(c, when_utc, *vals) for c, *vals in rows]


def depth(
    seed: int, inst: Instrument, snap: Snapshot, at: datetime, rows: int
) -> tuple[list[tuple[float, float, str]], list[tuple[float, float, str]]]:
    """Level-2 book around ``snap``: (bids best-first, asks best-first) of (price, size, maker).

    Level 0 is the quote itself; each deeper level is 1-3 ticks further out with 1.3-1.7x the
    size (in lots: a stock's round lot at the previous close, 1,000,000 of an FX pair's base
    currency, else 1).
    """
    tick = inst.min_tick
    h = stable_int(seed, inst.conid, to_ns(at) // 60_000_000_000)
    if inst.sec_type == "STK":
        lot = float(round_lot(snap.prev_close))
    else:
        lot = 1_000_000.0 if inst.sec_type == "CASH" else 1.0
    bids: list[tuple[float, float, str]] = []
    asks: list[tuple[float, float, str]] = []
    bid, ask = snap.bid, snap.ask
    bsize, asize = snap.bid_size or lot, snap.ask_size or lot
    for level in range(rows):
        if bid > 0:
            bids.append((round(bid, 8), bsize, _MARKET_MAKERS[(h >> (3 * level)) % 8]))
        asks.append((round(ask, 8), asize, _MARKET_MAKERS[(h >> (3 * level + 1)) % 8]))
        step = 1 + (h >> (2 * level + 5)) % 3
        bid, ask = bid - step * tick, ask + step * tick
        bsize = max(lot, round(bsize * (1.3 + 0.1 * ((h >> level) % 5)) / lot) * lot)
        asize = max(lot, round(asize * (1.3 + 0.1 * ((h >> (level + 2)) % 5)) / lot) * lot)
    return bids, asks
