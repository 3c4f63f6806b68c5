"""The optimiser's interface: :class:`PortfolioOptimiser`, its result, one-shot :func:`optimise`.

:class:`PortfolioOptimiser` is the reusable compiled problem for a fixed symbol set: built once
with the covariance, scenarios and sectors, then :meth:`~PortfolioOptimiser.solve` for each
day's expected returns and current weights, and :meth:`~PortfolioOptimiser.update_risk` for a
new covariance and scenario set of the same shape, neither recompiling (see
:mod:`ibkr_assets.quant.optimiser.problem`). It checks its inputs (symbols, NaNs, the
covariance's units against the scenarios', enough scenarios for the CVaR level, limits;
:mod:`ibkr_assets.quant.optimiser.diagnostics`), solves on a working set when that applies
(:mod:`ibkr_assets.quant.optimiser.working_set`) and the full problem otherwise
(:mod:`ibkr_assets.quant.optimiser.solving`), and reports the weights (fractions of NAV) with
their ex-ante return, volatility and CVaR in the units of the inputs (daily, from a risk model).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

import cvxpy as cp
import numpy as np
import pandas as pd

from ibkr_assets.quant.costs import CostRates, impact_quadratic
from ibkr_assets.quant.optimiser.config import OptimiserConfig
from ibkr_assets.quant.optimiser.covariance import (
    CovarianceFactors,
    covariance_factors,
    model_factors,
)
from ibkr_assets.quant.optimiser.diagnostics import (
    OptimizationError,
    check_finite,
    check_limits,
    check_same_units,
    check_scenario_count,
)
from ibkr_assets.quant.optimiser.problem import BP, Formulation, SectorGroups, TradeCosts
from ibkr_assets.quant.optimiser.solving import solve_on
from ibkr_assets.quant.optimiser.working_set import solve_working_set, working_set_applies
from ibkr_assets.quant.risk_metrics import historical_var_cvar
from ibkr_assets.quant.risk_model import RiskModel


@dataclass(frozen=True)
class OptimisationResult:
    """Target weights and their ex-ante statistics (in the units of the inputs)."""

    weights: pd.Series
    expected_return: float
    volatility: float
    cvar: float
    objective: float
    solver: str
    solve_seconds: float
    compile_seconds: float
    band_kept: tuple[str, ...] = ()
    """Names whose trade under the no-trade band was undone (kept at the current weight)."""


class PortfolioOptimiser:
    """Mean-variance-CVaR optimiser for a fixed symbol set, re-solvable without recompiling.

    Build once with the covariance, scenarios and sectors; call :meth:`solve` with each day's
    expected returns and current weights. :meth:`update_risk` swaps in a new covariance and
    scenario set of the same shape, still without recompiling (see the module docstring).
    """

    def __init__(
        self,
        symbols: list[str],
        cov: pd.DataFrame | CovarianceFactors,
        scenarios: pd.DataFrame,
        config: OptimiserConfig | None = None,
        sectors: Mapping[str, str] | pd.Series | None = None,
    ) -> None:
        self.config = config or OptimiserConfig()
        self.symbols = [str(s) for s in symbols]
        if len(set(self.symbols)) != len(self.symbols):
            raise OptimizationError("duplicate symbols passed to the optimiser")
        if not self.symbols:
            raise OptimizationError("no symbols to optimise")
        self.n_scenarios = len(scenarios)
        check_scenario_count(self.n_scenarios, self.config.cvar_alpha)
        groups = SectorGroups.build(self.symbols, sectors, self.config)
        self._last_bp = np.zeros(len(self.symbols))  # the last solve's weights (bp)
        self.working_set_rounds: list[int] = []
        """Names in each working set of the last solve (empty: the full problem was solved)."""
        check_limits(self.config, len(self.symbols), groups.caps, groups.sizes)
        self._form = Formulation(self.config, len(self.symbols), self.n_scenarios, groups)
        self.update_risk(cov, scenarios)

    @classmethod
    def from_risk_model(
        cls,
        model: RiskModel,
        config: OptimiserConfig | None = None,
        sectors: Mapping[str, str] | pd.Series | None = None,
    ) -> PortfolioOptimiser:
        """From a :class:`~ibkr_assets.quant.risk_model.RiskModel`, in daily units (its
        covariance in factor form, :func:`~.covariance.model_factors`)."""
        return cls(model.symbols, model_factors(model), model.scenarios, config, sectors)

    @property
    def problem(self) -> cp.Problem:
        """The compiled full problem (the working-set ones are compiled beside it)."""
        return self._form.full.problem

    def update_model(self, model: RiskModel) -> None:
        """The risk of ``model`` (the optimiser's symbols, the same number of scenarios):
        :meth:`update_risk` with its covariance in factor form."""
        if model.symbols != self.symbols:
            raise OptimizationError("the compiled optimiser holds other symbols than the model")
        self.update_risk(model_factors(model), model.scenarios)

    def update_risk(self, cov: pd.DataFrame | CovarianceFactors, scenarios: pd.DataFrame) -> None:
        """New covariance and scenarios (same symbols, same number of scenarios).

        ``cov``: the matrix (by symbol), or its factor form over the optimiser's symbols in
        order (:class:`~.covariance.CovarianceFactors`: nothing ``n x n`` is formed).
        Recompiles only when the covariance factor changes its number of rows (see
        :func:`~ibkr_assets.quant.optimiser.covariance.covariance_factors`).
        """
        if len(scenarios) != self.n_scenarios:
            raise OptimizationError(
                f"expected {self.n_scenarios} scenarios (fixed at build), got {len(scenarios)}"
            )
        if list(scenarios.columns) == self.symbols:
            r = scenarios.to_numpy(dtype="float64")
        else:
            missing = [s for s in self.symbols if s not in scenarios.columns]
            if missing:
                raise OptimizationError(f"no scenarios for {missing}")
            r = scenarios.loc[:, self.symbols].to_numpy(dtype="float64")
        check_finite(r, self.symbols, "return scenarios")
        if isinstance(cov, CovarianceFactors):
            if cov.loadings.shape[1] != len(self.symbols):
                raise OptimizationError(
                    f"covariance factors of {cov.loadings.shape[1]} names for an optimiser of "
                    f"{len(self.symbols)}"
                )
            check_finite(cov.loadings, self.symbols, "covariance")
            check_finite(np.array([cov.ridge]), ["ridge"], "covariance")
            factors = cov
        else:
            missing = [s for s in self.symbols if s not in cov.index]
            if missing:
                raise OptimizationError(f"no covariance for {missing}")
            sigma = cov.loc[self.symbols, self.symbols].to_numpy(dtype="float64")
            check_finite(sigma, self.symbols, "covariance")
            factors = covariance_factors((sigma + sigma.T) / 2, r)
        check_same_units(factors.diagonal(), r)
        self._form.set_risk(factors, r)

    def solve(
        self,
        expected_returns: pd.Series | Mapping[str, float],
        current_weights: pd.Series | Mapping[str, float] | None = None,
        costs: CostRates | None = None,
    ) -> OptimisationResult:
        """Optimal weights for today's expected returns, starting from ``current_weights``, net
        of each name's trading ``costs`` (:func:`~ibkr_assets.quant.costs.cost_rates`; a name
        they leave out, or every name without them, pays the config's flat ``turnover_cost``).

        Missing expected returns are an error naming the symbols; missing current weights
        are 0 (not held). Held symbols outside the optimiser's set are an error (they could
        not be sold). A large long-only book is solved on a working set of names first (see
        :mod:`ibkr_assets.quant.optimiser.working_set`); the answer is the full problem's
        optimum either way. Then the trades under the costs' no-trade band are undone (the name
        kept at its current weight), smallest first, each when the book so kept is within every
        limit (:attr:`OptimisationResult.band_kept`).
        """
        a = pd.Series(expected_returns, dtype="float64")
        missing = [s for s in self.symbols if s not in a.index]
        if missing:
            raise OptimizationError(f"no expected return for {missing}")
        a = a.reindex(self.symbols)
        check_finite(a.to_numpy(), self.symbols, "expected return (alpha)")
        w0 = pd.Series({} if current_weights is None else current_weights, dtype="float64")
        outside = list(w0.index[~w0.index.isin(self.symbols) & (w0.to_numpy() != 0)])
        if outside:
            raise OptimizationError(f"current weights for symbols not in the optimiser: {outside}")
        w0 = w0.reindex(self.symbols).fillna(0.0)
        check_finite(w0.to_numpy(), self.symbols, "current weight")
        alpha = a.to_numpy()
        # in basis points to 1e-3 (1e-7 of NAV): HiGHS's QP start drops values under 1e-4
        # (then reports its answer infeasible), which dust positions would otherwise hit
        held = np.round(w0.to_numpy() * BP, 3)
        trade_costs = self._trade_costs(costs)

        form = self._form
        start = time.perf_counter()
        found = None
        self.working_set_rounds = []
        if working_set_applies(self.config, len(self.symbols)):
            try:
                found = solve_working_set(form, alpha, held, self._last_bp, trade_costs)
            except OptimizationError:
                found = None  # e.g. limits the working set alone cannot meet: the full problem
        if found is None:
            everyone = np.arange(len(self.symbols))
            solved = solve_on(form, form.full, everyone, alpha, held, trade_costs)
        else:
            solved, self.working_set_rounds = found
        elapsed = time.perf_counter() - start
        self._last_bp = solved.w_bp
        w = solved.w_bp / BP
        w[np.abs(w) < 1e-9] = 0.0
        w, kept = self._apply_band(w, held / BP, trade_costs.band)
        weights = pd.Series(w, index=self.symbols, name="weight")
        _, cvar = historical_var_cvar(form.scenarios @ w, self.config.cvar_alpha)
        return OptimisationResult(
            weights=weights,
            expected_return=float(alpha @ w),
            volatility=math.sqrt(max(form.factors.variance(w), 0.0)),
            cvar=cvar,
            objective=solved.value / (form.objective_scale * BP**2),
            solver=solved.solver,
            solve_seconds=elapsed,
            compile_seconds=solved.compile_seconds,
            band_kept=kept,
        )

    def _trade_costs(self, costs: CostRates | None) -> TradeCosts:
        """The solver's per-name rates: ``costs`` (the impact power law as its quadratic fit)
        with the flat ``turnover_cost`` for names they leave out. Raises
        :class:`OptimizationError` on a rate that is negative or not finite, or on rates given
        to an optimiser without a turnover cost (its weights, not trades, are the variables)."""
        n, flat = len(self.symbols), self.config.turnover_cost
        if costs is None:
            return TradeCosts.flat(n, flat)
        if flat <= 0:
            raise OptimizationError(
                "per-name trading costs need a positive turnover_cost (the rate of names "
                "without one); set turnover_cost > 0 or pass no costs"
            )
        a, b = impact_quadratic()
        frame = pd.DataFrame({"buy": costs.buy, "sell": costs.sell, "impact": costs.impact})
        missing = ~pd.Index(self.symbols).isin(frame.index)
        frame = frame.reindex(self.symbols)
        frame.loc[missing] = [flat, flat, 0.0]
        rates = frame.to_numpy(dtype="float64")
        check_finite(rates.T, self.symbols, "trading cost rate")
        bad = [self.symbols[i] for i in np.flatnonzero((rates < 0).any(axis=1))]
        if bad:
            raise OptimizationError(f"negative trading cost rates for {bad}")
        buy, sell, impact = rates.T
        return TradeCosts(buy + a * impact, sell + a * impact, b * impact, costs.band)

    def _apply_band(
        self, w: np.ndarray, w0: np.ndarray, band: float
    ) -> tuple[np.ndarray, tuple[str, ...]]:
        """``w`` with trades smaller than ``band`` (fraction of NAV) undone, smallest first, each
        only when the book so kept stays within every limit; and the names undone."""
        small = np.flatnonzero((np.abs(w - w0) < band) & (w != w0))
        kept, undone = w.copy(), []
        for i in small[np.argsort(np.abs(w - w0)[small], kind="stable")]:
            trial = kept.copy()
            trial[i] = w0[i]
            if self._form.within_limits(trial):
                kept, undone = trial, [*undone, i]
        return kept, tuple(self.symbols[i] for i in sorted(undone))


def optimise(
    expected_returns: pd.Series,
    cov: pd.DataFrame,
    scenarios: pd.DataFrame,
    config: OptimiserConfig | None = None,
    current_weights: pd.Series | None = None,
    sectors: Mapping[str, str] | pd.Series | None = None,
    costs: CostRates | None = None,
) -> OptimisationResult:
    """One-shot solve over the symbols of ``expected_returns`` (builds a fresh optimiser)."""
    symbols = [str(s) for s in expected_returns.index]
    opt = PortfolioOptimiser(symbols, cov, scenarios, config, sectors)
    return opt.solve(expected_returns, current_weights, costs)
