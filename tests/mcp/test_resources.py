"""MCP resources through a real MCP client over streamable HTTP, on the simulated IB world: listed
with their URIs, JSON that matches the paper account (positions after a fill, P&L, accounts) on
every backend, and the pipeline's latest ticket and risk report read from the data root, or a
resource error naming the file when the pipeline has not written one yet (simulator only: no
broker call).
"""

from __future__ import annotations

import json

import pytest
from mcp import Client, MCPError

from ibkr_assets.broker.models import Order

from .conftest import trading_server

pytestmark = pytest.mark.anyio

URIS = {
    "ibkr://accounts",
    "ibkr://positions",
    "ibkr://pnl",
    "ibkr://orders/ticket/latest",
    "ibkr://risk/latest",
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, backend):
    return tmp_path_factory.mktemp(f"mcp-resources-{backend}")


@pytest.fixture(scope="module")
def running(data_dir, backend):
    with trading_server(data_dir, backend) as r:
        yield r


async def read(running, uri: str) -> dict:
    """A resource's JSON content."""
    async with Client(running.url) as client:
        result = await client.read_resource(uri)
    (content,) = result.contents
    assert content.mime_type == "application/json"
    return json.loads(content.text)


@pytest.mark.backends("sim")
async def test_resources_listed_as_json(running):
    async with Client(running.url) as client:
        listed = {str(r.uri): r for r in (await client.list_resources()).resources}
    assert set(listed) == URIS
    assert all(r.mime_type == "application/json" and r.description for r in listed.values())


async def test_account_resources_match_the_paper_account(running):
    b = running.server.app_state.broker()
    b.place(Order(contract=b.resolve("MSFT"), action="BUY", quantity=3, order_type="MKT"))
    held = {p.contract.symbol: p.quantity for p in b.positions()}
    assert held["MSFT"] == 3

    positions = await read(running, "ibkr://positions")
    assert {p["contract"]["symbol"]: p["quantity"] for p in positions["positions"]} == held
    assert positions["total_market_value"] == pytest.approx(
        sum(p["market_value"] for p in positions["positions"])
    )
    accounts = await read(running, "ibkr://accounts")
    primary = next(a.account_id for a in b.accounts() if a.is_primary)
    assert accounts["selected"] == primary == positions["account_id"]
    pnl = await read(running, "ibkr://pnl")
    assert pnl["account_id"] == primary
    # the gateways' clocks run: allow the price to move 1% between the two reads
    moved = 0.01 * positions["total_market_value"]
    assert pnl["unrealized"] == pytest.approx(b.pnl().unrealized, abs=moved)


@pytest.mark.backends("sim")
async def test_pipeline_resources_read_the_latest_report(running, data_dir):
    for uri, kind in (
        ("ibkr://orders/ticket/latest", "order ticket"),
        ("ibkr://risk/latest", "risk report"),
    ):
        async with Client(running.url) as client:
            with pytest.raises(MCPError, match=f"{kind} not produced yet"):
                await client.read_resource(uri)
    reports = data_dir / "reports"
    reports.mkdir()
    for day, orders in (("2026-11-19", ["old"]), ("2026-11-20", ["AAPL BUY 10"])):
        (reports / f"order_ticket_{day}.json").write_text(json.dumps({"orders": orders}))
    (reports / "risk_report_2026-11-20.json").write_text(json.dumps({"cvar_95": 0.021}))

    ticket = await read(running, "ibkr://orders/ticket/latest")
    assert ticket["date"] == "2026-11-20" and ticket["content"] == {"orders": ["AAPL BUY 10"]}
    risk = await read(running, "ibkr://risk/latest")
    assert risk["kind"] == "risk_report" and risk["content"] == {"cvar_95": 0.021}
