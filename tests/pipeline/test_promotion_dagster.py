"""Promotion evidence from the asset checks and runs a Dagster instance at ``<data root>/.dagster``
recorded (tiny stand-in assets named like the real ones, run as the daily job)."""

from __future__ import annotations

from collections import Counter
from datetime import date
from pathlib import Path

import dagster as dg

from ibkr_assets.jobs import DAILY_JOB_NAME
from ibkr_assets.partitions import DAILY_PARTITIONS
from ibkr_assets.promotion import promotion_check
from tests.promotion_fixtures import SESSIONS, green_sessions, problems


def _daily_runs(root: Path, check_fails: date, run_fails: date, days: list[date]) -> None:
    """Runs of the daily job recorded in the instance at ``root/.dagster``: the feature
    matrix's data-quality check fails on ``check_fails``, the asset itself on ``run_fails``."""

    @dg.asset(
        partitions_def=DAILY_PARTITIONS,
        check_specs=[dg.AssetCheckSpec("no_nulls_in_required", asset="feature_matrix")],
    )
    def feature_matrix(context) -> dg.MaterializeResult:
        if context.partition_key == run_fails.isoformat():
            raise RuntimeError("IB connection lost")
        passed = context.partition_key != check_fails.isoformat()
        return dg.MaterializeResult(check_results=[dg.AssetCheckResult(passed=passed)])

    job = dg.define_asset_job(DAILY_JOB_NAME, selection=[feature_matrix])
    defs = dg.Definitions(assets=[feature_matrix], jobs=[job])
    (root / ".dagster").mkdir()
    with dg.DagsterInstance.from_config(str(root / ".dagster")) as instance:
        for day in days:
            defs.resolve_job_def(DAILY_JOB_NAME).execute_in_process(
                instance=instance, partition_key=day.isoformat(), raise_on_error=False
            )


def test_asset_checks_and_runs_come_from_the_dagster_instance(tmp_path, monkeypatch):
    monkeypatch.setenv("IBKR_PROMOTION_SESSIONS", "4")
    green_sessions(tmp_path, SESSIONS[:4])
    _daily_runs(tmp_path, check_fails=SESSIONS[1], run_fails=SESSIONS[2], days=SESSIONS[1:4])
    check = promotion_check(tmp_path)
    found = problems(check)
    run_failed = found.pop(SESSIONS[2].isoformat())
    assert found == {
        SESSIONS[0].isoformat(): ["no run of the session is recorded in the Dagster instance"],
        SESSIONS[1].isoformat(): ["asset checks failed: feature_matrix:no_nulls_in_required"],
    }
    assert run_failed[0].startswith("the latest daily run ") and run_failed[0].endswith("FAILURE")
    assert run_failed[1:] == [
        "asset checks planned but never evaluated: feature_matrix:no_nulls_in_required",
        "no asset check was evaluated for the session",
    ]
    assert check.sessions[0].green and check.sessions[0].session == SESSIONS[3]
    assert check.sessions[0].checks == "checks: 1 passed in 1 Dagster runs"


def test_each_check_is_judged_by_its_latest_evaluation_and_only_errors_count(tmp_path, monkeypatch):
    """SESSIONS[0]: the submission check fails at WARN severity (some orders refused by the
    guard): green. SESSIONS[1]: the first run dies, its rerun is green. SESSIONS[2]: the first
    run fails a blocking ERROR check, its rerun passes it: green. SESSIONS[3]: green first, then
    a rerun fails the check: not green."""
    monkeypatch.setenv("IBKR_PROMOTION_SESSIONS", "4")
    green_sessions(tmp_path, SESSIONS[:4])
    attempts: Counter[str] = Counter()
    dies, fails_first, fails_again = (SESSIONS[i].isoformat() for i in (1, 2, 3))

    @dg.asset(
        partitions_def=DAILY_PARTITIONS,
        check_specs=[
            dg.AssetCheckSpec("no_nulls_in_required", asset="feature_matrix", blocking=True)
        ],
    )
    def feature_matrix(context) -> dg.MaterializeResult:
        day = context.partition_key
        attempts[day] += 1
        if day == dies and attempts[day] == 1:
            raise RuntimeError("IB connection lost")
        passed = (day, attempts[day]) not in ((fails_first, 1), (fails_again, 2))
        return dg.MaterializeResult(check_results=[dg.AssetCheckResult(passed=passed)])

    @dg.asset(
        partitions_def=DAILY_PARTITIONS,
        deps=[feature_matrix],
        check_specs=[dg.AssetCheckSpec("every_order_sent", asset="submitted_orders")],
    )
    def submitted_orders(context) -> dg.MaterializeResult:
        refused = context.partition_key == SESSIONS[0].isoformat()
        result = dg.AssetCheckResult(passed=not refused, severity=dg.AssetCheckSeverity.WARN)
        return dg.MaterializeResult(check_results=[result])

    job = dg.define_asset_job(DAILY_JOB_NAME, selection=[feature_matrix, submitted_orders])
    defs = dg.Definitions(assets=[feature_matrix, submitted_orders], jobs=[job])
    (tmp_path / ".dagster").mkdir()
    with dg.DagsterInstance.from_config(str(tmp_path / ".dagster")) as instance:
        for day in [SESSIONS[0], *(d for d in SESSIONS[1:4] for _ in range(2))]:
            defs.resolve_job_def(DAILY_JOB_NAME).execute_in_process(
                instance=instance, partition_key=day.isoformat(), raise_on_error=False
            )
    check = promotion_check(tmp_path)
    found = problems(check)
    assert list(found) == [fails_again], found
    latest_run, failed = found[fails_again]
    assert latest_run.startswith("the latest daily run ") and latest_run.endswith("FAILURE")
    assert failed == "asset checks failed: feature_matrix:no_nulls_in_required"
    checks = {s.session.isoformat(): s.checks for s in check.sessions}
    assert checks == {
        SESSIONS[0].isoformat(): (
            "checks: 1 passed, 1 failed with a warning (submitted_orders:every_order_sent) "
            "in 1 Dagster runs"
        ),
        dies: "checks: 2 passed in 2 Dagster runs",
        fails_first: "checks: 2 passed in 2 Dagster runs",
        fails_again: "checks: 1 passed in 2 Dagster runs",
    }
