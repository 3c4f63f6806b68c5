"""Stage 5 — ``target_weights``: the optimised target portfolio.

Mean-variance-CVaR weights from :mod:`ibkr_assets.quant.optimiser` — maximise alpha·w −
λ_var·w'Σw − λ_cvar·CVaR − trading costs under the gross, per-name, net (cash buffer),
long-only and sector limits of :class:`~ibkr_assets.decide_config.DecideConfig`. Each name's
trading cost is the one cost model's (:func:`~ibkr_assets.quant.decision.trading_costs`: IB's
tiered commission, half the pre-open quoted spread, square-root impact on the 20-session dollar
ADV and the model's volatility) amortised over ``holding_period_sessions``; a name without a
quote or ADV pays the flat ``turnover_cost``. Trades under the no-trade band are not made. Expected
returns are the alpha stage's ``expected_return`` (daily: the composite's trailing IC x the
name's volatility x its standardised score, :mod:`ibkr_assets.quant.evidence`); without
significant evidence they are 0 and the book holds little.
"""

import dagster as dg
import pandas as pd

from ibkr_assets.assets.catalog import Table, decide_asset
from ibkr_assets.assets.ib_rules import ib_cost_model
from ibkr_assets.assets.materialization import listing, preview
from ibkr_assets.assets.partition import with_partition
from ibkr_assets.assets.portfolio import current_weights, net_liquidation
from ibkr_assets.assets.risk_model import risk_model_from_frame
from ibkr_assets.decide_config import DecideConfig
from ibkr_assets.metadata import readable
from ibkr_assets.quant.decision import (
    EX_ANTE,
    cost_inputs,
    optimise_targets,
    sector_map,
    trading_costs,
)

#: What :func:`optimise_targets` returns; the ex-ante numbers are the portfolio's, on every row.
TARGETS = Table(
    {
        "symbol": ("string", "ticker symbol"),
        "sector": ("string", "sector (IB industry)"),
        "alpha_score": ("float64", "the symbol's alpha score, -1 to 1"),
        "current_weight": ("float64", "weight held before the session, fraction of net liq."),
        "target_weight": ("float64", "the optimiser's weight, fraction of net liquidation"),
        "top_drivers": ("string", "the alpha score's five largest contributions"),
        "ex_ante_return": ("float64", "expected 1-day return of the targets, fraction of NAV"),
        "ex_ante_volatility": ("float64", "1-day volatility of the targets, fraction of NAV"),
        "ex_ante_cvar": ("float64", "1-day CVaR (at cvar_alpha, 95%) of the targets, of NAV"),
    }
)


@decide_asset(
    TARGETS,
    stage="5-optimise",
    kinds={"cvxpy"},
    ins={
        "alpha_scores": dg.AssetIn(),
        "risk_model": dg.AssetIn(),
        "portfolio_snapshot": dg.AssetIn(),
        "universe": dg.AssetIn(),
        "quotes": dg.AssetIn(),
        "feature_matrix": dg.AssetIn(),
    },
)
def target_weights(
    context: dg.AssetExecutionContext,
    decide: DecideConfig,
    alpha_scores: pd.DataFrame,
    risk_model: pd.DataFrame,
    portfolio_snapshot: pd.DataFrame,
    universe: pd.DataFrame,
    quotes: pd.DataFrame,
    feature_matrix: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    """The portfolio the optimiser wants for the session: one weight per symbol (fraction of net
    liquidation), with ex-ante return, volatility and CVaR in the metadata."""
    model = risk_model_from_frame(risk_model)
    costs, flat = trading_costs(
        ib_cost_model(decide.holding_period_sessions),
        cost_inputs(model.symbols, quotes, feature_matrix, model),
        net_liquidation(portfolio_snapshot),
    )
    frame, result, unmodelled = optimise_targets(
        alpha_scores,
        model,
        sector_map(universe, model.symbols),
        current_weights(portfolio_snapshot),
        decide.optimiser_config(),
        costs=costs,
    )
    ex_ante = {k: float(frame[k].iloc[0]) for k in EX_ANTE}
    # half spread + commission of a buy, bp, as an order pays it (the optimiser amortises it)
    one_off = costs.buy * decide.holding_period_sessions * 1e4
    names = frame[frame["target_weight"] != 0].sort_values("target_weight", ascending=False)
    return dg.Output(
        with_partition(frame, context.partition_key),
        metadata=readable(
            {
                **ex_ante,
                "names_held": len(names),
                "solver": result.solver,
                "solve_seconds": result.solve_seconds,
                "held_outside_model": listing(unmodelled),
                "median_buy_cost_bp": float(one_off.median()) if len(one_off) else float("nan"),
                "flat_cost_names": listing(flat),
                "no_trade_band_kept": listing(list(result.band_kept)),
                "gross": float(frame["target_weight"].abs().sum()),
                "net": float(frame["target_weight"].sum()),
                "top_weights": preview(names[["symbol", "sector", "target_weight"]], 10),
            }
        ),
    )
