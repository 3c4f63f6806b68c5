"""Typed broker errors.

Every error a backend raises is one of these, whatever the transport (in-process simulator,
ib_async against TWS / IB Gateway, Client Portal Web API). Where IB has an error code for the
condition it is kept in ``code`` so a user can search IB's error-code table for it; the message is
written for a trader: it names the symbol, account, order or field that was wrong.

IB's codes, named in :mod:`ibkr_spec.errors` (TWS API "Message Codes"), map to these errors:
100, 101 -> PacingViolation; 110, 201, 202 -> OrderRejected; 162 (unless its message says
"pacing"), 321 -> InvalidRequest; 200 -> ContractNotFound; 326 -> DuplicateClientId; 354,
10167 -> MarketDataUnavailable; 502, 504, 1100 -> NotConnected; 10147 -> OrderNotFound.
"""

from __future__ import annotations

from ibkr_spec import errors as ib


class BrokerError(Exception):
    """Base class of everything a broker backend raises on purpose.

    ``code`` is IB's numeric error code where IB has one, else ``None``.
    """

    default_code: int | None = None

    def __init__(self, message: str, code: int | None = None) -> None:
        self.code = code if code is not None else self.default_code
        self.message = message
        super().__init__(f"[IB {self.code}] {message}" if self.code is not None else message)


class NotConnected(BrokerError):
    """The backend has no live connection to TWS / IB Gateway / the Client Portal gateway."""

    default_code = ib.NOT_CONNECTED


class DuplicateClientId(NotConnected):
    """Another API client already uses this clientId on the gateway."""

    default_code = ib.DUPLICATE_CLIENT_ID


class ContractNotFound(BrokerError):
    """No security definition matches the symbol, conId or contract fields given."""

    default_code = ib.NO_SECURITY_DEFINITION


class InvalidRequest(BrokerError):
    """The request itself is malformed (bad duration, bar size, scanner code, field...)."""

    default_code = ib.INVALID_REQUEST


class AccountNotFound(InvalidRequest):
    """The account id is not one of the accounts this login manages."""


class MarketDataUnavailable(BrokerError):
    """No market data for the instrument (no subscription, no quote, or halted)."""

    default_code = ib.NO_MARKET_DATA


class PacingViolation(BrokerError):
    """IB's request-rate limits were exceeded (messages/s, market-data lines, historical pacing)."""

    default_code = ib.HISTORICAL_DATA_ERROR


class OrderRejected(BrokerError):
    """The broker refused the order (margin, price, permissions...). Nothing was placed."""

    default_code = ib.ORDER_REJECTED


class InvalidOrder(OrderRejected):
    """The order was rejected before reaching the broker: a field is missing or out of range
    (zero or negative quantity, NaN price, a limit order without a limit price...)."""

    default_code = None


class OrderRefused(OrderRejected):
    """The order guard refused the order before it reached the broker: a safety limit (read-only,
    kill switch, live account, allow-list, caps, rate limits, price distance, quote freshness)
    would be broken. ``limit`` names the setting that refused it. Nothing was sent."""

    default_code = None

    def __init__(self, message: str, limit: str) -> None:
        self.limit = limit
        super().__init__(f"refused by the order guard ({limit}): {message}")


class OrderNotFound(BrokerError):
    """No open order with that id (already filled, cancelled, or never placed)."""

    default_code = ib.ORDER_NOT_FOUND


class LiveTradingNotAllowed(BrokerError):
    """A live (non-paper) account was used without the explicit opt-in setting."""


_BY_CODE: dict[int, type[BrokerError]] = {
    ib.MAX_RATE: PacingViolation,
    ib.MAX_TICKERS: PacingViolation,
    ib.PRICE_INCREMENT: OrderRejected,
    ib.NO_SECURITY_DEFINITION: ContractNotFound,
    ib.ORDER_REJECTED: OrderRejected,
    ib.ORDER_CANCELLED: OrderRejected,
    ib.INVALID_REQUEST: InvalidRequest,
    ib.DUPLICATE_CLIENT_ID: DuplicateClientId,
    ib.NO_MARKET_DATA: MarketDataUnavailable,
    ib.COULD_NOT_CONNECT: NotConnected,
    ib.NOT_CONNECTED: NotConnected,
    ib.CONNECTIVITY_LOST: NotConnected,
    ib.ORDER_NOT_FOUND: OrderNotFound,
    ib.DELAYED_DATA: MarketDataUnavailable,
}


def error_from_ib(code: int, message: str) -> BrokerError:
    """Map an IB error code and message to the typed error a caller can catch.

    Error 162 is IB's catch-all for historical data: it is a pacing violation only when the message
    says so, otherwise the request was invalid (e.g. no data for that period).
    """
    if code == ib.HISTORICAL_DATA_ERROR and not ib.is_pacing(code, message):
        return InvalidRequest(message, code=code)
    cls = _BY_CODE.get(code, BrokerError)
    return cls(message, code=code)
