"""Per-session account selection and the pipeline launcher (issue #13, items 4 and 7)."""

from __future__ import annotations

import httpx
import pytest

from .conftest import TRANSPORTS, World, mcp_session

pytestmark = pytest.mark.anyio

ORDER = {"symbol": "MSFT", "action": "BUY", "quantity": 1, "order_type": "MKT"}


async def _place(session, order: dict) -> dict:
    preview = await session.ok("preview_order", {"order": order})
    args = {"order": order, "confirmation_token": preview["confirmation_token"], "reason": "r1"}
    return await session.ok("place_order", {**args, "reason": "session test"})


async def test_select_account_is_per_session(world: World):
    async with (
        mcp_session(world, "http", mode="legacy") as a,
        mcp_session(world, "http", mode="legacy") as b,
    ):
        chosen = await a.ok("select_account", {"account_id": "DU7654321"})
        assert chosen["selected"] == "DU7654321"
        assert (await b.ok("list_accounts"))["selected"] == "DU1234567"
        placed_a = await _place(a, ORDER)
        placed_b = await _place(b, ORDER)
    assert placed_a["orders"][0]["account_id"] == "DU7654321"
    assert placed_b["orders"][0]["account_id"] == "DU1234567"
    account = world.account()
    assert len(account.executions("DU7654321")) == 1
    assert len(account.executions("DU1234567")) == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_stateless_requests_cannot_select_an_account(world: World, transport):
    async with mcp_session(world, transport) as s:  # MCP 2026-07-28: no sessions
        text = await s.refused("select_account", {"account_id": "DU7654321"})
        assert "pass account_id" in text
        assert (await s.ok("list_accounts"))["selected"] == "DU1234567"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_legacy_stdio_session_keeps_its_choice(world: World, transport):
    async with mcp_session(world, transport, mode="legacy") as s:
        await s.ok("select_account", {"account_id": "DU7654321"})
        placed = await _place(s, ORDER)
    assert placed["orders"][0]["account_id"] == "DU7654321"


def test_plain_http_has_no_session_to_select_for(world: World, monkeypatch):
    from ibkr_assets.settings import MCPSettings
    from mcp_server.server import build_server, serve_in_thread

    for k, v in world.server_env().items():
        monkeypatch.setenv(k, v)
    server = build_server(MCPSettings())
    try:
        with serve_in_thread(server) as port:
            url = f"http://127.0.0.1:{port}/tools/call"
            select = {"name": "select_account", "arguments": {"account_id": "DU7654321"}}
            r = httpx.post(url, json=select)
            assert r.status_code == 400 and "pass account_id" in r.json()["error"]
            body = {"name": "positions", "arguments": {"account_id": "DU7654321"}}
            r = httpx.post(url, json=body)
            assert r.status_code == 200 and "DU7654321" in r.text
    finally:
        server.app_state.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_launcher_exists_only_with_trading_on(world: World, transport):
    async with mcp_session(world, transport, IBKR_MCP_TRADING="off") as s:
        names = {t.name for t in (await s.client.list_tools()).tools}
    assert "run_daily_pipeline" not in names
    assert not (world.data_dir / "logs").exists()


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("halt", "says"), [({"IBKR_READONLY": "true"}, "read-only"), ({}, "kill switch")]
)
async def test_the_launcher_refuses_while_halted(world: World, transport, halt, says):
    if not halt:
        (world.data_dir / "KILL").write_text("halt")
    async with mcp_session(world, transport, IBKR_MCP_AGENT_CLI="true", **halt) as s:
        text = await s.refused("run_daily_pipeline", {"reason": "try to trade anyway"})
    assert says in text
    assert not (world.data_dir / "logs").exists()  # nothing was started
