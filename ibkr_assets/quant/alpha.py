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
    """A cross-section of one signal mapped into [-1, 1]; NaN/inf -> 0 (neutral): the one-row
    case of :func:`normalise_rows`."""
    x = pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()
    return pd.Series(normalise_rows(x[None, :], method, spread)[0], index=values.index)


def normalise_rows(
    values: np.ndarray, method: Literal["zscore", "rank"] = "zscore", spread: float = 2.0
) -> np.ndarray:
    """Each row of ``values`` (sessions x names; NaN/inf: missing) a cross-section mapped into
    [-1, 1] (step 1 of the module docstring): ``tanh((x - median) / scale / spread)`` with
    ``scale`` 1.4826 x the median absolute deviation, or the standard deviation (ddof 1) when
    that is 0; the rank method's centred percentile ranks; 0 where a value is missing, and a
    whole row 0 when it holds fewer than two values or no spread."""
    if method not in ("zscore", "rank"):
        raise ValueError(f"unknown normalisation method {method!r} (zscore|rank)")
    x = np.asarray(values, dtype="float64")
    x = np.where(np.isfinite(x), x, np.nan)
    n = np.isfinite(x).sum(axis=1)
    usable = n >= 2
    out = np.zeros_like(x)
    if not usable.any():
        return out
    x = x[usable]
    if method == "rank":
        ranks = pd.DataFrame(x).rank(axis=1, method="average").to_numpy()
        scaled = (ranks - 1) / (n[usable, None] - 1) * 2 - 1
    else:
        median = _row_medians(x, n[usable])[:, None]
        scale = 1.4826 * _row_medians(np.abs(x - median), n[usable])
        scale = np.where(scale > 0, scale, np.nanstd(x, axis=1, ddof=1))[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            scaled = np.where(scale > 0, np.tanh((x - median) / scale / spread), 0.0)
    out[usable] = np.nan_to_num(scaled, nan=0.0)
    return out


def _row_medians(x: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Each row's median of its ``n`` non-NaN values (NaN sorts last; the mean of the two middle
    values for an even count, as ``np.median``)."""
    ordered = np.sort(x, axis=1)
    rows = np.arange(len(x))
    return (ordered[rows, (n - 1) // 2] + ordered[rows, n // 2]) / 2


def squash(values: pd.Series | np.ndarray, scale: float = 2.0) -> np.ndarray:
    """An already standardised signal into [-1, 1]: ``tanh(x / scale)``, NaN -> 0 (a Series
    is read as numbers, anything else as NaN)."""
    if isinstance(values, pd.Series):
        values = pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()
    return np.nan_to_num(np.tanh(np.asarray(values, dtype="float64") / scale), nan=0.0)


def normalise_signals(
    values: np.ndarray,
    signals: tuple[str, ...],
    method: Literal["zscore", "rank"] = "zscore",
    prescaled: frozenset[str] = PRESCALED_SIGNALS,
) -> np.ndarray:
    """Sessions x names x ``signals`` raw values (NaN: missing) normalised into [-1, 1], each
    session's cross-section on its own: :func:`squash` for the ``prescaled`` signals,
    :func:`normalise_rows` for the others (:func:`signal_matrix` is the one-session case)."""
    out = np.empty(values.shape, dtype="float64")
    for j, signal in enumerate(signals):
        column = values[:, :, j]
        out[:, :, j] = squash(column) if signal in prescaled else normalise_rows(column, method)
    return out


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
    return pd.DataFrame(
        _normalised(features, signals, method, prescaled),
        index=pd.Index(symbols.to_numpy(), name="symbol"),
        columns=list(signals),
        dtype="float64",
    )


def _normalised(
    features: pd.DataFrame,
    signals: tuple[str, ...],
    method: Literal["zscore", "rank"],
    prescaled: frozenset[str] = PRESCALED_SIGNALS,
) -> np.ndarray:
    """Names x ``signals``: :func:`signal_matrix`'s values (a column not numeric read as
    numbers, anything else NaN)."""
    missing = [c for c in signals if c not in features.columns]
    if missing:
        raise ValueError(f"features lack signal column(s) {missing}")
    raw = np.empty((1, len(features), len(signals)))
    for j, c in enumerate(signals):
        column = features[c]
        raw[0, :, j] = (
            column.to_numpy()
            if column.dtype == np.float64
            else pd.to_numeric(column, errors="coerce").astype("float64").to_numpy()
        )
    return normalise_signals(raw, signals, method, prescaled)[0]


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
    # signals x names, summed signal after signal (as a frame's row sums add its columns)
    contributions = np.zeros((len(SIGNALS), len(symbols)))
    if weighted:
        matrix = _normalised(features, tuple(weighted), method)
        at = [SIGNALS.index(c) for c in weighted]
        contributions[at] = matrix.T * w[weighted].to_numpy()[:, None]
    index = pd.Index(symbols.to_numpy(), name="symbol")
    score = pd.Series(contributions.sum(axis=0), index=index)
    vol = (
        pd.Series(np.nan, index=index)
        if volatility is None
        else pd.to_numeric(volatility, errors="coerce").reindex(index).astype("float64")
    )
    expected = grinold_expected_returns(score, vol, composite_ic) if weighted else score * 0.0
    blocks = {
        b: contributions[[SIGNALS.index(c) for c in cols]].sum(axis=0)
        for b, cols in SIGNAL_BLOCKS.items()
    }
    return pd.DataFrame(
        {
            "symbol": symbols.to_numpy(),
            "alpha_score": score.to_numpy(),
            **blocks,
            "macro": macro,
            "volatility": vol.to_numpy(),
            "expected_return": expected.to_numpy(dtype="float64"),
            "top_drivers": top_drivers(contributions.T, list(SIGNALS)),
        }
    )


def top_drivers(contributions: np.ndarray, names: list[str], k: int = TOP_DRIVERS) -> list[str]:
    """Per row, the ``k`` largest absolute contributions as ``"name +0.123; ..."`` (zeros
    left out)."""
    order = np.argsort(-np.abs(contributions), axis=1, kind="stable")[:, :k]
    largest = np.take_along_axis(contributions, order, axis=1).tolist()  # Python floats
    return [
        "; ".join(f"{names[j]} {v:+.3f}" for j, v in zip(idx, row, strict=True) if v != 0)
        for row, idx in zip(largest, order.tolist(), strict=True)
    ]
