"""Price alerts, watchlists, exchange rates and currency conversion through the simulated Web
API, every answer validated against IBKR's spec; alerts and watchlists kept in paper.sqlite."""

from __future__ import annotations

import pytest

from ibkr_sim.exchange import PaperExchange
from ibkr_sim.market import SimMarket
from ibkr_sim.webapi import WebApiHandle
from tests.webapi.conftest import ACCOUNT, SYMBOLS
from tests.webapi.spec import validate

AAPL, MSFT, EURUSD = 265598, 272093, 12087792


def _last(api, conid: int) -> float:
    params = {"conids": str(conid), "fields": "31"}
    api.get("/iserver/marketdata/snapshot", params=params)  # pre-flight
    return float(api.get("/iserver/marketdata/snapshot", params=params).json()[0]["31"])


def _alert(conid: int, operator: str, value: float, name: str, **extra) -> dict:
    condition = {
        "conidex": f"{conid}@SMART",
        "type": 1,
        "operator": operator,
        "value": f"{value:.2f}",
        "logicBind": "n",
        "triggerMethod": "0",
    }
    return {
        "alertName": name,
        "alertMessage": f"{name} reached",
        "alertRepeatable": 0,
        "outsideRth": 0,
        "tif": "GTC",
        "conditions": [condition],
        **extra,
    }


def test_alerts_round_trip_and_trigger(api, gateway: WebApiHandle):
    alerts = f"/iserver/account/{ACCOUNT}/alerts"
    assert validate(api.get(alerts)) == []
    last = _last(api, AAPL)
    far = validate(
        api.post(f"/iserver/account/{ACCOUNT}/alert", json=_alert(AAPL, ">=", last * 2, "far"))
    )
    assert far["success"] is True and far["text"] == "Submitted"
    met = _alert(AAPL, "<=", last * 1.5, "met")  # already below: triggers at the next price
    near = validate(api.post(f"/iserver/account/{ACCOUNT}/alert", json=met))
    listed = {a["order_id"]: a for a in validate(api.get(alerts))}
    assert set(listed) == {far["order_id"], near["order_id"]}
    assert listed[far["order_id"]]["alert_triggered"] is False
    assert listed[far["order_id"]]["alert_active"] == 1
    assert listed[near["order_id"]]["alert_triggered"] is True
    assert listed[near["order_id"]]["alert_active"] == 0  # not repeatable: done once triggered

    detail = validate(api.get(f"/iserver/account/alert/{far['order_id']}", params={"type": "Q"}))
    (cond,) = detail["conditions"]
    assert (cond["condition_operator"], float(cond["condition_value"])) == (
        ">=",
        round(last * 2, 2),
    )
    assert cond["conidex"].startswith(f"{AAPL}@") and detail["alert_name"] == "far"

    changed = _alert(AAPL, ">=", last * 3, "farther", orderId=far["order_id"])
    validate(api.post(f"/iserver/account/{ACCOUNT}/alert", json=changed))
    detail = validate(api.get(f"/iserver/account/alert/{far['order_id']}", params={"type": "Q"}))
    assert detail["alert_name"] == "farther"
    off = {"alertId": far["order_id"], "alertActive": 0}
    assert validate(api.post(f"/iserver/account/{ACCOUNT}/alert/activate", json=off))["success"]
    assert validate(api.get(alerts))[0]["alert_active"] == 0

    gone = validate(api.delete(f"/iserver/account/{ACCOUNT}/alert/{far['order_id']}"))
    assert gone == {"order_id": far["order_id"], "success": True, "text": "Request was submitted"}
    again = validate(api.delete(f"/iserver/account/{ACCOUNT}/alert/{far['order_id']}"))
    assert again["success"] is False and str(far["order_id"]) in again["text"]
    assert [a["order_id"] for a in validate(api.get(alerts))] == [near["order_id"]]
    huge = api.delete(f"/iserver/account/{ACCOUNT}/alert/{2**64}")  # past IBKR's int64 ids
    assert huge.status_code == 400 and "alert id" in huge.json()["error"]

    # the alert lives in paper.sqlite: the exchange over the same file sees it
    exchange = PaperExchange(
        SimMarket(seed=7, n_stocks=SYMBOLS), gateway.state.world.exchange.state_path
    )
    assert [a.name for a in exchange.alerts.alerts(ACCOUNT)] == ["met"]


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({}, "body"),
        ({"alertName": "x"}, "missing"),
        (_alert(AAPL, ">", 1.0, "gt"), "operator"),
        (_alert(999, ">=", 1.0, "bad"), "999"),
        (
            {
                **_alert(AAPL, ">=", 1.0, "t"),
                "conditions": [{"conidex": f"{AAPL}@SMART", "type": 3}],
            },
            "type",
        ),
    ],
)
def test_bad_alerts_are_400(api, body, why):
    answer = api.post(f"/iserver/account/{ACCOUNT}/alert", json=body)
    assert answer.status_code == 400 and why in answer.json()["error"]


def test_watchlists_round_trip(api):
    body = {"id": "1234", "name": "Tech", "rows": [{"C": str(AAPL)}, {"H": ""}, {"C": MSFT}]}
    made = validate(api.post("/iserver/watchlist", json=body))
    assert (made["id"], made["name"], made["readOnly"], made["instruments"]) == (
        "1234",
        "Tech",
        False,
        [],
    )
    every = validate(api.get("/iserver/watchlists"))["data"]
    assert [w["id"] for w in every["user_lists"]] == ["1234"]
    assert [w["name"] for w in every["system_lists"]] == ["Holdings"]
    assert every["system_lists"][0]["read_only"] is True
    users = validate(api.get("/iserver/watchlists", params={"SC": "USER_WATCHLIST"}))["data"]
    assert "system_lists" not in users and [w["id"] for w in users["user_lists"]] == ["1234"]

    one = validate(api.get("/iserver/watchlist", params={"id": "1234"}))
    assert [i["conid"] for i in one["instruments"]] == [AAPL, MSFT]
    assert one["instruments"][0]["ticker"] == "AAPL"
    body["rows"] = [{"C": MSFT}]  # the same id replaces the list
    validate(api.post("/iserver/watchlist", json=body))
    one = validate(api.get("/iserver/watchlist", params={"id": "1234"}))
    assert [i["conid"] for i in one["instruments"]] == [MSFT]

    holdings = every["system_lists"][0]["id"]
    refused = api.delete("/iserver/watchlist", params={"id": holdings})
    assert refused.status_code == 400 and "IB's own" in refused.json()["error"]
    bad = api.post("/iserver/watchlist", json={"id": "12a", "name": "x", "rows": []})
    assert bad.status_code == 400 and "digits" in bad.json()["error"]
    unknown = api.post("/iserver/watchlist", json={"id": "7", "name": "x", "rows": [{"C": "999"}]})
    assert unknown.status_code == 400
    gone = validate(api.delete("/iserver/watchlist", params={"id": "1234"}))
    assert gone["data"] == {"deleted": "1234"} and gone["action"] == "context"
    assert validate(api.get("/iserver/watchlists"))["data"]["user_lists"] == []
    assert api.get("/iserver/watchlist", params={"id": "1234"}).status_code == 400


def test_exchange_rate_and_pairs(api, gateway: WebApiHandle):
    eur_usd = validate(api.get("/iserver/exchangerate", params={"source": "EUR", "target": "USD"}))
    usd_eur = validate(api.get("/iserver/exchangerate", params={"source": "USD", "target": "EUR"}))
    world = gateway.state.world
    now_last = world.market.snapshot(EURUSD, world.now()).last  # the clock runs: a tick apart
    assert eur_usd["rate"] == pytest.approx(now_last, rel=1e-3)
    assert eur_usd["rate"] * usd_eur["rate"] == pytest.approx(1.0)
    same = validate(api.get("/iserver/exchangerate", params={"source": "USD", "target": "USD"}))
    assert same == {"rate": 1.0}
    bad = api.get("/iserver/exchangerate", params={"source": "XYZ", "target": "USD"})
    assert bad.status_code == 400 and "XYZ" in bad.json()["error"]
    pairs = validate(api.get("/iserver/currency/pairs", params={"currency": "EUR"}))
    assert pairs == {"EUR": [{"symbol": "EUR.USD", "conid": EURUSD, "ccyPair": "USD"}]}


def _ledger(api) -> dict[str, float]:
    body = validate(api.get(f"/portfolio/{ACCOUNT}/ledger"))
    return {k: v["cashbalance"] for k, v in body.items() if k != "BASE"}


def _placed(api, order: dict) -> list:
    answer = validate(api.post(f"/iserver/account/{ACCOUNT}/orders", json={"orders": [order]}))
    while isinstance(answer, list) and "id" in answer[0]:  # reply questions: confirm
        answer = validate(api.post(f"/iserver/reply/{answer[0]['id']}", json={"confirmed": True}))
    return answer


def test_currency_conversion_orders(api, gateway: WebApiHandle):
    before = _ledger(api)
    conv = {"conid": EURUSD, "orderType": "MKT", "side": "BUY", "tif": "DAY", "isCcyConv": True}
    ack = _placed(api, {**conv, "quantity": 10_000})
    assert ack[0]["order_status"] == "Filled"
    after = _ledger(api)
    assert after["EUR"] - before["EUR"] == pytest.approx(10_000)
    assert before["USD"] - after["USD"] > 10_000  # EUR costs more than a dollar, plus commission

    ack = _placed(api, {**conv, "side": "SELL", "fxQty": 5_000})  # USD 5,000 of EUR sold
    assert ack[0]["order_status"] == "Filled"
    final = _ledger(api)
    assert final["USD"] - after["USD"] == pytest.approx(5_000, abs=5)  # at the bid, commission
    world = gateway.state.world
    rate = world.market.snapshot(EURUSD, world.now()).last
    assert after["EUR"] - final["EUR"] == pytest.approx(5_000 / rate, rel=1e-3)

    stock = api.post(
        f"/iserver/account/{ACCOUNT}/orders",
        json={"orders": [{**conv, "conid": AAPL, "quantity": 1}]},
    )
    assert stock.status_code == 400 and "isCcyConv" in stock.json()["error"]
    loose = api.post(
        f"/iserver/account/{ACCOUNT}/orders",
        json={"orders": [{**conv, "isCcyConv": False, "fxQty": 100}]},
    )
    assert loose.status_code == 400 and "fxQty" in loose.json()["error"]
