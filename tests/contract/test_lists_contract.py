"""Price alerts, watchlists, exchange rates and currency conversions on every backend
(conftest.BACKENDS). IB keeps alerts and watchlists behind the Client Portal Web API only, so the
tws backend refuses them (NotSupported); sim and webapi keep them in the paper accounts' file
(``<data>/sim/paper.sqlite``), which every test reads back directly."""

from __future__ import annotations

from pathlib import Path

import pytest

from ibkr_assets.broker import Broker, BrokerSettings, OrderGuard, OrderLimits, OrderRefused
from ibkr_assets.broker.errors import InvalidRequest, NotSupported, OrderNotFound
from ibkr_assets.broker.models import Order
from ibkr_assets.broker.sim.backend import shared_market
from ibkr_sim.exchange import PaperExchange
from tests.contract.conftest import SEED, SYMBOLS


def _paper(broker: Broker) -> PaperExchange:
    """The paper exchange over the backend's own state file (the gateway's, for tws/webapi)."""
    exchange = getattr(broker, "exchange", None)
    if exchange is not None:
        path = exchange.state_path
    else:
        path = Path(broker.settings.data_dir) / "sim" / "paper.sqlite"  # type: ignore[attr-defined]
    return PaperExchange(shared_market(SEED, SYMBOLS), path)


def _primary(broker: Broker) -> str:
    return next(a.account_id for a in broker.accounts() if a.is_primary)


def test_alerts_round_trip(broker: Broker) -> None:
    aapl = broker.resolve("AAPL")
    if broker.name == "tws":
        with pytest.raises(NotSupported, match="webapi"):
            broker.alerts()
        with pytest.raises(NotSupported):
            broker.create_alert(aapl, ">=", 1.0)
        return
    (quote,) = broker.quotes([aapl])
    assert quote.price is not None
    made = broker.create_alert(aapl, ">=", round(quote.price * 2, 2), "contract far")
    assert (made.contract.conid, made.condition, made.name) == (aapl.conid, ">=", "contract far")
    assert made.price == round(quote.price * 2, 2) and made.active and not made.triggered
    assert made.alert_id in {a.alert_id for a in broker.alerts()}
    stored = {a.alert_id: a for a in _paper(broker).alerts.alerts(_primary(broker))}
    assert stored[made.alert_id].operator == ">=" and stored[made.alert_id].conid == aapl.conid
    with pytest.raises(InvalidRequest):
        broker.create_alert(aapl, ">", 1.0)
    broker.delete_alert(made.alert_id)
    assert made.alert_id not in {a.alert_id for a in broker.alerts()}
    assert made.alert_id not in {a.alert_id for a in _paper(broker).alerts.alerts(_primary(broker))}
    with pytest.raises(OrderNotFound):
        broker.delete_alert(made.alert_id)


def test_watchlists_round_trip(broker: Broker) -> None:
    aapl, msft = broker.resolve("AAPL"), broker.resolve("MSFT")
    if broker.name == "tws":
        with pytest.raises(NotSupported, match="webapi"):
            broker.watchlists()
        with pytest.raises(NotSupported):
            broker.save_watchlist("x", [aapl])
        return
    made = broker.save_watchlist("Contract tech", [aapl])
    assert made.name == "Contract tech" and [c.conid for c in made.contracts] == [aapl.conid]
    added = broker.save_watchlist(made.name, [aapl, msft], made.watchlist_id)
    assert added.watchlist_id == made.watchlist_id
    assert [c.symbol for c in added.contracts] == ["AAPL", "MSFT"]
    stored = _paper(broker).watchlists.watchlist(made.watchlist_id)
    assert stored.conids == (aapl.conid, msft.conid)
    removed = broker.save_watchlist(made.name, [msft], made.watchlist_id)
    assert [c.symbol for c in removed.contracts] == ["MSFT"]
    lists = {w.watchlist_id: w for w in broker.watchlists()}
    assert [c.symbol for c in lists[made.watchlist_id].contracts] == ["MSFT"]
    system = [w for w in lists.values() if w.read_only]
    assert system, "IB's own read-only lists are listed"
    with pytest.raises(InvalidRequest):
        broker.delete_watchlist(system[0].watchlist_id)
    broker.delete_watchlist(made.watchlist_id)
    assert made.watchlist_id not in {w.watchlist_id for w in broker.watchlists()}
    with pytest.raises(InvalidRequest):
        broker.delete_watchlist(made.watchlist_id)


def test_exchange_rate_is_the_worlds(broker: Broker) -> None:
    now = broker.now()
    world = shared_market(SEED, SYMBOLS).fx_rate("EUR", now)  # USD per EUR in the market
    eur_usd = broker.exchange_rate("EUR", "USD")
    assert (eur_usd.source, eur_usd.target) == ("EUR", "USD")
    # within a pip or two: tws reads the pair's midpoint, sim and webapi its last price
    assert eur_usd.rate == pytest.approx(world, rel=5e-4)
    usd_eur = broker.exchange_rate("usd", "eur")
    assert usd_eur.rate * eur_usd.rate == pytest.approx(1.0, rel=5e-4)
    assert broker.exchange_rate("USD", "JPY").rate > 50  # JPY per USD
    with pytest.raises(InvalidRequest):
        broker.exchange_rate("EUR", "XYZ")
    with pytest.raises(InvalidRequest):
        broker.exchange_rate("EURO", "USD")


def test_fx_conversion_lands_in_the_paper_account(broker: Broker) -> None:
    account = _primary(broker)
    paper = _paper(broker)
    before = paper.cash(account)
    pair = broker.resolve("EUR", "CASH", "IDEALPRO", "USD")
    assert (pair.symbol, pair.sec_type, pair.currency) == ("EUR", "CASH", "USD")
    assert pair.local_symbol == "EUR.USD"  # IB's local symbol of the pair
    placed = broker.place(Order(contract=pair, action="BUY", quantity=2_500, order_ref="fx-1"))
    done = broker.order_status(placed.order_id)
    assert done.status == "Filled" and done.filled == pytest.approx(2_500)
    assert done.avg_fill_price == pytest.approx(broker.exchange_rate("EUR", "USD").rate, rel=2e-3)
    after = paper.cash(account)
    assert after["EUR"] - before["EUR"] == pytest.approx(2_500)
    rate = broker.exchange_rate("EUR", "USD").rate
    assert before["USD"] - after["USD"] == pytest.approx(2_500 * rate, rel=2e-3)  # + commission
    with pytest.raises(OrderNotFound):
        broker.order_status(987_654_321)


def test_the_guard_values_an_fx_order_in_base_currency(broker: Broker, tmp_path: Path) -> None:
    limits = OrderLimits(
        principal="contract",
        max_quantity=1_000,  # shares / contracts: a currency order is capped by value alone
        max_notional=250_000,
        max_nlv_share=1.0,
        orders_per_minute=100,
        orders_per_day=100,
        max_daily_notional=1e9,
    )
    guard = OrderGuard(BrokerSettings(data_dir=tmp_path), limits)
    usd_jpy = broker.resolve("USD", "CASH", "IDEALPRO", "JPY")
    judged = guard.assess(broker, Order(contract=usd_jpy, action="BUY", quantity=10_000))
    # 10,000 USD bought with yen is worth about 10,000 USD (the yen price x the yen's rate)
    assert judged.notional == pytest.approx(10_000, rel=2e-3)
    with pytest.raises(OrderRefused, match="max_notional"):
        guard.assess(broker, Order(contract=usd_jpy, action="BUY", quantity=300_000))
    aapl = broker.resolve("AAPL")  # the share cap still holds for shares
    with pytest.raises(OrderRefused, match="max_quantity"):
        guard.assess(broker, Order(contract=aapl, action="BUY", quantity=1_001))
