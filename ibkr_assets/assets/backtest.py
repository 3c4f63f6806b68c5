"""Weekly — ``rolling_backtest``: the daily job's own decisions replayed over the last months.

Every Saturday (one partition per week, Monday start) the pipeline replays the sessions of the
last ``months`` (6 by default) up to the week's last close with the quant functions of the
daily job (:mod:`ibkr_assets.quant.backtest`): same features, alpha blend, risk model,
optimiser, news overlay, compliance gate, order sizing and margin what-if, rebalancing every
session; orders fill as the paper exchange fills them (limits only when the day's range reaches
them, large orders in part), paying IB's tiered commissions, the spread and market impact
(:mod:`~ibkr_assets.assets.ib_rules`).

One pass: the data is fetched once for the window through the same broker requests and
resources as the ingest assets (:func:`~ibkr_assets.assets.replay_data.load_replay_data`), the
replay runs on it, and the results are written. What could not be fetched is named in a warning
and in the asset's metadata (``left_out``).

Outputs: a row of ``metrics/rolling_backtest.csv`` (Sharpe, Sortino, maximum drawdown,
turnover, hit rate, costs, and what they are worth: the equal-weight and SPY buy-and-hold
benchmarks of the same sessions, beta to SPY, the excess return over each with its t-statistic,
a bootstrap 95% interval of the Sharpe and the deflated Sharpe ratio given the configurations
tried — :func:`~ibkr_assets.quant.backtest.backtest_statistics`; one row per partition, which a
rerun replaces, and one per command-line run), the equity curve and drawdown
as a PNG in the asset's metadata (and under ``plots/backtest-<label>/``), and — with
``calibrate`` on — the walk-forward calibration of the evidence reading over at least
:data:`CALIBRATION_MONTHS` (its folds, paired Newey–West t and decision) in the decision
journal (its candidates' replays fan out over a Dask cluster:
:func:`~ibkr_assets.resources.compute.dask_map`, ``IBKR_DASK_SCHEDULER`` or a local one); a
kept reading is written where the daily job reads it
(:func:`~ibkr_assets.assets.signals.write_calibrated_evidence`). Every run also saves its
sessions under the data root's ``backtest/<label>/`` (:func:`save_results`): ``daily.parquet``
(NAV, returns, costs, turnover per session), ``positions.parquet`` (the book at each close) and
``trades.parquet`` (every order and its fill), so any metric can be recomputed.
``ibkr-agent backtest`` runs the same function from the command line.
"""

import json
import math
import time as clock
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from ibkr_assets.assets.backtest_results import backtest_plot, save_results
from ibkr_assets.assets.catalog import IB, Table, catalog_kwargs
from ibkr_assets.assets.ib_rules import ib_cost_model, ib_execution
from ibkr_assets.assets.market_data import named_failures, request_workers
from ibkr_assets.assets.materialization import listing, png_markdown
from ibkr_assets.assets.replay_data import Progress, closed_at, load_replay_data
from ibkr_assets.assets.signals import (
    CALIBRATED_EVIDENCE,
    effective_evidence,
    write_calibrated_evidence,
)
from ibkr_assets.broker import Broker
from ibkr_assets.config import PipelineConfig, watchlist_symbols
from ibkr_assets.decide_config import DecideConfig
from ibkr_assets.jobs import WEEKLY_GROUP
from ibkr_assets.metadata import readable
from ibkr_assets.partitions import (
    NEW_YORK,
    WEEKLY_PARTITIONS,
    previous_sessions,
    sessions_between,
)
from ibkr_assets.quant.backtest import (
    BENCHMARKS,
    BacktestResult,
    BacktestStatistics,
    Calibration,
    DayInputs,
    DayWorkers,
    Execution,
    ReplayData,
    ReplaySettings,
    backtest_statistics,
    calibrate,
    signal_panel,
    simulate,
)
from ibkr_assets.quant.evidence import EvidenceSettings, ICPanel
from ibkr_assets.quant.journal import append_entry
from ibkr_assets.quant.overlay import load_rules
from ibkr_assets.resources.compute import dask_map, symbol_map
from ibkr_assets.resources.fundamentals import FundamentalsResource
from ibkr_assets.resources.ib import IBResource
from ibkr_assets.resources.sentiment import SentimentResource
from ibkr_assets.resources.social import SocialResource
from ibkr_assets.resources.storage import StorageResource
from ibkr_assets.settings import load_settings

#: The shortest window a calibration replays: walk-forward folds over two years.
CALIBRATION_MONTHS = 24
#: The walk-forward folds (sessions): a year to choose a reading on, the next quarter to test it,
#: at least two years of sessions (:func:`~ibkr_assets.quant.backtest.calibrate`).
CALIBRATION_FOLDS = {"train_sessions": 252, "fold_sessions": 63, "min_sessions": 504}
#: The file each run writes its row to, under the data root's ``metrics/``: one row per weekly
#: partition (ordered by partition key, a rerun replaces it) and one per command-line run.
METRICS_FILE = "rolling_backtest.csv"
#: A row of ``metrics/rolling_backtest.csv``: what one run of the replay measured.
METRICS = Table(
    {
        "run_utc": ("string", "when the run finished, ISO 8601 UTC"),
        "label": ("string", "the week replayed (its Monday's partition key), or cli"),
        "first_session": ("string", "first session replayed, YYYY-MM-DD"),
        "last_session": ("string", "last session replayed, YYYY-MM-DD"),
        "sessions": ("int64", "sessions replayed"),
        "symbols": ("int64", "symbols in the replay's universe"),
        "total_return": ("float64", "equity growth over the window after costs, fraction"),
        "cagr": ("float64", "compound annual growth rate after costs, fraction a year"),
        "annual_volatility": ("float64", "annualised volatility of daily returns, fraction"),
        "sharpe": ("float64", "annualised Sharpe ratio of daily net returns (risk-free 0)"),
        "sortino": ("float64", "annualised Sortino ratio (downside deviation)"),
        "max_drawdown": ("float64", "largest fall of equity from a running peak, fraction"),
        "drawdown_sessions": ("int64", "longest drawdown, peak to recovery, sessions"),
        "avg_turnover": (
            "float64",
            "mean daily turnover, one side (sum of |weight changes| / 2) without the first "
            "session (which invests the cash), fraction of NAV",
        ),
        "total_cost": ("float64", "commissions and slippage summed over days, fraction of NAV"),
        "commission_usd": ("float64", "IB commissions paid, USD"),
        "slippage_usd": ("float64", "spread and market impact paid, USD"),
        "hit_rate": ("float64", "share of days with a non-zero return that were positive"),
        "avg_names_held": ("float64", "mean number of names held"),
        "gate_blocked_sessions": ("int64", "sessions the compliance gate blocked"),
        # buy-and-hold benchmarks of the same sessions, bought at the close before the first
        "equal_weight_total_return": ("float64", "equal-weight of the names: total return"),
        "equal_weight_sharpe": ("float64", "equal-weight of the names: annualised Sharpe"),
        "equal_weight_max_drawdown": ("float64", "equal-weight of the names: max drawdown"),
        "spy_total_return": ("float64", "SPY buy-and-hold: total return, fraction"),
        "spy_sharpe": ("float64", "SPY buy-and-hold: annualised Sharpe ratio"),
        "spy_max_drawdown": ("float64", "SPY buy-and-hold: maximum drawdown, fraction"),
        "excess_return_equal_weight": (
            "float64",
            "mean daily net return minus the equal-weight benchmark's x 252, fraction a year",
        ),
        "excess_t_equal_weight": ("float64", "t-statistic of that mean (|t| > 2: ~5% two-sided)"),
        "excess_return_spy": ("float64", "mean daily net return minus SPY's x 252, fraction/year"),
        "excess_t_spy": ("float64", "t-statistic of that mean (|t| > 2: ~5% two-sided)"),
        "beta_spy": ("float64", "beta of daily net returns to SPY's"),
        "sharpe_low": ("float64", "Sharpe's bootstrap 95% interval, low end"),
        "sharpe_high": ("float64", "Sharpe's bootstrap 95% interval, high end"),
        "sharpe_interval_method": ("string", "how the interval was drawn (seeded: reproducible)"),
        "deflated_sharpe": (
            "float64",
            "deflated Sharpe ratio (Bailey & Lopez de Prado 2014): probability the Sharpe "
            "beats the best of `trials` tries by luck",
        ),
        "trials": ("int64", "configurations tried: the calibration's candidates, else 1"),
        "evidence": ("string", "JSON: how the signals' evidence was read (window, |t|, prior)"),
        "calibration": ("string", "off, or the calibration's decision (kept or rejected)"),
        "calibration_difference": (
            "float64",
            "calibration: mean out-of-sample daily return, chosen minus configured, fraction",
        ),
        "calibration_t": ("float64", "calibration: Newey-West t of that mean (kept if >= 2)"),
        "tuned_evidence": ("string", "calibration: JSON of the reading the last year chose"),
        "seconds": ("float64", "wall time of the run, seconds"),
    }
)


#: The statistics columns the asset's metadata shows beside the Sharpe.
STATISTICS_METADATA = (
    "sharpe_low",
    "sharpe_high",
    "deflated_sharpe",
    "beta_spy",
    "equal_weight_sharpe",
    "spy_sharpe",
    "excess_return_equal_weight",
    "excess_t_equal_weight",
    "excess_return_spy",
    "excess_t_spy",
)


@dataclass(frozen=True)
class BacktestResources:
    """The pipeline resources a backtest reads, named as the keys of ``build_resources()``."""

    ib: IBResource
    storage: StorageResource
    pipeline: PipelineConfig
    decide: DecideConfig
    fundamentals: FundamentalsResource
    sentiment: SentimentResource
    social: SocialResource

    @classmethod
    def of(cls, resources: Mapping[str, Any]) -> "BacktestResources":
        """The backtest's resources out of all the pipeline's (``build_resources()``)."""
        return cls(**{f.name: resources[f.name] for f in fields(cls)})


class BacktestConfig(dg.Config):
    """How far back to replay, the book's capital, and whether to calibrate; the fields but
    ``calibrate`` are :func:`run_backtest`'s options of the same names."""

    months: int = 6
    calibrate: bool = False
    workers: int = 1
    initial_capital: float = 1_000_000.0


def replay_settings(
    pipeline: PipelineConfig,
    decide: DecideConfig,
    evidence: EvidenceSettings,
    initial_capital: float = 1_000_000.0,
) -> ReplaySettings:
    """The daily job's settings as the replay takes them (``evidence``: the reading the daily
    job uses, :func:`~ibkr_assets.assets.signals.effective_evidence`)."""
    return ReplaySettings(
        optimiser=decide.optimiser_config(),
        limits=decide.compliance_limits(),
        rules=load_rules(decide.overlay_rules),
        evidence=evidence,
        scenario_sessions=decide.scenario_sessions,
        history_sessions=pipeline.history_sessions,
        macro_sessions=pipeline.macro_sessions,
        headline_hours=pipeline.headline_hours,
        headlines_per_symbol=pipeline.headlines_per_symbol,
        headline_history_days=pipeline.headline_history_days,
        min_notional=decide.min_notional,
        even_lots=decide.even_lots,
        limit_spread_fraction=decide.limit_spread_fraction,
        order_type=decide.order_type,
        mover_min_change_pct=pipeline.mover_min_change_pct,
        mover_min_volume_ratio=pipeline.mover_min_volume_ratio,
        scanner_codes=tuple(pipeline.scanner_codes),
        scanner_limit=pipeline.scanner_limit,
        whatif_shrink=decide.whatif_shrink,
        whatif_max_attempts=decide.whatif_max_attempts,
        whatif_on_failure=decide.whatif_on_failure,
        initial_capital=initial_capital,
    )


def mover_candidates(pipeline: PipelineConfig, broker: Broker) -> list[str]:
    """The names the daily job's scanners could add to a configured watch-list, which a replay
    loads to rebuild each session's movers: every stock of the simulated market; none without a
    watch-list (every stock is on it) or with a real broker (IB's scanners cannot be asked
    about past sessions, so a replay on IB data decides over the watch-list alone)."""
    if not pipeline.watchlist or broker.name != "sim":
        return []
    return watchlist_symbols(pipeline.model_copy(update={"watchlist": []}), broker)


def last_closed_session(now: datetime, not_after: date | None = None) -> date:
    """The latest session whose bar is final at ``now`` (and not after ``not_after``)."""
    day = now.astimezone(NEW_YORK).date()
    if not_after is not None:
        day = min(day, not_after)
    candidates = sessions_between(day - timedelta(days=10), day)
    closed = [s for s in candidates if closed_at(s) <= now]
    return closed[-1] if closed else previous_sessions(candidates[0], 1)[0]


def replay_window(end: date, months: int) -> list[date]:
    """The sessions of the ``months`` months ending with ``end`` (inclusive)."""
    start = (pd.Timestamp(end) - pd.DateOffset(months=months)).date() + timedelta(days=1)
    return sessions_between(start, end)


@dataclass(frozen=True)
class BacktestRun:
    """A finished run: the replay, the calibration (if asked), the statistics, the row appended
    to the metrics file, the files written (``results_dir``: :func:`save_results`), and the
    time taken per phase (seconds)."""

    result: BacktestResult
    calibration: Calibration | None
    statistics: BacktestStatistics
    row: dict
    csv_path: Path
    plot_path: Path
    results_dir: Path
    png: bytes
    timings: dict[str, float]
    problems: dict[str, str]


def _number(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)


def statistics_columns(stats: BacktestStatistics) -> dict[str, float | int | str | None]:
    """The metrics row's columns of the statistics (None for a benchmark without data)."""
    row: dict[str, float | int | str | None] = {}
    for name in BENCHMARKS:
        b = stats.benchmarks.get(name)
        row |= {
            f"{name}_total_return": b.summary.total_return if b else None,
            f"{name}_sharpe": b.summary.sharpe if b else None,
            f"{name}_max_drawdown": b.summary.max_drawdown if b else None,
        }
    for name in BENCHMARKS:
        b = stats.benchmarks.get(name)
        row |= {
            f"excess_return_{name}": b.excess_return if b else None,
            f"excess_t_{name}": b.excess_t if b else None,
        }
    interval = stats.sharpe_interval
    return row | {
        "beta_spy": stats.beta_spy,
        "sharpe_low": interval.low,
        "sharpe_high": interval.high,
        "sharpe_interval_method": interval.method,
        "deflated_sharpe": stats.deflated_sharpe,
        "trials": stats.trials,
    }


def _replay(
    data: ReplayData,
    settings: ReplaySettings,
    execution: Execution,
    calibration: bool,
    day_workers: DayWorkers,
    progress: Progress | None,
    timings: dict[str, float],
) -> tuple[BacktestResult, ICPanel, list[DayInputs]]:
    """The replay of ``data`` under IB's rules ``execution`` (its days prepared by
    ``day_workers``), the signal panel read, and (``calibration``: the calibration replays them
    again) the days; the seconds each phase took go to ``timings``."""
    report = progress or (lambda phase, done, total: None)
    mark = clock.perf_counter()
    # the workers get the data now and get ready (the technical windows, ...) while this
    # process measures the evidence
    days_for = day_workers.prepare(data, settings)
    with symbol_map() as (map_fn, parts):
        panel = signal_panel(data, settings, map_fn, parts)
    timings["evidence"] = clock.perf_counter() - mark
    mark = clock.perf_counter()
    prepared = days_for(panel)
    days = list(prepared) if calibration else prepared
    result = simulate(
        days,
        data,
        settings,
        execution,
        progress=lambda done, total, _: report("replay", done, total),
        total=len(data.sessions),
    )
    timings["replay"] = clock.perf_counter() - mark
    return result, panel, days if calibration else []


def _calibrate(
    days: list[DayInputs],
    data: ReplayData,
    settings: ReplaySettings,
    execution: Execution,
    panel: ICPanel,
    progress: Progress | None,
    timings: dict[str, float],
) -> Calibration:
    """The walk-forward calibration of the evidence reading on the replayed ``days``; its
    seconds go to ``timings``."""
    report = progress or (lambda phase, done, total: None)
    mark = clock.perf_counter()
    report("calibrate", 0, 1)
    with dask_map() as fan_out:  # the candidates' replays: IBKR_DASK_SCHEDULER or a local cluster
        tuned = calibrate(
            days, data, settings, execution, panel, **CALIBRATION_FOLDS, map_fn=fan_out
        )
    timings["calibrate"] = clock.perf_counter() - mark
    report("calibrate", 1, 1)
    return tuned


def run_backtest(
    resources: BacktestResources,
    *,
    end: date,
    months: int,
    label: str,
    partition: bool = False,
    symbols: Sequence[str] | None = None,
    calibration: bool = False,
    workers: int = 1,
    initial_capital: float = 1_000_000.0,
    progress: Progress | None = None,
) -> BacktestRun:
    """Load, replay (and optionally calibrate) the ``months`` before ``end``; write the
    metrics row, the plot, the sessions' results (:func:`save_results`) and (calibrating) the
    journal entry. ``symbols`` default to the
    watch-list; ``label`` names the run in the files (the partition, or ``cli``); with
    ``partition`` the label is a weekly partition whose earlier row the new one replaces."""
    storage = resources.storage
    timings: dict[str, float] = {}
    started = clock.perf_counter()
    reading, _ = effective_evidence(storage, resources.pipeline)
    settings = replay_settings(resources.pipeline, resources.decide, reading, initial_capital)
    sessions = replay_window(end, max(months, CALIBRATION_MONTHS) if calibration else months)
    broker = resources.ib.get_broker()
    names = list(symbols) if symbols is not None else watchlist_symbols(resources.pipeline, broker)
    movers_from = mover_candidates(resources.pipeline, broker) if symbols is None else []
    # the processes preparing the days start (and import) while this one loads the data
    with DayWorkers(workers) as day_workers:
        data, problems = load_replay_data(
            broker,
            storage,
            resources.fundamentals,
            resources.sentiment.scorer(),
            settings,
            names,
            sessions,
            request_workers=request_workers(broker, resources.pipeline),
            progress=progress,
            movers_from=movers_from,
            social=resources.social,
        )
        timings["load"] = clock.perf_counter() - started
        execution = ib_execution(ib_cost_model(resources.decide.holding_period_sessions))
        result, panel, days = _replay(
            data, settings, execution, calibration, day_workers, progress, timings
        )
    tuned = (
        _calibrate(days, data, settings, execution, panel, progress, timings)
        if calibration
        else None
    )
    s = result.summary
    stats = backtest_statistics(
        result,
        data,
        trials=len(tuned.sharpe) if tuned else 1,
        trial_sharpes=list(tuned.sharpe.values()) if tuned else None,
    )
    png = backtest_plot(result.daily, f"{label}: {sessions[0]} to {sessions[-1]}")
    plot_path = storage.write_bytes(storage.plot_path(f"backtest-{label}", "equity"), png)
    results_dir = save_results(storage, label, result)
    timings["total"] = clock.perf_counter() - started
    daily = result.daily
    row = {
        "run_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "label": label,
        "first_session": sessions[0].isoformat(),
        "last_session": sessions[-1].isoformat(),
        "sessions": len(daily),
        "symbols": len(data.universe),
        "total_return": s.total_return,
        "cagr": s.cagr,
        "annual_volatility": s.annual_volatility,
        "sharpe": s.sharpe,
        "sortino": s.sortino,
        "max_drawdown": s.max_drawdown,
        "drawdown_sessions": s.drawdown_duration,
        "avg_turnover": s.average_turnover,
        "total_cost": s.total_cost,
        "commission_usd": float(daily["commission"].sum()),
        "slippage_usd": float(daily["slippage"].sum()),
        "hit_rate": s.hit_rate,
        "avg_names_held": float(daily["names_held"].mean()),
        "gate_blocked_sessions": int((~daily["gate_passed"]).sum()),
        **statistics_columns(stats),
        "evidence": json.dumps(asdict(result.evidence)),
        "calibration": tuned.decision if tuned else "off",
        "calibration_difference": tuned.mean_difference if tuned else None,
        "calibration_t": tuned.t_stat if tuned else None,
        "tuned_evidence": json.dumps(asdict(tuned.tuned)) if tuned else None,
        "seconds": round(timings["total"], 2),
    }
    csv_path = storage.append_csv_row(
        storage.metrics_dir / METRICS_FILE, row, key="label" if partition else None
    )
    if tuned is not None:
        record = {
            "partition": f"backtest-{label}",
            "kind": "evidence_calibration",
            "decision": tuned.decision,
            "window": f"{sessions[0]}..{sessions[-1]}",
            "test_sessions": tuned.test_sessions,
            "configured_evidence": asdict(tuned.configured),
            "candidate": tuned.candidate,
            "tuned_evidence": asdict(tuned.tuned),
            "sharpe": {k: _number(v) for k, v in tuned.sharpe.items()},
            "folds": [asdict(f) for f in tuned.folds],
            "mean_difference": _number(tuned.mean_difference),
            "t_stat": _number(tuned.t_stat),
            "t_required": tuned.t_required,
            "applied_to": str(storage.root / CALIBRATED_EVIDENCE) if tuned.kept else None,
        }
        if tuned.kept:
            provenance = {k: record[k] for k in ("partition", "window", "candidate", "t_stat")}
            provenance["calibrated_utc"] = row["run_utc"]
            write_calibrated_evidence(storage, tuned.tuned, provenance)
        append_entry(
            storage.decision_log_dir,
            record,
            key=load_settings().checked("journal").journal.appending_key(storage.decision_log_dir),
        )
    return BacktestRun(
        result, tuned, stats, row, csv_path, plot_path, results_dir, png, timings, problems
    )


def _log_progress(context: dg.AssetExecutionContext, phase: str, done: int, total: int) -> None:
    if done == total or done % 25 == 0:
        context.log.info(f"{phase}: {done}/{total}")


def week_end(partition_key: str, now: datetime) -> date:
    """The last session of the partition's week whose bar is final by ``now``."""
    monday = date.fromisoformat(partition_key)
    return last_closed_session(now, not_after=monday + timedelta(days=6))


def run_backtest_on(resources: Mapping[str, Any], **options: Any) -> BacktestRun:
    """:func:`run_backtest` with the pipeline's resources (``build_resources()``): the entry of
    ``ibkr-agent backtest`` and ``bench/backtest.py``; ``options`` are run_backtest's own."""
    return run_backtest(BacktestResources.of(resources), **options)


@dg.asset(
    partitions_def=WEEKLY_PARTITIONS,
    group_name=WEEKLY_GROUP,
    # the replay reads the daily-bar cache daily_bars keeps in the warehouse (cache.daily_bars),
    # every session of it, and fetches the rest of what the daily job reads from IB itself
    deps=[dg.AssetDep("daily_bars", partition_mapping=dg.AllPartitionMapping())],
    **catalog_kwargs(
        stage="weekly-backtest",
        source=IB,
        kinds={"pandas", "cvxpy", "matplotlib", "csv"},
        columns=METRICS.schema(partitioned=False),
    ),
)
def rolling_backtest(
    context: dg.AssetExecutionContext,
    config: BacktestConfig,
    ib: IBResource,
    storage: StorageResource,
    pipeline: PipelineConfig,
    decide: DecideConfig,
    fundamentals: FundamentalsResource,
    sentiment: SentimentResource,
    social: SocialResource,
) -> dg.MaterializeResult:
    """How the daily strategy would have done over the last months, after costs: the equity
    curve, Sharpe, Sortino, drawdown, turnover and hit rate of the replayed decisions (one row
    of ``metrics/rolling_backtest.csv`` per partition, replaced by a rerun)."""
    end = week_end(context.partition_key, datetime.now(UTC))
    run = run_backtest(
        BacktestResources(ib, storage, pipeline, decide, fundamentals, sentiment, social),
        end=end,
        label=context.partition_key,
        partition=True,
        calibration=config.calibrate,
        progress=lambda phase, done, total: _log_progress(context, phase, done, total),
        **config.model_dump(exclude={"calibrate"}),  # run_backtest's options of those names
    )
    r = run.row
    # None when undefined (no variance, no trades, a benchmark without data)
    ratios = ["sharpe", "sortino", "hit_rate", *STATISTICS_METADATA]
    if run.calibration is not None:
        ratios += ["calibration_difference", "calibration_t"]
    meta = {
        "equity_curve": png_markdown(run.png, "equity curve and drawdown"),
        "plot_path": dg.MetadataValue.path(str(run.plot_path)),
        "metrics_csv": dg.MetadataValue.path(str(run.csv_path)),
        "results_dir": dg.MetadataValue.path(str(run.results_dir)),
        "window": f"{r['first_session']} to {r['last_session']} ({r['sessions']} sessions)",
        **{k: r[k] for k in ("symbols", "max_drawdown", "total_return", "avg_turnover")},
        **{k: r[k] for k in ("total_cost", "commission_usd", "gate_blocked_sessions")},
        "calibration": r["calibration"],
        "trials": r["trials"],
        "sharpe_interval_method": r["sharpe_interval_method"],
        "seconds": dg.MetadataValue.md(", ".join(f"{k} {v:.1f}" for k, v in run.timings.items())),
        **{k: _number(r[k]) for k in ratios},
    }
    if run.problems:
        context.log.warning(
            named_failures(f"rolling_backtest {context.partition_key}", run.problems)
        )
        meta["left_out"] = listing(run.problems)
    return dg.MaterializeResult(metadata=readable({k: v for k, v in meta.items() if v is not None}))
