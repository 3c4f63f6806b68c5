"""The ``ibkr-agent`` command (``main``), one module per command: :mod:`.commands` (the parser,
the dispatch and the usage), :mod:`.run` (the daily job for one session, with progress),
:mod:`.demo` (the same on the simulated world, through the simulated gateway), :mod:`.journal`,
:mod:`.promote`, :mod:`.backtest`, :mod:`.mcp` (hands over to the MCP server's command line);
what they share: :mod:`.instance` (settings, data root, Dagster instance) and :mod:`.output`."""

from ibkr_assets.cli.commands import main

__all__ = ["main"]
