"""``Mcp-Param-*`` headers (MCP 2026-07-28): the server gives the SDK no input schema to check a
call's headers against for a tool that mirrors no argument into a header (every tool of this
server: the check would walk the schema twice to find nothing), and still gives the schema of a
tool that declares ``x-mcp-header``, whose calls with a conflicting header are refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from pydantic import Field

from ibkr_assets.settings import MCPSettings
from mcp_server.context import add_tool
from mcp_server.server import Pong, build_server, serve_in_thread

from .conftest import sim_broker_factory

pytestmark = pytest.mark.anyio


async def region(
    where: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})],
) -> Pong:
    """A tool whose argument ``where`` travels in the ``Mcp-Param-Region`` header too."""
    return Pong()


async def test_headers_are_checked_for_the_tools_that_declare_them(tmp_path: Path):
    server = build_server(MCPSettings(data_dir=tmp_path), sim_broker_factory(tmp_path))
    add_tool(server, region, "server", open_world=False)
    ours = [t.name for t in await server.list_tools() if t.name != "region"]
    assert "quotes" in ours and all(server._tool_input_schema(name) is None for name in ours)
    schema = server._tool_input_schema("region")
    assert schema is not None and schema["properties"]["where"]["x-mcp-header"] == "Region"

    calls: dict[str, httpx2.Request] = {}

    async def keep(request: httpx2.Request) -> None:
        body = json.loads(request.content or b"{}")
        if body.get("method") == "tools/call":
            calls[body["params"]["name"]] = request

    try:
        with serve_in_thread(server) as port:
            url = f"http://127.0.0.1:{port}/mcp"
            http = httpx2.AsyncClient(event_hooks={"request": [keep]})
            async with Client(streamable_http_client(url, http_client=http)) as client:
                await client.list_tools()  # the client learns to mirror "where" into the header
                assert not (await client.call_tool("region", {"where": "eu"})).is_error
                assert not (await client.call_tool("quotes", {"symbols": ["AAPL"]})).is_error
            # the same requests again, with a header that contradicts the argument
            again = {}
            for name, sent in calls.items():
                kept = sent.headers.items()
                headers = {k: v for k, v in kept if k not in ("content-length", "mcp-param-region")}
                headers["Mcp-Param-Region"] = "us"
                again[name] = httpx.post(url, headers=headers, content=sent.content)
    finally:
        server.app_state.close()
    assert again["region"].status_code == 400
    assert "Mcp-Param-Region header does not match" in again["region"].text
    assert again["quotes"].status_code == 200  # it declares no header: a stray one is ignored
