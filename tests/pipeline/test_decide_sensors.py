"""The check and run alert sensors against a real (ephemeral) Dagster instance and event log
(the order sensor, which also reads the broker, is in test_order_alerts.py; the three sensors
on the instance the project ships, evaluated by the daemon, in test_instance_alerts.py)."""

from __future__ import annotations

import json

import dagster as dg

from ibkr_assets.resources.alerts import AlertResource
from ibkr_assets.sensors import asset_check_failure_alerts, run_failure_alerts

SESSION = "2024-03-04"
PARTS = dg.StaticPartitionsDefinition([SESSION])


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
    try:
        raise ConnectionRefusedError("127.0.0.1:4002 refused the connection")
    except ConnectionRefusedError as exc:
        raise RuntimeError("broker went away") from exc


@dg.asset(
    partitions_def=PARTS,
    check_specs=[dg.AssetCheckSpec("fresh", asset="blocked", blocking=True)],
)
def blocked():
    """An asset whose own blocking check fails in its step (as the data-quality checks do)."""
    yield dg.Output(1)
    yield dg.AssetCheckResult(check_name="fresh", passed=False)


def _alerts(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _tick(instance: dg.DagsterInstance, log, cursor: str | None) -> str | None:
    ctx = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"alerts": AlertResource(log_path=str(log))}
    )
    asset_check_failure_alerts(ctx)
    return ctx.cursor


def test_check_failure_sensor_alerts_once_per_ended_run_and_skips_the_gate(tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    log = tmp_path / "alerts.jsonl"
    checks = [feature_matrix, risk_report, no_nulls_in_required_columns, concentration]
    dg.materialize(checks, partition_key=SESSION, instance=instance)
    # the first evaluation starts after the runs already ended: no page about history
    cursor = _tick(instance, log, None)
    assert _alerts(log) == []
    result = dg.materialize(checks, partition_key=SESSION, instance=instance)
    cursor = _tick(instance, log, cursor)
    [alert] = _alerts(log)
    assert (
        alert["subject"] == f"Check failed: feature_matrix.no_nulls_in_required_columns [{SESSION}]"
    )
    assert "offending_symbols: AAA, BBB" in alert["body"]
    assert f"run {result.run_id} of __ephemeral_asset_job__" in alert["body"]
    assert alert["severity"] == "error"
    # the cursor moved past the run's end: evaluating again sends nothing new
    _tick(instance, log, cursor)
    assert len(_alerts(log)) == 1


def test_run_failure_alert_names_the_step_and_the_innermost_error(tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    log = tmp_path / "alerts.jsonl"
    result = dg.materialize(
        [exploding],
        partition_key=SESSION,
        instance=instance,
        raise_on_error=False,
        tags={"ibkr/trigger": "cli", "ibkr/account": "DU1234567"},
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
    [alert] = _alerts(log)
    assert alert["subject"] == f"Run failed: {result.dagster_run.job_name} [{SESSION}] at exploding"
    assert alert["severity"] == "error"
    body = alert["body"].splitlines()
    assert body[0] == (
        f"run {result.run_id} of {result.dagster_run.job_name}, trigger cli, account DU1234567"
    )
    assert (
        body[1] == "- step exploding: ConnectionRefusedError: 127.0.0.1:4002 refused the connection"
    )


@dg.resource
def unreachable_broker(_) -> None:
    raise ConnectionRefusedError("cannot reach IB at 127.0.0.1:4002")


@dg.asset(partitions_def=PARTS, required_resource_keys={"ib"})
def needs_ib() -> int:
    return 1


def test_run_failure_alert_for_a_run_that_failed_before_any_step(tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    log = tmp_path / "alerts.jsonl"
    result = dg.materialize(
        [needs_ib],
        partition_key=SESSION,
        instance=instance,
        resources={"ib": unreachable_broker},
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
    [alert] = _alerts(log)
    assert alert["subject"] == f"Run failed: {result.dagster_run.job_name} [{SESSION}]"
    assert "- error: ConnectionRefusedError: cannot reach IB at 127.0.0.1:4002" in alert["body"]


@dg.asset_check(asset=risk_report, partitions_def=PARTS, blocking=True, name="liquidity")
def blocking_liquidity() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False)


def test_no_run_failure_alert_for_a_run_stopped_only_by_blocking_checks(tmp_path):
    """The gate (a separate check step) and a data-quality check (in the asset's own step):
    each failed check has its own alert, so the run's failure adds none."""
    instance = dg.DagsterInstance.ephemeral()
    log = tmp_path / "alerts.jsonl"
    for assets in ([risk_report, blocking_liquidity], [blocked]):
        result = dg.materialize(
            assets, partition_key=SESSION, instance=instance, raise_on_error=False
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


def test_every_check_of_the_pipeline_is_partitioned_like_its_asset():
    """So each evaluation records its session and the Checks tab shows each session's history
    (the on-disk evaluations are checked in test_instance_alerts.py)."""
    from ibkr_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    assert len(graph.asset_check_keys) >= 11  # five data-quality checks, six of the gate
    for key in graph.asset_check_keys:
        partitions = graph.get(key).partitions_def
        assert partitions is not None, key
        assert partitions == graph.get(key.asset_key).partitions_def, key
