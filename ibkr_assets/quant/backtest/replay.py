"""What a replay reads and what it knows each day: the window's data fetched once
(:class:`ReplayData`), the live settings it uses (:class:`ReplaySettings`), and each session's
inputs cut to what the live job knew at its run time (:func:`prepare_day`; every session's in
worker processes: :mod:`~ibkr_assets.quant.backtest.day_workers`). The signals' daily evidence
behind them, read by :func:`~ibkr_assets.quant.evidence.evidence_at` before each day, is
:func:`~ibkr_assets.quant.backtest.evidence_panel.signal_panel`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from functools import cached_property
from typing import Literal

import numpy as np
import pandas as pd

from ibkr_assets.quant.alpha import compute_alpha_scores
from ibkr_assets.quant.backtest.fills import PAPER_PARTICIPATION
from ibkr_assets.quant.compliance import ComplianceLimits
from ibkr_assets.quant.decision import close_panel, cost_inputs
from ibkr_assets.quant.evidence import (
    Evidence,
    EvidenceSettings,
    ICPanel,
    daily_volatility,
    evidence_at,
)
from ibkr_assets.quant.features import (
    FeatureInputs,
    KnownParts,
    as_of_timestamp,
    assemble_feature_matrix,
    statement_rows_known,
)
from ibkr_assets.quant.fundamental import statement_history, statement_signals
from ibkr_assets.quant.macro import MacroRegime, window_regimes
from ibkr_assets.quant.optimiser import OptimiserConfig
from ibkr_assets.quant.overlay import Rule
from ibkr_assets.quant.risk_model import RiskModel, build_risk_model
from ibkr_assets.quant.sentiment import (
    SENTIMENT_COLUMNS,
    HeadlineTape,
    polarity_zscore_panel,
    split_headlines,
)
from ibkr_assets.quant.social import SOCIAL_COLUMNS, known_row, known_rows, social_panel
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
    ``warmup`` (with ``warmup_times``, their run times): sessions before the first replayed one
    whose signal evidence is measured too, so the first replayed day has a year of it; the
    bars, statements and headlines must reach back far enough for their features.
    ``watchlist``: the names every session's universe holds, the others of ``universe`` only
    the sessions they are movers (or held) in, as the daily job's ``universe`` asset adds them;
    None: every name is on the watch-list. ``social``: the social-chatter counts (symbol,
    session, posts, mentions; NaN where not counted) from
    :func:`~ibkr_assets.quant.social.lookback` sessions before the first evidence session;
    None: no chatter, the social scores are NaN.
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
    warmup: list[date] = field(default_factory=list)
    warmup_times: list[pd.Timestamp] = field(default_factory=list)
    social: pd.DataFrame | None = None

    @cached_property
    def social_scores(self) -> dict[str, pd.DataFrame]:
        """Every session's social columns (:func:`~ibkr_assets.quant.social.social_panel`),
        scored once: a session's row is what the daily job's feature matrix computes from the
        chatter known then (scoring each day's window alone takes 0.3 s with 700 names)."""
        if self.social is None:
            raise ValueError("the replay's data has no social chatter (ReplayData.social is None)")
        return social_panel(self.social, sorted(self.universe["symbol"].astype(str)))

    @cached_property
    def window(self) -> SessionWindow:
        """Index arithmetic on the calendar."""
        return SessionWindow(self.calendar)

    @cached_property
    def session_rows(self) -> dict[str, dict[pd.Timestamp, np.ndarray]]:
        """The positions of each session's rows in ``quotes`` and ``forward_eps`` (by frame
        name, then session), in order."""
        return {
            name: {
                pd.Timestamp(k): v for k, v in frame.groupby("session", sort=False).indices.items()
            }
            for name, frame in (("quotes", self.quotes), ("forward_eps", self.forward_eps))
        }

    def session_slice(
        self, name: Literal["quotes", "forward_eps"], day: pd.Timestamp
    ) -> pd.DataFrame:
        """The rows of ``quotes`` or ``forward_eps`` (``name``) of session ``day`` (NaT: none)."""
        rows = self.session_rows[name].get(day, np.empty(0, dtype="int64"))
        return getattr(self, name).iloc[rows]

    @cached_property
    def statement_history(self) -> pd.DataFrame:
        """The statements' metrics after each filing
        (:func:`~ibkr_assets.quant.fundamental.statement_history`), computed once for every day
        the replay assembles."""
        return statement_history(self.statements)

    @cached_property
    def first_report(self) -> pd.Series:
        """Each symbol's first statement's report date (midnight), by symbol."""
        reported = pd.to_datetime(self.statements["report_date"], cache=False)
        return reported.groupby(self.statements["symbol"].astype(str).to_numpy()).min()

    @cached_property
    def headline_order(self) -> tuple[np.ndarray, np.ndarray]:
        """The headlines' positions in time order and their times in that order (UTC, int64
        nanoseconds): a day's window is a slice of the first."""
        times = pd.to_datetime(self.headlines["time"], utc=True, cache=False)
        values = times.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").astype("int64")
        order = np.argsort(values, kind="stable")
        return order, values[order]

    @cached_property
    def headline_tape(self) -> HeadlineTape:
        """The headlines as arrays in time order, for the evidence's sentiment panel."""
        return HeadlineTape.of(self.headlines)

    def headlines_between(self, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """The headlines with ``start <= time < end`` (UTC timestamps), in their own order."""
        order, times = self.headline_order
        lo, hi = np.searchsorted(times, [start.value, end.value], side="left")
        return self.headlines.iloc[np.sort(order[lo:hi])]

    def compute_shared(self) -> None:
        """Compute what every day reads (the statement history, the first reports, the
        headlines' time order, the social scores) now: worker processes then receive it with
        the data instead of each computing it again."""
        _ = self.statement_history, self.first_report, self.headline_order, self.session_rows
        if self.social is not None:
            _ = self.social_scores

    @property
    def evidence_sessions(self) -> list[tuple[date, pd.Timestamp]]:
        """Every session whose signal evidence is measured (warm-up, then replayed), with its
        run time."""
        return [
            *zip(self.warmup, self.warmup_times, strict=True),
            *zip(self.sessions, self.decision_times, strict=True),
        ]


@dataclass(frozen=True)
class ReplaySettings:
    """The live job's settings the replay uses (``PipelineConfig`` and ``DecideConfig`` field
    names; ``even_lots`` on by default, as live), plus the book's starting capital and the paper
    exchange's ``participation`` share of the volume an order may take (None: no cap; see
    :mod:`~ibkr_assets.quant.backtest.fills`); ``evidence`` reads the signals' trailing
    evidence (weights, signs and the size of expected returns)."""

    optimiser: OptimiserConfig = field(default_factory=OptimiserConfig)
    limits: ComplianceLimits = field(default_factory=ComplianceLimits)
    rules: list[Rule] = field(default_factory=list)
    evidence: EvidenceSettings = field(default_factory=EvidenceSettings)
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
    adjustment, the signals' evidence, each name's daily volatility, the alpha scores, the
    risk model, the pre-open quotes, the last day's headlines (for the overlay) and the cost
    model's inputs of the risk model's names (:func:`~ibkr_assets.quant.decision.cost_inputs`)."""

    session: date
    as_of: pd.Timestamp
    features: pd.DataFrame
    macro_adjustment: float
    evidence: Evidence
    volatility: pd.Series
    alpha: pd.DataFrame
    model: RiskModel
    quotes: pd.DataFrame
    headlines: pd.DataFrame
    cost_inputs: pd.DataFrame


# -- the day's inputs ---------------------------------------------------------------------------


class SessionWindow:
    """Index arithmetic on the data's session calendar."""

    def __init__(self, calendar: Sequence[date]) -> None:
        self.days = np.array([np.datetime64(d, "D") for d in calendar])

    def before(
        self, session: date, count: int, clip: bool = False
    ) -> tuple[pd.Timestamp, pd.Timestamp]:
        """First and last of the ``count`` sessions strictly before ``session`` (with
        ``clip``, of as many as the calendar holds when it holds fewer)."""
        i = int(np.searchsorted(self.days, np.datetime64(session, "D")))
        count = min(count, i) if clip else count
        if i < count or i == 0:
            raise ValueError(f"the data holds {i} sessions before {session}, {count} are needed")
        return pd.Timestamp(self.days[i - count]), pd.Timestamp(self.days[i - 1])


def technical_windows(
    data: ReplayData, settings: ReplaySettings, sessions: Sequence[date] | None = None
) -> list[pd.DataFrame]:
    """The technical features of every replayed session, each from the ``history_sessions``
    bars before it; or of the evidence's ``sessions``, each from as many of those bars as the
    data holds (a warm-up session's window starts at the first bar)."""
    return technical_history(data.bars, _technical_spans(data, settings, sessions))


def _technical_spans(
    data: ReplayData, settings: ReplaySettings, sessions: Sequence[date] | None
) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """The bar windows of :func:`technical_windows`."""
    window = data.window
    days = data.sessions if sessions is None else sessions
    clip = sessions is not None
    return [window.before(s, settings.history_sessions, clip) for s in days]


def universe_closes(data: ReplayData) -> pd.DataFrame:
    """The wide close panel (sessions x symbols) of the universe's bars."""
    return close_panel(data.bars, sorted(data.universe["symbol"].astype(str)))


@dataclass(frozen=True)
class DayParts:
    """The quote-independent parts of the replayed sessions' feature matrices, every session at
    once (what :func:`evidence_signals` reads for the evidence sessions): for each session's
    run time (rows) and each universe symbol (``symbols``, sorted; columns), the row of the
    statement history holding its metrics (:func:`~ibkr_assets.quant.features.statement_rows_known`,
    -1: none known), the sentiment columns
    (:func:`~ibkr_assets.quant.sentiment.polarity_zscore_panel`) and the social scores
    (:func:`~ibkr_assets.quant.social.known_rows`; None without chatter); ``signals`` the
    statement signals of every row of the history, computed once; ``regimes`` each session's
    macro regime (:func:`macro_regimes`)."""

    symbols: pd.Index
    statement_rows: np.ndarray
    signals: pd.DataFrame
    sentiment: dict[str, np.ndarray]
    social: dict[str, np.ndarray] | None
    regimes: list[MacroRegime]

    @classmethod
    def of(cls, data: ReplayData, settings: ReplaySettings) -> DayParts:
        """The parts of every session of ``data.sessions`` at its run time."""
        symbols = pd.Index(sorted(data.universe["symbol"].astype(str).unique()), dtype=object)
        times = [as_of_timestamp(at) for at in data.decision_times]
        history = data.statement_history
        sentiment = polarity_zscore_panel(
            data.headline_tape,
            times,
            list(symbols),
            history_days=settings.headline_history_days,
            newest=(settings.headline_hours, settings.headlines_per_symbol),
            before_as_of=True,
        )
        return cls(
            symbols=symbols,
            statement_rows=statement_rows_known(history, times, list(symbols)),
            signals=statement_signals(history.drop(columns=["symbol", "known_from"])),
            sentiment=sentiment,
            social=None
            if data.social is None
            else known_rows(data.social_scores, times, list(symbols)),
            regimes=macro_regimes(data, settings, data.sessions),
        )

    def known(self, i: int, symbols: pd.Index) -> KnownParts:
        """Session ``i``'s statement signals, sentiment and social scores (None without
        chatter) of ``symbols`` (each a universe symbol)."""
        columns = self.symbols.get_indexer(symbols)
        if (columns < 0).any():
            raise ValueError(f"symbols {list(symbols[columns < 0])[:10]} are not in the universe")
        rows = self.statement_rows[i, columns]
        statements = self.signals.iloc[rows[rows >= 0]].set_axis(
            pd.Index(symbols[rows >= 0], name="symbol")
        )
        index = pd.Index(symbols, name="symbol")
        sentiment = pd.DataFrame(
            {c: self.sentiment[c][i, columns] for c in SENTIMENT_COLUMNS}, index=index
        )
        social = (
            None
            if self.social is None
            else pd.DataFrame({c: self.social[c][i, columns] for c in SOCIAL_COLUMNS}, index=index)
        )
        return KnownParts(statements, sentiment, social)


def macro_regimes(
    data: ReplayData, settings: ReplaySettings, sessions: Sequence[date]
) -> list[MacroRegime]:
    """The macro regime each of ``sessions`` sees: that of the ``macro_sessions`` sessions
    before it (:func:`~ibkr_assets.quant.macro.window_regimes`)."""
    windows = [
        (data.window.before(s, settings.macro_sessions)[0], pd.Timestamp(s)) for s in sessions
    ]
    return window_regimes(data.macro, windows)


def day_features(
    data: ReplayData,
    session: date,
    at: pd.Timestamp,
    technical: pd.DataFrame,
    settings: ReplaySettings,
    preopen: bool = True,
    parts: tuple[DayParts, int] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The feature matrix of ``session`` as the live job assembles it at its run time ``at``
    (``technical`` its technical features), with the session's pre-open quotes and the last
    ``headline_hours`` of headlines (the overlay's). A session without a quote or forward EPS
    in the data prices at the last close and leaves forward P/E unknown; so does every session
    without ``preopen`` (what a later day's ingest holds of it). ``parts``: the replayed
    sessions' :class:`DayParts` and this session's position in them, read instead of
    computing the statement signals, sentiment and social scores for the day alone."""
    day = pd.Timestamp(session) if preopen else pd.NaT
    quotes = data.session_slice("quotes", day).drop(columns="session")
    eps = data.session_slice("forward_eps", day).loc[:, ["symbol", "forward_eps"]]
    # as the fundamentals asset: forward EPS only for names with a statement filed before
    first_report = data.first_report.reindex(eps["symbol"].astype(str).to_numpy())
    eps = eps.loc[(first_report < day).to_numpy()]
    recent_start = at - pd.Timedelta(hours=settings.headline_hours)
    if parts is not None:
        known = parts[0].known(parts[1], technical.index.astype(str))
        news = data.headlines_between(recent_start, at)
        recent, _ = split_headlines(
            news, at, settings.headline_hours, settings.headlines_per_symbol
        )
        inputs = FeatureInputs(quotes, data.statements, eps, None, data.universe, known=known)
        return assemble_feature_matrix(technical, inputs, at), quotes, recent
    history_start = recent_start - pd.Timedelta(days=settings.headline_history_days)
    news = data.headlines_between(history_start, at)
    recent, older = split_headlines(
        news, at, settings.headline_hours, settings.headlines_per_symbol
    )
    news = pd.concat([older, recent], ignore_index=True)
    inputs = FeatureInputs(
        quotes,
        data.statements,
        eps,
        news if len(news) else None,
        data.universe,
        statement_history=data.statement_history,
    )
    features = assemble_feature_matrix(
        technical, inputs, at, sentiment_history_days=settings.headline_history_days
    )
    if data.social is not None:  # the daily job's social scores, scored once for every day
        social = known_row(data.social_scores, at, features["symbol"].astype(str).tolist())
        features = features.assign(**{c: social[c].to_numpy() for c in SOCIAL_COLUMNS})
    return features, quotes, recent


def prepare_day(
    data: ReplayData,
    i: int,
    technical: pd.DataFrame,
    settings: ReplaySettings,
    panel: ICPanel,
    closes: pd.DataFrame | None = None,
    parts: DayParts | None = None,
) -> DayInputs:
    """The inputs of replayed session ``i`` as the live job would see them at its run time
    (``technical`` from :func:`technical_windows`; ``panel`` from :func:`signal_panel`, read
    before the session; ``closes`` the wide close panel of the bars, computed here when not
    given; ``parts`` the replayed sessions' :class:`DayParts`, the session's own computed
    alone when not given)."""
    session, at = data.sessions[i], data.decision_times[i]
    window = data.window
    features, quotes, recent = day_features(
        data, session, at, technical, settings, parts=None if parts is None else (parts, i)
    )
    regime = macro_regimes(data, settings, [session])[0] if parts is None else parts.regimes[i]
    first, last = window.before(session, settings.history_sessions)
    panel_closes = universe_closes(data) if closes is None else closes
    a = panel_closes.index.searchsorted(first, side="left")  # the index is sorted
    b = panel_closes.index.searchsorted(last, side="right")
    window_closes = panel_closes.to_numpy()[a:b]
    rows = np.flatnonzero(~np.isnan(window_closes).all(axis=1))
    columns = np.flatnonzero(~np.isnan(window_closes[rows]).all(axis=0))
    names = panel_closes.columns[columns]
    panel_closes = pd.DataFrame(
        window_closes[rows][:, columns], index=panel_closes.index[a + rows], columns=names
    )
    evidence = evidence_at(panel, session, settings.evidence)
    volatility = daily_volatility(panel_closes, settings.evidence.volatility_sessions)
    alpha = compute_alpha_scores(
        features, evidence.weights, evidence.composite_ic, volatility, regime.macro_adjustment
    )
    # the risk model's names: the scored ones with closes, in the scores' order
    position = names.get_indexer(pd.Index(alpha["symbol"].to_numpy(), dtype=object))
    model = build_risk_model(
        panel_closes.iloc[:, position[position >= 0]], scenario_sessions=settings.scenario_sessions
    )
    return DayInputs(
        session=session,
        as_of=at,
        features=features,
        macro_adjustment=regime.macro_adjustment,
        evidence=evidence,
        volatility=volatility,
        alpha=alpha,
        model=model,
        quotes=quotes,
        headlines=recent,
        cost_inputs=cost_inputs(model.symbols, quotes, features, model),
    )


def day_universe(day: DayInputs, members: set[str]) -> DayInputs:
    """``day``'s inputs cut to the names of its universe ``members`` (watch-list, holdings and
    the day's movers): the feature matrix's rows, the alpha scored again over them with the
    day's evidence (its
    cross-sectional scores are the universe's, as live) and the risk model's names. The
    feature matrix's cross-sectional columns (sector medians) and the risk model's shrinkage
    stay those of every name loaded: a modelling shortcut."""
    features = day.features.loc[day.features["symbol"].astype(str).isin(members)]
    ev = day.evidence
    alpha = compute_alpha_scores(
        features, ev.weights, ev.composite_ic, day.volatility, day.macro_adjustment
    )
    model = day.model.subset([s for s in day.model.symbols if s in members])
    inputs = day.cost_inputs.loc[model.symbols]
    return replace(day, features=features, alpha=alpha, model=model, cost_inputs=inputs)
