"""``ibkr-agent mcp ...``: the MCP tool server's own command line, run in place of this one."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import NoReturn


def cmd_mcp(argv: Sequence[str]) -> NoReturn:
    """``ibkr-agent mcp ARGS``: become ``python -m mcp_server.cli ARGS``, the MCP server's CLI.

    The MCP server is a layer above this package (docs/architecture.md), so it is run as a
    program, never imported. Replacing this process keeps stdin and stdout (the stdio MCP
    stream), signals and the exit code the server's own."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "mcp_server.cli", *argv])
