"""The webapi backend's pacer holds IBKR's limits across threads (the ingest's request workers),
and the ingest keeps no more history requests in flight than the backend runs at once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from ibkr_assets.assets.market_data import request_workers
from ibkr_assets.broker.webapi.pacing import Pacer
from ibkr_assets.config import PipelineConfig
from ibkr_spec.webapi import GLOBAL_LIMIT, HISTORY_CONCURRENCY, HISTORY_PATH


def test_threads_share_the_global_window_and_the_five_history_slots() -> None:
    pacer = Pacer()
    lock = threading.Lock()
    starts: list[float] = []
    running, peak = 0, 0

    def request(_: int) -> None:
        nonlocal running, peak
        with pacer.admit("GET", HISTORY_PATH):
            with lock:
                starts.append(time.monotonic())
                running += 1
                peak = max(peak, running)
            time.sleep(0.05)  # the gateway computing the bars
            with lock:
                running -= 1

    count, seconds = GLOBAL_LIMIT
    requests = 2 * count + 4
    begun = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(request, range(requests)))
    assert peak == HISTORY_CONCURRENCY, "5 at once, never more (8 threads asking)"
    starts.sort()
    for i, t in enumerate(starts):
        in_window = sum(1 for u in starts[i:] if u - t < seconds)
        assert in_window <= count, f"{in_window} requests within {seconds} s of request {i}"
    assert starts[-1] - begun >= 2 * seconds, "24 requests at 10 per second span 2 windows"


@pytest.mark.parametrize(
    ("configured", "concurrency", "workers"),
    [(8, 5, 5), (3, 5, 3), (8, 50, 8), (8, 1, 1)],
)
def test_request_workers_are_capped_by_the_backends_history_concurrency(
    configured: int, concurrency: int, workers: int
) -> None:
    broker = SimpleNamespace(name="any", history_concurrency=concurrency)
    config = PipelineConfig(request_workers=configured)
    assert request_workers(broker, config) == workers  # type: ignore[arg-type]
