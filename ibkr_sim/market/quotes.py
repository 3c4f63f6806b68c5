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

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ibkr_sim.market.calendar import to_ns, when
from ibkr_sim.market.edge import Edge
from ibkr_sim.market.intraday import intraday
from ibkr_sim.market.paths import Panel, on_tick, panel
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


class _Columns:
    """Panel columns ``cols`` read and combined as numpy arrays: the formulas below
    (:func:`_state`, :func:`_spread`, :func:`_snapshot`) run once over all of them."""

    maximum = staticmethod(np.maximum)
    minimum = staticmethod(np.minimum)
    floor = staticmethod(np.floor)
    ceil = staticmethod(np.ceil)
    sqrt = staticmethod(np.sqrt)
    where = staticmethod(np.where)
    on_tick = staticmethod(on_tick)

    def __init__(self, cols: np.ndarray) -> None:
        self.ids = cols

    def of(self, a: np.ndarray) -> np.ndarray:
        """Per-column array ``a`` (C,) at these columns."""
        return a[self.ids]

    def row(self, a: np.ndarray, i: int) -> np.ndarray:
        """Row ``i`` of a (T, C) panel array at these columns."""
        return a[i, self.ids]

    def minute(self, a: np.ndarray, k: int) -> np.ndarray:
        """Minute mark ``k`` of a (C, n + 1) intraday array at these columns."""
        return a[self.ids, k]

    def zeros(self) -> np.ndarray:
        return np.zeros(len(self.ids))

    @staticmethod
    def round(x: np.ndarray, decimals: int = 0) -> np.ndarray:
        return x.round(decimals)

    @staticmethod
    def whole(x: np.ndarray) -> np.ndarray:
        """``x`` truncated to integers (int64)."""
        return x.astype(np.int64)

    def lots(self, prev_close: np.ndarray, adv: np.ndarray) -> np.ndarray:
        """Each column's round lot at its previous close; 0 where nothing trades (no ADV)."""
        traded = zip(prev_close.tolist(), (adv > 0).tolist(), strict=True)
        return np.array([round_lot(pc) if t else 0 for pc, t in traded], dtype=np.float64)


class _Column:
    """One panel column ``col`` read as Python floats and combined with the same operations as
    :class:`_Columns`, bit for bit: IEEE 754 arithmetic and square roots are correctly rounded in
    both; numpy's ``rint`` and ``round`` round half to even, as Python's ``round`` does (numpy's
    ``round(x, d)`` is ``rint(x * 10**d) / 10**d``, for ``d < 0`` ``rint(x / 10**-d) * 10**-d``),
    and the panel holds no NaN (where ``maximum``/``minimum`` would differ from these). Each numpy
    call on a one-column array costs about a microsecond (a one-symbol snapshot made ~90 of them,
    ~100 us; ~250-350 us inside the MCP server, whose other work leaves numpy's code cold:
    bench/mcp_latency.py's quote, measured with time.thread_time in session 18), a float
    operation tens of nanoseconds."""

    @staticmethod
    def maximum(a: float, b: float) -> float:
        return a if a >= b else b

    @staticmethod
    def minimum(a: float, b: float) -> float:
        return a if a <= b else b

    @staticmethod
    def floor(x: float) -> float:
        return float(math.floor(x))

    @staticmethod
    def ceil(x: float) -> float:
        return float(math.ceil(x))

    sqrt = staticmethod(math.sqrt)

    @staticmethod
    def where(condition: bool, a: float, b: float) -> float:
        return a if condition else b

    @staticmethod
    def on_tick(price: float, tick: float) -> float:
        """:func:`ibkr_sim.market.paths.on_tick` of one price."""
        per_unit = float(round(1.0 / tick))
        return round(price * per_unit) / per_unit

    def __init__(self, col: int) -> None:
        self.ids = col

    def of(self, a: np.ndarray) -> float:
        return float(a[self.ids])

    def row(self, a: np.ndarray, i: int) -> float:
        return float(a[i, self.ids])

    def minute(self, a: np.ndarray, k: int) -> float:
        return float(a[self.ids, k])

    def zeros(self) -> float:
        return 0.0

    @staticmethod
    def round(x: float, decimals: int = 0) -> float:
        if decimals >= 0:
            scale = 10.0**decimals
            return round(x * scale) / scale
        scale = 10.0**-decimals
        return round(x / scale) * scale

    @staticmethod
    def whole(x: float) -> int:
        return int(x)

    @staticmethod
    def lots(prev_close: float, adv: float) -> float:
        return float(round_lot(prev_close)) if adv > 0 else 0.0


#: how the formulas read and combine columns: all at once as arrays, or one at a time as floats
_Reader = _Columns | _Column
#: up to this many columns a snapshot is computed column by column in floats, beyond as arrays
#: (CPU hot, session 18: one stock ~24 us in floats, ~110 us as arrays; each further column ~20 us
#: in floats, little as arrays: four cost about the same either way)
FEW_COLUMNS = 4


def _prev_close(x: _Reader, p: Panel, j: int) -> Any:
    return x.row(p.close, j - 1) if j > 0 else x.of(p.start_price)


def spread(seed: int, edge: Edge, cols: np.ndarray, price: np.ndarray, widen: float) -> np.ndarray:
    """Quoted spread: ~1 bp for mega caps, tens of bp for thin names; at least one tick."""
    p = panel(seed, edge)
    x = _Columns(cols)
    return _spread(x, x.of(p.tick), x.of(p.adv), price, widen)


def _spread(x: _Reader, tick: Any, adv: Any, price: Any, widen: float) -> Any:
    """:func:`spread` of columns with ticks ``tick`` and average daily volumes ``adv``."""
    bps = 1.0 + 5.0e4 / x.sqrt(x.maximum(adv * price, 1.0))
    bps = x.where(adv > 0, x.minimum(x.maximum(bps, 1.0), 50.0), 0.5)  # FX, indices: tight
    return x.maximum(x.round(price * bps * widen / 1e4 / tick), 1.0) * tick


def state(seed: int, edge: Edge, cols: np.ndarray, at: datetime) -> dict[str, Any]:
    """Last/open/high/low/volume/prev_close (arrays) for panel columns at an instant, with the
    spread's widening (a float), the share of the session elapsed (a float) and the session's
    index."""
    return _state(_Columns(cols), panel(seed, edge), seed, edge, at)


def _state(x: _Reader, p: Panel, seed: int, edge: Edge, at: datetime) -> dict[str, Any]:
    """:func:`state` of the columns ``x`` reads."""
    kind, j, minutes = when(at)
    if kind == "open":
        day = intraday(seed, edge, j)
        k = min(int(minutes), day.minutes - 1)
        f = min(minutes - k, 1.0)
        # minutes k and k + 1 of the asked columns' paths only (not their whole rows)
        before, after = x.minute(day.path, k), x.minute(day.path, k + 1)
        last = x.on_tick(before + f * (after - before), x.of(p.tick))
        last = x.minimum(x.maximum(last, x.row(p.low, j)), x.row(p.high, j))
        before, after = x.minute(day.cum_volume, k), x.minute(day.cum_volume, k + 1)
        volume = x.round(before + f * (after - before), -2)
        return {
            "last": last,
            "open": x.row(p.open, j),
            "high": x.maximum(x.minute(day.run_high, k), last),
            "low": x.minimum(x.minute(day.run_low, k), last),
            "volume": volume,
            "prev_close": _prev_close(x, p, j),
            "widen": 1.0,
            "elapsed": max(minutes, 1.0) / day.minutes,
            "session": j,
        }
    if kind == "pre":
        prev = _prev_close(x, p, j)
        return {
            "last": prev,
            "open": prev,
            "high": prev,
            "low": prev,
            "volume": x.zeros(),
            "prev_close": prev,
            "widen": 3.0,
            "elapsed": 0.0,
            "session": j,
        }
    return {
        "last": x.row(p.close, j),
        "open": x.row(p.open, j),
        "high": x.row(p.high, j),
        "low": x.row(p.low, j),
        "volume": x.row(p.volume, j),
        "prev_close": _prev_close(x, p, j),
        "widen": 2.0,
        "elapsed": 1.0,
        "session": j,
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
    return _snapshot(_Columns(cols), seed, edge, at)


def _snapshot(x: _Reader, seed: int, edge: Edge, at: datetime) -> dict[str, Any]:
    """:func:`panel_snapshot_columns` of the columns ``x`` reads."""
    p = panel(seed, edge)
    st = _state(x, p, seed, edge, at)
    last, tick, adv = st["last"], x.of(p.tick), x.of(p.adv)
    quoted = _spread(x, tick, adv, last, st["widen"])
    bid = x.maximum(x.floor((last - quoted / 2.0) / tick + 1e-9) * tick, tick)
    ask = x.maximum(bid + quoted, x.ceil(last / tick - 1e-9) * tick)
    ask = x.where(ask <= bid, bid + tick, ask)
    minute = to_ns(at) // 60_000_000_000
    h = (x.ids * 2654435761 + minute * 40503 + seed * 977) % 4294967296
    depth_scale = x.whole(x.minimum(x.maximum(adv / 2e5, 3), 80))
    # stocks and ETFs trade in round lots; FX and indices (no volume) quote no size
    lot = x.lots(st["prev_close"], adv)
    return {
        "bid": x.round(bid, 8),
        "ask": x.round(ask, 8),
        "last": x.round(last, 8),
        "bid_size": lot * (1 + h % depth_scale),
        "ask_size": lot * (1 + (h >> 8) % depth_scale),
        "last_size": lot * (1 + (h >> 16) % 5),
        **{name: st[name] for name in ("volume", "open", "high", "low", "prev_close")},
    }


def panel_snapshots(
    seed: int, edge: Edge, conids: list[int], cols: np.ndarray, at: datetime
) -> list[Snapshot]:
    """Snapshots of contracts with a panel column (``cols[k]`` holds ``conids[k]``): up to
    :data:`FEW_COLUMNS` column by column in floats, more as arrays (the same numbers)."""
    when_utc = at.astimezone(UTC)
    if len(cols) <= FEW_COLUMNS:
        rows = [_snapshot(_Column(col), seed, edge, at) for col in cols.tolist()]
        return [
            Snapshot(c, when_utc, *(row[name] for name in SNAPSHOT_COLUMNS))
            for c, row in zip(conids, rows, strict=True)
        ]
    columns = panel_snapshot_columns(seed, edge, cols, at)
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
