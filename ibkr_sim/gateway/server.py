"""An asyncio TCP server that speaks the TWS API socket protocol, backed by the simulated IB world.

One :class:`Gateway` serves many clients at once, each on its own :class:`Connection` (a
:class:`~ibkr_sim.gateway.session.Session`: its own clientId, subscriptions and order-id space),
over one shared :class:`~ibkr_sim.market.SimMarket` and :class:`~ibkr_sim.exchange.PaperExchange`.
The conversation follows IB Gateway:

1. the client sends ``API\\0`` and a framed version range ``v157..178``; the gateway answers with
   its server version (:data:`SERVER_VERSION`, the newest layout ``ib_async`` 2.1 speaks) and the
   connection time;
2. ``startApi`` (message 71) carries the clientId; a clientId already connected gets error 326
   and the socket is closed, as TWS does; otherwise the gateway sends ``nextValidId``,
   ``managedAccounts`` and the market-data farm notices 2104 / 2106 / 2158;
3. requests are then dispatched by message id (see :mod:`ibkr_sim.gateway.handlers`); a request
   the gateway does not serve is answered with an IB error for its reqId, never with silence.

A malformed message (bad framing, non-UTF-8 bytes, a truncated request, an unknown message id)
gets error 505 / 320 for that client and, where the stream can no longer be trusted, closes that
client only; nothing reaches the paper exchange from a request that did not parse.

The gateway protects itself as IB Gateway does, whatever the realism profile
(:mod:`ibkr_sim.gateway.profile`): it serves at most ``max_connections`` API clients at once (IB's
default threshold is 32; a client beyond it has its socket closed at once and reports 502
"Couldn't connect to TWS ... Verify that the maximum API connection threshold (default 32) is
not exceeded" [IBAPI-ERR]), and it drops a client that leaves a message (or its handshake)
half-sent for ``frame_timeout`` seconds, so stalled clients cannot hold its memory. Scripted and
scheduled faults (:mod:`ibkr_sim.gateway.faults`: connectivity loss, farm drops, restarts,
the profile's nightly restart) run on the gateway's own loop.

Each gateway counts its requests, pacing violations and clients (:mod:`ibkr_sim.gateway.metrics`)
and serves them to Prometheus on a port of its own when given one (``metrics_port``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict, Unpack
from wsgiref.simple_server import WSGIServer

from ibkr_sim.exchange import PaperExchange
from ibkr_sim.gateway import wire
from ibkr_sim.gateway.faults import Fault, FaultKind, FaultSchedule, parse_fault
from ibkr_sim.gateway.handlers import HANDLERS, REQ_ID_POSITION, UNSUPPORTED
from ibkr_sim.gateway.market_data import push_stream_updates
from ibkr_sim.gateway.metrics import GatewayMetrics
from ibkr_sim.gateway.orders import push_order_updates
from ibkr_sim.gateway.pacing import Pacer
from ibkr_sim.gateway.profile import RealismProfile, get_profile
from ibkr_sim.gateway.session import GatewayState, Session
from ibkr_sim.market import Edge, SimMarket
from ibkr_spec.errors import (
    BAD_MESSAGE,
    CANT_READ,
    INTERNAL_ERROR,
    NOT_CONNECTED,
    OUT_OF_DATE,
    IBError,
)

log = logging.getLogger(__name__)

SERVER_VERSION = 178  # highest ib_async 2.1 asks for; below the protobuf-only versions
MIN_CLIENT_VERSION = 157
FILL_POLL_SECONDS = 0.25  # while this client has working orders
IDLE_POLL_SECONDS = 1.0  # otherwise (fills of other clients still move positions)
TICK_SECONDS = 1.0


class Connection(Session):
    """A session's life on its socket: the handshake, the read loop that dispatches each
    request to its handler, and the background work (fills, streaming ticks). ``metrics`` (set
    by the :class:`Gateway` that accepted it) counts its requests and pacing violations."""

    metrics: GatewayMetrics

    # ---------------------------------------------------------------- life cycle
    async def run(self) -> None:
        buffer = bytearray()
        timeout = self.state.profile.frame_timeout
        try:
            try:
                if not await asyncio.wait_for(self._handshake(buffer), timeout):
                    return
            except TimeoutError:
                log.warning("dropped a client that did not finish its handshake in %.1f s", timeout)
                return
            # a separate reader stamps each chunk with its arrival time, so that IB's message
            # rate is measured on arrival even while earlier requests are being served
            inbox = self.inbox
            self.tasks.append(asyncio.create_task(self._read_into(inbox)))
            self.tasks.append(asyncio.create_task(self._poll_fills()))
            self.tasks.append(asyncio.create_task(self._stream_ticks()))
            while not self.closed:
                for payload in wire.split_frames(buffer):
                    self._dispatch(payload)
                    self.flush()
                    if self.closed or self.closing:
                        await self.drain()
                        return
                    await asyncio.sleep(0)  # let the reader stamp what arrived meanwhile
                await self.drain()
                if buffer:  # a message is half-sent: the rest must come within frame_timeout
                    try:
                        self.arrival, chunk = await asyncio.wait_for(inbox.get(), timeout)
                    except TimeoutError:
                        log.warning(
                            "dropped client %s: a message was left half-sent (%d bytes) for %.1f s",
                            self.client_id,
                            len(buffer),
                            timeout,
                        )
                        return
                else:
                    self.arrival, chunk = await inbox.get()
                if not chunk:
                    return
                buffer += chunk
        except wire.ProtocolError as exc:
            self.error(-1, BAD_MESSAGE, f"Fatal error: {exc}; connection closed")
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            await self.close()

    async def _read_into(self, inbox: asyncio.Queue[tuple[float, bytes]]) -> None:
        try:
            while chunk := await self.reader.read(65536):
                inbox.put_nowait((time.monotonic(), chunk))
        except ConnectionError:
            pass
        inbox.put_nowait((time.monotonic(), b""))

    async def _handshake(self, buffer: bytearray) -> bool:
        prefix = await self.reader.readexactly(4)
        if prefix != b"API\0":
            raise wire.ProtocolError(f"handshake must start with b'API\\x00', got {prefix!r}")
        while True:
            frames = wire.split_frames(buffer)
            if frames:
                break
            chunk = await self.reader.read(65536)
            if not chunk:
                return False
            buffer += chunk
        text = frames[0].decode(errors="replace").strip("\0")
        versions = text.split(" ")[0]
        try:
            low, _, high = versions.lstrip("v").partition("..")
            low_v, high_v = int(low), int(high or low)
        except ValueError as exc:
            raise wire.ProtocolError(f"bad version range {text!r}") from exc
        if high_v < MIN_CLIENT_VERSION or low_v > SERVER_VERSION:
            self.error(-1, OUT_OF_DATE, f"Unsupported client version range {text}")
            return False
        self.client_version = min(high_v, SERVER_VERSION)
        # frames after the handshake arrive later; push back what followed it
        buffer[:0] = b"".join(wire.frame_raw(extra) for extra in frames[1:])
        conn_time = self.state.now().strftime("%Y%m%d %H:%M:%S UTC")
        self.writer.write(wire.frame([self.client_version, conn_time]))
        await self.writer.drain()
        return True

    # ---------------------------------------------------------------- dispatch
    def _dispatch(self, payload: bytes) -> None:
        fields = wire.decode_fields(payload)
        reader = wire.Reader(fields)
        try:
            msg_id = int(fields[0])
        except ValueError as exc:
            raise wire.ProtocolError(f"message id {fields[0]!r} is not a number") from exc
        if self.client_id is None and msg_id != 71:
            self.error(-1, NOT_CONNECTED, "Not connected: send startApi first")
            return
        reader.pos = 1
        handler = HANDLERS.get(msg_id)
        self.metrics.request(
            handler.__name__ if handler else "unsupported" if msg_id in UNSUPPORTED else "unknown"
        )
        if msg_id != 71 and not self.state.pacer.allow_message(self, self.arrival):
            return
        if handler is None:
            req_id = _guess_req_id(msg_id, fields)
            if msg_id in UNSUPPORTED:
                self.error(
                    req_id,
                    OUT_OF_DATE,
                    f"The simulated gateway does not support {UNSUPPORTED[msg_id]}",
                )
                return
            raise wire.ProtocolError(f"unknown message id {msg_id}")
        try:
            handler(self, reader)
        except wire.ProtocolError as exc:
            req_id = _guess_req_id(msg_id, fields)
            self.error(req_id, CANT_READ, f"Error reading request: {exc}")
        except IBError as exc:
            self.ib_error(_guess_req_id(msg_id, fields), exc)
        except Exception as exc:  # boundary: a simulator bug must not take the client down
            log.exception(
                "message %s (%s) from client %s failed; answered with error %s",
                msg_id,
                handler.__name__,
                self.client_id,
                INTERNAL_ERROR,
            )
            self.error(
                _guess_req_id(msg_id, fields),
                INTERNAL_ERROR,
                f"Simulated gateway could not serve message {msg_id}: {type(exc).__name__}: {exc}",
            )

    def error(self, req_id: int, code: int, message: str) -> None:
        """Send IB's error message, counting a pacing violation in the gateway's metrics."""
        self.metrics.error_sent(code, message)
        super().error(req_id, code, message)

    # ---------------------------------------------------------------- background work
    async def _poll_fills(self) -> None:
        """Push fills and order states every quarter second while this client has working
        orders, every second otherwise (fills of other clients still move positions)."""

        def interval() -> float:
            live = any(oid not in self.finished for oid in self.orders.values())
            return FILL_POLL_SECONDS if live else IDLE_POLL_SECONDS

        await self._repeat(
            "pushing order updates",
            interval,
            lambda: self.client_id is not None,
            push_order_updates,
        )

    async def _stream_ticks(self) -> None:
        """Push streaming ticks, depth and P&L every second while any is subscribed."""
        await self._repeat(
            "streaming ticks",
            lambda: TICK_SECONDS,
            lambda: (
                bool(self.tickers or self.depth or self.pnl or self.pnl_single)
                and self.state.streaming
            ),
            push_stream_updates,
        )

    async def _repeat(
        self,
        what: str,
        interval: Callable[[], float],
        due: Callable[[], bool],
        push: Callable[[Session], None],
    ) -> None:
        """Every ``interval()`` seconds, ``push`` to this client when ``due()``, until it is gone.

        A deliberate boundary: a failed push (a simulator bug, a busy state file) is logged with
        its traceback and retried at the next interval; it must not end the client's session.
        """
        while not self.closed:
            await asyncio.sleep(interval())
            if not due():
                continue
            try:
                push(self)
                await self.drain()
            except (ConnectionError, RuntimeError) as exc:  # the socket or the loop is gone
                log.debug("%s to client %s stopped: %r", what, self.client_id, exc)
                return
            except Exception:
                log.exception("%s to client %s failed; retrying", what, self.client_id)


def _guess_req_id(msg_id: int, fields: list[str]) -> int:
    """The reqId of a request, for error replies: the field after the id (and version)."""
    pos = REQ_ID_POSITION.get(msg_id)
    if pos is None or pos >= len(fields):
        return -1
    try:
        return int(fields[pos])
    except ValueError:
        return -1


class Gateway:
    """The gateway server; use :func:`start_gateway` to run one on a background thread.

    ``faults`` are scripted (:class:`~ibkr_sim.gateway.faults.Fault`); with the profile's
    seeded farm drops and nightly restart they run on the gateway's event loop
    (:class:`~ibkr_sim.gateway.faults.FaultSchedule`)."""

    def __init__(self, state: GatewayState, faults: Iterable[Fault] = ()) -> None:
        self.state = state
        self.server: asyncio.Server | None = None
        self.host = ""
        self.port = 0
        self.restarting = False
        self.faults = FaultSchedule(state, faults, self.restart)
        self.metrics = GatewayMetrics(lambda: len(state.sessions))

    async def start(self, host: str, port: int) -> int:
        self.server = await asyncio.start_server(self._serve, host, port)
        self.host, self.port = host, self.server.sockets[0].getsockname()[1]
        self.faults.start()
        return self.port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        limit = self.state.profile.max_connections
        if len(self.state.sessions) >= limit:
            # the client reports 502 "... maximum API connection threshold (default 32) ..."
            # [IBAPI-ERR]; the gateway only closes the socket
            log.warning("refused an API connection: %d clients connected (max %d)", limit, limit)
            self.metrics.refused_connections.inc()
            writer.close()
            return
        session = Connection(self.state, reader, writer)
        session.metrics = self.metrics
        self.state.sessions.add(session)
        await session.run()

    async def stop(self) -> None:
        self.faults.stop()
        if self.server is not None:
            self.server.close()
        for session in list(self.state.sessions):
            await session.close()
        if self.server is not None:
            await self.server.wait_closed()

    async def restart(self, seconds: float) -> None:
        """Close every client and the listening port for ``seconds``, then listen again on the
        same port, as IB Gateway's nightly restart does (tws.md, "Nightly restart")."""
        if self.restarting or self.server is None:
            return
        self.restarting = True
        log.warning(
            "restart: dropping %d clients, port closed for %.1f s",
            len(self.state.sessions),
            seconds,
        )
        try:
            self.server.close()
            for session in list(self.state.sessions):
                await session.close()
            await asyncio.sleep(seconds)
            self.server = await asyncio.start_server(self._serve, self.host, self.port)
        finally:
            self.restarting = False
        log.warning("restart: listening again on %s:%d", self.host, self.port)


@dataclass
class GatewayHandle:
    """A gateway running on its own event-loop thread."""

    host: str
    port: int
    state: GatewayState
    _loop: asyncio.AbstractEventLoop
    _thread: threading.Thread
    _gateway: Gateway
    #: the /metrics server's port (None: not served; :meth:`metrics` still counts)
    metrics_port: int | None = None
    _metrics_server: WSGIServer | None = None

    @property
    def metrics(self) -> GatewayMetrics:
        """The gateway's metrics (:mod:`ibkr_sim.gateway.metrics`)."""
        return self._gateway.metrics

    def stop(self, timeout: float = 5.0) -> None:
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
            self._metrics_server = None
        if not self._thread.is_alive():
            return
        fut = asyncio.run_coroutine_threadsafe(self._gateway.stop(), self._loop)
        try:
            fut.result(timeout)
        except Exception:  # boundary: the loop is stopped and the thread joined regardless
            log.exception(
                "gateway on %s:%d did not close its clients cleanly within %.1f s",
                self.host,
                self.port,
                timeout,
            )
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)

    def trigger(
        self, kind: FaultKind, seconds: float | None = None, restore: int | None = None
    ) -> None:
        """Start a fault now: ``"drop"`` (1100, then ``restore`` 1101 / 1102 after
        ``seconds``), ``"farm-drop"`` (2103 / 2105 / 2157, then OK) or ``"restart"``; ``seconds``
        and ``restore`` default to the profile's (see :mod:`ibkr_sim.gateway.faults`)."""
        fault = Fault(kind, after=0.0, seconds=seconds, restore=restore)
        self._loop.call_soon_threadsafe(self._gateway.faults.trigger, fault)

    @property
    def restarting(self) -> bool:
        """True while a restart keeps the port closed."""
        return self._gateway.restarting

    def __enter__(self) -> GatewayHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class WorldOptions(TypedDict, total=False):
    """The keyword options of :func:`build_state`, for functions that pass them on."""

    seed: int
    symbols: int
    edge: str
    pacing: str
    data_dir: Path | str
    clock: Callable[[], datetime] | None
    profile: RealismProfile | str


def build_state(
    seed: int = 7,
    symbols: int = 700,
    pacing: str = "off",
    data_dir: Path | str = "data",
    clock: Callable[[], datetime] | None = None,
    profile: RealismProfile | str = "ib-paper",
    edge: str = "default",
) -> GatewayState:
    """The shared world of a gateway: market (its ``edge``: ``default`` or ``none``, see
    :class:`~ibkr_sim.market.edge.Edge`), paper exchange (state under ``data_dir``), pacer
    and realism profile (a :class:`RealismProfile` or its name; ``ib-paper`` by default, what a
    real paper login meets; ``ideal`` for benchmarks)."""

    profile = get_profile(profile) if isinstance(profile, str) else profile
    if pacing not in ("off", "ib"):
        raise ValueError(f"pacing must be 'off' or 'ib', got {pacing!r}")
    clock = clock or (lambda: datetime.now(UTC))
    market = SimMarket(seed=seed, n_stocks=symbols, edge=Edge.named(edge))
    # draw the market now (about a second): not while the first client's connect waits for its
    # positions, which ib_async's default 4 s connect timeout would feel on a busy machine
    first = market.universe.stocks[0].conid
    market.daily_bars(first, date(2019, 1, 2), date(2019, 1, 2))
    state_path = Path(data_dir) / "sim" / "paper.sqlite"
    state_path.parent.mkdir(parents=True, exist_ok=True)
    exchange = PaperExchange(market, state_path, clock=clock, participation=profile.participation)
    exchange.open_accounts(profile.accounts)
    return GatewayState(
        market=market,
        exchange=exchange,
        clock=clock,
        pacer=Pacer(pacing == "ib"),
        profile=profile,
    )


def start_gateway(
    host: str = "127.0.0.1",
    port: int = 0,
    faults: Iterable[Fault | str] = (),
    metrics_port: int | None = None,
    **world: Unpack[WorldOptions],
) -> GatewayHandle:
    """Start a gateway on a background thread; ``port=0`` picks a free port (see ``.port``).
    ``faults`` are scripted faults (:class:`Fault` or their ``--fault`` text, e.g.
    ``"drop-at=+2,for=1,restore=1102"``); ``metrics_port`` serves Prometheus' ``/metrics`` on
    ``host`` (0: a free port, see ``.metrics_port``); ``world`` are :func:`build_state`'s
    options (seed, symbols, pacing, data_dir, clock, profile)."""
    scripted = [parse_fault(f) if isinstance(f, str) else f for f in faults]
    state = build_state(**world)
    loop = asyncio.new_event_loop()
    gateway = Gateway(state, scripted)
    ready: dict[str, Any] = {}
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            ready["port"] = loop.run_until_complete(gateway.start(host, port))
        except BaseException as exc:
            ready["error"] = exc
            started.set()
            return
        started.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=run, name=f"ibkr-sim-gateway-{port}", daemon=True)
    thread.start()
    started.wait(30)
    if "error" in ready:
        raise ready["error"]
    handle = GatewayHandle(host, ready["port"], state, loop, thread, gateway)
    if metrics_port is not None:
        handle._metrics_server, _ = gateway.metrics.serve(host, metrics_port)
        handle.metrics_port = handle._metrics_server.server_port
    return handle


def running_clock(start: datetime) -> Callable[[], datetime]:
    """A clock that reads ``start`` now and advances in real time (pins the session)."""
    t0 = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - t0)


async def serve_forever(
    state: GatewayState,
    host: str,
    port: int,
    faults: Iterable[Fault] = (),
    metrics_port: int | None = None,
) -> None:
    """Serve ``state`` in the current event loop until cancelled (the ``ibkr-sim gateway`` CLI),
    and Prometheus' ``/metrics`` on ``host``:``metrics_port`` when given (0: a free port)."""
    gateway = Gateway(state, faults)
    bound = await gateway.start(host, port)
    metrics_server = None
    if metrics_port is not None:
        metrics_server, _ = gateway.metrics.serve(host, metrics_port)
        print(
            f"ibkr-sim gateway metrics on http://{host}:{metrics_server.server_port}/metrics",
            flush=True,
        )
    pacing = "ib" if state.pacer.enabled else "off"
    log.info(
        "ibkr-sim gateway listening on %s:%d (pacing %s, profile %s)",
        host,
        bound,
        pacing,
        state.profile.name,
    )
    print(f"ibkr-sim gateway listening on {host}:{bound}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()
        await gateway.stop()


__all__ = [
    "SERVER_VERSION",
    "Connection",
    "Gateway",
    "GatewayHandle",
    "running_clock",
    "start_gateway",
]
