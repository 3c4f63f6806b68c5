"""Running the simulated Client Portal gateway: :func:`build_webapi` (its state over the same
simulated world as the TWS-protocol gateway: the same ``<data>/sim/paper.sqlite``),
:func:`start_webapi` (a server on a background thread, for tests) and :func:`serve` (the
``ibkr-sim webapi`` CLI, in the foreground). HTTPS with the self-signed certificate of
:mod:`~ibkr_sim.webapi.tls` by default, plain HTTP with ``tls=False``.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Unpack

import uvicorn

from ibkr_sim.gateway.server import WorldOptions, build_state
from ibkr_sim.webapi.app import PREFIX, build_app
from ibkr_sim.webapi.auth import DEFAULT_TIMEOUT, AuthSession
from ibkr_sim.webapi.ratelimit import RateLimiter
from ibkr_sim.webapi.state import WebApiState
from ibkr_sim.webapi.tls import ensure_certificate

log = logging.getLogger(__name__)
START_TIMEOUT = 30.0


def build_webapi(
    authenticated: bool = False,
    rate_limits: bool = True,
    session_timeout: float = DEFAULT_TIMEOUT,
    **world: Unpack[WorldOptions],
) -> WebApiState:
    """The gateway's state: the world of :func:`ibkr_sim.gateway.server.build_state` (seed,
    symbols, data_dir, clock, profile), logged in already when ``authenticated``, IBKR's rate
    limits on unless ``rate_limits=False``, the brokerage session ending after
    ``session_timeout`` seconds without a request; the profile's nightly reset and penalty box."""
    state = build_state(**world)
    profile = state.profile
    session = AuthSession(
        session_timeout,
        authenticated,
        clock=state.clock,
        reset=profile.server_reset,
        reset_seconds=profile.server_reset_seconds,
    )
    limits = RateLimiter(
        rate_limits,
        penalty_seconds=profile.penalty_box_seconds,
        penalty_after=profile.penalty_box_after,
    )
    return WebApiState(world=state, session=session, limits=limits)


def _config(
    state: WebApiState, host: str, port: int, tls: bool, data_dir: Path | str
) -> tuple[uvicorn.Config, Path | None]:
    cert: Path | None = None
    ssl: dict[str, str] = {}
    if tls:
        cert, key = ensure_certificate(data_dir)
        ssl = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    config = uvicorn.Config(
        build_app(state),
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
        access_log=False,
        **ssl,
    )
    return config, cert


@dataclass
class WebApiHandle:
    """A simulated Web API gateway running on its own thread."""

    host: str
    port: int
    tls: bool
    #: the self-signed certificate to trust (None without TLS)
    cert_path: Path | None
    state: WebApiState
    _server: uvicorn.Server
    _thread: threading.Thread

    @property
    def url(self) -> str:
        """The base URL, e.g. ``https://127.0.0.1:5000/v1/api``."""
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}{PREFIX}"

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and close the paper exchange's connection."""
        self._server.should_exit = True
        self._thread.join(timeout)
        self.state.world.exchange.close()

    def __enter__(self) -> WebApiHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_webapi(
    host: str = "127.0.0.1",
    port: int = 0,
    tls: bool = True,
    authenticated: bool = False,
    rate_limits: bool = True,
    session_timeout: float = DEFAULT_TIMEOUT,
    **world: Unpack[WorldOptions],
) -> WebApiHandle:
    """Start a gateway on a background thread; ``port=0`` picks a free port (see ``.port`` and
    ``.url``); ``world`` are :func:`ibkr_sim.gateway.server.build_state`'s options."""
    data_dir = world.get("data_dir", "data")
    state = build_webapi(authenticated, rate_limits, session_timeout, **world)
    config, cert = _config(state, host, port, tls, data_dir)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"ibkr-sim-webapi-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise OSError(f"the simulated Web API did not start on {host}:{port}")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    return WebApiHandle(host, bound, tls, cert, state, server, thread)


def serve(state: WebApiState, host: str, port: int, tls: bool, data_dir: Path | str) -> None:
    """Serve ``state`` in the foreground until interrupted (the ``ibkr-sim webapi`` CLI).

    The socket is bound and listening before the banner is printed, so the banner names the port
    bound (``port=0``: the free port the system picked) and a supervisor reading it can connect
    at once (a connection waits in the backlog until the server accepts it)."""
    config, cert = _config(state, host, port, tls, data_dir)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))  # OSError (port taken, bad host) reaches the CLI
    sock.listen(2048)  # uvicorn's backlog
    scheme = "https" if tls else "http"
    where = f" (self-signed certificate {cert})" if cert else ""
    bound = sock.getsockname()[1]
    print(f"ibkr-sim webapi listening on {scheme}://{host}:{bound}{PREFIX}{where}", flush=True)
    with sock:
        uvicorn.Server(config).run(sockets=[sock])


__all__ = ["WebApiHandle", "build_webapi", "serve", "start_webapi"]
