"""Accounts and portfolio: ``/iserver/accounts``, ``/portfolio/accounts``,
``/portfolio/{accountId}/summary``, ``/ledger`` and ``/positions/{pageId}``, answered from the
paper exchange (the same ``paper.sqlite`` the TWS-protocol gateway uses).

Shapes follow IBKR's spec; where it and IBKR's prose differ the spec wins, e.g. the summary's
entries carry no ``currency`` (the spec types it as a number, the gateway sends "USD").
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ibkr_sim.universe import Instrument
from ibkr_sim.webapi.auth import SERVER_INFO
from ibkr_sim.webapi.state import WebApiState, account_route, bad_request, ok, web_state

#: positions per page of /portfolio/{accountId}/positions/{pageId}
PAGE_SIZE = 100
#: the date the simulated accounts were opened (``accountStatus``, epoch ms)
ACCOUNT_OPENED_MS = 1_577_923_200_000  # 2020-01-02


def _ms(st: WebApiState) -> int:
    return int(st.world.now().timestamp() * 1000)


async def iserver_accounts(request: Request) -> JSONResponse:
    """``GET /iserver/accounts``: the brokerage session's accounts and properties."""
    st = web_state(request)
    accounts = st.accounts()
    props = {
        "hasChildAccounts": False,
        "supportsCashQty": True,
        "supportsFractions": False,
        "allowCustomerTime": False,
        "autoFx": False,
        "noFXConv": False,
        "isProp": False,
        "liteUnderPro": False,
    }
    return ok(
        {
            "accounts": accounts,
            "acctProps": {a: dict(props) for a in accounts},
            "aliases": {a: a for a in accounts},
            "allowFeatures": {
                "showGFIS": True,
                "showEUCostReport": False,
                "allowFXConv": True,
                "allowTypeAhead": True,
                "allowEventTrading": False,
                "snapshotRefreshTimeout": 30,
                "liteUser": False,
                "showWebNews": True,
                "research": True,
                "debugPnl": True,
                "showTaxOpt": False,
                "showImpactDashboard": True,
                "allowDynAccount": False,
                "allowCrypto": False,
                "allowedAssetTypes": "STK,CFD,OPT,FOP,WAR,FUT,BAG,PDC,CASH,IND,BOND,BILL,FUND",
            },
            "chartPeriods": {"STK": ["*"], "OPT": ["2h", "1d", "2d", "1w", "1m"], "CASH": ["*"]},
            "groups": [],
            "profiles": [],
            "selectedAccount": accounts[0],
            "serverInfo": dict(SERVER_INFO),
            "sessionId": st.session.session_id,
            "isFt": False,
            "isPaper": True,
        }
    )


async def portfolio_accounts(request: Request) -> JSONResponse:
    """``GET /portfolio/accounts``: the accounts the /portfolio endpoints answer for."""
    st = web_state(request)
    wanted = set(st.accounts())
    out = [
        {
            "id": a.account_id,
            "PrepaidCrypto-Z": False,
            "PrepaidCrypto-P": False,
            "brokerageAccess": True,
            "accountId": a.account_id,
            "accountVan": a.account_id,
            "accountTitle": a.alias,
            "displayName": a.alias,
            "accountAlias": None,
            "accountStatus": ACCOUNT_OPENED_MS,
            "currency": a.base_currency,
            "type": "DEMO",
            "tradingType": "STKNOPT",
            "businessType": "IB_PROSERVE",
            "category": "",
            "ibEntity": "IBLLC-US",
            "faclient": False,
            "clearingStatus": "O",
            "covestor": False,
            "noClientTrading": False,
            "trackVirtualFXPortfolio": True,
            "acctCustType": "INDIVIDUAL",
            "parent": {
                "mmc": [],
                "accountId": "",
                "isMParent": False,
                "isMChild": False,
                "isMultiplex": False,
            },
            "desc": a.account_id,
        }
        for a in st.world.exchange.accounts()
        if a.account_id in wanted
    ]
    return ok(out)


def _entry(amount: float | None, at_ms: int, value: str | None = None) -> dict[str, Any]:
    """One summary value as IBKR sends it (``value`` for text entries, ``amount`` for money;
    the spec's ``value`` is a string, not nullable, so money entries leave it out)."""
    entry: dict[str, Any] = {
        "amount": 0.0 if amount is None else round(amount, 2),
        "isNull": amount is None and value is None,
        "timestamp": at_ms,
        "severity": 0,
    }
    if value is not None:
        entry["value"] = value
    return entry


async def summary(request: Request, st: WebApiState, account: str) -> JSONResponse:
    """``GET /portfolio/{accountId}/summary``: lower-case keys, each ``{amount, isNull, ...}``."""
    n = st.world.exchange.summary(account)
    at = _ms(st)
    money = {
        "netliquidation": n.net_liquidation,
        "totalcashvalue": n.total_cash,
        "settledcash": n.settled_cash,
        "grosspositionvalue": n.gross_position_value,
        "equitywithloanvalue": n.equity_with_loan,
        "initmarginreq": n.init_margin,
        "maintmarginreq": n.maint_margin,
        "availablefunds": n.available_funds,
        "excessliquidity": n.excess_liquidity,
        "buyingpower": n.buying_power,
        "cushion": n.cushion,
        "accruedcash": 0.0,
    }
    body: dict[str, Any] = {k: _entry(v, at) for k, v in money.items()}
    for key in ("netliquidation", "totalcashvalue", "equitywithloanvalue", "availablefunds"):
        body[f"{key}-s"] = dict(body[key])
    body["accountcode"] = _entry(None, at, account)
    body["accounttype"] = _entry(None, at, "INDIVIDUAL")
    body["accountready"] = _entry(None, at, "true")
    return ok(body)


async def ledger(request: Request, st: WebApiState, account: str) -> JSONResponse:
    """``GET /portfolio/{accountId}/ledger``: cash by currency and ``BASE``, in each currency."""
    ex = st.world.exchange
    numbers = ex.summary(account)
    cash = ex.cash(account)
    positions = ex.positions(account)
    pnl = ex.pnl(account)
    now = st.world.now()
    base = numbers.currency
    at_s = int(now.timestamp())

    def rate(ccy: str) -> float:  # units of base per unit of ccy
        if ccy == base:
            return 1.0
        return st.world.market.fx_rate(ccy, now) / st.world.market.fx_rate(base, now)

    def row(ccy: str, secondkey: str, cash_amount: float, stock_value: float) -> dict[str, Any]:
        return {
            "commoditymarketvalue": 0.0,
            "futuremarketvalue": 0.0,
            "settledcash": cash_amount,
            "exchangerate": rate(ccy) if secondkey != "BASE" else 1.0,
            "sessionid": 1,
            "cashbalance": cash_amount,
            "corporatebondsmarketvalue": 0.0,
            "warrantsmarketvalue": 0.0,
            "netliquidationvalue": cash_amount + stock_value,
            "interest": 0.0,
            "unrealizedpnl": sum(p.unrealized_pnl for p in positions if p.currency == ccy)
            if secondkey != "BASE"
            else pnl.unrealized,
            "stockmarketvalue": stock_value,
            "moneyfunds": 0.0,
            "currency": ccy,
            "realizedpnl": sum(p.realized_pnl for p in positions if p.currency == ccy)
            if secondkey != "BASE"
            else pnl.realized,
            "funds": 0.0,
            "acctcode": account,
            "issueroptionsmarketvalue": 0.0,
            "key": "LedgerList",
            "timestamp": at_s,
            "severity": 0,
            "stockoptionmarketvalue": 0.0,
            "futuresonlypnl": 0.0,
            "tbondsmarketvalue": 0.0,
            "futureoptionmarketvalue": 0.0,
            "cashbalancefxsegment": 0.0,
            "secondkey": secondkey,
            "tbillsmarketvalue": 0.0,
            "dividends": 0.0,
        }

    currencies = sorted(set(cash) | {p.currency for p in positions})
    body = {
        ccy: row(
            ccy,
            ccy,
            cash.get(ccy, 0.0),
            sum(p.market_value for p in positions if p.currency == ccy),
        )
        for ccy in currencies
    }
    body["BASE"] = row(
        base,
        "BASE",
        numbers.total_cash,
        numbers.net_liquidation - numbers.total_cash,
    )
    return ok(body)


async def positions(request: Request, st: WebApiState, account: str) -> JSONResponse:
    """``GET /portfolio/{accountId}/positions/{pageId}``: 100 positions per page from page 0."""
    try:
        page = int(request.path_params["pageId"])
    except ValueError:
        return bad_request(f"pageId {request.path_params['pageId']!r} is not a page number")
    if page < 0:
        return bad_request(f"pageId {page} must be 0 or more")
    universe = st.world.market.universe
    rows = sorted(st.world.exchange.positions(account), key=lambda p: p.conid)
    out = []
    for p in rows[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]:
        inst = universe.by_conid(p.conid)
        per_unit = p.avg_cost / inst.multiplier if inst.multiplier else p.avg_cost
        out.append(
            {
                "acctId": account,
                "conid": p.conid,
                "contractDesc": inst.local_symbol,
                "position": p.quantity,
                "mktPrice": p.market_price,
                "mktValue": p.market_value,
                "currency": p.currency,
                "avgCost": p.avg_cost,
                "avgPrice": per_unit,
                "realizedPnl": p.realized_pnl,
                "unrealizedPnl": p.unrealized_pnl,
                "exchs": None,
                "expiry": inst.last_trade_date or None,
                "multiplier": inst.multiplier,
                "strike": f"{inst.strike:g}",
                "exerciseStyle": None,
                "conExchMap": [],
                "assetClass": inst.sec_type,
                "undConid": inst.underlying_conid,
                "ticker": inst.symbol,
                "name": inst.name,
                "fullName": inst.local_symbol,
                "listingExchange": inst.primary_exchange or inst.exchange,
                "sector": inst.sector,
                "group": inst.industry,
                "hasOptions": inst.sec_type == "STK",
                "isUS": inst.currency == "USD",
                "pageSize": PAGE_SIZE,
                "incrementRules": [{"lowerEdge": 0.0, "increment": inst.min_tick}],
                **_option_fields(inst),
            }
        )
    return ok(out)


def _option_fields(inst: Instrument) -> dict[str, Any]:
    """``putOrCall`` only for options (the spec's enum is not nullable)."""
    return {"putOrCall": inst.right} if inst.right in ("P", "C") else {}


ROUTES = [
    Route("/iserver/accounts", iserver_accounts, methods=["GET"]),
    Route("/portfolio/accounts", portfolio_accounts, methods=["GET"]),
    Route("/portfolio/{accountId}/summary", account_route(summary), methods=["GET"]),
    Route("/portfolio/{accountId}/ledger", account_route(ledger), methods=["GET"]),
    Route("/portfolio/{accountId}/positions/{pageId}", account_route(positions), methods=["GET"]),
]

__all__ = ["ROUTES"]
