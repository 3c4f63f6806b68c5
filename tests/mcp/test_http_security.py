"""HTTP security: bearer token off loopback, Host/Origin validation, plain-HTTP routes."""

from __future__ import annotations

import httpx
import pytest
from mcp import Client

from mcp_server.config import MCPSettings
from mcp_server.security import InsecureBinding
from mcp_server.server import build_server, http_app

from .conftest import serve_http, sim_broker_factory

pytestmark = pytest.mark.anyio

TOKEN = "s3cret-token-for-tests-only"


@pytest.fixture(scope="module")
def open_server(tmp_path_factory):
    data = tmp_path_factory.mktemp("open")
    with serve_http(MCPSettings(data_dir=data), broker_factory=sim_broker_factory(data)) as running:
        yield running


@pytest.fixture(scope="module")
def token_server(tmp_path_factory):
    data = tmp_path_factory.mktemp("tok")
    settings = MCPSettings(data_dir=data, token=TOKEN)
    # Configured as if listening on a LAN address (the socket itself stays on loopback).
    with serve_http(settings, "192.168.1.20", sim_broker_factory(data)) as running:
        yield running


def test_non_loopback_without_token_refuses_to_start(tmp_path):
    server = build_server(MCPSettings(data_dir=tmp_path))
    with pytest.raises(InsecureBinding, match="IBKR_MCP_TOKEN"):
        http_app(server, "0.0.0.0")


def test_plain_tools_list_on_loopback(open_server):
    r = httpx.get(open_server.base + "/tools/list")
    assert r.status_code == 200
    names = {t["name"] for t in r.json()["tools"]}
    assert {"quotes", "preview_order", "ping"} <= names
    assert "place_order" not in names  # trading off by default


def test_plain_tools_call(open_server):
    r = httpx.post(open_server.base + "/tools/call", json={"name": "ping", "arguments": {}})
    assert r.status_code == 200
    assert r.json()["structuredContent"] == {"ok": True}
    bad = httpx.post(open_server.base + "/tools/call", content=b"not json")
    assert bad.status_code == 400 and "body must be JSON" in bad.json()["error"]
    unknown = httpx.post(open_server.base + "/tools/call", json={"name": "nope"})
    assert unknown.status_code == 400 and "nope" in unknown.json()["error"]


def test_foreign_origin_rejected(open_server):
    r = httpx.get(open_server.base + "/tools/list", headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    ok = httpx.get(
        open_server.base + "/tools/list", headers={"Origin": f"http://localhost:{open_server.port}"}
    )
    assert ok.status_code == 200


def test_foreign_host_rejected(open_server):
    r = httpx.get(open_server.base + "/tools/list", headers={"Host": "attacker.example:80"})
    assert r.status_code == 421


def test_token_required_on_every_route(token_server):
    base = token_server.base
    for method, path in (("GET", "/tools/list"), ("POST", "/tools/call"), ("POST", "/mcp")):
        r = httpx.request(method, base + path, json={"name": "ping"})
        assert r.status_code == 401, path
        assert TOKEN not in r.text
    wrong = httpx.get(base + "/tools/list", headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 401 and TOKEN not in wrong.text
    ok = httpx.get(base + "/tools/list", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200


async def test_mcp_client_with_bearer_token(token_server):
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"})
    async with Client(streamable_http_client(token_server.url, http_client=http)) as client:
        result = await client.call_tool("ping", {})
    assert not result.is_error and result.structured_content == {"ok": True}
