"""The simulated market: deterministic prices, quotes, fundamentals, news, scanners and options.

**Daily returns** follow a multi-factor model, as a risk model would decompose a real stock::

    r[t, i] = mu_i + drift[t, i] + beta_i * m[t] + gamma_i * s[t, sector(i)] + e[t, i] + J[t, i]

- ``m`` is the market factor: GJR-GARCH(1,1) volatility (shocks raise tomorrow's variance, falls
  more than rises, so volatility clusters and is negatively correlated with returns) with
  Student-t(5) shocks (fat tails). ``s`` are eleven GICS sector factors (GARCH, t(5)) and ``e`` is
  idiosyncratic (GARCH, t(4)) with a per-stock volatility that is higher for smaller caps.
  References: Bollerslev (1986); Glosten, Jagannathan & Runkle (1993); Fama & French (1993).
- ``mu_i`` is the stock's long-run drift ("quality"); the same quality drives its fundamentals:
  good companies grow revenue, expand margins, de-lever and buy back shares, so a Piotroski
  (2000) F-score computed from the statements spreads over 0..9 and is informative about
  returns. Statements appear 30-45 days after the quarter ends (point in time).
- ``J`` are rare jumps (about 0.5 % of stock-days, 5-12 %, mostly at the open) on 2.5-5x the
  average daily volume, each announced by a pre-market headline, so every day has a few top
  movers for the scanners.
- ``drift`` is post-news drift: a headline's tone (in [-1, 1]) adds a decaying drift to the
  next five sessions' returns, so tone predicts later returns the way analysts hope it does.
  A few headlines carry event phrases ("beats estimates", "guidance cut", "SEC probe",
  "FDA ban"); jumps always come with one.

Daily OHLC: part of the return happens overnight (the gap to the open), the rest intraday; highs
and lows extend beyond the open/close by a volatility-scaled amount. Volume is around ADV and
rises with ``|r|``. Macro instruments: SPY (the market factor), QQQ (market + tech), VIX (the
market's conditional volatility, annualised), TNX (10-year yield x 10, mean-reverting), crude and
FX (mean-reverting in logs).

**Intraday**: within a session the price follows a deterministic bridge that starts at the open,
touches the day's high and low and ends at the close; quotes have a spread that widens for less
liquid names, volume accumulates along a U-shaped profile. Before the open a snapshot shows the
previous close with volume 0; after the close, the day's close.

**Scanners** rank live values during the session and the last completed session before the
open (the pre-market "yesterday's movers" screen the pipeline runs at 07:00 New York).

**Options** are listed monthly (third Fridays) on a fixed strike ladder and priced with
Black-Scholes from the underlying's conditional volatility (plus a mild skew) and the 10-year
yield as the rate (Black & Scholes, 1973). Their conIds encode the contract, so any process can
rebuild an option from its conId alone.

Everything is a pure function of ``seed`` and the session: the whole panel (2019-01-02 to
2028-12-29, every listed stock plus the macro instruments) is drawn once per seed from
``numpy.random.SeedSequence`` and cached per process, so two processes see identical numbers and
a stock's history does not depend on how many stocks the universe holds.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import numpy as np
import pandas as pd

from ibkr_sim.universe import MAX_STOCKS, Instrument, Universe, stable_int
from ibkr_spec.errors import (
    HISTORICAL_DATA_ERROR,
    INVALID_REQUEST,
    NO_FUNDAMENTALS,
    NO_MARKET_DATA,
    NO_SECURITY_DEFINITION,
    IBError,
)
from ibkr_spec.historical import BarSize

NEW_YORK = ZoneInfo("America/New_York")
FIRST_SESSION = date(2019, 1, 2)
LAST_SESSION = date(2028, 12, 29)

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
_MARKET_MAKERS = ("NSDQ", "ARCA", "EDGX", "BATS", "IEX", "NYSE", "DRCTEDGE", "MEMX")
NEWS_PROVIDERS = (
    ("BRFG", "Briefing.com General Market Columns"),
    ("DJNL", "Dow Jones Newsletters"),
    ("BZ", "Benzinga Pro"),
)
_NEWS_LAGS = 5  # sessions of post-news drift
_NEWS_DRIFT = 0.004  # daily drift per unit tone on the first session after the news
_NEWS_DECAY = 0.8


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


@dataclass(frozen=True)
class Headline:
    """One news headline, IB-style (provider code, article id)."""

    time: datetime
    provider_code: str
    article_id: str
    headline: str
    conid: int
    symbol: str
    tone: float  # -1 (very negative) .. 1 (very positive)


@dataclass(frozen=True)
class ScanResult:
    """One scanner row: rank 0 is the best match."""

    rank: int
    conid: int
    last: float
    change_pct: float
    volume: float
    avg_volume: float


# -- calendar ----------------------------------------------------------------------------------


@functools.cache
def _calendar() -> xcals.ExchangeCalendar:
    return xcals.get_calendar("XNYS", start="2018-12-01", end="2029-01-31")


@functools.cache
def _schedule() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Panel sessions (datetime64[D]) with their open and close instants (int64 ns, UTC)."""
    sch = _calendar().schedule
    sch = sch.loc[
        (sch.index >= pd.Timestamp(FIRST_SESSION)) & (sch.index <= pd.Timestamp(LAST_SESSION))
    ]
    days = sch.index.values.astype("datetime64[D]")
    opens = sch["open"].dt.tz_convert("UTC").dt.tz_localize(None).values.astype("datetime64[ns]")
    closes = sch["close"].dt.tz_convert("UTC").dt.tz_localize(None).values.astype("datetime64[ns]")
    return days, opens.astype(np.int64), closes.astype(np.int64)


@functools.cache
def _close_index() -> pd.DatetimeIndex:
    """The UTC close of every panel session, the index of daily bars (sliced per request)."""
    return pd.DatetimeIndex(pd.to_datetime(_schedule()[2], utc=True), name="time")


def _ns(at: datetime) -> int:
    if at.tzinfo is None:
        raise ValueError(f"timestamp {at!r} must be timezone-aware (UTC)")
    return int(pd.Timestamp(at).tz_convert("UTC").value)


def _utc(ns: int | np.integer) -> datetime:
    return pd.Timestamp(int(ns), tz="UTC").to_pydatetime()


# -- the daily panel ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Panel:
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
    quality: np.ndarray  # (MAX_STOCKS,) standardised long-run drift
    adv: np.ndarray  # (C,)


def _garch(
    z: np.ndarray, target: np.ndarray, alpha: float, beta: float, gamma: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """GJR-GARCH(1,1) paths for unit-variance shocks ``z`` (T, K); returns (eps, next sigma)."""
    T, K = z.shape
    omega = target**2 * (1.0 - alpha - beta - gamma / 2.0)
    eps = np.empty((T, K))
    sig_next = np.empty((T, K))
    s2 = target**2
    for t in range(T):
        e = np.sqrt(s2) * z[t]
        eps[t] = e
        s2 = omega + (alpha + gamma * (e < 0.0)) * e * e + beta * s2
        sig_next[t] = np.sqrt(s2)
    return eps, sig_next


def _unit_t(rng: np.random.Generator, df: float, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_t(df, shape) / math.sqrt(df / (df - 2.0))


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


@functools.lru_cache(maxsize=4)
def _panel(seed: int) -> _Panel:
    """Draw the whole market for a seed, vectorised (~0.5 s once per process and seed)."""
    uni = Universe(seed, MAX_STOCKS)
    days, _, _ = _schedule()
    T, N = len(days), MAX_STOCKS
    others = uni.others
    C = N + len(others)
    col = {(i.symbol, i.sec_type, i.currency): N + j for j, i in enumerate(others)}
    ss = np.random.SeedSequence([seed, 20190102])
    r_params, r_factor, r_idio, r_ohlc, r_news, r_vol = (
        np.random.default_rng(s) for s in ss.spawn(6)
    )

    # per-stock parameters
    rank_frac = np.arange(N) / (N - 1)
    sector_of = np.array([SECTORS.index(i.sector) for i in uni.stocks])
    beta = np.array([_SECTOR_BETA[i.sector] for i in uni.stocks]) * r_params.uniform(0.7, 1.3, N)
    gamma = r_params.uniform(0.5, 1.2, N)
    idio_vol = 0.008 + 0.009 * rank_frac + r_params.uniform(0.0, 0.005, N)
    quality = r_params.standard_normal(N)
    mu = 0.0003 + 0.0004 * quality
    news_rate = 0.25 + 0.5 * (1.0 - rank_frac)  # headlines per session
    gap_frac = r_params.uniform(0.15, 0.35, N)

    # factors
    z_m = _unit_t(r_factor, 5.0, (T, 1))
    m, sig_m = _garch(z_m, np.array([0.0105]), alpha=0.04, beta=0.89, gamma=0.10)
    s_fac, sig_s = _garch(
        _unit_t(r_factor, 5.0, (T, len(SECTORS))), np.full(len(SECTORS), 0.006), 0.06, 0.92
    )
    e, sig_e = _garch(_unit_t(r_idio, 4.0, (T, N)), idio_vol, 0.06, 0.91)

    # news and jumps
    f32 = np.float32
    u = r_news.random((T, N), dtype=f32)
    lam = news_rate[None, :]
    p0 = np.exp(-lam)
    p1 = p0 * lam
    p2 = p1 * lam / 2.0
    count = (u > p0).astype(np.int8) + (u > p0 + p1) + (u > p0 + p1 + p2)
    tone = np.where(count > 0, np.clip(0.55 * r_news.standard_normal((T, N), dtype=f32), -1, 1), 0)
    is_jump = r_news.random((T, N), dtype=f32) < 0.005
    hit = np.flatnonzero(is_jump)
    sign = np.where(r_news.random(hit.size) < 0.5, -1.0, 1.0)
    jump = np.zeros((T, N))
    jump.flat[hit] = sign * r_news.uniform(0.05, 0.12, hit.size)
    tone.flat[hit] = sign * r_news.uniform(0.6, 0.95, hit.size)
    count.flat[hit] = np.maximum(count.flat[hit], 1)
    drift = np.zeros((T, N))
    for lag in range(1, _NEWS_LAGS + 1):
        drift[lag:] += _NEWS_DRIFT * _NEWS_DECAY ** (lag - 1) * tone[:-lag]

    r = mu + drift + beta * m + gamma * s_fac[:, sector_of] + e + jump
    sigma = np.sqrt((beta * sig_m) ** 2 + (gamma * sig_s[:, sector_of]) ** 2 + sig_e**2)
    gap = gap_frac * (r - jump)
    gap.flat[hit] += jump.flat[hit] * r_ohlc.uniform(0.7, 1.0, hit.size)

    # macro instruments
    R = np.zeros((T, C))
    SIG = np.zeros((T, C))
    GAP = np.zeros((T, C))
    R[:, :N], SIG[:, :N], GAP[:, :N] = r, sigma, gap
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

    # volume: around ADV, up with |r| / sigma, much higher on jump days
    surprise = np.abs(R - R.mean(axis=0)) / np.maximum(SIG, 1e-6)
    z_vol = r_vol.standard_normal((T, C), dtype=f32)
    vol = adv * np.exp(0.3 * z_vol - 0.045) * (0.65 + 0.35 * surprise / 0.8)
    hit_t, hit_i = np.unravel_index(hit, (T, N))
    vol[hit_t, hit_i] *= r_vol.uniform(2.5, 5.0, hit.size)
    vol = np.round(vol, -2)
    vol[:, N:] = np.where(adv[N:] > 0, np.maximum(vol[:, N:], 100.0), 0.0)
    vol[:, :N] = np.maximum(vol[:, :N], 100.0)

    news_count = np.zeros((T, C), dtype=np.int8)
    news_tone = np.zeros((T, C), dtype=np.float32)
    jumps = np.zeros((T, C), dtype=bool)
    news_count[:, :N], news_tone[:, :N], jumps[:, :N] = count, tone, is_jump
    for a in (o, h, lo, c, vol, SIG):
        a.flags.writeable = False
    return _Panel(
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
        quality=quality,
        adv=adv,
    )


# -- intraday ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Intraday:
    """One session's minute grid for every column: price path, running extremes, volume so far."""

    path: np.ndarray  # (C, n + 1) price at each minute mark; [:, 0] open, [:, n] close
    run_high: np.ndarray
    run_low: np.ndarray
    cum_volume: np.ndarray  # (C, n + 1) shares traded up to each minute mark
    minutes: int


@functools.lru_cache(maxsize=8)
def _intraday(seed: int, j: int) -> _Intraday:
    """A deterministic bridge from open to close through the day's high and low."""
    p = _panel(seed)
    _, opens, closes = _schedule()
    n = int((closes[j] - opens[j]) // 60_000_000_000)
    C = p.close.shape[1]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 31, j]))
    o, h, lo, c = p.open[j], p.high[j], p.low[j], p.close[j]
    t_high = rng.integers(1, n, C)
    t_low = rng.integers(1, n, C)
    t_low = np.where(t_low == t_high, (t_high + n // 3) % (n - 1) + 1, t_low)
    high_first = t_high < t_low
    t1, t2 = np.minimum(t_high, t_low)[:, None], np.maximum(t_high, t_low)[:, None]
    v0, v3 = np.log(o)[:, None], np.log(c)[:, None]
    v1 = np.where(high_first, np.log(h), np.log(lo))[:, None]
    v2 = np.where(high_first, np.log(lo), np.log(h))[:, None]
    k = np.arange(n + 1)[None, :]
    base = np.where(
        k <= t1,
        v0 + (v1 - v0) * k / t1,
        np.where(
            k <= t2, v1 + (v2 - v1) * (k - t1) / (t2 - t1), v2 + (v3 - v2) * (k - t2) / (n - t2)
        ),
    )
    walk = np.zeros((C, n + 1))
    np.cumsum(rng.standard_normal((C, n)), axis=1, out=walk[:, 1:])
    bridge = walk - walk[:, -1:] * (k / n)
    taper = np.clip(
        np.minimum(np.minimum(np.abs(k - t1), np.abs(k - t2)), np.minimum(k, n - k)) / 8.0, 0, 1
    )
    amp = (0.5 * p.sigma[max(j - 1, 0)] / math.sqrt(n))[:, None]
    tick = p.tick[:, None]
    path = np.exp(base + amp * bridge * taper)
    path = np.clip(on_tick(path, tick), lo[:, None], h[:, None])
    path[:, 0], path[:, n] = o, c
    rows = np.arange(C)
    path[rows, t_high], path[rows, t_low] = h, lo
    u = (np.arange(n) + 0.5) / n
    profile = 1.0 + 2.5 * (2.0 * u - 1.0) ** 4 + 0.8 * np.exp(-u * 30.0)  # U-shape, open burst
    w = profile[None, :] * np.exp(0.3 * rng.standard_normal((C, n)))
    cum = np.zeros((C, n + 1))
    np.cumsum(w, axis=1, out=cum[:, 1:])
    cum *= (p.volume[j] / cum[:, -1])[:, None]
    return _Intraday(
        path=path,
        run_high=np.maximum.accumulate(path, axis=1),
        run_low=np.minimum.accumulate(path, axis=1),
        cum_volume=cum,
        minutes=n,
    )


# -- fundamentals --------------------------------------------------------------------------------

_BAR_COLUMNS = ("open", "high", "low", "close", "volume")
_FUNDAMENTAL_COLUMNS = [
    "period_end",
    "report_date",
    "revenue",
    "gross_profit",
    "net_income",
    "total_assets",
    "operating_cash_flow",
    "long_term_debt",
    "current_assets",
    "current_liabilities",
    "shares_outstanding",
]


@dataclass(frozen=True)
class _Statements:
    """Every stock's quarters 2015Q4..2028Q4: (MAX_STOCKS, K) arrays per line item."""

    period_end: np.ndarray  # (K,) datetime64[ns]
    report_date: np.ndarray  # (MAX_STOCKS, K) datetime64[ns], increasing along K
    items: dict[str, np.ndarray]


@functools.lru_cache(maxsize=4)
def _statements(seed: int) -> _Statements:
    """Quarterly statements whose trends follow each stock's quality (vectorised, once per seed).

    Good companies (high quality = high drift) grow revenue, widen margins, convert earnings to
    cash, de-lever, improve liquidity and buy back shares; poor ones do the opposite, so the
    Piotroski (2000) F-score spreads across 0..9.
    """
    uni = Universe(seed, MAX_STOCKS)
    q = _panel(seed).quality[:, None]
    shares0 = np.array([i.shares_outstanding for i in uni.stocks])[:, None]
    market_cap = shares0 * uni.start_prices[:, None]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 41]))
    period_end = pd.date_range("2015-12-31", "2028-12-31", freq="QE").values.astype("datetime64[D]")
    N, K = MAX_STOCKS, len(period_end)
    k = np.arange(K)[None, :] - 12.0  # quarters since 2018Q4
    noise = rng.standard_normal((8, N, K))
    level = rng.random((8, N, 1))
    growth = 0.06 + 0.07 * q + 0.04 * noise[0, :, :1]  # annual revenue growth
    revenue0 = market_cap / np.exp(math.log(3.0) + 0.5 * noise[1, :, :1]) / 4.0
    seasonal = 1.0 + 0.03 * np.sin(np.arange(K)[None, :] * math.pi / 2.0 + 6.3 * level[0])
    revenue = revenue0 * np.exp(growth / 4.0 * k + 0.03 * noise[0]) * seasonal
    trend = 0.35 * q * k  # quality-signed quarters of improvement (bounded by the clips)
    gross_margin = np.clip(0.25 + 0.45 * level[1] + 0.004 * trend + 0.01 * noise[1], 0.05, 0.95)
    net_margin = np.clip(0.09 + 0.04 * q + 0.004 * trend + 0.012 * noise[2], -0.4, 0.45)
    net_income = revenue * net_margin
    cash_flow = net_income + revenue * (0.03 + 0.02 * q + 0.02 * noise[3])
    turnover = (0.3 + 1.1 * level[2]) * np.exp(0.01 * trend + 0.015 * noise[4])
    total_assets = 4.0 * revenue / turnover
    leverage = np.clip(0.1 + 0.3 * level[3] - 0.004 * trend + 0.008 * noise[5], 0.0, 0.85)
    current_ratio = np.clip(0.9 + 1.3 * level[4] + 0.02 * trend + 0.04 * noise[6], 0.3, 5.0)
    current_liabilities = total_assets * (0.1 + 0.15 * level[5])
    shares = shares0 * np.exp(-0.004 * trend + 0.006 * noise[7])
    lag = rng.integers(30, 46, (N, K))
    report = np.busday_offset(period_end[None, :] + lag, 0, roll="forward")
    items = {
        "revenue": revenue,
        "gross_profit": revenue * gross_margin,
        "net_income": net_income,
        "total_assets": total_assets,
        "operating_cash_flow": cash_flow,
        "long_term_debt": total_assets * leverage,
        "current_assets": current_liabilities * current_ratio,
        "current_liabilities": current_liabilities,
        "shares_outstanding": shares,
    }
    return _Statements(
        period_end=period_end.astype("datetime64[ns]"),
        report_date=report.astype("datetime64[ns]"),
        items={name: np.round(v, -3) for name, v in items.items()},
    )


# -- news ------------------------------------------------------------------------------------

_BROKERS = (
    "Morgan Stanley",
    "Goldman Sachs",
    "JPMorgan",
    "BofA Securities",
    "Citi",
    "Barclays",
    "UBS",
    "Jefferies",
    "Wells Fargo",
    "Evercore ISI",
    "Bernstein",
    "Piper Sandler",
)
_POSITIVE = (
    "{name} shares rise after {broker} upgrades to Overweight",
    "{name} raises full-year outlook on strong demand",
    "{sym}: {broker} lifts price target to ${target}",
    "{name} wins multi-year contract; shares climb",
    "{name} announces ${buyback} billion share buyback",
    "Insiders add to stakes in {name}",
    "{name} margins expand as input costs ease",
)
_NEUTRAL = (
    "{name} to present at {broker} {sector} conference",
    "{name} declares quarterly dividend",
    "{name} names new chief financial officer",
    "{name} files quarterly report with the SEC",
    "{name} schedules Q{q} earnings call",
    "Options traders position in {sym} ahead of earnings",
)
_NEGATIVE = (
    "{name} downgraded to Underweight at {broker}",
    "{name} shares slip as sales growth slows",
    "{sym}: {broker} cuts price target to ${target}",
    "{name} warns of supply-chain delays",
    "Short interest in {name} climbs to a one-year high",
    "{name} CFO departs unexpectedly",
)
_STRONG_POSITIVE = (
    "{name} beats estimates and raises guidance; shares jump",
    "{name} Q{q} EPS beats estimates by ${beat}",
)
_STRONG_NEGATIVE = (
    "{name} guidance cut sends shares lower",
    "{name} discloses SEC probe into revenue recognition",
    "{name} misses estimates as demand weakens",
)
_FDA = "FDA ban on {name} drug candidate weighs on shares"


def _headline_text(rng: np.random.Generator, inst: Instrument, tone: float, strong: bool) -> str:
    if strong and tone > 0:
        pool: tuple[str, ...] = _STRONG_POSITIVE
    elif strong:
        pool = (*_STRONG_NEGATIVE, _FDA) if inst.sector == "Health Care" else _STRONG_NEGATIVE
    else:
        pool = _POSITIVE if tone > 0.25 else _NEGATIVE if tone < -0.25 else _NEUTRAL
    template = pool[int(rng.integers(len(pool)))]
    return template.format(
        name=inst.name,
        sym=inst.symbol,
        broker=_BROKERS[int(rng.integers(len(_BROKERS)))],
        sector=inst.sector or "Investor",
        target=int(rng.integers(20, 600)),
        buyback=int(rng.integers(1, 20)),
        q=int(rng.integers(1, 5)),
        beat=f"{rng.uniform(0.02, 0.4):.2f}",
    )


# -- options -------------------------------------------------------------------------------------


def _norm_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def black_scholes(
    spot: float, strike: float, years: float, rate: float, vol: float, right: str
) -> float:
    """Black-Scholes price of a European call ("C") or put ("P"); intrinsic value at expiry."""
    if years <= 0.0 or vol <= 0.0:
        return max(spot - strike, 0.0) if right == "C" else max(strike - spot, 0.0)
    sd = vol * math.sqrt(years)
    d1 = (math.log(spot / strike) + (rate + 0.5 * vol * vol) * years) / sd
    d2 = d1 - sd
    disc = strike * math.exp(-rate * years)
    if right == "C":
        return spot * _norm_cdf(d1) - disc * _norm_cdf(d2)
    return disc * _norm_cdf(-d2) - spot * _norm_cdf(-d1)


def _strike_step(spot: float) -> float:
    for limit, step in ((25.0, 1.0), (100.0, 2.5), (250.0, 5.0), (1000.0, 10.0)):
        if spot < limit:
            return step
    return 25.0


def _third_friday(year: int, month: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(4 - first.weekday()) % 7 + 14)


def monthly_expiry(year: int, month: int) -> date:
    """The month's standard expiry: its third Friday, or the session before if that's a holiday."""
    day = _third_friday(year, month)
    while not _calendar().is_session(pd.Timestamp(day)):
        day -= timedelta(days=1)
    return day


#: Every listable strike: 0.5 steps to 100, 2.5 to 500, 5 to 2000, 25 to 50000 (2579 strikes).
STRIKE_LADDER = np.round(
    np.concatenate(
        [
            np.arange(1, 201) * 0.5,
            100.0 + np.arange(1, 161) * 2.5,
            500.0 + np.arange(1, 301) * 5.0,
            2000.0 + np.arange(1, 1920) * 25.0,
        ]
    ),
    4,
)
#: Options encode (underlying column, expiry month since 2019-01, strike, right) in the conId, so
#: any process can rebuild the contract from the conId alone (a position's option after restart).
_OPT_BASE = 1_000_000_000
_OPT_MONTHS = 128
_OPT_STRIKES = 4096


def _option_conid(col: int, month_index: int, strike_code: int, right: str) -> int:
    packed = (col * _OPT_MONTHS + month_index) * _OPT_STRIKES + strike_code
    return _OPT_BASE + packed * 2 + (right == "P")


def _strike_code(strike: float) -> int | None:
    i = int(np.searchsorted(STRIKE_LADDER, strike - 1e-6))
    return i if i < len(STRIKE_LADDER) and abs(STRIKE_LADDER[i] - strike) < 1e-6 else None


# -- the market --------------------------------------------------------------------------------


class SimMarket:
    """The deterministic simulated market for one seed (see the module docstring)."""

    SCANNER_CODES: tuple[str, ...] = (
        "TOP_PERC_GAIN",
        "TOP_PERC_LOSE",
        "MOST_ACTIVE",
        "HOT_BY_VOLUME",
    )
    LOCATIONS: tuple[str, ...] = ("STK.US.MAJOR", "STK.US", "STK.NASDAQ", "STK.NYSE")

    def __init__(self, seed: int = 7, n_stocks: int = 700) -> None:
        self.seed = int(seed)
        self.universe = Universe(self.seed, n_stocks)
        n_max = MAX_STOCKS
        self._cols: dict[int, int] = {inst.conid: i for i, inst in enumerate(self.universe.stocks)}
        self._cols.update({inst.conid: n_max + j for j, inst in enumerate(self.universe.others)})
        self._stock_cols = np.arange(len(self.universe.stocks))
        self._conid_of_col = {c: conid for conid, c in self._cols.items()}
        self.universe.resolver = self._decode_option
        self._tnx_col = self._cols[self.universe.lookup("TNX", "IND").conid]

    @property
    def _p(self) -> _Panel:
        return _panel(self.seed)

    # -- calendar ---------------------------------------------------------------------------
    def sessions(self, start: date, end: date) -> list[date]:
        """NYSE sessions between ``start`` and ``end`` inclusive."""
        days = _calendar().sessions.values.astype("datetime64[D]")
        lo, hi = (
            np.searchsorted(days, np.datetime64(start, "D")),
            np.searchsorted(days, np.datetime64(end, "D"), "right"),
        )
        return [d.item() for d in days[lo:hi]]

    def last_session(self, at: datetime) -> date:
        """The latest session whose close is at or before ``at``."""
        cal = _calendar()
        closes = cal.schedule["close"].values.astype("datetime64[ns]").astype(np.int64)
        i = int(np.searchsorted(closes, _ns(at), "right")) - 1
        if i < 0:
            raise IBError(NO_MARKET_DATA, f"no session closed by {at.isoformat()}")
        return cal.sessions[i].date()

    def trading_hours(self, conid: int, day: date) -> list[tuple[datetime, datetime]]:
        """Regular trading hours in UTC (FX: IDEALPRO's 17:15 ET the day before to 17:00 ET)."""
        inst = self._instrument(conid)
        cal = _calendar()
        ts = pd.Timestamp(day)
        if not cal.is_session(ts):
            return []
        if inst.sec_type == "CASH":
            start = datetime.combine(day - timedelta(days=1), time(17, 15), NEW_YORK)
            end = datetime.combine(day, time(17, 0), NEW_YORK)
            return [(start.astimezone(UTC), end.astimezone(UTC))]
        opened, closed = cal.session_open(ts), cal.session_close(ts)
        return [(opened.to_pydatetime().astimezone(UTC), closed.to_pydatetime().astimezone(UTC))]

    # -- lookups ----------------------------------------------------------------------------
    def _instrument(self, conid: int) -> Instrument:
        return self.universe.by_conid(conid)

    def _col(self, conid: int) -> int:
        col = self._cols.get(conid)
        if col is None:
            inst = self._instrument(conid)  # IBError(200) when unknown
            raise IBError(
                HISTORICAL_DATA_ERROR, f"no price history for {inst.symbol} ({inst.sec_type})"
            )
        return col

    def _session_slice(self, start: date, end: date) -> slice:
        days = _schedule()[0]
        lo = int(np.searchsorted(days, np.datetime64(start, "D")))
        hi = int(np.searchsorted(days, np.datetime64(end, "D"), "right"))
        return slice(lo, hi)

    # -- daily history ----------------------------------------------------------------------
    def daily_bars(self, conid: int, start: date, end: date) -> pd.DataFrame:
        """Daily OHLCV for sessions in [start, end]; index ``session`` (datetime64), float64."""
        col, sl, p = self._col(conid), self._session_slice(start, end), self._p
        index = pd.DatetimeIndex(_schedule()[0][sl].astype("datetime64[ns]"), name="session")
        return pd.DataFrame(
            {
                "open": p.open[sl, col],
                "high": p.high[sl, col],
                "low": p.low[sl, col],
                "close": p.close[sl, col],
                "volume": p.volume[sl, col],
            },
            index=index,
        )

    def daily_close_panel(self, conids: list[int], start: date, end: date) -> pd.DataFrame:
        """Closes, sessions x conids, in one slice of the cached panel."""
        cols = [self._col(c) for c in conids]
        sl = self._session_slice(start, end)
        index = pd.DatetimeIndex(_schedule()[0][sl].astype("datetime64[ns]"), name="session")
        return pd.DataFrame(self._p.close[sl][:, cols], index=index, columns=list(conids))

    def intraday_bars(self, conid: int, session: date, minutes: int) -> pd.DataFrame:
        """Bars of ``minutes`` (1..390) within one session; index UTC bar start; o h l c volume."""
        col = self._col(conid)
        if not 1 <= minutes <= 390:
            raise IBError(
                INVALID_REQUEST, f"intraday bar length must be 1..390 minutes, got {minutes}"
            )
        return self._session_bars(col, self._session_index(session), 60 * minutes)

    def _session_bars(self, col: int, j: int, seconds: int) -> pd.DataFrame:
        """One session's bars of ``seconds``: exact from the minute path for whole minutes,
        interpolated along it below a minute (the sub-bars stay within their minute's range)."""
        day = _intraday(self.seed, j)
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
            tick = float(self._p.tick[col])
            prices = on_tick(np.interp(edges, grid, path), np.array(tick))
            opens, closes = prices[:-1], prices[1:]
            high, low = np.maximum(opens, closes), np.minimum(opens, closes)
            volume = np.round(np.diff(np.interp(edges, grid, cum)), 0)
        index = pd.DatetimeIndex(
            pd.to_datetime(_schedule()[1][j] + offsets * 1_000_000_000, utc=True), name="time"
        )
        return pd.DataFrame(
            {"open": opens, "high": high, "low": low, "close": closes, "volume": volume},
            index=index,
        )

    def _session_index(self, session: date) -> int:
        days = _schedule()[0]
        j = int(np.searchsorted(days, np.datetime64(session, "D")))
        if j >= len(days) or days[j] != np.datetime64(session, "D"):
            raise IBError(HISTORICAL_DATA_ERROR, f"{session} is not a simulated NYSE session")
        return j

    def history(
        self,
        conid: int,
        start: datetime,
        end: datetime,
        bar_size: BarSize,
        what_to_show: str = "TRADES",
    ) -> pd.DataFrame:
        """Bars ending in (start, end], as ``reqHistoricalData`` would return them.

        Daily/weekly/monthly bars are indexed by the UTC close of their last session; intraday
        bars by their UTC start, only completed bars; sub-minute bars are interpolated along the
        minute path. BID/ASK shift prices by half the typical spread; MIDPOINT equals TRADES.
        """
        col = self._col(conid)
        start_ns, end_ns = _ns(start), _ns(end)
        _, opens, closes = _schedule()
        if bar_size.is_daily:
            lo = int(np.searchsorted(closes, start_ns, "right"))
            hi = int(np.searchsorted(closes, end_ns, "right"))
            p = self._p
            frame = pd.DataFrame(
                {
                    "open": p.open[lo:hi, col],
                    "high": p.high[lo:hi, col],
                    "low": p.low[lo:hi, col],
                    "close": p.close[lo:hi, col],
                    "volume": p.volume[lo:hi, col],
                },
                index=_close_index()[lo:hi],
            )
            if bar_size.text != "1 day" and len(frame):
                periods = (
                    frame.index.tz_convert(NEW_YORK)
                    .tz_localize(None)
                    .to_period("W-FRI" if bar_size.text == "1 week" else "M")
                )
                grouped = frame.assign(_last=frame.index).groupby(periods.values)
                frame = grouped.agg(
                    open=("open", "first"),
                    high=("high", "max"),
                    low=("low", "min"),
                    close=("close", "last"),
                    volume=("volume", "sum"),
                    time=("_last", "last"),
                ).set_index("time")
        else:
            lo = int(np.searchsorted(closes, start_ns, "right"))
            hi = int(np.searchsorted(opens, end_ns, "left"))
            parts = [self._session_bars(col, j, bar_size.seconds) for j in range(lo, hi)]
            if not parts:
                empty = pd.DatetimeIndex([], tz="UTC", name="time")
                return pd.DataFrame({c: [] for c in _BAR_COLUMNS}, index=empty, dtype="float64")
            frame = pd.concat(parts)
            bar_end = frame.index.asi8 + bar_size.seconds * 1_000_000_000
            frame = frame.loc[
                (frame.index.asi8 >= start_ns)
                & (bar_end <= np.minimum(end_ns, closes[np.searchsorted(closes, frame.index.asi8)]))
            ]
        if what_to_show in ("BID", "ASK") and len(frame):
            half = 0.5 * self._spread(np.full(len(frame), col), frame["close"].to_numpy(), 1.0)
            sign = -1.0 if what_to_show == "BID" else 1.0
            frame = frame.assign(
                **{c: frame[c] + sign * half for c in ("open", "high", "low", "close")}
            )
        return frame

    # -- quotes -----------------------------------------------------------------------------
    def _when(self, at: datetime) -> tuple[str, int, float]:
        """("open", j, minutes into session j) | ("pre", j, 0) | ("closed", i, 0) for ``at``."""
        ns = _ns(at)
        days, opens, closes = _schedule()
        i = int(np.searchsorted(closes, ns, "right")) - 1
        j = i + 1
        if j < len(days) and opens[j] <= ns:
            return "open", j, (ns - opens[j]) / 60e9
        if j < len(days) and (i < 0 or at.astimezone(NEW_YORK).date() == days[j].item()):
            if i < 0 and ns < opens[0] - 86_400_000_000_000:
                raise IBError(
                    NO_MARKET_DATA,
                    f"the simulated market starts on {FIRST_SESSION}; no data at {at.isoformat()}",
                )
            return "pre", j, 0.0
        if j >= len(days) and ns > closes[-1] + 5 * 86_400_000_000_000:
            raise IBError(
                NO_MARKET_DATA,
                f"the simulated market ends on {LAST_SESSION}; no data at {at.isoformat()}",
            )
        return "closed", i, 0.0

    def _prev_close(self, j: int, cols: np.ndarray) -> np.ndarray:
        p = self._p
        return p.close[j - 1, cols] if j > 0 else p.start_price[cols]

    def _spread(self, cols: np.ndarray, price: np.ndarray, widen: float) -> np.ndarray:
        """Quoted spread: ~1 bp for mega caps, tens of bp for thin names; at least one tick."""
        p = self._p
        tick = p.tick[cols]
        dollar_adv = np.maximum(p.adv[cols] * price, 1.0)
        bps = np.clip(1.0 + 5.0e4 / np.sqrt(dollar_adv), 1.0, 50.0)
        bps = np.where(p.adv[cols] > 0, bps, 0.5)  # FX, indices: tight
        return np.maximum(np.round(price * bps * widen / 1e4 / tick), 1.0) * tick

    def _state(self, cols: np.ndarray, at: datetime) -> dict[str, np.ndarray]:
        """Last/open/high/low/volume/prev_close for columns at an instant (vectorised)."""
        p = self._p
        kind, j, minutes = self._when(at)
        if kind == "open":
            day = _intraday(self.seed, j)
            k = min(int(minutes), day.minutes - 1)
            f = min(minutes - k, 1.0)
            path = day.path[cols]
            last = path[:, k] + f * (path[:, k + 1] - path[:, k])
            last = np.clip(
                on_tick(last, p.tick[cols]),
                p.low[j, cols],
                p.high[j, cols],
            )
            cum = day.cum_volume[cols]
            volume = np.round(cum[:, k] + f * (cum[:, k + 1] - cum[:, k]), -2)
            return {
                "last": last,
                "open": p.open[j, cols],
                "high": np.maximum(day.run_high[cols, k], last),
                "low": np.minimum(day.run_low[cols, k], last),
                "volume": volume,
                "prev_close": self._prev_close(j, cols),
                "widen": np.array(1.0),
                "elapsed": np.array(max(minutes, 1.0) / day.minutes),
                "session": np.array(j),
            }
        if kind == "pre":
            prev = self._prev_close(j, cols)
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
            "prev_close": self._prev_close(j, cols),
            "widen": np.array(2.0),
            "elapsed": np.array(1.0),
            "session": np.array(j),
        }

    def snapshot(self, conid: int, at: datetime) -> Snapshot:
        """Top of book at ``at`` (see :class:`Snapshot`)."""
        return self.snapshots([conid], at)[0]

    def snapshots(self, conids: Sequence[int], at: datetime) -> list[Snapshot]:
        """Snapshots for many contracts at once, in the order asked (options priced one by one)."""
        out: dict[int, Snapshot] = {}
        panel_ids = [c for c in conids if c in self._cols]
        if panel_ids:
            out.update(zip(panel_ids, self._panel_snapshots(panel_ids, at), strict=True))
        for c in conids:
            if c not in out:
                out[c] = self._option_snapshot(self._instrument(c), at)
        return [out[c] for c in conids]

    def _panel_snapshots(self, conids: list[int], at: datetime) -> list[Snapshot]:
        p = self._p
        cols = np.fromiter((self._cols[c] for c in conids), dtype=np.int64, count=len(conids))
        st = self._state(cols, at)
        last, tick = st["last"], p.tick[cols]
        spread = self._spread(cols, last, float(st["widen"]))
        bid = np.maximum(np.floor((last - spread / 2.0) / tick + 1e-9) * tick, tick)
        ask = np.maximum(bid + spread, np.ceil(last / tick - 1e-9) * tick)
        ask = np.where(ask <= bid, bid + tick, ask)
        minute = _ns(at) // 60_000_000_000
        h = (cols * 2654435761 + minute * 40503 + self.seed * 977) % 4294967296
        depth_scale = np.clip(p.adv[cols] / 2e5, 3, 80).astype(np.int64)
        lot = np.where(p.adv[cols] > 0, 100.0, 0.0)
        bid_size = lot * (1 + h % depth_scale)
        ask_size = lot * (1 + (h >> 8) % depth_scale)
        last_size = lot * (1 + (h >> 16) % 5)
        when = at.astimezone(UTC)
        rows = zip(
            conids,
            np.round(bid, 8).tolist(),
            np.round(ask, 8).tolist(),
            np.round(last, 8).tolist(),
            bid_size.tolist(),
            ask_size.tolist(),
            last_size.tolist(),
            st["volume"].tolist(),
            st["open"].tolist(),
            st["high"].tolist(),
            st["low"].tolist(),
            st["prev_close"].tolist(),
            strict=True,
        )
        return [Snapshot(c, when, *vals) for c, *vals in rows]

    def depth(
        self, conid: int, at: datetime, rows: int = 5
    ) -> tuple[list[tuple[float, float, str]], list[tuple[float, float, str]]]:
        """Level-2 book: (bids best-first, asks best-first) of (price, size, market maker)."""
        if not 1 <= rows <= 50:
            raise IBError(INVALID_REQUEST, f"depth rows must be 1..50, got {rows}")
        snap = self.snapshot(conid, at)
        inst = self._instrument(conid)
        tick = inst.min_tick
        h = stable_int(self.seed, conid, _ns(at) // 60_000_000_000)
        lot = {"STK": 100.0, "CASH": 1_000_000.0}.get(inst.sec_type, 1.0)
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

    def fx_rate(self, currency: str, at: datetime) -> float:
        """USD per one unit of ``currency`` (USD -> 1.0), from the FX pair's last price."""
        cur = currency.upper()
        if cur == "USD":
            return 1.0
        for inst in self.universe.others:
            if inst.sec_type == "CASH" and cur in (inst.symbol, inst.currency):
                last = self.snapshot(inst.conid, at).last
                return last if inst.currency == "USD" else 1.0 / last
        raise IBError(NO_SECURITY_DEFINITION, f"no FX rate for currency {currency!r}")

    # -- fundamentals -----------------------------------------------------------------------
    def _stock(self, conid: int) -> tuple[Instrument, int]:
        inst = self._instrument(conid)
        col = self._cols.get(conid)
        if inst.sec_type != "STK" or inst.is_etf or col is None:
            raise IBError(
                NO_FUNDAMENTALS,
                f"fundamentals data is not available for {inst.symbol} ({inst.sec_type})",
            )
        return inst, col

    def fundamentals(self, conid: int, as_of: date) -> pd.DataFrame:
        """Quarterly statements reported on or before ``as_of`` (oldest first), USD / shares."""
        _, col = self._stock(conid)
        st = _statements(self.seed)
        n = int(np.searchsorted(st.report_date[col], np.datetime64(as_of, "ns"), "right"))
        columns = {"period_end": st.period_end[:n], "report_date": st.report_date[col, :n]}
        columns.update({name: v[col, :n] for name, v in st.items.items()})
        return pd.DataFrame(columns, columns=_FUNDAMENTAL_COLUMNS)

    def forward_eps(self, conid: int, as_of: date) -> float:
        """Consensus EPS for the next twelve months: trailing EPS grown at the recent trend."""
        _, col = self._stock(conid)
        st = _statements(self.seed)
        n = int(np.searchsorted(st.report_date[col], np.datetime64(as_of, "ns"), "right"))
        income, revenue = st.items["net_income"][col, :n], st.items["revenue"][col, :n]
        growth = min(max(float(revenue[-4:].sum() / revenue[-8:-4].sum()), 0.7), 1.5)
        noise = 1.0 + 0.03 * ((stable_int(self.seed, conid, as_of.isoformat()) % 2001) / 1000 - 1)
        shares = float(st.items["shares_outstanding"][col, n - 1])
        return round(float(income[-4:].sum()) * growth * noise / shares, 4)

    def forward_eps_many(self, conids: Sequence[int], as_of: date) -> list[float]:
        """:meth:`forward_eps` of many stocks for one date, vectorised over the statements
        (a backtest asks for every stock on every session); the same numbers."""
        st = _statements(self.seed)
        cols = np.array([self._stock(c)[1] for c in conids], dtype=np.int64)
        if not len(cols):
            return []
        n = (st.report_date[cols] <= np.datetime64(as_of, "ns")).sum(axis=1)
        if n.min() < 8:  # too few quarters for the vectorised windows: one by one
            return [self.forward_eps(c, as_of) for c in conids]
        rows = cols[:, None]
        last4 = n[:, None] + np.arange(-4, 0)
        income = st.items["net_income"][rows, last4].sum(axis=1)
        revenue = st.items["revenue"]
        growth = revenue[rows, last4].sum(axis=1) / revenue[rows, last4 - 4].sum(axis=1)
        shares = st.items["shares_outstanding"][cols, n - 1]
        day = as_of.isoformat()
        return [
            round(
                float(income[k])
                * min(max(float(growth[k]), 0.7), 1.5)
                * (1.0 + 0.03 * ((stable_int(self.seed, conid, day) % 2001) / 1000 - 1))
                / float(shares[k]),
                4,
            )
            for k, conid in enumerate(conids)
        ]

    # -- news -------------------------------------------------------------------------------
    def news_providers(self) -> list[tuple[str, str]]:
        """IB news provider codes and names."""
        return list(NEWS_PROVIDERS)

    def news(self, conid: int, start: datetime, end: datetime) -> list[Headline]:
        """Headlines with ``start <= time <= end``, oldest first (stocks only; others have none)."""
        inst = self._instrument(conid)
        col = self._cols.get(conid)
        start_ns, end_ns = _ns(start), _ns(end)
        if col is None or inst.sec_type != "STK" or inst.is_etf or end_ns < start_ns:
            return []
        p = self._p
        days = _schedule()[0]
        lo = int(np.searchsorted(days, np.datetime64(start.astimezone(NEW_YORK).date(), "D")))
        hi = int(
            np.searchsorted(days, np.datetime64(end.astimezone(NEW_YORK).date(), "D"), "right")
        )
        out: list[Headline] = []
        for t in np.flatnonzero(p.news_count[lo:hi, col]) + lo:
            out.extend(self._headlines(inst, col, int(t)))
        return [h for h in out if start <= h.time <= end]

    def _headlines(self, inst: Instrument, col: int, t: int) -> list[Headline]:
        p = self._p
        day = _schedule()[0][t].item()
        base_tone, jumped = float(p.news_tone[t, col]), bool(p.jump[t, col])
        out = []
        for k in range(int(p.news_count[t, col])):
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, 77, col, t, k]))
            if jumped and k == 0:  # the big move is announced before the open
                minute = 7 * 60 + int(rng.integers(0, 135))
            else:
                minute = 6 * 60 + int(rng.integers(0, 14 * 60))
            local = datetime.combine(day, time(minute // 60, minute % 60), NEW_YORK)
            tone = float(np.clip(base_tone + 0.15 * rng.standard_normal(), -1.0, 1.0))
            strong = (jumped and k == 0) or (abs(base_tone) > 0.9 and rng.random() < 0.3)
            provider = NEWS_PROVIDERS[int(rng.integers(len(NEWS_PROVIDERS)))][0]
            article = f"{provider}${stable_int(self.seed, inst.conid, t, k) % 2**32:08x}"
            out.append(
                Headline(
                    time=local.astimezone(UTC),
                    provider_code=provider,
                    article_id=article,
                    headline=_headline_text(rng, inst, tone, strong),
                    conid=inst.conid,
                    symbol=inst.symbol,
                    tone=round(tone, 4),
                )
            )
        return sorted(out, key=lambda h: h.time)

    # -- scanners ---------------------------------------------------------------------------
    def scan(
        self,
        code: str,
        at: datetime,
        location: str = "STK.US.MAJOR",
        above_price: float | None = None,
        below_price: float | None = None,
        above_volume: float | None = None,
        market_cap_above: float | None = None,
        market_cap_below: float | None = None,
        limit: int = 50,
    ) -> list[ScanResult]:
        """IB market scanner over the stocks (ETFs excluded).

        During a session it ranks live values; before the open it ranks the last completed
        session (what a pre-market screen of "yesterday's movers" shows). HOT_BY_VOLUME ranks
        volume relative to the average expected by this time of day.
        """
        if code not in self.SCANNER_CODES:
            raise IBError(
                INVALID_REQUEST,
                f"unknown scanner code {code!r}; valid: {', '.join(self.SCANNER_CODES)}",
            )
        if location not in self.LOCATIONS:
            raise IBError(
                INVALID_REQUEST,
                f"unknown scanner location {location!r}; valid: {', '.join(self.LOCATIONS)}",
            )
        if limit < 1:
            raise IBError(INVALID_REQUEST, f"scanner limit must be at least 1, got {limit}")
        stocks = self.universe.stocks
        cols = self._stock_cols
        if location in ("STK.NASDAQ", "STK.NYSE"):
            venue = location.split(".")[1]
            cols = np.array(
                [i for i, s in enumerate(stocks) if s.primary_exchange == venue], dtype=np.int64
            )
        kind, j, _ = self._when(at)
        st = self._state(
            cols, at if kind != "pre" else _utc(_schedule()[2][j - 1]) if j > 0 else at
        )
        last, volume, prev = st["last"], st["volume"], st["prev_close"]
        change = (last / prev - 1.0) * 100.0
        adv = self._p.adv[cols]
        cap = last * np.array([stocks[c].shares_outstanding for c in cols])
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
                conid=stocks[cols[i]].conid,
                last=float(last[i]),
                change_pct=round(float(change[i]), 4),
                volume=float(volume[i]),
                avg_volume=float(adv[i]),
            )
            for r, i in enumerate(idx)
        ]

    # -- options ----------------------------------------------------------------------------
    def _optionable(self, conid: int) -> tuple[Instrument, int]:
        inst = self._instrument(conid)
        col = self._cols.get(conid)
        if inst.sec_type != "STK" or col is None:
            raise IBError(
                NO_SECURITY_DEFINITION, f"no option chain for {inst.symbol} ({inst.sec_type})"
            )
        return inst, col

    def option_chain(self, underlying_conid: int, as_of: date) -> tuple[list[str], list[float]]:
        """Monthly expiries (third Fridays, next six) and strikes 70 %-130 % of the last close."""
        _, col = self._optionable(underlying_conid)
        days = _schedule()[0]
        i = max(int(np.searchsorted(days, np.datetime64(as_of, "D"), "right")) - 1, 0)
        spot = float(self._p.close[i, col])
        expiries: list[str] = []
        year, month = as_of.year, as_of.month
        while len(expiries) < 6:
            friday = monthly_expiry(year, month)
            if friday > as_of:
                expiries.append(friday.strftime("%Y%m%d"))
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        step = _strike_step(spot)
        lo, hi = math.ceil(spot * 0.7 / step), math.floor(spot * 1.3 / step)
        strikes = [round(k * step, 2) for k in range(max(lo, 1), hi + 1)]
        return expiries, [k for k in strikes if _strike_code(k) is not None]

    def option(self, underlying_conid: int, expiry: str, strike: float, right: str) -> Instrument:
        """The listed option (OPT, multiplier 100), registered so ``by_conid``/``snapshot`` work.

        Listed means a monthly expiry (2019-01 .. 2029-08) and a strike on :data:`STRIKE_LADDER`;
        anything else is IB's error 200, as for an unlisted contract.
        """
        under, col = self._optionable(underlying_conid)
        side = {"C": "C", "CALL": "C", "P": "P", "PUT": "P"}.get(str(right).upper())
        if side is None:
            raise IBError(INVALID_REQUEST, f"option right must be C or P, got {right!r}")
        try:
            exp = datetime.strptime(expiry, "%Y%m%d").date()
        except (TypeError, ValueError):
            raise IBError(
                INVALID_REQUEST, f"option expiry must be YYYYMMDD, got {expiry!r}"
            ) from None
        if not (isinstance(strike, int | float) and math.isfinite(strike) and strike > 0):
            raise IBError(INVALID_REQUEST, f"option strike must be positive, got {strike!r}")
        month = (exp.year - 2019) * 12 + exp.month - 1
        if not 0 <= month < _OPT_MONTHS or exp != monthly_expiry(exp.year, exp.month):
            raise IBError(
                NO_SECURITY_DEFINITION,
                f"no {under.symbol} option expires on {expiry} (monthly expiries only)",
            )
        code = _strike_code(float(strike))
        if code is None:
            raise IBError(NO_SECURITY_DEFINITION, f"no {under.symbol} option with strike {strike}")
        return self.universe.register(self._option_instrument(under, col, month, code, side))

    def _option_instrument(
        self, under: Instrument, col: int, month: int, code: int, side: str
    ) -> Instrument:
        exp = monthly_expiry(2019 + month // 12, month % 12 + 1)
        strike = float(STRIKE_LADDER[code])
        return Instrument(
            conid=_option_conid(col, month, code, side),
            symbol=under.symbol,
            sec_type="OPT",
            exchange="SMART",
            primary_exchange="",
            currency="USD",
            name=f"{under.symbol} {exp:%b%d'%y} {strike:g} {'Call' if side == 'C' else 'Put'}",
            sector=under.sector,
            industry=under.industry,
            lot_size=1,
            min_tick=0.01,
            adv=round(under.adv / 2000.0, -1),
            shares_outstanding=0.0,
            multiplier=100.0,
            last_trade_date=exp.strftime("%Y%m%d"),
            strike=strike,
            right=side,
            underlying_conid=under.conid,
        )

    def _decode_option(self, conid: int) -> Instrument | None:
        """Rebuild an option from its conId (None when the conId is not a valid option's)."""
        packed, put = divmod(conid - _OPT_BASE, 2)
        rest, code = divmod(packed, _OPT_STRIKES)
        col, month = divmod(rest, _OPT_MONTHS)
        if conid < _OPT_BASE or code >= len(STRIKE_LADDER) or col not in self._conid_of_col:
            return None
        under = self.universe.by_conid(self._conid_of_col[col])
        if under.sec_type != "STK":
            return None
        return self._option_instrument(under, col, month, code, "P" if put else "C")

    def _option_snapshot(self, inst: Instrument, at: datetime) -> Snapshot:
        if inst.sec_type != "OPT":
            raise IBError(NO_MARKET_DATA, f"no market data for {inst.symbol} ({inst.sec_type})")
        under = self.snapshot(inst.underlying_conid, at)
        col = self._cols[inst.underlying_conid]
        _, j, _ = self._when(at)
        p = self._p
        base_vol = float(p.sigma[max(j - 1, 0), col]) * math.sqrt(252.0)
        rate = float(p.close[max(j - 1, 0), self._tnx_col]) / 1000.0
        expiry_close = datetime.combine(
            datetime.strptime(inst.last_trade_date, "%Y%m%d").date(), time(16), NEW_YORK
        )
        years = max((expiry_close - at).total_seconds(), 0.0) / (365.0 * 86400.0)

        def price(spot: float, extra_days: float = 0.0) -> float:
            skew = 1.0 - 0.8 * math.log(inst.strike / spot)
            vol = base_vol * min(max(skew, 0.6), 2.5)
            return black_scholes(
                spot, inst.strike, years + extra_days / 365.0, rate, vol, inst.right
            )

        theo = price(under.last)
        spread = max(0.02, round(0.03 * theo, 2))
        bid = max(math.floor((theo - spread / 2.0) * 100.0 + 1e-9) / 100.0, 0.0)
        ask = round(bid + spread, 2)
        last = round(min(max(theo, bid), ask), 2)
        hi_spot, lo_spot = (under.high, under.low) if inst.right == "C" else (under.low, under.high)
        h = stable_int(self.seed, inst.conid, _ns(at) // 60_000_000_000)
        return Snapshot(
            conid=inst.conid,
            time=at.astimezone(UTC),
            bid=bid,
            ask=ask,
            last=last,
            bid_size=float(1 + h % 50),
            ask_size=float(1 + (h >> 8) % 50),
            last_size=float(1 + (h >> 16) % 10),
            volume=float(round(inst.adv * under.volume / max(float(p.adv[col]), 1.0))),
            open=round(price(under.open), 2),
            high=max(round(price(hi_spot), 2), last),
            low=min(round(price(lo_spot), 2), last),
            prev_close=round(price(under.prev_close, 1.0), 2),
        )


__all__ = [
    "FIRST_SESSION",
    "LAST_SESSION",
    "NEWS_PROVIDERS",
    "STRIKE_LADDER",
    "Headline",
    "ScanResult",
    "SimMarket",
    "Snapshot",
    "black_scholes",
    "monthly_expiry",
]
