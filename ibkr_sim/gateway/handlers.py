"""Request handlers by TWS message id: connection, reference data, and the registry.

Each handler reads its request with a :class:`~ibkr_sim.gateway.wire.Reader` positioned after
the message id and answers on the session. ``HANDLERS`` maps every message id the gateway
serves; ``UNSUPPORTED`` names the requests it recognises but does not serve (they get IB error
503 for their reqId); any other id is a protocol error that closes that client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ibkr_sim.gateway import accounts, market_data, orders
from ibkr_sim.gateway.contracts import (
    contract_details_fields,
    read_contract,
    resolve_all,
    trading_class,
)
from ibkr_sim.gateway.faults import FARMS_OK
from ibkr_sim.gateway.wire import Reader
from ibkr_spec.errors import DUPLICATE_CLIENT_ID, INVALID_REQUEST

if TYPE_CHECKING:
    from ibkr_sim.gateway.session import Handler, Session


# ------------------------------------------------------------------ connection
def start_api(s: Session, r: Reader) -> None:
    r.int()  # version
    client_id = r.int()
    if s.client_id is not None:
        s.error(-1, INVALID_REQUEST, f"startApi was already received for clientId {s.client_id}")
        return
    if client_id in s.state.client_ids:
        s.error(
            -1,
            DUPLICATE_CLIENT_ID,
            f"Unable to connect as the client id {client_id} is already in use. "
            "Retry with a unique client id.",
        )
        s.closing = True
        return
    s.client_id = client_id
    s.state.client_ids.add(client_id)
    existing = s.state.exchange.executions()
    s.seen_execs = {e.exec_id for e in existing}
    # new fills come at or after the gateway's clock now, even when earlier runs on this data
    # dir stamped executions later (a restarted gateway whose clock starts at the same instant)
    s.exec_cursor = min([max(e.time for e in existing), s.state.now()]) if existing else None
    s.send(9, 1, s.state.exchange.next_order_id())
    s.send(15, 1, ",".join(s.state.managed_accounts()))
    # the farm notices TWS sends on connect [MSGCODES]
    for code, text in FARMS_OK:
        s.error(-1, code, text)


def req_ids(s: Session, r: Reader) -> None:
    r.int()
    r.int()  # numIds (ignored by TWS as well)
    s.send(9, 1, s.state.exchange.next_order_id())


def req_current_time(s: Session, r: Reader) -> None:
    s.send(49, 1, int(s.state.now().timestamp()))


def req_managed_accounts(s: Session, r: Reader) -> None:
    s.send(15, 1, ",".join(s.state.managed_accounts()))


def ignore_versioned(s: Session, r: Reader) -> None:
    """Requests that need no answer (log level, auto-open-order binding, bulletins on/off)."""
    r.rest()


# ------------------------------------------------------------------ reference data
def req_contract_details(s: Session, r: Reader) -> None:
    r.int()  # version
    req_id = r.int()
    req = read_contract(r)
    r.bool()  # includeExpired
    r.str()  # secIdType
    r.str()  # secId
    r.str()  # issuerId
    today = s.state.now().date()
    for inst in resolve_all(s.state.market, req, today):
        s.send(*contract_details_fields(s.state.market, inst, req_id, today))
    s.send(52, 1, req_id)


def req_matching_symbols(s: Session, r: Reader) -> None:
    req_id = r.int()
    pattern = r.str()
    found = s.state.market.universe.search(pattern, limit=16)
    fields: list[object] = [79, req_id, len(found)]
    for inst in found:
        derivs = ["OPT"] if inst.sec_type == "STK" else []
        fields += [
            inst.conid,
            inst.symbol,
            inst.sec_type,
            inst.primary_exchange,
            inst.currency,
            len(derivs),
            *derivs,
            inst.name,
            "",  # issuerId
        ]
    s.send(*fields)


def req_sec_def_opt_params(s: Session, r: Reader) -> None:
    req_id = r.int()
    symbol = r.str()
    r.str()  # futFopExchange
    sec_type = r.str()
    conid = r.int()
    universe = s.state.market.universe
    under = universe.by_conid(conid) if conid else universe.lookup(symbol, sec_type or None)
    expiries, strikes = s.state.market.option_chain(under.conid, s.state.now().date())
    s.send(
        75,
        req_id,
        "SMART",
        under.conid,
        trading_class(under) if under.sec_type != "STK" else under.symbol,
        "100",
        len(expiries),
        *expiries,
        len(strikes),
        *strikes,
    )
    s.send(76, req_id)


HANDLERS: dict[int, Handler] = {
    # connection
    71: start_api,
    8: req_ids,
    49: req_current_time,
    17: req_managed_accounts,
    12: ignore_versioned,  # reqNewsBulletins: there are none
    13: ignore_versioned,  # cancelNewsBulletins
    14: ignore_versioned,  # setServerLogLevel
    15: ignore_versioned,  # reqAutoOpenOrders
    # reference data
    9: req_contract_details,
    81: req_matching_symbols,
    78: req_sec_def_opt_params,
    # market data, history, depth, scanners, news
    1: market_data.req_mkt_data,
    2: market_data.cancel_mkt_data,
    59: market_data.req_market_data_type,
    10: market_data.req_mkt_depth,
    11: market_data.cancel_mkt_depth,
    20: market_data.req_historical_data,
    25: market_data.cancel_historical_data,
    87: market_data.req_head_timestamp,
    90: market_data.cancel_head_timestamp,
    24: market_data.req_scanner_parameters,
    22: market_data.req_scanner_subscription,
    23: market_data.cancel_scanner_subscription,
    85: market_data.req_news_providers,
    86: market_data.req_historical_news,
    84: market_data.req_news_article,
    # accounts and portfolio
    6: accounts.req_account_updates,
    62: accounts.req_account_summary,
    63: accounts.cancel_account_summary,
    61: accounts.req_positions,
    64: accounts.cancel_positions,
    74: accounts.req_positions_multi,
    75: accounts.cancel_positions_multi,
    76: accounts.req_account_updates_multi,
    77: accounts.cancel_account_updates_multi,
    92: accounts.req_pnl,
    93: accounts.cancel_pnl,
    94: accounts.req_pnl_single,
    95: accounts.cancel_pnl_single,
    # orders
    3: orders.place_order,
    4: orders.cancel_order,
    5: orders.req_open_orders,
    16: orders.req_all_open_orders,
    7: orders.req_executions,
    99: orders.req_completed_orders,
    58: orders.req_global_cancel,
}

#: Requests TWS knows that the simulated gateway does not serve -> error 503 for their reqId.
UNSUPPORTED: dict[int, str] = {
    18: "requestFA (financial-advisor configuration)",
    19: "replaceFA (financial-advisor configuration)",
    21: "exerciseOptions",
    50: "reqRealTimeBars",
    51: "cancelRealTimeBars",
    52: "reqFundamentalData",
    53: "cancelFundamentalData",
    54: "calculateImpliedVolatility",
    55: "calculateOptionPrice",
    56: "cancelCalculateImpliedVolatility",
    57: "cancelCalculateOptionPrice",
    65: "verifyRequest",
    66: "verifyMessage",
    67: "queryDisplayGroups",
    68: "subscribeToGroupEvents",
    69: "updateDisplayGroup",
    70: "unsubscribeFromGroupEvents",
    72: "verifyAndAuthRequest",
    73: "verifyAndAuthMessage",
    79: "reqSoftDollarTiers",
    80: "reqFamilyCodes",
    82: "reqMktDepthExchanges",
    83: "reqSmartComponents",
    88: "reqHistogramData",
    89: "cancelHistogramData",
    91: "reqMarketRule",
    96: "reqHistoricalTicks",
    97: "reqTickByTickData",
    98: "cancelTickByTickData",
    100: "reqWshMetaData",
    101: "cancelWshMetaData",
    102: "reqWshEventData",
    103: "cancelWshEventData",
    104: "reqUserInfo",
}

#: Index of the reqId field in each request (for error replies); absent = no reqId (-1).
REQ_ID_POSITION: dict[int, int] = {
    **dict.fromkeys((1, 2, 4, 7, 9, 10, 11, 21, 23, 25, 50, 51, 52, 53, 54, 55, 56, 57), 2),
    **dict.fromkeys((62, 63, 67, 68, 69, 70, 74, 75, 76, 77), 2),
    **dict.fromkeys((3, 20, 22, 78, 79, 81, 83, 84, 86, 87, 88, 89, 90, 92, 93, 94, 95), 1),
    **dict.fromkeys((96, 97, 98, 100, 101, 102, 103, 104), 1),
}
