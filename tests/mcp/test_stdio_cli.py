"""The server over stdio (as a desktop assistant launches it) and the ``ibkr-agent mcp`` discovery
CLI (and its deprecated old name, ``ibkr-mcp``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from subprocess import CompletedProcess

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from ibkr_assets.settings import MCPSettings

from .conftest import serve_http, sim_broker_factory, sim_env

pytestmark = pytest.mark.anyio


async def test_stdio_session_with_trading_off(tmp_path):
    env = {**os.environ, **sim_env(tmp_path)}
    env.pop("IBKR_MCP_TRADING", None)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "mcp_server.cli", "serve", "--transport", "stdio"],
        env=env,
    )
    async with Client(params) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        # write tools are not offered at all with trading off; previews and reads are
        assert not names & {"place_order", "cancel_order", "modify_order"}
        assert {"preview_order", "open_orders", "quotes", "positions"} <= names
        q = await client.call_tool("quotes", {"symbols": ["AAPL", "SPY"]})
        assert not q.is_error, q.content[0].text
        assert [r["quote"]["contract"]["symbol"] for r in q.structured_content["quotes"]] == [
            "AAPL",
            "SPY",
        ]
        pos = await client.call_tool("positions", {})
        assert pos.structured_content["positions"] == []  # a fresh paper account
        h = await client.call_tool("history", {"symbol": "SPY", "duration": "1 M"})
        assert len(h.structured_content["bars"]) >= 15
        health = await client.call_tool("health", {})
        assert health.structured_content["trading"] is False
        assert health.structured_content["backend"] == "sim"
        bad = await client.call_tool("quotes", {"symbols": []})
        assert bad.is_error and "symbols" in bad.content[0].text
        placed = await client.call_tool("place_order", {})
        assert placed.is_error and "place_order" in placed.content[0].text
        assert not (await client.call_tool("ping", {})).is_error  # still serving


@pytest.fixture(scope="module")
def http_server(tmp_path_factory):
    data = tmp_path_factory.mktemp("cli")
    with serve_http(MCPSettings(data_dir=data), broker_factory=sim_broker_factory(data)) as running:
        yield running


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mcp_server.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "IBKR_MCP_TOKEN"},
    )


def test_cli_tools_json_by_category(http_server):
    out = _cli("tools", "--json", "--category", "trading", "--url", http_server.url)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert {r["name"] for r in rows} == {
        "preview_order",
        "open_orders",
        "executions",
        "order_status",
        "completed_orders",
    }
    assert all(r["category"] == "trading" and r["example"] for r in rows)


def test_cli_tools_text_and_call(http_server):
    out = _cli("tools", "--url", http_server.url)
    assert out.returncode == 0, out.stderr
    assert "[market_data]" in out.stdout and "e.g. quotes(" in out.stdout
    call = _cli("call", "ping", "--url", http_server.url)
    assert call.returncode == 0 and json.loads(call.stdout) == {"ok": True}
    health = _cli("health", "--url", http_server.url)
    assert health.returncode == 0, health.stderr
    assert json.loads(health.stdout)["paper"] is True
    unknown = _cli(
        "call", "resolve_contract", "--args", '{"symbol": "ZZZZQ"}', "--url", http_server.url
    )
    assert unknown.returncode == 1 and "ZZZZQ" in unknown.stderr
    bad = _cli("call", "ping", "--args", "[1]", "--url", http_server.url)
    assert bad.returncode == 2 and "JSON object" in bad.stderr


def test_cli_serve_refuses_non_loopback_without_token(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "mcp_server.cli", "serve", "--host", "0.0.0.0", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=20,
        env={**os.environ, **sim_env(tmp_path), "IBKR_MCP_TOKEN": "  "},  # blank = no token
    )
    assert out.returncode == 2
    assert "refusing to listen on 0.0.0.0" in out.stderr and "IBKR_MCP_TOKEN" in out.stderr


def test_cli_serve_refuses_a_short_token_without_echoing_it(tmp_path):
    short = "tok-" + "x" * 10
    out = subprocess.run(
        [sys.executable, "-m", "mcp_server.cli", "serve", "--host", "0.0.0.0", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=20,
        env={**os.environ, **sim_env(tmp_path), "IBKR_MCP_TOKEN": short},
    )
    assert out.returncode == 2
    assert "IBKR_MCP_TOKEN is 14 characters; use at least 32" in out.stderr
    assert short not in out.stderr and "Traceback" not in out.stderr


def test_cli_preview_then_place_across_two_processes(tmp_path):
    """The README's flow: ``ibkr-agent mcp call preview_order`` then ``... call place_order`` with
    its token and a reason, each call its own stdio server (no --url)."""
    env = {**os.environ, **sim_env(tmp_path), "IBKR_MCP_TRADING": "on"}
    env.pop("IBKR_MCP_TOKEN", None)
    order = {"symbol": "MSFT", "action": "BUY", "quantity": 2}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "mcp_server.cli", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )

    preview = cli("call", "preview_order", "--args", json.dumps({"order": order}))
    assert preview.returncode == 0, preview.stderr
    token = json.loads(preview.stdout)["confirmation_token"]
    args = {"order": order, "confirmation_token": token, "reason": "rebalance: MSFT under target"}
    placed = cli("call", "place_order", "--args", json.dumps(args))
    assert placed.returncode == 0, placed.stderr
    order_ref = json.loads(placed.stdout)["orders"][0]["order_ref"]
    broker = sim_broker_factory(tmp_path)(MCPSettings(data_dir=tmp_path))
    try:
        fills = [e for e in broker.executions() if e.order_ref == order_ref]
    finally:
        broker.close()
    assert sum(e.shares for e in fills) == 2


def _script(name: str, *args: str, env: dict[str, str] | None = None) -> CompletedProcess:
    """Run a console script of this install, as a user types it."""
    return subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), name), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_console_script_spawns_its_own_stdio_server(tmp_path):
    args = ("mcp", "tools", "--json", "--category", "scanner")
    out = _script("ibkr-agent", *args, env={**os.environ, **sim_env(tmp_path)})
    assert out.returncode == 0, out.stderr
    names = {r["name"] for r in json.loads(out.stdout)}
    assert names == {"top_gainers", "top_losers", "most_active", "run_scanner", "scanner_codes"}


def test_ibkr_agent_mcp_is_the_mcp_cli_and_the_old_name_warns_on_stderr():
    new = _script("ibkr-agent", "mcp", "--help")
    assert new.returncode == 0, new.stderr
    assert new.stdout.startswith("usage: ibkr-agent mcp")
    assert "{serve,tools,call,health}" in new.stdout
    assert new.stderr == ""
    assert ",mcp," in _script("ibkr-agent", "--help").stdout  # listed among the commands
    wrong = _script("ibkr-agent", "mcp", "nosuch")
    assert wrong.returncode == 2 and "usage: ibkr-agent mcp" in wrong.stderr
    old = _script("ibkr-mcp", "--help")
    assert old.returncode == 0 and old.stdout == new.stdout  # nothing added to stdout
    [note] = old.stderr.splitlines()
    assert "ibkr-mcp: deprecated" in note and "ibkr-agent mcp" in note


async def test_the_old_name_still_serves_stdio(tmp_path):
    """A desktop assistant configured with ``ibkr-mcp serve --transport stdio`` keeps working: the
    deprecation note goes to stderr, stdout carries only the MCP stream."""
    params = StdioServerParameters(
        command=os.path.join(os.path.dirname(sys.executable), "ibkr-mcp"),
        args=["serve", "--transport", "stdio"],
        env={**os.environ, **sim_env(tmp_path)},
    )
    with open(tmp_path / "stderr.txt", "w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            assert not (await client.call_tool("ping", {})).is_error
    assert "ibkr-mcp: deprecated" in (tmp_path / "stderr.txt").read_text()
