"""Evidence for the signals: how well each one has ranked the next session's returns, and
what that says about its weight, its sign and the size of the expected returns it implies.

1. **Daily information coefficient (IC).** On every session ``u`` the signals known at ``u``'s
   run time (bars up to ``u - 1``, news before 07:00 New York: the feature matrix of ``u``) are
   normalised as the alpha stage normalises them (:func:`~ibkr_assets.quant.alpha.signal_matrix`)
   and ranked against the session's close-to-close return ``close_u / close_{u-1} - 1``: the
   Spearman rank correlation across names (:func:`rank_ic`). That return is final at ``u``'s
   close, so a decision at session ``s`` may use the ICs of sessions ``u < s`` only
   (:func:`evidence_at` enforces it). The cross-sectional covariance of the normalised signals
   is kept beside the IC (for the composite, step 4).
2. **Trailing mean and its t-statistic.** Over the last ``sessions`` (default 250, about a
   year) before the decision: the mean IC and its Newey–West (1987) standard error with the
   Bartlett kernel and the automatic lag ``floor(4 (n/100)^(2/9))`` (Newey & West 1994), since
   daily ICs of persistent signals are autocorrelated (:func:`newey_west`).
3. **Shrinkage toward zero** (the choice made here): a normal prior on the true mean IC,
   ``N(0, prior_sd²)``, updated by the trailing mean with its Newey–West variance ``se²`` gives
   the posterior mean ``IC · prior_sd² / (prior_sd² + se²)`` — the Bayesian "refined forecast"
   of Grinold & Kahn (2000, *Active Portfolio Management*, ch. 10, 12), whose prior for any
   signal is no skill. ``prior_sd = 0.02`` is a modelling choice: the spread of true daily ICs
   across equity signals, which the literature puts at 0.01-0.03 for a good single signal
   (Qian, Hua & Sorensen 2007, *Quantitative Equity Portfolio Management*, ch. 4; the
   simulated world's edges are sized to that band, :mod:`ibkr_sim.market.edge`).
4. **Weights and signs.** A signal whose mean IC is not distinguishable from zero gets weight
   0; the others get weight proportional to their shrunk IC, sign included, scaled so the
   absolute weights sum to 1 (:func:`evidence_at`). The ~12 signals are tested together
   (:func:`distinguishable`): the Benjamini–Hochberg (1995, *JRSS B* 57(1)) step-up at the
   two-sided level of ``|t| >= t_threshold`` (default 2, 4.55%), so one signal alone passes at
   ``|t| >= 2`` but a dozen edge-free ones do not each get their own 4.55% chance (measured on
   the ``--edge none`` world, seed 7, 700 names, the 125 sessions to 2024-06-28: some signal had
   weight on all of them with one test per signal, on 10 with the step-up; on the default world
   the signals with a built-in edge keep their weight on 61-125 of them — session 18). Testing
   many signals at once and keeping the best is how false factors are found (Harvey, Liu &
   Zhu 2016, "... and the Cross-Section of Expected Returns", *RFS* 29(1)). The composite's IC
   follows from the signals' (Qian, Hua & Sorensen 2007, ch. 7):
   ``IC_c = Σ w_k IC_k s_k / sqrt(w' S w)`` with the shrunk ICs, ``S`` the trailing mean
   cross-sectional covariance of the normalised signals and ``s_k = sqrt(S_kk)`` — exact for
   Pearson ICs, a close approximation for the rank ICs used here.
5. **Grinold's rule** (Grinold 1994, "Alpha is volatility times IC times score"; Grinold &
   Kahn 2000, ch. 10): the expected daily return of name ``i`` is
   ``E[r_i] = IC_c · σ_i · z_i`` with ``z`` the composite score standardised across names and
   ``σ_i`` the name's daily volatility over the last ``volatility_sessions`` (60) sessions
   (:func:`grinold_expected_returns`, :func:`daily_volatility`).

Everything here is a pure function of its inputs; the daily job and the backtest call the same
functions on the same kind of data (:mod:`ibkr_assets.quant.backtest.replay`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
from scipy.stats import norm, rankdata

#: Observations of a signal's IC below which its t-statistic is not trusted (weight 0).
MIN_OBSERVATIONS = 20


@dataclass(frozen=True)
class EvidenceSettings:
    """How the trailing evidence is read: ``sessions`` of daily ICs before the decision, the
    ``|t|`` a signal needs to get a weight, the prior's standard deviation of true daily ICs
    (the shrinkage), and the sessions of returns behind each name's daily volatility."""

    sessions: int = 250
    t_threshold: float = 2.0
    prior_sd: float = 0.02
    volatility_sessions: int = 60

    def __post_init__(self) -> None:
        problems = [
            f"{name} {value} must be {rule}"
            for name, value, ok, rule in (
                (
                    "sessions",
                    self.sessions,
                    self.sessions >= MIN_OBSERVATIONS,
                    f">= {MIN_OBSERVATIONS}",
                ),
                ("t_threshold", self.t_threshold, self.t_threshold >= 0, ">= 0"),
                ("prior_sd", self.prior_sd, self.prior_sd > 0, "> 0"),
                (
                    "volatility_sessions",
                    self.volatility_sessions,
                    self.volatility_sessions >= 2,
                    ">= 2",
                ),
            )
            if not ok
        ]
        if problems:
            raise ValueError("evidence settings: " + "; ".join(problems))


@dataclass(frozen=True)
class ICPanel:
    """Daily evidence of the signals: ``ic`` (index session, one column per signal: the rank IC
    of that session, NaN when undefined) and ``cov`` (sessions x signals x signals: the
    cross-sectional covariance of the normalised signals that session)."""

    ic: pd.DataFrame
    cov: np.ndarray

    @classmethod
    def empty(cls, signals: Sequence[str]) -> ICPanel:
        """A panel without sessions (no evidence yet)."""
        index = pd.DatetimeIndex([], name="session")
        return cls(
            pd.DataFrame(columns=list(signals), index=index, dtype="float64"),
            np.zeros((0, len(signals), len(signals))),
        )

    @classmethod
    def of(
        cls, rows: Sequence[tuple[date, pd.Series, np.ndarray]], signals: Sequence[str]
    ) -> ICPanel:
        """A panel from ``(session, ic by signal, covariance)`` rows in any order."""
        if not rows:
            return cls.empty(signals)
        ordered = sorted(rows, key=lambda r: r[0])
        index = pd.DatetimeIndex([pd.Timestamp(r[0]) for r in ordered], name="session")
        ic = pd.DataFrame([r[1].reindex(list(signals)) for r in ordered], index=index)
        return cls(ic.astype("float64"), np.stack([r[2] for r in ordered]))


@dataclass(frozen=True)
class Evidence:
    """The evidence at one decision: per signal (index) ``ic`` (trailing mean), ``t``
    (Newey–West), ``n`` (sessions with an IC), ``shrunk_ic`` and ``weight`` (signed, absolute
    weights sum to 1 or all 0); ``composite_ic`` (the shrunk composite's daily IC), the
    ``sessions`` of the window and its last session (``through``, NaT without evidence)."""

    table: pd.DataFrame
    composite_ic: float
    sessions: int
    through: pd.Timestamp

    @property
    def weights(self) -> pd.Series:
        """The signed weight of every signal."""
        return self.table["weight"]

    @classmethod
    def none(cls, signals: Sequence[str]) -> Evidence:
        """No evidence: every weight 0, composite IC 0."""
        return evidence_at(ICPanel.empty(signals), pd.Timestamp.max.normalize(), EvidenceSettings())


def rank_ic(signals: pd.DataFrame, returns: pd.Series) -> pd.Series:
    """Per column of ``signals`` (index symbol), the Spearman rank correlation with
    ``returns`` (by symbol) across the names that have a finite return; NaN for a column
    without spread or with fewer than 3 names (:func:`evidence_rows` of one session)."""
    ic, _ = _one_session(signals, returns)
    return pd.Series(ic, index=signals.columns, dtype="float64")


def session_evidence(signals: pd.DataFrame, returns: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """One session's row of an :class:`ICPanel`: the rank IC of each normalised signal
    (columns of ``signals``, index symbol) against the session's returns, and the signals'
    cross-sectional covariance (ddof 1) over the names with a return (:func:`evidence_rows`
    of one session)."""
    ic, cov = _one_session(signals, returns)
    return pd.Series(ic, index=signals.columns, dtype="float64"), cov


def _one_session(signals: pd.DataFrame, returns: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """:func:`evidence_rows` of one session's signals (index symbol) and returns (by symbol)."""
    r = pd.to_numeric(returns, errors="coerce").reindex(signals.index)
    values = signals.to_numpy(dtype="float64")[None]
    present = np.ones(values.shape[:2], dtype=bool)
    ic, cov = evidence_rows(values, r.to_numpy(dtype="float64")[None], present)
    return ic[0], cov[0]


def evidence_rows(
    signals: np.ndarray, returns: np.ndarray, present: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Many sessions' rows of an :class:`ICPanel` at once. ``signals``: sessions x names x
    signals, normalised (finite where ``present``); ``returns``: sessions x names, each
    session's close-to-close return (fraction, NaN unknown); ``present``: sessions x names, the
    names of each session's feature matrix. Per session, over its present names with a finite
    return: each signal's Spearman rank correlation with the return (NaN without spread or
    with fewer than 3 names) and the signals' covariance (ddof 1; NaN with fewer than 2
    names). Returns ``(ic, cov)``: sessions x signals and sessions x signals x signals."""
    values = np.asarray(signals, dtype="float64")
    keep = np.asarray(present, dtype=bool) & np.isfinite(returns)
    count = keep.sum(axis=1)
    # names outside a session's cross-section rank above every kept one: the kept ranks are
    # their ranks among themselves
    ranks = rankdata(np.where(keep[:, :, None], values, np.inf), method="average", axis=1)
    target = rankdata(np.where(keep, returns, np.inf), method="average", axis=1)
    x = _centred(ranks, keep, count)
    y = _centred(target[:, :, None], keep, count)[:, :, 0]
    norms = np.sqrt((x**2).sum(axis=1) * (y**2).sum(axis=1)[:, None])
    with np.errstate(invalid="ignore", divide="ignore"):
        ic = np.where(norms > 0, np.einsum("snk,sn->sk", x, y) / norms, np.nan)
    ic[count < 3] = np.nan
    centred = _centred(values, keep, count)
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = np.einsum("snk,snl->skl", centred, centred) / (count - 1)[:, None, None]
    cov[count < 2] = np.nan
    return ic, cov


def _centred(values: np.ndarray, keep: np.ndarray, count: np.ndarray) -> np.ndarray:
    """``values`` (sessions x names x k) less each session's mean over its kept names; 0 at
    the others."""
    kept = np.where(keep[:, :, None], values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = kept.sum(axis=1) / count[:, None]
    return np.where(keep[:, :, None], kept - mean[:, None, :], 0.0)


def newey_west(x: np.ndarray, lags: int | None = None) -> tuple[float, float]:
    """Mean of ``x`` (NaNs dropped) and its Newey–West standard error: the long-run variance
    ``γ_0 + 2 Σ_{l=1..L} (1 - l/(L+1)) γ_l`` (Bartlett kernel, autocovariances ``γ_l`` with
    divisor n) over n. ``lags`` default ``floor(4 (n/100)^(2/9))`` (Newey & West 1994). NaN
    for fewer than 2 values."""
    v = np.asarray(x, dtype="float64")
    v = v[np.isfinite(v)]
    n = len(v)
    if n < 2:
        return (float(v.mean()) if n else math.nan), math.nan
    lag = int(4 * (n / 100) ** (2 / 9)) if lags is None else int(lags)
    lag = max(0, min(lag, n - 1))
    e = v - v.mean()
    variance = float(e @ e) / n
    for ell in range(1, lag + 1):
        variance += 2 * (1 - ell / (lag + 1)) * float(e[ell:] @ e[:-ell]) / n
    return float(v.mean()), math.sqrt(max(variance, 0.0) / n)


def newey_west_t(x: np.ndarray, lags: int | None = None) -> float:
    """The t-statistic of the mean of ``x`` with the Newey–West standard error (NaN when the
    error is 0 or undefined)."""
    mean, se = newey_west(x, lags)
    return mean / se if se > 0 else math.nan


def distinguishable(t: np.ndarray, t_threshold: float) -> np.ndarray:
    """Which signals' mean ICs are distinguishable from zero, tested together: the
    Benjamini–Hochberg (1995) step-up over the signals with a t-statistic (NaN: not tested, no),
    at the two-sided level of ``|t| >= t_threshold`` (4.55% at 2) — a signal alone passes at
    ``|t| >= t_threshold``; with every signal edge-free it is the chance that any passes."""
    tested = np.flatnonzero(np.isfinite(t))
    passed = np.zeros(len(t), dtype=bool)
    if not tested.size:
        return passed
    level = 2.0 * float(norm.sf(t_threshold))
    p = 2.0 * norm.sf(np.abs(t[tested]))
    order = np.argsort(p, kind="stable")
    below = np.flatnonzero(p[order] <= level * np.arange(1, tested.size + 1) / tested.size)
    if below.size:
        passed[tested[order[: below[-1] + 1]]] = True
    return passed


def evidence_at(
    panel: ICPanel, session: date | pd.Timestamp, settings: EvidenceSettings
) -> Evidence:
    """The evidence a decision at ``session`` may use: the panel's last ``settings.sessions``
    sessions strictly before it (their returns closed before the run), read as in the module
    docstring."""
    before = panel.ic.index < pd.Timestamp(session)
    position = np.flatnonzero(before)[-settings.sessions :]
    window = panel.ic.to_numpy(dtype="float64")[position]  # sessions x signals
    count = np.isfinite(window).sum(axis=0)
    ic, t, shrunk = (np.empty(window.shape[1]) for _ in range(3))
    prior = settings.prior_sd**2
    for j in range(window.shape[1]):
        mean, se = newey_west(window[:, j])
        ic[j] = mean
        t[j] = mean / se if count[j] >= MIN_OBSERVATIONS and se > 0 else math.nan
        shrunk[j] = mean * prior / (prior + se**2) if se > 0 else 0.0
    raw = np.where(distinguishable(t, settings.t_threshold), shrunk, 0.0)
    total = float(np.abs(raw).sum())
    weight = raw / total if total > 0 else np.zeros(len(raw))
    table = pd.DataFrame(
        {"ic": ic, "t": t, "n": count.astype("int64"), "shrunk_ic": shrunk, "weight": weight},
        index=pd.Index(list(panel.ic.columns)),
    )
    composite = 0.0
    if total > 0:
        cov = np.nanmean(panel.cov[position], axis=0)
        spread = np.sqrt(np.clip(np.diag(cov), 0, None))
        dispersion = float(weight @ cov @ weight)
        if dispersion > 0:
            composite = float(np.nansum(weight * shrunk * spread)) / math.sqrt(dispersion)
    through = panel.ic.index[position[-1]] if len(position) else pd.NaT
    return Evidence(table, composite, len(position), through)


def daily_volatility(closes: pd.DataFrame, sessions: int = 60) -> pd.Series:
    """Each column's standard deviation (ddof 1) of its last ``sessions`` daily simple returns
    (``closes``: sessions x symbols, in order), a fraction a day; NaN with fewer than 2. A
    missing close leaves that day's and the next day's return out. Computed as pandas'
    ``pct_change().std()`` computes it (two passes, each name's returns contiguous), to the bit."""
    v = closes.iloc[-(sessions + 1) :].to_numpy(dtype="float64")
    returns = np.ascontiguousarray((v[1:] / v[:-1] - 1.0).T)  # symbols x sessions
    known = ~np.isnan(returns)
    count = known.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(known, returns, 0.0).sum(axis=1) / count
        square = np.where(known, (mean[:, None] - returns) ** 2, 0.0).sum(axis=1)
        variance = np.where(count >= 2, square / (count - 1), np.nan)
    return pd.Series(np.sqrt(variance), index=closes.columns)


def grinold_expected_returns(
    score: pd.Series, volatility: pd.Series, composite_ic: float
) -> pd.Series:
    """Grinold's rule ``E[r_i] = IC_c · σ_i · z_i`` (daily, fraction): ``z`` is ``score``
    standardised across names (mean 0, sd 1, ddof 1; 0 everywhere when it has no spread),
    ``σ_i`` the name's daily volatility (a missing one: the cross-sectional median)."""
    s = pd.to_numeric(score, errors="coerce").astype("float64").fillna(0.0)
    sd = float(s.std(ddof=1)) if len(s) > 1 else 0.0
    z = (s - s.mean()) / sd if sd > 1e-12 else s * 0.0
    vol = pd.to_numeric(volatility, errors="coerce").reindex(s.index).astype("float64")
    vol = vol.fillna(vol.median()).fillna(0.0)
    return composite_ic * vol * z
