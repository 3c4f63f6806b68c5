"""Social chatter of the simulated market: per stock and session, Reddit-like post counts and
X/StockTwits-like mention counts, with spikes when the stock is in the news or moves.

**What a session's counts cover.** Session ``t``'s counts are the posts and messages written
after the previous session's close (16:00 New York) up to ``t``'s close, so a Monday's window
holds the weekend; they are stamped at ``t``'s close and known from then on (the next
morning's run reads them), never before the price could react to what they talk about.

**Attention** (log intensity, per stock ``i`` and session ``t``)::

    a[t, i] = x[t, i] + b[t, i]
    x[t, i] = 0.95 x[t-1, i] + 0.15 eta[t, i]                          (slow attention regimes)
    b[t, i] = 0.6 b[t-1, i] + 0.35 news[t, i] + 0.35 min(max(|z[t, i]| - 1, 0), 5) + 1.2 jump[t, i]

``news`` is the session's headline count, ``z`` the stock's idiosyncratic return in units of
its volatility and ``jump`` its big-move sessions (all from :mod:`ibkr_sim.market.paths`):
attention follows news and large moves. Barber & Odean (2008) show individual investors buy
stocks that are in the news, show extreme one-day returns or abnormal volume; Da, Engelberg &
Gao (2011) that search volume, a direct measure of retail attention, jumps with news and
earnings and stays abnormal for a few weeks (here a burst decays by 0.6 a session, the regime by
0.95). The coefficients are modelling choices; on seed 7 a jump session brings 6.5 times the
posts of a session without news and a news session 2.4 times.

**Counts.** ``posts ~ Poisson(base_posts_i * dow[t] * exp(a) * G)`` and ``mentions`` likewise
with ``base_mentions_i`` and their own Gamma(5, 1/5) overdispersion ``G`` (counts of social
media activity are overdispersed). The base rates fall with market-cap rank (rank ``r`` of the
universe: ``12 r^-0.8`` posts and ``800 r^-0.7`` messages a day before attention, times a
lognormal "popularity" of standard deviation 0.8 that makes some names meme stocks): on
r/wallstreetbets the mega caps are named in tens of posts a day and most small caps in none,
while StockTwits streams of large caps carry a thousand or more messages a day (modelling
choices in the range of what the sites show; seed 7: about 28 posts and 1,900 messages a day
for rank 1, 0.2 and 21 for ranks above 600). ``dow``: each weekend or holiday day in the
window adds 15 % of a weekday's chatter, and Fridays are 10 % quieter (a modelling choice:
social media activity about stocks is lower when markets are closed).

**Abnormal attention** ``A[t, i]``: ``a`` less its exponential moving average over the sessions
before (half-life 20 sessions), scaled to unit standard deviation over the panel — what a spike
measure (today's chatter against the stock's own trailing level) estimates. Its only link to
returns is :attr:`Edge.social_attention_drift <ibkr_sim.market.edge.Edge.social_attention_drift>`
through :func:`price_pressure`: retail attention pushes the price up over the next days and the
push reverses over the following weeks (Da, Engelberg & Gao 2011: higher search volume predicts
higher prices over the next two weeks and a reversal within the year; Barber & Odean 2008:
attention-driven buying by individuals). With :meth:`Edge.none` the counts carry no information
about future returns.

Everything is drawn from its own ``numpy.random.SeedSequence`` stream per seed, from inputs that
do not depend on the edge (headline counts, jumps, idiosyncratic shocks), so the counts are the
same in a seed's default and edge-free worlds, and a process that holds no prices (the pipeline
behind a simulated gateway) draws them alone (:func:`ibkr_sim.market.paths.chatter_alone`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Weights of :func:`price_pressure` on the attention of 1..5 sessions before (the push, decaying)
_PUSH = np.array([1.0, 0.8, 0.6, 0.4, 0.2])
#: ... and on 6..25 sessions before: the reversal, together undoing the push
_REVERSAL_LAGS = 20
_EMA_HALF_LIFE = 20.0  # sessions: the trailing level abnormal attention is measured against
_STREAM = 20_110_301  # this module's SeedSequence key beside the seed (no other stream uses it)


@dataclass(frozen=True)
class Chatter:
    """One seed's social chatter, (sessions, stocks) each, stocks in universe order."""

    posts: np.ndarray  # int32: Reddit-like posts naming the stock in the session's window
    mentions: np.ndarray  # int32: X/StockTwits-like messages naming it in the window
    attention: np.ndarray  # float32: abnormal attention A, unit standard deviation


def _dow(days: np.ndarray) -> np.ndarray:
    """(sessions,) log factor of each session's window: +15 % of a weekday per closed day in it
    (a Monday holds the weekend), -10 % on Fridays."""
    day = days.astype("datetime64[D]").astype(np.int64)  # days since 1970-01-01, a Thursday
    gap = np.diff(day, prepend=day[0] - 1)
    weekday = (day + 3) % 7  # 0 = Monday
    return np.log1p(0.15 * (gap - 1)) + np.where(weekday == 4, np.log(0.9), 0.0)


def draw_chatter(
    seed: int,
    days: np.ndarray,
    news: np.ndarray,
    jump: np.ndarray,
    shock_z: np.ndarray,
    block: tuple[int, ...] = (),
    first_rank: int = 1,
) -> Chatter:
    """The chatter of a seed: ``days`` (sessions,) datetime64[D]; ``news`` (sessions, stocks)
    headline counts, ``jump`` big-move sessions and ``shock_z`` idiosyncratic returns in
    standard deviations, as :func:`ibkr_sim.market.paths.panel` draws them (none depends on
    the edge). Deterministic per seed; a block of generated stocks (ranks from ``first_rank``)
    draws from its own stream, keyed by ``block`` beside the seed."""
    rng, base, start, a = _attention(seed, news, jump, shock_z, block, first_rank)
    abnormal = _abnormal(start, a)
    posts, mentions = _counts(rng, base, a, days, len(days))
    return Chatter(posts=posts, mentions=mentions, attention=abnormal)


def draw_counts(
    seed: int,
    days: np.ndarray,
    news: np.ndarray,
    jump: np.ndarray,
    shock_z: np.ndarray,
    sessions: int,
    block: tuple[int, ...] = (),
    first_rank: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`draw_chatter`'s posts and mentions (int32) of the first ``sessions`` sessions,
    the same numbers, drawn without the attention and the later sessions' mentions (every
    other draw is made: the chatter has one stream, and each draw moves it for the next): what
    a process that serves only the counts draws."""
    rng, base, _, a = _attention(seed, news, jump, shock_z, block, first_rank)
    posts, mentions = _counts(rng, base, a, days, sessions)
    return posts[:sessions], mentions


def _attention(
    seed: int,
    news: np.ndarray,
    jump: np.ndarray,
    shock_z: np.ndarray,
    block: tuple[int, ...],
    first_rank: int,
) -> tuple[np.random.Generator, np.ndarray, np.ndarray, np.ndarray]:
    """The chatter's stream after the attention's draws, the base rates (posts and mentions a
    day, (2, stocks)), the regime's start ``x`` (stocks,) and the log intensity ``a``
    (sessions, stocks) float32 (module docstring)."""
    T, N = news.shape
    rng = np.random.default_rng(np.random.SeedSequence([seed, _STREAM, *block]))
    rank = np.arange(first_rank, first_rank + N, dtype=np.float64)
    popularity = np.exp(rng.normal(0.0, 0.8, N))
    base = np.array([12.0 * rank**-0.8 * popularity, 800.0 * rank**-0.7 * popularity**0.8])
    pulse = rng.standard_normal((T, N), dtype=np.float32)
    pulse *= 0.15  # the regime's innovations, 0.15 eta
    impulse = _impulse(news, jump, shock_z)
    start = rng.normal(0.0, 0.48, N).astype(np.float32)  # the regime's stationary spread
    # a[t] = x[t] + b[t], written over the innovations (row t is read before it is written)
    x, b = start.copy(), np.zeros(N, dtype=np.float32)
    for t in range(T):
        x *= 0.95
        x += pulse[t]
        b *= 0.6
        b += impulse[t]
        np.add(x, b, out=pulse[t])
    return rng, base, start, pulse


def _counts(
    rng: np.random.Generator, base: np.ndarray, a: np.ndarray, days: np.ndarray, sessions: int
) -> tuple[np.ndarray, np.ndarray]:
    """Every session's posts and the first ``sessions`` sessions' mentions (int32), Poisson
    around ``base`` times the intensity ``exp(a + dow)`` (``a`` is overwritten) times their
    own Gamma(5, 1/5)."""
    a += _dow(days)[:, None].astype(np.float32)
    intensity = np.exp(a, out=a)
    lam = np.multiply(intensity, base[0])
    lam *= rng.gamma(5.0, 0.2, a.shape)
    posts = rng.poisson(lam).astype(np.int32)
    lam = np.multiply(intensity[:sessions], base[1], out=lam[:sessions])
    lam *= rng.gamma(5.0, 0.2, a.shape)[:sessions]  # every session's draws move the stream
    return posts, rng.poisson(lam).astype(np.int32)


def _abnormal(start: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Abnormal attention: ``a`` less its exponential moving average over the sessions before
    (from ``start``), scaled to unit standard deviation past the first tenth of the sessions."""
    keep = np.float32(0.5 ** (1.0 / _EMA_HALF_LIFE))
    fresh = (1 - keep) * a
    level = start.copy()
    abnormal = np.empty_like(a)
    for t in range(len(a)):
        np.subtract(a[t], level, out=abnormal[t])
        level *= keep
        level += fresh[t]
    abnormal /= abnormal[len(a) // 10 :].std()
    return abnormal


def _impulse(news: np.ndarray, jump: np.ndarray, shock_z: np.ndarray) -> np.ndarray:
    """(sessions, stocks) float32 what bursts attention:
    ``0.35 news + 0.35 min(max(|z| - 1, 0), 5) + 1.2 jump``."""
    moved = np.abs(shock_z)
    moved -= 1.0
    np.clip(moved, 0.0, 5.0, out=moved)
    impulse = moved.astype(np.float32)
    impulse *= 0.35
    term = news.astype(np.float32)
    term *= 0.35
    impulse += term
    term[...] = jump
    term *= 1.2
    impulse += term
    return impulse


def price_pressure(attention: np.ndarray) -> np.ndarray:
    """(sessions, stocks) the drift per unit :attr:`Edge.social_attention_drift` that abnormal
    attention causes: weight 1, 0.8, 0.6, 0.4, 0.2 on the attention of 1..5 sessions before (the
    push), then minus the push's total spread evenly over sessions 6..25 before (the reversal),
    so attention moves prices for a few weeks but not for good. Row ``t`` uses sessions before
    ``t`` only."""
    out = np.zeros(attention.shape, dtype=np.float64)
    for lag, w in enumerate(_PUSH, start=1):
        out[lag:] += w * attention[:-lag]
    back = _PUSH.sum() / _REVERSAL_LAGS
    for lag in range(len(_PUSH) + 1, len(_PUSH) + _REVERSAL_LAGS + 1):
        out[lag:] -= back * attention[:-lag]
    return out
