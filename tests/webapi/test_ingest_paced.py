"""The daily-bars ingest through the webapi backend against a gateway enforcing IBKR's rate
limits: its request workers (the backend's history concurrency) meet no 429 when paced, and
the session counts the 429s an unpaced client meets."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ibkr_assets.assets.bar_cache import cached_bars
from ibkr_assets.assets.market_data import request_workers
from ibkr_assets.broker import Broker, BrokerSettings, connect
from ibkr_assets.broker.errors import PacingViolation
from ibkr_assets.broker.models import Contract
from ibkr_assets.broker.webapi import WebApiBroker
from ibkr_assets.config import PipelineConfig
from ibkr_assets.partitions import previous_sessions
from ibkr_assets.resources.storage import StorageResource
from ibkr_sim.gateway import running_clock
from ibkr_sim.universe import Universe
from ibkr_sim.webapi import start_webapi
from ibkr_spec.webapi import GLOBAL_LIMIT, HISTORY_CONCURRENCY
from tests.webapi.conftest import OPEN, SYMBOLS

SESSIONS = 20


def _bars(root: Path, broker: Broker) -> tuple[int, dict[str, str]]:
    """The daily_bars asset's cached_bars for every symbol, on an empty cache."""
    session = OPEN.date()
    contracts = [
        Contract(conid=i.conid, symbol=i.symbol, sec_type="STK")
        for i in Universe(n_stocks=SYMBOLS).stocks
    ]
    workers = request_workers(broker, PipelineConfig())
    assert workers == HISTORY_CONCURRENCY
    storage = StorageResource(data_dir=str(root))
    time.sleep(GLOBAL_LIMIT[1])  # connect()'s requests leave the gateway's window
    needed = previous_sessions(session, SESSIONS)
    bars, _, failed, _ = cached_bars(storage, broker, contracts, needed, OPEN, session, workers)
    return len(bars), failed


@pytest.mark.slow
def test_threaded_history_meets_no_429_when_paced(tmp_path: Path) -> None:
    with start_webapi(
        authenticated=True,
        rate_limits=True,
        symbols=SYMBOLS,
        data_dir=tmp_path,
        clock=running_clock(OPEN),
        profile="ideal",
    ) as gw:
        settings = BrokerSettings(
            backend="webapi",
            data_dir=tmp_path,
            webapi_url=gw.url,
            webapi_ca_file=gw.cert_path,
            timeout=10.0,
            pacing=True,
        )
        paced = connect(settings)  # as the pipeline builds it
        try:
            assert _bars(tmp_path / "paced", paced) == (SYMBOLS * SESSIONS, {})
            assert paced.session.too_many_requests == 0
        finally:
            paced.close()
        # the same threads unpaced: the gateway refuses, the session counts it (the backend
        # alone: connect()'s live-account check asks /portfolio/accounts, allowed once per 5 s)
        time.sleep(GLOBAL_LIMIT[1])  # the paced client's requests leave the gateway's window
        unpaced = WebApiBroker(settings.model_copy(update={"pacing": False}))
        try:
            with pytest.raises(PacingViolation, match="GET /iserver/marketdata/history"):
                _bars(tmp_path / "unpaced", unpaced)
            assert unpaced.session.too_many_requests >= 1
        finally:
            unpaced.close()
