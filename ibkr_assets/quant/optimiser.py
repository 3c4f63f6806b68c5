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

**Working set.** A long-only book of :data:`WORKING_SET_MIN_NAMES` names or more holds a few
dozen of them at the optimum, so :meth:`PortfolioOptimiser.solve` first solves the problem
over a working set — the names held, the last solve's targets and the ``working_set`` best
alphas — with every other weight at 0, then proves it optimal for the whole universe: with the
restricted solve's duals (the budget and sector rows' prices and the scenario duals, which
are the tail scenarios' probabilities in the CVaR linearisation) it prices each name left out,
``a_i − c − 2λ_var(Σw)_i + λ_cvar·E_q[R_i] − prices of its rows``, the rate at which buying it
would raise the objective. If none is positive (beyond :data:`WORKING_SET_TOL`) the KKT
conditions of the full problem hold and the restricted optimum is the full one; otherwise
the best-priced names join and it is solved again. After :data:`WORKING_SET_ROUNDS` rounds,
once the set grows past :data:`WORKING_SET_MAX_SHARE` of the names, or on any failure, the
full problem is solved. Working-set problems are compiled once per size bucket of
:data:`WORKING_SET_SLOTS` names (unused slots padded with weight bounds of 0) and re-solved
with the day's names loaded into their Parameters: at 700 names x 504 scenarios a solve takes
~0.06-0.12 s instead of ~0.67 s (``bench/optimiser.py``), the same optimum to the solver's
tolerance.

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
from scipy import sparse

from ibkr_assets.quant.risk_metrics import historical_var_cvar
from ibkr_assets.quant.risk_model import RiskModel

SOLVERS = ("CLARABEL", "HIGHS", "SCS", "ECOS")
BP = 1e4
"""Weights enter the solver in basis points, so small holdings stay clear of its tolerances."""
AUTO_HIGHS_ENTRIES = 50_000
"""``solver="AUTO"`` tries HiGHS first from this many scenario-matrix entries (``n·S``) up."""
HIGHS_TIME_LIMIT = 2.0
"""Seconds HiGHS may take before the problem goes to the next solver (it cycles rarely)."""
WORKING_SET_MIN_NAMES = 300
"""A long-only book of at least this many names is solved on a working set first."""
WORKING_SET_ADD = 50
"""Names left out with the largest entry gains that join the working set in a round."""
WORKING_SET_ROUNDS = 6
"""Working-set rounds before the full problem is solved instead."""
WORKING_SET_MAX_SHARE = 0.6
"""A working set above this share of the names is no shortcut: the full problem is solved."""
WORKING_SET_SLOTS = 64
"""Working-set problems are compiled for a multiple of this many names (padded, cached)."""
WORKING_SET_TOL = 1e-7
"""A name left out joins when buying it raises the objective faster than this per unit weight,
in units of a typical scenario return (the solver's scaling: ~1.5e-9 of daily return)."""
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
    working_set: int | None = Field(
        40,
        ge=1,
        description="best-alpha names in the first working set of a large long-only book "
        "(None: always solve the full problem)",
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


@dataclass
class _Compiled:
    """A compiled problem over a number of weight slots and the handles to load and read it."""

    alpha: cp.Parameter
    w0: cp.Parameter
    r: cp.Parameter
    problem: cp.Problem | None = None
    w: cp.Variable | None = None
    factor: cp.Parameter | None = None
    ridge: cp.Parameter | None = None
    buy_range: tuple[cp.Parameter, cp.Parameter] | None = None
    sell_range: tuple[cp.Parameter, cp.Parameter] | None = None
    w_range: tuple[cp.Parameter, cp.Parameter] | None = None
    membership: cp.Parameter | None = None
    budget: list[cp.Constraint] | None = None
    tail: cp.Constraint | None = None
    floor: cp.Constraint | None = None
    sector: cp.Constraint | None = None

    def load_risk(self, r: np.ndarray, factors: CovarianceFactors | None, idx=None, slots=None):
        """Scenario returns and covariance factor (columns ``idx`` of them, padded to ``slots``)."""
        loadings = None if factors is None else factors.loadings
        if idx is not None:
            r = _pad(r, slots)
            loadings = None if factors is None else _pad(loadings[:, idx], slots)
        self.r.value = r
        if factors is not None:
            self.ridge.value = factors.ridge
            self.factor.value = loadings


@dataclass(frozen=True)
class _Solved:
    """One solve: weights in basis points (all names), objective value as the solver saw it."""

    w_bp: np.ndarray
    value: float
    solver: str
    compile_seconds: float


def _pad(values: np.ndarray, slots: int) -> np.ndarray:
    """``values`` with zero columns (last axis) up to ``slots``."""
    extra = slots - values.shape[-1]
    if extra <= 0:
        return values
    return np.concatenate([values, np.zeros((*values.shape[:-1], extra))], axis=-1)


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
    solvers = frozenset(cp.installed_solvers())
    if "HIGHS" in solvers:
        _swallow_highs_banner()
    return solvers


def _swallow_highs_banner() -> None:
    """Keep HiGHS's copyright banner off stdout without touching the process's file descriptors.

    HiGHS prints its banner once per process, from the first solver whose console logging is on,
    and cvxpy creates each solver (``highspy.Highs()``, which logs at once) before it applies
    any option, so no cvxpy solver option can silence it. A bare solver with console logging
    off, logging first, takes that one banner silently; stdout, shared with a stdio MCP session
    in the same process, is never redirected."""
    import highspy

    first = highspy._Highs()  # the C++ solver without highspy's callbacks: it logs nothing yet
    first.setOptionValue("log_to_console", False)
    first.setCallback(None, None)  # HiGHS writes its header here, to no console


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
        self._group_of = np.full(len(self.symbols), len(self._sector_groups))
        for k, (idx, _) in enumerate(self._sector_groups.values()):
            self._group_of[idx] = k
        self._last_bp = np.zeros(len(self.symbols))  # the last solve's weights (bp)
        self.working_set_rounds: list[int] = []
        """Names in each working set of the last solve (empty: the full problem was solved)."""
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
        """(Re)build the full problem for a covariance factor of ``rank`` rows.

        Drops the compiled working-set problems: they share the objective scale and the rank.
        """
        self._rank = rank
        self._restricted: dict[int, _Compiled] = {}
        groups = [idx for idx, _ in self._sector_groups.values()]
        membership = np.zeros((len(groups), len(self.symbols)))
        for k, idx in enumerate(groups):
            membership[k, idx] = 1.0
        self._full = self._compile(len(self.symbols), sparse.csr_matrix(membership))
        self.problem = self._full.problem

    def _compile(self, m: int, membership: sparse.csr_matrix | None) -> _Compiled:
        """The parametrised cvxpy problem over ``m`` weight slots.

        Weights, trades and scenario returns are variables in basis points (:data:`BP`) and the
        objective is ``objective_scale · BP²`` times the one in the module docstring, so the
        variance term keeps its size in the solver (its Hessian is unchanged). The sector
        rows are ``membership @ w`` — a constant 0/1 matrix for the full problem, a Parameter
        for a working set (whose names change from day to day).
        """
        cfg, n_s, rank = self.config, self.n_scenarios, self._rank or 0
        n_groups = len(self._sector_groups)
        c = _Compiled(
            alpha=cp.Parameter(m, name="alpha"),
            w0=cp.Parameter(m, name="w0"),
            r=cp.Parameter((n_s, m), name="scenarios"),
        )
        cons = []
        if cfg.turnover_cost > 0:
            # w = w0 + buy − sell, the name's limits as bounds on the trades (set in solve):
            # an untraded name then sits on one bound per trade, not on the two rows of
            # |w − w0| ≤ t plus its weight bound — the degenerate vertices on which HiGHS's
            # active-set method cycles
            c.buy_range = (cp.Parameter(m, name="buy_min"), cp.Parameter(m, name="buy_max"))
            c.sell_range = (cp.Parameter(m, name="sell_min"), cp.Parameter(m, name="sell_max"))
            buy = cp.Variable(m, name="buy", bounds=list(c.buy_range))
            sell = cp.Variable(m, name="sell", bounds=list(c.sell_range))
            w = cp.Variable(m, name="w")
            cons.append(w - buy + sell == c.w0)
            objective = BP * (c.alpha @ w - cfg.turnover_cost * (cp.sum(buy) + cp.sum(sell)))
        else:
            c.w_range = (cp.Parameter(m, name="w_min"), cp.Parameter(m, name="w_max"))
            w = cp.Variable(m, name="w", bounds=list(c.w_range))
            objective = BP * c.alpha @ w
        # long-only: Σ|w| is Σw, no auxiliaries needed
        gross = cp.sum(w) if cfg.long_only else cp.norm1(w)
        c.budget = [gross <= BP * cfg.max_gross, cp.sum(w) <= BP * cfg.max_net]
        cons += c.budget
        # A term with a zero weight is left out, so its dense data never reaches the solver.
        if cfg.risk_aversion > 0:
            c.factor = cp.Parameter((rank, m), name="cov_factor")
            c.ridge = cp.Parameter(nonneg=True, name="cov_ridge")
            variance = cp.sum_squares(c.factor @ w) + c.ridge * cp.sum_squares(w)
            objective -= cfg.risk_aversion * variance
        if cfg.cvar_aversion > 0:
            zeta = cp.Variable(name="var")
            aux = cp.Variable(n_s, nonneg=True, name="tail")
            cvar = zeta + cp.sum(aux) / ((1 - cfg.cvar_alpha) * n_s)
            objective -= BP * cfg.cvar_aversion * cvar
            c.tail = aux >= -(c.r @ w) - zeta
            cons.append(c.tail)
        if cfg.min_net is not None:
            c.floor = cp.sum(w) >= BP * cfg.min_net
            cons.append(c.floor)
        if n_groups:
            caps = BP * np.array([cap for _, cap in self._sector_groups.values()])
            if membership is None:
                membership = c.membership = cp.Parameter((n_groups, m), name="sectors")
            c.sector = membership @ w <= caps
            cons.append(c.sector)
            if not cfg.long_only:
                cons.append(membership @ w >= -caps)
        c.w = w
        c.problem = cp.Problem(cp.Maximize(self._objective_scale * objective), cons)
        return c

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
        self._scenarios = r
        self._factors = factors
        self._full.load_risk(r, factors)

    # -- solve ---------------------------------------------------------------------------------
    def _solver_order(self) -> list[str]:
        cfg = self.config
        preferred = cfg.solver.upper()
        if preferred == "AUTO":
            big = len(self.symbols) * self.n_scenarios >= AUTO_HIGHS_ENTRIES
            preferred = "HIGHS" if big and cfg.long_only else "CLARABEL"
        order = [preferred] + [s for s in SOLVERS if s != preferred]
        if cfg.risk_aversion > 0 and (not cfg.long_only or cfg.turnover_cost == 0):
            # HiGHS 1.16's active-set QP method cycles on the long-short problem, and on some
            # (and on long-only ones without a turnover cost) aborts the whole process
            # (free(): invalid pointer), out of any fallback's reach
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
        not be sold). A large long-only book is solved on a working set of names first (see
        the module docstring); the answer is the full problem's optimum either way.
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
        alpha = a.to_numpy()
        # in basis points to 1e-3 (1e-7 of NAV): HiGHS's QP start drops values under 1e-4
        # (then reports its answer infeasible), which dust positions would otherwise hit
        held = np.round(w0.to_numpy() * BP, 3)

        start = time.perf_counter()
        solved = None
        self.working_set_rounds = []
        if self._working_set_applies():
            try:
                solved = self._solve_working_set(alpha, held)
            except OptimizationError:
                solved = None  # e.g. limits the working set alone cannot meet: the full problem
            if solved is None:
                self.working_set_rounds = []
        if solved is None:
            solved = self._solve_on(self._full, np.arange(len(self.symbols)), alpha, held)
        elapsed = time.perf_counter() - start
        self._last_bp = solved.w_bp
        w = solved.w_bp / BP
        w[np.abs(w) < 1e-9] = 0.0
        weights = pd.Series(w, index=self.symbols, name="weight")
        _, cvar = historical_var_cvar(self._scenarios @ w, self.config.cvar_alpha)
        return OptimisationResult(
            weights=weights,
            expected_return=float(alpha @ w),
            volatility=math.sqrt(max(float(w @ self._sigma @ w), 0.0)),
            cvar=cvar,
            objective=solved.value / (self._objective_scale * BP**2),
            solver=solved.solver,
            solve_seconds=elapsed,
            compile_seconds=solved.compile_seconds,
        )

    def _working_set_applies(self) -> bool:
        cfg = self.config
        return (
            cfg.long_only
            and cfg.working_set is not None
            and len(self.symbols) >= WORKING_SET_MIN_NAMES
        )

    def _solve_working_set(self, alpha: np.ndarray, held: np.ndarray) -> _Solved | None:
        """The full optimum from problems restricted to a growing set of names, or None.

        Starts from the held names, yesterday's targets and the ``working_set`` best alphas.
        After each restricted solve every name left out is priced with the solve's duals
        (:meth:`_entry_gain`); if any would raise the objective, the :data:`WORKING_SET_ADD`
        best-priced names join the set and it is solved again. None after
        :data:`WORKING_SET_ROUNDS` rounds or once the set passes
        :data:`WORKING_SET_MAX_SHARE` of the names: the caller solves the full problem.
        """
        n = len(self.symbols)
        in_set = (held != 0) | (self._last_bp != 0)
        in_set[np.argsort(-alpha, kind="stable")[: self.config.working_set]] = True
        compile_seconds = 0.0
        for _ in range(WORKING_SET_ROUNDS):
            idx = np.flatnonzero(in_set)
            if idx.size > WORKING_SET_MAX_SHARE * n:
                return None
            compiled = self._restricted_problem(idx.size)
            self.working_set_rounds.append(idx.size)
            solved = self._solve_on(compiled, idx, alpha, held)
            compile_seconds += solved.compile_seconds
            gain = self._entry_gain(compiled, solved.w_bp, alpha)
            gain[idx] = -np.inf
            if not (gain > WORKING_SET_TOL * BP).any():
                return _Solved(solved.w_bp, solved.value, solved.solver, compile_seconds)
            # the best gains join, violators or not: the next round's optimum tends to need them
            best_first = np.argsort(-gain, kind="stable")[:WORKING_SET_ADD]
            in_set[best_first[np.isfinite(gain[best_first])]] = True
        return None

    def _restricted_problem(self, size: int) -> _Compiled:
        """The compiled working-set problem for ``size`` names (slots padded, cached by size)."""
        slots = min(-(-size // WORKING_SET_SLOTS) * WORKING_SET_SLOTS, len(self.symbols))
        if slots not in self._restricted:
            self._restricted[slots] = self._compile(slots, None)
        return self._restricted[slots]

    def _entry_gain(self, c: _Compiled, w_bp: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """Rate at which buying each name from nothing raises the solver's (scaled) objective.

        Per basis point of weight, from the restricted solve's weights ``w_bp`` (all names,
        0 outside the set) and duals: alpha less the trading cost, less the marginal variance
        ``2λ(Σw)_i``, plus the CVaR term priced by the scenario duals (the tail scenarios'
        probabilities, scaled) and less the prices of the budget and sector rows. At an
        optimum of the full problem no name outside the set has a positive gain (its KKT
        condition), so these duals prove the restricted optimum is the full one.
        """
        cfg, scale = self.config, self._objective_scale
        rows = [r for r in (c.tail, c.floor, c.sector, *c.budget) if r is not None]
        if any(r.dual_value is None for r in rows):
            raise OptimizationError(f"{c.problem.solver_stats.solver_name} returned no duals")
        gain = scale * BP * (alpha - cfg.turnover_cost)
        if self._factors is not None:
            marginal = self._factors.loadings.T @ (self._factors.loadings @ w_bp)
            marginal += self._factors.ridge * w_bp
            gain -= scale * 2 * cfg.risk_aversion * marginal
        if c.tail is not None:
            gain += np.asarray(c.tail.dual_value, dtype="float64") @ self._scenarios
        gain -= sum(float(con.dual_value) for con in c.budget)
        if c.floor is not None:
            gain += float(c.floor.dual_value)
        if c.sector is not None:
            prices = np.append(np.asarray(c.sector.dual_value, dtype="float64"), 0.0)
            gain -= prices[self._group_of]
        return gain

    def _solve_on(
        self, c: _Compiled, idx: np.ndarray, alpha: np.ndarray, held: np.ndarray
    ) -> _Solved:
        """Solve ``c`` over the names ``idx`` (the rest held at 0); weights in bp, all names."""
        k, slots = idx.size, c.alpha.shape[0]
        if c is not self._full:
            c.load_risk(self._scenarios[:, idx], self._factors, idx, slots)
            membership = np.zeros((len(self._sector_groups), slots))
            if membership.size:
                rows = self._group_of[idx]
                named = rows < len(self._sector_groups)
                membership[rows[named], np.flatnonzero(named)] = 1.0
                c.membership.value = membership
        c.alpha.value = _pad(alpha[idx], slots)
        c.w0.value = _pad(held[idx], slots)
        lower = np.full(slots, BP * self._lower)
        upper = np.full(slots, BP * self.config.max_weight)
        lower[k:] = upper[k:] = 0.0  # padding slots stay empty
        if c.buy_range is not None:
            h = c.w0.value
            c.buy_range[0].value = np.maximum(lower - h, 0.0)
            c.buy_range[1].value = np.maximum(upper - h, 0.0)
            c.sell_range[0].value = np.maximum(h - upper, 0.0)
            c.sell_range[1].value = np.maximum(h - lower, 0.0)
        else:
            c.w_range[0].value, c.w_range[1].value = lower, upper
        problem = c.problem
        errors = []
        for solver in self._solver_order():
            try:
                options = {"time_limit": HIGHS_TIME_LIMIT} if solver == "HIGHS" else {}
                with warnings.catch_warnings():  # an inaccurate status is reported below
                    warnings.simplefilter("ignore", UserWarning)
                    problem.solve(solver=solver, warm_start=False, **options)
            except cp.error.SolverError as exc:
                errors.append(f"{solver}: {exc}")
                continue
            if problem.status == cp.OPTIMAL:
                break
            errors.append(f"{solver}: status {problem.status}")
            if problem.status in (cp.INFEASIBLE, cp.UNBOUNDED):
                break
        else:
            raise OptimizationError("no solver reached an optimal solution: " + "; ".join(errors))
        if problem.status != cp.OPTIMAL:
            raise OptimizationError(
                f"optimisation {problem.status} under limits {self._limits_text()}: "
                + "; ".join(errors)
            )
        w_bp = np.zeros(len(self.symbols))
        w_bp[idx] = np.asarray(c.w.value, dtype="float64")[:k]
        return _Solved(
            w_bp,
            float(problem.value),
            str(problem.solver_stats.solver_name),
            float(problem.compilation_time or 0.0),
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
