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

* the variance term is Markowitz (1952). It is never handed to the solver as the dense
  ``n x n`` matrix: :func:`covariance_factors` writes ``Σ`` exactly as low rank plus a ridge,
  ``w'Σw = ‖Z w‖² + d·‖w‖²`` with ``Z`` of ``k`` rows. A Ledoit–Wolf matrix built from the
  scenarios (:mod:`ibkr_assets.quant.risk_model`) is exactly ``(1 − δ)/T·X'X + δμ·I`` with ``X``
  the demeaned scenarios, so ``Z = √((1 − δ)/T)·X`` (``k = S`` = 504 rows instead of a
  700-row Cholesky factor) and no decomposition is needed; any other ``Σ`` uses its
  eigen-decomposition (``Z'Z = Σ − λ_min I``);
* ``CVaR_α`` — the mean loss in the worst ``1 − α`` of the scenarios — uses the
  Rockafellar & Uryasev (2000) linearisation with one auxiliary per scenario:
  ``CVaR = min_ζ ζ + Σ_s u_s / ((1 − α) S)``, ``u_s ≥ −R_s·w − ζ``, ``u_s ≥ 0``. It penalises
  fat left tails the variance misses;
* ``c·‖w − w0‖₁`` charges the proportional trading cost (half-spread + commission + impact) of
  moving from the current book, so small alpha changes do not churn the portfolio.

Units must agree: with daily scenarios use daily ``a`` and daily ``Σ``
(:meth:`PortfolioOptimiser.from_risk_model` does this).

**Re-solving (backtests).** :class:`PortfolioOptimiser` is the reusable compiled problem: it is
built once per symbol set with ``a``, ``w0``, the scenarios and the covariance factor as cvxpy
Parameters (disciplined parametrised programming, DPP), so :meth:`PortfolioOptimiser.solve`
for a new day's alpha and book skips cvxpy's compilation, and
:meth:`PortfolioOptimiser.update_risk` swaps in a new covariance and scenario set of the same
shape without recompiling as long as the factor keeps its number of rows (always, for the
risk model's Ledoit–Wolf matrices; otherwise the problem is rebuilt once). A penalty weighted
0 is left out of the problem. No solve starts from the previous solution (HiGHS's QP method
ignores a start without its basis, Clarabel cannot use one), so a re-solve costs the same
whatever changed. The objective is scaled so a typical scenario return is 1 (the
result's ``objective`` is in the original units): penalties of ~1e-5 on returns of ~1e-2
otherwise sit at the solvers' absolute tolerances.

**Solvers.** ``solver="AUTO"`` (the default) takes HiGHS first for a large long-only book
(scenario matrix of at least :data:`AUTO_HIGHS_ENTRIES` numbers, e.g. 700 names x 504 days)
and Clarabel (interior point, ~1e-8) otherwise. HiGHS solves a linear program (no variance
term, e.g. a minimum-CVaR portfolio) by the dual simplex method and the quadratic program by
its active-set method, exact at the optimum's active set and about 3x faster than Clarabel on
the daily problem, whose dense 504 x 700 scenario block makes every interior-point step
costly. The active-set method needs a non-degenerate formulation: trades are variables
``w = w0 + buy − sell`` whose bounds carry each name's weight limits (with ``|w − w0| ≤ t``
every untraded name sits on a degenerate vertex and HiGHS cycles), and weights enter the
solver in basis points (its starting point drops values under 1e-4). Even so it runs under
:data:`HIGHS_TIME_LIMIT` and anything but an optimal status passes the problem on to Clarabel,
then the other solvers in :data:`SOLVERS`. With shorts allowed HiGHS is never used on the
quadratic program (it cycles, and can abort the process). Any final status other than optimal
raises :class:`OptimizationError`; limits that cannot hold together are named before the
solver runs.

References: H. Markowitz (1952), "Portfolio selection", *J. Finance* 7(1); O. Ledoit &
M. Wolf (2004), *J. Multivariate Analysis* 88(2); R.T. Rockafellar & S. Uryasev (2000),
"Optimization of conditional value-at-risk", *J. Risk* 2(3); S. Diamond & S. Boyd (2016),
"CVXPY", *JMLR* 17; Q. Huangfu & J.A.J. Hall (2018), "Parallelizing the dual revised simplex
method" (HiGHS), *Math. Prog. Comp.* 10.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import cvxpy as cp
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ibkr_assets.quant.risk_metrics import historical_var_cvar
from ibkr_assets.quant.risk_model import RiskModel

SOLVERS = ("CLARABEL", "HIGHS", "SCS", "ECOS")
BP = 1e4
"""Weights enter the solver in basis points, so small holdings stay clear of its tolerances."""
AUTO_HIGHS_ENTRIES = 50_000
"""``solver="AUTO"`` tries HiGHS first from this many scenario-matrix entries (``n·S``) up."""
HIGHS_TIME_LIMIT = 2.0
"""Seconds HiGHS may take before the problem goes to the next solver (it cycles rarely)."""
_SCENARIO_FORM_RTOL = 1e-9  # Σ − (a·X'X + b·I), relative to max|Σ|, to reuse the scenarios
_EIG_RTOL = 1e-12  # eigenvalues this close (relative to the largest) to the smallest are equal


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
    solver: str = Field(
        "AUTO",
        description="first solver tried (AUTO: HiGHS for a large long-only book, else Clarabel)",
    )

    @model_validator(mode="after")
    def _check(self) -> OptimiserConfig:
        bad = {k: v for k, v in self.sector_caps.items() if not (v >= 0 and math.isfinite(v))}
        if bad:
            raise ValueError(f"sector caps must be finite and >= 0: {bad}")
        if self.solver.upper() not in (*SOLVERS, "AUTO"):
            raise ValueError(f"solver must be AUTO or one of {SOLVERS}, got {self.solver!r}")
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


@dataclass(frozen=True)
class CovarianceFactors:
    """``Σ`` as low rank plus ridge: ``w'Σw = ‖loadings·w‖² + ridge·‖w‖²``.

    ``from_scenarios``: ``loadings`` are the demeaned return scenarios, scaled — ``Σ`` is a
    multiple of the scenarios' own covariance plus a multiple of the identity (Ledoit–Wolf
    shrinkage towards ``μI``, or a plain sample covariance). Otherwise they come from the
    eigen-decomposition of ``Σ``.
    """

    loadings: np.ndarray
    ridge: float
    from_scenarios: bool

    @property
    def rank(self) -> int:
        """Number of rows of the low-rank part (scenarios, or eigenvectors kept)."""
        return int(self.loadings.shape[0])

    def variance(self, w: np.ndarray) -> float:
        """``w'Σw`` from the factors (what the optimiser's variance term evaluates)."""
        w = np.asarray(w, dtype="float64")
        z = self.loadings @ w
        return float(z @ z + self.ridge * w @ w)


def covariance_factors(cov: np.ndarray, scenarios: np.ndarray | None = None) -> CovarianceFactors:
    """The exact low-rank-plus-ridge form of the covariance ``cov`` (``n x n``, symmetric PSD).

    When ``cov = a·X'X + b·I`` for the demeaned ``scenarios`` ``X`` (``S x n``) — to
    :data:`_SCENARIO_FORM_RTOL` of its largest entry — the loadings are ``√a·X``. Otherwise
    they are the eigenvectors above the smallest eigenvalue ``λ_min``, and the ridge is
    ``λ_min``. Raises :class:`OptimizationError` if ``cov`` is not positive semidefinite.
    """
    sigma = np.asarray(cov, dtype="float64")
    n = sigma.shape[0]
    if scenarios is not None and n > 1:
        r = np.asarray(scenarios, dtype="float64")
        x = r - r.mean(axis=0)
        gram = x.T @ x
        off = ~np.eye(n, dtype=bool)
        denom = float(np.sum(gram[off] ** 2))
        if denom > 0:
            a = float(np.sum(sigma[off] * gram[off])) / denom
            b = float(np.mean(np.diag(sigma) - a * np.diag(gram)))
            top = float(np.abs(sigma).max())
            fit = np.abs(sigma - a * gram - b * np.eye(n)).max()
            if a > 0 and b > -_SCENARIO_FORM_RTOL * top and fit <= _SCENARIO_FORM_RTOL * top:
                return CovarianceFactors(math.sqrt(a) * x, max(b, 0.0), True)
    vals, vecs = np.linalg.eigh(sigma)
    _check_psd(sigma, vals)
    ridge = max(float(vals[0]), 0.0)
    keep = vals - ridge > _EIG_RTOL * max(float(vals[-1]), 1e-300)
    keep[-1] = True  # at least one row, so the problem's shape never degenerates
    loadings = vecs[:, keep] * np.sqrt(np.clip(vals[keep] - ridge, 0.0, None))
    return CovarianceFactors(loadings.T.copy(), ridge, False)


@functools.cache
def _installed_solvers() -> frozenset[str]:
    return frozenset(cp.installed_solvers())


def _check_psd(sigma: np.ndarray, eigenvalues: np.ndarray | None = None) -> None:
    """Raise :class:`OptimizationError` unless ``sigma`` is positive semidefinite (to 1e-10)."""
    if eigenvalues is None:
        try:
            np.linalg.cholesky(sigma)
            return
        except np.linalg.LinAlgError:
            eigenvalues = np.linalg.eigvalsh(sigma)
    low, high = float(eigenvalues[0]), float(eigenvalues[-1])
    if low < -1e-10 * max(high, 1e-300):
        raise OptimizationError(
            f"covariance is not positive semidefinite (min eigenvalue {low:.3g})"
        )


def _finite_frame(values: np.ndarray, labels: list[str], what: str) -> None:
    bad_cols = ~np.isfinite(values).all(axis=0) if values.ndim == 2 else ~np.isfinite(values)
    if bad_cols.any():
        named = [labels[i] for i in np.flatnonzero(bad_cols)]
        raise OptimizationError(f"NaN or infinite {what} for {named}")


class PortfolioOptimiser:
    """Mean-variance-CVaR optimiser for a fixed symbol set, re-solvable without recompiling.

    Build once with the covariance, scenarios and sectors; call :meth:`solve` with each day's
    expected returns and current weights. :meth:`update_risk` swaps in a new covariance and
    scenario set of the same shape, still without recompiling (see the module docstring).
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
        self.n_scenarios = len(scenarios)
        if self.n_scenarios < 2:
            raise OptimizationError("at least 2 return scenarios are needed for CVaR")
        self._sector_groups = self._groups(sectors)
        self._check_limits()
        self._lower = 0.0 if self.config.long_only else -self.config.max_weight
        self._rank: int | None = None  # rows of the covariance factor of the built problem
        self.problem: cp.Problem
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

    def _build(self, rank: int) -> None:
        """The parametrised cvxpy problem for a covariance factor of ``rank`` rows.

        Weights, trades and scenario returns are variables in basis points (:data:`BP`) and the
        objective is ``objective_scale · BP²`` times the one in the module docstring, so the
        variance term keeps its size in the solver (its Hessian is unchanged).
        """
        cfg, n, n_s = self.config, len(self.symbols), self.n_scenarios
        self._alpha = cp.Parameter(n, name="alpha")
        self._w0 = cp.Parameter(n, name="w0")
        self._r = cp.Parameter((n_s, n), name="scenarios")
        cons = []
        if cfg.turnover_cost > 0:
            # w = w0 + buy − sell, the name's limits as bounds on the trades (set in solve):
            # an untraded name then sits on one bound per trade, not on the two rows of
            # |w − w0| ≤ t plus its weight bound — the degenerate vertices on which HiGHS's
            # active-set method cycles
            self._buy_range = (cp.Parameter(n, name="buy_min"), cp.Parameter(n, name="buy_max"))
            self._sell_range = (cp.Parameter(n, name="sell_min"), cp.Parameter(n, name="sell_max"))
            buy = cp.Variable(n, name="buy", bounds=list(self._buy_range))
            sell = cp.Variable(n, name="sell", bounds=list(self._sell_range))
            w = cp.Variable(n, name="w")
            cons.append(w - buy + sell == self._w0)
            objective = BP * (self._alpha @ w - cfg.turnover_cost * (cp.sum(buy) + cp.sum(sell)))
        else:
            bounds = [np.full(n, BP * self._lower), np.full(n, BP * cfg.max_weight)]
            w = cp.Variable(n, name="w", bounds=bounds)
            objective = BP * self._alpha @ w
        # long-only: Σ|w| is Σw, no auxiliaries needed
        gross = cp.sum(w) if cfg.long_only else cp.norm1(w)
        cons += [gross <= BP * cfg.max_gross, cp.sum(w) <= BP * cfg.max_net]
        # A term with a zero weight is left out, so its dense data never reaches the solver.
        if cfg.risk_aversion > 0:
            self._factor = cp.Parameter((rank, n), name="cov_factor")
            self._ridge = cp.Parameter(nonneg=True, name="cov_ridge")
            variance = cp.sum_squares(self._factor @ w) + self._ridge * cp.sum_squares(w)
            objective -= cfg.risk_aversion * variance
        if cfg.cvar_aversion > 0:
            zeta = cp.Variable(name="var")
            aux = cp.Variable(n_s, nonneg=True, name="tail")
            cvar = zeta + cp.sum(aux) / ((1 - cfg.cvar_alpha) * n_s)
            objective -= BP * cfg.cvar_aversion * cvar
            cons.append(aux >= -(self._r @ w) - zeta)
        if cfg.min_net is not None:
            cons.append(cp.sum(w) >= BP * cfg.min_net)
        for idx, cap in self._sector_groups.values():
            cons.append(cp.sum(w[idx]) <= BP * cap)
            if not cfg.long_only:
                cons.append(cp.sum(w[idx]) >= -BP * cap)
        self._w = w
        self.problem = cp.Problem(cp.Maximize(self._objective_scale * objective), cons)
        self._rank = rank

    def update_risk(self, cov: pd.DataFrame, scenarios: pd.DataFrame) -> None:
        """New covariance and scenarios (same symbols, same number of scenarios).

        Recompiles only when the covariance factor changes its number of rows (see
        :func:`covariance_factors`).
        """
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
        if self.config.risk_aversion > 0:
            factors = covariance_factors(sigma, r)
            rank = factors.rank
        else:  # no variance term: Σ only reports the volatility
            _check_psd(sigma)
            factors, rank = None, 0
        if self._rank != rank:
            rms = float(np.sqrt(np.mean(r**2)))
            self._objective_scale = 1.0 / rms if rms > 0 else 1.0
            self._build(rank)
        self._sigma = sigma
        self._r.value = r
        if factors is not None:
            self._ridge.value = factors.ridge
            self._factor.value = factors.loadings

    # -- solve ---------------------------------------------------------------------------------
    def _solver_order(self) -> list[str]:
        cfg = self.config
        preferred = cfg.solver.upper()
        if preferred == "AUTO":
            big = len(self.symbols) * self.n_scenarios >= AUTO_HIGHS_ENTRIES
            preferred = "HIGHS" if big and cfg.long_only else "CLARABEL"
        order = [preferred] + [s for s in SOLVERS if s != preferred]
        if cfg.risk_aversion > 0 and not cfg.long_only:
            # HiGHS 1.16's active-set QP method cycles on the long-short problem, and on some
            # aborts the whole process (free(): invalid pointer), out of any fallback's reach
            order.remove("HIGHS")
        return [s for s in order if s in _installed_solvers()]

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
        known = set(self.symbols)
        outside = [s for s, v in w0.items() if s not in known and v != 0]
        if outside:
            raise OptimizationError(f"current weights for symbols not in the optimiser: {outside}")
        w0 = w0.reindex(self.symbols).fillna(0.0)
        _finite_frame(w0.to_numpy(), self.symbols, "current weight")
        self._alpha.value = a.to_numpy()
        # in basis points to 1e-3 (1e-7 of NAV): HiGHS's QP start drops values under 1e-4
        # (then reports its answer infeasible), which dust positions would otherwise hit
        held = np.round(w0.to_numpy() * BP, 3)
        self._w0.value = held
        if self.config.turnover_cost > 0:
            lower, upper = BP * self._lower, BP * self.config.max_weight
            self._buy_range[0].value = np.maximum(lower - held, 0.0)
            self._buy_range[1].value = np.maximum(upper - held, 0.0)
            self._sell_range[0].value = np.maximum(held - upper, 0.0)
            self._sell_range[1].value = np.maximum(held - lower, 0.0)

        errors = []
        start = time.perf_counter()
        for solver in self._solver_order():
            try:
                options = {"time_limit": HIGHS_TIME_LIMIT} if solver == "HIGHS" else {}
                with warnings.catch_warnings():  # an inaccurate status is reported below
                    warnings.simplefilter("ignore", UserWarning)
                    self.problem.solve(solver=solver, warm_start=False, **options)
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
        w = np.asarray(self._w.value, dtype="float64") / BP
        w[np.abs(w) < 1e-9] = 0.0
        weights = pd.Series(w, index=self.symbols, name="weight")
        _, cvar = historical_var_cvar(self._r.value @ w, self.config.cvar_alpha)
        return OptimisationResult(
            weights=weights,
            expected_return=float(a.to_numpy() @ w),
            volatility=math.sqrt(max(float(w @ self._sigma @ w), 0.0)),
            cvar=cvar,
            objective=float(self.problem.value) / (self._objective_scale * BP**2),
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
