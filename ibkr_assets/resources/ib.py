"""The IB resource: the one broker connection the pipeline (and the MCP server) uses.

A run connects when it starts, before any step (Dagster initialises the run's resources first):
if IB cannot be reached, or a state file under the data root is damaged, the run fails at once
with one message naming what was tried and what to check, and no asset is materialised. The
connection's own attempts (``IBKR_CONNECT_ATTEMPTS``, with backoff) are the only connection
retries; a failure after the start is retried by the ingest assets' ``RetryPolicy``.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from ibkr_assets.broker import BrokerSettings, GuardedBroker, OrderLimits, connect
from ibkr_assets.broker.errors import DuplicateClientId, NotConnected
from ibkr_assets.broker.settings import BrokerConnection
from ibkr_assets.errors import ConfigurationError, SettingsResource
from ibkr_assets.settings import Settings, load_settings

#: The first 16 bytes of every SQLite database file.
SQLITE_HEADER = b"SQLite format 3\x00"
#: State files under the data root the broker opens: path, what it holds, what moving it costs.
#: (sim.py keeps the simulated paper account in the first, guard.py its order counts in the second.)
STATE_FILES: tuple[tuple[str, str, str], ...] = (
    (
        "sim/paper.sqlite",
        "the simulated paper account (cash, positions, orders)",
        "the simulated paper account starts afresh with its default cash",
    ),
    (
        "guard/orders.sqlite",
        "the order guard's counts of the orders sent per day",
        "the guard's daily counts restart at zero, so check today's orders at IB first",
    ),
)


def damaged_state_file(data_dir: Path) -> str | None:
    """What to do about the first state file under ``data_dir`` that is not a SQLite database
    (an empty or missing file is a new one), or None when all look sound."""
    for name, holds, cost in STATE_FILES:
        path = data_dir / name
        try:
            with path.open("rb") as file:
                head = file.read(len(SQLITE_HEADER))
        except FileNotFoundError:
            continue
        if head and head != SQLITE_HEADER:
            return (
                f"{path} is not a SQLite database (damaged or overwritten); it holds {holds}. "
                f"Move it aside (mv {path} {path}.damaged) and run again: {cost}."
            )
    return None


class IBResource(SettingsResource, BrokerConnection):
    """Connection to Interactive Brokers through one of the Broker backends.

    ``backend="sim"`` (the default) runs the simulated IB world in-process; ``"tws"`` talks to TWS,
    IB Gateway or the simulated gateway through ib_async. A run connects when it starts (so an
    unreachable IB fails the run before any step); elsewhere (the MCP server, sensors) the
    connection opens on first use. It closes when the run (or the MCP server) ends.

    The fields (``BrokerConnection``) are the ``broker`` section's connection and simulated
    world; the rest of that section (timeouts, pacing, the order guard's account-wide switches)
    and the pipeline's order limits come from the settings of the process that connects.
    """

    _broker: GuardedBroker | None = PrivateAttr(default=None)

    @classmethod
    def from_settings(cls, settings: Settings) -> IBResource:
        """The ``broker`` section's connection, carrying the problem of a malformed ``IBKR_*``
        or ``IBKR_PIPELINE_*`` variable."""
        return cls(
            **settings.broker.model_dump(include=set(BrokerConnection.model_fields)),
            problem=settings.problem("broker", "pipeline_orders"),
        )

    def settings(self) -> BrokerSettings:
        """The process's ``broker`` settings with this resource's fields: the order guard's
        account-wide switches (kill switch, allow-list, price and quote limits) always come from
        the settings, so no resource config can drop them."""
        fields = self.model_dump(include=set(BrokerConnection.model_fields))
        return load_settings().updated(broker=fields).broker

    def get_broker(self, limits: OrderLimits | None = None) -> GuardedBroker:
        """The open connection, opened on first use, behind the order guard with the sender's
        ``limits`` (default: the pipeline's, ``IBKR_PIPELINE_*``, from the settings).

        Raises :class:`~ibkr_assets.errors.ConfigurationError` for a setting or state file to
        fix, and ``NotConnected`` naming the backend, host:port and clientId tried, and what to
        check, when IB cannot be reached."""
        if self._broker is None:
            settings = self.checked().settings()
            limits = limits or load_settings().pipeline_orders.limits()
            damaged = damaged_state_file(Path(settings.data_dir))
            if damaged:
                raise ConfigurationError(damaged)
            try:
                self._broker = connect(settings, limits)
            except NotConnected as exc:
                raise type(exc)(unreachable(settings, exc), code=exc.code) from None
            except sqlite3.DatabaseError as exc:
                raise ConfigurationError(
                    f"a state file under {settings.data_dir} cannot be read ({exc}): "
                    f"{', '.join(name for name, _, _ in STATE_FILES)}; move the damaged one "
                    "aside and run again"
                ) from None
        return self._broker

    def broker_at(self, as_of: datetime) -> GuardedBroker:
        """The broker as of a partition's run time. The simulator can be pinned to any instant,
        so a backfill sees the market as it was; a real IB connection only knows "now", so the
        assets also cut every history and news request at ``as_of``."""
        return self.get_broker().pinned(as_of)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Connect when a run starts, so that a run that cannot reach IB fails before any step
        and materialises nothing. Sensors build their resources without a run: they connect on
        first use, as the MCP server does."""
        super().setup_for_execution(context)
        if context.run is not None:
            self.get_broker()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection if one is open."""
        if self._broker is not None:
            self._broker.close()
            self._broker = None


def unreachable(settings: BrokerSettings, exc: NotConnected) -> str:
    """The connection failure ``exc`` with what was tried and what to check, in one line."""
    tried = f"IB unreachable (IBKR_BACKEND={settings.backend}): {exc.message}"
    if isinstance(exc, DuplicateClientId):
        return (
            f"{tried}. Another API client is connected with clientId {settings.client_id}: "
            "set IBKR_CLIENT_ID to an unused id, or disconnect the other client."
        )
    if settings.backend == "webapi":
        return (
            f"{tried}. Check that the Client Portal gateway is running at "
            f"{settings.webapi_url} (IBKR_WEBAPI_URL) and that a browser login on its page "
            "finished (IBKR's login, with two-factor authentication for a live user, opens the "
            "brokerage session; it ends after IBKR's nightly reset or when another session of "
            "the same user logs in); that its certificate is trusted (IBKR_WEBAPI_CA_FILE, "
            "IBKR_WEBAPI_VERIFY)."
        )
    return (
        f"{tried}. Check that TWS or IB Gateway is running and logged in on {settings.host}; "
        "that its API is enabled (Configure > Settings > API: Enable ActiveX and Socket "
        f"Clients, with this host trusted); that {settings.port} is its API port (IBKR_PORT: "
        "7497 TWS paper, 7496 TWS live, 4002 IB Gateway paper, 4001 IB Gateway live); and that "
        f"no other API client uses clientId {settings.client_id} (IBKR_CLIENT_ID)."
    )
