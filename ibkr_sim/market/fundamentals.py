"""Quarterly fundamentals of the simulated market, point in time, and consensus forward EPS.

A stock's latent quality (:func:`ibkr_sim.market.paths.stocks`) drives its statements: good
companies grow revenue, expand margins, de-lever and buy back shares, so a Piotroski (2000)
F-score computed from the statements spreads over 0..9 and ranks quality. Quality predicts
returns only through ``Edge.quality_drift`` (:mod:`ibkr_sim.market.edge`): the statements are the
same in every world of a seed, informative about returns in the default one, not in the
edge-free one.
Statements appear 30-45 days after the quarter ends (point in time): a query as of a date sees
only the quarters reported by then. Amounts in USD (rounded to thousands), shares in shares.
Rows are the stocks' panel columns (:func:`ibkr_sim.market.paths.stock_column`): the listed
stocks, empty rows for the macro instruments, then the generated stocks a world asked for, each
block of them from its own stream.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from ibkr_sim.market import paths
from ibkr_sim.market.paths import stocks
from ibkr_sim.universe import LISTED_STOCKS, N_OTHERS, Universe, stable_int


@dataclass(frozen=True)
class Statements:
    """Every stock's quarters 2015Q4..2028Q4: (stock columns, K) arrays per line item."""

    period_end: np.ndarray  # (K,) datetime64[ns]
    report_date: np.ndarray  # (stock columns, K) datetime64[ns], increasing along K
    items: dict[str, np.ndarray]


def statements(seed: int) -> Statements:
    """Quarterly statements whose trends follow each stock's quality (vectorised, once per seed
    and world size).

    Good companies (high quality) grow revenue, widen margins, convert earnings to
    cash, de-lever, improve liquidity and buy back shares; poor ones do the opposite, so the
    Piotroski (2000) F-score spreads across 0..9.
    """
    return _statements(seed, paths.generated_blocks())


@functools.lru_cache(maxsize=4)
def _statements(seed: int, blocks: int) -> Statements:
    uni = Universe(seed, LISTED_STOCKS)
    listed = _statement_block(
        np.random.default_rng(np.random.SeedSequence([seed, 41])),
        stocks(seed).quality,
        np.array([i.shares_outstanding for i in uni.stocks]),
        uni.start_prices,
    )
    if not blocks:
        return listed
    insts, start = paths.generated_instruments(seed)
    parts = [listed]
    for b in range(blocks):
        rows = paths.block_slice(b)
        parts.append(
            _statement_block(
                np.random.default_rng(np.random.SeedSequence([seed, 41, 1 + b])),
                paths.generated_stocks(seed, b).quality,
                np.array([i.shares_outstanding for i in insts[rows]]),
                start[rows],
            )
        )
    K = len(listed.period_end)
    empty = np.full((N_OTHERS, K), np.nan)  # the macro instruments' rows
    return Statements(
        period_end=listed.period_end,
        report_date=np.concatenate(
            [listed.report_date, empty.astype("datetime64[ns]")]
            + [part.report_date for part in parts[1:]]
        ),
        items={
            name: np.concatenate([listed.items[name], empty] + [p.items[name] for p in parts[1:]])
            for name in listed.items
        },
    )


def _statement_block(
    rng: np.random.Generator, quality: np.ndarray, shares_outstanding: np.ndarray, start: np.ndarray
) -> Statements:
    """The statements of a set of stocks of latent ``quality`` with ``shares_outstanding`` and
    ``start`` prices (USD) on the first session, drawn from ``rng``."""
    q = quality[:, None]
    shares0 = shares_outstanding[:, None]
    market_cap = shares0 * start[:, None]
    period_end = pd.date_range("2015-12-31", "2028-12-31", freq="QE").values.astype("datetime64[D]")
    N, K = len(quality), len(period_end)
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
    return Statements(
        period_end=period_end.astype("datetime64[ns]"),
        report_date=report.astype("datetime64[ns]"),
        items={name: np.round(v, -3) for name, v in items.items()},
    )


def fundamentals(seed: int, col: int, as_of: date) -> pd.DataFrame:
    """One stock's quarterly statements reported on or before ``as_of`` (oldest first).

    Columns: ``period_end``, ``report_date``, then the line items of :func:`statements`.
    """
    return fundamentals_many(seed, [col], as_of).drop(columns="stock")


def fundamentals_many(seed: int, cols: Sequence[int], as_of: date) -> pd.DataFrame:
    """:func:`fundamentals` of many stocks (panel columns ``cols``) in one frame: a ``stock``
    column first (the position in ``cols``), the stocks in that order, each oldest first."""
    st = statements(seed)
    picked = np.array(cols, dtype=np.int64)
    n = (st.report_date[picked] <= np.datetime64(as_of, "ns")).sum(axis=1)
    stock, quarter = np.nonzero(np.arange(len(st.period_end))[None, :] < n[:, None])
    rows = picked[stock]
    columns = {
        "stock": stock,
        "period_end": st.period_end[quarter],
        "report_date": st.report_date[rows, quarter],
    }
    columns.update({name: v[rows, quarter] for name, v in st.items.items()})
    return pd.DataFrame(columns)


def _eps(
    income: np.ndarray,
    growth: np.ndarray,
    shares: np.ndarray,
    seed: int,
    conids: Sequence[int],
    days: Sequence[date],
) -> np.ndarray:
    """Trailing ``income`` (USD) grown at ``growth`` (clamped to 0.7..1.5), with a +-3 %
    consensus error fixed per stock and day, per share (USD, 4 decimals): arrays (days, stocks)
    of ``days`` and the stocks ``conids``."""
    texts = [day.isoformat() for day in days]
    draws = np.array(
        [[stable_int(seed, conid, text) % 2001 for conid in conids] for text in texts],
        dtype=np.float64,
    ).reshape(len(days), len(conids))
    noise = 1.0 + 0.03 * (draws / 1000 - 1)
    raw = income * np.minimum(np.maximum(growth, 0.7), 1.5) * noise / shares
    # Python's round (correctly rounded), not np.round (scaled, off by one unit at times)
    return np.array([round(x, 4) for x in raw.ravel().tolist()]).reshape(raw.shape)


def forward_eps(seed: int, conid: int, col: int, as_of: date) -> float:
    """Consensus EPS for the next twelve months: trailing EPS grown at the recent trend (USD);
    a stock with fewer than eight quarters reported: over the quarters it has."""
    st = statements(seed)
    n = int(np.searchsorted(st.report_date[col], np.datetime64(as_of, "ns"), "right"))
    income, revenue = st.items["net_income"][col, :n], st.items["revenue"][col, :n]
    growth = float(revenue[-4:].sum() / revenue[-8:-4].sum())
    shares = float(st.items["shares_outstanding"][col, n - 1])
    one = np.array([[float(income[-4:].sum()), growth, shares]])
    return float(_eps(one[:, :1], one[:, 1:2], one[:, 2:], seed, [conid], [as_of])[0, 0])


def forward_eps_history(
    seed: int, conids: Sequence[int], cols: Sequence[int], days: Sequence[date]
) -> np.ndarray:
    """:func:`forward_eps` of the stocks ``conids`` (panel columns ``cols``) on each of ``days``
    (USD), an array (days, stocks), vectorised over the statements (a backtest asks for every
    stock on every session); the same numbers."""
    st = statements(seed)
    rows = np.array(cols, dtype=np.int64)
    when = np.array([np.datetime64(day, "ns") for day in days], dtype="datetime64[ns]")
    if not len(rows) or not len(when):
        return np.empty((len(when), len(rows)))
    # quarters reported by each day (each stock's report dates increase): (days, stocks)
    n = np.stack([np.searchsorted(st.report_date[r], when, "right") for r in rows], axis=1)
    short = n < 8  # too few quarters for the vectorised windows: one by one below
    last4 = np.maximum(n, 8)[:, :, None] + np.arange(-4, 0)
    picked = rows[None, :, None]
    income = st.items["net_income"][picked, last4].sum(axis=2)
    revenue = st.items["revenue"]
    growth = revenue[picked, last4].sum(axis=2) / revenue[picked, last4 - 4].sum(axis=2)
    shares = st.items["shares_outstanding"][rows[None, :], last4[:, :, -1]]
    eps = _eps(income, growth, shares, seed, conids, days)
    for d, k in zip(*np.nonzero(short), strict=True):
        eps[d, k] = forward_eps(seed, conids[k], cols[k], days[d])
    return eps
