"""Stage 3 — ``signal_evidence`` and ``alpha_scores``: what each signal has been worth, and one
score per symbol with the daily return it implies.

``signal_evidence`` measures every signal's daily rank IC against the next session's return
over the last ``evidence_sessions`` sessions (``IBKR_EVIDENCE_SESSIONS``, 250), rebuilding each
past session's feature matrix from what the ingest stage holds — the daily bars (600 sessions:
a year of ICs on top of the 253 bars 12-1 momentum needs), the statements and the headline
history — with the backtest's own functions (:func:`~ibkr_assets.quant.backtest.signal_panel`).
Past sessions have no pre-open quote or forward EPS in the ingest data: they price at the
last close and leave forward P/E unknown (no IC that session), and sentiment has ICs only for
the sessions the headline history covers; the social-chatter scores likewise only for the
sessions whose score's 41-121 sessions of chatter the ``social_chatter`` asset holds
(``IBKR_SOCIAL_HISTORY_SESSIONS``, 120), so a cold start measures them over its last ~80
sessions and the daily runs add one a day (a source without history gives NaN: no IC, no
weight). Each signal's trailing mean IC, Newey–West t,
shrunk IC and weight (0 unless distinguishable from zero at ``IBKR_EVIDENCE_T_THRESHOLD``'s
level, the signals tested together; sign from the evidence) are the
asset's rows and metadata (:mod:`ibkr_assets.quant.evidence`). A weekly calibration that
keeps a better reading writes it to ``calibration/evidence.json`` under the data root
(:func:`write_calibrated_evidence`); the daily job then reads the evidence that way and names
the file's provenance in the metadata.

``alpha_scores`` is a thin wrapper over :func:`ibkr_assets.quant.alpha.compute_alpha_scores`:
the day's signals weighted by that evidence, the technical, fundamental and sentiment blocks
as sub-scores, the macro regime reported beside them, and the expected daily return by
Grinold's rule from each name's daily volatility over ``volatility_sessions`` (60). The
metadata shows what a PM looks at first: the distribution of scores (a PNG in the Dagster UI,
also saved under ``plots/YYYY-MM-DD/``), the top and bottom names with their drivers, and the
regime.
"""

import io
import json
import math
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ibkr_assets.assets.catalog import Table, daily_asset_kwargs
from ibkr_assets.assets.materialization import png_markdown, preview
from ibkr_assets.assets.partition import session_of, with_partition, without_partition
from ibkr_assets.config import PipelineConfig
from ibkr_assets.errors import ConfigurationError
from ibkr_assets.metadata import readable
from ibkr_assets.partitions import as_of, previous_sessions, sessions_between
from ibkr_assets.quant.alpha import SIGNAL_BLOCKS, SIGNALS, compute_alpha_scores
from ibkr_assets.quant.backtest import ReplayData, ReplaySettings, signal_panel
from ibkr_assets.quant.decision import close_panel
from ibkr_assets.quant.evidence import EvidenceSettings, ICPanel, daily_volatility, evidence_at
from ibkr_assets.quant.macro import FEATURE_COLUMNS as MACRO_COLUMNS
from ibkr_assets.quant.macro import latest_regime
from ibkr_assets.quant.sentiment import score_headlines
from ibkr_assets.resources.compute import symbol_map
from ibkr_assets.resources.sentiment import SentimentResource
from ibkr_assets.resources.storage import StorageResource

log = dg.get_dagster_logger(__name__)
#: Where a calibration that was kept leaves the evidence reading, under the data root.
CALIBRATED_EVIDENCE = Path("calibration") / "evidence.json"
#: Every past session's measured evidence (IC row and signal covariance), kept under the data
#: root so each run measures only the sessions it has not measured before.
EVIDENCE_CACHE = Path("evidence") / "signal_ic.parquet"
#: Each signal's block.
BLOCK_OF = {signal: block for block, signals in SIGNAL_BLOCKS.items() for signal in signals}
#: What :func:`signal_evidence` returns: one row per signal.
SIGNAL_EVIDENCE = Table(
    {
        "signal": ("string", "feature column of the signal"),
        "block": ("string", "the block it is reported in: technical, fundamental or sentiment"),
        "ic": ("float64", "mean daily rank IC against the next session's return, trailing"),
        "t": ("float64", "Newey-West t-statistic of that mean (NaN: too few sessions)"),
        "n": ("int64", "sessions with an IC in the window"),
        "shrunk_ic": ("float64", "the mean IC shrunk toward 0 (normal prior, evidence_prior_sd)"),
        "weight": ("float64", "signed weight in the score; 0 below the |t| threshold"),
        "composite_ic": ("float64", "the weighted composite's shrunk daily IC (every row)"),
    }
)

#: What :func:`compute_alpha_scores` returns: the score, its blocks, the expected return.
ALPHA_SCORES = Table(
    {
        "symbol": ("string", "ticker symbol"),
        "alpha_score": ("float64", "signals weighted by their evidence, -1 to 1"),
        "technical": ("float64", "the technical signals' part of the score"),
        "fundamental": ("float64", "the fundamental signals' part of the score"),
        "sentiment": ("float64", "the sentiment signals' part (news tone, social chatter)"),
        "macro": ("float64", "macro-regime adjustment, -1 to 1 (reported, not in the score)"),
        "volatility": ("float64", "daily volatility of the last 60 sessions' returns, fraction"),
        "expected_return": ("float64", "IC x volatility x standardised score, daily fraction"),
        "top_drivers": ("string", "the five largest contributions, e.g. 'mom_12_1 +0.081'"),
    }
)


def alpha_plot(scores: pd.DataFrame, title: str, names: int = 10) -> bytes:
    """PNG: histogram of alpha scores, and the top and bottom ``names`` as horizontal bars."""
    ranked = scores.sort_values("alpha_score")
    ends = pd.concat([ranked.head(names), ranked.tail(names)]).drop_duplicates("symbol")
    fig = Figure(figsize=(11, 4.5), dpi=90)  # no pyplot: no global state, safe in threads
    hist, bars = fig.subplots(1, 2)
    values = scores["alpha_score"].to_numpy(dtype="float64")
    bins = 30 if len(values) and np.ptp(values) > 1e-9 else 1  # all equal: one bar
    hist.hist(values, bins=bins, color="#4c72b0", edgecolor="white")
    hist.axvline(0, color="grey", linewidth=0.8)
    hist.set(title=f"{title}: alpha distribution", xlabel="alpha score", ylabel="symbols")
    colours = ["#c44e52" if v < 0 else "#55a868" for v in ends["alpha_score"]]
    bars.barh(ends["symbol"].astype(str), ends["alpha_score"], color=colours)
    bars.axvline(0, color="grey", linewidth=0.8)
    bars.set(title=f"top and bottom {names}", xlabel="alpha score")
    bars.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def evidence_settings(config: PipelineConfig) -> EvidenceSettings:
    """How the pipeline settings read the signals' evidence."""
    return EvidenceSettings(
        sessions=config.evidence_sessions,
        t_threshold=config.evidence_t_threshold,
        prior_sd=config.evidence_prior_sd,
        volatility_sessions=config.volatility_sessions,
    )


def write_calibrated_evidence(
    storage: StorageResource, settings: EvidenceSettings, provenance: dict[str, Any]
) -> Path:
    """Leave a kept calibration's evidence reading where the daily job reads it, with its
    provenance (window, test statistic, when)."""
    return storage.write_json(
        storage.root / CALIBRATED_EVIDENCE, {"evidence": asdict(settings), "provenance": provenance}
    )


def effective_evidence(
    storage: StorageResource, config: PipelineConfig
) -> tuple[EvidenceSettings, dict[str, Any] | None]:
    """The evidence reading the daily job uses: the calibrated one when a calibration left
    one (with its provenance), else the pipeline settings' (provenance None)."""
    path = storage.root / CALIBRATED_EVIDENCE
    if not path.exists():
        return evidence_settings(config), None
    try:
        payload = json.loads(path.read_text())
        return EvidenceSettings(**payload["evidence"]), dict(payload["provenance"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(
            f"{path}: not a calibrated evidence reading ({exc}); delete it to use the "
            "IBKR_EVIDENCE_* settings, or rerun the weekly calibration"
        ) from None


def evidence_data(
    session_key: str,
    universe: pd.DataFrame,
    bars: pd.DataFrame,
    statements: pd.DataFrame,
    headlines: pd.DataFrame,
    sessions: int,
    social: pd.DataFrame | None = None,
) -> ReplayData:
    """The ingest stage's data as the replay's, with the ``sessions`` sessions before
    ``session_key`` as the evidence's (warm-up) sessions and none to replay; ``social``: the
    ``social_chatter`` counts (None: no chatter, the social signals have no IC)."""
    days = pd.to_datetime(bars["session"], cache=False)
    first = days.min().date() if len(days) else previous_sessions(session_key, 1)[0]
    before = [d for d in previous_sessions(session_key, sessions) if d >= first]
    quotes = pd.DataFrame(
        {c: pd.Series(dtype="float64") for c in ("bid", "ask", "last", "close")}
    ).assign(symbol=pd.Series(dtype="string"), session=pd.Series(dtype="datetime64[ns]"))
    return ReplayData(
        universe=universe,
        bars=bars,
        quotes=quotes,
        statements=statements,
        forward_eps=pd.DataFrame(
            {"session": pd.Series(dtype="datetime64[ns]"), "symbol": [], "forward_eps": []}
        ),
        headlines=headlines,
        macro=pd.DataFrame(),
        sessions=[],
        decision_times=[],
        calendar=sessions_between(first, previous_sessions(session_key, 1)[0]),
        warmup=before,
        warmup_times=[pd.Timestamp(as_of(d.isoformat())) for d in before],
        social=social,
    )


def panel_frame(panel: ICPanel) -> pd.DataFrame:
    """``panel`` as the rows of :data:`EVIDENCE_CACHE`: per session each signal's IC and the
    signals' covariance flattened (``cov_i_j``)."""
    k = panel.cov.shape[1]
    cov = pd.DataFrame(
        panel.cov.reshape(len(panel.ic), k * k),
        index=panel.ic.index,
        columns=[f"cov_{i}_{j}" for i in range(k) for j in range(k)],
    )
    return panel.ic.join(cov).reset_index()


def cache_columns() -> list[str]:
    """The columns of :data:`EVIDENCE_CACHE`, in order (a row of :func:`panel_frame` of the
    signals :data:`SIGNALS`)."""
    k = len(SIGNALS)
    return ["session", *SIGNALS, *(f"cov_{i}_{j}" for i in range(k) for j in range(k))]


def measured_panel(storage: StorageResource, data: ReplayData, settings: ReplaySettings) -> ICPanel:
    """The evidence of every warm-up session of ``data``: the sessions measured by earlier runs
    from :data:`EVIDENCE_CACHE`, the others measured now (and added to it). A session's row is
    measured once, by the first run after its close, from what that run's ingest data held;
    a later run holds less of its headlines, so the first measurement is the one kept. A cache
    measured with other signals than :data:`SIGNALS` (an older version's, before a signal was
    added) is measured again whole, from what this run holds, and replaced: its covariances
    lack the new signals' rows, and a signal missing from it would otherwise never be
    measured."""
    path = storage.root / EVIDENCE_CACHE
    stored = pd.read_parquet(path) if path.exists() else pd.DataFrame({"session": []})
    if len(stored) and list(stored.columns) != cache_columns():
        found = [c for c in stored.columns if c != "session" and not c.startswith("cov_")]
        log.warning(
            f"{path} was measured with the signals {found}, not {list(SIGNALS)}: measuring "
            f"its {len(stored)} sessions again and replacing it"
        )
        stored = pd.DataFrame({"session": []})
    known = set(pd.to_datetime(stored["session"]).dt.date) if len(stored) else set()
    todo = [(d, at) for d, at in data.evidence_sessions if d not in known]
    if todo:
        with symbol_map() as (map_fn, parts):
            fresh = signal_panel(
                replace(data, warmup=[d for d, _ in todo], warmup_times=[at for _, at in todo]),
                settings,
                map_fn,
                parts,
            )
        if len(fresh.ic):
            measured = panel_frame(fresh)
            stored = pd.concat([stored, measured], ignore_index=True) if len(stored) else measured
            stored = stored.assign(session=pd.to_datetime(stored["session"]))
            storage.write_parquet(path, stored.sort_values("session", ignore_index=True))
    wanted = {pd.Timestamp(d) for d, _ in data.evidence_sessions}
    rows = stored.loc[pd.to_datetime(stored["session"]).isin(wanted)] if len(stored) else stored
    return stored_panel(rows)


def stored_panel(rows: pd.DataFrame) -> ICPanel:
    """The :class:`ICPanel` of rows of :data:`EVIDENCE_CACHE` (:func:`panel_frame`'s columns,
    any order of sessions): the sessions in order, all rows at once."""
    if not len(rows):
        return ICPanel.empty(SIGNALS)
    rows = rows.sort_values("session", kind="stable")
    days = pd.to_datetime(rows["session"]).dt.date
    index = pd.DatetimeIndex([pd.Timestamp(d) for d in days], name="session")
    ic = pd.DataFrame(rows[list(SIGNALS)].to_numpy("float64"), index=index, columns=list(SIGNALS))
    k = len(SIGNALS)
    cov = rows[cache_columns()[1 + k :]].to_numpy("float64").reshape(len(rows), k, k)
    return ICPanel(ic, cov)


def _number(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


@dg.asset(**daily_asset_kwargs("signals", SIGNAL_EVIDENCE, stage="3-signals"))
def signal_evidence(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    pipeline: PipelineConfig,
    sentiment: SentimentResource,
    universe: pd.DataFrame,
    daily_bars: pd.DataFrame,
    fundamentals: pd.DataFrame,
    headlines: pd.DataFrame,
    headline_history: pd.DataFrame,
    social_chatter: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    """What each signal has been worth: its trailing daily IC, t-statistic, shrunk IC and the
    signed weight it gets in today's score."""
    key, session, _ = session_of(context)
    reading, provenance = effective_evidence(storage, pipeline)
    news = pd.concat(
        [without_partition(headline_history), without_partition(headlines)], ignore_index=True
    )
    scored = score_headlines(news, sentiment.scorer()) if len(news) else news.assign(polarity=0.0)
    data = evidence_data(
        key,
        without_partition(universe),
        without_partition(daily_bars),
        without_partition(fundamentals),
        scored,
        reading.sessions,
        without_partition(social_chatter),
    )
    settings = ReplaySettings(
        history_sessions=pipeline.history_sessions,
        headline_hours=pipeline.headline_hours,
        headlines_per_symbol=pipeline.headlines_per_symbol,
        headline_history_days=pipeline.headline_history_days,
        evidence=reading,
    )
    evidence = evidence_at(measured_panel(storage, data, settings), session, reading)
    table = evidence.table.rename_axis("signal").reset_index()
    frame = table.assign(
        block=table["signal"].map(BLOCK_OF), composite_ic=evidence.composite_ic
    ).loc[:, SIGNAL_EVIDENCE.names]
    frame = frame.astype(SIGNAL_EVIDENCE.dtypes)
    meta = {
        "dagster/row_count": len(frame),
        "evidence": preview(frame.drop(columns="composite_ic"), len(frame)),
        "composite_ic": evidence.composite_ic,
        "signals_weighted": int((frame["weight"] != 0).sum()),
        "sessions": evidence.sessions,
        "through": str(evidence.through.date()) if pd.notna(evidence.through) else None,
        "reading": json.dumps(asdict(reading)),
        "calibrated": json.dumps(provenance) if provenance else "no (IBKR_EVIDENCE_* settings)",
        **{f"weight_{r.signal}": _number(r.weight) for r in frame.itertuples()},
    }
    return dg.Output(with_partition(frame, key), metadata=readable(meta))


@dg.asset(**daily_asset_kwargs("signals", ALPHA_SCORES, stage="3-signals", kinds={"matplotlib"}))
def alpha_scores(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    pipeline: PipelineConfig,
    feature_matrix: pd.DataFrame,
    macro_gauges: pd.DataFrame,
    signal_evidence: pd.DataFrame,
    daily_bars: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    """Each symbol's score from the signals weighted by their evidence, its blocks, and its
    expected daily return (IC x volatility x standardised score)."""
    key, _, _ = session_of(context)
    macro = without_partition(macro_gauges).set_index("session").loc[:, list(MACRO_COLUMNS)]
    regime = latest_regime(macro)
    features = without_partition(feature_matrix)
    evidence = without_partition(signal_evidence)
    closes = close_panel(without_partition(daily_bars), features["symbol"].astype(str).tolist())
    reading, _ = effective_evidence(storage, pipeline)
    scores = compute_alpha_scores(
        features,
        weights=evidence.set_index("signal")["weight"],
        composite_ic=float(evidence["composite_ic"].iloc[0]) if len(evidence) else 0.0,
        volatility=daily_volatility(closes, reading.volatility_sessions),
        macro_adjustment=regime.macro_adjustment,
    )
    png = alpha_plot(scores, key)
    path = storage.write_bytes(storage.plot_path(key, "alpha_scores"), png)
    ranked = scores.sort_values("alpha_score", ascending=False)
    meta = {
        "dagster/row_count": len(scores),
        "alpha_plot": png_markdown(png, "alpha scores"),
        "plot_path": dg.MetadataValue.path(str(path)),
        "top_10": preview(ranked, 10),
        "bottom_10": preview(ranked.iloc[::-1], 10),
        "regime": regime.label,
        "macro_adjustment": float(regime.macro_adjustment),
        "mean_alpha": float(scores["alpha_score"].mean()),
        "mean_abs_expected_return_bp": float(scores["expected_return"].abs().mean() * 1e4),
        "share_positive": float((scores["alpha_score"] > 0).mean()),
    }
    return dg.Output(with_partition(scores, key), metadata=readable(meta))
