"""What the ``ibkr-agent`` commands print through: the rich console, and one-line errors."""

from __future__ import annotations

import sys

from rich.console import Console

console = Console()


def print_error(message: str) -> None:
    """One line on stderr: what went wrong and what to do, never a traceback."""
    print(f"ibkr-agent: {' '.join(message.split())}", file=sys.stderr)
