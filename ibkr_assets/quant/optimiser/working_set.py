"""Solving a large long-only book on a working set of names, proved optimal for the whole universe.

A long-only book of :data:`WORKING_SET_MIN_NAMES` names or more holds a few dozen of them at the
optimum, so :func:`solve_working_set` first solves the problem over a working set — the names
held, the last solve's targets and the ``working_set`` best alphas — with every other weight at
0, then proves it optimal for the whole universe: with the restricted solve's duals (the budget
and sector rows' prices and the scenario duals, which are the tail scenarios' probabilities in
the CVaR linearisation) it prices each name left out,
``a_i − c_i − 2λ_var(Σw)_i + λ_cvar·E_q[R_i] − prices of its rows``, the rate at which buying it
would raise the objective (:func:`entry_gain`). If none is positive (beyond
:data:`WORKING_SET_TOL`) the KKT conditions of the full problem hold and the restricted optimum
is the full one; otherwise the best-priced names join and it is solved again. After
:data:`WORKING_SET_ROUNDS` rounds, once the set grows past :data:`WORKING_SET_MAX_SHARE` of the
names, or on any failure, the caller solves the full problem. When HiGHS is the first solver (a
long-only book with a turnover cost, the daily default) each working set is handed to it as its
own QP (:mod:`~ibkr_assets.quant.optimiser.highs_qp`); otherwise, or when that solve is not
optimal, the cvxpy working-set problems are compiled once per size bucket of
:data:`WORKING_SET_SLOTS` names (unused slots padded with weight bounds of 0) and re-solved with
the day's names loaded into their Parameters, with the solver fallbacks. At 700 names x 504
scenarios a working-set solve took ~0.06-0.12 s through cvxpy instead of ~0.67 s for the full
problem (``bench/optimiser.py``), the same optimum to the solver's tolerance; the direct program
takes about half the cvxpy path's time (session 18). HiGHS's time grows with the names in the
set (padding slots cost nothing measurable: ~60 names padded to 64 slots or not, the same time),
so a second round of ~110 names costs about twice the first: the first set is sized
(``working_set`` 50 best alphas, ~60 names with the book) to need one on few days (6 of the 125
sessions of a 6-month 700-name replay; 21 with 40 best alphas; session 17 measurements for
issue #18 item 8).

Weights are in basis points and gains in the solver's scaled objective per basis point (see
:mod:`ibkr_assets.quant.optimiser.problem`).
"""

from __future__ import annotations

import numpy as np

from ibkr_assets.quant.optimiser.config import OptimiserConfig
from ibkr_assets.quant.optimiser.highs_qp import direct_applies, solve_direct
from ibkr_assets.quant.optimiser.problem import BP, Formulation, RowPrices, TradeCosts
from ibkr_assets.quant.optimiser.solving import Solved, solve_on

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


def working_set_applies(cfg: OptimiserConfig, n_names: int) -> bool:
    """Whether a book of ``n_names`` under ``cfg`` is solved on a working set first."""
    return cfg.long_only and cfg.working_set is not None and n_names >= WORKING_SET_MIN_NAMES


def solve_working_set(
    form: Formulation,
    alpha: np.ndarray,
    held_bp: np.ndarray,
    last_bp: np.ndarray,
    costs: TradeCosts,
) -> tuple[Solved, list[int]] | None:
    """The full optimum from problems restricted to a growing set of names, or None.

    ``alpha``: expected returns; ``held_bp`` and ``last_bp``: the current weights and the last
    solve's targets, in basis points; ``costs``: the trading costs; all of every name. Starts from
    the held names, the last targets and the ``working_set`` best alphas. After each restricted
    solve every name left out is priced with the solve's duals (:func:`entry_gain`); if any would
    raise the objective, the :data:`WORKING_SET_ADD` best-priced names join the set and it is solved
    again. Returns the solve and the number of names in each round's set; None after
    :data:`WORKING_SET_ROUNDS` rounds or once the set passes :data:`WORKING_SET_MAX_SHARE` of the
    names: the caller solves the full problem.
    """
    n = form.n_names
    in_set = (held_bp != 0) | (last_bp != 0)
    in_set[np.argsort(-alpha, kind="stable")[: form.config.working_set]] = True
    compile_seconds = 0.0
    rounds: list[int] = []
    direct = direct_applies(form)
    for _ in range(WORKING_SET_ROUNDS):
        idx = np.flatnonzero(in_set)
        if idx.size > WORKING_SET_MAX_SHARE * n:
            return None
        rounds.append(idx.size)
        found = solve_direct(form, idx, alpha, held_bp, costs, last_bp) if direct else None
        if found is None:  # through cvxpy, with its solver fallbacks
            slots = min(-(-idx.size // WORKING_SET_SLOTS) * WORKING_SET_SLOTS, n)
            compiled = form.restricted(slots)
            found = solve_on(form, compiled, idx, alpha, held_bp, costs), compiled.row_prices()
        solved, prices = found
        compile_seconds += solved.compile_seconds
        gain = entry_gain(form, prices, solved.w_bp, alpha, costs)
        gain[idx] = -np.inf
        proved = not (gain > WORKING_SET_TOL * BP).any()
        if not proved and not held_bp.any() and not solved.w_bp.any():
            proved = cash_is_optimal(form, alpha, costs)
        if proved:
            return Solved(solved.w_bp, solved.value, solved.solver, compile_seconds), rounds
        # the best gains join, violators or not: the next round's optimum tends to need them
        best_first = np.argsort(-gain, kind="stable")[:WORKING_SET_ADD]
        in_set[best_first[np.isfinite(gain[best_first])]] = True
    return None


def entry_gain(
    form: Formulation,
    prices: RowPrices,
    w_bp: np.ndarray,
    alpha: np.ndarray,
    costs: TradeCosts,
) -> np.ndarray:
    """Rate at which buying each name from nothing raises the solver's (scaled) objective.

    Per basis point of weight, from the restricted solve's weights ``w_bp`` (all names,
    0 outside the set) and row ``prices`` (its duals): alpha less the name's buy rate (the
    impact term's quadratic part has no slope at 0; a name left out is not held), less the
    marginal variance ``2λ(Σw)_i``, plus the CVaR term priced by the scenario duals (the tail
    scenarios' probabilities, scaled) and less the prices of the net and sector rows. At an
    optimum of the full problem no name outside the set has a positive gain (its KKT
    condition), so these duals prove the restricted optimum is the full one.
    """
    cfg, scale, factors = form.config, form.objective_scale, form.factors
    gain = scale * BP * (alpha - costs.buy)
    if cfg.risk_aversion > 0:  # the variance term
        marginal = factors.loadings.T @ (factors.loadings @ w_bp)
        marginal += factors.ridge * w_bp
        gain -= scale * 2 * cfg.risk_aversion * marginal
    if prices.tail is not None:
        gain += prices.tail @ form.scenarios
    gain -= prices.net
    if prices.sector is not None:
        gain -= np.append(prices.sector, 0.0)[form.groups.group_of]
    return gain


def cash_is_optimal(form: Formulation, alpha: np.ndarray, costs: TradeCosts) -> bool:
    """Whether holding nothing is proved the full problem's optimum, for a book that holds
    nothing (True: proved; False: not proved, maybe optimal all the same).

    At ``w = 0`` every scenario's loss ties with the VaR (0), so the CVaR's scenario prices may
    be any ``y`` with ``0 <= y_s <= κ'/((1 − α)·S)`` and ``Σ y = κ'`` (``κ'`` the CVaR's weight
    in the solver's units). The solver returns one of them, which may price names left out above
    0 although cash is optimal: an edge-free day's set then grows round after round. Cash is
    optimal when one such ``y`` prices every name at or below 0, ``scale·BP·(a_i − buy_i) +
    (y'R)_i <= tol`` (at 0 the variance and the impact have no slope): three are tried — ``y``
    spread evenly over the scenarios, on the equal-weight market's worst ones, and half each.
    Only for limits that do not bind at 0 (positive caps and net ceiling, no positive floor)."""
    cfg, scale = form.config, form.objective_scale
    if (cfg.min_net or 0.0) > 0 or min(cfg.max_net, cfg.max_gross, *form.groups.caps.values()) <= 0:
        return False
    base = scale * BP * (alpha - costs.buy)
    if cfg.cvar_aversion <= 0:
        return bool((base <= WORKING_SET_TOL * BP).all())
    r = form.scenarios
    n_s = r.shape[0]
    total = scale * BP * cfg.cvar_aversion
    cap = total / ((1 - cfg.cvar_alpha) * n_s)
    even = np.full(n_s, total / n_s)
    tail = np.zeros(n_s)
    worst = np.argsort(r.mean(axis=1), kind="stable")
    full = min(int(total // cap), n_s - 1)
    tail[worst[:full]] = cap
    tail[worst[full]] = total - cap * full
    return any(
        bool((base + y @ r <= WORKING_SET_TOL * BP).all()) for y in (even, tail, (even + tail) / 2)
    )
