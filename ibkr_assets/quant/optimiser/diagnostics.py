"""What the optimiser says when it cannot work: its error and the checks that name the cause.

Every check raises :class:`OptimizationError` with a message naming what was wrong — the symbols
with NaN or infinite inputs, a covariance that is not positive semidefinite, a covariance in
other units than the scenarios (annualised beside daily returns), too few scenarios for the CVaR
level, limits that cannot hold together — before a solver runs, so a failure is never a bare
solver status. Limits are fractions of net asset value, as in
:class:`~ibkr_assets.quant.optimiser.OptimiserConfig`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from ibkr_assets.quant.optimiser.config import OptimiserConfig


class OptimizationError(Exception):
    """The optimiser could not produce an optimal portfolio; the message says why."""


def check_finite(values: np.ndarray, labels: list[str], what: str) -> None:
    """Raise unless every value is finite; names the labels of the bad entries (or columns)."""
    bad_cols = ~np.isfinite(values).all(axis=0) if values.ndim == 2 else ~np.isfinite(values)
    if bad_cols.any():
        named = [labels[i] for i in np.flatnonzero(bad_cols)]
        raise OptimizationError(f"NaN or infinite {what} for {named}")


MIN_TAIL_SCENARIOS = 3
"""Scenarios the CVaR tail must hold at least: CVaR averages the worst ``(1 - α)·S`` scenarios,
and with one or two it is a worst case, not an average. ``ceil(3 / (1 - α))`` is 60 scenarios at
95 % (the risk model's shortest history, ``min_history``, and the smallest ``scenario_sessions``
the decision config accepts) and 300 at 99 %; the default 504 sessions hold 25 at 95 %."""
UNITS_RATIO_BAND = (1 / 20, 20.0)
"""How far the covariance's diagonal may be from the scenarios' own variances (median ratio over
the names) before the two are taken to be in different units: a shrunk or factor covariance
stays well within 20x of the sample variance, an annualised one is 252x a daily one."""


def min_cvar_scenarios(cvar_alpha: float) -> int:
    """The fewest scenarios a CVaR at level ``cvar_alpha`` is estimated from
    (:data:`MIN_TAIL_SCENARIOS` in the tail)."""
    return math.ceil(MIN_TAIL_SCENARIOS / (1 - cvar_alpha) - 1e-9)


def check_scenario_count(n_scenarios: int, cvar_alpha: float) -> None:
    """Raise unless there are enough scenarios for a CVaR at level ``cvar_alpha``."""
    need = min_cvar_scenarios(cvar_alpha)
    if n_scenarios < need:
        raise OptimizationError(
            f"{n_scenarios} return scenarios are too few for CVaR at {cvar_alpha:.0%}: at least "
            f"{need} are needed ({MIN_TAIL_SCENARIOS} in the worst {1 - cvar_alpha:.0%}); pass "
            "a longer scenario history (risk model scenario_sessions) or a lower cvar_alpha"
        )


def check_same_units(variances: np.ndarray, scenarios: np.ndarray) -> None:
    """Raise when the covariance whose diagonal is ``variances`` and the return ``scenarios``
    (rows = scenarios) are in different units, e.g. an annualised covariance beside daily
    scenarios (ratio near 252).

    Compares the covariance's diagonal with each name's variance over the scenarios (median
    ratio over the names whose both are positive) against :data:`UNITS_RATIO_BAND`.
    """
    diag = np.asarray(variances, dtype="float64")
    var = scenarios.var(axis=0, ddof=1)
    both = (diag > 0) & (var > 0)
    if not both.any():
        return
    ratio = float(np.median(diag[both] / var[both]))
    low, high = UNITS_RATIO_BAND
    if not low <= ratio <= high:
        raise OptimizationError(
            f"the covariance's variances are {ratio:.3g}x the scenarios' own (median over "
            f"{int(both.sum())} names): the two are in different units (252x: an annualised "
            "covariance beside daily scenarios); pass both in daily units "
            "(RiskModel.daily_cov() with RiskModel.scenarios)"
        )


def check_psd(sigma: np.ndarray, eigenvalues: np.ndarray | None = None) -> None:
    """Raise unless ``sigma`` is positive semidefinite (to 1e-10 of its largest eigenvalue).

    ``eigenvalues``, ascending, when the caller already has them.
    """
    if eigenvalues is None:
        try:
            np.linalg.cholesky(sigma)
            return
        except np.linalg.LinAlgError:
            eigenvalues = np.linalg.eigvalsh(sigma)
    low, high = float(eigenvalues[0]), float(eigenvalues[-1])
    if low < -1e-10 * max(high, 1e-300):
        raise OptimizationError(
            f"covariance is not positive semidefinite (min eigenvalue {low:.3g})"
        )


def check_limits(
    cfg: OptimiserConfig,
    n_names: int,
    sector_caps: Mapping[str, float],
    sector_sizes: Mapping[str, int],
) -> None:
    """Name the limits that cannot hold together before the solver tries.

    ``sector_caps``/``sector_sizes``: each capped sector's cap and number of names.
    """
    if cfg.min_net is None:
        return  # w = 0 satisfies every other limit
    conflicts = []
    if cfg.min_net > cfg.max_net:
        conflicts.append(
            f"min_net {cfg.min_net:g} > 1 − cash_buffer {cfg.max_net:g} "
            f"(cash_buffer {cfg.cash_buffer:g})"
        )
    if cfg.min_net > cfg.max_gross:
        conflicts.append(f"min_net {cfg.min_net:g} > max_gross {cfg.max_gross:g}")
    if cfg.max_weight * n_names < cfg.min_net:
        conflicts.append(
            f"max_weight {cfg.max_weight:g} × {n_names} symbols = {cfg.max_weight * n_names:g} "
            f"< min_net {cfg.min_net:g}"
        )
    if sector_caps:
        room = 0.0
        for name, cap in sector_caps.items():
            room += min(cap, cfg.max_weight * sector_sizes[name])
        room += cfg.max_weight * (n_names - sum(sector_sizes.values()))
        if room < cfg.min_net:
            conflicts.append(
                f"sector caps {dict(sector_caps)} (with max_weight {cfg.max_weight:g}) allow a "
                f"net exposure of at most {room:g} < min_net {cfg.min_net:g}"
            )
    if conflicts:
        raise OptimizationError("infeasible limits: " + "; ".join(conflicts))


def limits_text(cfg: OptimiserConfig, sector_caps: Mapping[str, float]) -> str:
    """The limits in force, for a solver failure's message."""
    parts = [
        f"max_gross {cfg.max_gross:g}",
        f"max_weight {cfg.max_weight:g}",
        f"net <= {cfg.max_net:g}",
        f"long_only {cfg.long_only}",
    ]
    if cfg.min_net is not None:
        parts.append(f"min_net {cfg.min_net:g}")
    if sector_caps:
        parts.append(f"sector caps {dict(sector_caps)}")
    return ", ".join(parts)
