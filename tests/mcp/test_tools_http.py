"""Every tool through a real MCP client over streamable HTTP, on the simulated IB world.

One server per module (trading on, tight caps) on a free loopback port; each test is one
behaviour. Errors must come back as an error result with a clear message, and the server must
keep serving afterwards.
"""

from __future__ import annotations

import json
from datetime import date

import pandas as pd
import pytest
from mcp import Client

from mcp_server.config import MCPSettings

from .conftest import serve_http, sim_broker_factory

pytestmark = pytest.mark.anyio

CAPS = {"max_quantity": 500, "max_notional": 60_000, "max_nlv_share": 0.05}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("mcp-http")


@pytest.fixture(scope="module")
def running(data_dir):
    settings = MCPSettings(
        data_dir=data_dir,
        trading=True,
        orders_per_minute=50,
        orders_per_day=100,
        user="pytest",
        agent_cli="true",
        **CAPS,
    )
    with serve_http(settings, broker_factory=sim_broker_factory(data_dir)) as r:
        yield r


async def call(running, name: str, args: dict | None = None):
    async with Client(running.url) as client:
        return await client.call_tool(name, args or {})


async def ok(running, name: str, args: dict | None = None) -> dict:
    result = await call(running, name, args)
    assert not result.is_error, result.content[0].text
    return result.structured_content


async def err(running, name: str, args: dict | None = None) -> str:
    result = await call(running, name, args)
    assert result.is_error, result.structured_content
    return result.content[0].text


# -- discovery -------------------------------------------------------------------------------
async def test_tools_listed_with_categories_and_annotations(running):
    async with Client(running.url) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    cats = {t.meta["category"] for t in tools.values()}
    assert cats == {
        "reference",
        "portfolio",
        "market_data",
        "trading",
        "scanner",
        "analysis",
        "pipeline",
        "server",
    }
    assert tools["quotes"].annotations.read_only_hint is True
    assert tools["place_order"].annotations.destructive_hint is True
    assert tools["place_order"].annotations.read_only_hint is False
    assert tools["quotes"].output_schema is not None  # structured output
    assert "Examples:" in tools["history"].description
    limit = tools["search_contracts"].input_schema["properties"]["limit"]
    assert (limit["minimum"], limit["maximum"]) == (1, 50)


# -- reference -------------------------------------------------------------------------------
async def test_reference_tools(running):
    found = await ok(running, "search_contracts", {"text": "AAPL", "limit": 3})
    assert found["contracts"][0]["symbol"] == "AAPL"
    c = await ok(running, "resolve_contract", {"symbol": "msft"})
    assert c["symbol"] == "MSFT" and c["conid"] > 0
    d = await ok(running, "contract_details", {"symbol": "AAPL"})
    assert d["sector"] and d["lot_size"] >= 1 and d["trading_hours"]
    h = await ok(running, "trading_hours", {"symbol": "AAPL"})
    assert h["open_now"] is True  # pinned Friday 10:30 New York
    chain = await ok(running, "option_chain", {"symbol": "AAPL"})
    assert chain["expirations"] == sorted(chain["expirations"]) and chain["strikes"]
    assert chain["multiplier"] == 100


async def test_unknown_symbol_is_a_clear_error_and_server_keeps_serving(running):
    text = await err(running, "resolve_contract", {"symbol": "ZZZZQ"})
    assert "ZZZZQ" in text and "200" in text
    assert (await ok(running, "ping"))["ok"] is True


async def test_schema_violation_names_the_argument(running):
    text = await err(running, "search_contracts", {"text": "AAPL", "limit": 500})
    assert "limit" in text
    text = await err(running, "quotes", {"symbols": "AAPL"})
    assert "symbols" in text
    text = await err(running, "history", {"symbol": "AAPL", "duration": "forever"})
    assert "duration" in text


# -- portfolio -------------------------------------------------------------------------------
async def test_accounts_and_summary(running):
    accts = await ok(running, "list_accounts")
    ids = [a["account_id"] for a in accts["accounts"]]
    assert accts["selected"] in ids and all(a["is_paper"] for a in accts["accounts"])
    s = await ok(running, "account_summary")
    assert s["net_liquidation"] > 0 and s["account_id"] == accts["selected"]
    p = await ok(running, "pnl")
    assert {"daily", "unrealized", "realized"} <= set(p)
    cash = await ok(running, "cash_balances")
    assert cash["total_in_base"] == pytest.approx(sum(b["value_in_base"] for b in cash["balances"]))
    text = await err(running, "select_account", {"account_id": "DU000"})
    assert "DU000" in text and "known" in text
    other = next(a for a in ids if a != accts["selected"])
    try:
        chosen = await ok(running, "select_account", {"account_id": other})
        assert chosen["selected"] == other
        assert (await ok(running, "account_summary"))["account_id"] == other
    finally:
        await ok(running, "select_account", {"account_id": accts["selected"]})


def test_plain_http_call_reaches_the_broker(running):
    import httpx

    r = httpx.post(
        running.base + "/tools/call", json={"name": "quotes", "arguments": {"symbols": ["SPY"]}}
    )
    assert r.status_code == 200, r.text
    assert r.json()["structuredContent"]["quotes"][0]["quote"]["contract"]["symbol"] == "SPY"
    bad = httpx.post(running.base + "/tools/call", json={"name": "quotes", "arguments": {}})
    assert bad.status_code == 400 and "symbols" in bad.json()["error"]


# -- market data -----------------------------------------------------------------------------
async def test_quotes_bulk(running):
    q = await ok(running, "quotes", {"symbols": ["AAPL", "MSFT", "SPY"]})
    rows = q["quotes"]
    assert [r["quote"]["contract"]["symbol"] for r in rows] == ["AAPL", "MSFT", "SPY"]
    for r in rows:
        bid, ask = r["quote"]["bid"], r["quote"]["ask"]
        assert 0 < bid <= ask
        assert r["mid"] == pytest.approx((bid + ask) / 2)


async def test_quotes_of_an_option_written_as_a_trader_writes_it(running):
    q = await ok(running, "quotes", {"symbols": ["AAPL 20261218 200 C", "aapl  20261218 200 p"]})
    call, put = (r["quote"]["contract"] for r in q["quotes"])
    assert (call["symbol"], call["sec_type"], call["last_trade_date"]) == (
        "AAPL",
        "OPT",
        "20261218",
    )
    assert (call["strike"], call["right"], put["right"]) == (200.0, "C", "P")
    underlying = (await ok(running, "quotes", {"symbols": ["AAPL"]}))["quotes"][0]["price"]
    call_price = q["quotes"][0]["price"]
    assert call_price >= underlying - 200.0 - 1.0, "a call is worth at least its intrinsic value"
    by_conid = await ok(running, "quotes", {"symbols": [str(call["conid"])]})
    assert by_conid["quotes"][0]["quote"]["contract"] == call
    text = await err(running, "quotes", {"symbols": ["AAPL 20261217 200 C"]})
    assert "200" in text and "20261217" in text


async def test_history_and_depth_and_news(running):
    h = await ok(running, "history", {"symbol": "AAPL", "duration": "30 D", "bar_size": "1 day"})
    bars = h["bars"]
    assert 15 <= len(bars) <= 31
    assert all(b["low"] <= min(b["open"], b["close"]) for b in bars)
    assert [b["time"] for b in bars] == sorted(b["time"] for b in bars)
    book = await ok(running, "order_book", {"symbol": "AAPL", "rows": 3})
    assert len(book["bids"]) == 3 and book["bids"][0]["price"] < book["asks"][0]["price"]
    n = await ok(running, "news", {"symbol": "AAPL", "days": 30, "limit": 5})
    assert 1 <= len(n["headlines"]) <= 5
    times = [x["time"] for x in n["headlines"]]
    assert times == sorted(times, reverse=True)  # newest first
    assert all(x["symbol"] == "AAPL" for x in n["headlines"])


# -- scanner ---------------------------------------------------------------------------------
async def test_scanners(running):
    up = await ok(running, "top_gainers", {"limit": 5})
    down = await ok(running, "top_losers", {"limit": 5})
    active = await ok(running, "most_active", {"limit": 5})
    ups = [r["change_pct"] for r in up["rows"]]
    assert ups == sorted(ups, reverse=True) and len(ups) == 5
    assert down["rows"][0]["change_pct"] <= up["rows"][-1]["change_pct"]
    vols = [r["volume"] for r in active["rows"]]
    assert vols == sorted(vols, reverse=True)
    codes = await ok(running, "scanner_codes")
    assert "HOT_BY_VOLUME" in codes["codes"]
    hot = await ok(
        running, "run_scanner", {"code": "HOT_BY_VOLUME", "filters": {"above_price": 50}}
    )
    assert all(r["last"] > 50 for r in hot["rows"])


# -- analysis --------------------------------------------------------------------------------
async def test_stock_analysis_and_sizing(running):
    a = await ok(running, "stock_analysis", {"symbol": "AAPL"})
    assert 0.05 < a["volatility"] < 2.0 and 0 <= a["rsi14"] <= 100
    assert a["max_drawdown"] <= 0 and a["trend"] in {"up", "down", "sideways"}
    s = await ok(running, "position_size", {"symbol": "AAPL", "risk_pct": 0.5, "atr_multiple": 2})
    assert s["stop_distance"] == pytest.approx(2 * s["atr14"])
    assert s["shares"] * s["stop_distance"] <= s["risk_budget"] + 1e-6


# -- trading ---------------------------------------------------------------------------------
LIMIT_BUY = {"symbol": "MSFT", "action": "BUY", "quantity": 5, "order_type": "MKT"}


async def test_preview_then_place_with_token_and_audit(running, data_dir):
    async with Client(running.url) as client:
        prev = (await client.call_tool("preview_order", {"order": LIMIT_BUY})).structured_content
        assert prev["notional"] == pytest.approx(5 * prev["reference_price"])
        assert prev["commission"] > 0 and prev["accepted"] is True
        placed = await client.call_tool(
            "place_order",
            {
                "order": LIMIT_BUY,
                "confirmation_token": prev["confirmation_token"],
                "reason": "test: buy 5 MSFT",
            },
        )
        assert not placed.is_error, placed.content[0].text
        status = placed.structured_content["orders"][0]
        assert status["contract"]["symbol"] == "MSFT" and status["quantity"] == 5
        again = await client.call_tool(
            "place_order",
            {
                "order": LIMIT_BUY,
                "confirmation_token": prev["confirmation_token"],
                "reason": "twice",
            },
        )
        assert again.is_error and "already used" in again.content[0].text
        pos = (await client.call_tool("positions", {})).structured_content
        ex = (await client.call_tool("executions", {})).structured_content
    assert any(p["contract"]["symbol"] == "MSFT" and p["quantity"] == 5 for p in pos["positions"])
    assert any(e["contract"]["symbol"] == "MSFT" for e in ex["executions"])
    log = (data_dir / "decision_log" / "mcp_orders.jsonl").read_text().splitlines()
    entry = json.loads(log[-1])
    assert entry["who"] == "pytest" and entry["why"] == "test: buy 5 MSFT"
    assert entry["what"]["request"]["symbol"] == "MSFT"


async def test_place_without_or_with_mismatched_token_refused(running):
    text = await err(
        running,
        "place_order",
        {"order": LIMIT_BUY, "confirmation_token": "not-a-real-token", "reason": "no preview"},
    )
    assert "preview_order" in text
    prev = await ok(running, "preview_order", {"order": LIMIT_BUY})
    other = dict(LIMIT_BUY, quantity=6)
    text = await err(
        running,
        "place_order",
        {"order": other, "confirmation_token": prev["confirmation_token"], "reason": "swap"},
    )
    assert "different order" in text
    missing = await err(running, "place_order", {"order": LIMIT_BUY, "reason": "no token"})
    assert "confirmation_token" in missing


async def test_expired_token_refused(running):
    prev = await ok(running, "preview_order", {"order": LIMIT_BUY})
    guard = running.server.app_state.guard
    real_clock = guard._clock
    guard._clock = lambda: real_clock() + 121.0  # two minutes later
    try:
        text = await err(
            running,
            "place_order",
            {
                "order": LIMIT_BUY,
                "confirmation_token": prev["confirmation_token"],
                "reason": "late",
            },
        )
    finally:
        guard._clock = real_clock
    assert "expired" in text


async def test_caps_refuse_over_limit_orders(running):
    text = await err(
        running, "preview_order", {"order": dict(LIMIT_BUY, quantity=501, order_type="MKT")}
    )
    assert "quantity 501 exceeds" in text
    big = {"symbol": "AAPL", "action": "BUY", "quantity": 100, "order_type": "MKT"}
    text = await err(running, "preview_order", {"order": big})  # ~100 x 1000 > 60k
    assert "IBKR_MCP_MAX_NOTIONAL" in text


async def test_bad_order_fields_are_named(running):
    text = await err(running, "preview_order", {"order": dict(LIMIT_BUY, order_type="LMT")})
    assert "limit_price" in text
    text = await err(running, "preview_order", {"order": dict(LIMIT_BUY, quantity=-3)})
    assert "quantity" in text
    text = await err(
        running, "preview_order", {"order": dict(LIMIT_BUY, take_profit=1.0, stop_loss=2.0)}
    )
    assert "inverted" in text


async def test_bracket_limit_cancel_and_modify(running):
    quote = (await ok(running, "quotes", {"symbols": ["MSFT"]}))["quotes"][0]["quote"]
    limit = round(quote["bid"] * 0.9, 2)  # far below the market: rests
    order = {
        "symbol": "MSFT",
        "action": "BUY",
        "quantity": 3,
        "order_type": "LMT",
        "limit_price": limit,
        "take_profit": round(limit * 1.2, 2),
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
    open_ids = {o["order_id"] for o in (await ok(running, "open_orders"))["orders"]}
    assert parent["order_id"] in open_ids
    mod = await ok(
        running,
        "modify_order",
        {"order_id": parent["order_id"], "limit_price": limit - 1, "reason": "lower"},
    )
    assert mod["limit_price"] == pytest.approx(limit - 1)
    cancelled = await ok(
        running, "cancel_order", {"order_id": parent["order_id"], "reason": "done testing"}
    )
    assert cancelled["status"] in ("Cancelled", "ApiCancelled", "PendingCancel")


async def test_kill_switch_file_stops_trading_tools(running, data_dir):
    kill = data_dir / "KILL"
    kill.write_text("halt")
    try:
        text = await err(running, "preview_order", {"order": LIMIT_BUY})
        assert "kill switch" in text
        health = await ok(running, "health")
        assert health["kill_switch"] is True
    finally:
        kill.unlink()
    await ok(running, "preview_order", {"order": LIMIT_BUY})


async def test_health(running):
    h = await ok(running, "health")
    assert h == {**h, "backend": "sim", "connected": True, "paper": True, "trading": True}


# -- portfolio analysis after the fill ----------------------------------------------------------
async def test_portfolio_health_and_allocation(running):
    # a position exists from the placement test; place one here too so the test stands alone
    prev = await ok(running, "preview_order", {"order": LIMIT_BUY})
    await ok(
        running,
        "place_order",
        {"order": LIMIT_BUY, "confirmation_token": prev["confirmation_token"], "reason": "seed"},
    )
    h = await ok(running, "portfolio_health")
    assert h["positions"] >= 1 and 0 < h["largest_weight"] <= 1
    assert h["hhi"] == pytest.approx(1.0) if h["positions"] == 1 else h["hhi"] < 1
    alloc = await ok(running, "allocation")
    total = sum(w["market_value"] for w in alloc["by_currency"])
    assert total == pytest.approx(alloc["net_liquidation"], rel=1e-6)
    assert alloc["by_sector"] and alloc["by_position"][0]["name"] == "MSFT"


# -- pipeline --------------------------------------------------------------------------------
async def test_pipeline_outputs_not_produced_yet(running):
    for tool, args in (
        ("latest_order_ticket", {}),
        ("risk_report", {"date": "2026-11-20"}),
        ("journal_entries", {}),
        ("feature_row", {"symbol": "AAPL"}),
    ):
        text = await err(running, tool, args)
        assert "not produced yet" in text, tool


async def test_pipeline_outputs_read_back(running, data_dir):
    reports = data_dir / "reports"
    reports.mkdir(exist_ok=True)
    for day in ("2026-11-19", "2026-11-20"):
        (reports / f"order_ticket_{day}.json").write_text(json.dumps({"session": day}))
    (data_dir / "features").mkdir(exist_ok=True)
    pd.DataFrame({"symbol": ["AAPL", "MSFT"], "rsi": [55.0, float("nan")]}).to_parquet(
        data_dir / "features" / "2026-11-20.parquet"
    )
    t = await ok(running, "latest_order_ticket")
    assert t["date"] == "2026-11-20" and t["content"] == {"session": "2026-11-20"}
    t = await ok(running, "latest_order_ticket", {"date": "2026-11-19"})
    assert t["content"]["session"] == "2026-11-19"
    row = await ok(running, "feature_row", {"symbol": "msft"})
    assert row["features"] == {"symbol": "MSFT", "rsi": None} and row["alpha"] is None
    assert "not in the feature matrix" in await err(running, "feature_row", {"symbol": "IBM"})
    (reports / "risk_report_2026-11-20.json").write_text(json.dumps({"cvar_95": 0.021}))
    rr = await ok(running, "risk_report")
    assert rr["content"] == {"cvar_95": 0.021} and rr["path"].endswith(
        "risk_report_2026-11-20.json"
    )
    journal = data_dir / "decision_log"
    journal.mkdir(exist_ok=True)
    pd.DataFrame({"seq": [1, 2, 3], "hash": ["a", "b", "c"]}).to_parquet(
        journal / "2026-11-20.parquet"
    )
    entries = await ok(running, "journal_entries", {"limit": 2})
    assert entries["total_rows"] == 3 and [e["seq"] for e in entries["entries"]] == [3, 2]
    launched = await ok(running, "run_daily_pipeline", {"date": str(date(2026, 11, 20))})
    assert launched["command"][-2:] == ["--date", "2026-11-20"] and launched["pid"] > 0


async def test_run_daily_pipeline_without_cli_is_a_clear_error(running):
    app = running.server.app_state
    settings = app.settings
    app.settings = settings.model_copy(update={"agent_cli": "no-such-ibkr-agent"})
    try:
        text = await err(running, "run_daily_pipeline", {})
    finally:
        app.settings = settings
    assert "'no-such-ibkr-agent' is not available" in text


async def test_live_account_refused(running, data_dir):
    import sqlite3

    await ok(running, "list_accounts")  # the simulator's account file exists from here on
    with sqlite3.connect(data_dir / "sim" / "paper.sqlite") as db:  # a live account joins
        db.execute("INSERT OR IGNORE INTO accounts VALUES ('U7777777', 0, 'USD', 'Live')")
        db.execute("INSERT OR IGNORE INTO cash VALUES ('U7777777', 'USD', 500000.0)")
    accounts = await ok(running, "list_accounts")
    live = [a for a in accounts["accounts"] if a["account_id"] == "U7777777"]
    assert live and live[0]["is_paper"] is False
    text = await err(running, "preview_order", {"order": dict(LIMIT_BUY, account_id="U7777777")})
    assert "U7777777 is a live (non-paper) account" in text and "IBKR_MCP_ALLOW_LIVE" in text


async def test_rate_limit_refuses_through_place(running):
    guard = running.server.app_state.guard
    settings = guard.settings
    guard.settings = settings.model_copy(update={"orders_per_minute": 1})
    guard._minute.clear()
    try:
        for n in range(2):
            prev = await ok(running, "preview_order", {"order": LIMIT_BUY})
            args = {"order": LIMIT_BUY, "confirmation_token": prev["confirmation_token"]}
            result = await call(running, "place_order", {**args, "reason": f"rate test {n}"})
        assert result.is_error and "1 orders per minute" in result.content[0].text
    finally:
        guard.settings = settings
