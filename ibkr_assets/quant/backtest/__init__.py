"""Backtest replay: the daily decision re-run on every session of a past window, with the book
carried from day to day, trading costs paid, and the result scored.

**Same code as the live job.** Each replayed session is decided by the functions the daily
assets call: the feature matrix (:func:`~ibkr_assets.quant.features.assemble_feature_matrix`),
the signals' evidence (:mod:`ibkr_assets.quant.evidence`), the alpha scores and their
expected returns (:func:`~ibkr_assets.quant.alpha.compute_alpha_scores`) with the macro regime
(:func:`~ibkr_assets.quant.macro.latest_regime`), the risk model
(:func:`~ibkr_assets.quant.risk_model.build_risk_model`), then the optimiser, the news overlay,
the compliance gate and the order diff of :mod:`ibkr_assets.quant.decision`. Only the data
access differs: the window's bars, pre-open quotes, statements, forward EPS, headlines and
macro gauges are fetched once (:class:`ReplayData`) and cut to what was known at each day's
run time, 14:00 Bucharest (07:00 New York) — exactly the cut the ingest assets make:

* bars: the ``history_sessions`` sessions before the day (technical indicators are computed
  once per symbol over the whole window and read at each day's last known bar,
  :func:`~ibkr_assets.quant.technical.technical_history`); the risk model's closes likewise;
* statements filed before the session; that session's forward EPS and pre-open quote;
* headlines before the run time: the last ``headline_hours`` (at most ``headlines_per_symbol``
  per name) and the ``headline_history_days`` before them;
* the macro gauges of the ``macro_sessions`` sessions before the day.

**The book.** The replay starts in cash (``initial_capital``). Before the open of session
``t`` the book is valued at the previous close, which gives the current weights the optimiser
starts from; the targets pass the overlay and the gate — a day the gate blocks trades
nothing, as the live job sends no ticket — and the orders are the live order stages': the
order diff (``min_notional``; whole round lots at each name's price with ``even_lots``, IB's
tiered lots passed in), then the what-if size-down while the account's Reg-T initial margin
would fail (:mod:`.trading`). The orders fill as the paper exchange fills DAY orders sent
before the open (:mod:`.fills`): market and marketable limits at the open, paying the spread
and impact; other limits at their limit only if the day's range reaches them; large orders in
part (a participation share of the volume traded at or through the limit); the rest expires.
Every fill's commission, spread and impact come from one cost function passed in
(:class:`.trading.Execution`). The book is marked at the close.

**Scoring.** Daily net returns after commission, spread and impact give the equity curve,
Sharpe, Sortino, maximum drawdown and hit rate (:mod:`ibkr_assets.quant.performance`); a
session's turnover is the notional filled (both sides) over the pre-open NAV, reported as the
one-side average without the first session. :func:`backtest_statistics` sets the result against the
window's buy-and-hold benchmarks — the universe's names in equal amounts and SPY, both bought at
the close before the first session — with the beta to SPY, the annualised excess return over
each benchmark and its t-statistic, a stationary-bootstrap 95% interval of the Sharpe and the
deflated Sharpe ratio given the configurations tried (each one function of
:mod:`ibkr_assets.quant.performance`).

**Evidence.** Each replayed day's signal weights, signs and expected-return scale come from
the signals' daily rank ICs of the sessions before it (:func:`signal_panel`, read by
:func:`~ibkr_assets.quant.evidence.evidence_at`), measured over a warm-up before the first
replayed session and over the window itself, as the daily job's ``signal_evidence`` does.

**Calibration** (:func:`calibrate`, optional): walk-forward over at least 24 months, how the
evidence is read (window, |t| threshold, shrinkage) is chosen on each trailing year and tested
on the next quarter against the configured reading; the choice is kept only when the paired
out-of-sample daily differences have a Newey–West t of 2 or more.

**Speed.** The day's inputs (features, alpha, risk model) do not depend on the book, so
:class:`DayWorkers` computes them in worker processes — started while the main process loads
the data, handed it while it measures the evidence — as the main process replays the book in
order. The optimiser is built
once for the universe and re-solved every day with that day's alpha, current weights,
covariance and scenarios (a working set of names handed to HiGHS directly, or the cvxpy
problem's parameters), so a day costs one or two solver calls — the same problem, size and
solver as the live job.
"""

from __future__ import annotations

from ibkr_assets.quant.backtest.book import BacktestResult, Progress, simulate
from ibkr_assets.quant.backtest.calibration import (
    Calibration,
    Fold,
    calibrate,
    candidate_evidence,
)
from ibkr_assets.quant.backtest.day_workers import DayWorkers, prepare_days
from ibkr_assets.quant.backtest.evidence_panel import signal_panel
from ibkr_assets.quant.backtest.replay import (
    DayInputs,
    ReplayData,
    ReplaySettings,
    prepare_day,
    technical_windows,
)
from ibkr_assets.quant.backtest.statistics import (
    BENCHMARKS,
    BacktestStatistics,
    BenchmarkComparison,
    backtest_statistics,
    benchmark_returns,
)
from ibkr_assets.quant.backtest.trading import TRADE_COLUMNS, Execution

__all__ = [
    "BENCHMARKS",
    "TRADE_COLUMNS",
    "BacktestResult",
    "BacktestStatistics",
    "BenchmarkComparison",
    "Calibration",
    "DayInputs",
    "DayWorkers",
    "Execution",
    "Fold",
    "Progress",
    "ReplayData",
    "ReplaySettings",
    "backtest_statistics",
    "benchmark_returns",
    "calibrate",
    "candidate_evidence",
    "prepare_day",
    "prepare_days",
    "signal_panel",
    "simulate",
    "technical_windows",
]
