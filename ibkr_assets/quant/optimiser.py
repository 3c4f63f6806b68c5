"""Target weights: mean-variance-CVaR optimisation with turnover cost, under the book's limits.

For ``n`` symbols with expected returns ``a`` (the alpha scores mapped to returns), covariance
``Σ``, historical return scenarios ``R`` (``S x n``) and current weights ``w0`` we solve

    maximise    a·w − λ_var·w'Σw − λ_cvar·CVaR_α(w) − c·‖w − w0‖₁
    subject to  Σ|w_i| ≤ max_gross           (gross exposure, default 1.2)
                |w_i| ≤ max_weight            (single-name cap, default 12%)
                Σw_i ≤ 1 − cash_buffer        (net exposure, default 95%)
                Σw_i ≥ min_net                (optional floor on net exposure)
                w ≥ 0                         (when long_only)
                |Σ_{i∈k} w_i| ≤ cap_k         (optional sector caps)

* the variance term is Markowitz (1952); it is written as ``‖U w‖²`` with ``Σ = U'U`` (Cholesky)
  so the problem stays a second-order cone program;
* ``CVaR_α`` — the mean loss in the worst ``1 − α`` of the scenarios — uses the
  Rockafellar & Uryasev (2000) linearisation with one auxiliary per scenario:
  ``CVaR = min_ζ ζ + Σ_s u_s / ((1 − α) S)``, ``u_s ≥ −R_s·w − ζ``, ``u_s ≥ 0``. It penalises
  fat left tails the variance misses;
* ``c·‖w − w0‖₁`` charges the proportional trading cost (half-spread + commission + impact) of
  moving from the current book, so small alpha changes do not churn the portfolio.

Units must agree: with daily scenarios use daily ``a`` and daily ``Σ``
(:meth:`PortfolioOptimiser.from_risk_model` does this).

:class:`PortfolioOptimiser` builds the cvxpy problem once per symbol set with ``a``, ``w0``,
``U`` and ``R`` as Parameters (disciplined parametrised programming, DPP), so re-solving for a
new day — as the backtest does every session — skips cvxpy's compilation. A penalty weighted 0
is left out of the problem. The solver is Clarabel (interior point, accurate to ~1e-8), then
HiGHS, SCS, ECOS; ``solver="HIGHS"`` is about twice as fast on the 700-name daily problem
but only accurate to ~1e-5 relative on the quadratic term. Any solver status
other than optimal raises :class:`OptimizationError`; limits that cannot hold together are
named before the solver runs.

References: H. Markowitz (1952), "Portfolio selection", *J. Finance* 7(1); R.T. Rockafellar &
S. Uryasev (2000), "Optimization of conditional value-at-risk", *J. Risk* 2(3); S. Diamond &
S. Boyd (2016), "CVXPY", *JMLR* 17.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

import cvxpy as cp
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ibkr_assets.quant.risk_metrics import historical_var_cvar
from ibkr_assets.quant.risk_model import RiskModel

SOLVERS = ("CLARABEL", "HIGHS", "SCS", "ECOS")


class OptimizationError(Exception):
    """The optimiser could not produce an optimal portfolio; the message says why."""


class OptimiserConfig(BaseModel):
    """Objective weights and portfolio limits (field names as in ``DecideConfig``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    risk_aversion: float = Field(2.0, ge=0, description="λ_var on w'Σw")
    cvar_aversion: float = Field(0.02, ge=0, description="λ_cvar on CVaR of the scenarios")
    cvar_alpha: float = Field(0.95, gt=0.5, lt=1, description="CVaR confidence level")
    turnover_cost: float = Field(0.0005, ge=0, description="cost per unit of ‖w − w0‖₁")
    max_gross: float = Field(1.2, gt=0, description="Σ|w| at most")
    max_weight: float = Field(0.12, gt=0, le=1, description="|w_i| at most")
    cash_buffer: float = Field(0.05, ge=0, lt=1, description="Σw at most 1 − cash_buffer")
    min_net: float | None = Field(None, description="Σw at least this (None = no floor)")
    long_only: bool = True
    sector_cap: float | None = Field(None, gt=0, description="|Σ_sector w| at most, all sectors")
    sector_caps: dict[str, float] = Field(
        default_factory=dict, description="per-sector caps overriding sector_cap"
    )
    solver: str = Field("CLARABEL", description="first solver tried; then the others in SOLVERS")

    @model_validator(mode="after")
    def _check(self) -> OptimiserConfig:
        bad = {k: v for k, v in self.sector_caps.items() if not (v >= 0 and math.isfinite(v))}
        if bad:
            raise ValueError(f"sector caps must be finite and >= 0: {bad}")
        if self.solver.upper() not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {self.solver!r}")
        return self

    @property
    def max_net(self) -> float:
        """The net exposure ceiling ``1 − cash_buffer``."""
        return 1.0 - self.cash_buffer


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


def _finite_frame(values: np.ndarray, labels: list[str], what: str) -> None:
    bad_cols = ~np.isfinite(values).all(axis=0) if values.ndim == 2 else ~np.isfinite(values)
    if bad_cols.any():
        named = [labels[i] for i in np.flatnonzero(bad_cols)]
        raise OptimizationError(f"NaN or infinite {what} for {named}")


class PortfolioOptimiser:
    """Mean-variance-CVaR optimiser for a fixed symbol set, re-solvable without recompiling.

    Build once with the covariance, scenarios and sectors; call :meth:`solve` with each day's
    expected returns and current weights. :meth:`update_risk` swaps in a new covariance and
    scenario set of the same shape, still without recompiling.
    """

    def __init__(
        self,
        symbols: list[str],
        cov: pd.DataFrame,
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
        n = len(self.symbols)
        self.n_scenarios = len(scenarios)
        if self.n_scenarios < 2:
            raise OptimizationError("at least 2 return scenarios are needed for CVaR")
        self._sector_groups = self._groups(sectors)
        self._check_limits()

        cfg = self.config
        self._alpha = cp.Parameter(n, name="alpha")
        self._w0 = cp.Parameter(n, name="w0")
        self._u = cp.Parameter((n, n), name="cov_factor")
        self._r = cp.Parameter((self.n_scenarios, n), name="scenarios")
        w = cp.Variable(n, name="w")
        objective = self._alpha @ w - cfg.turnover_cost * cp.norm1(w - self._w0)
        cons = [
            cp.norm1(w) <= cfg.max_gross,
            cp.sum(w) <= cfg.max_net,
            w <= cfg.max_weight,
            w >= (0.0 if cfg.long_only else -cfg.max_weight),
        ]
        # A term with a zero weight is left out, so its dense data never reaches the solver.
        if cfg.risk_aversion > 0:
            objective -= cfg.risk_aversion * cp.sum_squares(self._u @ w)
        if cfg.cvar_aversion > 0:
            zeta = cp.Variable(name="var")
            aux = cp.Variable(self.n_scenarios, nonneg=True, name="tail")
            cvar = zeta + cp.sum(aux) / ((1 - cfg.cvar_alpha) * self.n_scenarios)
            objective -= cfg.cvar_aversion * cvar
            cons.append(aux >= -(self._r @ w) - zeta)
        if cfg.min_net is not None:
            cons.append(cp.sum(w) >= cfg.min_net)
        for idx, cap in self._sector_groups.values():
            cons += [cp.sum(w[idx]) <= cap, cp.sum(w[idx]) >= -cap]
        self._w = w
        self.problem = cp.Problem(cp.Maximize(objective), cons)
        self.update_risk(cov, scenarios)

    @classmethod
    def from_risk_model(
        cls,
        model: RiskModel,
        config: OptimiserConfig | None = None,
        sectors: Mapping[str, str] | pd.Series | None = None,
    ) -> PortfolioOptimiser:
        """From a :class:`~ibkr_assets.quant.risk_model.RiskModel`, in daily units."""
        return cls(model.symbols, model.daily_cov(), model.scenarios, config, sectors)

    # -- set-up --------------------------------------------------------------------------------
    def _groups(
        self, sectors: Mapping[str, str] | pd.Series | None
    ) -> dict[str, tuple[list[int], float]]:
        cfg = self.config
        if cfg.sector_cap is None and not cfg.sector_caps:
            return {}
        if sectors is None:
            raise OptimizationError("sector caps are set but no sectors were given")
        sec = pd.Series(dict(sectors) if not isinstance(sectors, pd.Series) else sectors)
        missing = [s for s in self.symbols if s not in sec.index or pd.isna(sec.get(s))]
        if missing:
            raise OptimizationError(f"no sector for {missing}")
        groups: dict[str, tuple[list[int], float]] = {}
        for i, s in enumerate(self.symbols):
            name = str(sec[s])
            cap = cfg.sector_caps.get(name, cfg.sector_cap)
            if cap is None:
                continue
            groups.setdefault(name, ([], float(cap)))[0].append(i)
        return groups

    def _check_limits(self) -> None:
        """Name the limits that cannot hold together before the solver tries."""
        cfg, n = self.config, len(self.symbols)
        if cfg.min_net is None:
            return  # w = 0 satisfies every other limit
        conflicts = []
        if cfg.min_net > cfg.max_net:
            conflicts.append(
                f"min_net {cfg.min_net:g} > 1 − cash_buffer {cfg.max_net:g} "
                f"(cash_buffer {cfg.cash_buffer:g})"
            )
        if cfg.min_net > cfg.max_gross:
            conflicts.append(f"min_net {cfg.min_net:g} > max_gross {cfg.max_gross:g}")
        if cfg.max_weight * n < cfg.min_net:
            conflicts.append(
                f"max_weight {cfg.max_weight:g} × {n} symbols = {cfg.max_weight * n:g} "
                f"< min_net {cfg.min_net:g}"
            )
        if self._sector_groups:
            room = 0.0
            for idx, cap in self._sector_groups.values():
                room += min(cap, cfg.max_weight * len(idx))
            n_capped = sum(len(idx) for idx, _ in self._sector_groups.values())
            room += cfg.max_weight * (n - n_capped)
            if room < cfg.min_net:
                caps = {k: v[1] for k, v in self._sector_groups.items()}
                conflicts.append(
                    f"sector caps {caps} (with max_weight {cfg.max_weight:g}) allow a net "
                    f"exposure of at most {room:g} < min_net {cfg.min_net:g}"
                )
        if conflicts:
            raise OptimizationError("infeasible limits: " + "; ".join(conflicts))

    def update_risk(self, cov: pd.DataFrame, scenarios: pd.DataFrame) -> None:
        """New covariance and scenarios (same symbols, same number of scenarios)."""
        if len(scenarios) != self.n_scenarios:
            raise OptimizationError(
                f"expected {self.n_scenarios} scenarios (fixed at build), got {len(scenarios)}"
            )
        missing = [s for s in self.symbols if s not in cov.index or s not in scenarios.columns]
        if missing:
            raise OptimizationError(f"no covariance or scenarios for {missing}")
        sigma = cov.loc[self.symbols, self.symbols].to_numpy(dtype="float64")
        _finite_frame(sigma, self.symbols, "covariance")
        r = scenarios.loc[:, self.symbols].to_numpy(dtype="float64")
        _finite_frame(r, self.symbols, "return scenarios")
        sigma = (sigma + sigma.T) / 2
        try:
            lower = np.linalg.cholesky(sigma)
        except np.linalg.LinAlgError:
            vals, vecs = np.linalg.eigh(sigma)
            if vals.min() < -1e-10 * max(vals.max(), 1e-300):
                raise OptimizationError(
                    f"covariance is not positive semidefinite (min eigenvalue {vals.min():.3g})"
                ) from None
            lower = vecs * np.sqrt(np.clip(vals, 0, None))
        self._sigma = sigma
        self._u.value = lower.T
        self._r.value = r

    # -- solve ---------------------------------------------------------------------------------
    def solve(
        self,
        expected_returns: pd.Series | Mapping[str, float],
        current_weights: pd.Series | Mapping[str, float] | None = None,
    ) -> OptimisationResult:
        """Optimal weights for today's expected returns, starting from ``current_weights``.

        Missing expected returns are an error naming the symbols; missing current weights
        are 0 (not held). Held symbols outside the optimiser's set are an error (they could
        not be sold).
        """
        a = pd.Series(expected_returns, dtype="float64")
        missing = [s for s in self.symbols if s not in a.index]
        if missing:
            raise OptimizationError(f"no expected return for {missing}")
        a = a.reindex(self.symbols)
        _finite_frame(a.to_numpy(), self.symbols, "expected return (alpha)")
        w0 = pd.Series({} if current_weights is None else current_weights, dtype="float64")
        outside = [s for s, v in w0.items() if s not in set(self.symbols) and v != 0]
        if outside:
            raise OptimizationError(f"current weights for symbols not in the optimiser: {outside}")
        w0 = w0.reindex(self.symbols).fillna(0.0)
        _finite_frame(w0.to_numpy(), self.symbols, "current weight")
        self._alpha.value = a.to_numpy()
        self._w0.value = w0.to_numpy()

        preferred = self.config.solver.upper()
        order = [preferred] + [s for s in SOLVERS if s != preferred]
        installed = set(cp.installed_solvers())
        errors = []
        start = time.perf_counter()
        for solver in (s for s in order if s in installed):
            try:
                self.problem.solve(solver=solver)
            except cp.error.SolverError as exc:
                errors.append(f"{solver}: {exc}")
                continue
            if self.problem.status == cp.OPTIMAL:
                break
            errors.append(f"{solver}: status {self.problem.status}")
            if self.problem.status in (cp.INFEASIBLE, cp.UNBOUNDED):
                break
        else:
            raise OptimizationError("no solver reached an optimal solution: " + "; ".join(errors))
        if self.problem.status != cp.OPTIMAL:
            raise OptimizationError(
                f"optimisation {self.problem.status} under limits {self._limits_text()}: "
                + "; ".join(errors)
            )
        elapsed = time.perf_counter() - start
        w = np.asarray(self._w.value, dtype="float64")
        w[np.abs(w) < 1e-9] = 0.0
        weights = pd.Series(w, index=self.symbols, name="weight")
        _, cvar = historical_var_cvar(self._r.value @ w, self.config.cvar_alpha)
        return OptimisationResult(
            weights=weights,
            expected_return=float(a.to_numpy() @ w),
            volatility=math.sqrt(max(float(w @ self._sigma @ w), 0.0)),
            cvar=cvar,
            objective=float(self.problem.value),
            solver=str(self.problem.solver_stats.solver_name),
            solve_seconds=elapsed,
            compile_seconds=float(self.problem.compilation_time or 0.0),
        )

    def _limits_text(self) -> str:
        cfg = self.config
        parts = [
            f"max_gross {cfg.max_gross:g}",
            f"max_weight {cfg.max_weight:g}",
            f"net <= {cfg.max_net:g}",
            f"long_only {cfg.long_only}",
        ]
        if cfg.min_net is not None:
            parts.append(f"min_net {cfg.min_net:g}")
        if self._sector_groups:
            parts.append(f"sector caps { ({k: v[1] for k, v in self._sector_groups.items()}) }")
        return ", ".join(parts)


def optimise(
    expected_returns: pd.Series,
    cov: pd.DataFrame,
    scenarios: pd.DataFrame,
    config: OptimiserConfig | None = None,
    current_weights: pd.Series | None = None,
    sectors: Mapping[str, str] | pd.Series | None = None,
) -> OptimisationResult:
    """One-shot solve over the symbols of ``expected_returns`` (builds a fresh optimiser)."""
    symbols = [str(s) for s in expected_returns.index]
    opt = PortfolioOptimiser(symbols, cov, scenarios, config, sectors)
    return opt.solve(expected_returns, current_weights)
