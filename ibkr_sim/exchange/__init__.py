"""The paper exchange: IB-like paper accounts, orders and fills over the simulated market.

:class:`PaperExchange` keeps several paper accounts in one SQLite file, so separate processes (the
pipeline, the MCP server, a gateway) see one account; it fills MKT / LMT / STP / STP LMT orders
(DAY or GTC, brackets through ``parent_id``) by walking the simulated book, with IB's commissions,
computes Reg-T margin for what-if, and answers bad requests with IB's error codes.

- :mod:`~ibkr_sim.exchange.orders`: the order as sent (:class:`OrderRequest`), as kept
  (:class:`OrderInfo`), its fills (:class:`ExecutionInfo`) and the checks an order passes;
- :mod:`~ibkr_sim.exchange.hours`: trading windows, the extended session, DAY-order expiry;
- :mod:`~ibkr_sim.exchange.matching`: the order book and matching (the status lifecycle, stops,
  bracket children, lazy catch-up matching of resting orders);
- :mod:`~ibkr_sim.exchange.accounts`: cash and positions, valuation, P&L, margin and what-if;
- :mod:`~ibkr_sim.exchange.storage`: the ``paper.sqlite`` schema and its queries;
- :mod:`~ibkr_sim.exchange.paper`: :class:`PaperExchange`, composed of the three above.
"""

from ibkr_sim.exchange.accounts import (
    AccountInfo,
    AccountNumbers,
    Book,
    PnLInfo,
    PositionInfo,
    WhatIf,
    apply_fill,
)
from ibkr_sim.exchange.matching import walk_book
from ibkr_sim.exchange.orders import (
    DUPLICATE_ORDER_ID,
    ExecutionInfo,
    OrderInfo,
    OrderRequest,
    order_problem,
)
from ibkr_sim.exchange.paper import PaperExchange
from ibkr_sim.exchange.storage import DEFAULT_ACCOUNTS

__all__ = [
    "DEFAULT_ACCOUNTS",
    "DUPLICATE_ORDER_ID",
    "AccountInfo",
    "AccountNumbers",
    "Book",
    "ExecutionInfo",
    "OrderInfo",
    "OrderRequest",
    "PaperExchange",
    "PnLInfo",
    "PositionInfo",
    "WhatIf",
    "apply_fill",
    "order_problem",
    "walk_book",
]
