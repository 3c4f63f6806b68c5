"""What every Broker backend must do, asserted the same way for each (see conftest.BACKENDS)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from ibkr_assets.broker import Broker
from ibkr_assets.broker.errors import (
    AccountNotFound,
    ContractNotFound,
    InvalidOrder,
    InvalidRequest,
    NotSupported,
    OrderNotFound,
)
from ibkr_assets.broker.frames import frame_of_bars, frame_of_headlines, frame_of_quotes
from ibkr_assets.broker.models import (
    BAR_COLUMNS,
    HEADLINE_COLUMNS,
    QUOTE_COLUMNS,
    Contract,
    Order,
    ScanFilter,
)
from ibkr_sim.universe import Universe

# -- reference -------------------------------------------------------------------------------


def test_resolve_a_stock_by_symbol_and_by_conid(broker: Broker) -> None:
    aapl = broker.resolve("AAPL")
    assert (aapl.symbol, aapl.sec_type, aapl.currency) == ("AAPL", "STK", "USD")
    assert aapl.conid > 0
    assert broker.resolve(aapl.conid) == aapl


def test_unknown_symbol_is_a_clear_error(broker: Broker) -> None:
    with pytest.raises(ContractNotFound) as err:
        broker.resolve("NOSUCHTICKER")
    assert err.value.code == 200
    assert "NOSUCHTICKER" in str(err.value)


def test_search_and_contract_details(broker: Broker) -> None:
    found = broker.search("MSFT")
    assert found and found[0].symbol == "MSFT"
    details = broker.contract_details(found[0])
    assert details.sector and details.industry
    assert details.lot_size >= 1 and details.min_tick > 0
    assert details.liquid_hours, "regular trading hours are reported"
    for session in details.liquid_hours:
        assert session.start < session.end


def test_option_contract_from_the_chain(broker: Broker) -> None:
    aapl = broker.resolve("AAPL")
    chain = broker.option_chain(aapl)
    expiry, strike = chain.expirations[1], chain.strikes[len(chain.strikes) // 2]
    call = broker.option_contract(aapl, expiry, strike, "C")
    put = broker.option_contract(aapl, expiry, strike, "PUT")
    assert (call.symbol, call.sec_type, call.last_trade_date) == ("AAPL", "OPT", expiry)
    assert (call.strike, call.right, call.multiplier) == (strike, "C", 100.0)
    assert put.right == "P" and put.conid not in (call.conid, aapl.conid)
    assert broker.resolve(call.conid) == call
    (quote,) = broker.quotes([call])
    assert quote.price is not None and quote.price > 0
    with pytest.raises(ContractNotFound):
        broker.option_contract(aapl, "20261217", strike, "C")  # a Thursday: no monthly expiry
    with pytest.raises(ContractNotFound):
        broker.option_contract(aapl, expiry, strike + 0.37, "C")
    with pytest.raises(InvalidRequest):
        broker.option_contract(aapl, expiry, strike, "X")


# -- market data -----------------------------------------------------------------------------


def test_bulk_quotes_for_the_whole_universe(broker: Broker) -> None:
    symbols = [inst.symbol for inst in Universe().stocks]
    assert len(symbols) == 700
    contracts = [broker.resolve(s) for s in symbols]
    quotes = broker.quotes(contracts)
    assert [q.contract.symbol for q in quotes] == symbols, "quotes come back in the order asked"
    for q in quotes:
        assert q.bid is not None and q.ask is not None and 0 < q.bid < q.ask, q
        assert q.last is not None and q.last > 0
        assert q.close is not None and q.close > 0
        assert q.volume is not None and q.volume >= 0
        assert q.spread is not None and q.spread / q.mid < 0.05, f"{q.contract.symbol} spread"


def test_daily_history(broker: Broker) -> None:
    aapl = broker.resolve("AAPL")
    bars = broker.history(aapl, duration="1 Y", bar_size="1 day", what_to_show="TRADES")
    assert 245 <= len(bars) <= 256, "one year is about 252 NYSE sessions"
    sessions = [b.session for b in bars]
    assert sessions == sorted(sessions) and len(set(sessions)) == len(sessions)
    assert bars[-1].time <= broker.now()
    for b in bars:
        assert b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high
        assert b.volume > 0


def test_history_rejects_a_bad_bar_size(broker: Broker) -> None:
    with pytest.raises(InvalidRequest) as err:
        broker.history(broker.resolve("AAPL"), duration="1 Y", bar_size="7 parsecs")
    assert "7 parsecs" in str(err.value)


def test_quotes_frame_is_quotes_as_one_frame(broker: Broker) -> None:
    """The column-wise call the pipeline reads quotes with holds the quotes of ``quotes``, in
    the order asked (the sim backend builds it from its arrays, the others convert)."""
    contracts = [broker.resolve(s) for s in ("MSFT", "AAPL", "SPY", "NVDA")]
    frame = broker.quotes_frame(contracts)
    assert list(frame.columns) == list(QUOTE_COLUMNS)
    assert frame["symbol"].tolist() == ["MSFT", "AAPL", "SPY", "NVDA"]
    expected = frame_of_quotes(broker.quotes(contracts))
    if broker.name != "sim":  # a live quote moves between two requests: compare its shape
        expected = expected.assign(**{c: frame[c] for c in QUOTE_COLUMNS[2:]})
    pd.testing.assert_frame_equal(frame, expected)
    assert (frame["bid"] <= frame["ask"]).all() and (frame["close"] > 0).all()


@pytest.mark.parametrize(
    ("duration", "bar_size", "what_to_show"),
    [("1 Y", "1 day", "TRADES"), ("1 M", "1 day", "MIDPOINT"), ("1 D", "5 mins", "TRADES")],
)
def test_history_frame_is_history_as_one_frame(
    broker: Broker, duration: str, bar_size: str, what_to_show: str
) -> None:
    """The column-wise call the pipeline reads bars with holds the bars of ``history``, in
    order (the sim backend builds it from its arrays, the others convert the bars)."""
    aapl = broker.resolve("AAPL")
    end = broker.now()
    frame = broker.history_frame(aapl, duration, bar_size, what_to_show, end=end)
    bars = broker.history(aapl, duration, bar_size, what_to_show, end=end)
    assert list(frame.columns) == list(BAR_COLUMNS) and len(frame) == len(bars) > 0
    pd.testing.assert_frame_equal(frame, frame_of_bars(bars))
    daily = bar_size == "1 day"
    assert frame["session"].notna().all() if daily else frame["session"].isna().all()
    with pytest.raises(InvalidRequest, match="7 parsecs"):
        broker.history_frame(aapl, duration="1 Y", bar_size="7 parsecs")


@pytest.mark.parametrize(("duration", "what_to_show"), [("1 Y", "TRADES"), ("1 M", "MIDPOINT")])
def test_history_frames_are_each_contracts_history_frame(
    broker: Broker, duration: str, what_to_show: str
) -> None:
    """The many-contract call holds each contract's ``history_frame``, a conid column first,
    in the order asked (the sim backend slices its panel once, tws asks for all at once, webapi
    one by one); a
    contract the broker cannot answer is its error, by conid, the others answered."""
    contracts = [broker.resolve(s) for s in ("MSFT", "AAPL", "SPY")]
    end = broker.now()
    frame, failed = broker.history_frames(contracts, duration, "1 day", what_to_show, end=end)
    assert not failed and list(frame.columns) == ["conid", *BAR_COLUMNS]
    expected = pd.concat(
        [
            broker.history_frame(c, duration, "1 day", what_to_show, end=end).assign(conid=c.conid)
            for c in contracts
        ],
        ignore_index=True,
    )[["conid", *BAR_COLUMNS]]
    pd.testing.assert_frame_equal(frame, expected)
    unknown = Contract(conid=999_999_999, symbol="NOPE", sec_type="STK")
    frame, failed = broker.history_frames([contracts[0], unknown], "1 M", "1 day", end=end)
    assert set(failed) == {unknown.conid} and set(frame["conid"]) == {contracts[0].conid}


def test_depth(broker: Broker) -> None:
    if broker.name == "webapi":  # IBKR's Web API streams the book on its websocket only
        with pytest.raises(NotSupported, match="IBKR_BACKEND=tws"):
            broker.depth(broker.resolve("NVDA"), rows=5)
        return
    book = broker.depth(broker.resolve("NVDA"), rows=5)
    assert len(book.bids) == 5 and len(book.asks) == 5
    bid_prices = [lvl.price for lvl in book.bids]
    ask_prices = [lvl.price for lvl in book.asks]
    assert bid_prices == sorted(bid_prices, reverse=True)
    assert ask_prices == sorted(ask_prices)
    assert bid_prices[0] < ask_prices[0]
    assert all(lvl.size > 0 for lvl in book.bids + book.asks)


def test_news_headlines(broker: Broker) -> None:
    from datetime import timedelta

    aapl = broker.resolve("AAPL")
    end = broker.now()
    if broker.name == "webapi":  # IBKR's Web API has no historical-news endpoint
        with pytest.raises(NotSupported, match="IBKR_BACKEND=tws"):
            broker.news(aapl, start=end - timedelta(days=30), end=end)
        with pytest.raises(NotSupported, match="IBKR_BACKEND=tws"):
            broker.news_frame(aapl, start=end - timedelta(days=30), end=end)
        return
    news = broker.news(aapl, start=end - timedelta(days=30), end=end)
    assert news, "a month of news has headlines"
    assert all(h.time <= end for h in news)
    assert [h.time for h in news] == sorted((h.time for h in news), reverse=True)
    # the column-wise call: the same headlines, newest first, within the limit
    for limit in (300, 5):
        frame = broker.news_frame(aapl, start=end - timedelta(days=30), end=end, limit=limit)
        expected = broker.news(aapl, start=end - timedelta(days=30), end=end, limit=limit)
        assert list(frame.columns) == list(HEADLINE_COLUMNS) and len(frame) <= limit
        pd.testing.assert_frame_equal(frame, frame_of_headlines(expected))


def test_news_frames_are_each_contracts_news_frame(broker: Broker) -> None:
    """The many-contract call holds each contract's ``news_frame``, a conid column first, in
    the order asked; a contract the broker cannot answer is its error, by conid."""
    from datetime import timedelta

    contracts = [broker.resolve(s) for s in ("MSFT", "AAPL", "NVDA")]
    end = broker.now()
    start = end - timedelta(days=30)
    frame, failed = broker.news_frames(contracts, start=start, end=end, limit=20)
    if broker.name == "webapi":  # IBKR's Web API has no historical-news endpoint
        assert frame.empty and set(failed) == {c.conid for c in contracts}
        assert all(isinstance(e, NotSupported) for e in failed.values())
        return
    assert not failed and list(frame.columns) == ["conid", *HEADLINE_COLUMNS]
    expected = pd.concat(
        [
            broker.news_frame(c, start=start, end=end, limit=20).assign(conid=c.conid)
            for c in contracts
        ],
        ignore_index=True,
    )[["conid", *HEADLINE_COLUMNS]]
    pd.testing.assert_frame_equal(frame, expected)
    assert frame["conid"].drop_duplicates().tolist() == [c.conid for c in contracts]
    unknown = Contract(conid=999_999_999, symbol="NOPE", sec_type="STK")
    frame, failed = broker.news_frames([unknown, contracts[0]], start=start, end=end, limit=5)
    assert set(failed) == {unknown.conid} and set(frame["conid"]) == {contracts[0].conid}


# -- accounts --------------------------------------------------------------------------------


def test_several_paper_accounts_one_primary(broker: Broker) -> None:
    accounts = broker.accounts()
    assert len(accounts) >= 2
    assert sum(a.is_primary for a in accounts) == 1
    assert all(a.is_paper and a.account_id.startswith("DU") for a in accounts)
    for a in accounts:
        s = broker.account_summary(a.account_id)
        assert s.net_liquidation > 0 and s.buying_power > 0
    with pytest.raises(AccountNotFound):
        broker.account_summary("U0000000")


def test_cash_ledger_in_several_currencies(broker: Broker) -> None:
    primary = next(a for a in broker.accounts() if a.is_primary)
    ledger = broker.cash_balances(primary.account_id)
    currencies = {line.currency for line in ledger}
    assert {"USD", "EUR"} <= currencies
    for line in ledger:
        assert math.isclose(line.value_in_base, line.cash * line.fx_rate, rel_tol=1e-9)


# -- trading ---------------------------------------------------------------------------------


def _second_account(broker: Broker) -> str:
    return next(a.account_id for a in broker.accounts() if not a.is_primary)


def test_what_if_beyond_buying_power_is_flagged_and_changes_nothing(broker: Broker) -> None:
    account = _second_account(broker)
    before = broker.account_summary(account)
    nvda = broker.resolve("NVDA")
    price = broker.quotes([nvda])[0].ask
    qty = math.ceil(before.buying_power * 3 / price)
    result = broker.what_if(Order(contract=nvda, action="BUY", quantity=qty, account_id=account))
    assert not result.accepted and result.warning
    assert result.init_margin_after > result.equity_with_loan_after
    assert result.commission > 0
    after = broker.account_summary(account)
    assert after.net_liquidation == pytest.approx(before.net_liquidation)
    assert broker.positions(account) == [] or all(
        p.contract.conid != nvda.conid for p in broker.positions(account)
    )


def test_a_market_fill_moves_cash_and_positions_consistently(broker: Broker) -> None:
    account = _second_account(broker)
    msft = broker.resolve("MSFT")
    before = broker.account_summary(account)
    pos_before = {p.contract.conid: p.quantity for p in broker.positions(account)}
    status = broker.place(
        Order(contract=msft, action="BUY", quantity=100, account_id=account, order_ref="ct-mkt")
    )
    assert status.status == "Filled" and status.filled == 100 and status.remaining == 0
    fills = [e for e in broker.executions(account) if e.order_id == status.order_id]
    assert sum(e.shares for e in fills) == 100
    assert all(e.order_ref == "ct-mkt" and e.side == "BOT" for e in fills)
    commission = sum(e.commission for e in fills)
    assert commission > 0
    after = broker.account_summary(account)
    position = next(p for p in broker.positions(account) if p.contract.conid == msft.conid)
    assert position.quantity == pos_before.get(msft.conid, 0) + 100
    # Buying at the fill price and marking at the market price: net liquidation changes by minus
    # the commission and minus what the fill paid above the mark (spread and slippage).
    paid = sum(e.shares * e.price for e in fills)
    slippage = paid - 100 * position.market_price
    assert after.net_liquidation - before.net_liquidation == pytest.approx(
        -(commission + slippage), abs=0.05
    )
    assert before.total_cash - after.total_cash == pytest.approx(paid + commission, abs=0.01)


def test_place_modify_cancel_a_resting_limit_order(broker: Broker) -> None:
    account = _second_account(broker)
    aapl = broker.resolve("AAPL")
    bid = broker.quotes([aapl])[0].bid
    limit = round(bid * 0.8, 2)
    placed = broker.place(
        Order(
            contract=aapl,
            action="BUY",
            quantity=10,
            order_type="LMT",
            limit_price=limit,
            tif="GTC",
            account_id=account,
            order_ref="ct-lmt",
        )
    )
    assert placed.status in ("PreSubmitted", "Submitted") and placed.filled == 0
    assert placed.order_id in {o.order_id for o in broker.open_orders(account)}
    modified = broker.modify(placed.order_id, quantity=20, limit_price=round(bid * 0.75, 2))
    assert modified.quantity == 20 and modified.limit_price == pytest.approx(round(bid * 0.75, 2))
    cancelled = broker.cancel(placed.order_id)
    assert cancelled.status in ("Cancelled", "ApiCancelled")
    assert placed.order_id not in {o.order_id for o in broker.open_orders(account)}
    assert placed.order_id in {o.order_id for o in broker.completed_orders(account)}
    with pytest.raises(OrderNotFound):
        broker.cancel(placed.order_id)


def test_a_bad_order_never_reaches_the_broker(broker: Broker) -> None:
    aapl = broker.resolve("AAPL")
    with pytest.raises(InvalidOrder):
        Order(contract=aapl, action="BUY", quantity=-5)
    with pytest.raises(InvalidOrder):
        Order(contract=aapl, action="BUY", quantity=5, order_type="LMT")


def test_accounts_are_independent(broker: Broker) -> None:
    primary = next(a.account_id for a in broker.accounts() if a.is_primary)
    other = _second_account(broker)
    before = broker.account_summary(primary).total_cash
    broker.place(Order(contract=broker.resolve("AMZN"), action="BUY", quantity=5, account_id=other))
    assert broker.account_summary(primary).total_cash == pytest.approx(before)


# -- scanner ---------------------------------------------------------------------------------


def test_scanners(broker: Broker) -> None:
    assert {"TOP_PERC_GAIN", "TOP_PERC_LOSE", "MOST_ACTIVE", "HOT_BY_VOLUME"} <= set(
        broker.scanner_codes()
    )
    gainers = broker.scan("TOP_PERC_GAIN", limit=20)
    losers = broker.scan("TOP_PERC_LOSE", limit=20)
    assert len(gainers) == 20 and len(losers) == 20
    assert [r.rank for r in gainers] == list(range(20))
    g = [r.change_pct for r in gainers]
    lo = [r.change_pct for r in losers]
    assert g == sorted(g, reverse=True) and lo == sorted(lo)
    assert g[0] > lo[0]
    active = broker.scan("MOST_ACTIVE", filters=ScanFilter(above_price=50.0), limit=10)
    assert all(r.last is not None and r.last > 50.0 for r in active)
    with pytest.raises(InvalidRequest):
        broker.scan("NOT_A_SCANNER")
