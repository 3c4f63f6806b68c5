"""The IB client library: typed models, the Broker protocol and its backends."""

from __future__ import annotations

from ibkr_assets.broker.errors import BrokerError, LiveTradingNotAllowed, OrderRefused
from ibkr_assets.broker.guard import OrderGuard
from ibkr_assets.broker.guarded import GuardedBroker
from ibkr_assets.broker.protocol import Broker
from ibkr_assets.broker.settings import BrokerSettings, OrderLimits, PipelineOrderLimits

__all__ = [
    "Broker",
    "BrokerError",
    "BrokerSettings",
    "GuardedBroker",
    "OrderLimits",
    "OrderRefused",
    "connect",
]


def connect(
    settings: BrokerSettings | None = None, limits: OrderLimits | None = None
) -> GuardedBroker:
    """Open the broker the settings name (``IBKR_BACKEND``, default ``sim``), behind the order
    guard with the sender's ``limits`` (default: the pipeline's, ``IBKR_PIPELINE_*``).

    Refuses a live (non-paper) account unless ``allow_live`` is set or the connection is
    read-only: paper is the default everywhere.
    """
    settings = settings or BrokerSettings()
    limits = limits or PipelineOrderLimits().limits()
    broker: Broker
    if settings.backend == "sim":
        from ibkr_assets.broker.sim import SimBroker

        broker = SimBroker.from_settings(settings)
    elif settings.backend == "tws":
        from ibkr_assets.broker.tws import TwsBroker

        broker = TwsBroker.from_settings(settings)
    else:
        from ibkr_assets.broker.webapi import WebApiBroker

        broker = WebApiBroker.from_settings(settings)
    try:
        _refuse_unsanctioned_live(broker, settings)
    except BrokerError:
        broker.close()
        raise
    return GuardedBroker(broker, OrderGuard(settings, limits))


def _refuse_unsanctioned_live(broker: Broker, settings: BrokerSettings) -> None:
    if settings.allow_live or settings.readonly:
        return
    accounts = broker.accounts()
    chosen = [a for a in accounts if a.account_id == settings.account] or [
        a for a in accounts if a.is_primary
    ]
    live = [a.account_id for a in chosen if not a.is_paper]
    if live:
        raise LiveTradingNotAllowed(
            f"account {live[0]} is a live account; set IBKR_ALLOW_LIVE=true to trade it "
            "or IBKR_READONLY=true to read it"
        )
