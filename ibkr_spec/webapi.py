"""IBKR's published request limits of the Client Portal Web API (webapi.md, "Rate limits").

"Users making requests via the CP Gateway tool are restricted to 10 requests per second" across
all endpoints [NEWDOC]; some endpoints have a tighter limit of their own [V1DOC rate table]; at
most 5 ``/iserver/marketdata/history`` requests run at once. Beyond a limit the gateway answers
HTTP 429 and may put the caller's IP address in a penalty box for 10-15 minutes.
"""

from __future__ import annotations

#: requests per second across all endpoints through the CP Gateway: (requests, seconds)
GLOBAL_LIMIT: tuple[int, float] = (10, 1.0)
#: (method, path under /v1/api) -> (requests, per seconds)
ENDPOINT_LIMITS: dict[tuple[str, str], tuple[int, float]] = {
    ("GET", "/iserver/account/orders"): (1, 5.0),
    ("GET", "/iserver/account/pnl/partitioned"): (1, 5.0),
    ("GET", "/iserver/account/trades"): (1, 5.0),
    ("GET", "/iserver/marketdata/snapshot"): (10, 1.0),
    ("GET", "/iserver/scanner/params"): (1, 900.0),
    ("POST", "/iserver/scanner/run"): (1, 1.0),
    ("GET", "/portfolio/accounts"): (1, 5.0),
    ("GET", "/portfolio/subaccounts"): (1, 5.0),
    ("GET", "/sso/validate"): (1, 60.0),
    ("GET", "/tickle"): (1, 1.0),
    ("POST", "/tickle"): (1, 1.0),
}
#: concurrent ``GET /iserver/marketdata/history`` requests
HISTORY_CONCURRENCY = 5
HISTORY_PATH = "/iserver/marketdata/history"
#: conids and fields of one ``/iserver/marketdata/snapshot`` request
SNAPSHOT_MAX_CONIDS, SNAPSHOT_MAX_FIELDS = 100, 50
#: conids of one ``/trsrv/secdef`` request [NEWDOC: "/trsv/secdef POST 200 conids/request"]
SECDEF_MAX_CONIDS = 200
#: data points of one ``/iserver/marketdata/history`` answer
HISTORY_MAX_POINTS = 1000

__all__ = [
    "ENDPOINT_LIMITS",
    "GLOBAL_LIMIT",
    "HISTORY_CONCURRENCY",
    "HISTORY_MAX_POINTS",
    "HISTORY_PATH",
    "SECDEF_MAX_CONIDS",
    "SNAPSHOT_MAX_CONIDS",
    "SNAPSHOT_MAX_FIELDS",
]
