"""The pipeline tools over streamable HTTP: launching a run (trading on only, refused while
trading is halted, one run at a time per data root, its own IB clientId, rate-limited, reaped,
its outcome reported) and feature_row while a run holds the warehouse lock.

A stand-in pipeline CLI (a shell script) replaces ``ibkr-agent`` so a run takes a known time,
prints what it was given and exits with a known code.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pandas as pd
import pytest
from mcp import Client

from ibkr_assets.settings import MCPSettings

from .conftest import SESSION_TIME, SIM_SYMBOLS, Running, serve_http, sim_broker_factory

pytestmark = pytest.mark.anyio


def fake_cli(folder: Path, seconds: float, exit_code: int, gate: Path | None = None) -> str:
    """A pipeline CLI that logs its arguments and clientId, runs ``seconds`` (or, with ``gate``,
    until that file exists, at most 60 s) and exits."""
    script = folder / f"fake-agent-{seconds:g}-{exit_code}"
    wait = (
        f"i=0; while [ ! -f {gate} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n"
        if gate
        else f"sleep {seconds}\n"
    )
    script.write_text(
        "#!/bin/sh\n"
        'echo "args: $*"\n'
        'echo "client: $IBKR_CLIENT_ID data: $IBKR_DATA_DIR trigger: $IBKR_RUN_TRIGGER"\n'
        + wait
        + 'echo "done"\n'
        + f"exit {exit_code}\n"
    )
    script.chmod(0o755)
    return str(script)


@contextmanager
def server(data: Path, broker_factory=None, **overrides) -> Iterator[Running]:
    overrides = {"trading": True, "user": "pytest", "pipeline_interval_min": 0, **overrides}
    settings = MCPSettings(data_dir=data, **overrides)
    with serve_http(settings, broker_factory=broker_factory or sim_broker_factory(data)) as r:
        yield r


async def call(running: Running, name: str, args: dict | None = None):
    async with Client(running.url) as client:
        return await client.call_tool(name, args or {})


async def wait_finished(running: Running, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = (await call(running, "pipeline_run_status")).structured_content
        if status["state"] != "running" or time.monotonic() > deadline:
            return status
        await anyio.sleep(0.2)


def is_zombie(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z"


async def test_launcher_exists_only_with_trading_on(tmp_path):
    settings = MCPSettings(data_dir=tmp_path)
    with serve_http(settings, broker_factory=sim_broker_factory(tmp_path)) as running:
        async with Client(running.url) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            status = await client.call_tool("pipeline_run_status", {})
    assert "run_daily_pipeline" not in names and "pipeline_run_status" in names
    assert status.is_error and "no pipeline run launched through MCP yet" in status.content[0].text


async def test_one_run_at_a_time_with_its_own_client_id_reaped_and_reported(tmp_path):
    cli = fake_cli(tmp_path, seconds=1.5, exit_code=3)
    with server(tmp_path, agent_cli=cli) as running:
        args = {"date": "2026-11-20", "reason": "re-run after a data fix"}
        launched = await call(running, "run_daily_pipeline", args)
        assert not launched.is_error, launched.content[0].text
        run = launched.structured_content
        expected_id = running.server.app_state.order_guard.settings.client_id + 1000
        assert run["state"] == "running" and run["client_id"] == expected_id
        assert run["command"][-3:] == ["run", "--date", "2026-11-20"]

        again = await call(running, "run_daily_pipeline", args)
        assert again.is_error
        text = again.content[0].text
        assert f"already running: pid {run['pid']}, started at" in text
        assert run["log_path"] in text

        assert (await call(running, "pipeline_run_status")).structured_content["state"] == (
            "running"
        )
        done = await wait_finished(running)
    assert done["state"] == "failed" and done["exit_code"] == 3 and done["finished_at"]
    assert done["log_tail"] == [
        "args: run --date 2026-11-20",
        f"client: {expected_id} data: {tmp_path} trigger: mcp",  # the run's ibkr/trigger tag
        "done",
    ]
    assert not is_zombie(run["pid"])
    audit = [json.loads(line) for line in (tmp_path / "decision_log" / "mcp_orders.jsonl").open()]
    launch = next(e for e in audit if e["action"] == "run_daily_pipeline")
    assert launch["why"] == "re-run after a data fix" and launch["what"]["pid"] == run["pid"]


async def test_a_run_launched_by_another_server_blocks_this_one(tmp_path):
    release = tmp_path / "release"  # the run lasts until the second server has been refused
    cli = fake_cli(tmp_path, seconds=0, exit_code=0, gate=release)
    with server(tmp_path, agent_cli=cli, pipeline_client_id=77) as first:
        run = (await call(first, "run_daily_pipeline", {"reason": "nightly"})).structured_content
        assert run["client_id"] == 77
        with server(tmp_path, agent_cli=cli) as second:
            refused = await call(second, "run_daily_pipeline", {"reason": "again"})
            assert refused.is_error and f"pid {run['pid']}" in refused.content[0].text
        release.touch()
        done = await wait_finished(first)
    assert done["state"] == "succeeded" and done["exit_code"] == 0


async def test_a_run_whose_end_was_not_recorded_is_unknown(tmp_path):
    """The server that launched it stopped before the run ended: no exit code, lock free."""
    (tmp_path / "mcp").mkdir()
    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "mcp_run_20261120T143000.log"
    log.write_text("".join(f"line {i}\n" for i in range(60)))
    record = {
        "state": "running",
        "date": "latest",
        "pid": 999_999,
        "client_id": 1001,
        "command": ["ibkr-agent", "run"],
        "started_at": "2026-11-20T14:30:00Z",
        "log_path": str(log),
    }
    (tmp_path / "mcp" / "pipeline_run.json").write_text(json.dumps(record))
    with server(tmp_path) as running:
        status = (await call(running, "pipeline_run_status", {"lines": 3})).structured_content
    assert status["state"] == "unknown" and status["exit_code"] is None
    assert status["log_tail"] == ["line 57", "line 58", "line 59"]


async def test_rate_limited_between_launches(tmp_path):
    cli = fake_cli(tmp_path, seconds=0, exit_code=0)
    with server(tmp_path, agent_cli=cli, pipeline_interval_min=10) as running:
        first = await call(running, "run_daily_pipeline", {"reason": "nightly"})
        assert not first.is_error, first.content[0].text
        assert (await wait_finished(running))["state"] == "succeeded"
        second = await call(running, "run_daily_pipeline", {"reason": "again"})
    assert second.is_error
    text = second.content[0].text
    assert "one launch per 10 minutes (IBKR_MCP_PIPELINE_INTERVAL_MIN)" in text
    assert "next at" in text


async def test_refused_under_the_kill_switch_and_read_only(tmp_path):
    cli = fake_cli(tmp_path, seconds=0, exit_code=0)
    (tmp_path / "KILL").touch()
    with server(tmp_path, agent_cli=cli) as running:
        killed = await call(running, "run_daily_pipeline", {"reason": "nightly"})
    assert killed.is_error and "kill switch" in killed.content[0].text
    (tmp_path / "KILL").unlink()

    from ibkr_assets.broker import BrokerSettings, connect

    def read_only(settings: MCPSettings):
        broker = BrokerSettings(
            backend="sim",
            data_dir=tmp_path,
            sim_now=SESSION_TIME,
            sim_symbols=SIM_SYMBOLS,
            readonly=True,
        )
        return connect(broker, settings.order_limits())

    with server(tmp_path, broker_factory=read_only, agent_cli=cli) as running:
        refused = await call(running, "run_daily_pipeline", {"reason": "nightly"})
    assert refused.is_error and "IBKR_READONLY" in refused.content[0].text
    assert not (tmp_path / "mcp" / "pipeline_run.json").exists()  # nothing was launched
    assert not (tmp_path / "logs").exists()


# -- feature_row and the warehouse lock ---------------------------------------------------------
@contextmanager
def warehouse_locked(path: Path, seconds: float) -> Iterator[subprocess.Popen]:
    """Another process holding the warehouse's write lock for ``seconds``."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); print('locked', "
            "flush=True); time.sleep(float(sys.argv[2]))",
            str(path),
            str(seconds),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.wait(timeout=30)


async def test_feature_row_waits_for_the_warehouse_or_says_it_is_busy(tmp_path):
    import duckdb

    (tmp_path / "features").mkdir()
    pd.DataFrame({"symbol": ["AAPL"], "rsi": [55.0]}).to_parquet(
        tmp_path / "features" / "2026-11-20.parquet"
    )
    warehouse = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create table alpha_scores (partition varchar, symbol varchar, alpha double)")
        con.execute("insert into alpha_scores values ('2026-11-20', 'AAPL', 0.42)")
    with server(tmp_path, warehouse_wait_s=0.3) as running, warehouse_locked(warehouse, 2.0):
        busy = await call(running, "feature_row", {"symbol": "AAPL"})
        app = running.server.app_state
        app.settings = app.settings.model_copy(update={"warehouse_wait_s": 10.0})
        waited = await call(running, "feature_row", {"symbol": "AAPL"})
    assert busy.is_error and "is busy" in busy.content[0].text
    assert "0.3 s (IBKR_MCP_WAREHOUSE_WAIT_S)" in busy.content[0].text
    assert not waited.is_error, waited.content[0].text
    assert waited.structured_content["alpha"]["alpha"] == pytest.approx(0.42)
