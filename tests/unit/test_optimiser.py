import cvxpy as cp
import numpy as np
import pandas as pd
import pytest
from pypfopt.efficient_frontier import EfficientCVaR, EfficientFrontier

from ibkr_assets.quant.costs import CostRates, impact_quadratic
from ibkr_assets.quant.optimiser import (
    OptimisationResult,
    OptimiserConfig,
    OptimizationError,
    PortfolioOptimiser,
    covariance_factors,
    optimise,
    solving,
)
from ibkr_assets.quant.risk_metrics import historical_var_cvar
from ibkr_assets.quant.risk_model import build_risk_model


def _data(n: int = 8, s: int = 250, seed: int = 3):
    rng = np.random.default_rng(seed)
    symbols = [f"S{i}" for i in range(n)]
    loadings = rng.normal(1.0, 0.3, n)
    market = rng.standard_t(5, s) * 0.008
    rets = np.outer(market, loadings) + rng.normal(0, 0.012, (s, n))
    scenarios = pd.DataFrame(rets, columns=symbols)
    cov = pd.DataFrame(np.cov(rets, rowvar=False), index=symbols, columns=symbols)
    alpha = pd.Series(rng.normal(0, 0.001, n), index=symbols)
    return symbols, cov, scenarios, alpha


def test_unconstrained_mean_variance_matches_closed_form():
    _symbols, cov, scenarios, alpha = _data()
    lam = 50.0
    cfg = OptimiserConfig(
        risk_aversion=lam,
        cvar_aversion=0.0,
        turnover_cost=0.0,
        long_only=False,
        max_weight=1.0,
        max_gross=10.0,
        cash_buffer=0.0,
    )
    res = optimise(alpha * 0.05, cov, scenarios, cfg)
    expected = np.linalg.solve(cov.to_numpy(), alpha.to_numpy() * 0.05) / (2 * lam)
    assert np.abs(expected).max() < 0.5 and np.abs(expected).sum() < 2  # limits not binding
    np.testing.assert_allclose(res.weights.to_numpy(), expected, atol=1e-6)
    assert res.expected_return == pytest.approx(float(alpha @ expected) * 0.05, rel=1e-5)
    assert res.volatility == pytest.approx(np.sqrt(expected @ cov.to_numpy() @ expected), 1e-5)


def test_mean_variance_with_budget_matches_pypfopt_quadratic_utility():
    symbols, cov, scenarios, alpha = _data(n=10)
    mu = alpha * 0.2 + 0.0005
    delta = 40.0
    ef = EfficientFrontier(mu, cov, weight_bounds=(0, 0.3))
    ef.max_quadratic_utility(risk_aversion=delta)
    ref = pd.Series(ef.clean_weights(rounding=None))
    cfg = OptimiserConfig(
        risk_aversion=delta / 2,
        cvar_aversion=0.0,
        turnover_cost=0.0,
        max_weight=0.3,
        cash_buffer=0.0,
        min_net=1.0,
    )
    res = optimise(mu, cov, scenarios, cfg)
    np.testing.assert_allclose(res.weights.to_numpy(), ref.reindex(symbols).to_numpy(), atol=1e-5)


def test_min_cvar_matches_pypfopt():
    _symbols, cov, scenarios, alpha = _data(n=6, s=300)
    ec = EfficientCVaR(alpha, scenarios, beta=0.95, weight_bounds=(0, 1))
    ec.min_cvar()
    _, ref_cvar = ec.portfolio_performance()
    cfg = OptimiserConfig(
        risk_aversion=0.0,
        cvar_aversion=1.0,
        turnover_cost=0.0,
        max_weight=1.0,
        cash_buffer=0.0,
        min_net=1.0,
    )
    res = optimise(alpha * 0.0, cov, scenarios, cfg)
    assert res.cvar == pytest.approx(ref_cvar, abs=1e-6)
    assert res.weights.sum() == pytest.approx(1.0, abs=1e-6)
    assert res.cvar == pytest.approx(historical_var_cvar(scenarios @ res.weights, 0.95)[1])


def test_every_limit_holds_at_the_optimum():
    symbols, cov, scenarios, alpha = _data(n=20)
    sectors = {s: ("Tech" if i < 10 else "Energy") for i, s in enumerate(symbols)}
    cfg = OptimiserConfig(
        risk_aversion=0.5,
        cvar_aversion=0.01,
        long_only=False,
        max_gross=1.2,
        max_weight=0.12,
        cash_buffer=0.05,
        sector_cap=0.3,
        sector_caps={"Energy": 0.2},
    )
    res = optimise(alpha * 10, cov, scenarios, cfg, sectors=sectors)  # strong alpha: limits bind
    w = res.weights
    tol = 1e-6
    assert w.abs().max() <= 0.12 + tol
    assert w.abs().sum() <= 1.2 + tol
    assert w.sum() <= 0.95 + tol
    sec = pd.Series(sectors)
    assert abs(w[sec == "Tech"].sum()) <= 0.3 + tol
    assert abs(w[sec == "Energy"].sum()) <= 0.2 + tol
    assert (w < -1e-4).any()  # shorts allowed and used
    assert w.abs().max() == pytest.approx(0.12, abs=1e-5)  # the cap binds
    long = optimise(
        alpha * 10, cov, scenarios, cfg.model_copy(update={"long_only": True}), None, sectors
    )
    assert (long.weights >= -tol).all()


def test_turnover_cost_keeps_current_book():
    symbols, cov, scenarios, alpha = _data()
    w0 = pd.Series(0.1, index=symbols)
    cfg = OptimiserConfig(risk_aversion=0.0, cvar_aversion=0.0, turnover_cost=1.0)
    res = optimise(alpha, cov, scenarios, cfg, current_weights=w0 * 0.9)
    np.testing.assert_allclose(res.weights.to_numpy(), 0.09, atol=1e-6)
    free = optimise(
        alpha,
        cov,
        scenarios,
        cfg.model_copy(update={"turnover_cost": 0.0}),
        current_weights=w0 * 0.9,
    )
    assert np.abs(free.weights - 0.09).max() > 0.01


def test_parametrised_resolve_reuses_compilation_and_matches_fresh_build():
    symbols, cov, scenarios, alpha = _data(n=12)
    opt = PortfolioOptimiser(symbols, cov, scenarios, OptimiserConfig())
    assert opt.problem.is_dpp()
    first = opt.solve(alpha)
    cached = opt.problem._cache.param_prog
    assert cached is not None
    alpha2 = alpha[::-1].set_axis(alpha.index)
    second = opt.solve(alpha2, first.weights)
    assert opt.problem._cache.param_prog is cached  # no recompilation
    fresh = optimise(alpha2, cov, scenarios, OptimiserConfig(), current_weights=first.weights)
    np.testing.assert_allclose(second.weights, fresh.weights, atol=1e-6)
    assert isinstance(second, OptimisationResult)
    assert second.solver == "CLARABEL"


def test_from_risk_model_uses_daily_units():
    rng = np.random.default_rng(0)
    closes = pd.DataFrame(
        100 * np.cumprod(1 + rng.normal(0.0005, 0.01, (200, 5)), axis=0),
        columns=list("ABCDE"),
    )
    model = build_risk_model(closes, scenario_sessions=150)
    opt = PortfolioOptimiser.from_risk_model(model)
    res = opt.solve(pd.Series(0.001, index=model.symbols))
    w = res.weights.to_numpy()
    assert res.volatility == pytest.approx(np.sqrt(w @ model.daily_cov().to_numpy() @ w), 1e-9)


def test_infeasible_limits_are_named():
    symbols, cov, scenarios, alpha = _data(n=5)
    with pytest.raises(OptimizationError, match=r"max_weight 0.12 × 5 symbols = 0.6 < min_net 0.9"):
        optimise(alpha, cov, scenarios, OptimiserConfig(min_net=0.9))
    with pytest.raises(OptimizationError, match=r"min_net 0.99 > 1 − cash_buffer 0.95"):
        optimise(alpha, cov, scenarios, OptimiserConfig(min_net=0.99, max_weight=1.0))
    sectors = dict.fromkeys(symbols, "Tech")
    with pytest.raises(OptimizationError, match=r"sector caps \{'Tech': 0.2\}.*< min_net 0.5"):
        optimise(
            alpha,
            cov,
            scenarios,
            OptimiserConfig(min_net=0.5, max_weight=0.5, sector_cap=0.2),
            sectors=sectors,
        )


def test_bad_inputs_named():
    symbols, cov, scenarios, alpha = _data(n=5)
    bad = alpha.copy()
    bad["S3"] = np.nan
    with pytest.raises(OptimizationError, match=r"NaN or infinite expected return .*\['S3'\]"):
        optimise(bad, cov, scenarios)
    opt = PortfolioOptimiser(symbols, cov, scenarios)
    with pytest.raises(OptimizationError, match=r"no expected return for \['S4'\]"):
        opt.solve(alpha.drop("S4"))
    with pytest.raises(OptimizationError, match=r"not in the optimiser: \['ZZZ'\]"):
        opt.solve(alpha, pd.Series({"ZZZ": 0.1}))
    sc = scenarios.copy()
    sc.iloc[3, 1] = np.nan
    with pytest.raises(OptimizationError, match=r"NaN or infinite return scenarios for \['S1'\]"):
        PortfolioOptimiser(symbols, cov, sc)
    with pytest.raises(OptimizationError, match="no sector for"):
        PortfolioOptimiser(symbols, cov, scenarios, OptimiserConfig(sector_cap=0.3), {"S0": "X"})


def test_zero_penalties_left_out_and_highs_agrees():
    _symbols, cov, scenarios, alpha = _data(n=10)
    lp = PortfolioOptimiser(_symbols, cov, scenarios, OptimiserConfig(risk_aversion=0.0))
    names = {p.name() for p in lp.problem.parameters()}
    assert "cov_factor" not in names and "scenarios" in names
    cfg = OptimiserConfig(risk_aversion=20.0, cvar_aversion=0.05)
    clarabel = optimise(alpha * 10, cov, scenarios, cfg)
    highs = optimise(alpha * 10, cov, scenarios, cfg.model_copy(update={"solver": "HIGHS"}))
    assert clarabel.weights.abs().sum() > 0.1
    assert highs.solver == "HIGHS"
    np.testing.assert_allclose(highs.weights, clarabel.weights, atol=1e-4)
    assert highs.objective == pytest.approx(clarabel.objective, rel=1e-4)


def _daily_world(n: int = 120, s: int = 504, seed: int = 11):
    """A Ledoit–Wolf risk model over ``n`` names in 4 sectors, alpha, and a 10-name book."""
    rng = np.random.default_rng(seed)
    symbols = [f"N{i:03d}" for i in range(n)]
    sector_of = np.arange(n) % 4
    market = rng.standard_t(4, s + 1) * 0.009
    sector_moves = rng.standard_t(4, (s + 1, 4)) * 0.006
    rets = (
        np.outer(market, rng.normal(1, 0.3, n))
        + sector_moves[:, sector_of]
        + rng.standard_t(5, (s + 1, n)) * 0.012
    )
    closes = pd.DataFrame(100 * np.cumprod(1 + rets, axis=0), columns=symbols)
    model = build_risk_model(closes, scenario_sessions=s)
    sectors = pd.Series([f"K{k}" for k in sector_of], index=symbols)
    alpha = pd.Series(rng.uniform(-1, 1, n), index=symbols) * 0.002
    held = pd.Series(0.0, index=symbols)
    held.iloc[rng.choice(n, 10, replace=False)] = 0.09
    return model, sectors, alpha, held


def _reference(alpha, cov, scenarios, cfg, w0, sectors):
    """The textbook formulation: dense quad_form(w, Σ), norms as written, solved by Clarabel."""
    n, s = len(alpha), len(scenarios)
    w = cp.Variable(n)
    zeta, tail = cp.Variable(), cp.Variable(s, nonneg=True)
    cvar = zeta + cp.sum(tail) / ((1 - cfg.cvar_alpha) * s)
    objective = (
        alpha.to_numpy() @ w
        - cfg.risk_aversion * cp.quad_form(w, cp.psd_wrap(cov.to_numpy()))
        - cfg.cvar_aversion * cvar
        - cfg.turnover_cost * cp.norm1(w - w0.to_numpy())
    )
    cons = [
        tail >= -(scenarios.to_numpy() @ w) - zeta,
        cp.norm1(w) <= cfg.max_gross,
        cp.sum(w) <= cfg.max_net,
        cp.abs(w) <= cfg.max_weight,
    ]
    if cfg.long_only:
        cons.append(w >= 0)
    for name in sectors.unique():
        idx = np.flatnonzero(sectors.to_numpy() == name)
        cons.append(cp.abs(cp.sum(w[idx])) <= cfg.sector_cap)
    problem = cp.Problem(cp.Maximize(objective), cons)
    problem.solve(solver="CLARABEL")
    assert problem.status == cp.OPTIMAL
    return np.asarray(w.value), float(problem.value)


def test_covariance_factors_reproduce_the_variance():
    rng = np.random.default_rng(5)
    model, _, _, _ = _daily_world(n=40, s=120)
    sigma = model.daily_cov().to_numpy()
    lw = covariance_factors(sigma, model.scenarios.to_numpy())
    assert lw.from_scenarios and lw.rank == 120 and lw.ridge > 0  # LW: shrunk towards μI
    # a covariance unrelated to the scenarios: its eigen-decomposition, rank 6 + ridge 0.3
    loadings = rng.normal(size=(40, 6))
    generic = loadings @ loadings.T + 0.3 * np.eye(40)
    eig = covariance_factors(generic, model.scenarios.to_numpy())
    assert not eig.from_scenarios and eig.rank == 6
    assert eig.ridge == pytest.approx(0.3, rel=1e-9)
    for _ in range(5):
        w = rng.normal(size=40)
        assert lw.variance(w) == pytest.approx(w @ sigma @ w, rel=1e-9)
        assert eig.variance(w) == pytest.approx(w @ generic @ w, rel=1e-9)
    not_psd = generic - 10 * np.outer(loadings[:, 0], loadings[:, 0])
    with pytest.raises(OptimizationError, match="not positive semidefinite"):
        covariance_factors(not_psd)


@pytest.mark.parametrize("long_only", [True, False])
def test_fast_path_matches_the_textbook_formulation(long_only):
    model, sectors, alpha, held = _daily_world()
    cfg = OptimiserConfig(
        risk_aversion=20.0, cvar_aversion=0.05, sector_cap=0.3, long_only=long_only
    )
    ref_w, ref_obj = _reference(alpha, model.daily_cov(), model.scenarios, cfg, held, sectors)
    assert (np.abs(ref_w) > 1e-4).sum() >= 5  # a real portfolio, not a corner
    opt = PortfolioOptimiser.from_risk_model(model, cfg, sectors)
    assert opt.problem.is_dpp()
    assert opt.problem.param_dict["cov_factor"].shape == (504, 120)  # scenarios, no n x n
    auto = opt.solve(alpha, held)
    # 120 x 504 scenario entries: AUTO tries HiGHS first for a long-only book
    assert auto.solver == ("HIGHS" if long_only else "CLARABEL")
    clarabel = PortfolioOptimiser.from_risk_model(
        model, cfg.model_copy(update={"solver": "CLARABEL"}), sectors
    ).solve(alpha, held)
    for res in (auto, clarabel):
        assert res.objective == pytest.approx(ref_obj, rel=1e-6)
        np.testing.assert_allclose(res.weights.to_numpy(), ref_w, atol=2e-5)


def test_highs_out_of_iterations_hands_over_to_clarabel(monkeypatch):
    model, sectors, alpha, held = _daily_world()
    cfg = OptimiserConfig(risk_aversion=20.0, sector_cap=0.3)  # a well-determined optimum
    fast = PortfolioOptimiser.from_risk_model(model, cfg, sectors).solve(alpha, held)
    monkeypatch.setattr(solving, "HIGHS_ITERATION_LIMIT", 1)
    slow = PortfolioOptimiser.from_risk_model(model, cfg, sectors).solve(alpha, held)
    assert (fast.solver, slow.solver) == ("HIGHS", "CLARABEL")
    assert slow.objective == pytest.approx(fast.objective, rel=1e-6)
    np.testing.assert_allclose(slow.weights, fast.weights, atol=2e-5)


def test_update_risk_recompiles_only_when_the_factor_changes_shape():
    model, sectors, alpha, held = _daily_world(n=30, s=200)
    later, _, _, _ = _daily_world(n=30, s=200, seed=12)
    opt = PortfolioOptimiser.from_risk_model(model, OptimiserConfig(), sectors)
    opt.solve(alpha, held)
    cached = opt.problem._cache.param_prog
    opt.update_risk(later.daily_cov(), later.scenarios)  # another LW model: same shape
    same = opt.solve(alpha, held)
    assert opt.problem._cache.param_prog is cached
    fresh = PortfolioOptimiser.from_risk_model(later, OptimiserConfig(), sectors)
    np.testing.assert_allclose(same.weights, fresh.solve(alpha, held).weights, atol=1e-6)
    # a covariance not built from these scenarios: an eigen factor of rank 3, rebuilt once
    rng = np.random.default_rng(1)
    loadings = rng.normal(size=(30, 3)) * 0.01
    other = pd.DataFrame(
        loadings @ loadings.T + 1e-4 * np.eye(30), index=later.symbols, columns=later.symbols
    )
    opt.update_risk(other, later.scenarios)
    assert opt.problem.param_dict["cov_factor"].shape == (3, 30)
    res = opt.solve(alpha, held)
    w = res.weights.to_numpy()
    assert res.volatility == pytest.approx(np.sqrt(w @ other.to_numpy() @ w), rel=1e-9)
    again = optimise(alpha, other, later.scenarios, OptimiserConfig(), held, sectors)
    np.testing.assert_allclose(res.weights, again.weights, atol=1e-6)


def test_large_min_cvar_goes_to_the_simplex_method_and_matches_pypfopt():
    model, _, _, _ = _daily_world(n=100, s=500)
    scenarios = model.scenarios
    ec = EfficientCVaR(scenarios.mean(), scenarios, beta=0.95, weight_bounds=(0, 1))
    ec.min_cvar()
    cfg = OptimiserConfig(
        risk_aversion=0.0,
        cvar_aversion=1.0,
        turnover_cost=0.0,
        max_weight=1.0,
        cash_buffer=0.0,
        min_net=1.0,
    )
    res = optimise(scenarios.mean() * 0, model.daily_cov(), scenarios, cfg)
    assert res.solver == "HIGHS"  # 100 x 500: an LP for HiGHS under AUTO
    assert -res.objective == pytest.approx(float(ec._opt.value), abs=1e-6)
    assert res.cvar == pytest.approx(float(ec._opt.value), abs=1e-6)
    ref = pd.Series(ec.clean_weights(rounding=None)).reindex(scenarios.columns)
    np.testing.assert_allclose(res.weights.to_numpy(), ref.to_numpy(), atol=1e-5)


def test_a_book_outside_the_limits_is_traded_back_inside():
    model, sectors, alpha, held = _daily_world()
    held.iloc[0], held.iloc[1], held.iloc[2] = 0.15, -0.02, 1e-9  # over the cap, short, dust
    cfg = OptimiserConfig(risk_aversion=20.0, sector_cap=0.3)
    res = PortfolioOptimiser.from_risk_model(model, cfg, sectors).solve(alpha, held)
    ref = PortfolioOptimiser.from_risk_model(
        model, cfg.model_copy(update={"solver": "CLARABEL"}), sectors
    ).solve(alpha, held)
    assert res.solver == "HIGHS"
    w = res.weights
    assert w.min() >= -1e-9 and w.max() <= 0.12 + 1e-9 and w.sum() <= 0.95 + 1e-9
    assert w.iloc[0] <= 0.12 + 1e-9 and w.iloc[1] >= 0
    assert res.objective == pytest.approx(ref.objective, rel=1e-6)
    np.testing.assert_allclose(w, ref.weights, atol=2e-5)


def _hedged_world(n: int = 320, s: int = 300, seed: int = 5):
    """A large daily world whose name ``H`` loses money on average but falls when the market
    rises: a diversifier with an alpha below 70% of the names, 11 sectors, a 25-name book."""
    rng = np.random.default_rng(seed)
    symbols = [f"N{i:03d}" for i in range(n - 1)] + ["H"]
    sector_of = np.arange(n) % 11
    market = rng.standard_t(4, s + 1) * 0.009
    sector_moves = rng.standard_t(4, (s + 1, 11)) * 0.006
    rets = (
        np.outer(market, rng.normal(1, 0.3, n))
        + sector_moves[:, sector_of]
        + rng.standard_t(5, (s + 1, n)) * 0.012
    )
    rets[:, -1] = -market + rng.normal(0, 0.002, s + 1)
    closes = pd.DataFrame(100 * np.cumprod(1 + rets, axis=0), columns=symbols)
    model = build_risk_model(closes, scenario_sessions=s)
    sectors = pd.Series([f"K{k}" for k in sector_of], index=symbols)
    alpha = pd.Series(rng.uniform(-1, 1, n), index=symbols) * 0.002
    alpha["H"] = -0.001
    held = pd.Series(0.0, index=symbols)
    held.iloc[rng.choice(n - 1, 25, replace=False)] = 0.03
    return model, sectors, alpha, held


def _full_and_working_set(model, cfg, sectors, days):
    """Both paths over ``days`` of (alpha, book): results of each and the working-set sizes."""
    full = PortfolioOptimiser.from_risk_model(
        model, cfg.model_copy(update={"working_set": None}), sectors
    )
    ws = PortfolioOptimiser.from_risk_model(model, cfg, sectors)
    out = []
    for alpha, held in days:
        ref = full.solve(alpha, held)
        assert full.working_set_rounds == []
        res = ws.solve(alpha, held)
        out.append((ref, res, list(ws.working_set_rounds)))
    return out


def _assert_same_optimum(ref, res):
    assert res.objective == pytest.approx(ref.objective, rel=1e-7)
    np.testing.assert_allclose(res.weights.to_numpy(), ref.weights.to_numpy(), atol=1e-5)


def test_working_set_finds_a_low_alpha_diversifier_outside_it():
    model, sectors, alpha, held = _hedged_world()
    cfg = OptimiserConfig(risk_aversion=20.0, cvar_aversion=0.05, sector_cap=0.3, working_set=10)
    [(ref, res, rounds)] = _full_and_working_set(model, cfg, sectors, [(alpha, held)])
    assert (alpha > alpha["H"]).mean() > 0.7
    assert ref.weights["H"] > 0.05  # a low alpha bought for its hedge
    assert len(rounds) >= 2 and rounds[-1] > rounds[0]  # the duals pulled it (and others) in
    assert res.weights["H"] > 0.05
    _assert_same_optimum(ref, res)


@pytest.mark.parametrize(
    ("limits", "binding"),
    [
        ({}, ("net",)),  # the daily defaults: net 0.95 binds
        ({"sector_cap": 0.12, "max_weight": 0.05}, ("net", "sector")),
        (
            {"sector_caps": {"K0": 0.02, "K1": 0.0}, "sector_cap": 0.2, "min_net": 0.9},
            ("net", "sector"),
        ),
        ({"max_gross": 0.4, "risk_aversion": 5.0}, ("gross",)),  # below the net ceiling
        # Clarabel's duals price the names left out
        (
            {"turnover_cost": 1e-5, "cvar_aversion": 0.2, "working_set": 15, "solver": "CLARABEL"},
            (),
        ),
        # a cautious book inside every limit: only the penalties price the names left out
        (
            {"risk_aversion": 60.0, "cvar_alpha": 0.99, "turnover_cost": 0.002, "working_set": 5},
            (),
        ),
    ],
)
def test_working_set_solve_equals_the_full_solve(limits, binding):
    model, sectors, alpha, held = _hedged_world(seed=8)
    cfg = OptimiserConfig(**{"sector_cap": 0.3, "working_set": 40, **limits})
    rng = np.random.default_rng(2)
    full = PortfolioOptimiser.from_risk_model(
        model, cfg.model_copy(update={"working_set": None}), sectors
    )
    ws = PortfolioOptimiser.from_risk_model(model, cfg, sectors)
    caps = pd.Series({k: cfg.sector_caps.get(k, cfg.sector_cap) for k in sectors.unique()})
    book_ref = book_ws = held
    for day in range(3):  # alpha drifts; each path carries its own book, as in a backtest
        ref, res = full.solve(alpha, book_ref), ws.solve(alpha, book_ws)
        assert ws.working_set_rounds, "the working set was not used"
        assert ws.working_set_rounds[-1] < 0.6 * len(alpha)
        _assert_same_optimum(ref, res)
        w = res.weights
        by_sector = w.groupby(sectors).sum().reindex(caps.index)
        assert (by_sector <= caps + 1e-7).all()
        assert w.sum() <= min(cfg.max_gross, cfg.max_net) + 1e-7
        if day == 0:
            at_cap = {
                "net": w.sum() >= cfg.max_net - 1e-7,
                "gross": w.sum() >= cfg.max_gross - 1e-7,
                "sector": (by_sector >= caps - 1e-7).any(),
            }
            assert tuple(k for k, hit in at_cap.items() if hit) == binding
        book_ref, book_ws = ref.weights, res.weights
        alpha = alpha * 0.7 + pd.Series(rng.uniform(-1, 1, len(alpha)), alpha.index) * 6e-4


def test_working_set_the_limits_cannot_fit_in_falls_back_to_the_full_problem():
    model, sectors, alpha, _ = _hedged_world()
    # 5 names at 12% hold 60% at most, under the 90% floor: the full problem is solved
    cfg = OptimiserConfig(min_net=0.9, working_set=5)
    [(ref, res, rounds)] = _full_and_working_set(model, cfg, sectors, [(alpha, None)])
    assert rounds == []
    _assert_same_optimum(ref, res)


def test_highs_is_left_out_where_it_can_abort_the_process():
    """HiGHS 1.16 can kill the process (free(): invalid pointer) on long-only books without a
    turnover cost and on long-short books: there the chain starts with Clarabel instead."""
    model, sectors, alpha, held = _daily_world(n=120)  # 120 x 504 scenarios: AUTO picks HiGHS
    default = PortfolioOptimiser.from_risk_model(model, OptimiserConfig(), sectors)
    assert default.solve(alpha, held).solver == "HIGHS"
    free_trading = OptimiserConfig(turnover_cost=0.0)
    result = PortfolioOptimiser.from_risk_model(model, free_trading, sectors).solve(alpha, held)
    assert result.solver == "CLARABEL"


def test_annualised_covariance_with_daily_scenarios_is_refused():
    symbols, cov, scenarios, alpha = _data(n=6)
    with pytest.raises(OptimizationError, match=r"2\d\dx the scenarios' own .* different units"):
        optimise(alpha, cov * 252, scenarios)
    opt = PortfolioOptimiser(symbols, cov, scenarios)
    with pytest.raises(OptimizationError, match="annualised covariance beside daily scenarios"):
        opt.update_risk(cov * 252, scenarios)
    assert optimise(alpha, cov * 1.5, scenarios).weights.notna().all()  # shrinkage-sized: fine


def test_too_few_scenarios_for_cvar_are_refused_naming_the_minimum():
    symbols, cov, scenarios, _alpha = _data(n=5, s=120)
    with pytest.raises(OptimizationError, match=r"59 return scenarios .* at least 60 are needed"):
        PortfolioOptimiser(symbols, cov, scenarios.iloc[:59])
    PortfolioOptimiser(symbols, cov, scenarios.iloc[:60])  # three in the worst 5 %
    with pytest.raises(OptimizationError, match=r"CVaR at 99%: at least 300"):
        PortfolioOptimiser(symbols, cov, scenarios, OptimiserConfig(cvar_alpha=0.99))


def test_unbounded_status_is_reported_as_a_numerical_failure(monkeypatch):
    _symbols, cov, scenarios, alpha = _data(n=5)

    def lost_precision(self: cp.Problem, *args: object, **kwargs: object) -> None:
        self._status = cp.UNBOUNDED

    monkeypatch.setattr(cp.Problem, "solve", lost_precision)
    with pytest.raises(OptimizationError) as err:
        optimise(alpha, cov, scenarios)
    text = str(err.value)
    assert "numerical failure (said unbounded of a bounded problem)" in text
    assert "CLARABEL" in text and "largest variance" in text and "status unbounded" not in text


# -- per-name trading costs ----------------------------------------------------------------------


def _separable_world(n: int = 6, s: int = 400, vol: float = 0.02, seed: int = 4):
    """Independent names of equal volatility and a diagonal covariance: with the CVaR off each
    name's optimum is on its own, ``w = w0 + (a − c)/(2(λσ² + q))`` for a buy."""
    rng = np.random.default_rng(seed)
    symbols = [f"C{i}" for i in range(n)]
    scenarios = pd.DataFrame(rng.normal(0, vol, (s, n)), columns=symbols)
    cov = pd.DataFrame(np.eye(n) * vol**2, index=symbols, columns=symbols)
    return symbols, cov, scenarios


def _rates(symbols, buy, sell=None, impact=0.0, band: float = 0.0) -> CostRates:
    index = pd.Index(list(symbols))
    return CostRates(
        pd.Series(buy, index=index, dtype="float64"),
        pd.Series(buy if sell is None else sell, index=index, dtype="float64"),
        pd.Series(impact, index=index, dtype="float64"),
        band,
    )


@pytest.mark.parametrize("solver", ["CLARABEL", "HIGHS"])
def test_a_dear_name_is_traded_less_than_an_identical_cheap_one(solver):
    symbols, cov, scenarios = _separable_world()
    lam, vol = 5.0, 0.02
    cfg = OptimiserConfig(
        risk_aversion=lam, cvar_aversion=0.0, max_weight=0.5, max_gross=3.0, cash_buffer=0.0,
        sector_cap=None, solver=solver,
    )  # fmt: skip
    alpha = pd.Series(4e-4, index=symbols)  # every name alike
    buy = np.array([1e-5, 1e-4, 2e-4, 1e-5, 1e-4, 2e-4])
    impact = np.array([0.0, 0.0, 0.0, 2e-3, 2e-3, 2e-3])
    res = optimise(alpha, cov, scenarios, cfg, costs=_rates(symbols, buy, impact=impact))
    a, b = impact_quadratic()
    # each name on its own: a − c_i − a_fit·impact_i = 2(λσ² + b·impact_i)·w_i
    expected = np.maximum(4e-4 - buy - a * impact, 0) / (2 * (lam * vol**2 + b * impact))
    assert expected.sum() < 1 and expected[-1] == 0  # the budget does not bind; C5 too dear
    np.testing.assert_allclose(res.weights.to_numpy(), expected, rtol=1e-4, atol=1e-7)
    w = res.weights
    assert w["C0"] > w["C1"] > w["C2"] > 0  # dearer to buy: bought less
    assert w["C0"] > w["C3"] and w["C1"] > w["C4"]  # dearer impact: bought less
    # and sold less: held above the target, the dear name keeps more of its position
    held = pd.Series(0.15, index=symbols)
    sold = optimise(alpha, cov, scenarios, cfg, held, costs=_rates(symbols, 0.0, buy))
    assert sold.weights["C2"] > sold.weights["C1"] > sold.weights["C0"]


def test_trading_costs_change_without_recompiling_and_the_band_keeps_small_trades():
    symbols, cov, scenarios, alpha = _data(n=12)
    opt = PortfolioOptimiser(symbols, cov, scenarios, OptimiserConfig())
    assert opt.problem.is_dpp()
    cheap = opt.solve(alpha, costs=_rates(symbols, 1e-5))
    cached = opt.problem._cache.param_prog
    dear = _rates(symbols, np.linspace(1e-5, 5e-4, 12), impact=1e-3)
    again = opt.solve(alpha, cheap.weights * 0.5, dear)
    assert opt.problem._cache.param_prog is cached  # new costs, no recompilation
    fresh = optimise(alpha, cov, scenarios, OptimiserConfig(), cheap.weights * 0.5, costs=dear)
    np.testing.assert_allclose(again.weights, fresh.weights, atol=1e-6)
    assert again.objective == pytest.approx(fresh.objective, rel=1e-6)
    # a book off the optimum (held names under the cap ±10 bp in turn, net unchanged) at
    # (nearly) no cost: every trade back is under a 20 bp band, so none is made
    tiny = OptimiserConfig(turnover_cost=1e-9)
    opt = PortfolioOptimiser(symbols, cov, scenarios, tiny)
    best = opt.solve(alpha, costs=_rates(symbols, 1e-9)).weights
    inside = best.index[(best > 2e-3) & (best < 0.118)]
    pairs = len(inside) // 2 * 2
    assert pairs >= 2
    nudge = pd.Series(0.0, index=symbols)
    nudge[inside[:pairs]] = np.resize([1e-3, -1e-3], pairs)
    nudged = best + nudge
    banded = opt.solve(alpha, nudged, _rates(symbols, 1e-9, band=2e-3))
    assert set(banded.band_kept) >= set(nudge.index[nudge != 0])
    kept = list(banded.band_kept)
    np.testing.assert_allclose(banded.weights[kept], nudged[kept], atol=1e-6)  # bp to 1e-3
    no_band = opt.solve(alpha, nudged, _rates(symbols, 1e-9))
    assert no_band.band_kept == ()
    np.testing.assert_allclose(no_band.weights, best, atol=1e-5)  # traded back


def test_bad_trading_costs_are_named():
    symbols, cov, scenarios, alpha = _data()
    bad = _rates(symbols, 1e-4)
    bad.buy["S3"] = np.nan
    with pytest.raises(OptimizationError, match=r"trading cost rate for \['S3'\]"):
        optimise(alpha, cov, scenarios, costs=bad)
    with pytest.raises(OptimizationError, match=r"negative trading cost rates for \['S1'\]"):
        optimise(alpha, cov, scenarios, costs=_rates(symbols, [0, -1e-4, *[0] * 6]))
    free = OptimiserConfig(turnover_cost=0.0)
    with pytest.raises(OptimizationError, match="positive turnover_cost"):
        optimise(alpha, cov, scenarios, free, costs=_rates(symbols, 1e-4))


def test_working_set_with_per_name_costs_equals_the_full_solve():
    model, sectors, alpha, held = _hedged_world(seed=8)
    rng = np.random.default_rng(9)
    n = len(alpha)
    costs = _rates(
        alpha.index,
        rng.uniform(5e-6, 3e-4, n),
        rng.uniform(5e-6, 3e-4, n),
        impact=rng.uniform(0, 5e-3, n),
    )
    cfg = OptimiserConfig(sector_cap=0.3, working_set=40)
    full = PortfolioOptimiser.from_risk_model(
        model, cfg.model_copy(update={"working_set": None}), sectors
    )
    ws = PortfolioOptimiser.from_risk_model(model, cfg, sectors)
    book_ref = book_ws = held
    for _ in range(3):
        ref, res = full.solve(alpha, book_ref, costs), ws.solve(alpha, book_ws, costs)
        assert ws.working_set_rounds and res.solver == "HIGHS"
        _assert_same_optimum(ref, res)
        book_ref, book_ws = ref.weights, res.weights
        alpha = alpha * 0.7 + pd.Series(rng.uniform(-1, 1, n), alpha.index) * 6e-4


def test_a_risk_model_s_factor_form_solves_as_its_matrix():
    """from_risk_model and update_model hand the optimiser the model's Ledoit–Wolf loadings
    and ridge (no n x n matrix): the same optimum as the dense matrix, day after day."""
    model, sectors, alpha, held = _daily_world(n=60, s=200)
    later, _, _, _ = _daily_world(n=60, s=200, seed=12)
    cfg = OptimiserConfig(sector_cap=0.3)
    dense = PortfolioOptimiser(model.symbols, model.daily_cov(), model.scenarios, cfg, sectors)
    factor = PortfolioOptimiser.from_risk_model(model, cfg, sectors)
    assert factor.problem.param_dict["cov_factor"].shape == (200, 60)
    for risk in (model, later):
        dense.update_risk(risk.daily_cov(), risk.scenarios)
        factor.update_model(risk)
        want, got = dense.solve(alpha, held), factor.solve(alpha, held)
        assert got.objective == pytest.approx(want.objective, rel=1e-9)
        np.testing.assert_allclose(got.weights, want.weights, atol=1e-7)
        w = got.weights.to_numpy()
        assert got.volatility == pytest.approx(np.sqrt(w @ risk.daily_cov().to_numpy() @ w))
    with pytest.raises(OptimizationError, match="other symbols than the model"):
        factor.update_model(later.subset(later.symbols[:-1]))
