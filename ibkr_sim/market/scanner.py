"""Market scanners of the simulated market, as IB's ``reqScannerSubscription`` answers them.

During a session a scan ranks live values; before the open it ranks the last completed session
(the pre-market "yesterday's movers" screen the pipeline runs at 07:00 New York); after the
close, the day's values. Stocks only (ETFs excluded), at most 50 rows as IB returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from ibkr_sim.market.calendar import from_ns, schedule, when
from ibkr_sim.market.edge import Edge
from ibkr_sim.market.paths import panel, stock_column
from ibkr_sim.market.quotes import state
from ibkr_sim.universe import Instrument
from ibkr_spec.errors import INVALID_REQUEST, IBError

SCANNER_CODES: tuple[str, ...] = (
    "TOP_PERC_GAIN",
    "TOP_PERC_LOSE",
    "MOST_ACTIVE",
    "HOT_BY_VOLUME",
)
LOCATIONS: tuple[str, ...] = ("STK.US.MAJOR", "STK.US", "STK.NASDAQ", "STK.NYSE")
#: the filters a scan takes: IB's filter code -> the keyword of :func:`scan`
FILTERS: dict[str, str] = {
    "priceAbove": "above_price",
    "priceBelow": "below_price",
    "volumeAbove": "above_volume",
    "marketCapAbove": "market_cap_above",
    "marketCapBelow": "market_cap_below",
}


@dataclass(frozen=True)
class ScanResult:
    """One scanner row: rank 0 is the best match."""

    rank: int
    conid: int
    last: float
    change_pct: float
    volume: float
    avg_volume: float


def scan(
    seed: int,
    edge: Edge,
    stocks: Sequence[Instrument],
    code: str,
    at: datetime,
    location: str,
    above_price: float | None,
    below_price: float | None,
    above_volume: float | None,
    market_cap_above: float | None,
    market_cap_below: float | None,
    limit: int,
) -> list[ScanResult]:
    """Rank ``stocks`` (the universe's, in its order: :func:`stock_column` gives their panel
    columns) by ``code`` at ``at``.

    HOT_BY_VOLUME ranks volume relative to the average expected by this time of day. Filters
    are strict bounds: price in currency, volume in shares, market cap in USD.
    """
    if code not in SCANNER_CODES:
        raise IBError(
            INVALID_REQUEST,
            f"unknown scanner code {code!r}; valid: {', '.join(SCANNER_CODES)}",
        )
    if location not in LOCATIONS:
        raise IBError(
            INVALID_REQUEST,
            f"unknown scanner location {location!r}; valid: {', '.join(LOCATIONS)}",
        )
    if limit < 1:
        raise IBError(INVALID_REQUEST, f"scanner limit must be at least 1, got {limit}")
    index = np.arange(len(stocks))
    if location in ("STK.NASDAQ", "STK.NYSE"):
        venue = location.split(".")[1]
        index = np.array(
            [i for i, s in enumerate(stocks) if s.primary_exchange == venue], dtype=np.int64
        )
    cols = np.array([stock_column(i) for i in index.tolist()], dtype=np.int64)
    kind, j, _ = when(at)
    st = state(
        seed, edge, cols, at if kind != "pre" else from_ns(schedule()[2][j - 1]) if j > 0 else at
    )
    last, volume, prev = st["last"], st["volume"], st["prev_close"]
    change = (last / prev - 1.0) * 100.0
    adv = panel(seed, edge).adv[cols]
    cap = last * np.array([stocks[i].shares_outstanding for i in index.tolist()])
    keep = np.ones(len(cols), dtype=bool)
    for value, bound, above in (
        (last, above_price, True),
        (last, below_price, False),
        (volume, above_volume, True),
        (cap, market_cap_above, True),
        (cap, market_cap_below, False),
    ):
        if bound is not None:
            keep &= value > bound if above else value < bound
    if code == "TOP_PERC_GAIN":
        keep &= change > 0
        key = -change
    elif code == "TOP_PERC_LOSE":
        keep &= change < 0
        key = change
    elif code == "MOST_ACTIVE":
        key = -volume
    else:
        key = -volume / (adv * max(float(st["elapsed"]), 1e-3))
    idx = np.flatnonzero(keep)
    idx = idx[np.argsort(key[idx], kind="stable")][: min(limit, 50)]
    return [
        ScanResult(
            rank=r,
            conid=stocks[index[i]].conid,
            last=float(last[i]),
            change_pct=round(float(change[i]), 4),
            volume=float(volume[i]),
            avg_volume=float(adv[i]),
        )
        for r, i in enumerate(idx)
    ]
