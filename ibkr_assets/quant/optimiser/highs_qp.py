"""The working-set problem handed to HiGHS as its own quadratic program, without cvxpy.

A working set of a long-only book with a turnover cost (:mod:`.working_set`) is the problem of
:meth:`~.problem.Formulation._compile` over a few dozen names, and the daily job and the backtest
solve one or two of them a session. Through cvxpy that problem reaches HiGHS in the conic
canonical form: each ``sum_squares`` becomes one auxiliary variable and one equality row per
name (the covariance root's and the impact's), and cvxpy rebuilds and checks the data of every
Parameter on each solve. Here the same program is written in HiGHS's own form — minimise
``½x'Hx + c'x`` subject to ``L ≤ Ax ≤ U`` and bounds — with the names' covariance block and
impact coefficients as the Hessian, and no auxiliaries: the same optimum (weights to ~1e-6 bp
on the 41 first daily problems of a 6-month 700-name replay, seed 7, and the same number of
active-set iterations) at ~49 instead of ~65 ms of HiGHS time, and without cvxpy's ~20 ms a
solve around it (session 18 measurements). The working set's proof of optimality reads this
solve's duals (:class:`RowPrices`); anything but an optimal status gives None and the caller
solves the cvxpy problem with its solver fallbacks.

Variables ``x = [w, buy, sell, ζ, u]`` (``k`` names; ``ζ, u`` only with a CVaR term), in the
solver's units of :mod:`.problem` (basis points, objective scaled by ``objective_scale``):

* rows ``g∘w − buy + sell = g∘w0`` (trades in units of each name's rate), one ranged row
  ``BP·min_net ≤ Σw ≤ BP·min(max_gross, max_net)`` (long-only: the gross is the net), the tail
  rows ``R_s·w + ζ + u_s ≥ 0`` and the capped sectors' rows ``Σ_sector w ≤ BP·cap``;
* bounds: the trades' ranges from each name's weight limits (:meth:`.problem.Formulation.trades`),
  ``u ≥ 0``;
* cost ``−scale·BP·(a'w − ρ·Σ(buy + sell) − κ·(ζ + Σu/((1 − α)·S)))`` and Hessian
  ``2·scale·(λ·Σ_set + diag(q))``.
"""

from __future__ import annotations

import highspy
import numpy as np
from scipy import sparse

from ibkr_assets.quant.optimiser.problem import BP, Formulation, RowPrices, TradeCosts
from ibkr_assets.quant.optimiser.solving import (
    HIGHS_ITERATION_LIMIT,
    Solved,
    installed_solvers,
    solver_order,
)


def direct_applies(form: Formulation) -> bool:
    """Whether ``form``'s working sets go to HiGHS directly: a long-only book with a turnover
    cost (trades as variables) whose first solver is HiGHS (:func:`.solving.solver_order`)."""
    cfg = form.config
    if not (cfg.long_only and cfg.turnover_cost > 0):
        return False
    order = solver_order(cfg, form.n_names, form.n_scenarios)
    return bool(order) and order[0] == "HIGHS"


def solve_direct(
    form: Formulation,
    idx: np.ndarray,
    alpha: np.ndarray,
    held_bp: np.ndarray,
    costs: TradeCosts,
) -> tuple[Solved, RowPrices] | None:
    """The problem over the names ``idx`` (every other name at 0) solved by HiGHS, or None when
    HiGHS ends with any status but optimal. ``alpha``: expected returns, ``held_bp``: current
    weights (bp), ``costs``: trading costs, all of every name. Weights in bp of all names."""
    cfg, scale = form.config, form.objective_scale
    k, r = idx.size, form.scenarios[:, idx]
    trades = form.trades(idx, alpha, held_bp, costs)
    n_s = r.shape[0] if cfg.cvar_aversion > 0 else 0
    n = 3 * k + (1 + n_s if n_s else 0)
    cost = np.zeros(n)
    cost[:k] = -scale * BP * trades.expected
    cost[k : 3 * k] = scale * BP * cfg.turnover_cost
    lower = np.concatenate(
        [np.full(k, -highspy.kHighsInf), *trades.buy_range[:1], *trades.sell_range[:1]]
    )
    upper = np.concatenate(
        [np.full(k, highspy.kHighsInf), *trades.buy_range[1:], *trades.sell_range[1:]]
    )
    eye = sparse.identity(k, format="csr")
    blocks = [[sparse.diags(trades.rate), -eye, eye], [np.ones((1, k)), None, None]]
    row_lower = [trades.rate * held_bp[idx], [-highspy.kHighsInf if cfg.min_net is None else 0.0]]
    row_upper = [trades.rate * held_bp[idx], [BP * min(cfg.max_gross, cfg.max_net)]]
    if cfg.min_net is not None:
        row_lower[1] = [BP * cfg.min_net]
    if n_s:
        cost[3 * k] = scale * BP * cfg.cvar_aversion
        cost[3 * k + 1 :] = scale * BP * cfg.cvar_aversion / ((1 - cfg.cvar_alpha) * n_s)
        lower = np.concatenate([lower, [-highspy.kHighsInf], np.zeros(n_s)])
        upper = np.concatenate([upper, np.full(1 + n_s, highspy.kHighsInf)])
        for row in blocks:
            row += [None, None]
        blocks.append([r, None, None, np.ones((n_s, 1)), sparse.identity(n_s, format="csr")])
        row_lower.append(np.zeros(n_s))
        row_upper.append(np.full(n_s, highspy.kHighsInf))
    groups = form.groups
    capped = np.flatnonzero(np.asarray(groups.group_of[idx]) < len(groups))
    sectors = np.unique(groups.group_of[idx][capped])
    if sectors.size:
        rows = np.searchsorted(sectors, groups.group_of[idx][capped])
        member = sparse.csr_matrix((np.ones(capped.size), (rows, capped)), shape=(sectors.size, k))
        blocks.append([member] + [None] * (len(blocks[0]) - 1))
        caps = np.array(list(groups.caps.values()))
        row_lower.append(np.full(sectors.size, -highspy.kHighsInf))
        row_upper.append(BP * caps[sectors])
    a = sparse.bmat(blocks, format="csc")
    hessian = np.diag(trades.impact_quad)
    if cfg.risk_aversion > 0:
        block = form.factors.loadings[:, idx]
        hessian = hessian + cfg.risk_aversion * (block.T @ block + form.factors.ridge * np.eye(k))
    solver = _highs(
        n,
        cost,
        (lower, upper),
        a,
        (np.concatenate(row_lower), np.concatenate(row_upper)),
        sparse.csc_matrix(2 * scale * hessian),
    )
    if solver.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    solution = solver.getSolution()
    x = np.asarray(solution.col_value)
    # HiGHS minimises -objective: a row's dual is d(-objective)/d(limit), so a binding upper
    # limit's price (maximisation) is -dual and a binding lower limit's (the tail rows) +dual
    y = np.asarray(solution.row_dual)
    w_bp = np.zeros(form.n_names)
    w_bp[idx] = x[:k]
    sector = None
    if len(groups):
        sector = np.zeros(len(groups))
        sector[sectors] = -y[k + 1 + n_s :]
    prices = RowPrices(
        tail=y[k + 1 : k + 1 + n_s] if n_s else None, net=-float(y[k]), sector=sector
    )
    value = -float(solver.getInfo().objective_function_value) + form.constant(idx, held_bp, costs)
    return Solved(w_bp, value, "HIGHS", 0.0), prices


def _highs(
    n: int,
    cost: np.ndarray,
    bounds: tuple[np.ndarray, np.ndarray],
    a: sparse.csc_matrix,
    rows: tuple[np.ndarray, np.ndarray],
    hessian: sparse.csc_matrix,
) -> highspy.Highs:
    """A HiGHS solver that has run the QP (``½x'Hx + c'x``; ``hessian`` over the first
    columns, the rest of the ``n`` unpenalised) under :data:`.solving.HIGHS_ITERATION_LIMIT`."""
    installed_solvers()  # HiGHS's banner taken silently first
    model = highspy.HighsModel()
    lp = model.lp_
    lp.num_col_, lp.num_row_ = n, a.shape[0]
    lp.col_cost_, (lp.col_lower_, lp.col_upper_) = cost, bounds
    lp.row_lower_, lp.row_upper_ = rows
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = a.indptr, a.indices, a.data
    upper = sparse.triu(hessian, format="csc")
    if upper.count_nonzero():
        h = model.hessian_
        h.dim_, h.format_ = n, highspy.HessianFormat.kTriangular
        start = np.concatenate([upper.indptr, np.full(n - hessian.shape[1], upper.indptr[-1])])
        h.start_, h.index_, h.value_ = start, upper.indices, upper.data
    solver = highspy.Highs()
    solver.setOptionValue("log_to_console", False)
    solver.setOptionValue("qp_iteration_limit", HIGHS_ITERATION_LIMIT)
    solver.setOptionValue("simplex_iteration_limit", HIGHS_ITERATION_LIMIT)
    solver.passModel(model)
    solver.run()
    return solver
