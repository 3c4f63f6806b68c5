"""``ibkr-sim``: command line of the simulated IB world.

``ibkr-sim gateway [--host 127.0.0.1] [--port 4002] [--seed N] [--symbols 700] [--edge default|none]
[--pacing off|ib] [--data-dir DIR] [--now ISO] [--profile ideal|ib-paper] [--accounts N]
[--max-connections 32] [--frame-timeout SECONDS] [--fault KIND-at=WHEN[,for=S][,restore=C]]...``
serves the TWS API socket protocol (as IB Gateway's paper port 4002 does) over the simulated
market and the paper exchange kept under ``DIR/sim``. ``--profile`` picks how real it is
(``ibkr_sim/gateway/profile.py``); ``--fault`` scripts a connectivity loss (``drop-at``), a farm
drop (``farm-drop-at``) or a restart (``restart-at``) at a gateway-clock instant or ``+SECONDS``
after start, e.g. ``--fault drop-at=+30,for=10,restore=1102`` (``ibkr_sim/gateway/faults.py``).
``--edge none`` serves a market where no observable predicts returns (``ibkr_sim/market/edge.py``).

``ibkr-sim webapi [--host 127.0.0.1] [--port 5000] [--edge default|none] [--data-dir DIR]
[--now ISO] [--tls/--no-tls] [--profile ideal|ib-paper] [--authenticated]`` serves a simulated
Client Portal Web API gateway (``https://HOST:PORT/v1/api``, self-signed certificate under
``DIR/sim/webapi``) over the same market and paper accounts (``ibkr_sim/webapi/``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from datetime import UTC, datetime

from ibkr_sim.gateway.faults import Fault, parse_fault
from ibkr_sim.gateway.profile import get_profile


def _instant(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date-time") from exc
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _fault(text: str) -> Fault:
    try:
        return parse_fault(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ibkr-sim", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    gw = sub.add_parser("gateway", help="serve the TWS API protocol (simulated IB Gateway)")
    gw.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    gw.add_argument("--port", type=int, default=4002, help="TCP port (default 4002; 0 = any)")
    gw.add_argument("--seed", type=int, default=7, help="market seed (default 7)")
    gw.add_argument(
        "--symbols",
        type=int,
        default=700,
        help="number of stocks, 1-5000: the 807 real tickers, then generated ones (default 700)",
    )
    _add_edge(gw)
    gw.add_argument("--pacing", choices=("off", "ib"), default="off", help="emulate IB pacing")
    gw.add_argument(
        "--data-dir",
        default=os.environ.get("IBKR_DATA_DIR", "data"),
        help="data root; the paper account lives in DIR/sim (default $IBKR_DATA_DIR or ./data)",
    )
    gw.add_argument(
        "--now",
        type=_instant,
        default=None,
        help="start the gateway clock at this UTC instant (e.g. 2026-11-20T15:30:00Z, inside a "
        "session so orders fill); it then advances in real time. Default: the wall clock",
    )
    gw.add_argument(
        "--profile",
        choices=("ideal", "ib-paper"),
        default="ib-paper",
        help="realism profile: ib-paper (default: entitlements, delayed data, farm drops, "
        "nightly restart, precautions, partial fills, history gaps) or ideal (benchmarks)",
    )
    gw.add_argument(
        "--accounts",
        type=int,
        default=None,
        help="managed accounts per login (default: the profile's; 1 on ib-paper, N for an "
        "advisor-style login)",
    )
    gw.add_argument(
        "--max-connections",
        type=int,
        default=None,
        help="API connections served at once (default 32, IB's threshold)",
    )
    gw.add_argument(
        "--frame-timeout",
        type=float,
        default=None,
        help="seconds a client may leave a message half-sent before it is dropped (default 30)",
    )
    gw.add_argument(
        "--fault",
        action="append",
        default=[],
        type=_fault,
        metavar="KIND-at=WHEN",
        help="scripted fault, repeatable: drop-at=, farm-drop-at= or restart-at= an ISO instant "
        "of the gateway clock or +SECONDS after start; options ,for=SECONDS ,restore=1101|1102",
    )
    gw.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus' /metrics on this HTTP port of --host (requests, pacing "
        "violations, connected clients; 0 = any free port). Default: not served",
    )
    gw.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    _add_webapi_parser(sub)
    return parser


def _add_edge(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--edge",
        choices=("default", "none"),
        default="default",
        help="how observables predict returns: default (realistic daily ICs, 0.01-0.03) or "
        "none (no signal has an edge; ibkr_sim/market/edge.py)",
    )


def _add_webapi_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    web = sub.add_parser("webapi", help="serve the Client Portal Web API (simulated gateway)")
    web.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    web.add_argument("--port", type=int, default=5000, help="TCP port (default 5000; 0 = any)")
    web.add_argument("--seed", type=int, default=7, help="market seed (default 7)")
    web.add_argument(
        "--symbols",
        type=int,
        default=700,
        help="number of stocks, 1-5000: the 807 real tickers, then generated ones (default 700)",
    )
    _add_edge(web)
    web.add_argument(
        "--data-dir",
        default=os.environ.get("IBKR_DATA_DIR", "data"),
        help="data root; paper accounts in DIR/sim, the certificate in DIR/sim/webapi",
    )
    web.add_argument(
        "--now", type=_instant, default=None, help="start the gateway clock at this UTC instant"
    )
    web.add_argument(
        "--tls",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="HTTPS with a self-signed certificate (default); --no-tls for plain HTTP",
    )
    web.add_argument(
        "--profile",
        choices=("ideal", "ib-paper"),
        default="ib-paper",
        help="realism profile (entitlements -> field 6509, order precautions -> questions)",
    )
    web.add_argument(
        "--authenticated",
        action="store_true",
        help="start logged in (else POST /v1/api/sim/login stands in for the browser login)",
    )
    web.add_argument("--log-level", default="INFO", help="logging level (default INFO)")


def _webapi(args: argparse.Namespace) -> int:
    from ibkr_sim.gateway.server import running_clock
    from ibkr_sim.webapi import build_webapi, serve

    if not 0 <= args.port <= 65535:
        print(f"ibkr-sim webapi: --port {args.port} is not a TCP port", file=sys.stderr)
        return 2
    try:
        state = build_webapi(
            authenticated=args.authenticated,
            seed=args.seed,
            symbols=args.symbols,
            edge=args.edge,
            data_dir=args.data_dir,
            clock=None if args.now is None else running_clock(args.now),
            profile=args.profile,
        )
        with contextlib.suppress(KeyboardInterrupt):
            serve(state, args.host, args.port, args.tls, args.data_dir)
    except (ValueError, OSError) as exc:  # bad --symbols, unwritable data dir
        print(f"ibkr-sim webapi: {exc}", file=sys.stderr)
        return 2
    return 0


def _stoppable() -> None:
    """Stop on SIGTERM and SIGINT whatever the parent process left: an ignored signal is
    inherited across exec, and a gateway started by a parent that ignores SIGTERM (a test
    worker, a shell's background job) would otherwise outlive every ``terminate()``."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    _stoppable()
    if args.command == "webapi":
        return _webapi(args)
    if args.command == "gateway":
        from ibkr_sim.gateway.server import build_state, running_clock, serve_forever

        for flag, value in (("--port", args.port), ("--metrics-port", args.metrics_port)):
            if value is not None and not 0 <= value <= 65535:
                print(f"ibkr-sim gateway: {flag} {value} is not a TCP port", file=sys.stderr)
                return 2
        try:  # bad --symbols / unwritable data dir fail here, before any event loop starts
            knobs = {
                "accounts": args.accounts,
                "max_connections": args.max_connections,
                "frame_timeout": args.frame_timeout,
            }
            profile = get_profile(args.profile).with_options(
                **{k: v for k, v in knobs.items() if v is not None}
            )
            state = build_state(
                args.seed,
                args.symbols,
                args.pacing,
                args.data_dir,
                None if args.now is None else running_clock(args.now),
                profile,
                args.edge,
            )
            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(
                    serve_forever(state, args.host, args.port, args.fault, args.metrics_port)
                )
        except (ValueError, OSError) as exc:  # bad --symbols, port in use, unwritable data dir
            print(f"ibkr-sim gateway: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
