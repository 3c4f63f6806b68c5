"""Calibration of the blend weights on the first part of a window, checked on the rest."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ibkr_assets.quant.alpha import AlphaWeights
from ibkr_assets.quant.backtest.book import simulate
from ibkr_assets.quant.backtest.replay import DayInputs, ReplayData, ReplaySettings
from ibkr_assets.quant.backtest.trading import Execution

# -- calibration --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """The outcome of :func:`calibrate`: the configured and the best training weights, the
    training Sharpe of every candidate, the held-out Sharpe of both, and whether the tuned
    weights are kept."""

    configured: AlphaWeights
    tuned: AlphaWeights
    train_sharpe: dict[str, float]
    held_out_sharpe_configured: float
    held_out_sharpe_tuned: float
    kept: bool
    train_sessions: int
    held_out_sessions: int

    @property
    def decision(self) -> str:
        """``kept`` (the tuned weights beat the configured ones on the held-out sessions) or
        ``rejected``."""
        return "kept" if self.kept else "rejected"


def candidate_weights(base: AlphaWeights, tilt: float = 2.0) -> dict[str, AlphaWeights]:
    """The configured weights and, for each block, the same with that block ``tilt`` times
    heavier (a coarse grid that keeps every block in the blend)."""
    out = {"configured": base}
    for block in ("technical", "fundamental", "sentiment", "macro"):
        value = getattr(base, block)
        if value > 0:
            out[f"{block} x{tilt:g}"] = base.model_copy(update={block: value * tilt})
    return out


def calibrate(
    days: Sequence[DayInputs],
    data: ReplayData,
    settings: ReplaySettings,
    execution: Execution,
    train_fraction: float = 2 / 3,
    candidates: dict[str, AlphaWeights] | None = None,
) -> Calibration:
    """Tune the blend weights on the first ``train_fraction`` of ``days`` (best training
    Sharpe among ``candidates``, default :func:`candidate_weights`) and keep them only if the
    held-out rest has a higher Sharpe with them than with the configured weights."""
    split = round(len(days) * train_fraction)
    if split < 2 or len(days) - split < 2:
        raise ValueError(f"{len(days)} sessions are too few to split for calibration")
    grid = candidates or candidate_weights(settings.weights)
    train, test = days[:split], days[split:]
    sharpe = {
        name: simulate(train, data, settings, execution, weights=w).summary.sharpe
        for name, w in grid.items()
    }
    best = max(sharpe, key=lambda n: -math.inf if math.isnan(sharpe[n]) else sharpe[n])
    held_configured = simulate(test, data, settings, execution).summary.sharpe
    held_tuned = (
        held_configured
        if grid[best] == settings.weights
        else simulate(test, data, settings, execution, weights=grid[best]).summary.sharpe
    )
    return Calibration(
        configured=settings.weights,
        tuned=grid[best],
        train_sharpe=sharpe,
        held_out_sharpe_configured=held_configured,
        held_out_sharpe_tuned=held_tuned,
        kept=grid[best] != settings.weights and held_tuned > held_configured,
        train_sessions=len(train),
        held_out_sessions=len(test),
    )
