"""Promotion evidence from the asset checks and runs a Dagster instance at ``<data root>/.dagster``
recorded (tiny stand-in assets named like the real ones, run as the daily job)."""

from __future__ import annotations

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
