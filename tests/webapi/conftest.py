"""A simulated Web API gateway on loopback, and an httpx client that trusts its certificate."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from ibkr_sim.gateway import running_clock
from ibkr_sim.webapi import WebApiHandle, start_webapi

#: a Tuesday, 10:30 New York: the market is open, so orders fill
OPEN = datetime(2026, 3, 3, 15, 30, tzinfo=UTC)
SYMBOLS = 30
ACCOUNT = "DU1234567"


def client(handle: WebApiHandle) -> httpx.Client:
    """An httpx client on the gateway's base URL, trusting its self-signed certificate."""
    verify: str | bool = str(handle.cert_path) if handle.cert_path else True
    return httpx.Client(base_url=handle.url, verify=verify, timeout=30)


@pytest.fixture
def gateway(tmp_path) -> Iterator[WebApiHandle]:
    """A logged-in ib-paper gateway (rate limits off) with its clock in an open session."""
    with start_webapi(
        authenticated=True,
        rate_limits=False,
        symbols=SYMBOLS,
        data_dir=tmp_path,
        clock=running_clock(OPEN),
        profile="ib-paper",
    ) as handle:
        yield handle


@pytest.fixture
def api(gateway: WebApiHandle) -> Iterator[httpx.Client]:
    with client(gateway) as c:
        yield c
