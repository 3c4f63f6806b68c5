"""Alpha score: one number in [-1, 1] per symbol from the technical, fundamental, sentiment and
macro blocks, with the signals that drove it.

1. **Normalise each signal across the universe** on the day: a robust z-score (median and
   1.4826 x median absolute deviation, falling back to the standard deviation when more than
   half the names share one value, as with the 0/1 flags), squashed with ``tanh(z / 2)`` so
   one outlier cannot dominate (z = 1, 2, 3 map to 0.46, 0.76, 0.91). ``method="rank"`` uses
   centred percentile ranks instead. A missing value is neutral (0). Signals that are
   already z-scores on their own scale (:data:`PRESCALED_SIGNALS`: the headline z-score, which
   is 0 for the many names without news) skip the cross-sectional step and map as
   ``tanh(z / 2)``; standardising a mostly-zero column again would blow up the few non-zeros.
   The sign in
   :data:`DEFAULT_SIGNALS` makes "higher is better" for every signal (a cheap forward P/E
   relative to the sector and low volatility score positively).
2. **Blocks** are the signed, weighted means of their normalised signals, so each is in
   [-1, 1]: technical (trend, breakout, RSI mean reversion, MACD, 12-1 momentum, low
   volatility), fundamental (Piotroski F-score, forward P/E vs sector, revenue growth > 15%),
   sentiment (headline polarity z-score vs own history).
3. **Blend**: ``alpha = (w_t T + w_f F + w_s S + w_m M) / (w_t + w_f + w_s + w_m)`` with
   :class:`AlphaWeights` (default 0.4 / 0.3 / 0.2 / 0.1). ``M`` is the macro adjustment in
   [-1, 1] (:mod:`ibkr_assets.quant.macro`), the same for every name: in a risk-off regime every
   score is pulled down, so the optimiser holds less; it does not change the ranking.
4. **Drivers**: alpha is exactly the sum of per-signal contributions
   (block weight x signal weight x normalised value); ``top_drivers`` names the
   :data:`TOP_DRIVERS` (five) with the largest absolute contribution, e.g.
   ``"mom_12_1 +0.081; piotroski +0.060; macro -0.030; ..."`` (the decision journal keeps them).

The function is pure: given the features as of a date and that date's macro adjustment it
returns that date's scores, so the weekly backtest replays it on history unchanged.
Multi-factor blending of this kind follows Grinold & Kahn (2000), *Active Portfolio
Management*, ch. 10-11 ("signal to alpha": standardise, then weight).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

BLOCKS = ("technical", "fundamental", "sentiment")
# block -> {feature column: signed weight}
DEFAULT_SIGNALS: dict[str, dict[str, float]] = {
    "technical": {
        "ma_signal": 1.0,
        "ma_cross": 0.5,
        "atr_breakout": 0.5,
        "rsi_signal": 1.0,
        "macd_hist_pct": 0.5,
        "mom_12_1": 1.0,
        "vol_20d": -0.5,
    },
    "fundamental": {
        "piotroski": 1.0,
        "forward_pe_rel_sector": -1.0,
        "revenue_growth_flag": 0.5,
    },
    "sentiment": {"sentiment_z": 1.0},
}
PRESCALED_SIGNALS = frozenset({"sentiment_z"})
OUTPUT_COLUMNS = ("symbol", "alpha_score", *BLOCKS, "macro", "top_drivers")
#: How many of a name's largest contributions ``top_drivers`` names.
TOP_DRIVERS = 5


class AlphaWeights(BaseModel):
    """Weights of the blocks in the blend (non-negative, not all zero; normalised to sum 1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    technical: float = Field(0.4, ge=0)
    fundamental: float = Field(0.3, ge=0)
    sentiment: float = Field(0.2, ge=0)
    macro: float = Field(0.1, ge=0)

    @model_validator(mode="after")
    def _not_all_zero(self) -> AlphaWeights:
        if self.total <= 0:
            raise ValueError("alpha weights are all zero")
        return self

    @property
    def total(self) -> float:
        return self.technical + self.fundamental + self.sentiment + self.macro


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


def compute_alpha_scores(
    features: pd.DataFrame,
    weights: AlphaWeights | None = None,
    macro_adjustment: float = 0.0,
    signals: Mapping[str, Mapping[str, float]] | None = None,
    method: Literal["zscore", "rank"] = "zscore",
    prescaled: frozenset[str] = PRESCALED_SIGNALS,
) -> pd.DataFrame:
    """Score every symbol of ``features`` (``symbol`` column or index, one row each).

    Returns :data:`OUTPUT_COLUMNS` in the input order: ``alpha_score`` and the ``technical``,
    ``fundamental``, ``sentiment`` blocks in [-1, 1], ``macro`` (the adjustment, NaN treated as
    0 = no view) and ``top_drivers``. A signal column missing for a block with positive weight
    is an error naming it.
    """
    w = weights or AlphaWeights()
    spec = {b: dict((signals or DEFAULT_SIGNALS).get(b, {})) for b in BLOCKS}
    symbols = (
        features["symbol"] if "symbol" in features.columns else features.index.to_series()
    ).astype(str)
    dupes = symbols[symbols.duplicated()].unique().tolist()
    if dupes:
        raise ValueError(f"features have duplicate symbols {dupes[:10]}")
    missing = [
        col for b in BLOCKS if getattr(w, b) > 0 for col in spec[b] if col not in features.columns
    ]
    if missing:
        raise ValueError(f"features lack signal column(s) {missing}")
    macro = 0.0 if macro_adjustment is None or np.isnan(macro_adjustment) else macro_adjustment
    if not -1.0 <= macro <= 1.0:
        raise ValueError(f"macro_adjustment {macro_adjustment} is outside [-1, 1]")
    frame = features.reset_index(drop=True)
    names: list[str] = []
    contributions: list[np.ndarray] = []
    blocks: dict[str, np.ndarray] = {}
    for block in BLOCKS:
        cols = {c: s for c, s in spec[block].items() if c in frame.columns}
        norm = sum(abs(s) for s in cols.values())
        parts = {
            c: s / norm * (squash(frame[c]) if c in prescaled else normalise(frame[c], method))
            for c, s in cols.items()
        }
        blocks[block] = sum(parts.values()) if parts else np.zeros(len(frame))
        for c, part in parts.items():
            names.append(c)
            contributions.append(getattr(w, block) / w.total * part)
    names.append("macro")
    contributions.append(np.full(len(frame), w.macro / w.total * macro))
    matrix = np.column_stack(contributions)
    return pd.DataFrame(
        {
            "symbol": symbols.to_numpy(),
            "alpha_score": matrix.sum(axis=1),
            **{b: np.asarray(v, dtype="float64") for b, v in blocks.items()},
            "macro": macro,
            "top_drivers": top_drivers(matrix, names),
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
