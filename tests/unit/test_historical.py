"""IB's duration and bar-size grammar, shared by the in-process broker and the gateway."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ibkr_spec import historical
from ibkr_spec.errors import IBError, SpecError


@pytest.mark.parametrize(
    ("text", "count", "unit"),
    [("60 S", 60, "S"), ("30 D", 30, "D"), ("2 W", 2, "W"), ("6 M", 6, "M"), (" 1 Y ", 1, "Y")],
)
def test_durations_parse(text: str, count: int, unit: str) -> None:
    span = historical.parse_duration(text)
    assert (span.count, span.unit) == (count, unit)
    assert span.text == f"{count} {unit}"


@pytest.mark.parametrize("text", ["", "1Y", "1 y", "0 D", "-3 D", "1.5 D", "3 Q", "D 3", "1 D 2"])
def test_bad_durations_are_321_naming_the_text(text: str) -> None:
    with pytest.raises(SpecError) as err:
        historical.parse_duration(text)
    assert err.value.code == 321
    assert repr(text) in str(err.value)
    assert isinstance(err.value, IBError) and isinstance(err.value, ValueError)


@pytest.mark.parametrize(
    ("text", "canonical", "seconds", "daily"),
    [
        ("1 secs", "1 secs", 1, False),
        ("1 min", "1 min", 60, False),
        ("1 mins", "1 min", 60, False),
        ("5 mins", "5 mins", 300, False),
        ("5 min", "5 mins", 300, False),
        ("1 hour", "1 hour", 3600, False),
        ("4 hours", "4 hours", 14400, False),
        ("1 day", "1 day", 86400, True),
        ("1 week", "1 week", 604800, True),
        ("1 month", "1 month", 0, True),
    ],
)
def test_bar_sizes_parse(text: str, canonical: str, seconds: int, daily: bool) -> None:
    size = historical.parse_bar_size(text)
    assert (size.text, size.seconds, size.is_daily) == (canonical, seconds, daily)


def test_intraday_minutes_and_daily_has_none() -> None:
    assert historical.parse_bar_size("15 mins").minutes == 15
    with pytest.raises(ValueError, match="not an intraday"):
        _ = historical.parse_bar_size("1 day").minutes


@pytest.mark.parametrize("text", ["7 parsecs", "7 mins", "2 days", "1", "min", "", "1 fortnight"])
def test_bad_bar_sizes_are_321_naming_the_text(text: str) -> None:
    with pytest.raises(SpecError) as err:
        historical.parse_bar_size(text)
    assert err.value.code == 321 and repr(text) in str(err.value)


def test_start_of_steps_back_by_calendar_units() -> None:
    end = datetime(2024, 3, 29, 20, 0, tzinfo=UTC)
    assert historical.start_of(end, "60 S") == datetime(2024, 3, 29, 19, 59, tzinfo=UTC)
    assert historical.start_of(end, "30 D") == datetime(2024, 2, 28, 20, 0, tzinfo=UTC)
    assert historical.start_of(end, "2 W") == datetime(2024, 3, 15, 20, 0, tzinfo=UTC)
    assert historical.start_of(end, "1 M") == datetime(2024, 2, 29, 20, 0, tzinfo=UTC)
    assert historical.start_of(end, historical.parse_duration("1 Y")) == datetime(
        2023, 3, 29, 20, tzinfo=UTC
    )
    assert historical.start_of(end, "1 Y").tzinfo is not None
