"""Performance of a strategy from its daily returns: equity curve after costs, volatility, Sharpe,
Sortino, drawdown, turnover and hit rate.

* **Costs**: each day's net return is the gross return minus ``cost_per_turnover × turnover``,
  turnover being ``Σ|w_t − w_{t−1}|`` (both sides of every trade, fractions of NAV); a cost of
  10 bp per unit of turnover is a typical half-spread plus commission for liquid US stocks.
* **Volatility**: the sample standard deviation (ddof = 1) of the period returns × √252, a
  fraction a year (0.2 = 20% a year).
* **Sharpe ratio** (Sharpe 1966, 1994): ``mean / std × √252`` of daily net returns, risk-free
  rate 0, sample standard deviation (ddof = 1).
* **Sortino ratio** (Sortino & Price 1994): ``mean / DD × √252`` with the downside deviation
  ``DD = √(mean(min(r, 0)²))`` over all days, so only losses count as risk.
* **Maximum drawdown**: the largest fall of the equity curve (or of any price path) from a
  running peak, ``max(1 − E_t / max_{s≤t} E_s)``, a **positive** fraction of the peak (0.25 =
  25% below it; 0 = never below an earlier high), with the peak, the trough, the recovery
  (first day back at the peak, if any) and the duration in periods from peak to recovery (or
  to the end when not recovered) (Magdon-Ismail & Atiya 2004, "Maximum drawdown", *Risk*
  17(10)).
* **Hit rate**: the share of days with a non-zero return that were positive.

Returns are simple (not log) returns; the equity curve compounds them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

PERIODS_PER_YEAR = 252


def _clean(returns: pd.Series, what: str = "returns") -> pd.Series:
    r = pd.Series(returns, dtype="float64")
    if r.empty:
        raise ValueError(f"{what} is empty")
    bad = r.index[~np.isfinite(r.to_numpy())].tolist()
    if bad:
        raise ValueError(f"NaN or infinite {what} at {bad[:5]}")
    if (r <= -1).any():
        raise ValueError(f"{what} of -100% or worse at {r.index[r <= -1].tolist()[:5]}")
    return r


def turnover(weights: pd.DataFrame, initial: pd.Series | None = None) -> pd.Series:
    """``Σ_i |w_{t,i} − w_{t−1,i}|`` per period (rows = periods, columns = symbols).

    The first period trades from ``initial`` (default: all cash). Missing weights are 0.
    """
    w = weights.astype("float64").fillna(0.0)
    start = pd.Series(0.0, index=w.columns) if initial is None else initial.astype("float64")
    previous = w.shift(1)
    previous.iloc[0] = start.reindex(w.columns).fillna(0.0).to_numpy()
    return (w - previous).abs().sum(axis=1).rename("turnover")


def equity_curve(
    returns: pd.Series,
    turnover: pd.Series | None = None,
    cost_per_turnover: float = 0.0,
    initial: float = 1.0,
    costs: pd.Series | None = None,
) -> pd.DataFrame:
    """Columns ``gross_return, cost, net_return, equity, drawdown`` per period.

    ``cost = cost_per_turnover × turnover + costs`` (both aligned on the returns' index,
    missing = 0; ``costs`` are costs already measured per period, e.g. commissions and
    slippage as fractions of NAV); ``equity`` compounds the net returns from ``initial``;
    ``drawdown`` is ``1 − equity / running peak`` (the peak includes the starting capital).
    """
    r = _clean(returns)
    if cost_per_turnover < 0:
        raise ValueError(f"cost_per_turnover must be >= 0, got {cost_per_turnover}")
    t = (
        pd.Series(0.0, index=r.index)
        if turnover is None
        else _clean(turnover.reindex(r.index).fillna(0.0), "turnover")
    )
    cost = cost_per_turnover * t
    if costs is not None:
        cost = cost + _clean(costs.reindex(r.index).fillna(0.0), "costs")
    net = r - cost
    equity = initial * (1 + net).cumprod()
    peak = np.maximum(equity.cummax(), initial)
    return pd.DataFrame(
        {
            "gross_return": r,
            "cost": cost,
            "net_return": net,
            "equity": equity,
            "drawdown": 1 - equity / peak,
        }
    )


def annualised_volatility(
    returns: pd.Series | np.ndarray, periods_per_year: int = PERIODS_PER_YEAR
) -> float:
    """Sample standard deviation (ddof = 1) of the period returns × √``periods_per_year``: a
    fraction a year. Simple or log returns alike; NaN with fewer than 2 returns."""
    r = pd.Series(np.asarray(returns, dtype="float64"))
    bad = np.flatnonzero(~np.isfinite(r.to_numpy()))
    if bad.size:
        raise ValueError(f"NaN or infinite returns at positions {bad[:5].tolist()}")
    if len(r) < 2:
        return math.nan
    return float(r.std(ddof=1) * math.sqrt(periods_per_year))


def sharpe_ratio(returns: pd.Series, periods_per_year: int = PERIODS_PER_YEAR) -> float:
    """Annualised Sharpe ratio (risk-free 0); NaN with fewer than 2 returns or zero spread."""
    r = _clean(returns)
    sd = r.std(ddof=1)
    if len(r) < 2 or not sd > 0:
        return math.nan
    return float(r.mean() / sd * math.sqrt(periods_per_year))


def sortino_ratio(returns: pd.Series, periods_per_year: int = PERIODS_PER_YEAR) -> float:
    """Annualised Sortino ratio (target 0); ``inf`` when there is no losing period."""
    r = _clean(returns)
    downside = math.sqrt(float((np.minimum(r.to_numpy(), 0.0) ** 2).mean()))
    if downside == 0:
        return math.inf if r.mean() > 0 else math.nan
    return float(r.mean() / downside * math.sqrt(periods_per_year))


@dataclass(frozen=True)
class Drawdown:
    """Largest peak-to-trough fall and its dates; ``recovery`` is None if not recovered."""

    max_drawdown: float
    peak: object
    trough: object
    recovery: object | None
    duration: int


def max_drawdown(equity: pd.Series) -> Drawdown:
    """Maximum drawdown of an equity curve or a price path (positive values): the largest fall
    from a running peak as a positive fraction of that peak, with peak, trough, recovery and
    duration (periods from the peak to the recovery, or to the last period when not
    recovered)."""
    e = _clean(equity, "equity")
    if (e <= 0).any():
        raise ValueError("equity must be positive")
    running = e.cummax()
    dd = 1 - e / running
    pos_trough = int(np.argmax(dd.to_numpy()))
    if dd.iloc[pos_trough] == 0:
        return Drawdown(0.0, e.index[0], e.index[0], e.index[0], 0)
    pos_peak = int(np.argmax(e.to_numpy()[: pos_trough + 1]))
    later = np.flatnonzero(e.to_numpy()[pos_trough:] >= e.iloc[pos_peak])
    pos_rec = pos_trough + int(later[0]) if later.size else None
    end = pos_rec if pos_rec is not None else len(e) - 1
    return Drawdown(
        float(dd.iloc[pos_trough]),
        e.index[pos_peak],
        e.index[pos_trough],
        None if pos_rec is None else e.index[pos_rec],
        end - pos_peak,
    )


def hit_rate(returns: pd.Series) -> float:
    """Share of non-zero periods with a positive return (NaN if all are zero)."""
    r = _clean(returns)
    active = r[r != 0]
    return float((active > 0).mean()) if len(active) else math.nan


@dataclass(frozen=True)
class PerformanceSummary:
    """The headline numbers of a backtest (annualised where it says so)."""

    periods: int
    total_return: float
    cagr: float
    annual_volatility: float
    sharpe: float
    sortino: float
    max_drawdown: float
    drawdown_duration: int
    average_turnover: float
    total_cost: float
    hit_rate: float


def summarise(
    returns: pd.Series,
    turnover: pd.Series | None = None,
    cost_per_turnover: float = 0.0,
    periods_per_year: int = PERIODS_PER_YEAR,
    costs: pd.Series | None = None,
) -> PerformanceSummary:
    """Every metric above for daily gross ``returns`` after turnover costs (and the measured
    per-period ``costs``, see :func:`equity_curve`)."""
    curve = equity_curve(returns, turnover, cost_per_turnover, costs=costs)
    net = curve["net_return"]
    # Prepend the starting capital so a loss on day one counts as a drawdown.
    equity = pd.concat([pd.Series([1.0]), curve["equity"].reset_index(drop=True)])
    equity.index = range(len(equity))
    dd = max_drawdown(equity)
    total = float(curve["equity"].iloc[-1] - 1)
    years = len(net) / periods_per_year
    return PerformanceSummary(
        periods=len(net),
        total_return=total,
        cagr=float((1 + total) ** (1 / years) - 1),
        annual_volatility=annualised_volatility(net, periods_per_year),
        sharpe=sharpe_ratio(net, periods_per_year),
        sortino=sortino_ratio(net, periods_per_year),
        max_drawdown=dd.max_drawdown,
        drawdown_duration=dd.duration,
        average_turnover=float(turnover.reindex(net.index).fillna(0.0).mean())
        if turnover is not None
        else 0.0,
        total_cost=float(curve["cost"].sum()),
        hit_rate=hit_rate(net),
    )
