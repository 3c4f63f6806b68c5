"""``GET /iserver/account/pnl/partitioned``: the P&L of the login's accounts, from the paper
exchange's numbers the TWS gateway's ``reqPnL`` sends (``PaperExchange.pnl``, ``summary``).

IBKR's first request of a session answers ``{"upnl": {}}`` (it starts the P&L stream); later ones
carry one row per account, keyed ``<account>.Core``: ``dpl`` daily P&L, ``upl`` unrealized P&L,
``nl`` net liquidation, ``el`` excess liquidity, ``mv`` market (gross position) value, all in the
account's base currency. The answer names no realized P&L (IBKR: "does reference Realized Profit
and Loss" only through ``dpl``).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ibkr_sim.webapi.state import ok, web_state


async def pnl_partitioned(request: Request) -> JSONResponse:
    """The P&L rows (see the module docstring); empty on the session's first request."""
    st = web_state(request)
    session = st.session.session_id
    with st.lock:
        first = session not in st.pnl_asked
        st.pnl_asked.add(session)
    if first:
        return ok({"upnl": {}})
    ex = st.world.exchange
    rows = {}
    for account in st.accounts():
        pnl, numbers = ex.pnl(account), ex.summary(account)
        rows[f"{account}.Core"] = {
            "rowType": 1,
            "dpl": pnl.daily,
            "upl": pnl.unrealized,
            "nl": numbers.net_liquidation,
            "el": numbers.excess_liquidity,
            "mv": numbers.gross_position_value,
        }
    return ok({"upnl": rows})


ROUTES = [Route("/iserver/account/pnl/partitioned", pnl_partitioned, methods=["GET"])]

__all__ = ["ROUTES"]
