"""The simulated fundamentals source: a symbol with no data (unknown, an ETF) is recorded in
``missing`` and named in a warning; any other error (a lost connection) fails the fetch."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from typing import Any

import pytest

from ibkr_assets.broker import BrokerSettings
from ibkr_assets.broker.errors import NotConnected
from ibkr_assets.broker.sim import SimBroker
from ibkr_assets.resources.fundamentals import SimFundamentalsResource

AS_OF = date(2024, 6, 3)
SESSIONS = [date(2024, 6, 3), date(2024, 6, 4)]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> SimBroker:
    settings = BrokerSettings(
        backend="sim",
        data_dir=tmp_path_factory.mktemp("fundamentals"),
        sim_symbols=40,
        sim_now=datetime(2024, 6, 3, 15, tzinfo=UTC),
    )
    return SimBroker.from_settings(settings)


@pytest.fixture
def resource() -> SimFundamentalsResource:
    return SimFundamentalsResource(sim_symbols=40)


class _Disconnected:
    """A sim broker whose connection is lost: resolve and resolve_many raise NotConnected."""

    def __init__(self, inner: SimBroker) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def resolve(self, *args: Any, **kwargs: Any) -> Any:
        raise NotConnected("connection to IB lost")

    def resolve_many(self, *args: Any, **kwargs: Any) -> Any:
        raise NotConnected("connection to IB lost")


def test_symbols_without_data_are_missing_and_named(broker, resource, caplog):
    stock = broker.market.universe.stocks[0].symbol
    with caplog.at_level(logging.WARNING):
        got = resource.fetch(broker, [stock, "SPY", "NOPE"], as_of=AS_OF)
    assert set(got.statements["symbol"]) == {stock}
    assert set(got.missing) == {"SPY", "NOPE"}
    assert "430" in got.missing["SPY"] and "not available" in got.missing["SPY"]
    assert got.missing["NOPE"].startswith("ContractNotFound")
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "2 of 3 symbols" in warning and "SPY: " in warning and "NOPE: " in warning


def test_forward_eps_history_skips_and_names_symbols_without_data(broker, resource, caplog):
    stock = broker.market.universe.stocks[0].symbol
    with caplog.at_level(logging.WARNING):
        eps = resource.forward_eps_history(broker, [stock, "SPY", "NOPE"], SESSIONS)
    assert set(eps["symbol"]) == {stock} and len(eps) == len(SESSIONS)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "SPY: " in warning and "NOPE: " in warning


def test_a_lost_connection_is_not_missing_data(broker, resource):
    stock = broker.market.universe.stocks[0].symbol
    lost = _Disconnected(broker)
    with pytest.raises(NotConnected, match="connection to IB lost"):
        resource.fetch(lost, [stock], as_of=AS_OF)  # type: ignore[arg-type]
    with pytest.raises(NotConnected, match="connection to IB lost"):
        resource.forward_eps_history(lost, [stock], SESSIONS)  # type: ignore[arg-type]
