"""``ibkr-agent demo``: the daily job for the latest session on the simulated world, through
the simulated IB Gateway or the simulated Client Portal Web API gateway (each a subprocess on a
loopback port) or the in-process simulator."""

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

from ibkr_assets.cli.instance import check_settings, data_dir, edge_settings
from ibkr_assets.cli.output import console
from ibkr_assets.cli.run import latest_session, print_outputs, run_daily


@contextmanager
def _simulator(command: list[str], log_path: Path, what: str) -> Iterator[str]:
    """Run ``ibkr-sim <command>`` as a subprocess and yield its banner line (``... listening on
    <address>``, printed once it listens); stderr goes to ``log_path``; the process is stopped
    on exit (SIGTERM, then SIGKILL after 10 s). RuntimeError naming ``what`` and the log when
    no banner comes within 60 s."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ibkr_sim.cli", *command],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
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
                f"the simulated {what} did not start (exit code {proc.poll()}); see {log_path}"
            )
        yield banner
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _world_options(data_dir: Path, now: datetime, edge: str) -> list[str]:
    """The ``ibkr-sim`` options both gateways share: the simulated world of the broker settings
    (IBKR_SIM_SEED / IBKR_SIM_SYMBOLS) with ``edge``, its paper accounts under ``data_dir``,
    its clock starting at ``now``, a free loopback port."""
    from ibkr_assets.settings import load_settings

    settings = load_settings().broker
    return [
        "--host", "127.0.0.1", "--port", "0",
        "--seed", str(settings.sim_seed), "--symbols", str(settings.sim_symbols),
        "--edge", edge,
        "--data-dir", str(data_dir), "--now", now.isoformat(), "--log-level", "WARNING",
    ]  # fmt: skip


@contextmanager
def simulated_gateway(
    data_dir: Path, now: datetime, edge: str, pacing: str = "ib"
) -> Iterator[int]:
    """Run ``ibkr-sim gateway`` as a subprocess on a free loopback port and yield the port.

    The gateway's clock starts at ``now`` (so the demo sees the session it runs for), its paper
    account lives under ``data_dir`` like the in-process simulator's, and its log goes to
    ``data_dir/logs/gateway.log``. A separate process keeps the gateway off the pipeline's GIL,
    as a real IB Gateway would be.
    """
    command = ["gateway", *_world_options(data_dir, now, edge), "--pacing", pacing]
    with _simulator(command, data_dir / "logs" / "gateway.log", "IB Gateway") as banner:
        yield int(banner.rsplit(":", 1)[1])


@contextmanager
def simulated_webapi(data_dir: Path, now: datetime, edge: str) -> Iterator[tuple[str, Path]]:
    """Run ``ibkr-sim webapi`` as a subprocess on a free loopback port and yield its base URL
    (``https://127.0.0.1:<port>/v1/api``) and the self-signed certificate to trust.

    Like :func:`simulated_gateway`'s: the clock starts at ``now``, the paper account lives under
    ``data_dir`` (the certificate under ``data_dir/sim/webapi``), the log goes to
    ``data_dir/logs/webapi.log``. The gateway runs the ``ib-paper`` profile with IBKR's rate
    limits, logged in already (``--authenticated`` stands in for the browser login a real
    Client Portal gateway needs).
    """
    command = [
        "webapi", *_world_options(data_dir, now, edge), "--profile", "ib-paper", "--authenticated"
    ]  # fmt: skip
    with _simulator(command, data_dir / "logs" / "webapi.log", "Client Portal gateway") as banner:
        url = banner.split("listening on ", 1)[1].split()[0]
        yield url, data_dir / "sim" / "webapi" / "cert.pem"


def _simulated_stocks() -> list[str]:
    """The tickers of the stocks the simulated world lists (IBKR_SIM_SEED / IBKR_SIM_SYMBOLS)."""
    from ibkr_assets.broker.sim import simulated_stocks
    from ibkr_assets.settings import load_settings

    settings = load_settings().broker
    return simulated_stocks(settings.sim_seed, settings.sim_symbols)


def cmd_demo(args: argparse.Namespace) -> int:
    """``ibkr-agent demo [--backend gateway|webapi|sim] [--edge default|none]``: the daily job
    for the latest session on the simulated world; exit code 0 when every step and check
    passed, else 1."""
    from ibkr_assets.partitions import as_of

    check_settings()
    session = latest_session()
    root = data_dir()
    started = time.time()
    settings = edge_settings(args.edge)
    edge = settings.broker.sim_edge
    if args.backend == "sim":
        console.print(
            f"[bold]ibkr-agent demo[/]: daily pipeline for NYSE session {session} on the "
            f"in-process simulated IB world (data root {root})"
        )
        ok = run_daily(session, settings=settings.updated(broker={"backend": "sim"}))
        print_outputs(session, started)
        return 0 if ok else 1
    # Over a socket the pipeline needs a watch-list, as with a real IB account: the demo
    # follows every stock the gateway simulates unless one is configured.
    watchlist = {"pipeline": {"watchlist": _simulated_stocks()}}
    if settings.pipeline.watchlist:
        watchlist = {}
    now = as_of(session.isoformat())
    if args.backend == "webapi":
        with simulated_webapi(root, now, edge) as (url, cert):
            broker = {
                "backend": "webapi",
                "webapi_url": url,
                "webapi_verify": True,
                "webapi_ca_file": cert,
            }
            console.print(
                f"[bold]ibkr-agent demo[/]: daily pipeline for NYSE session {session} through "
                f"the simulated Client Portal Web API gateway at {url} (HTTPS, IBKR's rate "
                f"limits; data root {root})"
            )
            ok = run_daily(session, settings=settings.updated(broker=broker, **watchlist))
    else:
        with simulated_gateway(root, now, edge) as port:
            broker = {"backend": "tws", "host": "127.0.0.1", "port": port}
            console.print(
                f"[bold]ibkr-agent demo[/]: daily pipeline for NYSE session {session} through "
                f"the simulated IB Gateway on 127.0.0.1:{port} (ib_async, IB pacing; data root "
                f"{root})"
            )
            ok = run_daily(session, settings=settings.updated(broker=broker, **watchlist))
    print_outputs(session, started)
    return 0 if ok else 1
