"""IB's pacing rules as the gateway's Pacer applies them, on a hand-driven clock."""

from __future__ import annotations

import pytest

from ibkr_sim.gateway.pacing import (
    DEPTH_SUBSCRIPTIONS,
    MARKET_DATA_LINES,
    SCANNER_SUBSCRIPTIONS,
    Pacer,
)


class Recorder:
    """Stands in for a session: collects the errors the pacer sends."""

    def __init__(self) -> None:
        self.errors: list[tuple[int, int, str]] = []

    def error(self, req_id: int, code: int, message: str) -> None:
        self.errors.append((req_id, code, message))


@pytest.fixture
def clock():
    now = [1000.0]
    return now


def test_off_allows_everything(clock):
    pacer, s = Pacer(False, clock=lambda: clock[0]), Recorder()
    assert all(pacer.allow_message(s) for _ in range(500))
    assert pacer.allow_market_data_line(s, 1, 10_000)
    assert all(pacer.allow_historical(s, i, ("AAPL",), 1) for i in range(100))
    assert s.errors == []


def test_fifty_messages_per_second(clock):
    pacer, s = Pacer(True, clock=lambda: clock[0]), Recorder()
    assert all(pacer.allow_message(s) for _ in range(50))
    assert not pacer.allow_message(s)
    assert s.errors[-1][1] == 100
    clock[0] += 0.5  # half a second refills 25 messages
    assert sum(pacer.allow_message(s) for _ in range(40)) == 25
    clock[0] += 10
    # a client keeping to 45 per second never trips it, whatever its burst timing
    s.errors.clear()
    for second in range(5):
        clock[0] += 0.9 if second % 2 else 1.1
        assert all(pacer.allow_message(s) for _ in range(45))
    assert s.errors == []


def test_market_data_lines_and_scanners(clock):
    pacer, s = Pacer(True, clock=lambda: clock[0]), Recorder()
    assert pacer.allow_market_data_line(s, 7, MARKET_DATA_LINES - 1)
    assert not pacer.allow_market_data_line(s, 8, MARKET_DATA_LINES)
    assert s.errors[-1][:2] == (8, 101)
    assert pacer.allow_scanner(s, 9, SCANNER_SUBSCRIPTIONS - 1)
    assert not pacer.allow_scanner(s, 10, SCANNER_SUBSCRIPTIONS)
    assert s.errors[-1][:2] == (10, 420)
    assert pacer.allow_depth(s, 11, DEPTH_SUBSCRIPTIONS - 1)
    assert not pacer.allow_depth(s, 12, DEPTH_SUBSCRIPTIONS)
    assert s.errors[-1][:2] == (12, 309)


def test_historical_identical_and_same_contract(clock):
    pacer, s = Pacer(True, clock=lambda: clock[0]), Recorder()
    req = (1, "SMART", "TRADES", "", "1 Y", "1 day", True)
    assert pacer.allow_historical(s, 1, req, 86400)
    clock[0] += 14.0
    assert not pacer.allow_historical(s, 2, req, 86400)
    assert s.errors[-1][:2] == (2, 162) and "identical" in s.errors[-1][2]
    clock[0] += 2.0  # 16 s after the first: allowed again
    assert pacer.allow_historical(s, 3, req, 86400)
    clock[0] += 60
    # six requests for one contract within two seconds: the sixth is refused
    other = [(2, "SMART", "TRADES", "", f"{n} D", "1 day", True) for n in range(1, 8)]
    results = [pacer.allow_historical(s, 10 + i, r, 86400) for i, r in enumerate(other[:6])]
    assert results == [True] * 5 + [False]
    clock[0] += 2.0
    assert pacer.allow_historical(s, 20, other[6], 86400)


def test_historical_small_bars_sixty_per_ten_minutes(clock):
    pacer, s = Pacer(True, clock=lambda: clock[0]), Recorder()
    for i in range(60):
        clock[0] += 3.0  # slow enough for the per-contract rule
        assert pacer.allow_historical(s, i, (i, "SMART", "TRADES", "", "1800 S", "5 secs", 1), 5)
    clock[0] += 3.0
    assert not pacer.allow_historical(s, 99, (99, "SMART", "TRADES", "", "1800 S", "5 secs", 1), 5)
    assert "small-bar" in s.errors[-1][2]
    # bars longer than 30 seconds do not count
    assert pacer.allow_historical(s, 100, (99, "SMART", "TRADES", "", "1 D", "1 min", 1), 60)
    clock[0] += 600.0
    assert pacer.allow_historical(s, 101, (98, "SMART", "TRADES", "", "1800 S", "5 secs", 1), 5)
