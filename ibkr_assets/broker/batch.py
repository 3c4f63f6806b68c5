"""The protocol's batch methods (``resolve_many``, ``contract_details_many``) answer each item
with its result or its own error, so one unknown symbol does not cost the others. An error of
the connection rather than of an item (:data:`CONNECTION_ERRORS`) is raised: every later item
would meet it too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

import pandas as pd

from ibkr_assets.broker.errors import BrokerError, NotConnected, PacingViolation
from ibkr_assets.broker.models import Contract, ContractDetails

if TYPE_CHECKING:
    from ibkr_assets.broker.protocol import Broker

T = TypeVar("T")
R = TypeVar("R")

#: errors of the connection (it dropped, IB did not answer in time) or of the request rate (IB
#: asked for slower requests), never of one item: a batch method raises them
CONNECTION_ERRORS: tuple[type[BrokerError], ...] = (NotConnected, PacingViolation)


def each(items: Iterable[T], ask: Callable[[T], R]) -> list[R | BrokerError]:
    """``ask(item)`` for each item in order, an item's BrokerError in its place (one of
    :data:`CONNECTION_ERRORS` raised)."""
    out: list[R | BrokerError] = []
    for item in items:
        try:
            out.append(ask(item))
        except CONNECTION_ERRORS:
            raise
        except BrokerError as exc:
            out.append(exc)
    return out


def without_hours(details: ContractDetails, hours: bool) -> ContractDetails:
    """``details`` as ``contract_details_many(..., hours=hours)`` answers them: with
    ``hours=False``, no trading or liquid hours."""
    if hours:
        return details
    return details.model_copy(update={"trading_hours": [], "liquid_hours": []})


def resolve_each(
    broker: Broker, symbols: Sequence[str], sec_type: str, currency: str
) -> dict[str, Contract | BrokerError]:
    """``resolve_many`` as one ``resolve`` per symbol (backends whose requests carry one
    symbol)."""
    found = each(symbols, lambda s: broker.resolve(s, sec_type, currency=currency))
    return dict(zip(symbols, found, strict=True))


def details_each(
    broker: Broker, contracts: Sequence[Contract], hours: bool
) -> list[ContractDetails | BrokerError]:
    """``contract_details_many`` as one ``contract_details`` per contract."""
    return each(contracts, lambda c: without_hours(broker.contract_details(c), hours))


def frames_each(
    contracts: Sequence[Contract], ask: Callable[[Contract], pd.DataFrame], empty: pd.DataFrame
) -> tuple[pd.DataFrame, dict[int, BrokerError]]:
    """A ``*_frames`` call (``history_frames``) as one ``ask(contract)`` per contract (backends
    whose requests carry one contract, each paced as it is): the answers in one frame, a
    ``conid`` column first, the contracts in order; and each contract's error, by conid (one of
    :data:`CONNECTION_ERRORS` raised). ``empty``: the frame of no answer (its columns)."""
    answers = list(zip(contracts, each(contracts, ask), strict=True))
    failed = {c.conid: f for c, f in answers if isinstance(f, BrokerError)}
    frames = [f.assign(conid=c.conid) for c, f in answers if not isinstance(f, BrokerError)]
    frame = pd.concat(frames, ignore_index=True) if frames else empty.assign(conid=0)[:0]
    return frame[["conid", *empty.columns]].astype({"conid": "int64"}), failed
