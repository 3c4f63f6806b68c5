import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from ibkr_assets.quant.risk_metrics import (
    concentration,
    exposure,
    historical_var_cvar,
    liquidity_usage,
    parametric_var_cvar,
    portfolio_returns,
    risk_summary,
    sector_exposure,
)


def test_historical_var_cvar_matches_quantile_and_brute_force_ru():
    rng = np.random.default_rng(1)
    r = rng.standard_t(4, size=500) * 0.01
    for conf in (0.95, 0.99):
        var, cvar = historical_var_cvar(r, conf)
        losses = -r
        assert var == pytest.approx(np.quantile(losses, conf, method="inverted_cdf"))
        # Rockafellar-Uryasev: CVaR = min over zeta (brute force over the sample points).
        ru = min(z + np.maximum(losses - z, 0).sum() / ((1 - conf) * r.size) for z in losses)
        assert cvar == pytest.approx(ru, rel=1e-12)
        # (1-conf)*S is an integer here: CVaR is the plain mean of the worst tail.
        k = round((1 - conf) * r.size)
        assert cvar == pytest.approx(np.sort(losses)[-k:].mean(), rel=1e-12)
        assert cvar >= var


def test_historical_var_hand_example():
    r = np.array([-0.05, -0.02, 0.0, 0.01, 0.03] * 4)  # 20 scenarios, worst 5% = one -0.05
    var, cvar = historical_var_cvar(r, 0.95)
    assert var == pytest.approx(0.05)
    assert cvar == pytest.approx(0.05)
    var90, cvar90 = historical_var_cvar(r, 0.90)
    assert var90 == pytest.approx(0.05) and cvar90 == pytest.approx(0.05)
    var75, cvar75 = historical_var_cvar(r, 0.75)
    assert var75 == pytest.approx(0.02)
    assert cvar75 == pytest.approx((4 * 0.05 + 1 * 0.02) / 5)


def test_parametric_var_against_scipy():
    cov = pd.DataFrame([[0.0004, 0.0001], [0.0001, 0.0009]], index=["A", "B"], columns=["A", "B"])
    w = pd.Series({"A": 0.6, "B": 0.4})
    mean = pd.Series({"A": 0.001, "B": 0.0})
    sigma = np.sqrt(w.to_numpy() @ cov.to_numpy() @ w.to_numpy())
    var, cvar = parametric_var_cvar(w, cov, 0.99, mean)
    dist = norm(loc=0.0006, scale=sigma)
    assert var == pytest.approx(-dist.ppf(0.01), rel=1e-10)
    expected_es = sigma * norm.pdf(norm.ppf(0.99)) / 0.01 - 0.0006
    assert cvar == pytest.approx(expected_es, rel=1e-10)
    with pytest.raises(ValueError, match=r"no covariance for held symbols \['C'\]"):
        parametric_var_cvar(pd.Series({"A": 0.5, "C": 0.1}), cov)


def test_exposure_concentration_sector_liquidity():
    w = pd.Series({"A": 0.3, "B": -0.1, "C": 0.2, "D": 0.0})
    e = exposure(w)
    assert (e.gross, e.net, e.long, e.short) == pytest.approx((0.6, 0.4, 0.5, 0.1))
    c = concentration(w)
    assert c.max_symbol == "A" and c.max_abs_weight == pytest.approx(0.3)
    assert c.hhi == pytest.approx((0.5**2) + (1 / 6) ** 2 + (1 / 3) ** 2)
    assert c.effective_n == pytest.approx(1 / c.hhi)
    sectors = pd.Series({"A": "Tech", "B": "Tech", "C": "Energy", "D": "Energy"})
    sx = sector_exposure(w, sectors)
    assert sx.loc["Tech", "net"] == pytest.approx(0.2)
    assert sx.loc["Tech", "gross"] == pytest.approx(0.4)
    assert list(sx.index) == ["Tech", "Energy"]
    with pytest.raises(ValueError, match=r"no sector for held symbols \['C'\]"):
        sector_exposure(w, sectors.drop("C"))
    liq = liquidity_usage(pd.Series({"A": -50_000.0, "B": 0.0}), pd.Series({"A": 1e6, "B": 0.0}))
    assert liq.to_dict() == {"A": pytest.approx(0.05), "B": 0.0}
    with pytest.raises(ValueError, match=r"missing or negative ADV.*\['A'\]"):
        liquidity_usage(pd.Series({"A": 1.0}), pd.Series({"Z": 1.0}))


def test_portfolio_returns_and_nan_errors():
    sc = pd.DataFrame({"A": [0.01, -0.02], "B": [0.0, 0.03]})
    np.testing.assert_allclose(
        portfolio_returns(sc, pd.Series({"A": 0.5, "B": 0.5})), [0.005, 0.005]
    )
    with pytest.raises(ValueError, match=r"NaN or infinite weights for \['B'\]"):
        portfolio_returns(sc, pd.Series({"A": 0.5, "B": np.nan}))
    with pytest.raises(ValueError, match=r"no return scenarios for held symbols \['Z'\]"):
        portfolio_returns(sc, pd.Series({"Z": 0.5}))


def test_risk_summary_collects_every_number():
    rng = np.random.default_rng(2)
    sc = pd.DataFrame(rng.normal(0, 0.01, (200, 3)), columns=["A", "B", "C"])
    cov = sc.cov()
    w = pd.Series({"A": 0.5, "B": -0.2, "C": 0.1})
    out = risk_summary(w, sc, cov, pd.Series({"A": "X", "B": "Y", "C": "X"}))
    assert (out["var_hist_99"], out["cvar_hist_99"]) == historical_var_cvar(sc @ w, 0.99)
    assert (out["var_param_95"], out["cvar_param_95"]) == parametric_var_cvar(w, cov, 0.95)
    assert out["gross"] == pytest.approx(0.8) and out["net"] == pytest.approx(0.4)
    assert out["max_weight_symbol"] == "A"
    assert (out["top_sector"], out["top_sector_gross"]) == ("X", pytest.approx(0.6))
    assert out["cvar_hist_99"] >= out["var_hist_99"] >= out["var_hist_95"]
