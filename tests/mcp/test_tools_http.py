"""Every tool through a real MCP client over streamable HTTP, on the simulated IB world.

One server per module and backend (trading on, tight caps) on a free loopback port: the tools
that reach IB run on every backend (sim, tws, webapi), the rest on the simulator only
(``backends("sim")``); each test is one behaviour. Errors must come back as an error result
with a clear message, and the server must keep serving afterwards.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from mcp import Client

from .conftest import err, ok, trading_server

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, backend):
    return tmp_path_factory.mktemp(f"mcp-http-{backend}")


@pytest.fixture(scope="module")
def running(data_dir, backend):
    with trading_server(data_dir, backend) as r:
        yield r


# -- discovery -------------------------------------------------------------------------------
@pytest.mark.backends("sim")
async def test_tools_listed_with_categories_and_annotations(running):
    async with Client(running.url) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    cats = {t.meta["category"] for t in tools.values()}
    assert cats == {
        "reference",
        "portfolio",
        "market_data",
        "trading",
        "fx",
        "alerts",
        "watchlists",
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


@pytest.mark.backends("sim")
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
    other = next(a for a in ids if a != accts["selected"])
    # MCP 2026-07-28 requests carry no session: no choice to remember, an explicit account_id
    # always works (per-session choices: tests/safety/test_mcp_sessions.py).
    text = await err(running, "select_account", {"account_id": other})
    assert "pass account_id" in text
    assert (await ok(running, "account_summary"))["account_id"] == accts["selected"]
    explicit = await ok(running, "account_summary", {"account_id": other})
    assert explicit["account_id"] == other


@pytest.mark.backends("sim")
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


async def test_history_and_depth_and_news(running, backend):
    h = await ok(running, "history", {"symbol": "AAPL", "duration": "30 D", "bar_size": "1 day"})
    bars = h["bars"]
    assert 15 <= len(bars) <= 31
    assert all(b["low"] <= min(b["open"], b["close"]) for b in bars)
    assert [b["time"] for b in bars] == sorted(b["time"] for b in bars)
    if backend == "webapi":  # IBKR's Web API has no REST endpoint for the book or for news
        for tool, args in (("order_book", {"symbol": "AAPL"}), ("news", {"symbol": "AAPL"})):
            text = await err(running, tool, args)
            assert "not available on the webapi backend" in text and "IBKR_BACKEND=tws" in text
        return
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
    assert 0 <= a["max_drawdown"] < 1 and a["trend"] in {"up", "down", "sideways"}
    s = await ok(running, "position_size", {"symbol": "AAPL", "risk_pct": 0.5, "atr_multiple": 2})
    assert s["stop_distance"] == pytest.approx(2 * s["atr14"])
    assert s["shares"] * s["stop_distance"] <= s["risk_budget"] + 1e-6


async def test_health(running, backend):
    h = await ok(running, "health")
    assert h == {**h, "backend": backend, "connected": True, "paper": True, "trading": True}


# -- portfolio analysis after the fill ----------------------------------------------------------
MARKET_BUY = {"symbol": "MSFT", "action": "BUY", "quantity": 5, "order_type": "MKT"}


async def test_portfolio_health_and_allocation(running):
    # a position exists from the placement test; place one here too so the test stands alone
    prev = await ok(running, "preview_order", {"order": MARKET_BUY})
    await ok(
        running,
        "place_order",
        {"order": MARKET_BUY, "confirmation_token": prev["confirmation_token"], "reason": "seed"},
    )
    h = await ok(running, "portfolio_health")
    assert h["positions"] >= 1 and 0 < h["largest_weight"] <= 1
    assert h["hhi"] == pytest.approx(1.0) if h["positions"] == 1 else h["hhi"] < 1
    alloc = await ok(running, "allocation")
    total = sum(w["market_value"] for w in alloc["by_currency"])
    assert total == pytest.approx(alloc["net_liquidation"], rel=1e-6)
    assert alloc["by_sector"] and alloc["by_position"][0]["name"] == "MSFT"


# -- pipeline --------------------------------------------------------------------------------
@pytest.mark.backends("sim")
async def test_pipeline_outputs_not_produced_yet(running):
    for tool, args in (
        ("latest_order_ticket", {}),
        ("risk_report", {"date": "2026-11-20"}),
        ("journal_entries", {}),
        ("feature_row", {"symbol": "AAPL"}),
    ):
        text = await err(running, tool, args)
        assert "not produced yet" in text, tool


@pytest.mark.backends("sim")
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


@pytest.mark.backends("sim")
async def test_run_daily_pipeline_without_cli_is_a_clear_error(running):
    app = running.server.app_state
    settings = app.settings
    app.settings = settings.model_copy(update={"agent_cli": "no-such-ibkr-agent"})
    try:
        text = await err(running, "run_daily_pipeline", {"reason": "nightly re-run"})
    finally:
        app.settings = settings
    assert "'no-such-ibkr-agent' is not available" in text
