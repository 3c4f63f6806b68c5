"""Solving a compiled problem: which solvers, in what order, and what counts as a solution.

``solver="AUTO"`` (the default) takes HiGHS first for a large long-only book (scenario matrix of
at least :data:`AUTO_HIGHS_ENTRIES` numbers, e.g. 700 names x 504 days) and Clarabel (interior
point, ~1e-8) otherwise. HiGHS solves a linear program (no variance term, e.g. a minimum-CVaR
portfolio) by the dual simplex method and the quadratic program by its active-set method, exact
at the optimum's active set and about 3x faster than Clarabel on the daily problem, whose dense
504 x 700 scenario block makes every interior-point step costly. The active-set method needs the
non-degenerate formulation of :mod:`ibkr_assets.quant.optimiser.problem` (trades as variables,
weights in basis points). Even so it runs under :data:`HIGHS_ITERATION_LIMIT` iterations and
anything but an optimal status passes the problem on to Clarabel, then the other solvers in
:data:`~ibkr_assets.quant.optimiser.config.SOLVERS`. With shorts allowed HiGHS is never used on
the quadratic program (it cycles, and can abort the process). Any final status other than
optimal raises :class:`~ibkr_assets.quant.optimiser.diagnostics.OptimizationError` naming the
limits in force. The weights are bounded (``max_weight``, ``max_gross``), so a solver that says
"unbounded" has lost precision: that is reported as a numerical failure, with the inputs' scale,
and the next solver tried.

No solve starts from the previous solution (HiGHS's QP method ignores a start without its basis,
Clarabel cannot use one), so a re-solve costs the same whatever changed.

**HiGHS's banner.** HiGHS prints a copyright banner on stdout once per process. Stdout may be a
stdio MCP session's channel in the same process, so :func:`installed_solvers` has a silent
solver take that banner first (:func:`_swallow_highs_banner`); no file descriptor is redirected.

Reference: Q. Huangfu & J.A.J. Hall (2018), "Parallelizing the dual revised simplex method"
(HiGHS), *Math. Prog. Comp.* 10.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import cvxpy as cp
import numpy as np

from ibkr_assets.quant.optimiser.config import SOLVERS, OptimiserConfig
from ibkr_assets.quant.optimiser.diagnostics import OptimizationError, limits_text
from ibkr_assets.quant.optimiser.problem import CompiledProblem, Formulation, TradeCosts

AUTO_HIGHS_ENTRIES = 50_000
"""``solver="AUTO"`` tries HiGHS first from this many scenario-matrix entries (``n·S``) up."""
HIGHS_ITERATION_LIMIT = 20_000
"""Iterations (active-set QP plus simplex) HiGHS may take before the problem goes to the next
solver: it cycles rarely. A count, not seconds, so the same inputs give the same weights however
loaded the machine is (a time limit handed slow solves to Clarabel under load, and a replay's
book then drifted with the load). The 700-name daily problems of a 6-month replay take a median
of ~400 and at most ~4,700 iterations (~1 s) — measured on seed 7, 146 solves."""


@dataclass(frozen=True)
class Solved:
    """One solve: weights in basis points (all names), objective value as the solver saw it."""

    w_bp: np.ndarray
    value: float
    solver: str
    compile_seconds: float


@functools.cache
def installed_solvers() -> frozenset[str]:
    """The cvxpy solvers installed (HiGHS's banner taken silently the first time)."""
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


def solver_order(cfg: OptimiserConfig, n_names: int, n_scenarios: int) -> list[str]:
    """The installed solvers to try, first choice first (the AUTO rule above)."""
    preferred = cfg.solver.upper()
    if preferred == "AUTO":
        big = n_names * n_scenarios >= AUTO_HIGHS_ENTRIES
        preferred = "HIGHS" if big and cfg.long_only else "CLARABEL"
    order = [preferred] + [s for s in SOLVERS if s != preferred]
    if cfg.risk_aversion > 0 and (not cfg.long_only or cfg.turnover_cost == 0):
        # HiGHS 1.16's active-set QP method cycles on the long-short problem, and on some
        # (and on long-only ones without a turnover cost) aborts the whole process
        # (free(): invalid pointer), out of any fallback's reach
        order.remove("HIGHS")
    return [s for s in order if s in installed_solvers()]


def solve_on(
    form: Formulation,
    c: CompiledProblem,
    idx: np.ndarray,
    alpha: np.ndarray,
    held_bp: np.ndarray,
    costs: TradeCosts,
) -> Solved:
    """Solve ``c`` over the names ``idx`` (the rest held at 0); weights in bp, all names.

    ``alpha``: expected returns, ``held_bp``: current weights in basis points, ``costs``: the
    trading costs, of all names.
    """
    form.load(c, idx, alpha, held_bp, costs)
    problem = c.problem
    errors = []
    for solver in solver_order(form.config, form.n_names, form.n_scenarios):
        try:
            options = (
                {
                    "qp_iteration_limit": HIGHS_ITERATION_LIMIT,
                    "simplex_iteration_limit": HIGHS_ITERATION_LIMIT,
                }
                if solver == "HIGHS"
                else {}
            )
            with warnings.catch_warnings():  # an inaccurate status is reported below
                warnings.simplefilter("ignore", UserWarning)
                problem.solve(solver=solver, warm_start=False, **options)
        except cp.error.SolverError as exc:
            errors.append(f"{solver}: {exc}")
            continue
        if problem.status == cp.OPTIMAL:
            break
        if problem.status in (cp.UNBOUNDED, cp.UNBOUNDED_INACCURATE):
            # every weight is bounded (max_weight, max_gross): the solver lost precision
            errors.append(
                f"{solver}: numerical failure (said {problem.status} of a bounded problem)"
            )
            continue
        errors.append(f"{solver}: status {problem.status}")
        if problem.status == cp.INFEASIBLE:
            break
    else:
        raise OptimizationError(
            "no solver reached an optimal solution: "
            + "; ".join(errors)
            + f" (largest |expected return| {np.abs(alpha).max():.3g}, largest variance "
            f"{form.factors.diagonal().max():.3g}: a numerical failure usually means an input off "
            "the daily scale, e.g. returns in percent)"
        )
    if problem.status != cp.OPTIMAL:
        raise OptimizationError(
            f"optimisation {problem.status} under limits "
            f"{limits_text(form.config, form.groups.caps)}: " + "; ".join(errors)
        )
    w_bp = np.zeros(form.n_names)
    w_bp[idx] = np.asarray(c.w.value, dtype="float64")[: idx.size]
    return Solved(
        w_bp,
        float(problem.value) + form.constant(idx, held_bp, costs),
        str(problem.solver_stats.solver_name),
        float(problem.compilation_time or 0.0),
    )
