"""Session endpoints: ``/iserver/auth/status``, ``/tickle``, ``/iserver/reauthenticate``,
``/iserver/auth/ssodh/init``, ``/logout``, and the simulator's stand-in for the browser login,
``/sim/login`` (see :mod:`ibkr_sim.webapi.auth`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ibkr_sim.webapi.state import ok, web_state


async def auth_status(request: Request) -> JSONResponse:
    """``POST /iserver/auth/status`` (GET accepted too, as the gateway does)."""
    return ok(web_state(request).session.auth_status())


async def tickle(request: Request) -> JSONResponse:
    """``POST /tickle`` (V1DOC lists GET; both served): keeps the session alive."""
    return ok(web_state(request).session.tickle())


async def reauthenticate(request: Request) -> JSONResponse:
    """``POST /iserver/reauthenticate``: a new brokerage session on the SSO session. Not in the
    spec; the historical body ``{"message": "triggered"}`` (webapi.md: UNCERTAIN)."""
    web_state(request).session.reauthenticate()
    return ok({"message": "triggered"})


async def ssodh_init(request: Request) -> JSONResponse:
    """``POST /iserver/auth/ssodh/init``: opens the brokerage session; answers the auth status."""
    session = web_state(request).session
    session.reauthenticate()
    return ok(session.auth_status())


async def logout(request: Request) -> JSONResponse:
    """``POST /logout``: ends the SSO and brokerage sessions."""
    web_state(request).session.logout()
    return ok({"status": True})


async def sim_login(request: Request) -> JSONResponse:
    """``POST /sim/login`` (simulator only): what the browser login with 2FA does at IBKR."""
    session = web_state(request).session
    session.login()
    return ok(session.auth_status())


#: paths that answer whether or not a brokerage session is open
OPEN_WITHOUT_BROKERAGE = frozenset(
    {"/iserver/auth/status", "/iserver/reauthenticate", "/iserver/auth/ssodh/init"}
)
#: paths that answer before any login
OPEN_WITHOUT_LOGIN = frozenset({"/sim/login"})

ROUTES = [
    Route("/iserver/auth/status", auth_status, methods=["GET", "POST"]),
    Route("/tickle", tickle, methods=["GET", "POST"]),
    Route("/iserver/reauthenticate", reauthenticate, methods=["POST"]),
    Route("/iserver/auth/ssodh/init", ssodh_init, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/sim/login", sim_login, methods=["POST"]),
]

__all__ = ["OPEN_WITHOUT_BROKERAGE", "OPEN_WITHOUT_LOGIN", "ROUTES"]
