"""Strict tool arguments on every path (MCP over streamable HTTP and stdio, plain POST
/tools/call): unknown arguments and booleans for numbers are refused naming the argument, and
nothing reaches the paper account; history requests are bounded per bar size as at IB."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import httpx
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.server.mcpserver.utilities.func_metadata import func_metadata
from pydantic import BaseModel, Field, ValidationError

from ibkr_assets.settings import MCPSettings
from mcp_server.arguments import model_problems, strict_model

from .conftest import serve_http, sim_broker_factory, sim_env

pytestmark = pytest.mark.anyio

BUY = {"symbol": "MSFT", "action": "BUY", "quantity": 5, "order_type": "MKT"}


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    data = tmp_path_factory.mktemp("strict")
    settings = MCPSettings(data_dir=data, trading=True, user="pytest")
    with serve_http(settings, broker_factory=sim_broker_factory(data)) as r:
        yield r


def account_activity(running) -> tuple[int, int]:
    """Open orders and executions on the paper account (what reached the broker)."""
    b = running.server.app_state.broker()
    return len(b.open_orders()), len(b.executions())


async def test_every_tool_publishes_a_closed_schema(running):
    async with Client(running.url) as client:
        tools = (await client.list_tools()).tools
    assert len(tools) > 30
    for tool in tools:
        assert tool.input_schema.get("additionalProperties") is False, tool.name
    place = next(t for t in tools if t.name == "place_order").input_schema
    assert place["$defs"]["OrderRequest"]["additionalProperties"] is False


async def test_unknown_argument_refused_and_nothing_placed(running):
    before = account_activity(running)
    async with Client(running.url) as client:
        prev = await client.call_tool("preview_order", {"order": BUY})
        assert not prev.is_error, prev.content[0].text
        token = prev.structured_content["confirmation_token"]
        placed = await client.call_tool(
            "place_order",
            {"order": BUY, "confirmation_token": token, "reason": "test", "dry_run": True},
        )
    assert placed.is_error
    text = placed.content[0].text
    assert "unknown argument 'dry_run'" in text and "place_order" in text
    assert "accepted: order, confirmation_token, reason" in text
    assert account_activity(running) == before


async def test_boolean_quantity_refused_at_any_depth(running):
    before = account_activity(running)
    async with Client(running.url) as client:
        prev = await client.call_tool("preview_order", {"order": {**BUY, "quantity": True}})
        bad_field = await client.call_tool("preview_order", {"order": {**BUY, "dry_run": False}})
        bad_limit = await client.call_tool("search_contracts", {"text": "AAPL", "limit": True})
    assert prev.is_error
    assert "argument 'order.quantity' must be a number, not a boolean (true)" in (
        prev.content[0].text
    )
    assert bad_field.is_error and "unknown field 'dry_run' in argument 'order'" in (
        bad_field.content[0].text
    )
    assert bad_limit.is_error and "'limit' must be a number" in bad_limit.content[0].text
    assert account_activity(running) == before


async def test_missing_argument_named(running):
    async with Client(running.url) as client:
        result = await client.call_tool("place_order", {"order": BUY, "reason": "test"})
    assert result.is_error
    assert "missing required argument 'confirmation_token'" in result.content[0].text


def test_plain_http_refuses_the_same_way(running):
    r = httpx.post(
        running.base + "/tools/call",
        json={"name": "quotes", "arguments": {"symbols": ["SPY"], "snapshot": True}},
    )
    assert r.status_code == 400
    assert "unknown argument 'snapshot'" in r.json()["error"]
    r = httpx.post(
        running.base + "/tools/call",
        json={"name": "preview_order", "arguments": {"order": {**BUY, "quantity": True}}},
    )
    assert r.status_code == 400 and "'order.quantity' must be a number" in r.json()["error"]


async def test_stdio_refuses_the_same_way(tmp_path):
    env = {**os.environ, **sim_env(tmp_path), "IBKR_MCP_TRADING": "on"}
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "mcp_server.cli", "serve", "--transport", "stdio"],
        env=env,
    )
    async with Client(params) as client:
        placed = await client.call_tool(
            "place_order",
            {"order": BUY, "confirmation_token": "x" * 16, "reason": "test", "dry_run": True},
        )
        news = await client.call_tool("news", {"symbol": "AAPL", "days": True})
        orders = await client.call_tool("open_orders", {})
    assert placed.is_error and "unknown argument 'dry_run'" in placed.content[0].text
    assert news.is_error and "'days' must be a number, not a boolean" in news.content[0].text
    assert orders.structured_content["orders"] == []


# -- history bounded per bar size --------------------------------------------------------------
async def test_history_longer_than_ib_serves_is_refused_naming_the_limit(running):
    async with Client(running.url) as client:
        minutes = await client.call_tool(
            "history", {"symbol": "AAPL", "duration": "1 Y", "bar_size": "1 min"}
        )
        huge = await client.call_tool("history", {"symbol": "AAPL", "duration": "99999 Y"})
        bad_size = await client.call_tool(
            "history", {"symbol": "AAPL", "duration": "1 D", "bar_size": "7 mins"}
        )
        fine = await client.call_tool(
            "history", {"symbol": "AAPL", "duration": "1 D", "bar_size": "5 mins"}
        )
    assert minutes.is_error
    assert "'1 Y' is too long for '1 min' bars: at most 1 D per request" in minutes.content[0].text
    assert huge.is_error and "at most 7 Y" in huge.content[0].text
    assert bad_size.is_error and "Invalid bar size '7 mins'" in bad_size.content[0].text
    assert not fine.is_error, fine.content[0].text
    assert 1 <= len(fine.structured_content["bars"]) <= 24 * 12


# -- the rule itself -----------------------------------------------------------------------------
class _Leg(BaseModel):
    ratio: int
    hedge: bool = False


class _Ticket(BaseModel):
    legs: list[_Leg]
    weights: dict[str, float] = {}


def test_model_problems_walks_lists_dicts_and_unions():
    data = {
        "legs": [{"ratio": 1}, {"ratio": True, "hedge": 1}, {"ratio": 2, "side": "x"}],
        "weights": {"AAPL": 0.5, "MSFT": False},
    }
    assert list(model_problems(_Ticket, data)) == [
        "argument 'legs[1].ratio' must be a number, not a boolean (true)",
        "argument 'legs[1].hedge' must be true or false, not a number (1)",
        "unknown field 'side' in argument 'legs[2]' (its fields: ratio, hedge)",
        "argument 'weights.MSFT' must be a number, not a boolean (false)",
    ]
    assert list(model_problems(_Ticket, {"legs": [{"ratio": 3}], "weights": {}})) == []


def test_strict_model_keeps_lax_number_parsing_but_not_booleans():
    def tool(qty: Annotated[float, Field(gt=0)], when: str | None = None) -> None:
        """A toy tool."""

    strict = strict_model(func_metadata(tool).arg_model)
    assert strict.model_validate({"qty": "2.5"}).qty == 2.5  # a numeric string is still a number
    with pytest.raises(ValidationError, match="'qty' must be a number, not a boolean"):
        strict.model_validate({"qty": True})
    with pytest.raises(ValidationError, match="unknown argument 'extra'"):
        strict.model_validate({"qty": 1, "extra": 1})
    assert strict_model(strict) is strict
