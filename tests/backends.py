"""The three Broker backends for tests that run on each: ``sim`` (the in-process simulator),
``tws`` (ib_async through the simulated IB Gateway) and ``webapi`` (httpx through the simulated
Client Portal Web API gateway, HTTPS with its self-signed certificate trusted, logged in).

:func:`broker_fields` starts the gateway a backend talks to, in this process on a free loopback
port, and yields the ``broker`` settings that point at it. Both gateways run IBKR's ``ib-paper``
profile with live US-equity data and nothing random (:data:`PAPER`), their rate limits off like
the backends' pacing (tests/gateway and tests/webapi cover pacing); their clock starts at the
given instant and runs in real time, where the simulator's is pinned there.

A folder opts in by importing this module's hooks and fixture into its conftest
(``from tests.backends import backend, pytest_configure, pytest_generate_tests``); then a test
module whose tests take the ``backend`` fixture runs once per backend of :data:`BACKENDS`, and a
test that does not go through the transport keeps to the simulator with
``@pytest.mark.backends("sim")``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from ibkr_sim.gateway import running_clock, start_gateway
from ibkr_sim.gateway.profile import IB_PAPER
from ibkr_sim.webapi import start_webapi

BACKENDS = ("sim", "tws", "webapi")
SEED = 7
#: what a paper login meets (entitlements, partial fills, order precautions), with two accounts
#: (an advisor-style login's) and live US-equity data (the guard's quote-age limits are
#: tests/unit's); no seeded farm drops or history gaps, so an answer never depends on the moment
PAPER = IB_PAPER.with_options(
    accounts=2,
    live_data=IB_PAPER.live_data | {"STK"},
    history_gap_rate=0.0,
    farm_drops_per_day=0.0,
)
#: the marker of :func:`pytest_generate_tests`: ``@pytest.mark.backends("sim")`` keeps a test to
#: some backends
MARKER = "backends(*names): run this test only on these Broker backends (tests/backends.py)"


@contextmanager
def broker_fields(
    backend: str, data_dir: Path, now: datetime, symbols: int
) -> Iterator[dict[str, Any]]:
    """The ``broker`` settings of ``backend`` on the simulated world (seed :data:`SEED`,
    ``symbols`` stocks, the paper accounts under ``data_dir``) at ``now`` (UTC), with the
    gateway it talks to running until the block ends."""
    world = {"sim_seed": SEED, "sim_symbols": symbols, "data_dir": str(data_dir)}
    if backend == "sim":
        yield {**world, "backend": "sim", "sim_now": now}
        return
    options: dict[str, Any] = {
        "seed": SEED,
        "symbols": symbols,
        "data_dir": data_dir,
        "clock": running_clock(now),
        "profile": PAPER,
    }
    if backend == "webapi":
        with start_webapi(authenticated=True, rate_limits=False, **options) as gateway:
            yield {
                **world,
                "backend": "webapi",
                "webapi_url": gateway.url,
                "webapi_ca_file": gateway.cert_path,
                "pacing": False,
            }
        return
    if backend != "tws":
        raise ValueError(f"unknown backend {backend!r}; one of {', '.join(BACKENDS)}")
    with start_gateway(pacing="off", **options) as gateway:
        yield {
            **world,
            "backend": "tws",
            "host": "127.0.0.1",
            "port": gateway.port,
            "pacing": False,
        }


def pytest_configure(config: pytest.Config) -> None:
    """Register :data:`MARKER` (``--strict-markers``)."""
    config.addinivalue_line("markers", MARKER)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """For a test taking the ``backend`` fixture: one module-scoped run per backend (each
    module's gateway started once per backend), restricted to the test's ``backends`` marker
    where it has one."""
    if "backend" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("backends")
    names = list(marker.args) if marker else list(BACKENDS)
    metafunc.parametrize("backend", names, indirect=True, scope="module")


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest) -> str:
    """The backend of this run of the module (see :func:`pytest_generate_tests`)."""
    return str(request.param)
