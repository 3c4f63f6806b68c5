"""Macro regime: is the market paying for risk today, and how much equity should we hold?

Input is one row per session with the daily closes of six gauges (any may be missing):
``ten_year_yield`` (US 10-year Treasury yield, percent), ``eurusd``, ``crude`` (front WTI),
``vix`` (CBOE volatility index), ``spy`` and ``qqq`` (S&P 500 and Nasdaq-100 ETFs).

Features (all computed with information up to and including each row's session):

* ``vix_z`` — VIX against its own trailing 60-session mean and standard deviation. Volatility
  spikes are the cleanest real-time risk-off signal (Whaley 2000, "The investor fear gauge").
* ``spy_trend`` — SPY close over its 50-session simple moving average, minus one: the classic
  trend filter (Faber 2007, "A quantitative approach to tactical asset allocation").
* ``qqq_spy_rs`` — 20-session return of QQQ minus that of SPY: growth/tech leading the broad
  market is a risk-appetite tell; lagging it, a defensive rotation.
* ``crude_chg_20d``, ``eurusd_chg_20d`` — 20-session returns. An oil shock is a tax on
  consumers and margins; a falling euro is a rising dollar, which tightens global conditions.
* ``ten_year_level`` and ``ten_year_chg_20d`` (change in percentage points). **Curve caveat:**
  only the 10-year yield is ingested, so there is no slope (10y-2y or 10y-3m) and no inversion
  signal; the "curve" features are the level and the speed of the long end. A fast rise in
  long yields has historically hurt equity multiples.

``risk_score`` in [-1, 1] is the weighted mean of the components that are available, each
squashed with ``tanh`` of a scale chosen so one "typical large move" maps to about 0.76:

==================  ======  ========================================================
component           weight  mapping
==================  ======  ========================================================
VIX                 0.30    ``-tanh(vix_z)``
SPY trend           0.25    ``tanh(spy_trend / 0.03)``
QQQ/SPY strength    0.15    ``tanh(qqq_spy_rs / 0.03)``
10y change          0.15    ``-tanh(ten_year_chg_20d / 0.25)``
crude change        0.10    ``-tanh(crude_chg_20d / 0.10)``
EURUSD change       0.05    ``tanh(eurusd_chg_20d / 0.02)``
==================  ======  ========================================================

``regime`` is +1 (risk-on) when the score is above 0.25, -1 (risk-off) below -0.25, else 0;
``equity_exposure`` = 0.75 + 0.25 * score lies in [0.5, 1.0] (a gross-exposure multiplier);
``macro_adjustment`` = the score itself, the environment term the alpha blend adds to every name.
All columns are numeric so the frame stores and summarises cleanly; :data:`REGIME_LABELS` names
the regime codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

GAUGES = ("ten_year_yield", "eurusd", "crude", "vix", "spy", "qqq")
REGIME_LABELS = {-1: "risk_off", 0: "neutral", 1: "risk_on"}
FEATURE_COLUMNS = (
    "vix_level",
    "vix_z",
    "spy_trend",
    "qqq_spy_rs",
    "crude_chg_20d",
    "eurusd_chg_20d",
    "ten_year_level",
    "ten_year_chg_20d",
    "risk_score",
    "regime",
    "equity_exposure",
    "macro_adjustment",
)


@dataclass(frozen=True)
class MacroParams:
    """Windows and thresholds of the regime model (defaults as in the module docstring)."""

    vix_window: int = 60
    trend_window: int = 50
    change_window: int = 20
    regime_threshold: float = 0.25

    @property
    def lookback(self) -> int:
        """The rows before a row its features read: the rolling windows' and the changes'."""
        return max(self.vix_window - 1, self.trend_window - 1, self.change_window)


# component -> (weight, sign, scale)
_COMPONENTS: dict[str, tuple[float, float, float]] = {
    "vix_z": (0.30, -1.0, 1.0),
    "spy_trend": (0.25, 1.0, 0.03),
    "qqq_spy_rs": (0.15, 1.0, 0.03),
    "ten_year_chg_20d": (0.15, -1.0, 0.25),
    "crude_chg_20d": (0.10, -1.0, 0.10),
    "eurusd_chg_20d": (0.05, 1.0, 0.02),
}


def _column(history: pd.DataFrame, name: str) -> pd.Series:
    if name in history.columns:
        return pd.to_numeric(history[name], errors="coerce").astype("float64")
    return pd.Series(np.nan, index=history.index, dtype="float64")


def macro_features(history: pd.DataFrame, params: MacroParams | None = None) -> pd.DataFrame:
    """Risk-on/off, curve and regime features for every session of ``history``.

    ``history`` is indexed by session (ascending) with any of the :data:`GAUGES` as columns.
    Returns a frame on the same index with :data:`FEATURE_COLUMNS`; components whose gauge is
    missing are left out of the score (the score is NaN only when every component is).
    """
    p = params or MacroParams()
    unknown = [c for c in history.columns if c not in GAUGES]
    if unknown:
        raise ValueError(f"macro history has unknown column(s) {unknown}; expected {GAUGES}")
    if not history.index.is_monotonic_increasing:
        raise ValueError("macro history must be sorted by session (ascending)")
    vix, spy, qqq = _column(history, "vix"), _column(history, "spy"), _column(history, "qqq")
    crude, eurusd = _column(history, "crude"), _column(history, "eurusd")
    ten_year = _column(history, "ten_year_yield")
    n = p.change_window
    vix_mean = vix.rolling(p.vix_window, min_periods=n).mean()
    vix_std = vix.rolling(p.vix_window, min_periods=n).std()
    out = pd.DataFrame(
        {
            "vix_level": vix,
            "vix_z": (vix - vix_mean) / vix_std.where(vix_std > 0),
            "spy_trend": spy / spy.rolling(p.trend_window, min_periods=p.trend_window).mean() - 1,
            "qqq_spy_rs": qqq.pct_change(n, fill_method=None) - spy.pct_change(n, fill_method=None),
            "crude_chg_20d": crude.pct_change(n, fill_method=None),
            "eurusd_chg_20d": eurusd.pct_change(n, fill_method=None),
            "ten_year_level": ten_year,
            "ten_year_chg_20d": ten_year - ten_year.shift(n),
        },
        index=history.index,
    )
    weights = np.array([w for w, _, _ in _COMPONENTS.values()])
    mapped = (
        np.column_stack(
            [
                sign * np.tanh(out[name].to_numpy() / scale)
                for name, (_, sign, scale) in _COMPONENTS.items()
            ]
        )
        if len(out)
        else np.empty((0, len(_COMPONENTS)))
    )
    present = ~np.isnan(mapped)
    weight_sum = (present * weights).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(present, mapped, 0.0) @ weights / weight_sum
    score = np.where(weight_sum > 0, score, np.nan)
    regime = np.select(
        [score > p.regime_threshold, score < -p.regime_threshold], [1.0, -1.0], default=0.0
    )
    return out.assign(
        risk_score=score,
        regime=np.where(np.isnan(score), np.nan, regime),
        equity_exposure=0.75 + 0.25 * score,
        macro_adjustment=score,
    )


@dataclass(frozen=True)
class MacroRegime:
    """The regime as of one session: what the pipeline uses downstream."""

    session: pd.Timestamp
    label: str
    risk_score: float
    equity_exposure: float
    macro_adjustment: float


def window_regimes(
    history: pd.DataFrame,
    windows: Sequence[tuple[pd.Timestamp, pd.Timestamp]],
    params: MacroParams | None = None,
) -> list[MacroRegime]:
    """Each window's regime: ``latest_regime(macro_features(history[first <= session < end]))``
    for every ``(first, end)`` of ``windows`` (``history`` as :func:`macro_features` reads it),
    from the features of the whole history computed once. A window's last scored row at least
    the longest lookback (:meth:`MacroParams.lookback` rows) after the window's first row has the
    same features in both (the rolling sums start elsewhere: equal to ~1e-15); a window whose
    last scored row lies closer to its start is computed on its own."""
    p = params or MacroParams()
    features = macro_features(history, p)
    scored = np.flatnonzero(features["risk_score"].notna().to_numpy())
    sessions = history.index
    out = []
    for first, end in windows:
        a, b = sessions.searchsorted(first, side="left"), sessions.searchsorted(end, side="left")
        last = scored[: np.searchsorted(scored, b)]  # the scored rows before the window's end
        if len(last) and last[-1] - a >= p.lookback:
            out.append(_regime(features, int(last[-1])))
        else:
            out.append(latest_regime(macro_features(history.iloc[a:b], p)))
    return out


def _regime(features: pd.DataFrame, row: int) -> MacroRegime:
    """Row ``row`` of :func:`macro_features` (its score defined) as a :class:`MacroRegime`."""
    values = features.iloc[row]
    return MacroRegime(
        session=pd.Timestamp(features.index[row]),
        label=REGIME_LABELS[int(values["regime"])],
        risk_score=float(values["risk_score"]),
        equity_exposure=float(values["equity_exposure"]),
        macro_adjustment=float(values["macro_adjustment"]),
    )


def latest_regime(features: pd.DataFrame) -> MacroRegime:
    """The last session of :func:`macro_features` with a defined score, as a :class:`MacroRegime`.

    With no usable session at all there is no macro view, hence no adjustment: the regime is
    neutral with score 0 and exposure 1.0.
    """
    scored = np.flatnonzero(features["risk_score"].notna().to_numpy())
    if not len(scored):
        last = features.index[-1] if len(features) else pd.NaT
        return MacroRegime(pd.Timestamp(last), REGIME_LABELS[0], 0.0, 1.0, 0.0)
    return _regime(features, int(scored[-1]))
