"""The weekly backtest against the daily job on the simulated world (40 stocks): the replay
decides a session exactly as the materialised daily assets do, and the weekly asset writes
its metrics row, its plot and (calibrating) its journal entry."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from ibkr_assets import cli
from ibkr_assets.assets import backtest, daily_assets, daily_checks
from ibkr_assets.assets.ib_rules import ib_execution
from ibkr_assets.assets.portfolio import net_liquidation
from ibkr_assets.assets.signals import (
    EVIDENCE_CACHE,
    cache_columns,
    evidence_data,
    measured_panel,
    panel_frame,
)
from ibkr_assets.jobs import weekly_schedule
from ibkr_assets.partitions import sessions_between
from ibkr_assets.quant.alpha import SIGNALS
from ibkr_assets.quant.backtest import prepare_days, signal_panel, simulate
from ibkr_assets.quant.evidence import ICPanel
from ibkr_assets.quant.journal import read_journal, verify_journal
from ibkr_assets.quant.social import SOCIAL_COLUMNS, lookback
from ibkr_assets.resources import build_resources
from ibkr_assets.resources.alerts import AlertResource
from ibkr_assets.resources.storage import StorageResource
from ibkr_assets.settings.social import SocialSettings
from tests.journal_key import TEST_KEY
from tests.replay_fixtures import load_small_replay

SYMBOLS = 40
SESSION = "2024-06-12"
WINDOW = sessions_between(date(2024, 6, 3), date(2024, 6, 14))
WEEK = "2024-06-10"

DAILY = daily_assets()
CHECKS = daily_checks()


def test_the_ingest_keeps_the_chatter_a_social_score_reads() -> None:
    """The daily job's chatter (IBKR_SOCIAL_HISTORY_SESSIONS) covers a score's lookback, so its
    social scores equal the replay's (one session short, ~1 name in 30 scores differently)."""
    assert SocialSettings().history_sessions >= lookback()


@pytest.fixture(scope="module", autouse=True)
def _small_world():
    mp = pytest.MonkeyPatch()
    mp.setenv("IBKR_SIM_SYMBOLS", str(SYMBOLS))
    mp.setenv("IBKR_SENTIMENT_MODEL", "lexicon")
    yield
    mp.undo()


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    data, settings, _ = load_small_replay(tmp_path_factory.mktemp("replay"), SYMBOLS, WINDOW)
    panel = signal_panel(data, settings)
    days = {d.session: d for d in prepare_days(data, settings, panel, workers=0)}
    return data, settings, days, panel


@pytest.fixture(scope="module")
def live(tmp_path_factory, replayed):
    """The daily job of one session, materialised on a fresh paper account whose evidence
    cache holds what a daily job run every day before would have measured: the replay's panel
    (a cold run measures the sessions its 30 days of headlines cover only)."""
    *_, panel = replayed
    root = tmp_path_factory.mktemp("live")
    storage = StorageResource(data_dir=str(root))
    storage.write_parquet(storage.root / EVIDENCE_CACHE, panel_frame(panel))
    resources = build_resources(data_dir=str(root))
    resources["alerts"] = AlertResource(log_path=str(root / "alerts.jsonl"))
    result = dg.materialize(
        [*DAILY, *CHECKS],
        partition_key=SESSION,
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return result


def test_replay_and_live_job_decide_the_same_targets(live, replayed):
    data, settings, days, _ = replayed
    day = days[date.fromisoformat(SESSION)]
    matrix = live.output_for_node("feature_matrix").set_index("symbol")
    got = day.features.set_index("symbol")
    columns = ("price", "ma_signal", "rsi", "mom_12_1", "piotroski", "sentiment_z", *SOCIAL_COLUMNS)
    for column in columns:
        np.testing.assert_allclose(
            got[column].astype(float), matrix.loc[got.index, column].astype(float), rtol=1e-9
        )
    assert got["social_volume_z"].notna().all(), "every simulated stock has scored chatter"
    evidence = live.output_for_node("signal_evidence").set_index("signal")
    np.testing.assert_allclose(evidence["weight"], day.evidence.weights.loc[evidence.index])
    assert evidence["composite_ic"].iloc[0] == pytest.approx(day.evidence.composite_ic)
    scores = live.output_for_node("alpha_scores").set_index("symbol")
    for column in ("alpha_score", "expected_return"):
        np.testing.assert_allclose(
            day.alpha.set_index("symbol")[column],
            scores.loc[day.alpha["symbol"], column],
            atol=1e-12,
        )
    # the live account starts in cash: so does a replay of that one session, with the same
    # net liquidation (the optimiser's trading costs depend on the book's size)
    nav = net_liquidation(live.output_for_node("portfolio_snapshot"))
    replay = simulate([day], data, replace(settings, initial_capital=nav), ib_execution()).targets[
        day.session
    ]
    want = live.output_for_node("overlaid_targets").set_index("symbol")["weight"]
    assert (want > 1e-4).sum() >= 3, "the live job should hold a real book"
    np.testing.assert_allclose(replay.loc[want.index], want, atol=1e-6)


def test_a_cold_daily_job_measures_the_evidence_the_replay_measures(live, replayed, tmp_path):
    """The live job's own measurement of past sessions (from its ingest data: bars, statements,
    30 days of headlines, the chatter of the sessions before it) equals the replay's for every
    signal but the sentiment block's: the headline history does not reach its older sessions,
    and a past session's chatter scores read fewer sessions than the replay's (the ingest's
    end before today), though enough to be measured."""
    data, settings, _, panel = replayed
    key = SESSION
    built = evidence_data(
        key,
        live.output_for_node("universe").drop(columns="partition_date"),
        live.output_for_node("daily_bars").drop(columns="partition_date"),
        live.output_for_node("fundamentals").drop(columns="partition_date"),
        data.headlines.iloc[0:0],
        settings.evidence.sessions,
        live.output_for_node("social_chatter").drop(columns="partition_date"),
    )
    cold = measured_panel(StorageResource(data_dir=str(tmp_path)), built, settings)
    social = ["social_spike_z", "social_volume_z"]
    shared = [s for s in panel.ic.columns if s not in ("sentiment_z", *social)]
    rows = panel.ic.loc[cold.ic.index, shared]
    assert len(rows) == settings.evidence.sessions
    np.testing.assert_allclose(cold.ic[shared], rows, atol=1e-12)
    assert panel.ic["forward_pe_rel_sector"].isna().all(), "no forward EPS history: no IC"
    assert cold.ic[social].notna().all().all() and panel.ic[social].notna().all().all()


def test_an_evidence_cache_of_other_signals_is_measured_again(replayed, tmp_path):
    """A cache written before the social signals joined (11 signals, 11 x 11 covariances) is
    measured again with every signal and replaced, not read with the new signals missing."""
    data, settings, _, panel = replayed
    last = data.evidence_sessions[-3:]
    data = replace(
        data,
        sessions=[],
        decision_times=[],
        warmup=[d for d, _ in last],
        warmup_times=[at for _, at in last],
    )
    old = [s for s in SIGNALS if not s.startswith("social_")]
    assert len(old) == 11
    stale = ICPanel(panel.ic.loc[:, old], np.zeros((len(panel.ic), len(old), len(old))))
    storage = StorageResource(data_dir=str(tmp_path))
    storage.write_parquet(storage.root / EVIDENCE_CACHE, panel_frame(stale))
    got = measured_panel(storage, data, settings)
    want = panel.ic.loc[got.ic.index]
    assert len(got.ic) == 3 and list(got.ic.columns) == list(SIGNALS)
    np.testing.assert_allclose(got.ic, want, atol=1e-12)
    np.testing.assert_allclose(got.cov, panel.cov[-3:], atol=1e-12)
    cached = pd.read_parquet(storage.root / EVIDENCE_CACHE)
    assert list(cached.columns) == cache_columns() and len(cached) == 3


def test_weekly_asset_writes_metrics_plot_and_journal(tmp_path, monkeypatch):
    # the walk-forward calibration's two years shrunk to the month replayed: 8 sessions to
    # choose on, 4 to test, the plumbing (row, journal, decision) as in production
    monkeypatch.setattr(backtest, "CALIBRATION_MONTHS", 1)
    monkeypatch.setattr(
        backtest, "CALIBRATION_FOLDS", {"train_sessions": 8, "fold_sessions": 4, "min_sessions": 16}
    )
    resources = build_resources(data_dir=str(tmp_path))
    result = dg.materialize(
        [backtest.rolling_backtest],
        partition_key=WEEK,
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
        run_config={
            "ops": {"rolling_backtest": {"config": {"months": 1, "calibrate": True, "workers": 1}}}
        },
    )
    assert result.success
    meta = result.asset_materializations_for_node("rolling_backtest")[0].metadata
    for key in ("sharpe", "sortino", "max_drawdown", "avg_turnover", "hit_rate"):
        assert key in meta
    assert meta["equity_curve"].value.startswith("![equity curve and drawdown](data:image/png")
    csv = tmp_path / "metrics" / "rolling_backtest.csv"
    rows = pd.read_csv(csv)
    assert len(rows) == 1
    row = rows.iloc[0]
    assert row["label"] == WEEK and row["last_session"] == "2024-06-14"
    assert row["sessions"] == len(sessions_between(date(2024, 5, 15), date(2024, 6, 14)))
    assert row["symbols"] == SYMBOLS and row["commission_usd"] > 0
    assert 0 <= row["max_drawdown"] < 1 and row["calibration"] in ("kept", "rejected")
    # the statistics beside the Sharpe: benchmarks, beta, excess returns, interval, DSR
    assert set(backtest.METRICS.names) <= set(rows.columns)
    for key in ("equal_weight", "spy"):
        figures = row[[f"{key}_total_return", f"{key}_sharpe", f"excess_t_{key}"]]
        assert np.isfinite(figures.astype(float)).all()
        assert 0 <= row[f"{key}_max_drawdown"] < 1
    assert row["sharpe_low"] < row["sharpe"] < row["sharpe_high"]
    assert "stationary bootstrap" in row["sharpe_interval_method"]
    assert 0 <= row["deflated_sharpe"] <= 1 and np.isfinite(row["beta_spy"])
    assert row["trials"] == 7, "the calibration tried the configured reading and six others"
    assert 0 < row["avg_turnover"] < 1
    for key in ("deflated_sharpe", "sharpe_low", "excess_t_equal_weight", "trials"):
        assert key in meta
    png = Path(meta["plot_path"].value)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the sessions are saved: their net returns give the row's Sharpe back
    saved = Path(meta["results_dir"].value)
    assert saved == tmp_path / "backtest" / WEEK
    daily = pd.read_parquet(saved / "daily.parquet")
    net = daily["nav"] / daily["nav_open"] - 1
    assert net.mean() / net.std() * np.sqrt(252) == pytest.approx(row["sharpe"], rel=1e-6)
    trades = pd.read_parquet(saved / "trades.parquet")
    assert trades["commission"].sum() == pytest.approx(row["commission_usd"], rel=1e-6)
    assert (saved / "positions.parquet").exists()
    entries = read_journal(tmp_path / "decision_log")
    entry = entries.iloc[-1]
    assert entry["kind"] == "evidence_calibration" and entry["decision"] == row["calibration"]
    assert entry["t_stat"] == pytest.approx(row["calibration_t"])
    assert len(json.loads(entry["folds"])) == 4 and entry["test_sessions"] == row["sessions"] - 8
    kept = (tmp_path / "calibration" / "evidence.json").exists()
    assert kept == (row["calibration"] == "kept"), "a kept reading is where the daily job reads it"
    assert verify_journal(tmp_path / "decision_log", key=TEST_KEY).ok
    # a second run of the partition replaces its row
    again = dg.materialize(
        [backtest.rolling_backtest],
        partition_key=WEEK,
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
        run_config={"ops": {"rolling_backtest": {"config": {"months": 1, "workers": 0}}}},
    )
    assert again.success
    rows = pd.read_csv(csv)
    assert rows["label"].tolist() == [WEEK], "one row per partition"
    assert rows["calibration"].iloc[0] == "off", "the second run's row"
    assert rows["trials"].iloc[0] == 1, "no sweep: one configuration tried"
    assert rows["run_utc"].iloc[0] >= row["run_utc"]


def test_weekly_schedule_requests_the_week_just_closed():
    saturday = datetime(2024, 6, 15, 14, 0, tzinfo=UTC)  # 10:00 New York
    request = weekly_schedule(dg.build_schedule_context(scheduled_execution_time=saturday))
    assert request.partition_key == WEEK
    assert backtest.week_end(WEEK, saturday) == date(2024, 6, 14)
    # mid-week, only the sessions already closed count
    wednesday = datetime(2024, 6, 12, 18, 0, tzinfo=UTC)  # 14:00 New York
    assert backtest.week_end(WEEK, wednesday) == date(2024, 6, 11)


def test_cli_prints_the_table_and_appends_the_row(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IBKR_DATA_DIR", str(tmp_path))
    code = cli.main(["backtest", "--months", "1", "--symbols", "8", "--end", "2024-06-28"])
    assert code == 0
    out = capsys.readouterr().out
    for line in (
        "Sharpe",
        "Sortino",
        "max drawdown",
        "hit rate",
        "metrics row appended",
        "Parquet",
    ):
        assert line in out
    rows = pd.read_csv(tmp_path / "metrics" / "rolling_backtest.csv")
    assert rows["label"].tolist() == ["cli"] and rows["symbols"].iloc[0] == 8
    assert (tmp_path / "plots" / "backtest-cli" / "equity.png").exists()
    assert (tmp_path / "backtest" / "cli" / "trades.parquet").exists()
