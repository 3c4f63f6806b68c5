"""Daily partitions are NYSE sessions: no weekends, no holidays; the schedule follows them."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from ibkr_assets.jobs import daily_schedule
from ibkr_assets.partitions import (
    DAILY_PARTITIONS,
    as_of,
    is_session,
    latest_partition_date,
    previous_sessions,
)


def test_partitions_are_exactly_the_nyse_sessions_of_2024() -> None:
    keys = [k for k in DAILY_PARTITIONS.get_partition_keys() if k.startswith("2024")]
    assert len(keys) == 252, "NYSE had 252 sessions in 2024"
    for holiday in ("2024-01-15", "2024-03-29", "2024-07-04", "2024-11-28", "2024-12-25"):
        assert holiday not in keys, holiday
    assert "2024-01-06" not in keys and "2024-01-07" not in keys, "weekends have no partition"
    assert "2024-11-29" in keys, "the day after Thanksgiving is an (early-close) session"
    assert "2025-01-09" not in keys, "the national day of mourning for President Carter"


def test_as_of_is_fourteen_bucharest_on_the_session() -> None:
    assert as_of("2024-07-01") == datetime(2024, 7, 1, 11, 0, tzinfo=UTC)  # EEST, 07:00 EDT
    assert as_of("2024-12-02") == datetime(2024, 12, 2, 12, 0, tzinfo=UTC)  # EET, 07:00 EST
    # 2024-03-11: New York already on EDT, Bucharest still on EET: 08:00 New York
    assert as_of("2024-03-11") == datetime(2024, 3, 11, 12, 0, tzinfo=UTC)


def test_previous_sessions_skip_the_holiday() -> None:
    got = [d.isoformat() for d in previous_sessions("2024-04-01", 3)]
    assert got == ["2024-03-26", "2024-03-27", "2024-03-28"], "Good Friday is skipped"
    assert is_session("2024-04-01") and not is_session("2024-03-29")


def _tick(when: datetime) -> dg.RunRequest | dg.SkipReason:
    return daily_schedule(dg.build_schedule_context(scheduled_execution_time=when))


def test_schedule_runs_the_current_session_and_skips_holidays() -> None:
    # Tuesday 2024-11-26, 14:00 in Bucharest (12:00 UTC)
    result = _tick(datetime(2024, 11, 26, 12, 0, tzinfo=UTC))
    assert isinstance(result, dg.RunRequest) and result.partition_key == "2024-11-26"
    assert "2024-11-26" in DAILY_PARTITIONS.get_partition_keys()
    # Thanksgiving Thursday: no run
    result = _tick(datetime(2024, 11, 28, 12, 0, tzinfo=UTC))
    assert isinstance(result, dg.SkipReason)
    assert "2024-11-28" in result.skip_message and "not an NYSE session" in result.skip_message
    assert daily_schedule.cron_schedule == "0 14 * * 1-5"
    assert daily_schedule.execution_timezone == "Europe/Bucharest"
    assert daily_schedule.job_name == "daily_pipeline"


def test_latest_partition_waits_for_the_run_time() -> None:
    # Monday 2024-04-01 13:59 Bucharest (EEST): Thursday's session (Good Friday closed)
    assert latest_partition_date(datetime(2024, 4, 1, 10, 59, tzinfo=UTC)).isoformat() == (
        "2024-03-28"
    )
    assert latest_partition_date(datetime(2024, 4, 1, 11, 0, tzinfo=UTC)).isoformat() == (
        "2024-04-01"
    )
    assert latest_partition_date(datetime(2024, 4, 6, 15, 0, tzinfo=UTC)).isoformat() == (
        "2024-04-05"
    )
