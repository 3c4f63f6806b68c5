"""The MCP server connects to IB with its own clientId, never the pipeline's (IB refuses a
second connection with a clientId in use: error 326)."""

from __future__ import annotations

import pytest

from ibkr_assets.settings import MCPSettings, clear_settings_cache
from mcp_server.app import broker_from_env
from tests.mcp.conftest import sim_env


@pytest.fixture
def sim_root(tmp_path, monkeypatch):
    for name, value in sim_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("IBKR_MCP_CLIENT_ID", raising=False)
    clear_settings_cache()
    yield tmp_path
    clear_settings_cache()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, 2),
        ({"IBKR_CLIENT_ID": "17"}, 18),
        ({"IBKR_CLIENT_ID": "17", "IBKR_MCP_CLIENT_ID": "5"}, 5),
    ],
)
def test_server_client_id_differs_from_the_pipelines(sim_root, monkeypatch, env, expected):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    clear_settings_cache()
    broker = broker_from_env(MCPSettings())
    try:
        assert broker.guard.settings.client_id == expected
    finally:
        broker.close()
