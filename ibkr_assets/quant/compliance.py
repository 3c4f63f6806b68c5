"""The compliance gate: the risk officer's limits every target book must meet before any order.

Each check is independent — one failing (or unable to run for lack of data, which counts as a
failure: the gate is conservative) never stops the others — and returns a :class:`CheckResult`
with the measured value, the limit, by how much it was exceeded and the offending symbols or
sectors, so a recommendation report can say exactly what to fix:

* ``gross_exposure_change``: |gross(target) − gross(current)|, at most 1.0 by default;
* ``var_historical``: 1-day historical VaR at ``var_confidence`` from the scenarios, 3% of NAV;
* ``var_parametric``: 1-day Gaussian VaR at ``var_confidence`` from the covariance, 3% of NAV;
* ``concentration``: the largest |w_i|, 12%;
* ``liquidity``: the largest trade notional / average daily dollar volume, 10%;
* ``sector_exposure``: the largest sector gross weight Σ|w_i|, 40%.

VaR follows Jorion, *Value at Risk* (3rd ed., 2006); the liquidity limit reflects the
price-impact literature (Almgren & Chriss 2000): beyond about a tenth of a day's volume a trade
moves the price against itself. :func:`render_recommendation_markdown` writes the
recommendation-only report used when the gate blocks the ticket.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from ibkr_assets.quant.risk_metrics import (
    concentration,
    exposure,
    historical_var_cvar,
    liquidity_usage,
    parametric_var_cvar,
    portfolio_returns,
    sector_exposure,
)

GROSS_CHANGE = "gross_exposure_change"
VAR_HISTORICAL = "var_historical"
VAR_PARAMETRIC = "var_parametric"
CONCENTRATION = "concentration"
LIQUIDITY = "liquidity"
SECTOR_EXPOSURE = "sector_exposure"
CHECK_NAMES = (
    GROSS_CHANGE,
    VAR_HISTORICAL,
    VAR_PARAMETRIC,
    CONCENTRATION,
    LIQUIDITY,
    SECTOR_EXPOSURE,
)


class ComplianceLimits(BaseModel):
    """The gate's limits (field names as in ``DecideConfig``); fractions of NAV."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gross_change_max: float = Field(1.0, ge=0)
    var_confidence: float = Field(0.99, gt=0.5, lt=1)
    var_historical_max: float = Field(0.03, gt=0)
    var_parametric_max: float = Field(0.03, gt=0)
    concentration_max: float = Field(0.12, gt=0)
    liquidity_max_adv: float = Field(0.10, gt=0)
    sector_max: float = Field(0.40, gt=0)


@dataclass(frozen=True)
class CheckResult:
    """One check: passed or not, measured ``value`` vs ``limit``, ``excess = max(value −
    limit, 0)``, a human ``detail`` and the ``offenders`` (symbols or sectors)."""

    name: str
    passed: bool
    value: float
    limit: float
    excess: float
    detail: str
    offenders: list[str] = field(default_factory=list)


#: Slack of every comparison with a limit: weights that sum to exactly a limit in floating point.
TOLERANCE = 1e-12


@dataclass(frozen=True)
class _Measured:
    """What one check measured: the ``value`` held against its limit, a human ``detail``, and,
    for a check of the largest of many (symbols, sectors, trades), each one's measure
    (``by_item``, of which ``value`` is the largest): those over the limit are the offenders."""

    value: float
    detail: str
    by_item: pd.Series | None = None


def _judge(name: str, limit: float, measure: Callable[[], _Measured]) -> CheckResult:
    """Run one check against ``limit``; one that cannot run (an input missing) fails, saying
    why."""
    try:
        m = measure()
    except (ValueError, KeyError) as exc:
        return CheckResult(name, False, math.nan, limit, math.nan, f"not evaluated: {exc}")
    over = []
    if m.by_item is not None:
        over = [str(s) for s in m.by_item.index[m.by_item.to_numpy() > limit + TOLERANCE]]
    return CheckResult(
        name,
        bool(m.value <= limit + TOLERANCE),
        float(m.value),
        float(limit),
        float(max(m.value - limit, 0.0)),
        m.detail,
        sorted(over),
    )


def evaluate_compliance(
    target_weights: pd.Series,
    current_weights: pd.Series | None,
    scenarios: pd.DataFrame,
    cov: pd.DataFrame,
    limits: ComplianceLimits | None = None,
    *,
    sectors: pd.Series | None = None,
    adv: pd.Series | None = None,
    net_liquidation: float | None = None,
    trade_notional: pd.Series | None = None,
    mean: pd.Series | None = None,
) -> list[CheckResult]:
    """Run every check of the gate on ``target_weights`` (in :data:`CHECK_NAMES` order).

    ``scenarios`` are daily returns and ``cov`` (and ``mean``) daily, so VaR is one-day.
    Liquidity uses ``trade_notional`` if given, else ``|target − current| × net_liquidation``,
    against ``adv`` (average daily dollar volume). Missing inputs fail that check only.
    """
    lim = limits or ComplianceLimits()
    w = pd.Series(target_weights, dtype="float64")
    w0 = pd.Series({} if current_weights is None else current_weights, dtype="float64")
    conf = lim.var_confidence

    def gross_change() -> _Measured:
        g1, g0 = exposure(w).gross, exposure(w0).gross
        return _Measured(abs(g1 - g0), f"gross {g0:.2%} -> {g1:.2%}")

    def var_hist() -> _Measured:
        var, cvar = historical_var_cvar(portfolio_returns(scenarios, w), conf)
        return _Measured(
            var,
            f"{conf:.0%} 1-day historical VaR {var:.2%} (CVaR {cvar:.2%}) over "
            f"{len(scenarios)} scenarios",
        )

    def var_param() -> _Measured:
        var, _ = parametric_var_cvar(w, cov, conf, mean)
        return _Measured(var, f"{conf:.0%} 1-day Gaussian VaR {var:.2%}")

    def conc() -> _Measured:
        c = concentration(w)
        return _Measured(
            c.max_abs_weight,
            f"largest {c.max_symbol} {c.max_abs_weight:.2%}; effective names {c.effective_n:.1f}",
            w.abs(),
        )

    def liquidity() -> _Measured:
        if adv is None:
            raise ValueError("no ADV given")
        if trade_notional is not None:
            trades = pd.Series(trade_notional, dtype="float64")
        else:
            if net_liquidation is None:
                raise ValueError("neither trade notional nor net liquidation given")
            idx = w.index.union(w0.index)
            trades = (w.reindex(idx, fill_value=0.0) - w0.reindex(idx, fill_value=0.0)).abs()
            trades = trades[trades > 0] * net_liquidation
        usage = liquidity_usage(trades, adv)
        if usage.empty:
            return _Measured(0.0, "no trades")
        worst = usage.idxmax()
        return _Measured(
            float(usage.max()), f"largest trade {worst} = {usage.max():.2%} of ADV", usage
        )

    def sector() -> _Measured:
        if sectors is None:
            raise ValueError("no sectors given")
        sx = sector_exposure(w, sectors)
        if sx.empty:
            return _Measured(0.0, "no positions")
        top = sx.index[0]
        return _Measured(
            float(sx["gross"].iloc[0]),
            f"largest sector {top} {sx['gross'].iloc[0]:.2%}",
            sx["gross"],
        )

    bad = w.index[~np.isfinite(w.to_numpy())].tolist()
    if bad:
        raise ValueError(f"NaN or infinite target weight for {bad}")
    checks = [
        (GROSS_CHANGE, lim.gross_change_max, gross_change),
        (VAR_HISTORICAL, lim.var_historical_max, var_hist),
        (VAR_PARAMETRIC, lim.var_parametric_max, var_param),
        (CONCENTRATION, lim.concentration_max, conc),
        (LIQUIDITY, lim.liquidity_max_adv, liquidity),
        (SECTOR_EXPOSURE, lim.sector_max, sector),
    ]
    return [_judge(name, limit, measure) for name, limit, measure in checks]


def _fmt(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:.4f}"


def render_recommendation_markdown(
    partition: str,
    target_weights: pd.Series,
    results: Sequence[CheckResult],
    current_weights: pd.Series | None = None,
    top: int = 50,
) -> str:
    """The recommendation-only report: why no ticket, by how much, and the suggested targets."""
    failed = [r for r in results if not r.passed]
    lines = [f"# Recommendation only — {partition}", ""]
    if failed:
        lines += [
            f"The compliance gate **blocked the order ticket**: {len(failed)} of "
            f"{len(results)} checks failed. No orders were generated; the targets below are a "
            "recommendation for a human to review.",
            "",
            "## Failed checks",
            "",
            "| check | value | limit | excess | offenders | detail |",
            "|---|---:|---:|---:|---|---|",
        ]
        for r in failed:
            offenders = ", ".join(r.offenders) or "—"
            lines.append(
                f"| {r.name} | {_fmt(r.value)} | {_fmt(r.limit)} | {_fmt(r.excess)} | "
                f"{offenders} | {r.detail} |"
            )
    else:
        lines.append("Every compliance check passed.")
    lines += ["", "## All checks", "", "| check | passed | value | limit |", "|---|---|---:|---:|"]
    lines += [
        f"| {r.name} | {'yes' if r.passed else '**no**'} | {_fmt(r.value)} | {_fmt(r.limit)} |"
        for r in results
    ]
    w = pd.Series(target_weights, dtype="float64")
    w0 = pd.Series({} if current_weights is None else current_weights, dtype="float64")
    idx = w.index.union(w0.index)
    table = pd.DataFrame(
        {"current": w0.reindex(idx, fill_value=0.0), "target": w.reindex(idx, fill_value=0.0)}
    )
    table = table.assign(change=table["target"] - table["current"])
    table = table.loc[(table["target"] != 0) | (table["current"] != 0)]
    table = table.reindex(table["target"].abs().sort_values(ascending=False).index)
    lines += [
        "",
        f"## Recommended targets (top {min(top, len(table))} of {len(table)} by |weight|)",
        "",
        "| symbol | current | target | change |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {sym} | {row.current:.2%} | {row.target:.2%} | {row.change:+.2%} |"
        for sym, row in table.head(top).iterrows()
    ]
    e = exposure(w)
    lines += ["", f"Gross {e.gross:.2%}, net {e.net:.2%}, long {e.long:.2%}, short {e.short:.2%}."]
    return "\n".join(lines) + "\n"
