"""The alerts on the instance the project ships: the project's own ``dagster.yaml`` (SQLite,
run-sharded event log, the queued run coordinator) under a temporary data root, the
``dagster-daemon`` evaluating the sensors, and daily runs started by ``ibkr-agent run``
(in-process, the path the CLI and the MCP launcher take; they have no code-location origin).

Four sessions on a 60-stock simulated world with a 10-symbol watch-list (a run takes about
10 s, plus as much to start the process):

1. orders: the paper account is first loaded up on margin until IB refuses more, and the run
   submits (auto-submit on, orders failing the margin what-if kept): what it sends fails — IB
   rejects buys beyond buying power, the order guard refuses the sells that cut the levered
   book when one is above its caps — and the blocking check ``every_order_sent`` fails the run;
2. a failed run: the tws backend at a loopback port nobody listens on, started as the MCP
   launcher starts it (``IBKR_RUN_TRIGGER=mcp``), for the other paper account — so during 3.,
   which the per-account limit would otherwise make it wait for;
3. the compliance gate: a concentration limit of 1%;
4. data quality: a corrupt cached bar (a negative close) for the session before; the feature
   matrix's checks fail and stop the run.

Each alert must reach ``<data>/alerts/alerts.jsonl`` exactly once, and no sensor tick may fail.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
import yaml

from ibkr_assets.broker.errors import BrokerError
from ibkr_assets.broker.models import Order
from ibkr_assets.broker.settings import BrokerSettings
from ibkr_assets.broker.sim import SimBroker
from ibkr_assets.jobs import SCHEDULES
from ibkr_assets.partitions import NEW_YORK, latest_partition_date, previous_sessions
from tests.small_world import SMALL_WORLD_EVIDENCE

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SIM_SYMBOLS = 60
WATCHLIST = ["AAPL", "MSFT", "NVDA", "AMZN", "META", "GOOGL", "JPM", "XOM", "JNJ", "PG"]
#: Stocks outside the watch-list the account is loaded up with (holdings join the universe).
LOADED = ["AVGO", "TSLA", "LLY", "V", "UNH", "MA"]
#: The simulated paper account besides the primary one.
OTHER_ACCOUNT = "DU7654321"
SENSORS = ("asset_check_failure_alerts", "run_failure_alerts", "order_summary_alerts")
#: Seconds to wait for the daemon to start and tick, and for an alert to arrive.
DAEMON_START_S = 90
ALERT_WAIT_S = 30


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class World:
    """A data root with the project's instance settings, its environment and its alerts."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / ".dagster"
        self.home.mkdir(parents=True)
        shutil.copy(REPO / "dagster.yaml", self.home / "dagster.yaml")
        workspace = yaml.safe_load((REPO / "workspace.yaml").read_text())
        for entry in workspace["load_from"]:
            next(iter(entry.values()))["working_directory"] = str(REPO)
        self.workspace = root / "workspace.yaml"
        self.workspace.write_text(yaml.safe_dump(workspace))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("IBKR_", "DAGSTER_"))}
        self.env.update(
            DAGSTER_HOME=str(self.home),
            IBKR_DATA_DIR=str(root),
            **SMALL_WORLD_EVIDENCE,
            IBKR_SIM_SYMBOLS=str(SIM_SYMBOLS),
            IBKR_WATCHLIST=json.dumps(WATCHLIST),
            IBKR_ALERT_SENSOR_INTERVAL_SECONDS="1",
            IBKR_ALERT_ORDER_POLL_SECONDS="0",
        )
        self.alerts_path = root / "alerts" / "alerts.jsonl"

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.home))

    def decide(self, name: str, **values: object) -> Path:
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(values))
        return path

    def start(self, session: str, **env: str) -> subprocess.Popen[str]:
        """``ibkr-agent run --date SESSION`` in its own process."""
        return subprocess.Popen(
            [sys.executable, "-m", "ibkr_assets.cli", "run", "--date", session],
            env={**self.env, **env},
            cwd=self.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def run(self, session: str, **env: str) -> tuple[int, str]:
        """Run ``ibkr-agent run --date SESSION``; its exit code and output."""
        return _finish(self.start(session, **env))

    def alerts(self) -> list[dict]:
        if not self.alerts_path.exists():
            return []
        return [json.loads(line) for line in self.alerts_path.read_text().splitlines()]


#: seconds a run may take (about 10 s alone; the orders run took over 180 s on a loaded CI
#: worker beside the suite's other subprocesses since the evidence step joined the daily job)
RUN_TIMEOUT_S = 360


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        output, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        message = f"the run did not end in {RUN_TIMEOUT_S} s; its output:\n{output}"
        raise AssertionError(message) from None
    return proc.returncode, output


#: a submission's failed outcomes, as the order alerts name them
FAILED_OUTCOMES = {"rejected": "rejected by IB", "refused": "refused by the order guard"}


def _load_up_on_margin(world: World, session: str) -> None:
    """Buy stocks outside the watch-list on margin until IB rejects the next order (at 10:00
    New York of ``session``): any buy the daily run then submits is beyond buying power."""
    at = pd.Timestamp(f"{session}T10:00", tz=NEW_YORK).to_pydatetime()
    broker = SimBroker.from_settings(
        BrokerSettings(data_dir=world.root, sim_symbols=SIM_SYMBOLS, sim_now=at)
    )
    quotes = broker.quotes([broker.resolve(s) for s in LOADED])

    def buy(quote, value: float, ref: str) -> None:
        broker.place(
            Order(
                contract=quote.contract,
                action="BUY",
                quantity=max(1, int(value / quote.ask)),
                order_type="LMT",
                limit_price=round(quote.ask * 1.02, 2),
                order_ref=ref,
            )
        )

    for quote in quotes:
        buy(quote, 330_000, f"load-{quote.contract.symbol}")
    with pytest.raises(BrokerError, match="insufficient buying power"):
        for n in range(200):
            buy(quotes[0], 10_000, f"load-more-{n}")


def _corrupt_cached_bar(world: World, symbol: str, session: str) -> None:
    """A negative close for ``symbol`` on ``session`` in the bar cache (bad vendor data)."""
    with duckdb.connect(str(world.root / "warehouse.duckdb")) as conn:
        conn.execute(
            "insert or replace into cache.daily_bars values (?, ?, 250, 251, 249, -250, 1e6)",
            [symbol, pd.Timestamp(session).date()],
        )


def _sensor_ticks(instance: dg.DagsterInstance) -> dict[str, list]:
    """Each alert sensor's ticks, newest first."""
    ticks = {}
    for state in instance.all_instigator_state():
        if state.instigator_name in SENSORS:
            ticks[state.instigator_name] = list(
                instance.get_ticks(state.instigator_origin_id, state.selector_id)
            )
    return ticks


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


@contextmanager
def running_daemon(world: World, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``dagster-daemon run`` on the world's instance and workspace, stopped on exit."""
    with log_path.open("w") as log:
        daemon = subprocess.Popen(
            [Path(sys.executable).with_name("dagster-daemon"), "run", "-w", str(world.workspace)],
            env=world.env,
            cwd=world.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its code server in the same group, stopped with it
        )
        try:
            yield daemon
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)
            try:
                daemon.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait()


def _schedule_fires_within(window: timedelta) -> bool:
    """True when a schedule of the project fires within ``window`` from now: its run would join
    the test's on the same account."""
    from dagster._utils.schedules import cron_string_iterator  # the schedules' own cron

    now = datetime.now(UTC)
    return any(
        next(cron_string_iterator(now.timestamp(), s.cron_schedule, s.execution_timezone))
        <= now + window
        for s in SCHEDULES
    )


def test_every_alert_lands_once_from_runs_the_cli_started(tmp_path: Path) -> None:
    if _schedule_fires_within(timedelta(minutes=5)):
        pytest.skip("a schedule fires in the next 5 minutes; its run would compete with the test's")
    world = World(tmp_path / "data")
    latest = latest_partition_date(datetime.now(UTC))
    before, orders_day, gate_day, failed_day, quality_day = (
        d.isoformat() for d in previous_sessions(latest, 5)
    )
    port = _free_port()
    daemon_log = tmp_path / "daemon.log"
    # the instance's SQLite files are created here, once: processes creating them at the same
    # moment race on the schema version
    with world.instance() as instance, running_daemon(world, daemon_log):
        # 1. orders IB rejects (the order sensor reads every materialisation from the start,
        # so this run may end before the daemon's first tick)
        _load_up_on_margin(world, before)
        # ten names give weak evidence: without the CVaR penalty the book trades
        submit = world.decide(
            "submit",
            auto_submit=True,
            whatif_on_failure="keep",
            gross_change_max=2.5,
            cvar_aversion=0.0,
        )
        code, output = world.run(orders_day, IBKR_DECIDE_CONFIG=str(submit))
        # an order IB rejects fails the blocking check every_order_sent: the run is red
        assert code == 1 and "submitted_orders:every_order_sent" in output, output
        report = json.loads(
            (world.root / "reports" / f"submitted_orders_{orders_day}.json").read_text()
        )
        failed_orders = [o for o in report["orders"] if o["outcome"] in FAILED_OUTCOMES]
        assert failed_orders, f"no order rejected by IB or refused: {report['orders']}"
        # the check and run sensors start after the latest run end at their first tick
        _wait(
            lambda: len(_sensor_ticks(instance)) == len(SENSORS),
            DAEMON_START_S,
            f"the first tick of every alert sensor (daemon log: {daemon_log})",
        )
        # 2. a run that cannot reach IB, launched as the MCP server launches it, for the other
        # paper account (so at the same time as the next run, which it does not wait for)
        failed = world.start(
            failed_day,
            IBKR_RUN_TRIGGER="mcp",
            IBKR_ACCOUNT=OTHER_ACCOUNT,
            IBKR_BACKEND="tws",
            IBKR_PORT=str(port),
            IBKR_CONNECT_ATTEMPTS="1",
        )
        # 3. the compliance gate
        code, output = world.run(
            gate_day,
            IBKR_DECIDE_CONFIG=str(world.decide("gate", concentration_max=0.01, cvar_aversion=0.0)),
        )
        assert code == 1 and "risk_report_concentration" in output, output
        code, output = _finish(failed)
        assert code != 0, output
        # 4. data quality: the cached bar of the session before is corrupt
        _corrupt_cached_bar(world, "AAPL", failed_day)
        code, output = world.run(quality_day)
        assert code == 1 and "FAILED" in output, output

        runs = {r.tags["dagster/partition"]: r for r in instance.get_runs()}
        assert {runs[d].tags["ibkr/trigger"] for d in (orders_day, quality_day, gate_day)} == {
            "cli"
        }
        assert runs[failed_day].tags["ibkr/trigger"] == "mcp"
        assert {d: r.tags["ibkr/account"] for d, r in runs.items()} == {
            orders_day: "primary",
            gate_day: "primary",
            failed_day: OTHER_ACCOUNT,
            quality_day: "primary",
        }
        # every data-quality evaluation records its session (the Checks tab's history)
        evaluations = [
            r.event_log_entry.dagster_event.asset_check_evaluation_data
            for r in instance.get_records_for_run(
                runs[quality_day].run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
            ).records
        ]
        assert len(evaluations) == 5 and {e.partition for e in evaluations} == {quality_day}
        failed_checks = sorted(e.check_name for e in evaluations if not e.passed)
        assert failed_checks

        expected = {
            f"Orders queued [{orders_day}]",
            *(
                f"Order {FAILED_OUTCOMES[o['outcome']]}: {o['action']} {o['quantity']:,.0f} "
                f"{o['symbol']} [{orders_day}]"
                for o in failed_orders
            ),
            f"Compliance gate blocked the order ticket for {gate_day}",
            *(f"Check failed: feature_matrix.{name} [{quality_day}]" for name in failed_checks),
        }

        #: alerts whose subject goes on (the failed step, the counts of the summary)
        beginnings = (f"Run failed: daily_pipeline [{failed_day}]", f"Orders done [{orders_day}]")

        def arrived() -> bool:
            subjects = {a["subject"] for a in world.alerts()}
            return expected <= subjects and all(
                any(s.startswith(b) for s in subjects) for b in beginnings
            )

        _wait(arrived, ALERT_WAIT_S, f"the alerts; got {[a['subject'] for a in world.alerts()]}")
        time.sleep(3)  # a few more ticks: nothing may be sent twice
        alerts = world.alerts()
        counts = Counter(a["subject"] for a in alerts)
        assert [s for s, n in counts.items() if n > 1] == [], counts
        # the runs stopped by the gate and the data-quality checks are not alerted again as
        # failed runs; the failed run names the run, who started it, and the address tried
        [run_failure] = [a for a in alerts if a["subject"].startswith("Run failed")]
        body = run_failure["body"]
        assert f"run {runs[failed_day].run_id} of daily_pipeline, trigger mcp" in body
        assert f"127.0.0.1:{port}" in body
        # (run 1's every_order_sent is alerted too when it ended after the sensor's first tick)
        check_alert = next(
            a for a in alerts if a["subject"].startswith("Check failed: feature_matrix.")
        )
        assert (
            f"run {runs[quality_day].run_id} of daily_pipeline, trigger cli" in check_alert["body"]
        )

        ticks = _sensor_ticks(instance)
        failures = {
            name: [t.error.message for t in sensor_ticks if t.status.value == "FAILURE"]
            for name, sensor_ticks in ticks.items()
        }
        assert failures == {name: [] for name in SENSORS}
        assert all(len(t) >= 3 for t in ticks.values()), {n: len(t) for n, t in ticks.items()}
