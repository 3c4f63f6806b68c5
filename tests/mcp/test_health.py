"""The health tool says whether the broker answers: connected only when it does, otherwise
false with IB's reason, and connected again once the broker is back."""

from __future__ import annotations

from pathlib import Path

import pytest

from ibkr_assets.broker.errors import NotConnected
from ibkr_assets.settings import MCPSettings

from .conftest import ok, serve_http, sim_broker_factory

pytestmark = pytest.mark.anyio


async def test_health_is_connected_only_when_the_broker_answers(tmp_path: Path):
    opened = sim_broker_factory(tmp_path)
    gateway_up = False

    def factory(settings: MCPSettings):
        if not gateway_up:
            raise NotConnected("cannot reach TWS / IB Gateway at 127.0.0.1:4002", code=502)
        return opened(settings)

    with serve_http(MCPSettings(data_dir=tmp_path), broker_factory=factory) as running:
        down = await ok(running, "health")
        assert down["connected"] is False
        assert down["error"] == "[IB 502] cannot reach TWS / IB Gateway at 127.0.0.1:4002"
        assert down["backend"] is None and down["account_id"] is None
        assert down["trading"] is False

        gateway_up = True
        up = await ok(running, "health")
        assert up == {**up, "connected": True, "error": None, "backend": "sim", "paper": True}

        running.server.app_state.broker().inner.close()  # the connection drops
        dropped = await ok(running, "health")
        assert dropped["connected"] is False and "[IB 504]" in dropped["error"]
