"""Errors a new user meets first: each is one line naming the date, variable, key or file and
what to do, with exit code 2 from the CLI, and the code location still loads with a bad setting.
"""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from datetime import date
from pathlib import Path

import pytest
from pydantic import ValidationError
from rich.console import Console

from ibkr_assets.cli import run as cli_run
from ibkr_assets.config import PipelineConfig
from ibkr_assets.decide_config import DecideConfig
from ibkr_assets.errors import ConfigurationError
from ibkr_assets.partitions import check_session
from ibkr_assets.resources.ib import IBResource
from ibkr_assets.resources.storage import StorageResource
from ibkr_assets.settings import load_settings

PROJECT = Path(__file__).resolve().parents[2]
SESSION = "2024-06-03"
TYPO = "max_gros: 1.0\n"
#: Settings a test of the CLI must not inherit from the shell that runs the tests.
_CLEARED = ("IBKR_DECIDE_CONFIG", "IBKR_WATCHLIST", "IBKR_CLIENT_ID", "DAGSTER_HOME")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    return env | {"IBKR_DATA_DIR": str(tmp_path), "IBKR_SIM_SYMBOLS": "30"} | extra


def _cli(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ibkr_assets.cli", *args],
        env=_env(tmp_path, **extra),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a refused command (exit code 2)."""
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("ibkr-agent: ") and "Traceback" not in done.stderr
    return lines[0]


# -- the CLI: one line on stderr, exit code 2 ----------------------------------------------------


def test_a_sunday_names_the_nearest_sessions(tmp_path: Path) -> None:
    line = _one_line_error(_cli(tmp_path, "run", "--date", "2026-11-22"))
    assert "2026-11-22 (Sunday) is not an NYSE session" in line
    assert "Friday 2026-11-20 before and Monday 2026-11-23 after" in line
    assert not (tmp_path / ".dagster").exists()  # refused before any run was created


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"IBKR_WATCHLIST": '["AAPL",'}, "universe): not a JSON list (Expecting value"),
        ({"IBKR_WATCHLIST": "AAPL;MSFT"}, "not a ticker symbol: 'AAPL;MSFT'"),
        ({"IBKR_CLIENT_ID": "abc"}, "IBKR_CLIENT_ID='abc' (API clientId"),
    ],
    ids=["watchlist-json", "watchlist-separator", "client-id"],
)
def test_a_malformed_variable_is_named(tmp_path: Path, extra: dict[str, str], named: str) -> None:
    line = _one_line_error(_cli(tmp_path, "run", "--date", SESSION, **extra))
    assert named in line


def test_a_decide_typo_names_the_key_and_the_closest(tmp_path: Path) -> None:
    config = tmp_path / "decide.yaml"
    config.write_text(TYPO)
    done = _cli(tmp_path, "run", "--date", SESSION, IBKR_DECIDE_CONFIG=str(config))
    hint = "unknown key 'max_gros' (did you mean 'max_gross'?)"
    assert f"IBKR_DECIDE_CONFIG={config}: {hint}" in _one_line_error(done)


def _corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a database, overwritten by mistake\n" * 200)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("state", ["sim/paper.sqlite", "warehouse.duckdb"])
def test_a_damaged_state_file_is_named(tmp_path: Path, state: str) -> None:
    damaged = _corrupt(tmp_path / state)
    started = time.monotonic()
    line = _one_line_error(_cli(tmp_path, "run", "--date", SESSION))
    assert time.monotonic() - started < 60  # no waiting on retries of a file that cannot open
    assert f"failed at start, nothing was materialised: {damaged}" in line or str(damaged) in line
    assert f"mv {damaged} {damaged}.damaged" in line
    assert not (tmp_path / "staging").exists()


@pytest.mark.slow
def test_the_code_location_loads_with_a_typo_and_the_run_fails_with_it(tmp_path: Path) -> None:
    config = tmp_path / "decide.yaml"
    config.write_text(TYPO)
    script = textwrap.dedent(
        f"""
        import dagster as dg
        from ibkr_assets.definitions import defs
        from ibkr_assets.jobs import DAILY_JOB_NAME

        print("decide:", defs.resources["decide"].problem)
        result = defs.resolve_job_def(DAILY_JOB_NAME).execute_in_process(
            instance=dg.DagsterInstance.ephemeral(), partition_key="{SESSION}",
            raise_on_error=False,
        )
        steps = [e for e in result.all_events if e.event_type_value == "STEP_START"]
        [failure] = [e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE"]
        error = failure.event_specific_data.error
        while error.cause is not None:
            error = error.cause
        print("success:", result.success, "steps:", len(steps))
        print("failure:", error.message.strip())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=_env(tmp_path, IBKR_DECIDE_CONFIG=str(config)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    hint = "unknown key 'max_gros' (did you mean 'max_gross'?)"
    assert f"decide: IBKR_DECIDE_CONFIG={config}: {hint}" in done.stdout
    assert "success: False steps: 0" in done.stdout
    assert f"failure: ibkr_assets.errors.ConfigurationError: IBKR_DECIDE_CONFIG={config}" in (
        done.stdout
    )


# -- the same errors in process ------------------------------------------------------------------


def test_contradictory_limits_are_refused_naming_both() -> None:
    with pytest.raises(ValidationError, match=r"max_weight 0\.5 is above max_gross 0\.4"):
        DecideConfig(max_weight=0.5, max_gross=0.4, sector_cap=None)
    with pytest.raises(ValidationError, match=r"concentration_max 0\.5 is above sector_max 0\.4"):
        DecideConfig(concentration_max=0.5, sector_max=0.4)
    with pytest.raises(ValidationError, match=r"max_weight 0\.4 is above sector_cap 0\.3"):
        DecideConfig(max_weight=0.4, sector_cap=0.3)
    # a long-short book may hold one name above its sector's net cap (shorts offset it)
    assert DecideConfig(max_weight=0.4, sector_cap=0.3, long_only=False).max_weight == 0.4


def test_contradictory_limits_in_the_yaml_name_the_file_and_both(tmp_path, monkeypatch) -> None:
    config = tmp_path / "decide.yaml"
    config.write_text("max_weight: 0.5\nmax_gross: 0.4\nsector_cap: null\n")
    monkeypatch.setenv("IBKR_DECIDE_CONFIG", str(config))
    with pytest.raises(ConfigurationError, match=r"max_weight 0\.5 is above max_gross 0\.4"):
        load_settings().checked("decide")
    assert "max_gross 0.4" in (DecideConfig.from_settings(load_settings()).problem or "")


def test_non_sessions_name_the_nearest_sessions() -> None:
    thanksgiving = r"an exchange holiday.*Wednesday 2026-11-25 before and Friday 2026-11-27"
    with pytest.raises(ConfigurationError, match=thanksgiving):
        check_session(date(2026, 11, 26))
    with pytest.raises(ConfigurationError, match="before the first session with a partition"):
        check_session(date(2023, 12, 29))
    with pytest.raises(ConfigurationError, match="has no partition yet"):
        check_session(date(2099, 1, 5))
    assert check_session(date(2024, 6, 3)) == "2024-06-03"


def test_a_malformed_client_id_is_carried_by_the_resource(monkeypatch) -> None:
    monkeypatch.setenv("IBKR_CLIENT_ID", "abc")
    deferred = IBResource.from_settings(load_settings())
    assert "IBKR_CLIENT_ID='abc'" in (deferred.problem or "")
    with pytest.raises(ConfigurationError, match="IBKR_CLIENT_ID='abc'"):
        deferred.get_broker()  # the MCP server's path: the same message, no connection tried


def test_a_watchlist_may_be_comma_separated(monkeypatch) -> None:
    monkeypatch.setenv("IBKR_WATCHLIST", "AAPL, MSFT,BRK B")
    assert PipelineConfig.from_settings(load_settings()).watchlist == ["AAPL", "MSFT", "BRK B"]


def test_a_damaged_warehouse_fails_at_once(tmp_path: Path) -> None:
    storage = StorageResource(data_dir=str(tmp_path))
    _corrupt(storage.warehouse_path)
    started = time.monotonic()
    with (
        pytest.raises(ConfigurationError, match="not a valid DuckDB database file"),
        storage.warehouse(),
    ):
        pass
    assert time.monotonic() - started < 5  # a lock is waited for, a damaged file is not


def test_only_this_runs_files_are_listed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("IBKR_DATA_DIR", str(tmp_path))
    out = io.StringIO()
    monkeypatch.setattr(cli_run, "console", Console(file=out, width=400))
    reports = tmp_path / "reports"
    reports.mkdir()
    ticket = reports / f"order_ticket_{SESSION}.json"
    ticket.write_text("{}")
    os.utime(ticket, (time.time() - 86_400, time.time() - 86_400))  # an earlier run's ticket
    started = time.time()
    recommendation = reports / f"recommendation_{SESSION}.md"
    recommendation.write_text("# this run\n")
    cli_run.print_outputs(date.fromisoformat(SESSION), started)
    lines = out.getvalue().splitlines()
    [listed] = [line for line in lines if str(recommendation) in line]
    assert "earlier" not in listed
    [stale] = [line for line in lines if str(ticket) in line]
    assert "not written by this run" in stale and "from an earlier run" in stale


# -- make dev ------------------------------------------------------------------------------------


def _plain(line: str) -> str:
    """``line`` without terminal colour codes."""
    return re.sub(r"\x1b\[[0-9;]*m", "", line)


@pytest.mark.slow
def test_make_dev_starts_without_warnings(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # -o: the installed venv counts as up to date (no reinstall inside the test)
    dev = subprocess.Popen(
        ["make", "--no-print-directory", "-o", ".venv/.installed", "dev"],
        cwd=PROJECT,
        env=_env(tmp_path, DAGSTER_PORT=str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # make, dg and Dagster's processes: one group to stop
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 240
        assert dev.stdout is not None
        for line in dev.stdout:
            lines.append(line)
            if "Serving dagster-webserver" in line or time.monotonic() > deadline:
                break
    finally:
        os.killpg(dev.pid, signal.SIGINT)
        try:
            rest, _ = dev.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
            rest, _ = dev.communicate()
    output = "".join(lines)
    assert "Serving dagster-webserver" in output, output + rest
    warned = [
        line
        for line in output.splitlines()
        if re.search("warn", line, re.IGNORECASE)
        # the run-retry daemon (dagster.yaml's run_retries) on a fresh instance: it says it will
        # look only at runs failing from now on, once per event type
        and "EventLogConsumerDaemon - WARNING - No cursor for event type" not in _plain(line)
    ]
    assert warned == [], warned
    assert (tmp_path / ".dagster" / "dagster.yaml").exists()  # the instance `ibkr-agent` uses
