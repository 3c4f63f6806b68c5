"""FX tools through a real MCP client over streamable HTTP, on the simulated IB world and every
backend: the conversion quote, and a conversion that is an ordinary order on the IDEALPRO pair
(on webapi IBKR's currency conversion), previewed by the order guard and sent by place_order with
its token. Every test checks the paper account's cash ledger, open orders and fills afterwards.
"""

from __future__ import annotations

import math

import pytest

from ibkr_assets.settings import MCPSettings

from .conftest import (
    CAPS,
    SESSION_TIME,
    SIM_SYMBOLS,
    broker_factory,
    broker_fields,
    err,
    ok,
    serve_http,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, backend):
    return tmp_path_factory.mktemp(f"mcp-fx-{backend}")


@pytest.fixture(scope="module")
def running(data_dir, backend):
    # FX orders are sized in units of currency: the share cap (max_quantity 500) does not apply
    # to them, the value caps (max_notional 60 000 USD, 5% of net liquidation) bind.
    settings = MCPSettings(
        data_dir=data_dir,
        trading=True,
        orders_per_minute=50,
        user="pytest",
        **CAPS,
    )
    with (
        broker_fields(backend, data_dir, SESSION_TIME, SIM_SYMBOLS) as fields,
        serve_http(settings, broker_factory=broker_factory(fields)) as r,
    ):
        yield r


def broker(running):
    return running.server.app_state.broker()


def cash(running) -> dict[str, float]:
    """The paper account's cash per currency."""
    return {c.currency: c.cash for c in broker(running).cash_balances()}


def conversion(source: str, target: str, amount: float) -> dict:
    return {"from_currency": source, "to_currency": target, "amount": amount}


async def test_quote_is_ibs_rate_and_the_pairs_price(running, backend):
    quote = await ok(running, "fx_quote", conversion("usd", "EUR", 10_000))
    assert (quote["source"], quote["target"]) == ("USD", "EUR")
    assert quote["converted"] == pytest.approx(10_000 * quote["rate"])
    b = broker(running)
    pair = b.quotes([b.resolve("EUR", "CASH", "IDEALPRO", "USD")])[0]
    precision = 1e-3  # every backend carries the pair's price to its increment
    eur_usd = pair.mid or pair.price
    assert quote["rate"] == pytest.approx(1 / eur_usd, rel=precision)
    text = await err(running, "fx_quote", conversion("USD", "USD", 1))
    assert "nothing to convert" in text


async def test_conversion_goes_through_preview_and_place(running, data_dir):
    before = cash(running)
    # 5 000 USD: under the 10 000 units the paper profile's size precaution (IB o383) refuses
    preview = await ok(running, "preview_fx_conversion", conversion("USD", "EUR", 5_000))
    order = preview["order"]
    pair = preview["pair"]
    assert (pair["symbol"], pair["currency"], pair["sec_type"]) == ("EUR", "USD", "CASH")
    assert order["symbol"] == str(pair["conid"]) and order["sec_type"] == "CASH"
    assert order["action"] == "BUY" and order["order_type"] == "MKT"
    assert order["quantity"] == math.floor(5_000 * preview["quote"]["rate"])
    assert preview["notional"] == pytest.approx(5_000, rel=0.01)  # valued in USD, the base
    assert cash(running) == before  # a preview sends nothing

    placed = await ok(
        running,
        "place_order",
        {
            "order": order,
            "confirmation_token": preview["confirmation_token"],
            "reason": "test: hold euros",
        },
    )
    status = placed["orders"][0]
    assert status["status"] == "Filled" and status["contract"]["sec_type"] == "CASH"
    after = cash(running)
    assert after["EUR"] - before.get("EUR", 0.0) == pytest.approx(order["quantity"])
    assert before["USD"] - after["USD"] == pytest.approx(5_000, rel=0.01)

    looked_up = await ok(running, "order_status", {"order_id": status["order_id"]})
    assert looked_up["status"] == "Filled" and looked_up["filled"] == order["quantity"]
    done = await ok(running, "completed_orders")
    assert status["order_id"] in {o["order_id"] for o in done["orders"]}

    # The base currency of the pair is the source: USD into JPY sells USD.JPY, 1 000 USD exactly.
    preview = await ok(running, "preview_fx_conversion", conversion("USD", "JPY", 1000.7))
    assert (preview["pair"]["symbol"], preview["pair"]["currency"]) == ("USD", "JPY")
    assert (preview["order"]["action"], preview["order"]["quantity"]) == ("SELL", 1000)


async def test_conversion_is_held_to_the_order_guard(running):
    before = cash(running), broker(running).open_orders()
    # CAPS: max_notional 60 000 (USD) for the MCP server's orders.
    text = await err(running, "preview_fx_conversion", conversion("USD", "EUR", 100_000))
    assert "refused by the order guard (max_notional)" in text
    preview = await ok(running, "preview_fx_conversion", conversion("USD", "EUR", 500))
    larger = dict(preview["order"], quantity=preview["order"]["quantity"] + 1)
    text = await err(
        running,
        "place_order",
        {"order": larger, "confirmation_token": preview["confirmation_token"], "reason": "swap"},
    )
    assert "different request" in text
    text = await err(running, "preview_fx_conversion", conversion("USD", "EUR", 0.5))
    assert "less than one EUR" in text
    text = await err(running, "preview_fx_conversion", conversion("EURO", "USD", 5))
    assert "from_currency" in text
    assert (cash(running), broker(running).open_orders()) == before
