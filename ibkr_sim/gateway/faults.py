"""Scripted faults of the simulated gateway, and what each does to the connected clients.

A fault is written ``KIND-at=WHEN[,for=SECONDS][,restore=1101|1102]`` (``--fault`` on the
command line, :func:`parse_fault` from Python), ``WHEN`` being an ISO instant of the gateway
clock (``2026-11-20T15:31:00Z``) or ``+SECONDS`` after the gateway started:

- ``drop-at``: connectivity between the gateway and IB is lost: error 1100 to every client,
  streaming market data stops; after ``for`` seconds (the profile's
  ``connectivity_outage_seconds`` by default) it is restored with 1101 ("data lost": every
  market-data subscription is dropped and must be requested again) or 1102 ("data maintained":
  streaming resumes), as ``restore`` (default: the profile's ``restore_code``) says. [MSGCODES]
- ``farm-drop-at``: the market-data, HMDS and sec-def farms break (2103 / 2105 / 2157) and
  streaming stops; after ``for`` seconds they are OK again (2104 / 2106 / 2158). [MSGCODES]
- ``restart-at``: the gateway restarts, as at IB's nightly reset or auto-restart: every client's
  socket is closed and the port refuses connections for ``for`` seconds (the profile's
  ``restart_seconds``). [MSGCODES, "Nightly restart and log-off"]

The messages are IB's error callbacks with reqId -1; their texts follow the farm notices the
gateway sends on connect (tws.md, "Connectivity and farm messages").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from ibkr_sim.gateway.session import GatewayState

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05  # how often scheduled faults are checked against the clocks
NEW_YORK = ZoneInfo("America/New_York")

FaultKind = Literal["drop", "restart", "farm-drop"]
KINDS: tuple[FaultKind, ...] = ("drop", "restart", "farm-drop")

CONNECTIVITY_LOST = (1100, "Connectivity between IB and Trader Workstation has been lost.")
DATA_LOST = (1101, "Connectivity between IB and Trader Workstation has been restored - data lost.")
DATA_KEPT = (
    1102,
    "Connectivity between IB and Trader Workstation has been restored - data maintained.",
)
FARMS_BROKEN = (
    (2103, "Market data farm connection is broken:usfarm"),
    (2105, "HMDS data farm connection is broken:ushmds"),
    (2157, "Sec-def data farm connection is broken:secdefil"),
)
FARMS_OK = (
    (2104, "Market data farm connection is OK:usfarm"),
    (2106, "HMDS data farm connection is OK:ushmds"),
    (2158, "Sec-def data farm connection is OK:secdefil"),
)


@dataclass(frozen=True)
class Fault:
    """One scripted fault: ``kind`` at the gateway-clock instant ``at`` or ``after`` seconds
    from the gateway's start (exactly one of the two), lasting ``seconds`` (None: the profile's
    default), connectivity restored with ``restore`` (1101 / 1102; None: the profile's)."""

    kind: FaultKind
    at: datetime | None = None
    after: float | None = None
    seconds: float | None = None
    restore: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if (self.at is None) == (self.after is None):
            raise ValueError("a fault needs exactly one of 'at' (an instant) or 'after' (seconds)")
        if self.at is not None and self.at.tzinfo is None:
            raise ValueError(f"fault time {self.at!r} must be timezone-aware")
        if self.after is not None and self.after < 0:
            raise ValueError(f"fault offset must be >= 0 seconds, got {self.after}")
        if self.seconds is not None and self.seconds < 0:
            raise ValueError(f"fault duration must be >= 0 seconds, got {self.seconds}")
        if self.restore not in (None, 1101, 1102):
            raise ValueError(f"restore must be 1101 or 1102, got {self.restore}")

    def due(self, now: datetime, uptime: float) -> bool:
        """Whether the fault fires at gateway-clock ``now``, ``uptime`` seconds after start."""
        if self.at is not None:
            return now >= self.at
        return uptime >= float(self.after or 0.0)


def parse_fault(text: str) -> Fault:
    """``"drop-at=+30,for=10,restore=1102"`` -> :class:`Fault`; ``ValueError`` naming the
    problem for anything else (see the module docstring for the grammar)."""
    head, *options = (part.strip() for part in text.split(","))
    name, sep, when = head.partition("=")
    kind = name.removesuffix("-at")
    if not sep or not name.endswith("-at") or kind not in KINDS:
        raise ValueError(
            f"bad fault {text!r}: expected KIND-at=WHEN with KIND one of {', '.join(KINDS)}, "
            "e.g. drop-at=+30 or restart-at=2026-11-20T15:31:00Z"
        )
    at: datetime | None = None
    after: float | None = None
    try:
        if when.startswith("+"):
            after = float(when[1:])
        else:
            at = datetime.fromisoformat(when.replace("Z", "+00:00"))
            at = at if at.tzinfo else at.replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(
            f"bad fault time {when!r} in {text!r}: expected +SECONDS or an ISO date-time"
        ) from None
    seconds: float | None = None
    restore: int | None = None
    for option in options:
        key, _, value = option.partition("=")
        try:
            if key == "for":
                seconds = float(value)
            elif key == "restore":
                restore = int(value)
            else:
                raise ValueError(f"unknown option {key!r}")
        except ValueError as exc:
            raise ValueError(
                f"bad fault option {option!r} in {text!r} ({exc}): expected for=SECONDS or "
                "restore=1101|1102"
            ) from None
    return Fault(kind, at=at, after=after, seconds=seconds, restore=restore)  # type: ignore[arg-type]


def _tell_all(state: GatewayState, notices: tuple[tuple[int, str], ...]) -> None:
    for session in list(state.sessions):
        if session.client_id is None:
            continue
        for code, text in notices:
            session.error(-1, code, text)
        session.flush()


async def connectivity_outage(state: GatewayState, seconds: float, restore: int) -> None:
    """1100, streaming stops for ``seconds``, then 1101 (subscriptions dropped) or 1102."""
    log.warning("fault: connectivity lost for %.1f s, then %d", seconds, restore)
    state.connectivity_down = True
    _tell_all(state, (CONNECTIVITY_LOST,))
    try:
        await asyncio.sleep(seconds)
    finally:
        state.connectivity_down = False
        if restore == DATA_LOST[0]:
            for session in list(state.sessions):
                session.drop_market_data()
        _tell_all(state, (DATA_LOST if restore == DATA_LOST[0] else DATA_KEPT,))


async def farm_outage(state: GatewayState, seconds: float) -> None:
    """2103 / 2105 / 2157, streaming stops for ``seconds``, then 2104 / 2106 / 2158."""
    log.warning("fault: data farms broken for %.1f s", seconds)
    state.farms_down = True
    _tell_all(state, FARMS_BROKEN)
    try:
        await asyncio.sleep(seconds)
    finally:
        state.farms_down = False
        _tell_all(state, FARMS_OK)


class FaultSchedule:
    """The faults of one gateway: scripted ones, the profile's seeded farm drops and its
    nightly restart; :meth:`trigger` starts one at once. ``restart`` closes and reopens the
    gateway's port (the server's job); everything runs on the gateway's event loop."""

    def __init__(
        self,
        state: GatewayState,
        scripted: Iterable[Fault],
        restart: Callable[[float], Awaitable[None]],
    ) -> None:
        self.state = state
        self.restart = restart
        offsets = state.profile.farm_drop_offsets()
        self.pending = [*scripted, *(Fault("farm-drop", after=t) for t in offsets)]
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(self) -> None:
        """Begin watching the clocks (call on the gateway's running loop)."""
        self._spawn(self._run())

    def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def trigger(self, fault: Fault) -> None:
        """Start ``fault`` now, whenever it was scheduled for; unset lengths and the restore
        code come from the profile."""
        profile = self.state.profile
        if fault.kind == "drop":
            seconds = profile.connectivity_outage_seconds
            restore = profile.restore_code if fault.restore is None else fault.restore
            outage = connectivity_outage(self.state, _or(fault.seconds, seconds), restore)
            self._spawn(outage)
        elif fault.kind == "farm-drop":
            seconds = _or(fault.seconds, profile.farm_outage_seconds)
            self._spawn(farm_outage(self.state, seconds))
        else:
            self._spawn(self.restart(_or(fault.seconds, profile.restart_seconds)))

    async def _run(self) -> None:
        """Fire pending faults when due, and the nightly restart when the gateway clock passes
        the profile's time (New York)."""
        started = time.monotonic()
        nightly = self.state.profile.nightly_restart
        last = self.state.now()
        while True:
            await asyncio.sleep(POLL_SECONDS)
            now, uptime = self.state.now(), time.monotonic() - started
            for fault in [f for f in self.pending if f.due(now, uptime)]:
                self.pending.remove(fault)
                self.trigger(fault)
            if nightly is not None:
                local = last.astimezone(NEW_YORK)
                at = datetime.combine(local.date(), nightly, NEW_YORK)
                if at <= local:
                    at += timedelta(days=1)
                if now >= at:
                    self.trigger(Fault("restart", after=0.0))
            last = now


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


__all__ = [
    "CONNECTIVITY_LOST",
    "DATA_KEPT",
    "DATA_LOST",
    "FARMS_BROKEN",
    "FARMS_OK",
    "KINDS",
    "Fault",
    "FaultKind",
    "FaultSchedule",
    "connectivity_outage",
    "farm_outage",
    "parse_fault",
]
