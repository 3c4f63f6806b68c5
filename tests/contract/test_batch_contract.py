"""The protocol's batch reference methods on every backend (conftest.BACKENDS): ``resolve_many``
and ``contract_details_many`` answer what ``resolve`` and ``contract_details`` answer one by one,
each item's error in its place."""

from __future__ import annotations

from ibkr_assets.broker import Broker
from ibkr_assets.broker.errors import BrokerError, ContractNotFound
from ibkr_assets.broker.models import Contract

SYMBOLS = ["AAPL", "msft", "SPY", "NOSUCHXYZ", "NVDA"]


def _same(a: Contract, b: Contract) -> bool:
    keys = ("conid", "symbol", "sec_type", "currency", "primary_exchange")
    return all(getattr(a, k) == getattr(b, k) for k in keys)


def test_resolve_many_as_resolve_one_by_one(broker: Broker) -> None:
    found = broker.resolve_many(SYMBOLS)
    assert list(found) == SYMBOLS, "keyed by each symbol as given, in order"
    assert isinstance(found["NOSUCHXYZ"], ContractNotFound)
    for symbol in ("AAPL", "msft", "SPY", "NVDA"):
        one = broker.resolve(symbol)
        got = found[symbol]
        assert not isinstance(got, BrokerError), f"{symbol}: {got}"
        assert _same(got, one), f"{symbol}: {got} != {one}"
        assert got.primary_exchange, f"{symbol}: the listing exchange is named"


def test_contract_details_many_as_one_by_one(broker: Broker) -> None:
    aapl, spy = broker.resolve("AAPL"), broker.resolve("SPY")
    unknown = aapl.model_copy(update={"conid": 987654321, "symbol": "GONE"})
    first, bad, second = broker.contract_details_many([aapl, unknown, spy], hours=False)
    assert isinstance(bad, BrokerError)
    for many, contract in ((first, aapl), (second, spy)):
        assert not isinstance(many, BrokerError)
        one = broker.contract_details(contract)
        assert _same(many.contract, one.contract)
        assert (many.sector, many.industry, many.min_tick) == (
            one.sector,
            one.industry,
            one.min_tick,
        )
        assert many.avg_daily_volume == one.avg_daily_volume and many.avg_daily_volume
        assert many.avg_volume_source == one.avg_volume_source == "ib"
        assert one.liquid_hours, "contract_details reports the hours"
        assert not many.trading_hours and not many.liquid_hours, "hours=False leaves them out"
    (with_hours,) = broker.contract_details_many([aapl])
    assert not isinstance(with_hours, BrokerError)
    assert with_hours.liquid_hours == broker.contract_details(aapl).liquid_hours


def test_front_month_future(broker: Broker) -> None:
    """The macro gauges' crude: CL resolved as a future (front month), not Colgate's stock."""
    crude = broker.resolve("CL", sec_type="FUT")
    assert (crude.symbol, crude.sec_type, crude.currency) == ("CL", "FUT", "USD")
    assert crude.conid != broker.resolve("CL").conid
    assert crude.multiplier == 1000.0
