"""Faults during ingest (issue #16): the simulated IB Gateway killed (``kill -9``) or restarted
while the daily run is fetching, and a second client holding the run's client id (326).

Each run is ``ibkr-agent run``'s own :func:`~ibkr_assets.cli.run.run_daily` against the gateway
over loopback (``IBKR_BACKEND=tws``), on a small world (a 12-stock market, a 5-symbol watch-list);
the fault is set off when the run's ``daily_bars`` step starts, read from the run's events in
the Dagster instance. After each: a run that must stop fails within bounded time, naming why,
without step retries that cannot help; a rerun of the session completes, and the warehouse then
holds the session's data in full (nothing lost). Daily bars fetched before a lost connection
stay in the cache, so the retry asks IB only for the rest.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from ibkr_assets.assets import bar_cache
from ibkr_assets.assets.bar_cache import cached_bars
from ibkr_assets.broker import BrokerSettings, connect
from ibkr_assets.broker.errors import NotConnected
from ibkr_assets.broker.sim import simulated_stocks
from ibkr_assets.cli.instance import dagster_instance
from ibkr_assets.cli.run import run_daily
from ibkr_assets.partitions import as_of, previous_sessions
from ibkr_assets.resources import build_resources
from ibkr_assets.settings import load_settings
from ibkr_sim.gateway import GatewayHandle, running_clock, start_gateway
from ibkr_sim.gateway.profile import IB_PAPER

#: A hang guard, not a speed bound: two runs of the daily job on a machine that CI shares with a
#: PostgreSQL server and a Dagster daemon (tests/instance) can take a minute each.
pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]

SESSION = "2024-06-03"
SIM_SYMBOLS = 12
WATCHLIST = simulated_stocks(7, SIM_SYMBOLS)[:5]
CLIENT_ID = 31
#: seconds the backend reconnects after a drop before a request fails (IBKR_RECONNECT_SECONDS)
RECONNECT_SECONDS = 3.0
#: no random farm drops or history gaps: each test sets off its own fault
PAPER = IB_PAPER.with_options(history_gap_rate=0.0, farm_drops_per_day=0.0)
#: The steps that ask IB (social_chatter resolves its symbols there: a lost connection fails it)
INGEST = {
    "top_movers",
    "universe",
    "quotes",
    "daily_bars",
    "fundamentals",
    "headlines",
    "social_chatter",
}


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The settings of ``ibkr-agent run`` against a gateway on loopback (port set per test)."""
    for name in ("DAGSTER_HOME", "IBKR_ACCOUNT", "IBKR_RUN_TRIGGER"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "data"
    for name, value in {
        "IBKR_DATA_DIR": str(root),
        "IBKR_SIM_SYMBOLS": str(SIM_SYMBOLS),
        "IBKR_BACKEND": "tws",
        "IBKR_HOST": "127.0.0.1",
        "IBKR_CLIENT_ID": str(CLIENT_ID),
        "IBKR_WATCHLIST": json.dumps(WATCHLIST),
        "IBKR_RECONNECT_SECONDS": str(RECONNECT_SECONDS),
    }.items():
        monkeypatch.setenv(name, value)
    return root


def _gateway(data_dir: Path, profile=PAPER) -> GatewayHandle:
    """A simulated gateway in this process, its clock at the session's run time."""
    return start_gateway(
        symbols=SIM_SYMBOLS,
        data_dir=data_dir / "gateway",
        clock=running_clock(as_of(SESSION)),
        profile=profile,
    )


@contextmanager
def _gateway_process(data_dir: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``ibkr-sim gateway`` as a subprocess (so it can be killed) and its port."""
    command = [
        sys.executable, "-m", "ibkr_sim.cli", "gateway", "--port", "0",
        "--symbols", str(SIM_SYMBOLS), "--data-dir", str(data_dir / "gateway"),
        "--now", as_of(SESSION).isoformat(), "--log-level", "WARNING",
    ]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert "listening on" in banner, banner
        yield proc, int(banner.rsplit(":", 1)[1])
    finally:
        proc.kill()
        proc.wait()


def _run(when_step_starts: Callable[[], None] | None = None, step: str = "daily_bars") -> bool:
    """``ibkr-agent run --date SESSION`` in this process (settings from the environment); calls
    ``when_step_starts`` as soon as ``step`` has started. True when the run is clean."""
    outcome: dict[str, bool] = {}
    settings = load_settings()
    worker = threading.Thread(
        target=lambda: outcome.update(ok=run_daily(date.fromisoformat(SESSION), True, settings))
    )
    worker.start()
    if when_step_starts is not None:
        instance = dagster_instance()
        while worker.is_alive() and not _started(instance, step):
            time.sleep(0.02)
        when_step_starts()
    worker.join(240)
    assert not worker.is_alive(), "the run did not end"
    return outcome["ok"]


def _started(instance: dg.DagsterInstance, step: str) -> bool:
    runs = instance.get_runs(limit=1)
    return bool(runs) and any(
        r.dagster_event is not None
        and r.dagster_event.event_type == dg.DagsterEventType.STEP_START
        and r.dagster_event.step_key == step
        for r in instance.all_logs(runs[0].run_id)
    )


def _seconds_to_fail(since: float) -> dict[str, float]:
    """Per step of the last run that failed: seconds from when it started (or from ``since``, a
    wall-clock time, if it started earlier) to its failure. A step's own wait for IB, free of
    the time the run spends on other steps (which a loaded machine stretches)."""
    instance = dagster_instance()
    records = instance.all_logs(instance.get_runs(limit=1)[0].run_id)
    started: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for record in records:
        event = record.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            started[str(event.step_key)] = record.timestamp
        elif event.event_type == dg.DagsterEventType.STEP_FAILURE:
            step = str(event.step_key)
            seconds[step] = record.timestamp - max(started[step], since)
    return seconds


def _last_run_events() -> tuple[dg.DagsterRun, list[dg.DagsterEvent]]:
    instance = dagster_instance()
    run = instance.get_runs(limit=1)[0]
    return run, [r.dagster_event for r in instance.all_logs(run.run_id) if r.dagster_event]


def _steps(events: list[dg.DagsterEvent], kind: dg.DagsterEventType) -> set[str]:
    return {str(e.step_key) for e in events if e.event_type == kind}


def _assert_session_complete(data_dir: Path) -> None:
    """The warehouse holds the session in full: every watch-list symbol's 600 daily bars, its
    quote and its row of the feature matrix."""
    day = f"timestamp '{SESSION}'"
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as conn:
        bars = conn.execute(
            f"select symbol, count(*) from ingest.daily_bars where partition_date = {day} "
            "group by symbol"
        ).fetchall()
        quoted, featured = (
            {
                s
                for (s,) in conn.sql(
                    f"select symbol from {t} where partition_date = {day}"
                ).fetchall()
            }
            for t in ("ingest.quotes", "features.feature_matrix")
        )
    assert dict(bars) == dict.fromkeys(WATCHLIST, 600)
    assert quoted == featured == set(WATCHLIST)


@pytest.mark.slow
def test_gateway_killed_mid_ingest_fails_in_bounded_time_then_a_rerun_completes(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    killed: list[float] = []
    with _gateway_process(data_dir) as (gateway, port):
        monkeypatch.setenv("IBKR_PORT", str(port))

        def kill() -> None:
            os.kill(gateway.pid, signal.SIGKILL)
            killed.append(time.time())

        assert _run(kill) is False
    run, events = _last_run_events()
    failed = _steps(events, dg.DagsterEventType.STEP_FAILURE)
    # the steps asking IB after the kill fail; none of them is retried (IB stays unreachable)
    assert failed and failed <= INGEST, failed
    assert "daily_bars" in failed | _steps(events, dg.DagsterEventType.STEP_SUCCESS)
    assert not _steps(events, dg.DagsterEventType.STEP_UP_FOR_RETRY)
    # each step asking IB gives up after the reconnect budget (plus the step's own bookkeeping)
    waits = _seconds_to_fail(since=killed[0])
    assert set(waits) == failed and max(waits.values()) < RECONNECT_SECONDS + 10, waits
    out = " ".join(capsys.readouterr().out.split())
    assert "IBKR_RECONNECT_SECONDS" in out and "cannot reach TWS / IB Gateway" in out
    assert f"run {run.run_id} for {SESSION}: not clean (step(s) failed:" in out

    with _gateway_process(data_dir) as (_, port):  # IB is back: the same session again
        monkeypatch.setenv("IBKR_PORT", str(port))
        assert _run() is True
    _assert_session_complete(data_dir)


@pytest.mark.slow
def test_gateway_restart_within_the_reconnect_budget_is_survived(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IBKR_RECONNECT_SECONDS", "20")
    with _gateway(data_dir) as gateway:
        monkeypatch.setenv("IBKR_PORT", str(gateway.port))
        assert _run(lambda: gateway.trigger("restart", seconds=2.0)) is True
    _, events = _last_run_events()
    assert not _steps(events, dg.DagsterEventType.STEP_FAILURE)
    assert "success" in capsys.readouterr().out
    _assert_session_complete(data_dir)


@pytest.mark.slow
def test_gateway_down_longer_than_the_budget_fails_only_the_affected_assets_then_rerun_completes(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _gateway(data_dir) as gateway:
        monkeypatch.setenv("IBKR_PORT", str(gateway.port))
        assert _run(lambda: gateway.trigger("restart", seconds=RECONNECT_SECONDS + 4)) is False
        _, events = _last_run_events()
        failed = _steps(events, dg.DagsterEventType.STEP_FAILURE)
        succeeded = _steps(events, dg.DagsterEventType.STEP_SUCCESS)
        # the assets that asked IB while it was down failed; those before it did not, and
        # what does not depend on a failed asset still ran (the run's other steps are skipped)
        assert failed and failed <= INGEST, failed
        assert {"top_movers", "universe"} <= succeeded
        assert not _steps(events, dg.DagsterEventType.STEP_UP_FOR_RETRY)
        assert _run() is True  # the gateway is back: a rerun of the session completes
    _assert_session_complete(data_dir)


def test_a_client_id_in_use_fails_the_run_at_once_naming_it(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with _gateway(data_dir) as gateway:
        monkeypatch.setenv("IBKR_PORT", str(gateway.port))
        settings = BrokerSettings(
            backend="tws", host="127.0.0.1", port=gateway.port, client_id=CLIENT_ID
        )
        holder = connect(settings)  # another API client, holding the run's client id
        try:
            started = time.monotonic()
            assert _run() is False
            seconds = time.monotonic() - started
        finally:
            holder.close()
    err = " ".join(capsys.readouterr().err.split())
    assert "failed at start, nothing was materialised" in err
    assert "[IB 326]" in err and f"clientId {CLIENT_ID}" in err and "IBKR_CLIENT_ID" in err
    assert seconds < 30, "IB's refusal ends the attempt: no timeout, no retry"
    _, events = _last_run_events()
    assert not _steps(events, dg.DagsterEventType.STEP_START)


class _DropsAt:
    """A broker over a connection (not an in-process one) whose connection drops at its ``nth``
    call of ``method`` and stays down: ``history_frame``, asked one request per symbol, or
    ``history_frames``, many symbols a call (tws)."""

    market_data_in_process = False

    def __init__(self, broker: Any, nth: int, method: str = "history_frame") -> None:
        self.broker, self.nth, self.method, self.calls = broker, nth, method, 0
        self.history_together = method == "history_frames"

    def __getattr__(self, name: str) -> Any:
        if name != self.method:
            return getattr(self.broker, name)

        def dropping(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.calls >= self.nth:
                raise NotConnected("connection to IB lost: [Errno 32] Broken pipe")
            return getattr(self.broker, name)(*args, **kwargs)

        return dropping


#: the sessions of bars the drop tests ask for
NEEDED = previous_sessions(date.fromisoformat(SESSION), 30)


def _bar_fetch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> tuple[Any, Any, Callable[[Any], tuple]]:
    """The storage and broker of a fresh data root, and ``cached_bars`` of the watch-list's
    :data:`NEEDED` sessions through a given broker, ``workers`` requests at a time."""
    monkeypatch.setenv("IBKR_SIM_SYMBOLS", str(SIM_SYMBOLS))
    resources = build_resources(str(tmp_path))
    storage, broker = resources["storage"], resources["ib"].broker_at(as_of(SESSION))
    contracts = [broker.resolve(s) for s in WATCHLIST]
    session = date.fromisoformat(SESSION)

    def fetch(source: Any) -> tuple:
        return cached_bars(storage, source, contracts, NEEDED, as_of(SESSION), session, workers)

    return storage, broker, fetch


@pytest.mark.parametrize("workers", [1, 3])
def test_bars_fetched_before_a_drop_are_kept_and_the_retry_asks_only_for_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    storage, broker, fetch = _bar_fetch(tmp_path, monkeypatch, workers)

    dropping = _DropsAt(broker, nth=3)
    with pytest.raises(NotConnected, match="Broken pipe"):  # the step's error, not the symbols'
        fetch(dropping)
    kept = storage.cached_bars(WATCHLIST, NEEDED[0], NEEDED[-1])
    per_symbol = kept.groupby("symbol").size()
    assert len(per_symbol) >= 2 and (per_symbol == len(NEEDED)).all(), "whole symbols kept"
    if workers == 1:
        assert dropping.calls == 3, "nothing is asked once the connection is lost"
    bars, fetched, failed, requests = fetch(broker)  # the retry
    assert requests == len(WATCHLIST) - len(per_symbol) and not failed
    assert set(fetched["symbol"]).isdisjoint(per_symbol.index)
    assert len(bars) == len(WATCHLIST) * len(NEEDED)


def test_batches_fetched_before_a_drop_are_kept_and_the_retry_asks_only_for_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bar_cache, "HISTORY_BATCH", 2)  # 5 symbols: calls of 2, 2 and 1
    storage, broker, fetch = _bar_fetch(tmp_path, monkeypatch, workers=1)

    dropping = _DropsAt(broker, nth=3, method="history_frames")
    with pytest.raises(NotConnected, match="Broken pipe"):  # the step's error, not the symbols'
        fetch(dropping)
    assert dropping.calls == 3, "nothing is asked once the connection is lost"
    kept = storage.cached_bars(WATCHLIST, NEEDED[0], NEEDED[-1])
    per_symbol = kept.groupby("symbol").size()
    assert sorted(per_symbol.index) == sorted(WATCHLIST[:4]), "the two calls answered are kept"
    assert (per_symbol == len(NEEDED)).all()
    retry = _DropsAt(broker, nth=99, method="history_frames")  # connected again
    bars, fetched, failed, requests = fetch(retry)
    assert requests == 1 and not failed and set(fetched["symbol"]) == {WATCHLIST[4]}
    assert len(bars) == len(WATCHLIST) * len(NEEDED)
