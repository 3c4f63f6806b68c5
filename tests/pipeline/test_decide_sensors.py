"""The check and run alert sensors against a real (ephemeral) Dagster instance and event log
(the order sensor, which also reads the broker, is in test_order_alerts.py)."""

from __future__ import annotations

import json

import dagster as dg

from ibkr_assets.resources.alerts import AlertResource
from ibkr_assets.sensors import asset_check_failure_alerts, run_failure_alerts

PARTS = dg.StaticPartitionsDefinition(["2024-03-04"])


@dg.asset(partitions_def=PARTS)
def feature_matrix() -> int:
    return 1


@dg.asset_check(asset=feature_matrix, partitions_def=PARTS)
def no_nulls_in_required_columns() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, metadata={"offending_symbols": "AAA, BBB"})


@dg.asset(partitions_def=PARTS)
def risk_report() -> int:
    return 1


@dg.asset_check(asset=risk_report, partitions_def=PARTS)
def concentration() -> dg.AssetCheckResult:  # a gate check: alerted in-run, not by the sensor
    return dg.AssetCheckResult(passed=False)


@dg.asset(partitions_def=PARTS)
def exploding() -> None:
    raise RuntimeError("broker went away")


def _alerts(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_check_failure_sensor_alerts_once_and_skips_the_gate(tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    log = tmp_path / "alerts.jsonl"
    dg.materialize(
        [feature_matrix, risk_report, no_nulls_in_required_columns, concentration],
        partition_key="2024-03-04",
        instance=instance,
    )
    ctx = dg.build_sensor_context(
        instance=instance, resources={"alerts": AlertResource(log_path=str(log))}
    )
    asset_check_failure_alerts(ctx)
    [alert] = _alerts(log)
    assert alert["subject"] == (
        "Check failed: feature_matrix.no_nulls_in_required_columns [2024-03-04]"
    )
    assert "offending_symbols: AAA, BBB" in alert["body"]
    # the cursor moved: evaluating again sends nothing new
    ctx2 = dg.build_sensor_context(
        instance=instance, cursor=ctx.cursor, resources={"alerts": AlertResource(log_path=str(log))}
    )
    asset_check_failure_alerts(ctx2)
    assert len(_alerts(log)) == 1


def test_run_failure_sensor(tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    log = tmp_path / "alerts.jsonl"
    result = dg.materialize(
        [exploding], partition_key="2024-03-04", instance=instance, raise_on_error=False
    )
    assert not result.success
    failure = result.get_run_failure_event()
    ctx = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alerts",
        dagster_event=failure,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"alerts": AlertResource(log_path=str(log))},
    ).for_run_failure()
    run_failure_alerts(ctx)
    [alert] = _alerts(log)
    assert alert["subject"] == f"Run failed: {result.dagster_run.job_name} [2024-03-04]"
    assert alert["severity"] == "error" and result.dagster_run.run_id in alert["body"]


@dg.asset_check(asset=risk_report, partitions_def=PARTS, blocking=True, name="liquidity")
def blocking_liquidity() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False)


def test_run_failure_sensor_skips_runs_stopped_only_by_the_gate(tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    log = tmp_path / "alerts.jsonl"
    result = dg.materialize(
        [risk_report, blocking_liquidity],
        partition_key="2024-03-04",
        instance=instance,
        raise_on_error=False,
    )
    assert not result.success
    ctx = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alerts",
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"alerts": AlertResource(log_path=str(log))},
    ).for_run_failure()
    run_failure_alerts(ctx)
    assert _alerts(log) == []
