"""Building the problem: the parametrised cvxpy programs and the data loaded into them.

:class:`Formulation` holds, for one symbol set, the compiled full problem and the compiled
working-set problems (:mod:`ibkr_assets.quant.optimiser.working_set`), the sector rows and the
risk data (covariance, scenarios, covariance factor) they are loaded with.

**Parameters, compiled once.** Expected returns ``a``, current weights ``w0``, the scenarios
and the covariance factor are cvxpy Parameters (disciplined parametrised programming, DPP), so a
new day's alpha and book skip cvxpy's compilation, and :meth:`Formulation.set_risk` swaps in a
new covariance and scenario set of the same shape without recompiling as long as the factor
keeps its number of rows (always, for the risk model's Ledoit–Wolf matrices; otherwise the
problem is rebuilt once). A penalty weighted 0 is left out of the problem, so its dense data
never reaches the solver.

**Units in the solver.** Weights, trades and scenario returns enter the solver in basis points
(:data:`BP`: HiGHS's starting point drops values under 1e-4, which small holdings would hit),
and the objective is scaled so a typical scenario return is 1 (``objective_scale`` =
1 / RMS of the scenarios, fixed when the problem is built): penalties of ~1e-5 on returns of
~1e-2 otherwise sit at the solvers' absolute tolerances. The solver's objective is
``objective_scale · BP²`` times the one in :mod:`ibkr_assets.quant.optimiser`, so the variance
term keeps its size (its Hessian is unchanged).

**Trades as variables.** With a turnover cost, ``w = w0 + buy − sell`` and each name's weight
limits are bounds on its trades: with ``|w − w0| ≤ t`` every untraded name sits on a degenerate
vertex (two rows plus its weight bound) on which HiGHS's active-set method cycles.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cvxpy as cp
import numpy as np
import pandas as pd
from scipy import sparse

from ibkr_assets.quant.optimiser.config import OptimiserConfig
from ibkr_assets.quant.optimiser.covariance import CovarianceFactors, covariance_factors
from ibkr_assets.quant.optimiser.diagnostics import OptimizationError, check_psd

BP = 1e4
"""Weights enter the solver in basis points, so small holdings stay clear of its tolerances."""


def pad(values: np.ndarray, slots: int) -> np.ndarray:
    """``values`` with zero columns (last axis) up to ``slots``."""
    extra = slots - values.shape[-1]
    if extra <= 0:
        return values
    return np.concatenate([values, np.zeros((*values.shape[:-1], extra))], axis=-1)


@dataclass(frozen=True)
class SectorGroups:
    """The capped sectors: each one's names (indices into the symbols) and cap (fraction of NAV).

    ``group_of`` gives each symbol its sector's row, or ``len(caps)`` for a name whose sector
    has no cap. Sectors are in the order their first name appears among the symbols.
    """

    members: dict[str, list[int]]
    caps: dict[str, float]
    group_of: np.ndarray

    @classmethod
    def build(
        cls,
        symbols: list[str],
        sectors: Mapping[str, str] | pd.Series | None,
        cfg: OptimiserConfig,
    ) -> SectorGroups:
        """The sectors capped by ``cfg`` (``sector_caps``, else ``sector_cap``) over ``symbols``.

        Raises :class:`OptimizationError` when caps are set and a symbol has no sector.
        """
        members: dict[str, list[int]] = {}
        caps: dict[str, float] = {}
        if cfg.sector_cap is not None or cfg.sector_caps:
            if sectors is None:
                raise OptimizationError("sector caps are set but no sectors were given")
            sec = pd.Series(dict(sectors) if not isinstance(sectors, pd.Series) else sectors)
            missing = [s for s in symbols if s not in sec.index or pd.isna(sec.get(s))]
            if missing:
                raise OptimizationError(f"no sector for {missing}")
            for i, s in enumerate(symbols):
                name = str(sec[s])
                cap = cfg.sector_caps.get(name, cfg.sector_cap)
                if cap is None:
                    continue
                members.setdefault(name, []).append(i)
                caps.setdefault(name, float(cap))
        group_of = np.full(len(symbols), len(caps))
        for k, idx in enumerate(members.values()):
            group_of[idx] = k
        return cls(members, caps, group_of)

    def __len__(self) -> int:
        return len(self.caps)

    @property
    def sizes(self) -> dict[str, int]:
        """Number of names in each capped sector."""
        return {name: len(idx) for name, idx in self.members.items()}

    def membership(self, idx: np.ndarray, slots: int) -> np.ndarray:
        """0/1 rows (one per capped sector) over ``slots`` columns holding the names ``idx``."""
        membership = np.zeros((len(self), slots))
        if membership.size:
            rows = self.group_of[idx]
            named = rows < len(self)
            membership[rows[named], np.flatnonzero(named)] = 1.0
        return membership


@dataclass
class CompiledProblem:
    """A compiled problem over a number of weight slots and the handles to load and read it.

    Values are in the solver's units (basis points of weight, see the module docstring).
    """

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

    @property
    def slots(self) -> int:
        """Number of weight slots (names, plus padding in a working-set problem)."""
        return int(self.alpha.shape[0])

    def load_risk(
        self,
        r: np.ndarray,
        factors: CovarianceFactors | None,
        idx: np.ndarray | None = None,
    ) -> None:
        """Scenario returns (``S x n``) and covariance factor; of the names ``idx`` (padded to
        the slots) in a working-set problem, of all names (``idx`` None) in the full one."""
        loadings = None if factors is None else factors.loadings
        if idx is not None:
            r = pad(r[:, idx], self.slots)
            loadings = None if factors is None else pad(loadings[:, idx], self.slots)
        self.r.value = r
        if factors is not None:
            self.ridge.value = factors.ridge
            self.factor.value = loadings


class Formulation:
    """The problems for one symbol set: the full one, the working-set ones, and their data.

    ``config`` and the sector groups are fixed; :meth:`set_risk` loads the covariance
    (``sigma``, ``n x n``) and scenarios (``S x n``), rebuilding only when the covariance
    factor changes its number of rows; :meth:`load` puts a day's alpha and book into one of
    the compiled problems.
    """

    def __init__(
        self, config: OptimiserConfig, n_names: int, n_scenarios: int, groups: SectorGroups
    ) -> None:
        self.config = config
        self.n_names = n_names
        self.n_scenarios = n_scenarios
        self.groups = groups
        self.lower = 0.0 if config.long_only else -config.max_weight
        """The lowest weight a name may take (fraction of NAV)."""
        self.rank: int | None = None  # rows of the covariance factor of the built problem
        self.objective_scale: float  # set with the risk data: the solver's objective scale
        self.sigma: np.ndarray
        self.scenarios: np.ndarray
        self.factors: CovarianceFactors | None = None
        self.full: CompiledProblem
        self._restricted: dict[int, CompiledProblem] = {}

    def set_risk(self, sigma: np.ndarray, r: np.ndarray) -> None:
        """Load a covariance (symmetric, checked finite) and scenarios of the built shape."""
        if self.config.risk_aversion > 0:
            factors = covariance_factors(sigma, r)
            rank = factors.rank
        else:  # no variance term: Σ only reports the volatility
            check_psd(sigma)
            factors, rank = None, 0
        if self.rank != rank:
            rms = float(np.sqrt(np.mean(r**2)))
            self.objective_scale = 1.0 / rms if rms > 0 else 1.0
            self._build(rank)
        self.sigma = sigma
        self.scenarios = r
        self.factors = factors
        self.full.load_risk(r, factors)

    def _build(self, rank: int) -> None:
        """(Re)build the full problem for a covariance factor of ``rank`` rows.

        Drops the compiled working-set problems: they share the objective scale and the rank.
        """
        self.rank = rank
        self._restricted = {}
        membership = self.groups.membership(np.arange(self.n_names), self.n_names)
        self.full = self._compile(self.n_names, sparse.csr_matrix(membership))

    def restricted(self, slots: int) -> CompiledProblem:
        """The compiled working-set problem of ``slots`` weight slots (compiled once, cached)."""
        if slots not in self._restricted:
            self._restricted[slots] = self._compile(slots, None)
        return self._restricted[slots]

    def load(
        self, c: CompiledProblem, idx: np.ndarray, alpha: np.ndarray, held_bp: np.ndarray
    ) -> None:
        """Load ``c`` for the names ``idx`` (indices into the symbols; every other name at 0).

        ``alpha``: expected returns of all names; ``held_bp``: current weights of all names in
        basis points. A working-set problem also gets the names' risk data and sector rows;
        its unused slots get weight bounds of 0.
        """
        k, slots = idx.size, c.slots
        if c is not self.full:
            c.load_risk(self.scenarios, self.factors, idx)
            if len(self.groups):
                c.membership.value = self.groups.membership(idx, slots)
        c.alpha.value = pad(alpha[idx], slots)
        c.w0.value = pad(held_bp[idx], slots)
        lower = np.full(slots, BP * self.lower)
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

    def _compile(self, m: int, membership: sparse.csr_matrix | None) -> CompiledProblem:
        """The parametrised cvxpy problem over ``m`` weight slots (units: module docstring).

        The sector rows are ``membership @ w`` — a constant 0/1 matrix for the full problem, a
        Parameter for a working set (whose names change from day to day).
        """
        cfg, n_s, rank = self.config, self.n_scenarios, self.rank or 0
        n_groups = len(self.groups)
        c = CompiledProblem(
            alpha=cp.Parameter(m, name="alpha"),
            w0=cp.Parameter(m, name="w0"),
            r=cp.Parameter((n_s, m), name="scenarios"),
        )
        cons = []
        if cfg.turnover_cost > 0:
            # w = w0 + buy − sell, the name's limits as bounds on the trades (set in load)
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
            caps = BP * np.array(list(self.groups.caps.values()))
            if membership is None:
                membership = c.membership = cp.Parameter((n_groups, m), name="sectors")
            c.sector = membership @ w <= caps
            cons.append(c.sector)
            if not cfg.long_only:
                cons.append(membership @ w >= -caps)
        c.w = w
        c.problem = cp.Problem(cp.Maximize(self.objective_scale * objective), cons)
        return c
