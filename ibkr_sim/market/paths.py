"""Price paths of the simulated market: the daily panel (each session's minute path is
:mod:`ibkr_sim.market.intraday`).

**Daily returns** follow a multi-factor model, as a risk model would decompose a real stock::

    r[t, i] = mu_i + drift[t, i] + beta_i * m[t] + gamma_i * s[t, sector(i)] + e[t, i] + J[t, i]

- ``m`` is the market factor: GJR-GARCH(1,1) volatility (shocks raise tomorrow's variance, falls
  more than rises, so volatility clusters and is negatively correlated with returns) with
  Student-t(5) shocks (fat tails). ``s`` are eleven GICS sector factors (GARCH, t(5)) and ``e`` is
  idiosyncratic (GARCH, t(4); :mod:`~ibkr_sim.market.shocks` draws it and the headlines and
  jumps) with a per-stock volatility that is higher for smaller caps. References: Bollerslev
  (1986); Glosten, Jagannathan & Runkle (1993); Fama & French (1993).
- ``mu_i`` is the stock's long-run drift: a common 0.03 %/day plus ``Edge.quality_drift`` per
  standard deviation of its latent quality, which also drives its fundamentals
  (:mod:`ibkr_sim.market.fundamentals`).
- ``J`` are rare jumps (about 0.5 % of stock-days, 5-12 %, mostly at the open) on 2.5-5x the
  average daily volume, each with a strong headline of its sign stamped when the price moves
  (:mod:`ibkr_sim.market.news`), so every day has a few top movers for the scanners.
- ``drift`` is what observables predict, each link one parameter of
  :class:`~ibkr_sim.market.edge.Edge`: post-news drift (a headline's tone in [-1, 1] adds
  ``Edge.news_tone_drift`` per unit tone, decaying by 0.8 a session, to the next five sessions'
  returns) and momentum (``Edge.momentum`` per standard deviation of the stock's idiosyncratic
  return over the past 12 months skipping the last one) and social attention's price pressure
  (``Edge.social_attention_drift`` per unit of abnormal attention,
  :func:`~ibkr_sim.market.social.price_pressure`; the chatter itself is drawn here, from the
  news, jumps and idiosyncratic shocks, by :func:`~ibkr_sim.market.social.draw_chatter`). With
  :meth:`Edge.none` no observable predicts returns.

Daily OHLC: part of the return happens overnight (the gap to the open), the rest intraday; highs
and lows extend beyond the open/close by a volatility-scaled amount. Volume is around ADV and
rises with ``|r|``. Macro instruments: SPY (the market factor), QQQ (market + tech), VIX (the
market's conditional volatility, annualised), TNX (10-year yield x 10, mean-reverting), crude and
FX (mean-reverting in logs).

The whole panel (2019-01-02 to 2028-12-29, every listed stock plus the macro instruments) is
drawn once per seed and edge from ``numpy.random.SeedSequence`` and cached per process, so two
processes see identical numbers and a stock's history does not depend on how many stocks the
universe holds. Generated stocks (a world above the 807 listed ones,
:mod:`ibkr_sim.universe`) follow the same model on the same market and sector factors, in
blocks of :data:`GENERATED_BLOCK` stocks, each block from its own streams and appended after
the macro instruments (:func:`stock_column`), so the listed stocks and the macro instruments
keep their numbers and columns; a process's panel holds the generated blocks the largest world
it opened needs (:func:`include_generated`). Their parameters continue the listed stocks' with
rank: idiosyncratic volatility ``0.017 + 0.006 log(rank / 807) / log(5000 / 807)`` a day plus
U(0, 0.005) (the listed ones reach 0.017 at rank 807), headlines ``0.25 sqrt(807 / rank)`` a
session (0.10 at rank 5,000). The random draws do not depend on the edge: the edge-free world of
a seed has the same shocks, news and fundamentals as its default world, only without the links.
"""

from __future__ import annotations

import functools
import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ibkr_sim.market.calendar import schedule
from ibkr_sim.market.edge import Edge
from ibkr_sim.market.shocks import News, draw_news, garch, idiosyncratic, unit_t
from ibkr_sim.market.social import Chatter, draw_chatter, draw_counts, price_pressure
from ibkr_sim.universe import LISTED_STOCKS, MAX_STOCKS, N_OTHERS, Instrument, Universe

SECTORS = (
    "Information Technology",
    "Communication Services",
    "Consumer Discretionary",
    "Consumer Staples",
    "Health Care",
    "Financials",
    "Industrials",
    "Energy",
    "Materials",
    "Real Estate",
    "Utilities",
)
#: Market beta tilt per sector (defensives below 1, cyclicals above).
_SECTOR_BETA = {
    "Information Technology": 1.2,
    "Communication Services": 1.05,
    "Consumer Discretionary": 1.15,
    "Consumer Staples": 0.65,
    "Health Care": 0.8,
    "Financials": 1.1,
    "Industrials": 1.05,
    "Energy": 1.0,
    "Materials": 1.05,
    "Real Estate": 0.85,
    "Utilities": 0.55,
}
#: (symbol, currency) -> start level, long-run level, mean reversion per day, daily log vol
_MACRO_OU = {
    ("TNX", "USD"): (26.6, 42.0, 0.01, 0.012),
    ("CL", "USD"): (46.5, 75.0, 0.01, 0.022),
    ("EUR", "USD"): (1.146, 1.10, 0.005, 0.0045),
    ("GBP", "USD"): (1.27, 1.27, 0.005, 0.005),
    ("USD", "JPY"): (108.9, 140.0, 0.004, 0.005),
    ("USD", "CHF"): (0.985, 0.90, 0.005, 0.0045),
    ("USD", "CAD"): (1.36, 1.35, 0.005, 0.004),
    ("AUD", "USD"): (0.70, 0.68, 0.005, 0.006),
}
_NEWS_LAGS = 5  # sessions of post-news drift
_NEWS_DECAY = 0.8  # the drift's decay per session (its size is Edge.news_tone_drift)
_MOMENTUM_WINDOW = (252, 21)  # 12-1 momentum: sessions back to the window's start and end
#: generated stocks per block of the panel (each block drawn from its own streams)
GENERATED_BLOCK = 256
#: the generated blocks this process's panel holds (grows with the largest world opened)
_generated_blocks = 0


def include_generated(n_stocks: int) -> None:
    """Make this process's panel, intraday paths and statements cover a world of ``n_stocks``
    stocks: the generated blocks it needs are drawn (once) the next time they are read. The
    listed stocks' and macro instruments' numbers and columns never change."""
    global _generated_blocks
    needed = -(-max(n_stocks - LISTED_STOCKS, 0) // GENERATED_BLOCK)
    _generated_blocks = max(_generated_blocks, needed)


def generated_blocks() -> int:
    """How many blocks of generated stocks this process's panel holds."""
    return _generated_blocks


def block_sizes(blocks: int) -> list[int]:
    """The number of generated stocks in each of the first ``blocks`` blocks (the last may be
    short: there are ``MAX_STOCKS - LISTED_STOCKS`` generated stocks)."""
    total = MAX_STOCKS - LISTED_STOCKS
    return [min(GENERATED_BLOCK, total - b * GENERATED_BLOCK) for b in range(blocks)]


def stock_column(i: int) -> int:
    """The panel column of the universe's ``i``-th stock: the listed stocks first, then the
    macro instruments, then the generated stocks."""
    return i if i < LISTED_STOCKS else i + N_OTHERS


# -- the daily panel ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Panel:
    """Every instrument's daily history for one seed; columns: stocks (csv order), then others."""

    open: np.ndarray  # (T, C) float64
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    sigma: np.ndarray  # (T, C) conditional daily volatility of the next session's return
    news_count: np.ndarray  # (T, C) int8: headlines on that session
    news_tone: np.ndarray  # (T, C) float32: the session's news tone (0 without news)
    jump: np.ndarray  # (T, C) bool: jump (big mover) sessions
    start_price: np.ndarray  # (C,) price before the first session
    tick: np.ndarray  # (C,)
    adv: np.ndarray  # (C,)
    chatter: Chatter  # (T, MAX_STOCKS) social post and mention counts (ibkr_sim.market.social)


@dataclass(frozen=True)
class Stocks:
    """One seed's per-stock parameters, (MAX_STOCKS,) each, whatever the edge."""

    beta: np.ndarray  # market beta
    gamma: np.ndarray  # sector loading
    idio_vol: np.ndarray  # target daily idiosyncratic volatility
    quality: np.ndarray  # latent quality, standard normal: drives fundamentals (and drift)
    news_rate: np.ndarray  # headlines per session
    gap_frac: np.ndarray  # share of the non-jump return made overnight


def _streams(seed: int, *block: int) -> tuple[np.random.Generator, ...]:
    """The panel's six independent random streams: params, factor, idio, ohlc, news, volume
    (a block of generated stocks: its own six, keyed by ``block`` beside the seed)."""
    ss = np.random.SeedSequence([seed, 20190102, *block])
    return tuple(np.random.default_rng(s) for s in ss.spawn(6))


@functools.lru_cache(maxsize=4)
def generated_instruments(seed: int) -> tuple[list[Instrument], np.ndarray]:
    """Every generated stock of a seed and its start price (USD), in universe order."""
    uni = Universe(seed, MAX_STOCKS)
    return uni.stocks[LISTED_STOCKS:], uni.start_prices[LISTED_STOCKS:]


def block_slice(b: int) -> slice:
    """Block ``b``'s generated stocks among :func:`generated_instruments`."""
    size = block_sizes(b + 1)[b]
    return slice(b * GENERATED_BLOCK, b * GENERATED_BLOCK + size)


@functools.lru_cache(maxsize=32)
def generated_stocks(seed: int, b: int) -> Stocks:
    """Draw the per-stock parameters of block ``b`` of a seed's generated stocks, continuing
    the listed stocks' with rank (module docstring)."""
    insts = generated_instruments(seed)[0][block_slice(b)]
    r_params = _streams(seed, 1 + b)[0]
    N = len(insts)
    rank = LISTED_STOCKS + 1 + b * GENERATED_BLOCK + np.arange(N, dtype=np.float64)
    beta = np.array([_SECTOR_BETA[i.sector] for i in insts]) * r_params.uniform(0.7, 1.3, N)
    gamma = r_params.uniform(0.5, 1.2, N)
    depth = np.log(rank / LISTED_STOCKS) / math.log(MAX_STOCKS / LISTED_STOCKS)
    idio_vol = 0.017 + 0.006 * depth + r_params.uniform(0.0, 0.005, N)
    quality = r_params.standard_normal(N)
    return Stocks(
        beta=beta,
        gamma=gamma,
        idio_vol=idio_vol,
        quality=quality,
        news_rate=0.25 * np.sqrt(LISTED_STOCKS / rank),
        gap_frac=r_params.uniform(0.15, 0.35, N),
    )


@functools.lru_cache(maxsize=4)
def stocks(seed: int) -> Stocks:
    """Draw the per-stock parameters of a seed's listed stocks (the fundamentals need
    ``quality`` alone)."""
    uni = Universe(seed, LISTED_STOCKS)
    r_params = _streams(seed)[0]
    N = LISTED_STOCKS
    rank_frac = np.arange(N) / (N - 1)
    beta = np.array([_SECTOR_BETA[i.sector] for i in uni.stocks]) * r_params.uniform(0.7, 1.3, N)
    gamma = r_params.uniform(0.5, 1.2, N)
    idio_vol = 0.008 + 0.009 * rank_frac + r_params.uniform(0.0, 0.005, N)
    quality = r_params.standard_normal(N)
    return Stocks(
        beta=beta,
        gamma=gamma,
        idio_vol=idio_vol,
        quality=quality,
        news_rate=0.25 + 0.5 * (1.0 - rank_frac),
        gap_frac=r_params.uniform(0.15, 0.35, N),
    )


def _momentum_z(e: np.ndarray, idio_vol: np.ndarray) -> np.ndarray:
    """(T, N) each stock's idiosyncratic return over sessions t-252 .. t-22 (12-1 momentum, known
    at the close before session t), in standard deviations; 0 before a full window."""
    start, skip = _MOMENTUM_WINDOW
    cum = np.vstack([np.zeros((1, e.shape[1])), np.cumsum(e, axis=0)])  # cum[t] = e[:t].sum()
    z = np.zeros_like(e)
    z[start:] = (cum[start - skip : len(e) - skip] - cum[: len(e) - start]) / (
        idio_vol * math.sqrt(start - skip)
    )
    return z


def on_tick(price: np.ndarray, tick: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Round to whole ticks; dividing by the (integer) ticks per unit gives exact decimals."""
    per_unit = np.rint(1.0 / tick)
    out = np.multiply(price, per_unit, out=out)
    np.rint(out, out=out)
    out /= per_unit
    return out


def _ohlc(
    rng: np.random.Generator,
    log_prev: np.ndarray,
    r: np.ndarray,
    sigma: np.ndarray,
    gap_share: np.ndarray,
    tick: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Open/high/low/close from log returns: a gap to the open, the rest intraday, wicks.

    Works in place on a few (T, C) buffers: the panel is large and fresh allocations are slow.
    """
    f32 = np.float32
    shape = r.shape
    c = np.add(log_prev, r)
    o = rng.standard_normal(shape, dtype=f32) * sigma
    o *= 0.15
    o += gap_share
    o += log_prev
    h = rng.standard_exponential(shape, dtype=f32) * sigma
    h *= 0.45
    h += np.maximum(o, c)
    lo = rng.standard_exponential(shape, dtype=f32) * sigma
    lo *= -0.45
    lo += np.minimum(o, c)
    for x in (o, h, lo, c):
        np.exp(x, out=x)
        on_tick(x, tick, out=x)
        np.maximum(x, tick, out=x)
    np.maximum(h, np.maximum(o, c), out=h)
    np.minimum(lo, np.minimum(o, c), out=lo)
    return o, h, lo, c


@dataclass(frozen=True)
class _Returns:
    """The stock part of the panel for one set of stocks, (T, N) each."""

    r: np.ndarray  # daily log return
    sigma: np.ndarray  # conditional volatility of the next session's return
    gap: np.ndarray  # the overnight part of r
    news: News  # headlines and jumps
    chatter: Chatter


def _stock_returns(
    streams: tuple[np.random.Generator, ...],
    st: Stocks,
    sectors: list[str],
    edge: Edge,
    factors: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    chatter_of: Callable[[np.ndarray, np.ndarray, np.ndarray], Chatter],
) -> _Returns:
    """Returns, news, jumps and chatter of a set of stocks on the market and sector
    ``factors`` (m, sig_m, s, sig_s), from the idio, news and ohlc ``streams`` (in this order;
    the ohlc stream draws the jumps' overnight share first)."""
    _, _, r_idio, r_ohlc, r_news, _ = streams
    m, sig_m, s_fac, sig_s = factors
    T = m.shape[0]
    sector_of = np.array([SECTORS.index(s) for s in sectors])
    beta, gamma, idio_vol, news_rate = st.beta, st.gamma, st.idio_vol, st.news_rate
    mu = 0.0003 + edge.quality_drift * st.quality
    e, sig_e = idiosyncratic(r_idio, idio_vol, T)
    news = draw_news(r_news, news_rate, T)
    tone, hit, jump = news.tone, news.hit, news.jump
    drift = edge.momentum * _momentum_z(e, idio_vol)
    for lag in range(1, _NEWS_LAGS + 1):
        drift[lag:] += edge.news_tone_drift * _NEWS_DECAY ** (lag - 1) * tone[:-lag]
    chatter = chatter_of(news.count, news.is_jump, e / idio_vol)
    drift += edge.social_attention_drift * price_pressure(chatter.attention)

    r = mu + drift + beta * m + gamma * s_fac[:, sector_of] + e + jump
    sigma = np.sqrt((beta * sig_m) ** 2 + (gamma * sig_s[:, sector_of]) ** 2 + sig_e**2)
    gap = st.gap_frac * (r - jump)
    gap.flat[hit] += jump.flat[hit] * r_ohlc.uniform(0.7, 1.0, hit.size)
    return _Returns(r, sigma, gap, news, chatter)


def _volume(
    r_vol: np.random.Generator,
    R: np.ndarray,
    SIG: np.ndarray,
    adv: np.ndarray,
    hit: np.ndarray,
    N: int,
) -> np.ndarray:
    """(T, C) shares: around ADV, up with |r| / sigma, much higher on the jump days ``hit``
    (flat indices among the first ``N`` columns, the stocks)."""
    T, C = R.shape
    surprise = np.abs(R - R.mean(axis=0)) / np.maximum(SIG, 1e-6)
    z_vol = r_vol.standard_normal((T, C), dtype=np.float32)
    vol = adv * np.exp(0.3 * z_vol - 0.045) * (0.65 + 0.35 * surprise / 0.8)
    hit_t, hit_i = np.unravel_index(hit, (T, N))
    vol[hit_t, hit_i] *= r_vol.uniform(2.5, 5.0, hit.size)
    vol = np.round(vol, -2)
    vol[:, N:] = np.where(adv[N:] > 0, np.maximum(vol[:, N:], 100.0), 0.0)
    vol[:, :N] = np.maximum(vol[:, :N], 100.0)
    return vol


def panel(seed: int, edge: Edge) -> Panel:
    """Draw the whole market for a seed and edge, vectorised (~0.5 s once per process for the
    listed stocks; each block of generated stocks :func:`include_generated` asked for adds its
    columns)."""
    return _panel(seed, edge, _generated_blocks)


def _chatter_key(b: int | None) -> dict[str, Any]:
    """The chatter stream's key beside the seed and the first rank of block ``b`` of generated
    stocks (None: the listed stocks), as :func:`~ibkr_sim.market.social.draw_chatter` takes
    them."""
    if b is None:
        return {}
    return {"block": (1 + b,), "first_rank": LISTED_STOCKS + 1 + b * GENERATED_BLOCK}


def chatter_alone(seed: int, b: int | None, sessions: int) -> tuple[np.ndarray, np.ndarray]:
    """The posts and mentions of the first ``sessions`` sessions of block ``b`` of generated
    stocks (None: the listed stocks), the panel's numbers, drawn without prices: only the
    block's idiosyncratic and news streams (the chatter's inputs, none of which depends on the
    edge) are replayed (:func:`~ibkr_sim.market.social.draw_counts`)."""
    streams = _streams(seed) if b is None else _streams(seed, 1 + b)
    st = stocks(seed) if b is None else generated_stocks(seed, b)
    days = schedule()[0]
    shock_z, _ = idiosyncratic(streams[2], st.idio_vol, len(days))
    shock_z /= st.idio_vol
    news = draw_news(streams[4], st.news_rate, len(days))
    return draw_counts(seed, days, news.count, news.is_jump, shock_z, sessions, **_chatter_key(b))


#: the chatter of each panel this process holds, by seed and panel columns (weakly: it goes
#: with its panel), so that :func:`chatter_counts` slices it instead of drawing it again
_panel_chatter: weakref.WeakValueDictionary[tuple[int, int], Chatter] = (
    weakref.WeakValueDictionary()
)


def chatter_counts(seed: int, cols: np.ndarray, rows: slice) -> tuple[np.ndarray, np.ndarray]:
    """Posts and mentions (sessions ``rows``, stocks) int32 of the stocks in panel columns
    ``cols`` (stocks' columns only, :func:`stock_column`): a slice of the chatter of a panel of
    the seed this process holds (of any edge: the chatter does not depend on it), else only the
    blocks holding ``cols`` drawn alone up to the last of ``rows`` (:func:`chatter_alone`),
    without prices: what the pipeline's simulated social source draws behind a simulated
    gateway, whose own process holds the prices."""
    for (held_seed, width), chatter in list(_panel_chatter.items()):
        if held_seed == seed and (not len(cols) or cols.max() < width):
            return chatter.posts[rows][:, cols], chatter.mentions[rows][:, cols]
    generated = cols - LISTED_STOCKS - N_OTHERS
    block = np.where(cols < LISTED_STOCKS, -1, generated // GENERATED_BLOCK)
    picked = np.arange(len(schedule()[0]))[rows]
    posts = np.zeros((len(picked), len(cols)), dtype=np.int32)
    mentions = np.zeros((len(picked), len(cols)), dtype=np.int32)
    for b in np.unique(block).tolist():
        at = np.flatnonzero(block == b)
        drawn = chatter_alone(seed, None if b < 0 else b, int(picked.max(initial=-1)) + 1)
        within = cols[at] if b < 0 else generated[at] - b * GENERATED_BLOCK
        posts[:, at] = drawn[0][picked][:, within]
        mentions[:, at] = drawn[1][picked][:, within]
    return posts, mentions


@functools.lru_cache(maxsize=4)
def _panel(seed: int, edge: Edge, blocks: int) -> Panel:
    listed = _listed_panel(seed, edge)
    if not blocks:
        return listed
    T = len(schedule()[0])
    sizes = block_sizes(blocks)
    C = listed.close.shape[1] + sum(sizes)
    wide: dict[str, np.ndarray] = {}
    for name in ("open", "high", "low", "close", "volume", "sigma", "news_count", "news_tone"):
        wide[name] = np.zeros((T, C), dtype=getattr(listed, name).dtype)
    wide["jump"] = np.zeros((T, C), dtype=bool)
    for name in ("posts", "mentions", "attention"):  # zeros in the macro instruments' columns
        wide[name] = np.zeros((T, C), dtype=getattr(listed.chatter, name).dtype)
    per_col = {name: [getattr(listed, name)] for name in ("start_price", "tick", "adv")}
    fill = listed.close.shape[1]
    for name in wide:
        src = getattr(
            listed.chatter if name in ("posts", "mentions", "attention") else listed, name
        )
        wide[name][:, : src.shape[1]] = src
    factors = _factors(seed)[1]
    insts_all, start_all = generated_instruments(seed)
    for b, size in enumerate(sizes):
        streams = _streams(seed, 1 + b)
        insts, start = insts_all[block_slice(b)], start_all[block_slice(b)]
        ret = _stock_returns(
            streams,
            generated_stocks(seed, b),
            [i.sector for i in insts],
            edge,
            factors,
            functools.partial(draw_chatter, seed, schedule()[0], **_chatter_key(b)),
        )
        tick = np.array([i.min_tick for i in insts])
        adv = np.array([i.adv for i in insts])
        log_close = np.log(start) + np.cumsum(ret.r, axis=0)
        log_prev = np.vstack([np.log(start)[None, :], log_close[:-1]])
        cols = slice(fill, fill + size)
        o, h, lo, c = _ohlc(streams[3], log_prev, ret.r, ret.sigma, ret.gap, tick)
        block = {
            "open": o,
            "high": h,
            "low": lo,
            "close": c,
            "volume": _volume(streams[5], ret.r, ret.sigma, adv, ret.news.hit, size),
            "sigma": ret.sigma,
            "news_count": ret.news.count,
            "news_tone": ret.news.tone,
            "jump": ret.news.is_jump,
            "posts": ret.chatter.posts,
            "mentions": ret.chatter.mentions,
            "attention": ret.chatter.attention,
        }
        for name, values in block.items():
            wide[name][:, cols] = values
        for name, values in (("start_price", start), ("tick", tick), ("adv", adv)):
            per_col[name].append(values)
        fill += size
    for name in ("open", "high", "low", "close", "volume", "sigma"):
        wide[name].flags.writeable = False
    chatter = Chatter(
        posts=wide.pop("posts"), mentions=wide.pop("mentions"), attention=wide.pop("attention")
    )
    _panel_chatter[seed, chatter.posts.shape[1]] = chatter
    return Panel(
        **wide,
        **{name: np.concatenate(parts) for name, parts in per_col.items()},
        chatter=chatter,
    )


def _factors(
    seed: int,
) -> tuple[np.random.Generator, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """The factor stream after its first draws, and those: the market factor, its volatility,
    the sector factors and theirs, (T, 1), (T, 1), (T, 11), (T, 11)."""
    r_factor = _streams(seed)[1]
    T = len(schedule()[0])
    z_m = unit_t(r_factor, 5.0, (T, 1))
    m, sig_m = garch(z_m, np.array([0.0105]), alpha=0.04, beta=0.89, gamma=0.10)
    s_fac, sig_s = garch(
        unit_t(r_factor, 5.0, (T, len(SECTORS))), np.full(len(SECTORS), 0.006), 0.06, 0.92
    )
    return r_factor, (m, sig_m, s_fac, sig_s)


@functools.lru_cache(maxsize=4)
def _listed_panel(seed: int, edge: Edge) -> Panel:
    """The listed stocks and the macro instruments (columns in that order)."""
    uni = Universe(seed, LISTED_STOCKS)
    days, _, _ = schedule()
    T, N = len(days), LISTED_STOCKS
    others = uni.others
    C = N + len(others)
    col = {(i.symbol, i.sec_type, i.currency): N + j for j, i in enumerate(others)}
    streams = _streams(seed)
    _, _, _, r_ohlc, _, r_vol = streams
    r_factor, (m, sig_m, s_fac, sig_s) = _factors(seed)  # the macro draws follow the factors'
    ret = _stock_returns(
        streams,
        stocks(seed),
        [i.sector for i in uni.stocks],
        edge,
        (m, sig_m, s_fac, sig_s),
        functools.partial(draw_chatter, seed, days, **_chatter_key(None)),
    )
    chatter, hit = ret.chatter, ret.news.hit

    # macro instruments
    R = np.zeros((T, C))
    SIG = np.zeros((T, C))
    GAP = np.zeros((T, C))
    R[:, :N], SIG[:, :N], GAP[:, :N] = ret.r, ret.sigma, ret.gap
    start = np.zeros(C)
    start[:N] = uni.start_prices
    tick = np.array([i.min_tick for i in uni.stocks + others])
    adv = np.array([i.adv for i in uni.stocks + others])
    it = SECTORS.index("Information Technology")
    spy, qqq = col[("SPY", "STK", "USD")], col[("QQQ", "STK", "USD")]
    R[:, spy] = 0.00035 + m[:, 0]
    SIG[:, spy] = sig_m[:, 0]
    R[:, qqq] = 0.00045 + 1.15 * m[:, 0] + 0.8 * s_fac[:, it]
    SIG[:, qqq] = np.hypot(1.15 * sig_m[:, 0], 0.8 * sig_s[:, it])
    start[spy], start[qqq] = 250.18, 150.0
    # VIX: tomorrow's market volatility, annualised, with its own noise around it
    vix_col = col[("VIX", "IND", "USD")]
    vix_noise = np.zeros(T)
    z_vix = r_factor.standard_normal(T)
    for t in range(1, T):
        vix_noise[t] = 0.9 * vix_noise[t - 1] + 0.03 * z_vix[t]
    vix = np.clip(100.0 * math.sqrt(252.0) * sig_m[:, 0] * 1.1 * np.exp(vix_noise), 9.0, 85.0)
    start[vix_col] = vix[0]
    R[:, vix_col] = np.diff(np.log(vix), prepend=np.log(vix[0]))
    SIG[:, vix_col] = 0.06
    for key, (x0, level, kappa, vol) in _MACRO_OU.items():
        c = col[(key[0], "IND" if key[0] == "TNX" else "FUT" if key[0] == "CL" else "CASH", key[1])]
        z = r_factor.standard_normal(T)
        x = np.empty(T)
        prev = math.log(x0)
        for t in range(T):
            prev = prev + kappa * (math.log(level) - prev) + vol * z[t]
            x[t] = prev
        R[:, c] = np.diff(x, prepend=math.log(x0))
        SIG[:, c] = vol
        start[c] = x0
    GAP[:, N:] = 0.2 * R[:, N:]

    log_close = np.log(start) + np.cumsum(R, axis=0)
    log_prev = np.vstack([np.log(start)[None, :], log_close[:-1]])
    o, h, lo, c = _ohlc(r_ohlc, log_prev, R, SIG, GAP, tick)

    vol = _volume(r_vol, R, SIG, adv, hit, N)

    news_count = np.zeros((T, C), dtype=np.int8)
    news_tone = np.zeros((T, C), dtype=np.float32)
    jumps = np.zeros((T, C), dtype=bool)
    news_count[:, :N], news_tone[:, :N] = ret.news.count, ret.news.tone
    jumps[:, :N] = ret.news.is_jump
    for a in (o, h, lo, c, vol, SIG):
        a.flags.writeable = False
    _panel_chatter[seed, chatter.posts.shape[1]] = chatter
    return Panel(
        open=o,
        high=h,
        low=lo,
        close=c,
        volume=vol,
        sigma=SIG,
        news_count=news_count,
        news_tone=news_tone,
        jump=jumps,
        start_price=start,
        tick=tick,
        adv=adv,
        chatter=chatter,
    )
