"""What a replay's Sharpe is worth: buy-and-hold benchmarks on the same sessions, beta, excess
returns with their t-statistics, the bootstrap interval and the deflated Sharpe ratio."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from ibkr_assets.quant.backtest.book import BacktestResult
from ibkr_assets.quant.backtest.replay import ReplayData, SessionWindow, universe_closes
from ibkr_assets.quant.performance import (
    PerformanceSummary,
    SharpeInterval,
    beta,
    buy_and_hold_returns,
    deflated_sharpe_ratio,
    excess_return,
    sharpe_interval,
    summarise,
)

# -- statistics ---------------------------------------------------------------------------------

#: The benchmarks :func:`backtest_statistics` compares with: the universe's names in equal
#: amounts, and SPY (the macro gauges' close).
BENCHMARKS = ("equal_weight", "spy")


def benchmark_returns(data: ReplayData) -> dict[str, pd.Series]:
    """Daily returns of each of :data:`BENCHMARKS` over the replayed sessions, bought and held
    from the close of the session before the first: the universe's names with a close that day
    in equal amounts, and SPY. A benchmark without the closes it needs is left out."""
    before, _ = SessionWindow(data.calendar).before(data.sessions[0], 1)
    last = pd.Timestamp(data.sessions[-1])
    out = {}
    names = universe_closes(data)
    names = names.loc[(names.index >= before) & (names.index <= last)]
    if len(names) > 1 and before in names.index:
        out["equal_weight"] = buy_and_hold_returns(names.loc[:, names.loc[before].notna()])
    if "spy" in data.macro.columns:
        spy = data.macro["spy"].dropna()
        spy = spy.loc[(spy.index >= before) & (spy.index <= last)]
        if len(spy) > 1 and spy.index[0] == before:
            out["spy"] = buy_and_hold_returns(spy.to_frame())
    return out


@dataclass(frozen=True)
class BenchmarkComparison:
    """A buy-and-hold benchmark over the backtest's window: its own summary, and the
    strategy's annualised excess return over it (a fraction a year) with its t-statistic."""

    summary: PerformanceSummary
    excess_return: float
    excess_t: float


@dataclass(frozen=True)
class BacktestStatistics:
    """What a backtest's Sharpe is worth: each benchmark of :data:`BENCHMARKS` that had data,
    the beta to SPY (NaN without it), the bootstrap interval of the Sharpe and the deflated
    Sharpe ratio given ``trials`` configurations tried."""

    benchmarks: dict[str, BenchmarkComparison]
    beta_spy: float
    sharpe_interval: SharpeInterval
    deflated_sharpe: float
    trials: int


def backtest_statistics(
    result: BacktestResult,
    data: ReplayData,
    trials: int = 1,
    trial_sharpes: Sequence[float] | None = None,
    seed: int = 0,
) -> BacktestStatistics:
    """The statistics of ``result`` (replayed on ``data``): benchmarks on the same sessions,
    beta to SPY, excess returns and t-statistics, a seeded 95% stationary-bootstrap interval
    of the Sharpe and the deflated Sharpe ratio after ``trials`` configurations with annualised
    Sharpes ``trial_sharpes`` (the calibration's sweep; 1 and None without one)."""
    net = result.daily["net_return"]
    # like for like: a benchmark missing a close on a replayed session is left out
    aligned = {name: r.reindex(net.index) for name, r in benchmark_returns(data).items()}
    aligned = {name: r for name, r in aligned.items() if not r.isna().any()}
    comparisons = {}
    for name, returns in aligned.items():
        excess = excess_return(net, returns)
        comparisons[name] = BenchmarkComparison(
            summarise(returns), excess.annualised, excess.t_stat
        )
    return BacktestStatistics(
        benchmarks=comparisons,
        beta_spy=beta(net, aligned["spy"]) if "spy" in aligned else math.nan,
        sharpe_interval=sharpe_interval(net, seed=seed),
        deflated_sharpe=deflated_sharpe_ratio(net, trials, trial_sharpes),
        trials=trials,
    )
