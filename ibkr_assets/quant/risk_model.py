"""Risk model: how the book's names move together, as a shrunk covariance and a set of
historical return scenarios.

From a panel of daily closes (sessions x symbols) we take simple daily returns over the last
``scenario_sessions`` sessions (default 504, about two years) and build:

* **a shrunk covariance matrix**. The sample covariance of a few hundred stocks estimated from a
  few hundred days is noisy and close to singular: an optimiser fed with it piles into the
  spuriously "uncorrelated" pairs. Ledoit & Wolf (2004) pull the sample matrix towards a
  scaled identity, ``Σ = δ·μI + (1 − δ)·S``, with the shrinkage intensity ``δ`` chosen in closed
  form to minimise expected estimation error. We use scikit-learn's
  :class:`~sklearn.covariance.LedoitWolf`. ``cov`` is annualised (x ``periods_per_year``);
  :meth:`RiskModel.daily_cov` gives the one-day matrix that matches the scenarios.
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

import numpy as np
import pandas as pd
from sklearn.covariance import LedoitWolf

PERIODS_PER_YEAR = 252


@dataclass(frozen=True)
class RiskModel:
    """Shrunk covariance, mean and historical daily return scenarios for a set of symbols.

    ``cov`` and ``mean`` are annualised; ``scenarios`` are daily simple returns
    (sessions x symbols, no NaN). ``dropped`` maps each symbol left out to the reason.
    """

    symbols: list[str]
    cov: pd.DataFrame
    scenarios: pd.DataFrame
    mean: pd.Series
    shrinkage: float
    periods_per_year: int = PERIODS_PER_YEAR
    dropped: dict[str, str] = field(default_factory=dict)

    def daily_cov(self) -> pd.DataFrame:
        """The one-day covariance (``cov / periods_per_year``), in the scenarios' units."""
        return self.cov / self.periods_per_year

    def daily_volatility(self) -> pd.Series:
        """Each symbol's one-day volatility (fraction; the square root of ``daily_cov``'s
        diagonal, negative rounding clipped to 0), by symbol."""
        variance = np.clip(np.diag(self.cov.to_numpy(dtype="float64")), 0.0, None)
        return pd.Series(np.sqrt(variance / self.periods_per_year), index=self.symbols)

    def subset(self, symbols: list[str]) -> RiskModel:
        """The same model restricted to ``symbols`` (all must be in the model)."""
        missing = [s for s in symbols if s not in self.cov.index]
        if missing:
            raise KeyError(f"risk model has no data for {missing}")
        return RiskModel(
            symbols=list(symbols),
            cov=self.cov.loc[symbols, symbols],
            scenarios=self.scenarios.loc[:, symbols],
            mean=self.mean.loc[symbols],
            shrinkage=self.shrinkage,
            periods_per_year=self.periods_per_year,
            dropped=dict(self.dropped),
        )


def daily_returns(closes: pd.DataFrame) -> pd.DataFrame:
    """Simple daily returns of a sessions x symbols close panel (first row dropped).

    A missing close gives a missing return for that day and the next (no forward fill across
    gaps). Non-positive closes are an error naming the symbols.
    """
    if not isinstance(closes, pd.DataFrame) or closes.empty:
        raise ValueError("closes must be a non-empty sessions x symbols DataFrame")
    values = closes.astype("float64")
    bad = values.columns[(values <= 0).any(axis=0)].tolist()
    if bad:
        raise ValueError(f"non-positive close prices for {bad}")
    infinite = values.columns[np.isinf(values.to_numpy()).any(axis=0)].tolist()
    if infinite:
        raise ValueError(f"infinite close prices for {infinite}")
    values = values.sort_index()
    return (values / values.shift(1) - 1.0).iloc[1:]


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
    counts = returns.notna().sum(axis=0)
    short = counts[counts < min_history]
    dropped = {
        str(sym): f"{int(n)} valid daily returns in the last {len(returns)} sessions "
        f"(need {min_history})"
        for sym, n in short.items()
    }
    kept = [c for c in returns.columns if c not in short.index]
    if not kept:
        raise ValueError(
            f"no symbol has {min_history} valid returns in the last {len(returns)} sessions"
        )
    window = returns.loc[:, kept]
    mean = window.mean(axis=0)
    values = window.to_numpy()
    # a gap takes its column's mean (as fillna(mean), which pandas does column by column: slow)
    filled = pd.DataFrame(
        np.where(np.isnan(values), mean.to_numpy(), values), index=window.index, columns=kept
    )
    demeaned = filled.to_numpy() - mean.to_numpy()
    # store_precision=False: the precision matrix (an eigendecomposition) is never used
    lw = LedoitWolf(assume_centered=True, store_precision=False).fit(demeaned)
    symbols = [str(s) for s in kept]
    cov = pd.DataFrame(lw.covariance_ * periods_per_year, index=symbols, columns=symbols)
    scenarios = pd.DataFrame(filled.to_numpy(), index=filled.index, columns=symbols)
    return RiskModel(
        symbols=symbols,
        cov=cov,
        scenarios=scenarios,
        mean=pd.Series(mean.to_numpy() * periods_per_year, index=symbols, name="mean"),
        shrinkage=float(lw.shrinkage_),
        periods_per_year=periods_per_year,
        dropped=dropped,
    )
