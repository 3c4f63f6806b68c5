"""The calibration's candidate replays over Dask (#19 item 3): on a 2-worker local cluster they
give the single-process run's results to the bit (daily returns, weights, the chosen reading and
its t), so do the technical features with the symbols split over the workers, and
IBKR_DASK_SCHEDULER points the fan-out at a scheduler this test starts (real ``dask scheduler``
and ``dask worker`` processes on loopback)."""

from __future__ import annotations

import json
import math
import operator
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from datetime import date
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ibkr_assets.assets.ib_rules import ib_execution
from ibkr_assets.partitions import sessions_between
from ibkr_assets.quant.backtest import BacktestResult, calibrate, prepare_days, signal_panel
from ibkr_assets.quant.backtest.calibration import candidate_evidence
from ibkr_assets.quant.backtest.replay import SessionWindow
from ibkr_assets.quant.evidence import EvidenceSettings
from ibkr_assets.quant.technical import technical_panel, technical_panel_by_symbols
from ibkr_assets.resources.compute import DaskMap, dask_client, dask_map, symbol_map
from ibkr_assets.settings.compute import DaskSettings
from tests.replay_fixtures import load_small_replay

SYMBOLS = 20
SESSIONS = sessions_between(date(2024, 6, 10), date(2024, 6, 21))
#: a short reading weighting every signal (t_threshold 0): 20 names give noisy daily ICs, and
#: the replays must trade
EVIDENCE = EvidenceSettings(sessions=40, t_threshold=0.0)
#: walk-forward folds small enough for ten sessions
FOLDS = {"train_sessions": 4, "fold_sessions": 2, "min_sessions": 8}
#: the dask command of this interpreter's environment
DASK = str(Path(sys.executable).with_name("dask"))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    data, settings, problems = load_small_replay(
        tmp_path_factory.mktemp("dask"), SYMBOLS, SESSIONS, EVIDENCE
    )
    assert not problems
    panel = signal_panel(data, settings)
    days = list(prepare_days(data, settings, panel, workers=0))
    grid = candidate_evidence(settings.evidence)
    grid = {k: grid[k] for k in ("configured", "sessions x0.5", "t_threshold +1", "prior_sd x2")}
    return data, settings, days, panel, grid


@pytest.fixture(scope="module")
def cluster():
    with dask_client(DaskSettings(workers=2)) as client:
        yield client


def _recorded(map_fn: Callable, into: list) -> Callable:
    """``map_fn`` that keeps what it returned in ``into``."""

    def run(function: Callable, items: Iterable) -> list:
        into.extend(map_fn(function, items))
        return into

    return run


def test_a_local_cluster_calibrates_as_one_process_does(world, cluster):
    data, settings, days, panel, grid = world
    execution = ib_execution()
    assert len(cluster.scheduler_info()["workers"]) == 2
    here: list[BacktestResult] = []
    there: list[BacktestResult] = []
    single = calibrate(
        days, data, settings, execution, panel, grid, **FOLDS, map_fn=_recorded(map, here)
    )
    spread = calibrate(
        days,
        data,
        settings,
        execution,
        panel,
        grid,
        **FOLDS,
        map_fn=_recorded(DaskMap(cluster), there),
    )
    assert len(here) == len(there) == len(grid)
    for name, a, b in zip(grid, here, there, strict=True):
        timed = [c for c in a.daily.columns if c.endswith("_seconds")]  # wall time, not results
        assert timed == ["solve_seconds"]
        pd.testing.assert_frame_equal(
            a.daily.drop(columns=timed), b.daily.drop(columns=timed), check_exact=True, obj=name
        )
        pd.testing.assert_frame_equal(a.positions, b.positions, check_exact=True, obj=name)
        pd.testing.assert_frame_equal(a.trades, b.trades, check_exact=True, obj=name)
    # the readings replay differently, so equal results are not a constant's
    returns = [r.daily["net_return"] for r in here]
    assert any(not r.equals(returns[0]) for r in returns[1:])
    assert here[0].positions["weight"].abs().sum() > 0

    assert spread.candidate == single.candidate and spread.kept == single.kept
    assert spread.folds == single.folds and spread.test_sessions == single.test_sessions
    assert spread.mean_difference == single.mean_difference
    assert spread.standard_error == single.standard_error
    assert _same(spread.t_stat, single.t_stat), (spread.t_stat, single.t_stat)
    assert spread.sharpe.keys() == single.sharpe.keys()
    assert all(_same(spread.sharpe[k], v) for k, v in single.sharpe.items())


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def test_the_map_runs_on_the_workers_in_order_and_raises_their_errors(cluster):
    fan_out = DaskMap(cluster)
    workers = set(cluster.run(os.getpid).values())
    pids = fan_out(partial(_pid_and, "x"), range(6))
    assert [item for _, item in pids] == [f"x{i}" for i in range(6)]
    assert {pid for pid, _ in pids} <= workers and os.getpid() not in workers
    with pytest.raises(ZeroDivisionError):
        fan_out(partial(operator.truediv, 1), [1, 0])


def _pid_and(prefix: str, item: int) -> tuple[int, str]:
    return os.getpid(), f"{prefix}{item}"


def _start(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [DASK, *args], stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def scheduler(tmp_path):
    """A real ``dask scheduler`` on loopback (port chosen by the OS, read from its scheduler
    file); its address."""
    info = tmp_path / "scheduler.json"
    process = _start(
        [
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(info),
        ],
        tmp_path / "scheduler.log",
    )
    try:
        deadline = time.monotonic() + 60
        while not info.exists() or not info.read_text():
            assert process.poll() is None, (tmp_path / "scheduler.log").read_text()
            assert time.monotonic() < deadline, "dask scheduler did not start within 60 s"
            time.sleep(0.2)
        yield json.loads(info.read_text())["address"]
    finally:
        _stop(process)


def test_ibkr_dask_scheduler_sends_the_work_to_that_cluster(scheduler, tmp_path, monkeypatch):
    monkeypatch.setenv("IBKR_DASK_SCHEDULER", scheduler)
    monkeypatch.setenv("IBKR_DASK_CONNECT_SECONDS", "3")
    with pytest.raises(ConnectionError, match="no worker joined"), dask_map():
        pass
    worker = _start(
        [
            "worker",
            scheduler,
            "--nworkers",
            "1",
            "--nthreads",
            "1",
            "--no-dashboard",
            "--host",
            "127.0.0.1",
        ],
        tmp_path / "worker.log",
    )
    try:
        monkeypatch.setenv("IBKR_DASK_CONNECT_SECONDS", "60")
        with dask_map() as fan_out:
            assert fan_out.client.scheduler.address == scheduler
            # a client runs no task itself: the scheduler's one worker computed these
            assert len(fan_out.client.scheduler_info()["workers"]) == 1
            assert fan_out(partial(operator.mul, 3), [1, 2, 3]) == [3, 6, 9]
    finally:
        _stop(worker)


def test_a_scheduler_that_does_not_answer_is_named(monkeypatch):
    monkeypatch.setenv("IBKR_DASK_SCHEDULER", "tcp://127.0.0.1:9")  # discard: nothing listens
    monkeypatch.setenv("IBKR_DASK_CONNECT_SECONDS", "2")
    refused = r"IBKR_DASK_SCHEDULER=tcp://127\.0\.0\.1:9: no Dask scheduler answered.*unset"
    with pytest.raises(ConnectionError, match=refused), dask_map():
        pass


def test_a_malformed_scheduler_address_is_refused(monkeypatch):
    monkeypatch.setenv("IBKR_DASK_SCHEDULER", "localhost:8786")
    with pytest.raises(ValueError, match="tcp://host:8786"):
        DaskSettings()
    monkeypatch.setenv("IBKR_DASK_SCHEDULER", "")
    assert DaskSettings().scheduler is None


def test_technical_features_with_the_symbols_split_over_workers_equal_one_pass(world, cluster):
    data, settings, _, _, _ = world
    window = SessionWindow(data.calendar)
    spans = [window.before(s, settings.history_sessions) for s in data.sessions]
    want = technical_panel(data.bars, spans)  # one pass over every symbol
    assert len(want.symbols) == SYMBOLS
    for map_fn, parts in ((DaskMap(cluster), 2), (map, 3), (map, SYMBOLS + 5)):
        got = technical_panel_by_symbols(data.bars, spans, map_fn, parts)
        for name in ("symbols", "values", "counts", "last_row", "sessions"):
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)


def test_the_evidence_with_the_symbols_on_the_cluster_is_the_one_process_evidence(world, cluster):
    data, settings, _, panel, _ = world
    split = signal_panel(data, settings, DaskMap(cluster), 2)
    pd.testing.assert_frame_equal(split.ic, panel.ic, check_exact=True)
    np.testing.assert_array_equal(split.cov, panel.cov)


def test_symbol_map_is_the_cluster_only_when_one_is_configured(monkeypatch):
    monkeypatch.delenv("IBKR_DASK_SCHEDULER", raising=False)
    with symbol_map() as (map_fn, parts):
        assert map_fn is map and parts == 1
