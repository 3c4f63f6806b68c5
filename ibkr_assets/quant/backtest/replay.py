"""What a replay reads and what it knows each day: the window's data fetched once
(:class:`ReplayData`), the live settings it uses (:class:`ReplaySettings`), and each session's
inputs cut to what the live job knew at its run time (:func:`prepare_day`, :func:`prepare_days`,
in worker processes)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date
from multiprocessing import get_context
from typing import Literal

import numpy as np
import pandas as pd

from ibkr_assets.quant.alpha import AlphaWeights, compute_alpha_scores
from ibkr_assets.quant.backtest.fills import PAPER_PARTICIPATION
from ibkr_assets.quant.compliance import ComplianceLimits
from ibkr_assets.quant.decision import (
    close_panel,
)
from ibkr_assets.quant.features import FeatureInputs, assemble_feature_matrix
from ibkr_assets.quant.macro import latest_regime, macro_features
from ibkr_assets.quant.optimiser import OptimiserConfig
from ibkr_assets.quant.overlay import Rule
from ibkr_assets.quant.risk_model import RiskModel, build_risk_model
from ibkr_assets.quant.sentiment import split_headlines
from ibkr_assets.quant.technical import technical_history


@dataclass(frozen=True)
class ReplayData:
    """Everything a replay reads, fetched once for the window.

    ``universe``: symbol, conid, sector, industry, lot_size, adv (shares). ``bars``: long daily
    OHLCV (symbol, session, open, high, low, close, volume) from ``history_sessions`` before the
    first replayed session to the last. ``quotes``: each session's pre-open snapshot (the
    ``quotes`` asset's columns plus ``session``). ``statements``: the ``fundamentals`` asset's
    long statements, all filed before the last session. ``forward_eps``: session, symbol,
    forward_eps. ``headlines``: symbol, time (UTC), headline, polarity. ``macro``: the gauge
    closes, index session. ``sessions``: the replayed sessions; ``decision_times``: each one's
    run time (UTC); ``calendar``: every exchange session from the first bar to the last.
    ``watchlist``: the names every session's universe holds, the others of ``universe`` only
    the sessions they are movers (or held) in, as the daily job's ``universe`` asset adds them;
    None: every name is on the watch-list.
    """

    universe: pd.DataFrame
    bars: pd.DataFrame
    quotes: pd.DataFrame
    statements: pd.DataFrame
    forward_eps: pd.DataFrame
    headlines: pd.DataFrame
    macro: pd.DataFrame
    sessions: list[date]
    decision_times: list[pd.Timestamp]
    calendar: list[date]
    watchlist: list[str] | None = None


@dataclass(frozen=True)
class ReplaySettings:
    """The live job's settings the replay uses (``PipelineConfig`` and ``DecideConfig`` field
    names; ``even_lots`` on by default, as live), plus the book's starting capital and the paper
    exchange's ``participation`` share of the volume an order may take (None: no cap; see
    :mod:`~ibkr_assets.quant.backtest.fills`)."""

    optimiser: OptimiserConfig
    limits: ComplianceLimits
    rules: list[Rule]
    weights: AlphaWeights = field(default_factory=AlphaWeights)
    alpha_scale: float = 0.01
    scenario_sessions: int = 504
    history_sessions: int = 600
    macro_sessions: int = 260
    headline_hours: float = 24.0
    headlines_per_symbol: int = 50
    headline_history_days: int = 30
    min_notional: float = 500.0
    even_lots: bool = True
    limit_spread_fraction: float = 0.25
    order_type: Literal["LMT", "MKT"] = "LMT"
    mover_min_change_pct: float = 5.0
    mover_min_volume_ratio: float = 2.0
    scanner_codes: tuple[str, ...] = ("TOP_PERC_GAIN", "TOP_PERC_LOSE", "HOT_BY_VOLUME")
    scanner_limit: int = 50
    whatif_shrink: float = 0.8
    whatif_max_attempts: int = 5
    whatif_on_failure: Literal["drop", "keep"] = "drop"
    initial_capital: float = 1_000_000.0
    participation: float | None = PAPER_PARTICIPATION


@dataclass(frozen=True)
class DayInputs:
    """What the live job knows at a session's run time: the feature matrix, the macro
    adjustment, the alpha scores, the risk model, the pre-open quotes and the last day's
    headlines (for the overlay)."""

    session: date
    as_of: pd.Timestamp
    features: pd.DataFrame
    macro_adjustment: float
    alpha: pd.DataFrame
    model: RiskModel
    quotes: pd.DataFrame
    headlines: pd.DataFrame


# -- the day's inputs ---------------------------------------------------------------------------


class SessionWindow:
    """Index arithmetic on the data's session calendar."""

    def __init__(self, calendar: Sequence[date]) -> None:
        self.days = np.array([np.datetime64(d, "D") for d in calendar])

    def before(self, session: date, count: int) -> tuple[pd.Timestamp, pd.Timestamp]:
        """First and last of the ``count`` sessions strictly before ``session``."""
        i = int(np.searchsorted(self.days, np.datetime64(session, "D")))
        if i < count:
            raise ValueError(f"the data holds {i} sessions before {session}, {count} are needed")
        return pd.Timestamp(self.days[i - count]), pd.Timestamp(self.days[i - 1])


def technical_windows(data: ReplayData, settings: ReplaySettings) -> list[pd.DataFrame]:
    """The technical features of every replayed session (bars of its history window)."""
    window = SessionWindow(data.calendar)
    spans = [window.before(s, settings.history_sessions) for s in data.sessions]
    return technical_history(data.bars, spans)


def universe_closes(data: ReplayData) -> pd.DataFrame:
    """The wide close panel (sessions x symbols) of the universe's bars."""
    return close_panel(data.bars, sorted(data.universe["symbol"].astype(str)))


def prepare_day(
    data: ReplayData,
    i: int,
    technical: pd.DataFrame,
    settings: ReplaySettings,
    closes: pd.DataFrame | None = None,
) -> DayInputs:
    """The inputs of replayed session ``i`` as the live job would see them at its run time
    (``technical`` from :func:`technical_windows`; ``closes`` the wide close panel of the
    bars, computed here when not given)."""
    session, at = data.sessions[i], data.decision_times[i]
    window = SessionWindow(data.calendar)
    day = pd.Timestamp(session)
    quotes = data.quotes.loc[data.quotes["session"] == day].drop(columns="session")
    eps = data.forward_eps.loc[data.forward_eps["session"] == day, ["symbol", "forward_eps"]]
    # as the fundamentals asset: forward EPS only for names with a statement filed before
    filed = data.statements.loc[
        pd.to_datetime(data.statements["report_date"], cache=False) < day, "symbol"
    ]
    eps = eps.loc[eps["symbol"].isin(set(filed.astype(str)))]
    history_start = at - pd.Timedelta(hours=settings.headline_hours)
    history_start -= pd.Timedelta(days=settings.headline_history_days)
    news = data.headlines.loc[
        (data.headlines["time"] >= history_start) & (data.headlines["time"] < at)
    ]
    recent, older = split_headlines(
        news, at, settings.headline_hours, settings.headlines_per_symbol
    )
    news = pd.concat([older, recent], ignore_index=True)
    inputs = FeatureInputs(quotes, data.statements, eps, news if len(news) else None, data.universe)
    features = assemble_feature_matrix(
        technical, inputs, at, sentiment_history_days=settings.headline_history_days
    )
    first_macro, _ = window.before(session, settings.macro_sessions)
    macro = data.macro.loc[(data.macro.index >= first_macro) & (data.macro.index < day)]
    regime = latest_regime(macro_features(macro))
    alpha = compute_alpha_scores(features, settings.weights, regime.macro_adjustment)
    first, last = window.before(session, settings.history_sessions)
    panel = universe_closes(data) if closes is None else closes
    panel = panel.loc[(panel.index >= first) & (panel.index <= last)]
    panel = panel.dropna(how="all").dropna(axis=1, how="all")
    symbols = [s for s in alpha["symbol"] if s in panel.columns]
    model = build_risk_model(panel.loc[:, symbols], scenario_sessions=settings.scenario_sessions)
    return DayInputs(
        session=session,
        as_of=at,
        features=features,
        macro_adjustment=regime.macro_adjustment,
        alpha=alpha,
        model=model,
        quotes=quotes,
        headlines=recent,
    )


def day_universe(day: DayInputs, members: set[str], weights: AlphaWeights) -> DayInputs:
    """``day``'s inputs cut to the names of its universe ``members`` (watch-list, holdings and
    the day's movers): the feature matrix's rows, the alpha blended again over them (its
    cross-sectional scores are the universe's, as live) and the risk model's names. The
    feature matrix's cross-sectional columns (sector medians) and the risk model's shrinkage
    stay those of every name loaded: a modelling shortcut."""
    features = day.features.loc[day.features["symbol"].astype(str).isin(members)]
    alpha = compute_alpha_scores(features, weights, day.macro_adjustment)
    model = day.model.subset([s for s in day.model.symbols if s in members])
    return replace(day, features=features, alpha=alpha, model=model)


_WORKER: dict[str, object] = {}


def _init_worker(data: ReplayData, technical: list[pd.DataFrame], settings: ReplaySettings) -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # two cores: one solving in the parent, one preparing here
    _WORKER.update(data=data, technical=technical, settings=settings, closes=universe_closes(data))


def _prepare_in_worker(i: int) -> DayInputs:
    return prepare_day(
        _WORKER["data"],  # type: ignore[arg-type]
        i,
        _WORKER["technical"][i],  # type: ignore[index]
        _WORKER["settings"],  # type: ignore[arg-type]
        _WORKER["closes"],  # type: ignore[arg-type]
    )


def prepare_days(
    data: ReplayData, settings: ReplaySettings, workers: int = 1
) -> Iterator[DayInputs]:
    """Every replayed session's :class:`DayInputs`, in order; with ``workers`` > 0 they are
    computed in that many worker processes (started fresh, ``spawn``) while the caller consumes
    them, with 0 in this process."""
    technical = technical_windows(data, settings)
    if workers <= 0:
        closes = universe_closes(data)
        for i in range(len(data.sessions)):
            yield prepare_day(data, i, technical[i], settings, closes)
        return
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=get_context("spawn"),
        initializer=_init_worker,
        initargs=(data, technical, settings),
    ) as pool:
        yield from pool.map(_prepare_in_worker, range(len(data.sessions)))
