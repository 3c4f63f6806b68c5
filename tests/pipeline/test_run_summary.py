"""``ibkr-agent run`` tells the truth about data: what could not be fetched is named in the run's
summary; when it takes the universe's coverage below its threshold the coverage check fails the
run, naming the symbols; a watch-list IB knows nothing of fails the run, naming it, instead of
trading the day's movers.

The data gap is IB's own: the simulated gateway's HMDS answers 162 "HMDS query returned no data"
for one watch-list symbol (``history_gap_symbols`` of the ib-paper profile).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from ibkr_assets.cli.run import run_daily
from ibkr_assets.partitions import as_of
from ibkr_assets.settings import load_settings
from ibkr_sim.gateway import running_clock, start_gateway
from ibkr_sim.gateway.profile import IB_PAPER

SESSION = "2024-06-03"
SIM_SYMBOLS = 12
WATCHLIST = ["AAPL", "MSFT", "NVDA"]
#: HMDS has no history for MSFT; nothing else random
PAPER = IB_PAPER.with_options(
    history_gap_rate=0.0, farm_drops_per_day=0.0, history_gap_symbols=frozenset({"MSFT"})
)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("DAGSTER_HOME", "IBKR_ACCOUNT", "IBKR_RUN_TRIGGER", "IBKR_WATCHLIST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IBKR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("IBKR_SIM_SYMBOLS", str(SIM_SYMBOLS))
    return tmp_path


def _run_through_gateway(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> bool:
    with start_gateway(
        symbols=SIM_SYMBOLS,
        data_dir=data_dir / "gateway",
        clock=running_clock(as_of(SESSION)),
        profile=PAPER,
    ) as gateway:
        monkeypatch.setenv("IBKR_BACKEND", "tws")
        monkeypatch.setenv("IBKR_PORT", str(gateway.port))
        monkeypatch.setenv("IBKR_CLIENT_ID", "33")
        monkeypatch.setenv("IBKR_WATCHLIST", json.dumps(WATCHLIST))
        return run_daily(date.fromisoformat(SESSION), quiet=True, settings=load_settings())


def _out(capsys: pytest.CaptureFixture[str]) -> str:
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.slow
def test_data_ib_could_not_serve_below_the_coverage_threshold_fails_the_run_naming_it(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run_through_gateway(env, monkeypatch) is False
    out = _out(capsys)
    assert (
        "check failed: feature_matrix:universe_coverage: universe coverage 66.7% (2 of 3 "
        "symbols) below the required 95%; no row for 1: MSFT"
    ) in out
    assert f"data missing: daily_bars {SESSION}: 1 could not be fetched (MSFT: [IB 162]" in out
    assert "HMDS query returned no data" in out
    assert f"data missing: feature_matrix {SESSION}: 1 of 3 universe symbols have no row" in out
    assert "not clean (step(s) failed: feature_matrix; 1 check(s) failed)" in out


@pytest.mark.slow
def test_data_gaps_within_the_threshold_leave_the_run_green_and_are_named(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IBKR_MIN_UNIVERSE_COVERAGE", "0.6")
    assert _run_through_gateway(env, monkeypatch) is True
    out = _out(capsys)
    assert f"data missing: daily_bars {SESSION}: 1 could not be fetched (MSFT: [IB 162]" in out
    assert "check failed" not in out
    assert "success (with 2 data gap(s), named above" in out


def test_a_watchlist_ib_knows_nothing_of_fails_the_run_naming_the_symbols(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IBKR_WATCHLIST", '["NOTREAL", "ZZZZ"]')
    assert run_daily(date.fromisoformat(SESSION), quiet=True, settings=load_settings()) is False
    out = _out(capsys)
    assert "IB knows none of the 2 watch-list symbol(s) (NOTREAL: [IB 200]" in out
    assert "ZZZZ: [IB 200]" in out and "fix IBKR_WATCHLIST" in out
    assert "not clean (step(s) failed: universe)" in out
    assert not (env / "reports" / f"order_ticket_{SESSION}.json").exists(), "no ticket of movers"
