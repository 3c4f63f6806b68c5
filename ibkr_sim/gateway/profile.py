"""How real the simulated gateway is: a :class:`RealismProfile`, one named field per knob.

Two profiles are named (``ibkr-sim gateway --profile ideal|ib-paper``):

- ``ideal`` (:data:`IDEAL`): the gateway as it always was, for benchmarks and the tests that
  predate the profiles - every market-data type served as asked, no outages, no order limits,
  fills as deep as the book, history for every symbol, two managed accounts;
- ``ib-paper`` (:data:`IB_PAPER`): what a real IB paper login meets on its first day, as
  ``shared/ibkr-behaviour/tws.md`` describes it (tags such as [MDTYPE] below name its sources):
  no real-time US equity subscription (live requests refused, delayed data served), a farm
  drop now and then, a nightly restart, TWS's order precautions, partial fills of orders large
  against the minute's volume, a few symbols whose history HMDS does not have, one account;
  on the Client Portal Web API (``ibkr-sim webapi``, ``shared/ibkr-behaviour/webapi.md``) the
  same entitlements (snapshot field 6509), precautions (reply questions o383 / o451), partial
  fills and history gaps, and IBKR's nightly server reset and rate-limit penalty box.

Whatever the profile, the gateway protects itself as IB Gateway does (``max_connections``,
``frame_timeout``) and counts history durations in trading sessions
(:func:`ibkr_spec.historical.session_window`). Scripted faults (:mod:`ibkr_sim.gateway.faults`)
come on top of any profile. Everything random is drawn from ``seed``, so a scenario replays.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import time
from types import MappingProxyType
from typing import Any

#: Security types with a real-time subscription when entitlements are modelled: IDEALPRO FX
#: quotes need no subscription at IB; US stocks, ETFs, options and indices do. [MDTYPE]
FREE_LIVE_DATA = frozenset({"CASH"})


@dataclass(frozen=True)
class RealismProfile:
    """Every realism knob of the simulated gateway (see the module docstring)."""

    name: str
    #: draws everything random in the profile: history gaps, unscheduled farm drops
    seed: int = 7

    # -- logins and accounts ------------------------------------------------------------------
    #: managed accounts listed to each login (``managedAccounts``): 1 for an individual paper
    #: login, more for an advisor-style login (``--accounts N``)
    accounts: int = 2

    # -- market-data entitlements [MDTYPE] [DELAYED] -------------------------------------------
    #: security types with a real-time subscription for every account; None = entitlements not
    #: modelled (every market-data type is served as asked)
    live_data: frozenset[str] | None = None
    #: per-account overrides of ``live_data`` (account id -> security types)
    live_data_by_account: Mapping[str, frozenset[str]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    #: delayed data enabled for the login (types 3 / 4 work; off -> 10168, and live requests
    #: without a subscription get 354 instead of 10089)
    delayed_data: bool = True

    # -- self-protection, as IB Gateway's (every profile) --------------------------------------
    #: API connections served at once; IB's default threshold is 32 [IBAPI-ERR text of 502]
    max_connections: int = 32
    #: seconds a client may leave a message half-sent before it is dropped
    frame_timeout: float = 30.0

    # -- outages [MSGCODES] ---------------------------------------------------------------------
    #: seconds a farm stays broken (2103 / 2105 / 2157) before it is OK again (2104 / 2106 / 2158)
    farm_outage_seconds: float = 20.0
    #: unscheduled farm drops per day of gateway uptime (seeded; 0 = only scripted ones)
    farm_drops_per_day: float = 0.0
    #: seconds between connectivity lost (1100) and restored (1101 / 1102)
    connectivity_outage_seconds: float = 20.0
    #: how connectivity comes back: 1101 (data lost: the gateway drops every market-data
    #: subscription and the client must resubscribe) or 1102 (data maintained)
    restore_code: int = 1101
    #: New York time of the nightly restart (every client dropped, the port closed for
    #: ``restart_seconds``); None = no nightly restart
    nightly_restart: time | None = None
    #: seconds the gateway is away during a restart
    restart_seconds: float = 60.0
    #: New York time of IBKR's nightly server reset as the Client Portal Web API meets it
    #: (webapi.md, "Daily reset": /iserver briefly unavailable about 01:00 [NEWDOC], the session
    #: reset at midnight [V1DOC]): the brokerage session ends, /iserver answers 503 for
    #: ``server_reset_seconds``, then 401 until re-authenticated; None = no reset
    server_reset: time | None = None
    #: seconds (gateway clock) /iserver stays unavailable from ``server_reset``
    server_reset_seconds: float = 60.0

    # -- Web API rate limits [V1DOC] [NEWDOC] ----------------------------------------------------
    #: seconds a client that broke IBKR's Web API rate limits ``penalty_box_after`` times within
    #: a minute stays in IBKR's penalty box (every request 429; "10 minutes" [NEWDOC], "15 minutes"
    #: [V1DOC]); None = no penalty box (429 for the refused request only)
    penalty_box_seconds: float | None = None
    #: 429 answers within 60 s that put the client in the penalty box ("violators", "repeat
    #: violators": the count is UNCERTAIN in webapi.md, ours)
    penalty_box_after: int = 5

    # -- orders [ORDLIM] ------------------------------------------------------------------------
    #: TWS precautionary "Size Limit" (shares / contracts per order); None = no limit
    max_order_size: float | None = None
    #: TWS precautionary "Total Value Limit" (order value in the contract's currency); None = none
    max_order_value: float | None = None
    #: the share of a minute's traded volume one order may take in that minute; a larger order
    #: fills in several executions over several minutes. None = as deep as the displayed book
    participation: float | None = None

    # -- historical data ------------------------------------------------------------------------
    #: symbols HMDS has no data for (162 "HMDS query returned no data")
    history_gap_symbols: frozenset[str] = frozenset()
    #: share of the other stock symbols without history, drawn from ``seed``
    history_gap_rate: float = 0.0

    def __post_init__(self) -> None:
        if self.accounts < 1:
            raise ValueError(f"accounts must be at least 1, got {self.accounts}")
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {self.max_connections}")
        if self.frame_timeout <= 0:
            raise ValueError(f"frame_timeout must be positive seconds, got {self.frame_timeout}")
        if self.restore_code not in (1101, 1102):
            raise ValueError(f"restore_code must be 1101 or 1102, got {self.restore_code}")
        if self.participation is not None and not 0 < self.participation <= 1:
            raise ValueError(f"participation must be in (0, 1], got {self.participation}")
        if not 0 <= self.history_gap_rate <= 1:
            raise ValueError(f"history_gap_rate must be in [0, 1], got {self.history_gap_rate}")
        if self.server_reset_seconds < 0:
            raise ValueError(
                f"server_reset_seconds must be >= 0 seconds, got {self.server_reset_seconds}"
            )
        if self.penalty_box_seconds is not None and self.penalty_box_seconds <= 0:
            raise ValueError(
                f"penalty_box_seconds must be positive seconds or None, got "
                f"{self.penalty_box_seconds}"
            )
        if self.penalty_box_after < 1:
            raise ValueError(f"penalty_box_after must be at least 1, got {self.penalty_box_after}")

    # -- questions the gateway asks -------------------------------------------------------------
    def has_live_data(self, account: str, sec_type: str) -> bool:
        """Whether ``account`` has a real-time subscription for ``sec_type`` (always without an
        entitlement model)."""
        if self.live_data is None:
            return True
        return sec_type in self.live_data_by_account.get(account, self.live_data)

    def history_gap(self, symbol: str, sec_type: str) -> bool:
        """Whether HMDS has no data for this contract (stocks only)."""
        if symbol in self.history_gap_symbols:
            return True
        if sec_type != "STK" or self.history_gap_rate <= 0:
            return False
        digest = hashlib.blake2b(f"{self.seed}:{symbol}".encode(), digest_size=8).digest()
        return int.from_bytes(digest) / 2**64 < self.history_gap_rate

    def farm_drop_offsets(self, horizon: float = 7 * 86_400.0) -> list[float]:
        """Seconds after the gateway starts at which a farm drops unannounced, within
        ``horizon`` (a Poisson process at ``farm_drops_per_day``, drawn from ``seed``)."""
        if self.farm_drops_per_day <= 0:
            return []
        rng = random.Random(self.seed)
        rate = self.farm_drops_per_day / 86_400.0
        out, t = [], 0.0
        while True:
            t += -math.log(1.0 - rng.random()) / rate
            if t > horizon:
                return out
            out.append(t)

    def with_options(self, **changes: Any) -> RealismProfile:
        """This profile with some knobs changed (unknown names raise ``TypeError``)."""
        return replace(self, **changes)


IDEAL = RealismProfile(name="ideal")

IB_PAPER = RealismProfile(
    name="ib-paper",
    accounts=1,
    live_data=FREE_LIVE_DATA,  # a paper login without market-data subscriptions [MDTYPE]
    farm_drops_per_day=2.0,
    nightly_restart=time(23, 45),  # IB Gateway's auto-restart setting, North America [MSGCODES]
    restart_seconds=60.0,
    server_reset=time(1, 0),  # IBKR's nightly reset, North America [NEWDOC]; V1DOC says 00:00
    server_reset_seconds=60.0,
    penalty_box_seconds=600.0,  # "may be put in a penalty box for 10 minutes" [NEWDOC]
    max_order_size=10_000.0,  # TWS Presets "Size Limit" (ours; IB's default varies by preset)
    max_order_value=1_000_000.0,  # "Total Value Limit"
    participation=0.10,
    history_gap_rate=0.01,
)

PROFILES: dict[str, RealismProfile] = {p.name: p for p in (IDEAL, IB_PAPER)}


def get_profile(name: str) -> RealismProfile:
    """The named profile; ``ValueError`` listing the names for an unknown one."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown realism profile {name!r}: expected one of {', '.join(PROFILES)}"
        ) from None


__all__ = ["FREE_LIVE_DATA", "IB_PAPER", "IDEAL", "PROFILES", "RealismProfile", "get_profile"]
