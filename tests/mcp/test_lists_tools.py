"""Price alerts, watchlists and order lookups through a real MCP client over streamable HTTP, on
the simulated IB world. Each test checks what IB (the paper exchange) keeps afterwards: alerts and
watchlists as the backend reads them back, and that an alert places no order. Alerts and
watchlists run on the backends whose IB API has them (sim, webapi); the ``tws`` backend answers
that they are not available there. Order lookups run on every backend; read-only mode, decided
before anything is sent, on the simulator only.
"""

from __future__ import annotations

import pytest

from ibkr_assets.settings import MCPSettings

from .conftest import err, ok, readonly_broker_factory, serve_http, trading_server

pytestmark = pytest.mark.anyio


#: the backends whose IB API keeps price alerts and watchlists (the Client Portal Web API's)
with_lists = pytest.mark.backends("sim", "webapi")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, backend):
    return tmp_path_factory.mktemp(f"mcp-lists-{backend}")


@pytest.fixture(scope="module")
def running(data_dir, backend):
    with trading_server(data_dir, backend) as r:
        yield r


def broker(running):
    return running.server.app_state.broker()


def orders_and_positions(running) -> tuple[list, dict]:
    b = broker(running)
    return b.open_orders(), {p.contract.symbol: p.quantity for p in b.positions()}


# -- price alerts ----------------------------------------------------------------------------
@with_lists
async def test_alert_created_listed_and_deleted_without_an_order(running):
    before = orders_and_positions(running)
    alert = await ok(
        running,
        "create_alert",
        {"symbol": "AAPL", "condition": ">=", "price": 10_000.0, "name": "AAPL moonshot"},
    )
    assert alert["contract"]["symbol"] == "AAPL" and alert["condition"] == ">="
    assert alert["active"] is True and alert["triggered"] is False
    kept = {a.alert_id: a for a in broker(running).alerts()}
    assert kept[alert["alert_id"]].price == 10_000.0
    assert kept[alert["alert_id"]].name == "AAPL moonshot"
    listed = await ok(running, "list_alerts")
    assert alert["alert_id"] in {a["alert_id"] for a in listed["alerts"]}
    assert orders_and_positions(running) == before  # an alert never trades

    deleted = await ok(running, "delete_alert", {"alert_id": alert["alert_id"]})
    assert deleted == {"alert_id": alert["alert_id"], "deleted": True}
    assert alert["alert_id"] not in {a.alert_id for a in broker(running).alerts()}
    text = await err(running, "delete_alert", {"alert_id": alert["alert_id"]})
    assert str(alert["alert_id"]) in text


@with_lists
async def test_alert_arguments_are_checked_before_ib(running):
    text = await err(running, "create_alert", {"symbol": "AAPL", "condition": ">", "price": 1.0})
    assert "condition" in text
    text = await err(running, "create_alert", {"symbol": "AAPL", "condition": "<=", "price": 0})
    assert "price" in text
    assert broker(running).alerts() == []


async def test_read_only_mode_refuses_alert_changes(tmp_path):
    settings = MCPSettings(data_dir=tmp_path, user="pytest")
    with serve_http(settings, broker_factory=readonly_broker_factory(tmp_path)) as ro:
        text = await err(ro, "create_alert", {"symbol": "AAPL", "condition": "<=", "price": 1.0})
        assert "read-only mode (IBKR_READONLY=true)" in text and "nothing was sent" in text
        assert "read-only mode" in await err(ro, "delete_alert", {"alert_id": 1})
        assert (await ok(ro, "list_alerts"))["alerts"] == []  # reading is fine
        assert broker(ro).alerts() == []


# -- watchlists ------------------------------------------------------------------------------
def kept_symbols(running, name: str) -> list[str] | None:
    lists = {w.name: w for w in broker(running).watchlists()}
    return [c.symbol for c in lists[name].contracts] if name in lists else None


@with_lists
async def test_watchlist_create_add_remove_delete(running):
    created = await ok(running, "create_watchlist", {"name": "Tech", "symbols": ["AAPL", "MSFT"]})
    assert [c["symbol"] for c in created["contracts"]] == ["AAPL", "MSFT"]
    assert kept_symbols(running, "Tech") == ["AAPL", "MSFT"]

    added = await ok(
        running, "add_to_watchlist", {"watchlist": "Tech", "symbols": ["NVDA", "AAPL"]}
    )
    assert added["watchlist_id"] == created["watchlist_id"]
    assert kept_symbols(running, "Tech") == ["AAPL", "MSFT", "NVDA"]

    by_id = {"watchlist": created["watchlist_id"]}
    await ok(running, "remove_from_watchlist", {**by_id, "symbols": ["MSFT"]})
    assert kept_symbols(running, "Tech") == ["AAPL", "NVDA"]
    text = await err(running, "remove_from_watchlist", {**by_id, "symbols": ["NVDA", "MSFT"]})
    assert "not on watchlist 'Tech': MSFT" in text and "nothing was removed" in text
    assert kept_symbols(running, "Tech") == ["AAPL", "NVDA"]

    listed = await ok(running, "list_watchlists")
    assert "Tech" in {w["name"] for w in listed["watchlists"]}
    deleted = await ok(running, "delete_watchlist", {"watchlist": "Tech"})
    assert deleted["watchlist_id"] == created["watchlist_id"]
    assert kept_symbols(running, "Tech") is None
    text = await err(running, "add_to_watchlist", {"watchlist": "Tech", "symbols": ["AAPL"]})
    assert "no watchlist with id or name 'Tech'" in text


@with_lists
async def test_ibs_own_lists_do_not_change(running):
    fixed = [w for w in broker(running).watchlists() if w.read_only]
    assert fixed, "the simulated IB keeps a read-only list (Holdings)"
    before = [c.conid for c in fixed[0].contracts]
    await err(
        running, "add_to_watchlist", {"watchlist": fixed[0].watchlist_id, "symbols": ["AAPL"]}
    )
    await err(running, "delete_watchlist", {"watchlist": fixed[0].watchlist_id})
    after = next(w for w in broker(running).watchlists() if w.watchlist_id == fixed[0].watchlist_id)
    assert [c.conid for c in after.contracts] == before


# -- order status and completed orders --------------------------------------------------------
async def place(running, order: dict) -> dict:
    prev = await ok(running, "preview_order", {"order": order})
    args = {"order": order, "confirmation_token": prev["confirmation_token"], "reason": "test"}
    return (await ok(running, "place_order", args))["orders"][0]


async def test_order_status_open_then_done(running):
    bid = (await ok(running, "quotes", {"symbols": ["MSFT"]}))["quotes"][0]["quote"]["bid"]
    resting = {"symbol": "MSFT", "action": "BUY", "quantity": 2, "order_type": "LMT"}
    placed = await place(running, dict(resting, limit_price=round(bid * 0.9, 2)))
    order_id = placed["order_id"]

    status = await ok(running, "order_status", {"order_id": order_id})
    assert status["status"] in ("Submitted", "PreSubmitted") and status["remaining"] == 2
    done = await ok(running, "completed_orders")
    assert order_id not in {o["order_id"] for o in done["orders"]}

    await ok(running, "cancel_order", {"order_id": order_id, "reason": "test over"})
    assert order_id not in {o.order_id for o in broker(running).open_orders()}
    status = await ok(running, "order_status", {"order_id": order_id})
    assert status["status"] in ("Cancelled", "ApiCancelled")
    done = {o["order_id"]: o for o in (await ok(running, "completed_orders"))["orders"]}
    assert done[order_id]["status"] == status["status"]

    filled = await place(running, {"symbol": "MSFT", "action": "BUY", "quantity": 1})
    status = await ok(running, "order_status", {"order_id": filled["order_id"]})
    assert status["status"] == "Filled" and status["filled"] == 1
    text = await err(running, "order_status", {"order_id": 987_654})
    assert "987654" in text


# -- backends without the feature ------------------------------------------------------------
@pytest.mark.backends("tws")
async def test_tws_backend_says_alerts_and_watchlists_are_not_available(running):
    alerts = await err(running, "list_alerts")
    created = await err(running, "create_alert", {"symbol": "AAPL", "condition": ">=", "price": 1})
    lists = await err(running, "create_watchlist", {"name": "Tech", "symbols": ["AAPL"]})
    feature = "price alerts are not available on the tws backend: "
    assert feature in alerts and feature in created and "IBKR_BACKEND=webapi" in alerts
    assert "watchlists are not available on the tws backend: " in lists
