"""IB's error codes, and the error that carries one.

IB reports problems as ``(reqId, errorCode, errorString)``. These are the codes both sides of
the project name: the simulated world sends them, the broker backends map them to typed errors
(:mod:`ibkr_assets.broker.errors`). Reference: IB TWS API, "Message Codes".

====== ======================== =====================================================
code   name                     meaning
====== ======================== =====================================================
100    MAX_RATE                 max rate of messages per second exceeded
101    MAX_TICKERS              max number of tickers (market-data lines) reached
110    PRICE_INCREMENT          the price does not conform to the minimum price variation
162    HISTORICAL_DATA_ERROR    historical market data service error (bad range, no
                                data; a pacing violation when the message says so)
200    NO_SECURITY_DEFINITION   no security definition has been found for the request
201    ORDER_REJECTED           order rejected
202    ORDER_CANCELLED          order cancelled
309    MAX_DEPTH                max number (3) of market-depth requests reached
320    CANT_READ                error reading request
321    INVALID_REQUEST          error validating request (bad scanner code, bad duration /
                                bar size)
322    INTERNAL_ERROR           error processing request
326    DUPLICATE_CLIENT_ID      unable to connect: the client id is already in use
354    NO_MARKET_DATA           requested market data is not subscribed / not available
420    MAX_SCANNERS             invalid real-time query: too many scanner subscriptions
430    NO_FUNDAMENTALS          fundamentals data for the security is not available
502    COULD_NOT_CONNECT        couldn't connect to TWS
503    OUT_OF_DATE              TWS is out of date and must be upgraded (a client or
                                request it does not support)
504    NOT_CONNECTED            not connected
505    BAD_MESSAGE              fatal error: unknown message id
1100   CONNECTIVITY_LOST        connectivity between IB and TWS has been lost
1101   DATA_LOST                connectivity restored, market-data subscriptions lost
                                (the client must request them again)
1102   DATA_KEPT                connectivity restored, subscriptions maintained
10089  NEEDS_SUBSCRIPTION       requested market data requires an additional subscription
                                (delayed data is available)
10147  ORDER_NOT_FOUND          order to cancel / modify not found
10148  CANNOT_CANCEL            order cannot be cancelled: already filled or cancelled
10167  DELAYED_DATA             requested market data is not subscribed; displaying
                                delayed market data
10168  DELAYED_NOT_ENABLED      requested market data is not subscribed; delayed market
                                data is not enabled
====== ======================== =====================================================
"""

from __future__ import annotations

MAX_RATE = 100
MAX_TICKERS = 101
PRICE_INCREMENT = 110
HISTORICAL_DATA_ERROR = 162
NO_SECURITY_DEFINITION = 200
ORDER_REJECTED = 201
ORDER_CANCELLED = 202
MAX_DEPTH = 309
CANT_READ = 320
INVALID_REQUEST = 321
INTERNAL_ERROR = 322
DUPLICATE_CLIENT_ID = 326
NO_MARKET_DATA = 354
MAX_SCANNERS = 420
NO_FUNDAMENTALS = 430
COULD_NOT_CONNECT = 502
OUT_OF_DATE = 503
NOT_CONNECTED = 504
BAD_MESSAGE = 505
CONNECTIVITY_LOST = 1100
DATA_LOST = 1101
DATA_KEPT = 1102
NEEDS_SUBSCRIPTION = 10089
ORDER_NOT_FOUND = 10147
CANNOT_CANCEL = 10148
DELAYED_DATA = 10167
DELAYED_NOT_ENABLED = 10168

#: Codes of IB's request-rate limits (162 only when its message says "pacing").
PACING_CODES = frozenset({MAX_RATE, MAX_TICKERS, HISTORICAL_DATA_ERROR, MAX_DEPTH, MAX_SCANNERS})


def is_pacing(code: int, message: str) -> bool:
    """True when IB's error ``code`` / ``message`` reports a pacing violation: error 162 is the
    historical-data catch-all and is one only when its message says "pacing"."""
    return code in PACING_CODES and (code != HISTORICAL_DATA_ERROR or "pacing" in message.lower())


class IBError(Exception):
    """An error as IB reports it: ``code`` is IB's error code, ``message`` the reason."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = int(code)
        self.message = message

    def __reduce__(self) -> tuple[type, tuple[int, str]]:
        return (type(self), (self.code, self.message))


class SpecError(IBError, ValueError):
    """A malformed IB request string (duration, bar size): code 321, and also a ``ValueError``."""

    def __init__(self, message: str) -> None:
        super().__init__(INVALID_REQUEST, message)

    def __reduce__(self) -> tuple[type, tuple[str]]:  # type: ignore[override]
        return (type(self), (self.message,))


__all__ = [
    "BAD_MESSAGE",
    "CANNOT_CANCEL",
    "CANT_READ",
    "CONNECTIVITY_LOST",
    "COULD_NOT_CONNECT",
    "DATA_KEPT",
    "DATA_LOST",
    "DELAYED_DATA",
    "DELAYED_NOT_ENABLED",
    "DUPLICATE_CLIENT_ID",
    "HISTORICAL_DATA_ERROR",
    "INTERNAL_ERROR",
    "INVALID_REQUEST",
    "MAX_DEPTH",
    "MAX_RATE",
    "MAX_SCANNERS",
    "MAX_TICKERS",
    "NEEDS_SUBSCRIPTION",
    "NOT_CONNECTED",
    "NO_FUNDAMENTALS",
    "NO_MARKET_DATA",
    "NO_SECURITY_DEFINITION",
    "ORDER_CANCELLED",
    "ORDER_NOT_FOUND",
    "ORDER_REJECTED",
    "OUT_OF_DATE",
    "PACING_CODES",
    "PRICE_INCREMENT",
    "IBError",
    "SpecError",
    "is_pacing",
]
