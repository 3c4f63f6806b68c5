"""Alpha score: the day's signals combined with the weights and signs their trailing evidence
gives them (:mod:`ibkr_assets.quant.evidence`), the blocks they belong to as sub-scores, and
the expected daily return the score implies (Grinold's rule).

1. **Normalise each signal across the universe** on the day (:func:`signal_matrix`): a robust
   z-score (median and 1.4826 x median absolute deviation, falling back to the standard
   deviation when more than half the names share one value, as with the 0/1 flags), squashed
   with ``tanh(z / 2)`` so one outlier cannot dominate (z = 1, 2, 3 map to 0.46, 0.76, 0.91).
   ``method="rank"`` uses centred percentile ranks instead. A missing value is neutral (0).
   Signals that are already z-scores on their own scale (:data:`PRESCALED_SIGNALS`) skip the
   cross-sectional step and map as ``tanh(z / 2)``: the headline z-score, which is 0 for the
   many names without news (standardising a mostly-zero column again would blow up the few
   non-zeros), and the social-chatter spike and volume z-scores, each a name's chatter against
   its own trailing level (:mod:`~ibkr_assets.quant.social`; NaN without enough history,
   hence neutral). The evidence measures each signal's IC on exactly these values.
2. **Score** ``alpha = Σ_k w_k x_k`` with the signed evidence weights ``w`` (absolute weights
   summing to 1, or all 0 when no signal is distinguishable from zero), so it is in [-1, 1].
   No block has a weight of its own: the **blocks** technical (trend, breakout, RSI, MACD,
   12-1 momentum, volatility), fundamental (Piotroski F-score, forward P/E vs sector, revenue
   growth > 15%) and sentiment (headline polarity z-score, Reddit post spike and
   X/StockTwits volume anomaly z-scores) are the sums of their signals'
   contributions, reported so a reader sees where a score comes from (they add up to it).
3. **Expected return** (daily, fraction): ``IC_c · σ_i · z_i`` with ``z`` the score
   standardised across names, ``σ_i`` the name's daily volatility and ``IC_c`` the composite's
   shrunk IC (:func:`~ibkr_assets.quant.evidence.grinold_expected_returns`): the optimiser's
   input. A day without evidence expects 0 everywhere.
4. **Macro**: the regime's adjustment in [-1, 1] (:mod:`ibkr_assets.quant.macro`) is reported
   beside the score; being the same for every name it carries no cross-sectional evidence and
   moves neither the score nor the expected return.
5. **Drivers**: the score is exactly the sum of per-signal contributions (weight x normalised
   value); ``top_drivers`` names the :data:`TOP_DRIVERS` (five) with the largest absolute
   contribution, e.g. ``"mom_12_1 +0.081; piotroski +0.060; ..."`` (the journal keeps them).

The function is pure: given the features as of a date, that date's evidence and volatilities
it returns that date's scores, so the backtest replays it on history unchanged. Standardise,
then weight by evidence: Grinold & Kahn (2000), *Active Portfolio Management*, ch. 10-11.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
import pandas as pd

from ibkr_assets.quant.evidence import grinold_expected_returns

BLOCKS = ("technical", "fundamental", "sentiment")
#: block -> its signals (feature columns); their weights and signs come from the evidence
SIGNAL_BLOCKS: dict[str, tuple[str, ...]] = {
    "technical": (
        "ma_signal",
        "ma_cross",
        "atr_breakout",
        "rsi_signal",
        "macd_hist_pct",
        "mom_12_1",
        "vol_20d",
    ),
    "fundamental": ("piotroski", "forward_pe_rel_sector", "revenue_growth_flag"),
    "sentiment": ("sentiment_z", "social_spike_z", "social_volume_z"),
}
#: every signal, in block order
SIGNALS: tuple[str, ...] = tuple(c for block in SIGNAL_BLOCKS.values() for c in block)
PRESCALED_SIGNALS = frozenset({"sentiment_z", "social_spike_z", "social_volume_z"})
OUTPUT_COLUMNS = (
    "symbol",
    "alpha_score",
    *BLOCKS,
    "macro",
    "volatility",
    "expected_return",
    "top_drivers",
)
#: How many of a name's largest contributions ``top_drivers`` names.
TOP_DRIVERS = 5


def normalise(
    values: pd.Series, method: Literal["zscore", "rank"] = "zscore", spread: float = 2.0
) -> pd.Series:
    """A cross-section of one signal mapped into [-1, 1]; NaN/inf -> 0 (neutral)."""
    x = pd.to_numeric(values, errors="coerce").astype("float64").replace([np.inf, -np.inf], np.nan)
    n = int(x.notna().sum())
    if method not in ("zscore", "rank"):
        raise ValueError(f"unknown normalisation method {method!r} (zscore|rank)")
    if n < 2:
        return x.notna().astype("float64") * 0.0
    if method == "rank":
        out = (x.rank(method="average") - 1) / (n - 1) * 2 - 1
    else:
        median = x.median()
        scale = 1.4826 * (x - median).abs().median()
        if not scale > 0:
            scale = x.std(ddof=1)
        out = np.tanh((x - median) / scale / spread) if scale > 0 else x * 0.0
    return out.fillna(0.0)


def squash(values: pd.Series, scale: float = 2.0) -> np.ndarray:
    """An already standardised signal into [-1, 1]: ``tanh(x / scale)``, NaN -> 0."""
    x = pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()
    return np.nan_to_num(np.tanh(x / scale), nan=0.0)


def _symbols(features: pd.DataFrame) -> pd.Series:
    symbols = (
        features["symbol"] if "symbol" in features.columns else features.index.to_series()
    ).astype(str)
    dupes = symbols[symbols.duplicated()].unique().tolist()
    if dupes:
        raise ValueError(f"features have duplicate symbols {dupes[:10]}")
    return symbols


def signal_matrix(
    features: pd.DataFrame,
    signals: tuple[str, ...] = SIGNALS,
    method: Literal["zscore", "rank"] = "zscore",
    prescaled: frozenset[str] = PRESCALED_SIGNALS,
) -> pd.DataFrame:
    """The day's ``signals`` normalised into [-1, 1] (step 1 of the module docstring), index
    symbol, one column per signal; a signal column missing from ``features`` is an error
    naming it."""
    symbols = _symbols(features)
    missing = [c for c in signals if c not in features.columns]
    if missing:
        raise ValueError(f"features lack signal column(s) {missing}")
    frame = features.reset_index(drop=True)
    columns = {
        c: squash(frame[c]) if c in prescaled else normalise(frame[c], method).to_numpy()
        for c in signals
    }
    return pd.DataFrame(columns, index=pd.Index(symbols.to_numpy(), name="symbol"), dtype="float64")


def compute_alpha_scores(
    features: pd.DataFrame,
    weights: Mapping[str, float] | pd.Series,
    composite_ic: float = 0.0,
    volatility: pd.Series | None = None,
    macro_adjustment: float = 0.0,
    method: Literal["zscore", "rank"] = "zscore",
) -> pd.DataFrame:
    """Score every symbol of ``features`` (``symbol`` column or index, one row each) with the
    signed signal ``weights`` (signal -> weight, from
    :func:`~ibkr_assets.quant.evidence.evidence_at`; a signal not named weighs 0).

    Returns :data:`OUTPUT_COLUMNS` in the input order: ``alpha_score`` in [-1, 1] and its
    ``technical``, ``fundamental``, ``sentiment`` parts, ``macro`` (reported only, NaN read as
    0), ``volatility`` (``volatility`` by symbol, daily), ``expected_return`` (Grinold's rule
    with ``composite_ic``; daily, fraction) and ``top_drivers``.
    """
    w = pd.Series(dict(weights), dtype="float64").reindex(list(SIGNALS)).fillna(0.0)
    unknown = sorted(set(dict(weights)) - set(SIGNALS))
    if unknown:
        raise ValueError(f"weights name unknown signal(s) {unknown}; the signals are {SIGNALS}")
    if float(w.abs().sum()) > 1 + 1e-9:
        raise ValueError(f"the absolute signal weights sum to {w.abs().sum():.4f}, above 1")
    macro = 0.0 if macro_adjustment is None or np.isnan(macro_adjustment) else macro_adjustment
    if not -1.0 <= macro <= 1.0:
        raise ValueError(f"macro_adjustment {macro_adjustment} is outside [-1, 1]")
    symbols = _symbols(features)
    weighted = [c for c in SIGNALS if w[c] != 0]
    matrix = signal_matrix(features, tuple(weighted), method) * w[weighted]
    contributions = matrix.reindex(columns=list(SIGNALS), fill_value=0.0)
    score = contributions.sum(axis=1)
    vol = (
        pd.Series(np.nan, index=score.index)
        if volatility is None
        else pd.to_numeric(volatility, errors="coerce").reindex(score.index).astype("float64")
    )
    expected = grinold_expected_returns(score, vol, composite_ic) if weighted else score * 0.0
    blocks = {b: contributions.loc[:, list(cols)].sum(axis=1) for b, cols in SIGNAL_BLOCKS.items()}
    return pd.DataFrame(
        {
            "symbol": symbols.to_numpy(),
            "alpha_score": score.to_numpy(),
            **{b: v.to_numpy(dtype="float64") for b, v in blocks.items()},
            "macro": macro,
            "volatility": vol.to_numpy(),
            "expected_return": expected.to_numpy(dtype="float64"),
            "top_drivers": top_drivers(contributions.to_numpy(), list(SIGNALS)),
        }
    )


def top_drivers(contributions: np.ndarray, names: list[str], k: int = TOP_DRIVERS) -> list[str]:
    """Per row, the ``k`` largest absolute contributions as ``"name +0.123; ..."`` (zeros
    left out)."""
    order = np.argsort(-np.abs(contributions), axis=1, kind="stable")[:, :k]
    return [
        "; ".join(f"{names[j]} {row[j]:+.3f}" for j in idx if row[j] != 0)
        for row, idx in zip(contributions, order, strict=True)
    ]
