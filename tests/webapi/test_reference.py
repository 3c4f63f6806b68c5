"""Reference data, option chains, scanners, P&L and single order status, every answer validated
against IBKR's spec; then the webapi backend reading them."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from ibkr_assets.broker.errors import OrderNotFound
from ibkr_assets.broker.models import Order
from ibkr_assets.broker.settings import BrokerSettings
from ibkr_assets.broker.webapi.backend import WebApiBroker
from ibkr_sim.webapi.routes_reference import schedule
from tests.webapi.conftest import ACCOUNT
from tests.webapi.spec import validate

AAPL = 265598


def test_secdef_and_schedule(gateway, api):
    (row,) = validate(api.get("/trsrv/secdef", params={"conids": str(AAPL)}))["secdef"]
    assert (row["conid"], row["ticker"], row["listingExchange"]) == (AAPL, "AAPL", "NASDAQ")
    assert row["incrementRules"][0]["increment"] == 0.01
    assert api.get("/trsrv/secdef", params={"conids": "1,2"}).status_code == 400
    many = ",".join(str(AAPL) for _ in range(201))
    assert api.get("/trsrv/secdef", params={"conids": many}).status_code == 400

    r = api.get(
        "/trsrv/secdef/schedule",
        params={"assetClass": "STK", "symbol": "AAPL", "exchange": "NASDAQ"},
    )
    (venue,) = validate(r)
    assert (venue["exchange"], venue["timezone"]) == ("NASDAQ", "America/New_York")
    by_date = {e["tradingScheduleDate"]: e for e in venue["schedules"]}
    monday, saturday = by_date["20000103"], by_date["20000101"]
    assert monday["tradingtimes"] == [
        {"cancelDayOrders": "Y", "openingTime": "0930", "closingTime": "1600", "prop": "LIQUID"}
    ]
    assert "prop" not in saturday["tradingtimes"][0]
    assert not any(k.startswith("2026") for k in by_date), "no holiday to 2026-04-02"
    # Thanksgiving week: the holiday closed, the day after closing early, each a date of its own
    late_november = {
        e["tradingScheduleDate"]: e["tradingtimes"]
        for e in schedule(gateway.state, AAPL, date(2026, 11, 20))
    }
    assert "prop" not in late_november["20261126"][0]
    assert late_november["20261127"][0]["closingTime"] == "1300"
    assert "20261125" not in late_november
    bad = api.get(
        "/trsrv/secdef/schedule", params={"assetClass": "STK", "symbol": "AAPL", "exchange": "NYSE"}
    )
    assert bad.status_code == 400 and "NASDAQ" in bad.json()["error"]


def test_option_chain_needs_a_search_first(api):
    chain = {"conid": AAPL, "sectype": "OPT", "month": "APR26", "exchange": "SMART"}
    assert validate(api.get("/iserver/secdef/strikes", params=chain)) == {"call": [], "put": []}
    api.get("/iserver/secdef/search", params={"symbol": "AAPL", "name": "true"})
    assert validate(api.get("/iserver/secdef/strikes", params=chain))["call"] == []
    (found,) = [
        r
        for r in validate(api.get("/iserver/secdef/search", params={"symbol": "AAPL"}))
        if r["conid"] == str(AAPL)
    ]
    assert "APR26" in found["sections"][1]["months"]
    strikes = validate(api.get("/iserver/secdef/strikes", params=chain))
    assert strikes["call"] == strikes["put"] and len(strikes["call"]) > 10
    assert strikes["call"] == sorted(strikes["call"])
    r = api.get("/iserver/secdef/strikes", params=chain | {"month": "JAN99"})
    assert r.status_code == 400 and "APR26" in r.json()["error"]

    strike = strikes["call"][len(strikes["call"]) // 2]
    info = {"conid": AAPL, "sectype": "OPT", "month": "APR26", "strike": strike}
    (call,) = validate(api.get("/iserver/secdef/info", params=info | {"right": "C"}))
    assert (call["ticker"], call["right"], call["strike"]) == ("AAPL", "C", strike)
    assert call["maturityDate"] == "20260417" and call["multiplier"] == "100"
    assert "APR 17 '26" in call["desc2"] and call["desc2"].endswith("Call")
    (put,) = validate(api.get("/iserver/secdef/info", params=info | {"right": "P"}))
    assert put["conid"] != call["conid"]
    assert (
        validate(
            api.get("/iserver/secdef/info", params=info | {"right": "C", "strike": strike + 0.37})
        )
        == []
    )
    option = validate(api.get(f"/iserver/contract/{call['conid']}/info"))
    assert (option["instrument_type"], option["right"]) == ("OPT", "CALL")


def test_scanners(api):
    params = validate(api.get("/iserver/scanner/params"))
    codes = {s["code"] for s in params["scan_type_list"]}
    assert {"TOP_PERC_GAIN", "TOP_PERC_LOSE", "MOST_ACTIVE", "HOT_BY_VOLUME"} <= codes
    assert "priceAbove" in {f["code"] for f in params["filter_list"]}
    body = {"instrument": "STK", "location": "STK.US.MAJOR", "type": "TOP_PERC_GAIN"}
    gainers = validate(api.post("/iserver/scanner/run", json=body))
    rows = gainers["contracts"]
    assert rows and len(rows) <= 50 and gainers["scan_data_column_name"] == "Chg%"
    changes = [float(r["scan_data"].rstrip("%")) for r in rows]
    assert changes == sorted(changes, reverse=True) and changes[0] > 0
    assert [r["server_id"] for r in rows] == [str(i) for i in range(len(rows))]
    cheap = body | {"type": "MOST_ACTIVE", "filter": [{"code": "priceBelow", "value": 50}]}
    for r in validate(api.post("/iserver/scanner/run", json=cheap))["contracts"]:
        last = validate(
            api.get("/iserver/marketdata/snapshot", params={"conids": r["con_id"], "fields": "31"})
        )
        assert "31" not in last[0] or float(last[0]["31"].lstrip("CH")) < 50
    for bad in ({"type": "NOT_A_SCANNER"}, {"filter": [{"code": "nope", "value": 1}]}):
        r = api.post("/iserver/scanner/run", json=body | bad)
        assert r.status_code == 400 and r.json()["error"]


def _buy(api, quantity: int, order_type: str = "MKT", price: float | None = None) -> int:
    order = {
        "conid": AAPL,
        "orderType": order_type,
        "side": "BUY",
        "quantity": quantity,
        "tif": "DAY",
    }
    if price is not None:
        order["price"] = price
    body = validate(api.post(f"/iserver/account/{ACCOUNT}/orders", json={"orders": [order]}))
    while isinstance(body, list) and "id" in body[0]:
        body = validate(api.post(f"/iserver/reply/{body[0]['id']}", json={"confirmed": True}))
    return int(body[0]["order_id"])


def test_pnl_first_answer_is_empty_then_values(api):
    _buy(api, 10)
    assert validate(api.get("/iserver/account/pnl/partitioned")) == {"upnl": {}}
    row = validate(api.get("/iserver/account/pnl/partitioned"))["upnl"][f"{ACCOUNT}.Core"]
    assert row["rowType"] == 1 and row["nl"] > 1_000_000 and row["mv"] > 0
    assert row["upl"] != 0.0


def test_order_status(api):
    filled = validate(api.get(f"/iserver/account/order/status/{_buy(api, 5)}"))
    assert (filled["order_status"], filled["cum_fill"], filled["size"]) == ("Filled", "5.0", "0.0")
    assert (filled["side"], filled["order_type"], filled["account"]) == ("BUY", "MARKET", ACCOUNT)
    assert float(filled["average_price"]) > 0 and filled["cannot_cancel_order"] is True
    resting = validate(api.get(f"/iserver/account/order/status/{_buy(api, 5, 'LMT', 100.0)}"))
    assert resting["order_status"] in ("PreSubmitted", "Submitted")
    assert "limit_price" not in resting  # IBKR's orderStatus names no price...
    assert "Limit 100.00" in resting["order_description"]  # ...but describes the order
    assert resting["order_not_editable"] is False
    r = api.get("/iserver/account/order/status/987654321")
    assert r.status_code == 503 and "987654321" in r.json()["error"]


# -- the webapi backend ------------------------------------------------------------------------


@pytest.fixture
def broker(gateway, tmp_path):
    settings = BrokerSettings(
        backend="webapi",
        data_dir=tmp_path,
        webapi_url=gateway.url,
        webapi_ca_file=gateway.cert_path,
        timeout=10.0,
        pacing=False,
    )
    b = WebApiBroker.from_settings(settings)
    yield b
    b.close()


def test_backend_pnl_and_order_status(broker):
    aapl = broker.resolve("AAPL")
    assert aapl.primary_exchange == "NASDAQ"
    details = broker.contract_details(aapl)
    assert details.contract.primary_exchange == "NASDAQ" and details.min_tick == 0.01
    first = details.liquid_hours[0]
    assert first.start == datetime(2026, 3, 3, 14, 30, tzinfo=UTC)
    assert first.end == datetime(2026, 3, 3, 21, 0, tzinfo=UTC)
    placed = broker.place(Order(contract=aapl, action="BUY", quantity=3))
    assert broker.order_status(placed.order_id) == placed
    assert placed.status == "Filled" and placed.filled == 3
    pnl = broker.pnl()
    assert pnl.account_id == ACCOUNT and pnl.unrealized != 0.0
    with pytest.raises(OrderNotFound):
        broker.order_status(987654321)


def test_backend_learns_the_prices_of_an_order_it_did_not_place(api, broker):
    """IBKR's single order status names no price: for an order another client placed the
    backend reads the day's orders once, so a modify keeps the limit it does not change."""
    order_id = _buy(api, 5, "LMT", 100.0)
    status = broker.order_status(order_id)
    assert (status.order_type, status.limit_price, status.stop_price) == ("LMT", 100.0, None)
    changed = broker.modify(order_id, quantity=7)
    assert (changed.quantity, changed.limit_price) == (7, 100.0)
