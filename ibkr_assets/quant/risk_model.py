"""Risk model: how the book's names move together, as a shrunk covariance and a set of
historical return scenarios.

From a panel of daily closes (sessions x symbols) we take simple daily returns over the last
``scenario_sessions`` sessions (default 504, about two years) and build:

* **a shrunk covariance matrix**. The sample covariance of a few hundred stocks estimated from a
  few hundred days is noisy and close to singular: an optimiser fed with it piles into the
  spuriously "uncorrelated" pairs. Ledoit & Wolf (2004) pull the sample matrix towards a
  scaled identity, ``Σ = δ·μI + (1 − δ)·S``, with the shrinkage intensity ``δ`` chosen in closed
  form to minimise expected estimation error (:func:`ledoit_wolf_shrinkage`, scikit-learn's
  :func:`~sklearn.covariance.ledoit_wolf_shrinkage` formula). With ``X`` the ``T`` demeaned
  daily returns, ``S = X'X/T``, so the matrix is held in its **factor form**
  (:attr:`RiskModel.loadings` ``L = √((1 − δ)/T)·X`` and :attr:`RiskModel.ridge` ``δ·μ``:
  ``Σ = L'L + δμ·I``): the optimiser's variance term, the volatilities and a book's variance
  are read from it, and no ``n x n`` matrix is formed unless asked for
  (:attr:`RiskModel.cov`, :meth:`RiskModel.daily_cov`) — ``n`` may be thousands of names.
  ``cov`` is annualised (x ``periods_per_year``); the factor form is daily, as the scenarios.
* **historical scenarios**: the daily return vectors themselves. Replaying them against a
  portfolio gives its empirical P&L distribution, from which historical VaR and CVaR are read
  (Rockafellar & Uryasev 2000) without assuming normality.

Missing data: a symbol with fewer than ``min_history`` valid returns in the window (a recent
listing, a data gap) is left out and named in ``RiskModel.dropped`` with the reason; the
optimiser then cannot hold it. Remaining isolated gaps are filled with that symbol's mean
return over the window (a neutral day), which slightly understates its variance.

References: O. Ledoit & M. Wolf (2004), "A well-conditioned estimator for large-dimensional
covariance matrices", *J. Multivariate Analysis* 88(2); R.T. Rockafellar & S. Uryasev (2000),
"Optimization of conditional value-at-risk", *J. Risk* 2(3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

PERIODS_PER_YEAR = 252


@dataclass(frozen=True)
class RiskModel:
    """Shrunk covariance, mean and historical daily return scenarios for a set of symbols.

    ``scenarios`` are daily simple returns (sessions x symbols, no NaN); ``mean`` is
    annualised. The covariance is Ledoit–Wolf's ``δ·μI + (1 − δ)·S`` of the scenarios, with
    ``shrinkage`` ``δ`` and ``shrinkage_target`` ``μ`` (the identity target's daily variance:
    the mean of the names' sample variances when the model was built, kept by :meth:`subset`);
    it is held in factor form (:attr:`loadings`, :attr:`ridge`, daily) and formed as a matrix
    only on request (:attr:`cov`, annualised; :meth:`daily_cov`). ``dropped`` maps each symbol
    left out to the reason.
    """

    symbols: list[str]
    scenarios: pd.DataFrame
    mean: pd.Series
    shrinkage: float
    shrinkage_target: float
    periods_per_year: int = PERIODS_PER_YEAR
    dropped: dict[str, str] = field(default_factory=dict)

    @cached_property
    def loadings(self) -> np.ndarray:
        """``L = √((1 − δ)/T)·X`` (``T x n``, daily): ``X`` the scenarios less their mean, so
        the daily covariance is ``L'L + ridge·I``."""
        r = self.scenarios.to_numpy(dtype="float64")
        return np.sqrt((1.0 - self.shrinkage) / len(r)) * (r - r.mean(axis=0))

    @property
    def ridge(self) -> float:
        """``δ·μ``: the daily covariance's multiple of the identity beside ``L'L``."""
        return self.shrinkage * self.shrinkage_target

    @cached_property
    def cov(self) -> pd.DataFrame:
        """The annualised covariance (``n x n``; formed on first use)."""
        return self.daily_cov() * self.periods_per_year

    def daily_cov(self, symbols: list[str] | None = None) -> pd.DataFrame:
        """The one-day covariance (the scenarios' units) of ``symbols`` (default: all; each
        must be in the model), formed from the factor form."""
        names = self.symbols if symbols is None else list(symbols)
        columns = self._columns(names)
        loadings = self.loadings[:, columns]
        sigma = loadings.T @ loadings
        sigma[np.diag_indices_from(sigma)] += self.ridge
        return pd.DataFrame(sigma, index=names, columns=names)

    def daily_volatility(self) -> pd.Series:
        """Each symbol's one-day volatility (fraction; the square root of the daily
        covariance's diagonal), by symbol."""
        variance = np.einsum("ij,ij->j", self.loadings, self.loadings) + self.ridge
        return pd.Series(np.sqrt(np.clip(variance, 0.0, None)), index=self.symbols)

    def subset(self, symbols: list[str]) -> RiskModel:
        """The same model restricted to ``symbols`` (all must be in the model): the same
        shrinkage and target, so its covariance is the block of this one's."""
        columns = self._columns(symbols)
        return RiskModel(
            symbols=list(symbols),
            scenarios=self.scenarios.iloc[:, columns],
            mean=self.mean.iloc[columns],
            shrinkage=self.shrinkage,
            shrinkage_target=self.shrinkage_target,
            periods_per_year=self.periods_per_year,
            dropped=dict(self.dropped),
        )

    @cached_property
    def _position(self) -> dict[str, int]:
        return {s: i for i, s in enumerate(self.symbols)}

    def _columns(self, symbols: list[str]) -> np.ndarray:
        """The positions of ``symbols``; raises ``KeyError`` naming those not in the model."""
        missing = [s for s in symbols if s not in self._position]
        if missing:
            raise KeyError(f"risk model has no data for {missing}")
        return np.fromiter((self._position[s] for s in symbols), dtype=np.intp, count=len(symbols))


def ledoit_wolf_shrinkage(x: np.ndarray) -> tuple[float, float]:
    """Ledoit & Wolf's (2004) shrinkage ``δ`` and target ``μ`` for the demeaned returns ``x``
    (``T x n``): scikit-learn's :func:`~sklearn.covariance.ledoit_wolf_shrinkage` formula, with
    ``‖X'X‖²_F`` computed as ``‖XX'‖²_F`` when ``T < n`` and ``Σ_ij (X²'X²)_ij`` as
    ``Σ_t (Σ_i x_ti²)²``: one ``min(T, n)``-square product instead of two ``n x n`` ones."""
    t, n = x.shape
    if n == 1:
        return 0.0, float(np.sum(x**2) / t)
    x2 = x**2
    trace = x2.sum(axis=0) / t  # the sample variances
    mu = float(trace.sum() / n)
    gram = x @ x.T if t < n else x.T @ x
    delta_ = float(np.sum(gram**2)) / t**2
    beta_ = float(np.sum(x2.sum(axis=1) ** 2))
    beta = (beta_ / t - delta_) / (n * t)
    delta = (delta_ - 2.0 * mu * float(trace.sum()) + n * mu**2) / n
    beta = min(beta, delta)
    return (0.0 if beta == 0 else beta / delta), mu


def daily_returns(closes: pd.DataFrame) -> pd.DataFrame:
    """Simple daily returns of a sessions x symbols close panel (first row dropped).

    A missing close gives a missing return for that day and the next (no forward fill across
    gaps). Non-positive closes are an error naming the symbols.
    """
    if not isinstance(closes, pd.DataFrame) or closes.empty:
        raise ValueError("closes must be a non-empty sessions x symbols DataFrame")
    values = closes if closes.index.is_monotonic_increasing else closes.sort_index()
    v = values.to_numpy(dtype="float64")
    bad = values.columns[(v <= 0).any(axis=0)].tolist()
    if bad:
        raise ValueError(f"non-positive close prices for {bad}")
    infinite = values.columns[np.isinf(v).any(axis=0)].tolist()
    if infinite:
        raise ValueError(f"infinite close prices for {infinite}")
    return pd.DataFrame(v[1:] / v[:-1] - 1.0, index=values.index[1:], columns=values.columns)


def build_risk_model(
    closes: pd.DataFrame,
    scenario_sessions: int = 504,
    min_history: int = 60,
    periods_per_year: int = PERIODS_PER_YEAR,
) -> RiskModel:
    """Ledoit–Wolf covariance and historical scenarios from the last ``scenario_sessions``
    daily returns of ``closes`` (index = sessions, columns = symbols).

    Symbols with fewer than ``min_history`` valid returns in the window are dropped (see
    ``RiskModel.dropped``); raises ``ValueError`` if none are left.
    """
    if scenario_sessions < 2:
        raise ValueError(f"scenario_sessions must be at least 2, got {scenario_sessions}")
    if min_history < 2:
        raise ValueError(f"min_history must be at least 2, got {min_history}")
    if closes.columns.duplicated().any():
        dupes = closes.columns[closes.columns.duplicated()].unique().tolist()
        raise ValueError(f"duplicate symbols in the close panel: {dupes}")
    returns = daily_returns(closes).iloc[-scenario_sessions:]
    counts = (~np.isnan(returns.to_numpy())).sum(axis=0)
    dropped = {
        str(sym): f"{int(n)} valid daily returns in the last {len(returns)} sessions "
        f"(need {min_history})"
        for sym, n in zip(returns.columns, counts, strict=True)
        if n < min_history
    }
    kept = returns.columns[counts >= min_history]
    if kept.empty:
        raise ValueError(
            f"no symbol has {min_history} valid returns in the last {len(returns)} sessions"
        )
    values = returns.to_numpy()[:, counts >= min_history]
    mean = np.nanmean(values, axis=0)
    # a gap takes its column's mean (as fillna(mean), which pandas does column by column: slow)
    filled = np.where(np.isnan(values), mean, values)
    shrinkage, target = ledoit_wolf_shrinkage(filled - mean)
    symbols = [str(s) for s in kept]
    return RiskModel(
        symbols=symbols,
        scenarios=pd.DataFrame(filled, index=returns.index, columns=symbols),
        mean=pd.Series(mean * periods_per_year, index=symbols, name="mean"),
        shrinkage=float(shrinkage),
        shrinkage_target=target,
        periods_per_year=periods_per_year,
        dropped=dropped,
    )
