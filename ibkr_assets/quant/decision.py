"""One session's decision, from its inputs to the orders: the steps the daily assets
(``risk_model`` to ``proposed_orders``) and the weekly backtest replay both call, so a replayed
day is decided by exactly the code that decides a live one.

1. :func:`close_panel` — the closes the risk model is estimated from;
2. :func:`optimise_targets` — the alpha stage's daily expected returns (``expected_return``), the
   risk model's covariance and scenarios, the current weights and each name's trading costs
   (:func:`trading_costs`: the one cost model from the quoted spread, the 20-session dollar ADV
   and the model's volatility), into target weights
   (:class:`~ibkr_assets.quant.optimiser.PortfolioOptimiser`), clipped to ``max_weight`` so
   solver round-off never trips the gate's exact comparison;
3. :func:`overlay_targets` — the news & sentiment rules (:mod:`.overlay`);
4. :func:`compliance_checks` — the gate (:mod:`.compliance`): liquidity is measured against
   the feature matrix's ``adv``, the 20-session average dollar volume from the daily bars
   (every backend has bars; IB's contract details carry no average volume);
5. :func:`diff_orders` — share quantities from the current position to the targets
   (:func:`~ibkr_assets.quant.orders.propose_orders`), priced off the pre-open quote.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

import numpy as np
import pandas as pd

from ibkr_assets.quant.compliance import CheckResult, ComplianceLimits, evaluate_compliance
from ibkr_assets.quant.costs import CostModel, CostRates, cost_rates, order_cost
from ibkr_assets.quant.optimiser import (
    OptimisationResult,
    OptimiserConfig,
    PortfolioOptimiser,
)
from ibkr_assets.quant.orders import OrderDiff, propose_orders
from ibkr_assets.quant.overlay import OverlayResult, Rule, apply_overlay
from ibkr_assets.quant.risk_model import RiskModel

#: Ex-ante numbers of the optimised portfolio carried by the target frames.
EX_ANTE = ("ex_ante_return", "ex_ante_volatility", "ex_ante_cvar")


def close_panel(daily_bars: pd.DataFrame, symbols: Sequence[str]) -> pd.DataFrame:
    """Daily closes, sessions x symbols, of the symbols that have bars."""
    closes = daily_bars.pivot_table(index="session", columns="symbol", values="close").sort_index()
    return closes.reindex(columns=[s for s in symbols if s in closes.columns])


def sector_map(universe: pd.DataFrame, symbols: Sequence[str]) -> pd.Series:
    """Each symbol's sector from the universe, ``"Unknown"`` where it has none."""
    sectors = universe.drop_duplicates("symbol").set_index("symbol")["sector"]
    return sectors.reindex(list(symbols)).fillna("Unknown")


def quote_prices(quotes: pd.DataFrame) -> pd.DataFrame:
    """The pre-open quotes by symbol (each symbol's first: ``bid``, ``ask``, ``last``,
    ``close``, those the quotes have) with ``price``: the last trade, else the previous close
    (the price the order diff sizes shares at)."""
    first = ~quotes["symbol"].duplicated().to_numpy()
    quote = pd.DataFrame(
        {c: quotes[c].array[first] for c in ("bid", "ask", "last", "close") if c in quotes},
        index=pd.Index(quotes["symbol"].array[first], name="symbol"),
    )
    return quote.assign(price=quote["last"].fillna(quote["close"]))


def first_rows(symbols: pd.Series | pd.Index, names: pd.Index) -> np.ndarray:
    """The position in ``symbols`` (a frame's symbol column) of each of ``names``' first row,
    -1 where it has none: the rows ``frame.drop_duplicates("symbol").set_index("symbol")
    .reindex(names)`` reads, found by one hash lookup instead of copying the frame."""
    keys = pd.Index(symbols.to_numpy())
    first = np.flatnonzero(~keys.duplicated())
    found = keys[first].get_indexer(names)
    return np.append(first, -1)[found]  # -1 (not found) reads the appended -1


def by_symbol(frame: pd.DataFrame, column: str) -> pd.Series:
    """``frame[column]`` of each symbol's first row, indexed by symbol: what
    ``frame.drop_duplicates("symbol").set_index("symbol")[column]`` gives, without copying every
    column of the frame."""
    first = ~frame["symbol"].duplicated().to_numpy()
    symbols = pd.Index(frame["symbol"].array[first], name="symbol")
    return pd.Series(frame[column].array[first], index=symbols, name=column)


def column_at(frame: pd.DataFrame, column: str, rows: np.ndarray) -> np.ndarray:
    """``frame[column]`` as float64 at positions ``rows`` (:func:`first_rows`), NaN at -1."""
    values = frame[column].to_numpy(dtype="float64", na_value=np.nan)
    return np.append(values, np.nan)[rows]


def cost_inputs(
    symbols: Sequence[str], quotes: pd.DataFrame, features: pd.DataFrame, model: RiskModel
) -> pd.DataFrame:
    """The cost model's inputs of ``symbols`` (index), NaN where unknown: ``price`` (USD,
    :func:`quote_prices`'s: the last trade, else the previous close), ``half_spread`` (half the
    quoted ``spread``, or of ``ask − bid`` where the quotes carry none; USD per share), ``adv``
    (the feature matrix's 20-session average dollar volume, USD) and ``vol`` (the risk model's
    daily volatility, fraction). Each symbol's first quote and feature row."""
    names = pd.Index([str(s) for s in symbols], dtype="object")
    quoted = first_rows(quotes["symbol"], names)
    last, close = column_at(quotes, "last", quoted), column_at(quotes, "close", quoted)
    if "spread" in quotes:
        spread = column_at(quotes, "spread", quoted)
    else:
        spread = column_at(quotes, "ask", quoted) - column_at(quotes, "bid", quoted)
    vol = model.daily_volatility()
    return pd.DataFrame(
        {
            "price": np.where(np.isnan(last), close, last),
            "half_spread": spread / 2,
            "adv": column_at(features, "adv", first_rows(features["symbol"], names)),
            "vol": vol.reindex(names).to_numpy(dtype="float64"),
        },
        index=names,
        dtype="float64",
    )


def trading_costs(
    costs: CostModel, inputs: pd.DataFrame, nav: float, month_shares: float = 0.0
) -> tuple[CostRates, list[str]]:
    """Each name's trading costs for a book of ``nav`` USD
    (:func:`~ibkr_assets.quant.costs.cost_rates`) from its ``inputs`` (:func:`cost_inputs` of
    the risk model's names). Returns the rates of the names with every input, and the names left
    out (no two-sided quote, price or ADV): the optimiser charges those its flat
    ``turnover_cost``."""
    values = inputs[["price", "half_spread", "adv", "vol"]].to_numpy()
    price, half_spread, adv, vol = values.T
    usable = np.isfinite(values).all(axis=1) & (price > 0) & (adv > 0)
    usable &= (half_spread >= 0) & (vol >= 0)
    known = inputs.index[usable]
    price, half_spread, adv, vol = (pd.Series(x[usable], index=known) for x in values.T)
    rates = cost_rates(costs, price, half_spread, adv, vol, nav, month_shares)
    return rates, [str(s) for s in inputs.index[~usable]]


#: The model's cost of each order (:func:`order_costs`), USD but ``cost_bp``.
ORDER_COST_COLUMNS = ("cost_commission", "cost_spread", "cost_impact", "cost_total", "cost_bp")


def order_costs(
    costs: CostModel, orders: pd.DataFrame, inputs: pd.DataFrame, month_shares: float = 0.0
) -> pd.DataFrame:
    """The one cost model's expected cost of each of ``orders`` (``symbol``, ``action`` BUY or
    SELL, ``quantity`` shares, ``mid`` USD per share), on ``orders``' index: the
    :data:`ORDER_COST_COLUMNS` — :func:`~ibkr_assets.quant.costs.order_cost`'s commission,
    spread and impact and their sum in USD, and the sum in basis points of ``quantity × mid``.
    ``inputs``: :func:`cost_inputs` of the orders' symbols; the order is priced at its ``mid``
    (the ticket's notional). A name without a volatility is charged the median of the others'
    (an unmodelled holding being sold; the backtest's choice too, a modelling choice); without a
    half spread its spread, and without an ADV its impact, is NaN, and so is its total: unknown,
    never 0."""
    rows = []
    vol = inputs["vol"]
    median_vol = float(vol.median()) if vol.notna().any() else math.nan
    for order in orders.itertuples():
        symbol = str(order.symbol)
        got = inputs.loc[symbol] if symbol in inputs.index else pd.Series(math.nan, inputs.columns)
        half, adv, sigma = (float(got[k]) for k in ("half_spread", "adv", "vol"))
        sigma = sigma if math.isfinite(sigma) else median_vol
        price, shares = float(order.mid), float(order.quantity)
        spread_known = math.isfinite(half) and half >= 0
        impact_known = math.isfinite(adv) and adv > 0 and math.isfinite(sigma) and sigma >= 0
        cost = order_cost(
            costs,
            shares,
            price,
            half if spread_known else 0.0,
            adv / price if impact_known else 1.0,
            sigma if impact_known else 0.0,
            month_shares,
            sell=order.action == "SELL",
        )
        spread = cost.spread if spread_known else math.nan
        impact = cost.impact if impact_known else math.nan
        total = cost.commission + spread + impact
        notional = shares * price
        rows.append(
            (
                cost.commission,
                spread,
                impact,
                total,
                total / notional * 1e4 if notional > 0 else math.nan,
            )
        )
    return pd.DataFrame(rows, index=orders.index, columns=list(ORDER_COST_COLUMNS), dtype="float64")


#: One row per trade of :func:`trade_economics`.
TRADE_ECONOMICS_COLUMNS = (
    "symbol",
    "trade_weight",
    "notional",
    "expected_return",
    "risk",
    "cost",
    "net",
)


def trade_economics(
    weights: pd.Series,
    current: pd.Series,
    expected_returns: pd.Series,
    inputs: pd.DataFrame,
    costs: CostModel,
    nav: float,
) -> pd.DataFrame:
    """What each trade from ``current`` to ``weights`` (fractions of ``nav`` USD, by symbol) is
    expected to earn, risk and cost over the holding period ``H``
    (:attr:`~ibkr_assets.quant.costs.CostModel.holding_period_sessions`), one row per name whose
    weight changes (:data:`TRADE_ECONOMICS_COLUMNS`, USD but ``trade_weight``): ``trade_weight``
    ``Δw``; ``notional`` ``|Δw|·nav``; ``expected_return`` ``E[r]·Δw·nav·H`` from the alpha
    stage's daily ``expected_returns`` (0 for a name without one); ``risk`` the trade's own
    one-σ move over the period, ``σ·sqrt(H)·|Δw|·nav`` (``σ`` the daily volatility of
    ``inputs``, :func:`cost_inputs`; stand-alone, not the marginal contribution to the book's
    risk); ``cost`` the order's :func:`order_costs` total at the quoted price (NaN where an input
    is missing); ``net`` ``expected_return − cost``. Largest notional first, ties by symbol."""
    names = weights.index.union(current.index)
    target = weights.reindex(names).fillna(0.0)
    held = current.reindex(names).fillna(0.0)
    delta = (target - held)[lambda d: d != 0]
    if delta.empty:
        return pd.DataFrame(columns=list(TRADE_ECONOMICS_COLUMNS)).astype(
            {c: "float64" for c in TRADE_ECONOMICS_COLUMNS[1:]} | {"symbol": "string"}
        )
    hold = costs.holding_period_sessions
    notional = delta.abs() * nav
    known = inputs.reindex(delta.index)
    orders = pd.DataFrame(
        {
            "symbol": delta.index,
            "action": np.where(delta > 0, "BUY", "SELL"),
            "quantity": (notional / known["price"]).to_numpy(),
            "mid": known["price"].to_numpy(),
        }
    )
    priced = orders["mid"].gt(0) & np.isfinite(orders["quantity"])
    cost = pd.Series(math.nan, index=orders.index)
    if priced.any():
        cost[priced] = order_costs(costs, orders[priced], inputs)["cost_total"]
    expected = expected_returns.reindex(delta.index).fillna(0.0) * delta * nav * hold
    frame = pd.DataFrame(
        {
            "symbol": delta.index.astype(str),
            "trade_weight": delta.to_numpy(),
            "notional": notional.to_numpy(),
            "expected_return": expected.to_numpy(),
            "risk": (known["vol"] * math.sqrt(hold) * notional).to_numpy(),
            "cost": cost.to_numpy(),
        }
    )
    frame["net"] = frame["expected_return"] - frame["cost"]
    frame = frame.astype({"symbol": "string"})
    return frame.sort_values("notional", ascending=False, kind="stable", ignore_index=True)


def optimise_targets(
    alpha_scores: pd.DataFrame,
    model: RiskModel,
    sectors: pd.Series,
    current: pd.Series,
    config: OptimiserConfig,
    optimiser: PortfolioOptimiser | None = None,
    costs: CostRates | None = None,
) -> tuple[pd.DataFrame, OptimisationResult, list[str]]:
    """The optimiser's target weights for the risk model's symbols, maximising the alpha
    stage's ``expected_return`` (daily, fraction) of ``alpha_scores`` net of risk and the
    trading ``costs`` (:func:`trading_costs`; None: the config's flat ``turnover_cost``).

    Returns the target frame (``symbol, sector, alpha_score, current_weight, target_weight``,
    ``top_drivers`` when the scores name them, and the :data:`EX_ANTE` numbers), the solver
    result, and the held symbols the model cannot trade (they keep no target). ``optimiser``
    is a compiled optimiser of the same symbols to re-solve with this model's risk (what the
    backtest does every day); without it one is built.
    """
    symbols = model.symbols
    names = pd.Index(symbols, dtype="object")
    if alpha_scores["symbol"].duplicated().any():
        repeated = alpha_scores["symbol"][alpha_scores["symbol"].duplicated()].unique().tolist()
        raise ValueError(f"the alpha scores hold symbols more than once: {repeated[:10]}")
    scored = first_rows(alpha_scores["symbol"], names)  # -1: not scored, alpha 0

    def scores(column: str) -> np.ndarray:
        values = column_at(alpha_scores, column, scored)
        return np.where(np.isnan(values), 0.0, values)

    alpha, expected = scores("alpha_score"), scores("expected_return")
    sectors = sectors.reindex(symbols).fillna("Unknown")
    w0 = current.reindex(symbols).fillna(0.0)
    modelled = set(symbols)
    unmodelled = sorted(str(s) for s, w in current.items() if w != 0 and s not in modelled)
    if optimiser is None:
        optimiser = PortfolioOptimiser.from_risk_model(model, config, sectors)
    else:
        optimiser.update_model(model)
    result = optimiser.solve(pd.Series(expected, index=names), w0, costs)
    target = result.weights.reindex(symbols).to_numpy(dtype="float64")
    columns = {
        "symbol": symbols,
        "sector": sectors.to_numpy(),
        "alpha_score": alpha,
        "current_weight": w0.to_numpy(),
        "target_weight": np.clip(target, -config.max_weight, config.max_weight),
    }
    if "top_drivers" in alpha_scores:
        drivers = alpha_scores["top_drivers"].astype("string").fillna("").to_numpy(dtype=object)
        columns["top_drivers"] = pd.array(np.append(drivers, "")[scored], dtype="string")
    columns |= {
        "ex_ante_return": float(result.expected_return),
        "ex_ante_volatility": float(result.volatility),
        "ex_ante_cvar": float(result.cvar),
    }
    return pd.DataFrame(columns), result, unmodelled


def overlay_targets(
    targets: pd.DataFrame,
    rules: list[Rule],
    features: pd.DataFrame,
    headlines: pd.DataFrame,
    as_of: datetime | pd.Timestamp,
) -> tuple[pd.DataFrame, OverlayResult]:
    """``targets`` with ``weight`` after the news rules and, per symbol, the rules that fired
    (``override_rule``) and why (``override_reason``)."""
    result = apply_overlay(
        pd.Series(
            targets["target_weight"].to_numpy(),
            index=pd.Index(targets["symbol"].array, name="symbol"),
            name="target_weight",
        ),
        rules,
        sentiment=by_symbol(features, "sentiment_z") if "sentiment_z" in features else None,
        headlines=headlines,
        as_of=as_of,
    )
    rules_of: dict[str, list[str]] = {}
    reasons_of: dict[str, list[str]] = {}
    for o in result.overrides:  # in the order applied
        rules_of.setdefault(o.symbol, []).append(o.rule)
        reasons_of.setdefault(o.symbol, []).append(o.reason)
    symbols = targets["symbol"].astype(str).tolist()
    rule, reason = [""] * len(symbols), [""] * len(symbols)
    for i, s in enumerate(symbols):
        if s in rules_of:
            rule[i], reason[i] = "; ".join(rules_of[s]), "; ".join(reasons_of[s])
    frame = targets.assign(
        weight=result.weights.reindex(symbols).to_numpy(dtype="float64"),
        override_rule=pd.array(rule, dtype="string"),
        override_reason=pd.array(reason, dtype="string"),
    )
    return frame, result


def compliance_checks(
    weights: pd.Series,
    current: pd.Series,
    model: RiskModel,
    limits: ComplianceLimits,
    universe: pd.DataFrame,
    features: pd.DataFrame,
    net_liquidation: float,
) -> list[CheckResult]:
    """Every check of the gate for the day's final weights (one-day VaR from the model: the
    covariance of the names held, the others' weights being 0); each order's notional is
    compared with the symbol's 20-session average dollar volume."""
    dollar_adv = by_symbol(features, "adv").astype("float64")
    modelled = set(model.symbols)
    held = [s for s in weights.index[weights.to_numpy() != 0] if s in modelled]
    return evaluate_compliance(
        weights,
        current,
        model.scenarios,
        model.daily_cov(held),
        limits,
        sectors=by_symbol(universe, "sector"),
        adv=dollar_adv.dropna(),
        net_liquidation=net_liquidation,
    )


def diff_orders(
    held_shares: pd.Series,
    weights: pd.Series,
    net_liquidation: float,
    quotes: pd.DataFrame,
    universe: pd.DataFrame,
    *,
    min_notional: float,
    even_lots: bool,
    limit_spread_fraction: float,
    order_type: Literal["LMT", "MKT"],
) -> OrderDiff:
    """The orders from ``held_shares`` to the non-zero ``weights`` of ``net_liquidation``,
    priced off the pre-open quotes (:func:`quote_prices`); symbols held without a target are
    sold out."""
    return propose_orders(
        held_shares,
        weights[weights != 0],
        net_liquidation,
        quote_prices(quotes),
        lot_sizes=by_symbol(universe, "lot_size"),
        min_notional=min_notional,
        even_lots=even_lots,
        limit_spread_fraction=limit_spread_fraction,
        order_type=order_type,
    )
