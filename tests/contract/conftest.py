"""The broker under test, once per backend.

Every test in this folder runs unchanged against each backend: ``sim`` (in-process), ``tws``
(ib_async through the simulated gateway on its ``ib-paper`` profile, started in-process on a free
loopback port) and ``webapi`` (the simulated Client Portal gateway on the same profile, over HTTPS
with its self-signed certificate trusted, logged in, rate limits off like the TWS gateway's
pacing). All see
the same simulated world (seed, 700 symbols); each backend gets its own temporary data root, so
its paper account starts fresh, and a clock inside a NYSE session so market orders fill the same
way on every run (pinned for ``sim``, starting there and running in real time for the gateway).

The suite is about the backends themselves, so it uses the backend behind ``connect``'s order
guard (``.inner``); the guard has its own tests (tests/unit/test_order_guard*.py, tests/safety/).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ibkr_assets.broker import Broker, BrokerSettings, connect
from ibkr_sim.gateway import running_clock, start_gateway
from ibkr_sim.gateway.profile import IB_PAPER
from ibkr_sim.webapi import start_webapi

#: Friday 2026-11-20, 10:30 in New York: the market is open.
SESSION_TIME = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
SEED, SYMBOLS = 7, 700
#: what a paper login meets (entitlements, partial fills, precautions), with the several accounts
#: of an advisor-style login the account tests use and the US-equity subscription of a live
#: account shared with it (so a scanner's ranks and its rows' quotes are of one moment; options
#: still come delayed; delayed stocks: tests/gateway/test_tws_realism.py); no seeded farm drops
#: or history gaps, which would make a backend's answer depend on the moment
PROFILE = IB_PAPER.with_options(
    accounts=2,
    live_data=IB_PAPER.live_data | {"STK"},
    history_gap_rate=0.0,
    farm_drops_per_day=0.0,
)
BACKENDS = ["sim", "tws", "webapi"]


def _settings(backend: str, data_dir: Path, port: int = 4002, **extra: object) -> BrokerSettings:
    return BrokerSettings(
        backend=backend,
        data_dir=data_dir,
        sim_now=SESSION_TIME,
        sim_seed=SEED,
        sim_symbols=SYMBOLS,
        port=port,
        timeout=10.0,
        pacing=False,  # the gateway below runs with --pacing off; tests/gateway cover pacing
        **extra,
    )


@pytest.fixture(scope="module", params=BACKENDS)
def broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Broker]:
    data_dir = tmp_path_factory.mktemp(f"contract-{request.param}")
    if request.param == "sim":
        b = connect(_settings("sim", data_dir)).inner
        yield b
        b.close()
        return
    if request.param == "webapi":
        with start_webapi(
            authenticated=True,
            rate_limits=False,
            seed=SEED,
            symbols=SYMBOLS,
            data_dir=data_dir,
            clock=running_clock(SESSION_TIME),
            profile=PROFILE,
        ) as webapi:
            b = connect(
                _settings(
                    "webapi", data_dir, webapi_url=webapi.url, webapi_ca_file=webapi.cert_path
                )
            ).inner
            yield b
            b.close()
        return
    with start_gateway(
        host="127.0.0.1",
        port=0,
        seed=SEED,
        symbols=SYMBOLS,
        pacing="off",
        data_dir=data_dir,
        clock=running_clock(SESSION_TIME),
        profile=PROFILE,
    ) as gateway:
        b = connect(_settings("tws", data_dir, port=gateway.port)).inner
        yield b
        b.close()
