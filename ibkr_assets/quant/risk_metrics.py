"""Risk metrics of a target book: value at risk, expected shortfall, exposures, concentration,
sector exposure and liquidity.

All numbers are fractions of net liquidation value (NAV) over one day, losses positive:

* **Historical VaR / CVaR** replay the risk model's daily return scenarios against the weights.
  With losses ``L_s = −r_s·w`` over ``S`` scenarios, ``VaR_α`` is the smallest loss ``ζ`` with
  ``P(L ≤ ζ) ≥ α`` (the ``⌈αS⌉``-th smallest loss) and
  ``CVaR_α = ζ + Σ_s (L_s − ζ)⁺ / ((1 − α) S)``, the Rockafellar & Uryasev (2000) form, which
  is the mean of the worst ``(1 − α)`` tail and is exactly what the optimiser minimises.
* **Parametric (Gaussian) VaR**: ``z_α·√(w'Σw) − μ·w`` with ``z_α`` the normal quantile (Jorion,
  *Value at Risk*, 3rd ed., ch. 5); ``cvar`` adds ``σ·φ(z_α)/(1 − α)``. Fat tails make the
  historical figure the larger one in a crash window — compare both.
* **Exposure**: gross ``Σ|w|``, net ``Σw``, long and short sides.
* **Concentration**: the largest ``|w_i|`` and the five largest summed, as shares of NAV (the
  compliance gate's and the MCP tools' one measure; a value book is divided by its net
  liquidation), Herfindahl ``Σ(|w_i| / Σ|w|)²`` of the gross-normalised book and the effective
  number of names ``1/HHI``.
* **Sector exposure**: net and gross weight per sector.
* **Liquidity**: each trade's notional as a share of the name's average daily dollar volume
  (ADV); above ~10% a trade moves the price against you (Almgren & Chriss 2000).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm


def _check_confidence(confidence: float) -> None:
    if not 0.5 < confidence < 1:
        raise ValueError(f"confidence must be in (0.5, 1), got {confidence}")


def _finite_weights(weights: pd.Series, what: str = "weights") -> pd.Series:
    w = pd.Series(weights, dtype="float64")
    bad = w.index[~np.isfinite(w.to_numpy())].tolist()
    if bad:
        raise ValueError(f"NaN or infinite {what} for {bad}")
    return w


def portfolio_returns(scenarios: pd.DataFrame, weights: pd.Series) -> pd.Series:
    """Return of the book in each scenario (``scenarios @ w``; symbols aligned by name).

    A held symbol missing from the scenarios is an error naming it; scenario columns without a
    weight count as 0.
    """
    w = _finite_weights(weights)
    held = w[w != 0]
    missing = [s for s in held.index if s not in scenarios.columns]
    if missing:
        raise ValueError(f"no return scenarios for held symbols {missing}")
    block = scenarios.loc[:, held.index].astype("float64")
    if block.isna().any().any():
        bad = block.columns[block.isna().any()].tolist()
        raise ValueError(f"NaN return scenarios for {bad}")
    return pd.Series(block.to_numpy() @ held.to_numpy(), index=scenarios.index, name="return")


def historical_var_cvar(
    returns: pd.Series | np.ndarray, confidence: float = 0.95
) -> tuple[float, float]:
    """``(VaR, CVaR)`` at ``confidence`` of a sample of portfolio returns (losses positive)."""
    _check_confidence(confidence)
    losses = -np.asarray(returns, dtype="float64")
    if losses.size == 0 or not np.isfinite(losses).all():
        raise ValueError("returns must be a non-empty sample of finite numbers")
    ordered = np.sort(losses)
    k = math.ceil(confidence * losses.size - 1e-9)
    var = float(ordered[k - 1])
    cvar = var + float(np.maximum(losses - var, 0.0).sum()) / ((1 - confidence) * losses.size)
    return var, cvar


def parametric_var_cvar(
    weights: pd.Series,
    cov: pd.DataFrame,
    confidence: float = 0.95,
    mean: pd.Series | None = None,
) -> tuple[float, float]:
    """Gaussian ``(VaR, CVaR)``: ``z·σ − μ`` and ``σ·φ(z)/(1 − α) − μ`` with ``σ = √(w'Σw)``.

    ``cov`` and ``mean`` in the horizon's units (daily for a one-day VaR).
    """
    _check_confidence(confidence)
    w = _finite_weights(weights)
    missing = [s for s in w.index[w != 0] if s not in cov.index]
    if missing:
        raise ValueError(f"no covariance for held symbols {missing}")
    held = w[w != 0]
    h = held.to_numpy()  # np.dot, as pandas' ``held @ cov @ held``
    variance = np.dot(np.dot(h, cov.loc[held.index, held.index].to_numpy()), h)
    sigma = math.sqrt(max(float(variance), 0.0))
    mu = 0.0 if mean is None else float(mean.reindex(held.index).fillna(0.0) @ held)
    z, density = _normal_quantile(confidence)
    return z * sigma - mu, sigma * density / (1 - confidence) - mu


@functools.cache
def _normal_quantile(confidence: float) -> tuple[float, float]:
    """The standard normal's quantile ``z_α`` at ``confidence`` and its density ``φ(z_α)``."""
    z = float(norm.ppf(confidence))
    return z, float(norm.pdf(z))


@dataclass(frozen=True)
class Exposure:
    """Gross, net, long and short exposure as fractions of NAV."""

    gross: float
    net: float
    long: float
    short: float


def exposure(weights: pd.Series) -> Exposure:
    """Gross ``Σ|w|``, net ``Σw``, long ``Σw⁺`` and short ``Σw⁻`` (positive number)."""
    w = _finite_weights(weights).to_numpy()
    return Exposure(
        gross=float(np.abs(w).sum()),
        net=float(w.sum()),
        long=float(w[w > 0].sum()),
        short=float(-w[w < 0].sum()),
    )


@dataclass(frozen=True)
class Concentration:
    """The largest position ``|w_i|`` and the ``top`` largest summed, as fractions of NAV; the
    largest's symbol; the Herfindahl index of ``|w|/gross`` and the effective number of names."""

    max_abs_weight: float
    max_symbol: str | None
    top_weight: float
    hhi: float
    effective_n: float


def concentration(weights: pd.Series, top: int = 5, nav: float = 1.0) -> Concentration:
    """Largest ``|w_i| / nav`` (and its symbol), the ``top`` largest ``|w_i|`` summed over
    ``nav``, ``HHI = Σ(|w_i|/Σ|w|)²`` and ``1/HHI``. ``weights`` are fractions of NAV (``nav``
    1, the default) or values in a currency with ``nav`` the net liquidation in the same one;
    all zeros when the book is empty."""
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    if not (math.isfinite(nav) and nav > 0):
        raise ValueError(f"nav must be a positive net liquidation, got {nav}")
    w = _finite_weights(weights).abs()
    gross = float(w.sum())
    if gross == 0:
        return Concentration(0.0, None, 0.0, 0.0, 0.0)
    hhi = float(((w / gross) ** 2).sum())
    largest = np.sort(w.to_numpy())[::-1]
    return Concentration(
        float(largest[0]) / nav,
        str(w.idxmax()),
        float(largest[:top].sum()) / nav,
        hhi,
        1.0 / hhi,
    )


def sector_exposure(weights: pd.Series, sectors: pd.Series) -> pd.DataFrame:
    """Net and gross weight per sector (index = sector, sorted by gross descending).

    A held symbol without a sector is an error naming it.
    """
    w = _finite_weights(weights)
    held = w[w != 0]
    sec = sectors.reindex(held.index)
    missing = sec.index[sec.isna()].tolist()
    if missing:
        raise ValueError(f"no sector for held symbols {missing}")
    codes, names = pd.factorize(sec.astype(str), sort=True)
    w = held.to_numpy()
    net, gross = (_group_sums(codes, x, len(names)) for x in (w, np.abs(w)))
    out = pd.DataFrame({"net": net, "gross": gross}, index=names.rename("sector"))
    return out.sort_values("gross", ascending=False)


def _group_sums(codes: np.ndarray, values: np.ndarray, groups: int) -> np.ndarray:
    """The sum of ``values`` by group ``codes`` (0 .. groups-1), Kahan-compensated in row order
    as pandas' groupby ``sum`` adds: the same sums to the bit without building its frame (a
    book's few held names make the Python loop the cheaper way)."""
    total, compensation = [0.0] * groups, [0.0] * groups
    for g, x in zip(codes.tolist(), values.tolist(), strict=True):
        y = x - compensation[g]
        t = total[g] + y
        compensation[g] = t - total[g] - y
        if compensation[g] != compensation[g]:  # inf - inf: pandas resets it
            compensation[g] = 0.0
        total[g] = t
    return np.array(total, dtype="float64")


def liquidity_usage(trade_notional: pd.Series, adv_notional: pd.Series) -> pd.Series:
    """``|trade notional| / ADV`` per symbol (both in dollars); zero ADV gives ``inf``.

    A traded symbol with a missing or negative ADV is an error naming it.
    """
    trades = _finite_weights(trade_notional, "trade notional").abs()
    adv = pd.Series(adv_notional, dtype="float64").reindex(trades.index)
    bad = adv.index[adv.isna() | (adv < 0)].tolist()
    if bad:
        raise ValueError(f"missing or negative ADV for traded symbols {bad}")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(trades.to_numpy() == 0, 0.0, trades.to_numpy() / adv.to_numpy())
    return pd.Series(ratio, index=trades.index, name="adv_share")


def risk_summary(
    weights: pd.Series,
    scenarios: pd.DataFrame,
    cov: pd.DataFrame,
    sectors: pd.Series | None = None,
    mean: pd.Series | None = None,
    levels: tuple[float, ...] = (0.95, 0.99),
) -> dict[str, float | str | None]:
    """Flat dict for a risk report: historical and Gaussian VaR/CVaR at each level (keys like
    ``var_hist_95``, ``cvar_param_99``), exposures, concentration and the largest sector.

    ``scenarios``, ``cov`` and ``mean`` in daily units give one-day figures.
    """
    returns = portfolio_returns(scenarios, weights)
    out: dict[str, float | str | None] = {}
    for level in levels:
        tag = f"{round(level * 100):d}"
        out[f"var_hist_{tag}"], out[f"cvar_hist_{tag}"] = historical_var_cvar(returns, level)
        out[f"var_param_{tag}"], out[f"cvar_param_{tag}"] = parametric_var_cvar(
            weights, cov, level, mean
        )
    e = exposure(weights)
    c = concentration(weights)
    out |= {"gross": e.gross, "net": e.net, "long": e.long, "short": e.short}
    out |= {"max_weight": c.max_abs_weight, "max_weight_symbol": c.max_symbol}
    out |= {"hhi": c.hhi, "effective_n": c.effective_n}
    if sectors is not None:
        sx = sector_exposure(weights, sectors)
        out["top_sector"] = None if sx.empty else str(sx.index[0])
        out["top_sector_gross"] = 0.0 if sx.empty else float(sx["gross"].iloc[0])
    return out
