"""Voyz/ibind's REST client (``IbkrClient``), a Web API client this project did not write, against
``ibkr-sim webapi`` as it is: HTTPS with the simulator's self-signed certificate given to ibind
as its ``cacert``, logged in through ``/sim/login`` (the simulator's stand-in for the browser).

Session, accounts, contracts, market data (ibind's own pre-flight), history, what-if, an order
whose reply questions ibind answers through its ``answers`` mapping, cancel, and positions after a
fill, each checked against the simulated paper exchange too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from ibind import IbkrClient, OrderRequest, QuestionType
from ibind.support.errors import ExternalBrokerError

from ibkr_sim.gateway import running_clock
from ibkr_sim.webapi import WebApiHandle, start_webapi
from tests.webapi.conftest import ACCOUNT, OPEN, SYMBOLS, client

AAPL = 265598
#: the reply questions ib-paper asks of a buy far below the market (no market-data subscription,
#: the 3 % price cap) or of a large one (size, value): ibind matches them by text
ANSWERS = {
    QuestionType.MISSING_MARKET_DATA: True,
    QuestionType.PRICE_PERCENTAGE_CONSTRAINT: True,
    QuestionType.ORDER_SIZE_LIMIT: True,
    QuestionType.ORDER_VALUE_LIMIT: True,
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebApiHandle]:
    """An ib-paper gateway, not logged in, rate limits off (ibind does not pace itself)."""
    with start_webapi(
        rate_limits=False,
        symbols=SYMBOLS,
        data_dir=tmp_path_factory.mktemp("webapi"),
        clock=running_clock(OPEN),
        profile="ib-paper",
    ) as handle:
        yield handle


def _login(handle: WebApiHandle) -> None:
    with client(handle) as http:
        http.post("/sim/login").raise_for_status()


@pytest.fixture
def ibkr(gateway: WebApiHandle) -> Iterator[IbkrClient]:
    """ibind's client on the gateway, trusting its certificate, logged in."""
    _login(gateway)
    ib = IbkrClient(
        account_id=ACCOUNT,
        url=gateway.url + "/",
        cacert=str(gateway.cert_path),
        timeout=30,
        max_retries=0,
        auto_register_shutdown=False,
    )
    yield ib
    ib.close()


def test_session_status_tickle_and_logout(gateway: WebApiHandle, ibkr: IbkrClient) -> None:
    assert ibkr.check_health() is True  # POST /tickle: iserver.authStatus
    assert ibkr.check_auth_status() is True  # POST /iserver/auth/status
    status = ibkr.authentication_status().data
    assert status["authenticated"] and status["connected"] and not status["competing"]
    assert ibkr.logout().data == {"status": True}
    assert ibkr.check_health() is False  # ibind reads the 401 as "not authenticated"
    with pytest.raises(ExternalBrokerError) as refused:
        ibkr.receive_brokerage_accounts()
    assert refused.value.status_code == 401
    _login(gateway)
    assert ibkr.check_auth_status() is True


def test_accounts_and_portfolio(ibkr: IbkrClient) -> None:
    accounts = ibkr.receive_brokerage_accounts().data
    assert accounts["accounts"] == [ACCOUNT] and accounts["selectedAccount"] == ACCOUNT
    portfolio = ibkr.portfolio_accounts().data
    assert [a["id"] for a in portfolio] == [ACCOUNT]
    summary = ibkr.portfolio_summary(ACCOUNT).data
    assert summary["netliquidation"]["amount"] > 0
    ledger = ibkr.get_ledger(ACCOUNT).data
    assert ledger["BASE"]["cashbalance"] > 0


def test_contracts(ibkr: IbkrClient) -> None:
    assert ibkr.stock_conid_by_symbol("AAPL").data == {"AAPL": AAPL}
    found = ibkr.search_contract_by_symbol("AAPL").data
    assert str(AAPL) in {str(c["conid"]) for c in found}
    info = ibkr.contract_information_by_conid(str(AAPL)).data
    assert info["symbol"] == "AAPL" and info["con_id"] == AAPL
    stocks = ibkr.security_stocks_by_symbol(["AAPL", "MSFT"]).data
    assert set(stocks) == {"AAPL", "MSFT"}


def test_snapshot_after_the_pre_flight_and_history(ibkr: IbkrClient) -> None:
    quotes = ibkr.live_marketdata_snapshot_by_symbol(["AAPL", "MSFT"], fields=["31", "84", "86"])
    assert set(quotes) == {"AAPL", "MSFT"}
    assert all(float(q["last_price"]) > 0 for q in quotes.values()), quotes
    bars = ibkr.marketdata_history_by_symbol("AAPL", period="1w", bar="1d").data
    assert 3 <= len(bars["data"]) <= 6 and all(b["c"] > 0 for b in bars["data"])


def _last(ibkr: IbkrClient) -> float:
    quotes = ibkr.live_marketdata_snapshot_by_symbol(["AAPL"], fields=["31"])
    return float(quotes["AAPL"]["last_price"])


def _order(**fields: object) -> OrderRequest:
    base: dict = {"conid": AAPL, "side": "BUY", "quantity": 5, "order_type": "LMT"}
    return OrderRequest(acct_id=ACCOUNT, **{**base, **fields})


def test_whatif_place_with_questions_cancel(gateway: WebApiHandle, ibkr: IbkrClient) -> None:
    low = round(_last(ibkr) * 0.8, 2)  # rests, and meets the 3 % price cap question
    preview = ibkr.whatif_order(_order(price=low)).data
    assert "amount" in preview and "equity" in preview
    for unanswered in (QuestionType.MISSING_MARKET_DATA, QuestionType.PRICE_PERCENTAGE_CONSTRAINT):
        answers = {q: a for q, a in ANSWERS.items() if q is not unanswered}
        refused = "No answer found for question: .*" + re.escape(str(unanswered))
        with pytest.raises(ValueError, match=refused):
            ibkr.place_order(_order(price=low, coid="ibind-1"), answers)
    placed = ibkr.place_order(_order(price=low, coid="ibind-1"), ANSWERS).data
    order_id = placed["order_id"]
    assert placed["order_status"] in ("PreSubmitted", "Submitted")
    exchange = gateway.state.world.exchange
    assert int(order_id) in {o.order_id for o in exchange.open_orders(ACCOUNT)}
    live = ibkr.live_orders().data["orders"]
    assert [o["order_ref"] for o in live if str(o["orderId"]) == order_id] == ["ibind-1"]
    cancelled = ibkr.cancel_order(order_id).data
    assert cancelled["order_id"] == order_id and cancelled["msg"] == "Request was submitted"
    assert int(order_id) not in {o.order_id for o in exchange.open_orders(ACCOUNT)}


def test_filled_order_is_a_position(gateway: WebApiHandle, ibkr: IbkrClient) -> None:
    placed = ibkr.place_order(_order(order_type="MKT", tif="DAY", quantity=7), ANSWERS).data
    assert placed["order_status"] in ("PreSubmitted", "Submitted", "Filled")
    rows = [p for p in ibkr.positions(ACCOUNT).data if p["conid"] == AAPL]
    assert rows and rows[0]["position"] >= 7 and rows[0]["ticker"] == "AAPL"
    held = {p.conid: p.quantity for p in gateway.state.world.exchange.positions(ACCOUNT)}
    assert held[AAPL] == rows[0]["position"]
    trades = ibkr.trades().data
    # the spec types a trade's conid as a string (its example shows a number)
    assert any(t["conid"] == str(AAPL) and t["side"] == "B" for t in trades), trades
