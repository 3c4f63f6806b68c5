import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from ibkr_assets.quant.compliance import (
    CHECK_NAMES,
    ComplianceLimits,
    evaluate_compliance,
    render_recommendation_markdown,
)

SYMBOLS = ["A", "B", "C", "D"]
SECTORS = pd.Series({"A": "Tech", "B": "Tech", "C": "Energy", "D": "Health"})
ADV = pd.Series({"A": 1e7, "B": 1e7, "C": 1e6, "D": 1e7})


def _risk(seed: int = 0):
    rng = np.random.default_rng(seed)
    sc = pd.DataFrame(rng.normal(0, 0.01, (400, 4)), columns=SYMBOLS)
    cov = sc.cov()
    return sc, cov


def _by_name(results):
    return {r.name: r for r in results}


def test_all_pass_on_a_modest_book():
    sc, cov = _risk()
    w = pd.Series({"A": 0.1, "B": 0.1, "C": 0.1, "D": 0.1})
    res = evaluate_compliance(w, None, sc, cov, sectors=SECTORS, adv=ADV, net_liquidation=1e6)
    assert [r.name for r in res] == list(CHECK_NAMES)
    assert all(r.passed for r in res), [r for r in res if not r.passed]
    r = _by_name(res)
    losses = -(sc.to_numpy() @ w.to_numpy())
    assert r["var_historical"].value == pytest.approx(
        np.quantile(losses, 0.99, method="inverted_cdf")
    )
    sigma = math.sqrt(w.to_numpy() @ cov.to_numpy() @ w.to_numpy())
    assert r["var_parametric"].value == pytest.approx(norm.ppf(0.99) * sigma)
    assert r["gross_exposure_change"].value == pytest.approx(0.4)
    assert r["liquidity"].value == pytest.approx(0.1 * 1e6 / 1e6)  # C: 100k of 1M ADV
    assert r["sector_exposure"].value == pytest.approx(0.2)


def test_breaches_report_value_limit_excess_and_offenders():
    sc, cov = _risk()
    w = pd.Series({"A": 0.2, "B": 0.25, "C": 0.15, "D": 0.0})
    w0 = pd.Series({"A": 0.05})
    limits = ComplianceLimits(
        gross_change_max=0.3, var_historical_max=0.005, var_parametric_max=0.005, sector_max=0.4
    )
    res = _by_name(
        evaluate_compliance(w, w0, sc, cov, limits, sectors=SECTORS, adv=ADV, net_liquidation=1e6)
    )
    conc = res["concentration"]
    assert not conc.passed and conc.value == pytest.approx(0.25)
    assert conc.excess == pytest.approx(0.13) and conc.offenders == ["A", "B", "C"]
    gross = res["gross_exposure_change"]
    assert not gross.passed and gross.excess == pytest.approx(0.25)
    assert not res["sector_exposure"].passed and res["sector_exposure"].offenders == ["Tech"]
    assert res["sector_exposure"].excess == pytest.approx(0.05)
    liq = res["liquidity"]
    assert not liq.passed and liq.offenders == ["C"] and liq.value == pytest.approx(0.15)
    assert not res["var_historical"].passed and not res["var_parametric"].passed


def test_a_check_at_its_limit_passes_with_no_offenders():
    """Passing and offending use the same tolerance: a sector or trade at its limit (up to float
    noise) passes and names nothing to fix."""
    sc, cov = _risk()
    w = pd.Series({"A": 0.1 + 3e-13, "B": 0.3, "C": 0.1, "D": 0.1})  # Tech = 0.4 + 3e-13
    trades = pd.Series({"C": 1e5 * (1 + 3e-12)})  # 10% of C's ADV, plus float noise
    res = _by_name(
        evaluate_compliance(w, w, sc, cov, sectors=SECTORS, adv=ADV, trade_notional=trades)
    )
    for name in ("sector_exposure", "liquidity"):
        assert res[name].passed and res[name].offenders == [], res[name]
    over = _by_name(evaluate_compliance(w * 1.01, w, sc, cov, sectors=SECTORS, adv=ADV))
    assert not over["sector_exposure"].passed and over["sector_exposure"].offenders == ["Tech"]


def test_each_check_independent_and_missing_inputs_fail_conservatively():
    sc, cov = _risk()
    w = pd.Series({"A": 0.1, "Z": 0.05})  # Z has no scenarios / covariance / sector
    res = _by_name(evaluate_compliance(w, None, sc, cov))
    assert res["concentration"].passed and res["gross_exposure_change"].passed
    for name in ("var_historical", "var_parametric", "liquidity", "sector_exposure"):
        assert not res[name].passed and res[name].detail.startswith("not evaluated")
    assert "['Z']" in res["var_historical"].detail
    assert "no ADV" in res["liquidity"].detail
    with pytest.raises(ValueError, match=r"NaN or infinite target weight for \['A'\]"):
        evaluate_compliance(pd.Series({"A": np.nan}), None, sc, cov)


def test_recommendation_markdown_names_failed_checks_and_targets():
    sc, cov = _risk()
    w = pd.Series({"A": 0.2, "B": 0.05})
    res = evaluate_compliance(
        w, pd.Series({"C": 0.1}), sc, cov, sectors=SECTORS, adv=ADV, net_liquidation=1e6
    )
    md = render_recommendation_markdown("2026-11-24", w, res, pd.Series({"C": 0.1}))
    assert md.startswith("# Recommendation only — 2026-11-24")
    assert "blocked the order ticket" in md
    assert "| concentration | 0.2000 | 0.1200 | 0.0800 | A |" in md
    assert "| A | 0.00% | 20.00% | +20.00% |" in md
    assert "| C | 10.00% | 0.00% | -10.00% |" in md
    ok = render_recommendation_markdown("2026-11-24", w * 0.1, [r for r in res if r.passed])
    assert "Every compliance check passed." in ok
