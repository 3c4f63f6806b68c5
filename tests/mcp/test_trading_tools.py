"""The trading tools through a real MCP client over streamable HTTP, on the simulated IB world:
preview -> token -> place, idempotent confirmation, modify as a new order, cancel under the kill
switch, and refusals that name their limit. Every test checks what reached the paper account.
What goes to IB (place, bracket, modify, cancel) runs on every backend (sim, tws, webapi); the
refusals, decided before anything is sent, on the simulator only (``backends("sim")``).
"""

from __future__ import annotations

import json

import pytest
from mcp import Client

from .conftest import err, ok, trading_server

pytestmark = pytest.mark.anyio


MARKET_BUY = {"symbol": "MSFT", "action": "BUY", "quantity": 5, "order_type": "MKT"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, backend):
    return tmp_path_factory.mktemp(f"mcp-trading-{backend}")


@pytest.fixture(scope="module")
def running(data_dir, backend):
    with trading_server(data_dir, backend) as r:
        yield r


def broker(running):
    return running.server.app_state.broker()


async def test_preview_then_place_with_token_and_audit(running, data_dir):
    before = {p.contract.symbol: p.quantity for p in broker(running).positions()}
    async with Client(running.url) as client:
        prev = (await client.call_tool("preview_order", {"order": MARKET_BUY})).structured_content
        assert prev["notional"] == pytest.approx(5 * prev["reference_price"])
        assert prev["commission"] > 0 and prev["accepted"] is True
        args = {
            "order": MARKET_BUY,
            "confirmation_token": prev["confirmation_token"],
            "reason": "test: buy 5 MSFT",
        }
        placed = await client.call_tool("place_order", args)
        assert not placed.is_error, placed.content[0].text
        status = placed.structured_content["orders"][0]
        assert status["contract"]["symbol"] == "MSFT" and status["quantity"] == 5
        # Confirming again answers with the same order and sends nothing more.
        again = await client.call_tool("place_order", {**args, "reason": "twice"})
        assert not again.is_error, again.content[0].text
        assert again.structured_content["orders"][0]["order_id"] == status["order_id"]
    after = {p.contract.symbol: p.quantity for p in broker(running).positions()}
    assert after["MSFT"] - before.get("MSFT", 0.0) == 5
    refs = [e.order_ref for e in broker(running).executions() if e.contract.symbol == "MSFT"]
    assert refs.count(status["order_ref"]) == 1
    log = (data_dir / "decision_log" / "mcp_orders.jsonl").read_text().splitlines()
    entry = json.loads(log[-1])
    assert entry["who"] == "pytest" and entry["why"] == "test: buy 5 MSFT"
    assert entry["what"]["request"]["symbol"] == "MSFT"


@pytest.mark.backends("sim")
async def test_place_without_or_with_mismatched_token_refused(running):
    text = await err(
        running,
        "place_order",
        {"order": MARKET_BUY, "confirmation_token": "not-a-real-token", "reason": "no preview"},
    )
    assert "preview_order" in text
    prev = await ok(running, "preview_order", {"order": MARKET_BUY})
    other = dict(MARKET_BUY, quantity=6)
    text = await err(
        running,
        "place_order",
        {"order": other, "confirmation_token": prev["confirmation_token"], "reason": "swap"},
    )
    assert "different request" in text
    missing = await err(running, "place_order", {"order": MARKET_BUY, "reason": "no token"})
    assert "confirmation_token" in missing


@pytest.mark.backends("sim")
async def test_expired_token_refused(running):
    prev = await ok(running, "preview_order", {"order": MARKET_BUY})
    store = running.server.app_state.confirmations
    real_clock = store._clock
    store._clock = lambda: real_clock() + 121.0  # two minutes later
    try:
        text = await err(
            running,
            "place_order",
            {
                "order": MARKET_BUY,
                "confirmation_token": prev["confirmation_token"],
                "reason": "late",
            },
        )
    finally:
        store._clock = real_clock
    assert "expired" in text


@pytest.mark.backends("sim")
async def test_caps_refuse_over_limit_orders(running):
    text = await err(
        running, "preview_order", {"order": dict(MARKET_BUY, quantity=501, order_type="MKT")}
    )
    assert "quantity 501 exceeds" in text and "IBKR_MCP_MAX_QUANTITY" in text
    aapl = (await ok(running, "quotes", {"symbols": ["AAPL"]}))["quotes"][0]["quote"]
    shares = int(60_000 / aapl["ask"]) + 1  # just over the 60k value cap, under the 500 shares
    assert shares <= 500
    big = {"symbol": "AAPL", "action": "BUY", "quantity": shares, "order_type": "MKT"}
    text = await err(running, "preview_order", {"order": big})
    assert "IBKR_MCP_MAX_NOTIONAL" in text and "by " in text


@pytest.mark.backends("sim")
async def test_bad_order_fields_are_named(running):
    text = await err(running, "preview_order", {"order": dict(MARKET_BUY, order_type="LMT")})
    assert "limit_price" in text
    text = await err(running, "preview_order", {"order": dict(MARKET_BUY, quantity=-3)})
    assert "quantity" in text
    text = await err(
        running, "preview_order", {"order": dict(MARKET_BUY, take_profit=1.0, stop_loss=2.0)}
    )
    assert "inverted" in text


async def test_bracket_modify_needs_its_own_token_and_cancel(running):
    quote = (await ok(running, "quotes", {"symbols": ["MSFT"]}))["quotes"][0]["quote"]
    limit = round(quote["bid"] * 0.9, 2)  # below the market: rests
    order = {
        "symbol": "MSFT",
        "action": "BUY",
        "quantity": 3,
        "order_type": "LMT",
        "limit_price": limit,
        "take_profit": round(limit * 1.15, 2),
        "stop_loss": round(limit * 0.9, 2),
    }
    prev = await ok(running, "preview_order", {"order": order})
    placed = await ok(
        running,
        "place_order",
        {"order": order, "confirmation_token": prev["confirmation_token"], "reason": "bracket"},
    )
    parent, tp, sl = placed["orders"]
    assert (tp["order_type"], sl["order_type"]) == ("LMT", "STP")
    assert tp["action"] == sl["action"] == "SELL" and tp["parent_id"] == parent["order_id"]
    open_ids = {o.order_id for o in broker(running).open_orders()}
    assert parent["order_id"] in open_ids
    change = {"order_id": parent["order_id"], "limit_price": limit - 1}
    text = await err(running, "modify_order", {"change": change, "reason": "no token"})
    assert "confirmation_token" in text
    mprev = await ok(running, "preview_modify", {"change": change})
    args = {"change": change, "confirmation_token": mprev["confirmation_token"], "reason": "lower"}
    mod = await ok(running, "modify_order", args)
    assert mod["limit_price"] == pytest.approx(limit - 1)
    live = next(o for o in broker(running).open_orders() if o.order_id == parent["order_id"])
    assert live.limit_price == pytest.approx(limit - 1)
    cancelled = await ok(
        running, "cancel_order", {"order_id": parent["order_id"], "reason": "done testing"}
    )
    assert cancelled["status"] in ("Cancelled", "ApiCancelled", "PendingCancel")


async def test_kill_switch_file_stops_new_orders_not_cancels(running, data_dir):
    quote = (await ok(running, "quotes", {"symbols": ["MSFT"]}))["quotes"][0]["quote"]
    resting = dict(MARKET_BUY, order_type="LMT", limit_price=round(quote["bid"] * 0.9, 2))
    prev = await ok(running, "preview_order", {"order": resting})
    args = {"order": resting, "confirmation_token": prev["confirmation_token"], "reason": "rest"}
    order_id = (await ok(running, "place_order", args))["orders"][0]["order_id"]
    kill = data_dir / "KILL"
    kill.write_text("halt")
    try:
        text = await err(running, "preview_order", {"order": MARKET_BUY})
        assert "kill switch" in text
        health = await ok(running, "health")
        assert health["kill_switch"] is True
        await ok(running, "cancel_order", {"order_id": order_id, "reason": "flatten"})
    finally:
        kill.unlink()
    assert order_id not in {o.order_id for o in broker(running).open_orders()}
    await ok(running, "preview_order", {"order": MARKET_BUY})


@pytest.mark.backends("sim")
async def test_refusal_after_preview_leaves_the_token_usable(running, data_dir):
    prev = await ok(running, "preview_order", {"order": MARKET_BUY})
    args = {
        "order": MARKET_BUY,
        "confirmation_token": prev["confirmation_token"],
        "reason": "retry",
    }
    kill = data_dir / "KILL"
    kill.write_text("halt")
    try:
        assert "kill switch" in await err(running, "place_order", args)
    finally:
        kill.unlink()
    placed = await ok(running, "place_order", args)
    assert placed["orders"][0]["status"] == "Filled"


@pytest.mark.backends("sim")
async def test_live_account_refused(running, data_dir):
    import sqlite3

    await ok(running, "list_accounts")  # the simulator's account file exists from here on
    with sqlite3.connect(data_dir / "sim" / "paper.sqlite") as db:  # a live account joins
        db.execute("INSERT OR IGNORE INTO accounts VALUES ('U7777777', 0, 'USD', 'Live')")
        db.execute("INSERT OR IGNORE INTO cash VALUES ('U7777777', 'USD', 500000.0)")
    accounts = await ok(running, "list_accounts")
    live = [a for a in accounts["accounts"] if a["account_id"] == "U7777777"]
    assert live and live[0]["is_paper"] is False
    text = await err(running, "preview_order", {"order": dict(MARKET_BUY, account_id="U7777777")})
    assert "U7777777 is a live (non-paper) account" in text and "IBKR_ALLOW_LIVE" in text
    assert broker(running).open_orders("U7777777") == []


@pytest.mark.backends("sim")
async def test_rate_limit_refuses_through_place(running):
    guard = broker(running).guard
    limits, clock = guard.limits, guard._wall_clock
    guard.limits = limits.model_copy(update={"orders_per_minute": 1})
    guard._wall_clock = lambda: clock() + 120.0  # a minute with no orders yet
    try:
        prev = await ok(running, "preview_order", {"order": MARKET_BUY})
        args = {"order": MARKET_BUY, "confirmation_token": prev["confirmation_token"]}
        await ok(running, "place_order", {**args, "reason": "first of the minute"})
        filled = len(broker(running).executions())
        text = await err(running, "preview_order", {"order": MARKET_BUY})
    finally:
        guard.limits, guard._wall_clock = limits, clock
    assert "1 orders from mcp" in text and "IBKR_MCP_ORDERS_PER_MINUTE" in text
    assert len(broker(running).executions()) == filled
