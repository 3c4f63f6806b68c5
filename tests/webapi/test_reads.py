"""Accounts, portfolio, contracts and market data, every answer validated against IBKR's spec."""

from __future__ import annotations

from tests.webapi.conftest import ACCOUNT
from tests.webapi.spec import validate

AAPL = 265598


def _buy_filled(api, conid: int = AAPL, quantity: int = 10) -> None:
    """A market buy through the Web API, answering its questions, filled in the open session."""
    r = api.post(
        f"/iserver/account/{ACCOUNT}/orders",
        json={
            "orders": [
                {
                    "conid": conid,
                    "orderType": "MKT",
                    "side": "BUY",
                    "quantity": quantity,
                    "tif": "DAY",
                }
            ]
        },
    )
    body = validate(r)
    while isinstance(body, list) and "id" in body[0]:
        body = validate(api.post(f"/iserver/reply/{body[0]['id']}", json={"confirmed": True}))
    assert body[0]["order_status"] == "Filled", body


def test_accounts_and_portfolio(api):
    assert validate(api.get("/iserver/accounts"))["selectedAccount"] == ACCOUNT
    accounts = validate(api.get("/portfolio/accounts"))
    assert [a["accountId"] for a in accounts] == [ACCOUNT]
    summary = validate(api.get(f"/portfolio/{ACCOUNT}/summary"))
    assert summary["netliquidation"]["amount"] > 1_000_000
    assert summary["accountcode"]["value"] == ACCOUNT
    ledger = validate(api.get(f"/portfolio/{ACCOUNT}/ledger"))
    assert {"USD", "EUR", "GBP", "BASE"} <= set(ledger)
    assert ledger["EUR"]["cashbalance"] == 50_000 and ledger["EUR"]["exchangerate"] > 0.5
    assert validate(api.get(f"/portfolio/{ACCOUNT}/positions/0")) == []
    _buy_filled(api)
    rows = validate(api.get(f"/portfolio/{ACCOUNT}/positions/0"))
    assert [(p["conid"], p["position"], p["ticker"]) for p in rows] == [(AAPL, 10.0, "AAPL")]
    assert validate(api.get(f"/portfolio/{ACCOUNT}/positions/1")) == []
    r = api.get("/portfolio/DU0000000/summary")
    assert r.status_code == 500 and "DU0000000" in r.json()["error"]


def test_contracts(api):
    found = validate(api.get("/iserver/secdef/search", params={"symbol": "AAPL"}))
    assert found[0]["conid"] == str(AAPL) and found[0]["companyName"] == "Apple Inc."
    assert [s["secType"] for s in found[0]["sections"]] == ["STK", "OPT"]
    assert validate(api.post("/iserver/secdef/search", json={"symbol": "AAPL"}))[0] == found[0]
    assert validate(api.get("/iserver/secdef/search", params={"symbol": "ZZZZQ"})) == []
    info = validate(api.get(f"/iserver/contract/{AAPL}/info"))
    assert (info["con_id"], info["symbol"], info["instrument_type"]) == (AAPL, "AAPL", "STK")
    r = api.get("/iserver/contract/12345/info")
    assert r.status_code == 400 and "12345" in r.json()["error"]
    stocks = validate(api.get("/trsrv/stocks", params={"symbols": "AAPL,ZZZZQ"}))
    assert stocks["AAPL"][0]["contracts"][0]["conid"] == AAPL and stocks["ZZZZQ"] == []


def test_snapshot_preflight_and_delayed_availability(api):
    params = {"conids": str(AAPL), "fields": "31,84,86,88,55,6509,7741"}
    first = validate(api.get("/iserver/marketdata/snapshot", params=params))
    assert first == [{"conid": AAPL, "conidEx": str(AAPL)}]  # the pre-flight opens the stream
    (row,) = validate(api.get("/iserver/marketdata/snapshot", params=params))
    assert row["6509"] == "DpB"  # ib-paper: no US equity subscription, delayed data
    assert float(row["84"]) < float(row["86"]) and row["55"] == "AAPL"
    assert row["_updated"] > 1_700_000_000_000  # epoch ms
    r = api.get("/iserver/marketdata/snapshot", params={"conids": "12345"})
    assert r.status_code == 400


def test_history(api):
    body = validate(
        api.get("/iserver/marketdata/history", params={"conid": AAPL, "bar": "1d", "period": "1y"})
    )
    assert 245 <= body["points"] == len(body["data"]) <= 260
    first, last = body["data"][0], body["data"][-1]
    assert first["t"] < last["t"] and last["l"] <= last["c"] <= last["h"]
    assert body["volumeFactor"] == 100 and body["barLength"] == 86_400
    hourly = validate(
        api.get("/iserver/marketdata/history", params={"conid": AAPL, "bar": "1h", "period": "2d"})
    )
    assert 7 <= hourly["points"] <= 16
    r = api.get("/iserver/marketdata/history", params={"conid": AAPL, "bar": "7min"})
    assert r.status_code == 400 and "bar" in r.json()["error"]
