"""Typed broker errors.

Every error a backend raises is one of these, whatever the transport (in-process simulator,
ib_async against TWS / IB Gateway, Client Portal Web API). Where IB has an error code for the
condition it is kept in ``code`` so a user can search IB's error-code table for it; the message is
written for a trader: it names the symbol, account, order or field that was wrong.

IB's codes, named in :mod:`ibkr_spec.errors` (TWS API "Message Codes"), map to these errors:
100, 101, 162 when its message says "pacing" -> PacingViolation; 110, 201, 202 ->
OrderRejected; 162 (any other), 321 -> InvalidRequest; 200 -> ContractNotFound; 326 ->
DuplicateClientId; 354, 10089, 10167, 10168 -> MarketDataUnavailable; 502, 504, 1100 ->
NotConnected; 10147 -> OrderNotFound.
"""

from __future__ import annotations

from typing import Any

from ibkr_spec import errors as ib

#: The error each IB code means, filled by the class statements below (their ``means``).
_BY_CODE: dict[int, type[BrokerError]] = {}


class BrokerError(Exception):
    """Base class of everything a broker backend raises on purpose.

    ``code`` is IB's numeric error code where IB has one, else ``None``.
    """

    default_code: int | None = None

    def __init_subclass__(cls, *, means: tuple[int, ...] = (), **kwargs: Any) -> None:
        """A subclass names the IB codes that mean it (``means``): :func:`error_from_ib` maps
        each of them to it, and the first is its ``default_code``."""
        super().__init_subclass__(**kwargs)
        if means:
            cls.default_code = means[0]
        _BY_CODE.update(dict.fromkeys(means, cls))

    def __init__(self, message: str, code: int | None = None) -> None:
        self.code = code if code is not None else self.default_code
        self.message = message
        super().__init__(f"[IB {self.code}] {message}" if self.code is not None else message)


class NotConnected(
    BrokerError, means=(ib.NOT_CONNECTED, ib.COULD_NOT_CONNECT, ib.CONNECTIVITY_LOST)
):
    """The backend has no live connection to TWS / IB Gateway / the Client Portal gateway."""


class DuplicateClientId(NotConnected, means=(ib.DUPLICATE_CLIENT_ID,)):
    """Another API client already uses this clientId on the gateway."""


class ContractNotFound(BrokerError, means=(ib.NO_SECURITY_DEFINITION,)):
    """No security definition matches the symbol, conId or contract fields given."""


class InvalidRequest(BrokerError, means=(ib.INVALID_REQUEST,)):
    """The request itself is malformed (bad duration, bar size, scanner code, field...)."""


class AccountNotFound(InvalidRequest):
    """The account id is not one of the accounts this login manages."""


class MarketDataUnavailable(
    BrokerError,
    means=(ib.NO_MARKET_DATA, ib.NEEDS_SUBSCRIPTION, ib.DELAYED_DATA, ib.DELAYED_NOT_ENABLED),
):
    """No market data for the instrument (no subscription, no quote, or halted)."""


class PacingViolation(BrokerError, means=(ib.MAX_RATE, ib.MAX_TICKERS, ib.HISTORICAL_DATA_ERROR)):
    """IB's request-rate limits were exceeded (messages/s, market-data lines, historical pacing:
    162 "Historical data request pacing violation")."""


class OrderRejected(BrokerError, means=(ib.ORDER_REJECTED, ib.PRICE_INCREMENT, ib.ORDER_CANCELLED)):
    """The broker refused the order (margin, price, permissions...). Nothing was placed."""


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


class OrderNotFound(BrokerError, means=(ib.ORDER_NOT_FOUND,)):
    """No open order with that id (already filled, cancelled, or never placed)."""


class NotSupported(BrokerError):
    """IB does not offer this through the backend in use (price alerts and watchlists exist only
    in the Client Portal Web API, market depth and news only in the TWS API). The message names
    the feature, the backend, and the backend that has it. Nothing was changed."""


class LiveTradingNotAllowed(BrokerError):
    """A live (non-paper) account was used without the explicit opt-in setting."""


def error_from_ib(code: int, message: str) -> BrokerError:
    """Map an IB error code and message to the typed error a caller can catch.

    Error 162 is IB's catch-all for historical data: it is a pacing violation (PacingViolation)
    only when the message says so, otherwise the request was invalid (e.g. "HMDS query returned
    no data" for that period).
    """
    if code == ib.HISTORICAL_DATA_ERROR and not ib.is_pacing(code, message):
        return InvalidRequest(message, code=code)
    cls = _BY_CODE.get(code, BrokerError)
    return cls(message, code=code)
