"""Every way an assistant tried to get past the limits through the MCP tools (issue #13), over
streamable HTTP and over stdio. Default caps: 1,000 shares, $50,000, 10% of net liquidation.
"""

from __future__ import annotations

import pytest

from .conftest import TRANSPORTS, World, mcp_session

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("transport", TRANSPORTS)]


async def _quote(session, symbol: str) -> dict:
    rows = await session.ok("quotes", {"symbols": [symbol]})
    return rows["quotes"][0]["quote"]


async def _place(session, order: dict, reason: str = "attack replay") -> dict:
    preview = await session.ok("preview_order", {"order": order})
    args = {"order": order, "confirmation_token": preview["confirmation_token"], "reason": reason}
    return await session.ok("place_order", args)


async def test_buy_stop_at_one_dollar_is_valued_at_the_market(world: World, transport):
    async with mcp_session(world, transport) as s:
        order = {"symbol": "AAPL", "action": "BUY", "quantity": 500, "order_type": "STP"}
        text = await s.refused("preview_order", {"order": {**order, "stop_price": 1.0}})
        assert "IBKR_MAX_PRICE_DISTANCE" in text
        # Even with the distance rule out of the way, the caps value it at the ask.
    async with mcp_session(world, transport, IBKR_MAX_PRICE_DISTANCE="100") as s:
        text = await s.refused("preview_order", {"order": {**order, "stop_price": 1.0}})
        assert "IBKR_MCP_MAX_NOTIONAL" in text and "at the market" in text
    assert world.holdings("AAPL") == 0 and not world.orders_of("AAPL")
    assert not world.fills_of("AAPL")


async def test_marketable_penny_sell_limit_is_valued_at_the_bid(world: World, transport):
    order = {
        "symbol": "AAPL",
        "action": "SELL",
        "quantity": 500,
        "order_type": "LMT",
        "limit_price": 0.01,
    }
    async with mcp_session(world, transport, IBKR_MAX_PRICE_DISTANCE="100") as s:
        text = await s.refused("preview_order", {"order": order})
        assert "IBKR_MCP_MAX_NOTIONAL" in text
    async with mcp_session(world, transport) as s:
        assert "IBKR_MAX_PRICE_DISTANCE" in await s.refused("preview_order", {"order": order})
    assert not world.fills_of("AAPL") and not world.orders_of("AAPL")


async def test_stop_limit_with_a_far_limit_is_refused(world: World, transport):
    async with mcp_session(world, transport) as s:
        ask = (await _quote(s, "AAPL"))["ask"]
        order = {
            "symbol": "AAPL",
            "action": "BUY",
            "quantity": 500,
            "order_type": "STP LMT",
            "stop_price": round(ask * 1.01, 2),
            "limit_price": round(ask * 5, 2),
        }
        text = await s.refused("preview_order", {"order": order})
        assert "limit_price" in text and "IBKR_MAX_PRICE_DISTANCE" in text
    assert not world.orders_of("AAPL")


async def test_modify_needs_a_token_and_passes_the_caps_again(world: World, transport):
    async with mcp_session(world, transport) as s:
        ask = (await _quote(s, "AAPL"))["ask"]
        resting = {
            "symbol": "AAPL",
            "action": "BUY",
            "quantity": 1,
            "order_type": "STP",
            "stop_price": round(ask * 1.05, 2),
        }
        order_id = (await _place(s, resting))["orders"][0]["order_id"]
        change = {"order_id": order_id, "quantity": 1000}
        text = await s.refused("modify_order", {"change": change, "reason": "grow it"})
        assert "confirmation_token" in text
        fake = {"change": change, "confirmation_token": "x" * 32, "reason": "grow it"}
        assert "preview" in await s.refused("modify_order", fake)
        text = await s.refused("preview_modify", {"change": change})
        assert "IBKR_MCP_MAX_NOTIONAL" in text
    (still,) = world.orders_of("AAPL")
    assert still.order_id == order_id and still.quantity == 1
    assert world.holdings("AAPL") == 0


async def test_read_only_sends_nothing(world: World, transport):
    order = {"symbol": "MSFT", "action": "BUY", "quantity": 1, "order_type": "MKT"}
    async with mcp_session(world, transport, IBKR_READONLY="true") as s:
        text = await s.refused("preview_order", {"order": order})
        assert "read-only" in text and "IBKR_READONLY" in text
    assert world.holdings("MSFT") == 0 and not world.fills_of("MSFT")


async def test_daily_order_limit_holds_across_a_restart(world: World, transport):
    order = {"symbol": "MSFT", "action": "BUY", "quantity": 1, "order_type": "MKT"}
    async with mcp_session(world, transport, IBKR_MCP_ORDERS_PER_DAY="2") as s:
        await _place(s, order)
        await _place(s, order)
    async with mcp_session(world, transport, IBKR_MCP_ORDERS_PER_DAY="2") as s:  # restarted
        text = await s.refused("preview_order", {"order": order})
        assert "2 orders from mcp" in text and "IBKR_MCP_ORDERS_PER_DAY" in text
    assert world.holdings("MSFT") == 2 and len(world.fills_of("MSFT")) == 2


async def test_confirming_twice_sends_one_order(world: World, transport):
    order = {"symbol": "MSFT", "action": "BUY", "quantity": 3, "order_type": "MKT"}
    async with mcp_session(world, transport) as s:
        preview = await s.ok("preview_order", {"order": order})
        args = {"order": order, "confirmation_token": preview["confirmation_token"]}
        first = await s.ok("place_order", {**args, "reason": "first"})
        again = await s.ok("place_order", {**args, "reason": "network retry"})
    assert again["orders"][0]["order_id"] == first["orders"][0]["order_id"]
    assert world.holdings("MSFT") == 3 and len(world.fills_of("MSFT")) == 1


async def test_a_rate_limit_refusal_does_not_burn_the_token(world: World, transport):
    order = {"symbol": "MSFT", "action": "BUY", "quantity": 1, "order_type": "MKT"}
    async with mcp_session(world, transport, IBKR_MCP_ORDERS_PER_DAY="1") as s:
        first = await s.ok("preview_order", {"order": order})
        second = await s.ok("preview_order", {"order": order})
        await s.ok(
            "place_order",
            {"order": order, "confirmation_token": first["confirmation_token"], "reason": "one"},
        )
        args = {"order": order, "confirmation_token": second["confirmation_token"]}
        text = await s.refused("place_order", {**args, "reason": "two"})
        assert "IBKR_MCP_ORDERS_PER_DAY" in text
    async with mcp_session(world, transport, IBKR_MCP_ORDERS_PER_DAY="2") as s:
        placed = await s.ok("place_order", {**args, "reason": "two, limit raised"})
    assert placed["orders"][0]["status"] == "Filled"
    assert world.holdings("MSFT") == 2


async def test_kill_switch_blocks_orders_but_not_cancels(world: World, transport):
    async with mcp_session(world, transport) as s:
        bid = (await _quote(s, "MSFT"))["bid"]
        resting = {
            "symbol": "MSFT",
            "action": "BUY",
            "quantity": 2,
            "order_type": "LMT",
            "limit_price": round(bid * 0.95, 2),
        }
        order_id = (await _place(s, resting))["orders"][0]["order_id"]
    (world.data_dir / "KILL").write_text("halt")
    async with mcp_session(world, transport) as s:
        text = await s.refused("preview_order", {"order": resting})
        assert "kill switch" in text
        await s.ok("cancel_order", {"order_id": order_id, "reason": "flatten under the halt"})
    assert not world.orders_of("MSFT") and world.holdings("MSFT") == 0


async def test_an_option_does_not_pass_on_its_underlyings_allow_list_entry(world: World, transport):
    async with mcp_session(world, transport, IBKR_ALLOW_SYMBOLS="AAPL") as s:
        chain = await s.ok("option_chain", {"symbol": "AAPL"})
        expiry = chain["expirations"][0]
        last = (await _quote(s, "AAPL"))["last"]
        strike = min(chain["strikes"], key=lambda k: abs(k - last))
        option = f"AAPL {expiry} {strike:g} C"
        order = {"symbol": option, "action": "BUY", "quantity": 1, "order_type": "MKT"}
        text = await s.refused("preview_order", {"order": {**order, "sec_type": "OPT"}})
        assert "AAPL:OPT" in text and "IBKR_ALLOW_SYMBOLS" in text
        other = {"symbol": "MSFT", "action": "BUY", "quantity": 1, "order_type": "MKT"}
        assert "allow-list" in await s.refused("preview_order", {"order": other})
        await s.ok("preview_order", {"order": {**other, "symbol": "AAPL"}})
    assert not world.fills_of("AAPL") and not world.fills_of("MSFT")


async def test_no_token_for_an_order_ibs_what_if_rejects(world: World, transport):
    loose = {
        "IBKR_MCP_MAX_QUANTITY": "1000000",
        "IBKR_MCP_MAX_NOTIONAL": "1e12",
        "IBKR_MCP_MAX_DAILY_NOTIONAL": "1e12",
    }
    async with mcp_session(world, transport, **loose) as s:
        chain = await s.ok("option_chain", {"symbol": "AAPL"})
        last = (await _quote(s, "AAPL"))["last"]
        strike = min(chain["strikes"], key=lambda k: abs(k - 1.2 * last))
        option = f"AAPL {chain['expirations'][1]} {strike:g} C"
        # 500 naked calls: a small premium, a margin far beyond the account (IB would reject)
        order = {"symbol": option, "sec_type": "OPT", "action": "SELL", "quantity": 500}
        text = await s.refused("preview_order", {"order": order})
        assert "what-if rejects" in text and "no confirmation token" in text
    assert not world.fills_of("AAPL") and not world.orders_of("AAPL")


async def test_unknown_and_mistyped_arguments_are_refused(world: World, transport):
    order = {"symbol": "MSFT", "action": "BUY", "quantity": 1, "order_type": "MKT"}
    async with mcp_session(world, transport) as s:
        preview = await s.ok("preview_order", {"order": order})
        args = {"order": order, "confirmation_token": preview["confirmation_token"]}
        text = await s.refused("place_order", {**args, "reason": "dry", "dry_run": True})
        assert "dry_run" in text
        text = await s.refused("preview_order", {"order": {**order, "quantity": True}})
        assert "quantity" in text
    assert world.holdings("MSFT") == 0 and not world.fills_of("MSFT")
