"""The book carried through the replayed sessions: decide with the live job's code, trade as the
order stages and the paper exchange do (:mod:`~ibkr_assets.quant.backtest.trading`), mark at
the close (:func:`simulate`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import date

import numpy as np
import pandas as pd

from ibkr_assets.quant.alpha import compute_alpha_scores
from ibkr_assets.quant.backtest.replay import DayInputs, ReplayData, ReplaySettings, day_universe
from ibkr_assets.quant.backtest.trading import (
    TRADE_COLUMNS,
    Execution,
    session_bars,
    trade_session,
)
from ibkr_assets.quant.decision import (
    compliance_checks,
    optimise_targets,
    overlay_targets,
    sector_map,
    trading_costs,
)
from ibkr_assets.quant.evidence import EvidenceSettings, ICPanel, evidence_at
from ibkr_assets.quant.movers import replay_movers
from ibkr_assets.quant.optimiser import PortfolioOptimiser
from ibkr_assets.quant.performance import (
    PerformanceSummary,
    equity_curve,
    summarise,
)

#: progress(sessions_done, sessions_total, session)
Progress = Callable[[int, int, date], None]


@dataclass(frozen=True)
class BacktestResult:
    """One replay.

    ``daily``, per session (index): ``nav_open`` (the book at the previous close before the
    session's trades) and ``nav`` (at the close), USD; ``gross_return`` (before costs),
    ``cost`` (commission + spread + impact, fraction of ``nav_open``), ``net_return``,
    ``equity`` and ``drawdown`` (from 1), ``turnover`` (notional filled at the fill prices,
    both sides, over ``nav_open``), ``commission``, ``spread``, ``impact`` and ``slippage``
    (spread + impact) in USD, ``orders`` (sent), ``filled_orders`` (filled at least in part),
    ``gate_passed``, ``names_held``, ``gross_exposure``, ``solve_seconds`` (the optimiser's
    solver call). ``targets``: the final weights of each session's decision (after the
    overlay). ``positions``: the book at each close (session, symbol, shares, close, weight of
    ``nav``). ``trades``: every order sent and its fill
    (:data:`~ibkr_assets.quant.backtest.trading.TRADE_COLUMNS`). The summary; how the evidence
    was read."""

    daily: pd.DataFrame
    targets: dict[date, pd.Series]
    summary: PerformanceSummary
    evidence: EvidenceSettings
    positions: pd.DataFrame
    trades: pd.DataFrame


# -- the book -----------------------------------------------------------------------------------


def _price_panel(data: ReplayData, column: str) -> pd.DataFrame:
    wide = data.bars.pivot_table(index="session", columns="symbol", values=column).sort_index()
    return wide.ffill()


def simulate(
    days: Iterable[DayInputs],
    data: ReplayData,
    settings: ReplaySettings,
    execution: Execution,
    evidence: EvidenceSettings | None = None,
    panel: ICPanel | None = None,
    progress: Progress | None = None,
    total: int | None = None,
) -> BacktestResult:
    """Replay the book over ``days`` (in session order, as :func:`prepare_days` yields them;
    consumed once, so the replay starts before the last day is prepared) from cash.

    Each session trades by ``execution``'s rules (costs, round lots, margin what-if; see
    :func:`~ibkr_assets.quant.backtest.trading.trade_session`). With ``evidence`` other than
    the settings' (the calibration's candidates) each day's evidence is read again from
    ``panel`` (:func:`~.evidence_panel.signal_panel`) with it and the alpha scores re-blended
    from the day's feature matrix. With a ``data.watchlist`` each session decides over the
    watch-list, the names held and the session's movers
    (:func:`~ibkr_assets.quant.movers.replay_movers`: the pre-open scans rebuilt from the previous
    sessions' bars), as the daily job's universe. ``total`` is the number of days for
    ``progress`` (default ``len(days)``).
    """
    if total is None:
        total = len(days)  # type: ignore[arg-type]
    reading = evidence or settings.evidence
    closes = _price_panel(data, "close")
    bars = session_bars(data.bars, data.sessions)
    movers = None
    if data.watchlist is not None:
        movers = replay_movers(
            data.bars,
            [pd.Timestamp(s) for s in data.sessions],
            data.universe.drop_duplicates("symbol").set_index("symbol")["adv"],
            settings.scanner_codes,
            settings.scanner_limit,
            settings.mover_min_change_pct,
            settings.mover_min_volume_ratio,
        )
    cash = settings.initial_capital
    shares = pd.Series(dtype="float64")
    optimiser: PortfolioOptimiser | None = None
    month, month_shares = None, 0.0  # IB's tiers count the month's shares
    rows, targets, positions, trades = [], {}, [], []
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
        if reading != settings.evidence:
            if panel is None:
                raise ValueError("re-reading the evidence needs the signal panel")
            seen = evidence_at(panel, day.session, reading)
            rescored = compute_alpha_scores(
                day.features, seen.weights, seen.composite_ic, day.volatility, day.macro_adjustment
            )
            day = replace(day, evidence=seen, alpha=rescored)
        if movers is not None:
            members = {*data.watchlist, *movers[now], *held.index.astype(str)}
            day = day_universe(day, members)
        alpha = day.alpha
        model = day.model
        if optimiser is None or optimiser.symbols != model.symbols:
            sectors = sector_map(data.universe, model.symbols)
            optimiser = PortfolioOptimiser.from_risk_model(model, settings.optimiser, sectors)
        costs = None
        if execution.cost_model is not None:  # each name's rates, as the daily job charges
            costs, _ = trading_costs(execution.cost_model, day.cost_inputs, nav, month_shares)
        frame, solved, _ = optimise_targets(
            alpha,
            model,
            sectors,
            current,
            settings.optimiser,
            optimiser,
            costs,
        )
        final, _ = overlay_targets(frame, settings.rules, day.features, day.headlines, day.as_of)
        final_weights = pd.Series(  # final.set_index("symbol")["weight"], without the copy
            final["weight"].to_numpy(),
            index=pd.Index(final["symbol"].array, name="symbol"),
            name="weight",
        )
        targets[day.session] = final_weights
        checks = compliance_checks(
            final_weights, current, model, settings.limits, data.universe, day.features, nav
        )
        passed = all(c.passed for c in checks)
        paid = spread = impact = traded = 0.0
        orders = filled = 0
        if passed:
            day_trades = trade_session(
                day.session,
                shares,
                cash,
                nav,
                final_weights,
                previous,
                day.quotes,
                data.universe,
                bars[now],
                day.features,
                model.daily_volatility(),
                month_shares,
                settings,
                execution,
            )
            cash, shares, month_shares = day_trades.cash, day_trades.shares, day_trades.month_shares
            paid, spread, impact = day_trades.commission, day_trades.spread, day_trades.impact
            traded, orders = day_trades.traded, day_trades.orders
            filled = sum(1 for r in day_trades.rows if r["filled"] > 0)
            trades += day_trades.rows
        held = shares[shares != 0]
        close = closes.loc[now].reindex(held.index)
        marked = held * close
        end_nav = cash + float(marked.sum())
        positions.append(
            pd.DataFrame(
                {
                    "session": now,
                    "symbol": held.index.astype(str),
                    "shares": held.to_numpy(),
                    "close": close.to_numpy(),
                    "weight": (marked / end_nav).to_numpy(),
                }
            )
        )
        cost = (paid + spread + impact) / nav
        rows.append(
            {
                "session": now,
                "nav_open": nav,
                "nav": end_nav,
                "gross_return": end_nav / nav - 1 + cost,
                "cost": cost,
                "turnover": traded / nav,
                "commission": paid,
                "spread": spread,
                "impact": impact,
                "slippage": spread + impact,
                "orders": orders,
                "filled_orders": filled,
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
    return BacktestResult(
        daily=daily,
        targets=targets,
        summary=summary,
        evidence=reading,
        positions=pd.concat(positions, ignore_index=True),
        trades=pd.DataFrame(trades, columns=list(TRADE_COLUMNS)),
    )
