"""Intraday paths of the simulated market: each session's minute path of a stock, drawn from the
daily panel (:mod:`ibkr_sim.market.paths`), one minute grid per session.

Volume accumulates along a U-shaped profile with an opening burst, per minute about 3x the midday
rate in the first and last half hour (Jain & Joh 1988 measure the U on the NYSE, Admati & Pfleiderer
1988 explain it; the exact curve is a modelling choice), with lognormal noise per minute. The price
runs in volume time (Clark 1973: variance accrues with trading, so it is U-shaped too, as Wood,
McInish & Ord 1985 find): a Brownian bridge from the log open to the log close whose variance over
the session is ``(0.76 sigma)^2``, the variance of the panel's own open-to-close log return (0.76 of
the day's conditional ``sigma``; the overnight gap carries the rest), so that averaged over days the
path is a Brownian motion ending where the panel's close says. It is then pinned to the day's high
at the minute where it peaks and to the low where it troughs (adding the linear interpolation, in
volume time, of the misses at those minutes, which is how a Brownian path is conditioned on passing
through given points) and whatever then overshoots the high or the low is reflected back into the
range, as a price bounces off the day's extremes. The path therefore starts at the open, ends at the
close, touches the high and low exactly and never leaves [low, high]; rounded to ticks, it stays
unchanged for a minute only as often as the tick size makes likely (about 8 % of minutes for liquid
names), never parked at an extreme.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np

from ibkr_sim.market.calendar import schedule
from ibkr_sim.market.edge import Edge
from ibkr_sim.market.paths import Panel, _panel, block_sizes, generated_blocks, on_tick
from ibkr_sim.universe import LISTED_STOCKS, N_OTHERS


@dataclass(frozen=True)
class Intraday:
    """One session's minute grid for every column: price path, running extremes, volume so far."""

    path: np.ndarray  # (C, n + 1) price at each minute mark; [:, 0] open, [:, n] close
    run_high: np.ndarray
    run_low: np.ndarray
    cum_volume: np.ndarray  # (C, n + 1) shares traded up to each minute mark
    minutes: int


def intraday(seed: int, edge: Edge, j: int) -> Intraday:
    """Session ``j``'s minute path for every column: a Brownian bridge from the open to the close
    in volume time, pinned to the day's high and low where it peaks and troughs and reflected
    into the day's range (module docstring). Deterministic per (seed, session): the edge enters
    only through the panel's prices and volume; each block of generated stocks draws from its
    own stream, so the listed columns' paths do not depend on how many there are."""
    return _intraday(seed, edge, j, generated_blocks())


@functools.lru_cache(maxsize=8)
def _intraday(seed: int, edge: Edge, j: int, blocks: int) -> Intraday:
    p = _panel(seed, edge, blocks)
    _, opens, closes = schedule()
    n = int((closes[j] - opens[j]) // 60_000_000_000)
    # expected volume per minute, relative: U-shaped with an opening burst; the price's variance
    # runs on the same clock (volume time), from 0 at the open to 1 at the close
    u = (np.arange(n) + 0.5) / n
    profile = 1.0 + 2.5 * (2.0 * u - 1.0) ** 4 + 0.8 * np.exp(-u * 30.0)
    clock = np.zeros(n + 1)
    np.cumsum(profile / profile.sum(), out=clock[1:])
    edges = [0, LISTED_STOCKS + N_OTHERS]
    for size in block_sizes(blocks):
        edges.append(edges[-1] + size)
    parts = [
        _minute_paths(
            p,
            j,
            slice(lo, hi),
            profile,
            clock,
            np.random.default_rng(np.random.SeedSequence([seed, 31, j, *([b] if b else [])])),
        )
        for b, (lo, hi) in enumerate(itertools.pairwise(edges))
    ]
    path = np.concatenate([part[0] for part in parts]) if blocks else parts[0][0]
    cum = np.concatenate([part[1] for part in parts]) if blocks else parts[0][1]
    return Intraday(
        path=path,
        run_high=np.maximum.accumulate(path, axis=1),
        run_low=np.minimum.accumulate(path, axis=1),
        cum_volume=cum,
        minutes=n,
    )


def _minute_paths(
    p: Panel,
    j: int,
    cols: slice,
    profile: np.ndarray,
    clock: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Session ``j``'s minute price path and cumulative volume of the panel columns ``cols``
    (:func:`intraday`), from ``rng``."""
    n = len(profile)
    o, h, lo, c = (np.log(x[j, cols])[:, None] for x in (p.open, p.high, p.low, p.close))
    C = o.shape[0]
    # a Brownian bridge from log open to log close; its variance over the session is that of
    # the panel's open-to-close log return (0.76 of the day's sigma: the rest is the overnight gap)
    x = np.zeros((C, n + 1))
    np.cumsum(rng.standard_normal((C, n)) * np.sqrt(np.diff(clock)), axis=1, out=x[:, 1:])
    x -= x[:, -1:] * clock
    x *= 0.76 * p.sigma[max(j - 1, 0), cols][:, None]
    x += o + (c - o) * clock
    # pin it to the high where it peaks and to the low where it troughs: adding the linear
    # interpolation (in volume time) of the misses at the pins conditions a Brownian path on
    # passing through them, and leaves its increments elsewhere untouched
    rows = np.arange(C)
    t_high = np.argmax(x[:, 1:n], axis=1) + 1
    t_low = np.argmin(x[:, 1:n], axis=1) + 1
    t_low = np.where(t_low == t_high, np.where(t_high > 1, 1, n - 1), t_low)  # a flat column
    t1, t2 = np.minimum(t_high, t_low), np.maximum(t_high, t_low)
    miss_high = h[:, 0] - x[rows, t_high]
    miss_low = lo[:, 0] - x[rows, t_low]
    m1 = np.where(t1 == t_high, miss_high, miss_low)[:, None]
    m2 = np.where(t1 == t_high, miss_low, miss_high)[:, None]
    c1, c2, k = clock[t1][:, None], clock[t2][:, None], clock[None, :]
    x += np.where(
        k <= c1,
        m1 * k / c1,
        np.where(k <= c2, m1 + (m2 - m1) * (k - c1) / (c2 - c1), m2 * (1.0 - k) / (1.0 - c2)),
    )
    # reflect whatever overshoots off the high and the low, as a price bounces off the day's
    # extremes: the path stays in [low, high], the pins and ends (inside) stay where they are
    width = h - lo
    x -= lo
    np.mod(x, np.where(width > 0.0, 2.0 * width, 1.0), out=x)
    x = lo + np.where(x > width, 2.0 * width - x, x)
    path = on_tick(np.exp(x), p.tick[cols, None])
    w = profile[None, :] * np.exp(0.3 * rng.standard_normal((C, n)))
    cum = np.zeros((C, n + 1))
    np.cumsum(w, axis=1, out=cum[:, 1:])
    cum *= (p.volume[j, cols] / cum[:, -1])[:, None]
    return path, cum
