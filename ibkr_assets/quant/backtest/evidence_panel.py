"""The signals' evidence of every evidence session at once: each session's signals and their
rank ICs against its close-to-close returns (:func:`signal_panel`, from the raw signals of
:func:`evidence_signals`), the panel the daily job's ``signal_evidence`` asset and the backtest
read (:func:`~ibkr_assets.quant.evidence.evidence_at` before each replayed day)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import numpy as np
import pandas as pd

from ibkr_assets.quant.alpha import SIGNALS, normalise_signals
from ibkr_assets.quant.backtest.replay import (
    ReplayData,
    ReplaySettings,
    _technical_spans,
    universe_closes,
)
from ibkr_assets.quant.evidence import ICPanel, evidence_rows
from ibkr_assets.quant.features import as_of_timestamp, statement_rows_known
from ibkr_assets.quant.fundamental import statement_signals
from ibkr_assets.quant.parallel import MapFn
from ibkr_assets.quant.sentiment import polarity_zscore_panel
from ibkr_assets.quant.social import known_rows
from ibkr_assets.quant.technical import FEATURE_COLUMNS as TECHNICAL_FEATURES
from ibkr_assets.quant.technical import technical_panel_by_symbols


def signal_panel(
    data: ReplayData, settings: ReplaySettings, map_fn: MapFn = map, parts: int = 1
) -> ICPanel:
    """The daily evidence of every session of ``data.evidence_sessions`` (warm-up and
    replayed) that has a return in the bars: each session's normalised signals
    (:func:`evidence_signals`, then :func:`~ibkr_assets.quant.alpha.normalise_signals`) against
    its close-to-close returns (:func:`~ibkr_assets.quant.evidence.evidence_rows`), every
    session at once. The technical features of a large universe can be computed with the
    symbols in ``parts`` groups through ``map_fn`` (a cluster's workers:
    :func:`~ibkr_assets.quant.technical.technical_panel_by_symbols`); the result is the same.

    A past session's signals are measured from what the daily job's ingest holds for it: its
    bars, statements and headlines, priced at the last close, without the pre-open quote or the
    forward EPS of that session (the daily job keeps only today's), so a replayed day reads the
    same evidence as a daily job that ran every day before it; forward P/E has no measured IC
    and so no weight."""
    returns = universe_closes(data).pct_change(fill_method=None)
    days = [(d, at) for d, at in data.evidence_sessions if pd.Timestamp(d) in returns.index]
    if not days:
        return ICPanel.empty(SIGNALS)
    symbols, present, raw = evidence_signals(data, settings, days, map_fn, parts)
    index = pd.DatetimeIndex([pd.Timestamp(d) for d, _ in days], name="session")
    ic = np.empty((len(days), len(SIGNALS)))
    cov = np.empty((len(days), len(SIGNALS), len(SIGNALS)))
    for a in range(0, len(days), _PANEL_CHUNK):  # bounded memory: sessions x names x signals
        b = a + _PANEL_CHUNK
        r = returns.reindex(index=index[a:b], columns=symbols).to_numpy("float64")
        signals = normalise_signals(raw[a:b], SIGNALS)
        ic[a:b], cov[a:b] = evidence_rows(signals, r, present[a:b])
    frame = pd.DataFrame(ic, index=index, columns=list(SIGNALS))
    order = np.argsort(index.to_numpy(), kind="stable")
    return ICPanel(frame.iloc[order], cov[order])


#: sessions whose signals and ranks are held at once by :func:`signal_panel` (~60 MB at 700
#: names and 13 signals)
_PANEL_CHUNK = 64


def evidence_signals(
    data: ReplayData,
    settings: ReplaySettings,
    days: Sequence[tuple[date, pd.Timestamp]],
    map_fn: MapFn = map,
    parts: int = 1,
) -> tuple[pd.Index, np.ndarray, np.ndarray]:
    """The raw :data:`~ibkr_assets.quant.alpha.SIGNALS` of the feature matrix
    :func:`day_features` assembles for each of ``days`` (session, run time) with
    ``preopen=False``, every session at once: the symbols (every one with bars), which of them
    each session's matrix holds (sessions x symbols), and the values (sessions x symbols x
    signals; NaN where missing or not held). The technical features are read from
    :func:`~ibkr_assets.quant.technical.technical_panel` (with the symbols in ``parts`` groups
    through ``map_fn``) over :func:`technical_windows`'
    windows, the statements' metrics from the statement history by
    :func:`~ibkr_assets.quant.features.statement_rows_known`, the headline z-scores from
    :func:`~ibkr_assets.quant.sentiment.polarity_zscore_panel` and the social scores from
    :func:`~ibkr_assets.quant.social.known_rows`: the functions the single day calls."""
    spans = _technical_spans(data, settings, [d for d, _ in days])
    technical = technical_panel_by_symbols(data.bars, spans, map_fn, parts)
    symbols = pd.Index(technical.symbols.astype(str))
    column = {s: j for j, s in enumerate(SIGNALS)}
    present = technical.counts > 0
    raw = np.full((len(days), len(symbols), len(SIGNALS)), np.nan)
    for j, name in enumerate(TECHNICAL_FEATURES):
        if name in column:
            raw[:, :, column[name]] = technical.values[:, :, j]
    times = [as_of_timestamp(at) for _, at in days]
    history = data.statement_history
    rows = statement_rows_known(history, times, list(symbols))
    signals = statement_signals(history.drop(columns=["symbol", "known_from"]))
    for name in ("piotroski", "revenue_growth_flag"):
        values = signals[name].to_numpy("float64")
        raw[:, :, column[name]] = np.where(rows >= 0, values[np.maximum(rows, 0)], np.nan)
    # forward_pe_rel_sector stays NaN: a past session has no forward EPS (see signal_panel)
    sentiment = polarity_zscore_panel(
        data.headline_tape,
        times,
        list(symbols),
        history_days=settings.headline_history_days,
        newest=(settings.headline_hours, settings.headlines_per_symbol),
        before_as_of=True,
    )
    raw[:, :, column["sentiment_z"]] = sentiment["sentiment_z"]
    if data.social is not None:
        social = known_rows(data.social_scores, times, list(symbols))
        for name in ("social_spike_z", "social_volume_z"):
            raw[:, :, column[name]] = social[name]
    raw[~present] = np.nan
    return symbols, present, raw
