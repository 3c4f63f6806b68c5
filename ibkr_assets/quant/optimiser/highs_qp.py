"""The working-set problem handed to HiGHS as its own quadratic program, without cvxpy.

A working set of a long-only book with a turnover cost (:mod:`.working_set`) is the problem of
:meth:`~.problem.Formulation._compile` over a few dozen names, and the daily job and the backtest
solve one or two of them a session. Through cvxpy that problem reaches HiGHS in the conic
canonical form: each ``sum_squares`` becomes one auxiliary variable and one equality row per
name (the covariance root's and the impact's), and cvxpy rebuilds and checks the data of every
Parameter on each solve. Here the same program is written in HiGHS's own form — minimise
``½x'Hx + c'x`` subject to ``L ≤ Ax ≤ U`` and bounds — with the names' covariance block and
impact coefficients as the Hessian, and no auxiliaries, and its CVaR's scenario rows generated
as needed (:func:`solve_direct`: ~120 of the 504, one or two programs a working set). On the
125 sessions of a 6-month 700-name replay (seed 7, prepared days fixed) the optimiser's solve
took 53 instead of 136 ms a session (shared machine, same sitting) for the same trades and final
NAV, the targets equal to 2e-8; HiGHS alone on the cvxpy program's data, all scenarios, 65 ->
49 ms at the same active-set iterations (session 18 measurements). The working set's proof of
optimality reads this solve's duals (:class:`~.problem.RowPrices`); anything but an optimal
status gives None and the caller solves the cvxpy problem with its solver fallbacks.

Variables ``x = [w, buy, sell, ζ, u]`` (``k`` names; ``ζ, u`` only with a CVaR term), in the
solver's units of :mod:`.problem` (basis points, objective scaled by ``objective_scale``):

* rows ``g∘w − buy + sell = g∘w0`` (trades in units of each name's rate), one ranged row
  ``BP·min_net ≤ Σw ≤ BP·min(max_gross, max_net)`` (long-only: the gross is the net), the tail
  rows ``R_s·w + ζ + u_s ≥ 0`` of the scenarios held and the capped sectors' rows
  ``Σ_sector w ≤ BP·cap`` (those with names in the set);
* bounds: the trades' ranges from each name's weight limits (:meth:`.problem.Formulation.trades`),
  ``u ≥ 0``;
* cost ``−scale·BP·(a'w − ρ·Σ(buy + sell) − κ·(ζ + Σu/((1 − α)·S)))`` and Hessian
  ``2·scale·(λ·Σ_set + diag(q))`` (``S`` all the scenarios, held or not).
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

TAIL_START = 100
"""The worst scenarios of the current book, and of the last targets, the program holds at first
(of 504; the 95% CVaR's tail is ~25): on the 700-name daily problem one round usually suffices."""
TAIL_ADD = 50
"""Worst scenarios left out that join the program with the violators in a later round."""
TAIL_ROUNDS = 4
"""Rounds of scenario rows before the program holds every scenario."""
TAIL_TOL = 1e-7
"""A scenario left out joins when it loses more than the VaR by this (bp of NAV: HiGHS's primal
feasibility tolerance on the rows)."""


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
    last_bp: np.ndarray | None = None,
) -> tuple[Solved, RowPrices] | None:
    """The problem over the names ``idx`` (every other name at 0) solved by HiGHS, or None when
    HiGHS ends with any status but optimal. ``alpha``: expected returns, ``held_bp``: current
    weights (bp), ``costs``: trading costs, ``last_bp``: the last solve's targets (bp, None: no
    last solve), all of every name. Weights in bp of all names.

    The CVaR's scenario rows are generated as needed (the module docstring's tail rows): the
    program first holds the :data:`TAIL_START` worst scenarios of the current book and of the
    last targets; at its optimum every scenario left out is checked, and while any loses more
    than the VaR ``ζ`` (to :data:`TAIL_TOL`) the violators and the next worst join and it is
    solved again. Leaving out a scenario drops a non-negative term of the CVaR, so a program
    whose optimum no scenario left out violates has the full problem's optimum, its left-out
    scenarios' prices 0. After :data:`TAIL_ROUNDS` rounds every scenario is held."""
    cfg = form.config
    n_s = form.n_scenarios if cfg.cvar_aversion > 0 else 0
    r = form.scenarios[:, idx]
    tail = np.arange(n_s)
    # more rows than the tail's (1 - α)·S, or the program is unbounded (ζ → -∞)
    start = max(TAIL_START, int(np.ceil((1 - cfg.cvar_alpha) * n_s)) + 1)
    if n_s > start:
        books = [held_bp] if last_bp is None else [held_bp, last_bp]
        worst = [np.argsort(form.scenarios @ b, kind="stable")[:start] for b in books]
        tail = np.unique(np.concatenate(worst))
    for round_ in range(TAIL_ROUNDS + 1):
        if round_ == TAIL_ROUNDS:
            tail = np.arange(n_s)
        found = _program(form, idx, alpha, held_bp, costs, tail)
        if found is None:
            return None
        x, prices, objective = found
        if not n_s or tail.size == n_s:
            break
        loss = -(r @ x[: idx.size]) - x[3 * idx.size]  # each scenario's loss beyond the VaR
        loss[tail] = -np.inf
        violated = np.flatnonzero(loss > TAIL_TOL)
        if not violated.size:
            break
        worst = np.argsort(-loss, kind="stable")[:TAIL_ADD]
        tail = np.union1d(tail, np.union1d(violated, worst[np.isfinite(loss[worst])]))
    w_bp = np.zeros(form.n_names)
    w_bp[idx] = x[: idx.size]
    if prices.tail is not None:  # the scenarios left out: price 0
        every = np.zeros(n_s)
        every[tail] = prices.tail
        prices = RowPrices(every, prices.net, prices.sector)
    value = objective + form.constant(idx, held_bp, costs)
    return Solved(w_bp, value, "HIGHS", 0.0), prices


def _program(
    form: Formulation,
    idx: np.ndarray,
    alpha: np.ndarray,
    held_bp: np.ndarray,
    costs: TradeCosts,
    tail: np.ndarray,
) -> tuple[np.ndarray, RowPrices, float] | None:
    """HiGHS's solution ``x`` (module docstring's order) of the program over the names ``idx``
    with the scenario rows ``tail`` (indices of ``form.scenarios``' rows), its row prices
    (``tail``'s scenarios only) and its objective (the solver's maximised one); None unless
    optimal."""
    cfg, scale, groups = form.config, form.objective_scale, form.groups
    k, n_s = idx.size, tail.size
    trades = form.trades(idx, alpha, held_bp, costs)
    n = 3 * k + (1 + n_s if cfg.cvar_aversion > 0 else 0)
    cost = np.zeros(n)
    cost[:k] = -scale * BP * trades.expected
    cost[k : 3 * k] = scale * BP * cfg.turnover_cost
    inf = highspy.kHighsInf
    lower = np.concatenate([np.full(k, -inf), trades.buy_range[0], trades.sell_range[0]])
    upper = np.concatenate([np.full(k, inf), trades.buy_range[1], trades.sell_range[1]])
    eye = sparse.identity(k, format="csr")
    blocks = [[sparse.diags(trades.rate), -eye, eye], [np.ones((1, k)), None, None]]
    floor = -inf if cfg.min_net is None else BP * cfg.min_net
    row_lower = [trades.rate * held_bp[idx], [floor]]
    row_upper = [trades.rate * held_bp[idx], [BP * min(cfg.max_gross, cfg.max_net)]]
    if cfg.cvar_aversion > 0:
        # the CVaR's mean over all the scenarios, whichever rows the program holds
        cost[3 * k] = scale * BP * cfg.cvar_aversion
        cost[3 * k + 1 :] = (
            scale * BP * cfg.cvar_aversion / ((1 - cfg.cvar_alpha) * form.n_scenarios)
        )
        lower = np.concatenate([lower, [-inf], np.zeros(n_s)])
        upper = np.concatenate([upper, np.full(1 + n_s, inf)])
        for row in blocks:
            row += [None, None]
        r = form.scenarios[np.ix_(tail, idx)]
        blocks.append([r, None, None, np.ones((n_s, 1)), sparse.identity(n_s, format="csr")])
        row_lower.append(np.zeros(n_s))
        row_upper.append(np.full(n_s, inf))
    capped = np.flatnonzero(groups.group_of[idx] < len(groups))
    sectors = np.unique(groups.group_of[idx][capped])
    if sectors.size:
        rows = np.searchsorted(sectors, groups.group_of[idx][capped])
        member = sparse.csr_matrix((np.ones(capped.size), (rows, capped)), shape=(sectors.size, k))
        blocks.append([member] + [None] * (len(blocks[0]) - 1))
        caps = np.array(list(groups.caps.values()))
        row_lower.append(np.full(sectors.size, -inf))
        row_upper.append(BP * caps[sectors])
    hessian = np.diag(trades.impact_quad)
    if cfg.risk_aversion > 0:
        block = form.factors.loadings[:, idx]
        hessian = hessian + cfg.risk_aversion * (block.T @ block + form.factors.ridge * np.eye(k))
    solver = _highs(
        n,
        cost,
        (lower, upper),
        sparse.bmat(blocks, format="csc"),
        (np.concatenate(row_lower), np.concatenate(row_upper)),
        sparse.csc_matrix(2 * scale * hessian),
    )
    if solver.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    solution = solver.getSolution()
    # HiGHS minimises -objective: a row's dual is d(-objective)/d(limit), so a binding upper
    # limit's price (maximisation) is -dual and a binding lower limit's (the tail rows) +dual
    y = np.asarray(solution.row_dual)
    sector = None
    if len(groups):
        sector = np.zeros(len(groups))
        sector[sectors] = -y[k + 1 + n_s :]
    prices = RowPrices(
        tail=y[k + 1 : k + 1 + n_s] if cfg.cvar_aversion > 0 else None,
        net=-float(y[k]),
        sector=sector,
    )
    objective = -float(solver.getInfo().objective_function_value)
    return np.asarray(solution.col_value), prices, objective


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
