"""The tws backend's translations between IB's wire conventions and our models."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime

import pytest

from ibkr_assets.broker.errors import BrokerError
from ibkr_assets.broker.models import Contract, Order
from ibkr_assets.broker.timeutil import parse_ib_hours, session_close_utc
from ibkr_assets.broker.tws import from_ib_contract, to_ib_contract, to_ib_order
from ibkr_assets.broker.tws.market_data import scan_codes
from ibkr_assets.broker.tws.wire import UNSET, num

AAPL = Contract(
    conid=265598, symbol="AAPL", sec_type="STK", primary_exchange="NASDAQ", name="Apple"
)


def test_trading_hours_string_to_utc_windows() -> None:
    text = "20261120:0930-20261120:1600;20261121:CLOSED;20261123:0930-20261123:1600"
    windows = parse_ib_hours(text, "US/Eastern")
    assert windows == [
        (datetime(2026, 11, 20, 14, 30, tzinfo=UTC), datetime(2026, 11, 20, 21, 0, tzinfo=UTC)),
        (datetime(2026, 11, 23, 14, 30, tzinfo=UTC), datetime(2026, 11, 23, 21, 0, tzinfo=UTC)),
    ]


def test_daily_bars_are_stamped_at_the_close_in_summer_and_winter() -> None:
    assert session_close_utc(date(2026, 7, 1)) == datetime(2026, 7, 1, 20, 0, tzinfo=UTC)
    assert session_close_utc(date(2026, 12, 1)) == datetime(2026, 12, 1, 21, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("", None), (None, None), ("12.5", 12.5), (UNSET, None), (math.nan, None), ("x", None)],
)
def test_ib_optional_numbers(raw: object, expected: float | None) -> None:
    assert num(raw) == expected


def test_contract_round_trip() -> None:
    assert from_ib_contract(to_ib_contract(AAPL), name="Apple") == AAPL.model_copy(
        update={"local_symbol": "AAPL"}
    )


def test_order_fields_map_to_ib_names() -> None:
    order = Order(
        contract=AAPL,
        action="SELL",
        quantity=30,
        order_type="STP LMT",
        limit_price=180.0,
        stop_price=181.0,
        tif="GTC",
        order_ref="ibkr-agent:2026-11-20:abc",
    )
    ib = to_ib_order(order, "DU1234567")
    assert (ib.action, ib.totalQuantity, ib.orderType) == ("SELL", 30, "STP LMT")
    assert (ib.lmtPrice, ib.auxPrice, ib.tif) == (180.0, 181.0, "GTC")
    assert (ib.account, ib.orderRef) == ("DU1234567", "ibkr-agent:2026-11-20:abc")
    market = to_ib_order(Order(contract=AAPL, action="BUY", quantity=1), "DU1234567")
    assert market.lmtPrice == UNSET and market.auxPrice == UNSET


def test_scanner_parameters_xml() -> None:
    xml = (
        "<ScanParameterResponse><ScanTypeList>"
        "<ScanType><scanCode>TOP_PERC_GAIN</scanCode></ScanType>"
        "<ScanType><scanCode>MOST_ACTIVE</scanCode></ScanType>"
        "</ScanTypeList></ScanParameterResponse>"
    )
    assert scan_codes(xml) == ["MOST_ACTIVE", "TOP_PERC_GAIN"]
    with pytest.raises(BrokerError, match="scanner parameters"):
        scan_codes("<not xml")
