"""Signal evidence: rank IC, Newey–West t, shrinkage, evidence weights without look-ahead,
Grinold's rule, and the weights a seeded world's signals earn with and without edge."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm, spearmanr

from ibkr_assets.quant.alpha import SIGNALS, compute_alpha_scores, signal_matrix
from ibkr_assets.quant.evidence import (
    EvidenceSettings,
    ICPanel,
    daily_volatility,
    distinguishable,
    evidence_at,
    grinold_expected_returns,
    newey_west,
    rank_ic,
    session_evidence,
)
from ibkr_sim.market.edge import Edge
from ibkr_sim.market.paths import panel as market_panel
from ibkr_sim.universe import LISTED_STOCKS


def _bartlett_double_sum(x: np.ndarray, lags: int) -> float:
    """The Newey–West variance of the mean as the double sum over all pairs,
    ``(1/n²) Σ_s Σ_t k(|s-t|) e_s e_t`` with ``k(d) = max(0, 1 - d/(L+1))``: an independent
    route to the same number."""
    e = x - x.mean()
    n = len(x)
    d = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    kernel = np.clip(1 - d / (lags + 1), 0, None)
    return float(e @ kernel @ e) / n**2


def test_newey_west_on_fixed_inputs_and_against_the_double_sum() -> None:
    x = np.array([0.03, -0.01, 0.02, 0.05, -0.02, 0.01, 0.04, 0.00, 0.02, -0.03])
    # lag 0: the plain standard error with divisor n
    mean, se = newey_west(x, lags=0)
    assert mean == pytest.approx(0.011)
    assert se == pytest.approx(math.sqrt(np.mean((x - 0.011) ** 2) / 10), rel=1e-12)
    # lag 1 by hand: gamma_1 with divisor n, weight 1/2
    e = x - x.mean()
    gamma0, gamma1 = e @ e / 10, e[1:] @ e[:-1] / 10
    assert newey_west(x, lags=1)[1] == pytest.approx(math.sqrt((gamma0 + gamma1) / 10))
    rng = np.random.default_rng(3)
    series = np.cumsum(rng.standard_normal(300)) * 0.01 + rng.standard_normal(300)
    for lags in (0, 3, 12):
        got = newey_west(series, lags)[1]
        assert got == pytest.approx(math.sqrt(_bartlett_double_sum(series, lags)), rel=1e-10)
    # the automatic lag for 250 observations: floor(4 (2.5)^(2/9)) = 4
    assert newey_west(series[:250])[1] == pytest.approx(newey_west(series[:250], 4)[1])
    # NaNs are dropped; one value has no error
    assert newey_west(np.array([0.1, np.nan, 0.3]), 0)[0] == pytest.approx(0.2)
    assert math.isnan(newey_west(np.array([0.1]))[1])


def test_rank_ic_is_spearman() -> None:
    rng = np.random.default_rng(0)
    names = [f"S{i}" for i in range(60)]
    signals = pd.DataFrame(rng.standard_normal((60, 3)), index=names, columns=["a", "b", "c"])
    signals["c"] = 0.0  # no spread: no IC
    returns = pd.Series(0.5 * signals["a"] + rng.standard_normal(60), index=names)
    returns.iloc[:5] = np.nan  # names without a return are left out
    got = rank_ic(signals, returns)
    for col in ("a", "b"):
        want = spearmanr(signals[col].iloc[5:], returns.iloc[5:]).statistic
        assert got[col] == pytest.approx(want, rel=1e-12)
    assert math.isnan(got["c"]) and got["a"] > 0.2
    _, cov = session_evidence(signals, returns)
    np.testing.assert_allclose(cov, np.cov(signals.iloc[5:].to_numpy(), rowvar=False))


def _synthetic_panel(sessions: int = 300, seed: int = 1) -> ICPanel:
    """Daily ICs: ``mom_12_1`` +0.03, ``rsi_signal`` -0.03, the rest 0, each with noise 0.04;
    unit covariance."""
    rng = np.random.default_rng(seed)
    index = pd.bdate_range("2023-01-02", periods=sessions)
    means = pd.Series(0.0, index=list(SIGNALS))
    means[["mom_12_1", "rsi_signal"]] = [0.03, -0.03]
    ic = means.to_numpy() + 0.04 * rng.standard_normal((sessions, len(SIGNALS)))
    cov = np.broadcast_to(np.eye(len(SIGNALS)), (sessions, len(SIGNALS), len(SIGNALS)))
    return ICPanel(pd.DataFrame(ic, index=index, columns=list(SIGNALS)), np.array(cov))


def test_weights_signs_and_shrinkage_follow_the_evidence() -> None:
    panel = _synthetic_panel()
    settings = EvidenceSettings(sessions=250, t_threshold=2.0, prior_sd=0.02)
    day = panel.ic.index[-1] + pd.Timedelta(days=1)
    ev = evidence_at(panel, day, settings)
    table = ev.table
    window = panel.ic.iloc[-250:]
    for signal in SIGNALS:
        mean, se = newey_west(window[signal].to_numpy())
        assert table.at[signal, "ic"] == pytest.approx(mean)
        assert table.at[signal, "t"] == pytest.approx(mean / se)
        assert table.at[signal, "shrunk_ic"] == pytest.approx(mean * 0.02**2 / (0.02**2 + se**2))
        significant = abs(mean / se) >= 2
        assert (table.at[signal, "weight"] != 0) == significant
    assert table.at["mom_12_1", "weight"] > 0 > table.at["rsi_signal", "weight"]
    assert table["weight"].abs().sum() == pytest.approx(1.0)
    # the signals are uncorrelated (unit covariance): IC_c = sum w_k IC_k / |w|
    w, shrunk = table["weight"], table["shrunk_ic"]
    want = float((w * shrunk).sum() / math.sqrt((w**2).sum()))
    assert ev.composite_ic == pytest.approx(want) and ev.composite_ic > 0.02
    # a stricter threshold leaves nothing: no weights, no composite IC
    none = evidence_at(panel, day, EvidenceSettings(t_threshold=50.0))
    assert (none.weights == 0).all() and none.composite_ic == 0.0


def test_evidence_does_not_look_ahead() -> None:
    panel = _synthetic_panel()
    day = panel.ic.index[200]
    ev = evidence_at(panel, day, EvidenceSettings())
    # the session itself and everything after it, scrambled
    ic = panel.ic.copy()
    ic.loc[ic.index >= day] = 0.9
    cov = panel.cov.copy()
    cov[ic.index >= day] *= 7
    again = evidence_at(ICPanel(ic, cov), day, EvidenceSettings())
    pd.testing.assert_frame_equal(ev.table, again.table)
    assert ev.composite_ic == again.composite_ic and ev.through == panel.ic.index[199]
    # ... while the session before does move it
    ic.loc[panel.ic.index[199]] = 0.9
    moved = evidence_at(ICPanel(ic, cov), day, EvidenceSettings())
    assert not np.allclose(moved.table["ic"], ev.table["ic"])


def test_grinold_expected_return_is_ic_times_volatility_times_z() -> None:
    score = pd.Series([0.3, -0.1, 0.0, 0.2, -0.4], index=list("ABCDE"))
    vol = pd.Series([0.02, 0.01, 0.015, np.nan, 0.03], index=list("ABCDE"))
    got = grinold_expected_returns(score, vol, composite_ic=0.04)
    z = (score - score.mean()) / score.std(ddof=1)
    sigma = vol.fillna(vol.median())  # D has none: the median, 0.0175
    np.testing.assert_allclose(got, 0.04 * sigma * z, rtol=1e-12)
    assert got["A"] == pytest.approx(0.04 * 0.02 * (0.3 - 0.0) / score.std(ddof=1))
    # no spread, no view
    assert (grinold_expected_returns(score * 0, vol, 0.04) == 0).all()
    # the alpha stage writes the same numbers into expected_return
    rng = np.random.default_rng(2)
    features = pd.DataFrame(rng.standard_normal((40, len(SIGNALS))), columns=list(SIGNALS))
    features = features.assign(symbol=[f"S{i}" for i in range(40)])
    vols = pd.Series(rng.uniform(0.01, 0.03, 40), index=features["symbol"])
    weights = {"mom_12_1": 0.6, "rsi_signal": -0.4}
    out = compute_alpha_scores(features, weights, composite_ic=0.03, volatility=vols)
    matrix = signal_matrix(features)
    score = 0.6 * matrix["mom_12_1"] - 0.4 * matrix["rsi_signal"]
    np.testing.assert_allclose(out["alpha_score"], score.to_numpy())
    z = (score - score.mean()) / score.std(ddof=1)
    np.testing.assert_allclose(out["expected_return"], (0.03 * vols * z).to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(out["technical"], out["alpha_score"])


def test_daily_volatility_of_the_last_sessions() -> None:
    closes = pd.DataFrame({"A": [100, 101, 99, 102, 103.0], "B": [50, 50, 50, 50, 50.0]})
    got = daily_volatility(closes, sessions=3)
    want = pd.Series([101, 99, 102, 103.0]).pct_change().iloc[1:].std(ddof=1)
    assert got["A"] == pytest.approx(want) and got["B"] == 0.0


@pytest.fixture(scope="module", params=["default", "none"])
def world_evidence(request) -> tuple[str, pd.DataFrame]:
    """The evidence of news tone and 12-1 momentum after 250 sessions of a seeded 700-stock
    world (seed 7), measured from the market's own series, with and without edge."""
    p = market_panel(7, Edge.named(request.param))
    close = p.close[:, :LISTED_STOCKS]
    tone = np.where(p.news_count[:, :LISTED_STOCKS] > 0, p.news_tone[:, :LISTED_STOCKS], np.nan)
    rows = []
    first = 1000  # sessions with a year of momentum behind them
    names = [f"S{i}" for i in range(LISTED_STOCKS)]
    for t in range(first, first + 250):
        # known at session t's run: closes to t - 1 and news up to t - 1; return of session t
        momentum = close[t - 22] / close[t - 253] - 1
        features = pd.DataFrame(
            {c: 0.0 for c in SIGNALS} | {"mom_12_1": momentum, "sentiment_z": tone[t - 1] * 4},
            index=names,
        )
        features["sentiment_z"] = features["sentiment_z"].fillna(0.0)
        signals = signal_matrix(features.rename_axis("symbol").reset_index())
        ic, cov = session_evidence(signals, pd.Series(close[t] / close[t - 1] - 1, index=names))
        rows.append((pd.Timestamp("2020-01-01") + pd.Timedelta(days=t), ic, cov))
    panel = ICPanel.of([(d.date(), ic, cov) for d, ic, cov in rows], SIGNALS)
    return request.param, evidence_at(panel, pd.Timestamp("2030-01-01"), EvidenceSettings()).table


def test_a_seeded_world_weights_only_signals_with_evidence(world_evidence) -> None:
    edge, table = world_evidence
    print(edge, table.loc[["mom_12_1", "sentiment_z"]].round(4).to_string())
    # signals with no spread (zero here) never get a weight
    assert (table.drop(index=["mom_12_1", "sentiment_z"])["weight"] == 0).all()
    if edge == "none":
        assert (table["weight"] == 0).all(), "no edge: nothing is significant"
    else:
        assert table.at["sentiment_z", "weight"] > 0 and table.at["sentiment_z", "t"] > 2
        assert table.at["mom_12_1", "ic"] > 0


def test_signals_are_told_apart_from_zero_together() -> None:
    """Benjamini–Hochberg at the level of |t| >= 2: a signal alone passes at |t| >= 2; with a
    dozen edge-free signals some passes ~4.6% of the time, where one test per signal passes one
    ~43% of the time (1 - 0.9545^12); a strong signal lets a weaker one through."""
    assert distinguishable(np.array([2.01]), 2.0).tolist() == [True]
    assert distinguishable(np.array([-1.99]), 2.0).tolist() == [False]
    assert distinguishable(np.array([np.nan, 5.0, np.nan]), 2.0).tolist() == [False, True, False]
    assert not distinguishable(np.array([np.nan, np.nan]), 2.0).any()
    # fixed p-values (two-sided): 0.001, 0.008, 0.039, 0.041, 0.2 at q = 0.0455 (|t| >= 2): the
    # step-up keeps the first two (0.008 <= 2q/5 = 0.0182; 0.039 > 3q/5 = 0.0273, 0.041 > 4q/5)
    t = -norm.ppf(np.array([0.001, 0.008, 0.039, 0.041, 0.2]) / 2)
    assert distinguishable(t, 2.0).tolist() == [True, True, False, False, False]
    assert distinguishable(t[[4, 2, 0, 3, 1]], 2.0).tolist() == [False, False, True, False, True]
    # everything passes at a threshold of 0; nothing at a huge one
    assert distinguishable(t, 0.0).all() and not distinguishable(t, 50.0).any()
    null = np.random.default_rng(3).standard_normal((20_000, 12))
    together = np.mean([distinguishable(row, 2.0).any() for row in null])
    alone = np.mean((np.abs(null) >= 2.0).any(axis=1))
    assert together == pytest.approx(2 * norm.sf(2.0), abs=0.006)  # 0.0455
    assert alone == pytest.approx(1 - (1 - 2 * norm.sf(2.0)) ** 12, abs=0.015)  # 0.43
    # one strong signal (p ~ 1e-9) and one at p = 0.0073: alone 0.0073 > q/12 = 0.0038 fails,
    # beside the strong one it passes at 2q/12 = 0.0076
    pair = np.r_[6.0, 2.68, np.zeros(10)]
    assert distinguishable(pair, 2.0)[:2].tolist() == [True, True]
    assert not distinguishable(np.r_[2.68, np.zeros(11)], 2.0).any()
