"""A run that cannot reach IB fails at start, once, and leaves good data alone; retries of the
ingest assets come from their one RetryPolicy, for transient errors only.

The end-to-end test runs ``ibkr-agent run`` with ``IBKR_BACKEND=tws`` against a closed loopback
port, on an on-disk Dagster instance where the same session was materialised before (on the
simulator) and where an earlier run left that session's order ticket.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from ibkr_assets.assets import ingest
from ibkr_assets.assets.ingest import INGEST_RETRY, transient_retries_only
from ibkr_assets.assets.market_data import fetch_each
from ibkr_assets.broker.errors import (
    ContractNotFound,
    DuplicateClientId,
    NotConnected,
    PacingViolation,
)
from ibkr_assets.broker.models import Contract
from ibkr_assets.broker.settings import BrokerSettings
from ibkr_assets.resources import build_resources
from ibkr_assets.resources.ib import unreachable
from ibkr_spec.errors import COULD_NOT_CONNECT
from tests.small_world import SMALL_WORLD_EVIDENCE

SESSION = "2024-06-03"
PROJECT = Path(__file__).resolve().parents[2]


def _closed_port() -> int:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _instance(data_dir: Path) -> dg.DagsterInstance:
    """The on-disk instance ``ibkr-agent run`` uses: ``<data root>/.dagster`` with the project's
    ``dagster.yaml``."""
    home = data_dir / ".dagster"
    home.mkdir(parents=True)
    shutil.copy(PROJECT / "dagster.yaml", home / "dagster.yaml")
    return dg.DagsterInstance.from_config(str(home))


@pytest.mark.slow
def test_an_unreachable_ib_fails_the_run_at_start_and_leaves_good_data(tmp_path, monkeypatch):
    # a good materialisation of the session, and an order ticket an earlier run wrote
    monkeypatch.setenv("IBKR_SIM_SYMBOLS", "30")
    instance = _instance(tmp_path)
    good = dg.materialize(
        [ingest.macro_gauges],
        partition_key=SESSION,
        resources=build_resources(str(tmp_path)),
        instance=instance,
    )
    assert good.success
    staged = tmp_path / "staging" / SESSION / "macro_gauges.parquet"
    staged_before = staged.stat().st_mtime_ns
    ticket = tmp_path / "reports" / f"order_ticket_{SESSION}.json"
    ticket.parent.mkdir()
    ticket.write_text("{}")
    os.utime(ticket, (time.time() - 86_400, time.time() - 86_400))

    port = _closed_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IBKR_", "DAGSTER_"))}
    env |= {
        "IBKR_DATA_DIR": str(tmp_path),
        **SMALL_WORLD_EVIDENCE,
        "IBKR_BACKEND": "tws",
        "IBKR_PORT": str(port),
        "IBKR_CLIENT_ID": "41",
        "IBKR_WATCHLIST": "AAPL",
        "IBKR_JOURNAL_KEY": os.environ["IBKR_JOURNAL_KEY"],
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "ibkr_assets.cli", "run", "--date", SESSION],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    wall = time.monotonic() - started
    assert done.returncode == 1, (done.stdout, done.stderr)

    # one line, once: what was tried, where, and what to check
    [line] = done.stderr.splitlines()
    for named in (
        "failed at start, nothing was materialised",
        "IBKR_BACKEND=tws",
        f"127.0.0.1:{port} (clientId 41)",
        "TWS or IB Gateway is running",
        "API is enabled",
        f"that {port} is its API port (IBKR_PORT",
        "no other API client uses clientId 41",
    ):
        assert named in line, named
    output = done.stdout + done.stderr
    assert output.count("cannot reach TWS / IB Gateway") == 1
    assert "API connection failed" not in output  # ib_async's per-attempt lines
    # the earlier run's ticket is not listed as this run's
    [ticket_line] = [row for row in done.stdout.splitlines() if ticket.name in row]
    assert "not written by this run" in ticket_line

    # bounded: the connection attempts of one policy (5, backoff 0.5 s to 4 s), then nothing
    [failed] = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
    run_seconds = failed.end_time - failed.start_time
    print(f"unreachable IB: run failed after {run_seconds:.1f} s (CLI {wall:.1f} s)")
    assert run_seconds < 20
    events = {r.dagster_event.event_type for r in instance.all_logs(failed.dagster_run.run_id)}
    assert dg.DagsterEventType.STEP_START not in events
    assert dg.DagsterEventType.ASSET_MATERIALIZATION not in events
    # the good materialisation is still the session's latest, its staged file untouched
    latest = instance.get_latest_materialization_event(dg.AssetKey("macro_gauges"))
    assert latest is not None and latest.run_id == good.run_id
    assert staged.stat().st_mtime_ns == staged_before


# -- one RetryPolicy, transient errors only ------------------------------------------------------


def test_every_ingest_asset_carries_the_one_retry_policy():
    assets = dg.load_assets_from_modules([ingest])
    policies = {a.op.name: a.op.retry_policy for a in assets}
    assert set(policies) >= {"top_movers", "universe", "quotes", "daily_bars", "headlines"}
    assert all(p == INGEST_RETRY for p in policies.values()), policies
    assert INGEST_RETRY.backoff == dg.Backoff.EXPONENTIAL and INGEST_RETRY.jitter is not None


def _attempts(error: Exception) -> tuple[bool, int]:
    """Materialise an asset that raises ``error`` on its first attempt; (success, attempts)."""
    calls: list[int] = []

    @dg.asset(retry_policy=dg.RetryPolicy(max_retries=2))
    @transient_retries_only
    def flaky() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise error
        return 1

    result = dg.materialize([flaky], raise_on_error=False)
    return result.success, len(calls)


def test_a_transient_error_is_retried_and_a_bug_is_not():
    assert _attempts(NotConnected("connection to IB lost")) == (True, 2)
    assert _attempts(PacingViolation("Historical data request pacing violation")) == (True, 2)
    assert _attempts(KeyError("close")) == (False, 1)
    assert _attempts(ContractNotFound("XYZ")) == (False, 1)
    # another client holds the client id (326); IB unreachable after the backend's reconnecting
    assert _attempts(DuplicateClientId("client id 31 is in use")) == (False, 1)
    assert _attempts(NotConnected("IB unreachable for 120 s", code=COULD_NOT_CONNECT)) == (False, 1)


def test_a_lost_connection_is_the_steps_error_not_the_symbols():
    contracts = [Contract(conid=i, symbol=s, sec_type="STK") for i, s in ((1, "AAA"), (2, "BBB"))]

    def unknown(contract: Contract) -> int:
        raise ContractNotFound(f"no security definition for {contract.symbol}")

    results, failed = fetch_each(unknown, contracts, workers=1)
    assert results == {} and set(failed) == {"AAA", "BBB"}  # recorded, left to the checks

    def dropped(contract: Contract) -> int:
        raise NotConnected("connection to IB lost")

    with pytest.raises(NotConnected):  # fails the step, which the RetryPolicy runs again
        fetch_each(dropped, contracts, workers=2)


def test_the_unreachable_message_names_what_to_check_on_each_backend(tmp_path):
    lost = NotConnected("connection refused")
    gateway = unreachable(BrokerSettings(backend="tws", data_dir=tmp_path, port=4002), lost)
    assert "IB Gateway" in gateway and "4002" in gateway and "IBKR_CLIENT_ID" in gateway
    url = "https://127.0.0.1:5000/v1/api"
    portal = unreachable(BrokerSettings(backend="webapi", data_dir=tmp_path, webapi_url=url), lost)
    assert url in portal and "browser login" in portal and "IBKR_WEBAPI_CA_FILE" in portal
    assert "clientId" not in portal and "IBKR_PORT" not in portal
