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

**Trades as variables, costs per name.** With a turnover cost the trades are variables and each
name's weight limits are bounds on them: with ``|w − w0| ≤ t`` every untraded name sits on a
degenerate vertex (two rows plus its weight bound) on which HiGHS's active-set method cycles. The
bounds depend on the book (Parameters), and cvxpy's DPP refuses a Parameter multiplying a variable
whose bounds are Parameters, so each name's cost rate cannot multiply its trades. Instead
(:class:`TradeCosts` loaded with every solve, :meth:`Formulation.load`), a name buying at ``c_b``
and selling at ``c_s`` per unit traded pays ``r·|Δw| + d·Δw`` with ``r = (c_b + c_s)/2`` and
``d = (c_b − c_s)/2``: the ``d`` part is linear in ``w`` and joins its expected return; the ``r``
part is ``ρ·(B + S)`` with trades measured in units of the name's rate, ``g = r/ρ`` (``ρ`` the
config's flat ``turnover_cost``, fixed at compile), in the rows ``g ∘ w − B + S = g ∘ w0`` (a
Parameter times the unbounded ``w``, which DPP accepts). Impact's quadratic part
``q·(w − w0)²`` (:func:`~ibkr_assets.quant.costs.impact_quadratic`) is
``sum_squares(sqrt(q) ∘ w)`` with ``−2q·w0`` joining the expected return. The constants the
rewrite drops (``d·w0 − q·w0²``) are added back to the reported objective
(:meth:`Formulation.constant`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cvxpy as cp
import numpy as np
import pandas as pd
from scipy import sparse

from ibkr_assets.quant.optimiser.config import OptimiserConfig
from ibkr_assets.quant.optimiser.covariance import CovarianceFactors
from ibkr_assets.quant.optimiser.diagnostics import OptimizationError

BP = 1e4
"""Weights enter the solver in basis points, so small holdings stay clear of its tolerances."""


MIN_RATE_RATIO = 1e-3
"""A name's mean trading rate is at least this share of the flat ``turnover_cost``: its trades are
measured in units of its rate, and a zero rate would free its weight from its bounds."""


@dataclass(frozen=True)
class TradeCosts:
    """Each name's trading costs over the optimiser's symbols, fractions of NAV, amortised over
    the holding period (:class:`~ibkr_assets.quant.costs.CostRates`): ``buy`` and ``sell`` per
    unit of weight traded (the impact fit's linear part included), ``impact_quad`` the
    coefficient of ``|Δw|²``; ``band`` the no-trade band (fraction of NAV)."""

    buy: np.ndarray
    sell: np.ndarray
    impact_quad: np.ndarray
    band: float = 0.0

    @classmethod
    def flat(cls, n_names: int, rate: float) -> TradeCosts:
        """The same ``rate`` per unit traded for every name, no impact, no band."""
        return cls(np.full(n_names, rate), np.full(n_names, rate), np.zeros(n_names))

    def split(self, flat: float) -> tuple[np.ndarray, np.ndarray]:
        """``(g, d)``: each name's mean rate ``(buy + sell)/2`` as a multiple of ``flat`` (at
        least :data:`MIN_RATE_RATIO`) and its half difference ``(buy − sell)/2``."""
        mean = np.maximum((self.buy + self.sell) / 2, MIN_RATE_RATIO * flat)
        return mean / flat, (self.buy - self.sell) / 2


@dataclass(frozen=True)
class TradeTerms:
    """A day's data of the trades-as-variables form over some names (module docstring), in the
    solver's units: each name's ``rate`` ``g`` (trades are measured in units of it), the
    ``expected`` return with the cost rewrite's linear terms, the impact's quadratic
    coefficient, and the bounds of the buy and sell trades (``g``-scaled bp)."""

    rate: np.ndarray
    expected: np.ndarray
    impact_quad: np.ndarray
    buy_range: tuple[np.ndarray, np.ndarray]
    sell_range: tuple[np.ndarray, np.ndarray]


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


@dataclass(frozen=True)
class RowPrices:
    """A restricted solve's row prices in the solver's scaled objective per unit of the row, as
    a maximisation reads them (a binding upper limit has a price >= 0): ``tail`` one per
    scenario (None without a CVaR term), ``net`` the price of ``Σw``'s upper limit less that of
    its floor, ``sector`` one per capped sector (None without caps)."""

    tail: np.ndarray | None
    net: float
    sector: np.ndarray | None


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
    rate: cp.Parameter | None = None
    rate_w0: cp.Parameter | None = None
    impact_root: cp.Parameter | None = None
    sell_range: tuple[cp.Parameter, cp.Parameter] | None = None
    w_range: tuple[cp.Parameter, cp.Parameter] | None = None
    membership: cp.Parameter | None = None
    budget: list[cp.Constraint] | None = None
    tail: cp.Constraint | None = None
    floor: cp.Constraint | None = None
    sector: cp.Constraint | None = None

    def row_prices(self) -> RowPrices:
        """The last solve's row prices (its duals; cvxpy's sign: >= 0 on a binding limit)."""
        rows = [r for r in (self.tail, self.floor, self.sector, *self.budget) if r is not None]
        if any(r.dual_value is None for r in rows):
            raise OptimizationError(f"{self.problem.solver_stats.solver_name} returned no duals")
        net = sum(float(con.dual_value) for con in self.budget)
        if self.floor is not None:
            net -= float(self.floor.dual_value)
        return RowPrices(
            tail=None if self.tail is None else np.asarray(self.tail.dual_value, dtype="float64"),
            net=net,
            sector=None
            if self.sector is None
            else np.asarray(self.sector.dual_value, dtype="float64"),
        )

    @property
    def slots(self) -> int:
        """Number of weight slots (names, plus padding in a working-set problem)."""
        return int(self.alpha.shape[0])

    def load_risk(
        self,
        r: np.ndarray,
        factors: CovarianceFactors,
        idx: np.ndarray | None = None,
    ) -> None:
        """Scenario returns (``S x n``) and covariance factor (a problem without a variance
        term takes none); of the names ``idx`` (padded to the slots) in a working-set problem,
        of all names (``idx`` None) in the full one."""
        if idx is not None:
            r = pad(r[:, idx], self.slots)
        self.r.value = r
        if self.factor is None:
            return
        if idx is None:
            self.ridge.value, self.factor.value = factors.ridge, factors.loadings
            return
        # the names' own square factor: their covariance's Cholesky root (ridge included),
        # slots x slots instead of the scenarios' S rows — a far smaller problem for the solver
        k = idx.size
        block = factors.loadings[:, idx]
        sigma = block.T @ block + factors.ridge * np.eye(k)
        root = np.zeros((self.slots, self.slots))
        root[:k, :k] = _square_root(sigma).T
        self.ridge.value, self.factor.value = 0.0, root


def _square_root(sigma: np.ndarray) -> np.ndarray:
    """An ``L`` with ``L·L' = sigma`` (symmetric PSD): its Cholesky factor, or from its
    eigen-decomposition when it is singular to rounding."""
    try:
        return np.linalg.cholesky(sigma)
    except np.linalg.LinAlgError:
        vals, vecs = np.linalg.eigh(sigma)
        return vecs * np.sqrt(np.clip(vals, 0.0, None))


class Formulation:
    """The problems for one symbol set: the full one, the working-set ones, and their data.

    ``config`` and the sector groups are fixed; :meth:`set_risk` loads the covariance (in
    factor form, :class:`~.covariance.CovarianceFactors`) and scenarios (``S x n``), rebuilding
    only when the covariance factor changes its number of rows; :meth:`load` puts a day's
    alpha and book into one of the compiled problems.
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
        self.scenarios: np.ndarray
        self.factors: CovarianceFactors
        self.full: CompiledProblem
        self._full_loaded = False  # whether the full problem holds the current risk data
        self._restricted: dict[int, CompiledProblem] = {}

    def set_risk(self, factors: CovarianceFactors, r: np.ndarray) -> None:
        """Load a covariance in factor form (checked finite) and scenarios of the built shape
        (into a compiled problem when it is next loaded, :meth:`load`)."""
        rank = factors.rank if self.config.risk_aversion > 0 else 0  # 0: no variance term
        if self.rank != rank:
            rms = float(np.sqrt(np.mean(r**2)))
            self.objective_scale = 1.0 / rms if rms > 0 else 1.0
            self._build(rank)
        self.scenarios = r
        self.factors = factors
        # loaded into the full problem when it is solved (load): a working set usually suffices,
        # and cvxpy's checks of the 504 x 700 Parameters took ~14 ms a session (cProfile of a
        # 6-month 700-name replay under load, session 17)
        self._full_loaded = False

    def _build(self, rank: int) -> None:
        """(Re)build the full problem for a covariance factor of ``rank`` rows.

        Drops the compiled working-set problems: they share the objective scale and the rank.
        """
        self.rank = rank
        self._restricted = {}
        membership = self.groups.membership(np.arange(self.n_names), self.n_names)
        self.full = self._compile(self.n_names, sparse.csr_matrix(membership), rank)

    def constant(self, idx: np.ndarray, held_bp: np.ndarray, costs: TradeCosts) -> float:
        """The objective's constant that :meth:`load`'s rewrite of the costs drops, in the
        solver's units: ``d·w0 − q·w0²`` of the names ``idx`` (module docstring)."""
        if self.config.turnover_cost <= 0:
            return 0.0
        _, d = costs.split(self.config.turnover_cost)
        h = held_bp[idx] / BP
        value = float(d[idx] @ h - costs.impact_quad[idx] @ h**2)
        return self.objective_scale * BP**2 * value

    def within_limits(self, w: np.ndarray, tol: float = 1e-9) -> bool:
        """Whether weights ``w`` (fractions of NAV, all names) keep every limit of the problem:
        each name's bounds, gross, net, the net floor and the sector caps (to ``tol``)."""
        cfg = self.config
        net = float(w.sum())
        if not (
            ((w >= self.lower - tol) & (w <= cfg.max_weight + tol)).all()
            and float(np.abs(w).sum()) <= cfg.max_gross + tol
            and net <= cfg.max_net + tol
            and (cfg.min_net is None or net >= cfg.min_net - tol)
        ):
            return False
        if not len(self.groups):
            return True
        caps = np.array(list(self.groups.caps.values()))
        exposure = np.bincount(self.groups.group_of, weights=w, minlength=len(caps) + 1)[:-1]
        return bool((np.abs(exposure) <= caps + tol).all())

    def restricted(self, slots: int) -> CompiledProblem:
        """The compiled working-set problem of ``slots`` weight slots (compiled once, cached)."""
        if slots not in self._restricted:
            # its covariance factor is its names' square root (CompiledProblem.load_risk)
            self._restricted[slots] = self._compile(slots, None, slots)
        return self._restricted[slots]

    def load(
        self,
        c: CompiledProblem,
        idx: np.ndarray,
        alpha: np.ndarray,
        held_bp: np.ndarray,
        costs: TradeCosts,
    ) -> None:
        """Load ``c`` for the names ``idx`` (indices into the symbols; every other name at 0).

        ``alpha``: expected returns of all names; ``held_bp``: current weights of all names in
        basis points; ``costs``: every name's rates. A working-set problem also gets the names'
        risk data and sector rows; its unused slots get weight bounds of 0.
        """
        k, slots = idx.size, c.slots
        if c is self.full and not self._full_loaded:
            c.load_risk(self.scenarios, self.factors)
            self._full_loaded = True
        elif c is not self.full:
            c.load_risk(self.scenarios, self.factors, idx)
            if len(self.groups):
                c.membership.value = self.groups.membership(idx, slots)
        c.w0.value = pad(held_bp[idx], slots)
        if c.buy_range is not None:
            trades = self.trades(idx, alpha, held_bp, costs, slots)
            c.buy_range[0].value, c.buy_range[1].value = trades.buy_range
            c.sell_range[0].value, c.sell_range[1].value = trades.sell_range
            c.rate.value = trades.rate
            c.rate_w0.value = trades.rate * c.w0.value
            c.impact_root.value = np.sqrt(trades.impact_quad)
            c.alpha.value = trades.expected
        else:
            c.w_range[0].value, c.w_range[1].value = self.weight_range(k, slots)
            c.alpha.value = pad(alpha[idx], slots)

    def weight_range(self, k: int, slots: int) -> tuple[np.ndarray, np.ndarray]:
        """The lowest and highest weight (bp) of ``k`` names in ``slots`` slots (the padding
        slots at 0)."""
        lower = np.full(slots, BP * self.lower)
        upper = np.full(slots, BP * self.config.max_weight)
        lower[k:] = upper[k:] = 0.0  # padding slots stay empty
        return lower, upper

    def trades(
        self,
        idx: np.ndarray,
        alpha: np.ndarray,
        held_bp: np.ndarray,
        costs: TradeCosts,
        slots: int | None = None,
    ) -> TradeTerms:
        """The names ``idx``'s terms of the trades-as-variables form (module docstring) in
        ``slots`` slots (default: one per name; padding slots at rate 1, bounds 0)."""
        k = idx.size
        slots = k if slots is None else slots
        lower, upper = self.weight_range(k, slots)
        g, d = costs.split(self.config.turnover_cost)
        g = np.append(g[idx], np.ones(slots - k))
        q = costs.impact_quad[idx]
        h = pad(held_bp[idx], slots)
        return TradeTerms(
            rate=g,
            expected=pad(alpha[idx] - d[idx] + 2 * q * held_bp[idx] / BP, slots),
            impact_quad=pad(q, slots),
            buy_range=(g * np.maximum(lower - h, 0.0), g * np.maximum(upper - h, 0.0)),
            sell_range=(g * np.maximum(h - upper, 0.0), g * np.maximum(h - lower, 0.0)),
        )

    def _compile(self, m: int, membership: sparse.csr_matrix | None, rank: int) -> CompiledProblem:
        """The parametrised cvxpy problem over ``m`` weight slots (units: module docstring), its
        covariance factor of ``rank`` rows.

        The sector rows are ``membership @ w`` — a constant 0/1 matrix for the full problem, a
        Parameter for a working set (whose names change from day to day).
        """
        cfg, n_s = self.config, self.n_scenarios
        n_groups = len(self.groups)
        c = CompiledProblem(
            alpha=cp.Parameter(m, name="alpha"),
            w0=cp.Parameter(m, name="w0"),
            r=cp.Parameter((n_s, m), name="scenarios"),
        )
        cons = []
        if cfg.turnover_cost > 0:
            # w = w0 + buy − sell, the name's limits as bounds on the trades (set in load)
            # g ∘ w − buy + sell = g ∘ w0, trades in units of each name's rate (module
            # docstring), the name's limits as bounds on them (set in load)
            c.buy_range = (cp.Parameter(m, name="buy_min"), cp.Parameter(m, name="buy_max"))
            c.sell_range = (cp.Parameter(m, name="sell_min"), cp.Parameter(m, name="sell_max"))
            c.rate = cp.Parameter(m, nonneg=True, name="rate")
            c.rate_w0 = cp.Parameter(m, name="rate_w0")
            c.impact_root = cp.Parameter(m, nonneg=True, name="impact_root")
            buy = cp.Variable(m, name="buy", bounds=list(c.buy_range))
            sell = cp.Variable(m, name="sell", bounds=list(c.sell_range))
            w = cp.Variable(m, name="w")
            cons.append(cp.multiply(c.rate, w) - buy + sell == c.rate_w0)
            objective = BP * (c.alpha @ w - cfg.turnover_cost * (cp.sum(buy) + cp.sum(sell)))
            # BP² · q · (w / BP)² = q · w² in the solver's units
            objective -= cp.sum_squares(cp.multiply(c.impact_root, w))
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
