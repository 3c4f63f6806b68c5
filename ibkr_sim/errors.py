"""Errors of the simulated IB world, each carrying the error code IB itself would send.

IB reports problems as ``(reqId, errorCode, errorString)``; the codes the simulator uses are the
ones a client library must already handle against a real TWS / IB Gateway:

====== =====================================================================
code   meaning
====== =====================================================================
162    historical market data service error (bad range, no data)
200    no security definition has been found for the request
201    order rejected
321    error validating request (bad scanner code, bad duration / bar size)
354    requested market data is not subscribed / not available
10147  order to cancel / modify not found
10148  order cannot be cancelled: it is already filled or cancelled
====== =====================================================================
"""

from __future__ import annotations

NO_SECURITY_DEFINITION = 200
ORDER_REJECTED = 201
INVALID_REQUEST = 321
NO_MARKET_DATA = 354
ORDER_NOT_FOUND = 10147
CANNOT_CANCEL = 10148
HISTORICAL_DATA_ERROR = 162


class SimError(Exception):
    """An IB-coded error from the simulator: ``code`` is IB's error code, ``message`` the reason."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = int(code)
        self.message = message

    def __reduce__(self) -> tuple[type, tuple[int, str]]:
        return (type(self), (self.code, self.message))


class SpecError(SimError, ValueError):
    """A malformed IB request string (duration, bar size): code 321, and also a ``ValueError``."""

    def __init__(self, message: str) -> None:
        super().__init__(INVALID_REQUEST, message)

    def __reduce__(self) -> tuple[type, tuple[str]]:  # type: ignore[override]
        return (type(self), (self.message,))


__all__ = [
    "CANNOT_CANCEL",
    "HISTORICAL_DATA_ERROR",
    "INVALID_REQUEST",
    "NO_MARKET_DATA",
    "NO_SECURITY_DEFINITION",
    "ORDER_NOT_FOUND",
    "ORDER_REJECTED",
    "SimError",
    "SpecError",
]
