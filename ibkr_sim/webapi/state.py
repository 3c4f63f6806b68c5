"""What every Web API route works with: the shared simulated world (the TWS-protocol gateway's
:class:`~ibkr_sim.gateway.session.GatewayState`: market, paper exchange, clock, realism profile),
the login session, the rate limiter, and the gateway-side state of the Web API itself (snapshot
streams opened by a pre-flight, reply questions waiting for an answer, suppressed questions).

Also the answers every route shares: JSON bodies and IBKR's error shapes (webapi.md, "Error
responses": business errors are ``{"error": text}``, with HTTP 200 for order problems and 400 /
401 / 429 / 500 / 503 otherwise).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from ibkr_sim.exchange import OrderRequest
from ibkr_sim.gateway.session import GatewayState
from ibkr_sim.webapi.auth import AuthSession
from ibkr_sim.webapi.ratelimit import RateLimiter


@dataclass
class PendingOrder:
    """An order (or modification) waiting for the answers to its reply questions: the
    questions still to ask (message id, text), in order."""

    account: str
    request: OrderRequest
    questions: list[tuple[str, str]]
    #: the exchange order id a modification applies to; None for a new order
    modify_id: int | None = None
    #: a bracket's children, placed after ``request`` with its exchange order id as parent_id
    children: list[OrderRequest] = field(default_factory=list)


@dataclass
class WebApiState:
    """The simulated Client Portal gateway's state (one login, as a real gateway serves)."""

    world: GatewayState
    session: AuthSession
    limits: RateLimiter
    #: conids whose market-data stream a snapshot pre-flight has opened
    streams: set[int] = field(default_factory=set)
    #: reply id -> the order waiting for it
    replies: dict[str, PendingOrder] = field(default_factory=dict)
    #: reply ids cancelled by a later order request (answering them gives 503)
    stale_replies: set[str] = field(default_factory=set)
    #: message ids suppressed for the brokerage session (/iserver/questions/suppress)
    suppressed: set[str] = field(default_factory=set)
    #: (login session id, conid) of every stock /iserver/secdef/search returned by symbol: IBKR
    #: answers /iserver/secdef/strikes only for an underlying searched in the same session
    searched: set[tuple[str, int]] = field(default_factory=set)
    #: login session ids that asked /iserver/account/pnl/partitioned (IBKR's first answer is empty)
    pnl_asked: set[str] = field(default_factory=set)
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def state(self) -> GatewayState:
        """The world, under the name the TWS gateway's helpers read (``s.state``)."""
        return self.world

    def accounts(self) -> list[str]:
        """The login's accounts, primary first."""
        return self.world.managed_accounts()


def web_state(request: Request) -> WebApiState:
    """The gateway state of the app serving ``request``."""
    return request.app.state.webapi


def ok(body: Any) -> JSONResponse:
    """HTTP 200 with a JSON body."""
    return JSONResponse(body)


def error(text: str, status: int = 200) -> JSONResponse:
    """IBKR's error body ``{"error": text}`` (HTTP 200 for order business errors)."""
    return JSONResponse({"error": text}, status_code=status)


def bad_request(text: str) -> JSONResponse:
    """HTTP 400 ``{"error": text, "statusCode": 400}`` (bad conid, bad or missing parameter)."""
    return JSONResponse({"error": text, "statusCode": 400}, status_code=400)


#: a route under ``/{accountId}``: called with the request, the state and the account
AccountHandler = Callable[[Request, WebApiState, str], Awaitable[JSONResponse]]


def account_route(
    handler: AccountHandler, *, voids_questions: bool = False
) -> Callable[[Request], Awaitable[JSONResponse]]:
    """The route ``handler`` serves for the path's ``{accountId}``, called only for an account
    this login has; any other is HTTP 500 naming it (IBKR: "wrong accountId passed").
    ``voids_questions``: an order request, which voids every unanswered reply question first
    (answering one then gives 503), whatever the account."""

    @functools.wraps(handler)
    async def route(request: Request) -> JSONResponse:
        st = web_state(request)
        if voids_questions:
            with st.lock:
                st.stale_replies.update(st.replies)
                st.replies.clear()
        account = request.path_params["accountId"]
        if account not in st.accounts():
            known = ", ".join(st.accounts())
            return error(f"Account {account} is not one of this login's accounts ({known})", 500)
        return await handler(request, st, account)

    return route


async def json_body(request: Request) -> dict[str, Any] | None:
    """The request's JSON object, or None when the body is not a JSON object."""
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


__all__ = [
    "PendingOrder",
    "WebApiState",
    "account_route",
    "bad_request",
    "error",
    "json_body",
    "ok",
    "web_state",
]
