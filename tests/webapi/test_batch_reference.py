"""IBKR's batch reference endpoints (``/trsrv/stocks``, ``/trsrv/secdef``, ``/trsrv/futures``),
every answer validated against IBKR's spec; then the webapi backend's batch methods, counted in
requests: many stocks cost a few requests, not several each."""

from __future__ import annotations

from collections import Counter
from datetime import date

import pytest

from ibkr_assets.broker.errors import BrokerError, ContractNotFound
from ibkr_assets.broker.webapi.backend import WebApiBroker
from ibkr_sim.webapi.routes_contracts import front_month_ltd
from ibkr_spec.webapi import SECDEF_MAX_CONIDS
from tests.webapi.conftest import OPEN
from tests.webapi.spec import validate
from tests.webapi.test_backend import _settings as backend_settings


def test_stocks_by_many_symbols(gateway, api):
    stocks = [i for i in gateway.state.world.market.universe.all() if i.sec_type == "STK"]
    symbols = [i.symbol for i in stocks if " " not in i.symbol] + ["NOSUCHXYZ"]
    answer = validate(api.get("/trsrv/stocks", params={"symbols": ",".join(symbols)}))
    assert list(answer) == symbols and answer["NOSUCHXYZ"] == []
    for inst in stocks:
        if " " in inst.symbol:
            continue
        (entry,) = answer[inst.symbol]
        assert entry["assetClass"] == "STK" and entry["name"] == inst.name.upper()
        assert entry["contracts"] == [
            {"conid": inst.conid, "exchange": inst.primary_exchange, "isUS": True}
        ]
    assert "SPY" in answer and answer["SPY"][0]["contracts"][0]["exchange"] == "ARCA"
    assert api.get("/trsrv/stocks", params={"symbols": ""}).status_code == 400


def test_secdef_of_200_conids(gateway, api):
    universe = gateway.state.world.market.universe
    conids = [i.conid for i in universe.all()][:SECDEF_MAX_CONIDS]
    rows = validate(api.get("/trsrv/secdef", params={"conids": ",".join(map(str, conids))}))
    assert [r["conid"] for r in rows["secdef"]] == conids
    aapl = next(r for r in rows["secdef"] if r["ticker"] == "AAPL")
    assert (aapl["sector"], aapl["group"]) == (
        universe.by_conid(aapl["conid"]).sector,
        universe.by_conid(aapl["conid"]).industry,
    )


def test_futures_front_month(gateway, api):
    today = OPEN.date()
    (row,) = validate(api.get("/trsrv/futures", params={"symbols": "CL"}))["CL"]
    crude = gateway.state.world.market.universe.lookup("CL", "FUT")
    assert (row["symbol"], row["conid"]) == ("CL", crude.conid)
    ltd = front_month_ltd(today)
    assert row["ltd"] == row["expirationDate"] == int(f"{ltd:%Y%m%d}") and ltd >= today
    both = validate(api.get("/trsrv/futures", params={"symbols": "CL,ZZ", "exchange": "NYMEX"}))
    assert both == {"CL": [row], "ZZ": []}
    assert validate(api.get("/trsrv/futures", params={"symbols": "CL", "exchange": "CME"})) == {
        "CL": []
    }


@pytest.mark.parametrize(
    ("today", "ltd"),
    [
        (date(2024, 6, 3), date(2024, 6, 20)),  # CLN24: 3 business days before Tue 25 June
        (date(2024, 6, 21), date(2024, 7, 22)),  # CLQ24: June's has expired
        (date(2024, 5, 1), date(2024, 5, 21)),  # CLM24: 25 May a Saturday, so 4 days before
        (date(2024, 12, 30), date(2025, 1, 21)),  # into the next year
    ],
)
def test_front_month_last_trading_day(today, ltd):
    """NYMEX's rule for CL against the contracts' published last trading days."""
    assert front_month_ltd(today) == ltd


# -- the webapi backend ------------------------------------------------------------------------


@pytest.fixture
def counted(gateway, tmp_path, monkeypatch):
    """The webapi backend, and a Counter of the paths it requests."""
    broker = WebApiBroker.from_settings(backend_settings(gateway, tmp_path))
    paths: Counter[str] = Counter()
    send = broker.session.request

    def request(method, path, params=None, json=None):
        paths[path] += 1
        return send(method, path, params=params, json=json)

    monkeypatch.setattr(broker.session, "request", request)
    yield broker, paths
    broker.close()


def test_backend_resolves_and_describes_many_stocks_in_a_few_requests(gateway, counted):
    broker, paths = counted
    symbols = [i.symbol for i in gateway.state.world.market.universe.stocks]
    plain = [s for s in symbols if " " not in s]
    found = broker.resolve_many([*plain, "NOSUCHXYZ"])
    assert isinstance(found["NOSUCHXYZ"], ContractNotFound)
    contracts = [found[s] for s in plain]
    assert not any(isinstance(c, BrokerError) for c in contracts)
    assert paths == {"/trsrv/stocks": 1, "/trsrv/secdef": 1}
    paths.clear()
    details = broker.contract_details_many(contracts, hours=False)  # type: ignore[arg-type]
    assert all(not isinstance(d, BrokerError) and d.avg_daily_volume for d in details)
    # definitions kept from resolve_many; IBKR's /iserver/accounts before the first snapshot,
    # then one chunk's pre-flight and its values
    assert paths == {"/iserver/accounts": 1, "/iserver/marketdata/snapshot": 2}
    assert broker.resolve(plain[0]) == broker.resolve(plain[0])


def test_backend_resolves_crude_front_month(counted):
    broker, paths = counted
    crude = broker.resolve("CL", sec_type="FUT")
    assert (crude.symbol, crude.sec_type, crude.primary_exchange) == ("CL", "FUT", "NYMEX")
    assert paths["/trsrv/futures"] == 1
    bars = broker.history(crude, "1 M", "1 day")
    assert bars and all(b.close > 0 for b in bars)
