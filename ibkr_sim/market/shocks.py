"""The edge-free draws of a set of stocks that both their prices (:mod:`ibkr_sim.market.paths`)
and their social chatter (:mod:`ibkr_sim.market.social`) are made from: idiosyncratic shocks,
headlines and jumps. They never depend on the edge, so a process that only serves chatter (the
pipeline's simulated social source behind a simulated gateway) draws them without the prices.

- **Idiosyncratic shocks** ``e``: GJR-GARCH(1,1) (alpha 0.06, beta 0.91) with Student-t(4)
  innovations scaled to unit variance around each stock's target daily volatility (Bollerslev
  1986; Glosten, Jagannathan & Runkle 1993).
- **Headlines**: 0-3 a session, Poisson with the stock's rate, three or more counted as three; each
  session with news has a tone ``N(0, 0.55)`` clipped to [-1, 1].
- **Jumps**: about 0.5 % of stock-days, of either sign with equal odds, 5-12 % in size, each with
  at least one headline whose tone (0.6-0.95) carries the jump's sign.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def garch(
    z: np.ndarray, target: np.ndarray, alpha: float, beta: float, gamma: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """GJR-GARCH(1,1) paths for unit-variance shocks ``z`` (T, K); returns (eps, next sigma).
    In place on (K,) rows: a Python step per session, so each numpy call counts."""
    T, K = z.shape
    omega = target**2 * (1.0 - alpha - beta - gamma / 2.0)
    eps = np.empty((T, K))
    sig_next = np.empty((T, K))
    s2 = target**2
    sig = np.sqrt(s2)
    impact = np.empty(K)  # omega + (alpha + gamma [e < 0]) e^2
    for t in range(T):
        e = np.multiply(sig, z[t], out=eps[t])
        np.multiply(alpha + gamma * (e < 0.0) if gamma else alpha, e, out=impact)
        impact *= e
        impact += omega
        s2 *= beta
        s2 += impact
        sig = np.sqrt(s2, out=sig_next[t])
    return eps, sig_next


def unit_t(rng: np.random.Generator, df: float, shape: tuple[int, ...]) -> np.ndarray:
    """Student-t(``df``) draws scaled to unit variance."""
    z = rng.standard_t(df, shape)
    z /= math.sqrt(df / (df - 2.0))
    return z


def idiosyncratic(
    r_idio: np.random.Generator, idio_vol: np.ndarray, sessions: int
) -> tuple[np.ndarray, np.ndarray]:
    """(sessions, stocks) idiosyncratic daily log returns of stocks of target daily volatility
    ``idio_vol`` and their conditional volatility for the next session, from the idio stream."""
    return garch(unit_t(r_idio, 4.0, (sessions, len(idio_vol))), idio_vol, 0.06, 0.91)


@dataclass(frozen=True)
class News:
    """Headlines and jumps of a set of stocks, (sessions, stocks) each."""

    count: np.ndarray  # int8 headlines on the session (at least one on a jump session)
    tone: np.ndarray  # float32 the session's news tone in [-1, 1] (0 without news)
    is_jump: np.ndarray  # bool jump sessions
    hit: np.ndarray  # flat indices of the jump sessions
    jump: np.ndarray  # float64 the jump's log return (0 elsewhere)


def draw_news(r_news: np.random.Generator, news_rate: np.ndarray, sessions: int) -> News:
    """Headlines and jumps of stocks with ``news_rate`` headlines a session, from the news
    stream (module docstring)."""
    f32 = np.float32
    T, N = sessions, len(news_rate)
    u = r_news.random((T, N), dtype=f32)
    lam = news_rate[None, :]
    p0 = np.exp(-lam)
    p1 = p0 * lam
    p2 = p1 * lam / 2.0
    count = (u > p0).astype(np.int8) + (u > p0 + p1) + (u > p0 + p1 + p2)
    tone = r_news.standard_normal((T, N), dtype=f32)
    tone *= 0.55
    np.clip(tone, -1, 1, out=tone)
    np.copyto(tone, 0, where=count == 0)
    is_jump = r_news.random((T, N), dtype=f32) < 0.005
    hit = np.flatnonzero(is_jump)
    sign = np.where(r_news.random(hit.size) < 0.5, -1.0, 1.0)
    jump = np.zeros((T, N))
    jump.flat[hit] = sign * r_news.uniform(0.05, 0.12, hit.size)
    tone.flat[hit] = sign * r_news.uniform(0.6, 0.95, hit.size)
    count.flat[hit] = np.maximum(count.flat[hit], 1)
    return News(count=count, tone=tone, is_jump=is_jump, hit=hit, jump=jump)
