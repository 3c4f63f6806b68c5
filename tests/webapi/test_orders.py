"""Orders through the Web API: reply questions, what-if, modify, cancel, live orders, trades,
errors, and the same order seen by the TWS-protocol gateway (same paper.sqlite)."""

from __future__ import annotations

import pytest
from ib_async import IB

from ibkr_sim.gateway import start_gateway
from tests.webapi.conftest import ACCOUNT, SYMBOLS
from tests.webapi.spec import validate

AAPL = 265598
ORDERS = f"/iserver/account/{ACCOUNT}/orders"


def _order(**fields) -> dict:
    base = {"conid": AAPL, "orderType": "LMT", "side": "BUY", "quantity": 5, "tif": "GTC"}
    return {"orders": [{**base, **fields}]}


def _last(api) -> float:
    params = {"conids": str(AAPL), "fields": "31"}
    api.get("/iserver/marketdata/snapshot", params=params)  # pre-flight
    return float(api.get("/iserver/marketdata/snapshot", params=params).json()[0]["31"])


def test_reply_questions_then_modify_and_cancel(api):
    low = round(_last(api) * 0.8, 2)  # 20% below the market: rests, and meets the price cap
    asked = validate(api.post(ORDERS, json=_order(price=low, cOID="web-1")))
    assert asked[0]["messageIds"] == ["o354"]  # ib-paper: no market-data subscription
    second = validate(api.post(f"/iserver/reply/{asked[0]['id']}", json={"confirmed": True}))
    assert second[0]["messageIds"] == ["o163"] and "Percentage" in second[0]["message"][0]
    ack = validate(api.post(f"/iserver/reply/{second[0]['id']}", json={"confirmed": True}))
    order_id = ack[0]["order_id"]
    assert ack[0]["order_status"] in ("PreSubmitted", "Submitted")
    again = validate(api.post(f"/iserver/reply/{second[0]['id']}", json={"confirmed": True}))
    assert again == {"error": f"reply id not found: '{second[0]['id']}'"}

    live = validate(api.get("/iserver/account/orders"))["orders"]
    mine = [o for o in live if str(o["orderId"]) == order_id]
    assert mine and mine[0]["order_ref"] == "web-1" and mine[0]["price"] == f"{low:.2f}"

    validate(api.post("/iserver/questions/suppress", json={"messageIds": ["o354", "o163"]}))
    body = {**_order(price=round(low - 1, 2))["orders"][0]}
    changed = validate(api.post(f"/iserver/account/{ACCOUNT}/order/{order_id}", json=body))
    assert changed[0]["order_id"] == order_id  # suppressed: no question asked
    live = validate(api.get("/iserver/account/orders", params={"filters": "submitted"}))
    assert [o["price"] for o in live["orders"]] == [f"{low - 1:.2f}"]

    gone = validate(api.delete(f"/iserver/account/{ACCOUNT}/order/{order_id}"))
    assert gone["msg"] == "Request was submitted" and gone["order_id"] == order_id
    twice = validate(api.delete(f"/iserver/account/{ACCOUNT}/order/{order_id}"))
    assert twice == {"error": f"OrderID {order_id} doesn't exist"}
    dup = validate(api.post(ORDERS, json=_order(price=low, cOID="web-1")))
    assert dup["error"].startswith("Order couldn't be submitted: Local order ID=web-1")


def test_unanswered_question_is_cancelled_by_the_next_order(api):
    first = validate(api.post(ORDERS, json=_order(orderType="MKT", tif="DAY")))
    validate(api.post(ORDERS, json=_order(orderType="MKT", tif="DAY")))
    r = api.post(f"/iserver/reply/{first[0]['id']}", json={"confirmed": True})
    assert r.status_code == 503 and "later order" in r.json()["error"]
    third = validate(api.post(ORDERS, json=_order(orderType="MKT", tif="DAY")))
    dropped = validate(api.post(f"/iserver/reply/{third[0]['id']}", json={"confirmed": False}))
    assert dropped == {"error": "Order not confirmed "}


def test_size_and_value_limits_are_questions(api):
    asked = validate(api.post(ORDERS, json=_order(orderType="MKT", tif="DAY", quantity=20_000)))
    ids = [asked[0]["messageIds"][0]]
    validate(api.post("/iserver/questions/suppress", json={"messageIds": ["o354"]}))
    asked = validate(api.post(ORDERS, json=_order(orderType="MKT", tif="DAY", quantity=20_000)))
    ids.append(asked[0]["messageIds"][0])
    nxt = validate(api.post(f"/iserver/reply/{asked[0]['id']}", json={"confirmed": True}))
    ids.append(nxt[0]["messageIds"][0])
    assert ids == ["o354", "o383", "o451"]
    assert "Size Limit of 10000" in asked[0]["message"][0]
    assert "Total Value Limit of 1,000,000 USD" in nxt[0]["message"][0]


def test_what_if_trades_and_errors(api):
    w = validate(api.post(f"{ORDERS}/whatif", json=_order(orderType="MKT", tif="DAY")))
    assert w["error"] is None and w["position"] == {"current": "0", "change": "5", "after": "5"}
    assert w["amount"]["amount"].endswith("USD (5 Shares)") and "o354" in w["warn"]
    validate(api.post("/iserver/questions/suppress", json={"messageIds": ["o354"]}))
    ack = validate(api.post(ORDERS, json=_order(orderType="MKT", tif="DAY", cOID="mkt-1")))
    assert ack[0]["order_status"] == "Filled"
    (fill,) = validate(api.get("/iserver/account/trades"))
    assert (fill["side"], fill["size"], fill["order_ref"]) == ("B", 5.0, "mkt-1")
    assert fill["conid"] == str(AAPL) and float(fill["price"]) > 0

    r = api.post(ORDERS, json=_order(conid=12345))
    assert r.status_code == 400 and "12345" in r.json()["error"]
    r = api.post(ORDERS, json={"orders": [{"conid": AAPL, "side": "BUY"}]})
    assert r.status_code == 400 and "orderType" in r.json()["error"]
    off_tick = validate(api.post(ORDERS, json=_order(price=100.001)))
    assert "minimum price variation" in off_tick["error"]
    r = api.post("/iserver/account/DU0000000/orders", json=_order(price=100))
    assert r.status_code == 500 and "DU0000000" in r.json()["error"]


def test_web_order_is_the_tws_gateways_order(gateway, api):
    validate(api.post("/iserver/questions/suppress", json={"messageIds": ["o354", "o163"]}))
    low = round(_last(api) * 0.5, 2)
    ack = validate(api.post(ORDERS, json=_order(price=low, cOID="seen-by-tws")))
    order_id = int(ack[0]["order_id"])
    data_dir = gateway.state.world.exchange.state_path.parent.parent
    with start_gateway(symbols=SYMBOLS, data_dir=data_dir, profile="ib-paper") as tws:
        ib = IB()
        ib.connect("127.0.0.1", tws.port, clientId=7, timeout=10)
        try:
            trades = ib.reqAllOpenOrders()
        finally:
            ib.disconnect()
    seen = [t for t in trades if t.order.orderRef == "seen-by-tws"]
    assert seen and seen[0].order.permId and seen[0].order.lmtPrice == low
    assert seen[0].order.totalQuantity == 5 and seen[0].contract.conId == AAPL
    assert order_id in {o.order_id for o in tws.state.exchange.open_orders()}


def _rows(api) -> dict[int, dict]:
    return {o["orderId"]: o for o in validate(api.get("/iserver/account/orders"))["orders"]}


def test_bracket_children_name_the_parents_coid_and_wait_for_its_fill(api):
    validate(api.post("/iserver/questions/suppress", json={"messageIds": ["o354", "o163"]}))
    last = _last(api)
    low, high, stop = round(last * 0.8, 2), round(last * 1.2, 2), round(last * 0.7, 2)
    parent = _order(price=low, cOID="br-1")["orders"][0]
    tp = {**parent, "side": "SELL", "price": high, "parentId": "br-1"}
    sl = {**tp, "orderType": "STP", "price": stop}
    del tp["cOID"], sl["cOID"]  # V1DOC: no cOID on a bracket's children
    acks = validate(api.post(ORDERS, json={"orders": [parent, tp, sl]}))
    parent_id, tp_id, sl_id = (int(a["order_id"]) for a in acks)
    rows = _rows(api)
    assert rows[parent_id]["status"] == "Submitted" and "parentId" not in rows[parent_id]
    assert rows[tp_id]["parentId"] == rows[sl_id]["parentId"] == parent_id
    assert rows[tp_id]["status"] == rows[sl_id]["status"] == "PreSubmitted"  # held

    marketable = {**parent, "price": round(last * 1.02, 2)}
    validate(api.post(f"/iserver/account/{ACCOUNT}/order/{parent_id}", json=marketable))
    rows = _rows(api)
    assert rows[parent_id]["status"] == "Filled"
    assert rows[tp_id]["status"] == "Submitted"  # works once the parent filled
    assert rows[sl_id]["status"] == "PreSubmitted"  # a stop not yet triggered

    # a lone child attaches to the working order whose cOID it names, as TWS attaches one
    rest = validate(api.post(ORDERS, json=_order(price=low, cOID="br-2")))
    alone = validate(api.post(ORDERS, json={"orders": [{**tp, "parentId": "br-2"}]}))
    assert _rows(api)[int(alone[0]["order_id"])]["parentId"] == int(rest[0]["order_id"])
    validate(api.delete(f"/iserver/account/{ACCOUNT}/order/{rest[0]['order_id']}"))
    assert _rows(api)[int(alone[0]["order_id"])]["status"] == "Cancelled"  # with its parent

    unknown = validate(api.post(ORDERS, json={"orders": [{**tp, "parentId": "nobody"}]}))
    assert "parentId 'nobody'" in unknown["error"]
    two = {"orders": [_order(price=low)["orders"][0], _order(price=low)["orders"][0]]}
    r = api.post(ORDERS, json=two)
    assert r.status_code == 400 and "bracket" in r.json()["error"]
    r = api.post(ORDERS, json={"orders": [{**parent, "cOID": "br-3", "isSingleGroup": True}]})
    assert r.status_code == 400 and "isSingleGroup" in r.json()["error"]


def test_currency_conversion_is_listed_as_fxconv(gateway, api):
    validate(api.post("/iserver/questions/suppress", json={"messageIds": ["o354"]}))
    eur = gateway.state.world.market.universe.lookup("EUR.USD", "CASH")
    body = {"conid": eur.conid, "orderType": "MKT", "side": "BUY", "quantity": 1_000}
    ack = validate(api.post(ORDERS, json={"orders": [{**body, "tif": "DAY", "isCcyConv": True}]}))
    row = _rows(api)[int(ack[0]["order_id"])]
    assert (row["secType"], row["listingExchange"]) == ("CASH", "FXCONV")
    assert (row["description1"], row["ticker"], row["cashCcy"]) == ("EUR.USD", "EUR", "USD")
    assert row["status"] == "Filled" and len(row["avgPrice"].split(".")[1]) == 5
    assert float(row["totalCashSize"]) == pytest.approx(1_000 * float(row["avgPrice"]), abs=0.01)
