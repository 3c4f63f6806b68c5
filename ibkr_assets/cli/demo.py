"""``ibkr-agent demo``: the daily job for the latest session on the simulated world, through
the simulated IB Gateway (a subprocess on a loopback port) or the in-process simulator."""

from __future__ import annotations

import argparse
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, cast

from ibkr_assets.cli.instance import check_settings, data_dir
from ibkr_assets.cli.output import console
from ibkr_assets.cli.run import latest_session, print_outputs, run_daily


@contextmanager
def simulated_gateway(data_dir: Path, now: datetime, pacing: str = "ib") -> Iterator[int]:
    """Run ``ibkr-sim gateway`` as a subprocess on a free loopback port and yield the port.

    The gateway's clock starts at ``now`` (so the demo sees the session it runs for), its paper
    account lives under ``data_dir`` like the in-process simulator's, and its log goes to
    ``data_dir/logs/gateway.log``. A separate process keeps the gateway off the pipeline's GIL,
    as a real IB Gateway would be.
    """
    from ibkr_assets.settings import load_settings

    settings = load_settings().broker
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "ibkr_sim.cli", "gateway",
        "--host", "127.0.0.1", "--port", "0",
        "--seed", str(settings.sim_seed), "--symbols", str(settings.sim_symbols),
        "--pacing", pacing, "--data-dir", str(data_dir),
        "--now", now.isoformat(), "--log-level", "WARNING",
    ]  # fmt: skip
    with (logs / "gateway.log").open("ab") as log:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
    lines: queue.Queue[str] = queue.Queue()
    banner_source = cast(IO[str], proc.stdout)
    threading.Thread(target=lambda: lines.put(banner_source.readline()), daemon=True).start()
    try:
        try:
            banner = lines.get(timeout=60)
        except queue.Empty:
            banner = ""
        if "listening on" not in banner:
            raise RuntimeError(
                f"the simulated gateway did not start (exit code {proc.poll()}); "
                f"see {logs / 'gateway.log'}"
            )
        yield int(banner.rsplit(":", 1)[1])
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _simulated_stocks() -> list[str]:
    """The tickers of the stocks the simulated world lists (IBKR_SIM_SEED / IBKR_SIM_SYMBOLS)."""
    from ibkr_assets.broker.sim import simulated_stocks
    from ibkr_assets.settings import load_settings

    settings = load_settings().broker
    return simulated_stocks(settings.sim_seed, settings.sim_symbols)


def cmd_demo(args: argparse.Namespace) -> int:
    """``ibkr-agent demo [--backend gateway|sim]``: the daily job for the latest session on the
    simulated world; exit code 0 when every step and check passed, else 1."""
    from ibkr_assets.partitions import as_of
    from ibkr_assets.settings import load_settings

    check_settings()
    session = latest_session()
    root = data_dir()
    started = time.time()
    settings = load_settings()
    if args.backend == "sim":
        console.print(
            f"[bold]ibkr-agent demo[/]: daily pipeline for NYSE session {session} on the "
            f"in-process simulated IB world (data root {root})"
        )
        ok = run_daily(session, settings=settings.updated(broker={"backend": "sim"}))
    else:
        with simulated_gateway(root, as_of(session.isoformat())) as port:
            gateway = {"broker": {"backend": "tws", "host": "127.0.0.1", "port": port}}
            # Over a socket the pipeline needs a watch-list, as with a real IB account: the
            # demo follows every stock the gateway simulates unless one is configured.
            if not settings.pipeline.watchlist:
                gateway["pipeline"] = {"watchlist": _simulated_stocks()}
            console.print(
                f"[bold]ibkr-agent demo[/]: daily pipeline for NYSE session {session} through "
                f"the simulated IB Gateway on 127.0.0.1:{port} (ib_async, IB pacing; data root "
                f"{root})"
            )
            ok = run_daily(session, settings=settings.updated(**gateway))
    print_outputs(session, started)
    return 0 if ok else 1
