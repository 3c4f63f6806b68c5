"""The working-set problem written for HiGHS directly (optimiser.highs_qp) is the cvxpy one: the
same weights, objective and row prices on the same names, whichever limits bind."""

import numpy as np
import pandas as pd
import pytest

from ibkr_assets.quant.costs import CostRates
from ibkr_assets.quant.optimiser import OptimiserConfig, PortfolioOptimiser, highs_qp, working_set
from ibkr_assets.quant.optimiser.highs_qp import direct_applies, solve_direct
from ibkr_assets.quant.optimiser.problem import BP
from ibkr_assets.quant.optimiser.solving import solve_on
from ibkr_assets.quant.risk_model import build_risk_model


def _world(n: int = 90, s: int = 300, seed: int = 4):
    """A Ledoit–Wolf risk model over ``n`` names in 5 sectors, alpha, a book and per-name
    costs with impact."""
    rng = np.random.default_rng(seed)
    symbols = [f"N{i:03d}" for i in range(n)]
    sector_of = np.arange(n) % 5
    market = rng.standard_t(4, s + 1) * 0.009
    rets = (
        np.outer(market, rng.normal(1, 0.3, n))
        + rng.standard_t(4, (s + 1, 5))[:, sector_of] * 0.006
        + rng.standard_t(5, (s + 1, n)) * 0.012
    )
    model = build_risk_model(pd.DataFrame(100 * np.cumprod(1 + rets, axis=0), columns=symbols), s)
    sectors = pd.Series([f"K{k}" for k in sector_of], index=symbols)
    alpha = rng.uniform(-1, 1, n) * 0.006
    held = np.zeros(n)
    held[rng.choice(n, 12, replace=False)] = 0.06
    index = pd.Index(symbols)
    costs = CostRates(
        pd.Series(rng.uniform(5e-6, 3e-4, n), index=index),
        pd.Series(rng.uniform(5e-6, 3e-4, n), index=index),
        pd.Series(rng.uniform(0, 5e-3, n), index=index),
        0.0,
    )
    return model, sectors, alpha, held, costs


@pytest.mark.parametrize(
    ("limits", "binding"),
    [
        ({}, "net"),
        ({"sector_cap": 0.1, "max_weight": 0.04}, "sector"),
        ({"min_net": 0.9, "risk_aversion": 400.0}, "floor"),
        ({"max_gross": 0.3}, "net"),
        ({"risk_aversion": 0.0}, "net"),  # no variance term: the impact alone in the Hessian
    ],
)
def test_the_direct_program_is_the_cvxpy_working_set_problem(limits, binding):
    model, sectors, alpha, held, rates = _world()
    cfg = OptimiserConfig(**{"sector_cap": 0.3, "solver": "HIGHS", **limits})
    optimiser = PortfolioOptimiser.from_risk_model(model, cfg, sectors)
    form = optimiser._form
    assert direct_applies(form)
    costs = optimiser._trade_costs(rates)
    held_bp = np.round(held * BP, 3)
    idx = np.flatnonzero((held > 0) | (alpha > np.quantile(alpha, 0.6)))  # ~40 names
    compiled = form.restricted(64)
    want = solve_on(form, compiled, idx, alpha, held_bp, costs)
    want_prices = compiled.row_prices()
    got, got_prices = solve_direct(form, idx, alpha, held_bp, costs)
    np.testing.assert_allclose(got.w_bp, want.w_bp, atol=1e-4)  # bp
    assert got.value == pytest.approx(want.value, rel=1e-9)
    scale = np.abs(want_prices.tail).sum() + abs(want_prices.net) + 1.0
    np.testing.assert_allclose(got_prices.tail, want_prices.tail, atol=1e-6 * scale)
    assert got_prices.net == pytest.approx(want_prices.net, abs=1e-6 * scale)
    np.testing.assert_allclose(got_prices.sector, want_prices.sector, atol=1e-6 * scale)
    w = got.w_bp / BP
    if binding == "net":
        assert w.sum() == pytest.approx(min(cfg.max_gross, cfg.max_net), abs=1e-8)
        assert got_prices.net > 0
    elif binding == "floor":
        assert w.sum() == pytest.approx(cfg.min_net, abs=1e-8)
        assert got_prices.net < 0  # the floor's price: selling would raise the objective
    else:
        assert (got_prices.sector > 0).any()
        by_sector = pd.Series(w, index=sectors.index).groupby(sectors).sum()
        assert by_sector.max() == pytest.approx(cfg.sector_cap, abs=1e-8)


def test_the_direct_program_is_left_to_cvxpy_where_highs_is_not_first():
    model, sectors, *_ = _world()
    for cfg in (
        OptimiserConfig(solver="CLARABEL"),
        OptimiserConfig(turnover_cost=0.0),  # HiGHS can abort the process there
        OptimiserConfig(long_only=False),
    ):
        form = PortfolioOptimiser.from_risk_model(model, cfg, sectors)._form
        assert not direct_applies(form)


@pytest.mark.parametrize("start", [5, 40])  # 5: raised to the tail's 16 rows
def test_scenario_rows_generated_as_needed_give_the_optimum_of_all_of_them(monkeypatch, start):
    model, sectors, alpha, held, rates = _world(seed=6)
    optimiser = PortfolioOptimiser.from_risk_model(model, OptimiserConfig(sector_cap=0.3), sectors)
    form, costs = optimiser._form, optimiser._trade_costs(rates)
    held_bp = np.round(held * BP, 3)
    idx = np.flatnonzero((held > 0) | (alpha > np.quantile(alpha, 0.6)))
    programs = []
    program = highs_qp._program
    monkeypatch.setattr(highs_qp, "_program", lambda *a: programs.append(a[-1].size) or program(*a))
    every, every_prices = solve_direct(form, idx, alpha, held_bp, costs)  # 300 > 100 rows
    monkeypatch.setattr(highs_qp, "TAIL_START", start)
    monkeypatch.setattr(highs_qp, "TAIL_ADD", 5)
    got, got_prices = solve_direct(form, idx, alpha, held_bp, costs)
    assert len(programs) >= 3 and programs[-1] < form.n_scenarios  # rounds, never all rows
    np.testing.assert_allclose(got.w_bp, every.w_bp, atol=1e-4)
    assert got.value == pytest.approx(every.value, rel=1e-9)
    np.testing.assert_allclose(got_prices.tail, every_prices.tail, atol=1e-6 * every.value)
    assert (got_prices.tail > 0).sum() >= 0.04 * form.n_scenarios  # the tail, priced


def test_an_edge_free_day_is_proved_all_cash_in_one_round():
    """With every expected return 0 and nothing held the optimum is cash; its proof (some CVaR
    price of the degenerate all-tied tail pricing every name at or below 0) holds in the first
    round, where the solver's own prices would grow the set round after round."""
    model, sectors, _, _, rates = _world(n=400, s=504, seed=9)
    zero = pd.Series(0.0, index=model.symbols)
    optimiser = PortfolioOptimiser.from_risk_model(model, OptimiserConfig(sector_cap=0.3), sectors)
    full = PortfolioOptimiser.from_risk_model(
        model, OptimiserConfig(sector_cap=0.3, working_set=None), sectors
    )
    got, want = optimiser.solve(zero, None, rates), full.solve(zero, None, rates)
    assert optimiser.working_set_rounds == [50]
    assert (got.weights == 0).all() and (want.weights.abs() < 1e-9).all()
    form, costs = optimiser._form, optimiser._trade_costs(rates)
    assert working_set.cash_is_optimal(form, np.zeros(form.n_names), costs)
    # a name expected to earn well above its costs: cash is not proved (nor optimal)
    rich = np.zeros(form.n_names)
    rich[7] = 0.01
    assert not working_set.cash_is_optimal(form, rich, costs)
    assert full.solve(pd.Series(rich, index=model.symbols), None, rates).weights.iloc[7] > 0
    # a floor on the net: cash is infeasible, never "proved"
    floored = PortfolioOptimiser.from_risk_model(model, OptimiserConfig(min_net=0.5), sectors)
    assert not working_set.cash_is_optimal(floored._form, np.zeros(form.n_names), costs)
