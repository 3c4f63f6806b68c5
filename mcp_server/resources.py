"""MCP resources: what an assistant can attach to a conversation without a tool call.

Each resource is the JSON answer of one read tool called without arguments, so a resource and
its tool never disagree:

==============================  ======================  ==========================================
URI                             tool                    content
==============================  ======================  ==========================================
``ibkr://accounts``             ``list_accounts``       managed accounts and the one in use
``ibkr://positions``            ``positions``           holdings, marked to market
``ibkr://pnl``                  ``pnl``                 daily, unrealised and realised P&L
``ibkr://orders/ticket/latest`` ``latest_order_ticket`` the pipeline's latest order ticket
``ibkr://risk/latest``          ``risk_report``         the pipeline's latest risk report
==============================  ======================  ==========================================

A resource read has no MCP session, so the account is ``IBKR_ACCOUNT``, else the primary one
(not one chosen with ``select_account``). A read the tool refuses (the broker unreachable, no
order ticket produced yet) answers a resource error with the tool's message.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from mcp.server.mcpserver.exceptions import ResourceError, ToolError, UnexpectedToolError
from mcp.server.mcpserver.resources import FunctionResource

from mcp_server import pipeline, portfolio
from mcp_server.app import IBKRServer

MIME_TYPE = "application/json"


class ToolResource(NamedTuple):
    """A resource that is a read tool's answer."""

    uri: str
    name: str
    tool: Callable[..., Awaitable[object]]
    description: str


RESOURCES = (
    ToolResource(
        "ibkr://accounts",
        "accounts",
        portfolio.list_accounts,
        "Accounts this login manages (paper accounts start with D) and the one in use.",
    ),
    ToolResource(
        "ibkr://positions",
        "positions",
        portfolio.positions,
        "Holdings of the account with average cost, market value and unrealised P&L.",
    ),
    ToolResource(
        "ibkr://pnl",
        "pnl",
        portfolio.pnl,
        "Live P&L of the account: daily, unrealised and realised, in the base currency.",
    ),
    ToolResource(
        "ibkr://orders/ticket/latest",
        "latest-order-ticket",
        pipeline.latest_order_ticket,
        "The daily pipeline's latest order ticket (orders with their what-if results).",
    ),
    ToolResource(
        "ibkr://risk/latest",
        "latest-risk-report",
        pipeline.risk_report,
        "The daily pipeline's latest risk report (CVaR, exposures, compliance-gate outcome).",
    ),
)


def _reader(server: IBKRServer, resource: ToolResource) -> Callable[[], Awaitable[str]]:
    """Read ``resource``: its tool's structured answer, as JSON text."""
    tool = resource.tool.__name__

    async def read() -> str:
        try:
            result = await server.call_tool(tool, {})
        except UnexpectedToolError:
            raise
        except ToolError as exc:
            raise ResourceError(f"{resource.uri}: {exc}") from None
        return json.dumps(result.structured_content, indent=2)

    read.__name__ = resource.name
    return read


def register(server: IBKRServer) -> None:
    """Add every resource of :data:`RESOURCES` to the server."""
    for resource in RESOURCES:
        server.add_resource(
            FunctionResource.from_function(
                _reader(server, resource),
                uri=resource.uri,
                name=resource.name,
                title=resource.name.replace("-", " ").capitalize(),
                description=resource.description,
                mime_type=MIME_TYPE,
            )
        )
