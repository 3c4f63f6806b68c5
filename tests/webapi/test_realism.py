"""The realism profile on the simulated Client Portal gateway (``ibkr-sim webapi --profile``):
what the ``ib-paper`` knobs look like through the Web API (``shared/ibkr-behaviour/webapi.md``),
each knob implemented once and shared with the TWS-protocol gateway where both show it.

- entitlements -> snapshot field 6509 (``D`` delayed, quotes 15 minutes old; ``R`` for IDEALPRO)
  and the ``o354`` question, per account;
- participation -> an order filling over several minutes in live orders and trades;
- rejections -> HTTP 200 ``{"error": ...}`` and the order ``Inactive`` in live orders;
- history gaps -> 500 ``{"error": ...}`` with HMDS's "no data" text;
- IBKR's nightly reset -> /iserver 503 while it lasts, then 401 until re-authenticated, survived by
  the webapi backend;
- the 429 penalty box.

The gateway clock starts in a NYSE session (or just before the reset) and runs in real time; the
reset tests move it forward, the partial-fill test runs it a minute per second.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from ibkr_assets.broker import connect
from ibkr_assets.broker.webapi import WebApiBroker
from ibkr_assets.broker.webapi.session import GatewayError
from ibkr_sim.gateway import running_clock
from ibkr_sim.gateway.market_data import DELAY
from ibkr_sim.gateway.profile import IB_PAPER, IDEAL, RealismProfile
from ibkr_sim.webapi import WebApiHandle, start_webapi
from tests.webapi.conftest import ACCOUNT, OPEN, SYMBOLS, client
from tests.webapi.spec import validate
from tests.webapi.test_backend import _settings as backend_settings

AAPL, MSFT, EURUSD = 265598, 272093, 12087792
ORDERS = f"/iserver/account/{ACCOUNT}/orders"
#: 00:59 New York (EST), a minute before ib-paper's nightly reset at 01:00
BEFORE_RESET = datetime(2026, 3, 3, 5, 59, tzinfo=UTC)
PAPER = IB_PAPER.with_options(history_gap_rate=0.0)


class ShiftClock:
    """A gateway clock in real time from ``start``, moved forward by :meth:`shift`."""

    def __init__(self, start: datetime) -> None:
        self._run = running_clock(start)
        self._offset = timedelta()

    def __call__(self) -> datetime:
        return self._run() + self._offset

    def shift(self, seconds: float) -> None:
        self._offset += timedelta(seconds=seconds)


def webapi(
    data_dir: Path,
    profile: RealismProfile = PAPER,
    clock: Callable[[], datetime] | None = None,
    rate_limits: bool = False,
) -> WebApiHandle:
    """A logged-in gateway with ``profile``, its clock in the open session unless given."""
    return start_webapi(
        authenticated=True,
        rate_limits=rate_limits,
        symbols=SYMBOLS,
        data_dir=data_dir,
        clock=clock or running_clock(OPEN),
        profile=profile,
    )


def snapshot(api: httpx.Client, conid: int, fields: str = "31,84,86") -> dict[str, Any]:
    """One conid's snapshot past the pre-flight."""
    params = {"conids": str(conid), "fields": fields}
    validate(api.get("/iserver/marketdata/snapshot", params=params))
    (row,) = validate(api.get("/iserver/marketdata/snapshot", params=params))
    return row


def place(api: httpx.Client, order: dict[str, Any], account: str = ACCOUNT) -> Any:
    """Place ``order``, confirming every reply question; the last answer and the questions."""
    answer = validate(api.post(f"/iserver/account/{account}/orders", json={"orders": [order]}))
    asked: list[str] = []
    while isinstance(answer, list) and "id" in answer[0]:
        asked += answer[0]["messageIds"]
        answer = validate(api.post(f"/iserver/reply/{answer[0]['id']}", json={"confirmed": True}))
    return answer, asked


# ---------------------------------------------------------------------- entitlements
def test_6509_and_o354_follow_each_accounts_entitlements(tmp_path: Path) -> None:
    """A paper login without US equity subscriptions gets delayed quotes (6509 ``D``, prices of
    15 minutes ago) and IDEALPRO live (``R``); an account entitled to stocks places a stock
    order without the o354 question, the primary account meets it."""
    second = "DU7654321"  # the paper exchange's second seeded account
    profile = PAPER.with_options(
        accounts=2, live_data_by_account={second: frozenset({"STK", "CASH"})}
    )
    with webapi(tmp_path, profile) as gw, client(gw) as api:
        assert gw.state.accounts() == [ACCOUNT, second]
        row = snapshot(api, AAPL)
        assert row["6509"] == "DpB"
        at = datetime.fromtimestamp(row["_updated"] / 1000, UTC)
        delayed = gw.state.world.market.snapshot(AAPL, at - DELAY)
        assert float(row["31"]) == pytest.approx(delayed.last, abs=0.006)
        assert float(row["84"]) == pytest.approx(delayed.bid, abs=0.006)
        assert snapshot(api, EURUSD)["6509"] == "RpB"

        order = {"conid": AAPL, "orderType": "MKT", "side": "BUY", "quantity": 1, "tif": "DAY"}
        ack, asked = place(api, order, ACCOUNT)
        assert asked == ["o354"] and ack[0]["order_status"] in (
            "PreSubmitted",
            "Submitted",
            "Filled",
        )
        ack, asked = place(api, order, second)
        assert asked == [] and "order_id" in ack[0]


def test_a_delayed_quote_reads_as_old_as_it_is(tmp_path: Path) -> None:
    """The Web API row names no trade time: the backend stamps a delayed quote (6509 ``D``)
    15 minutes before the gateway's refresh, as old as its prices are, so the order guard judges
    it against its delayed-quote bound (IBKR_MAX_DELAYED_QUOTE_AGE_S) and never as fresh."""
    with webapi(tmp_path, PAPER) as gw:
        broker = connect(backend_settings(gw, tmp_path)).inner
        assert isinstance(broker, WebApiBroker)
        try:
            quote = broker.quotes([broker.resolve("AAPL")])[0]
            age = (broker.now() - quote.time).total_seconds()
        finally:
            broker.close()
    assert quote.market_data_type == 3
    assert DELAY.total_seconds() <= age < DELAY.total_seconds() + 30


# ---------------------------------------------------------------------- orders
def test_partial_fills_show_in_live_orders_and_trades(tmp_path: Path) -> None:
    """A market order of about 3.5 minutes' allowed participation fills in several executions:
    live orders show it working with a growing filled quantity, then Filled; the trades list
    one execution per fill, over several minutes (the TWS gateway's participation limit, the
    same paper exchange)."""
    profile = PAPER.with_options(participation=0.0005, max_order_size=None, max_order_value=None)
    t0 = time.monotonic()

    def fast() -> datetime:  # a simulated minute per second
        return OPEN + timedelta(seconds=(time.monotonic() - t0) * 60)

    with webapi(tmp_path, profile, clock=fast) as gw, client(gw) as api:
        bars = gw.state.world.market.intraday_bars(MSFT, OPEN.date(), 1)
        per_minute = 0.0005 * float(bars["volume"].iloc[60:70].mean())  # from 10:30 New York
        quantity = float(round(3.5 * per_minute))
        validate(api.post("/iserver/questions/suppress", json={"messageIds": ["o354"]}))
        order = {"conid": MSFT, "orderType": "MKT", "side": "BUY", "tif": "DAY", "cOID": "partial"}
        ack, asked = place(api, order | {"quantity": quantity})
        assert asked == [], ack
        order_id = int(ack[0]["order_id"])
        seen: list[tuple[str, float]] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (not seen or seen[-1][0] != "Filled"):
            rows = validate(api.get("/iserver/account/orders"))["orders"]
            (mine,) = [r for r in rows if r["orderId"] == order_id]
            seen.append((mine["status"], float(mine["filledQuantity"])))
            assert float(mine["remainingQuantity"]) == pytest.approx(quantity - seen[-1][1])
            time.sleep(0.2)
        assert seen[-1] == ("Filled", pytest.approx(quantity)), seen
        partial = [f for s, f in seen if s in ("PreSubmitted", "Submitted") and 0 < f < quantity]
        assert len(set(partial)) >= 2 and partial == sorted(partial), seen
        fills = [
            t for t in validate(api.get("/iserver/account/trades")) if t["order_ref"] == "partial"
        ]
        assert len(fills) >= 3
        assert sum(float(t["size"]) for t in fills) == pytest.approx(quantity)
        assert len({t["trade_time"][:14] for t in fills}) >= 3, "fills over several minutes"
        status = validate(api.get(f"/iserver/account/order/status/{order_id}"))
        assert status["order_status"] == "Filled"
        assert float(status["cum_fill"]) == pytest.approx(quantity)


def test_rejection_is_an_error_and_the_order_inactive(api: httpx.Client) -> None:
    """Above the precautionary limits the gateway asks o451 (reply question); confirmed, an order
    beyond the buying power is rejected: HTTP 200 ``{"error": reason}``, and live orders list it
    Inactive, unfilled."""
    order = {"conid": AAPL, "orderType": "MKT", "side": "BUY", "quantity": 9000, "tif": "DAY"}
    answer, asked = place(api, order | {"cOID": "too-big"})
    assert asked == ["o354", "o451"]
    assert "insufficient buying power" in answer["error"]
    rows = validate(api.get("/iserver/account/orders"))["orders"]
    (mine,) = [r for r in rows if r["order_ref"] == "too-big"]
    assert (mine["status"], mine["filledQuantity"]) == ("Inactive", "0")


def test_history_gap_answers_hmds_no_data(tmp_path: Path) -> None:
    profile = PAPER.with_options(history_gap_symbols=frozenset({"MSFT"}))
    with webapi(tmp_path, profile) as gw, client(gw) as api:
        params = {"bar": "1d", "period": "1m"}
        gap = api.get("/iserver/marketdata/history", params=params | {"conid": str(MSFT)})
        assert gap.status_code == 500
        assert "HMDS query returned no data: MSFT@" in validate(gap)["error"]
        bars = validate(api.get("/iserver/marketdata/history", params=params | {"conid": AAPL}))
        assert bars["points"] > 15


# ---------------------------------------------------------------------- nightly reset
@pytest.fixture
def before_reset(tmp_path: Path) -> Iterator[tuple[WebApiHandle, ShiftClock]]:
    """A logged-in ib-paper gateway a minute before IBKR's nightly reset (01:00 New York)."""
    clock = ShiftClock(BEFORE_RESET)
    with webapi(tmp_path, clock=clock) as gw:
        yield gw, clock


def test_nightly_reset_ends_the_brokerage_session(
    before_reset: tuple[WebApiHandle, ShiftClock],
) -> None:
    """At 01:00 New York the brokerage session ends: for ``server_reset_seconds`` /iserver
    answers 503 and the auth status is not connected (no session can open), the SSO endpoints
    answer; then /iserver answers 401 until /iserver/auth/ssodh/init opens a new session."""
    gw, clock = before_reset
    assert IDEAL.server_reset is None and PAPER.server_reset_seconds == 60
    with client(gw) as api:
        assert validate(api.get("/iserver/accounts"))["accounts"] == [ACCOUNT]
        clock.shift(65)  # 01:00:05, inside the reset
        down = api.get("/iserver/accounts")
        assert down.status_code == 503 and "nightly reset" in down.json()["error"]
        status = validate(api.post("/iserver/auth/status", json={}))
        assert (status["authenticated"], status["connected"]) == (False, False)
        validate(api.get("/portfolio/accounts"))  # the SSO session lives on
        opened = validate(api.post("/iserver/auth/ssodh/init", json={"publish": True}))
        assert opened["authenticated"] is False
        assert api.get("/iserver/accounts").status_code == 503

        clock.shift(60)  # 01:01:05: the reset is over, the session it ended is not back
        lost = api.get("/iserver/accounts")
        assert lost.status_code == 401
        assert "nightly reset at 01:00" in lost.json()["error"]
        status = validate(api.post("/iserver/auth/status", json={}))
        assert (status["authenticated"], status["connected"]) == (False, True)
        assert validate(api.post("/iserver/auth/ssodh/init", json={}))["authenticated"] is True
        assert validate(api.get("/iserver/accounts"))["accounts"] == [ACCOUNT]

        clock.shift(86_400)  # the next night's reset ends the new session too
        assert api.get("/iserver/accounts").status_code == 401


def test_webapi_backend_survives_the_nightly_reset(
    before_reset: tuple[WebApiHandle, ShiftClock], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backend's requests fail with the gateway's 503 during the reset; after it the first
    request meets 401, reopens the brokerage session, primes it and is answered."""
    gw, clock = before_reset
    broker = connect(backend_settings(gw, tmp_path)).inner
    assert isinstance(broker, WebApiBroker)
    try:
        aapl = broker.resolve("AAPL")
        assert broker.quotes([aapl])[0].contract.symbol == "AAPL"
        clock.shift(65)
        with pytest.raises(GatewayError, match="nightly reset") as refused:
            broker.quotes([aapl])
        assert refused.value.status == 503
        clock.shift(60)
        sent: list[tuple[str, int]] = []
        send = broker.session._send

        def recording(method: str, path: str, *args: Any) -> httpx.Response:
            response = send(method, path, *args)
            sent.append((path, response.status_code))
            return response

        monkeypatch.setattr(broker.session, "_send", recording)
        assert broker.quotes([aapl])[0].contract.symbol == "AAPL"
        assert gw.state.session.brokerage
        paths = [p for p, _ in sent]
        assert sent[0] == ("/iserver/marketdata/snapshot", 401), sent
        reopened = paths.index("/iserver/auth/ssodh/init")
        assert "/iserver/accounts" in paths[reopened:], "primed before the resend"
        assert ("/iserver/marketdata/snapshot", 200) in sent[reopened:]
    finally:
        broker.close()


# ---------------------------------------------------------------------- penalty box
@pytest.mark.parametrize("boxed", [True, False], ids=["ib-paper", "ideal"])
def test_penalty_box_after_repeated_429s(tmp_path: Path, boxed: bool) -> None:
    """Refused ``penalty_box_after`` times within a minute, the client gets 429 for every request
    for ``penalty_box_seconds``, then is served again; without a penalty box (``ideal``) only the
    requests over a limit are refused."""
    profile = (
        PAPER.with_options(penalty_box_seconds=1.5, penalty_box_after=3)
        if boxed
        else IDEAL.with_options(accounts=1)
    )
    with webapi(tmp_path, profile, rate_limits=True) as gw, client(gw) as api:
        assert api.get("/iserver/account/orders").status_code == 200
        refused = [api.get("/iserver/account/orders") for _ in range(3)]  # IBKR: 1 per 5 s
        assert [r.status_code for r in refused] == [429] * 3
        boxed_at = time.monotonic()
        status = api.post("/iserver/auth/status", json={})
        if not boxed:
            assert status.status_code == 200
            return
        assert "penalty box for 1.5 s" in refused[-1].json()["error"]
        assert status.status_code == 429 and "penalty box" in status.json()["error"]
        assert api.post("/tickle", json={}).status_code == 429
        time.sleep(max(0.0, boxed_at + 1.6 - time.monotonic()))
        assert validate(api.post("/iserver/auth/status", json={}))["authenticated"] is True


def test_profile_refuses_bad_reset_and_penalty_knobs() -> None:
    with pytest.raises(ValueError, match="server_reset_seconds"):
        IB_PAPER.with_options(server_reset_seconds=-1)
    with pytest.raises(ValueError, match="penalty_box_seconds"):
        IB_PAPER.with_options(penalty_box_seconds=0)
    with pytest.raises(ValueError, match="penalty_box_after"):
        IB_PAPER.with_options(penalty_box_after=0)
    assert IDEAL.penalty_box_seconds is None and IB_PAPER.penalty_box_seconds == 600
