"""The book carried through the replayed sessions: decide with the live job's code, fill, pay
costs, mark at the close (:func:`simulate`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from ibkr_assets.quant.alpha import AlphaWeights, compute_alpha_scores
from ibkr_assets.quant.backtest.replay import DayInputs, ReplayData, ReplaySettings
from ibkr_assets.quant.decision import (
    compliance_checks,
    diff_orders,
    optimise_targets,
    overlay_targets,
    sector_map,
)
from ibkr_assets.quant.optimiser import PortfolioOptimiser
from ibkr_assets.quant.performance import (
    PerformanceSummary,
    equity_curve,
    summarise,
)

#: commission(shares, value_usd, sell, month_to_date_shares) -> USD
Commission = Callable[[float, float, bool, float], float]
#: progress(sessions_done, sessions_total, session)
Progress = Callable[[int, int, date], None]


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
            alpha.assign(expected_return=alpha["alpha_score"] * settings.alpha_scale),
            model,
            sector_map(data.universe, model.symbols),
            current,
            settings.optimiser,
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
