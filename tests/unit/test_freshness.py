"""The daily outputs' deadline: 14:30 Europe/Bucharest on an NYSE session. The freshness policy
the UI shows, and the sensor that alerts once when today's ticket or journal is missing —
evaluated on an on-disk SQLite instance (the storage the project ships) at pinned times."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from ibkr_assets import freshness
from ibkr_assets.definitions import defs
from ibkr_assets.freshness import DAILY_OUTPUTS, late_output_alerts, session_due
from ibkr_assets.jobs import daily_schedule
from ibkr_assets.resources.alerts import AlertResource

SESSION = "2024-12-02"  # a Monday, winter: Bucharest is UTC+2
AFTER = datetime(2024, 12, 2, 12, 31, tzinfo=UTC)  # 14:31 Bucharest
BEFORE = datetime(2024, 12, 2, 12, 29, tzinfo=UTC)  # 14:29 Bucharest


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:  # SQLite on disk, run-sharded event log
        yield instance


def materialise(instance: dg.DagsterInstance, asset: str, partition: str, **metadata) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key=asset, partition=partition, metadata=metadata)
    )


def evaluate(
    instance: dg.DagsterInstance,
    tmp_path: Path,
    at: datetime,
    monkeypatch: pytest.MonkeyPatch,
    cursor: str | None = None,
) -> tuple[dg.SkipReason, str | None, list[dict]]:
    """One tick of the sensor at ``at``: its result, its cursor and every alert so far."""
    monkeypatch.setattr(freshness, "now", lambda: at)
    log = tmp_path / "alerts.jsonl"
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"alerts": AlertResource(log_path=str(log))},
    )
    result = late_output_alerts(context)
    alerts = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return result, context.cursor, alerts


def test_missing_ticket_and_journal_are_alerted_once(instance, tmp_path, monkeypatch) -> None:
    _, cursor, alerts = evaluate(instance, tmp_path, BEFORE, monkeypatch)
    assert alerts == [] and cursor is None  # not late yet at 14:29
    _, cursor, alerts = evaluate(instance, tmp_path, AFTER, monkeypatch)
    assert len(alerts) == 1 and cursor == SESSION
    alert = alerts[0]
    assert alert["severity"] == "error"
    assert alert["subject"] == (
        f"Late: order_ticket, decision_journal for {SESSION} not materialised by 14:30 "
        "Europe/Bucharest"
    )
    assert f"no run of {SESSION}" in alert["body"] and f"--date {SESSION}" in alert["body"]
    later = datetime(2024, 12, 2, 15, 0, tzinfo=UTC)
    _, cursor, alerts = evaluate(instance, tmp_path, later, monkeypatch, cursor=cursor)
    assert len(alerts) == 1 and cursor == SESSION  # one alert per session


def test_only_the_missing_output_is_named(instance, tmp_path, monkeypatch) -> None:
    for asset in DAILY_OUTPUTS:
        materialise(instance, asset, "2024-11-29")  # the session before does not count
    materialise(instance, "order_ticket", SESSION)
    _, _, alerts = evaluate(instance, tmp_path, AFTER, monkeypatch)
    assert len(alerts) == 1
    assert alerts[0]["subject"].startswith(f"Late: decision_journal for {SESSION} ")


def test_outputs_materialised_for_the_session_are_not_late(instance, tmp_path, monkeypatch) -> None:
    for asset in DAILY_OUTPUTS:
        materialise(instance, asset, SESSION)
    result, cursor, alerts = evaluate(instance, tmp_path, AFTER, monkeypatch)
    assert alerts == [] and cursor is None
    assert result.skip_message == f"{SESSION}: order_ticket and decision_journal materialised"


def test_a_blocked_gate_is_named_as_the_reason(instance, tmp_path, monkeypatch) -> None:
    materialise(instance, "risk_report", SESSION, passed=False)
    _, _, alerts = evaluate(instance, tmp_path, AFTER, monkeypatch)
    assert len(alerts) == 1 and alerts[0]["severity"] == "warning"
    assert "compliance gate blocked the order ticket" in alerts[0]["body"]


def test_the_latest_run_is_named(instance, tmp_path, monkeypatch) -> None:
    run = instance.create_run_for_job(
        defs.resolve_job_def("daily_pipeline"), tags={"dagster/partition": SESSION}
    )
    instance.report_run_failed(run, "IB unreachable")
    _, _, alerts = evaluate(instance, tmp_path, AFTER, monkeypatch)
    assert f"latest run {run.run_id} (daily_pipeline): FAILURE" in alerts[0]["body"]


@pytest.mark.parametrize(
    ("at", "due"),
    [
        (datetime(2024, 7, 1, 11, 29, tzinfo=UTC), None),  # 14:29 Bucharest in summer (UTC+3)
        (datetime(2024, 7, 1, 11, 30, tzinfo=UTC), "2024-07-01"),
        (datetime(2024, 12, 25, 13, 0, tzinfo=UTC), None),  # Christmas: no session
        (datetime(2024, 12, 7, 13, 0, tzinfo=UTC), None),  # a Saturday
        (datetime(2024, 12, 2, 21, 59, tzinfo=UTC), "2024-12-02"),  # 23:59 Bucharest
        (datetime(2024, 12, 2, 22, 0, tzinfo=UTC), None),  # 00:00 Bucharest, Tuesday
    ],
)
def test_a_session_is_due_after_14_30_bucharest(at: datetime, due: str | None) -> None:
    assert session_due(at) == due


def test_the_ui_shows_the_same_deadline_on_both_outputs() -> None:
    graph = defs.resolve_asset_graph()
    for name in DAILY_OUTPUTS:
        policy = graph.get(dg.AssetKey(name)).freshness_policy
        assert policy == freshness.DAILY_OUTPUT_FRESHNESS, name
    policy = freshness.DAILY_OUTPUT_FRESHNESS
    assert (policy.deadline_cron, policy.timezone) == ("30 14 * * 1-5", "Europe/Bucharest")
    # the deadline leaves the daily run, which starts at 14:00 Bucharest, its half hour
    assert daily_schedule.cron_schedule == "0 14 * * 1-5"
    assert daily_schedule.execution_timezone == policy.timezone
    assert late_output_alerts in defs.sensors
