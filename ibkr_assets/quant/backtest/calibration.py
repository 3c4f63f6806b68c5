"""Walk-forward calibration of how the signals' evidence is read (window, |t| threshold,
shrinkage), kept only when the improvement out of sample is significant.

Now that the signal weights come from the evidence, what is left to calibrate is how the
evidence is read (:class:`~ibkr_assets.quant.evidence.EvidenceSettings`).
:func:`calibrate`:

1. replays the whole window once per candidate (:func:`candidate_evidence`: the configured
   settings and a few neighbours), each from cash with the book carried through; the replays
   are independent, so the caller's ``map_fn`` may run them elsewhere (the assets layer passes
   a Dask cluster's map; the default is the builtin ``map``, here, one after the other);
2. cuts the window into rolling folds: each test block of ``fold_sessions`` (63, a quarter)
   follows ``train_sessions`` (252, a year) of training; on each fold the candidate with the
   best training Sharpe is chosen, and its daily net returns on the test block are paired
   with the configured settings' on the same sessions (the chosen candidate's book is its own
   continuous replay: switching costs at a fold's start are left out);
3. tests the mean of the out-of-sample daily differences with a Newey–West t-statistic
   (:func:`~ibkr_assets.quant.evidence.newey_west_t`) and keeps the candidate the last
   training year chooses only when ``t >= t_required`` (default 2) and it differs from the
   configured settings.

It needs ``min_sessions`` (504, about 24 months) of replay: with fewer the test blocks are too
short to tell a better reading from luck (one standard error of an annual Sharpe over a
quarter is about 2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import pandas as pd

from ibkr_assets.quant.backtest.book import BacktestResult, simulate
from ibkr_assets.quant.backtest.replay import DayInputs, ReplayData, ReplaySettings
from ibkr_assets.quant.backtest.trading import Execution
from ibkr_assets.quant.evidence import EvidenceSettings, ICPanel, newey_west
from ibkr_assets.quant.parallel import MapFn
from ibkr_assets.quant.performance import sharpe_ratio

#: About 24 months of sessions: the shortest replay a calibration accepts by default.
MIN_SESSIONS = 504


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: its training and test sessions (first, last), the candidate the
    training chose and the mean daily difference (chosen - configured) on the test block."""

    train: tuple[str, str]
    test: tuple[str, str]
    chosen: str
    mean_difference: float


@dataclass(frozen=True)
class Calibration:
    """The outcome of :func:`calibrate`: the configured settings and the candidate the last
    training year chooses (``tuned``, named ``candidate``), each candidate's Sharpe over the
    whole window (``sharpe``, the trials behind the deflated Sharpe), the folds, the mean
    out-of-sample daily difference (fraction) with its Newey–West standard error and t, the
    sessions tested and whether the candidate is kept."""

    configured: EvidenceSettings
    tuned: EvidenceSettings
    candidate: str
    sharpe: dict[str, float]
    folds: list[Fold]
    mean_difference: float
    standard_error: float
    t_stat: float
    t_required: float
    test_sessions: int
    kept: bool

    @property
    def decision(self) -> str:
        """``kept`` (significantly better out of sample) or ``rejected``."""
        return "kept" if self.kept else "rejected"


def candidate_evidence(base: EvidenceSettings) -> dict[str, EvidenceSettings]:
    """The configured reading and its neighbours: half and twice the window, a looser and a
    stricter ``|t|`` threshold, half and twice the prior's spread (less and more trust in a
    measured IC)."""
    return {
        "configured": base,
        "sessions x0.5": replace(base, sessions=max(base.sessions // 2, 20)),
        "sessions x2": replace(base, sessions=base.sessions * 2),
        "t_threshold -0.5": replace(base, t_threshold=max(base.t_threshold - 0.5, 0.0)),
        "t_threshold +1": replace(base, t_threshold=base.t_threshold + 1.0),
        "prior_sd x0.5": replace(base, prior_sd=base.prior_sd / 2),
        "prior_sd x2": replace(base, prior_sd=base.prior_sd * 2),
    }


def candidate_replay(
    days: Sequence[DayInputs],
    data: ReplayData,
    settings: ReplaySettings,
    execution: Execution,
    panel: ICPanel,
    reading: EvidenceSettings,
) -> BacktestResult:
    """The replay of ``days`` from cash with the evidence read by ``reading`` (one candidate of
    :func:`calibrate`; independent of every other candidate's)."""
    return simulate(days, data, settings, execution, evidence=reading, panel=panel)


def _sharpe(returns: pd.Series) -> float:
    value = sharpe_ratio(returns) if len(returns) > 1 else math.nan
    return -math.inf if math.isnan(value) else value


def calibrate(
    days: Sequence[DayInputs],
    data: ReplayData,
    settings: ReplaySettings,
    execution: Execution,
    panel: ICPanel,
    candidates: dict[str, EvidenceSettings] | None = None,
    train_sessions: int = 252,
    fold_sessions: int = 63,
    min_sessions: int = MIN_SESSIONS,
    t_required: float = 2.0,
    map_fn: MapFn = map,
) -> Calibration:
    """Walk-forward calibration of the evidence reading over ``days`` (see the module
    docstring); ``panel`` is :func:`~.evidence_panel.signal_panel`. The candidates'
    replays (:func:`candidate_replay`, one per reading) run through ``map_fn``, which must
    yield their results in the order of the readings (the builtin ``map``: here, in turn)."""
    if len(days) < max(min_sessions, train_sessions + fold_sessions):
        raise ValueError(
            f"{len(days)} sessions are too few to calibrate: walk-forward needs at least "
            f"{max(min_sessions, train_sessions + fold_sessions)} (about 24 months); replay "
            "a longer window (months >= 24)"
        )
    grid = candidates or candidate_evidence(settings.evidence)
    if "configured" not in grid or grid["configured"] != settings.evidence:
        raise ValueError("the candidates must include the configured settings as 'configured'")
    replay = partial(candidate_replay, days, data, settings, execution, panel)
    results = list(map_fn(replay, grid.values()))
    returns = {name: r.daily["net_return"] for name, r in zip(grid, results, strict=True)}
    base = returns["configured"]
    index = base.index
    folds, differences = [], []
    for start in range(train_sessions, len(index), fold_sessions):
        train = index[start - train_sessions : start]
        test = index[start : start + fold_sessions]
        chosen = max(grid, key=lambda n: _sharpe(returns[n].loc[train]))
        diff = returns[chosen].loc[test] - base.loc[test]
        differences.append(diff)
        folds.append(
            Fold(
                train=(str(train[0].date()), str(train[-1].date())),
                test=(str(test[0].date()), str(test[-1].date())),
                chosen=chosen,
                mean_difference=float(diff.mean()),
            )
        )
    tested = pd.concat(differences).to_numpy()
    mean, se = newey_west(tested)
    t = mean / se if se > 0 else (0.0 if mean == 0 else math.nan)
    last = index[-train_sessions:]
    final = max(grid, key=lambda n: _sharpe(returns[n].loc[last]))
    kept = final != "configured" and bool(np.isfinite(t) and t >= t_required)
    return Calibration(
        configured=settings.evidence,
        tuned=grid[final],
        candidate=final,
        sharpe={name: sharpe_ratio(r) for name, r in returns.items()},
        folds=folds,
        mean_difference=mean,
        standard_error=se,
        t_stat=t,
        t_required=t_required,
        test_sessions=len(tested),
        kept=kept,
    )
