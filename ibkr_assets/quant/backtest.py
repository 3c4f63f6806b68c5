"""Backtest replay: the daily decision re-run on every session of a past window, with the book
carried from day to day, trading costs paid, and the result scored.

**Same code as the live job.** Each replayed session is decided by the functions the daily
assets call: the feature matrix (:func:`~ibkr_assets.quant.features.assemble_feature_matrix`),
the alpha blend (:func:`~ibkr_assets.quant.alpha.compute_alpha_scores`) with the macro regime
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
nothing, as the live job sends no ticket — and the order diff sizes whole-share orders
(``min_notional`` and lots as live). Orders fill at the session's open, buys above and sells
below it by half the pre-open quoted spread plus ``slippage_bps`` of market impact, and pay
the broker's commission (a callable, e.g. IB's tiered schedule of the simulator, with the
month-to-date share volume). The book is marked at the close. The margin what-if and
partial fills of the live order stages are not modelled (the book is long-only and at most
95% invested, so margin never binds).

**Scoring.** Daily net returns after commission and slippage give the equity curve, Sharpe,
Sortino, maximum drawdown and hit rate (:mod:`ibkr_assets.quant.performance`); a session's
turnover is the traded notional (both sides) over the pre-open NAV, reported as the one-side
average without the first session. :func:`backtest_statistics` sets the result against the
window's buy-and-hold benchmarks — the universe's names in equal amounts and SPY, both bought at
the close before the first session — with the beta to SPY, the annualised excess return over
each benchmark and its t-statistic, a stationary-bootstrap 95% interval of the Sharpe and the
deflated Sharpe ratio given the configurations tried (each one function of
:mod:`ibkr_assets.quant.performance`).

**Calibration** (:func:`calibrate`, optional): the blend weights of the signal blocks are
tuned on the first part of the window (a small grid around the configured weights, each
replayed in full) and kept only if the held-out rest of the window has a higher Sharpe with
them than with the configured weights, both replayed from cash.

**Speed.** The day's inputs (features, alpha, risk model) do not depend on the book, so
:func:`prepare_days` computes them in worker processes while the main process replays the
book in order. The optimiser is compiled once for the universe and re-solved every day with
that day's alpha, current weights, covariance and scenarios (cvxpy parameters), so a day
costs one solver call — the same problem, size and solver as the live job.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from multiprocessing import get_context
from typing import Literal

import numpy as np
import pandas as pd

from ibkr_assets.quant.alpha import AlphaWeights, compute_alpha_scores
from ibkr_assets.quant.compliance import ComplianceLimits
from ibkr_assets.quant.decision import (
    close_panel,
    compliance_checks,
    diff_orders,
    optimise_targets,
    overlay_targets,
    sector_map,
)
from ibkr_assets.quant.features import FeatureInputs, assemble_feature_matrix
from ibkr_assets.quant.macro import latest_regime, macro_features
from ibkr_assets.quant.optimiser import OptimiserConfig, PortfolioOptimiser
from ibkr_assets.quant.overlay import Rule
from ibkr_assets.quant.performance import (
    PerformanceSummary,
    SharpeInterval,
    beta,
    buy_and_hold_returns,
    deflated_sharpe_ratio,
    equity_curve,
    excess_return,
    sharpe_interval,
    summarise,
)
from ibkr_assets.quant.risk_model import RiskModel, build_risk_model
from ibkr_assets.quant.sentiment import split_headlines
from ibkr_assets.quant.technical import technical_history

#: commission(shares, value_usd, sell, month_to_date_shares) -> USD
Commission = Callable[[float, float, bool, float], float]
#: progress(sessions_done, sessions_total, session)
Progress = Callable[[int, int, date], None]


@dataclass(frozen=True)
class ReplayData:
    """Everything a replay reads, fetched once for the window.

    ``universe``: symbol, conid, sector, industry, lot_size, adv (shares). ``bars``: long daily
    OHLCV (symbol, session, open, high, low, close, volume) from ``history_sessions`` before the
    first replayed session to the last. ``quotes``: each session's pre-open snapshot (the
    ``quotes`` asset's columns plus ``session``). ``statements``: the ``fundamentals`` asset's
    long statements, all filed before the last session. ``forward_eps``: session, symbol,
    forward_eps. ``headlines``: symbol, time (UTC), headline, polarity. ``macro``: the gauge
    closes, index session. ``sessions``: the replayed sessions; ``decision_times``: each one's
    run time (UTC); ``calendar``: every exchange session from the first bar to the last.
    """

    universe: pd.DataFrame
    bars: pd.DataFrame
    quotes: pd.DataFrame
    statements: pd.DataFrame
    forward_eps: pd.DataFrame
    headlines: pd.DataFrame
    macro: pd.DataFrame
    sessions: list[date]
    decision_times: list[pd.Timestamp]
    calendar: list[date]


@dataclass(frozen=True)
class ReplaySettings:
    """The live job's settings the replay uses (``PipelineConfig`` and ``DecideConfig`` field
    names), plus the book's starting capital and the execution costs: ``slippage_bps`` of
    impact on every fill, and half the quoted spread when ``pay_spread``."""

    optimiser: OptimiserConfig
    limits: ComplianceLimits
    rules: list[Rule]
    weights: AlphaWeights = field(default_factory=AlphaWeights)
    alpha_scale: float = 0.01
    scenario_sessions: int = 504
    history_sessions: int = 600
    macro_sessions: int = 260
    headline_hours: float = 24.0
    headlines_per_symbol: int = 50
    headline_history_days: int = 30
    min_notional: float = 500.0
    even_lots: bool = False
    limit_spread_fraction: float = 0.25
    order_type: Literal["LMT", "MKT"] = "LMT"
    initial_capital: float = 1_000_000.0
    slippage_bps: float = 5.0
    pay_spread: bool = True


@dataclass(frozen=True)
class DayInputs:
    """What the live job knows at a session's run time: the feature matrix, the macro
    adjustment, the alpha scores, the risk model, the pre-open quotes and the last day's
    headlines (for the overlay)."""

    session: date
    as_of: pd.Timestamp
    features: pd.DataFrame
    macro_adjustment: float
    alpha: pd.DataFrame
    model: RiskModel
    quotes: pd.DataFrame
    headlines: pd.DataFrame


@dataclass(frozen=True)
class BacktestResult:
    """One replay: per session (index) ``nav`` at the close, ``gross_return`` (before costs),
    ``cost`` (commission + slippage, fraction of the pre-open NAV), ``net_return``,
    ``equity`` and ``drawdown`` (from 1), ``turnover``, ``commission`` and ``slippage`` (USD),
    ``orders``, ``gate_passed``, ``names_held``, ``gross_exposure``, ``solve_seconds`` (the
    optimiser's solver call); the final weights of each
    session's decision (after the overlay); the summary; the blend weights used."""

    daily: pd.DataFrame
    targets: dict[date, pd.Series]
    summary: PerformanceSummary
    weights: AlphaWeights


# -- the day's inputs ---------------------------------------------------------------------------


class _Window:
    """Index arithmetic on the data's session calendar."""

    def __init__(self, calendar: Sequence[date]) -> None:
        self.days = np.array([np.datetime64(d, "D") for d in calendar])

    def before(self, session: date, count: int) -> tuple[pd.Timestamp, pd.Timestamp]:
        """First and last of the ``count`` sessions strictly before ``session``."""
        i = int(np.searchsorted(self.days, np.datetime64(session, "D")))
        if i < count:
            raise ValueError(f"the data holds {i} sessions before {session}, {count} are needed")
        return pd.Timestamp(self.days[i - count]), pd.Timestamp(self.days[i - 1])


def technical_windows(data: ReplayData, settings: ReplaySettings) -> list[pd.DataFrame]:
    """The technical features of every replayed session (bars of its history window)."""
    window = _Window(data.calendar)
    spans = [window.before(s, settings.history_sessions) for s in data.sessions]
    return technical_history(data.bars, spans)


def _closes(data: ReplayData) -> pd.DataFrame:
    return close_panel(data.bars, sorted(data.universe["symbol"].astype(str)))


def prepare_day(
    data: ReplayData,
    i: int,
    technical: pd.DataFrame,
    settings: ReplaySettings,
    closes: pd.DataFrame | None = None,
) -> DayInputs:
    """The inputs of replayed session ``i`` as the live job would see them at its run time
    (``technical`` from :func:`technical_windows`; ``closes`` the wide close panel of the
    bars, computed here when not given)."""
    session, at = data.sessions[i], data.decision_times[i]
    window = _Window(data.calendar)
    day = pd.Timestamp(session)
    quotes = data.quotes.loc[data.quotes["session"] == day].drop(columns="session")
    eps = data.forward_eps.loc[data.forward_eps["session"] == day, ["symbol", "forward_eps"]]
    # as the fundamentals asset: forward EPS only for names with a statement filed before
    filed = data.statements.loc[
        pd.to_datetime(data.statements["report_date"], cache=False) < day, "symbol"
    ]
    eps = eps.loc[eps["symbol"].isin(set(filed.astype(str)))]
    history_start = at - pd.Timedelta(hours=settings.headline_hours)
    history_start -= pd.Timedelta(days=settings.headline_history_days)
    news = data.headlines.loc[
        (data.headlines["time"] >= history_start) & (data.headlines["time"] < at)
    ]
    recent, older = split_headlines(
        news, at, settings.headline_hours, settings.headlines_per_symbol
    )
    news = pd.concat([older, recent], ignore_index=True)
    inputs = FeatureInputs(quotes, data.statements, eps, news if len(news) else None, data.universe)
    features = assemble_feature_matrix(
        technical, inputs, at, sentiment_history_days=settings.headline_history_days
    )
    first_macro, _ = window.before(session, settings.macro_sessions)
    macro = data.macro.loc[(data.macro.index >= first_macro) & (data.macro.index < day)]
    regime = latest_regime(macro_features(macro))
    alpha = compute_alpha_scores(features, settings.weights, regime.macro_adjustment)
    first, last = window.before(session, settings.history_sessions)
    panel = _closes(data) if closes is None else closes
    panel = panel.loc[(panel.index >= first) & (panel.index <= last)]
    panel = panel.dropna(how="all").dropna(axis=1, how="all")
    symbols = [s for s in alpha["symbol"] if s in panel.columns]
    model = build_risk_model(panel.loc[:, symbols], scenario_sessions=settings.scenario_sessions)
    return DayInputs(
        session=session,
        as_of=at,
        features=features,
        macro_adjustment=regime.macro_adjustment,
        alpha=alpha,
        model=model,
        quotes=quotes,
        headlines=recent,
    )


_WORKER: dict[str, object] = {}


def _init_worker(data: ReplayData, technical: list[pd.DataFrame], settings: ReplaySettings) -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # two cores: one solving in the parent, one preparing here
    _WORKER.update(data=data, technical=technical, settings=settings, closes=_closes(data))


def _prepare_in_worker(i: int) -> DayInputs:
    return prepare_day(
        _WORKER["data"],  # type: ignore[arg-type]
        i,
        _WORKER["technical"][i],  # type: ignore[index]
        _WORKER["settings"],  # type: ignore[arg-type]
        _WORKER["closes"],  # type: ignore[arg-type]
    )


def prepare_days(
    data: ReplayData, settings: ReplaySettings, workers: int = 1
) -> Iterator[DayInputs]:
    """Every replayed session's :class:`DayInputs`, in order; with ``workers`` > 0 they are
    computed in that many worker processes (started fresh, ``spawn``) while the caller consumes
    them, with 0 in this process."""
    technical = technical_windows(data, settings)
    if workers <= 0:
        closes = _closes(data)
        for i in range(len(data.sessions)):
            yield prepare_day(data, i, technical[i], settings, closes)
        return
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=get_context("spawn"),
        initializer=_init_worker,
        initargs=(data, technical, settings),
    ) as pool:
        yield from pool.map(_prepare_in_worker, range(len(data.sessions)))


# -- the book -----------------------------------------------------------------------------------


def _price_panel(data: ReplayData, column: str) -> pd.DataFrame:
    wide = data.bars.pivot_table(index="session", columns="symbol", values=column).sort_index()
    return wide.ffill()


def simulate(
    days: Iterable[DayInputs],
    data: ReplayData,
    settings: ReplaySettings,
    commission: Commission,
    weights: AlphaWeights | None = None,
    progress: Progress | None = None,
    total: int | None = None,
) -> BacktestResult:
    """Replay the book over ``days`` (in session order, as :func:`prepare_days` yields them;
    consumed once, so the replay starts before the last day is prepared) from cash.

    With ``weights`` other than the settings' the alpha scores are re-blended from each day's
    feature matrix with them (the calibration's candidates). ``total`` is the number of days
    for ``progress`` (default ``len(days)``).
    """
    if total is None:
        total = len(days)  # type: ignore[arg-type]
    blend = weights or settings.weights
    opens, closes = _price_panel(data, "open"), _price_panel(data, "close")
    cash = settings.initial_capital
    shares = pd.Series(dtype="float64")
    optimiser: PortfolioOptimiser | None = None
    month, month_shares = None, 0.0  # IB's tiers count the month's shares
    rows, targets = [], {}
    for k, day in enumerate(days):
        now = pd.Timestamp(day.session)
        if now not in closes.index:
            raise ValueError(f"no bars for the replayed session {day.session}")
        if (now.year, now.month) != month:
            month, month_shares = (now.year, now.month), 0.0
        position = closes.index.get_loc(now)
        previous = closes.iloc[position - 1] if position > 0 else closes.iloc[position] * np.nan
        held = shares[shares != 0]
        value = held * previous.reindex(held.index)
        if value.isna().any():
            raise ValueError(f"{day.session}: no previous close for {value.index[value.isna()]}")
        nav = cash + float(value.sum())
        current = value / nav
        alpha = (
            day.alpha
            if blend == settings.weights
            else compute_alpha_scores(day.features, blend, day.macro_adjustment)
        )
        model = day.model
        if optimiser is None or optimiser.symbols != model.symbols:
            sectors = sector_map(data.universe, model.symbols)
            optimiser = PortfolioOptimiser.from_risk_model(model, settings.optimiser, sectors)
        frame, solved, _ = optimise_targets(
            alpha,
            model,
            sector_map(data.universe, model.symbols),
            current,
            settings.optimiser,
            settings.alpha_scale,
            optimiser,
        )
        final, _ = overlay_targets(frame, settings.rules, day.features, day.headlines, day.as_of)
        final_weights = final.set_index("symbol")["weight"]
        targets[day.session] = final_weights
        checks = compliance_checks(
            final_weights, current, model, settings.limits, data.universe, day.features, nav
        )
        passed = all(c.passed for c in checks)
        paid = slipped = traded = 0.0
        orders = 0
        if passed:
            diff = diff_orders(
                held,
                final_weights,
                nav,
                day.quotes,
                data.universe,
                min_notional=settings.min_notional,
                even_lots=settings.even_lots,
                limit_spread_fraction=settings.limit_spread_fraction,
                order_type=settings.order_type,
            )
            spread = day.quotes.drop_duplicates("symbol").set_index("symbol")
            half = (0.5 * spread["spread"] / spread["mid"]).fillna(0.0) * settings.pay_spread
            for order in diff.orders:
                open_price = float(opens.at[now, order.symbol])
                sign = 1.0 if order.action == "BUY" else -1.0
                cut = float(half.get(order.symbol, 0.0)) + settings.slippage_bps / 1e4
                price = open_price * (1 + sign * cut)
                qty = float(order.quantity)
                fee = commission(qty, qty * price, order.action == "SELL", month_shares)
                cash -= sign * qty * price + fee
                shares[order.symbol] = float(shares.get(order.symbol, 0.0)) + sign * qty
                month_shares += qty
                paid += fee
                slipped += qty * abs(price - open_price)
                traded += qty * open_price
                orders += 1
        held = shares[shares != 0]
        marked = held * closes.loc[now].reindex(held.index)
        end_nav = cash + float(marked.sum())
        cost = (paid + slipped) / nav
        rows.append(
            {
                "session": now,
                "nav": end_nav,
                "gross_return": end_nav / nav - 1 + cost,
                "cost": cost,
                "turnover": traded / nav,
                "commission": paid,
                "slippage": slipped,
                "orders": orders,
                "gate_passed": passed,
                "names_held": int((held != 0).sum()),
                "gross_exposure": float(marked.abs().sum()) / end_nav,
                "solve_seconds": solved.solve_seconds,
            }
        )
        if progress is not None:
            progress(k + 1, total, day.session)
    if not rows:
        raise ValueError("no sessions to replay")
    daily = pd.DataFrame(rows).set_index("session")
    summary = summarise(daily["gross_return"], turnover=daily["turnover"], costs=daily["cost"])
    curve = equity_curve(daily["gross_return"], costs=daily["cost"])
    daily = daily.assign(**{k: curve[k] for k in ("net_return", "equity", "drawdown")})
    return BacktestResult(daily=daily, targets=targets, summary=summary, weights=blend)


# -- statistics ---------------------------------------------------------------------------------

#: The benchmarks :func:`backtest_statistics` compares with: the universe's names in equal
#: amounts, and SPY (the macro gauges' close).
BENCHMARKS = ("equal_weight", "spy")


def benchmark_returns(data: ReplayData) -> dict[str, pd.Series]:
    """Daily returns of each of :data:`BENCHMARKS` over the replayed sessions, bought and held
    from the close of the session before the first: the universe's names with a close that day
    in equal amounts, and SPY. A benchmark without the closes it needs is left out."""
    before, _ = _Window(data.calendar).before(data.sessions[0], 1)
    last = pd.Timestamp(data.sessions[-1])
    out = {}
    names = _closes(data)
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


# -- calibration --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """The outcome of :func:`calibrate`: the configured and the best training weights, the
    training Sharpe of every candidate, the held-out Sharpe of both, and whether the tuned
    weights are kept."""

    configured: AlphaWeights
    tuned: AlphaWeights
    train_sharpe: dict[str, float]
    held_out_sharpe_configured: float
    held_out_sharpe_tuned: float
    kept: bool
    train_sessions: int
    held_out_sessions: int

    @property
    def decision(self) -> str:
        """``kept`` (the tuned weights beat the configured ones on the held-out sessions) or
        ``rejected``."""
        return "kept" if self.kept else "rejected"


def candidate_weights(base: AlphaWeights, tilt: float = 2.0) -> dict[str, AlphaWeights]:
    """The configured weights and, for each block, the same with that block ``tilt`` times
    heavier (a coarse grid that keeps every block in the blend)."""
    out = {"configured": base}
    for block in ("technical", "fundamental", "sentiment", "macro"):
        value = getattr(base, block)
        if value > 0:
            out[f"{block} x{tilt:g}"] = base.model_copy(update={block: value * tilt})
    return out


def calibrate(
    days: Sequence[DayInputs],
    data: ReplayData,
    settings: ReplaySettings,
    commission: Commission,
    train_fraction: float = 2 / 3,
    candidates: dict[str, AlphaWeights] | None = None,
) -> Calibration:
    """Tune the blend weights on the first ``train_fraction`` of ``days`` (best training
    Sharpe among ``candidates``, default :func:`candidate_weights`) and keep them only if the
    held-out rest has a higher Sharpe with them than with the configured weights."""
    split = round(len(days) * train_fraction)
    if split < 2 or len(days) - split < 2:
        raise ValueError(f"{len(days)} sessions are too few to split for calibration")
    grid = candidates or candidate_weights(settings.weights)
    train, test = days[:split], days[split:]
    sharpe = {
        name: simulate(train, data, settings, commission, weights=w).summary.sharpe
        for name, w in grid.items()
    }
    best = max(sharpe, key=lambda n: -math.inf if math.isnan(sharpe[n]) else sharpe[n])
    held_configured = simulate(test, data, settings, commission).summary.sharpe
    held_tuned = (
        held_configured
        if grid[best] == settings.weights
        else simulate(test, data, settings, commission, weights=grid[best]).summary.sharpe
    )
    return Calibration(
        configured=settings.weights,
        tuned=grid[best],
        train_sharpe=sharpe,
        held_out_sharpe_configured=held_configured,
        held_out_sharpe_tuned=held_tuned,
        kept=grid[best] != settings.weights and held_tuned > held_configured,
        train_sessions=len(train),
        held_out_sessions=len(test),
    )
