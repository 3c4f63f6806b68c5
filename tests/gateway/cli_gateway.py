"""``ibkr-sim gateway`` started as a subprocess by the tests: its command line and the port it
says it bound."""

from __future__ import annotations

import sys
from pathlib import Path


def gateway_command(data_dir: Path, symbols: int, *options: str) -> list[str]:
    """The command line of ``ibkr-sim gateway`` on a free loopback port (``--port 0``) over a
    world of ``symbols`` stocks kept under ``data_dir``, with further ``options``."""
    return [
        sys.executable,
        "-m",
        "ibkr_sim.cli",
        "gateway",
        "--port",
        "0",
        "--symbols",
        str(symbols),
        "--data-dir",
        str(data_dir),
        *options,
    ]


def bound_port(banner: str) -> int:
    """The port of the gateway's first line, ``... listening on 127.0.0.1:<port>``."""
    assert "listening on 127.0.0.1:" in banner, banner
    return int(banner.rsplit(":", 1)[1])
