"""IB's error codes become the typed broker errors a caller can catch, each with its code."""

from __future__ import annotations

import pytest

from ibkr_assets.broker import errors as e
from ibkr_spec import errors as ib


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (ib.MAX_RATE, e.PacingViolation),
        (ib.MAX_TICKERS, e.PacingViolation),
        (ib.PRICE_INCREMENT, e.OrderRejected),
        (ib.NO_SECURITY_DEFINITION, e.ContractNotFound),
        (ib.ORDER_REJECTED, e.OrderRejected),
        (ib.ORDER_CANCELLED, e.OrderRejected),
        (ib.INVALID_REQUEST, e.InvalidRequest),
        (ib.DUPLICATE_CLIENT_ID, e.DuplicateClientId),
        (ib.NO_MARKET_DATA, e.MarketDataUnavailable),
        (ib.NEEDS_SUBSCRIPTION, e.MarketDataUnavailable),
        (ib.DELAYED_DATA, e.MarketDataUnavailable),
        (ib.DELAYED_NOT_ENABLED, e.MarketDataUnavailable),
        (ib.COULD_NOT_CONNECT, e.NotConnected),
        (ib.NOT_CONNECTED, e.NotConnected),
        (ib.CONNECTIVITY_LOST, e.NotConnected),
        (ib.ORDER_NOT_FOUND, e.OrderNotFound),
        (ib.MAX_DEPTH, e.BrokerError),  # no typed error of its own
    ],
)
def test_each_ib_code_maps_to_its_error(code: int, expected: type[e.BrokerError]) -> None:
    err = e.error_from_ib(code, "IB's message")
    assert type(err) is expected
    assert err.code == code and err.message == "IB's message"
    assert str(err) == f"[IB {code}] IB's message"


def test_historical_data_error_is_invalid_unless_ib_says_pacing() -> None:
    no_data = e.error_from_ib(ib.HISTORICAL_DATA_ERROR, "HMDS query returned no data")
    assert type(no_data) is e.InvalidRequest and no_data.code == ib.HISTORICAL_DATA_ERROR
    paced = e.error_from_ib(ib.HISTORICAL_DATA_ERROR, "Historical data request pacing violation")
    assert type(paced) is e.PacingViolation and paced.code == ib.HISTORICAL_DATA_ERROR


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (e.NotConnected, ib.NOT_CONNECTED),
        (e.DuplicateClientId, ib.DUPLICATE_CLIENT_ID),
        (e.ContractNotFound, ib.NO_SECURITY_DEFINITION),
        (e.InvalidRequest, ib.INVALID_REQUEST),
        (e.AccountNotFound, ib.INVALID_REQUEST),
        (e.MarketDataUnavailable, ib.NO_MARKET_DATA),
        (e.OrderRejected, ib.ORDER_REJECTED),
        (e.OrderNotFound, ib.ORDER_NOT_FOUND),
        (e.InvalidOrder, None),
        (e.LiveTradingNotAllowed, None),
        (e.BrokerError, None),
    ],
)
def test_an_error_raised_without_a_code_carries_its_default(
    cls: type[e.BrokerError], code: int | None
) -> None:
    err = cls("what was wrong")
    assert err.code == code
    assert str(err) == (f"[IB {code}] what was wrong" if code is not None else "what was wrong")
