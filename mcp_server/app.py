"""The MCP server's process-wide state and the server class the tool modules register on.

:class:`AppState` lives for the whole server process: one broker connection behind the order
guard with the server's own limits (``IBKR_MCP_*``), opened on first use, the settings, the
confirmation tokens, the audit log and each MCP session's chosen account. :class:`IBKRServer`
holds it; the MCP lifespan hands it to every session as a typed lifespan context, and the
plain-HTTP routes (``/tools/list``, ``/tools/call``) reach it through the server.

The tool modules, :mod:`mcp_server.context` and :mod:`mcp_server.server` import this module;
it imports none of them, so the server's modules form no circle.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.shared.inbound import x_mcp_header_map
from mcp_types import CallToolResult, InputRequiredResult
from pydantic import ValidationError

from ibkr_assets.broker import GuardedBroker
from ibkr_assets.broker.guard import OrderGuard
from ibkr_assets.resources.ib import IBResource
from ibkr_assets.settings import MCPSettings, load_settings
from mcp_server.arguments import argument_error, make_strict
from mcp_server.metrics import UNKNOWN_TOOL, ServerMetrics
from mcp_server.safety import AuditLog, ConfirmationStore
from mcp_server.schemas import compact_schema


def broker_from_env(settings: MCPSettings) -> GuardedBroker:
    """The broker the ``IBKR_*`` settings describe, through the pipeline's IB resource, behind
    the order guard with the MCP server's limits, connected with the server's own clientId
    (``IBKR_MCP_CLIENT_ID``, default the pipeline's + 1)."""
    tree = load_settings()
    client_id = settings.client_id
    if client_id is None:
        client_id = tree.broker.client_id + 1
    resource = IBResource.from_settings(tree.updated(broker={"client_id": client_id}))
    return resource.get_broker(settings.order_limits())


@dataclass
class AppState:
    """One per server: the guarded broker (opened on first use), settings, confirmation tokens,
    the audit log, each MCP session's chosen account, and the server's metrics
    (:mod:`mcp_server.metrics`)."""

    settings: MCPSettings
    broker_factory: Callable[[MCPSettings], GuardedBroker] = broker_from_env
    confirmations: ConfirmationStore = field(init=False)
    audit_log: AuditLog = field(init=False)
    metrics: ServerMetrics = field(init=False)
    #: True after a broker call found the connection gone, until a call succeeds again.
    broker_lost: bool = field(default=False, init=False)
    _selected: dict[str, str] = field(default_factory=dict, init=False)
    _broker: GuardedBroker | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.confirmations = ConfirmationStore(
            self.settings.data_dir / "mcp" / "confirmations.sqlite", self.settings.token_ttl_s
        )
        self.audit_log = AuditLog(self.settings.audit_path)
        self.metrics = ServerMetrics(
            opened=lambda: self._broker is not None,
            connected=lambda: self._broker is not None and not self.broker_lost,
        )

    @property
    def data_dir(self) -> Path:
        """The pipeline's data root."""
        return self.settings.data_dir

    def broker(self) -> GuardedBroker:
        """The one connection, opened on first use (blocking: call from a worker thread)."""
        with self._lock:
            if self._broker is None:
                self._broker = self.broker_factory(self.settings)
            return self._broker

    def open_broker(self) -> GuardedBroker | None:
        """The connection if it is open, else None; never blocks (safe on the event loop)."""
        return self._broker

    @property
    def order_guard(self) -> OrderGuard:
        """The order guard every order of this server passes (opens the broker if needed)."""
        return self.broker().guard

    def audit(self, action: str, why: str, what: dict[str, Any]) -> None:
        """Append an order action to the MCP order log, as this server's user."""
        self.audit_log.append(action, self.settings.user, why, what)

    def selected_account(self, session: str | None) -> str | None:
        """The account an MCP session chose with ``select_account`` (None: the primary)."""
        return self._selected.get(session) if session is not None else None

    def select_account(self, session: str, account_id: str) -> None:
        """Make ``account_id`` the default of one MCP session only."""
        self._selected[session] = account_id

    def close(self) -> None:
        """Close the broker connection if one is open."""
        with self._lock:
            if self._broker is not None:
                self._broker.close()
                self._broker = None


class IBKRServer(MCPServer[AppState]):
    """MCPServer holding the process-wide state (broker, settings, trading guard), whose tools
    take strict arguments (:mod:`mcp_server.arguments`) on every transport."""

    app_state: AppState
    #: the tools whose input schema mirrors an argument into an ``Mcp-Param-*`` header
    _header_tools: frozenset[str] = frozenset()

    def add_tool(self, fn: Callable[..., Any], name: str | None = None, **kwargs: Any) -> None:
        """Register ``fn`` as MCPServer does, then make its arguments strict and publish its
        output schema compacted (:mod:`mcp_server.schemas`: cheaper for clients to check)."""
        name = name or fn.__name__
        super().add_tool(fn, name=name, **kwargs)
        make_strict(self, name)
        tool = self._tool_manager.get_tool(name)  # MCPServer has no public getter
        meta = tool.fn_metadata
        if meta.output_schema is not None:
            meta.output_schema = compact_schema(meta.output_schema)
        headers = self._header_tools - {name}
        self._header_tools = headers | {name} if x_mcp_header_map(tool.parameters) else headers

    def _tool_input_schema(self, name: str) -> dict[str, Any] | None:
        """The input schema the SDK checks a ``tools/call``'s ``Mcp-Param-*`` headers against
        (MCP 2026-07-28), or None for a tool that mirrors no argument into a header (none here):
        the check would find nothing to compare after walking the schema twice, on every call
        with arguments (~10 us of ~300 for a one-symbol quote in-process, ~30 us inside the
        HTTP server: bench/mcp_latency.py, session 18). Overrides MCPServer's hook, which hands
        every tool's schema over."""
        if name not in self._header_tools:
            return None
        return super()._tool_input_schema(name)

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context | None = None
    ) -> CallToolResult | InputRequiredResult:
        """Call a tool; arguments that fail validation answer one message naming each of them.
        Each call is counted by tool and outcome, with its time in the server
        (:mod:`mcp_server.metrics`)."""
        start = time.perf_counter()
        outcome = "unexpected"
        try:
            result = await super().call_tool(name, arguments, context)
            outcome = "error" if getattr(result, "is_error", False) else "ok"
            return result
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(exc, UnexpectedToolError):
                raise
            if not isinstance(cause, ValidationError):
                outcome = "error"
                raise
            outcome = "invalid_arguments"
            raise argument_error(name, cause) from cause
        finally:
            tool = name if self._tool_manager.get_tool(name) is not None else UNKNOWN_TOOL
            self.app_state.metrics.tool_call(tool, outcome, time.perf_counter() - start)


__all__ = ["AppState", "IBKRServer", "broker_from_env"]
