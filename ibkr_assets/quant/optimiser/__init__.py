"""Target weights: mean-variance-CVaR optimisation net of trading costs, under the book's limits.

For ``n`` symbols with expected returns ``a`` (the alpha scores mapped to returns), covariance
``Σ``, historical return scenarios ``R`` (``S x n``) and current weights ``w0`` we solve

    maximise    a·w − λ_var·w'Σw − λ_cvar·CVaR_α(w) − Σ_i cost_i(w_i − w0_i)
    subject to  Σ|w_i| ≤ max_gross           (gross exposure, default 1.2)
                |w_i| ≤ max_weight            (single-name cap, default 12%)
                Σw_i ≤ 1 − cash_buffer        (net exposure, default 95%)
                Σw_i ≥ min_net                (optional floor on net exposure)
                w ≥ 0                         (when long_only)
                |Σ_{i∈k} w_i| ≤ cap_k         (optional sector caps)

* the variance term is Markowitz (1952), handed to the solver as low rank plus a ridge, never
  as the dense ``n x n`` matrix (:mod:`~ibkr_assets.quant.optimiser.covariance`);
* ``CVaR_α`` — the mean loss in the worst ``1 − α`` of the scenarios — uses the
  Rockafellar & Uryasev (2000) linearisation with one auxiliary per scenario:
  ``CVaR = min_ζ ζ + Σ_s u_s / ((1 − α) S)``, ``u_s ≥ −R_s·w − ζ``, ``u_s ≥ 0``. It penalises
  fat left tails the variance misses;
* ``cost_i(Δ) = c_i^buy·Δ⁺ + c_i^sell·Δ⁻ + q_i·Δ²`` charges each name's trading cost of moving
  from the current book (:class:`~ibkr_assets.quant.costs.CostRates`: half spread + commission,
  by side, and square-root impact as its quadratic fit, amortised over the holding period; the
  config's flat ``turnover_cost`` for a name without rates), so small alpha changes do not churn
  the portfolio; trades under the no-trade band are undone after the solve.

Units must agree: with daily scenarios use daily ``a`` and daily ``Σ``
(:meth:`PortfolioOptimiser.from_risk_model` does this). Weights are fractions of net asset value.

The package, one concept a module:

* :mod:`~ibkr_assets.quant.optimiser.config` — the objective weights and limits
  (:class:`OptimiserConfig`) and the solvers that may be chosen;
* :mod:`~ibkr_assets.quant.optimiser.covariance` — ``Σ`` as low rank plus ridge
  (:func:`covariance_factors`);
* :mod:`~ibkr_assets.quant.optimiser.problem` — building the parametrised cvxpy problems
  (compiled once, re-solved with each day's data) and the units the solver sees;
* :mod:`~ibkr_assets.quant.optimiser.solving` — the solver order (HiGHS or Clarabel first), the
  fallbacks, and keeping HiGHS's banner off stdout;
* :mod:`~ibkr_assets.quant.optimiser.working_set` — a large long-only book solved on a few dozen
  names first, then proved optimal for the whole universe with the duals;
* :mod:`~ibkr_assets.quant.optimiser.highs_qp` — a working set's problem written for HiGHS
  directly (its own QP form, no auxiliaries, no cvxpy around each solve);
* :mod:`~ibkr_assets.quant.optimiser.diagnostics` — :class:`OptimizationError` and the checks
  that name what is wrong (NaN inputs, a covariance that is not PSD, limits that conflict);
* :mod:`~ibkr_assets.quant.optimiser.portfolio` — :class:`PortfolioOptimiser`, the reusable
  optimiser for a symbol set, its :class:`OptimisationResult` and one-shot :func:`optimise`.

Tuning constants are read where they are defined (e.g. ``solving.HIGHS_ITERATION_LIMIT``); the names
exported here are for reading them.

References: H. Markowitz (1952), "Portfolio selection", *J. Finance* 7(1); O. Ledoit &
M. Wolf (2004), *J. Multivariate Analysis* 88(2); R.T. Rockafellar & S. Uryasev (2000),
"Optimization of conditional value-at-risk", *J. Risk* 2(3); S. Diamond & S. Boyd (2016),
"CVXPY", *JMLR* 17; Q. Huangfu & J.A.J. Hall (2018), "Parallelizing the dual revised simplex
method" (HiGHS), *Math. Prog. Comp.* 10.
"""

from ibkr_assets.quant.optimiser.config import SOLVERS, OptimiserConfig
from ibkr_assets.quant.optimiser.covariance import CovarianceFactors, covariance_factors
from ibkr_assets.quant.optimiser.diagnostics import OptimizationError
from ibkr_assets.quant.optimiser.portfolio import (
    OptimisationResult,
    PortfolioOptimiser,
    optimise,
)
from ibkr_assets.quant.optimiser.problem import BP
from ibkr_assets.quant.optimiser.solving import AUTO_HIGHS_ENTRIES, HIGHS_ITERATION_LIMIT
from ibkr_assets.quant.optimiser.working_set import (
    WORKING_SET_ADD,
    WORKING_SET_MAX_SHARE,
    WORKING_SET_MIN_NAMES,
    WORKING_SET_ROUNDS,
    WORKING_SET_SLOTS,
    WORKING_SET_TOL,
)

__all__ = [
    "AUTO_HIGHS_ENTRIES",
    "BP",
    "HIGHS_ITERATION_LIMIT",
    "SOLVERS",
    "WORKING_SET_ADD",
    "WORKING_SET_MAX_SHARE",
    "WORKING_SET_MIN_NAMES",
    "WORKING_SET_ROUNDS",
    "WORKING_SET_SLOTS",
    "WORKING_SET_TOL",
    "CovarianceFactors",
    "OptimisationResult",
    "OptimiserConfig",
    "OptimizationError",
    "PortfolioOptimiser",
    "covariance_factors",
    "optimise",
]
