"""The IB resource: the one broker connection the pipeline (and the MCP server) uses."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from ibkr_assets.broker import BrokerSettings, GuardedBroker, OrderLimits, connect


class IBResource(dg.ConfigurableResource):
    """Connection to Interactive Brokers through one of the Broker backends.

    ``backend="sim"`` (the default) runs the simulated IB world in-process; ``"tws"`` talks to TWS,
    IB Gateway or the simulated gateway through ib_async. The connection opens lazily and closes
    when the run (or the MCP server) ends.
    """

    backend: str = "sim"
    host: str = "127.0.0.1"
    port: int = 4002
    client_id: int = 1
    account: str | None = None
    readonly: bool = False
    allow_live: bool = False
    data_dir: str = "data"
    sim_seed: int = 7
    sim_symbols: int = 700
    sim_now: str | None = None

    _broker: GuardedBroker | None = PrivateAttr(default=None)

    @classmethod
    def from_env(cls) -> IBResource:
        """Build from ``IBKR_*`` environment variables (see BrokerSettings)."""
        s = BrokerSettings()
        return cls(
            backend=s.backend,
            host=s.host,
            port=s.port,
            client_id=s.client_id,
            account=s.account,
            readonly=s.readonly,
            allow_live=s.allow_live,
            data_dir=str(s.data_dir),
            sim_seed=s.sim_seed,
            sim_symbols=s.sim_symbols,
            sim_now=s.sim_now.isoformat() if s.sim_now else None,
        )

    def settings(self) -> BrokerSettings:
        """These fields as BrokerSettings (environment variables do not override them); the
        order guard's account-wide switches (kill switch, allow-list, price and quote limits)
        come from the environment, so no resource config can drop them."""
        return BrokerSettings(
            **{
                "backend": self.backend,
                "host": self.host,
                "port": self.port,
                "client_id": self.client_id,
                "account": self.account,
                "readonly": self.readonly,
                "allow_live": self.allow_live,
                "data_dir": Path(self.data_dir),
                "sim_seed": self.sim_seed,
                "sim_symbols": self.sim_symbols,
                "sim_now": datetime.fromisoformat(self.sim_now) if self.sim_now else None,
            }
        )

    def get_broker(self, limits: OrderLimits | None = None) -> GuardedBroker:
        """The open connection, opened on first use, behind the order guard with the sender's
        ``limits`` (default: the pipeline's, ``IBKR_PIPELINE_*``)."""
        if self._broker is None:
            self._broker = connect(self.settings(), limits)
        return self._broker

    def broker_at(self, as_of: datetime) -> GuardedBroker:
        """The broker as of a partition's run time. The simulator can be pinned to any instant,
        so a backfill sees the market as it was; a real IB connection only knows "now", so the
        assets also cut every history and news request at ``as_of``."""
        return self.get_broker().pinned(as_of)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection if one is open."""
        if self._broker is not None:
            self._broker.close()
            self._broker = None
