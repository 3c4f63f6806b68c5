"""The broker under test, once per backend.

Every test in this folder runs unchanged against each backend: ``sim`` (in-process) today, ``tws``
(ib_async through the simulated gateway) and ``webapi`` as they land. Each backend gets its own
temporary data root, so its paper account starts fresh, and a clock pinned inside a NYSE session
so market orders fill the same way on every run.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ibkr_assets.broker import Broker, BrokerSettings, connect

#: Friday 2026-11-20, 10:30 in New York: the market is open.
SESSION_TIME = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
BACKENDS = ["sim"]


def _settings(backend: str, data_dir: Path) -> BrokerSettings:
    return BrokerSettings(backend=backend, data_dir=data_dir, sim_now=SESSION_TIME)


@pytest.fixture(scope="module", params=BACKENDS)
def broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Broker]:
    data_dir = tmp_path_factory.mktemp(f"contract-{request.param}")
    b = connect(_settings(request.param, data_dir))
    yield b
    b.close()
