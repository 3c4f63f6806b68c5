"""The MCP server's network constants; its settings are the ``mcp`` section of the settings tree.

:class:`ibkr_assets.settings.MCPSettings` (``IBKR_MCP_*``) says what the tool server may do:
whether trading tools exist at all, its own per-order caps and rate limits in the order guard,
and the bearer token needed to listen on anything but loopback. The broker connection itself is
the ``broker`` section's (``IBKR_*``), so the server and the pipeline always point at the same
account. Both are read once per process by :func:`ibkr_assets.settings.load_settings`.
"""

from __future__ import annotations

#: Hosts that are this machine: the server listens on them without a bearer token.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
