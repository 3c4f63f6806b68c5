"""Risk, trend and position size of one stock from its daily closes.

What a trader checks on a single name before acting (the MCP ``stock_analysis`` and
``position_size`` tools); volatility and maximum drawdown are :mod:`.performance`'s, ATR and RSI
:mod:`.technical`'s (Wilder's, TA-Lib).

* **Log returns** ``ln(P_t / P_{t−1})``; annualised volatility is their sample standard deviation
  × √252 (:func:`.performance.annualised_volatility`).
* **Beta** of daily simple returns against a benchmark's on the dates both have
  (:func:`.performance.beta`, the backtest's beta to SPY too).
* **Trailing return** over ``n`` sessions ``P_T / P_{T−n} − 1`` (simple, a fraction).
* **Trend** from the last close against the 50- and 200-session simple moving averages: "up"
  when ``close > SMA50 > SMA200``, "down" when ``close < SMA50 < SMA200``, else "sideways";
  with fewer than 200 sessions only ``close`` vs ``SMA50`` decides (up or down).
* **Fixed-fractional position size** (Van Tharp, *Trade Your Way to Financial Freedom*, ch. 12):
  ``shares = risk budget / stop distance`` so the loss at the stop is the budget, capped by
  ``available funds / price`` and rounded down to whole lots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from ibkr_assets.quant import performance


def _prices(prices: pd.Series | np.ndarray, what: str = "prices") -> np.ndarray:
    p = np.asarray(prices, dtype="float64")
    bad = np.flatnonzero(~np.isfinite(p) | (p <= 0))
    if bad.size:
        raise ValueError(f"{what} must be positive finite numbers; not at positions {bad[:5]}")
    return p


def log_returns(prices: pd.Series | np.ndarray) -> np.ndarray:
    """``ln(P_t / P_{t−1})`` of consecutive prices (one fewer than the prices)."""
    return np.diff(np.log(_prices(prices)))


def beta(prices: pd.Series, benchmark_prices: pd.Series) -> float:
    """Beta of daily simple returns against the benchmark's, on the dates both series have
    (index = date); NaN with fewer than 3 common returns or a flat benchmark."""
    both = pd.concat([prices, benchmark_prices], axis=1, join="inner").astype("float64")
    returns = both.pct_change().dropna()
    return performance.beta(returns.iloc[:, 0], returns.iloc[:, 1])


def trailing_return(prices: pd.Series | np.ndarray, periods: int) -> float:
    """``P_T / P_{T−periods} − 1``, a fraction; from the first price when the series holds
    ``periods`` prices or fewer."""
    if periods < 1:
        raise ValueError(f"periods must be >= 1, got {periods}")
    p = _prices(prices)
    if p.size == 0:
        raise ValueError("no prices")
    return float(p[-1] / p[max(-periods - 1, -p.size)] - 1.0)


TrendLabel = Literal["up", "down", "sideways"]


@dataclass(frozen=True)
class Trend:
    """The last close against its fast and slow simple moving averages (price units)."""

    sma_fast: float
    sma_slow: float | None
    label: TrendLabel


def trend(close: pd.Series | np.ndarray, fast: int = 50, slow: int = 200) -> Trend:
    """Simple moving averages of the last ``fast`` and ``slow`` closes and the trend they
    show (see the module docstring). ``sma_fast`` averages all closes when there are fewer
    than ``fast``; ``sma_slow`` is None when there are fewer than ``slow``."""
    if not 0 < fast < slow:
        raise ValueError(f"need 0 < fast < slow, got fast={fast}, slow={slow}")
    p = _prices(close, "closes")
    if p.size == 0:
        raise ValueError("no closes")
    last = float(p[-1])
    sma_fast = float(p[-fast:].mean())
    sma_slow = float(p[-slow:].mean()) if p.size >= slow else None
    label: TrendLabel
    if sma_slow is None:
        label = "up" if last > sma_fast else "down"
    elif last > sma_fast > sma_slow:
        label = "up"
    elif last < sma_fast < sma_slow:
        label = "down"
    else:
        label = "sideways"
    return Trend(sma_fast, sma_slow, label)


@dataclass(frozen=True)
class PositionSizing:
    """Shares to buy and which limit bound them."""

    shares: int
    limited_by: Literal["risk", "available_funds"]


def fixed_fractional_size(
    risk_budget: float,
    stop_distance: float,
    price: float,
    available_funds: float,
    lot: int = 1,
) -> PositionSizing:
    """Shares whose loss at the stop equals ``risk_budget`` (account currency), capped by
    ``available_funds / price`` (negative funds count as none) and rounded down to whole
    ``lot``s. ``stop_distance`` and ``price`` are per share, in the same currency."""
    if not (math.isfinite(stop_distance) and stop_distance > 0):
        raise ValueError(f"stop distance must be a positive price move, got {stop_distance}")
    if not (math.isfinite(price) and price > 0):
        raise ValueError(f"price must be positive, got {price}")
    if lot < 1:
        raise ValueError(f"lot must be >= 1 share, got {lot}")
    by_risk = max(risk_budget, 0.0) / stop_distance
    by_cash = max(available_funds, 0.0) / price
    shares = math.floor(min(by_risk, by_cash) / lot) * lot
    return PositionSizing(shares, "risk" if by_risk <= by_cash else "available_funds")
