"""Performance of a strategy from its daily returns: equity curve after costs, volatility, Sharpe,
Sortino, drawdown, turnover and hit rate.

* **Costs**: each day's net return is the gross return minus ``cost_per_turnover × turnover``,
  turnover being ``Σ|w_t − w_{t−1}|`` (both sides of every trade, fractions of NAV). The decision
  stages charge ``turnover_cost`` (8 bp per unit traded by default: half spread, commission and
  impact as measured on the simulated market; the backtest pays each fill's own) amortised over
  the holding period.
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
* **Average turnover** (reported): one side, ``Σ|Δw| / 2`` a day (what was bought, or sold,
  as a fraction of NAV), averaged over every period but the first — the first invests the
  starting cash, which is not trading.
* **Buy-and-hold benchmark**: equal amounts in every column at the first close, never
  rebalanced, no costs; its daily returns are those of the drifting book.
* **Beta** ``cov(r, r_b) / var(r_b)`` against a benchmark's returns on the dates both have
  (sample covariances, ddof = 1): the least-squares slope (Sharpe 1964).
* **Excess return** over a benchmark: the mean daily difference ``d = r − r_b`` × 252, with
  the t-statistic ``mean(d) / (sd(d) / √n)`` of the hypothesis that the mean is 0 (i.i.d.
  days; |t| > 2 is the usual bar, about 5% two-sided).
* **Sharpe interval**: the percentile interval of the Sharpe ratio over resamples of the
  daily returns by the *stationary bootstrap* (Politis & Romano 1994, JASA 89(428)): blocks of
  geometrically distributed length (mean ``mean_block`` periods) from random starts, wrapping
  around, so short-range dependence is kept; seeded, so a rerun gives the same interval.
* **Probabilistic and deflated Sharpe ratios** (Bailey & López de Prado 2012, "The Sharpe ratio
  efficient frontier", *J. of Risk* 15(2); 2014, "The deflated Sharpe ratio", *J. of Portfolio
  Management* 40(5)): ``PSR(SR*) = Φ((SR − SR*)·√(T − 1) / √(1 − γ₃·SR + (γ₄ − 1)/4·SR²))``
  with the per-period Sharpe ``SR``, skewness ``γ₃`` and (non-excess) kurtosis ``γ₄`` of the
  ``T`` returns; the DSR is the PSR against the Sharpe the best of ``N`` tries would show by
  luck alone, ``SR* = √V·((1 − γ)·Φ⁻¹(1 − 1/N) + γ·Φ⁻¹(1 − 1/(N·e)))`` (γ the Euler–Mascheroni
  constant, ``V`` the variance of the tries' per-period Sharpes; ``SR* = 0`` for one try). The
  DSR is a probability: above 0.95 the edge is unlikely to be luck, given the tries.

Returns are simple (not log) returns; the equity curve compounds them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import kurtosis, norm, skew

PERIODS_PER_YEAR = 252
#: The Euler–Mascheroni constant of the expected maximum of N normal draws.
EULER_GAMMA = 0.5772156649015329


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


def _sharpe_rows(returns: np.ndarray, periods_per_year: int) -> np.ndarray:
    """The annualised Sharpe ratio of each row of a 2-D array of returns (NaN where a row has
    fewer than 2 returns or no spread)."""
    if returns.shape[1] < 2:
        return np.full(returns.shape[0], math.nan)
    sd = returns.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = returns.mean(axis=1) / sd * math.sqrt(periods_per_year)
    return np.where(sd > 0, out, math.nan)


def sharpe_ratio(returns: pd.Series, periods_per_year: int = PERIODS_PER_YEAR) -> float:
    """Annualised Sharpe ratio (risk-free 0); NaN with fewer than 2 returns or zero spread."""
    r = _clean(returns).to_numpy()
    return float(_sharpe_rows(r[np.newaxis, :], periods_per_year)[0])


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


def average_one_way_turnover(turnover: pd.Series) -> float:
    """Mean one-side turnover a period, ``Σ|Δw| / 2``, over every period but the first (which
    invests the starting cash); ``turnover`` is both sides (:func:`turnover`), fractions of
    NAV. NaN with fewer than 2 periods."""
    t = _clean(turnover, "turnover")
    if (t < 0).any():
        raise ValueError(f"negative turnover at {t.index[t < 0].tolist()[:5]}")
    return float(t.iloc[1:].mean() / 2) if len(t) > 1 else math.nan


def buy_and_hold_returns(closes: pd.DataFrame) -> pd.Series:
    """Daily returns of equal amounts put in every column of ``closes`` (rows = periods,
    oldest first) at the first row's close and never rebalanced, no costs: the returns of the
    drifting book from the second row on. A gap is filled with the last close; a column
    without a first close is an error naming it."""
    if len(closes) < 2:
        raise ValueError(f"buy and hold needs 2 closes or more, got {len(closes)}")
    prices = closes.astype("float64").ffill()
    first = prices.iloc[0]
    missing = first.index[~(np.isfinite(first) & (first > 0))].tolist()
    if missing:
        raise ValueError(f"no positive first close for {missing[:10]}")
    value = (prices / first).mean(axis=1)
    return value.pct_change().iloc[1:].rename("return")


def _paired(returns: pd.Series, benchmark: pd.Series) -> pd.DataFrame:
    both = pd.concat([_clean(returns), _clean(benchmark, "benchmark returns")], axis=1)
    return both.dropna().set_axis(["r", "b"], axis=1)


def beta(returns: pd.Series, benchmark: pd.Series) -> float:
    """``cov(r, r_b) / var(r_b)`` of two return series on the dates both have (sample
    covariances, ddof = 1); NaN with fewer than 3 common dates or a flat benchmark."""
    both = _paired(returns, benchmark)
    if len(both) < 3:
        return math.nan
    cov = np.cov(both["r"].to_numpy(), both["b"].to_numpy(), ddof=1)
    return float(cov[0, 1] / cov[1, 1]) if cov[1, 1] > 0 else math.nan


@dataclass(frozen=True)
class ExcessReturn:
    """Mean excess return over a benchmark, annualised (a fraction a year), its t-statistic
    and the number of common periods."""

    annualised: float
    t_stat: float
    periods: int


def excess_return(
    returns: pd.Series, benchmark: pd.Series, periods_per_year: int = PERIODS_PER_YEAR
) -> ExcessReturn:
    """``mean(r − r_b) × periods_per_year`` on the dates both have, with the t-statistic
    ``mean / (sd / √n)`` of the daily differences (NaN with fewer than 2 dates or no spread)."""
    both = _paired(returns, benchmark)
    d = (both["r"] - both["b"]).to_numpy()
    n = len(d)
    if n < 2:
        return ExcessReturn(math.nan, math.nan, n)
    sd = float(d.std(ddof=1))
    t = float(d.mean() / (sd / math.sqrt(n))) if sd > 0 else math.nan
    return ExcessReturn(float(d.mean() * periods_per_year), t, n)


def stationary_bootstrap_indices(
    n: int, resamples: int, mean_block: float, rng: np.random.Generator
) -> np.ndarray:
    """``resamples × n`` positions into a series of ``n`` periods drawn by the stationary
    bootstrap (Politis & Romano 1994): each position starts a new block at a uniform random
    period with probability ``1 / mean_block``, else follows the previous one (wrapping)."""
    if n < 1 or resamples < 1:
        raise ValueError(f"need n >= 1 and resamples >= 1, got n={n}, resamples={resamples}")
    if mean_block < 1:
        raise ValueError(f"mean_block must be >= 1 period, got {mean_block}")
    starts = rng.integers(0, n, size=(resamples, n))
    new_block = rng.random((resamples, n)) < 1.0 / mean_block
    index = np.empty((resamples, n), dtype=np.int64)
    index[:, 0] = starts[:, 0]
    for t in range(1, n):
        index[:, t] = np.where(new_block[:, t], starts[:, t], (index[:, t - 1] + 1) % n)
    return index


@dataclass(frozen=True)
class SharpeInterval:
    """A bootstrap interval of the annualised Sharpe ratio and how it was drawn."""

    low: float
    high: float
    confidence: float
    method: str


def sharpe_interval(
    returns: pd.Series,
    confidence: float = 0.95,
    resamples: int = 2000,
    mean_block: float = 5.0,
    seed: int = 0,
    periods_per_year: int = PERIODS_PER_YEAR,
) -> SharpeInterval:
    """Percentile interval at ``confidence`` of the annualised Sharpe ratio over ``resamples``
    stationary-bootstrap resamples (:func:`stationary_bootstrap_indices`, mean block
    ``mean_block`` periods, generator seeded with ``seed``). NaN bounds with fewer than 3
    returns; resamples without spread are left out."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    r = _clean(returns).to_numpy()
    method = (
        f"stationary bootstrap (Politis-Romano), mean block {mean_block:g} periods, "
        f"{resamples} resamples, seed {seed}"
    )
    if len(r) < 3:
        return SharpeInterval(math.nan, math.nan, confidence, method)
    index = stationary_bootstrap_indices(len(r), resamples, mean_block, np.random.default_rng(seed))
    sharpes = _sharpe_rows(r[index], periods_per_year)
    sharpes = sharpes[np.isfinite(sharpes)]
    if sharpes.size == 0:
        return SharpeInterval(math.nan, math.nan, confidence, method)
    tail = (1 - confidence) / 2
    low, high = np.quantile(sharpes, [tail, 1 - tail])
    return SharpeInterval(float(low), float(high), confidence, method)


def probabilistic_sharpe_ratio(
    sharpe: float, periods: int, skewness: float, kurt: float, benchmark: float = 0.0
) -> float:
    """``P(true SR > benchmark)`` given a per-period (not annualised) Sharpe ratio ``sharpe``
    measured on ``periods`` returns with ``skewness`` and non-excess kurtosis ``kurt`` (3 for a
    normal); ``benchmark`` per period too (Bailey & López de Prado 2012). NaN when undefined."""
    if periods < 2 or not math.isfinite(sharpe):
        return math.nan
    spread = 1 - skewness * sharpe + (kurt - 1) / 4 * sharpe**2
    if not spread > 0:
        return math.nan
    return float(norm.cdf((sharpe - benchmark) * math.sqrt(periods - 1) / math.sqrt(spread)))


def expected_max_sharpe(trials: int, variance: float) -> float:
    """The Sharpe ratio (per period) the best of ``trials`` independent tries shows by luck
    when every true Sharpe is 0 and the tries' Sharpes vary with ``variance`` (per period²):
    ``√V·((1 − γ)·Φ⁻¹(1 − 1/N) + γ·Φ⁻¹(1 − 1/(N·e)))``; 0 for one try."""
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    if variance < 0:
        raise ValueError(f"variance must be >= 0, got {variance}")
    if trials == 1:
        return 0.0
    z = (1 - EULER_GAMMA) * norm.ppf(1 - 1 / trials)
    z += EULER_GAMMA * norm.ppf(1 - 1 / (trials * math.e))
    return float(math.sqrt(variance) * z)


def deflated_sharpe_ratio(
    returns: pd.Series,
    trials: int = 1,
    trial_sharpes: Sequence[float] | None = None,
    periods_per_year: int = PERIODS_PER_YEAR,
) -> float:
    """The deflated Sharpe ratio (Bailey & López de Prado 2014) of ``returns`` after ``trials``
    configurations were tried: the probabilistic Sharpe ratio against
    :func:`expected_max_sharpe`. ``trial_sharpes`` are the tries' annualised Sharpes (their
    variance is ``V``); without two finite ones ``V`` is the sampling variance of this Sharpe,
    ``(1 − γ₃·SR + (γ₄ − 1)/4·SR²) / (T − 1)`` (the tries differ by noise alone). A
    probability; NaN with fewer than 3 returns or no spread."""
    r = _clean(returns).to_numpy()
    if len(r) < 3 or not r.std(ddof=1) > 0:
        return math.nan
    sr = float(r.mean() / r.std(ddof=1))
    g3, g4 = float(skew(r)), float(kurtosis(r, fisher=False))
    finite = [x for x in (trial_sharpes or []) if math.isfinite(x)]
    if len(finite) >= 2:
        variance = float(np.var(np.asarray(finite) / math.sqrt(periods_per_year), ddof=1))
    else:
        variance = max(1 - g3 * sr + (g4 - 1) / 4 * sr**2, 0.0) / (len(r) - 1)
    return probabilistic_sharpe_ratio(sr, len(r), g3, g4, expected_max_sharpe(trials, variance))


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
    average_turnover: float  # one side, without the first period (average_one_way_turnover)
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
        average_turnover=average_one_way_turnover(turnover.reindex(net.index).fillna(0.0))
        if turnover is not None
        else 0.0,
        total_cost=float(curve["cost"].sum()),
        hit_rate=hit_rate(net),
    )
