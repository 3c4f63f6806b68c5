"""Account requests: summary, account updates and portfolio, positions, PnL.

Numbers come from the paper exchange (:class:`ibkr_sim.exchange.PaperExchange`), valued at the
gateway clock. Tags and keys are IB's (``NetLiquidation``, ``TotalCashValue``, ``BuyingPower``,
``InitMarginReq`` ... and, for ``$LEDGER``, ``CashBalance`` / ``NetLiquidationByCurrency`` per
currency), amounts in the account's base currency (USD) unless a currency is named.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ibkr_sim.gateway.contracts import contract_fields, portfolio_contract_fields
from ibkr_sim.gateway.wire import Reader
from ibkr_spec.errors import INVALID_REQUEST, IBError

if TYPE_CHECKING:
    from ibkr_sim.gateway.session import Session

#: IB tag -> AccountNumbers attribute
SUMMARY_TAGS: dict[str, str] = {
    "NetLiquidation": "net_liquidation",
    "TotalCashValue": "total_cash",
    "SettledCash": "settled_cash",
    "GrossPositionValue": "gross_position_value",
    "EquityWithLoanValue": "equity_with_loan",
    "InitMarginReq": "init_margin",
    "MaintMarginReq": "maint_margin",
    "FullInitMarginReq": "init_margin",
    "FullMaintMarginReq": "maint_margin",
    "AvailableFunds": "available_funds",
    "FullAvailableFunds": "available_funds",
    "ExcessLiquidity": "excess_liquidity",
    "FullExcessLiquidity": "excess_liquidity",
    "BuyingPower": "buying_power",
}


def _accounts(s: Session, wanted: str = "") -> list[str]:
    ids = s.state.managed_accounts()
    if wanted and wanted not in ("All", ""):
        if wanted not in ids:
            raise IBError(INVALID_REQUEST, f"Unknown account {wanted!r}; managed: {','.join(ids)}")
        return [wanted]
    return ids


def _base(s: Session, account: str) -> str:
    for a in s.state.exchange.accounts():
        if a.account_id == account:
            return a.base_currency
    return "USD"


def _money(value: float) -> str:
    return f"{float(value):.2f}"


def account_values(s: Session, account: str) -> list[tuple[str, str, str]]:
    """(key, value, currency) rows as TWS sends them for one account."""
    ex = s.state.exchange
    numbers = ex.summary(account)
    base = _base(s, account)
    rows: list[tuple[str, str, str]] = [("AccountType", "INDIVIDUAL", "")]
    for tag, attr in SUMMARY_TAGS.items():
        rows.append((tag, _money(getattr(numbers, attr)), base))
    net = float(numbers.net_liquidation)
    gross = float(numbers.gross_position_value)
    rows.append(("Leverage", f"{(gross / net if net else 0.0):.4f}", ""))
    rows.append(("Cushion", f"{(float(numbers.excess_liquidity) / net if net else 0.0):.4f}", ""))
    rows.append(("DayTradesRemaining", "-1", ""))
    rows.append(("AccruedCash", "0.00", base))
    for ccy, amount in ledger(s, account).items():
        rows.append(("CashBalance", _money(amount[0]), ccy))
        rows.append(("TotalCashBalance", _money(amount[0]), ccy))
        rows.append(("ExchangeRate", f"{amount[1]:.6f}", ccy))
    rows.append(("CashBalance", _money(numbers.total_cash), "BASE"))
    rows.append(("NetLiquidationByCurrency", _money(net), "BASE"))
    return rows


def ledger(s: Session, account: str) -> dict[str, tuple[float, float]]:
    """currency -> (cash, USD per unit)."""
    now = s.state.now()
    return {
        ccy: (float(amount), float(s.state.market.fx_rate(ccy, now)))
        for ccy, amount in sorted(s.state.exchange.cash(account).items())
    }


def req_account_summary(s: Session, r: Reader) -> None:
    r.int()
    req_id = r.int()
    group = r.str()
    tags = [t for t in r.str().split(",") if t]
    accounts = _accounts(s, "" if group in ("All", "") else group)
    wanted = set(tags)
    ledger_all = "$LEDGER:ALL" in wanted or "$LEDGER" in wanted
    for account in accounts:
        for key, value, ccy in account_values(s, account):
            if key in wanted or (
                ledger_all
                and key
                in ("CashBalance", "NetLiquidationByCurrency", "TotalCashBalance", "ExchangeRate")
            ):
                s.send(63, 1, req_id, account, key, value, ccy)
    s.send(64, 1, req_id)


def cancel_account_summary(s: Session, r: Reader) -> None:
    r.rest()


def _portfolio_rows(s: Session, account: str) -> list[list[object]]:
    universe = s.state.market.universe
    rows = []
    for p in s.state.exchange.positions(account):
        inst = universe.by_conid(p.conid)
        rows.append(
            [
                7,
                8,
                *portfolio_contract_fields(inst),
                float(p.quantity),
                float(p.market_price),
                float(p.market_value),
                float(p.avg_cost),
                float(p.unrealized_pnl),
                float(p.realized_pnl),
                account,
            ]
        )
    return rows


def send_account_updates(s: Session, account: str) -> None:
    for key, value, ccy in account_values(s, account):
        s.send(6, 2, key, value, ccy, account)
    for row in _portfolio_rows(s, account):
        s.send(*row)
    s.send(8, 1, s.state.now().strftime("%H:%M"))


def req_account_updates(s: Session, r: Reader) -> None:
    r.int()
    subscribe = r.bool()
    code = r.str()
    if not subscribe:
        s.account_updates = None
        return
    (account,) = _accounts(s, code) if code else _accounts(s)[:1]
    s.account_updates = account
    send_account_updates(s, account)
    s.send(54, 1, account)


def req_account_updates_multi(s: Session, r: Reader) -> None:
    r.int()
    req_id = r.int()
    code = r.str()
    model = r.str()
    r.bool()
    for account in _accounts(s, code):
        for key, value, ccy in account_values(s, account):
            s.send(73, 1, req_id, account, model, key, value, ccy)
    s.send(74, 1, req_id)


def cancel_account_updates_multi(s: Session, r: Reader) -> None:
    r.rest()


def _position_rows(s: Session, account: str) -> list[tuple[Any, list[object], float, float]]:
    universe = s.state.market.universe
    return [
        (account, contract_fields(universe.by_conid(p.conid)), float(p.quantity), float(p.avg_cost))
        for p in s.state.exchange.positions(account)
    ]


def send_position(s: Session, account: str, conid: int) -> None:
    """One ``position`` message (quantity 0 once the position is closed)."""
    inst = s.state.market.universe.by_conid(conid)
    held = [p for p in s.state.exchange.positions(account) if p.conid == conid]
    qty, cost = (float(held[0].quantity), float(held[0].avg_cost)) if held else (0.0, 0.0)
    s.send(61, 3, account, *contract_fields(inst), qty, cost)


def req_positions(s: Session, r: Reader) -> None:
    r.int()
    s.positions_subscribed = True
    for account in _accounts(s):
        for acct, contract, qty, cost in _position_rows(s, account):
            s.send(61, 3, acct, *contract, qty, cost)
    s.send(62, 1)


def cancel_positions(s: Session, r: Reader) -> None:
    r.rest()
    s.positions_subscribed = False


def req_positions_multi(s: Session, r: Reader) -> None:
    r.int()
    req_id = r.int()
    code = r.str()
    model = r.str()
    for account in _accounts(s, code):
        for acct, contract, qty, cost in _position_rows(s, account):
            s.send(71, 1, req_id, acct, *contract, qty, cost, model)
    s.send(72, 1, req_id)


def cancel_positions_multi(s: Session, r: Reader) -> None:
    r.rest()


def _send_pnl(s: Session, req_id: int, account: str) -> None:
    pnl = s.state.exchange.pnl(account)
    s.send(94, req_id, float(pnl.daily), float(pnl.unrealized), float(pnl.realized))


def _send_pnl_single(s: Session, req_id: int, account: str, conid: int) -> None:
    position = next((p for p in s.state.exchange.positions(account) if p.conid == conid), None)
    if position is None:
        s.send(95, req_id, 0.0, 0.0, 0.0, 0.0, 0.0)
        return
    snap = s.state.market.snapshot(conid, s.state.now())
    inst = s.state.market.universe.by_conid(conid)
    daily = float(position.quantity) * (float(snap.last) - float(snap.prev_close)) * inst.multiplier
    s.send(
        95,
        req_id,
        float(position.quantity),
        daily,
        float(position.unrealized_pnl),
        float(position.realized_pnl),
        float(position.market_value),
    )


def req_pnl(s: Session, r: Reader) -> None:
    req_id = r.int()
    (account,) = _accounts(s, r.str())[:1]
    r.str()
    s.pnl[req_id] = account
    _send_pnl(s, req_id, account)


def cancel_pnl(s: Session, r: Reader) -> None:
    s.pnl.pop(r.int(), None)


def req_pnl_single(s: Session, r: Reader) -> None:
    req_id = r.int()
    (account,) = _accounts(s, r.str())[:1]
    r.str()
    conid = r.int()
    s.state.market.universe.by_conid(conid)
    s.pnl_single[req_id] = (account, conid)
    _send_pnl_single(s, req_id, account, conid)


def cancel_pnl_single(s: Session, r: Reader) -> None:
    s.pnl_single.pop(r.int(), None)


def push_pnl(s: Session) -> None:
    for req_id, account in list(s.pnl.items()):
        _send_pnl(s, req_id, account)
    for req_id, (account, conid) in list(s.pnl_single.items()):
        _send_pnl_single(s, req_id, account, conid)
