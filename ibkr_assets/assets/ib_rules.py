"""IB's rules the backtest replay trades by (:class:`~ibkr_assets.quant.backtest.Execution`):
the quant layer imports none of ours, so the assets layer passes them in.

* each fill's costs: the one cost model, :func:`ibkr_assets.quant.costs.order_cost` (IB's
  tiered commission, :func:`ibkr_spec.commissions.stock_commission`, the paper exchange's too;
  half the quoted spread; square-root impact);
* round lots tiered by price (:func:`ibkr_spec.lots.round_lot`);
* a stock position's Reg-T initial margin (:func:`ibkr_spec.margin.position_margin`), the
  margin what-if's check.
"""

from __future__ import annotations

from functools import partial

from ibkr_assets.quant.backtest import Execution
from ibkr_assets.quant.costs import DEFAULT_HOLDING_PERIOD, CostModel, order_cost
from ibkr_spec.commissions import stock_commission
from ibkr_spec.lots import round_lot
from ibkr_spec.margin import position_margin


def stock_initial_margin(shares: float, price: float) -> float:
    """Reg-T initial margin of a stock position of ``shares`` (signed) at ``price``, USD."""
    return position_margin("STK", shares, price)[0]


def ib_cost_model(holding_period_sessions: float = DEFAULT_HOLDING_PERIOD) -> CostModel:
    """The one cost model with IB's tiered commission, its trades' costs amortised over
    ``holding_period_sessions`` (the decision config's) in the optimiser."""
    return CostModel(commission=stock_commission, holding_period_sessions=holding_period_sessions)


def ib_execution(costs: CostModel | None = None) -> Execution:
    """IB's rules for the replay: the cost model ``costs`` (default: :func:`ib_cost_model`),
    for the fills and the optimiser's per-name rates; tiered round lots; Reg-T initial
    margin."""
    model = costs if costs is not None else ib_cost_model()
    return Execution(
        costs=partial(order_cost, model),
        round_lot=round_lot,
        initial_margin=stock_initial_margin,
        cost_model=model,
    )
