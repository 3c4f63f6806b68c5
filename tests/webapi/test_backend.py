"""The webapi backend against the simulated Client Portal gateway: what the contract suite
(tests/contract) cannot show: the login and TLS checks, the brokerage session reopened, reply
questions confirmed only when known safe, and pacing under IBKR's limits."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ibkr_assets.broker import BrokerSettings, connect
from ibkr_assets.broker.errors import NotConnected, OrderRejected, PacingViolation
from ibkr_assets.broker.models import Order
from ibkr_assets.broker.webapi import SAFE_REPLIES, WebApiBroker
from ibkr_sim.gateway import running_clock
from ibkr_sim.webapi import WebApiHandle, start_webapi
from tests.webapi.conftest import OPEN, SYMBOLS


def _settings(handle: WebApiHandle, data_dir: Path, **extra: object) -> BrokerSettings:
    values: dict[str, object] = {
        "backend": "webapi",
        "data_dir": data_dir,
        "webapi_url": handle.url,
        "webapi_ca_file": handle.cert_path,
        "timeout": 10.0,
        "pacing": False,
    }
    return BrokerSettings(**(values | extra))


@pytest.fixture
def broker(gateway: WebApiHandle, tmp_path: Path) -> Iterator[WebApiBroker]:
    b = connect(_settings(gateway, tmp_path)).inner
    assert isinstance(b, WebApiBroker)
    yield b
    b.close()


def test_login_and_tls_are_checked(tmp_path: Path) -> None:
    with start_webapi(symbols=SYMBOLS, data_dir=tmp_path, clock=running_clock(OPEN)) as gw:
        with pytest.raises(NotConnected, match=r"log in at https://127\.0\.0\.1:\d+"):
            connect(_settings(gw, tmp_path))
        gw.state.session.login()  # the browser step
        with pytest.raises(NotConnected, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify"):
            connect(_settings(gw, tmp_path, webapi_ca_file=None))
        b = connect(_settings(gw, tmp_path)).inner
        assert [a.account_id for a in b.accounts() if a.is_primary]
        b.close()


def test_a_lost_brokerage_session_is_reopened(gateway: WebApiHandle, broker: WebApiBroker) -> None:
    gateway.state.session.brokerage = False  # timed out: /iserver answers 401
    assert broker.resolve("AAPL").symbol == "AAPL"
    assert gateway.state.session.brokerage
    gateway.state.session.brokerage = False
    broker.session.tickle()  # the keep-alive sees it and reopens it
    assert gateway.state.session.brokerage
    gateway.state.session.logout()  # the login itself is gone: only a person can log in again
    with pytest.raises(NotConnected, match="log in"):
        broker.account_summary()


def _big_limit(broker: WebApiBroker, quantity: float) -> Order:
    """A resting buy limit of the cheapest of a few stocks, 2% under the market (inside the 3%
    price cap), within the account's buying power."""
    quotes = broker.quotes([broker.resolve(s) for s in ("BAC", "KO", "PG", "MRK")])
    cheapest = min(quotes, key=lambda q: q.price or float("inf"))
    last = cheapest.price
    assert last is not None
    return Order(
        contract=cheapest.contract,
        action="BUY",
        quantity=quantity,
        order_type="LMT",
        limit_price=round(last * 0.98, 2),
    )


def test_only_known_safe_questions_are_confirmed(
    broker: WebApiBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = _big_limit(broker, 10_001)  # above the ib-paper Size Limit of 10,000: o383
    monkeypatch.delitem(SAFE_REPLIES, "o383")
    with pytest.raises(OrderRejected, match=r"o383.*exceeds the Size Limit of 10000"):
        broker.place(order)
    assert broker.open_orders() == [] and broker.completed_orders() == []
    monkeypatch.undo()
    placed = broker.place(order)
    assert placed.status in ("PreSubmitted", "Submitted") and placed.quantity == 10_001
    assert broker.cancel(placed.order_id).status == "Cancelled"


def test_paced_under_ibkr_limits(tmp_path: Path) -> None:
    with start_webapi(
        authenticated=True, symbols=SYMBOLS, data_dir=tmp_path, clock=running_clock(OPEN)
    ) as gw:
        # the brokers themselves (connect()'s live-account check asks /portfolio/accounts, which
        # IBKR allows once per 5 s, and each broker paces only its own requests)
        unpaced = WebApiBroker(_settings(gw, tmp_path, pacing=False))
        with pytest.raises(PacingViolation, match="Too many requests"):
            for _ in range(15):
                unpaced.session.get("/iserver/contract/265598/info")
        unpaced.close()
        time.sleep(1.1)  # the gateway's window empties
        paced = WebApiBroker(_settings(gw, tmp_path, pacing=True))
        started = time.monotonic()
        for _ in range(25):
            paced.session.get("/iserver/contract/265598/info")
        assert time.monotonic() - started >= 1.9, "25 requests at 10/s take at least 2 windows"
        paced.close()
