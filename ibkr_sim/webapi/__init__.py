"""A simulated IBKR Client Portal Web API gateway (``ibkr-sim webapi``), over the same simulated
market and paper exchange as the TWS-protocol gateway (:mod:`ibkr_sim.gateway`).

Shapes follow IBKR's OpenAPI spec (v2.29.0, ``shared/ibkr-webapi/ibkr-openapi.json``), behaviour
the spec does not show follows ``shared/ibkr-behaviour/webapi.md``:

- :mod:`~ibkr_sim.webapi.auth`: the SSO and brokerage sessions, 401s, the timeout without /tickle;
- :mod:`~ibkr_sim.webapi.ratelimit`: IBKR's global and per-endpoint limits (429);
- :mod:`~ibkr_sim.webapi.tls`: the self-signed certificate under ``<data>/sim/webapi``;
- :mod:`~ibkr_sim.webapi.state`: the state every route shares, IBKR's error bodies;
- ``routes_session``, ``routes_portfolio``, ``routes_contracts``, ``routes_market_data``,
  ``routes_orders`` (order entry, reply questions), ``routes_order_status`` (orders and fills):
  the endpoints by area; ``order_form``: an order object as the exchange's, the questions it meets;
- :mod:`~ibkr_sim.webapi.app`: the Starlette app (``/v1/api``, the gate before every route);
- :mod:`~ibkr_sim.webapi.server`: :func:`start_webapi` (tests) and :func:`serve` (the CLI).
"""

from ibkr_sim.webapi.server import WebApiHandle, build_webapi, serve, start_webapi

__all__ = ["WebApiHandle", "build_webapi", "serve", "start_webapi"]
