"""Stage 3 — ``portfolio_snapshot``: what the account holds before the session opens.

One row per position (symbol, conid, quantity, IB average cost, market price and value, weight
of net liquidation, sector) plus one ``CASH`` row (``sec_type="CASH"``, the account's total
cash in base currency), so the weights of a snapshot sum to 1 and an empty account still says
how much it can invest. The account numbers a risk manager reads — net liquidation, cash,
gross position value, margin, buying power — go with it to ``positions/YYYY-MM-DD.json`` and
to the asset's metadata. The decision stages read the snapshot with :func:`current_weights`,
:func:`current_quantities` and :func:`net_liquidation`.
"""

import dagster as dg
import pandas as pd

from ibkr_assets.assets.catalog import IB, Table, daily_asset_kwargs
from ibkr_assets.assets.materialization import frame_metadata
from ibkr_assets.assets.partition import session_of, with_partition
from ibkr_assets.broker.errors import BrokerError
from ibkr_assets.resources.ib import IBResource
from ibkr_assets.resources.storage import StorageResource

POSITIONS = Table(
    {
        "symbol": ("string", "ticker symbol, or CASH for the account's cash"),
        "conid": ("int64", "IB contract id (conId), 0 for cash"),
        "sec_type": ("string", "IB security type (secType): STK, ETF, ... or CASH"),
        "quantity": ("float64", "position, shares (negative: short); cash: base currency"),
        "avg_cost": ("float64", "IB average cost, base currency per share"),
        "market_price": ("float64", "IB market price, base currency per share"),
        "market_value": ("float64", "quantity x market price, base currency"),
        "weight": ("float64", "market value / net liquidation, fraction"),
        "sector": ("string", "sector (IB industry); Cash for the cash row"),
    }
)
POSITION_COLUMNS = POSITIONS.dtypes
ACCOUNT_FIELDS = (
    "net_liquidation",
    "total_cash",
    "gross_position_value",
    "equity_with_loan",
    "init_margin_req",
    "maint_margin_req",
    "available_funds",
    "excess_liquidity",
    "buying_power",
    "leverage",
)


@dg.asset(
    **daily_asset_kwargs(
        "portfolio", POSITIONS, stage="3-portfolio", source=IB, kinds={"ib"}, critical=True
    )
)
def portfolio_snapshot(
    context: dg.AssetExecutionContext, ib: IBResource, storage: StorageResource
) -> dg.Output[pd.DataFrame]:
    """The account's positions, cash and net liquidation at the run, weights of net liquidation."""
    key, _, at = session_of(context)
    broker = ib.broker_at(at)
    summary = broker.account_summary()
    nav = summary.net_liquidation
    rows = []
    for p in broker.positions():
        try:
            sector = broker.contract_details(p.contract).sector
        except BrokerError:
            sector = ""
        value = p.market_value if p.market_value is not None else float("nan")
        rows.append(
            (
                p.contract.symbol,
                p.contract.conid,
                p.contract.sec_type,
                p.quantity,
                p.avg_cost,
                p.market_price,
                value,
                value / nav if nav else float("nan"),
                sector,
            )
        )
    cash = summary.total_cash
    rows.append(("CASH", 0, "CASH", cash, 1.0, 1.0, cash, cash / nav if nav else 0.0, "Cash"))
    frame = pd.DataFrame(rows, columns=list(POSITION_COLUMNS)).astype(POSITION_COLUMNS)
    account = {name: float(getattr(summary, name)) for name in ACCOUNT_FIELDS}
    payload = {
        "session": key,
        "as_of": at.isoformat(),
        "account_id": summary.account_id,
        "currency": summary.currency,
        **account,
        "cash_balances": [c.model_dump(mode="json") for c in broker.cash_balances()],
        # JSON has no NaN: an unpriced position's price and value are written as null
        "positions": frame.astype(object).where(frame.notna(), None).to_dict(orient="records"),
    }
    path = storage.write_json(storage.positions_path(key), payload)
    meta = frame_metadata(
        frame,
        account_id=summary.account_id,
        positions=len(frame) - 1,
        path=dg.MetadataValue.path(str(path)),
        **account,
    )
    return dg.Output(with_partition(frame, key), metadata=meta)


def holdings(portfolio_snapshot: pd.DataFrame) -> pd.DataFrame:
    """The snapshot's security positions (without its ``CASH`` row)."""
    return portfolio_snapshot[portfolio_snapshot["sec_type"] != "CASH"]


def current_weights(portfolio_snapshot: pd.DataFrame) -> pd.Series:
    """Signed weight of each held symbol (market value / net liquidation)."""
    return holdings(portfolio_snapshot).groupby("symbol")["weight"].sum().astype(float)


def current_quantities(portfolio_snapshot: pd.DataFrame) -> pd.Series:
    """Signed shares held of each symbol."""
    return holdings(portfolio_snapshot).groupby("symbol")["quantity"].sum().astype(float)


def net_liquidation(portfolio_snapshot: pd.DataFrame) -> float:
    """Net liquidation value: the market values of the positions and the cash row summed."""
    value = float(portfolio_snapshot["market_value"].sum())
    if not value > 0:
        raise ValueError(f"portfolio_snapshot: net liquidation must be positive (got {value})")
    return value
